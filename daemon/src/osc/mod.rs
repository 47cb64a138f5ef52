//! The OSC transport: UDP and TCP servers (TCP with OSC 1.0 size-prefix or OSC 1.1 SLIP
//! framing), the allowlist, per-client rate limits, the subscriber list, and hand-off of
//! decoded packets to a [`CommandHandler`]. The contract itself (addresses, validation,
//! replies) lives in `latentd-osc-schema`. [`oscquery`] serves the same address space as
//! OSCQuery JSON over HTTP.
//!
//! Per packet: allowlist (refused peers are dropped and counted, TCP connections closed; a
//! reload swaps the list, see [`OscServer::set_allowed_networks`]) ->
//! rate limit (the first packet over the limit gets `/fail`, later ones are dropped until the
//! bucket refills) -> size limit -> `Schema::decode` (a `Fail` is answered with `/fail`) ->
//! `/notify` and `/notify/meter` are applied here (the transport owns the subscriber sinks) -> the rest goes to
//! the handler as one atomic batch -> its replies go back to the sender (UDP: its address;
//! TCP: the same connection in the same framing).
//!
//! Limits per client (declared in [`latentd_osc_schema::limits`], documented in docs/osc.md
//! and docs/operations.md): a TCP connection cap that evicts the longest-idle connection, idle
//! and slow-packet timeouts, a bounded outbox per TCP connection (a client that does not read
//! is dropped, never waited for), UDP subscription leases, the rate limit.
//!
//! Threading: control threads only (one UDP thread, one TCP accept thread, one thread per TCP
//! connection). The handler is behind a mutex, so it sees one packet at a time; it reaches the
//! engine through the lock-free knob store and a bounded command queue, never blocking on the
//! audio thread. No thread waits on a client's socket: replies and pushes are written without
//! blocking (see `subscribers`).

mod access;
pub mod oscquery;
mod subscribers;
mod tcp;
mod udp;

use latentd_engine::lock::MutexExt;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use latentd_osc_schema::limits::{
    MAX_SUBSCRIBERS, RATE_BURST, RATE_PER_S, TCP_IDLE_TIMEOUT, TCP_MAX_CONNECTIONS,
    TCP_PACKET_TIMEOUT,
};
use latentd_osc_schema::rosc::OscPacket;
use latentd_osc_schema::{Command, Fail, Limits, Schema, Timed, reply};

pub use access::{Admission, Allowlist, Cidr, LogLimiter, RateLimiter, SharedAllowlist};
pub use latentd_osc_schema::framing::{
    FrameError, FrameReader, Framing, FramingMode, encode_frame,
};
pub use subscribers::Subscribers;
use subscribers::{Sink, Subscription};

/// Default OSC port (UDP and TCP), as the published contract (docs/osc.md) states it.
pub const DEFAULT_PORT: u16 = latentd_osc_schema::generate::DEFAULT_PORT;

/// Default OSC address: [`DEFAULT_PORT`] on the loopback interface.
pub const DEFAULT_BIND: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
    DEFAULT_PORT,
);

/// Default OSCQuery HTTP port, on the OSC address (the contract's, as for [`DEFAULT_PORT`]).
pub const DEFAULT_OSCQUERY_PORT: u16 = latentd_osc_schema::oscquery_http::DEFAULT_PORT;

/// A client: where a packet came from and where replies go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    /// A UDP sender.
    Udp(SocketAddr),
    /// A TCP connection (`connection` is unique per accepted connection).
    Tcp {
        /// The remote address.
        addr: SocketAddr,
        /// Connection number.
        connection: u64,
    },
    /// The daemon itself (a `[[schedule]]` cue of the config file): no network
    /// client; its replies go to the log ([`ReplyTo::log`]).
    Daemon,
}

impl Peer {
    /// The remote address (the unspecified address `0.0.0.0:0` for [`Peer::Daemon`]).
    pub fn addr(&self) -> SocketAddr {
        match self {
            Peer::Udp(addr) | Peer::Tcp { addr, .. } => *addr,
            Peer::Daemon => SocketAddr::from(([0, 0, 0, 0], 0)),
        }
    }
}

