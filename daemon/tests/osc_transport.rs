//! The OSC transport over real loopback sockets, with a small in-test knob table as handler:
//! UDP and TCP (size prefix and SLIP) request/reply, patterns, bundles, rate limit,
//! subscriber cap, pushes to two clients, the bad-input table, the allowlist, and independent
//! OSC implementations (liblo's `oscsend`, python-osc through the generated client example).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use latentd::osc::{
    CommandHandler, FrameReader, Framing, FramingMode, OscConfig, OscServer, Peer, ReplyTo,
    Subscribers, encode_frame,
};
use latentd_osc_schema::rosc::{
    OscBundle, OscMessage, OscPacket, OscTime, OscType, decoder, encoder,
};
use latentd_osc_schema::{Command, MediaRoot, Schema, Timed, When, reference_knobs, reply};

type Log = Arc<Mutex<Vec<(Peer, Timed<Vec<Command>>)>>>;

/// A real, minimal command handler: a knob table with echoes to subscribers.
struct KnobTable {
    schema: Arc<Schema>,
    values: Vec<f64>,
    subscribers: Subscribers,
    log: Log,
    epoch: i32,
}

impl CommandHandler for KnobTable {
    fn handle(
        &mut self,
        from: &Peer,
        _reply: &ReplyTo,
        packet: Timed<Vec<Command>>,
    ) -> Vec<OscPacket> {
        self.log.lock().unwrap().push((*from, packet.clone()));
        let mut replies = Vec::new();
        for command in packet.value {
            match command {
                Command::SetKnob { index, value, .. } => {
                    self.values[index] = value;
                    self.subscribers
                        .broadcast(&reply::knob_value(&self.schema.knobs()[index], value));
                }
                Command::QueryKnob { index, .. } => replies.push(reply::knob_value(
                    &self.schema.knobs()[index],
                    self.values[index],
                )),
                Command::QueryKnobs => replies.push(reply::knobs_bundle(
                    self.schema.knobs().iter().zip(self.values.iter().copied()),
                )),
                Command::Prompt { tags, .. } => {
                    self.epoch += 1;
                    replies.push(reply::done("/prompt", vec![OscType::Int(self.epoch)]));
                    self.subscribers
                        .broadcast(&reply::prompt_applied(self.epoch, &tags));
                }
                Command::Sync(id) => replies.push(reply::synced(id)),
                Command::Version => replies.push(reply::version_reply("latentd", "test")),
                other => replies.push(reply::done(&other.address(), vec![])),
            }
        }
        replies
    }
}

struct Harness {
    server: OscServer,
    log: Log,
    subscribers: Subscribers,
    _media: tempfile::TempDir,
}

fn start(config: OscConfig, max_subscribers: usize) -> Harness {
    let media = tempfile::tempdir().unwrap();
    std::fs::write(media.path().join("pad.wav"), b"RIFF").unwrap();
    let schema = Arc::new(
        Schema::new(reference_knobs())
            .unwrap()
            .with_media_root(MediaRoot::new(media.path()).unwrap()),
    );
    let subscribers = Subscribers::new(max_subscribers);
    let log: Log = Arc::default();
    let handler = KnobTable {
        schema: schema.clone(),
        values: reference_knobs().iter().map(|k| k.default).collect(),
        subscribers: subscribers.clone(),
        log: log.clone(),
        epoch: 0,
    };
    let server = OscServer::start(config, schema, subscribers.clone(), handler).unwrap();
    Harness {
        server,
        log,
        subscribers,
        _media: media,
    }
}

fn local() -> OscConfig {
    OscConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..OscConfig::default()
    }
}

fn msg(addr: &str, args: Vec<OscType>) -> OscPacket {
    OscPacket::Message(OscMessage {
        addr: addr.into(),
        args,
    })
}

fn encode(packet: &OscPacket) -> Vec<u8> {
    encoder::encode(packet).unwrap()
}

struct Udp {
    socket: UdpSocket,
    server: SocketAddr,
}

impl Udp {
    fn new(server: SocketAddr) -> Udp {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        Udp { socket, server }
    }

    fn send_bytes(&self, bytes: &[u8]) {
        self.socket.send_to(bytes, self.server).unwrap();
    }

    fn send(&self, packet: &OscPacket) {
        self.send_bytes(&encode(packet));
    }

