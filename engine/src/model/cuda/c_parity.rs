//! The kernel math, checked on the CPU: `kernels.cuh` compiled as C99 by the system C
//! compiler (`$CC`, else `cc`) into a small harness, run on the same inputs as the Rust
//! built-in model, outputs compared.
//!
//! What this checks: every kernel's per-element math (the ChaCha8 port and Box–Muller, the
//! slot start, the batched posterior-mean denoise with source lock, Euler and SDE updates and
//! the SDE curve, the decoder's spectra, inverse DFT, voices, percussion and limiter), and the
//! host-side orchestration the harness mirrors. What it does not check: the CUDA launch
//! configuration, NVRTC's code generation, or the GPU's math library (see `gpu_tests`).
//!
//! Tolerances: noise, start and denoise are bit-exact here (same libm, no FMA contraction);
//! the decoder replaces the CPU's FFT and f32 recurrences by a direct DFT and closed forms, so
//! its relative RMS error must stay under [`DECODE_REL_TOL`]. The GPU run uses the same
//! figures plus an ulp allowance on the noise (see `gpu_tests`).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use super::{DecoderTables, KERNEL_SOURCE, SlotStepRecord};
use crate::conditioning::{ConditionEncoder, Conditioning};
use crate::knobs::KnobStore;
use crate::model::builtin::{BuiltinModel, CpuLatents, FRAME_RATE, SAMPLE_RATE};
use crate::model::{Model, SlotStart, SlotStep, StepShared};
use crate::rng::{NoiseKey, fill_gaussian};

/// Relative RMS error allowed between the C (or GPU) decoder and the Rust decoder.
pub const DECODE_REL_TOL: f64 = 2e-4;

const HARNESS: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kernels.cuh"
static unsigned char *buf; static size_t at, len;
static void *take(size_t n) { if (at + n > len) { fprintf(stderr, "short input\n"); exit(2); }
  void *p = buf + at; at += n; return p; }
