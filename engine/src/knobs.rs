//! Knobs: the performer's live controls. The table ([`KNOBS`]: every knob's name, range,
//! default, unit, meaning and scope) lives in the `latentd-knobs` crate and is re-exported
//! here; this module holds the [`KnobStore`] that writers set and the engine reads.
//!
//! Setter discipline (where all the work happens, never per read):
//! - validate: unknown name, NaN or out-of-range value → a [`KnobError`] naming the knob and
//!   its accepted range; nothing changes;
//! - canonicalize: integer knobs rounded, float knobs stored at `f32` precision, `-0` → `0`;
//! - dedup: setting the value already there publishes nothing and wakes nobody;
//! - derive: flags such as [`DerivedFlags::ch_gains_all_zero`] are computed here, so the step
//!   loop reads a bool instead of scanning values.
//!
//! Ramps (glides and fades): [`KnobStore::ramp_many`] publishes a knob's target together with
//! a [`Ramp`] from the value sounding at a given frame of the ring's frame clock (the audio
//! output's frames played). A snapshot's [`get`](KnobSnapshot::get) is the target (what is
//! saved and what a ramp heads to); [`value_at`](KnobSnapshot::value_at) and
//! [`at`](KnobSnapshot::at) give the values sounding at a frame. The engine resolves its
//! snapshot at each tick's frame, so a ramp advances with the engine's ticks and needs no
//! timer on any thread. A float knob follows the ramp's [`Curve`]; an integer knob switches
//! halfway through (the declared switch point, the same as a preset morph's `x = 0.5`). A
//! plain set cancels a knob's ramp.
//!
//! Threading: any number of writer threads share the [`KnobStore`] (a mutex serializes them
//! among themselves). The engine owns the one [`KnobReader`], which never locks or blocks: it
//! reads the newest published [`KnobSnapshot`] through a `triple_buffer`.

use crate::lock::MutexExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use triple_buffer::{Input, Output, triple_buffer};

pub use latentd_knobs::{KNOB_COUNT, KNOBS, KnobId, KnobKind, KnobScope, KnobSpec};

/// A knob value that was refused; nothing changed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KnobError {
    /// No knob has that name.
    #[error("unknown knob `{name}`")]
    Unknown {
        /// The name given.
        name: String,
    },
    /// The value is NaN or infinite.
    #[error("knob `{name}`: value {value} is not a finite number (accepted: {min} to {max})")]
    NotFinite {
        /// The knob.
        name: &'static str,
        /// The value given.
        value: f64,
        /// Smallest accepted value.
        min: f64,
        /// Largest accepted value.
        max: f64,
    },
    /// The value is outside the knob's range.
    #[error("knob `{name}`: value {value} is out of range (accepted: {min} to {max})")]
    OutOfRange {
        /// The knob.
        name: &'static str,
        /// The value given.
        value: f64,
        /// Smallest accepted value.
        min: f64,
        /// Largest accepted value.
        max: f64,
    },
}

/// Facts about the values that the step loop and decoder branch on, computed at the setter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DerivedFlags {
    /// Every `ch_g*` is 0: the decoder emits exact silence without synthesizing.
    pub ch_gains_all_zero: bool,
    /// Every `ch_g*` is 1: the decoder can skip the gain multiply.
    pub ch_gains_all_unity: bool,
    /// `x0_target > 0`: the source-lock blend runs.
    pub x0_target_nonzero: bool,
    /// `feedback > 0`: new slots look up a past latent.
    pub feedback_nonzero: bool,
    /// `sde_amp > 0`: the SDE blend curve is not identically zero.
    pub sde_curve_nonzero: bool,
}

/// The shape of a ramp: time `t` in `0..=1` to progress in `0..=1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Curve {
    /// `t`.
    #[default]
    Linear,
    /// Smoothstep, `3t² − 2t³`.
    Smooth,
    /// `t²`.
    EaseIn,
    /// `1 − (1 − t)²`.
    EaseOut,
}

