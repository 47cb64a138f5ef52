//! The runner's trace: what control actions arrived and what the engine wrote into the
//! ring, in a preallocated, fixed-capacity buffer, dumped as JSON lines for the metrics
//! ([`super::metrics`]) and for offline tools.
//!
//! Times are **frame clock** values (the reader's monotonic frames played, as in
//! [`RingCounters::frames_played`](crate::ring::RingCounters::frames_played)); ring
//! positions are loop frames. Action ids are given in arrival order from 1 up; a write
//! "reflects" every action up to the newest one whose value its latent saw.
//!
//! # Threading and allocation
//!
//! A [`Trace`] is owned by the engine thread. [`Trace::new`] allocates every slot up front;
//! [`Trace::record`] never allocates: when the buffer is full the oldest event is dropped
//! and counted ([`Trace::dropped`]). Dumping ([`Trace::write_jsonl`]) is for after the run
//! or another thread's copy; it formats text.

use std::io::{self, BufRead, Write};

use serde::{Deserialize, Serialize};

use super::targeting::LoopGeometry;

/// What a control action changed; the metrics are grouped by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// A shared knob (a curve every slot reads on its next step).
    Knob,
    /// A per-request value (denoise, seed, steps) that reaches only new slots.
    PerSlotKnob,
    /// A text prompt (an encode, then a conditioning commit).
    Prompt,
    /// A timbre reference (an encode, then a conditioning commit).
    Timbre,
    /// A structure change (an encode, then a conditioning commit).
    Structure,
    /// The loop band.
    Loop,
    /// Transport (play, stop, locate).
    Transport,
}

impl ActionKind {
    /// Every kind, in report order.
    pub const ALL: [ActionKind; 7] = [
        ActionKind::Knob,
        ActionKind::PerSlotKnob,
        ActionKind::Prompt,
        ActionKind::Timbre,
        ActionKind::Structure,
        ActionKind::Loop,
        ActionKind::Transport,
    ];
}

/// A control action as the engine saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionEvent {
    /// Arrival-order id, from 1 up.
    pub id: u64,
    /// What it changed.
    pub kind: ActionKind,
    /// Frame clock when it arrived at the daemon.
    pub arrival_frame: u64,
    /// Frame clock when the client sent it, when a harness knows (latentctl bench).
    pub sent_frame: Option<u64>,
}

impl ActionEvent {
    /// Where latency is measured from: the send when known, else the arrival.
    pub fn origin_frame(&self) -> u64 {
        self.sent_frame.unwrap_or(self.arrival_frame)
    }
}

/// Which write path put a window into the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteKind {
    /// A fresh window at `playhead + lead`.
    Frontier,
    /// A second window from the same fresh latent near the playhead.
    Repatch,
    /// The cached latent re-rendered at the advancing playhead (no fresh latent).
    GapFill,
    /// The part of a window placed at A because the band wrapped it.
    BandWrap,
    /// The cached latent re-rendered near the playhead because a decoder-scope knob (a
    /// channel gain) changed: no fresh latent is needed for those.
    KnobRepatch,
}

/// One ring write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteEvent {
    /// Which write path.
    pub kind: WriteKind,
    /// Ring frame where the write starts.
    pub ring_start: usize,
    /// Frames in the write.
    pub len: usize,
    /// Frames the ring dropped inside its guard (older audio left in place).
    pub late_frames: usize,
    /// Frame clock when the window was decoded (and its target chosen).
    pub issued_frame: u64,
    /// Frame clock when the write finished ([`WriteReport::landed_at`](crate::ring::WriteReport::landed_at)).
    pub landed_frame: u64,
    /// Frame clock at which the playhead reaches `ring_start`, from the playhead at issue
    /// along the reader's path ([`start_reached_frame`]); `None` if it never will.
    pub start_reached_frame: Option<u64>,
    /// Newest action whose value the latent saw (at any step); `None` before any action.
    pub newest_action_id: Option<u64>,
    /// Newest action whose value was in force for the whole computation of the latent.
    pub full_action_id: Option<u64>,
}

/// The frame clock at which the playhead reaches ring frame `ring_start`, given a frame
/// clock `clock` read together with the playhead `playhead` (for a write, at issue).
/// `None` when the reader's path does not pass there (outside the band).
pub fn start_reached_frame(
    geometry: &LoopGeometry,
    clock: u64,
    playhead: usize,
    ring_start: usize,
) -> Option<u64> {
    geometry
        .frames_until_reached(playhead, ring_start)
        .map(|d| clock + d)
}

/// An entry of the trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TraceEvent {
    /// A control action arrived.
    Action(ActionEvent),
    /// A window was written.
    Write(WriteEvent),
}

impl From<ActionEvent> for TraceEvent {
    fn from(e: ActionEvent) -> Self {
        TraceEvent::Action(e)
    }
}

impl From<WriteEvent> for TraceEvent {
    fn from(e: WriteEvent) -> Self {
        TraceEvent::Write(e)
    }
}

