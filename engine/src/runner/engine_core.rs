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
//! # Threading
//!
//! Owned by one thread (the engine thread, or a simulation). It never blocks: control
//! messages are drained with `try_recv`, knobs and conditioning are read through triple
//! buffers, the ring write is lock-free, and nothing is logged.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::Instant;

use super::actions::{ActionLog, Control, EngineRecord};
use super::clock::{EngineClock, Work};
use super::engine_config::{EngineConfig, EngineError, EngineStats};
use super::knob_to_ear::KnobToEar;
use super::lead::{LeadConfig, LeadController, seconds_to_frames};
use super::metrics::ActionLatency;
use super::targeting::{LoopGeometry, TargetingError, WritePlan, frontier_target, repatch_target};
use super::trace::{ActionEvent, ActionKind, Trace, WriteEvent, WriteKind, start_reached_frame};
use super::walk::{WalkLayout, WalkWindows};
use crate::conditioning::ConditioningReader;
use crate::knobs::{KnobId, KnobReader, KnobScope, KnobSnapshot};
use crate::model::{ChunkPlace, Model, ModelError};
use crate::pipeline::{FinishedLatent, StreamPipeline};
use crate::ring::{BLOCK_FRAMES, RingHandle, RingLoop, RingWriter};

/// Slots whose start prefix is remembered (more than the deepest pipeline).
const START_SLOTS: usize = 16;
/// Recent per-slot actions remembered for attribution.
const PER_SLOT_IDS: usize = 64;
/// Recent durations the published percentiles cover.
const RECENT: usize = 256;
/// Seconds between stats publishes.
const PUBLISH_EVERY_S: f64 = 0.1;

/// Which actions a latent reflects (see [`WriteEvent`]).
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
struct Attribution {
    newest: Option<u64>,
    full: Option<u64>,
}

/// A fixed ring of recent durations (ms) for the published percentiles.
struct Recent {
    values: [f64; RECENT],
    len: usize,
    next: usize,
}

impl Recent {
    fn new() -> Self {
        Self {
            values: [0.0; RECENT],
            len: 0,
            next: 0,
        }
    }

    fn push(&mut self, v: f64) {
        self.values[self.next] = v;
        self.next = (self.next + 1) % RECENT;
        self.len = (self.len + 1).min(RECENT);
    }

    /// (p50, p95) without allocating.
    fn percentiles(&self) -> (f64, f64) {
        if self.len == 0 {
            return (0.0, 0.0);
        }
        let mut sorted = self.values;
        let s = &mut sorted[..self.len];
        s.sort_unstable_by(f64::total_cmp);
        let at = |p: usize| s[((p * s.len()).div_ceil(100)).clamp(1, s.len()) - 1];
        (at(50), at(95))
    }
}

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

fn push_sample(samples: &mut Vec<f64>, cap: usize, count: &mut usize, v: f64) {
    if samples.len() < cap {
        samples.push(v);
    } else {
        samples[*count % cap] = v;
    }
    *count += 1;
}

