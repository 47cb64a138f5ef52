//! The sd_notify [`Notifier`] and the [`WatchdogSupervisor`] against a real Unix datagram
//! socket this test binds (what systemd does for `NOTIFY_SOCKET`); the environment is never
//! touched.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use latentd::systemd::{Heartbeat, Notifier, WatchdogSupervisor, Watched, ping_interval};

/// A bound notify socket in its own temp dir.
struct ManagerSocket {
    socket: UnixDatagram,
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl ManagerSocket {
    fn bind() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        Self {
            socket,
            _dir: dir,
            path,
        }
    }

    /// Next datagram within `timeout`, with its arrival time.
    fn receive(&self, timeout: Duration) -> Option<(String, Instant)> {
        receive_from(&self.socket, timeout)
    }
}

fn receive_from(socket: &UnixDatagram, timeout: Duration) -> Option<(String, Instant)> {
    socket.set_read_timeout(Some(timeout)).unwrap();
    let mut buffer = [0u8; 4096];
    match socket.recv(&mut buffer) {
        Ok(n) => Some((
            String::from_utf8(buffer[..n].to_vec()).unwrap(),
            Instant::now(),
        )),
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => None,
        Err(error) => panic!("recv: {error}"),
    }
}

static LOGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Installs this binary's capturing logger (once) and returns the captured lines.
fn captured_logs() -> &'static Mutex<Vec<String>> {
    static LOGGER: CaptureLogger = CaptureLogger;
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        log::set_logger(&LOGGER).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
    });
    &LOGS
}

struct CaptureLogger;

impl log::Log for CaptureLogger {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        LOGS.lock()
            .unwrap()
            .push(format!("{} {}", record.level(), record.args()));
    }
    fn flush(&self) {}
}

#[test]
fn ready_status_reloading_stopping_arrive_as_datagrams() {
    let manager = ManagerSocket::bind();
    let notifier = Notifier::with_socket(&manager.path).unwrap();
    assert!(notifier.is_enabled());

    notifier.ready().unwrap();
    assert_eq!(
        manager.receive(Duration::from_secs(2)).unwrap().0,
        "READY=1\n"
    );

    notifier.status("jack 48000 Hz/256\nlead 210 ms").unwrap();
    assert_eq!(
        manager.receive(Duration::from_secs(2)).unwrap().0,
        "STATUS=jack 48000 Hz/256 lead 210 ms\n"
    );

    let before = monotonic_usec();
    notifier.reloading().unwrap();
    let after = monotonic_usec();
    let (message, _) = manager.receive(Duration::from_secs(2)).unwrap();
    let mut lines = message.lines();
    assert_eq!(lines.next(), Some("RELOADING=1"));
    let stamp: u64 = lines
        .next()
        .and_then(|line| line.strip_prefix("MONOTONIC_USEC="))
        .expect("MONOTONIC_USEC line")
        .parse()
        .unwrap();
    assert!(
        (before..=after).contains(&stamp),
        "{before} <= {stamp} <= {after}"
    );

    notifier.stopping().unwrap();
    assert_eq!(
        manager.receive(Duration::from_secs(2)).unwrap().0,
        "STOPPING=1\n"
    );
}

#[test]
fn abstract_socket_names_are_supported() {
    let name = format!("latentd-notify-test-{}", std::process::id());
    let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let socket = UnixDatagram::bind_addr(&address).unwrap();
    let notifier = Notifier::with_socket(format!("@{name}")).unwrap();
    notifier.watchdog().unwrap();
    assert_eq!(
        receive_from(&socket, Duration::from_secs(2)).unwrap().0,
        "WATCHDOG=1\n"
    );
}

#[test]
fn disabled_notifier_sends_nothing_and_succeeds() {
    let notifier = Notifier::disabled();
    assert!(!notifier.is_enabled());
    notifier.ready().unwrap();
    notifier.status("x").unwrap();
    notifier.stopping().unwrap();
}

#[test]
fn sending_to_a_missing_socket_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let notifier = Notifier::with_socket(dir.path().join("absent.sock")).unwrap();
    assert!(notifier.ready().is_err());
}

