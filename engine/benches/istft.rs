//! The host's inverse STFT for a decoder with `output = "stft"`
//! (`model::bundle::istft::Istft`) at latentd's own model geometry: 48 kHz, n_fft 1920,
//! hop 480, one 1 s stereo decode window (25 latent frames = 100 STFT frames per channel).
//!
//! - `istft/window_1s_stereo_1920_480`: one `Istft::invert` of that window.
//!
//! Before criterion's runs it prints p50 / p99 over a fixed count of timed calls.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use latentd_engine::model::bundle::istft::Istft;

const N_FFT: usize = 1920;
const HOP: usize = 480;
const CHANNELS: usize = 2;
/// STFT frames of a 1 s window at 48 kHz.
const FRAMES: usize = 100;
/// Timed calls behind the printed percentiles.
const TIMED_CALLS: usize = 200;

fn bench_istft(c: &mut Criterion) {
    let mut istft = Istft::new(N_FFT, HOP, CHANNELS, FRAMES);
    let len = CHANNELS * FRAMES * istft.bins() * 2;
    // A deterministic, non-trivial spectrum.
    let spec: Vec<f32> = (0..len)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let mut times: Vec<Duration> = (0..TIMED_CALLS)
        .map(|_| {
            let t = Instant::now();
            black_box(istft.invert(black_box(&spec)));
            t.elapsed()
        })
        .collect();
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    println!(
        "istft/window_1s_stereo_1920_480: p50 {:.3} ms, p99 {:.3} ms",
        at(0.5),
        at(0.99)
    );
    c.bench_function("istft/window_1s_stereo_1920_480", |b| {
        b.iter(|| black_box(istft.invert(black_box(&spec)))[0])
    });
}

criterion_group!(benches, bench_istft);
criterion_main!(benches);
