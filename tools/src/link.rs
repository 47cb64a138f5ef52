//! One connection to latentd: UDP (the socket is connected to the server, so only its
//! packets arrive and a closed port shows up as "connection refused"), or TCP with OSC 1.0
//! size-prefix or OSC 1.1 SLIP framing.
//!
//! Threading: owned by the main thread.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use latentd_osc_schema::framing::{FrameReader, Framing, FramingMode, encode_frame};
use latentd_osc_schema::rosc::{OscPacket, decoder, encoder};

/// Largest packet accepted from the server (the server's own limit).
const MAX_PACKET: usize = 64 * 1024;

/// How packets travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// One datagram per packet.
    Udp,
    /// TCP, int32 big-endian size before each packet.
    TcpSizePrefix,
    /// TCP, SLIP (END before and after each packet).
    TcpSlip,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::TcpSizePrefix => "tcp",
            Transport::TcpSlip => "tcp+slip",
        })
    }
}

/// A connection to the server.
pub struct Link {
    server: SocketAddr,
    transport: Transport,
    udp: Option<UdpSocket>,
    tcp: Option<TcpStream>,
    /// TCP: splits the received stream into packets (the server's framing code).
    frames: FrameReader,
    /// TCP packets (or framing errors) split off but not yet returned.
    pending: std::collections::VecDeque<Result<Vec<u8>, String>>,
}

impl Transport {
    /// The TCP framing, `None` for UDP.
    fn framing(self) -> Option<Framing> {
        match self {
            Transport::Udp => None,
            Transport::TcpSizePrefix => Some(Framing::SizePrefix),
            Transport::TcpSlip => Some(Framing::Slip),
        }
    }
}

impl Link {
    /// Connect to `host:port`.
    pub fn connect(
        host: &str,
        port: u16,
        transport: Transport,
        timeout: Duration,
    ) -> io::Result<Link> {
        let server = (host, port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::other(format!("{host} resolves to no address")))?;
        let (mut udp, mut tcp) = (None, None);
        match transport {
            Transport::Udp => {
                let any: SocketAddr = if server.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    "[::]:0".parse().expect("valid")
                };
                let socket = UdpSocket::bind(any)?;
                socket.connect(server)?;
                udp = Some(socket);
            }
            Transport::TcpSizePrefix | Transport::TcpSlip => {
                let stream = TcpStream::connect_timeout(&server, timeout)?;
                stream.set_nodelay(true)?;
                tcp = Some(stream);
            }
        }
        Ok(Link {
            server,
            transport,
            udp,
            tcp,
            frames: FrameReader::new(
                FramingMode::Fixed(transport.framing().unwrap_or(Framing::SizePrefix)),
                MAX_PACKET,
            ),
            pending: Default::default(),
        })
    }

    /// `udp://127.0.0.1:7770` and the like, for messages.
    pub fn describe(&self) -> String {
        format!("{}://{}", self.transport, self.server)
    }

    /// Encode and send one packet.
    pub fn send(&mut self, packet: &OscPacket) -> io::Result<()> {
        let bytes = encoder::encode(packet).map_err(|e| io::Error::other(e.to_string()))?;
        if let Some(udp) = &self.udp {
            return udp.send(&bytes).map(|_| ());
        }
        let framing = self.transport.framing().expect("a TCP link has a framing");
        self.tcp
            .as_mut()
            .expect("TCP link")
            .write_all(&encode_frame(framing, &bytes))
    }

    /// The next packet from the server, or `None` when `deadline` passes first.
    pub fn recv(&mut self, deadline: Instant) -> io::Result<Option<OscPacket>> {
        loop {
            match self.pending.pop_front() {
                Some(Ok(bytes)) => return decode(&bytes).map(Some),
                Some(Err(reason)) => {
                    return Err(io::Error::other(format!("the server's stream: {reason}")));
                }
                None => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let mut buf = vec![0u8; MAX_PACKET + 4];
            let read = match (&self.udp, &mut self.tcp) {
                (Some(udp), _) => {
                    udp.set_read_timeout(Some(left))?;
                    udp.recv(&mut buf)
                }
                (None, Some(tcp)) => {
                    tcp.set_read_timeout(Some(left))?;
                    tcp.read(&mut buf)
                }
                (None, None) => unreachable!("a link has a socket"),
            };
            match read {
                Ok(0) if self.tcp.is_some() => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the server closed the connection",
                    ));
                }
                Ok(n) if self.udp.is_some() => return decode(&buf[..n]).map(Some),
                Ok(n) => self.pending.extend(
                    self.frames
                        .push(&buf[..n])
                        .into_iter()
                        .map(|r| r.map_err(|e| e.reason)),
                ),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Close our sending side and collect what the server sends until it closes too. Over
    /// TCP the server closes only after it has processed every packet we sent, so this
    /// returns once they have taken effect; `None` when `deadline` passes first. UDP has no
    /// such signal: `Some(empty)` at once.
    pub fn finish(&mut self, deadline: Instant) -> io::Result<Option<Vec<OscPacket>>> {
        let Some(tcp) = &self.tcp else {
            return Ok(Some(Vec::new()));
        };
        tcp.shutdown(std::net::Shutdown::Write)?;
        let mut received = Vec::new();
        loop {
            match self.recv(deadline) {
                Ok(Some(packet)) => received.push(packet),
                Ok(None) => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {
                    return Ok(Some(received));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

fn decode(bytes: &[u8]) -> io::Result<OscPacket> {
    decoder::decode_udp(bytes)
        .map(|(_, packet)| packet)
        .map_err(|e| io::Error::other(format!("the server sent an undecodable packet: {e}")))
}
