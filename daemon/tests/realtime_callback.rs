//! The realtime check on the real binary: `latentd` playing into a private `jackd -d dummy`
//! reports how the server schedules its callback, once per stream, and that is what the
//! server gives any client: a reference client in this test reads its own process thread's
//! scheduling (with libc, not latentd's code) and the daemon's log line must name the same
//! policy and priority. A realtime server (where the machine allows realtime: root, or
//! `RLIMIT_RTPRIO`) gives `SCHED_FIFO`; a `--no-realtime` one gives `SCHED_OTHER`, which
//! latentd reports as a warning and as `latentd_callback_realtime 0`.
//! With input ports enabled (`--inputs 2`) and a live capture running, the debug build's
//! callback (under `assert_no_alloc`, which aborts on an allocation) keeps the daemon alive.
//!
//!
//! With MIDI input on (`--midi`), the same callback also copies the `midi_in` port's
//! messages into its queue; flooded by a MIDI client of this test (far more messages in one
//! period than the queue holds, notes and clock among them), it stays allocation-free (the
//! debug binary aborts on an allocation in the callback: `assert_no_alloc`), keeps playing
//! and reports the messages it had to drop.
//!
//! Threading: libjack reads `JACK_DEFAULT_SERVER` process-wide; each test holds a
//! [`JackSession`] while its server runs.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use common::jack_tone::{PERIOD, RATE, START, TONE};
use common::service_fixture::{Daemon, Launch, NotifySocket};
use latentd_tests::JackSession;
use tempfile::TempDir;

/// The server priority asked of the realtime jackd (jackd2 runs its clients below it).
const SERVER_PRIORITY: u32 = 70;

/// How a thread is scheduled, as latentd's log spells it: `SCHED_FIFO prio 65`,
/// `SCHED_RR prio 65` or `SCHED_OTHER`.
fn spelled(policy: i32, priority: i32) -> String {
    match policy {
        libc::SCHED_FIFO => format!("SCHED_FIFO prio {priority}"),
        libc::SCHED_RR => format!("SCHED_RR prio {priority}"),
        libc::SCHED_OTHER => "SCHED_OTHER".to_owned(),
        other => panic!("unexpected policy {other} for a JACK client thread"),
    }
}

/// What the session's server gives a client's process thread: a plain jack client whose
/// first process call reads its own thread's policy and priority.
fn what_the_server_gives_clients() -> (i32, i32) {
    const UNSET: i64 = i64::MIN;
    let seen = Arc::new((AtomicI64::new(UNSET), AtomicI64::new(UNSET)));
    let (client, _) = jack::Client::new("rt-reference", jack::ClientOptions::NO_START_SERVER)
        .expect("reference client");
    let recorder = Arc::clone(&seen);
    let handler = jack::contrib::ClosureProcessHandler::new(
        move |_: &jack::Client, _: &jack::ProcessScope| {
            if recorder.0.load(Ordering::Relaxed) == UNSET {
                let mut policy = 0;
                let mut param = libc::sched_param { sched_priority: 0 };
                // SAFETY: our own thread; both out-pointers are valid. (A test client may
                // make this syscall in its callback.)
                let rc = unsafe {
                    libc::pthread_getschedparam(libc::pthread_self(), &mut policy, &mut param)
                };
                assert_eq!(rc, 0);
                recorder
                    .1
                    .store(i64::from(param.sched_priority), Ordering::Relaxed);
                recorder.0.store(i64::from(policy), Ordering::Release);
            }
            jack::Control::Continue
        },
    );
    let active = client.activate_async((), handler).expect("activate");
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.0.load(Ordering::Acquire) == UNSET {
        assert!(
            Instant::now() < deadline,
            "the reference client was never called"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    active.deactivate().expect("deactivate");
    (
        seen.0.load(Ordering::Acquire) as i32,
        seen.1.load(Ordering::Relaxed) as i32,
    )
}

/// May this process use `SCHED_FIFO` (root, or an `RLIMIT_RTPRIO` above 0)? Tried on a
/// scratch thread.
fn realtime_allowed() -> bool {
    std::thread::spawn(|| {
        let param = libc::sched_param { sched_priority: 1 };
        // SAFETY: plain FFI call on the current (scratch) thread with a valid parameter.
        unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) == 0 }
    })
    .join()
    .unwrap()
}