static ld_u32 u32v(void) { ld_u32 v; memcpy(&v, take(4), 4); return v; }
static ld_u64 u64v(void) { ld_u64 v; memcpy(&v, take(8), 8); return v; }
static float f32v(void) { float v; memcpy(&v, take(4), 4); return v; }
static float *f32s(size_t n) { float *p = malloc(n * 4 + 4); memcpy(p, take(n * 4), n * 4); return p; }
static void emit(const float *p, size_t n) { fwrite(p, 4, n, stdout); }
int main(int argc, char **argv) {
  size_t cap = 1 << 20; buf = malloc(cap);
  for (size_t r; (r = fread(buf + len, 1, cap - len, stdin)) > 0;) {
    len += r; if (len == cap) { cap *= 2; buf = realloc(buf, cap); } }
  const char *op = argv[1];
  if (!strcmp(op, "noise")) {
    ld_u32 seed = u32v(), slot = u32v(), step = u32v(); ld_u64 n = u64v();
    float *out = malloc(n * 4 + 4); ld_gaussian_fill(out, (long long)n, seed, slot, step); emit(out, n);
  } else if (!strcmp(op, "start")) {
    ld_u32 seed = u32v(), slot = u32v(), step = u32v(); float t = f32v(), w = f32v();
    ld_u64 n = u64v(); ld_u32 hs = u32v(), hf = u32v();
    float *src = hs ? f32s(n) : 0, *fb = hf ? f32s(n) : 0, *x = malloc(n * 4 + 4);
    ld_start_slot(x, (long long)n, (ld_u64)(size_t)src, (ld_u64)(size_t)fb, w, t, seed, slot, step);
    emit(x, n);
  } else if (!strcmp(op, "denoise")) {
    ld_u32 slots = u32v(); ld_u64 n = u64v(); float *target = f32s(n);
    ld_u32 hs = u32v(); float *src = hs ? f32s(n) : 0;
    ld_u64 clen = u64v(); float *curve = clen ? f32s(clen) : 0;
    ld_slot_step *st = calloc(slots, sizeof *st);
    float **xs = calloc(slots, sizeof *xs);
    for (ld_u32 s = 0; s < slots; ++s) {
      memcpy(&st[s], take(sizeof *st), sizeof *st); xs[s] = f32s(n); st[s].x = (ld_u64)(size_t)xs[s];
      st[s].target = (ld_u64)(size_t)target; }
    ld_denoise_batch(st, (int)slots, (long long)n, (ld_u64)(size_t)src, (ld_u64)(size_t)curve, (long long)clen);
    for (ld_u32 s = 0; s < slots; ++s) emit(xs[s], n);
  } else if (!strcmp(op, "decode")) {
    ld_u64 total = u64v(), start = u64v(), frames = u64v(); int hop = (int)u32v(); float sr = f32v();
    float *gains = f32s(8); float *lat = f32s(total * 64);
    ld_u64 bt = u64v(); float *before = f32s(bt * 64); ld_u64 at_ = u64v(); float *after = f32s(at_ * 64);
    ld_u64 loop_offset = u64v(), loop_total = u64v();
    if (!bt) { bt = total; before = lat; } if (!at_) { at_ = total; after = lat; }
#define PLACE (ld_u64)(size_t)before, (long long)bt, (ld_u64)(size_t)after, (long long)at_, \
    (long long)loop_offset, (long long)loop_total
    int n = 2 * hop, bins = n / 2 + 1;
    unsigned char *bin_band = take(bins);
    float *ps = f32s(1024), *pc = f32s(1024), *tc = f32s(n), *ts = f32s(n), *win = f32s(n);
    int grains = (int)frames + 2; float *grain = 0; double *phases = 0;
    if (gains[0] > 0 || gains[1] > 0 || gains[2] > 0 || gains[3] > 0) {
      float *re = malloc((size_t)grains * 2 * bins * 4), *im = malloc((size_t)grains * 2 * bins * 4);
      grain = malloc((size_t)grains * 2 * n * 4);
      ld_envelope_spectrum(re, im, grains, n, lat, (long long)total, (long long)start, PLACE, gains, bin_band, ps, pc);
      ld_envelope_grains(grain, grains, n, re, im, tc, ts, win);
    }
    if (gains[4] > 0 || gains[5] > 0) {
      phases = malloc((total + 2) * 2 * 8);
      ld_voice_phases(phases, lat, (long long)total, hop, sr);
    }
    float *out = malloc(frames * hop * 2 * 4);
    ld_mix_window(out, (long long)frames, hop, sr, lat, (long long)total, (long long)start, PLACE, gains,
                  (ld_u64)(size_t)grain, n, (ld_u64)(size_t)phases);
    emit(out, frames * hop * 2);
  } else { fprintf(stderr, "unknown op %s\n", op); return 2; }
  return 0;
}
"#;

/// The harness binary, built once per test process.
fn harness() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("latentd-c-parity-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("kernels.cuh"), KERNEL_SOURCE).expect("write kernels");
        std::fs::write(dir.join("harness.c"), HARNESS).expect("write harness");
        let bin = dir.join("harness");
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let status = Command::new(&cc)
            .args([
                "-std=c99",
                "-O2",
                "-ffp-contract=off",
                "-Wall",
                "-Wno-unused-function",
            ])
            .arg(dir.join("harness.c"))
            .arg("-o")
            .arg(&bin)
            .arg("-lm")
            .status()
            .unwrap_or_else(|e| panic!("cannot run the C compiler `{cc}`: {e}"));
        assert!(status.success(), "the kernels do not compile as C ({cc})");
        bin
    })
}

