//! The OSC transport's limits, each against real sockets on loopback: a TCP subscriber that
//! never reads (nobody stalls, it is dropped), idle and trickling TCP connections (a new
//! client is still served, the log stays short, slow packets and idle connections are
//! closed), UDP subscriptions (they expire unless renewed, the cap frees up), and the timed
//! bundle queue (one client's flood leaves room for another). The findings a client can
//! trigger with the default limits run against the `latentd` binary; the idle timeout and the
//! UDP lease (minutes by default) run against the transport in-process with short values.
//! The last test holds docs/operations.md's "OSC transport" table to the declared limits.
//!
//! The daemon tests take turns (a lock): each starts its own daemon and loads the machine.

mod common;

use latentd_engine::lock::MutexExt;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use common::Daemon;
use common::hostile::{connect_small_window, framed, percentile, rss_kib};
use common::osc_client::{Link, REPLY_LIMIT, Transport, bundle, msg, number, timetag};
use latentd::osc::{CommandHandler, OscConfig, OscServer, Peer, ReplyTo, Subscribers};
use latentd_osc_schema::limits::{
    MAX_SUBSCRIBERS, MAX_TIMED_BUNDLE_HORIZON, MAX_TIMED_BUNDLES, MAX_TIMED_BUNDLES_PER_CLIENT,
    RATE_BURST, RATE_PER_S, REFUSAL_LOG_INTERVAL, TCP_IDLE_TIMEOUT, TCP_MAX_BEHIND,
    TCP_MAX_CONNECTIONS, TCP_OUTBOX_BYTES, TCP_PACKET_TIMEOUT, UDP_SUBSCRIPTION_LEASE,
};
use latentd_osc_schema::rosc::{OscPacket, OscType, encoder};
use latentd_osc_schema::{Command, Schema, Timed, reference_knobs, reply};

static TURN: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    TURN.lock_unpoisoned()
}

/// A daemon on the null output with a 2 s generated loop; its OSC address.
fn start_daemon(dir: &std::path::Path) -> (Daemon, SocketAddr) {
    let state = dir.join("state.json");
    let daemon = Daemon::start(
        dir,
        &[
            "--audio",
            "null",
            "--rate",
            "48000",
            "--period",
            "256",
            "--loop-seconds",
            "2",
            "--state",
            state.to_str().unwrap(),
        ],
    );
    let line = daemon.wait_for("OSC on udp+tcp ", Duration::from_secs(20));
    let addr = line
        .split("OSC on udp+tcp ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (daemon, addr.parse().unwrap())
}

/// True when the daemon closed `stream` within `limit` (reads whatever is still buffered).
fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let t0 = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    while t0.elapsed() < limit {
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

/// Floods `hog` with `/knobs` requests (replies of ~800 bytes each, never read),
/// re-subscribing with `/notify 1` every 20th packet, until `stop` or a failed write;
/// returns the packets sent.
fn hog_until(hog: &mut std::net::TcpStream, stop: &AtomicBool) -> u64 {
    let notify = framed(&msg("/notify", vec![OscType::Int(1)]));
    let knobs = framed(&msg("/knobs", vec![]));
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let packet = if sent.is_multiple_of(20) {
            &notify
        } else {
            &knobs
        };
        if hog.write_all(packet).is_err() {
            break;
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(1));
    }
    sent
}

/// Finding: a TCP `/notify` subscriber that never reads stalled OSC for every client (each
/// push waited up to 500 ms on its socket under the server's locks). Now other clients'
/// round trips stay fast and the subscriber is disconnected once it stays behind.
#[test]
fn a_tcp_subscriber_that_never_reads_stalls_nobody_and_is_dropped() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let (daemon, addr) = start_daemon(dir.path());

    let mut hog = connect_small_window(addr);
    hog.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let (mut hog, stop) = (hog.try_clone().unwrap(), stop.clone());
        std::thread::spawn(move || hog_until(&mut hog, &stop))
    };

    // Another client: a knob set (pushed to the subscriber) and a query, for 6 s.
    let mut other = Link::connect(addr, Transport::Udp);
    let mut rtts_ms = Vec::new();
    let t0 = Instant::now();
    let mut status_answered = 0;
    while t0.elapsed() < Duration::from_secs(6) {
        let value = if rtts_ms.len().is_multiple_of(2) {
            0.25
        } else {
            0.75
        };
        let sent = Instant::now();
        other.send(&msg("/knob/denoise", vec![OscType::Float(value)]));
        let got = other.knob("denoise");
        rtts_ms.push(sent.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(got, f64::from(value));
        if rtts_ms.len().is_multiple_of(200) {
            assert_eq!(other.status().output, "running");
            status_answered += 1;
        }
        // Two packets per round: stay under the rate limit.
        std::thread::sleep(Duration::from_millis(2));
    }
    stop.store(true, Ordering::Relaxed);
    let hog_sent = flood.join().unwrap();
    rtts_ms.sort_by(f64::total_cmp);
    let (p50, p99, max) = (
        percentile(&rtts_ms, 0.5),
        percentile(&rtts_ms, 0.99),
        rtts_ms[rtts_ms.len() - 1],
    );
    eprintln!(
        "other client: {} round trips in 6 s, p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.1} ms; \
         {status_answered} /status answered; the subscriber sent {hog_sent} packets",
        rtts_ms.len()
    );
    assert!(
        p99 < 100.0 && max < 400.0,
        "round trips stalled behind the subscriber: p99 {p99:.1} ms, max {max:.1} ms"
    );
    assert!(rtts_ms.len() > 500, "only {} round trips", rtts_ms.len());
    let line = daemon.wait_for("is not reading", Duration::from_secs(5));
    assert!(line.contains("closing tcp://"), "{line}");
    assert!(
        closed_within(&mut hog, Duration::from_secs(5)),
        "the subscriber that never reads is still connected"
    );
}