/// Receives every decoded packet (minus `/notify` and `/notify/meter`, which the transport
/// handles) and returns
/// the replies for the sender. The commands of one call come from one packet and must apply
/// atomically at `packet.when`. Replies that come later (an asynchronous command's `/done`)
/// go through a clone of `reply`; pushes to other clients through [`Subscribers`].
pub trait CommandHandler: Send + 'static {
    /// Apply one packet's commands; return the immediate replies for `from`.
    fn handle(
        &mut self,
        from: &Peer,
        reply: &ReplyTo,
        packet: Timed<Vec<Command>>,
    ) -> Vec<OscPacket>;
}

/// The way back to one client (its UDP address, or its TCP connection and framing), for
/// replies sent after [`CommandHandler::handle`] returned. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ReplyTo {
    peer: Peer,
    sink: Sink,
}

impl ReplyTo {
    /// Send one packet to the client (never waits: UDP sends one datagram, TCP queues it in
    /// the connection's bounded outbox).
    pub fn send(&self, packet: &OscPacket) -> io::Result<()> {
        self.sink.send(packet)
    }

    /// The client (per-client quotas key on its address).
    pub fn peer(&self) -> Peer {
        self.peer
    }

    /// Replies for the daemon's own commands (`origin` names them, e.g. `schedule`): each
    /// reply is a log record, a `/fail` a warning.
    pub fn log(origin: &'static str) -> ReplyTo {
        ReplyTo {
            peer: Peer::Daemon,
            sink: Sink::Log(origin),
        }
    }
}

