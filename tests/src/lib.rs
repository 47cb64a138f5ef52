//! Test fixtures shared by latentd's integration tests: a private JACK dummy server started
//! and stopped by PID, a private PipeWire graph, WAV helpers.
//!
//! Threading: fixtures are plain values owned by one test; their `Drop` stops what they
//! started.

pub mod index_signal;
pub mod jack_server;

pub use index_signal::{PathReport, check_path, decode_frame, encode_frame, index_signal};
pub use jack_server::JackServer;
pub mod pipewire_graph;
pub mod signal_fit;

pub use signal_fit::fit_sine;
