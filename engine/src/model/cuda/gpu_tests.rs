//! GPU parity and latency checks for [`CudaModel`]. They need a CUDA driver and device: with
//! none they print why and pass without checking anything (CI has no GPU;
//! `scripts/gpu-check.sh` runs them on a GPU machine, where `LATENTD_REQUIRE_GPU=1` makes a
//! missing device a failure instead).
//!
//! Tolerances: latents `LATENT_REL_TOL` relative RMS (the noise words are exact; the GPU's
//! `logf`/`sinf`/`cosf` may differ by an ulp or two); decoded audio
//! [`super::c_parity::DECODE_REL_TOL`]. Run to run on one GPU: bit-identical.

use std::sync::Arc;

use super::c_parity::DECODE_REL_TOL;
use super::{CudaModel, cuda_available};
use crate::audio_clip::AudioView;
use crate::conditioning::Conditioning;
use crate::knobs::KnobStore;
use crate::model::Model;
use crate::model::builtin::BuiltinModel;
use crate::pipeline::{FinishedLatent, StreamPipeline};

/// Relative RMS error allowed between GPU and CPU latents.
const LATENT_REL_TOL: f64 = 1e-4;

fn device() -> Option<CudaModel> {
    if !cuda_available() {
        let msg = "SKIPPED: no CUDA driver or device here (GPU test; run scripts/gpu-check.sh on a GPU machine)";
        assert!(std::env::var("LATENTD_REQUIRE_GPU").is_err(), "{msg}");
        eprintln!("{msg}");
        return None;
    }
    Some(CudaModel::new(0).expect("a CUDA device is present but the model failed to start"))
}

fn audio() -> Vec<f32> {
    (0..48_000 * 4)
        .flat_map(|i| {
            let t = i as f32 / 48_000.0;
            let beat = (t * 2.0).fract();
            let v = 0.3 * (std::f32::consts::TAU * 330.0 * t).sin() * (-beat * 4.0).exp()
                + 0.4 * (-beat * 60.0).exp() * (std::f32::consts::TAU * 60.0 * t).sin();
            [v, 0.8 * v]
        })
        .collect()
}

fn rel_rms(a: &[f32], b: &[f32]) -> f64 {
    let err: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    (err / norm.max(1e-30)).sqrt()
}

/// Runs the streaming pipeline for `ticks`; returns finished latents (host) and the decoded
/// window of each.
fn stream<M: Model<Cond = crate::model::builtin::BuiltinCond>>(
    model: Arc<M>,
    ticks: usize,
    sde: bool,
) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let (store, mut reader) = KnobStore::new();
    store.set("sde_amp", if sde { 0.6 } else { 0.0 }).unwrap();
    store.set("depth", 4.0).unwrap();
    let knobs = reader.read().clone();
    let a = audio();
    let view = AudioView {
        samples: &a,
        channels: 2,
        sample_rate: 48_000,
    };
    let source = Arc::new(model.encode_source(view).unwrap());
    let frames = model.latent_frames(&source);
    let mut p = StreamPipeline::new(Arc::clone(&model), frames);
    p.set_source(Some(source));
    let cond = Conditioning::default();
    let (mut lat, mut dec) = (Vec::new(), Vec::new());
    let mut fin: Vec<FinishedLatent<M::Latents>> = Vec::new();
    for _ in 0..ticks {
        fin.clear();
        p.tick(&knobs, &cond, &mut fin);
        for f in &fin {
            let mut out = vec![0.0f32; 9 * 1920 * 2];
            model
                .decode_window(&f.latents, &[1.0; 8], false, 5, 9, &mut out)
                .unwrap();
            lat.push(model.latents_to_host(&f.latents));
            dec.push(out);
        }
    }
    (lat, dec)
}

#[test]
fn gpu_matches_cpu_within_tolerance_and_is_bit_stable() {
    let Some(gpu) = device() else { return };
    eprintln!("device: {}", gpu.device_name());
    let gpu = Arc::new(gpu);
    for sde in [false, true] {
        let (cl, cd) = stream(Arc::new(BuiltinModel::new()), 24, sde);
        let (gl, gd) = stream(Arc::clone(&gpu), 24, sde);
        let (gl2, gd2) = stream(Arc::clone(&gpu), 24, sde);
        assert_eq!(cl.len(), gl.len());
        assert!(!cl.is_empty());
        for (i, (c, g)) in cl.iter().zip(&gl).enumerate() {
            let e = rel_rms(g, c);
            eprintln!("sde {sde} latent {i}: relative RMS {e:.2e}");
            assert!(e < LATENT_REL_TOL, "latent {i}: {e:.2e}");
        }
        for (i, (c, g)) in cd.iter().zip(&gd).enumerate() {
            let e = rel_rms(g, c);
            eprintln!("sde {sde} window {i}: relative RMS {e:.2e}");
            assert!(e < DECODE_REL_TOL, "window {i}: {e:.2e}");
        }
        let bits = |v: &Vec<Vec<f32>>| v.iter().flatten().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&gl), bits(&gl2), "latents differ run to run");
        assert_eq!(bits(&gd), bits(&gd2), "audio differs run to run");
    }
    assert!(gpu.fault().is_none(), "{:?}", gpu.fault());
}

#[test]
fn the_tick_does_not_block_the_host() {
    let Some(gpu) = device() else { return };
    let gpu = Arc::new(gpu);
    let before = gpu.host_syncs();
    let _ = stream(Arc::clone(&gpu), 32, true);
    let after = gpu.host_syncs();
    eprintln!("host syncs: before {before:?} after {after:?}");
    assert_eq!(after.tick, before.tick, "a tick waited for the device");
    assert!(
        gpu.device_times().and_then(|d| d.tick_s).is_some(),
        "tick events resolved"
    );
}
