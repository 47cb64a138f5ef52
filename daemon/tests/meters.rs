//! Level meters on the real binary (null output, `--engine off`, a known tone as the
//! source): `/notify/meter <hz>` pushes `/meter` at that rate to the clients that asked
//! (UDP and TCP), not to plain `/notify` subscribers; `0` stops them; bad rates get `/fail`;
//! the same levels end `/status.reply` and fill OSCQuery's `/meter`.
//!
//! The source is a 750 Hz sine, exactly 4 cycles per 256-frame period, at 0.5 on the left
//! and 0.25 on the right, so each period's peak and RMS are known: -6.02 / -9.03 dBFS on
//! the left, -12.04 / -15.05 dBFS on the right.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::osc_client::{Link, Transport, msg, number, s};
use common::service_fixture::{Daemon, Launch};
use common::write_float_wav;
use rosc::{OscPacket, OscType};

const RATE: u32 = 48_000;
const PERIOD: usize = 256;
const START: Duration = Duration::from_secs(30);

/// Expected `[peak_1, rms_1, peak_2, rms_2]` in dBFS.
fn expected() -> [f64; 4] {
    let db = |v: f64| 20.0 * v.log10();
    let rms = 1.0 / 2f64.sqrt();
    [db(0.5), db(0.5 * rms), db(0.25), db(0.25 * rms)]
}

fn assert_levels(what: &str, got: &[f64]) {
    let want = expected();
    assert_eq!(got.len(), 4, "{what}: {got:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 0.05, "{what}: {got:?}, expected {want:?}");
    }
}

fn start(dir: &tempfile::TempDir, oscquery_port: u16) -> Daemon {
    let source = dir.path().join("tone.wav");
    let w = std::f64::consts::TAU * 750.0 / f64::from(RATE);
    let samples: Vec<f32> = (0..RATE as usize)
        .flat_map(|i| {
            let v = (w * i as f64).sin();
            [(0.5 * v) as f32, (0.25 * v) as f32]
        })
        .collect();
    write_float_wav(&source, 2, RATE, &samples);
    Daemon::start(
        dir,
        Launch {
            args: [
                "--engine",
                "off",
                "--rate",
                "48000",
                "--period",
                &PERIOD.to_string(),
                "--source",
                &source.display().to_string(),
            ]
            .iter()
            .map(|a| a.to_string())
            .collect(),
            oscquery_port,
            ..Launch::default()
        },
    )
}

/// Every `/meter` that arrives within `span` (other packets are skipped).
fn meters_for(link: &mut Link, span: Duration) -> Vec<Vec<f64>> {
    let end = Instant::now() + span;
    let mut out = Vec::new();
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        if let Some(OscPacket::Message(m)) = link.recv(left)
            && m.addr == "/meter"
        {
            out.push(m.args.iter().map(number).collect());
        }
    }
    out
}

fn http_get(addr: SocketAddr, target: &str) -> serde_json::Value {
    let (head, body) = common::http::exchange(addr, "GET", target);
    assert!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "{head}"
    );
    serde_json::from_str(&body).unwrap()
}

#[test]
fn meters_are_pushed_at_the_asked_rate_and_match_status_and_oscquery() {
    let dir = tempfile::tempdir().unwrap();
    let oscquery_port = common::http::free_port();
    let daemon = start(&dir, oscquery_port);
    let osc = daemon.osc_addr(START);
    daemon.wait_line("OSCQuery listening on http://", START);

    let mut udp = Link::connect(osc, Transport::Udp);
    let mut tcp = Link::connect(osc, Transport::TcpSlip);
    let mut plain = Link::connect(osc, Transport::Udp);
    plain.send(&msg("/notify", vec![OscType::Int(1)]));
    assert_eq!(plain.expect("/done"), vec![s("/notify")]);

    udp.send(&msg("/notify/meter", vec![OscType::Float(20.0)]));
    assert_eq!(udp.expect("/done"), vec![s("/notify/meter")]);
    tcp.send(&msg("/notify/meter", vec![OscType::Int(5)]));
    assert_eq!(tcp.expect("/done"), vec![s("/notify/meter")]);

    // Let the first pushes arrive, then count over two seconds.
    meters_for(&mut udp, Duration::from_millis(200));
    meters_for(&mut tcp, Duration::from_millis(200));
    let (mut fast, mut slow) = (Vec::new(), Vec::new());
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end {
        fast.extend(meters_for(&mut udp, Duration::from_millis(10)));
        slow.extend(meters_for(&mut tcp, Duration::from_millis(10)));
    }
    // 40 and 10 on an idle machine; the lower bounds leave room for a loaded one (two cores
    // shared with builds), the upper ones catch a pusher that ignores the rate.
    assert!(
        (30..=44).contains(&fast.len()),
        "{} /meter at 20 Hz in 2 s",
        fast.len()
    );
    assert!(
        (6..=12).contains(&slow.len()),
        "{} /meter at 5 Hz",
        slow.len()
    );
    for m in fast.iter().chain(&slow) {
        assert_levels("/meter", m);
    }
    // A plain /notify subscriber gets no meters.
    assert!(meters_for(&mut plain, Duration::from_millis(300)).is_empty());

    // The same levels end /status.reply and fill OSCQuery's /meter.
    let status = plain.status();
    let flat: Vec<f64> = status.levels.iter().flat_map(|&(p, r)| [p, r]).collect();
    assert_levels("/status.reply", &flat);
    // The null output's latency to the listener is its period.
    let period_ms = 1000.0 * PERIOD as f64 / f64::from(status.sample_rate);
    assert!(
        (status.output_latency_ms - period_ms).abs() < 1e-3,
        "output_latency_ms {} for a {PERIOD}-frame period",
        status.output_latency_ms
    );
    let query = SocketAddr::from(([127, 0, 0, 1], oscquery_port));
    let node = http_get(query, "/meter");
    assert_eq!(node["ACCESS"], 1, "{node}");
    assert_eq!(node["TYPE"], "ffff", "{node}");
    let values: Vec<f64> = node["VALUE"]
        .as_array()
        .unwrap_or_else(|| panic!("{node}"))
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_levels("OSCQuery /meter", &values);

    // Bad rates are refused and change nothing: no meters for that client.
    let mut other = Link::connect(osc, Transport::Udp);
    for bad in [
        OscType::Float(31.0),
        OscType::Float(0.5),
        OscType::Float(-1.0),
    ] {
        let (address, reason) = other.fails(&msg("/notify/meter", vec![bad.clone()]));
        assert_eq!(address, "/notify/meter");
        assert!(reason.contains("0 (stop) or 1 to 30"), "{bad:?}: {reason}");
    }
    other.expect_silence(Duration::from_millis(300));
    // 0 stops the pushes.
    udp.send(&msg("/notify/meter", vec![OscType::Int(0)]));
    let end = Instant::now() + Duration::from_secs(2);
    loop {
        let m = udp.recv_message();
        if m.addr == "/done" {
            assert_eq!(m.args, vec![s("/notify/meter")]);
            break;
        }
        assert_eq!(m.addr, "/meter");
        assert!(Instant::now() < end, "no /done for /notify/meter 0");
    }
    assert!(meters_for(&mut udp, Duration::from_millis(300)).is_empty());
    // The TCP subscriber still gets its own.
    assert!(!meters_for(&mut tcp, Duration::from_millis(500)).is_empty());
}
