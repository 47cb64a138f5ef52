//! The golden latency run: scenarios that each send `actions` control actions at spaced
//! times to a fresh engine and report, per action kind, `ack_gap`, `next_slice`,
//! `audible_first` and `audible_full` (p50 / p95 / p99), with the stream's figures
//! ([`GoldenReport`]).
//!
//! Scenarios ([`Scenario`]): `knob_step` (a channel gain, alternating), `denoise_step` (a
//! per-slot knob), `prompt_change`, `timbre_apply`, `loop_band` (bands in turn, then
//! cleared), `stall` (knob steps, each just after an injected engine stall).
//!
//! - [`run_sim`]: in simulated time ([`SimHarness`]), deterministic, for tests.
//! - [`run_realtime`]: in real time, on the engine thread, against a ring the caller plays
//!   with whatever output it started (this crate knows no audio server); the caller acts
//!   as nothing but the ring's listener, this function plays the daemon's part.
//!
//! # Threading
//!
//! [`run_sim`] runs on the caller's thread. [`run_realtime`] spawns the engine thread and
//! one encoder thread per scenario, and sleeps on the caller's thread between actions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::actions::EngineRecord;
use super::clock::{RealClock, SimCosts};
use super::engine_config::{EngineConfig, EngineError};
use super::engine_loop::Engine;
use super::metrics::{GoldenReport, StreamFigures, action_latencies};
use super::sim::{SimAction, SimHarness};
use super::trace::{ActionKind, WriteEvent};
use crate::audio_clip::{AudioClip, AudioView};
use crate::audio_file::{LoopAudio, test_signal};
use crate::conditioning::{Conditioner, PromptSpec};
use crate::knobs::{KnobId, KnobStore};
use crate::model::Model;
use crate::ring::{PlayheadRing, RingHandle, RingWriter};

/// A golden scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// A shared knob: the melody level `ch_g4`, alternating.
    KnobStep,
    /// A per-slot knob: `denoise`, alternating.
    DenoiseStep,
    /// A new prompt each time.
    PromptChange,
    /// A new timbre reference each time.
    TimbreApply,
    /// Loop bands in turn.
    LoopBand,
    /// Knob steps, each 10 ms after an injected engine stall.
    Stall,
}

impl Scenario {
    /// Every scenario, in report order.
    pub const ALL: [Scenario; 6] = [
        Scenario::KnobStep,
        Scenario::DenoiseStep,
        Scenario::PromptChange,
        Scenario::TimbreApply,
        Scenario::LoopBand,
        Scenario::Stall,
    ];

    /// The scenario's name (as in the report and on the command line).
    pub fn name(self) -> &'static str {
        match self {
            Scenario::KnobStep => "knob_step",
            Scenario::DenoiseStep => "denoise_step",
            Scenario::PromptChange => "prompt_change",
            Scenario::TimbreApply => "timbre_apply",
            Scenario::LoopBand => "loop_band",
            Scenario::Stall => "stall",
        }
    }

    /// The scenario named `name`, with an error listing the names otherwise.
    pub fn from_name(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|s| s.name()).collect();
                format!("unknown scenario {name:?}; accepted: {}", names.join(", "))
            })
    }
}

/// How a golden run is shaped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GoldenOptions {
    /// Scenarios to run, each on a fresh engine.
    pub scenarios: Vec<Scenario>,
    /// Actions per scenario.
    pub actions: usize,
    /// Seconds between actions (a small deterministic jitter is added).
    pub spacing_s: f64,
    /// Seconds the engine runs before the first action.
    pub warmup_s: f64,
    /// Seconds after the last action before the figures are taken.
    pub tail_s: f64,
    /// Loop length, seconds (simulated runs; a real-time run uses the caller's ring).
    pub loop_s: f64,
    /// Output period, frames (simulated runs).
    pub period_frames: usize,
    /// The engine's settings.
    pub engine: EngineConfig,
    /// Modeled costs (simulated runs).
    pub costs: SimCosts,
    /// Length of each injected stall in the `stall` scenario, seconds.
    pub stall_s: f64,
}

impl Default for GoldenOptions {
    fn default() -> Self {
        Self {
            scenarios: Scenario::ALL.to_vec(),
            actions: 20,
            spacing_s: 0.6,
            warmup_s: 1.0,
            tail_s: 1.5,
            loop_s: 8.0,
            period_frames: 128,
            engine: EngineConfig::default(),
            costs: SimCosts::default(),
            stall_s: 0.3,
        }
    }
}

/// The result of a golden run: one report per scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoldenRun {
    /// `sim` or `realtime`.
    pub mode: String,
    /// Whether the near-playhead repatch was on.
    pub repatch: bool,
    /// Reports by scenario name.
    pub scenarios: BTreeMap<String, GoldenReport>,
}

