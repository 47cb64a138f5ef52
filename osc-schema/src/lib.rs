//! The OSC address space of latentd as one table, and everything derived from it.
//!
//! - [`table::ADDRESSES`]: the contract, address by address (arguments, timing, reply, doc).
//! - [`ParamSpec`] / [`reference_knobs`]: the knob list, neutral of the engine.
//! - [`Schema`]: the table instantiated for a knob list and a media folder;
//!   [`Schema::decode`] turns packet bytes into validated [`Command`]s or a precise [`Fail`].
//! - [`reply`]: builders for every reply (`/done`, `/fail`, `/synced`, `/status.reply`, ...).
//! - [`generate`]: `docs/osc.md`, the OSCQuery description and the client examples.
//! - [`framing`]: OSC-over-TCP stream framing (size prefix, SLIP), for servers and clients.
//! - [`oscquery_http`]: the limits of the daemon's OSCQuery HTTP server.
//! - [`presets`]: preset names, the longest fade, the fade curves.
//! - [`record`]: record file names and the timestamped default.
//! - [`midi`]: MIDI maps (channel, controller, target, range, curve, mode) and their checks.
//! - [`limits`]: the OSC server's per-client limits (connections, timeouts, subscriptions, rate,
//!   timed bundles), enforced by the daemon and documented from here.
//!
//! This crate depends on neither the engine nor sockets (framing works on bytes).
//!
//! Threading: plain data and pure functions; usable from any thread. Decoding allocates and
//! may read file metadata (media paths): control threads only, never the audio callback.
#![deny(missing_docs)]

pub mod command;
mod decode;
pub mod framing;
pub mod generate;
pub mod knobs;
pub mod limits;
pub mod media;
pub mod midi;
mod named;
pub mod oscquery_http;
pub mod pattern;
pub mod presets;
pub mod record;
pub mod reply;
pub mod schema;
pub mod table;

pub use command::{Command, Fail, PACKET_ADDRESS, RecordFile, Timed, When, ntp_to_unix_seconds};
pub use decode::describe;
pub use knobs::{ParamSpec, reference_knobs};
pub use media::MediaRoot;
pub use schema::{Endpoint, Limits, Schema};

/// Re-exported so users build and match packets with the same `rosc` version.
pub use rosc;
