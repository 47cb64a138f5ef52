//! The engine thread: [`Engine::spawn`] runs an [`EngineCore`] on a thread named `engine`
//! with a [`RealClock`](super::clock::RealClock), and returns the [`EngineHandle`] the daemon steers it with.
//!
//! # The loop
//!
//! Each turn: bump the heartbeat, [`poll`](EngineCore::poll) (actions, knob publishes,
//! conditioning commits, band changes, control messages), then either run a tick (when one
//! is due, or at once after inbound activity) or park until the next tick is due. Inbound
//! activity unparks the thread ([`EngineHandle::knob_waker`]); `unpark` never blocks the caller.
//! Paused (transport) or idle (no activity for `idle_after_s`), the thread parks until
//! woken (at most 50 ms at a time, to keep the heartbeat and stats moving) and the ring
//! keeps looping what it holds.
//!
//! # Daemon integration (the API)
//!
//! ```text
//! let (store, knob_reader) = KnobStore::new();
//! let (conditioner, cond_reader) = Conditioner::new(model.clone(), Some(events_tx));
//! let handle = Engine::spawn(model, ring_writer, knob_reader, cond_reader, config,
//!                            RealClock::new(ring_handle))?;
//! store.set_waker(handle.knob_waker());           // knob publishes wake the engine
//! // per OSC action, on the control thread:
//! //   synchronous changes (knobs, loop, transport): apply, then
//! let id = handle.note_action(ActionKind::Knob);   // arrival + applied + wake
//! handle.note_ack(id);                             // when the reply goes out
//! //   asynchronous changes (prompt, timbre, structure):
//! let id = handle.note_action_pending(ActionKind::Prompt);  // at arrival
//! conditioner.set_prompt(spec)?;                   // encoder thread
//! handle.mark_applied(id);                         // after the commit (or the refusal)
//! handle.set_loop(a_s, b_s)?; handle.clear_loop(); // arms the ring band; writes follow
//! handle.set_source(audio)?;                       // encodes on the caller's thread
//! handle.set_paused(true);                         // transport: the engine idles
//! handle.set_lead(lead_config)?;                   // a config reload: new lead settings
//! handle.stats(); handle.heartbeat(); handle.dump_trace(&mut file)?;
//! handle.stop()?;                                  // joins; gives the ring writer back
//! ```
//!
//! # One control surface for every model
//!
//! [`EngineControl`] is the handle's model-independent surface as a trait object: the
//! daemon's control plane (OSC dispatcher, job worker, reload, watchdog) holds an
//! `Arc<dyn EngineControl>` and never names the model, so one daemon build runs the
//! built-in model or a model bundle chosen at start.
//!
//! # Threading
//!
//! Every `EngineHandle` method may be called from any thread and never waits on the
//! engine, except [`EngineHandle::record`] / [`EngineHandle::dump_trace`] (wait up to 2 s
//! for the engine's copy) and [`EngineHandle::stop`] (joins).

use crate::lock::MutexExt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle, Thread};
use std::time::Duration;

use super::actions::{ActionLog, Control, EngineRecord};
use super::clock::EngineClock;
use super::engine_config::{EngineConfig, EngineError, EngineStats};
use super::engine_core::EngineCore;
use super::lead::LeadConfig;
use super::trace::{ActionEvent, ActionKind};
use crate::audio_clip::AudioView;
use crate::conditioning::ConditioningReader;
use crate::knobs::{KnobPublish, KnobReader};
use crate::model::Model;
use crate::ring::{PlayheadRing, RingHandle, RingLoop, RingWriter};

/// Longest park: the heartbeat and the stats keep moving while idle.
const MAX_PARK_S: f64 = 0.05;

/// Spawns the engine thread.
pub struct Engine;

