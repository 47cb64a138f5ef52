//! The tick loop's body, without a thread: [`EngineCore`] joins the pipeline, the knobs,
//! the conditioning and the ring. [`super::engine_loop`] runs it on the engine thread with
//! a [`RealClock`](super::clock::RealClock); [`super::sim`] steps it in simulated time.
//!
//! One tick ([`EngineCore::tick`]):
//! 1. [`poll`](EngineCore::poll): advance the applied prefix ([`super::actions`]), drain the
//!    control messages, note inbound activity.
//! 2. Read the knob snapshot (resolved at the tick's frame: ramping knobs take their value
//!    there) and the conditioning; [`StreamPipeline::tick`] (one batched
//!    denoise); charge its time to the clock.
//!    Before it, when a decoder-scope knob (the channel gains) changed since the last
//!    write and the repatch is due: re-render the cached latent with the new knobs near
//!    the playhead (**knob repatch**); a decoder knob needs no fresh latent.
//!    A decoder-scope knob that arrives *during* the batched denoise interrupts it
//!    ([`Model::interrupt_denoise`], through
//!    [`EngineHandle::knob_waker`](super::EngineHandle::knob_waker)): the tick ends at once
//!    with its slots unchanged and the next one starts with the knob repatch, so the knob
//!    is heard after a decode, not after a whole DiT run. At most every other denoise is
//!    interrupted ([`EngineCore::interrupt_gate`]), so a knob sweep cannot starve
//!    generation.
//! 3. A fresh latent: within the activity window decode it near the playhead first
//!    (**repatch**: no floor, no stall bump), then at `playhead + lead` (**frontier**),
//!    and feed the gap EMA. No fresh latent: re-render the cached one at
//!    `playhead + lead` (**gap-fill**).
//!
//! # Walk mode
//!
//! A loop longer than `walk_chunk_s` is generated in chunks ([`super::walk`]): before the
//! pipeline step, the pipeline moves to the window (the chunk, or the band's own window when
//! a band straddles a boundary) holding the point `walk_prewarm_s` ahead of the playhead;
//! every write is decoded from a latent of the window its target falls in and clamped to
//! that window (the fresh latent, else that window's newest, else none), with the
//! neighbouring chunks' newest latents around it so chunks join without a seam.
//!
//! # Where a near-playhead write lands
//!
//! Both repatches decode the window for the earliest place it could go (the guard plus one
//! block past the playhead as the decode starts), then read the playhead again and write
//! from the guard plus one block past *that*, skipping the decoded frames the reader has
//! meanwhile come too close to. The decode's duration is thus never predicted, so a slow
//! decode costs its own time but loses nothing to the guard. `repatch_gain` and
//! `repatch_margin_s` can push the distance out to `interval_ema * gain + margin`
//! (measured the same way); by default both are 0.
//!
//! A window is `keep_latent_frames` latent frames (0.36 s) of audio; the decode covers them
//! plus [`Model::decode_context_frames`] on each side (8 by default: 1 s in all) and keeps
//! the centre. The tick's work runs with subnormal floats flushed to zero
//! ([`crate::denormals`]). Every write is traced ([`super::trace`]); a panic inside the
//! tick is caught, counted, and the pipeline restarted (the ring keeps playing what it
//! holds). A failed batched model call (the pipeline tick's `Err`) is counted in
//! [`EngineStats::model_faults`], the one count of model faults: it lives here, not in the
//! pipeline or the model, so it survives the pipeline being rebuilt.
//!
//! # Parts
//!
//! The core joins parts with one concern each: `walk_latents` (the walk windows, their
//! latents and the decode scratch), `attribution` (which actions a latent reflects),
//! `stats_outlet` (the published stats and the dump record), `tick_schedule` (when to
//! tick), beside the lead controller ([`super::lead`]) and the knob-to-ear follower
//! ([`super::knob_to_ear`]).
//!
//! # Threading
//!
//! Owned by one thread (the engine thread, or a simulation). It never blocks: control
//! messages are drained with `try_recv`, knobs and conditioning are read through triple
//! buffers, the ring write is lock-free, and nothing is logged.

mod attribution;
mod loop_coverage;
mod stats_outlet;
mod tick_schedule;
mod walk_latents;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::Instant;

use self::attribution::{ActionAttributor, Attribution};
use self::loop_coverage::LoopCoverage;
use self::stats_outlet::{Recorder, StatsOutlet};
use self::tick_schedule::TickSchedule;
use self::walk_latents::{WalkLatents, WindowDecoder};
use super::actions::{ActionLog, Control, EngineRecord};
use super::clock::{EngineClock, Work};
use super::engine_config::{EngineConfig, EngineError, EngineStats};
use super::knob_to_ear::KnobToEar;
use super::lead::{LeadConfig, LeadController, seconds_to_frames};
use super::metrics::ActionLatency;
use super::targeting::{
    LoopGeometry, TargetingError, WritePlan, chunk_start_backfill, frontier_target, repatch_target,
};
use super::trace::{ActionEvent, ActionKind, Trace, WriteEvent, WriteKind, start_reached_frame};
use super::walk::{WalkLayout, WalkWindows};
use crate::conditioning::ConditioningReader;
use crate::knobs::{KnobId, KnobReader, KnobScope, KnobSnapshot};
use crate::model::{Model, ModelError};
use crate::pipeline::{FinishedLatent, StreamPipeline};
use crate::ring::{BLOCK_FRAMES, RingHandle, RingLoop, RingWriter};

