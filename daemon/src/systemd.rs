//! systemd glue: readiness and status notifications ([`Notifier`]), liveness counters
//! ([`Heartbeat`]) and the [`WatchdogSupervisor`] that turns them into `WATCHDOG=1` pings.
//!
//! Protocol (sd_notify(3)): `READY=1` once the output runs and the OSC sockets are bound;
//! `STATUS=` lines with a short live summary; `RELOADING=1` together with `MONOTONIC_USEC=`
//! when a reload starts, then `READY=1` when it is done; `STOPPING=1` when shutdown starts;
//! `WATCHDOG=1` every half `WATCHDOG_USEC`, but only while every watched thread is alive and
//! no [`Veto`] holds, so a hung engine, a dead audio callback or a health alarm whose action
//! is `restart` gets the service restarted.
//!
//! Threading: a [`Notifier`] is a cheap clone around one unbound datagram socket and may be
//! used from any non-realtime thread. [`Heartbeat::beat`] is realtime-safe (one relaxed load
//! and store, no syscall): the audio callback and the engine thread each bump their own.
//! The supervisor is its own thread; it only reads counters and sends pings.
//!
//! The notification socket is taken from `NOTIFY_SOCKET` once ([`Notifier::from_env`]) or
//! given explicitly ([`Notifier::with_socket`]); nothing here mutates the environment.

use latentd_engine::lock::MutexExt;
use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use crate::audio::OutputStats;
use crate::stoppable::StoppableThread;

/// Sends sd_notify messages to the service manager, or does nothing when there is none.
#[derive(Clone, Debug)]
pub struct Notifier {
    target: Option<Arc<NotifyTarget>>,
}

#[derive(Debug)]
struct NotifyTarget {
    socket: UnixDatagram,
    address: SocketAddr,
}

impl Notifier {
    /// The service manager named by `NOTIFY_SOCKET`, or a disabled notifier when it is unset
    /// or empty (not started by systemd).
    pub fn from_env() -> io::Result<Self> {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(path) if !path.is_empty() => Self::with_socket(path),
            _ => Ok(Self::disabled()),
        }
    }

    /// A notifier sending to `path`: a filesystem socket, or an abstract one when the path
    /// starts with `@` (as systemd writes them in `NOTIFY_SOCKET`).
    pub fn with_socket(path: impl AsRef<OsStr>) -> io::Result<Self> {
        let bytes = path.as_ref().as_bytes();
        let address = match bytes.strip_prefix(b"@") {
            Some(name) => SocketAddr::from_abstract_name(name)?,
            None => SocketAddr::from_pathname(Path::new(path.as_ref()))?,
        };
        let socket = UnixDatagram::unbound()?;
        Ok(Self {
            target: Some(Arc::new(NotifyTarget { socket, address })),
        })
    }

    /// A notifier that sends nothing (every call succeeds).
    pub fn disabled() -> Self {
        Self { target: None }
    }

    /// Whether messages go anywhere.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// `READY=1`: startup (or a reload) is complete.
    pub fn ready(&self) -> io::Result<()> {
        self.send(&[NotifyState::Ready])
    }

    /// `STATUS=<text>`; line breaks are replaced by spaces so the text stays one field.
    pub fn status(&self, text: &str) -> io::Result<()> {
        let one_line = text.replace(['\n', '\r'], " ");
        self.send(&[NotifyState::Status(&one_line)])
    }

    /// `STOPPING=1`: shutdown has begun.
    pub fn stopping(&self) -> io::Result<()> {
        self.send(&[NotifyState::Stopping])
    }

    /// `RELOADING=1` with `MONOTONIC_USEC=` (CLOCK_MONOTONIC now), as `Type=notify-reload`
    /// requires; send [`ready`](Self::ready) when the reload is done.
    pub fn reloading(&self) -> io::Result<()> {
        let now = NotifyState::monotonic_usec_now()?;
        self.send(&[NotifyState::Reloading, now])
    }

    /// `WATCHDOG=1`: one keep-alive ping.
    pub fn watchdog(&self) -> io::Result<()> {
        self.send(&[NotifyState::Watchdog])
    }

    /// Sends `states` as one datagram, one `KEY=value` per line.
    pub fn send(&self, states: &[NotifyState<'_>]) -> io::Result<()> {
        let Some(target) = &self.target else {
            return Ok(());
        };
        let message: String = states.iter().map(|state| format!("{state}\n")).collect();
        let sent = target
            .socket
            .send_to_addr(message.as_bytes(), &target.address)?;
        if sent != message.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("sd_notify: sent {sent} of {} bytes", message.len()),
            ));
        }
        Ok(())
    }
}