/// `latentd_callback_realtime` from `GET /metrics` (polled until present).
fn realtime_gauge(addr: SocketAddr) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (head, body) = common::http::exchange(addr, "GET", "/metrics");
        assert!(head.contains(" 200 "), "{head}");
        if let Some(value) = body
            .lines()
            .find_map(|l| l.strip_prefix("latentd_callback_realtime "))
        {
            return value.trim().parse().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no latentd_callback_realtime:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts the tone daemon on `session` with the OSCQuery port on; returns the daemon, its
/// metrics address and the line in which it reported its callback's scheduling.
fn daemon_report(session: &JackSession, dir: &TempDir) -> (Daemon, SocketAddr, String) {
    daemon_report_with(session, dir, &[])
}

/// [`daemon_report`] with `extra` arguments.
fn daemon_report_with(
    session: &JackSession,
    dir: &TempDir,
    extra: &[&str],
) -> (Daemon, SocketAddr, String) {
    let notify = NotifySocket::bind(dir.path());
    let source = dir.path().join("tone.wav");
    TONE.write_loop(&source);
    let oscquery_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut daemon = Daemon::start(
        dir,
        Launch {
            oscquery_port,
            ..Launch::engine_off_on_jack(
                session.server.name(),
                &notify,
                &[&["--source", source.to_str().unwrap()], extra].concat(),
            )
        },
    );
    daemon.until_ready(&notify, START);
    let line = daemon.wait_line("audio: the jack callback runs", Duration::from_secs(5));
    eprintln!("the daemon said: {line}");
    (
        daemon,
        SocketAddr::from(([127, 0, 0, 1], oscquery_port)),
        line,
    )
}

/// The scheduling a report line names: what follows "runs " up to the end or a comma.
fn reported(line: &str) -> &str {
    let rest = line
        .split("audio: the jack callback runs ")
        .nth(1)
        .unwrap_or_else(|| panic!("not a report: {line}"));
    rest.split(',').next().unwrap().trim_end()
}

#[test]
fn the_reported_scheduling_is_what_a_realtime_server_gives_its_clients() {
    let allowed = realtime_allowed();
    let session = if allowed {
        JackSession::start_realtime(RATE, PERIOD, SERVER_PRIORITY)
    } else {
        eprintln!("realtime scheduling is not allowed here: the server runs without it");
        JackSession::start(RATE, PERIOD)
    };
    let (policy, priority) = what_the_server_gives_clients();
    if allowed {
        assert_eq!(
            policy,
            libc::SCHED_FIFO,
            "a realtime jackd gives its clients SCHED_FIFO:\n{}",
            session.server.log()
        );
        assert!(
            (1..SERVER_PRIORITY as i32).contains(&priority),
            "{priority}"
        );
    }
    let dir = TempDir::new().unwrap();
    let (mut daemon, metrics, line) = daemon_report(&session, &dir);
    assert_eq!(reported(&line), spelled(policy, priority), "{line}");
    let realtime = policy == libc::SCHED_FIFO || policy == libc::SCHED_RR;
    assert_eq!(line.contains("WARN"), !realtime, "{line}");
    assert_eq!(realtime_gauge(metrics), if realtime { 1.0 } else { 0.0 });
    // And the same answer in /status.reply's last field.
    let osc = common::service_fixture::Osc::new(daemon.osc_addr(Duration::from_secs(5)));
    assert_eq!(osc.status().callback_realtime, i32::from(realtime));
    // Once per stream: no second report while the same output plays.
    std::thread::sleep(Duration::from_millis(300));
    let reports = daemon
        .lines()
        .iter()
        .filter(|l| l.contains("audio: the jack callback runs"))
        .count();
    assert_eq!(reports, 1, "{:?}", daemon.lines());
    // A clean stop: a daemon killed under the server can make the server linger at its own
    // stop, be killed, and leak its JACK server slot.
    daemon.terminate();
}

#[test]
fn a_server_without_realtime_gets_a_warning_and_a_zero_gauge() {
    let session = JackSession::start(RATE, PERIOD);
    assert_eq!(what_the_server_gives_clients().0, libc::SCHED_OTHER);
    let dir = TempDir::new().unwrap();
    let (mut daemon, metrics, line) = daemon_report(&session, &dir);
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains("audio: the jack callback runs SCHED_OTHER, not realtime"),
        "{line}"
    );
    assert_eq!(realtime_gauge(metrics), 0.0);
    daemon.terminate();
}