    fn recv(&self) -> OscPacket {
        let mut buf = vec![0u8; 70_000];
        let (n, _) = self.socket.recv_from(&mut buf).expect("a reply within 2 s");
        decoder::decode_udp(&buf[..n]).unwrap().1
    }

    fn recv_within(&self, timeout: Duration) -> Option<OscPacket> {
        self.socket.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = vec![0u8; 70_000];
        let got = self
            .socket
            .recv_from(&mut buf)
            .ok()
            .map(|(n, _)| decoder::decode_udp(&buf[..n]).unwrap().1);
        self.socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        got
    }

    fn request(&self, packet: &OscPacket) -> OscPacket {
        self.send(packet);
        self.recv()
    }
}

struct Tcp {
    stream: TcpStream,
    framing: Framing,
    reader: FrameReader,
    pending: Vec<Vec<u8>>,
}

impl Tcp {
    fn new(server: SocketAddr, framing: Framing) -> Tcp {
        let stream = TcpStream::connect(server).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        Tcp {
            stream,
            framing,
            reader: FrameReader::new(FramingMode::Fixed(framing), 1 << 20),
            pending: Vec::new(),
        }
    }

    fn send(&mut self, packet: &OscPacket) {
        self.stream
            .write_all(&encode_frame(self.framing, &encode(packet)))
            .unwrap();
    }

    fn recv(&mut self) -> OscPacket {
        while self.pending.is_empty() {
            let mut buf = [0u8; 4096];
            let n = self.stream.read(&mut buf).expect("a reply within 2 s");
            assert!(n > 0, "connection closed");
            for frame in self.reader.push(&buf[..n]) {
                self.pending.push(frame.unwrap());
            }
        }
        decoder::decode_udp(&self.pending.remove(0)).unwrap().1
    }
}

fn knob_float(packet: &OscPacket, address: &str) -> f32 {
    match packet {
        OscPacket::Message(m) if m.addr == address => match m.args.as_slice() {
            [OscType::Float(v)] => *v,
            other => panic!("{address}: unexpected args {other:?}"),
        },
        other => panic!("expected {address}, got {other:?}"),
    }
}

fn expect_fail(packet: &OscPacket, address: &str, reason_part: &str) {
    match packet {
        OscPacket::Message(m) if m.addr == "/fail" => {
            assert_eq!(m.args[0], OscType::String(address.into()), "{m:?}");
            let OscType::String(reason) = &m.args[1] else {
                panic!("{m:?}")
            };
            assert!(
                reason.contains(reason_part),
                "expected {reason_part:?} in {reason:?}"
            );
        }
        other => panic!("expected /fail {address}, got {other:?}"),
    }
}

#[test]
fn udp_set_then_query_and_version() {
    let h = start(local(), 32);
    let client = Udp::new(h.server.udp_addr());
    client.send(&msg("/knob/denoise", vec![OscType::Float(0.75)]));
    let reply = client.request(&msg("/knob/denoise", vec![]));
    assert_eq!(knob_float(&reply, "/knob/denoise"), 0.75);
    let reply = client.request(&msg("/knob/steps", vec![]));
    assert_eq!(reply, msg("/knob/steps", vec![OscType::Int(8)]));
    assert_eq!(
        client.request(&msg("/version", vec![])),
        reply::version_reply("latentd", "test")
    );
    assert_eq!(
        client.request(&msg("/sync", vec![OscType::Int(42)])),
        reply::synced(42)
    );
    assert_eq!(h.server.udp_addr().port(), h.server.tcp_addr().port());
}

#[test]
fn tcp_size_prefix_and_slip_request_reply() {
    let h = start(local(), 32);
    for (framing, value) in [(Framing::SizePrefix, 0.25f32), (Framing::Slip, 0.5)] {
        let mut client = Tcp::new(h.server.tcp_addr(), framing);
        client.send(&msg("/knob/feedback", vec![OscType::Float(value)]));
        client.send(&msg("/knob/feedback", vec![]));
        assert_eq!(
            knob_float(&client.recv(), "/knob/feedback"),
            value,
            "{framing:?}"
        );
        client.send(&msg("/knob/feedback", vec![OscType::Float(9.0)]));
        expect_fail(
            &client.recv(),
            "/knob/feedback",
            "out of range for knob feedback",
        );
    }
    // A value whose encoding contains the SLIP END and ESC bytes survives the escaping.
    let mut client = Tcp::new(h.server.tcp_addr(), Framing::Slip);
    let tricky = f32::from_be_bytes([0x3f, 0xc0, 0xdb, 0x00]); // about 1.5067
    client.send(&msg("/knob/shift", vec![OscType::Float(tricky)]));
    client.send(&msg("/knob/shift", vec![]));
    assert_eq!(knob_float(&client.recv(), "/knob/shift"), tricky);
}

