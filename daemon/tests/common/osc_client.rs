//! OSC clients for tests against a running daemon: one [`Link`] over UDP, TCP with a size
//! prefix, or TCP with SLIP; message builders; typed readers of the replies (knob values,
//! `/status.reply`, `/fail`); NTP timetags from wall-clock times.
//!
//! Threading: a link is owned by one test thread; receives wait at most the given limit.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use latentd::osc::{FrameReader, Framing, FramingMode, encode_frame};
use latentd_osc_schema::rosc::{
    OscBundle, OscMessage, OscPacket, OscTime, OscType, decoder, encoder,
};

/// How long a reply may take before a test calls it missing.
pub const REPLY_LIMIT: Duration = Duration::from_secs(5);

/// How a link reaches the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// One datagram per packet.
    Udp,
    /// TCP, OSC 1.0 (int32 size before each packet).
    TcpSizePrefix,
    /// TCP, OSC 1.1 SLIP.
    TcpSlip,
}

enum Socket {
    Udp(UdpSocket, SocketAddr),
    Tcp(TcpStream, Framing, FrameReader),
}

/// One client connection (see the module doc).
pub struct Link {
    socket: Socket,
    received: VecDeque<OscPacket>,
    /// How it reaches the daemon.
    pub transport: Transport,
}

impl Link {
    /// Connect to the daemon's OSC port `addr` over `transport`.
    pub fn connect(addr: SocketAddr, transport: Transport) -> Link {
        let socket = match transport {
            Transport::Udp => {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                Socket::Udp(s, addr)
            }
            Transport::TcpSizePrefix | Transport::TcpSlip => {
                let s = TcpStream::connect(addr).unwrap();
                s.set_nodelay(true).unwrap();
                let framing = if transport == Transport::TcpSlip {
                    Framing::Slip
                } else {
                    Framing::SizePrefix
                };
                Socket::Tcp(
                    s,
                    framing,
                    FrameReader::new(FramingMode::Fixed(framing), 1 << 20),
                )
            }
        };
        Link {
            socket,
            received: VecDeque::new(),
            transport,
        }
    }

    /// A UDP link to `addr` from `socket` (e.g. bound to another loopback address, so that
    /// the daemon counts it as another client).
    pub fn connect_from(socket: UdpSocket, addr: SocketAddr) -> Link {
        Link {
            socket: Socket::Udp(socket, addr),
            received: VecDeque::new(),
            transport: Transport::Udp,
        }
    }

