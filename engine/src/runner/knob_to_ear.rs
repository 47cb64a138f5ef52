//! Knob-to-ear, live: each knob action's `audible_first` ([`super::metrics`]) followed over
//! the ring writes as they land, and counted in a [`DurationHistogram`] once it is final.
//!
//! What is measured, in the reader's frame clock: from the action's arrival (the frame clock
//! when the daemon noted it, just after decoding the OSC packet and publishing the knob)
//! to the frame clock at which the output callback reads the first ring frame of a write
//! that reflects it (that write's start, if the write landed before the playhead got
//! there, else the landing). Not measured: the network before the packet arrived, and
//! what follows the callback's read (the audio server's and the device's buffers, and a
//! sample-rate conversion in the callback). The frame clock advances once per period, so a
//! figure is good to about one period.
//!
//! Final: a write landing later cannot be heard before it lands, so once the frame clock
//! has passed an action's best moment so far, no write can improve it; it is counted then
//! ([`KnobToEar::settle`]). An action never heard (the engine paused, no write reflecting
//! it) is never counted.
//!
//! Threading: the engine thread. At most [`PENDING_CAPACITY`] actions are followed at once
//! (a fixed-capacity queue: nothing allocates after construction); when full, the oldest is
//! counted (if heard) or dropped to make room.

use std::collections::VecDeque;

use super::engine_config::DurationHistogram;
use super::metrics::ActionLatency;
use super::trace::{ActionEvent, WriteEvent};

/// Knob actions followed at once, at most (an XY pad sending 60 messages a second with
/// knob-to-ear under 1 s stays well inside).
pub const PENDING_CAPACITY: usize = 128;

#[derive(Debug, Clone, Copy)]
struct Pending {
    action: ActionEvent,
    /// Best `audible_first` so far, frames after the action's origin.
    heard: Option<u64>,
}

/// The knob actions not yet final (see the module doc).
#[derive(Debug)]
pub struct KnobToEar {
    pending: VecDeque<Pending>,
    rate: f64,
}

impl KnobToEar {
    /// Follows actions on a frame clock at `sample_rate`.
    pub fn new(sample_rate: u32) -> KnobToEar {
        KnobToEar {
            pending: VecDeque::with_capacity(PENDING_CAPACITY),
            rate: f64::from(sample_rate),
        }
    }

    /// A knob action arrived: follow it (counting or dropping the oldest when full).
    pub fn arrived(&mut self, action: ActionEvent, into: &mut DurationHistogram) {
        if self.pending.len() == PENDING_CAPACITY
            && let Some(oldest) = self.pending.pop_front()
            && let Some(heard) = oldest.heard
        {
            into.observe(heard as f64 / self.rate);
        }
        self.pending.push_back(Pending {
            action,
            heard: None,
        });
    }

    /// A write landed: each followed action it reflects may be heard earlier.
    pub fn landed(&mut self, write: &WriteEvent) {
        for p in &mut self.pending {
            let first = ActionLatency::compute(&p.action, None, std::iter::once(write));
            if let Some(f) = first.audible_first {
                p.heard = Some(p.heard.map_or(f, |h| h.min(f)));
            }
        }
    }

    /// The frame clock reads `now`: count the actions whose best moment it has passed.
    pub fn settle(&mut self, now: u64, into: &mut DurationHistogram) {
        let rate = self.rate;
        self.pending.retain(|p| match p.heard {
            Some(heard) if p.action.origin_frame() + heard <= now => {
                into.observe(heard as f64 / rate);
                false
            }
            _ => true,
        });
    }

    /// Actions followed now.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::trace::{ActionKind, WriteKind};

    fn action(id: u64, arrival_frame: u64) -> ActionEvent {
        ActionEvent {
            id,
            kind: ActionKind::Knob,
            arrival_frame,
            sent_frame: None,
        }
    }

    /// A write reflecting actions up to `newest`, landing at `landed`, whose start the
    /// playhead reaches at `reached`.
    fn write(newest: u64, landed: u64, reached: u64) -> WriteEvent {
        WriteEvent {
            kind: WriteKind::Frontier,
            ring_start: 0,
            len: 1000,
            late_frames: 0,
            issued_frame: landed,
            landed_frame: landed,
            start_reached_frame: Some(reached),
            newest_action_id: Some(newest),
            full_action_id: None,
        }
    }

    #[test]
    fn an_action_counts_once_at_its_earliest_audible_moment_once_final() {
        let mut h = DurationHistogram::default();
        let mut ear = KnobToEar::new(1000);
        ear.arrived(action(1, 100), &mut h);
        // A frontier write lands at 150, heard at 400; a repatch lands at 160, heard at 180.
        ear.landed(&write(1, 150, 400));
        ear.settle(170, &mut h);
        assert_eq!(h.count(), 0, "counted before its moment");
        ear.landed(&write(1, 160, 180));
        // A write that does not reflect it changes nothing.
        ear.landed(&write(0, 165, 166));
        ear.settle(179, &mut h);
        assert_eq!(h.count(), 0);
        ear.settle(180, &mut h);
        assert_eq!(h.count(), 1);
        assert!((h.sum_s - 0.080).abs() < 1e-12, "{}", h.sum_s);
        ear.settle(10_000, &mut h);
        assert_eq!(h.count(), 1, "counted twice");
        assert_eq!(ear.pending(), 0);
    }

    #[test]
    fn an_action_never_heard_is_not_counted_and_a_full_queue_makes_room() {
        let mut h = DurationHistogram::default();
        let mut ear = KnobToEar::new(1000);
        for id in 1..=PENDING_CAPACITY as u64 {
            ear.arrived(action(id, id), &mut h);
        }
        ear.landed(&write(1, 200, 300));
        ear.settle(250, &mut h);
        assert_eq!(h.count(), 0);
        // Full: the oldest (heard at 300, 299 frames after it arrived) is counted to make room.
        ear.arrived(action(1000, 260), &mut h);
        assert_eq!(h.count(), 1);
        assert!((h.sum_s - 0.299).abs() < 1e-12);
        assert_eq!(ear.pending(), PENDING_CAPACITY);
        ear.settle(1_000_000, &mut h);
        assert_eq!(h.count(), 1, "unheard actions counted");
    }
}
