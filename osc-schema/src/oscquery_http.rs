//! The limits of the daemon's OSCQuery HTTP server, as data: the server enforces them, the
//! generated reference (`docs/osc.md`, section OSCQuery) lists them, and
//! `docs/operations.md` (section Limits) repeats them for operators. Each is declared here
//! once.
//!
//! Every size is bounded before anything sized by the peer is allocated; every wait has a
//! deadline; the number of connections served at once is capped.
//!
//! Threading: constants only.

use std::time::Duration;

/// Default OSCQuery HTTP port.
pub const DEFAULT_PORT: u16 = 7771;

/// Longest request line plus headers, in bytes; a longer head is answered 431 and closed.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;

/// Most header fields in one request; more are answered 431 and closed.
pub const MAX_HEADERS: usize = 32;

/// Longest request target (path and query) served, in bytes; a longer one is answered 414.
pub const MAX_URL_BYTES: usize = 1024;

/// Largest request body, in bytes. OSCQuery needs none: a body up to this size is read and
/// discarded; a larger `Content-Length`, or any `Transfer-Encoding`, is answered 413 and the
/// connection closed without reading it.
pub const MAX_BODY_BYTES: u64 = 1024;

/// Most connections served at once (each holds one worker thread and one file descriptor);
/// one more is answered 503 and closed at once, without waiting for a worker.
pub const MAX_CONNECTIONS: usize = 32;

/// Most requests answered on one keep-alive connection before the server closes it.
pub const MAX_REQUESTS_PER_CONNECTION: usize = 100;

/// How long an open connection may wait before the first byte of its next request; then the
/// server closes it.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// From the first byte of a request to the last byte of its head and body: a slower client
/// (one byte a second) is answered 408 and cut off.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest time to write one response to a client that does not read it; then the
/// connection is closed.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// First pause of the accept loop when the process is out of file descriptors (`EMFILE`,
/// `ENFILE`) or kernel memory; doubled on each failure in a row up to
/// [`ACCEPT_BACKOFF_MAX`], back to this after a success. Serving resumes by itself once
/// descriptors are free again.
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(50);

/// Longest pause of the accept loop between two tries (see [`ACCEPT_BACKOFF_MIN`]).
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Refused requests and connections (allowlist, over the cap, over a size limit, too slow,
/// out of descriptors) are logged at most once per interval; the next line says how many
/// were not logged since the last one.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);
