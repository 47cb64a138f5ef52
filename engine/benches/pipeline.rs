//! Pipeline throughput and decode cost of the built-in model.
//!
//! - `tick/depth4_steps8_60s`: one pipeline tick (4 slots, one batched denoise) over a 60 s loop
//!   (1500 latent frames); at steps/depth = 2 ticks per finished latent, finished latents/s is
//!   half the ticks/s. Run for ODE and SDE.
//! - `decode/window_0.36s`: decode of a 9-frame (0.36 s) window.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use latentd_engine::audio_clip::AudioView;
use latentd_engine::conditioning::Conditioner;
use latentd_engine::conditioning::PromptSpec;
use latentd_engine::knobs::KnobStore;
use latentd_engine::model::Model;
use latentd_engine::model::builtin::BuiltinModel;
use latentd_engine::pipeline::StreamPipeline;

fn source_loop(seconds: usize) -> Vec<f32> {
    (0..48_000 * seconds)
        .flat_map(|i| {
            let t = i as f32 / 48_000.0;
            let f = [220.0, 330.0, 392.0, 440.0][(t * 4.0) as usize % 4];
            let v = 0.3 * (std::f32::consts::TAU * f * t).sin()
                + 0.2 * (std::f32::consts::TAU * 55.0 * t).sin();
            [v, v]
        })
        .collect()
}

fn bench_pipeline(c: &mut Criterion) {
    let model = Arc::new(BuiltinModel::new());
    let audio = source_loop(60);
    let source = Arc::new(
        model
            .encode_source(AudioView {
                samples: &audio,
                channels: 2,
                sample_rate: 48_000,
            })
            .unwrap(),
    );
    let (conditioner, mut cond_reader) = Conditioner::new(Arc::clone(&model), None);
    conditioner
        .set_prompt(PromptSpec {
            tags: "fast bright drums pluck bass".into(),
            tags_b: None,
        })
        .unwrap();
    for (name, sampler) in [("ode", 0.0), ("sde", 1.0)] {
        let (knobs, mut reader) = KnobStore::new();
        knobs.set("sampler", sampler).unwrap();
        knobs.set("x0_target", 0.2).unwrap();
        let snapshot = reader.read().clone();
        let cond = Arc::clone(cond_reader.read());
        let mut pipeline = StreamPipeline::new(Arc::clone(&model), 1500);
        pipeline.set_source(Some(Arc::clone(&source)));
        let mut finished = Vec::new();
        for _ in 0..16 {
            pipeline
                .tick(&snapshot, &cond, &mut finished)
                .expect("tick"); // warm: 4 in flight
        }
        c.bench_function(&format!("tick/depth4_steps8_60s_{name}"), |b| {
            b.iter(|| {
                finished.clear();
                pipeline
                    .tick(&snapshot, &cond, &mut finished)
                    .expect("tick");
                black_box(finished.len())
            })
        });
    }
    let mut out = vec![0.0f32; 9 * 1920 * 2];
    let gains = [1.0f32; 8];
    let mut start = 0usize;
    c.bench_function("decode/window_0.36s", |b| {
        b.iter(|| {
            start = (start + 9) % 1500;
            model
                .decode_window(&source, &gains, false, start, 9, &mut out)
                .unwrap();
            black_box(out[0])
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).sample_size(20);
    targets = bench_pipeline
}
criterion_main!(benches);