impl Engine {
    /// Run the tick loop on a thread named `engine`; see the module doc.
    pub fn spawn<M: Model>(
        model: Arc<M>,
        ring: RingWriter,
        knobs: KnobReader,
        cond: ConditioningReader<M::Cond>,
        config: EngineConfig,
        mut clock: impl EngineClock + Send + 'static,
    ) -> Result<EngineHandle<M>, EngineError> {
        let ring_handle = ring.handle();
        let keep_latent_frames = config.keep_latent_frames;
        let log = Arc::new(ActionLog::new());
        let (tx, rx) = mpsc::channel();
        let (stats_in, stats_out) = triple_buffer::triple_buffer(&EngineStats::default());
        let mut core = EngineCore::new(
            Arc::clone(&model),
            ring,
            knobs,
            cond,
            config,
            Arc::clone(&log),
            rx,
            stats_in,
        )?;
        let interrupt_armed = core.interrupt_gate();
        let heartbeat = Arc::new(AtomicU64::new(0));
        let beat = Arc::clone(&heartbeat);
        let thread = thread::Builder::new()
            .name("engine".into())
            .spawn(move || {
                core.start(clock.now_s());
                loop {
                    beat.fetch_add(1, Ordering::Relaxed);
                    let now = clock.now_s();
                    core.poll(now);
                    if core.stopped() {
                        break;
                    }
                    match core.next_tick_due(now) {
                        Some(due) if due <= now => core.tick(&mut clock),
                        Some(due) => thread::park_timeout(Duration::from_secs_f64(
                            (due - now).min(MAX_PARK_S),
                        )),
                        None => {
                            core.publish_stats(now, false);
                            thread::park_timeout(Duration::from_secs_f64(MAX_PARK_S));
                        }
                    }
                }
                core.into_writer()
            })
            .map_err(EngineError::Spawn)?;
        Ok(EngineHandle {
            model,
            ring: ring_handle,
            keep_latent_frames,
            log,
            tx,
            waker: thread.thread().clone(),
            interrupt_armed,
            thread: Some(thread),
            stats: Mutex::new(stats_out),
            heartbeat,
        })
    }
}

/// The daemon's handle on the engine thread (see the module doc).
pub struct EngineHandle<M: Model> {
    model: Arc<M>,
    ring: RingHandle,
    /// The engine's kept window, in latent frames (a new loop must hold it).
    keep_latent_frames: usize,
    log: Arc<ActionLog>,
    tx: Sender<Control<M::Latents>>,
    waker: Thread,
    /// [`EngineCore::interrupt_gate`].
    interrupt_armed: Arc<AtomicBool>,
    thread: Option<JoinHandle<RingWriter>>,
    stats: Mutex<triple_buffer::Output<EngineStats>>,
    heartbeat: Arc<AtomicU64>,
}

impl<M: Model> EngineHandle<M> {
    fn send(&self, msg: Control<M::Latents>) {
        // A closed channel means the engine stopped; nothing to do.
        let _ = self.tx.send(msg);
        self.waker.unpark();
    }

