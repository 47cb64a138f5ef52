//! The built-in model's decoder: resynthesis of audio from latent frames.
//!
//! Four layers, each a pure function of absolute position in the loop, so two windows that
//! overlap render identical samples where they overlap (edges crossfade without clicks).
//! In walk mode the latents are one chunk of a longer loop ([`Neighbours`]): frames before
//! and after the chunk come from the neighbouring chunks, and the hashed phases of grains and
//! hits from the frame's position in the whole loop, so the chunks join without a seam:
//! - envelope: one grain per latent frame, two frames long, random-phase spectrum shaped by the
//!   32 band levels (phases hashed from frame, bin and side; left and right phases decorrelated
//!   by the width channels), sqrt-Hann windowed, overlap-added at 50 % (constant power);
//! - melody and bass voices: seven harmonic partials each, phase integrated from the loop
//!   (chunk) start (continuous across frames; detuned so each partial completes whole cycles
//!   over the loop or chunk, so every partial is at phase 0 at each seam), levels interpolated
//!   linearly between frame centres (across a chunk's edge, with the neighbour's frame);
//! - percussion: kick (pitch sweep), snare (noise + tone) and hats (bright noise) triggered by
//!   the onset channels, tails looked up from earlier frames;
//! - a soft limiter with a knee at 0.8, so the output never exceeds 1 (the generated
//!   material is levelled to peak well below the knee; sources keep their level).
//!
//! Channel-group gains: groups 0-3 scale the envelope bands, 4 the melody, 5 the bass,
//! 6 the percussion, 7 the stereo width. All zero: exact silence (nothing is synthesized).
//!
//! Threading: a [`Synth`] is `Sync`; its scratch sits behind an uncontended mutex.

use crate::lock::MutexExt;
use std::f32::consts::TAU;
use std::sync::{Arc, Mutex};

use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner};

use super::layout::*;

const PHASES: usize = 1024;
/// Frames of percussion tail looked back at.
const TAIL_FRAMES: usize = 8;
/// Onset strength that triggers a percussion hit (0.3 = a 6.6 dB rise in the residual at full
/// level).
pub const TRIGGER: f32 = 0.3;

struct Scratch {
    spectrum: Vec<Complex32>,
    grain: Vec<f32>,
    ifft_scratch: Vec<Complex32>,
    voice_phase: Vec<f64>,
}

/// Where the latents a render reads sit in the whole loop: a walk chunk's neighbours
/// (frame-major host latents of `*_total` frames each) and the chunk's first frame in the
/// loop. Frame `f < 0` of the chunk is frame `f` counted back from the end of `before`,
/// frame `f >= total` is frame `f - total` of `after` (both wrapping); hashed phases use
/// loop frame `(loop_offset + f) mod loop_total`. [`Neighbours::alone`]: the latents are the
/// whole loop, and every lookup wraps within them.
#[derive(Clone, Copy)]
pub struct Neighbours<'a> {
    /// The latents before the chunk.
    pub before: &'a [f32],
    /// Frames in `before`.
    pub before_total: usize,
    /// The latents after the chunk.
    pub after: &'a [f32],
    /// Frames in `after`.
    pub after_total: usize,
    /// The chunk's first latent frame in the loop.
    pub loop_offset: usize,
    /// Latent frames in the whole loop.
    pub loop_total: usize,
}

impl<'a> Neighbours<'a> {
    /// `latents` (`total` frames) are the whole loop.
    pub fn alone(latents: &'a [f32], total: usize) -> Self {
        Self {
            before: latents,
            before_total: total,
            after: latents,
            after_total: total,
            loop_offset: 0,
            loop_total: total,
        }
    }
}

/// Frame `f` of a chunk of `total` frames (see [`Neighbours`]).
fn chunk_frame<'a>(latents: &'a [f32], total: usize, n: &Neighbours<'a>, f: isize) -> &'a [f32] {
    let (data, at) = if f < 0 {
        (
            n.before,
            f.rem_euclid(n.before_total.max(1) as isize) as usize,
        )
    } else if f as usize >= total {
        (n.after, (f as usize - total) % n.after_total.max(1))
    } else {
        (latents, f as usize)
    };
    &data[at * LATENT_CHANNELS..(at + 1) * LATENT_CHANNELS]
}

