//! One connection to latentd: UDP (the socket is connected to the server, so only its
//! packets arrive and a closed port shows up as "connection refused"), or TCP with OSC 1.0
//! size-prefix or OSC 1.1 SLIP framing.
//!
//! Threading: owned by the main thread.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use latentd_osc_schema::rosc::{OscPacket, decoder, encoder};

/// Largest packet accepted from the server (the server's own limit).
const MAX_PACKET: usize = 64 * 1024;

const END: u8 = 0xC0;
const ESC: u8 = 0xDB;
const ESC_END: u8 = 0xDC;
const ESC_ESC: u8 = 0xDD;

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
    /// TCP bytes received but not yet framed.
    pending: Vec<u8>,
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
            pending: Vec::new(),
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
        let framed = frame(self.transport, &bytes);
        self.tcp.as_mut().expect("TCP link").write_all(&framed)
    }

    /// The next packet from the server, or `None` when `deadline` passes first.
    pub fn recv(&mut self, deadline: Instant) -> io::Result<Option<OscPacket>> {
        loop {
            if let Some(bytes) = self.take_frame()? {
                return decode(&bytes).map(Some);
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
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
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

    /// One complete TCP frame out of `pending`, if there is one.
    fn take_frame(&mut self) -> io::Result<Option<Vec<u8>>> {
        match self.transport {
            Transport::Udp => Ok(None),
            Transport::TcpSizePrefix => {
                if self.pending.len() < 4 {
                    return Ok(None);
                }
                let size =
                    u32::from_be_bytes(self.pending[..4].try_into().expect("4 bytes")) as usize;
                if size > MAX_PACKET {
                    return Err(io::Error::other(format!(
                        "the server sent a frame of {size} bytes (limit {MAX_PACKET})"
                    )));
                }
                if self.pending.len() < 4 + size {
                    return Ok(None);
                }
                let packet = self.pending[4..4 + size].to_vec();
                self.pending.drain(..4 + size);
                Ok(Some(packet))
            }
            Transport::TcpSlip => {
                while let Some(end) = self.pending.iter().position(|&b| b == END) {
                    let raw: Vec<u8> = self.pending.drain(..=end).take(end).collect();
                    if !raw.is_empty() {
                        return unslip(&raw).map(Some);
                    }
                }
                Ok(None)
            }
        }
    }
}

fn decode(bytes: &[u8]) -> io::Result<OscPacket> {
    decoder::decode_udp(bytes)
        .map(|(_, packet)| packet)
        .map_err(|e| io::Error::other(format!("the server sent an undecodable packet: {e}")))
}

/// Frame one encoded packet for `transport` (UDP: unchanged).
pub fn frame(transport: Transport, packet: &[u8]) -> Vec<u8> {
    match transport {
        Transport::Udp => packet.to_vec(),
        Transport::TcpSizePrefix => {
            let mut out = (packet.len() as u32).to_be_bytes().to_vec();
            out.extend_from_slice(packet);
            out
        }
        Transport::TcpSlip => {
            let mut out = vec![END];
            for &b in packet {
                match b {
                    END => out.extend_from_slice(&[ESC, ESC_END]),
                    ESC => out.extend_from_slice(&[ESC, ESC_ESC]),
                    _ => out.push(b),
                }
            }
            out.push(END);
            out
        }
    }
}

fn unslip(raw: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&b) = bytes.next() {
        out.push(match b {
            ESC => match bytes.next() {
                Some(&ESC_END) => END,
                Some(&ESC_ESC) => ESC,
                other => {
                    return Err(io::Error::other(format!(
                        "the server sent a bad SLIP escape (0xDB followed by {other:02x?})"
                    )));
                }
            },
            b => b,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slip_frames_round_trip_with_escapes() {
        let packet = [1, END, 2, ESC, 3];
        let framed = frame(Transport::TcpSlip, &packet);
        assert_eq!(framed, [END, 1, ESC, ESC_END, 2, ESC, ESC_ESC, 3, END]);
        assert_eq!(unslip(&framed[1..framed.len() - 1]).unwrap(), packet);
        assert!(unslip(&[ESC, 7]).is_err());
    }

    #[test]
    fn size_prefix_frames() {
        assert_eq!(frame(Transport::TcpSizePrefix, &[9, 8]), [0, 0, 0, 2, 9, 8]);
    }
}