    /// Send raw packet bytes (framed for TCP).
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        match &mut self.socket {
            Socket::Udp(s, to) => {
                s.send_to(bytes, *to).unwrap();
            }
            Socket::Tcp(s, framing, _) => s.write_all(&encode_frame(*framing, bytes)).unwrap(),
        }
    }

    /// Send raw bytes as they are (TCP: no framing added).
    pub fn send_raw_stream(&mut self, bytes: &[u8]) {
        match &mut self.socket {
            Socket::Tcp(s, _, _) => s.write_all(bytes).unwrap(),
            Socket::Udp(..) => panic!("send_raw_stream is for TCP links"),
        }
    }

    /// Encode and send `packet`.
    pub fn send(&mut self, packet: &OscPacket) {
        self.send_bytes(&encoder::encode(packet).unwrap());
    }

    /// The next packet, waiting at most `limit`.
    pub fn recv(&mut self, limit: Duration) -> Option<OscPacket> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(p) = self.received.pop_front() {
                return Some(p);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            let left = left.max(Duration::from_millis(1));
            let mut buf = vec![0u8; 70_000];
            match &mut self.socket {
                Socket::Udp(s, _) => {
                    s.set_read_timeout(Some(left)).unwrap();
                    match s.recv_from(&mut buf) {
                        Ok((n, _)) => self.received.push_back(decode(&buf[..n])),
                        // A signal another test's child or timer delivered to this process.
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => return None,
                    }
                }
                Socket::Tcp(s, _, reader) => {
                    s.set_read_timeout(Some(left)).unwrap();
                    match s.read(&mut buf) {
                        Ok(0) => return None,
                        Ok(n) => {
                            for frame in reader.push(&buf[..n]) {
                                self.received.push_back(decode(&frame.unwrap()));
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => return None,
                    }
                }
            }
        }
    }

    /// The next packet, which must be a message.
    pub fn recv_message(&mut self) -> OscMessage {
        match self.recv(REPLY_LIMIT) {
            Some(OscPacket::Message(m)) => m,
            other => panic!("{:?}: expected a message, got {other:?}", self.transport),
        }
    }

    /// The next packet must be a message to `addr`; returns its arguments.
    pub fn expect(&mut self, addr: &str) -> Vec<OscType> {
        let m = self.recv_message();
        assert_eq!(m.addr, addr, "{:?}: got {m:?}", self.transport);
        m.args
    }

    /// Nothing arrives within `quiet`.
    pub fn expect_silence(&mut self, quiet: Duration) {
        if let Some(p) = self.recv(quiet) {
            panic!("{:?}: expected no reply, got {p:?}", self.transport);
        }
    }

    /// Send `packet` and expect `/fail`; returns (address, reason).
    pub fn fails(&mut self, packet: &OscPacket) -> (String, String) {
        self.send(packet);
        self.expect_fail()
    }

    /// The next packet must be `/fail <address> <reason>`.
    pub fn expect_fail(&mut self) -> (String, String) {
        let args = self.expect("/fail");
        match args.as_slice() {
            [OscType::String(a), OscType::String(r)] => (a.clone(), r.clone()),
            other => panic!("malformed /fail {other:?}"),
        }
    }

    /// Query one knob.
    pub fn knob(&mut self, name: &str) -> f64 {
        let addr = format!("/knob/{name}");
        self.send(&msg(&addr, vec![]));
        number(&self.expect(&addr)[0])
    }

    /// Query every knob (`/knobs`), as (name, value) in reply order.
    pub fn knobs(&mut self) -> Vec<(String, f64)> {
        self.send(&msg("/knobs", vec![]));
        match self.recv(REPLY_LIMIT) {
            Some(OscPacket::Bundle(b)) => bundle_knobs(&b),
            other => panic!("/knobs: expected a bundle, got {other:?}"),
        }
    }

    /// `/status`, parsed.
    pub fn status(&mut self) -> Status {
        self.send(&msg("/status", vec![]));
        Status::parse(&self.expect("/status.reply"))
    }

    /// `/status`, parsed, skipping what arrives before its reply within `limit` (pushes,
    /// late answers).
    pub fn status_among_others(&mut self, limit: Duration) -> Status {
        self.send(&msg("/status", vec![]));
        let end = Instant::now() + limit;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            if let Some(OscPacket::Message(m)) = self.recv(left)
                && m.addr == "/status.reply"
            {
                return Status::parse(&m.args);
            }
        }
        panic!("{:?}: no /status.reply within {limit:?}", self.transport);
    }

    /// The next `/done` or `/fail` naming `address` within `limit` (bundles opened, other
    /// packets skipped).
    pub fn answer(&mut self, address: &str, limit: Duration) -> OscMessage {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let Some(packet) = self.recv(left) else {
                panic!("no /done or /fail {address} within {limit:?}");
            };
            if let Some(m) = done_or_fail(packet, address) {
                return m;
            }
        }
    }
}

fn bundle_knobs(b: &OscBundle) -> Vec<(String, f64)> {
    b.content
        .iter()
        .map(|p| match p {
            OscPacket::Message(m) => {
                assert_eq!(m.args.len(), 1, "{m:?}");
                let name = m.addr.strip_prefix("/knob/").expect("a knob address");
                (name.to_string(), number(&m.args[0]))
            }
            other => panic!("/knobs element {other:?}"),
        })
        .collect()
}

fn decode(bytes: &[u8]) -> OscPacket {
    decoder::decode_udp(bytes).unwrap().1
}

/// An OSC message.
/// The `/done` or `/fail` naming `address` in `packet` (bundles opened), if it holds one.
fn done_or_fail(packet: OscPacket, address: &str) -> Option<OscMessage> {
    let mut queue = vec![packet];
    while let Some(packet) = queue.pop() {
        match packet {
            OscPacket::Bundle(b) => queue.extend(b.content),
            OscPacket::Message(m)
                if (m.addr == "/done" || m.addr == "/fail")
                    && m.args.first() == Some(&OscType::String(address.into())) =>
            {
                return Some(m);
            }
            OscPacket::Message(_) => {}
        }
    }
    None
}

