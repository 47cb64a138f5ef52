//! The engine in simulated time: [`SimHarness`] owns an [`EngineCore`] (no thread), the
//! ring's reader inside a [`SimClock`], the knob store and the conditioner, and steps the
//! core's ticks, the scheduled control actions and the reader's periods in time order.
//! Engine work is charged at modeled costs ([`SimCosts`]), encodes delay their commit by
//! `encode_s`, so a run depends on nothing but its inputs: two runs give the same trace.
//!
//! The harness plays the daemon's part exactly as [`EngineHandle`](super::EngineHandle)'s
//! doc prescribes: a knob action is applied, then noted (arrival = the frame clock at its
//! scheduled time) and answered at once; a prompt or timbre action is noted at arrival and
//! committed, marked applied and answered `encode_s` later.
//!
//! # Threading
//!
//! Single-threaded; everything runs on the caller's thread.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc::{self, Sender};

use super::actions::{ActionLog, Control, EngineRecord};
use super::clock::{SimClock, SimCosts};
use super::engine_config::{EngineConfig, EngineError, EngineStats};
use super::engine_core::EngineCore;
use super::trace::{ActionEvent, ActionKind};
use crate::audio_clip::{AudioClip, AudioView};
use crate::conditioning::{Conditioner, PromptSpec};
use crate::knobs::{KnobId, KnobStore};
use crate::model::Model;
use crate::ring::{PlayheadRing, RingHandle};

/// A control action the harness plays at a simulated time.
#[derive(Clone, Debug)]
pub enum SimAction {
    /// Set a knob (applied at once).
    Knob {
        /// Which knob.
        id: KnobId,
        /// Its new value.
        value: f64,
        /// [`ActionKind::Knob`] or [`ActionKind::PerSlotKnob`].
        kind: ActionKind,
    },
    /// Commit a prompt after the encode cost.
    Prompt(PromptSpec),
    /// Commit a timbre reference after the encode cost.
    Timbre(AudioClip),
    /// Arm a loop band `[a, b)` in seconds, or clear it.
    Loop(Option<(f64, f64)>),
    /// Stall the engine's next tick by this many seconds (not an action).
    Stall(f64),
}

enum Scheduled {
    Act(SimAction),
    Commit { id: u64, action: SimAction },
}

/// The engine core, its reader and its inputs, stepped in simulated time.
pub struct SimHarness<M: Model> {
    core: EngineCore<M>,
    clock: SimClock,
    model: Arc<M>,
    knobs: KnobStore,
    conditioner: Conditioner<M>,
    log: Arc<ActionLog>,
    tx: Sender<Control<M::Latents>>,
    ring: RingHandle,
    queue: BTreeMap<(u64, u64), Scheduled>,
    seq: u64,
    _stats: triple_buffer::Output<EngineStats>,
}

impl<M: Model> SimHarness<M> {
    /// A harness over `ring` (its reader plays `period_frames` per period) at 0 s.
    pub fn new(
        model: Arc<M>,
        ring: PlayheadRing,
        period_frames: usize,
        config: EngineConfig,
        costs: SimCosts,
    ) -> Result<Self, EngineError> {
        let handle = ring.handle();
        let (writer, reader) = ring.split();
        let (knobs, knob_reader) = KnobStore::new();
        let (conditioner, cond_reader) = Conditioner::new(Arc::clone(&model), None);
        let log = Arc::new(ActionLog::new());
        let (tx, rx) = mpsc::channel();
        let (stats_in, stats_out) = triple_buffer::triple_buffer(&EngineStats::default());
        let mut core = EngineCore::new(
            Arc::clone(&model),
            writer,
            knob_reader,
            cond_reader,
            config,
            Arc::clone(&log),
            rx,
            stats_in,
        )?;
        core.start(0.0);
        Ok(Self {
            core,
            clock: SimClock::new(reader, period_frames, costs),
            model,
            knobs,
            conditioner,
            log,
            tx,
            ring: handle,
            queue: BTreeMap::new(),
            seq: 0,
            _stats: stats_out,
        })
    }

    /// Encode `audio` as the source and hand it to the engine.
    pub fn set_source(&mut self, audio: AudioView<'_>) -> Result<(), EngineError> {
        let latents = self
            .model
            .encode_source(audio)
            .map_err(|e| EngineError::Source(e.to_string()))?;
        let _ = self.tx.send(Control::Source(Some(Arc::new(latents))));
        Ok(())
    }

