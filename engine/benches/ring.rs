//! Ring benchmarks: one period read (the audio callback's whole cost) and one window write
//! with edge crossfades (the engine's frontier write).
//!
//! Run: `cargo bench -p latentd-engine --bench ring`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use latentd_engine::PlayheadRing;

const RATE: u32 = 48_000;

fn ring_60s() -> PlayheadRing {
    let samples = (0..60 * RATE as usize)
        .flat_map(|i| {
            let v = (i as f32 * 0.01).sin() * 0.5;
            [v, -v]
        })
        .collect();
    PlayheadRing::from_interleaved(samples, 2, RATE, PlayheadRing::guard_for_period(1024)).unwrap()
}

fn read_period(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring_read_period");
    for period in [64usize, 128, 256, 512, 1024] {
        let (_writer, mut reader) = ring_60s().split();
        let (mut left, mut right) = (vec![0.0f32; period], vec![0.0f32; period]);
        group.throughput(Throughput::Elements(period as u64));
        group.bench_with_input(BenchmarkId::from_parameter(period), &period, |b, _| {
            b.iter(|| {
                reader.read_planar(&mut [&mut left[..], &mut right[..]]);
                black_box(left[0]);
            })
        });
    }
    group.finish();
}

fn write_window(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring_write_window");
    for (name, seconds) in [("0.36s", 0.36f64), ("1s", 1.0)] {
        let frames = (seconds * RATE as f64) as usize;
        let ring = ring_60s();
        let (mut writer, _reader) = ring.split();
        let window: Vec<f32> = (0..frames * 2).map(|i| (i as f32 * 0.003).cos()).collect();
        let mut start = 10 * RATE as usize;
        group.throughput(Throughput::Elements(frames as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                start = (start + 4_801) % (50 * RATE as usize) + 5 * RATE as usize;
                black_box(writer.write(start, &window).unwrap());
            })
        });
    }
    group.finish();
}

criterion_group!(benches, read_period, write_window);
criterion_main!(benches);