pub fn msg(addr: &str, args: Vec<OscType>) -> OscPacket {
    OscPacket::Message(OscMessage {
        addr: addr.into(),
        args,
    })
}

/// A bundle of `content` at `timetag`.
pub fn bundle(timetag: OscTime, content: Vec<OscPacket>) -> OscPacket {
    OscPacket::Bundle(OscBundle { timetag, content })
}

/// The timetag "immediately".
pub const IMMEDIATELY: OscTime = OscTime {
    seconds: 0,
    fractional: 1,
};

/// `t` as an NTP timetag.
pub fn timetag(t: SystemTime) -> OscTime {
    let since = t.duration_since(UNIX_EPOCH).unwrap();
    OscTime {
        seconds: (since.as_secs() + 2_208_988_800) as u32,
        fractional: ((u64::from(since.subsec_nanos()) << 32) / 1_000_000_000) as u32,
    }
}

/// A string argument.
pub fn s(v: &str) -> OscType {
    OscType::String(v.into())
}

/// A numeric argument as f64.
pub fn number(arg: &OscType) -> f64 {
    match arg {
        OscType::Float(v) => f64::from(*v),
        OscType::Double(v) => *v,
        OscType::Int(v) => f64::from(*v),
        OscType::Long(v) => *v as f64,
        other => panic!("not a number: {other:?}"),
    }
}

/// An int argument.
pub fn int(arg: &OscType) -> i32 {
    match arg {
        OscType::Int(v) => *v,
        other => panic!("not an int: {other:?}"),
    }
}

/// `/status.reply`, field by field.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub backend: String,
    pub sample_rate: i32,
    pub period_frames: i32,
    pub playhead_s: f64,
    pub loop_s: f64,
    pub ticks_per_s: f64,
    pub tick_ms_p50: f64,
    pub lead_s: f64,
    pub xruns: i32,
    pub late_landings: i32,
    pub last_knob_to_ear_ms: f64,
    /// Engine pipeline restarts after caught panics.
    pub engine_restarts: i32,
    /// The output's state: `running`, `lost`, `reconnecting`.
    pub output: String,
    /// Times the output came back after a loss.
    pub output_reconnects: i32,
    /// Per output channel, last period's `(peak_dbfs, rms_dbfs)`.
    pub levels: Vec<(f64, f64)>,
    /// Knobs the playing model cannot honour.
    pub inert_knobs: Vec<String>,
    /// The output's latency to the listener, as its server reports it.
    pub output_latency_ms: f64,
    /// 1 when the callback runs realtime, 0 when not, -1 until checked.
    pub callback_realtime: i32,
}

impl Status {
    /// Parses `/status.reply`'s arguments (panics on any other shape).
    pub fn parse(args: &[OscType]) -> Status {
        // 14 fields, peak and RMS of each of the two output channels, the inert knobs, the
        // output's latency, the callback's scheduling.
        assert_eq!(args.len(), 21, "/status.reply {args:?}");
        let OscType::String(backend) = &args[0] else {
            panic!("backend {:?}", args[0]);
        };
        let float = |i: usize| match &args[i] {
            OscType::Float(v) => f64::from(*v),
            other => panic!("/status.reply field {i}: expected f, got {other:?}"),
        };
        Status {
            backend: backend.clone(),
            sample_rate: int(&args[1]),
            period_frames: int(&args[2]),
            playhead_s: float(3),
            loop_s: float(4),
            ticks_per_s: float(5),
            tick_ms_p50: float(6),
            lead_s: float(7),
            xruns: int(&args[8]),
            late_landings: int(&args[9]),
            last_knob_to_ear_ms: float(10),
            engine_restarts: int(&args[11]),
            output: match &args[12] {
                OscType::String(s) => s.clone(),
                other => panic!("/status.reply field 12: expected s, got {other:?}"),
            },
            output_reconnects: int(&args[13]),
            levels: (14..18)
                .step_by(2)
                .map(|i| (float(i), float(i + 1)))
                .collect(),
            inert_knobs: match &args[18] {
                OscType::String(s) if s.is_empty() => Vec::new(),
                OscType::String(s) => s.split(',').map(String::from).collect(),
                other => panic!("/status.reply field 18: expected s, got {other:?}"),
            },
            output_latency_ms: float(19),
            callback_realtime: int(&args[20]),
        }
    }
}