/// Finding: 64 idle or byte-a-second TCP connections locked out every new TCP client, each
/// refusal logged. Now a new client evicts the longest-idle connection and is served, the log
/// has one line per interval, and a packet trickled byte by byte is cut off at its deadline.
#[test]
fn idle_and_trickling_connections_do_not_lock_out_new_clients() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let (daemon, addr) = start_daemon(dir.path());

    let mut held: Vec<TcpStream> = (0..TCP_MAX_CONNECTIONS - 4)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    // Four more that announce a 1000-byte packet and send it one byte per 250 ms.
    let stop = Arc::new(AtomicBool::new(false));
    let trickles: Vec<_> = (0..4)
        .map(|_| {
            let (mut s, stop) = (TcpStream::connect(addr).unwrap(), stop.clone());
            std::thread::spawn(move || {
                let t0 = Instant::now();
                let mut packet = 1000u32.to_be_bytes().to_vec();
                packet.resize(1004, 0);
                for byte in packet {
                    if stop.load(Ordering::Relaxed) || s.write_all(&[byte]).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
                t0.elapsed()
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));

    // New clients, more than the cap, one after the other: each is served.
    let mut newcomers = Vec::new();
    for i in 0..TCP_MAX_CONNECTIONS / 2 {
        let mut link = Link::connect(addr, Transport::TcpSizePrefix);
        link.send(&msg("/version", vec![]));
        match link.recv(Duration::from_secs(2)) {
            Some(OscPacket::Message(m)) => assert_eq!(m.addr, "/version.reply"),
            other => panic!("new client {i} was not served: {other:?}"),
        }
        newcomers.push(link);
    }
    let lines = daemon.lines_until_quiet(Duration::from_millis(500), Duration::from_secs(3));
    let cap_lines: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("OSC TCP:") && l.contains("connections open"))
        .collect();
    assert!(
        !cap_lines.is_empty() && cap_lines.len() <= 2,
        "expected one (rate-limited) line about the connection cap, got {cap_lines:#?}"
    );
    // The connections evicted first were the oldest idle ones.
    assert!(
        closed_within(&mut held[0], Duration::from_secs(2)),
        "the longest-idle connection is still open"
    );

    // The trickling senders are cut off at the packet deadline.
    let cutoff = TCP_PACKET_TIMEOUT + Duration::from_secs(3);
    let stopper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(cutoff + Duration::from_secs(1));
            stop.store(true, Ordering::Relaxed);
        })
    };
    for t in trickles {
        let ran = t.join().unwrap();
        assert!(
            ran < cutoff,
            "a byte-a-250-ms packet kept its connection for {ran:?} (deadline {TCP_PACKET_TIMEOUT:?})"
        );
    }
    stop.store(true, Ordering::Relaxed);
    drop(stopper);
    // Everyone still served afterwards.
    let mut late = Link::connect(addr, Transport::TcpSlip);
    assert_eq!(late.status().output, "running");
    drop(held);
}