/// Runs `op` on the input blob, returns the floats it printed.
fn run(op: &str, input: &[u8]) -> Vec<f32> {
    let mut child = Command::new(harness())
        .arg(op)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run harness");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().expect("harness output");
    assert!(out.status.success(), "harness {op} failed");
    out.stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

#[derive(Default)]
struct Blob(Vec<u8>);
impl Blob {
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend(v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend(v.to_le_bytes());
        self
    }
    fn f32(&mut self, v: f32) -> &mut Self {
        self.0.extend(v.to_le_bytes());
        self
    }
    fn f32s(&mut self, v: &[f32]) -> &mut Self {
        v.iter().for_each(|x| self.0.extend(x.to_le_bytes()));
        self
    }
    fn record(&mut self, r: &SlotStepRecord) -> &mut Self {
        self.u64(r.x)
            .u64(r.target)
            .f32(r.t_curr)
            .f32(r.t_next)
            .f32(r.t_start)
            .f32(r.x0_lock);
        for v in [r.sde, r.seed, r.window, r.step, r.active, r.pad] {
            self.u32(v);
        }
        self
    }
}

fn assert_bits_eq(what: &str, c: &[f32], rust: &[f32]) {
    assert_eq!(c.len(), rust.len(), "{what}: lengths");
    for (i, (a, b)) in c.iter().zip(rust).enumerate() {
        assert_eq!(
            a.to_bits(),
            b.to_bits(),
            "{what}: element {i}: C {a} Rust {b}"
        );
    }
}

fn rel_rms(a: &[f32], b: &[f32]) -> f64 {
    let err: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    (err / norm.max(1e-30)).sqrt()
}

#[test]
fn noise_kernel_draws_the_rust_stream_bit_for_bit() {
    for key in [
        NoiseKey {
            seed: 0,
            window: 0,
            step: 0,
        },
        NoiseKey {
            seed: 7,
            window: 3,
            step: 2,
        },
        NoiseKey {
            seed: u32::MAX,
            window: 70_000,
            step: 33,
        },
    ] {
        let n = 1001;
        let c = run(
            "noise",
            &Blob::default()
                .u32(key.seed)
                .u32(key.window)
                .u32(key.step)
                .u64(n)
                .0,
        );
        let mut rust = vec![0.0f32; n as usize];
        fill_gaussian(key, 0, &mut rust);
        assert_bits_eq("noise", &c, &rust);
    }
}

fn host(l: &CpuLatents) -> Vec<f32> {
    l.as_slice().to_vec()
}

fn loop_latents(model: &BuiltinModel, seconds: usize) -> CpuLatents {
    let sr = SAMPLE_RATE as f32;
    let samples: Vec<f32> = (0..SAMPLE_RATE as usize * seconds)
        .flat_map(|i| {
            let t = i as f32 / sr;
            let beat = (t * 2.0).fract();
            let m = 0.3 * (std::f32::consts::TAU * 330.0 * t).sin() * (-beat * 4.0).exp()
                + 0.2 * (std::f32::consts::TAU * 55.0 * t).sin()
                + 0.4 * (-beat * 60.0).exp() * (std::f32::consts::TAU * 60.0 * t).sin();
            [m, 0.9 * m]
        })
        .collect();
    let view = crate::audio_clip::AudioView {
        samples: &samples,
        channels: 2,
        sample_rate: SAMPLE_RATE,
    };
    model.encode_source(view).expect("encode")
}

#[test]
fn start_kernel_matches_the_rust_slot_start() {
    let model = BuiltinModel::new();
    let src = loop_latents(&model, 2);
    let frames = model.latent_frames(&src);
    let fb = CpuLatents::from_host(host(&src).iter().map(|v| v * 0.5 + 0.1).collect());
    let key = NoiseKey {
        seed: 9,
        window: 4,
        step: 0,
    };
    for (with_src, with_fb, t) in [
        (true, true, 0.6),
        (true, false, 0.3),
        (false, true, 0.8),
        (false, false, 1.0),
    ] {
        let rust = model.start_slot(SlotStart {
            frames,
            source: with_src.then_some(&src),
            feedback: with_fb.then_some((&fb, 0.25)),
            t_start: t,
            noise: key,
        });
        let n = frames * 64;
        let mut blob = Blob::default();
        blob.u32(key.seed)
            .u32(key.window)
            .u32(key.step)
            .f32(t)
            .f32(0.25)
            .u64(n as u64);
        blob.u32(with_src as u32).u32(with_fb as u32);
        if with_src {
            blob.f32s(src.as_slice());
        }
        if with_fb {
            blob.f32s(fb.as_slice());
        }
        assert_bits_eq("start", &run("start", &blob.0), rust.as_slice());
    }
}

#[test]
fn denoise_kernel_matches_the_rust_batch_step() {
    let model = BuiltinModel::new();
    let src = loop_latents(&model, 2);
    let frames = model.latent_frames(&src);
    let (store, mut reader) = KnobStore::new();
    store.set("guidance", 1.6).unwrap();
    store.set("cfg_rescale", 0.3).unwrap();
    let knobs = reader.read().clone();
    let prompt = model.encode_prompt("dark techno 128 bpm").unwrap();
    let cond = Conditioning::prompt_only(1, "dark techno 128 bpm", prompt);
    let curve: Vec<f32> = (0..frames)
        .map(|f| (f as f32 / frames as f32).sin().abs())
        .collect();
    // Every slot below uses seed 5: one target.
    let target = model.target_for_seed(&cond, &knobs, frames, 5);
    for with_src in [true, false] {
        // Slots: SDE and Euler, one finished (t = 0, left alone).
        let specs = [
            (0.9f32, 0.7f32, true, 0.0f32),
            (0.5, 0.3, false, 0.4),
            (0.2, 0.0, true, 0.8),
            (0.0, 0.0, false, 0.0),
        ];
        let mut xs: Vec<CpuLatents> = specs
            .iter()
            .enumerate()
            .map(|(s, _)| {
                let mut v = vec![0.0f32; frames * 64];
                fill_gaussian(
                    NoiseKey {
                        seed: 1,
                        window: s as u32,
                        step: 0,
                    },
                    0,
                    &mut v,
                );
                CpuLatents::from_host(v)
            })
            .collect();
        let before: Vec<Vec<f32>> = xs.iter().map(host).collect();
        let mut blob = Blob::default();
        blob.u32(specs.len() as u32)
            .u64((frames * 64) as u64)
            .f32s(&target);
        blob.u32(with_src as u32);
        if with_src {
            blob.f32s(src.as_slice());
        }
        blob.u64(frames as u64).f32s(&curve);
        for (s, &(t, tn, sde, lock)) in specs.iter().enumerate() {
            let rec = SlotStepRecord {
                t_curr: t,
                t_next: tn,
                t_start: 0.7,
                x0_lock: if with_src { lock } else { 0.0 },
                sde: sde as u32,
                seed: 5,
                window: s as u32,
                step: 3,
                active: (t > 0.0) as u32,
                ..Default::default()
            };
            blob.record(&rec).f32s(&before[s]);
        }
        let c = run("denoise", &blob.0);
        let device_curve = curve.clone();
        let mut batch: Vec<SlotStep<'_, CpuLatents>> = xs
            .iter_mut()
            .zip(&specs)
            .enumerate()
            .map(|(s, (x, &(t, tn, sde, lock)))| SlotStep {
                x,
                t_curr: t,
                t_next: tn,
                t_start: 0.7,
                sde,
                x0_lock: lock,
                noise: NoiseKey {
                    seed: 5,
                    window: s as u32,
                    step: 3,
                },
            })
            .collect();
        let shared = StepShared::<BuiltinModel> {
            cond: &cond,
            knobs: &knobs,
            source: with_src.then_some(&src),
            sde_curve: Some(&device_curve),
        };
        model.denoise_batch(&mut batch, &shared).expect("denoise");
        drop(batch);
        let rust: Vec<f32> = xs.iter().flat_map(host).collect();
        assert_bits_eq("denoise", &c, &rust);
        assert_ne!(rust, before.concat(), "the step changed nothing");
    }
}

/// Decodes a whole loop on the C harness.
pub(super) fn c_decode(
    latents: &[f32],
    total: usize,
    gains: &[f32; 8],
    start: usize,
    frames: usize,
) -> Vec<f32> {
    c_decode_chunk(latents, total, None, gains, start, frames)
}

/// A walk chunk's surroundings for the C harness: the latents before and after it (host,
/// frame-major), its first frame in the loop and the loop's length in frames.
pub(super) struct CPlace<'a> {
    pub before: &'a [f32],
    pub after: &'a [f32],
    pub loop_offset: usize,
    pub loop_frames: usize,
}