#[test]
fn watchdog_pings_follow_the_heartbeats() {
    let logs = captured_logs();
    let manager = ManagerSocket::bind();
    let notifier = Notifier::with_socket(&manager.path).unwrap();
    let interval = ping_interval(Duration::from_millis(100));
    assert_eq!(interval, Duration::from_millis(50));

    let engine = Heartbeat::new();
    let audio = Heartbeat::new();
    let engine_alive = Arc::new(AtomicBool::new(true));
    let running = Arc::new(AtomicBool::new(true));
    let beater = {
        let (engine, audio) = (engine.clone(), audio.clone());
        let (engine_alive, running) = (Arc::clone(&engine_alive), Arc::clone(&running));
        thread::spawn(move || {
            while running.load(Ordering::Relaxed) {
                audio.beat();
                if engine_alive.load(Ordering::Relaxed) {
                    engine.beat();
                }
                thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let supervisor = WatchdogSupervisor::spawn(
        notifier.clone(),
        interval,
        vec![
            Watched::new("engine", engine, Duration::from_millis(120)),
            Watched::new("audio", audio, Duration::from_millis(120)),
        ],
    )
    .unwrap();

    // Healthy: a ping every ~50 ms.
    let arrivals = collect_pings(&manager, Duration::from_millis(500));
    assert!(
        (7..=12).contains(&arrivals.len()),
        "{} pings in 500 ms",
        arrivals.len()
    );
    for gap in arrivals.windows(2).map(|pair| pair[1] - pair[0]) {
        assert!(
            gap >= Duration::from_millis(30) && gap <= Duration::from_millis(150),
            "gap {gap:?}"
        );
    }

    // The engine hangs: pings stop within its max silence plus one interval.
    engine_alive.store(false, Ordering::Relaxed);
    let stall_started = Instant::now();
    let during_stall = collect_pings(&manager, Duration::from_millis(600));
    let late: Vec<_> = during_stall
        .iter()
        .filter(|at| at.duration_since(stall_started) > Duration::from_millis(120 + 60))
        .collect();
    assert!(late.is_empty(), "{} pings after the stall", late.len());
    assert_eq!(supervisor.stalled(), vec!["engine".to_owned()]);
    assert!(
        logs.lock()
            .unwrap()
            .iter()
            .any(|line| line.starts_with("ERROR heartbeat 'engine' silent")),
        "stall logged"
    );

    // It recovers: pings resume within an interval or two.
    engine_alive.store(true, Ordering::Relaxed);
    let recovered = Instant::now();
    let (message, at) = manager
        .receive(Duration::from_millis(500))
        .expect("pings resume");
    assert_eq!(message, "WATCHDOG=1\n");
    assert!(at.duration_since(recovered) <= Duration::from_millis(150));
    assert!(supervisor.stalled().is_empty());
    assert!(
        logs.lock()
            .unwrap()
            .iter()
            .any(|line| line.starts_with("WARN heartbeat 'engine' recovered"))
    );

    // Stop: no pings after it returns; then STOPPING=1 is the next message.
    let sent = supervisor.pings_sent();
    assert!(sent >= 8, "{sent} pings counted");
    supervisor.stop();
    while manager.receive(Duration::from_millis(20)).is_some() {}
    notifier.stopping().unwrap();
    assert_eq!(
        manager.receive(Duration::from_millis(300)).unwrap().0,
        "STOPPING=1\n"
    );
    assert!(manager.receive(Duration::from_millis(200)).is_none());

    running.store(false, Ordering::Relaxed);
    beater.join().unwrap();
}

#[test]
fn zero_interval_is_rejected() {
    let error = WatchdogSupervisor::spawn(Notifier::disabled(), Duration::ZERO, Vec::new())
        .err()
        .expect("error");
    assert!(error.to_string().contains("above zero"));
}

fn collect_pings(manager: &ManagerSocket, window: Duration) -> Vec<Instant> {
    let end = Instant::now() + window;
    let mut arrivals = Vec::new();
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        if left.is_zero() {
            break;
        }
        if let Some((message, at)) = manager.receive(left) {
            assert_eq!(message, "WATCHDOG=1\n");
            arrivals.push(at);
        }
    }
    arrivals
}

fn monotonic_usec() -> u64 {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut time) },
        0
    );
    time.tv_sec as u64 * 1_000_000 + time.tv_nsec as u64 / 1_000
}