/// A packet trickled in after its first byte is cut off at the packet deadline, logged once.
#[test]
fn a_packet_that_does_not_complete_in_time_closes_its_connection() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let (daemon, addr) = start_daemon(dir.path());
    let mut slow = TcpStream::connect(addr).unwrap();
    // A complete packet first: answered.
    slow.write_all(&framed(&msg("/version", vec![]))).unwrap();
    let packet = framed(&msg("/status", vec![]));
    slow.write_all(&packet[..3]).unwrap();
    let t0 = Instant::now();
    let mut buf = [0u8; 4096];
    let mut closed = None;
    let mut next_byte = 3;
    while t0.elapsed() < TCP_PACKET_TIMEOUT + Duration::from_secs(3) {
        slow.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        match slow.read(&mut buf) {
            Ok(0) => {
                closed = Some(t0.elapsed());
                break;
            }
            Err(e) if !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                closed = Some(t0.elapsed());
                break;
            }
            _ => {}
        }
        // One more byte every 500 ms, never the last one.
        if next_byte < packet.len() - 1 && slow.write_all(&packet[next_byte..=next_byte]).is_ok() {
            next_byte += 1;
        }
    }
    let closed = closed.expect("a packet trickled in for 8 s kept its connection open");
    assert!(
        closed >= TCP_PACKET_TIMEOUT - Duration::from_millis(200),
        "closed after {closed:?}, before the deadline"
    );
    let line = daemon.wait_for("was not complete", Duration::from_secs(2));
    assert!(line.contains("closing tcp://"), "{line}");
}

/// A minimal handler: every command is answered `/done <address>`.
struct Done;

impl CommandHandler for Done {
    fn handle(&mut self, _: &Peer, _: &ReplyTo, packet: Timed<Vec<Command>>) -> Vec<OscPacket> {
        packet
            .value
            .iter()
            .map(|c| reply::done(&c.address(), vec![]))
            .collect()
    }
}

fn in_process(config: OscConfig, subscribers: Subscribers) -> OscServer {
    let schema = Arc::new(Schema::new(reference_knobs()).unwrap());
    OscServer::start(
        OscConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            ..config
        },
        schema,
        subscribers,
        Done,
    )
    .unwrap()
}

/// A connection that completes no packet within the idle timeout is closed; one that sends
/// now and then stays open.
#[test]
fn an_idle_tcp_connection_is_closed() {
    let idle = Duration::from_millis(600);
    let server = in_process(
        OscConfig {
            tcp_idle_timeout: idle,
            ..OscConfig::default()
        },
        Subscribers::default(),
    );
    let mut quiet = TcpStream::connect(server.tcp_addr()).unwrap();
    let mut busy = Link::connect(server.tcp_addr(), Transport::TcpSizePrefix);
    let t0 = Instant::now();
    while t0.elapsed() < idle * 3 {
        busy.send(&msg("/sync", vec![OscType::Int(1)]));
        assert_eq!(busy.recv_message().addr, "/done");
        std::thread::sleep(idle / 4);
    }
    assert!(
        closed_within(&mut quiet, Duration::from_millis(10)),
        "an idle connection outlived the idle timeout of {idle:?}"
    );
    busy.send(&msg("/sync", vec![OscType::Int(2)]));
    assert_eq!(busy.recv_message().addr, "/done");
    assert!(server.stats().tcp_closed_by_limit.load(Ordering::Relaxed) >= 1);
}

