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
use crate::knobs::{KnobSnapshot, KnobStore};
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

/// A streaming pipeline on `model` over the test audio as its source, and the knobs it
/// runs with: depth 4, SDE amplitude 0.6 with `sde`, else 0.
fn pipeline_on<M: Model>(model: &Arc<M>, sde: bool) -> (StreamPipeline<M>, KnobSnapshot) {
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
    let mut p = StreamPipeline::new(Arc::clone(model), model.latent_frames(&source));
    p.set_source(Some(source));
    (p, knobs)
}

/// Runs the streaming pipeline for `ticks`; returns finished latents (host) and the decoded
/// window of each.
fn stream<M: Model<Cond = crate::model::builtin::BuiltinCond>>(
    model: Arc<M>,
    ticks: usize,
    sde: bool,
) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let (mut p, knobs) = pipeline_on(&model, sde);
    let cond = Conditioning::default();
    let (mut lat, mut dec) = (Vec::new(), Vec::new());
    let mut fin: Vec<FinishedLatent<M::Latents>> = Vec::new();
    for _ in 0..ticks {
        fin.clear();
        p.tick(&knobs, &cond, &mut fin).expect("tick");
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

/// The middle of a source cut into three walk chunks, decoded at both of its edges with
/// its neighbours around it ([`crate::model::ChunkPlace`]): the decoded audio of each edge.
fn walk_chunk_edges<M: Model>(model: &M) -> Vec<Vec<f32>> {
    let a = audio();
    let view = AudioView {
        samples: &a,
        channels: 2,
        sample_rate: 48_000,
    };
    let source = model.encode_source(view).unwrap();
    let total = model.latent_frames(&source);
    let third = total / 3;
    let before = model.slice_latents(&source, 0, third);
    let chunk = model.slice_latents(&source, third, third);
    let after = model.slice_latents(&source, 2 * third, total - 2 * third);
    let place = crate::model::ChunkPlace {
        before: &before,
        after: &after,
        loop_offset: third,
        loop_frames: total,
    };
    let gains = [1.0, 0.8, 1.0, 1.2, 1.0, 0.7, 1.5, 0.3];
    [(0, 3), (third - 2, 4)]
        .into_iter()
        .map(|(start, frames)| {
            let mut out = vec![0.0f32; frames * 1920 * 2];
            model
                .decode_chunk_window(&chunk, Some(&place), &gains, false, start, frames, &mut out)
                .unwrap();
            out
        })
        .collect()
}

#[test]
fn gpu_decodes_a_walk_chunk_with_its_neighbours_like_the_cpu() {
    let Some(gpu) = device() else { return };
    let cpu = walk_chunk_edges(&BuiltinModel::new());
    let on_gpu = walk_chunk_edges(&gpu);
    for (i, (c, g)) in cpu.iter().zip(&on_gpu).enumerate() {
        let e = rel_rms(g, c);
        eprintln!("walk chunk edge {i}: relative RMS {e:.2e}");
        assert!(e < DECODE_REL_TOL, "edge {i}: {e:.2e}");
    }
    assert!(gpu.fault().is_none(), "{:?}", gpu.fault());
}

/// After warm-up (the staging buffers, the target, the curve and the slot latents exist), a
/// tick makes no driver call that may block the host, and a decode exactly one (the wait
/// for its audio). Every such call is counted by the phase it is made in (`host_sync`), so
/// a blocking call added to the tick path shows up here.
#[test]
fn the_tick_does_not_block_the_host() {
    let Some(gpu) = device() else { return };
    let gpu = Arc::new(gpu);
    let (mut p, knobs) = pipeline_on(&gpu, true);
    let cond = Conditioning::default();
    let mut fin: Vec<FinishedLatent<super::CudaLatents>> = Vec::new();
    let mut out = vec![0.0f32; 9 * 1920 * 2];
    // One tick and the decodes of what it finished; returns how many windows it decoded.
    let mut tick = || {
        fin.clear();
        p.tick(&knobs, &cond, &mut fin).expect("tick");
        for f in &fin {
            gpu.decode_window(&f.latents, &[1.0; 8], false, 5, 9, &mut out)
                .unwrap();
        }
        fin.len() as u64
    };
    // Warm up until a window has been decoded (its buffers exist too).
    let mut warm = 0;
    while warm < 64 && tick() == 0 {
        warm += 1;
    }
    assert!(warm < 64, "no latent finished in 64 ticks");
    let before = gpu.host_syncs();
    let decodes: u64 = (0..32).map(|_| tick()).sum();
    let after = gpu.host_syncs();
    eprintln!("host syncs: before {before:?} after {after:?}, {decodes} windows decoded");
    assert_eq!(
        after.tick, before.tick,
        "a tick made a blocking driver call"
    );
    assert!(decodes > 0);
    assert_eq!(
        after.decode - before.decode,
        decodes,
        "a decode waits exactly once, for its audio"
    );
    assert!(
        gpu.device_times().and_then(|d| d.tick_s).is_some(),
        "tick events resolved"
    );
    assert!(gpu.fault().is_none(), "{:?}", gpu.fault());
}

/// The GPU benchmark (`scripts/gpu-check.sh` runs it with `--ignored`): tick and decode
/// times from CUDA events and host syncs per tick, at depth 4/8, steps 8/16, loops of 60 and
/// 240 s. One JSON line per configuration on stdout (prefixed `BENCH `).
#[test]
#[ignore = "GPU benchmark: run by scripts/gpu-check.sh"]
fn gpu_benchmark() {
    let Some(gpu) = device() else { return };
    let gpu = Arc::new(gpu);
    let ticks: usize = std::env::var("LATENTD_BENCH_TICKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    for loop_s in [60usize, 240] {
        let samples: Vec<f32> = audio()
            .iter()
            .copied()
            .cycle()
            .take(48_000 * 2 * loop_s)
            .collect();
        let view = AudioView {
            samples: &samples,
            channels: 2,
            sample_rate: 48_000,
        };
        let source = Arc::new(gpu.encode_source(view).unwrap());
        let frames = gpu.latent_frames(&source);
        for depth in [4u32, 8] {
            for steps in [8u32, 16] {
                let (store, mut reader) = KnobStore::new();
                store.set("depth", f64::from(depth)).unwrap();
                store.set("steps", f64::from(steps)).unwrap();
                store.set("sde_amp", 0.5).unwrap();
                let knobs = reader.read().clone();
                let mut p = StreamPipeline::new(Arc::clone(&gpu), frames);
                p.set_source(Some(Arc::clone(&source)));
                let cond = Conditioning::default();
                let mut fin: Vec<FinishedLatent<super::CudaLatents>> = Vec::new();
                let (mut tick_ms, mut decode_ms) = (Vec::new(), Vec::new());
                let mut out = vec![0.0f32; 9 * 1920 * 2];
                let before = gpu.host_syncs();
                let mut launch_ms = Vec::new();
                for _ in 0..ticks {
                    fin.clear();
                    let t0 = std::time::Instant::now();
                    p.tick(&knobs, &cond, &mut fin).expect("tick");
                    launch_ms.push(t0.elapsed().as_secs_f64() * 1e3);
                    if let Some(t) = gpu.device_times().and_then(|d| d.tick_s) {
                        tick_ms.push(t * 1e3);
                    }
                    for f in &fin {
                        gpu.decode_window(&f.latents, &[1.0; 8], false, 0, 9, &mut out)
                            .unwrap();
                        if let Some(t) = gpu.device_times().and_then(|d| d.decode_s) {
                            decode_ms.push(t * 1e3);
                        }
                    }
                }
                let after = gpu.host_syncs();
                let pct = |v: &mut Vec<f64>, q: f64| {
                    v.sort_by(f64::total_cmp);
                    v.get(((v.len() as f64 - 1.0) * q).round() as usize)
                        .copied()
                        .unwrap_or(f64::NAN)
                };
                println!(
                    "BENCH {{\"device\":\"{}\",\"loop_s\":{loop_s},\"depth\":{depth},\"steps\":{steps},\"ticks\":{ticks},\"tick_ms_p50\":{:.4},\"tick_ms_p95\":{:.4},\"host_launch_ms_p50\":{:.4},\"decode_ms_p50\":{:.4},\"decode_ms_p95\":{:.4},\"decodes\":{},\"tick_host_syncs_per_tick\":{:.4},\"decode_host_syncs_per_decode\":{:.4}}}",
                    gpu.device_name(),
                    pct(&mut tick_ms, 0.5),
                    pct(&mut tick_ms, 0.95),
                    pct(&mut launch_ms, 0.5),
                    pct(&mut decode_ms, 0.5),
                    pct(&mut decode_ms, 0.95),
                    decode_ms.len(),
                    (after.tick - before.tick) as f64 / ticks as f64,
                    (after.decode - before.decode) as f64 / decode_ms.len().max(1) as f64,
                );
            }
        }
    }
    assert!(gpu.fault().is_none(), "{:?}", gpu.fault());
}
