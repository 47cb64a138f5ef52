//! Test fixtures shared by latentd's integration tests: a private JACK dummy server started
//! and stopped by PID, a JACK client that records what arrives at its inputs, a private
//! PipeWire graph, WAV helpers, random-weight model bundles and the ONNX Runtime library.
//!
//! Threading: fixtures are plain values owned by one test; their `Drop` stops what they
//! started.

pub mod hostile_files;
pub mod index_signal;
pub mod jack_capture;
pub mod jack_server;
pub mod quadrature;

pub use index_signal::{PathReport, check_path, decode_frame, encode_frame, index_signal};
pub use jack_capture::{CapturedPeriod, FrameTimeGap, JackCapture, Recording};
pub use jack_server::{JackServer, JackSession};
pub use quadrature::Quadrature;
pub mod pipewire_graph;
pub mod signal_fit;
pub mod test_bundles;

pub use signal_fit::fit_sine;
