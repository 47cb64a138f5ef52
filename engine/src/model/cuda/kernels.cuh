/* latentd: the built-in model's math as CUDA kernels (compiled at run time by NVRTC).
 *
 * The same text also compiles as plain C99 (the parity test builds it with the system C
 * compiler and runs it on the CPU against the Rust built-in model): the LD_* macros below
 * turn each __global__ kernel into a C function whose grid-stride loop visits every index
 * in order. So the per-element math is checked without a GPU; the launch configuration
 * (grid and block sizes) is not.
 *
 * Pointers that may be absent travel as 64-bit integers (0 = absent), so one argument list
 * serves both compilers. Nothing here allocates or reads back.
 */
#if defined(__CUDACC__)
#define LD_DEV static __device__ __forceinline__
#define LD_GLOBAL extern "C" __global__ void
#define LD_FOR_EACH(i, n)                                                                    \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (long long)(n);  \
         i += (long long)blockDim.x * gridDim.x)
#else
#include <math.h>
#define LD_DEV static inline
#define LD_GLOBAL static void
#define LD_FOR_EACH(i, n) for (long long i = 0; i < (long long)(n); ++i)
#endif

typedef unsigned int ld_u32;
typedef unsigned long long ld_u64;

#define LD_CHANNELS 64
#define LD_GROUPS 8
#define LD_BANDS 32
#define LD_MELODY 32
#define LD_BASS 40
#define LD_ONSETS 48
#define LD_WIDTH 56
#define LD_PARTIALS 7
#define LD_PHASES 1024
#define LD_TAIL_FRAMES 8
#define LD_TRIGGER 0.3f
#define LD_TAU 6.28318530717958647692f
#define LD_NO_BAND 255u

/* ---------------------------------------------------------------- noise (rng.rs) ---- */

#define LD_QR(a, b, c, d)                                                                    \
    a += b; d ^= a; d = (d << 16) | (d >> 16);                                               \
    c += d; b ^= c; b = (b << 12) | (b >> 20);                                               \
    a += b; d ^= a; d = (d << 8) | (d >> 24);                                                \
    c += d; b ^= c; b = (b << 7) | (b >> 25);

/* Words 2j and 2j+1 (j = word_pair) of the ChaCha8 keystream keyed like rng.rs: key =
 * seed LE, "latentd-noise", zeros; stream = window << 32 | step; 64-bit block counter. */
LD_DEV void ld_chacha8_pair(ld_u32 seed, ld_u32 window, ld_u32 step, ld_u64 word, ld_u32 *w0,
                            ld_u32 *w1) {
    ld_u64 block = word / 16;
    ld_u32 s[16];
    s[0] = 0x61707865u; s[1] = 0x3320646eu; s[2] = 0x79622d32u; s[3] = 0x6b206574u;
    s[4] = seed;
    s[5] = 0x6574616cu; /* "late" */
    s[6] = 0x2d64746eu; /* "ntd-" */
    s[7] = 0x73696f6eu; /* "nois" */
    s[8] = 0x00000065u; /* "e"    */
    s[9] = 0; s[10] = 0; s[11] = 0;
    s[12] = (ld_u32)block; s[13] = (ld_u32)(block >> 32);
    s[14] = step; s[15] = window;
    ld_u32 x[16];
    for (int k = 0; k < 16; ++k) x[k] = s[k];
    for (int r = 0; r < 4; ++r) {
        LD_QR(x[0], x[4], x[8], x[12]) LD_QR(x[1], x[5], x[9], x[13])
        LD_QR(x[2], x[6], x[10], x[14]) LD_QR(x[3], x[7], x[11], x[15])
        LD_QR(x[0], x[5], x[10], x[15]) LD_QR(x[1], x[6], x[11], x[12])
        LD_QR(x[2], x[7], x[8], x[13]) LD_QR(x[3], x[4], x[9], x[14])
    }
    int j = (int)(word % 16);
    *w0 = x[j] + s[j];
    *w1 = x[j + 1] + s[j + 1];
}

/* Gaussian draw `index` of stream (seed, window, step): Box-Muller in f32, as rng.rs. */
LD_DEV float ld_gaussian(ld_u32 seed, ld_u32 window, ld_u32 step, ld_u64 index) {
    ld_u32 w0, w1;
    ld_chacha8_pair(seed, window, step, index & ~(ld_u64)1, &w0, &w1);
    const float scale = 1.0f / 16777216.0f;
    float u1 = (float)(w0 >> 8) * scale + scale * 0.5f;
    float u2 = (float)(w1 >> 8) * scale;
    float r = sqrtf(-2.0f * logf(u1));
    float theta = LD_TAU * u2;
    return (index & 1) ? r * sinf(theta) : r * cosf(theta);
}

