//! `latentd-engine`: everything between the model and the output ports, with no audio
//! server, OSC or systemd in sight.
//!
//! - [`audio_file`]: WAV loading and conversion to the output format, the test loop.
//! - [`ring`]: the loop-length [`PlayheadRing`](ring::PlayheadRing) the audio callback plays
//!   and the engine patches.
//! - [`runner`]: the model-independent parts of the runner: lead controller, write
//!   targeting, the trace of actions and writes, and the knob-to-ear metrics over it.
//!
//! Threading rules are stated per module; the short version: the ring's reader belongs to the
//! audio callback (no allocation, no lock, no syscall), its writer to the engine thread, and
//! its [`RingHandle`](ring::RingHandle) to anyone.
#![deny(missing_docs)]

pub mod audio_file;
pub mod ring;
pub mod runner;
mod sync;

pub use ring::{PlayheadRing, RingCounters, RingError, RingHandle, RingReader, RingWriter};