#[test]
fn patterns_expand_and_knobs_replies_with_a_bundle() {
    let h = start(local(), 32);
    let client = Udp::new(h.server.udp_addr());
    client.send(&msg("/knob/ch_g[0-5]", vec![OscType::Int(0)]));
    let OscPacket::Bundle(bundle) = client.request(&msg("/knobs", vec![])) else {
        panic!("/knobs replies with a bundle")
    };
    assert_eq!(bundle.content.len(), reference_knobs().len());
    for i in 0..8 {
        let expected = if i < 6 { 0.0 } else { 1.0 };
        let address = format!("/knob/ch_g{i}");
        let found = bundle
            .content
            .iter()
            .find(|p| matches!(p, OscPacket::Message(m) if m.addr == address))
            .unwrap();
        assert_eq!(knob_float(found, &address), expected);
    }
    let log = h.log.lock().unwrap();
    assert_eq!(
        log[0].1.value.len(),
        6,
        "one pattern, one atomic batch of six commands"
    );
}

#[test]
fn bundles_reach_the_handler_as_one_timed_batch() {
    let h = start(local(), 32);
    let client = Udp::new(h.server.udp_addr());
    let time = OscTime::try_from(std::time::SystemTime::now() + Duration::from_secs(1)).unwrap();
    client.send(&OscPacket::Bundle(OscBundle {
        timetag: time,
        content: vec![
            msg("/knob/ch_g0", vec![OscType::Float(0.0)]),
            msg("/knob/steps", vec![OscType::Int(4)]),
        ],
    }));
    client.send(&OscPacket::Bundle(OscBundle {
        timetag: OscTime {
            seconds: 0,
            fractional: 1,
        },
        content: vec![
            msg("/transport/play", vec![]),
            msg("/sync", vec![OscType::Int(7)]),
        ],
    }));
    assert_eq!(client.recv(), reply::done("/transport/play", vec![]));
    assert_eq!(client.recv(), reply::synced(7));
    let log = h.log.lock().unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].1.when, When::At(time));
    assert_eq!(log[0].1.value.len(), 2);
    assert_eq!(log[1].1.when, When::Immediately);
}

#[test]
fn rate_limit_fails_once_then_drops() {
    let h = start(
        OscConfig {
            rate_per_s: 5.0,
            burst: 5.0,
            ..local()
        },
        32,
    );
    let client = Udp::new(h.server.udp_addr());
    for _ in 0..40 {
        client.send(&msg("/version", vec![]));
    }
    let mut replies = Vec::new();
    while let Some(p) = client.recv_within(Duration::from_millis(300)) {
        replies.push(p);
    }
    let versions = replies
        .iter()
        .filter(|p| **p == reply::version_reply("latentd", "test"))
        .count();
    let fails: Vec<&OscPacket> = replies
        .iter()
        .filter(|p| matches!(p, OscPacket::Message(m) if m.addr == "/fail"))
        .collect();
    assert_eq!(fails.len(), 1, "{replies:?}");
    expect_fail(
        fails[0],
        "#packet",
        "rate limit exceeded (5 packets/s, burst 5)",
    );
    assert!(
        (5..=7).contains(&versions),
        "burst 5 plus refill during the test: {versions}"
    );
    assert!(
        h.server
            .stats()
            .rate_limited
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 30
    );
    // Another client is unaffected.
    let other = Udp::new(h.server.udp_addr());
    assert_eq!(
        other.request(&msg("/version", vec![])),
        reply::version_reply("latentd", "test")
    );
}