impl Curve {
    /// Progress at time `t` (clamped to `0..=1`).
    #[inline]
    pub fn progress(self, t: f64) -> f64 {
        let t = t.clamp(0.0, 1.0);
        match self {
            Curve::Linear => t,
            Curve::Smooth => t * t * (3.0 - 2.0 * t),
            Curve::EaseIn => t * t,
            Curve::EaseOut => 1.0 - (1.0 - t) * (1.0 - t),
        }
    }
}

/// A knob on its way to its target (the snapshot's value): from `from` at frame `start` to
/// the target at `start + frames` of the ring's frame clock.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ramp {
    /// The canonical value at `start`.
    pub from: f64,
    /// Frame clock where it starts.
    pub start: u64,
    /// Its length in frames (> 0).
    pub frames: u64,
    /// Its shape.
    pub curve: Curve,
}

/// One knob of a [`KnobStore::ramp_many`] call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RampTo {
    /// The knob.
    pub id: KnobId,
    /// Where the ramp starts: `None` for the value sounding at the start frame.
    pub from: Option<f64>,
    /// The target.
    pub to: f64,
}

/// One consistent set of knob values, as published to the engine.
#[derive(Clone, Debug, PartialEq)]
pub struct KnobSnapshot {
    /// Bumped by every publish that changed a value (0 = the defaults).
    pub version: u64,
    values: [f64; KNOB_COUNT],
    ramps: [Option<Ramp>; KNOB_COUNT],
    /// Flags derived from the values.
    pub flags: DerivedFlags,
}

impl KnobSnapshot {
    /// The defaults from the table.
    pub fn defaults() -> Self {
        let mut values = [0.0; KNOB_COUNT];
        for (v, spec) in values.iter_mut().zip(KNOBS) {
            *v = spec.default;
        }
        let mut snap = Self {
            version: 0,
            values,
            ramps: [None; KNOB_COUNT],
            flags: DerivedFlags::default(),
        };
        snap.flags = snap.derive_flags();
        snap
    }

    /// A knob's canonical value (its target while it ramps).
    #[inline]
    pub fn get(&self, id: KnobId) -> f64 {
        self.values[id as usize]
    }

    /// A knob's ramp, when it has one (it may have ended: see [`Self::ramping_at`]).
    pub fn ramp(&self, id: KnobId) -> Option<Ramp> {
        self.ramps[id as usize]
    }

    /// The value sounding at frame `frame` of the ring's frame clock: the target, or the
    /// ramp's value there (see the module doc for the integer switch point).
    pub fn value_at(&self, id: KnobId, frame: u64) -> f64 {
        let to = self.values[id as usize];
        let Some(ramp) = self.ramps[id as usize] else {
            return to;
        };
        let t = frame.saturating_sub(ramp.start) as f64 / ramp.frames as f64;
        if t >= 1.0 {
            return to;
        }
        match id.spec().kind {
            KnobKind::Int => {
                if t < 0.5 {
                    ramp.from
                } else {
                    to
                }
            }
            KnobKind::Float => {
                let v = ramp.from + (to - ramp.from) * ramp.curve.progress(t);
                f64::from(v as f32) + 0.0
            }
        }
    }

    /// Whether knob `id` is still on its way at `frame`.
    pub fn ramping_at(&self, id: KnobId, frame: u64) -> bool {
        self.ramps[id as usize].is_some_and(|r| frame < r.start.saturating_add(r.frames))
    }

    /// Whether any knob is still on its way at `frame`.
    pub fn any_ramping_at(&self, frame: u64) -> bool {
        KnobId::ALL.iter().any(|&id| self.ramping_at(id, frame))
    }

    /// The values sounding at `frame`, with no ramps and the flags derived from them (the
    /// engine's view for a tick). Same version. Allocation-free.
    pub fn at(&self, frame: u64) -> KnobSnapshot {
        if self.ramps.iter().all(Option::is_none) {
            return self.clone();
        }
        let mut snap = KnobSnapshot {
            version: self.version,
            values: self.values,
            ramps: [None; KNOB_COUNT],
            flags: self.flags,
        };
        for &id in KnobId::ALL {
            snap.values[id as usize] = self.value_at(id, frame);
        }
        snap.flags = snap.derive_flags();
        snap
    }