/// The shortest walk-mode prewarm, seconds (see [`EngineCore::walk_prewarm_s`]): a margin
/// for a tick that runs long just after a switch.
const WALK_PREWARM_FLOOR_S: f64 = 0.5;

fn geo_err(e: TargetingError) -> EngineError {
    EngineError::Geometry(e.to_string())
}

/// Whether two snapshots hold the same value for every knob outside the decoder's scope
/// (so a latent computed under one would be computed the same under the other).
fn same_outside_decoder(a: &KnobSnapshot, b: &KnobSnapshot) -> bool {
    KnobId::ALL
        .iter()
        .filter(|id| id.spec().scope != KnobScope::Decoder)
        .all(|&id| a.get(id) == b.get(id))
}

/// The decoder's inputs from a snapshot: the channel gains and their all-zero flag.
fn decoder_knobs(k: &KnobSnapshot) -> ([f32; 8], bool) {
    (k.channel_gains(), k.flags.ch_gains_all_zero)
}

/// A loop swap in progress ([`Control::Loop`]).
struct PendingLoop<L> {
    /// The newest loop waiting to go to the ring (a later one replaces it).
    queued: Option<(RingLoop, Arc<L>)>,
    /// The source of the loop handed to the ring, until the reader adopts it.
    awaited: Option<Arc<L>>,
}

/// Test hooks the control side can arm ([`Control::Stall`]; `Control::PanicNextTick` with
/// the `fault-injection` feature).
#[derive(Default)]
struct FaultHooks {
    /// Seconds the next tick stalls the clock.
    stall_next_s: f64,
    /// The next tick panics (once).
    panic_next_tick: bool,
}

/// One write's latent, after the walk window its target falls in picked it.
struct PickedLatent<L> {
    kind: WriteKind,
    chunk: usize,
    latent: Arc<L>,
    attr: Attribution,
}

/// Where a decoded window goes: the plan, the decoded frames to skip (the reader came
/// too close to them during the decode), and the reader as it was when placed.
struct Placement {
    plan: WritePlan,
    skip: usize,
    playhead: usize,
    frame: u64,
    geometry: LoopGeometry,
}

/// The engine's tick loop body (see the module doc).
pub struct EngineCore<M: Model> {
    model: Arc<M>,
    config: EngineConfig,
    pipeline: StreamPipeline<M>,
    /// Finished latents of the current tick (reused).
    finished: Vec<FinishedLatent<M::Latents>>,
    walk: WalkLatents<M::Latents>,
    decoder: WindowDecoder,
    /// The decoder knobs the newest write was rendered with.
    rendered_decoder: Option<([f32; 8], bool)>,
    knobs: KnobReader,
    cond: ConditioningReader<M::Cond>,
    /// The conditioning epoch last seen (a change is activity).
    cond_epoch: u64,
    writer: RingWriter,
    ring: RingHandle,
    /// The band last seen (a change is activity).
    band: Option<(usize, usize)>,
    rate: u32,
    pending_loop: PendingLoop<M::Latents>,
    lead: LeadController,
    /// When the last fresh latent arrived (the lead's gap EMA).
    last_fresh_s: Option<f64>,
    /// Whether a decoder-scope knob may interrupt the denoise ([`Self::interrupt_gate`]).
    interrupt_armed: Arc<AtomicBool>,
    log: Arc<ActionLog>,
    control: Receiver<Control<M::Latents>>,
    actions: ActionAttributor,
    schedule: TickSchedule,
    /// What of the loop has been written since it began (the idle rule without a source).
    coverage: LoopCoverage,
    /// The walk chunk the last frontier write aimed into (a change calls for a backfill at
    /// the new chunk's start: [`chunk_start_backfill`]).
    frontier_chunk: Option<usize>,
    faults: FaultHooks,
    out: StatsOutlet,
    recorder: Recorder,
    /// The newest knob action (its knob-to-ear goes to the stats).
    newest_knob: Option<ActionEvent>,
    /// Knob actions followed until their knob-to-ear is final.
    knob_to_ear: KnobToEar,
}