#[test]
fn subscriber_cap_and_notify_pushes_to_two_clients() {
    let h = start(local(), 2);
    let a = Udp::new(h.server.udp_addr());
    let mut b = Tcp::new(h.server.tcp_addr(), Framing::Slip);
    let c = Udp::new(h.server.udp_addr());
    assert_eq!(
        a.request(&msg("/notify", vec![OscType::Int(1)])),
        reply::done("/notify", vec![])
    );
    b.send(&msg("/notify", vec![OscType::Int(1)]));
    assert_eq!(b.recv(), reply::done("/notify", vec![]));
    expect_fail(
        &c.request(&msg("/notify", vec![OscType::Int(1)])),
        "/notify",
        "subscriber list is full (2 subscribers)",
    );
    assert_eq!(h.subscribers.len(), 2);

    c.send(&msg("/knob/denoise", vec![OscType::Float(0.125)]));
    assert_eq!(knob_float(&a.recv(), "/knob/denoise"), 0.125);
    assert_eq!(knob_float(&b.recv(), "/knob/denoise"), 0.125);
    assert_eq!(
        c.request(&msg("/prompt", vec![OscType::String("felt piano".into())])),
        reply::done("/prompt", vec![OscType::Int(1)])
    );
    assert_eq!(a.recv(), reply::prompt_applied(1, "felt piano"));
    assert_eq!(b.recv(), reply::prompt_applied(1, "felt piano"));

    assert_eq!(
        a.request(&msg("/notify", vec![OscType::Int(0)])),
        reply::done("/notify", vec![])
    );
    c.send(&msg("/knob/denoise", vec![OscType::Float(0.5)]));
    assert_eq!(knob_float(&b.recv(), "/knob/denoise"), 0.5);
    assert_eq!(
        a.recv_within(Duration::from_millis(200)),
        None,
        "unsubscribed"
    );
    drop(b);
    let deadline = Instant::now() + Duration::from_secs(2);
    while !h.subscribers.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        h.subscribers.len(),
        0,
        "a closed connection leaves the list"
    );
}

#[test]
fn bad_input_gets_a_precise_fail_and_changes_nothing() {
    let h = start(
        OscConfig {
            max_packet_bytes: 4096,
            ..local()
        },
        32,
    );
    let client = Udp::new(h.server.udp_addr());
    let good = encode(&msg("/knob/denoise", vec![OscType::Float(0.9)]));
    let mut wrong_tag = good.clone();
    wrong_tag[17] = b'q';
    let nested = OscPacket::Bundle(OscBundle {
        timetag: OscTime {
            seconds: 0,
            fractional: 1,
        },
        content: vec![OscPacket::Bundle(OscBundle {
            timetag: OscTime {
                seconds: 0,
                fractional: 1,
            },
            content: vec![msg("/knob/denoise", vec![OscType::Float(0.9)])],
        })],
    });
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (
            good[..good.len() - 3].to_vec(),
            "/knob/denoise",
            "truncated packet: the argument of type tag 1 ('f') needs 4 bytes; 1 follow",
        ),
        (wrong_tag, "/knob/denoise", "unknown type tag 'q'"),
        (
            encode(&msg("/knob/denoise", vec![OscType::Float(f32::NAN)])),
            "/knob/denoise",
            "is NaN",
        ),
        (
            encode(&msg(
                "/knob/denoise",
                vec![OscType::Float(f32::NEG_INFINITY)],
            )),
            "/knob/denoise",
            "is infinite",
        ),
        (
            encode(&msg("/knob/denoise", vec![OscType::Float(-0.5)])),
            "/knob/denoise",
            "out of range for knob denoise: accepted [0, 1]",
        ),
        (
            encode(&msg("/knob/denoise", vec![OscType::Bool(false)])),
            "/knob/denoise",
            "got F (false)",
        ),
        (
            encode(&msg("/knob/loudness", vec![OscType::Float(0.9)])),
            "/knob/loudness",
            "unknown knob \"loudness\"",
        ),
        (
            encode(&msg("/whatever", vec![])),
            "/whatever",
            "unknown address",
        ),
        (
            vec![0u8; 5000],
            "#packet",
            "packet larger than the limit of 4096 bytes",
        ),
        (
            encode(&msg("/prompt", vec![OscType::String("y".repeat(3000))])),
            "/prompt",
            "string of 3000 bytes; the limit is 2048",
        ),
        (encode(&nested), "#bundle", "nested bundle"),
        (
            encode(&msg(
                "/timbre",
                vec![OscType::String("../../etc/passwd".into())],
            )),
            "/timbre",
            "outside the media folder",
        ),
        (
            encode(&msg(
                "/structure",
                vec![OscType::String("/etc/passwd".into())],
            )),
            "/structure",
            "outside the media folder",
        ),
    ];
    for (bytes, address, reason) in cases {
        client.send_bytes(&bytes);
        expect_fail(&client.recv(), address, reason);
    }
    let reply = client.request(&msg("/knob/denoise", vec![]));
    assert_eq!(knob_float(&reply, "/knob/denoise"), 0.5, "state unchanged");
    assert_eq!(
        client.request(&msg("/timbre", vec![OscType::String("pad.wav".into())])),
        reply::done("/timbre", vec![])
    );
    assert!(
        h.log
            .lock()
            .unwrap()
            .iter()
            .all(|(_, p)| !p.value.iter().any(|c| matches!(c, Command::SetKnob { .. })))
    );
}