/// The loop frame whose hashed phases frame `f` of the chunk uses.
fn loop_id(n: &Neighbours<'_>, f: isize) -> u64 {
    (n.loop_offset as isize + f).rem_euclid(n.loop_total.max(1) as isize) as u64
}

/// The decoder (see the module doc).
pub struct Synth {
    hop: usize,
    n: usize,
    sample_rate: f32,
    ifft: Arc<dyn ComplexToReal<f32>>,
    window: Vec<f32>,
    bin_band: Vec<u8>,
    phase_table: Vec<(f32, f32)>,
    scratch: Mutex<Scratch>,
}

#[inline]
fn hash(a: u64, b: u64, c: u64) -> u64 {
    let mut z = a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F) ^ c;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[inline]
fn soft_limit(x: f32) -> f32 {
    let a = x.abs();
    if a <= 0.8 {
        x
    } else {
        x.signum() * (0.8 + 0.2 * ((a - 0.8) / 0.2).tanh())
    }
}

impl Synth {
    /// A decoder for `sample_rate` and `frame_rate` latent frames per second.
    pub fn new(sample_rate: u32, frame_rate: u32) -> Self {
        let hop = (sample_rate / frame_rate) as usize;
        let n = 2 * hop;
        let ifft = RealFftPlanner::<f32>::new().plan_fft_inverse(n);
        let bin_hz = sample_rate as f32 / n as f32;
        let bin_band = (0..=n / 2)
            .map(|k| band_of(k as f32 * bin_hz).map_or(u8::MAX, |b| b as u8))
            .collect();
        let window = (0..n)
            .map(|i| (std::f32::consts::PI * (i as f32 + 0.5) / n as f32).sin())
            .collect();
        let phase_table = (0..PHASES)
            .map(|i| (TAU * i as f32 / PHASES as f32).sin_cos())
            .collect();
        let scratch = Scratch {
            spectrum: ifft.make_input_vec(),
            grain: ifft.make_output_vec(),
            ifft_scratch: ifft.make_scratch_vec(),
            voice_phase: Vec::new(),
        };
        Self {
            hop,
            n,
            sample_rate: sample_rate as f32,
            ifft,
            window,
            bin_band,
            phase_table,
            scratch: Mutex::new(scratch),
        }
    }

    /// Samples per latent frame.
    pub fn hop(&self) -> usize {
        self.hop
    }

