//! A panic inside the tick, in simulated time: caught, counted, the pipeline restarted,
//! and the ring keeps playing (no silence) while the engine keeps writing afterwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;
use crate::audio_clip::AudioView;
use crate::conditioning::EncodeError;
use crate::model::builtin::{BuiltinEncoders, BuiltinModel, CpuLatents};
use crate::model::{ChunkPlace, DecodeError, Geometry, Model, SlotStart, SlotStep, StepShared};
use crate::ring::PlayheadRing;
use crate::runner::clock::SimCosts;
use crate::runner::engine_config::EngineConfig;
use crate::runner::trace::WriteKind;

/// The built-in model, except that denoise calls `panic_from .. panic_to` panic and calls
/// `err_from .. err_to` return an error.
struct FaultyModel {
    inner: BuiltinModel,
    calls: AtomicU64,
    panic_from: u64,
    panic_to: u64,
    err_from: u64,
    err_to: u64,
    /// `guidance` as each denoise call saw it.
    guidance_seen: std::sync::Mutex<Vec<f64>>,
}

impl BuiltinEncoders for FaultyModel {
    fn builtin_encoders(&self) -> &BuiltinModel {
        &self.inner
    }
}

impl Model for FaultyModel {
    type Latents = CpuLatents;
    type Curve = Vec<f32>;
    fn geometry(&self) -> Geometry {
        self.inner.geometry()
    }
    fn encode_source(&self, audio: AudioView<'_>) -> Result<CpuLatents, EncodeError> {
        self.inner.encode_source(audio)
    }
    fn latent_frames(&self, latents: &CpuLatents) -> usize {
        self.inner.latent_frames(latents)
    }
    fn slice_latents(&self, latents: &CpuLatents, start: usize, frames: usize) -> CpuLatents {
        self.inner.slice_latents(latents, start, frames)
    }
    fn latents_to_host(&self, latents: &CpuLatents) -> Vec<f32> {
        self.inner.latents_to_host(latents)
    }
    fn upload_curve(&self, host: &[f32]) -> Vec<f32> {
        self.inner.upload_curve(host)
    }
    fn start_slot(&self, start: SlotStart<'_, CpuLatents>) -> CpuLatents {
        self.inner.start_slot(start)
    }
    fn denoise_batch(
        &self,
        batch: &mut [SlotStep<'_, CpuLatents>],
        shared: &StepShared<'_, Self>,
    ) -> Result<(), crate::model::ModelError> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        self.guidance_seen
            .lock()
            .unwrap()
            .push(shared.knobs.get(crate::knobs::KnobId::guidance));
        if (self.panic_from..self.panic_to).contains(&n) {
            panic!("injected fault in denoise call {n}");
        }
        if (self.err_from..self.err_to).contains(&n) {
            return Err(crate::model::ModelError::Run {
                file: "test",
                reason: format!("injected error in denoise call {n}"),
            });
        }
        let shared = StepShared {
            cond: shared.cond,
            knobs: shared.knobs,
            source: shared.source,
            sde_curve: shared.sde_curve,
        };
        self.inner.denoise_batch(batch, &shared)
    }
    fn decode_context_frames(&self) -> usize {
        self.inner.decode_context_frames()
    }
    fn decode_chunk_window(
        &self,
        latents: &CpuLatents,
        place: Option<&ChunkPlace<'_, CpuLatents>>,
        gains: &[f32; 8],
        all_zero: bool,
        start_frame: usize,
        frames: usize,
        out: &mut [f32],
    ) -> Result<(), DecodeError> {
        self.inner
            .decode_chunk_window(latents, place, gains, all_zero, start_frame, frames, out)
    }
}

