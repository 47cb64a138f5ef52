//! How control actions reach the engine: ids, the "applied" marks that say which actions a
//! knob snapshot or a conditioning commit already contains, and the control messages.
//!
//! An action gets an id in arrival order ([`ActionLog::begin`]). Its change is *applied*
//! when it is published where the engine reads it (a knob set, a conditioning commit, a
//! loop band); the control side then calls [`ActionLog::mark_applied`]. The engine reads
//! the **applied prefix** (the largest `N` with every action `<= N` applied) before it
//! reads the knobs and the conditioning, so whatever it reads contains at least those
//! actions: that is what a write's `newest_action_id` claims. A slow encode holds the
//! prefix back, which can only make later actions look later (never earlier) than they
//! were heard.
//!
//! # Threading
//!
//! [`ActionLog`] is shared (`Arc`): `begin` and `mark_applied` are lock-free and never
//! block; only the engine thread calls [`ActionLog::advance_prefix`]. [`Control`] messages
//! go through a `std::sync::mpsc` channel the engine drains with `try_recv` (it never
//! waits on it). The log's atomics come from `crate::sync`, so loom model-checks the
//! protocol (`engine/tests/actions_loom.rs`, under `--cfg loom`).

use std::sync::Arc;
use std::sync::mpsc::Sender;

use crate::sync::{AtomicU64, Ordering};

use super::lead::LeadConfig;
use super::trace::{ActionEvent, Trace};

/// Actions in flight the applied marks can tell apart (8 under loom, where every atomic is
/// a modelled location: enough for the model's few actions, never the "taken as applied"
/// rule of [`ActionLog::advance_prefix`]).
const SLOTS: usize = if cfg!(loom) { 8 } else { 4096 };

/// Action ids and applied marks, shared by the control side and the engine.
pub struct ActionLog {
    /// The next id [`ActionLog::begin`] hands out (ids start at 1).
    next: AtomicU64,
    /// Slot `id % SLOTS` holds `id` once that action is applied (release store, read with
    /// acquire, so what was published before the mark is visible to whoever sees it).
    applied: Box<[AtomicU64]>,
}

impl Default for ActionLog {
    fn default() -> Self {
        Self::new()
    }
}

impl ActionLog {
    /// A log whose first id is 1.
    pub fn new() -> Self {
        Self {
            next: AtomicU64::new(1),
            applied: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// A new id, in arrival order.
    pub fn begin(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// The action's change is published (or it was refused and changes nothing).
    pub fn mark_applied(&self, id: u64) {
        if id > 0 {
            self.applied[id as usize % SLOTS].store(id, Ordering::Release);
        }
    }

    /// Move `prefix` over every consecutive applied id (engine thread). Ids handed out
    /// more than half the slots ago are taken as applied, so a lost mark cannot hold the
    /// prefix back forever.
    pub fn advance_prefix(&self, prefix: &mut u64) {
        let issued = self.next.load(Ordering::Relaxed).saturating_sub(1);
        while *prefix < issued {
            let next = *prefix + 1;
            let marked = self.applied[next as usize % SLOTS].load(Ordering::Acquire) == next;
            if marked || issued - next >= (SLOTS / 2) as u64 {
                *prefix = next;
            } else {
                break;
            }
        }
    }
}

/// What the engine keeps for a dump or a report: the trace, the replies, the samples.
#[derive(Clone)]
pub struct EngineRecord {
    /// Actions and writes.
    pub trace: Trace,
    /// `(action id, frame clock of its reply)`.
    pub acks: Vec<(u64, u64)>,
    /// Tick durations, ms (as charged).
    pub tick_ms: Vec<f64>,
    /// Decode durations, ms (as charged).
    pub decode_ms: Vec<f64>,
    /// Frontier lead at each frontier write, seconds.
    pub lead_s: Vec<f64>,
    /// Writes that lost frames to the guard.
    pub late_landings: u64,
}

/// A message from the control side to the engine.
pub enum Control<L> {
    /// An action arrived (for the trace; also counts as activity).
    Action(ActionEvent),
    /// An action was answered at this frame clock.
    Ack {
        /// The action.
        id: u64,
        /// Frame clock of the reply.
        frame: u64,
    },
    /// New source latents (or none: text-only).
    Source(Option<Arc<L>>),
    /// A source of another length than the loop: the ring's new loop (built from the
    /// source's audio off the engine thread) and the source's latents.
    Loop(crate::ring::RingLoop, Arc<L>),
    /// Transport pause (true) or play.
    Pause(bool),
    /// New lead settings (already validated), from a config reload.
    Lead(LeadConfig),
    /// Stall the next tick by this many seconds (a test hook for the `stall` scenario).
    Stall(f64),
    /// Panic inside the next tick, once (a test hook: the engine's panic recovery; only
    /// with the `fault-injection` feature).
    #[cfg(feature = "fault-injection")]
    PanicNextTick,
    /// Send a copy of the record back.
    Record(Sender<EngineRecord>),
    /// Finish the loop.
    Stop,
}