impl<M: Model> EngineCore<M> {
    /// A core writing through `writer`, fed by `control` (see [`super::actions`]); the stats
    /// go to `stats_in`. Checks that the ring and the model agree.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        model: Arc<M>,
        writer: RingWriter,
        knobs: KnobReader,
        cond: ConditioningReader<M::Cond>,
        config: EngineConfig,
        log: Arc<ActionLog>,
        control: Receiver<Control<M::Latents>>,
        stats_in: triple_buffer::Input<EngineStats>,
    ) -> Result<Self, EngineError> {
        config.validate()?;
        let ring = writer.handle();
        let g = model.geometry();
        if g.sample_rate != ring.sample_rate() || g.audio_channels != ring.channels() {
            return Err(EngineError::Geometry(format!(
                "the model makes {} Hz, {} channels; the ring holds {} Hz, {} channels",
                g.sample_rate,
                g.audio_channels,
                ring.sample_rate(),
                ring.channels()
            )));
        }
        let hop = g.samples_per_latent_frame();
        let keep_len = config.keep_latent_frames * hop;
        let latent_frames = ring.loop_frames() / hop;
        if keep_len + ring.guard_frames() >= ring.loop_frames()
            || config.keep_latent_frames + 1 > latent_frames
        {
            return Err(EngineError::Geometry(format!(
                "a kept window of {} latent frames ({keep_len} frames) does not fit a loop of \
                 {} frames",
                config.keep_latent_frames,
                ring.loop_frames()
            )));
        }
        let chunk_latent = (config.walk_chunk_s * f64::from(g.latent_frame_rate)).round() as usize;
        if chunk_latent < 2 * (config.keep_latent_frames + 1) {
            return Err(EngineError::Config {
                field: "walk_chunk_s",
                reason: format!(
                    "{} s is {chunk_latent} latent frames; a chunk (at least half of it) must \
                     hold a kept window of {} latent frames",
                    config.walk_chunk_s, config.keep_latent_frames
                ),
            });
        }
        let windows = WalkWindows::new(
            WalkLayout::new(ring.loop_frames(), hop, latent_frames, chunk_latent),
            2 * (config.keep_latent_frames + 1),
        );
        let decoder = WindowDecoder::new(
            config.keep_latent_frames,
            model.decode_context_frames(),
            hop,
            g.audio_channels,
        );
        let record = EngineRecord {
            trace: Trace::new(config.trace_capacity).map_err(|e| EngineError::Config {
                field: "trace_capacity",
                reason: e.to_string(),
            })?,
            acks: Vec::with_capacity(config.trace_capacity),
            tick_ms: Vec::with_capacity(config.sample_capacity),
            decode_ms: Vec::with_capacity(config.sample_capacity),
            lead_s: Vec::with_capacity(config.sample_capacity),
            late_landings: 0,
        };
        let coverage = LoopCoverage::new(ring.loop_frames(), hop);
        Ok(Self {
            pipeline: StreamPipeline::new(Arc::clone(&model), latent_frames),
            model,
            finished: Vec::with_capacity(8),
            walk: WalkLatents::new(windows),
            decoder,
            rendered_decoder: None,
            knobs,
            cond,
            cond_epoch: 0,
            writer,
            band: ring.band(),
            ring,
            rate: g.sample_rate,
            pending_loop: PendingLoop {
                queued: None,
                awaited: None,
            },
            lead: LeadController::new(config.lead)?,
            last_fresh_s: None,
            interrupt_armed: Arc::new(AtomicBool::new(false)),
            log,
            control,
            actions: ActionAttributor::new(),
            schedule: TickSchedule::new(config.start_paused),
            coverage,
            frontier_chunk: None,
            faults: FaultHooks::default(),
            out: StatsOutlet::new(stats_in),
            recorder: Recorder::new(record, config.sample_capacity),
            newest_knob: None,
            knob_to_ear: KnobToEar::new(g.sample_rate),
            config,
        })
    }

    /// Start the activity clock at `now_s` (the engine generates for `idle_after_s` after).
    pub fn start(&mut self, now_s: f64) {
        self.schedule.last_activity_s = now_s;
    }

    /// Whether a [`Control::Stop`] arrived.
    pub fn stopped(&self) -> bool {
        self.schedule.stopped
    }

    /// Give the ring's writer back (after the loop ended).
    pub fn into_writer(self) -> RingWriter {
        self.writer
    }

    /// Advance the applied prefix, drain control messages, and note inbound activity
    /// (actions, knob publishes, conditioning commits, band changes). Returns whether any
    /// arrived.
    pub fn poll(&mut self, now_s: f64) -> bool {
        self.actions.advance(&self.log);
        let mut activity = false;
        while let Ok(msg) = self.control.try_recv() {
            if let Control::Lead(config) = msg {
                // Settings, not a performer's action: no activity, no repatch.
                self.set_lead(config, now_s);
                continue;
            }
            activity = true;
            match msg {
                Control::Action(a) => {
                    self.actions.note_action(a.kind, a.id);
                    if matches!(a.kind, ActionKind::Knob | ActionKind::PerSlotKnob) {
                        self.newest_knob = Some(a);
                        self.out.stats.last_knob_to_ear_ms = None;
                        self.knob_to_ear
                            .arrived(a, &mut self.out.stats.knob_to_ear_seconds);
                    }
                    self.recorder.record.trace.record(a);
                }
                Control::Ack { id, frame } => {
                    let acks = &mut self.recorder.record.acks;
                    if acks.len() < acks.capacity() {
                        acks.push((id, frame));
                    }
                }
                Control::Source(s) => self.set_walk_source(s),
                Control::Loop(ring_loop, latents) => {
                    self.pending_loop.queued = Some((ring_loop, latents));
                }
                Control::Lead(_) => {}
                Control::Pause(p) => self.schedule.paused = p,
                Control::Stall(s) => self.faults.stall_next_s += s,
                #[cfg(feature = "fault-injection")]
                Control::PanicNextTick => self.faults.panic_next_tick = true,
                Control::Record(reply) => {
                    let _ = reply.send(self.recorder.record.clone());
                }
                Control::Stop => self.schedule.stopped = true,
            }
        }
        if self.advance_loop_swap() {
            activity = true;
        }
        if self.knobs.changed() {
            self.knobs.read();
            activity = true;
        }
        // A knob on its way (a glide, a preset fade) keeps the engine active, without
        // ticking at once: the ticks at their interval carry the ramp.
        if self
            .knobs
            .read()
            .any_ramping_at(self.ring.playhead_and_clock().1)
        {
            self.schedule.note_activity(now_s);
            self.lead.note_activity(now_s);
        }
        let epoch = self.cond.read().epoch;
        if epoch != self.cond_epoch {
            self.cond_epoch = epoch;
            activity = true;
        }
        let band = self.ring.band();
        if band != self.band {
            self.band = band;
            activity = true;
        }
        if activity {
            self.schedule.note_activity(now_s);
            self.lead.note_activity(now_s);
            self.schedule.activity_pending = true;
        }
        activity
    }

    /// Whether generation is paused by the idle rule at `now_s`: no input for
    /// `idle_after_s`, and the ring holds a whole loop (a source, or, without one, every part
    /// of the loop written once: `LoopCoverage`).
    pub fn idle(&self, now_s: f64) -> bool {
        let whole_loop = self.walk.source.is_some() || self.coverage.complete();
        whole_loop && self.schedule.idle(now_s, &self.config)
    }

    /// When the next tick is due (seconds on the clock's timeline); `None` while paused,
    /// idle or stopped (the caller waits for input).
    pub fn next_tick_due(&self, now_s: f64) -> Option<f64> {
        self.schedule
            .next_due(now_s, &self.config, self.idle(now_s))
    }

    /// Run one tick now (see the module doc). A panic inside is caught and counted.
    pub fn tick(&mut self, clock: &mut dyn EngineClock) {
        let now = clock.now_s();
        self.poll(now);
        self.schedule.ticked(now);
        self.out.stats.ticks += 1;
        // The tick's DSP runs with subnormals flushed (on the engine thread and in a
        // simulation alike); the flags are restored before anything else runs here.
        let outcome = crate::denormals::flush_denormals(|| {
            catch_unwind(AssertUnwindSafe(|| self.tick_body(clock)))
        });
        match outcome {
            Ok(Ok(())) => {}
            // A decode or ring error (a geometry the checks at construction rule out):
            // counted with the panics, the ring keeps what it holds.
            Ok(Err(_)) => self.out.stats.panics += 1,
            Err(_) => {
                self.out.stats.panics += 1;
                self.out.stats.pipeline_restarts += 1;
                self.restart_pipeline();
            }
        }
        let frame = clock.playhead_and_clock().1;
        self.knob_to_ear
            .settle(frame, &mut self.out.stats.knob_to_ear_seconds);
        self.publish_stats(clock.now_s(), false);
    }

    /// The gate a knob waker ([`EngineHandle::knob_waker`](super::EngineHandle::knob_waker))
    /// opens before it calls [`Model::interrupt_denoise`]: `swap(false)` is true when the
    /// engine allows an interrupt now. The engine arms it after each denoise that ran to its
    /// end (when repatches are on) and the waker that uses it disarms it, so after an
    /// interrupt the next denoise always runs whole.
    pub fn interrupt_gate(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.interrupt_armed)
    }

    fn restart_pipeline(&mut self) {
        let frames = self.pipeline.frames();
        self.pipeline = StreamPipeline::new(Arc::clone(&self.model), frames);
        let source = self.walk.chunks[self.walk.pipeline_chunk.unwrap_or(0)].clone();
        self.pipeline.set_source(source);
        self.actions.pipeline_restarted();
        self.finished.clear();
    }

    /// A loop swap ([`Control::Loop`]): hand the newest queued loop to the ring once it takes
    /// one, and when the reader has adopted it, rebuild what is sized by the loop (the
    /// pipeline, the walk windows, the caches) around the new source. Returns whether the
    /// loop changed.
    fn advance_loop_swap(&mut self) -> bool {
        let pending = &mut self.pending_loop;
        if !self.writer.poll_swap()
            && pending.awaited.is_none()
            && let Some((ring_loop, latents)) = pending.queued.take()
        {
            // The handle checked the channels and the length: a refusal cannot happen,
            // and would leave the old loop and source in place.
            if self.writer.replace_loop(ring_loop).is_ok() {
                pending.awaited = Some(latents);
            }
        }
        if pending.awaited.is_none() || self.writer.swap_awaiting_adoption() {
            return false;
        }
        let Some(latents) = pending.awaited.take() else {
            return false;
        };
        let latent_frames = self.writer.loop_frames() / self.decoder.hop;
        self.coverage = LoopCoverage::new(self.writer.loop_frames(), self.decoder.hop);
        self.pipeline = StreamPipeline::new(Arc::clone(&self.model), latent_frames);
        self.actions.pipeline_restarted();
        self.finished.clear();
        self.walk.forget_finished();
        self.band = self.ring.band();
        self.set_walk_source(Some(latents));
        true
    }

    /// A new source (or none): cut it into the walk chunks. A loop of one chunk hands the
    /// whole source to the pipeline as before (slots in flight go on); a walking loop lets
    /// the next tick pick the chunk from the playhead.
    fn set_walk_source(&mut self, source: Option<Arc<M::Latents>>) {
        let hop = self.decoder.hop;
        let total = source
            .as_ref()
            .map_or(self.writer.loop_frames() / hop, |s| {
                self.model.latent_frames(s)
            });
        let rate = f64::from(self.model.geometry().latent_frame_rate);
        let chunk_latent = (self.config.walk_chunk_s * rate).round() as usize;
        self.walk.windows = WalkWindows::new(
            WalkLayout::new(self.writer.loop_frames(), hop, total, chunk_latent),
            2 * (self.config.keep_latent_frames + 1),
        );
        let count = self.walk.windows.count();
        self.walk.newest_of.resize(count + 1, None);
        self.walk.source = source.clone();
        if !self.walk.windows.walking() {
            self.walk.chunks = vec![source.clone(), None];
            self.walk.pipeline_chunk = Some(0);
            self.pipeline.set_source(source);
            return;
        }
        self.walk.chunks = (0..count).map(|k| self.window_source(k)).collect();
        self.walk.chunks.push(None);
        self.walk.windows.set_band(None);
        self.follow_band();
        self.walk.pipeline_chunk = None;
        self.frontier_chunk = None;
    }

    /// Window `w`'s part of the source.
    fn window_source(&self, w: usize) -> Option<Arc<M::Latents>> {
        let (start, len) = self.walk.windows.latent_range(w);
        self.walk
            .source
            .as_ref()
            .map(|s| Arc::new(self.model.slice_latents(s, start, len)))
    }

    /// Walk mode: follow the ring's band. When its band window ([`WalkWindows::set_band`])
    /// changes, the window's source is cut anew and what was generated for the old one is
    /// dropped (a pipeline on it picks its window again).
    fn follow_band(&mut self) {
        if !self.walk.windows.set_band(self.ring.band()) {
            return;
        }
        let w = self.walk.windows.band_index();
        self.walk.chunks[w] = self
            .walk
            .windows
            .band_window()
            .and_then(|_| self.window_source(w));
        self.walk.forget_window(w);
        if self.walk.pipeline_chunk == Some(w) {
            self.walk.pipeline_chunk = None;
            self.out.stats.walk_switches += 1;
        }
    }

    /// Walk mode: move the pipeline to the chunk holding the point
    /// [`Self::walk_prewarm_s`] along the reader's path, so fresh latents for the next chunk
    /// exist before the playhead crosses into it. Nothing when the loop is one chunk.
    fn follow_playhead(
        &mut self,
        clock: &mut dyn EngineClock,
        knobs: &KnobSnapshot,
    ) -> Result<(), EngineError> {
        if !self.walk.windows.walking() {
            return Ok(());
        }
        self.follow_band();
        let (playhead, _) = clock.playhead_and_clock();
        let prewarm = seconds_to_frames(self.walk_prewarm_s(knobs, clock.now_s()), self.rate);
        let ahead = self.geometry()?.advance(playhead, prewarm);
        let want = self.walk.windows.window_of(ahead);
        if self.walk.pipeline_chunk == Some(want) {
            return Ok(());
        }
        if self.walk.pipeline_chunk.is_some() {
            self.out.stats.walk_switches += 1;
        }
        let (_, frames) = self.walk.windows.latent_range(want);
        self.pipeline
            .set_window(want as u32, self.walk.chunks[want].clone(), frames);
        self.walk.pipeline_chunk = Some(want);
        self.out.stats.walk_chunk = want;
        Ok(())
    }

    /// How far ahead of the playhead walk mode moves the pipeline on to the next chunk:
    /// twice what the switch needs (a fresh pipeline's first latent, `depth` gaps between
    /// fresh latents, then the frontier lead), within [`WALK_PREWARM_FLOOR_S`] and
    /// `walk_prewarm_s`. While the pipeline works on the next chunk, nothing new reaches the
    /// playhead's stretch of the current one, so a knob turned then waits for the crossing:
    /// the prewarm is kept as short as the pipeline allows.
    fn walk_prewarm_s(&self, knobs: &KnobSnapshot, now_s: f64) -> f64 {
        let depth = f64::from(knobs.u32(KnobId::depth).max(1));
        let needed = depth * self.lead.interval_ema_s() + self.lead.lead_s(now_s);
        let ceiling = self.config.walk_prewarm_s;
        (2.0 * needed).clamp(WALK_PREWARM_FLOOR_S.min(ceiling), ceiling)
    }

    fn tick_body(&mut self, clock: &mut dyn EngineClock) -> Result<(), EngineError> {
        if self.faults.stall_next_s > 0.0 {
            clock.stall(std::mem::take(&mut self.faults.stall_next_s));
        }
        if std::mem::take(&mut self.faults.panic_next_tick) {
            panic!("test hook: injected engine tick panic");
        }
        let prefix = self.actions.prefix();
        // An interrupt asked for before this point is answered by this tick's knob repatch;
        // one asked for from here on stops this tick's denoise.
        self.model.clear_denoise_interrupt();
        // The values sounding at this tick's frame: a ramping knob (a glide, a preset
        // fade) advances with the ticks.
        let knobs = self.knobs.read().at(clock.playhead_and_clock().1);
        let cond = Arc::clone(self.cond.read());
        if let Some((chunk, latent, attr)) = self.knob_repatch_due(&knobs, prefix, clock.now_s()) {
            self.write_window(clock, WriteKind::KnobRepatch, chunk, &latent, attr, &knobs)?;
            self.out.stats.repatches += 1;
        }
        self.follow_playhead(clock, &knobs)?;
        let chunk = self.walk.pipeline_chunk.unwrap_or(0);
        let before = self.pipeline.in_flight();
        self.finished.clear();
        let started = Instant::now();
        match self.pipeline.tick(&knobs, &cond, &mut self.finished) {
            Ok(()) => {}
            Err(ModelError::Interrupted) => {
                // A decoder knob arrived: tick again at once, its repatch first.
                self.out.stats.denoise_interrupts += 1;
                self.schedule.activity_pending = true;
                return Ok(());
            }
            Err(e) => {
                self.out.stats.model_faults += 1;
                self.out.stats.last_model_fault = Some(e.to_string());
            }
        }
        self.interrupt_armed
            .store(self.lead.repatches(), Ordering::Release);
        // A GPU backend's tick time comes from its events, resolved one tick late (the wall
        // clock here would time only the launches); until the first resolves, the launch
        // time stands in.
        let wall_s = started.elapsed().as_secs_f64();
        let measured_s = self
            .model
            .device_times()
            .and_then(|d| d.tick_s)
            .unwrap_or(wall_s);
        let tick_s = clock.charge(Work::Tick, measured_s);
        self.out.tick_took(tick_s);
        self.recorder.tick_ms(tick_s * 1e3);
        let started_slots =
            (self.pipeline.in_flight() + self.finished.len()).saturating_sub(before);
        self.actions.slots_started(started_slots, prefix);
        let fresh = self.finished.last().map(|f| {
            (
                Arc::clone(&f.latents),
                self.actions.finished(f.serial, prefix),
            )
        });
        let now = clock.now_s();
        if let Some((latent, attr)) = fresh {
            if let Some(prev) = self.last_fresh_s {
                let window_s = self.decoder.keep_len as f64 / self.rate as f64;
                self.lead.observe_gap(now - prev, window_s, now)?;
            }
            self.last_fresh_s = Some(now);
            self.walk.finished(chunk, &latent, attr, &knobs);
            // Near the playhead first: the frontier is a quarter second ahead and can wait
            // one decode; the repatch is what the listener hears next.
            if self.lead.repatch_due(now) {
                self.write_window(clock, WriteKind::Repatch, chunk, &latent, attr, &knobs)?;
                self.out.stats.repatches += 1;
            }
            self.write_window(clock, WriteKind::Frontier, chunk, &latent, attr, &knobs)?;
            self.out.stats.frontier_writes += 1;
        } else if let Some((chunk, latent, attr)) = self.walk.newest.clone() {
            self.write_window(clock, WriteKind::GapFill, chunk, &latent, attr, &knobs)?;
            self.out.stats.gap_fills += 1;
        }
        Ok(())
    }

    /// The newest latent and what a re-render of it with `knobs` reflects, when a knob
    /// repatch is due: the repatch is on and within its activity window, and the decoder
    /// knobs differ from those the newest write used (see
    /// [`ActionAttributor::rerendered`]).
    fn knob_repatch_due(
        &self,
        knobs: &KnobSnapshot,
        prefix: u64,
        now_s: f64,
    ) -> Option<(usize, Arc<M::Latents>, Attribution)> {
        let (chunk, latent, attr) = self.walk.newest.as_ref()?;
        if !self.lead.repatch_due(now_s)
            || self
                .rendered_decoder
                .is_none_or(|d| d == decoder_knobs(knobs))
        {
            return None;
        }
        let decoder_only = same_outside_decoder(knobs, &self.walk.newest_knobs);
        let attr = self.actions.rerendered(*attr, prefix, decoder_only);
        Some((*chunk, Arc::clone(latent), attr))
    }

    /// Decode and write one window of `latent` (a latent of walk chunk `chunk`):
    /// plan → pick the latent → decode → place → write. In walk mode the write stays
    /// inside the chunk its target falls in, with that chunk's newest latent when it is not
    /// `chunk` (a frontier write is then traced as a gap-fill); with none for that chunk
    /// yet, nothing is written (the ring keeps older audio).
    fn write_window(
        &mut self,
        clock: &mut dyn EngineClock,
        kind: WriteKind,
        chunk: usize,
        latent: &Arc<M::Latents>,
        attr: Attribution,
        knobs: &KnobSnapshot,
    ) -> Result<(), EngineError> {
        let near = matches!(kind, WriteKind::Repatch | WriteKind::KnobRepatch);
        let (playhead, frame) = clock.playhead_and_clock();
        let geometry = self.geometry()?;
        let Some(plan) = self.plan_write(clock, near, &geometry, playhead)? else {
            return Ok(());
        };
        let fresh = PickedLatent {
            kind,
            chunk,
            latent: Arc::clone(latent),
            attr,
        };
        // A planned write: the reader as it was when planned, nothing skipped.
        let planned = |plan| Placement {
            plan,
            skip: 0,
            playhead,
            frame,
            geometry,
        };
        if !near && let Some(backfill) = self.frontier_backfill(&geometry, playhead, plan.target())
        {
            self.write_planned(clock, &fresh, knobs, planned(backfill))?;
        }
        self.write_planned(clock, &fresh, knobs, planned(plan))
    }

    /// The backfill a frontier write aimed at `target` needs first: when the frontier has
    /// just entered another walk chunk, a window at the chunk's start
    /// ([`chunk_start_backfill`]).
    fn frontier_backfill(
        &mut self,
        geometry: &LoopGeometry,
        playhead: usize,
        target: usize,
    ) -> Option<WritePlan> {
        if !self.walk.windows.walking() {
            return None;
        }
        let chunk = self.walk.windows.window_of(target);
        if self.frontier_chunk.replace(chunk) == Some(chunk) {
            return None;
        }
        let (chunk_start, _) = self.walk.windows.ring_range(chunk);
        chunk_start_backfill(
            geometry,
            playhead,
            target,
            chunk_start,
            self.ring.guard_frames() + BLOCK_FRAMES,
            self.decoder.keep_len,
        )
    }

    /// The rest of [`Self::write_window`] once its plan is made (`planned`, as the reader
    /// was when planned, nothing skipped): pick the latent (`fresh`, or the newest of the
    /// window the target falls in), decode, place (a near write again, after the decode),
    /// write.
    fn write_planned(
        &mut self,
        clock: &mut dyn EngineClock,
        fresh: &PickedLatent<M::Latents>,
        knobs: &KnobSnapshot,
        planned: Placement,
    ) -> Result<(), EngineError> {
        let near = matches!(fresh.kind, WriteKind::Repatch | WriteKind::KnobRepatch);
        let target = planned.plan.target();
        let Some(picked) = self.pick_latent(target, fresh) else {
            return Ok(());
        };
        let decoded = self.decode_timed(clock, &picked, knobs, target)?;
        let placement = if near {
            match self.place_after_decode(clock, &planned.plan, picked.chunk, decoded)? {
                Some(p) => p,
                None => return Ok(()),
            }
        } else {
            planned
        };
        let avail = if near { decoded } else { usize::MAX };
        self.write_placed(&placement, &picked, avail)
    }

    /// Where a write of `near` kind from `playhead` aims (the frontier's lead is recorded
    /// in the stats); `None`: skip it.
    fn plan_write(
        &mut self,
        clock: &mut dyn EngineClock,
        near: bool,
        geometry: &LoopGeometry,
        playhead: usize,
    ) -> Result<Option<WritePlan>, EngineError> {
        if near {
            return self.near_plan(geometry, playhead);
        }
        let lead_s = self.lead.lead_s(clock.now_s());
        self.out.stats.lead_s = lead_s;
        self.recorder.lead_s(lead_s);
        let lead = seconds_to_frames(lead_s, self.rate);
        frontier_target(geometry, playhead, lead, self.decoder.keep_len)
            .map(Some)
            .map_err(geo_err)
    }

    /// The latent a write aimed at `target` decodes: `fresh` when the target falls in
    /// its own window, else that window's newest (`None` without one).
    fn pick_latent(
        &self,
        target: usize,
        fresh: &PickedLatent<M::Latents>,
    ) -> Option<PickedLatent<M::Latents>> {
        let target_chunk = self.walk.windows.window_of(target);
        if target_chunk == fresh.chunk {
            return Some(PickedLatent {
                latent: Arc::clone(&fresh.latent),
                ..*fresh
            });
        }
        let (older, older_attr) = self.walk.newest_of[target_chunk].clone()?;
        let kind = match fresh.kind {
            WriteKind::Frontier => WriteKind::GapFill,
            k => k,
        };
        Some(PickedLatent {
            kind,
            chunk: target_chunk,
            latent: older,
            attr: older_attr,
        })
    }

    /// Decode the window of `picked` for ring frame `target`, charging its time; returns
    /// the frames decoded from `target` on ([`WindowDecoder::decode`]).
    fn decode_timed(
        &mut self,
        clock: &mut dyn EngineClock,
        picked: &PickedLatent<M::Latents>,
        knobs: &KnobSnapshot,
        target: usize,
    ) -> Result<usize, EngineError> {
        let (chunk_start, _) = self.walk.windows.ring_range(picked.chunk);
        let started = Instant::now();
        let decoded = self.decoder.decode(
            &*self.model,
            &self.walk,
            &picked.latent,
            picked.chunk,
            knobs,
            target - chunk_start,
        )?;
        let wall_s = started.elapsed().as_secs_f64();
        // A GPU decode waits for its own audio, so its events have resolved by now.
        let measured_s = self
            .model
            .device_times()
            .and_then(|d| d.decode_s)
            .unwrap_or(wall_s);
        let decode_s = clock.charge(Work::Decode, measured_s);
        self.rendered_decoder = Some(decoder_knobs(knobs));
        self.out.decode_took(decode_s);
        self.recorder.decode_ms(decode_s * 1e3);
        Ok(decoded)
    }

    /// A near write is placed from the playhead as it is now, after the decode: the
    /// decoded frames from the new target on are written, those the reader came too close
    /// to meanwhile are skipped (see the module doc). `None`: nothing of it can land.
    fn place_after_decode(
        &self,
        clock: &mut dyn EngineClock,
        planned: &WritePlan,
        chunk: usize,
        decoded: usize,
    ) -> Result<Option<Placement>, EngineError> {
        let (playhead, frame) = clock.playhead_and_clock();
        let geometry = self.geometry()?;
        let Some(plan) = self.near_plan(&geometry, playhead)? else {
            return Ok(None);
        };
        if self.walk.windows.window_of(plan.target()) != chunk {
            return Ok(None);
        }
        let loop_frames = geometry.loop_frames();
        let skip = (plan.target() + loop_frames - planned.target()) % loop_frames;
        if skip >= decoded {
            return Ok(None);
        }
        Ok(Some(Placement {
            plan,
            skip,
            playhead,
            frame,
            geometry,
        }))
    }

    /// Write the decoded window's segments where `placement` puts them (at most `avail`
    /// decoded frames), each traced.
    fn write_placed(
        &mut self,
        placement: &Placement,
        picked: &PickedLatent<M::Latents>,
        avail: usize,
    ) -> Result<(), EngineError> {
        let (_, chunk_end) = self.walk.windows.ring_range(picked.chunk);
        let Placement {
            plan,
            skip,
            playhead,
            frame,
            geometry,
        } = placement;
        for (i, seg) in plan.segments().iter().enumerate() {
            let offset = skip + seg.window_offset;
            let mut len = seg.len.min(avail.saturating_sub(offset));
            if self.walk.windows.walking() {
                // A walk window's latent covers its own window: the head stops at its end.
                // A band wrap segment carries on the same decode (what the reader hears
                // after B, written at A), wherever A lies; it stops at the end of the
                // window holding A.
                let end = if i == 0 {
                    chunk_end
                } else {
                    let w = self.walk.windows.window_of(seg.ring_start);
                    self.walk.windows.ring_range(w).1
                };
                len = len.min(end.saturating_sub(seg.ring_start));
            }
            if len == 0 {
                continue;
            }
            let report = self
                .writer
                .write(seg.ring_start, self.decoder.audio(offset, len))?;
            self.coverage.mark(seg.ring_start, len);
            let event = WriteEvent {
                kind: if i == 0 {
                    picked.kind
                } else {
                    WriteKind::BandWrap
                },
                ring_start: seg.ring_start,
                len,
                late_frames: report.late_frames,
                issued_frame: *frame,
                landed_frame: report.landed_at,
                start_reached_frame: start_reached_frame(
                    geometry,
                    *frame,
                    *playhead,
                    seg.ring_start,
                ),
                newest_action_id: picked.attr.newest,
                full_action_id: picked.attr.full,
            };
            if report.late_frames > 0 {
                self.out.stats.late_landings += 1;
                self.recorder.record.late_landings += 1;
            }
            self.note_heard(&event);
            self.recorder.record.trace.record(event);
        }
        Ok(())
    }

    /// The loop and band as the ring has them now.
    fn geometry(&self) -> Result<LoopGeometry, EngineError> {
        LoopGeometry::new(self.writer.loop_frames(), self.ring.band()).map_err(geo_err)
    }

    /// Where a near-playhead write from `playhead` goes: the guard plus one block past it
    /// (the block covers the playhead moving by a publish between this read and the
    /// write's guard checks), or `interval_ema * gain + margin` when
    /// `repatch_gain` / `repatch_margin_s` make that longer. `None`: skip it.
    fn near_plan(
        &self,
        geometry: &LoopGeometry,
        playhead: usize,
    ) -> Result<Option<WritePlan>, EngineError> {
        let configured_s =
            self.lead.interval_ema_s() * self.config.repatch_gain + self.config.repatch_margin_s;
        let lead = seconds_to_frames(configured_s, self.rate);
        let min_distance = self.ring.guard_frames() + BLOCK_FRAMES;
        repatch_target(
            geometry,
            playhead,
            lead,
            min_distance,
            self.decoder.keep_len,
        )
        .map_err(geo_err)
    }

    /// Update the knob-to-ear figures with a new write: the newest knob action's, and
    /// those of the actions the histogram follows.
    fn note_heard(&mut self, write: &WriteEvent) {
        self.knob_to_ear.landed(write);
        let Some(action) = self.newest_knob else {
            return;
        };
        let l = ActionLatency::compute(&action, None, std::iter::once(write));
        if let Some(f) = l.audible_first {
            let ms = f as f64 * 1e3 / self.rate as f64;
            let best = self.out.stats.last_knob_to_ear_ms.map_or(ms, |b| b.min(ms));
            self.out.stats.last_knob_to_ear_ms = Some(best);
        }
    }

    /// Publish the stats (at most every 0.1 s unless `force`).
    pub fn publish_stats(&mut self, now_s: f64, force: bool) {
        let idle = self.idle(now_s);
        let dropped = self.recorder.record.trace.dropped();
        self.out
            .publish(now_s, force, idle, self.schedule.paused, dropped);
    }

    /// Use `config` for the lead from now on (see [`LeadController::set_config`]); the
    /// stats show the lead it gives at once, also while the engine idles. The handle has
    /// validated `config`; one that still fails validation leaves the settings in use.
    fn set_lead(&mut self, config: LeadConfig, now_s: f64) {
        if self.lead.set_config(config).is_ok() {
            self.config.lead = config;
            self.out.stats.lead_s = self.lead.lead_s(now_s);
        }
    }

    /// The lead settings in use.
    pub fn lead_config(&self) -> &LeadConfig {
        self.lead.config()
    }

    /// The stats as of now (not published).
    pub fn stats(&self) -> &EngineStats {
        &self.out.stats
    }

    /// The record (trace, replies, samples).
    pub fn record(&self) -> &EngineRecord {
        &self.recorder.record
    }
}
