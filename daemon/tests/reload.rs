//! SIGHUP applies the reloadable config keys live on the real binary: the OSC and
//! OSCQuery allowlist (refused clients become served and back, an open TCP connection from a
//! peer the new list refuses is closed), changed knob defaults (set as a client's
//! `/knob/<name>` would be: the value, the subscribers' echo, the state file; a knob the
//! performer set whose default did not change keeps its value), the lead settings (the
//! engine's lead moves to the new floor); the log names what waits for a restart. The audio
//! plays on throughout: the playhead keeps pace with the wall clock.
//!
//! Every test runs the real binary on the null output with its own config file, notify
//! socket, OSC port and state file.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::osc_client::{Link, REPLY_LIMIT, Transport, msg, number};
use common::service_fixture::{Daemon, Launch, NotifySocket};
use latentd::osc::{Framing, encode_frame};
use latentd_osc_schema::rosc::{OscPacket, OscType, encoder};
use tempfile::TempDir;

const START: Duration = Duration::from_secs(30);
/// Longer than any test, so the playhead never wraps while a test measures it.
const LOOP_SECONDS: &str = "120";

/// A daemon reading `config`, OSC on `osc_bind`, OSCQuery on a free port, with `extra`
/// arguments; waits for `READY=1`. The free port is only free when it was picked: a daemon
/// that loses it to another test's socket before binding it is started again on another.
fn start(
    dir: &TempDir,
    notify: &NotifySocket,
    config: &Path,
    osc_bind: &str,
    extra: &[&str],
) -> Daemon {
    let mut tries = 0;
    loop {
        let oscquery_port = common::http::free_port();
        let mut args = vec![
            "--config".to_string(),
            config.display().to_string(),
            "--loop-seconds".into(),
            LOOP_SECONDS.into(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut daemon = Daemon::start(
            dir,
            Launch {
                notify: Some(notify),
                args,
                osc_bind: osc_bind.into(),
                oscquery_port,
                ..Launch::default()
            },
        );
        match daemon.start_outcome(notify, START) {
            Ok(_) => return daemon,
            Err(failure)
                if tries < 2 && failure.contains(&format!("OSCQuery on port {oscquery_port}")) =>
            {
                tries += 1;
            }
            Err(failure) => panic!("{failure}"),
        }
    }
}

/// Rewrite `config`, send SIGHUP, wait for `READY=1` and the reload's log line (the `n`th
/// reload of this daemon); returns the line.
fn reload(daemon: &Daemon, notify: &NotifySocket, config: &Path, text: &str, n: usize) -> String {
    std::fs::write(config, text).unwrap();
    daemon.signal(libc::SIGHUP);
    notify.until("READY=1", Duration::from_secs(5));
    let end = Instant::now() + Duration::from_secs(2);
    loop {
        let lines: Vec<String> = daemon
            .lines()
            .into_iter()
            .filter(|l| l.contains("config reload"))
            .collect();
        if lines.len() >= n {
            return lines[n - 1].clone();
        }
        assert!(
            Instant::now() < end,
            "no reload line {n}: {:?}",
            daemon.lines()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The loopback address of the daemon's OSC port (it may be bound to 0.0.0.0).
fn loopback(daemon: &Daemon) -> SocketAddr {
    let port = daemon.osc_addr(Duration::from_secs(2)).port();
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The playhead and when it was read.
fn playhead(link: &mut Link) -> (Instant, f64) {
    let s = link.status();
    (Instant::now(), s.playhead_s)
}

/// The output kept playing between two readings: the playhead advanced with the wall clock.
fn assert_played_through(before: (Instant, f64), after: (Instant, f64)) {
    let played = after.1 - before.1;
    let wall = (after.0 - before.0).as_secs_f64();
    assert!(
        played > 0.85 * wall && played < wall + 0.2,
        "played {played:.2} s in {wall:.2} s of wall clock"
    );
}

/// Whether a `/version` over UDP from 127.0.0.1 is answered.
fn udp_served(addr: SocketAddr) -> bool {
    let mut link = Link::connect(addr, Transport::Udp);
    link.send(&msg("/version", vec![]));
    link.recv(Duration::from_millis(700)).is_some()
}

/// The HTTP status line of `GET /?HOST_INFO` at the OSCQuery address.
fn oscquery_status(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    stream
        .write_all(b"GET /?HOST_INFO HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.lines().next().unwrap_or_default().to_string()
}

fn oscquery_addr(daemon: &Daemon) -> SocketAddr {
    let line = daemon.wait_line("OSCQuery listening on http://", Duration::from_secs(2));
    let rest = line.split("http://").nth(1).unwrap();
    let port = rest
        .split_whitespace()
        .next()
        .unwrap()
        .parse::<SocketAddr>()
        .unwrap()
        .port();
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn sighup_swaps_the_allowlist_both_ways_and_closes_refused_tcp_connections() {
    let dir = TempDir::new().unwrap();
    let notify = NotifySocket::bind(dir.path());
    let config = dir.path().join("latentd.toml");
    let refusing = "[osc]\nallowlist = [\"10.0.0.0/8\"]\n";
    let serving = "[osc]\nallowlist = [\"10.0.0.0/8\", \"127.0.0.0/8\"]\n";
    std::fs::write(&config, refusing).unwrap();
    let daemon = start(&dir, &notify, &config, "0.0.0.0:0", &["--engine", "off"]);
    let osc = loopback(&daemon);
    let query = oscquery_addr(&daemon);

    // Bound wide, loopback outside the list: refused.
    assert!(!udp_served(osc), "a refused client was answered");
    assert!(
        oscquery_status(query).contains(" 403"),
        "{}",
        oscquery_status(query)
    );

    // Loopback allowed: the same client is served, over UDP, TCP and OSCQuery.
    let line = reload(&daemon, &notify, &config, serving, 1);
    assert!(
        line.contains("applied live: osc.allowlist = [10.0.0.0/8, 127.0.0.0/8]")
            && !line.contains("next restart"),
        "{line}"
    );
    assert!(udp_served(osc), "an allowed client was not answered");
    assert!(
        oscquery_status(query).contains(" 200"),
        "{}",
        oscquery_status(query)
    );
    let mut status = Link::connect(osc, Transport::Udp);
    let before = playhead(&mut status);
    let mut tcp = TcpStream::connect(osc).unwrap();
    tcp.set_read_timeout(Some(REPLY_LIMIT)).unwrap();
    let version = encode_frame(
        Framing::SizePrefix,
        &encoder::encode(&msg("/version", vec![])).unwrap(),
    );
    tcp.write_all(&version).unwrap();
    let mut buf = [0u8; 4096];
    assert!(
        tcp.read(&mut buf).unwrap() > 0,
        "no TCP reply while allowed"
    );

    // Back to refusing: UDP unanswered, OSCQuery 403, the open TCP connection closed.
    let line = reload(&daemon, &notify, &config, refusing, 2);
    assert!(
        line.contains("applied live: osc.allowlist = [10.0.0.0/8]"),
        "{line}"
    );
    assert!(
        !udp_served(osc),
        "a client refused after the reload was answered"
    );
    assert!(
        oscquery_status(query).contains(" 403"),
        "{}",
        oscquery_status(query)
    );
    let _ = tcp.write_all(&version); // the connection may be closed already
    let closed = match tcp.read(&mut buf) {
        Ok(0) => true,
        Ok(n) => panic!("{n} bytes from a refused peer"),
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    assert!(closed, "the refused peer's TCP connection stayed open");
    daemon.wait_line("outside the reloaded allowlist", Duration::from_secs(2));

    // And served again; the audio played through all of it.
    reload(&daemon, &notify, &config, serving, 3);
    assert!(udp_served(osc));
    let after = playhead(&mut status);
    assert_played_through(before, after);
}

#[test]
fn sighup_sets_changed_knob_defaults_as_a_client_would_and_keeps_the_performers_knobs() {
    let dir = TempDir::new().unwrap();
    let notify = NotifySocket::bind(dir.path());
    let config = dir.path().join("latentd.toml");
    std::fs::write(
        &config,
        "[engine]\nknobs = { denoise = 0.5, shift = 2.0 }\n",
    )
    .unwrap();
    let daemon = start(&dir, &notify, &config, "127.0.0.1:0", &["--engine", "off"]);
    let osc = loopback(&daemon);
    let mut performer = Link::connect(osc, Transport::Udp);
    let before = playhead(&mut performer);
    assert_eq!(performer.knob("shift"), 2.0);
    performer.send(&msg("/knob/shift", vec![OscType::Float(4.0)]));
    assert_eq!(performer.knob("shift"), 4.0);
    let mut subscriber = Link::connect(osc, Transport::TcpSizePrefix);
    subscriber.send(&msg("/notify", vec![OscType::Int(1)]));
    subscriber.expect("/done");

    // denoise's default changed, shift's did not: only denoise is set, and echoed.
    let line = reload(
        &daemon,
        &notify,
        &config,
        "[engine]\nknobs = { denoise = 0.75, shift = 2.0 }\n",
        1,
    );
    assert!(
        line.contains("applied live: engine.knobs.denoise = 0.75"),
        "{line}"
    );
    assert!(
        !line.contains("shift") && !line.contains("next restart"),
        "{line}"
    );
    let mut pushed = Vec::new();
    while let Some(packet) = subscriber.recv(Duration::from_millis(800)) {
        if let OscPacket::Message(m) = packet
            && m.addr.starts_with("/knob/")
        {
            pushed.push((m.addr.clone(), m.args.first().map(number)));
        }
    }
    assert_eq!(pushed, [("/knob/denoise".to_string(), Some(0.75))]);
    assert_eq!(performer.knob("denoise"), 0.75);
    assert_eq!(performer.knob("shift"), 4.0);

    // The change is saved with the session, as a client's would be.
    let end = Instant::now() + Duration::from_secs(3);
    let saved = loop {
        let state: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&daemon.state).unwrap_or_default())
                .unwrap_or_default();
        let knob = |name: &str| state["knobs"][name].as_f64();
        if knob("denoise") == Some(0.75) || Instant::now() > end {
            break (knob("denoise"), knob("shift"));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(saved, (Some(0.75), Some(4.0)));

    // The performer moves denoise; a reload that changes only a restart key leaves it, and
    // names the key. A knob removed from the file goes back to the engine's default.
    performer.send(&msg("/knob/denoise", vec![OscType::Float(0.25)]));
    assert_eq!(performer.knob("denoise"), 0.25);
    let line = reload(
        &daemon,
        &notify,
        &config,
        "[audio]\nperiod = 512\n[engine]\nknobs = { denoise = 0.75, shift = 2.0 }\n",
        2,
    );
    assert!(
        line.contains("changed, applied at the next restart: audio.period")
            && !line.contains("applied live"),
        "{line}"
    );
    assert_eq!(performer.knob("denoise"), 0.25);
    let line = reload(
        &daemon,
        &notify,
        &config,
        "[audio]\nperiod = 512\n[engine]\nknobs = { shift = 2.0 }\n",
        3,
    );
    assert!(
        line.contains("applied live: engine.knobs.denoise = 0.5; changed, applied at the next restart: audio.period"),
        "{line}"
    );
    assert_eq!(performer.knob("denoise"), 0.5);
    assert_eq!(performer.knob("shift"), 4.0);
    let after = playhead(&mut performer);
    assert_played_through(before, after);
}

#[test]
fn sighup_hands_new_lead_settings_to_the_running_engine_and_refuses_bad_ones() {
    let dir = TempDir::new().unwrap();
    let notify = NotifySocket::bind(dir.path());
    let config = dir.path().join("latentd.toml");
    std::fs::write(&config, "[log]\nlevel = \"info\"\n").unwrap();
    // The built-in engine generates: its ticks compute the lead from the settings in use.
    let daemon = start(&dir, &notify, &config, "127.0.0.1:0", &[]);
    let mut link = Link::connect(loopback(&daemon), Transport::Udp);
    let before = playhead(&mut link);
    let lead_s = |link: &mut Link| link.status().lead_s;
    // The default ceiling, even right after a slow start's stall bumps.
    assert!(
        lead_s(&mut link) <= 1.35 + 1e-4,
        "lead {}",
        lead_s(&mut link)
    );

    let lifted = "[lead]\nfloor_s = 1.6\nceiling_s = 1.8\n";
    let line = reload(&daemon, &notify, &config, lifted, 1);
    assert!(line.contains("applied live: lead"), "{line}");
    let end = Instant::now() + Duration::from_secs(5);
    while lead_s(&mut link) < 1.6 - 1e-4 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let lead = lead_s(&mut link);
    assert!((1.6 - 1e-4..=1.8 + 1e-4).contains(&lead), "lead {lead}");

    // A bad [lead] refuses the whole file: the lead stays, the log level too.
    let line = reload(
        &daemon,
        &notify,
        &config,
        "[log]\nlevel = \"debug\"\n[lead]\nfloor_s = 1.6\nceiling_s = 0.5\n",
        2,
    );
    assert!(
        line.contains("config reload refused")
            && line.contains("ceiling_s 0.5 is below floor_s 1.6"),
        "{line}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let lead = lead_s(&mut link);
    assert!((1.6 - 1e-4..=1.8 + 1e-4).contains(&lead), "lead {lead}");
    let after = playhead(&mut link);
    assert_played_through(before, after);
}
