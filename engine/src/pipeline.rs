//! The streaming pipeline: `depth` slots in flight, each at a different step of its own
//! schedule, advanced together by one batched denoise call per tick; a slot that finishes is
//! delivered in the same tick.
//!
//! Rules (see `docs/engine.md`):
//! - A slot starts when fewer than `depth` are in flight and at least
//!   `max(1, steps / depth)` ticks have passed since the last start, so once warm a latent
//!   finishes every `steps / depth` ticks. A new slot takes its first step in the tick it
//!   starts in.
//! - A new slot's per-slot values ([`SlotParams`]) come from the one pending request if there
//!   is one (`queue_cap = 1`: [`StreamPipeline::submit`] replaces it, the newest wins), else
//!   from the knobs of that tick. Each slot keeps its own seed, denoise, steps, shift and cached
//!   schedule until it finishes.
//! - `denoise` is how far from its *base* a slot starts: the source, moved toward a past
//!   finished latent by `feedback` (that latent alone without a source). A slot with no base
//!   (no source, and no feedback latent of the loop's length) runs its whole schedule as if
//!   `denoise` were 1, as SDE slots always do: it starts from pure noise, which is `t = 1`.
//! - Shared curves (`x0_target`, the SDE curve from `sde_amp` / `periodicity`, guidance, blends)
//!   apply to every in-flight slot from the next tick.
//! - Changing `depth` or `steps` never drops a slot: in-flight slots finish on their own
//!   schedules; only the start rule changes.
//! - The noise is keyed by the slot's seed and the walk window it generates, not by its serial
//!   (see [`crate::rng`]): slots that run with the same values make the same latent, so the
//!   stretches of the loop they each write join into one take. A request run alone
//!   ([`run_request`]) draws exactly what it drew in the stream, so the two agree bit for bit.
//! - A failed batched model call leaves every slot unchanged, yet their step advances; the
//!   tick returns the error and the caller counts it (the runner does, in
//!   [`EngineStats::model_faults`](crate::runner::EngineStats::model_faults), so the count
//!   outlives a pipeline rebuilt on a source change or a restart).
//! - An interrupted call ([`ModelError::Interrupted`]) is the exception: nothing ran, so the
//!   steps do not advance and the tick does not count; the next tick runs the same step.
//!
//! Threading: a pipeline belongs to the engine thread.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::conditioning::Conditioning;
use crate::knobs::{KnobId, KnobSnapshot};
use crate::model::{Model, ModelError, SlotStart, SlotStep, StepShared};
use crate::rng::{INIT_STEP, NoiseKey};
use crate::schedule::{Schedule, ScheduleCache};

/// Finished latents kept for `feedback` (the largest `feedback_depth`).
pub const FEEDBACK_HISTORY: usize = 8;

/// The per-slot values a slot keeps from start to finish.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SlotParams {
    /// Noise seed.
    pub seed: u32,
    /// ODE start distance from the source (SDE slots use 1).
    pub denoise: f32,
    /// Steps of the schedule.
    pub steps: u32,
    /// Schedule warp.
    pub shift: f32,
    /// SDE sampler (else ODE Euler).
    pub sde: bool,
    /// Weight of the past latent in the start base.
    pub feedback: f32,
    /// Which past latent (1 = the last finished).
    pub feedback_depth: u32,
}

impl SlotParams {
    /// The per-slot values in a knob snapshot.
    pub fn from_knobs(knobs: &KnobSnapshot) -> Self {
        Self {
            seed: knobs.u32(KnobId::seed),
            denoise: knobs.f32(KnobId::denoise),
            steps: knobs.u32(KnobId::steps),
            shift: knobs.f32(KnobId::shift),
            sde: knobs.sde(),
            feedback: knobs.f32(KnobId::feedback),
            feedback_depth: knobs.u32(KnobId::feedback_depth),
        }
    }

