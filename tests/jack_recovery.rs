//! latentd's output supervisor against a real `jackd -d dummy` that goes away and comes
//! back under the same name: the supervisor reports the loss, the ring keeps its state
//! (band, counters) while nothing plays, and within 2 s of the server's return our ports
//! are registered again, the links we had are restored (to `system:playback_1` at once,
//! to a capture client's ports as soon as that client is back) and audio flows again. A
//! server that returns at another sample rate is refused, in the status, until one at the
//! ring's rate returns.
//!
//! Every process callback here (latentd's through the processor slot, the capture's in
//! [`JackCapture`]) runs under `assert_no_alloc`, which aborts the binary on an allocation.
//!
//! Threading: as in `jack_playback.rs`, libjack finds the private server through the
//! process-wide `JACK_DEFAULT_SERVER`, so every test holds a [`JackSession`] (one at a
//! time per process) from before it sets the variable until its server is gone. libjack shares one connection state among
//! the clients of a process, so the test closes its own clients of a dead server before
//! the server returns, as the daemon (whose only client is the supervised one) does.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use assert_no_alloc::AllocDisabler;
use latentd::audio::PeriodProcessor;
use latentd::audio::select::{BackendChoice, OutputOptions};
use latentd::audio::supervisor::{OutputState, OutputStatus, OutputSupervisor};
use latentd_engine::{PlayheadRing, RingHandle};
use latentd_tests::{JackCapture, JackServer, JackSession};

#[global_allocator]
static ALLOCATOR: AllocDisabler = AllocDisabler;

const RATE: u32 = 48_000;
const PERIOD: usize = 256;
/// What the ring plays on both channels, so the capture can tell our audio from silence.
const LEVEL: f32 = 0.25;
/// The promise: this long after the server answers again, we are back.
const RETURN_LIMIT: Duration = Duration::from_secs(2);

/// Every log record of this process, kept for the checks and echoed to stderr.
struct Recorder {
    lines: Mutex<Vec<String>>,
}

static LOG: Recorder = Recorder {
    lines: Mutex::new(Vec::new()),
};

impl log::Log for Recorder {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let line = format!("{} {}", record.level(), record.args());
            eprintln!("log: {line}");
            self.lines.lock().unwrap().push(line);
        }
    }

    fn flush(&self) {}
}

/// Log lines recorded since `mark` (an index into the record) that contain `text`.
fn logged_since(mark: usize, text: &str) -> Vec<String> {
    LOG.lines.lock().unwrap()[mark..]
        .iter()
        .filter(|l| l.contains(text))
        .cloned()
        .collect()
}

fn log_mark() -> usize {
    LOG.lines.lock().unwrap().len()
}

fn jack_session() -> JackSession {
    // Installed by the first test; the others find it there.
    if log::set_logger(&LOG).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
    JackSession::start(RATE, PERIOD)
}

/// Frames `capture` has recorded with exactly [`LEVEL`] on both inputs.
fn level_frames(capture: &JackCapture) -> usize {
    capture
        .recording()
        .samples
        .chunks_exact(2)
        .filter(|frame| frame == &[LEVEL, LEVEL])
        .count()
}