/// The watchdog timeout systemd asked for (`WATCHDOG_USEC`, honouring `WATCHDOG_PID`), or
/// `None` when the unit has no `WatchdogSec=`.
pub fn watchdog_timeout_from_env() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|timeout| !timeout.is_zero())
}

/// How often to ping for a given watchdog timeout: half of it, as sd_watchdog_enabled(3)
/// recommends.
pub fn ping_interval(timeout: Duration) -> Duration {
    timeout / 2
}

/// Something whose count advances while its thread is alive.
pub trait Liveness: Send + Sync {
    /// The current count; only changes matter, not the value.
    fn beats(&self) -> u64;
}

/// A liveness counter one thread bumps and the supervisor reads. Clones share the counter.
#[derive(Clone, Debug, Default)]
pub struct Heartbeat(Arc<AtomicU64>);

impl Heartbeat {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the owning thread alive. Realtime-safe: a relaxed load and store, no
    /// read-modify-write. Meant for one writer; a second one may lose counts but the value
    /// still changes, which is all the supervisor looks at.
    #[inline]
    pub fn beat(&self) {
        let count = self.0.load(Ordering::Relaxed);
        self.0.store(count.wrapping_add(1), Ordering::Relaxed);
    }
}

impl Liveness for Heartbeat {
    fn beats(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// An audio output's callback counter is its heartbeat: it advances once per period.
impl Liveness for OutputStats {
    fn beats(&self) -> u64 {
        self.callbacks.load(Ordering::Relaxed)
    }
}

/// Something that may withhold the watchdog pings although every thread is alive (a health
/// alarm whose action is `restart`).
pub trait Veto: Send + Sync {
    /// Why pings are withheld now; `None` lets them go.
    fn withhold(&self) -> Option<String>;
}

/// One thread the supervisor watches.
#[derive(Clone)]
pub struct Watched {
    /// Name used in log lines and [`WatchdogSupervisor::stalled`].
    pub name: String,
    /// The counter that must keep advancing.
    pub source: Arc<dyn Liveness>,
    /// Longest time the counter may stand still before the thread counts as hung.
    pub max_silence: Duration,
}

impl Watched {
    /// Watches `heartbeat` under `name`.
    pub fn new(name: impl Into<String>, heartbeat: Heartbeat, max_silence: Duration) -> Self {
        Self::from_source(name, Arc::new(heartbeat), max_silence)
    }

    /// Watches any [`Liveness`] source, e.g. an output's `Arc<OutputStats>`.
    pub fn from_source(
        name: impl Into<String>,
        source: Arc<dyn Liveness>,
        max_silence: Duration,
    ) -> Self {
        Self {
            name: name.into(),
            source,
            max_silence,
        }
    }
}

/// A thread that sends `WATCHDOG=1` every interval while every watched heartbeat advanced
/// within its max silence, withholds pings (and logs which one stalled) otherwise, and
/// resumes when it recovers.
pub struct WatchdogSupervisor {
    thread: StoppableThread<()>,
    shared: Arc<SupervisorShared>,
}

#[derive(Default)]
struct SupervisorShared {
    pings: AtomicU64,
    stalled: Mutex<Vec<String>>,
}

impl WatchdogSupervisor {
    /// Starts the supervisor; the first check (and ping, if all are alive) happens at once.
    pub fn spawn(
        notifier: Notifier,
        interval: Duration,
        watched: Vec<Watched>,
    ) -> io::Result<Self> {
        Self::spawn_with_veto(notifier, interval, watched, None)
    }

    /// [`spawn`](Self::spawn), with pings also withheld while `veto` says so.
    pub fn spawn_with_veto(
        notifier: Notifier,
        interval: Duration,
        watched: Vec<Watched>,
        veto: Option<Arc<dyn Veto>>,
    ) -> io::Result<Self> {
        if interval.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "watchdog ping interval must be above zero",
            ));
        }
        let shared = Arc::new(SupervisorShared::default());
        let thread_shared = Arc::clone(&shared);
        let thread = StoppableThread::spawn("watchdog", move |stop_rx| {
            supervise(notifier, interval, watched, veto, stop_rx, thread_shared);
        })?;
        Ok(Self { thread, shared })
    }

    /// `WATCHDOG=1` pings sent so far.
    pub fn pings_sent(&self) -> u64 {
        self.shared.pings.load(Ordering::Relaxed)
    }

    /// Names of the heartbeats that are stalled now.
    pub fn stalled(&self) -> Vec<String> {
        self.shared.stalled.lock_unpoisoned().clone()
    }

    /// Stops the thread and waits for it; no ping is sent after this returns.
    pub fn stop(self) {
        self.thread.stop();
    }
}