/// Finding: UDP subscribers never expired, so stale ones filled the list for good. A lease
/// now ends them unless `/notify 1` renews it.
#[test]
fn udp_subscriptions_expire_unless_renewed() {
    let lease = Duration::from_millis(800);
    let subscribers = Subscribers::with_udp_lease(2, lease);
    let server = in_process(OscConfig::default(), subscribers.clone());
    let mut renewing = Link::connect(server.udp_addr(), Transport::Udp);
    let mut stale = Link::connect(server.udp_addr(), Transport::Udp);
    let mut late = Link::connect(server.udp_addr(), Transport::Udp);
    let notify = msg("/notify", vec![OscType::Int(1)]);
    for link in [&mut renewing, &mut stale] {
        link.send(&notify);
        assert_eq!(link.expect("/done")[0], OscType::String("/notify".into()));
    }
    late.send(&notify);
    let (_, reason) = late.expect_fail();
    assert!(
        reason.contains("subscriber list is full (2 subscribers)"),
        "{reason}"
    );

    let t0 = Instant::now();
    while t0.elapsed() < lease + lease / 2 {
        std::thread::sleep(lease / 4);
        renewing.send(&notify);
        renewing.expect("/done");
    }
    assert_eq!(
        subscribers.len(),
        1,
        "the stale UDP subscription did not expire"
    );
    assert_eq!(
        subscribers.broadcast(&msg("/knob/denoise", vec![OscType::Float(0.5)])),
        1
    );
    assert_eq!(renewing.expect("/knob/denoise"), vec![OscType::Float(0.5)]);
    stale.expect_silence(Duration::from_millis(200));
    // Its place is free again.
    late.send(&notify);
    late.expect("/done");
}

/// Finding: one client could fill the shared timed-bundle queue, refusing everyone else's
/// bundles for up to an hour. A per-client quota now refuses its bundles beyond the quota
/// (`/fail` naming it) while another client's bundle is scheduled and applied.
#[test]
fn one_client_cannot_fill_the_timed_bundle_queue() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let (_daemon, addr) = start_daemon(dir.path());
    let flooder = UdpSocket::bind("127.0.0.1:0").unwrap();
    flooder
        .set_read_timeout(Some(Duration::from_millis(1)))
        .unwrap();
    let later = timetag(SystemTime::now() + Duration::from_secs(1800));
    let mut fails = Vec::new();
    let mut buf = vec![0u8; 4096];
    for i in 0..MAX_TIMED_BUNDLES + 8 {
        let seed = msg("/knob/seed", vec![OscType::Int(i as i32)]);
        let packet = encoder::encode(&bundle(later, vec![seed])).unwrap();
        flooder.send_to(&packet, addr).unwrap();
        // Under the rate limit; collect replies as they come.
        std::thread::sleep(Duration::from_micros(800));
        while let Ok((n, _)) = flooder.recv_from(&mut buf) {
            fails.push(
                latentd_osc_schema::rosc::decoder::decode_udp(&buf[..n])
                    .unwrap()
                    .1,
            );
        }
    }
    flooder
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    while let Ok((n, _)) = flooder.recv_from(&mut buf) {
        fails.push(
            latentd_osc_schema::rosc::decoder::decode_udp(&buf[..n])
                .unwrap()
                .1,
        );
    }
    let reasons: Vec<String> = fails
        .iter()
        .map(|p| match p {
            OscPacket::Message(m) if m.addr == "/fail" => format!("{:?}", m.args),
            other => panic!("unexpected reply to a timed bundle: {other:?}"),
        })
        .collect();
    assert!(
        reasons.len() >= MAX_TIMED_BUNDLES + 8 - MAX_TIMED_BUNDLES_PER_CLIENT,
        "{} of {} bundles refused",
        reasons.len(),
        MAX_TIMED_BUNDLES + 8
    );
    let quota = format!("the limit per client is {MAX_TIMED_BUNDLES_PER_CLIENT}");
    assert!(reasons.iter().all(|r| r.contains(&quota)), "{reasons:?}");

    // Another client (another address on loopback) still gets its bundle applied.
    let mut other = UdpSocket::bind("127.0.0.2:0").unwrap();
    let soon = timetag(SystemTime::now() + Duration::from_millis(300));
    let set = msg("/knob/denoise", vec![OscType::Float(0.75)]);
    other
        .send_to(&encoder::encode(&bundle(soon, vec![set])).unwrap(), addr)
        .unwrap();
    other
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    if let Ok((n, _)) = other.recv_from(&mut buf) {
        let reply = latentd_osc_schema::rosc::decoder::decode_udp(&buf[..n])
            .unwrap()
            .1;
        panic!("the other client's timed bundle was refused: {reply:?}");
    }
    assert_eq!(query_denoise(&mut other, addr), 0.75);
}