/// A reply as a log line reads it: the address and the arguments, e.g.
/// `/fail /preset/recall no preset named "x"`.
pub fn describe_reply(packet: &OscPacket) -> String {
    match packet {
        OscPacket::Message(m) => {
            let args: Vec<String> = m
                .args
                .iter()
                .map(|a| {
                    use latentd_osc_schema::rosc::OscType;
                    match a {
                        OscType::String(s) => s.clone(),
                        OscType::Int(v) => v.to_string(),
                        OscType::Long(v) => v.to_string(),
                        OscType::Float(v) => v.to_string(),
                        OscType::Double(v) => v.to_string(),
                        OscType::Bool(v) => v.to_string(),
                        other => format!("{other:?}"),
                    }
                })
                .collect();
            std::iter::once(m.addr.clone())
                .chain(args)
                .collect::<Vec<_>>()
                .join(" ")
        }
        OscPacket::Bundle(b) => format!("a bundle of {} packets", b.content.len()),
    }
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct OscConfig {
    /// UDP and TCP bind address (port 0 picks a free one, the same for both).
    pub bind: SocketAddr,
    /// Client networks served when `bind` is wider than loopback.
    pub allow: Vec<Cidr>,
    /// TCP framing choice.
    pub tcp_framing: FramingMode,
    /// Largest packet in bytes.
    pub max_packet_bytes: usize,
    /// Sustained packets per second per client.
    pub rate_per_s: f64,
    /// Burst size per client.
    pub burst: f64,
    /// Most simultaneous TCP connections; a new one beyond it closes the longest-idle one.
    pub max_tcp_connections: usize,
    /// A TCP connection that completes no packet for this long is closed.
    pub tcp_idle_timeout: Duration,
    /// A TCP packet must be complete this long after its first byte, or the connection is
    /// closed.
    pub tcp_packet_timeout: Duration,
}

impl Default for OscConfig {
    fn default() -> OscConfig {
        OscConfig {
            bind: DEFAULT_BIND,
            allow: vec![
                "127.0.0.0/8".parse().expect("valid"),
                "::1/128".parse().expect("valid"),
            ],
            tcp_framing: FramingMode::Auto,
            max_packet_bytes: Limits::default().max_packet_bytes,
            rate_per_s: RATE_PER_S,
            burst: RATE_BURST,
            max_tcp_connections: TCP_MAX_CONNECTIONS,
            tcp_idle_timeout: TCP_IDLE_TIMEOUT,
            tcp_packet_timeout: TCP_PACKET_TIMEOUT,
        }
    }
}

/// Default cap of the subscriber list.
pub const DEFAULT_MAX_SUBSCRIBERS: usize = MAX_SUBSCRIBERS;

/// Counters, readable from any thread.
#[derive(Debug, Default)]
pub struct OscStats {
    /// Packets received from allowed peers.
    pub packets: AtomicU64,
    /// Packets answered with `/fail` (decode, size, rate, subscriber cap).
    pub failed: AtomicU64,
    /// Packets over the rate limit (answered once, then dropped).
    pub rate_limited: AtomicU64,
    /// Packets or connections from peers outside the allowlist.
    pub refused_peers: AtomicU64,
    /// TCP connections accepted.
    pub tcp_connections: AtomicU64,
    /// TCP connections closed by a limit: evicted at the connection cap, idle, or too slow to
    /// complete a packet (those dropped for not reading are logged by their outbox).
    pub tcp_closed_by_limit: AtomicU64,
}

/// Shared by the server threads.
pub(crate) struct Core<H> {
    schema: Arc<Schema>,
    handler: Mutex<H>,
    subscribers: Subscribers,
    limiter: Mutex<RateLimiter<Peer>>,
    allow: SharedAllowlist,
    stats: Arc<OscStats>,
    max_packet: usize,
    stop: AtomicBool,
}

impl<H: CommandHandler> Core<H> {
    /// Process one packet from `peer`; replies are sent through `sink`.
    fn packet(&self, peer: &Peer, sink: &Sink, bytes: &[u8]) {
        self.stats.packets.fetch_add(1, Ordering::Relaxed);
        let admission = self.limiter.lock_unpoisoned().admit(peer, Instant::now());
        let replies = match admission {
            Admission::Admit => self.admitted(peer, sink, bytes),
            Admission::FailOnce => {
                self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                let reason = format!(
                    "rate limit exceeded ({} packets/s, burst {}); further packets are dropped until it recovers",
                    self.limiter_rate().0,
                    self.limiter_rate().1
                );
                vec![reply::fail(&Fail::packet(reason))]
            }
            Admission::Drop => {
                self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                Vec::new()
            }
        };
        for packet in replies {
            if let Err(e) = sink.send(&packet) {
                log::debug!("reply to {peer:?} failed: {e}");
            }
        }
    }

    fn limiter_rate(&self) -> (f64, f64) {
        let l = self.limiter.lock_unpoisoned();
        (l.rate(), l.burst())
    }

    fn admitted(&self, peer: &Peer, sink: &Sink, bytes: &[u8]) -> Vec<OscPacket> {
        let decoded = if bytes.len() > self.max_packet {
            Err(Fail::packet(format!(
                "packet larger than the limit of {} bytes",
                self.max_packet
            )))
        } else {
            self.schema.decode(bytes)
        };
        let mut packet = match decoded {
            Ok(packet) => packet,
            Err(fail) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                return vec![reply::fail(&fail)];
            }
        };
        let mut replies = Vec::new();
        let mut notify_failed = false;
        packet.value.retain(|command| {
            let (address, what) = match *command {
                Command::Notify(on) => ("/notify", Subscription::Pushes(on)),
                Command::NotifyMeter(hz) => ("/notify/meter", Subscription::Meter(hz)),
                _ => return true,
            };
            match self.subscribers.subscribe(*peer, sink.clone(), what) {
                Ok(()) => replies.push(reply::done(address, vec![])),
                Err(reason) => {
                    notify_failed = true;
                    replies.push(reply::fail(&Fail::new(address, reason)));
                }
            }
            false
        });
        if notify_failed {
            // The packet applies as a whole or not at all.
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
            return replies.into_iter().filter(|r| !is_done(r)).collect();
        }
        if !packet.value.is_empty() {
            let mut handler = self.handler.lock_unpoisoned();
            let reply_to = ReplyTo {
                peer: *peer,
                sink: sink.clone(),
            };
            replies.extend(handler.handle(peer, &reply_to, packet));
        }
        replies
    }

    fn forget(&self, peer: &Peer) {
        self.subscribers.unsubscribe(peer);
        self.limiter.lock_unpoisoned().forget(peer);
    }
}