#[test]
fn tcp_oversized_size_prefix_fails_then_closes() {
    let h = start(
        OscConfig {
            max_packet_bytes: 1024,
            ..local()
        },
        32,
    );
    let mut stream = TcpStream::connect(h.server.tcp_addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stream.write_all(&100_000u32.to_be_bytes()).unwrap();
    let mut got = Vec::new();
    stream.read_to_end(&mut got).unwrap();
    let mut reader = FrameReader::new(FramingMode::Fixed(Framing::SizePrefix), 1 << 16);
    let frames = reader.push(&got);
    assert_eq!(frames.len(), 1);
    let packet = decoder::decode_udp(frames[0].as_ref().unwrap()).unwrap().1;
    expect_fail(
        &packet,
        "#packet",
        "packet of 100000 bytes exceeds the limit of 1024 bytes",
    );
}

#[test]
fn allowlist_refuses_peers_outside_it() {
    let h = start(
        OscConfig {
            bind: "0.0.0.0:0".parse().unwrap(),
            allow: vec!["10.0.0.0/8".parse().unwrap()],
            ..OscConfig::default()
        },
        32,
    );
    let port = h.server.udp_addr().port();
    let client = Udp::new(SocketAddr::from(([127, 0, 0, 1], port)));
    client.send(&msg("/version", vec![]));
    assert_eq!(client.recv_within(Duration::from_millis(300)), None);
    assert_eq!(
        h.server
            .stats()
            .refused_peers
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    let open = start(
        OscConfig {
            bind: "0.0.0.0:0".parse().unwrap(),
            allow: vec!["127.0.0.0/8".parse().unwrap()],
            ..OscConfig::default()
        },
        32,
    );
    let client = Udp::new(SocketAddr::from((
        [127, 0, 0, 1],
        open.server.udp_addr().port(),
    )));
    assert_eq!(
        client.request(&msg("/version", vec![])),
        reply::version_reply("latentd", "test")
    );
}

/// liblo's `oscsend` (UDP and TCP, size-prefixed) and python-osc (through the generated
/// client example) talk to the server.
#[test]
fn independent_osc_implementations() {
    let h = start(local(), 32);
    let port = h.server.udp_addr().port().to_string();
    let run = |program: &str, args: &[&str]| {
        let out = std::process::Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    run(
        "oscsend",
        &["127.0.0.1", &port, "/knob/denoise", "f", "0.375"],
    );
    let tcp_url = format!("osc.tcp://127.0.0.1:{port}");
    run("oscsend", &[&tcp_url, "/knob/steps", "i", "12"]);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/osc/latentd_client.py");
    let script = script.to_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut printed = String::new();
    while Instant::now() < deadline {
        printed = run("python3", &[script, "--port", &port, "get", "steps"]);
        if printed.trim() == "/knob/steps 12" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(printed.trim(), "/knob/steps 12");
    assert_eq!(
        run("python3", &[script, "--port", &port, "get", "denoise"]).trim(),
        "/knob/denoise 0.375"
    );
    run(
        "python3",
        &[script, "--port", &port, "set", "denoise", "0.625"],
    );
    let client = Udp::new(h.server.udp_addr());
    assert_eq!(
        knob_float(
            &client.request(&msg("/knob/denoise", vec![])),
            "/knob/denoise"
        ),
        0.625
    );
    let fail = std::process::Command::new("python3")
        .args([script, "--port", &port, "send", "/knob/denoise", "7"])
        .output()
        .unwrap();
    assert!(!fail.status.success());
    assert!(
        String::from_utf8_lossy(&fail.stdout)
            .contains("/fail /knob/denoise value 7 is out of range")
    );
}