    /// A float knob's value as `f32` (exact: floats are stored at `f32` precision).
    #[inline]
    pub fn f32(&self, id: KnobId) -> f32 {
        self.values[id as usize] as f32
    }

    /// An integer knob's value.
    #[inline]
    pub fn u32(&self, id: KnobId) -> u32 {
        self.values[id as usize] as u32
    }

    /// The eight channel-group gains.
    pub fn channel_gains(&self) -> [f32; 8] {
        KnobId::CHANNEL_GAINS.map(|id| self.f32(id))
    }

    /// Whether new slots sample with the SDE sampler.
    pub fn sde(&self) -> bool {
        self.u32(KnobId::sampler) == 1
    }

    fn derive_flags(&self) -> DerivedFlags {
        let gains = self.channel_gains();
        DerivedFlags {
            ch_gains_all_zero: gains.iter().all(|&g| g == 0.0),
            ch_gains_all_unity: gains.iter().all(|&g| g == 1.0),
            x0_target_nonzero: self.f32(KnobId::x0_target) > 0.0,
            feedback_nonzero: self.f32(KnobId::feedback) > 0.0,
            sde_curve_nonzero: self.f32(KnobId::sde_amp) > 0.0,
        }
    }
}

/// Validates and canonicalizes a value for a knob (the setter's first half, exposed so the OSC
/// layer can check a value without setting it).
pub fn canonicalize(id: KnobId, value: f64) -> Result<f64, KnobError> {
    let spec = id.spec();
    let (name, min, max) = (spec.name, spec.min, spec.max);
    if !value.is_finite() {
        return Err(KnobError::NotFinite {
            name,
            value,
            min,
            max,
        });
    }
    let canonical = match spec.kind {
        KnobKind::Int => value.round(),
        KnobKind::Float => f64::from(value as f32),
    };
    if !(min..=max).contains(&canonical) || !(min..=max).contains(&value) {
        return Err(KnobError::OutOfRange {
            name,
            value,
            min,
            max,
        });
    }
    Ok(canonical + 0.0) // -0 becomes +0
}

/// What a successful set did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetOutcome {
    /// The value was new; a snapshot with this version was published.
    Changed {
        /// The published snapshot's version.
        version: u64,
    },
    /// The value was already there; nothing was published.
    Unchanged,
}

struct Writer {
    current: KnobSnapshot,
    input: Input<KnobSnapshot>,
}

type Waker = Arc<dyn Fn(KnobPublish) + Send + Sync>;

/// What one publish changed, as the waker ([`KnobStore::set_waker`]) hears it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnobPublish {
    /// The new snapshot's version.
    pub version: u64,
    /// Whether a knob the decoder reads ([`KnobScope::Decoder`]) changed its value or ramp:
    /// what a near-playhead repatch can make audible without a new latent.
    pub decoder: bool,
}

/// The writers' side of the knobs: validate, canonicalize, dedup, derive, publish, wake.
pub struct KnobStore {
    writer: Mutex<Writer>,
    version: AtomicU64,
    waker: Mutex<Option<Waker>>,
}

/// The engine's side: a lock-free view of the newest published snapshot.
pub struct KnobReader {
    output: Output<KnobSnapshot>,
}

impl KnobStore {
    /// A store at the table defaults, and its one reader.
    pub fn new() -> (Self, KnobReader) {
        let defaults = KnobSnapshot::defaults();
        let (input, output) = triple_buffer(&defaults);
        let store = Self {
            writer: Mutex::new(Writer {
                current: defaults,
                input,
            }),
            version: AtomicU64::new(0),
            waker: Mutex::new(None),
        };
        (store, KnobReader { output })
    }

    /// Calls `wake` after every publish (e.g. to unpark the engine thread), on the
    /// publishing thread, outside the store's lock.
    pub fn set_waker(&self, wake: impl Fn(KnobPublish) + Send + Sync + 'static) {
        *self.waker.lock_unpoisoned() = Some(Arc::new(wake));
    }

