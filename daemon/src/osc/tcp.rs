//! The TCP server: an accept thread and one thread per connection. Each connection's framing
//! (size prefix or SLIP) is configured or detected from its first byte; replies use it too.
//! A fatal framing error (unknown framing, oversized size prefix) is answered with `/fail`
//! where the framing is known, then the connection closes.
//!
//! Limits (values in [`latentd_osc_schema::limits`], overridable through [`OscConfig`] for
//! tests): at most `max_connections` open; one more closes the open connection whose last
//! complete packet is oldest (the longest-idle), so a new client is always served. A
//! connection that completes no packet within the idle timeout, or whose packet in progress
//! is not complete within the packet timeout after its first byte, is closed. Replies and
//! pushes go through the connection's [`TcpOutbox`] (bounded, written without blocking; a
//! client that does not read is dropped). Log lines about closings by a limit are
//! rate-limited ([`REFUSAL_LOG_INTERVAL`]).
//!
//! A connection whose peer a reloaded allowlist no longer serves is closed before its next
//! packet is handled (and at the latest 100 ms after the reload).
//!
//! Threading: control threads only; each wakes every 100 ms ([`TICK`]) to notice shutdown,
//! flush its outbox and check its timeouts.

use latentd_engine::lock::MutexExt;
use std::io::{self, Read};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use latentd_osc_schema::limits::REFUSAL_LOG_INTERVAL;
use latentd_osc_schema::{Fail, reply};

use super::access::LogLimiter;
use super::subscribers::{Sink, TcpOutbox, describe};
use super::{CommandHandler, Core, OscConfig, Peer};
use latentd_osc_schema::framing::{FrameReader, FramingMode};

/// How often a connection thread wakes without input (shutdown, outbox, timeouts).
const TICK: Duration = Duration::from_millis(100);

/// The TCP part of [`OscConfig`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct TcpLimits {
    framing: FramingMode,
    max_connections: usize,
    idle_timeout: Duration,
    packet_timeout: Duration,
}

impl From<&OscConfig> for TcpLimits {
    fn from(config: &OscConfig) -> TcpLimits {
        TcpLimits {
            framing: config.tcp_framing,
            max_connections: config.max_tcp_connections,
            idle_timeout: config.tcp_idle_timeout,
            packet_timeout: config.tcp_packet_timeout,
        }
    }
}

/// One open connection as the accept thread and the connection's thread share it.
struct Connection {
    peer: Peer,
    /// A clone of the socket, to shut it down from the accept thread (eviction).
    stream: TcpStream,
    /// When its last complete packet arrived (its connect time before the first).
    last_packet: Mutex<Instant>,
    /// Closed by the accept thread to make room.
    evicted: AtomicBool,
}

impl Connection {
    fn last_packet(&self) -> Instant {
        *self.last_packet.lock_unpoisoned()
    }
}

/// Closings by a limit, logged at most once per [`REFUSAL_LOG_INTERVAL`] for all
/// connections together.
type ClosingLog = Arc<Mutex<LogLimiter>>;

fn log_closing(log: &ClosingLog, line: impl FnOnce() -> String) {
    let allowed = log.lock_unpoisoned().allow(Instant::now());
    if let Some(suppressed) = allowed {
        let line = line();
        if suppressed > 0 {
            log::warn!(
                "{line} ({suppressed} more connection(s) closed by a limit in the last {} s, \
                 not logged)",
                REFUSAL_LOG_INTERVAL.as_secs()
            );
        } else {
            log::warn!("{line}");
        }
    }
}

pub(crate) fn spawn<H: CommandHandler>(
    core: Arc<Core<H>>,
    listener: TcpListener,
    limits: TcpLimits,
) -> io::Result<JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("osc-tcp".into())
        .spawn(move || accept_loop(&core, &listener, limits))
}

