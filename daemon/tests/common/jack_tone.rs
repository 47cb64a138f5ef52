//! The real daemon playing a quadrature tone ([`Quadrature`]) into a private JACK server,
//! as the JACK capture and restart tests run it: the tone, its tolerances, the start.
//!
//! Threading: the caller holds the [`JackSession`].

use std::path::Path;
use std::time::Duration;

use latentd_tests::{JackSession, Quadrature};
use tempfile::TempDir;

use super::service_fixture::{Daemon, Launch, NotifySocket};

/// The server's rate, equal to the engine's so the callback plays the ring unconverted.
pub const RATE: u32 = 48_000;
/// The server's period, frames.
pub const PERIOD: usize = 256;
/// Peak level of each channel.
pub const LEVEL: f32 = 0.5;
/// Tone frequency; the one-second loop holds exactly this many cycles.
pub const TONE_HZ: f32 = 440.0;
/// The loop the daemon plays.
pub const TONE: Quadrature = Quadrature {
    tone_hz: TONE_HZ,
    level: LEVEL,
    rate: RATE,
};
/// How long the daemon may take to start playing.
pub const START: Duration = Duration::from_secs(30);
/// Envelope (relative to [`LEVEL`]) within which a frame counts as full level: float
/// rounding in the WAV, the ring and JACK stay far inside it.
pub const FULL_LEVEL_TOLERANCE: f32 = 0.01;
/// Largest error of the phase step between two full-level frames, in radians.
pub const PHASE_TOLERANCE: f32 = 0.002;

/// `latentd --audio jack --engine off --source <the tone> --config <config> <extra>` on
/// `session`'s server, with its own notify socket; returns once it has said `READY=1` and
/// plays into the server at its rate, unconverted.
pub fn start_tone_daemon(
    session: &JackSession,
    dir: &TempDir,
    notify: &NotifySocket,
    config: &Path,
    extra: &[&str],
) -> Daemon {
    let source = dir.path().join("quadrature.wav");
    TONE.write_loop(&source);
    let (source, config) = (source.to_str().unwrap(), config.to_str().unwrap());
    let args: Vec<&str> = ["--source", source, "--config", config]
        .iter()
        .chain(extra)
        .copied()
        .collect();
    let mut daemon = Daemon::start(
        dir,
        Launch::engine_off_on_jack(session.server.name(), notify, &args),
    );
    daemon.until_ready(notify, START);
    // Into the private server, at its rate: the ring (at the engine's rate) plays unconverted.
    daemon.wait_line("audio: jack output, 48000 Hz", Duration::from_secs(2));
    assert!(
        !daemon.has_line("converting in the callback"),
        "{:?}",
        daemon.lines()
    );
    daemon
}
