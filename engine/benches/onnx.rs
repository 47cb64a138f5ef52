//! `OnnxModel` on the CPU provider, one intra-op thread, with the random-weight
//! ACE-Step-shaped bundle (DiT D=192, 4 layers; `make_test_bundle.py --preset
//! acestep-shaped`), written into a temp folder (or `LATENTD_BENCH_BUNDLE=<dir>`):
//!
//! - `onnx/tick_depth4_steps8_10s`: one pipeline tick at steady state: 4 slots in flight,
//!   one batched DiT run (B=4, T=250) plus the host sampler. At steps/depth = 2 ticks per
//!   finished latent, finished latents/s is half the ticks/s.
//! - `onnx/decode_window_1s`: one windowed decode: 9 kept frames + 8 context frames each
//!   side = a 25-frame (1 s) decoder run.
//!
//! Before criterion's runs, each prints p50 / p99 over a fixed count of timed calls (the
//! issue asks for percentiles, criterion reports means). Skips with a message when the ONNX
//! Runtime library or the bundle tooling is absent.

use latentd_tests::test_bundles;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use latentd_engine::conditioning::{ConditionEncoder, Conditioning};
use latentd_engine::knobs::KnobStore;
use latentd_engine::model::Model;
use latentd_engine::model::bundle::onnx::{OnnxModel, OnnxOptions};
use latentd_engine::pipeline::StreamPipeline;

/// Latent frames of the 10 s loop.
const LOOP_FRAMES: usize = 250;
/// Timed calls behind the printed percentiles.
const TIMED_CALLS: usize = 100;

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at =
        |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    (at(0.5), at(0.99))
}

fn bench_onnx(c: &mut Criterion) {
    let Some(library) = test_bundles::library() else {
        return;
    };
    let (_tmp, dir) = match std::env::var_os("LATENTD_BENCH_BUNDLE") {
        Some(d) => (None, std::path::PathBuf::from(d)),
        None => {
            let Some(t) = test_bundles::bundle(&["--preset", "acestep-shaped"]) else {
                return;
            };
            let d = t.path().to_path_buf();
            (Some(t), d)
        }
    };
    let options = OnnxOptions {
        library: Some(library),
        ..OnnxOptions::default()
    };
    let model = Arc::new(OnnxModel::load(&dir, options).expect("bench bundle loads"));
    println!("onnx bench: {}", model.describe());
    let a = model.encode_prompt("slow warm piano pad").expect("prompt");
    let cond = Conditioning::prompt_only(1, "slow warm piano pad", a);
    let (knobs, mut reader) = KnobStore::new();
    knobs.set("depth", 4.0).unwrap();
    knobs.set("steps", 8.0).unwrap();
    let snapshot = reader.read().clone();
    let mut pipeline = StreamPipeline::new(Arc::clone(&model), LOOP_FRAMES);
    let mut finished = Vec::new();
    for _ in 0..16 {
        pipeline
            .tick(&snapshot, &cond, &mut finished)
            .expect("tick"); // warm: 4 in flight
    }
    // Steady state: every other tick one slot finishes (3 left after it) and the next one
    // starts at the following tick's beginning, so each tick's batch holds 4.
    assert!(pipeline.in_flight() >= 3);
    let ticks: Vec<Duration> = (0..TIMED_CALLS)
        .map(|_| {
            let t0 = Instant::now();
            pipeline
                .tick(&snapshot, &cond, &mut finished)
                .expect("tick");
            t0.elapsed()
        })
        .collect();
    let (p50, p99) = percentiles(ticks);
    println!(
        "onnx/tick_depth4_steps8_10s: p50 {p50:.2} ms, p99 {p99:.2} ms, {:.1} latents/s",
        1e3 / p50 / 2.0
    );
    let latents = finished
        .last()
        .map(|f| Arc::clone(&f.latents))
        .expect("a latent finished");
    let mut group = c.benchmark_group("onnx");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("tick_depth4_steps8_10s", |b| {
        b.iter(|| {
            pipeline
                .tick(&snapshot, &cond, &mut finished)
                .expect("tick");
            finished.clear();
        })
    });

    let g = model.geometry();
    let kept = 9;
    let mut out = vec![0.0f32; kept * g.samples_per_latent_frame() * g.audio_channels];
    let decodes: Vec<Duration> = (0..TIMED_CALLS)
        .map(|i| {
            let t0 = Instant::now();
            model
                .decode_window(
                    &latents,
                    &[1.0; 8],
                    false,
                    (i * kept) % LOOP_FRAMES,
                    kept,
                    &mut out,
                )
                .expect("decode");
            t0.elapsed()
        })
        .collect();
    let (p50, p99) = percentiles(decodes);
    println!("onnx/decode_window_1s: p50 {p50:.2} ms, p99 {p99:.2} ms");
    group.bench_function("decode_window_1s", |b| {
        let mut at = 0;
        b.iter(|| {
            at = (at + kept) % LOOP_FRAMES;
            model
                .decode_window(black_box(&latents), &[1.0; 8], false, at, kept, &mut out)
                .expect("decode")
        })
    });
    group.finish();
}

criterion_group!(benches, bench_onnx);
criterion_main!(benches);
