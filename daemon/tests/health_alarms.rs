//! Silence and clip alarms on the real binary playing into a private `jackd -d dummy`, with
//! real OSC sockets and a real sd_notify socket (what systemd owns):
//!
//! - A silent source while playing raises the silence alarm after `silence_s` (a `/alarm`
//!   push, a log line, `STATUS=`, and with `action = "restart"` the watchdog pings stop);
//!   paused, the same silence raises nothing and the pings go on; a pause clears it.
//! - A tone above `clip_dbfs` raises the clip alarm once the transport plays.
//! - Bad `[health]` values are one line and exit 2.
//!
//! Threading: libjack finds the private server through the process-wide
//! `JACK_DEFAULT_SERVER`, so each JACK test holds a [`JackSession`] while its server runs.

mod common;

use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::jack_tone::start_tone_daemon;
use common::osc_client::{Link, Transport, int, msg, s};
use common::service_fixture::{Daemon, Launch, NotifySocket};
use latentd_tests::JackSession;
use rosc::{OscPacket, OscType};
use tempfile::TempDir;

const START: Duration = Duration::from_secs(30);

/// The next `/alarm` within `limit`, as (kind, raised, detail), with its arrival time.
fn next_alarm(link: &mut Link, limit: Duration) -> Option<(String, bool, String, Instant)> {
    let end = Instant::now() + limit;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        if let Some(OscPacket::Message(m)) = link.recv(left)
            && m.addr == "/alarm"
        {
            let text = |i: usize| match &m.args[i] {
                OscType::String(v) => v.clone(),
                other => panic!("/alarm argument {i}: {other:?}"),
            };
            assert_eq!(m.args.len(), 3, "{m:?}");
            return Some((text(0), int(&m.args[1]) == 1, text(2), Instant::now()));
        }
    }
    None
}

