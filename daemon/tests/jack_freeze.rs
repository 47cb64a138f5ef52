//! `/status` tracks the real output through a frozen JACK server and a server that comes
//! back with another period: the real `latentd` binary plays into a
//! private `jackd -d dummy`.
//!
//! - The server is frozen with SIGSTOP for 5 s (longer than the 3 s stall limit, so the
//!   daemon counts its output lost) and resumed with SIGCONT: the daemon's client was never
//!   dropped by the server, which calls it again, so `/status` must say `running` again
//!   within [`BACK_LIMIT`] (it used to say `reconnecting` for minutes while audio played),
//!   with the playhead moving and a knob set before unchanged.
//! - The server is then killed and restarted with another period: `period_frames` in
//!   `/status` must be the new one once the output runs again (it used to keep the first).
//!
//! Threading: libjack reads `JACK_DEFAULT_SERVER` process-wide; the test holds a
//! [`JackSession`] while its server runs.

#![cfg(feature = "jack")]

mod common;

use std::time::{Duration, Instant};

use common::jack_tone::{PERIOD, RATE, start_tone_daemon};
use common::service_fixture::{Daemon, NotifySocket, Osc, Status};
use latentd_tests::JackSession;
use rosc::OscType;
use tempfile::TempDir;

/// How long the server stays frozen: past the daemon's 3 s stall limit.
const FROZEN: Duration = Duration::from_secs(5);
/// After SIGCONT, `/status` says `running` within this.
const BACK_LIMIT: Duration = Duration::from_secs(2);
/// After a restart, the output runs at the new period within this.
const RESTART_LIMIT: Duration = Duration::from_secs(4);
/// The period the restarted server runs at.
const NEW_PERIOD: usize = 512;

/// Poll `/status` every 20 ms until `done` holds or `limit` passes (then panic with the
/// daemon's log); returns the last status and how long it took.
fn status_until(
    osc: &Osc,
    daemon: &Daemon,
    limit: Duration,
    what: &str,
    done: impl Fn(&Status) -> bool,
) -> (Status, Duration) {
    let from = Instant::now();
    loop {
        let status = osc.status();
        if done(&status) {
            eprintln!("{what}: after {:?}", from.elapsed());
            return (status, from.elapsed());
        }
        assert!(
            from.elapsed() < limit,
            "{what}: not within {limit:?}; last {status:?}\n{}",
            daemon.lines().join("\n")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn status_follows_a_frozen_server_back_and_a_new_period() {
    let mut session = JackSession::start(RATE, PERIOD);
    let dir = TempDir::new().unwrap();
    let notify = NotifySocket::bind(dir.path());
    let config = dir.path().join("latentd.toml");
    std::fs::write(&config, "[log]\nlevel = \"info\"\n").unwrap();
    let daemon = start_tone_daemon(&session, &dir, &notify, &config, &[]);
    let osc = Osc::new(daemon.osc_addr(Duration::from_secs(5)));
    osc.send("/knob/denoise", vec![OscType::Float(0.375)]);
    assert_eq!(osc.knob("denoise"), 0.375);
    let before = osc.status();
    assert_eq!(before.output, "running");
    assert_eq!(before.period_frames, PERIOD as i32);

    // Freeze the server past the stall limit, then let it go on.
    session.server.signal(libc::SIGSTOP);
    std::thread::sleep(FROZEN);
    let frozen = osc.status();
    session.server.signal(libc::SIGCONT);
    assert_ne!(frozen.output, "running", "a frozen server went unnoticed");
    let (back, took) = status_until(&osc, &daemon, BACK_LIMIT, "running after SIGCONT", |s| {
        s.output == "running"
    });
    assert!(took < BACK_LIMIT);
    assert_eq!(back.output_reconnects, before.output_reconnects + 1);
    // It is the truth: the playhead moves.
    let playhead = back.playhead_s;
    status_until(
        &osc,
        &daemon,
        Duration::from_secs(1),
        "playhead moving",
        |s| s.playhead_s != playhead,
    );
    // And it stays running.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        osc.status().output,
        "running",
        "{}",
        daemon.lines().join("\n")
    );
    assert_eq!(osc.knob("denoise"), 0.375);

    // A server back with another period: /status shows it.
    session.server.kill();
    session.server.restart(RATE, NEW_PERIOD);
    let (after, _) = status_until(
        &osc,
        &daemon,
        RESTART_LIMIT,
        "running at the new period",
        |s| s.output == "running" && s.output_reconnects > back.output_reconnects,
    );
    assert_eq!(after.period_frames, NEW_PERIOD as i32, "{after:?}");
    assert_eq!(osc.knob("denoise"), 0.375);
}