fn accept_loop<H: CommandHandler>(core: &Arc<Core<H>>, listener: &TcpListener, limits: TcpLimits) {
    let closing_log: ClosingLog = Arc::new(Mutex::new(LogLimiter::new(REFUSAL_LOG_INTERVAL)));
    let mut open: Vec<(Arc<Connection>, JoinHandle<()>)> = Vec::new();
    let mut next_connection = 0u64;
    while !core.stop.load(Ordering::Relaxed) {
        open.retain(|(_, t)| !t.is_finished());
        let (stream, addr) = match listener.accept() {
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(e) => {
                log::warn!("OSC TCP accept failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if !core.allow.allows(addr.ip()) {
            core.stats.refused_peers.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        next_connection += 1;
        let peer = Peer::Tcp {
            addr,
            connection: next_connection,
        };
        if !make_room(core, &open, limits.max_connections, &peer, &closing_log) {
            continue;
        }
        let Ok(clone) = stream.try_clone() else {
            continue;
        };
        core.stats.tcp_connections.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection {
            peer,
            stream: clone,
            last_packet: Mutex::new(Instant::now()),
            evicted: AtomicBool::new(false),
        });
        let (core, shared, log) = (core.clone(), connection.clone(), closing_log.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("osc-tcp-{next_connection}"))
            .spawn(move || {
                let outbox = Mutex::new(None);
                if let Err(e) = serve(&core, stream, &shared, limits, &log, &outbox) {
                    log::debug!("OSC TCP connection {peer:?} ended: {e}");
                }
                let outbox = outbox.into_inner().unwrap_or_else(|p| p.into_inner());
                if let Some(outbox) = outbox {
                    outbox.close("connection ended".into());
                }
                let _ = shared.stream.shutdown(Shutdown::Both);
                core.forget(&peer);
            });
        match spawned {
            Ok(t) => open.push((connection, t)),
            Err(e) => log::warn!("OSC TCP: cannot start a connection thread: {e}"),
        }
    }
    for (connection, t) in open {
        let _ = connection.stream.shutdown(Shutdown::Both);
        let _ = t.join();
    }
}

/// At the connection cap, evict the longest-idle open connection so `newcomer` is served;
/// false when there is none to evict (a cap of 0).
fn make_room<H: CommandHandler>(
    core: &Core<H>,
    open: &[(Arc<Connection>, JoinHandle<()>)],
    max: usize,
    newcomer: &Peer,
    closing_log: &ClosingLog,
) -> bool {
    let live: Vec<&Arc<Connection>> = open
        .iter()
        .map(|(c, _)| c)
        .filter(|c| !c.evicted.load(Ordering::Relaxed))
        .collect();
    if live.len() < max {
        return true;
    }
    core.stats
        .tcp_closed_by_limit
        .fetch_add(1, Ordering::Relaxed);
    let Some(victim) = live.iter().min_by_key(|c| c.last_packet()) else {
        log_closing(closing_log, || {
            format!(
                "OSC TCP: refusing {}: at most {max} connection(s)",
                describe(newcomer)
            )
        });
        return false;
    };
    victim.evicted.store(true, Ordering::Relaxed);
    let _ = victim.stream.shutdown(Shutdown::Both);
    log_closing(closing_log, || {
        format!(
            "OSC TCP: {max} connections open: closed the longest-idle, {} (no packet for \
             {:.1} s), to serve {}",
            describe(&victim.peer),
            victim.last_packet().elapsed().as_secs_f64(),
            describe(newcomer)
        )
    });
    true
}

fn serve<H: CommandHandler>(
    core: &Core<H>,
    stream: TcpStream,
    connection: &Connection,
    limits: TcpLimits,
    closing_log: &ClosingLog,
    outbox_slot: &Mutex<Option<Arc<TcpOutbox>>>,
) -> io::Result<()> {
    let peer = connection.peer;
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(TICK))?;
    stream.set_nodelay(true)?;
    let mut stream = stream;
    let mut reader = FrameReader::new(limits.framing, core.max_packet);
    let mut buf = vec![0u8; 16 * 1024];
    let mut outbox: Option<Arc<TcpOutbox>> = None;
    let mut last_packet = Instant::now();
    // When the first byte of the packet in progress arrived.
    let mut packet_started: Option<Instant> = None;
    while !core.stop.load(Ordering::Relaxed) {
        refuse_if_outside(core, &peer)?;
        let now = Instant::now();
        if let Some(outbox) = &outbox {
            outbox.flush(now)?;
        }
        let closing = if packet_started.is_some_and(|t| now - t > limits.packet_timeout) {
            Some(format!(
                "a packet was not complete {} s after its first byte",
                limits.packet_timeout.as_secs_f64()
            ))
        } else if now - last_packet > limits.idle_timeout {
            Some(format!(
                "no complete packet for {} s",
                limits.idle_timeout.as_secs_f64()
            ))
        } else {
            None
        };
        if let Some(reason) = closing {
            core.stats
                .tcp_closed_by_limit
                .fetch_add(1, Ordering::Relaxed);
            log_closing(closing_log, || {
                format!("OSC TCP: closing {}: {reason}", describe(&peer))
            });
            return Err(io::Error::new(io::ErrorKind::TimedOut, reason));
        }
        let n = match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        };
        if connection.evicted.load(Ordering::Relaxed) {
            return Ok(());
        }
        let frames = reader.push(&buf[..n]);
        let now = Instant::now();
        if let (None, Some(framing)) = (&outbox, reader.framing()) {
            let created = Arc::new(TcpOutbox::new(stream.try_clone()?, framing, peer));
            *outbox_slot.lock_unpoisoned() = Some(created.clone());
            outbox = Some(created);
        }
        let completed = frames.iter().any(Result::is_ok);
        packet_started = match (reader.in_packet(), completed) {
            (false, _) => None,
            (true, true) => Some(now),
            (true, false) => packet_started.or(Some(now)),
        };
        if completed {
            last_packet = now;
            *connection.last_packet.lock_unpoisoned() = now;
        }
        for frame in frames {
            let sink = outbox.as_ref().map(|o| Sink::Tcp(o.clone()));
            match (frame, sink) {
                (Ok(packet), Some(sink)) => {
                    refuse_if_outside(core, &peer)?;
                    core.packet(&peer, &sink, &packet);
                }
                (Ok(_), None) => unreachable!("frames only come once the framing is known"),
                (Err(error), sink) => {
                    core.stats.failed.fetch_add(1, Ordering::Relaxed);
                    if let Some(sink) = sink {
                        let _ = sink.send(&reply::fail(&Fail::packet(error.reason.clone())));
                    }
                    if error.fatal {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, error.reason));
                    }
                }
            }
        }
        if outbox.as_ref().is_some_and(|o| o.is_dropped()) {
            return Ok(());
        }
    }
    Ok(())
}

/// An open connection whose peer a reloaded allowlist no longer serves is closed (checked
/// before each packet and at each read timeout).
fn refuse_if_outside<H: CommandHandler>(core: &Core<H>, peer: &Peer) -> io::Result<()> {
    if core.allow.allows(peer.addr().ip()) {
        return Ok(());
    }
    core.stats.refused_peers.fetch_add(1, Ordering::Relaxed);
    log::info!("OSC TCP: closing {peer:?}, outside the reloaded allowlist");
    Err(io::Error::new(
        io::ErrorKind::PermissionDenied,
        "peer outside the allowlist",
    ))
}