fn query_denoise(socket: &mut UdpSocket, addr: SocketAddr) -> f64 {
    let query = encoder::encode(&msg("/knob/denoise", vec![])).unwrap();
    socket.send_to(&query, addr).unwrap();
    socket.set_read_timeout(Some(REPLY_LIMIT)).unwrap();
    let mut buf = [0u8; 1024];
    let (n, _) = socket.recv_from(&mut buf).unwrap();
    match latentd_osc_schema::rosc::decoder::decode_udp(&buf[..n])
        .unwrap()
        .1
    {
        OscPacket::Message(m) if m.addr == "/knob/denoise" => number(&m.args[0]),
        other => panic!("{other:?}"),
    }
}

/// docs/operations.md lists every OSC transport limit with its declared value.
#[test]
fn operations_doc_lists_every_transport_limit() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/operations.md"
    ))
    .unwrap();
    let table: String = doc
        .split("### OSC transport")
        .nth(1)
        .expect("docs/operations.md has a \"### OSC transport\" table under Limits")
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .collect::<Vec<_>>()
        .join("\n");
    let secs = |d: Duration| format!("{} s", d.as_secs_f64());
    let rows = [
        ("TCP connections", TCP_MAX_CONNECTIONS.to_string()),
        ("TCP idle timeout", secs(TCP_IDLE_TIMEOUT)),
        ("TCP packet timeout", secs(TCP_PACKET_TIMEOUT)),
        ("TCP outbox", format!("{TCP_OUTBOX_BYTES} bytes")),
        ("TCP behind", secs(TCP_MAX_BEHIND)),
        ("refusal log", secs(REFUSAL_LOG_INTERVAL)),
        ("subscribers", MAX_SUBSCRIBERS.to_string()),
        ("UDP subscription lease", secs(UDP_SUBSCRIPTION_LEASE)),
        (
            "rate",
            format!("{RATE_PER_S} packets/s, burst {RATE_BURST}"),
        ),
        ("timed bundles", MAX_TIMED_BUNDLES.to_string()),
        (
            "timed bundles per client",
            MAX_TIMED_BUNDLES_PER_CLIENT.to_string(),
        ),
        ("timed bundle horizon", secs(MAX_TIMED_BUNDLE_HORIZON)),
    ];
    for (name, value) in rows {
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("| {name} |")))
            .unwrap_or_else(|| panic!("no row \"{name}\" in the OSC transport table:\n{table}"));
        assert!(
            row.contains(&format!("| {value} |")),
            "row {name:?} should say {value:?}: {row}"
        );
    }
}

