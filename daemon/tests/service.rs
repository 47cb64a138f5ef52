//! The `latentd` binary as systemd runs it: sd_notify readiness only once the
//! output plays and OSC answers, `STATUS=` lines, `WATCHDOG=1` pings that stop while the
//! engine thread hangs (test hook) and resume after, `STOPPING=1` and exit 0 within a second
//! at SIGTERM; SIGHUP reloads (`RELOADING=1`, `READY=1`) apply a new log level live, name
//! what needs a restart (the other live keys: `reload.rs`), refuse a bad file and never interrupt the audio; the session
//! (knobs, prompt, loop band) is saved debounced and at exit and restored at the next start;
//! a corrupt state file or a vanished saved source never keeps the daemon down.
//!
//! Every test runs the real binary on the null output with its own notify socket, OSC port
//! and state file.

mod common;

use common::service_fixture;

use std::time::{Duration, Instant};

use rosc::OscType;
use service_fixture::{Daemon, Launch, NotifySocket, Osc};
use tempfile::TempDir;

const START: Duration = Duration::from_secs(30);

fn gaps(pings: &[Instant]) -> Vec<f64> {
    pings
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect()
}

#[test]
fn notify_ready_status_watchdog_through_an_engine_hang_and_stopping() {
    let dir = TempDir::new().unwrap();
    let notify = NotifySocket::bind(dir.path());
    let mut daemon = Daemon::start(
        &dir,
        Launch {
            notify: Some(&notify),
            // Pings every second, an engine silent for over a second counts as hung (the
            // debug-built engine's ticks stay well below that even on a loaded machine).
            env: vec![
                ("WATCHDOG_USEC", "2000000".into()),
                ("LATENTD_TEST_ENGINE_STALL_S", "4".into()),
            ],
            ..Launch::default()
        },
    );

    // The first datagram is READY=1: nothing (no STATUS, no WATCHDOG) comes before it.
    let (first, ready_at) = notify
        .receive(START)
        .unwrap_or_else(|| panic!("no datagram:\n{}", daemon.lines().join("\n")));
    assert_eq!(first, "READY=1\n");
    let datagrams = notify.record();
    // By then the output runs and OSC is bound: the log says so (lines written before
    // READY=1 may still be in the pipe: the reader gets a moment), and /status answers at
    // once with a moving playhead.
    daemon.wait_line("playing a loop of", Duration::from_secs(2));
    let osc = Osc::new(daemon.osc_addr(Duration::from_secs(2)));
    let s0 = osc.status();
    std::thread::sleep(Duration::from_millis(300));
    let s1 = osc.status();
    assert!(s1.playhead_s > s0.playhead_s, "{s0:?} then {s1:?}");

    // The hook stalls the engine 1 s after READY for 4 s; meanwhile the loop keeps playing.
    while ready_at.elapsed() < Duration::from_millis(2500) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let in_stall = osc.status().playhead_s;
    std::thread::sleep(Duration::from_millis(1000));
    let later_in_stall = osc.status().playhead_s;
    assert!(
        later_in_stall > in_stall + 0.5,
        "{in_stall} then {later_in_stall}"
    );
    while ready_at.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut status_lines = Vec::new();
    let mut pings = Vec::new();
    for (text, at) in datagrams.try_iter() {
        for line in text.lines() {
            match line {
                "WATCHDOG=1" => pings.push(at),
                l if l.starts_with("STATUS=") => status_lines.push(l.to_string()),
                other => panic!("unexpected {other:?} while running"),
            }
        }
    }
    assert!(
        status_lines
            .first()
            .is_some_and(|l| l.starts_with("STATUS=playing ")),
        "{status_lines:?}"
    );
    assert!(status_lines.len() >= 2, "{status_lines:?}");
    // WATCHDOG=1 every second (half of WATCHDOG_USEC), except for the hang.
    let gaps = gaps(&pings);
    let (longest_at, longest) = gaps
        .iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .expect("pings");
    // Pings are withheld from the first check that finds the engine silent for over 1 s
    // until the first check after its 4 s stall ends: about 4 - 1 s, give or take the
    // one-second check grid (2.5 s is already two and a half missed pings).
    assert!(
        (2.5..6.0).contains(&longest),
        "longest gap {longest:.2} s in {gaps:?}"
    );
    let hang_started = (pings[longest_at] - ready_at).as_secs_f64();
    assert!(
        hang_started > 0.9,
        "pings stopped {hang_started:.2} s after READY"
    );
    let regular: Vec<f64> = gaps
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != longest_at)
        .map(|(_, g)| *g)
        .collect();
    assert!(regular.len() >= 4, "{gaps:?}");
    assert!(regular.iter().all(|g| (0.6..1.6).contains(g)), "{gaps:?}");
    let mut sorted = regular.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    assert!((0.85..1.15).contains(&median), "median gap {median:.3} s");
    assert!(
        gaps.len() - longest_at >= 3,
        "pings did not resume: {gaps:?}"
    );
    daemon.wait_line("heartbeat 'engine' silent", Duration::from_secs(2));
    daemon.wait_line("heartbeat 'engine' recovered", Duration::from_secs(2));

    // SIGTERM: STOPPING=1, then exit 0 within a second.
    let sent = Instant::now();
    daemon.signal(libc::SIGTERM);
    let stopping = loop {
        let (text, at) = datagrams
            .recv_timeout(Duration::from_secs(2))
            .expect("STOPPING=1 within 2 s");
        if text.lines().any(|l| l == "STOPPING=1") {
            break at;
        }
    };
    assert!(stopping - sent < Duration::from_millis(500));
    let status = daemon.wait(Duration::from_secs(5)).expect("exit");
    let took = sent.elapsed();
    assert_eq!(status.code(), Some(0), "{:?}", daemon.lines());
    assert!(took < Duration::from_secs(1), "exit took {took:?}");
    std::thread::sleep(Duration::from_millis(100));
    let after: Vec<_> = datagrams.try_iter().map(|(t, _)| t).collect();
    assert!(
        after.iter().all(|t| !t.contains("WATCHDOG=1")),
        "pinged after STOPPING: {after:?}"
    );
}