/// The playhead from `/status` (it moves while the callback plays).
fn playhead(daemon: &Daemon) -> f64 {
    let addr = daemon.osc_addr(Duration::from_secs(2));
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let packet = rosc::encoder::encode(&rosc::OscPacket::Message(rosc::OscMessage {
        addr: "/status".into(),
        args: vec![],
    }))
    .unwrap();
    socket.send_to(&packet, addr).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = socket.recv_from(&mut buf).expect("/status.reply");
    match rosc::decoder::decode_udp(&buf[..n]).unwrap().1 {
        rosc::OscPacket::Message(m) if m.addr == "/status.reply" => match m.args[3] {
            rosc::OscType::Float(v) => f64::from(v),
            ref other => panic!("playhead_s {other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_callback_stays_allocation_free_with_midi_flooding_in() {
    let session = JackSession::start(RATE, PERIOD);
    let dir = TempDir::new().unwrap();
    let (mut daemon, metrics, line) = daemon_report_with(&session, &dir, &["--midi"]);
    assert!(line.contains("audio: the jack callback runs"), "{line}");
    daemon.wait_line(
        "MIDI input on: port latentd:midi_in",
        Duration::from_secs(2),
    );
    let midi = common::midi_ctl::MidiController::connect("latentd:midi_in");
    // Period after period: Control Changes (unmapped), Program Changes past the presets,
    // notes and clock the callback skips; then one period with more than the queue holds.
    for round in 0..50u8 {
        let value = round % 128;
        midi.send_raw(&[
            &[0xB0, 1, value],
            &[0x90, 60, 100],
            &[0xF8],
            &[0xC3, 100],
            &[0xBF, 127, value],
        ]);
        std::thread::sleep(Duration::from_millis(10));
    }
    let flood: Vec<[u8; 3]> = (0..3000).map(|i| [0xB0, 2, (i % 128) as u8]).collect();
    let flood: Vec<&[u8]> = flood.iter().map(|m| &m[..]).collect();
    midi.send_raw(&flood);
    daemon.wait_line("dropped by the audio callback", Duration::from_secs(5));
    let (head, body) = common::http::exchange(metrics, "GET", "/metrics");
    assert!(head.contains(" 200 "), "{head}");
    let counter = |name: &str| -> f64 {
        body.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name}:\n{body}"))
            .trim()
            .parse()
            .unwrap()
    };
    // The queue filled (1024) and the rest of the flood was dropped, counted.
    assert!(counter("latentd_midi_messages_total ") >= 1024.0, "{body}");
    assert!(counter("latentd_midi_dropped_total ") > 0.0, "{body}");
    assert_eq!(counter("latentd_midi_malformed_total "), 0.0, "{body}");
    let before = playhead(&daemon);
    std::thread::sleep(Duration::from_millis(300));
    assert_ne!(playhead(&daemon), before, "the callback stopped playing");
    assert!(daemon.exited().is_none(), "{}", daemon.lines().join("\n"));
    midi.close();
    daemon.stop_cleanly();
}

/// The callback with the live input enabled: `--inputs 2`, the dummy server's capture
/// ports linked to them, and a capture running (its queue written every period) until it
/// becomes the source. The debug build's callback runs under `assert_no_alloc`, which
/// aborts the daemon on an allocation: it must still be serving afterwards.
#[test]
fn the_callback_with_input_ports_and_a_running_capture_does_not_allocate() {
    let session = JackSession::start(RATE, PERIOD);
    let dir = TempDir::new().unwrap();
    let notify = NotifySocket::bind(dir.path());
    let source = dir.path().join("tone.wav");
    TONE.write_loop(&source);
    let mut daemon = Daemon::start(
        &dir,
        Launch::engine_off_on_jack(
            session.server.name(),
            &notify,
            &["--source", source.to_str().unwrap(), "--inputs", "2"],
        ),
    );
    daemon.until_ready(&notify, START);
    let (patch, _) =
        jack::Client::new("rt-patch", jack::ClientOptions::NO_START_SERVER).expect("patch client");
    for k in 1..=2 {
        patch
            .connect_ports_by_name(&format!("system:capture_{k}"), &format!("latentd:in_{k}"))
            .unwrap_or_else(|e| panic!("system:capture_{k} -> latentd:in_{k}: {e}"));
    }
    let osc = common::service_fixture::Osc::new(daemon.osc_addr(Duration::from_secs(5)));
    let started = osc
        .ask("/capture/start", vec![rosc::OscType::Float(1.5)], "/done")
        .expect("/done /capture/start");
    assert_eq!(
        started.args[0],
        rosc::OscType::String("/capture/start".into())
    );
    // The capture ends after 1.5 s and goes through the /source path.
    let done = osc
        .reply("/done", Duration::from_secs(10))
        .expect("/done /source");
    assert_eq!(done.args[0], rosc::OscType::String("/source".into()));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        daemon.exited().is_none(),
        "the daemon died (an allocation in the callback aborts it): {:?}",
        daemon.lines()
    );
    assert!(osc.status().xruns >= 0);
    assert!(
        !daemon.has_line("forbids allocator"),
        "{:?}",
        daemon.lines()
    );
}
