//! `latentd-engine`: everything between the model and the output ports, with no audio
//! server, OSC or systemd in sight.
//!
//! - [`audio_file`]: WAV loading and conversion to the output format, the test loop.
//! - [`denormals`]: flush-to-zero / denormals-are-zero around realtime DSP.
//! - [`input_file`]: opening a file to read: regular files only, size bounded first.
//! - [`ring`]: the loop-length [`PlayheadRing`] the audio callback plays
//!   and the engine patches.
//! - [`runner`]: the model-independent parts of the runner: lead controller, write
//!   targeting, the trace of actions and writes, and the knob-to-ear metrics over it.
//! - [`knobs`]: the knob table (from `latentd-knobs`) and the lock-free
//!   [`KnobStore`](knobs::KnobStore).
//! - [`lock`]: mutex and rwlock access that outlives a caught panic (one helper, everywhere).
//! - [`conditioning`]: prompt / timbre / structure, encoded off-lock and committed by epoch.
//! - [`model`]: the `Model` trait and the built-in CPU model.
//! - [`pipeline`]: the streaming pipeline (depth slots, one batched denoise per tick).
//! - [`schedule`]: the flow-matching time schedule and its bounded cache.
//! - [`rng`]: counter-based noise keyed by (seed, slot, step, draw index).
//! - [`audio_clip`]: validated reference audio (interleaved `f32`).
//! - [`try_cell`]: [`TryCell`], the never-waiting try-lock the daemon's realtime callbacks
//!   share their period processor through.
//!
//! Threading rules are stated per module; the short version: the ring's reader belongs to the
//! audio callback (no allocation, no lock, no syscall), its writer to the engine thread, and
//! its [`RingHandle`] to anyone.
#![deny(missing_docs)]

pub mod audio_clip;
pub mod audio_file;
pub mod conditioning;
pub mod denormals;
pub mod input_file;
pub mod knobs;
pub mod lock;
pub mod model;
pub mod pipeline;
pub mod ring;
pub mod rng;
pub mod runner;
pub mod schedule;
mod sync;
pub mod try_cell;

pub use ring::{
    PlayheadRing, RingCounters, RingError, RingHandle, RingLoop, RingReader, RingWriter,
};
pub use try_cell::TryCell;