    /// The slot's schedule. `denoise` is how far from its base (the source, or a feedback
    /// latent) a slot starts; an SDE slot, or one with no base to start from, runs the whole
    /// schedule (`denoise = 1`): its start is pure noise, which is what `t = 1` means, and a
    /// shorter schedule would leave that noise in its result (at `denoise = 0`, all of it).
    fn schedule(&self, cache: &mut ScheduleCache, has_base: bool) -> Arc<Schedule> {
        let denoise = if self.sde || !has_base {
            1.0
        } else {
            self.denoise
        };
        cache.get(self.steps, denoise, self.shift)
    }
}

/// What a new slot starts near: the source and the past finished latent `feedback` blends
/// in, each only when it has the loop's length (a model ignores any other).
struct SlotBase<'a, L> {
    source: Option<&'a L>,
    past: Option<&'a L>,
}

impl<'a, L> SlotBase<'a, L> {
    /// The base of a slot with `params` over `frames` latent frames; `history(i)` is the
    /// finished latent `i + 1` back.
    fn of<M: Model<Latents = L>>(
        model: &M,
        params: &SlotParams,
        frames: usize,
        source: Option<&'a L>,
        history: impl Fn(usize) -> Option<&'a L>,
    ) -> Self {
        let fits = |l: &&L| model.latent_frames(l) == frames;
        let past = (params.feedback > 0.0)
            .then(|| history(params.feedback_depth.max(1) as usize - 1))
            .flatten();
        Self {
            source: source.filter(fits),
            past: past.filter(fits),
        }
    }

    /// Whether there is anything to start near.
    fn exists(&self) -> bool {
        self.source.is_some() || self.past.is_some()
    }
}

/// A slot's result.
pub struct FinishedLatent<L> {
    /// The slot's serial: 0, 1, 2, ... in start order.
    pub serial: u32,
    /// The values it ran with.
    pub params: SlotParams,
    /// The tick it finished in.
    pub tick: u64,
    /// The latent.
    pub latents: Arc<L>,
}

struct Slot<L> {
    serial: u32,
    /// The key of the slot's start noise; step `k` draws from `noise.at_step(k + 1)`.
    noise: NoiseKey,
    params: SlotParams,
    schedule: Arc<Schedule>,
    step: usize,
    x: L,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct CurveKey {
    amp_bits: u32,
    periodicity_bits: u32,
    frames: usize,
}

/// The SDE blend curve on the host: `amp * (0.5 + 0.5 sin(2 pi cycles u))`, `u = f / frames`,
/// `cycles = periodicity * frames / frame_rate`; constant `amp` when `periodicity <= 0.01`.
pub fn sde_curve(amp: f32, periodicity: f32, frames: usize, frame_rate: u32) -> Vec<f32> {
    if periodicity <= 0.01 {
        return vec![amp; frames];
    }
    let cycles = f64::from(periodicity) * frames as f64 / f64::from(frame_rate);
    (0..frames)
        .map(|f| {
            let u = f as f64 / frames as f64;
            let s = (std::f64::consts::TAU * cycles * u).sin();
            (f64::from(amp) * (0.5 + 0.5 * s)) as f32
        })
        .collect()
}

fn start_slot<M: Model>(
    model: &M,
    params: SlotParams,
    noise: NoiseKey,
    schedule: &Schedule,
    frames: usize,
    base: SlotBase<'_, M::Latents>,
) -> M::Latents {
    let feedback = base.past.map(|p| (p, params.feedback));
    model.start_slot(SlotStart {
        frames,
        source: base.source,
        feedback,
        t_start: schedule.t_start(),
        noise,
    })
}

/// The key of the start noise of a slot with `params` in walk window `window`.
fn start_noise(params: &SlotParams, window: u32) -> NoiseKey {
    NoiseKey {
        seed: params.seed,
        window,
        step: INIT_STEP,
    }
}

fn slot_step<'a, L>(slot: &'a mut Slot<L>, knobs: &KnobSnapshot) -> SlotStep<'a, L> {
    let t = slot.schedule.points();
    let k = slot.step;
    let second_half = 2 * k >= slot.schedule.steps();
    let x0_lock = if knobs.flags.x0_target_nonzero && second_half {
        knobs.f32(KnobId::x0_target)
    } else {
        0.0
    };
    SlotStep {
        x: &mut slot.x,
        t_curr: t[k],
        t_next: t[k + 1],
        t_start: t[0],
        sde: slot.params.sde,
        x0_lock,
        noise: slot.noise.at_step(k as u32 + 1),
    }
}