    /// The closure for [`KnobStore::set_waker`](crate::knobs::KnobStore::set_waker): wakes
    /// the engine after every publish, and when a decoder-scope knob changed while the
    /// engine allows it, interrupts the denoise running now
    /// ([`Model::interrupt_denoise`]) so the knob's repatch runs first (see
    /// [`EngineCore`]'s doc). It never blocks.
    pub fn knob_waker(&self) -> impl Fn(KnobPublish) + Send + Sync + 'static {
        let thread = self.waker.clone();
        let model = Arc::clone(&self.model);
        let armed = Arc::clone(&self.interrupt_armed);
        move |publish| {
            if publish.decoder && armed.swap(false, Ordering::AcqRel) {
                model.interrupt_denoise();
            }
            thread.unpark();
        }
    }

    /// The ring's frame clock now (what arrivals and replies are stamped with).
    pub fn frame_clock(&self) -> u64 {
        self.ring.playhead_and_clock().1
    }

    fn note(&self, kind: ActionKind, applied: bool) -> u64 {
        let id = self.log.begin();
        let arrival_frame = self.frame_clock();
        self.send(Control::Action(ActionEvent {
            id,
            kind,
            arrival_frame,
            sent_frame: None,
        }));
        if applied {
            self.log.mark_applied(id);
        }
        id
    }

    /// An action whose change is already published (a knob set, a loop band, transport):
    /// records its arrival in the trace, marks it applied and wakes the engine. Returns
    /// its id.
    pub fn note_action(&self, kind: ActionKind) -> u64 {
        self.note(kind, true)
    }

    /// An action whose change comes later (a prompt, timbre or structure encode): records
    /// its arrival and wakes the engine; call [`Self::mark_applied`] after the commit (or
    /// the refusal). Until then, later actions are not credited to any write.
    pub fn note_action_pending(&self, kind: ActionKind) -> u64 {
        self.note(kind, false)
    }

    /// The change of action `id` is published (or refused); wakes the engine.
    pub fn mark_applied(&self, id: u64) {
        self.log.mark_applied(id);
        self.waker.unpark();
    }

    /// The reply to action `id` went out now (for `ack_gap`).
    pub fn note_ack(&self, id: u64) {
        let frame = self.frame_clock();
        self.send(Control::Ack { id, frame });
    }

    /// Loop `[a_s, b_s)` seconds: arms the ring's band (the reader wraps from B to A) and
    /// retargets the writes (they follow the reader's path inside the band).
    pub fn set_loop(&self, a_s: f64, b_s: f64) -> Result<(), EngineError> {
        let rate = self.ring.sample_rate() as f64;
        let loop_s = self.ring.loop_frames() as f64 / rate;
        let bad = |reason: String| EngineError::Band { a_s, b_s, reason };
        if !(a_s.is_finite() && b_s.is_finite()) {
            return Err(bad("not finite".into()));
        }
        if !(0.0 <= a_s && a_s < b_s && b_s <= loop_s) {
            return Err(bad(format!("needs 0 <= A < B <= {loop_s} s (the loop)")));
        }
        let a = (a_s * rate).round() as usize;
        let b = ((b_s * rate).round() as usize).min(self.ring.loop_frames());
        if a >= b {
            return Err(bad("shorter than one frame".into()));
        }
        self.ring.set_band(a, b)?;
        self.waker.unpark();
        Ok(())
    }

    /// Disarm the loop band.
    pub fn clear_loop(&self) {
        self.ring.clear_band();
        self.waker.unpark();
    }

    /// Encode `audio` as the new source (on the caller's thread, not the engine's) and swap
    /// it in. A source as long as the ring's loop (within one latent frame) only changes
    /// what the engine generates from; one of another length also replaces the ring's loop
    /// with `audio` itself (built here, off the engine and audio threads): the reader
    /// crossfades into it from its frame 0, a band that no longer fits is cleared, the
    /// transport is kept (see [`crate::ring`]). `audio` must have the ring's rate and
    /// channels and leave room for the kept window. A source longer than `walk_chunk_s` is
    /// generated in chunks around the playhead (walk mode, [`super::walk`]); the ring
    /// still holds, and loops, the whole of it.
    pub fn set_source(&self, audio: AudioView<'_>) -> Result<(), EngineError> {
        let hop = self.model.geometry().samples_per_latent_frame();
        let loop_frames = self.ring.loop_frames();
        let same_length = (audio.frames() / hop).abs_diff(loop_frames / hop) <= 1;
        let new_loop = if same_length {
            None
        } else {
            if audio.sample_rate != self.ring.sample_rate()
                || audio.channels != self.ring.channels()
            {
                return Err(EngineError::Source(format!(
                    "the source is {} Hz, {} channels; the ring plays {} Hz, {} channels",
                    audio.sample_rate,
                    audio.channels,
                    self.ring.sample_rate(),
                    self.ring.channels()
                )));
            }
            let min = self.min_loop_frames();
            if audio.frames() < min {
                return Err(EngineError::Source(format!(
                    "the source is {} frames long; a loop needs at least {min} (the kept \
                     window and the ring's guard)",
                    audio.frames()
                )));
            }
            Some(
                RingLoop::from_interleaved(audio.samples.to_vec(), audio.channels)
                    .map_err(|e| EngineError::Source(e.to_string()))?,
            )
        };
        let latents = Arc::new(
            self.model
                .encode_source(audio)
                .map_err(|e| EngineError::Source(e.to_string()))?,
        );
        match new_loop {
            None => self.send(Control::Source(Some(latents))),
            Some(ring_loop) => self.send(Control::Loop(ring_loop, latents)),
        }
        Ok(())
    }

    /// Shortest loop a source may bring: the kept window plus the guard, and one latent
    /// frame more than the kept window (what [`EngineCore::new`] checks at start).
    fn min_loop_frames(&self) -> usize {
        let hop = self.model.geometry().samples_per_latent_frame();
        let keep = self.keep_latent_frames;
        (keep * hop + self.ring.guard_frames() + 1)
            .max((keep + 1) * hop)
            .max(PlayheadRing::min_frames(self.ring.guard_frames()))
    }

    /// Drop the source: text-only generation.
    pub fn clear_source(&self) {
        self.send(Control::Source(None));
    }

    /// Transport: paused, the engine stops generating (the ring's reader is not touched).
    pub fn set_paused(&self, paused: bool) {
        self.send(Control::Pause(paused));
    }

    /// Use `config` for the lead from the engine's next loop turn on (a config reload); the
    /// learned lead state carries over. Validated here; the engine thread takes it from
    /// its control queue without waiting.
    pub fn set_lead(&self, config: LeadConfig) -> Result<(), EngineError> {
        config.validate()?;
        self.send(Control::Lead(config));
        Ok(())
    }

    /// Stall the engine's next tick by `seconds` (the golden `stall` scenario; the daemon's
    /// stall hook with the `fault-injection` feature).
    pub fn inject_stall(&self, seconds: f64) {
        self.send(Control::Stall(seconds.max(0.0)));
    }

    /// Make the engine's next tick panic, once (a test hook for the panic recovery: the
    /// tick is caught, counted in [`EngineStats::panics`] and
    /// [`EngineStats::pipeline_restarts`], and the pipeline restarted).
    #[cfg(feature = "fault-injection")]
    pub fn inject_panic(&self) {
        self.send(Control::PanicNextTick);
    }

    /// The newest published stats.
    pub fn stats(&self) -> EngineStats {
        let mut out = self.stats.lock_unpoisoned();
        out.read().clone()
    }

    /// A counter the engine thread bumps every loop turn (for a watchdog).
    pub fn heartbeat(&self) -> u64 {
        self.heartbeat.load(Ordering::Relaxed)
    }

    /// A copy of the engine's record (trace, replies, timing samples); waits up to 2 s.
    pub fn record(&self) -> Result<EngineRecord, EngineError> {
        let (tx, rx) = mpsc::channel();
        self.send(Control::Record(tx));
        rx.recv_timeout(Duration::from_secs(2))
            .map_err(|_| EngineError::NotRunning)
    }

    /// Write the trace as JSON lines ([`Trace::write_jsonl`](super::trace::Trace::write_jsonl)).
    pub fn dump_trace(&self, out: &mut impl Write) -> Result<(), EngineError> {
        let record = self.record()?;
        record.trace.write_jsonl(out).map_err(EngineError::Io)
    }

    /// The ring this engine writes.
    pub fn ring(&self) -> &RingHandle {
        &self.ring
    }

    /// Stop the loop and join the thread; returns the ring's writer.
    pub fn stop(mut self) -> Result<RingWriter, EngineError> {
        self.send(Control::Stop);
        let thread = self.thread.take().ok_or(EngineError::NotRunning)?;
        thread.join().map_err(|_| EngineError::ThreadPanicked)
    }
}