LD_GLOBAL ld_gaussian_fill(float *out, long long n, ld_u32 seed, ld_u32 window, ld_u32 step) {
    LD_FOR_EACH(i, n) { out[i] = ld_gaussian(seed, window, step, (ld_u64)i); }
}

/* ---------------------------------------------------------- slot start (SlotStart) ---- */

/* x = noise; with a base (source moved toward the feedback latent by fb_weight, or either
 * alone) and t_start < 1: x = t * noise + (1 - t) * base. */
LD_GLOBAL ld_start_slot(float *x, long long n, ld_u64 source_ptr, ld_u64 feedback_ptr,
                        float fb_weight, float t_start, ld_u32 seed, ld_u32 window, ld_u32 step) {
    const float *src = (const float *)source_ptr;
    const float *fb = (const float *)feedback_ptr;
    LD_FOR_EACH(i, n) {
        float v = ld_gaussian(seed, window, step, (ld_u64)i);
        if ((src || fb) && t_start < 1.0f) {
            float base;
            if (src && fb) base = src[i] + fb_weight * (fb[i] - src[i]);
            else if (src) base = src[i];
            else base = fb[i];
            v = t_start * v + (1.0f - t_start) * base;
        }
        x[i] = v;
    }
}

/* ------------------------------------------------------------ denoise (SlotStep) ---- */

/* One slot's step, as staged by the host (56 bytes, repr(C) on the Rust side). */
typedef struct {
    ld_u64 x;        /* device address of the slot's latent */
    ld_u64 target;   /* device address of the target for the slot's seed */
    float t_curr;
    float t_next;
    float t_start;
    float x0_lock;   /* already 0 when there is no source */
    ld_u32 sde;
    ld_u32 seed;
    ld_u32 window;
    ld_u32 step;
    ld_u32 active;   /* 0: t_curr <= 0, the slot is left alone */
    ld_u32 pad;
} ld_slot_step;

LD_DEV float ld_posterior_gain(float t, float sigma) {
    float s2 = sigma * sigma;
    return (1.0f - t) * s2 / ((1.0f - t) * (1.0f - t) * s2 + t * t);
}

LD_DEV float ld_sigma(int group) {
    switch (group) {
    case 4: case 5: return 0.12f;
    case 6: return 0.25f;
    case 7: return 0.1f;
    default: return 0.15f;
    }
}

/* All slots of a tick: element e is slot e / len, index e % len. The exact Gaussian
 * posterior-mean x0 (builtin.rs), the source lock, then the Euler or SDE update. */
LD_GLOBAL ld_denoise_batch(const ld_slot_step *steps, int slots, long long len,
                           ld_u64 source_ptr, ld_u64 curve_ptr, long long curve_len) {
    const float *src = (const float *)source_ptr;
    const float *curve = (const float *)curve_ptr;
    LD_FOR_EACH(e, (long long)slots * len) {
        const ld_slot_step *st = &steps[e / len];
        long long i = e % len;
        if (!st->active) continue;
        float *x = (float *)st->x;
        const float *target = (const float *)st->target;
        float t = st->t_curr, tn = st->t_next, ts = st->t_start;
        int c = (int)(i % LD_CHANNELS);
        float k = ld_posterior_gain(t, ld_sigma(c / (LD_CHANNELS / LD_GROUPS)));
        float anchor = src ? src[i] : target[i];
        float m = anchor + ts * (target[i] - anchor);
        float xi = x[i];
        float x0 = m + k * (xi - (1.0f - t) * m);
        if (src) x0 += st->x0_lock * (src[i] - x0);
        if (st->sde) {
            float nz = ld_gaussian(st->seed, st->window, st->step, (ld_u64)i);
            float full = tn * nz + (1.0f - tn) * x0;
            if (src) {
                float sdc = 0.0f;
                if (curve) {
                    long long f = i / LD_CHANNELS;
                    sdc = curve[f < curve_len - 1 ? f : curve_len - 1];
                }
                float from_src = tn * nz + (1.0f - tn) * src[i];
                x[i] = sdc * full + (1.0f - sdc) * from_src;
            } else {
                x[i] = full;
            }
        } else {
            float r = tn / t;
            x[i] = r * xi + (1.0f - r) * x0;
        }
    }
}

/* ------------------------------------------------------------- decoder (synth.rs) ---- */