struct Tracked {
    watched: Watched,
    last_count: u64,
    last_change: Instant,
    stalled: bool,
}

fn supervise(
    notifier: Notifier,
    interval: Duration,
    watched: Vec<Watched>,
    veto: Option<Arc<dyn Veto>>,
    stop: mpsc::Receiver<()>,
    shared: Arc<SupervisorShared>,
) {
    let mut vetoed = false;
    let started = Instant::now();
    let mut tracked: Vec<Tracked> = watched
        .into_iter()
        .map(|watched| Tracked {
            last_count: watched.source.beats(),
            last_change: started,
            stalled: false,
            watched,
        })
        .collect();
    let mut next_check = started;
    loop {
        let now = Instant::now();
        if now >= next_check {
            let alive = check(&mut tracked, now, &shared);
            let withheld = veto.as_ref().and_then(|v| v.withhold());
            match (&withheld, vetoed) {
                (Some(why), false) => log::error!("{why}: withholding watchdog pings"),
                (None, true) => log::warn!("watchdog pings resume: no alarm withholds them"),
                _ => {}
            }
            vetoed = withheld.is_some();
            if alive && !vetoed {
                match notifier.watchdog() {
                    Ok(()) => {
                        shared.pings.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => log::warn!("watchdog ping failed: {error}"),
                }
            }
            next_check += interval;
            if next_check < now {
                next_check = now + interval;
            }
        }
        match stop.recv_timeout(next_check.saturating_duration_since(Instant::now())) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Updates every heartbeat; true when all are alive.
fn check(tracked: &mut [Tracked], now: Instant, shared: &SupervisorShared) -> bool {
    let mut all_alive = true;
    let mut changed = false;
    for entry in tracked.iter_mut() {
        let count = entry.watched.source.beats();
        if count != entry.last_count {
            entry.last_count = count;
            entry.last_change = now;
        }
        let silence = now.duration_since(entry.last_change);
        let stalled = silence > entry.watched.max_silence;
        if stalled && !entry.stalled {
            log::error!(
                heartbeat = entry.watched.name.as_str(),
                silence_ms = silence.as_millis() as u64;
                "heartbeat '{}' silent for {} ms (limit {} ms): withholding watchdog pings",
                entry.watched.name,
                silence.as_millis(),
                entry.watched.max_silence.as_millis()
            );
        } else if !stalled && entry.stalled {
            log::warn!(
                heartbeat = entry.watched.name.as_str();
                "heartbeat '{}' recovered: watchdog pings resume",
                entry.watched.name
            );
        }
        changed |= stalled != entry.stalled;
        entry.stalled = stalled;
        all_alive &= !stalled;
    }
    if changed {
        let names = tracked
            .iter()
            .filter(|entry| entry.stalled)
            .map(|entry| entry.watched.name.clone())
            .collect();
        *shared.stalled.lock_unpoisoned() = names;
    }
    all_alive
}
