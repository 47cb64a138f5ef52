//! Who receives pushes (knob echoes, `/prompt/applied`, status changes): clients that sent
//! `/notify 1`, up to a cap. A cloneable handle: the transport adds and removes entries, any
//! other control-side thread (the daemon's dispatcher, the encoder thread) broadcasts.
//!
//! Threading: a mutex guards the list; never use it from the audio thread. Sends are
//! non-blocking for UDP and bounded by a write timeout for TCP.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex, MutexGuard};

use latentd_osc_schema::rosc::{OscPacket, encoder};

use super::Peer;
use latentd_osc_schema::framing::{Framing, encode_frame};

/// Where packets for one client go: its UDP address, or its TCP connection and framing.
#[derive(Debug, Clone)]
pub(crate) enum Sink {
    Udp {
        socket: Arc<UdpSocket>,
        to: SocketAddr,
    },
    Tcp {
        stream: Arc<Mutex<TcpStream>>,
        framing: Framing,
    },
}

impl Sink {
    /// Send one encoded packet.
    pub(crate) fn send_bytes(&self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Udp { socket, to } => socket.send_to(bytes, to).map(|_| ()),
            Sink::Tcp { stream, framing } => {
                let framed = encode_frame(*framing, bytes);
                let mut stream = stream.lock().unwrap_or_else(|p| p.into_inner());
                stream.write_all(&framed)
            }
        }
    }

    /// Encode and send one packet.
    pub(crate) fn send(&self, packet: &OscPacket) -> std::io::Result<()> {
        let bytes = encoder::encode(packet).map_err(|e| std::io::Error::other(e.to_string()))?;
        self.send_bytes(&bytes)
    }
}

#[derive(Debug)]
struct List {
    cap: usize,
    entries: Vec<(Peer, Sink)>,
}

/// The subscriber list (cloneable handle).
#[derive(Debug, Clone)]
pub struct Subscribers {
    inner: Arc<Mutex<List>>,
}

impl Subscribers {
    /// An empty list holding at most `cap` subscribers.
    pub fn new(cap: usize) -> Subscribers {
        Subscribers {
            inner: Arc::new(Mutex::new(List {
                cap,
                entries: Vec::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, List> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of subscribers.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// True when nobody is subscribed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when `peer` is subscribed.
    pub fn contains(&self, peer: &Peer) -> bool {
        self.lock().entries.iter().any(|(p, _)| p == peer)
    }

    /// Send `packet` to every subscriber; returns how many it reached. TCP subscribers whose
    /// connection fails are removed.
    pub fn broadcast(&self, packet: &OscPacket) -> usize {
        let Ok(bytes) = encoder::encode(packet) else {
            return 0;
        };
        let mut list = self.lock();
        let before = list.entries.len();
        let mut delivered = 0;
        list.entries
            .retain(|(_, sink)| match sink.send_bytes(&bytes) {
                Ok(()) => {
                    delivered += 1;
                    true
                }
                Err(e) => {
                    log::debug!("push to a subscriber failed: {e}");
                    matches!(sink, Sink::Udp { .. })
                }
            });
        if list.entries.len() < before {
            log::info!(
                "dropped {} TCP subscriber(s) whose connection failed",
                before - list.entries.len()
            );
        }
        delivered
    }

    /// Add `peer` (idempotent); the error is the `/fail /notify` reason when the list is full.
    pub(crate) fn subscribe(&self, peer: Peer, sink: Sink) -> Result<(), String> {
        let mut list = self.lock();
        if list.entries.iter().any(|(p, _)| *p == peer) {
            return Ok(());
        }
        if list.entries.len() >= list.cap {
            return Err(format!(
                "subscriber list is full ({} subscribers)",
                list.cap
            ));
        }
        list.entries.push((peer, sink));
        Ok(())
    }

    /// Keep only the subscribers `keep` accepts (an allowlist reload); returns how many
    /// were removed.
    pub(crate) fn retain(&self, mut keep: impl FnMut(&Peer) -> bool) -> usize {
        let mut list = self.lock();
        let before = list.entries.len();
        list.entries.retain(|(p, _)| keep(p));
        before - list.entries.len()
    }

    /// Remove `peer`; true when it was subscribed.
    pub(crate) fn unsubscribe(&self, peer: &Peer) -> bool {
        let mut list = self.lock();
        let before = list.entries.len();
        list.entries.retain(|(p, _)| p != peer);
        list.entries.len() < before
    }
}