/// Poll `condition` every 10 ms until `limit` has passed since `from`; log how long it took.
fn within(what: &str, from: Instant, limit: Duration, mut condition: impl FnMut() -> bool) {
    while !condition() {
        assert!(
            from.elapsed() < limit,
            "{what}: not within {limit:?} ({:?} passed)",
            from.elapsed()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("{what}: after {:?}", from.elapsed());
}

fn sorted(links: &[Vec<String>]) -> Vec<Vec<String>> {
    links
        .iter()
        .map(|l| {
            let mut l = l.clone();
            l.sort();
            l
        })
        .collect()
}

/// The links we make before the loss, and expect back after it.
fn expected_links() -> Vec<Vec<String>> {
    vec![
        vec!["capture:in_1".to_owned(), "system:playback_1".to_owned()],
        vec!["capture:in_2".to_owned()],
    ]
}

/// Supervisor on a ring of constant [`LEVEL`] with a band armed; a capture client and
/// `system:playback_1` linked; the links learned.
fn playing(session: &JackSession) -> (OutputSupervisor, RingHandle, JackCapture) {
    let ring = PlayheadRing::from_interleaved(vec![LEVEL; 2 * RATE as usize], 2, RATE, 2 * PERIOD)
        .unwrap();
    let handle = ring.handle();
    let (_writer, reader) = ring.split();
    let options = OutputOptions {
        client_name: "latentd".into(),
        autoconnect: false,
        sample_rate: RATE,
        period_frames: PERIOD,
        midi_in: None,
        inputs: 0,
    };
    let sup = OutputSupervisor::start(
        BackendChoice::Jack,
        options,
        PeriodProcessor::new(reader, None),
    )
    .expect("starting the supervised JACK output");
    handle
        .set_band(RATE as usize / 4, RATE as usize / 2)
        .unwrap();

    let capture = JackCapture::connected("capture", ["latentd:out_1", "latentd:out_2"]);
    capture
        .client()
        .connect_ports_by_name("latentd:out_1", "system:playback_1")
        .unwrap();
    let t = Instant::now();
    within("the links learned", t, Duration::from_secs(3), || {
        sorted(&sup.status().links) == expected_links()
    });
    within("audio at the capture", t, Duration::from_secs(3), || {
        level_frames(&capture) >= 4 * PERIOD
    });
    assert_eq!(
        session.server.connections()["latentd:out_1"],
        expected_links()[0]
    );
    (sup, handle, capture)
}

/// Wait for the loss to be reported; check the ring kept its state and stands still.
fn check_lost(sup: &OutputSupervisor, ring: &RingHandle, since: Instant) -> u64 {
    within("the loss reported", since, Duration::from_secs(2), || {
        sup.status().state != OutputState::Running
    });
    let played = ring.counters().frames_played;
    std::thread::sleep(Duration::from_millis(300));
    let status = sup.status();
    assert!(
        matches!(
            status.state,
            OutputState::Lost { .. } | OutputState::Reconnecting { .. }
        ),
        "{status:?}"
    );
    assert!(status.last_error.is_some(), "{status:?}");
    assert_eq!(ring.counters().frames_played, played, "playing while lost");
    assert_eq!(ring.band(), Some((RATE as usize / 4, RATE as usize / 2)));
    assert_eq!(ring.counters().torn_reads, 0);
    assert_eq!(sorted(&status.links), expected_links(), "links forgotten");
    played
}

/// After the server answers again at `back`: ports, the system link, the capture link
/// once the capture client returns, and audio, each within [`RETURN_LIMIT`].
fn check_back(
    session: &JackSession,
    sup: &OutputSupervisor,
    ring: &RingHandle,
    back: Instant,
    played_before: u64,
) -> JackCapture {
    within("our ports registered again", back, RETURN_LIMIT, || {
        let ports = session.server.list_ports();
        ["latentd:out_1", "latentd:out_2"]
            .iter()
            .all(|p| ports.iter().any(|q| q == p))
    });
    within(
        "the link to system:playback_1 restored",
        back,
        RETURN_LIMIT,
        || {
            session
                .server
                .connections()
                .get("latentd:out_1")
                .is_some_and(|peers| peers.iter().any(|p| p == "system:playback_1"))
        },
    );
    let status = sup.status();
    assert_eq!(status.state, OutputState::Running, "{status:?}");
    assert_eq!(status.reconnects, 1);
    assert_eq!(status.last_error, None);

    let capture_back = Instant::now();
    let capture = JackCapture::start("capture");
    within(
        "the links to the capture restored",
        capture_back,
        RETURN_LIMIT,
        || {
            let graph = session.server.connections();
            graph.get("latentd:out_1") == Some(&expected_links()[0])
                && graph.get("latentd:out_2") == Some(&expected_links()[1])
        },
    );
    within(
        "audio at the capture again",
        capture_back,
        RETURN_LIMIT,
        || level_frames(&capture) >= 4 * PERIOD,
    );
    let counters = ring.counters();
    assert!(counters.frames_played > played_before, "{counters:?}");
    assert_eq!(counters.torn_reads, 0);
    assert_eq!(
        ring.band_applied(),
        Some((RATE as usize / 4, RATE as usize / 2))
    );
    // The callback keeps running: the output's count lies between two reads of the ring's.
    let OutputStatus { stats, .. } = sup.status();
    let after = ring.counters();
    assert!(
        (counters.frames_played..=after.frames_played).contains(&stats.frames),
        "{stats:?} vs ring {} ..= {}",
        counters.frames_played,
        after.frames_played
    );
    assert_eq!(sorted(&sup.status().links), expected_links());
    capture
}

/// Kill the server (crash or clean stop), keep it away for a while, bring it back.
fn recovers_after(stop: impl FnOnce(&mut JackServer)) {
    let mut session = jack_session();
    let (sup, ring, capture) = playing(&session);

    let gone = Instant::now();
    let mark = log_mark();
    stop(&mut session.server);
    // Leaked, as latentd leaks its own lost client (see JackCapture::abandon).
    capture.abandon();
    let played = check_lost(&sup, &ring, gone);
    let lost = logged_since(mark, "jack output lost");
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert!(lost[0].starts_with("WARN"), "{lost:?}");
    // Away long enough for several attempts to fail.
    within(
        "failed attempts",
        gone,
        Duration::from_secs(5),
        || matches!(sup.status().state, OutputState::Reconnecting { attempts, .. } if attempts >= 3),
    );

    session.server.restart(RATE, PERIOD);
    let back = Instant::now();
    let capture = check_back(&session, &sup, &ring, back, played);
    let back_lines = logged_since(mark, "jack output back after");
    assert_eq!(back_lines.len(), 1, "{back_lines:?}");
    assert!(
        back_lines[0].contains("1 of 3 links restored; waiting for capture:in_1"),
        "{back_lines:?}"
    );
    assert_eq!(logged_since(mark, "feeds capture:in_2 again").len(), 1);
    let failures = logged_since(mark, "cannot reopen the jack output yet");
    assert_eq!(
        failures.len(),
        1,
        "one warning, then quiet retries: {failures:?}"
    );

    sup.stop().expect("stopping the supervised output");
    let ports = session.server.list_ports();
    assert!(
        !ports.iter().any(|p| p.starts_with("latentd:")),
        "{ports:?}"
    );
    drop(capture);
    drop(session);
}

#[test]
fn recovers_after_the_server_is_killed() {
    recovers_after(JackServer::kill);
}

#[test]
fn recovers_after_the_server_stops_cleanly() {
    // SIGTERM: jackd disconnects every port, then tells its clients it is going.
    recovers_after(JackServer::terminate);
}

#[test]
fn a_server_back_at_another_rate_is_refused_until_one_at_the_ring_rate_returns() {
    let mut session = jack_session();
    let (sup, ring, capture) = playing(&session);
    let gone = Instant::now();
    session.server.kill();
    // Leaked, as latentd leaks its own lost client (see JackCapture::abandon).
    capture.abandon();
    let played = check_lost(&sup, &ring, gone);

    let mark = log_mark();
    session.server.restart(44_100, PERIOD);
    let wrong = Instant::now();
    within("the rate refused", wrong, RETURN_LIMIT, || {
        sup.status()
            .last_error
            .is_some_and(|e| e.contains("44100 Hz but the loop is at 48000 Hz"))
    });
    std::thread::sleep(Duration::from_millis(1500));
    let status = sup.status();
    assert!(
        matches!(status.state, OutputState::Reconnecting { .. }),
        "{status:?}"
    );
    let ports = session.server.list_ports();
    assert!(
        !ports.iter().any(|p| p.starts_with("latentd:")),
        "{ports:?}"
    );
    assert_eq!(ring.counters().frames_played, played);
    let refused = logged_since(mark, "44100 Hz but the loop is at 48000 Hz");
    assert_eq!(
        refused.len(),
        1,
        "logged once, not at every attempt: {refused:?}"
    );
    assert!(refused[0].starts_with("ERROR"), "{refused:?}");

    session.server.restart(RATE, PERIOD);
    let back = Instant::now();
    let capture = check_back(&session, &sup, &ring, back, played);
    sup.stop().unwrap();
    drop(capture);
}