    /// Sets a knob by name. See the module doc for the setter discipline.
    pub fn set(&self, name: &str, value: f64) -> Result<SetOutcome, KnobError> {
        let id = KnobId::from_name(name).ok_or_else(|| KnobError::Unknown { name: name.into() })?;
        self.set_many(&[(id, value)])
    }

    /// Sets one knob by id.
    pub fn set_id(&self, id: KnobId, value: f64) -> Result<SetOutcome, KnobError> {
        self.set_many(&[(id, value)])
    }

    /// Sets several knobs atomically: all are validated first; if any is refused, none
    /// changes; the engine sees either none or all of them.
    pub fn set_many(&self, changes: &[(KnobId, f64)]) -> Result<SetOutcome, KnobError> {
        let mut canonical = Vec::with_capacity(changes.len());
        for &(id, value) in changes {
            canonical.push((id, canonicalize(id, value)?));
        }
        self.publish(|next| {
            for &(id, value) in &canonical {
                next.values[id as usize] = value;
                next.ramps[id as usize] = None;
            }
        })
    }

    /// Ramps several knobs atomically from frame `start` of the ring's frame clock over
    /// `frames` frames along `curve` (see the module doc); validated like
    /// [`Self::set_many`] (targets and explicit starting values), all or nothing. A ramp of
    /// 0 frames, or one that starts at its target, is a plain set.
    pub fn ramp_many(
        &self,
        ramps: &[RampTo],
        start: u64,
        frames: u64,
        curve: Curve,
    ) -> Result<SetOutcome, KnobError> {
        let mut canonical = Vec::with_capacity(ramps.len());
        for r in ramps {
            let from = r.from.map(|v| canonicalize(r.id, v)).transpose()?;
            canonical.push((r.id, from, canonicalize(r.id, r.to)?));
        }
        self.publish(|next| {
            // Ramps that have ended by `start` are dropped (their targets stand).
            for &id in KnobId::ALL {
                if !next.ramping_at(id, start) {
                    next.ramps[id as usize] = None;
                }
            }
            for &(id, from, to) in &canonical {
                let from = from.unwrap_or_else(|| next.value_at(id, start));
                next.values[id as usize] = to;
                next.ramps[id as usize] = (frames > 0 && from != to).then_some(Ramp {
                    from,
                    start,
                    frames,
                    curve,
                });
            }
        })
    }

    /// Applies `edit` to a copy of the current snapshot and publishes it when it differs.
    fn publish(&self, edit: impl FnOnce(&mut KnobSnapshot)) -> Result<SetOutcome, KnobError> {
        let published = {
            let mut writer = self.writer.lock_unpoisoned();
            let mut next = writer.current.clone();
            edit(&mut next);
            if next.values == writer.current.values && next.ramps == writer.current.ramps {
                return Ok(SetOutcome::Unchanged);
            }
            let decoder = KnobId::ALL.iter().any(|&id| {
                let i = id as usize;
                id.spec().scope == KnobScope::Decoder
                    && (next.values[i] != writer.current.values[i]
                        || next.ramps[i] != writer.current.ramps[i])
            });
            next.flags = next.derive_flags();
            next.version = writer.current.version + 1;
            writer.input.write(next.clone());
            writer.current = next;
            self.version
                .store(writer.current.version, Ordering::Release);
            KnobPublish {
                version: writer.current.version,
                decoder,
            }
        };
        let waker = self.waker.lock_unpoisoned().clone();
        if let Some(wake) = waker {
            wake(published);
        }
        Ok(SetOutcome::Changed {
            version: published.version,
        })
    }

    /// The current values (a copy; for replies and state saving, not for the engine).
    pub fn current(&self) -> KnobSnapshot {
        self.writer.lock_unpoisoned().current.clone()
    }

    /// The version of the newest publish (cheap, lock-free).
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }
}

impl KnobReader {
    /// The newest published snapshot. Never blocks.
    #[inline]
    pub fn read(&mut self) -> &KnobSnapshot {
        self.output.read()
    }

    /// Whether a publish happened since the last [`read`](Self::read).
    pub fn changed(&self) -> bool {
        self.output.updated()
    }
}

#[cfg(test)]
mod tests;
