//! The failover path, driven by the named GPU mock ([`MockFaultyDevice`]): before the fault
//! the failover model is the CPU model exactly; at the fault the engine keeps producing
//! audible latents on the CPU, and the status says so.

use std::sync::Arc;

use super::*;
use crate::conditioning::Conditioning;
use crate::knobs::KnobStore;
use crate::pipeline::{FinishedLatent, StreamPipeline};

fn source_audio() -> Vec<f32> {
    (0..48_000 * 2)
        .flat_map(|i| {
            let t = i as f32 / 48_000.0;
            let v =
                0.3 * (std::f32::consts::TAU * 220.0 * t).sin() * (-(t * 2.0).fract() * 5.0).exp();
            [v, v]
        })
        .collect()
}

fn view(s: &[f32]) -> AudioView<'_> {
    AudioView {
        samples: s,
        channels: 2,
        sample_rate: 48_000,
    }
}

/// Runs `ticks` ticks, returns each finished latent's host values.
fn run<M: Model<Cond = BuiltinCond>>(model: Arc<M>, ticks: usize, sde: bool) -> Vec<Vec<f32>> {
    let (store, mut reader) = KnobStore::new();
    store.set("sde_amp", if sde { 0.5 } else { 0.0 }).unwrap();
    let knobs = reader.read().clone();
    let audio = source_audio();
    let source = Arc::new(model.encode_source(view(&audio)).unwrap());
    let frames = model.latent_frames(&source);
    let mut pipeline = StreamPipeline::new(Arc::clone(&model), frames);
    pipeline.set_source(Some(source));
    let cond = Conditioning::default();
    let mut out = Vec::new();
    let mut finished: Vec<FinishedLatent<M::Latents>> = Vec::new();
    for _ in 0..ticks {
        finished.clear();
        // The tick the device fails in fails (its slots unchanged); the next runs on the CPU.
        let _ = pipeline.tick(&knobs, &cond, &mut finished);
        for f in &finished {
            let mut audio = vec![0.0f32; 4 * 1920 * 2];
            model
                .decode_window(&f.latents, &[1.0; 8], false, 0, 4, &mut audio)
                .expect("every finished latent decodes, before and after the fault");
            assert!(
                audio.iter().any(|v| v.abs() > 1e-4),
                "a finished latent decoded to silence"
            );
            out.push(model.latents_to_host(&f.latents));
        }
    }
    out
}

#[test]
fn before_the_fault_the_failover_is_the_cpu_model_exactly() {
    let cpu = run(Arc::new(BuiltinModel::new()), 24, false);
    let failover = FailoverModel::new(MockFaultyDevice::new(1000));
    let status = failover.status();
    let dev = run(Arc::new(failover), 24, false);
    assert!(!cpu.is_empty());
    assert_eq!(cpu, dev);
    assert!(!status.fell_back());
    assert!(status.describe().starts_with("mock-faulty-device"));
}

#[test]
fn a_device_fault_moves_the_engine_to_the_cpu_and_says_so() {
    for sde in [false, true] {
        let failover = Arc::new(FailoverModel::new(MockFaultyDevice::new(10)));
        let status = failover.status();
        let latents = run(Arc::clone(&failover), 40, sde);
        // The pipeline kept finishing latents after the fault (tick 10): not silenced.
        let cpu = run(Arc::new(BuiltinModel::new()), 40, sde);
        assert_eq!(
            latents.len(),
            cpu.len(),
            "the fallback finished as many latents"
        );
        assert!(status.fell_back());
        let reason = status.fallback_reason().unwrap();
        assert!(reason.contains("device lost after 10 ticks"), "{reason}");
        assert!(
            status
                .describe()
                .starts_with("builtin-cpu (fallback from mock-faulty-device")
        );
        let (rescued, renoised) = status.carried();
        assert!(
            rescued >= 1,
            "the source has a host copy and was carried over"
        );
        assert!(
            renoised >= 1,
            "in-flight slots lost with the device were re-noised"
        );
        // Latents started after the fault run on the CPU from the same keys: identical.
        assert_eq!(latents.last(), cpu.last());
        assert_eq!(
            failover.device_times(),
            None,
            "no device times after the fallback"
        );
    }
}