LD_DEV ld_u64 ld_hash(ld_u64 a, ld_u64 b, ld_u64 c) {
    ld_u64 z = (a * 0x9E3779B97F4A7C15ull) ^ (b * 0xC2B2AE3D27D4EB4Full) ^ c;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

LD_DEV float ld_latent_to_db(float v) { return v * 20.0f - 50.0f; }

LD_DEV long long ld_wrap(long long f, long long total) {
    long long r = f % total;
    return r < 0 ? r + total : r;
}

/* Frame f of a walk chunk of `total` frames at `lat`: f < 0 counts back from the end of
 * `before` (before_total frames), f >= total runs into `after` (after_total frames), both
 * wrapping. A whole loop passes itself as both neighbours (every lookup wraps in it).
 * Hashed phases use loop frame (loop_offset + f) mod loop_total (as synth.rs). */
#define LD_PLACE_PARAMS                                                                      \
    ld_u64 before_ptr, long long before_total, ld_u64 after_ptr, long long after_total,       \
        long long loop_offset, long long loop_total
#define LD_PLACE_ARGS before_ptr, before_total, after_ptr, after_total, loop_offset, loop_total

LD_DEV const float *ld_chunk_frame(const float *lat, long long total, LD_PLACE_PARAMS,
                                   long long f) {
    (void)loop_offset;
    (void)loop_total;
    if (f < 0) return (const float *)before_ptr + ld_wrap(f, before_total) * LD_CHANNELS;
    if (f >= total) return (const float *)after_ptr + ((f - total) % after_total) * LD_CHANNELS;
    return lat + f * LD_CHANNELS;
}

LD_DEV float ld_soft_limit(float x) {
    float a = fabsf(x);
    if (a <= 0.8f) return x;
    float s = x < 0.0f ? -1.0f : 1.0f;
    return s * (0.8f + 0.2f * tanhf((a - 0.8f) / 0.2f));
}

/* Envelope grain spectra: grain g is chunk frame start - 1 + g; entry (g, side, k) of
 * `re`/`im` ([grains][2][n/2 + 1]). bin_band: band per bin (255 outside); phase_sin/cos:
 * the 1024-entry phase table. */
LD_GLOBAL ld_envelope_spectrum(float *re, float *im, int grains, int n, const float *lat,
                               long long total, long long start, LD_PLACE_PARAMS,
                               const float *gains, const unsigned char *bin_band,
                               const float *phase_sin, const float *phase_cos) {
    int bins = n / 2 + 1;
    LD_FOR_EACH(e, (long long)grains * 2 * bins) {
        int k = (int)(e % bins);
        int side = (int)((e / bins) % 2);
        long long g = e / (2 * bins);
        long long f = start - 1 + g;
        long long id = ld_wrap(loop_offset + f, loop_total);
        const float *fr = ld_chunk_frame(lat, total, LD_PLACE_ARGS, f);
        unsigned band = bin_band[k];
        if (band == LD_NO_BAND || k == 0 || k == n / 2) {
            re[e] = 0.0f;
            im[e] = 0.0f;
            continue;
        }
        float db = ld_latent_to_db(fr[band]);
        float density = powf(10.0f, (db < 20.0f ? db : 20.0f) / 10.0f);
        float a = sqrtf(density * (float)n) * gains[band * 4 / LD_BANDS] / (float)n;
        ld_u64 h = ld_hash((ld_u64)id, (ld_u64)k, 0);
        long long idx = (long long)(h & (LD_PHASES - 1));
        if (side == 1) {
            float w = fr[LD_WIDTH + band * LD_GROUPS / LD_BANDS] * gains[7];
            w = w < 0.0f ? 0.0f : (w > 1.0f ? 1.0f : w);
            float jitter = (float)((h >> 20) & 0xffff) / 65536.0f - 0.5f;
            idx = ld_wrap(idx + (long long)(jitter * w * (float)LD_PHASES), LD_PHASES);
        }
        re[e] = a * phase_cos[idx];
        im[e] = a * phase_sin[idx];
    }
}

/* Envelope grains ([grains][2][n]): the real inverse DFT of each spectrum (unnormalized,
 * Hermitian: 2 Re sum_k X_k e^{2 pi i k j / n}), times the sqrt-Hann window. twiddle_cos /
 * twiddle_sin: cos, sin of 2 pi m / n for m < n. */
LD_GLOBAL ld_envelope_grains(float *grain, int grains, int n, const float *re, const float *im,
                             const float *twiddle_cos, const float *twiddle_sin,
                             const float *window) {
    int bins = n / 2 + 1;
    LD_FOR_EACH(e, (long long)grains * 2 * n) {
        int j = (int)(e % n);
        long long gs = e / n; /* grain * 2 + side */
        const float *r = re + gs * bins;
        const float *m = im + gs * bins;
        float acc = 0.0f;
        long long idx = 0;
        for (int k = 1; k < n / 2; ++k) {
            idx += j;
            if (idx >= n) idx -= n;
            acc += r[k] * twiddle_cos[idx] - m[k] * twiddle_sin[idx];
        }
        grain[e] = 2.0f * acc * window[j];
    }
}

/* Voice phase at the start of each loop frame (cycles, integrated from frame 0 in double,
 * detuned by a constant drift so the loop holds whole cycles, as synth.rs):
 * phases[v * (total + 2) + f] for f <= total, and the drift in Hz at index total + 1;
 * v = 0 melody, 1 bass. One thread per voice: a sequential scan, in synth.rs's order. */
LD_DEV float ld_voice_hz(const float *lat, long long f, int first, float ref_midi) {
    float p = lat[f * LD_CHANNELS + first];
    return 440.0f * powf(2.0f, (ref_midi + 12.0f * p - 69.0f) / 12.0f);
}

LD_GLOBAL ld_voice_phases(double *phases, const float *lat, long long total, int hop,
                          float sample_rate) {
    LD_FOR_EACH(v, 2) {
        int first = v == 0 ? LD_MELODY : LD_BASS;
        float ref = v == 0 ? 69.0f : 45.0f;
        double spf = (double)hop / (double)sample_rate;
        double cycles = 0.0;
        for (long long f = 0; f < total; ++f) cycles += (double)ld_voice_hz(lat, f, first, ref) * spf;
        double drift = (cycles - round(cycles)) / (double)total;
        double acc = 0.0;
        double *p = phases + v * (total + 2);
        for (long long f = 0; f <= total; ++f) {
            p[f] = acc;
            if (f < total) {
                double x = acc + (double)ld_voice_hz(lat, f, first, ref) * spf - drift;
                double r = fmod(x, 1.0);
                acc = r < 0.0 ? r + 1.0 : r;
            }
        }
        p[total + 1] = (double)(float)(drift / spf);
    }
}

LD_DEV float ld_voice_amp(const float *fr, int first, float gain) {
    float db = ld_latent_to_db(fr[first + 1]);
    if (db < -80.0f) return 0.0f;
    return powf(10.0f, (db < 6.0f ? db : 6.0f) / 20.0f) * gain;
}

/* One voice's sample `i` of chunk frame f >= 0 (phase integrated from the frame start; the
 * levels of frames f - 1 and f + 1 from the neighbours past the chunk's edges). */
LD_DEV float ld_voice_sample(const float *lat, const double *phases, long long total,
                             LD_PLACE_PARAMS, int first, float ref, float gain, long long f,
                             int i, int hop, float sample_rate) {
    const float *fr = ld_chunk_frame(lat, total, LD_PLACE_ARGS, f);
    float a_mid = ld_voice_amp(fr, first, gain);
    const float *prev = ld_chunk_frame(lat, total, LD_PLACE_ARGS, f - 1);
    const float *next = ld_chunk_frame(lat, total, LD_PLACE_ARGS, f + 1);
    float a0 = 0.5f * (ld_voice_amp(prev, first, gain) + a_mid);
    float a1 = 0.5f * (a_mid + ld_voice_amp(next, first, gain));
    if (a0 < 1e-6f && a1 < 1e-6f) return 0.0f;
    float f0 = ld_voice_hz(fr, 0, first, ref) - (float)phases[total + 1];
    float sum = 0.0f;
    for (int k = 1; k <= LD_PARTIALS; ++k) {
        float fk = f0 * (float)k;
        if (fk > 0.45f * sample_rate) break;
        float rel = k == 1 ? 1.0f
                           : powf(10.0f, fr[first + k] * 20.0f / 20.0f);
        double ph = phases[f % total] * (double)k;
        float phase0 = (float)(ph - trunc(ph)) * LD_TAU;
        float omega = LD_TAU * fk / sample_rate;
        float step = (a1 - a0) * rel / (float)hop;
        float a = a0 * rel + (float)i * step;
        sum += a * (float)sin((double)phase0 + (double)i * (double)omega);
    }
    return sum;
}

LD_DEV float ld_noise_at(ld_u64 id, long long i) {
    return (float)(ld_hash(id, (ld_u64)i, 7) >> 40) / 8388608.0f - 1.0f;
}

/* Percussion hits of one frame (strengths already scaled by the gain) at sample i >= 0 of
 * the hit. Closed forms of synth.rs's recurrences, evaluated in double. */
LD_DEV float ld_hit_sample(ld_u64 id, float kick, float snare, float hat, long long i,
                           float sr) {
    float v = 0.0f;
    if (kick >= LD_TRIGGER && i < (long long)(0.35f * sr)) {
        float body_decay = expf(-1.0f / (0.15f * sr));
        float sweep_decay = expf(-1.0f / (0.03f * sr));
        double body = (double)(0.9f * (kick < 1.5f ? kick : 1.5f)) * pow((double)body_decay, (double)i);
        double d = (double)sweep_decay;
        double sweep_sum = (1.0 - pow(d, (double)i)) / (1.0 - d);
        double phase = (double)LD_TAU * (50.0 * (double)i + 100.0 * sweep_sum) / (double)sr;
        phase = fmod(phase, (double)LD_TAU);
        v += (float)(body * sin(phase));
    }
    if (snare >= LD_TRIGGER && i < (long long)(0.25f * sr)) {
        float decay = expf(-1.0f / (0.07f * sr));
        double amp = (double)(0.35f * (snare < 1.5f ? snare : 1.5f)) * pow((double)decay, (double)i);
        double omega = (double)(LD_TAU * 185.0f / sr);
        double tone = sin(omega * (double)i);
        v += (float)(amp * (0.7 * (double)ld_noise_at(id, i) + 0.3 * tone));
    }
    if (hat >= LD_TRIGGER && i < (long long)(0.1f * sr)) {
        float decay = expf(-1.0f / (0.025f * sr));
        double amp = (double)(0.2f * (hat < 1.5f ? hat : 1.5f)) * pow((double)decay, (double)i);
        float prev = i > 0 ? ld_noise_at(id, i - 1) : 0.0f;
        v += (float)(amp * (double)(ld_noise_at(id, i) - prev));
    }
    return v;
}

LD_DEV float ld_max3(float a, float b, float c) {
    float m = a > b ? a : b;
    return m > c ? m : c;
}

/* The window: out[s * 2 + side] for s < frames * hop, chunk frames start .. start + frames.
 * Envelope grains overlap-added, melody and bass voices, percussion, soft limit. grain is
 * 0 when the envelope gains are all 0; phases 0 when both voice gains are. */
LD_GLOBAL ld_mix_window(float *out, long long frames, int hop, float sample_rate,
                        const float *lat, long long total, long long start, LD_PLACE_PARAMS,
                        const float *gains, ld_u64 grain_ptr, int n, ld_u64 phases_ptr) {
    const float *grain = (const float *)grain_ptr;
    const double *phases = (const double *)phases_ptr;
    LD_FOR_EACH(e, frames * hop * 2) {
        long long s = e / 2;
        int side = (int)(e % 2);
        float v = 0.0f;
        if (grain) {
            long long q = (s + hop / 2) / hop; /* grains q and q + 1 cover s */
            for (long long g = q; g <= q + 1; ++g) {
                long long pos = s - ((g - 1) * hop - hop / 2);
                if (pos >= 0 && pos < n) v += grain[(g * 2 + side) * n + pos];
            }
        }
        long long j = s / hop;
        int i = (int)(s % hop);
        long long f = start + j;
        if (phases) {
            if (gains[4] > 0.0f)
                v += ld_voice_sample(lat, phases, total, LD_PLACE_ARGS, LD_MELODY, 69.0f,
                                     gains[4], f, i, hop, sample_rate);
            if (gains[5] > 0.0f)
                v += ld_voice_sample(lat, phases + (total + 2), total, LD_PLACE_ARGS, LD_BASS,
                                     45.0f, gains[5], f, i, hop, sample_rate);
        }
        if (gains[6] > 0.0f) {
            for (long long jj = 0; jj < frames + LD_TAIL_FRAMES; ++jj) {
                long long offset = (jj - LD_TAIL_FRAMES) * hop;
                long long hit_i = s - offset;
                if (hit_i < 0) break;
                long long hf = start + jj - LD_TAIL_FRAMES;
                long long id = ld_wrap(loop_offset + hf, loop_total);
                const float *o = ld_chunk_frame(lat, total, LD_PLACE_ARGS, hf) + LD_ONSETS;
                float kick = (o[0] > o[1] ? o[0] : o[1]) * gains[6];
                float snare = ld_max3(o[2], o[3], o[4]) * gains[6];
                float hat = ld_max3(o[5], o[6], o[7]) * gains[6];
                if (kick < LD_TRIGGER && snare < LD_TRIGGER && hat < LD_TRIGGER) continue;
                v += ld_hit_sample((ld_u64)id, kick, snare, hat, hit_i, sample_rate);
            }
        }
        out[e] = ld_soft_limit(v);
    }
}