#[test]
fn no_ready_when_the_osc_port_is_taken() {
    let dir = TempDir::new().unwrap();
    let notify = NotifySocket::bind(dir.path());
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut daemon = Daemon::start(
        &dir,
        Launch {
            notify: Some(&notify),
            osc_bind: taken.local_addr().unwrap().to_string(),
            ..Launch::default()
        },
    );
    let status = daemon.wait(START).expect("exit");
    assert_eq!(status.code(), Some(2));
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        daemon.has_line("latentd: error: OSC on"),
        "{:?}",
        daemon.lines()
    );
    assert_eq!(notify.receive(Duration::from_millis(200)), None);
}

#[test]
fn sighup_reloads_the_log_level_live_refuses_a_bad_file_and_keeps_playing() {
    let dir = TempDir::new().unwrap();
    let notify = NotifySocket::bind(dir.path());
    let config = dir.path().join("latentd.toml");
    std::fs::write(&config, "[log]\nlevel = \"info\"\n").unwrap();
    let mut daemon = Daemon::start(
        &dir,
        Launch {
            notify: Some(&notify),
            args: vec![
                "--config".into(),
                config.display().to_string(),
                "--engine".into(),
                "off".into(),
            ],
            ..Launch::default()
        },
    );
    notify.until("READY=1", START);
    let osc = Osc::new(daemon.osc_addr(Duration::from_secs(2)));
    let (t0, s0) = (Instant::now(), osc.status());

    // At info, a state save is not logged.
    osc.send("/knob/denoise", vec![OscType::Float(0.3)]);
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        std::fs::read_to_string(&daemon.state)
            .unwrap()
            .contains("0.3")
    );
    assert!(!daemon.has_line("state saved to"), "{:?}", daemon.lines());

    // Debug level, another allowlist and period: the level and the allowlist apply now,
    // the period is named as waiting for a restart (daemon/tests/reload.rs tests each key).
    std::fs::write(
        &config,
        "[log]\nlevel = \"debug\"\n[audio]\nperiod = 512\n[osc]\nallowlist = [\"10.0.0.0/8\"]\n",
    )
    .unwrap();
    daemon.signal(libc::SIGHUP);
    let reload = notify.until("READY=1", Duration::from_secs(5));
    let reloading = &reload
        .iter()
        .find(|(m, _)| m.starts_with("RELOADING=1\n"))
        .expect("RELOADING=1 before READY=1")
        .0;
    assert!(reloading.contains("\nMONOTONIC_USEC="), "{reloading:?}");
    let line = daemon.wait_line("config reloaded", Duration::from_secs(2));
    assert!(
        line.contains(
            "log level debug; applied live: osc.allowlist = [10.0.0.0/8]; changed, applied at \
             the next restart: audio.period"
        ),
        "{line}"
    );
    osc.send("/knob/denoise", vec![OscType::Float(0.4)]);
    daemon.wait_line("state saved to", Duration::from_secs(3));

    // A bad file: refused with an error line; the daemon keeps running and answering.
    std::fs::write(&config, "[log]\nlevel = \"loud\"\n").unwrap();
    daemon.signal(libc::SIGHUP);
    notify.until("READY=1", Duration::from_secs(5));
    let line = daemon.wait_line("config reload refused", Duration::from_secs(2));
    assert!(line.contains("ERROR") && line.contains("`loud`"), "{line}");
    assert!(daemon.exited().is_none());

    // The output never paused: the playhead advanced with the wall clock throughout.
    let (t1, s1) = (Instant::now(), osc.status());
    let played = s1.playhead_s - s0.playhead_s;
    let wall = (t1 - t0).as_secs_f64();
    assert!(
        played > 0.85 * wall && played < wall + 0.2,
        "played {played:.2} s in {wall:.2} s (xruns {} -> {})",
        s0.xruns,
        s1.xruns
    );
    daemon.stop_cleanly();
}