/// The streaming pipeline (see the module doc).
pub struct StreamPipeline<M: Model> {
    model: Arc<M>,
    frames: usize,
    source: Option<Arc<M::Latents>>,
    slots: Vec<Slot<M::Latents>>,
    pending: Option<SlotParams>,
    window: u32,
    next_serial: u32,
    schedules: ScheduleCache,
    history: VecDeque<Arc<M::Latents>>,
    curve: Option<(CurveKey, M::Curve)>,
    tick: u64,
    last_start: Option<u64>,
}

impl<M: Model> StreamPipeline<M> {
    /// A pipeline over a loop of `frames` latent frames, with no source.
    pub fn new(model: Arc<M>, frames: usize) -> Self {
        Self {
            model,
            frames: frames.max(1),
            source: None,
            slots: Vec::new(),
            pending: None,
            window: 0,
            next_serial: 0,
            schedules: ScheduleCache::new(),
            history: VecDeque::with_capacity(FEEDBACK_HISTORY),
            curve: None,
            tick: 0,
            last_start: None,
        }
    }

    /// Sets (or clears) the source loop's latents; the loop length follows the source. Slots in
    /// flight keep going; new slots start from the new source.
    pub fn set_source(&mut self, source: Option<Arc<M::Latents>>) {
        if let Some(s) = &source {
            self.frames = self.model.latent_frames(s);
        }
        self.source = source;
    }

    /// Moves the pipeline to window `window` of a longer loop (a walk-mode chunk or band
    /// window, see [`crate::runner::walk`]): its source (or none) and its length (the
    /// source's, or `frames` without one). Unlike [`Self::set_source`], the slots in flight
    /// and the feedback history are dropped: they belong to the old window (its source anchors
    /// every step, and its length may differ). New slots draw the window's own noise, so
    /// windows of one loop differ and a window met again replays its take.
    pub fn set_window(&mut self, window: u32, source: Option<Arc<M::Latents>>, frames: usize) {
        self.window = window;
        self.slots.clear();
        self.history.clear();
        self.last_start = None;
        self.frames = frames.max(1);
        self.set_source(source);
    }

    /// Queues the values for the next slot to start; replaces any pending request.
    pub fn submit(&mut self, params: SlotParams) {
        self.pending = Some(params);
    }

    /// Slots in flight.
    pub fn in_flight(&self) -> usize {
        self.slots.len()
    }

    /// Ticks run so far.
    pub fn ticks(&self) -> u64 {
        self.tick
    }

    /// Loop length in latent frames.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// The model.
    pub fn model(&self) -> &Arc<M> {
        &self.model
    }

    /// Runs one tick: maybe start a slot, one batched denoise over every slot, deliver the
    /// slots that finished into `finished` (appended, in serial order). The tick runs to
    /// its end either way, except when interrupted; `Err` is the batched model call's
    /// failure (see the module doc).
    pub fn tick(
        &mut self,
        knobs: &KnobSnapshot,
        cond: &Conditioning<M::Cond>,
        finished: &mut Vec<FinishedLatent<M::Latents>>,
    ) -> Result<(), ModelError> {
        self.maybe_start(knobs);
        self.refresh_curve(knobs);
        let mut result = Ok(());
        if !self.slots.is_empty() {
            let shared = StepShared {
                cond,
                knobs,
                source: self.source.as_deref(),
                sde_curve: self.curve.as_ref().map(|(_, c)| c),
            };
            let mut batch: Vec<_> = self.slots.iter_mut().map(|s| slot_step(s, knobs)).collect();
            result = self.model.denoise_batch(&mut batch, &shared);
        }
        if result == Err(ModelError::Interrupted) {
            // Nothing ran: the same step runs again at the next tick.
            return result;
        }
        let mut i = 0;
        while i < self.slots.len() {
            self.slots[i].step += 1;
            if self.slots[i].step == self.slots[i].schedule.steps() {
                let slot = self.slots.remove(i);
                let latents = Arc::new(slot.x);
                if self.history.len() == FEEDBACK_HISTORY {
                    self.history.pop_back();
                }
                self.history.push_front(Arc::clone(&latents));
                finished.push(FinishedLatent {
                    serial: slot.serial,
                    params: slot.params,
                    tick: self.tick,
                    latents,
                });
            } else {
                i += 1;
            }
        }
        self.tick += 1;
        result
    }

