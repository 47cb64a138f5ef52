//! The UDP server thread: one datagram is one packet; replies go to the sender's address.
//!
//! Threading: one control thread; wakes every 100 ms to notice shutdown.

use std::io;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use super::subscribers::Sink;
use super::{CommandHandler, Core, Peer};

pub(crate) fn spawn<H: CommandHandler>(
    core: Arc<Core<H>>,
    socket: UdpSocket,
) -> io::Result<JoinHandle<()>> {
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let socket = Arc::new(socket);
    std::thread::Builder::new()
        .name("osc-udp".into())
        .spawn(move || run(&core, &socket))
}

fn run<H: CommandHandler>(core: &Core<H>, socket: &Arc<UdpSocket>) {
    // One byte more than the limit, so an oversized datagram is seen as oversized.
    let mut buf = vec![0u8; core.max_packet + 1];
    while !core.stop.load(Ordering::Relaxed) {
        let (len, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => {
                log::warn!("OSC UDP receive failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if !core.allow.allows(from.ip()) {
            core.stats.refused_peers.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let sink = Sink::Udp {
            socket: socket.clone(),
            to: from,
        };
        core.packet(&Peer::Udp(from), &sink, &buf[..len]);
    }
}