    /// Output sample rate, Hz.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate as u32
    }

    /// Renders frames `start .. start + frames` (wrapping at `total` frames) of `latents` into
    /// `out` (stereo interleaved, `frames * hop * 2` samples).
    pub fn render(
        &self,
        latents: &[f32],
        total: usize,
        gains: &[f32; 8],
        start: usize,
        frames: usize,
        out: &mut [f32],
    ) {
        let alone = Neighbours::alone(latents, total);
        self.render_chunk(latents, total, &alone, gains, start, frames, out);
    }

    /// Renders frames `start .. start + frames` of a chunk of `total` frames whose
    /// surroundings are `place` (`start < total`; frames past the chunk's end come from
    /// `place.after`) into `out` (stereo interleaved, `frames * hop * 2` samples).
    #[allow(clippy::too_many_arguments)]
    pub fn render_chunk(
        &self,
        latents: &[f32],
        total: usize,
        place: &Neighbours<'_>,
        gains: &[f32; 8],
        start: usize,
        frames: usize,
        out: &mut [f32],
    ) {
        out.fill(0.0);
        let mut scratch = self.scratch.lock_unpoisoned();
        let frame = |f: isize| chunk_frame(latents, total, place, f);
        if gains[..4].iter().any(|&g| g > 0.0) {
            for g in start as isize - 1..=(start + frames) as isize {
                self.envelope_grain(
                    &mut scratch,
                    frame(g),
                    loop_id(place, g),
                    gains,
                    (g - start as isize) * self.hop as isize - (self.hop / 2) as isize,
                    out,
                );
            }
        }
        for (first, gain) in [(MELODY, gains[4]), (BASS, gains[5])] {
            if gain > 0.0 {
                self.voice(
                    &mut scratch,
                    latents,
                    total,
                    place,
                    first,
                    gain,
                    start,
                    frames,
                    out,
                );
            }
        }
        if gains[6] > 0.0 {
            for j in 0..frames + TAIL_FRAMES {
                let f = start as isize + j as isize - TAIL_FRAMES as isize;
                let offset = (j as isize - TAIL_FRAMES as isize) * self.hop as isize;
                self.percussion(frame(f), loop_id(place, f), gains[6], offset, out);
            }
        }
        for s in out.iter_mut() {
            *s = soft_limit(*s);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn envelope_grain(
        &self,
        scratch: &mut Scratch,
        lat: &[f32],
        id: u64,
        gains: &[f32; 8],
        offset: isize,
        out: &mut [f32],
    ) {
        let mut band_amp = [0.0f32; BANDS];
        for (b, amp) in band_amp.iter_mut().enumerate() {
            let density = 10f32.powf(latent_to_db(lat[ENVELOPE + b]).min(20.0) / 10.0);
            *amp = (density * self.n as f32).sqrt() * gains[b * 4 / BANDS] / self.n as f32;
        }
        let mut width = [0.0f32; GROUPS];
        for (g, w) in width.iter_mut().enumerate() {
            *w = (lat[WIDTH + g] * gains[7]).clamp(0.0, 1.0);
        }
        for side in 0..2u64 {
            for (k, c) in scratch.spectrum.iter_mut().enumerate() {
                let band = self.bin_band[k];
                if band == u8::MAX || k == 0 || k == self.n / 2 {
                    *c = Complex32::new(0.0, 0.0);
                    continue;
                }
                let h = hash(id, k as u64, 0);
                let mut idx = (h & (PHASES as u64 - 1)) as usize;
                if side == 1 {
                    let w = width[band as usize * GROUPS / BANDS];
                    let jitter = ((h >> 20) & 0xffff) as f32 / 65536.0 - 0.5;
                    idx = (idx as isize + (jitter * w * PHASES as f32) as isize)
                        .rem_euclid(PHASES as isize) as usize;
                }
                let (s, co) = self.phase_table[idx];
                let a = band_amp[band as usize];
                *c = Complex32::new(a * co, a * s);
            }
            let Scratch {
                spectrum,
                grain,
                ifft_scratch,
                ..
            } = scratch;
            self.ifft
                .process_with_scratch(spectrum, grain, ifft_scratch)
                .expect("ifft sizes");
            for (i, (&x, &w)) in grain.iter().zip(&self.window).enumerate() {
                let pos = offset + i as isize;
                if pos >= 0 && (pos as usize) * 2 < out.len() {
                    out[pos as usize * 2 + side as usize] += x * w;
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn voice(
        &self,
        scratch: &mut Scratch,
        latents: &[f32],
        total: usize,
        place: &Neighbours<'_>,
        first: usize,
        gain: f32,
        start: usize,
        frames: usize,
        out: &mut [f32],
    ) {
        let reference = if first == MELODY {
            MELODY_REF_MIDI
        } else {
            BASS_REF_MIDI
        };
        // Frame `f` of the chunk, its neighbours past either end.
        let lat = |f: isize, c: usize| chunk_frame(latents, total, place, f)[first + c];
        let hz = |f: isize| 440.0 * 2f32.powf((reference + 12.0 * lat(f, 0) - 69.0) / 12.0);
        let amp = |f: isize| {
            let db = latent_to_db(lat(f, 1));
            if db < -80.0 {
                0.0
            } else {
                10f32.powf(db.min(6.0) / 20.0) * gain
            }
        };
        // Phase (in cycles of the fundamental) at the start of each loop frame, integrated from
        // frame 0. The loop's total is rounded to whole cycles by a constant detune `drift`
        // (at most half a cycle per loop), so every partial completes whole cycles over the
        // loop and the wrap is seamless.
        let seconds_per_frame = self.hop as f64 / f64::from(self.sample_rate);
        let cycles: f64 = (0..total as isize)
            .map(|f| f64::from(hz(f)) * seconds_per_frame)
            .sum();
        let drift = (cycles - cycles.round()) / total as f64;
        let phases = &mut scratch.voice_phase;
        if phases.len() != total + 1 {
            phases.resize(total + 1, 0.0);
        }
        let mut acc = 0.0f64;
        for (f, p) in phases.iter_mut().enumerate().take(total + 1) {
            *p = acc;
            if f < total {
                acc = (acc + f64::from(hz(f as isize)) * seconds_per_frame - drift).rem_euclid(1.0);
            }
        }
        let drift_hz = (drift / seconds_per_frame) as f32;
        for j in 0..frames {
            // Past the chunk's end (never in one loop: `after` is the loop itself), the
            // phases restart as the next chunk's do.
            let f = (start + j) as isize;
            let a_mid = amp(f);
            let (a0, a1) = (0.5 * (amp(f - 1) + a_mid), 0.5 * (a_mid + amp(f + 1)));
            if a0 < 1e-6 && a1 < 1e-6 {
                continue;
            }
            let f0 = hz(f) - drift_hz;
            let base = &mut out[j * self.hop * 2..(j + 1) * self.hop * 2];
            for k in 1..=PARTIALS {
                let fk = f0 * k as f32;
                if fk > 0.45 * self.sample_rate {
                    break;
                }
                let rel = if k == 1 {
                    1.0
                } else {
                    10f32.powf(lat(f, k) * PARTIAL_DB_SCALE / 20.0)
                };
                let phase0 = (phases[f as usize % total] * k as f64).fract() as f32 * TAU;
                let (mut s, mut c) = phase0.sin_cos();
                let (rs, rc) = (TAU * fk / self.sample_rate).sin_cos();
                let step = (a1 - a0) * rel / self.hop as f32;
                let mut a = a0 * rel;
                for pair in base.chunks_exact_mut(2) {
                    let v = a * s;
                    pair[0] += v;
                    pair[1] += v;
                    let ns = s * rc + c * rs;
                    c = c * rc - s * rs;
                    s = ns;
                    a += step;
                }
            }
        }
    }

    fn percussion(&self, lat: &[f32], id: u64, gain: f32, offset: isize, out: &mut [f32]) {
        let o = &lat[ONSETS..ONSETS + GROUPS];
        let kick = o[0].max(o[1]) * gain;
        let snare = o[2].max(o[3]).max(o[4]) * gain;
        let hat = o[5].max(o[6]).max(o[7]) * gain;
        if kick < TRIGGER && snare < TRIGGER && hat < TRIGGER {
            return;
        }
        // Each hit is computed from its own start (recurrences, no per-sample exp), so a sample
        // does not depend on which window asked for it.
        let sr = self.sample_rate;
        let end = (out.len() as isize / 2 - offset).max(0) as usize;
        let begin = (-offset).max(0) as usize;
        let mut emit = |i: usize, v: f32| {
            if i >= begin {
                let pos = (offset + i as isize) as usize * 2;
                out[pos] += v;
                out[pos + 1] += v;
            }
        };
        if kick >= TRIGGER {
            let (mut body, mut sweep, mut phase) = (0.9 * kick.min(1.5), 1.0f32, 0.0f32);
            let (body_decay, sweep_decay) =
                ((-1.0 / (0.15 * sr)).exp(), (-1.0 / (0.03 * sr)).exp());
            for i in 0..((0.35 * sr) as usize).min(end) {
                emit(i, body * phase.sin());
                phase = (phase + TAU * (50.0 + 100.0 * sweep) / sr) % TAU;
                body *= body_decay;
                sweep *= sweep_decay;
            }
        }
        let noise_at = |i: usize| (hash(id, i as u64, 7) >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
        if snare >= TRIGGER {
            let mut amp = 0.35 * snare.min(1.5);
            let decay = (-1.0 / (0.07 * sr)).exp();
            let (rs, rc) = (TAU * 185.0 / sr).sin_cos();
            let (mut s, mut c) = (0.0f32, 1.0f32);
            for i in 0..((0.25 * sr) as usize).min(end) {
                emit(i, amp * (0.7 * noise_at(i) + 0.3 * s));
                let ns = s * rc + c * rs;
                c = c * rc - s * rs;
                s = ns;
                amp *= decay;
            }
        }
        if hat >= TRIGGER {
            let mut amp = 0.2 * hat.min(1.5);
            let decay = (-1.0 / (0.025 * sr)).exp();
            let mut prev = 0.0;
            for i in 0..((0.1 * sr) as usize).min(end) {
                let noise = noise_at(i);
                emit(i, amp * (noise - prev));
                prev = noise;
                amp *= decay;
            }
        }
    }
}