fn is_done(packet: &OscPacket) -> bool {
    matches!(packet, OscPacket::Message(m) if m.addr == "/done")
}

/// A running server; [`OscServer::shutdown`] (or drop) stops its threads.
pub struct OscServer {
    udp_addr: SocketAddr,
    tcp_addr: SocketAddr,
    allow: SharedAllowlist,
    subscribers: Subscribers,
    stats: Arc<OscStats>,
    stop: Arc<dyn Fn() + Send + Sync>,
    threads: Vec<JoinHandle<()>>,
}

impl OscServer {
    /// Bind UDP and TCP on `config.bind` and start serving. `subscribers` is the handle the
    /// handler (and other threads) broadcast through.
    pub fn start<H: CommandHandler>(
        config: OscConfig,
        schema: Arc<Schema>,
        subscribers: Subscribers,
        handler: H,
    ) -> io::Result<OscServer> {
        let (udp, tcp) = bind_pair(config.bind)?;
        let (udp_addr, tcp_addr) = (udp.local_addr()?, tcp.local_addr()?);
        let stats = Arc::new(OscStats::default());
        let allow = SharedAllowlist::new(Allowlist::new(config.bind.ip(), config.allow.clone()));
        let core = Arc::new(Core {
            schema,
            handler: Mutex::new(handler),
            subscribers,
            limiter: Mutex::new(RateLimiter::new(config.rate_per_s, config.burst)),
            allow: allow.clone(),
            stats: stats.clone(),
            max_packet: config.max_packet_bytes,
            stop: AtomicBool::new(false),
        });
        let threads = vec![
            udp::spawn(core.clone(), udp)?,
            tcp::spawn(core.clone(), tcp, tcp::TcpLimits::from(&config))?,
        ];
        log::info!("OSC listening on udp://{udp_addr} and tcp://{tcp_addr}");
        let subscribers = core.subscribers.clone();
        let stop = Arc::new(move || core.stop.store(true, Ordering::Relaxed));
        Ok(OscServer {
            udp_addr,
            tcp_addr,
            allow,
            subscribers,
            stats,
            stop,
            threads,
        })
    }

    /// The bound UDP address.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// The bound TCP address.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp_addr
    }

    /// Serve these client networks from now on (a config reload): new packets are judged
    /// by them, subscribers now outside them stop receiving pushes, and open TCP
    /// connections from peers now outside are closed within about 100 ms (before their
    /// next packet is handled). A server bound to loopback stays open to everyone.
    pub fn set_allowed_networks(&self, networks: Vec<Cidr>) {
        self.allow.set_networks(networks);
        let dropped = self
            .subscribers
            .retain(|peer| self.allow.allows(peer.addr().ip()));
        if dropped > 0 {
            log::info!("OSC: {dropped} subscriber(s) outside the new allowlist dropped");
        }
    }

    /// Counters.
    pub fn stats(&self) -> &OscStats {
        &self.stats
    }

    /// Stop and join every server thread (within about 100 ms).
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        (self.stop)();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for OscServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Bind UDP, then TCP on the same port; with port 0, retry when the TCP port is taken.
fn bind_pair(bind: SocketAddr) -> io::Result<(UdpSocket, std::net::TcpListener)> {
    let mut last = None;
    for _ in 0..8 {
        let udp = UdpSocket::bind(bind)?;
        match std::net::TcpListener::bind(udp.local_addr()?) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if bind.port() == 0 && e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("could not bind UDP and TCP on one port")))
}