/// Every finding at once, for 8 s: a never-reading subscriber (reconnecting when dropped),
/// 64 idle connections plus a stream of new ones, trickling packets, a timed-bundle flood
/// and 40 UDP subscribers that never read. Clients on other addresses keep round trips
/// under 10 ms p99 over UDP and TCP, their timed bundle applies, the daemon keeps playing
/// and its memory stays bounded.
#[test]
fn all_osc_attacks_at_once_leave_other_clients_fast() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let (daemon, addr) = start_daemon(dir.path());
    let pid = daemon.child.id();
    // Settled: the engine has allocated what it keeps.
    Link::connect(addr, Transport::Udp).status();
    std::thread::sleep(Duration::from_secs(1));
    let rss_before = rss_kib(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let mut attackers = Vec::new();
    let spawn = |attackers: &mut Vec<std::thread::JoinHandle<()>>, f: Box<dyn FnOnce() + Send>| {
        attackers.push(std::thread::spawn(f));
    };

    let s = stop.clone();
    spawn(
        &mut attackers,
        Box::new(move || {
            while !s.load(Ordering::Relaxed) {
                let mut hog = connect_small_window(addr);
                hog.set_write_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                hog_until(&mut hog, &s);
            }
        }),
    );
    let s = stop.clone();
    spawn(
        &mut attackers,
        Box::new(move || {
            let mut idle: std::collections::VecDeque<TcpStream> = (0..TCP_MAX_CONNECTIONS)
                .filter_map(|_| TcpStream::connect(addr).ok())
                .collect();
            while !s.load(Ordering::Relaxed) {
                if let Ok(c) = TcpStream::connect(addr) {
                    idle.push_back(c);
                }
                if idle.len() > 2 * TCP_MAX_CONNECTIONS {
                    idle.pop_front();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }),
    );
    for _ in 0..4 {
        let s = stop.clone();
        spawn(
            &mut attackers,
            Box::new(move || {
                while !s.load(Ordering::Relaxed) {
                    let Ok(mut c) = TcpStream::connect(addr) else {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    };
                    let mut packet = 1000u32.to_be_bytes().to_vec();
                    packet.resize(1004, 0);
                    for byte in packet {
                        if s.load(Ordering::Relaxed) || c.write_all(&[byte]).is_err() {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(250));
                    }
                }
            }),
        );
    }
    let s = stop.clone();
    spawn(
        &mut attackers,
        Box::new(move || {
            let flooder = UdpSocket::bind("127.0.0.1:0").unwrap();
            let later = timetag(SystemTime::now() + Duration::from_secs(1800));
            let mut i = 0;
            while !s.load(Ordering::Relaxed) {
                let seed = msg("/knob/seed", vec![OscType::Int(i)]);
                let packet = encoder::encode(&bundle(later, vec![seed])).unwrap();
                let _ = flooder.send_to(&packet, addr);
                i += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
        }),
    );
    let deaf: Vec<UdpSocket> = (0..40)
        .map(|_| {
            let u = UdpSocket::bind("127.0.0.1:0").unwrap();
            let notify = encoder::encode(&msg("/notify", vec![OscType::Int(1)])).unwrap();
            u.send_to(&notify, addr).unwrap();
            u
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));

    // The clients that must not notice, on another loopback address (their own quotas).
    let mut udp = UdpSocket::bind("127.0.0.3:0").unwrap();
    udp.set_read_timeout(Some(REPLY_LIMIT)).unwrap();
    let mut tcp = Link::connect(addr, Transport::TcpSlip);
    let mut rtts_ms = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(8) {
        let value = if rtts_ms.len().is_multiple_of(2) {
            0.25
        } else {
            0.5
        };
        let sent = Instant::now();
        if rtts_ms.len().is_multiple_of(2) {
            let set = msg("/knob/denoise", vec![OscType::Float(value)]);
            udp.send_to(&encoder::encode(&set).unwrap(), addr).unwrap();
            assert_eq!(query_denoise(&mut udp, addr), f64::from(value));
        } else {
            tcp.send(&msg("/knob/denoise", vec![OscType::Float(value)]));
            assert_eq!(tcp.knob("denoise"), f64::from(value));
        }
        rtts_ms.push(sent.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(2));
    }
    // Their timed bundle still finds room.
    let soon = timetag(SystemTime::now() + Duration::from_millis(200));
    let set = msg("/knob/denoise", vec![OscType::Float(0.875)]);
    udp.send_to(&encoder::encode(&bundle(soon, vec![set])).unwrap(), addr)
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(query_denoise(&mut udp, addr), 0.875);
    let status = tcp.status();
    stop.store(true, Ordering::Relaxed);
    let rss_after = rss_kib(pid);
    for a in attackers {
        a.join().unwrap();
    }
    drop(deaf);

    rtts_ms.sort_by(f64::total_cmp);
    let (p50, p99, max) = (
        percentile(&rtts_ms, 0.5),
        percentile(&rtts_ms, 0.99),
        rtts_ms[rtts_ms.len() - 1],
    );
    eprintln!(
        "under all attacks: {} round trips in 8 s, p50 {p50:.2} ms, p99 {p99:.2} ms, max \
         {max:.1} ms; RSS {rss_before} -> {rss_after} KiB; status {status:?}",
        rtts_ms.len()
    );
    assert!(p99 < 10.0, "p99 round trip {p99:.2} ms under attack");
    assert_eq!(status.output, "running");
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    assert!(daemon_alive(&daemon));
}

fn daemon_alive(daemon: &Daemon) -> bool {
    // SAFETY: signal 0 only checks that our child exists.
    unsafe { libc::kill(daemon.child.id() as libc::pid_t, 0) == 0 }
}