/// Decodes a chunk (or, with no place, a whole loop) on the C harness.
pub(super) fn c_decode_chunk(
    latents: &[f32],
    total: usize,
    place: Option<&CPlace<'_>>,
    gains: &[f32; 8],
    start: usize,
    frames: usize,
) -> Vec<f32> {
    let tables = DecoderTables::new(SAMPLE_RATE, FRAME_RATE);
    let mut blob = Blob::default();
    blob.u64(total as u64).u64(start as u64).u64(frames as u64);
    blob.u32(SAMPLE_RATE / FRAME_RATE).f32(SAMPLE_RATE as f32);
    blob.f32s(gains).f32s(latents);
    match place {
        Some(p) => {
            blob.u64((p.before.len() / 64) as u64).f32s(p.before);
            blob.u64((p.after.len() / 64) as u64).f32s(p.after);
            blob.u64(p.loop_offset as u64).u64(p.loop_frames as u64);
        }
        None => {
            blob.u64(0).u64(0).u64(0).u64(total as u64);
        }
    }
    blob.0.extend(&tables.bin_band);
    blob.f32s(&tables.phase_sin).f32s(&tables.phase_cos);
    blob.f32s(&tables.twiddle_cos)
        .f32s(&tables.twiddle_sin)
        .f32s(&tables.window);
    run("decode", &blob.0)
}

