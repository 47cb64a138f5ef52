//! The TCP server: an accept thread and one thread per connection. Each connection's framing
//! (size prefix or SLIP) is configured or detected from its first byte; replies use it too.
//! A fatal framing error (unknown framing, oversized size prefix) is answered with `/fail`
//! where the framing is known, then the connection closes.
//!
//! A connection whose peer a reloaded allowlist no longer serves is closed before its next
//! packet is handled (and at the latest 100 ms after the reload).
//!
//! Threading: control threads only; each wakes every 100 ms to notice shutdown.

use std::io::{self, Read};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use latentd_osc_schema::{Fail, reply};

use super::subscribers::Sink;
use super::{CommandHandler, Core, Peer};
use latentd_osc_schema::framing::{FrameReader, FramingMode};

pub(crate) fn spawn<H: CommandHandler>(
    core: Arc<Core<H>>,
    listener: TcpListener,
    framing: FramingMode,
    max_connections: usize,
) -> io::Result<JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("osc-tcp".into())
        .spawn(move || accept_loop(&core, &listener, framing, max_connections))
}

fn accept_loop<H: CommandHandler>(
    core: &Arc<Core<H>>,
    listener: &TcpListener,
    framing: FramingMode,
    max: usize,
) {
    let open = Arc::new(AtomicUsize::new(0));
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    let mut next_connection = 0u64;
    while !core.stop.load(Ordering::Relaxed) {
        threads.retain(|t| !t.is_finished());
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
        if open.load(Ordering::Relaxed) >= max {
            log::warn!("OSC TCP: refusing {addr}, {max} connections already open");
            continue;
        }
        core.stats.tcp_connections.fetch_add(1, Ordering::Relaxed);
        next_connection += 1;
        let peer = Peer::Tcp {
            addr,
            connection: next_connection,
        };
        let (core, open) = (core.clone(), open.clone());
        open.fetch_add(1, Ordering::Relaxed);
        let spawned = std::thread::Builder::new()
            .name(format!("osc-tcp-{next_connection}"))
            .spawn(move || {
                if let Err(e) = serve(&core, stream, peer, framing) {
                    log::debug!("OSC TCP connection {peer:?} ended: {e}");
                }
                core.forget(&peer);
                open.fetch_sub(1, Ordering::Relaxed);
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => log::warn!("OSC TCP: cannot start a connection thread: {e}"),
        }
    }
    for t in threads {
        let _ = t.join();
    }
}

fn serve<H: CommandHandler>(
    core: &Core<H>,
    stream: TcpStream,
    peer: Peer,
    mode: FramingMode,
) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_millis(100)))?;
    stream.set_write_timeout(Some(Duration::from_millis(500)))?;
    stream.set_nodelay(true)?;
    let writer = Arc::new(Mutex::new(stream.try_clone()?));
    let mut stream = stream;
    let mut reader = FrameReader::new(mode, core.max_packet);
    let mut buf = vec![0u8; 16 * 1024];
    while !core.stop.load(Ordering::Relaxed) {
        refuse_if_outside(core, &peer)?;
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
        for frame in reader.push(&buf[..n]) {
            let framing = reader.framing();
            match (frame, framing) {
                (Ok(packet), Some(framing)) => {
                    refuse_if_outside(core, &peer)?;
                    let sink = Sink::Tcp {
                        stream: writer.clone(),
                        framing,
                    };
                    core.packet(&peer, &sink, &packet);
                }
                (Ok(_), None) => unreachable!("frames only come once the framing is known"),
                (Err(error), framing) => {
                    core.stats.failed.fetch_add(1, Ordering::Relaxed);
                    if let Some(framing) = framing {
                        let sink = Sink::Tcp {
                            stream: writer.clone(),
                            framing,
                        };
                        let _ = sink.send(&reply::fail(&Fail::packet(error.reason.clone())));
                    }
                    if error.fatal {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, error.reason));
                    }
                }
            }
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