/// The engine handle's model-independent control surface (see the module doc). Every
/// method is the [`EngineHandle`] method of the same name; threading as there.
pub trait EngineControl: Send + Sync {
    /// [`EngineHandle::note_action`].
    fn note_action(&self, kind: ActionKind) -> u64;
    /// [`EngineHandle::note_action_pending`].
    fn note_action_pending(&self, kind: ActionKind) -> u64;
    /// [`EngineHandle::mark_applied`].
    fn mark_applied(&self, id: u64);
    /// [`EngineHandle::note_ack`].
    fn note_ack(&self, id: u64);
    /// [`EngineHandle::set_loop`].
    fn set_loop(&self, a_s: f64, b_s: f64) -> Result<(), EngineError>;
    /// [`EngineHandle::clear_loop`].
    fn clear_loop(&self);
    /// [`EngineHandle::set_source`].
    fn set_source(&self, audio: AudioView<'_>) -> Result<(), EngineError>;
    /// [`EngineHandle::clear_source`].
    fn clear_source(&self);
    /// [`EngineHandle::set_paused`].
    fn set_paused(&self, paused: bool);
    /// [`EngineHandle::set_lead`].
    fn set_lead(&self, config: LeadConfig) -> Result<(), EngineError>;
    /// [`EngineHandle::inject_stall`].
    fn inject_stall(&self, seconds: f64);
    /// [`EngineHandle::inject_panic`].
    #[cfg(feature = "fault-injection")]
    fn inject_panic(&self);
    /// [`EngineHandle::stats`].
    fn stats(&self) -> EngineStats;
    /// [`EngineHandle::heartbeat`].
    fn heartbeat(&self) -> u64;
    /// [`EngineHandle::dump_trace`].
    fn dump_trace(&self, out: &mut dyn Write) -> Result<(), EngineError>;
    /// [`EngineHandle::ring`].
    fn ring(&self) -> &RingHandle;
}

impl<M: Model> EngineControl for EngineHandle<M> {
    fn note_action(&self, kind: ActionKind) -> u64 {
        EngineHandle::note_action(self, kind)
    }
    fn note_action_pending(&self, kind: ActionKind) -> u64 {
        EngineHandle::note_action_pending(self, kind)
    }
    fn mark_applied(&self, id: u64) {
        EngineHandle::mark_applied(self, id)
    }
    fn note_ack(&self, id: u64) {
        EngineHandle::note_ack(self, id)
    }
    fn set_loop(&self, a_s: f64, b_s: f64) -> Result<(), EngineError> {
        EngineHandle::set_loop(self, a_s, b_s)
    }
    fn clear_loop(&self) {
        EngineHandle::clear_loop(self)
    }
    fn set_source(&self, audio: AudioView<'_>) -> Result<(), EngineError> {
        EngineHandle::set_source(self, audio)
    }
    fn clear_source(&self) {
        EngineHandle::clear_source(self)
    }
    fn set_paused(&self, paused: bool) {
        EngineHandle::set_paused(self, paused)
    }
    fn set_lead(&self, config: LeadConfig) -> Result<(), EngineError> {
        EngineHandle::set_lead(self, config)
    }
    fn inject_stall(&self, seconds: f64) {
        EngineHandle::inject_stall(self, seconds)
    }
    #[cfg(feature = "fault-injection")]
    fn inject_panic(&self) {
        EngineHandle::inject_panic(self)
    }
    fn stats(&self) -> EngineStats {
        EngineHandle::stats(self)
    }
    fn heartbeat(&self) -> u64 {
        EngineHandle::heartbeat(self)
    }
    fn dump_trace(&self, mut out: &mut dyn Write) -> Result<(), EngineError> {
        EngineHandle::dump_trace(self, &mut out)
    }
    fn ring(&self) -> &RingHandle {
        EngineHandle::ring(self)
    }
}

impl<M: Model> Drop for EngineHandle<M> {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.tx.send(Control::Stop);
            self.waker.unpark();
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
#[path = "engine_loop_tests.rs"]
mod tests;