#[test]
fn decode_kernels_match_the_rust_decoder_within_tolerance() {
    let model = BuiltinModel::new();
    let src = loop_latents(&model, 2);
    let total = model.latent_frames(&src);
    let hop = (SAMPLE_RATE / FRAME_RATE) as usize;
    let cases: [([f32; 8], usize, usize); 4] = [
        ([1.0; 8], 0, 3),
        ([1.0; 8], total - 2, 4), // wraps at the loop end
        ([0.0, 0.0, 0.0, 0.0, 1.0, 0.7, 0.0, 0.0], 10, 2), // voices alone
        ([0.5, 1.0, 0.0, 1.2, 0.0, 0.0, 1.5, 0.3], 20, 3), // envelope and percussion
    ];
    for (gains, start, frames) in cases {
        let mut rust = vec![0.0f32; frames * hop * 2];
        model
            .decode_window(&src, &gains, false, start, frames, &mut rust)
            .unwrap();
        let c = c_decode(src.as_slice(), total, &gains, start, frames);
        let err = rel_rms(&c, &rust);
        eprintln!("decode {gains:?} start {start} frames {frames}: relative RMS error {err:.2e}");
        let energy: f64 = rust.iter().map(|v| f64::from(*v).powi(2)).sum();
        assert!(
            energy > 1e-3,
            "case {gains:?} {start}: the window is silent"
        );
        assert!(
            err < DECODE_REL_TOL,
            "case {gains:?} start {start}: relative RMS error {err:.2e}"
        );
    }
}

#[test]
fn decode_kernels_match_the_rust_decoder_in_a_walk_chunk() {
    use crate::model::ChunkPlace;
    let model = BuiltinModel::new();
    let src = loop_latents(&model, 2);
    let total = model.latent_frames(&src);
    let hop = (SAMPLE_RATE / FRAME_RATE) as usize;
    // The loop cut into three chunks; the middle one decoded at both of its edges.
    let third = total / 3;
    let before = model.slice_latents(&src, 0, third);
    let chunk = model.slice_latents(&src, third, third);
    let after = model.slice_latents(&src, 2 * third, total - 2 * third);
    let gains = [1.0, 0.8, 1.0, 1.2, 1.0, 0.7, 1.5, 0.3];
    for (start, frames) in [(0, 3), (third - 2, 4)] {
        let mut rust = vec![0.0f32; frames * hop * 2];
        let place = ChunkPlace {
            before: &before,
            after: &after,
            loop_offset: third,
            loop_frames: total,
        };
        model
            .decode_chunk_window(
                &chunk,
                Some(&place),
                &gains,
                false,
                start,
                frames,
                &mut rust,
            )
            .unwrap();
        let c_place = CPlace {
            before: before.as_slice(),
            after: after.as_slice(),
            loop_offset: third,
            loop_frames: total,
        };
        let c = c_decode_chunk(
            chunk.as_slice(),
            third,
            Some(&c_place),
            &gains,
            start,
            frames,
        );
        let err = rel_rms(&c, &rust);
        eprintln!("walk chunk decode start {start} frames {frames}: relative RMS error {err:.2e}");
        // The neighbours shape the edges: the chunk decoded alone differs there.
        let mut alone = vec![0.0f32; rust.len()];
        model
            .decode_window(&chunk, &gains, false, start, frames, &mut alone)
            .unwrap();
        assert!(
            rel_rms(&alone, &rust) > 10.0 * DECODE_REL_TOL,
            "start {start}"
        );
        assert!(
            err < DECODE_REL_TOL,
            "start {start}: relative RMS error {err:.2e}"
        );
    }
}