#[test]
fn a_panic_in_the_tick_is_caught_and_the_ring_keeps_playing() {
    let model = Arc::new(FaultyModel {
        inner: BuiltinModel::new(),
        calls: AtomicU64::new(0),
        panic_from: 20,
        panic_to: 25,
        err_from: 0,
        err_to: 0,
        guidance_seen: Default::default(),
    });
    let source = crate::audio_file::test_signal(48_000, 2, 3.0);
    let ring = PlayheadRing::from_interleaved(
        source.samples.clone(),
        2,
        48_000,
        PlayheadRing::guard_for_period(128),
    )
    .unwrap();
    let mut sim = SimHarness::new(
        model,
        ring,
        128,
        EngineConfig::default(),
        SimCosts::default(),
    )
    .unwrap();
    sim.set_source(AudioView {
        samples: &source.samples,
        channels: 2,
        sample_rate: 48_000,
    })
    .unwrap();
    // Keep the engine active (a knob now and then) so it ticks at full rate.
    for i in 0..6 {
        sim.schedule(
            0.5 * i as f64,
            SimAction::Knob {
                id: crate::knobs::KnobId::ch_g4,
                value: if i % 2 == 0 { 0.5 } else { 1.0 },
                kind: crate::runner::trace::ActionKind::Knob,
            },
        );
    }
    sim.clock().record_output();
    sim.run_until(3.0);
    assert_eq!(sim.stats().panics, 5);
    assert_eq!(sim.stats().pipeline_restarts, 5);
    // Fresh frontier writes resumed after the faults.
    let frontier_after = sim
        .record()
        .trace
        .writes()
        .filter(|w| w.kind == WriteKind::Frontier && w.issued_frame > 48_000 * 2)
        .count();
    assert!(frontier_after > 5);
    let silent = sim
        .clock()
        .played()
        .chunks(2)
        .fold((0usize, 0usize), |(run, longest), f| {
            let run = if f == [0.0, 0.0] { run + 1 } else { 0 };
            (run, longest.max(run))
        })
        .1;
    assert!(silent < 48, "{silent}");
}

#[test]
fn a_failed_model_call_is_counted_from_its_result() {
    let model = Arc::new(FaultyModel {
        inner: BuiltinModel::new(),
        calls: AtomicU64::new(0),
        panic_from: 0,
        panic_to: 0,
        err_from: 3,
        err_to: 5,
        guidance_seen: Default::default(),
    });
    let knobs = crate::knobs::KnobSnapshot::defaults();
    let cond = crate::conditioning::Conditioning {
        epoch: 0,
        prompt: None,
        timbre: None,
        structure: None,
    };
    let mut pipeline = crate::pipeline::StreamPipeline::new(Arc::clone(&model), 8);
    let mut finished = Vec::new();
    for tick in 0..8 {
        pipeline.tick(&knobs, &cond, &mut finished);
        if tick == 2 {
            assert_eq!(pipeline.model_faults(), (0, None));
        }
        if tick == 4 {
            let (count, last) = pipeline.model_faults();
            assert_eq!(count, 2);
            assert_eq!(
                last.map(ToString::to_string).as_deref(),
                Some("test: run failed: injected error in denoise call 4")
            );
        }
    }
    assert_eq!(pipeline.model_faults().0, 2, "later calls succeed");
}

#[test]
fn a_knob_ramp_advances_with_the_ticks_on_the_frame_clock() {
    use crate::knobs::{Curve, KnobId, RampTo};
    let model = Arc::new(FaultyModel {
        inner: BuiltinModel::new(),
        calls: AtomicU64::new(0),
        panic_from: 0,
        panic_to: 0,
        err_from: 0,
        err_to: 0,
        guidance_seen: Default::default(),
    });
    let source = crate::audio_file::test_signal(48_000, 2, 3.0);
    let ring = PlayheadRing::from_interleaved(
        source.samples.clone(),
        2,
        48_000,
        PlayheadRing::guard_for_period(128),
    )
    .unwrap();
    let mut sim = SimHarness::new(
        Arc::clone(&model),
        ring,
        128,
        EngineConfig::default(),
        SimCosts::default(),
    )
    .unwrap();
    sim.set_source(AudioView {
        samples: &source.samples,
        channels: 2,
        sample_rate: 48_000,
    })
    .unwrap();
    // guidance 1 -> 9 over 1 s of frames from frame 0; nothing else happens, so only the
    // ramp keeps the engine ticking.
    let ramp = RampTo {
        id: KnobId::guidance,
        from: None,
        to: 9.0,
    };
    sim.knobs()
        .ramp_many(&[ramp], 0, 48_000, Curve::Linear)
        .unwrap();
    sim.run_until(2.0);
    let seen = model.guidance_seen.lock().unwrap().clone();
    let between = seen.iter().filter(|&&g| g > 1.0 && g < 9.0).count();
    assert!(between >= 10, "the ticks did not follow the ramp: {seen:?}");
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert_eq!(seen.last(), Some(&9.0), "{seen:?}");
}