/// The engine's tick loop body (see the module doc).
pub struct EngineCore<M: Model> {
    /// Whether a decoder-scope knob may interrupt the denoise ([`Self::interrupt_gate`]).
    interrupt_armed: Arc<AtomicBool>,
    model: Arc<M>,
    config: EngineConfig,
    pipeline: StreamPipeline<M>,
    /// The source's latents cut into the walk windows: the chunks (one entry, the whole
    /// source, when the loop is one chunk), then the band window's; `None` entries
    /// without a source or band window.
    chunks: Vec<Option<Arc<M::Latents>>>,
    /// The whole source's latents (what a band window is cut from).
    source: Option<Arc<M::Latents>>,
    walk: WalkWindows,
    /// The window the pipeline generates for; `None` until the next tick picks one.
    pipeline_chunk: Option<usize>,
    /// The newest finished latent of each window (what a write into it falls back to).
    chunk_cache: Vec<Option<(Arc<M::Latents>, Attribution)>>,
    knobs: KnobReader,
    cond: ConditioningReader<M::Cond>,
    writer: RingWriter,
    ring: RingHandle,
    /// The newest loop waiting to go to the ring (a later one replaces it).
    loop_queue: Option<(RingLoop, Arc<M::Latents>)>,
    /// The source of the loop handed to the ring, until the reader adopts it.
    loop_awaited: Option<Arc<M::Latents>>,
    lead: LeadController,
    log: Arc<ActionLog>,
    control: Receiver<Control<M::Latents>>,
    record: EngineRecord,
    samples_seen: [usize; 3],
    prefix: u64,
    per_slot_ids: VecDeque<u64>,
    /// Recent ids of actions that are not shared knobs (per-slot knobs, prompts, loops...):
    /// a knob repatch of an older latent cannot reflect them.
    other_ids: VecDeque<u64>,
    slot_starts: [u64; START_SLOTS],
    next_serial: u32,
    finished: Vec<FinishedLatent<M::Latents>>,
    /// The newest finished latent, with its chunk.
    cached: Option<(usize, Arc<M::Latents>, Attribution)>,
    /// The knobs of the tick that finished the cached latent.
    cached_knobs: KnobSnapshot,
    /// The decoder knobs the newest write was rendered with.
    rendered_decoder: Option<([f32; 8], bool)>,
    last_tick_s: Option<f64>,
    last_activity_s: f64,
    last_fresh_s: Option<f64>,
    activity_pending: bool,
    paused: bool,
    stopped: bool,
    stall_next_s: f64,
    /// Test hook: the next tick panics (once).
    panic_next_tick: bool,
    cond_epoch: u64,
    band: Option<(usize, usize)>,
    scratch: Vec<f32>,
    window_at: usize,
    hop: usize,
    channels: usize,
    keep_len: usize,
    rate: u32,
    stats: EngineStats,
    recent_tick: Recent,
    recent_decode: Recent,
    newest_knob: Option<ActionEvent>,
    /// Knob actions followed until their knob-to-ear is final.
    knob_to_ear: KnobToEar,
    stats_in: triple_buffer::Input<EngineStats>,
    last_publish: Option<(f64, u64)>,
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
        let walk = WalkWindows::new(
            WalkLayout::new(ring.loop_frames(), hop, latent_frames, chunk_latent),
            2 * (config.keep_latent_frames + 1),
        );
        let ctx = model.decode_context_frames();
        let scratch = vec![0.0; (config.keep_latent_frames + 1 + 2 * ctx) * hop * g.audio_channels];
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
        Ok(Self {
            pipeline: StreamPipeline::new(Arc::clone(&model), latent_frames),
            model,
            interrupt_armed: Arc::new(AtomicBool::new(false)),
            lead: LeadController::new(config.lead)?,
            config,
            chunks: vec![None; walk.count() + 1],
            source: None,
            pipeline_chunk: (!walk.walking()).then_some(0),
            chunk_cache: vec![None; walk.count() + 1],
            walk,
            knobs,
            cond,
            writer,
            band: ring.band(),
            loop_queue: None,
            loop_awaited: None,
            ring,
            log,
            control,
            record,
            samples_seen: [0; 3],
            prefix: 0,
            per_slot_ids: VecDeque::with_capacity(PER_SLOT_IDS),
            other_ids: VecDeque::with_capacity(PER_SLOT_IDS),
            slot_starts: [0; START_SLOTS],
            next_serial: 0,
            finished: Vec::with_capacity(8),
            cached: None,
            cached_knobs: KnobSnapshot::defaults(),
            rendered_decoder: None,
            last_tick_s: None,
            last_activity_s: 0.0,
            last_fresh_s: None,
            activity_pending: false,
            paused: config.start_paused,
            stopped: false,
            stall_next_s: 0.0,
            panic_next_tick: false,
            cond_epoch: 0,
            scratch,
            window_at: 0,
            hop,
            channels: g.audio_channels,
            keep_len,
            rate: g.sample_rate,
            stats: EngineStats::default(),
            recent_tick: Recent::new(),
            recent_decode: Recent::new(),
            newest_knob: None,
            knob_to_ear: KnobToEar::new(g.sample_rate),
            stats_in,
            last_publish: None,
        })
    }

    /// Start the activity clock at `now_s` (the engine generates for `idle_after_s` after).
    pub fn start(&mut self, now_s: f64) {
        self.last_activity_s = now_s;
    }

    /// Whether a [`Control::Stop`] arrived.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Give the ring's writer back (after the loop ended).
    pub fn into_writer(self) -> RingWriter {
        self.writer
    }

    /// Advance the applied prefix, drain control messages, and note inbound activity
    /// (actions, knob publishes, conditioning commits, band changes). Returns whether any
    /// arrived.
    pub fn poll(&mut self, now_s: f64) -> bool {
        self.log.advance_prefix(&mut self.prefix);
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
                    if a.kind == ActionKind::PerSlotKnob {
                        if self.per_slot_ids.len() == PER_SLOT_IDS {
                            self.per_slot_ids.pop_front();
                        }
                        self.per_slot_ids.push_back(a.id);
                    }
                    if a.kind != ActionKind::Knob {
                        if self.other_ids.len() == PER_SLOT_IDS {
                            self.other_ids.pop_front();
                        }
                        self.other_ids.push_back(a.id);
                    }
                    if matches!(a.kind, ActionKind::Knob | ActionKind::PerSlotKnob) {
                        self.newest_knob = Some(a);
                        self.stats.last_knob_to_ear_ms = None;
                        self.knob_to_ear
                            .arrived(a, &mut self.stats.knob_to_ear_seconds);
                    }
                    self.record.trace.record(a);
                }
                Control::Ack { id, frame } => {
                    if self.record.acks.len() < self.record.acks.capacity() {
                        self.record.acks.push((id, frame));
                    }
                }
                Control::Source(s) => self.set_walk_source(s),
                Control::Loop(ring_loop, latents) => self.loop_queue = Some((ring_loop, latents)),
                Control::Lead(_) => {}
                Control::Pause(p) => self.paused = p,
                Control::Stall(s) => self.stall_next_s += s,
                Control::PanicNextTick => self.panic_next_tick = true,
                Control::Record(reply) => {
                    let _ = reply.send(self.record.clone());
                }
                Control::Stop => self.stopped = true,
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
            self.last_activity_s = self.last_activity_s.max(now_s);
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
            self.last_activity_s = self.last_activity_s.max(now_s);
            self.lead.note_activity(now_s);
            self.activity_pending = true;
        }
        activity
    }

    /// Whether generation is paused by the idle rule at `now_s`.
    pub fn idle(&self, now_s: f64) -> bool {
        self.config.idle_after_s > 0.0 && now_s - self.last_activity_s > self.config.idle_after_s
    }

    /// When the next tick is due (seconds on the clock's timeline); `None` while paused,
    /// idle or stopped (the caller waits for input).
    pub fn next_tick_due(&self, now_s: f64) -> Option<f64> {
        if self.stopped || self.paused || self.idle(now_s) {
            return None;
        }
        if self.activity_pending {
            return Some(now_s);
        }
        let active = now_s - self.last_activity_s <= self.config.active_window_s;
        let interval = if active {
            self.config.active_tick_interval_s
        } else {
            self.config.tick_interval_s
        };
        Some(self.last_tick_s.map_or(now_s, |t| t + interval))
    }

    /// Run one tick now (see the module doc). A panic inside is caught and counted.
    pub fn tick(&mut self, clock: &mut dyn EngineClock) {
        let now = clock.now_s();
        self.poll(now);
        self.last_tick_s = Some(now);
        self.activity_pending = false;
        self.stats.ticks += 1;
        // The tick's DSP runs with subnormals flushed (on the engine thread and in a
        // simulation alike); the flags are restored before anything else runs here.
        let outcome = crate::denormals::flush_denormals(|| {
            catch_unwind(AssertUnwindSafe(|| self.tick_body(clock)))
        });
        match outcome {
            Ok(Ok(())) => {}
            // A decode or ring error (a geometry the checks at construction rule out):
            // counted with the panics, the ring keeps what it holds.
            Ok(Err(_)) => self.stats.panics += 1,
            Err(_) => {
                self.stats.panics += 1;
                self.stats.pipeline_restarts += 1;
                self.restart_pipeline();
            }
        }
        let frame = clock.playhead_and_clock().1;
        self.knob_to_ear
            .settle(frame, &mut self.stats.knob_to_ear_seconds);
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
        let source = self.chunks[self.pipeline_chunk.unwrap_or(0)].clone();
        self.pipeline.set_source(source);
        self.next_serial = 0;
        self.finished.clear();
    }

    /// A loop swap ([`Control::Loop`]): hand the newest queued loop to the ring once it takes
    /// one, and when the reader has adopted it, rebuild what is sized by the loop (the
    /// pipeline, the walk windows, the caches) around the new source. Returns whether the
    /// loop changed.
    fn advance_loop_swap(&mut self) -> bool {
        if !self.writer.poll_swap()
            && self.loop_awaited.is_none()
            && let Some((ring_loop, latents)) = self.loop_queue.take()
        {
            // The handle checked the channels and the length: a refusal cannot happen,
            // and would leave the old loop and source in place.
            if self.writer.replace_loop(ring_loop).is_ok() {
                self.loop_awaited = Some(latents);
            }
        }
        if self.loop_awaited.is_none() || self.writer.swap_awaiting_adoption() {
            return false;
        }
        let Some(latents) = self.loop_awaited.take() else {
            return false;
        };
        let latent_frames = self.writer.loop_frames() / self.hop;
        self.pipeline = StreamPipeline::new(Arc::clone(&self.model), latent_frames);
        self.next_serial = 0;
        self.finished.clear();
        self.cached = None;
        self.chunk_cache.iter_mut().for_each(|c| *c = None);
        self.band = self.ring.band();
        self.set_walk_source(Some(latents));
        true
    }

    /// A new source (or none): cut it into the walk chunks. A loop of one chunk hands the
    /// whole source to the pipeline as before (slots in flight go on); a walking loop lets
    /// the next tick pick the chunk from the playhead.
    fn set_walk_source(&mut self, source: Option<Arc<M::Latents>>) {
        let total = source
            .as_ref()
            .map_or(self.writer.loop_frames() / self.hop, |s| {
                self.model.latent_frames(s)
            });
        let rate = f64::from(self.model.geometry().latent_frame_rate);
        let chunk_latent = (self.config.walk_chunk_s * rate).round() as usize;
        self.walk = WalkWindows::new(
            WalkLayout::new(self.writer.loop_frames(), self.hop, total, chunk_latent),
            2 * (self.config.keep_latent_frames + 1),
        );
        let count = self.walk.count();
        self.chunk_cache.resize(count + 1, None);
        self.source = source.clone();
        if !self.walk.walking() {
            self.chunks = vec![source.clone(), None];
            self.pipeline_chunk = Some(0);
            self.pipeline.set_source(source);
            return;
        }
        self.chunks = (0..count).map(|k| self.window_source(k)).collect();
        self.chunks.push(None);
        self.walk.set_band(None);
        self.follow_band();
        self.pipeline_chunk = None;
    }

    /// Window `w`'s part of the source.
    fn window_source(&self, w: usize) -> Option<Arc<M::Latents>> {
        let (start, len) = self.walk.latent_range(w);
        self.source
            .as_ref()
            .map(|s| Arc::new(self.model.slice_latents(s, start, len)))
    }

    /// Walk mode: follow the ring's band. When its band window ([`WalkWindows::set_band`])
    /// changes, the window's source is cut anew and what was generated for the old one is
    /// dropped (a pipeline on it picks its window again).
    fn follow_band(&mut self) {
        if !self.walk.set_band(self.ring.band()) {
            return;
        }
        let w = self.walk.band_index();
        self.chunks[w] = self.walk.band_window().and_then(|_| self.window_source(w));
        self.chunk_cache[w] = None;
        if self.cached.as_ref().is_some_and(|(c, _, _)| *c == w) {
            self.cached = None;
        }
        if self.pipeline_chunk == Some(w) {
            self.pipeline_chunk = None;
            self.stats.walk_switches += 1;
        }
    }

    /// Walk mode: move the pipeline to the chunk holding the point `walk_prewarm_s` along
    /// the reader's path, so fresh latents for the next chunk exist before the playhead
    /// crosses into it. Nothing when the loop is one chunk.
    fn follow_playhead(&mut self, clock: &mut dyn EngineClock) -> Result<(), EngineError> {
        if !self.walk.walking() {
            return Ok(());
        }
        self.follow_band();
        let (playhead, _) = clock.playhead_and_clock();
        let prewarm = seconds_to_frames(self.config.walk_prewarm_s, self.rate);
        let ahead = self.geometry()?.advance(playhead, prewarm);
        let want = self.walk.window_of(ahead);
        if self.pipeline_chunk == Some(want) {
            return Ok(());
        }
        if self.pipeline_chunk.is_some() {
            self.stats.walk_switches += 1;
        }
        let (_, frames) = self.walk.latent_range(want);
        self.pipeline.set_window(self.chunks[want].clone(), frames);
        self.pipeline_chunk = Some(want);
        self.stats.walk_chunk = want;
        Ok(())
    }

    fn tick_body(&mut self, clock: &mut dyn EngineClock) -> Result<(), EngineError> {
        if self.stall_next_s > 0.0 {
            clock.stall(std::mem::take(&mut self.stall_next_s));
        }
        if std::mem::take(&mut self.panic_next_tick) {
            panic!("test hook: injected engine tick panic");
        }
        let prefix = self.prefix;
        // An interrupt asked for before this point is answered by this tick's knob repatch;
        // one asked for from here on stops this tick's denoise.
        self.model.clear_denoise_interrupt();
        // The values sounding at this tick's frame: a ramping knob (a glide, a preset
        // fade) advances with the ticks.
        let knobs = self.knobs.read().at(clock.playhead_and_clock().1);
        let cond = Arc::clone(self.cond.read());
        if let Some((chunk, latent, attr)) = self.knob_repatch_due(&knobs, prefix, clock.now_s()) {
            self.write_window(clock, WriteKind::KnobRepatch, chunk, &latent, attr, &knobs)?;
            self.stats.repatches += 1;
        }
        self.follow_playhead(clock)?;
        let chunk = self.pipeline_chunk.unwrap_or(0);
        let before = self.pipeline.in_flight();
        self.finished.clear();
        let started = Instant::now();
        match self.pipeline.tick(&knobs, &cond, &mut self.finished) {
            Ok(()) => {}
            Err(ModelError::Interrupted) => {
                // A decoder knob arrived: tick again at once, its repatch first.
                self.stats.denoise_interrupts += 1;
                self.activity_pending = true;
                return Ok(());
            }
            Err(e) => {
                self.stats.model_faults += 1;
                self.stats.last_model_fault = Some(e.to_string());
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
        self.recent_tick.push(tick_s * 1e3);
        self.stats.tick_seconds.observe(tick_s);
        let cap = self.config.sample_capacity;
        push_sample(
            &mut self.record.tick_ms,
            cap,
            &mut self.samples_seen[0],
            tick_s * 1e3,
        );
        let started_slots =
            (self.pipeline.in_flight() + self.finished.len()).saturating_sub(before);
        for _ in 0..started_slots {
            self.slot_starts[self.next_serial as usize % START_SLOTS] = prefix;
            self.next_serial = self.next_serial.wrapping_add(1);
        }
        let fresh = self
            .finished
            .last()
            .map(|f| (Arc::clone(&f.latents), self.attribution(f.serial, prefix)));
        let now = clock.now_s();
        if let Some((latent, attr)) = fresh {
            if let Some(prev) = self.last_fresh_s {
                let window_s = self.keep_len as f64 / self.rate as f64;
                self.lead.observe_gap(now - prev, window_s, now)?;
            }
            self.last_fresh_s = Some(now);
            self.cached = Some((chunk, Arc::clone(&latent), attr));
            if let Some(slot) = self.chunk_cache.get_mut(chunk) {
                *slot = Some((Arc::clone(&latent), attr));
            }
            self.cached_knobs = knobs.clone();
            // Near the playhead first: the frontier is a quarter second ahead and can wait
            // one decode; the repatch is what the listener hears next.
            if self.lead.repatch_due(now) {
                self.write_window(clock, WriteKind::Repatch, chunk, &latent, attr, &knobs)?;
                self.stats.repatches += 1;
            }
            self.write_window(clock, WriteKind::Frontier, chunk, &latent, attr, &knobs)?;
            self.stats.frontier_writes += 1;
        } else if let Some((chunk, latent, attr)) = self.cached.clone() {
            self.write_window(clock, WriteKind::GapFill, chunk, &latent, attr, &knobs)?;
            self.stats.gap_fills += 1;
        }
        Ok(())
    }

    /// The cached latent and what a re-render of it with `knobs` reflects, when a knob
    /// repatch is due: the repatch is on and within its activity window, and the decoder
    /// knobs differ from those the newest write used. It reflects the actions after the
    /// latent only when they are all shared knobs and no knob outside the decoder's scope
    /// changed since the latent finished (then those actions changed decoder knobs only).
    fn knob_repatch_due(
        &self,
        knobs: &KnobSnapshot,
        prefix: u64,
        now_s: f64,
    ) -> Option<(usize, Arc<M::Latents>, Attribution)> {
        let (chunk, latent, attr) = self.cached.as_ref()?;
        if !self.lead.repatch_due(now_s)
            || self
                .rendered_decoder
                .is_none_or(|d| d == decoder_knobs(knobs))
        {
            return None;
        }
        let mut attr = *attr;
        let base = attr.newest.unwrap_or(0);
        if same_outside_decoder(knobs, &self.cached_knobs) && prefix > base {
            let newest = self
                .other_ids
                .iter()
                .find(|&&id| id > base)
                .map_or(prefix, |&id| (id - 1).min(prefix));
            if attr.full == attr.newest {
                attr.full = (newest > 0).then_some(newest);
            }
            attr.newest = (newest > 0).then_some(newest);
        }
        Some((*chunk, Arc::clone(latent), attr))
    }

    /// The actions a latent started with `start_prefix` (serial `serial`) and finished
    /// now (prefix `prefix`) reflects: shared changes up to `prefix`, but no per-slot
    /// change applied after it started.
    fn attribution(&self, serial: u32, prefix: u64) -> Attribution {
        let start = self.slot_starts[serial as usize % START_SLOTS].min(prefix);
        let unseen = self.per_slot_ids.iter().find(|&&id| id > start);
        let newest = unseen.map_or(prefix, |&id| (id - 1).min(prefix));
        Attribution {
            newest: (newest > 0).then_some(newest),
            full: (start > 0).then_some(start),
        }
    }

    /// Decode and write one window of `latent` (a latent of walk chunk `chunk`). In walk
    /// mode the write stays inside the chunk its target falls in, with that chunk's newest
    /// latent when it is not `chunk` (a frontier write is then traced as a gap-fill); with
    /// none for that chunk yet, nothing is written (the ring keeps older audio).
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
        let plan = if near {
            match self.near_plan(&geometry, playhead)? {
                Some(plan) => plan,
                None => return Ok(()),
            }
        } else {
            let lead_s = self.lead.lead_s(clock.now_s());
            self.stats.lead_s = lead_s;
            let cap = self.config.sample_capacity;
            push_sample(
                &mut self.record.lead_s,
                cap,
                &mut self.samples_seen[2],
                lead_s,
            );
            let lead = seconds_to_frames(lead_s, self.rate);
            frontier_target(&geometry, playhead, lead, self.keep_len).map_err(geo_err)?
        };
        let target_chunk = self.walk.window_of(plan.target());
        let (latent, attr, kind) = if target_chunk == chunk {
            (Arc::clone(latent), attr, kind)
        } else {
            let Some((older, older_attr)) = self.chunk_cache[target_chunk].clone() else {
                return Ok(());
            };
            let kind = match kind {
                WriteKind::Frontier => WriteKind::GapFill,
                k => k,
            };
            (older, older_attr, kind)
        };
        let (chunk_start, chunk_end) = self.walk.ring_range(target_chunk);
        let started = Instant::now();
        let decoded =
            self.decode_into(&latent, target_chunk, knobs, plan.target() - chunk_start)?;
        let wall_s = started.elapsed().as_secs_f64();
        // A GPU decode waits for its own audio, so its events have resolved by now.
        let measured_s = self
            .model
            .device_times()
            .and_then(|d| d.decode_s)
            .unwrap_or(wall_s);
        let decode_s = clock.charge(Work::Decode, measured_s);
        self.rendered_decoder = Some(decoder_knobs(knobs));
        self.recent_decode.push(decode_s * 1e3);
        let cap = self.config.sample_capacity;
        push_sample(
            &mut self.record.decode_ms,
            cap,
            &mut self.samples_seen[1],
            decode_s * 1e3,
        );
        // A near write is placed from the playhead as it is now, after the decode: the
        // decoded frames from the new target on are written, those the reader came too
        // close to meanwhile are skipped (see the module doc).
        let (plan, skip, playhead, frame, geometry) = if near {
            let (now_playhead, now_frame) = clock.playhead_and_clock();
            let now_geometry = self.geometry()?;
            let Some(now_plan) = self.near_plan(&now_geometry, now_playhead)? else {
                return Ok(());
            };
            if self.walk.window_of(now_plan.target()) != target_chunk {
                return Ok(());
            }
            let loop_frames = now_geometry.loop_frames();
            let skip = (now_plan.target() + loop_frames - plan.target()) % loop_frames;
            if skip >= decoded {
                return Ok(());
            }
            (now_plan, skip, now_playhead, now_frame, now_geometry)
        } else {
            (plan, 0, playhead, frame, geometry)
        };
        let ch = self.channels;
        let avail = if near { decoded } else { usize::MAX };
        for (i, seg) in plan.segments().iter().enumerate() {
            let offset = skip + seg.window_offset;
            let mut len = seg.len.min(avail.saturating_sub(offset));
            if self.walk.walking() {
                // A walk window's latent covers its own window: the head stops at its end.
                // A band wrap segment carries on the same decode (what the reader hears
                // after B, written at A), wherever A lies; it stops at the end of the
                // window holding A.
                let end = if i == 0 {
                    chunk_end
                } else {
                    self.walk.ring_range(self.walk.window_of(seg.ring_start)).1
                };
                len = len.min(end.saturating_sub(seg.ring_start));
            }
            if len == 0 {
                continue;
            }
            let from = self.window_at + offset * ch;
            let audio = &self.scratch[from..from + len * ch];
            let report = self.writer.write(seg.ring_start, audio)?;
            let event = WriteEvent {
                kind: if i == 0 { kind } else { WriteKind::BandWrap },
                ring_start: seg.ring_start,
                len,
                late_frames: report.late_frames,
                issued_frame: frame,
                landed_frame: report.landed_at,
                start_reached_frame: start_reached_frame(
                    &geometry,
                    frame,
                    playhead,
                    seg.ring_start,
                ),
                newest_action_id: attr.newest,
                full_action_id: attr.full,
            };
            if report.late_frames > 0 {
                self.stats.late_landings += 1;
                self.record.late_landings += 1;
            }
            self.note_heard(&event);
            self.record.trace.record(event);
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
        repatch_target(geometry, playhead, lead, min_distance, self.keep_len).map_err(geo_err)
    }

    /// Decode the kept window for frames `[at, at + keep)` of walk chunk `chunk` (of the
    /// loop when it is one chunk) into the scratch buffer; it starts at `self.window_at`
    /// (samples). Returns the frames from `at` on that the buffer holds clear of the
    /// decode's right context (at least the kept window). A walk chunk is decoded with its
    /// neighbours' newest latents (else their source) around it, so adjacent chunks join
    /// without a seam ([`Model::decode_chunk_window`]).
    fn decode_into(
        &mut self,
        latent: &M::Latents,
        chunk: usize,
        knobs: &KnobSnapshot,
        at: usize,
    ) -> Result<usize, EngineError> {
        let hop = self.hop;
        let ch = self.channels;
        let lat_frames = self.model.latent_frames(latent).max(1);
        let first = at / hop;
        let offset = at % hop;
        let kept = (offset + self.keep_len).div_ceil(hop);
        let mut ctx = self.model.decode_context_frames();
        if kept + 2 * ctx > lat_frames {
            ctx = lat_frames.saturating_sub(kept) / 2;
        }
        let frames = (kept + 2 * ctx).min(lat_frames);
        let start = (first % lat_frames + lat_frames - ctx % lat_frames) % lat_frames;
        let want = frames * hop * ch;
        if self.scratch.len() < want {
            self.scratch.resize(want, 0.0);
        }
        let gains = knobs.channel_gains();
        let neighbour = |k: usize| {
            self.chunk_cache[k]
                .as_ref()
                .map(|(l, _)| Arc::clone(l))
                .or_else(|| self.chunks[k].clone())
        };
        // A band window loops on itself: its own latent on both sides.
        let around = match self.walk.neighbours(chunk) {
            Some((before, after)) => Some((neighbour(before), neighbour(after))),
            None => self.walk.walking().then_some((None, None)),
        };
        let place = around.as_ref().map(|(before, after)| ChunkPlace {
            before: before.as_deref().unwrap_or(latent),
            after: after.as_deref().unwrap_or(latent),
            loop_offset: self.walk.latent_range(chunk).0,
            loop_frames: self.walk.total_latent(),
        });
        self.model.decode_chunk_window(
            latent,
            place.as_ref(),
            &gains,
            knobs.flags.ch_gains_all_zero,
            start,
            frames,
            &mut self.scratch[..want],
        )?;
        self.window_at = (ctx * hop + offset) * ch;
        Ok((frames - ctx) * hop - offset)
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
            let best = self.stats.last_knob_to_ear_ms.map_or(ms, |b| b.min(ms));
            self.stats.last_knob_to_ear_ms = Some(best);
        }
    }

    /// Publish the stats (at most every 0.1 s unless `force`).
    pub fn publish_stats(&mut self, now_s: f64, force: bool) {
        let (t0, ticks0) = self.last_publish.unwrap_or((now_s, self.stats.ticks));
        if !force && self.last_publish.is_some() && now_s - t0 < PUBLISH_EVERY_S {
            return;
        }
        let dt = now_s - t0;
        if dt > 0.0 {
            self.stats.ticks_per_s = (self.stats.ticks - ticks0) as f64 / dt;
        }
        (self.stats.tick_ms_p50, self.stats.tick_ms_p95) = self.recent_tick.percentiles();
        self.stats.decode_ms_p50 = self.recent_decode.percentiles().0;
        self.stats.idle = self.idle(now_s);
        self.stats.paused = self.paused;
        self.stats.trace_dropped = self.record.trace.dropped();
        self.stats_in.write(self.stats.clone());
        self.last_publish = Some((now_s, self.stats.ticks));
    }

    /// Use `config` for the lead from now on (see [`LeadController::set_config`]); the
    /// stats show the lead it gives at once, also while the engine idles. The handle has
    /// validated `config`; one that still fails validation leaves the settings in use.
    fn set_lead(&mut self, config: LeadConfig, now_s: f64) {
        if self.lead.set_config(config).is_ok() {
            self.config.lead = config;
            self.stats.lead_s = self.lead.lead_s(now_s);
        }
    }

    /// The lead settings in use.
    pub fn lead_config(&self) -> &LeadConfig {
        self.lead.config()
    }

    /// The stats as of now (not published).
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The record (trace, replies, samples).
    pub fn record(&self) -> &EngineRecord {
        &self.record
    }
}