    fn maybe_start(&mut self, knobs: &KnobSnapshot) {
        let depth = knobs.u32(KnobId::depth).max(1) as usize;
        let steps = knobs.u32(KnobId::steps).max(1) as usize;
        let spacing = (steps / depth).max(1) as u64;
        let due = self.last_start.is_none_or(|t| self.tick - t >= spacing);
        if self.slots.len() >= depth || !due {
            return;
        }
        let params = self
            .pending
            .take()
            .unwrap_or_else(|| SlotParams::from_knobs(knobs));
        let base = SlotBase::of(
            &*self.model,
            &params,
            self.frames,
            self.source.as_deref(),
            |i| self.history.get(i).map(|p| &**p),
        );
        let schedule = params.schedule(&mut self.schedules, base.exists());
        let serial = self.next_serial;
        let noise = start_noise(&params, self.window);
        let x = start_slot(&*self.model, params, noise, &schedule, self.frames, base);
        self.next_serial = self.next_serial.wrapping_add(1);
        self.last_start = Some(self.tick);
        self.slots.push(Slot {
            serial,
            noise,
            params,
            schedule,
            step: 0,
            x,
        });
    }

    fn refresh_curve(&mut self, knobs: &KnobSnapshot) {
        if !knobs.flags.sde_curve_nonzero {
            self.curve = None;
            return;
        }
        let amp = knobs.f32(KnobId::sde_amp);
        let periodicity = knobs.f32(KnobId::periodicity);
        let key = CurveKey {
            amp_bits: amp.to_bits(),
            periodicity_bits: periodicity.to_bits(),
            frames: self.frames,
        };
        if self.curve.as_ref().is_some_and(|(k, _)| *k == key) {
            return;
        }
        let rate = self.model.geometry().latent_frame_rate;
        let host = sde_curve(amp, periodicity, self.frames, rate);
        self.curve = Some((key, self.model.upload_curve(&host)));
    }
}

/// Runs one request to completion on its own (a batch of one per step), with fixed knobs and
/// conditioning, in walk window `window` (0 for a loop of one window): the reference the
/// stream must match bit for bit. A failed model call ends the request with its error.
#[allow(clippy::too_many_arguments)]
pub fn run_request<M: Model>(
    model: &M,
    params: SlotParams,
    window: u32,
    frames: usize,
    source: Option<&M::Latents>,
    past: Option<&M::Latents>,
    knobs: &KnobSnapshot,
    cond: &Conditioning<M::Cond>,
) -> Result<M::Latents, ModelError> {
    let mut cache = ScheduleCache::new();
    let base = SlotBase::of(model, &params, frames, source, |_| past);
    let schedule = params.schedule(&mut cache, base.exists());
    let noise = start_noise(&params, window);
    let x = start_slot(model, params, noise, &schedule, frames, base);
    let mut slot = Slot {
        serial: 0,
        noise,
        params,
        schedule,
        step: 0,
        x,
    };
    let curve = knobs.flags.sde_curve_nonzero.then(|| {
        let rate = model.geometry().latent_frame_rate;
        let amp = knobs.f32(KnobId::sde_amp);
        model.upload_curve(&sde_curve(
            amp,
            knobs.f32(KnobId::periodicity),
            frames,
            rate,
        ))
    });
    let shared = StepShared {
        cond,
        knobs,
        source,
        sde_curve: curve.as_ref(),
    };
    while slot.step < slot.schedule.steps() {
        model.denoise_batch(&mut [slot_step(&mut slot, knobs)], &shared)?;
        slot.step += 1;
    }
    Ok(slot.x)
}

#[cfg(test)]
mod tests;
