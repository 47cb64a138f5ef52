//! The model-independent parts of the runner: where and when the engine writes decoded
//! windows into the [`PlayheadRing`](crate::ring::PlayheadRing), and how the latency of a
//! control action is measured from the writes that follow it.
//!
//! - [`lead`]: the adaptive lead ([`LeadController`]): how far ahead of the playhead the
//!   frontier write goes, and the unfloored lead of the near-playhead repatch.
//! - [`targeting`]: frame arithmetic for window placement: frontier and repatch targets,
//!   band-aware, and [`frames_until_reached`], the reader's path from the playhead.
//! - [`trace`]: a preallocated, fixed-capacity [`Trace`] of action and write events, dumped
//!   as JSON lines.
//! - [`metrics`]: per-action knob-to-ear figures over a trace (`next_slice`,
//!   `audible_first`, `audible_full`), percentiles, and the [`GoldenReport`];
//!   [`knob_to_ear`]: the same `audible_first` followed live, for the stats' histogram.
//! - [`engine_loop`]: the engine thread ([`Engine::spawn`]) and the daemon's
//!   [`EngineHandle`]; [`engine_core`]: the tick itself (pipeline, decode, frontier,
//!   repatch, gap-fill), clock-agnostic; [`engine_config`]: its settings and stats;
//!   [`actions`]: action ids, applied marks and control messages.
//! - [`clock`]: real and simulated time; [`sim`]: the engine stepped in simulated time.
//! - [`golden`]: the golden latency scenarios, simulated or in real time.
//! - [`walk`]: walk mode, for loops longer than the model's window: the chunks the pipeline
//!   generates one at a time around the playhead, prewarmed before a boundary.
//!
//! # Conventions
//!
//! - **Frames** everywhere: ring positions are loop frames in `0 .. loop_frames` at the
//!   output rate; the **frame clock** is the reader's monotonic count of frames played
//!   ([`RingCounters::frames_played`](crate::ring::RingCounters::frames_played)).
//! - A **loop band** `[A, B)` (frames, `A < B <= loop_frames`) makes the reader wrap from B
//!   to A; when it is armed while the playhead is outside it, the reader jumps to A at the
//!   start of its next period (before playing a frame), as the ring does.
//! - Seconds appear only in the lead controller, whose times are passed in by the caller
//!   (no clock is read here), so a simulated clock drives it exactly like a real one.
//!
//! # Threading
//!
//! Everything here belongs to the engine thread (or to an offline tool reading a trace):
//! plain values, no shared state, no locks. [`Trace::record`](trace::Trace::record) never
//! allocates, so the tick loop may record every event.

pub mod actions;
pub mod clock;
pub mod engine_config;
pub mod engine_core;
pub mod engine_loop;
pub mod golden;
pub mod knob_to_ear;
pub mod lead;
pub mod metrics;
pub mod sim;
pub mod targeting;
pub mod trace;
pub mod walk;

pub use clock::{EngineClock, RealClock, SimClock, SimCosts, Work};
pub use engine_config::{EngineConfig, EngineError, EngineStats};
pub use engine_core::EngineCore;
pub use engine_loop::{Engine, EngineHandle};
pub use sim::{SimAction, SimHarness};

pub use lead::{LeadConfig, LeadController, LeadError};
pub use metrics::{ActionLatency, GoldenReport, KindFigures, Percentiles, StreamFigures};
pub use targeting::{
    LoopGeometry, Segment, TargetingError, WritePlan, frames_until_reached, frontier_target,
    repatch_target,
};
pub use trace::{ActionEvent, ActionKind, Trace, TraceError, TraceEvent, WriteEvent, WriteKind};

#[cfg(test)]
mod tests;