/// The notify datagrams received so far, one `(line, time)` per line.
fn drain(datagrams: &Receiver<(String, Instant)>) -> Vec<(String, Instant)> {
    datagrams
        .try_iter()
        .flat_map(|(text, at)| {
            text.lines()
                .map(|l| (l.to_string(), at))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn silence_raises_its_alarm_after_silence_s_while_playing_and_never_while_paused() {
    let session = JackSession::start(48_000, 256);
    let dir = TempDir::new().unwrap();
    let notify = NotifySocket::bind(dir.path());
    let source = dir.path().join("silence.wav");
    common::write_float_wav(&source, 2, 48_000, &vec![0.0; 2 * 48_000]);
    let config = dir.path().join("latentd.toml");
    std::fs::write(
        &config,
        "[health]\nsilence_dbfs = -70.0\nsilence_s = 1.0\naction = \"restart\"\n",
    )
    .unwrap();
    let mut daemon = Daemon::start(
        &dir,
        Launch {
            audio: "jack",
            notify: Some(&notify),
            env: vec![
                ("JACK_DEFAULT_SERVER", session.server.name().to_owned()),
                // Pings every second.
                ("WATCHDOG_USEC", "2000000".into()),
            ],
            args: [
                "--engine",
                "off",
                "--source",
                &source.display().to_string(),
                "--config",
                &config.display().to_string(),
            ]
            .iter()
            .map(|a| a.to_string())
            .collect(),
            ..Launch::default()
        },
    );
    notify.until("READY=1", START);
    let datagrams = notify.record();
    let mut link = Link::connect(daemon.osc_addr(START), Transport::Udp);
    // Pause at once (well within silence_s), then subscribe.
    link.send(&msg("/transport/pause", vec![]));
    link.send(&msg("/notify", vec![OscType::Int(1)]));
    assert_eq!(link.expect("/done"), vec![s("/notify")]);

    // Paused: twice silence_s of silence raises nothing, and the pings go on.
    let paused_at = Instant::now();
    assert_eq!(next_alarm(&mut link, Duration::from_millis(2500)), None);
    assert!(!daemon.has_line("alarm raised"), "{:?}", daemon.lines());
    let pings = drain(&datagrams)
        .into_iter()
        .filter(|(l, at)| l == "WATCHDOG=1" && *at > paused_at)
        .count();
    assert!(pings >= 2, "{pings} pings in 2.5 s while paused");

    // Playing: the alarm rises after silence_s.
    let played_at = Instant::now();
    link.send(&msg("/transport/play", vec![]));
    let (kind, raised, detail, alarm_at) =
        next_alarm(&mut link, Duration::from_secs(4)).expect("a silence /alarm while playing");
    let after = (alarm_at - played_at).as_secs_f64();
    assert_eq!((kind.as_str(), raised), ("silence", true), "{detail}");
    assert!(
        (0.95..2.0).contains(&after),
        "raised {after:.2} s after play"
    );
    assert!(detail.contains("below -70 dBFS RMS"), "{detail}");
    daemon.wait_line("health: silence alarm raised", Duration::from_secs(2));
    // STATUS= says so at once, and the watchdog pings stop (action = "restart").
    std::thread::sleep(Duration::from_millis(3200));
    let lines = drain(&datagrams);
    assert!(
        lines.iter().any(|(l, at)| l.starts_with("STATUS=")
            && l.contains("ALARM silence")
            && *at + Duration::from_millis(500) > alarm_at
            && *at < alarm_at + Duration::from_millis(500)),
        "{lines:?}"
    );
    let late_pings: Vec<_> = lines
        .iter()
        .filter(|(l, at)| l == "WATCHDOG=1" && *at > alarm_at + Duration::from_millis(1100))
        .collect();
    assert!(
        late_pings.is_empty(),
        "pinged with the alarm raised: {late_pings:?}"
    );
    daemon.wait_line("withholding watchdog pings", Duration::from_secs(1));

    // A pause clears it and the pings resume.
    link.send(&msg("/transport/pause", vec![]));
    let (kind, raised, detail, cleared_at) =
        next_alarm(&mut link, Duration::from_secs(2)).expect("the alarm cleared on pause");
    assert_eq!((kind.as_str(), raised), ("silence", false), "{detail}");
    assert!(detail.contains("transport paused"), "{detail}");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        drain(&datagrams)
            .iter()
            .any(|(l, at)| l == "WATCHDOG=1" && *at > cleared_at),
        "pings did not resume"
    );
    daemon.wait_line("watchdog pings resume", Duration::from_secs(1));
    assert_eq!(daemon.terminate().0.code(), Some(0));
}

#[test]
fn a_tone_above_clip_dbfs_raises_the_clip_alarm_once_playing() {
    let session = JackSession::start(48_000, 256);
    let dir = TempDir::new().unwrap();
    let notify = NotifySocket::bind(dir.path());
    let config = dir.path().join("latentd.toml");
    // The tone peaks at 0.5 (-6 dBFS).
    std::fs::write(&config, "[health]\nclip_dbfs = -10.0\n").unwrap();
    let mut daemon = start_tone_daemon(&session, &dir, &notify, &config, &[]);
    let datagrams = notify.record();
    let mut link = Link::connect(daemon.osc_addr(START), Transport::Udp);
    link.send(&msg("/transport/pause", vec![]));
    link.send(&msg("/notify", vec![OscType::Int(1)]));
    assert_eq!(link.expect("/done"), vec![s("/notify")]);
    // What rose before the pause clears with it; nothing rises while paused.
    while let Some((_, raised, detail, _)) = next_alarm(&mut link, Duration::from_millis(500)) {
        assert!(!raised, "raised while paused: {detail}");
    }

    let played_at = Instant::now();
    link.send(&msg("/transport/play", vec![]));
    let (kind, raised, detail, alarm_at) =
        next_alarm(&mut link, Duration::from_secs(2)).expect("a clip /alarm while playing");
    assert_eq!((kind.as_str(), raised), ("clip", true), "{detail}");
    assert!(alarm_at - played_at < Duration::from_millis(500));
    assert!(detail.contains("at or above -10 dBFS"), "{detail}");
    daemon.wait_line("health: clip alarm raised", Duration::from_secs(2));
    std::thread::sleep(Duration::from_millis(300));
    let lines = drain(&datagrams);
    assert!(
        lines
            .iter()
            .any(|(l, _)| l.starts_with("STATUS=") && l.contains("ALARM clip")),
        "{lines:?}"
    );
    // Still clipping: no second push.
    assert_eq!(next_alarm(&mut link, Duration::from_millis(500)), None);
    assert_eq!(daemon.terminate().0.code(), Some(0));
}

#[test]
fn bad_health_values_are_one_line_and_exit_2() {
    let dir = TempDir::new().unwrap();
    for (text, wants) in [
        (
            "[health]\nsilence_dbfs = 0.0\n",
            "config section [health]: silence_dbfs = 0: expected -120 to -10 dBFS",
        ),
        ("[health]\naction = \"page\"\n", "page"),
    ] {
        let config = dir.path().join("bad.toml");
        std::fs::write(&config, text).unwrap();
        let (code, stderr) = common::run_to_exit(
            dir.path(),
            &["--audio", "null", "--config", config.to_str().unwrap()],
            Duration::from_secs(10),
        );
        assert_eq!(code, Some(2), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(wants), "{stderr}");
    }
}
