//! Which control actions a finished latent reflects, for the trace's write events
//! ([`WriteEvent::newest_action_id`](crate::runner::WriteEvent) and `full_action_id`).
//!
//! A shared knob reaches every slot at the next tick; a per-slot knob (a seed, a denoise)
//! only the slots started after it. So a latent reflects the shared changes up to the prefix
//! applied when it finished, but no per-slot change applied after it started.
//!
//! Threading: owned by the engine core (one thread); fixed-size, never allocates after
//! construction.

use std::collections::VecDeque;

use crate::runner::actions::ActionLog;
use crate::runner::trace::ActionKind;

/// Slots whose start prefix is remembered (more than the deepest pipeline).
const START_SLOTS: usize = 16;
/// Recent per-slot (and non-knob) action ids remembered.
const RECENT_IDS: usize = 64;

/// Which actions a latent reflects (see [`crate::runner::WriteEvent`]).
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub(super) struct Attribution {
    /// The newest action it reflects.
    pub newest: Option<u64>,
    /// The newest action it reflects from its first step (every action up to it).
    pub full: Option<u64>,
}

/// The action ids the engine has seen and the prefix each pipeline slot started under.
pub(super) struct ActionAttributor {
    /// Actions applied without a gap (see [`ActionLog::advance_prefix`]).
    prefix: u64,
    /// Recent per-slot knob action ids.
    per_slot_ids: VecDeque<u64>,
    /// Recent ids of actions that are not shared knobs (per-slot knobs, prompts, loops...):
    /// a knob repatch of an older latent cannot reflect them.
    other_ids: VecDeque<u64>,
    /// The prefix each slot started under, by serial.
    slot_starts: [u64; START_SLOTS],
    /// The serial the next started slot gets (the pipeline's order).
    next_serial: u32,
}

impl ActionAttributor {
    pub fn new() -> Self {
        Self {
            prefix: 0,
            per_slot_ids: VecDeque::with_capacity(RECENT_IDS),
            other_ids: VecDeque::with_capacity(RECENT_IDS),
            slot_starts: [0; START_SLOTS],
            next_serial: 0,
        }
    }

    /// Advance the applied prefix from `log`.
    pub fn advance(&mut self, log: &ActionLog) {
        log.advance_prefix(&mut self.prefix);
    }

    /// Actions applied without a gap.
    pub fn prefix(&self) -> u64 {
        self.prefix
    }

    /// An action of `kind` with `id` arrived.
    pub fn note_action(&mut self, kind: ActionKind, id: u64) {
        if kind == ActionKind::PerSlotKnob {
            push_bounded(&mut self.per_slot_ids, id);
        }
        if kind != ActionKind::Knob {
            push_bounded(&mut self.other_ids, id);
        }
    }

    /// `count` slots started this tick, under `prefix`.
    pub fn slots_started(&mut self, count: usize, prefix: u64) {
        for _ in 0..count {
            self.slot_starts[self.next_serial as usize % START_SLOTS] = prefix;
            self.next_serial = self.next_serial.wrapping_add(1);
        }
    }

    /// A new pipeline numbers its slots from 0 again.
    pub fn pipeline_restarted(&mut self) {
        self.next_serial = 0;
    }

    /// What the latent of slot `serial`, finished now under `prefix`, reflects: shared
    /// changes up to `prefix`, but no per-slot change applied after it started.
    pub fn finished(&self, serial: u32, prefix: u64) -> Attribution {
        let start = self.slot_starts[serial as usize % START_SLOTS].min(prefix);
        let unseen = self.per_slot_ids.iter().find(|&&id| id > start);
        let newest = unseen.map_or(prefix, |&id| (id - 1).min(prefix));
        Attribution {
            newest: (newest > 0).then_some(newest),
            full: (start > 0).then_some(start),
        }
    }

    /// What a re-render (a knob repatch) of a latent reflecting `attr` reflects under
    /// `prefix`: also the actions after it, up to the first that is not a shared knob, when
    /// `decoder_only` (no knob outside the decoder's scope changed since the latent
    /// finished, so those actions changed decoder knobs only); else the same as the latent.
    pub fn rerendered(&self, attr: Attribution, prefix: u64, decoder_only: bool) -> Attribution {
        let base = attr.newest.unwrap_or(0);
        if !decoder_only || prefix <= base {
            return attr;
        }
        let newest = self
            .other_ids
            .iter()
            .find(|&&id| id > base)
            .map_or(prefix, |&id| (id - 1).min(prefix));
        let newest = (newest > 0).then_some(newest);
        Attribution {
            newest,
            full: if attr.full == attr.newest {
                newest
            } else {
                attr.full
            },
        }
    }
}

fn push_bounded(ids: &mut VecDeque<u64>, id: u64) {
    if ids.len() == RECENT_IDS {
        ids.pop_front();
    }
    ids.push_back(id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_latent_reflects_shared_changes_but_not_per_slot_ones_after_its_start() {
        let mut a = ActionAttributor::new();
        a.slots_started(1, 2); // serial 0 under prefix 2
        a.note_action(ActionKind::Knob, 3);
        a.note_action(ActionKind::PerSlotKnob, 4);
        a.note_action(ActionKind::Knob, 5);
        assert_eq!(
            a.finished(0, 5),
            Attribution {
                newest: Some(3),
                full: Some(2)
            }
        );
        // Started after the per-slot change: reflects everything.
        a.slots_started(1, 5);
        assert_eq!(
            a.finished(1, 5),
            Attribution {
                newest: Some(5),
                full: Some(5)
            }
        );
        a.pipeline_restarted();
        a.slots_started(1, 0);
        assert_eq!(a.finished(0, 0), Attribution::default());
    }

    #[test]
    fn a_rerender_reflects_later_shared_knobs_up_to_the_first_other_action() {
        let mut a = ActionAttributor::new();
        let latent = Attribution {
            newest: Some(2),
            full: Some(2),
        };
        a.note_action(ActionKind::Knob, 3);
        a.note_action(ActionKind::Prompt, 5);
        let r = a.rerendered(latent, 6, true);
        assert_eq!(
            r,
            Attribution {
                newest: Some(4),
                full: Some(4)
            }
        );
        // A knob outside the decoder changed: nothing more is reflected.
        assert_eq!(a.rerendered(latent, 6, false), latent);
        // A latent already partial keeps its `full`.
        let partial = Attribution {
            newest: Some(2),
            full: Some(1),
        };
        assert_eq!(a.rerendered(partial, 4, true).full, Some(1));
        assert_eq!(a.rerendered(partial, 4, true).newest, Some(4));
    }
}