#[test]
fn the_session_is_saved_debounced_and_at_exit_and_restored_at_start() {
    let dir = TempDir::new().unwrap();
    let engine_off = || Launch {
        args: vec!["--engine".into(), "off".into()],
        ..Launch::default()
    };
    let mut daemon = Daemon::start(&dir, engine_off());
    let osc = Osc::new(daemon.osc_addr(START));
    osc.send("/knob/denoise", vec![OscType::Float(0.25)]);
    osc.send("/knob/shift", vec![OscType::Float(2.5)]);
    osc.send("/loop", vec![OscType::Float(0.5), OscType::Float(1.0)]);
    let done = osc.ask("/prompt", vec![OscType::String("warm pad".into())], "/done");
    assert!(done.is_some(), "no /done for /prompt: {:?}", daemon.lines());

    // Saved after the debounce, while running.
    let saved = wait_for_state(&daemon.state, Duration::from_secs(3), |s| {
        s["knobs"]["shift"] == 2.5 && s["prompt"] == "warm pad"
    });
    assert_eq!(saved["knobs"]["denoise"], 0.25);
    assert_eq!(saved["loop_band"]["start"], 0.5);
    assert_eq!(saved["loop_band"]["end"], 1.0);

    // A change right before SIGTERM is written at exit.
    osc.send("/knob/denoise", vec![OscType::Float(0.75)]);
    assert_eq!(osc.knob("denoise"), 0.75);
    let took = daemon.stop_cleanly();
    assert!(took < Duration::from_secs(1), "exit took {took:?}");
    let at_exit: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&daemon.state).unwrap()).unwrap();
    assert_eq!(at_exit["knobs"]["denoise"], 0.75);

    // Restart: everything comes back.
    let daemon = Daemon::start(&dir, engine_off());
    let osc = Osc::new(daemon.osc_addr(START));
    assert_eq!(osc.knob("denoise"), 0.75);
    assert_eq!(osc.knob("shift"), 2.5);
    assert!(
        daemon.has_line("prompt: \"warm pad\""),
        "{:?}",
        daemon.lines()
    );
    // The band [0.5, 1.0) s holds the playhead once it has reached it.
    std::thread::sleep(Duration::from_millis(1500));
    for _ in 0..3 {
        let p = osc.status().playhead_s;
        assert!(
            (0.5..1.0).contains(&p),
            "playhead {p} outside the restored band"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_corrupt_state_file_is_moved_aside_and_the_daemon_starts_from_defaults() {
    let dir = TempDir::new().unwrap();
    let bad = b"{\"version\": 1, \"knobs\": {\"denoise\": 0.9}, oops";
    std::fs::write(dir.path().join("state.json"), bad).unwrap();
    let notify = NotifySocket::bind(dir.path());
    let mut daemon = Daemon::start(
        &dir,
        Launch {
            notify: Some(&notify),
            args: vec!["--engine".into(), "off".into()],
            ..Launch::default()
        },
    );
    daemon.until_ready(&notify, START);
    let moved: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("state.json.corrupt-")
        })
        .collect();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(std::fs::read(&moved[0]).unwrap(), bad);
    let line = daemon.wait_line("moved to", Duration::from_secs(2));
    assert!(
        line.contains("WARN") && line.contains("starting from defaults"),
        "{line}"
    );
    let osc = Osc::new(daemon.osc_addr(Duration::from_secs(2)));
    assert_eq!(osc.knob("denoise"), 0.5);
    daemon.stop_cleanly();
    assert_eq!(
        std::fs::read(&moved[0]).unwrap(),
        bad,
        "the old bytes are kept"
    );
}

#[test]
fn a_saved_source_that_is_gone_is_skipped_not_fatal() {
    let dir = TempDir::new().unwrap();
    let state = serde_json::json!({
        "version": 1,
        "knobs": { "denoise": 0.25 },
        "source": dir.path().join("moved-away.wav"),
    });
    std::fs::write(dir.path().join("state.json"), state.to_string()).unwrap();
    let mut daemon = Daemon::start(
        &dir,
        Launch {
            args: vec!["--engine".into(), "off".into()],
            ..Launch::default()
        },
    );
    let osc = Osc::new(daemon.osc_addr(START));
    let line = daemon.wait_line("state: saved source", Duration::from_secs(2));
    assert!(
        line.contains("WARN") && line.contains("moved-away.wav"),
        "{line}"
    );
    assert_eq!(
        osc.knob("denoise"),
        0.25,
        "the rest of the state is restored"
    );
    daemon.stop_cleanly();
}

fn wait_for_state(
    path: &std::path::Path,
    timeout: Duration,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let end = Instant::now() + timeout;
    loop {
        if let Ok(bytes) = std::fs::read(path)
            && let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes)
            && ready(&value)
        {
            return value;
        }
        assert!(
            Instant::now() < end,
            "state file never matched: {:?}",
            std::fs::read_to_string(path)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
