//! Faults inside the tick, in simulated time: a panic is caught, counted, the pipeline
//! restarted, and the ring keeps playing (no silence) while the engine keeps writing
//! afterwards; a failed model call is the pipeline tick's `Err`, counted once by the runner,
//! and the count survives the pipeline's rebuild. The idle pause waits for a loop without a
//! source to be written whole.

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

/// The built-in model, except that denoise calls `panic_from .. panic_to` panic, calls
/// `err_from .. err_to` return an error and calls in `interrupted` return
/// [`ModelError::Interrupted`](crate::model::ModelError::Interrupted) (as if a decoder knob
/// had arrived during them).
struct FaultyModel {
    inner: BuiltinModel,
    calls: AtomicU64,
    panic_from: u64,
    panic_to: u64,
    err_from: u64,
    err_to: u64,
    interrupted: std::ops::Range<u64>,
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
        if self.interrupted.contains(&n) {
            return Err(crate::model::ModelError::Interrupted);
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

/// The model's denoise calls `panics` panic and calls `errors` return an error.
fn faulty(panics: std::ops::Range<u64>, errors: std::ops::Range<u64>) -> Arc<FaultyModel> {
    Arc::new(FaultyModel {
        inner: BuiltinModel::new(),
        calls: AtomicU64::new(0),
        panic_from: panics.start,
        panic_to: panics.end,
        err_from: errors.start,
        err_to: errors.end,
        interrupted: 0..0,
        guidance_seen: Default::default(),
    })
}

/// The built-in model with denoise calls `calls` interrupted.
fn interrupting(calls: std::ops::Range<u64>) -> Arc<FaultyModel> {
    let mut model = Arc::into_inner(faulty(0..0, 0..0)).unwrap();
    model.interrupted = calls;
    Arc::new(model)
}

/// A simulated engine over `model` with a 3 s source and nothing scheduled.
fn quiet_sim(model: Arc<FaultyModel>) -> SimHarness<FaultyModel> {
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
    sim
}

/// [`quiet_sim`] kept active (a knob every 0.5 s for 3 s) so it ticks at full rate.
fn active_sim(model: Arc<FaultyModel>) -> SimHarness<FaultyModel> {
    let mut sim = quiet_sim(model);
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
    sim
}

#[test]
fn a_panic_in_the_tick_is_caught_and_the_ring_keeps_playing() {
    let mut sim = active_sim(faulty(20..25, 0..0));
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
    let silent = longest_silence(sim.clock().played());
    assert!(silent < 48, "{silent}");
}

#[test]
fn a_failed_model_call_is_the_tick_result() {
    let model = faulty(0..0, 3..5);
    let knobs = crate::knobs::KnobSnapshot::defaults();
    let cond = crate::conditioning::Conditioning {
        epoch: 0,
        prompt: None,
        timbre: None,
        structure: None,
    };
    let mut pipeline = crate::pipeline::StreamPipeline::new(Arc::clone(&model), 8);
    let mut finished = Vec::new();
    // One denoise call per tick from tick 0 (a slot starts and steps in it).
    for tick in 0..8 {
        let result = pipeline.tick(&knobs, &cond, &mut finished);
        let want = match tick {
            3 | 4 => Err(format!(
                "test: run failed: injected error in denoise call {tick}"
            )),
            _ => Ok(()),
        };
        assert_eq!(result.map_err(|e| e.to_string()), want, "tick {tick}");
    }
    assert_eq!(pipeline.ticks(), 8, "a failed tick still runs to its end");
}

#[test]
fn failed_model_calls_are_counted_by_the_runner_across_a_pipeline_restart() {
    // Calls 10..14 fail, call 20 panics (the pipeline is rebuilt), later calls succeed.
    let model = faulty(20..21, 10..14);
    let mut sim = active_sim(Arc::clone(&model));
    sim.run_until(3.0);
    let stats = sim.stats();
    assert_eq!(stats.pipeline_restarts, 1);
    assert!(
        model.calls.load(Ordering::Relaxed) > 30,
        "the rebuilt pipeline ran on"
    );
    assert_eq!(
        stats.model_faults, 4,
        "counted once each, kept over the rebuild"
    );
    assert_eq!(
        stats.last_model_fault.as_deref(),
        Some("test: run failed: injected error in denoise call 13")
    );
}

#[test]
fn a_knob_ramp_advances_with_the_ticks_on_the_frame_clock() {
    use crate::knobs::{Curve, KnobId, RampTo};
    let model = faulty(0..0, 0..0);
    let mut sim = quiet_sim(Arc::clone(&model));
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

#[test]
fn an_interrupted_step_runs_again_and_the_latents_come_out_the_same() {
    let knobs = crate::knobs::KnobSnapshot::defaults();
    let cond = crate::conditioning::Conditioning {
        epoch: 0,
        prompt: None,
        timbre: None,
        structure: None,
    };
    let run = |model: Arc<FaultyModel>, ticks: usize| {
        let mut pipeline = crate::pipeline::StreamPipeline::new(model, 8);
        let mut finished = Vec::new();
        let mut results = Vec::new();
        for _ in 0..ticks {
            results.push(pipeline.tick(&knobs, &cond, &mut finished));
        }
        (pipeline.ticks(), finished, results)
    };
    let (ticks_plain, plain, _) = run(faulty(0..0, 0..0), 12);
    let (ticks_cut, cut, results) = run(interrupting(3..5), 14);
    assert_eq!(
        results[3..5],
        [
            Err(crate::model::ModelError::Interrupted),
            Err(crate::model::ModelError::Interrupted)
        ]
    );
    assert!(
        results
            .iter()
            .enumerate()
            .all(|(i, r)| (3..5).contains(&i) || r.is_ok())
    );
    assert_eq!(
        (ticks_plain, ticks_cut),
        (12, 12),
        "an interrupted tick does not count"
    );
    assert!(!plain.is_empty());
    assert_eq!(plain.len(), cut.len());
    for (a, b) in plain.iter().zip(&cut) {
        assert_eq!(a.serial, b.serial);
        assert_eq!(a.tick, b.tick);
        let host = |l| BuiltinModel::new().latents_to_host(l);
        assert_eq!(host(&a.latents), host(&b.latents), "serial {}", a.serial);
    }
}

#[test]
fn an_interrupt_is_counted_apart_from_faults_and_the_engine_ticks_again_at_once() {
    let model = interrupting(10..12);
    let mut sim = active_sim(Arc::clone(&model));
    sim.run_until(3.0);
    let stats = sim.stats();
    assert_eq!(stats.denoise_interrupts, 2);
    assert_eq!(stats.model_faults, 0);
    assert_eq!(stats.panics, 0);
    let frontier = sim
        .record()
        .trace
        .writes()
        .filter(|w| w.kind == WriteKind::Frontier)
        .count();
    assert!(frontier > 10, "{frontier}");
}

/// The longest run of silent frames in `frames` (interleaved stereo).
fn longest_silence(frames: &[f32]) -> usize {
    frames
        .chunks(2)
        .fold((0usize, 0usize), |(run, longest), f| {
            let run = if f == [0.0, 0.0] { run + 1 } else { 0 };
            (run, longest.max(run))
        })
        .1
}

/// A simulated engine generating a `loop_s`-second loop from the prompt alone (the ring
/// starts silent), recording what it plays.
fn sourceless_sim(loop_s: usize, config: EngineConfig) -> SimHarness<FaultyModel> {
    let ring = PlayheadRing::silence(
        loop_s * 48_000,
        2,
        48_000,
        PlayheadRing::guard_for_period(128),
    )
    .unwrap();
    let mut sim =
        SimHarness::new(faulty(0..0, 0..0), ring, 128, config, SimCosts::default()).unwrap();
    sim.clock().record_output();
    sim
}

/// The second lap of a `loop_s`-second loop played no silence longer than 10 ms.
fn assert_second_lap_sounds(sim: &mut SimHarness<FaultyModel>, loop_s: usize) {
    let second_lap = &sim.clock().played()[loop_s * 48_000 * 2..2 * loop_s * 48_000 * 2];
    let silent = longest_silence(second_lap);
    assert!(
        silent < 480,
        "the second lap holds {silent} silent frames in a row"
    );
}

#[test]
fn a_loop_without_a_source_is_written_whole_before_the_engine_idles() {
    // A 6 s loop generated from the prompt alone (the ring starts silent), nobody touching
    // anything, and an idle pause after 1 s. The engine must fill the whole loop before it
    // idles: the second lap plays no silence. (Before, it idled ~1 s in and every later lap
    // played ~5 s of silence.)
    let config = EngineConfig {
        idle_after_s: 1.0,
        ..EngineConfig::default()
    };
    let mut sim = sourceless_sim(6, config);
    sim.run_until(14.0);
    // It idled once the loop was whole: nothing was written in the last laps.
    let last_write = sim.record().trace.writes().map(|w| w.issued_frame).max();
    assert!(
        last_write.is_some_and(|f| f < 9 * 48_000),
        "the engine never idled: last write issued at frame {last_write:?}"
    );
    assert_second_lap_sounds(&mut sim, 6);
}

#[test]
fn a_walking_loop_without_a_source_leaves_no_hole_at_its_chunk_boundaries() {
    // A 24 s loop generated from the prompt alone in 6 s chunks. Every chunk's first fresh
    // write aims at `playhead + lead`, which lies past the chunk's start by however far the
    // playhead moved since the last write into the chunk before (clamped at its end); that
    // stretch must be written too, or each boundary plays a hole of silence every lap.
    let config = EngineConfig {
        idle_after_s: 0.0,
        walk_chunk_s: 6.0,
        walk_prewarm_s: 2.0,
        ..EngineConfig::default()
    };
    let mut sim = sourceless_sim(24, config);
    sim.run_until(49.0);
    assert!(sim.stats().walk_switches >= 7, "{:?}", sim.stats());
    assert_second_lap_sounds(&mut sim, 24);
}