impl GoldenRun {
    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

const PROMPTS: [&str; 4] = [
    "fast bright drums bass",
    "slow dark pad bells",
    "medium pluck bass wide",
    "relaxed warm pad",
];

fn timbre_clip(i: usize, rate: u32) -> AudioClip {
    let hz = if i.is_multiple_of(2) { 220.0 } else { 660.0 };
    let samples: Vec<f32> = (0..rate as usize / 2)
        .map(|n| (0.3 * (std::f64::consts::TAU * hz * n as f64 / rate as f64).sin()) as f32)
        .collect();
    let view = AudioView {
        samples: &samples,
        channels: 1,
        sample_rate: rate,
    };
    // A half-second mono sine at a valid rate: always accepted.
    AudioClip::new("timbre", view).expect("valid reference clip")
}

/// The actions of a scenario: `(seconds after the warm-up, action)`; stalls included.
pub fn script(scenario: Scenario, opts: &GoldenOptions, rate: u32) -> Vec<(f64, SimAction)> {
    let mut out = Vec::new();
    for i in 0..opts.actions {
        // Deterministic jitter so actions meet the tick at varying phases.
        let t = i as f64 * opts.spacing_s + ((i * 37) % 50) as f64 * 1e-3;
        let flip = i % 2 == 0;
        let action = match scenario {
            Scenario::KnobStep | Scenario::Stall => SimAction::Knob {
                id: KnobId::ch_g4,
                value: if flip { 0.3 } else { 1.0 },
                kind: ActionKind::Knob,
            },
            Scenario::DenoiseStep => SimAction::Knob {
                id: KnobId::denoise,
                value: if flip { 0.8 } else { 0.5 },
                kind: ActionKind::PerSlotKnob,
            },
            Scenario::PromptChange => SimAction::Prompt(PromptSpec {
                tags: PROMPTS[i % PROMPTS.len()].into(),
                tags_b: None,
            }),
            Scenario::TimbreApply => SimAction::Timbre(timbre_clip(i, rate)),
            Scenario::LoopBand => {
                let l = opts.loop_s;
                SimAction::Loop(match i % 3 {
                    0 => Some((0.125 * l, 0.375 * l)),
                    1 => Some((0.5 * l, 0.8 * l)),
                    _ => None,
                })
            }
        };
        if scenario == Scenario::Stall {
            out.push(((t - 0.01).max(0.0), SimAction::Stall(opts.stall_s)));
        }
        out.push((t, action));
    }
    out
}

/// The report of one scenario from the engine's record.
pub fn report_of(record: &EngineRecord, sample_rate: u32, underruns: u64) -> GoldenReport {
    let writes: Vec<WriteEvent> = record.trace.writes().copied().collect();
    let acks: BTreeMap<u64, u64> = record.acks.iter().copied().collect();
    let latencies = action_latencies(record.trace.actions(), &writes, |id| acks.get(&id).copied());
    let stream = StreamFigures::from_samples(
        &record.tick_ms,
        &record.decode_ms,
        &record.lead_s,
        record.late_landings,
        underruns,
    );
    GoldenReport::new(sample_rate, &latencies, stream)
}

/// The test loop the golden runs use as the source (and the ring's initial content).
pub fn source_loop(sample_rate: u32, channels: usize, seconds: f64) -> LoopAudio {
    test_signal(sample_rate, channels, seconds)
}

/// One scenario set up in simulated time, not yet run: the harness with the source set and
/// the actions scheduled, and the time to run it until.
pub fn sim_scenario<M: Model>(
    model: Arc<M>,
    scenario: Scenario,
    opts: &GoldenOptions,
) -> Result<(SimHarness<M>, f64), EngineError> {
    let g = model.geometry();
    let source = source_loop(g.sample_rate, g.audio_channels, opts.loop_s);
    let guard = PlayheadRing::guard_for_period(opts.period_frames);
    let ring = PlayheadRing::from_interleaved(
        source.samples.clone(),
        source.channels,
        source.sample_rate,
        guard,
    )?;
    let mut sim = SimHarness::new(model, ring, opts.period_frames, opts.engine, opts.costs)?;
    sim.set_source(AudioView {
        samples: &source.samples,
        channels: source.channels,
        sample_rate: source.sample_rate,
    })?;
    let mut end = opts.warmup_s;
    for (t, action) in script(scenario, opts, g.sample_rate) {
        sim.schedule(opts.warmup_s + t, action);
        end = end.max(opts.warmup_s + t);
    }
    Ok((sim, end + opts.tail_s))
}

/// One scenario in simulated time; also returns the harness for inspection.
pub fn run_sim_scenario<M: Model>(
    model: Arc<M>,
    scenario: Scenario,
    opts: &GoldenOptions,
) -> Result<(GoldenReport, SimHarness<M>), EngineError> {
    let rate = model.geometry().sample_rate;
    let (mut sim, end) = sim_scenario(model, scenario, opts)?;
    sim.run_until(end);
    let report = report_of(sim.record(), rate, 0);
    Ok((report, sim))
}

/// Every scenario of `opts` in simulated time.
pub fn run_sim<M: Model>(model: Arc<M>, opts: &GoldenOptions) -> Result<GoldenRun, EngineError> {
    let mut scenarios = BTreeMap::new();
    for &s in &opts.scenarios {
        let (report, _) = run_sim_scenario(Arc::clone(&model), s, opts)?;
        scenarios.insert(s.name().to_string(), report);
    }
    Ok(GoldenRun {
        mode: "sim".into(),
        repatch: opts.engine.lead.repatch,
        scenarios,
    })
}

enum EncodeJob {
    Prompt(u64, PromptSpec),
    Timbre(u64, AudioClip),
}

/// Every scenario of `opts` in real time, each on a fresh engine thread writing `writer`
/// (the ring `ring` belongs to, played by the caller's output). `underruns` reads the
/// output's xrun counter. Returns the run and the writer.
pub fn run_realtime<M: Model>(
    model: Arc<M>,
    mut writer: RingWriter,
    opts: &GoldenOptions,
    underruns: &dyn Fn() -> u64,
) -> Result<(GoldenRun, RingWriter), EngineError> {
    let ring: RingHandle = writer.handle();
    let g = model.geometry();
    let loop_s = ring.loop_frames() as f64 / ring.sample_rate() as f64;
    let source = source_loop(g.sample_rate, g.audio_channels, loop_s);
    let opts = GoldenOptions {
        loop_s,
        ..opts.clone()
    };
    let mut scenarios = BTreeMap::new();
    for &scenario in &opts.scenarios {
        let (store, knob_reader) = KnobStore::new();
        let (conditioner, cond_reader) = Conditioner::new(Arc::clone(&model), None);
        let handle = Engine::spawn(
            Arc::clone(&model),
            writer,
            knob_reader,
            cond_reader,
            opts.engine,
            RealClock::new(ring.clone()),
        )?;
        store.set_waker(handle.knob_waker());
        handle.set_source(AudioView {
            samples: &source.samples,
            channels: source.channels,
            sample_rate: source.sample_rate,
        })?;
        let xruns_before = underruns();
        let record = std::thread::scope(|scope| -> Result<EngineRecord, EngineError> {
            let (jobs, job_rx) = mpsc::channel::<EncodeJob>();
            let encoder = &conditioner;
            let h = &handle;
            scope.spawn(move || {
                for job in job_rx {
                    let id = match job {
                        EncodeJob::Prompt(id, spec) => {
                            let _ = encoder.set_prompt(spec);
                            id
                        }
                        EncodeJob::Timbre(id, clip) => {
                            let _ = encoder.set_timbre(clip.view());
                            id
                        }
                    };
                    h.mark_applied(id);
                    h.note_ack(id);
                }
            });
            let start = Instant::now() + Duration::from_secs_f64(opts.warmup_s);
            let mut last = 0.0f64;
            for (t, action) in script(scenario, &opts, g.sample_rate) {
                let at = start + Duration::from_secs_f64(t);
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
                last = last.max(t);
                match action {
                    SimAction::Stall(s) => handle.inject_stall(s),
                    SimAction::Knob { id, value, kind } => {
                        let _ = store.set_id(id, value);
                        let action = handle.note_action(kind);
                        handle.note_ack(action);
                    }
                    SimAction::Loop(band) => {
                        match band {
                            Some((a, b)) => handle.set_loop(a, b)?,
                            None => handle.clear_loop(),
                        }
                        let action = handle.note_action(ActionKind::Loop);
                        handle.note_ack(action);
                    }
                    SimAction::Prompt(spec) => {
                        let id = handle.note_action_pending(ActionKind::Prompt);
                        let _ = jobs.send(EncodeJob::Prompt(id, spec));
                    }
                    SimAction::Timbre(clip) => {
                        let id = handle.note_action_pending(ActionKind::Timbre);
                        let _ = jobs.send(EncodeJob::Timbre(id, clip));
                    }
                }
            }
            drop(jobs);
            std::thread::sleep(Duration::from_secs_f64(opts.tail_s));
            handle.record()
        })?;
        handle.clear_loop();
        writer = handle.stop()?;
        let report = report_of(&record, g.sample_rate, underruns() - xruns_before);
        scenarios.insert(scenario.name().to_string(), report);
    }
    Ok((
        GoldenRun {
            mode: "realtime".into(),
            repatch: opts.engine.lead.repatch,
            scenarios,
        },
        writer,
    ))
}

#[cfg(test)]
mod tests;