    /// Play `action` at simulated time `at_s`.
    pub fn schedule(&mut self, at_s: f64, action: SimAction) {
        self.push(SimClock::ns(at_s), Scheduled::Act(action));
    }

    fn push(&mut self, ns: u64, item: Scheduled) {
        self.queue.insert((ns, self.seq), item);
        self.seq += 1;
    }

    /// Run until simulated time `end_s`.
    pub fn run_until(&mut self, end_s: f64) {
        let end = SimClock::ns(end_s);
        loop {
            let now = self.clock.now_ns();
            let now_s = now as f64 / 1e9;
            self.core.poll(now_s);
            let due = self
                .core
                .next_tick_due(now_s)
                .map(|d| SimClock::ns(d).max(now));
            let event = self.queue.keys().next().map(|k| k.0.max(now));
            let next = [due, event].into_iter().flatten().min().unwrap_or(end);
            if next >= end {
                self.clock.advance_to(end);
                return;
            }
            self.clock.advance_to(next);
            if event == Some(next) {
                if let Some(((at, _), item)) = self.queue.pop_first() {
                    self.apply(at, item);
                }
            } else {
                self.core.tick(&mut self.clock);
            }
        }
    }

    fn send_action(&mut self, kind: ActionKind, at: u64) -> u64 {
        let id = self.log.begin();
        let arrival_frame = self.clock.frame_clock_at(at);
        let _ = self.tx.send(Control::Action(ActionEvent {
            id,
            kind,
            arrival_frame,
            sent_frame: None,
        }));
        id
    }

    fn ack(&mut self, id: u64, at: u64) {
        let frame = self.clock.frame_clock_at(at);
        let _ = self.tx.send(Control::Ack { id, frame });
    }

    fn apply(&mut self, at: u64, item: Scheduled) {
        match item {
            Scheduled::Act(SimAction::Stall(s)) => {
                let _ = self.tx.send(Control::Stall(s));
            }
            Scheduled::Act(SimAction::Knob { id, value, kind }) => {
                // Values come from the scenario tables; a refused one is still an action.
                let _ = self.knobs.set_id(id, value);
                let action = self.send_action(kind, at);
                self.log.mark_applied(action);
                self.ack(action, at);
            }
            Scheduled::Act(SimAction::Loop(band)) => {
                let rate = self.ring.sample_rate() as f64;
                match band {
                    Some((a, b)) => {
                        let _ = self.ring.set_band((a * rate) as usize, (b * rate) as usize);
                    }
                    None => self.ring.clear_band(),
                }
                let action = self.send_action(ActionKind::Loop, at);
                self.log.mark_applied(action);
                self.ack(action, at);
            }
            Scheduled::Act(action @ (SimAction::Prompt(_) | SimAction::Timbre(_))) => {
                let kind = match action {
                    SimAction::Prompt(_) => ActionKind::Prompt,
                    _ => ActionKind::Timbre,
                };
                let id = self.send_action(kind, at);
                let commit = at + SimClock::ns(self.clock.costs().encode_s);
                self.push(commit, Scheduled::Commit { id, action });
            }
            Scheduled::Commit { id, action } => {
                match action {
                    SimAction::Prompt(spec) => {
                        let _ = self.conditioner.set_prompt(spec);
                    }
                    SimAction::Timbre(clip) => {
                        let _ = self.conditioner.set_timbre(clip.view());
                    }
                    _ => {}
                }
                self.log.mark_applied(id);
                self.ack(id, at);
            }
        }
    }

    /// The simulated clock (and through it the reader and what it played).
    pub fn clock(&mut self) -> &mut SimClock {
        &mut self.clock
    }

    /// The engine's record: trace, replies, timing samples.
    pub fn record(&self) -> &EngineRecord {
        self.core.record()
    }

    /// The engine's figures.
    pub fn stats(&self) -> &EngineStats {
        self.core.stats()
    }

    /// The ring.
    pub fn ring(&self) -> &RingHandle {
        &self.ring
    }

    /// The knob store (to set knobs outside the scheduled actions).
    pub fn knobs(&self) -> &KnobStore {
        &self.knobs
    }
}

#[cfg(test)]
#[path = "sim_tests.rs"]
mod tests;