/// The first line of a dump: how complete the trace is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceHeader {
    /// Slots in the trace.
    pub capacity: usize,
    /// Events in the dump.
    pub events: usize,
    /// Older events dropped because the trace was full.
    pub dropped: u64,
}

/// One line of a dump: the header, then the events.
#[derive(Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Line {
    Header(TraceHeader),
    Action(ActionEvent),
    Write(WriteEvent),
}

/// Errors from building a trace or reading a dump.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// A trace needs at least one slot.
    #[error("trace capacity must be at least 1")]
    ZeroCapacity,
    /// The dump could not be read.
    #[error("trace dump: {0}")]
    Io(#[from] io::Error),
    /// A line is not a trace event.
    #[error("trace dump line {line}: {source}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// What serde_json said.
        source: serde_json::Error,
    },
    /// The first line is not a header, or a header appears later.
    #[error("trace dump line {line}: expected {expected}")]
    Layout {
        /// 1-based line number.
        line: usize,
        /// What should have been there.
        expected: &'static str,
    },
}

/// A fixed-capacity ring of trace events, oldest dropped first.
#[derive(Clone)]
pub struct Trace {
    /// Up to `capacity` events; once full, `head` is the oldest.
    events: Vec<TraceEvent>,
    capacity: usize,
    head: usize,
    dropped: u64,
}

impl Trace {
    /// A trace holding the latest `capacity` events (all memory allocated here).
    pub fn new(capacity: usize) -> Result<Self, TraceError> {
        if capacity == 0 {
            return Err(TraceError::ZeroCapacity);
        }
        Ok(Self {
            events: Vec::with_capacity(capacity),
            capacity,
            head: 0,
            dropped: 0,
        })
    }

    /// Record an event; drops (and counts) the oldest when full. Never allocates.
    pub fn record(&mut self, event: impl Into<TraceEvent>) {
        let event = event.into();
        if self.events.len() < self.capacity {
            self.events.push(event);
        } else {
            self.events[self.head] = event;
            self.head = (self.head + 1) % self.capacity;
            self.dropped += 1;
        }
    }

    /// Slots in the trace.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Events held.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether no event is held.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Events dropped because the trace was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Forget every event and the dropped count (keeps the memory).
    pub fn clear(&mut self) {
        self.events.clear();
        self.head = 0;
        self.dropped = 0;
    }

    /// Events held, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &TraceEvent> + '_ {
        let (newer, older) = self.events.split_at(self.head);
        older.iter().chain(newer)
    }

    /// Actions held, oldest first.
    pub fn actions(&self) -> impl Iterator<Item = &ActionEvent> + '_ {
        self.iter().filter_map(|e| match e {
            TraceEvent::Action(a) => Some(a),
            TraceEvent::Write(_) => None,
        })
    }

    /// Writes held, oldest first.
    pub fn writes(&self) -> impl Iterator<Item = &WriteEvent> + '_ {
        self.iter().filter_map(|e| match e {
            TraceEvent::Write(w) => Some(w),
            TraceEvent::Action(_) => None,
        })
    }

    /// The header a dump of this trace starts with.
    pub fn header(&self) -> TraceHeader {
        TraceHeader {
            capacity: self.capacity,
            events: self.len(),
            dropped: self.dropped,
        }
    }

    /// Dump as JSON lines: a header line (`"event":"header"`), then one line per event,
    /// oldest first (`"event":"action"` or `"event":"write"`).
    pub fn write_jsonl<W: Write>(&self, mut out: W) -> io::Result<()> {
        serde_json::to_writer(&mut out, &Line::Header(self.header()))?;
        out.write_all(b"\n")?;
        for event in self.iter() {
            let line = match *event {
                TraceEvent::Action(a) => Line::Action(a),
                TraceEvent::Write(w) => Line::Write(w),
            };
            serde_json::to_writer(&mut out, &line)?;
            out.write_all(b"\n")?;
        }
        out.flush()
    }
}

/// Read a dump written by [`Trace::write_jsonl`]: its header and its events in order.
/// Blank lines are skipped.
pub fn read_jsonl<R: BufRead>(input: R) -> Result<(TraceHeader, Vec<TraceEvent>), TraceError> {
    let mut header = None;
    let mut events = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(&line).map_err(|source| TraceError::Parse {
            line: i + 1,
            source,
        })?;
        match (parsed, header.is_some()) {
            (Line::Header(h), false) => header = Some(h),
            (Line::Header(_), true) => {
                return Err(TraceError::Layout {
                    line: i + 1,
                    expected: "an action or write event (only one header)",
                });
            }
            (_, false) => {
                return Err(TraceError::Layout {
                    line: i + 1,
                    expected: "the header line first",
                });
            }
            (Line::Action(a), true) => events.push(TraceEvent::Action(a)),
            (Line::Write(w), true) => events.push(TraceEvent::Write(w)),
        }
    }
    let header = header.ok_or(TraceError::Layout {
        line: 1,
        expected: "the header line first",
    })?;
    Ok((header, events))
}

#[cfg(test)]
mod tests;
