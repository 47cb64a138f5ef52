//! Test fixtures shared by latentd's integration tests: a private JACK dummy server started
//! and stopped by PID, a private PipeWire graph, WAV helpers.
//!
//! Threading: fixtures are plain values owned by one test; their `Drop` stops what they
//! started.

pub mod pipewire_graph;
