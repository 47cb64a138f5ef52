//! The hardening limits all at once, bounded in time: the real `latentd` (null output, engine
//! off, a tone as the loop, `--record`, OSCQuery on) under huge-`Content-Length` and slow or
//! idle HTTP clients, a TCP `/notify` subscriber that never reads, idle and byte-a-second TCP
//! OSC connections, a timed-bundle flood, deaf UDP subscribers, `/source` and `/timbre` at
//! bad files (a sparse WAV claiming too long a loop, a 1 Hz WAV, a FIFO) and malformed
//! packets. A well-behaved client measures OSC round trips over UDP and TCP (p99 under
//! 10 ms) and OSCQuery GETs; the daemon's RSS is sampled. At the end it still plays, the
//! recording has no gap, and SIGTERM saves the knob set before the attack. A second test
//! holds docs/operations.md to the OSC schema's packet, address and string limits.
//!
//! Threading: one thread per attacker, stopped by a shared flag; the test thread measures.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use common::hostile::{
    connect_small_window, framed, http_exchange, http_status, percentile, rss_kib,
};
use common::osc_client::{Link, Transport, bundle, msg, s, timetag};
use common::service_fixture::{Daemon, Launch, Osc};
use common::write_float_wav;
use latentd_osc_schema::limits::TCP_MAX_CONNECTIONS;
use latentd_osc_schema::rosc::{OscType, encoder};
use latentd_tests::hostile_files::{mkfifo, write_wav_claiming};
use tempfile::TempDir;

const START: Duration = Duration::from_secs(30);
/// How long the attack runs before the first measurement window closes.
const WINDOW: Duration = Duration::from_secs(8);
/// The round-trip bound the issue sets for other clients.
const P99_LIMIT_MS: f64 = 10.0;
/// How much the daemon's RSS may grow under the attack.
const RSS_GROWTH_LIMIT_KIB: u64 = 64 * 1024;
/// The null output's period in this test.
const PERIOD: usize = 256;

const GET_HOST_INFO: &[u8] = b"GET /?HOST_INFO HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

type Attack = Box<dyn FnOnce(Arc<AtomicBool>) + Send>;

fn attacks(osc: SocketAddr, query: SocketAddr, sent: Arc<AtomicU64>) -> Vec<Attack> {
    let mut all: Vec<Attack> = Vec::new();
    let count = move |n: u64| {
        sent.fetch_add(n, Ordering::Relaxed);
    };
    // HTTP: a huge Content-Length, GET and POST.
    let c = count.clone();
    all.push(Box::new(move |stop| {
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let method = if i.is_multiple_of(2) { "GET" } else { "POST" };
            let raw =
                format!("{method} / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n");
            let _ = http_exchange(query, raw.as_bytes(), Duration::from_secs(2));
            i += 1;
            c(1);
            std::thread::sleep(Duration::from_millis(5));
        }
    }));
    // HTTP: slow (a byte now and then) and idle connections, a few held at a time.
    let c = count.clone();
    all.push(Box::new(move |stop| {
        let mut held: Vec<TcpStream> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            if let Ok(mut stream) = TcpStream::connect(query) {
                let _ = stream.write_all(b"GET / HTTP/1.1\r\n");
                held.push(stream);
                c(1);
            }
            if held.len() > 8 {
                held.remove(0);
            }
            for h in &mut held {
                let _ = h.write_all(b"X");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }));
    // OSC/TCP: a /notify subscriber that never reads (reconnecting when dropped).
    let c = count.clone();
    all.push(Box::new(move |stop| {
        let knobs = framed(&msg("/knobs", vec![]));
        let notify = framed(&msg("/notify", vec![OscType::Int(1)]));
        while !stop.load(Ordering::Relaxed) {
            let mut hog = connect_small_window(osc);
            hog.set_write_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let packet = if n.is_multiple_of(20) {
                    &notify
                } else {
                    &knobs
                };
                if hog.write_all(packet).is_err() {
                    break;
                }
                n += 1;
                c(1);
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }));
    // OSC/TCP: idle connections over the cap, plus byte-a-second ones.
    let c = count.clone();
    all.push(Box::new(move |stop| {
        let mut idle: std::collections::VecDeque<TcpStream> = (0..TCP_MAX_CONNECTIONS)
            .filter_map(|_| TcpStream::connect(osc).ok())
            .collect();
        let mut trickling: Vec<TcpStream> = Vec::new();
        let mut last_byte = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if let Ok(conn) = TcpStream::connect(osc) {
                idle.push_back(conn);
                c(1);
            }
            if idle.len() > 2 * TCP_MAX_CONNECTIONS {
                idle.pop_front();
            }
            if trickling.len() < 8
                && let Ok(mut conn) = TcpStream::connect(osc)
            {
                let _ = conn.write_all(&1000u32.to_be_bytes()[..1]);
                trickling.push(conn);
            }
            if last_byte.elapsed() >= Duration::from_secs(1) {
                last_byte = Instant::now();
                trickling.retain_mut(|t| t.write_all(&[0]).is_ok());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }));
    // OSC/UDP: a flood of timed bundles half an hour ahead from one client.
    let c = count.clone();
    all.push(Box::new(move |stop| {
        let flooder = UdpSocket::bind("127.0.0.1:0").unwrap();
        let later = timetag(SystemTime::now() + Duration::from_secs(1800));
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            let seed = msg("/knob/seed", vec![OscType::Int(i)]);
            let _ = flooder.send_to(&encoder::encode(&bundle(later, vec![seed])).unwrap(), osc);
            i += 1;
            c(1);
            std::thread::sleep(Duration::from_millis(1));
        }
    }));
    // OSC/UDP: subscribers that never read, renewing now and then.
    let c = count.clone();
    all.push(Box::new(move |stop| {
        let deaf: Vec<UdpSocket> = (0..40)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let notify = encoder::encode(&msg("/notify", vec![OscType::Int(1)])).unwrap();
        while !stop.load(Ordering::Relaxed) {
            for u in &deaf {
                let _ = u.send_to(&notify, osc);
                c(1);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }));
    // OSC/UDP: /source and /timbre at bad files inside the media folder.
    let c = count.clone();
    all.push(Box::new(move |stop| {
        let client = Osc::new(osc);
        let mut i = 0usize;
        let asks = [
            ("/source", "long.wav"),
            ("/timbre", "onehz.wav"),
            ("/source", "fifo.wav"),
            ("/timbre", "long.wav"),
            ("/source", "onehz.wav"),
            ("/timbre", "fifo.wav"),
        ];
        while !stop.load(Ordering::Relaxed) {
            let (address, file) = asks[i % asks.len()];
            client.send(address, vec![s(file)]);
            let _ = client.reply("/fail", Duration::from_millis(500));
            i += 1;
            c(1);
            std::thread::sleep(Duration::from_millis(100));
        }
    }));
    // OSC/UDP: malformed packets.
    all.push(Box::new(move |stop| {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let good = encoder::encode(&msg("/knob/denoise", vec![OscType::Float(0.5)])).unwrap();
        let mut i = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let packet: Vec<u8> = match i % 5 {
                0 => good[..good.len() - 3].to_vec(),
                1 => b"#bundle\0\0\0\0\0\0\0\0\x01\xff\xff\xff\xff".to_vec(),
                2 => vec![0xff; 61],
                3 => b"/knob/denoise\0\0\0,f\0\0".to_vec(),
                _ => (0..(i % 97) as u8).collect(),
            };
            let _ = u.send_to(&packet, osc);
            i += 1;
            count(1);
            std::thread::sleep(Duration::from_millis(1));
        }
    }));
    all
}

/// Round trips of a well-behaved client over UDP (from another loopback address, its own
/// quotas) and TCP, and OSCQuery GETs, for `span`; (OSC ms, GET ms), each sorted.
fn measure(
    osc: SocketAddr,
    query: SocketAddr,
    span: Duration,
    daemon: &mut Daemon,
    rss_max: &mut u64,
) -> (Vec<f64>, Vec<f64>) {
    let udp = UdpSocket::bind("127.0.0.3:0").unwrap();
    let mut udp = Link::connect_from(udp, osc);
    let mut tcp = Link::connect(osc, Transport::TcpSlip);
    let (mut osc_ms, mut get_ms) = (Vec::new(), Vec::new());
    let t0 = Instant::now();
    let mut last_get = Instant::now();
    while t0.elapsed() < span {
        let link = if osc_ms.len().is_multiple_of(2) {
            &mut udp
        } else {
            &mut tcp
        };
        let sent = Instant::now();
        link.send(&msg("/version", vec![]));
        link.expect("/version.reply");
        osc_ms.push(sent.elapsed().as_secs_f64() * 1e3);
        if last_get.elapsed() >= Duration::from_millis(200) {
            last_get = Instant::now();
            let answer = http_exchange(query, GET_HOST_INFO, Duration::from_secs(2));
            let answer = answer.unwrap_or_else(|e| panic!("OSCQuery GET unanswered: {e}"));
            assert_eq!(http_status(&answer), Some(200), "{answer:?}");
            get_ms.push(last_get.elapsed().as_secs_f64() * 1e3);
            *rss_max = (*rss_max).max(rss_kib(daemon.pid()));
            assert!(daemon.exited().is_none(), "the daemon exited under load");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    osc_ms.sort_by(f64::total_cmp);
    get_ms.sort_by(f64::total_cmp);
    (osc_ms, get_ms)
}

fn summary(v: &[f64]) -> String {
    format!(
        "n {} p50 {:.2} ms p99 {:.2} ms max {:.1} ms",
        v.len(),
        percentile(v, 0.5),
        percentile(v, 0.99),
        v[v.len() - 1]
    )
}

#[test]
fn under_every_attack_at_once_the_daemon_plays_answers_fast_and_loses_nothing() {
    let dir = TempDir::new().unwrap();
    let media = dir.path().join("media");
    std::fs::create_dir(&media).unwrap();
    write_wav_claiming(&media.join("long.wav"), 1, 8_000, 8, 601 * 8_000, 0, true);
    write_wav_claiming(&media.join("onehz.wav"), 1, 1, 16, 8, 8, false);
    mkfifo(&media.join("fifo.wav"));
    // A tone that never touches zero: a run of zeros in the recording is a gap.
    let rate = 48_000u32;
    let tone: Vec<f32> = (0..2 * rate as usize)
        .flat_map(|i| {
            let v = 0.3 + 0.2 * (i as f32 * 440.0 * std::f32::consts::TAU / rate as f32).sin();
            [v, v]
        })
        .collect();
    let source = media.join("tone.wav");
    write_float_wav(&source, 2, rate, &tone);
    let record = dir.path().join("take.wav");
    let oscquery_port = common::http::free_port();
    let arg = |a: &str| a.to_string();
    let mut daemon = Daemon::start(
        &dir,
        Launch {
            args: vec![
                arg("--engine"),
                arg("off"),
                arg("--rate"),
                rate.to_string(),
                arg("--period"),
                PERIOD.to_string(),
                arg("--media"),
                media.display().to_string(),
                arg("--source"),
                source.display().to_string(),
                arg("--record"),
                record.display().to_string(),
            ],
            oscquery_port,
            ..Launch::default()
        },
    );
    let osc = daemon.osc_addr(START);
    let osc = SocketAddr::from(([127, 0, 0, 1], osc.port()));
    daemon.wait_line("OSCQuery listening on http://", START);
    let query = SocketAddr::from(([127, 0, 0, 1], oscquery_port));
    daemon.wait_line("recording to", START);

    let setter = Osc::new(osc);
    setter.send("/knob/denoise", vec![OscType::Float(0.375)]);
    assert_eq!(setter.knob("denoise"), 0.375);
    let before = setter.status();
    std::thread::sleep(Duration::from_millis(500));
    let rss_before = rss_kib(daemon.pid());

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = attacks(osc, query, sent.clone())
        .into_iter()
        .map(|a| {
            let stop = stop.clone();
            std::thread::spawn(move || a(stop))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut rss_max = rss_before;
    let (mut osc_ms, mut get_ms) = measure(osc, query, WINDOW, &mut daemon, &mut rss_max);
    eprintln!(
        "window 1: OSC {}; GET {}",
        summary(&osc_ms),
        summary(&get_ms)
    );
    if percentile(&osc_ms, 0.99) >= P99_LIMIT_MS {
        // One retry: the machine is shared with other builds.
        (osc_ms, get_ms) = measure(osc, query, WINDOW / 2, &mut daemon, &mut rss_max);
        eprintln!(
            "window 2: OSC {}; GET {}",
            summary(&osc_ms),
            summary(&get_ms)
        );
    }
    let after = setter.status();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let sent = sent.load(Ordering::Relaxed);

    eprintln!(
        "hardening load: {sent} hostile requests/packets; OSC round trips {}; OSCQuery GET {}; \
         RSS {rss_before} KiB before, max {rss_max} KiB (+{} KiB); xruns {} -> {}, output {}",
        summary(&osc_ms),
        summary(&get_ms),
        rss_max.saturating_sub(rss_before),
        before.xruns,
        after.xruns,
        after.output
    );
    assert!(daemon.exited().is_none(), "the daemon crashed");
    assert_eq!(after.output, "running");
    // The null clock counts an xrun each time it falls behind and skips ahead: a gap in time.
    assert_eq!(
        after.xruns, before.xruns,
        "the output fell behind under load"
    );
    assert!(after.playhead_s != before.playhead_s || after.loop_s > 0.0);
    assert!(
        rss_max < rss_before + RSS_GROWTH_LIMIT_KIB,
        "RSS grew from {rss_before} to {rss_max} KiB"
    );
    let p99 = percentile(&osc_ms, 0.99);
    assert!(
        p99 < P99_LIMIT_MS,
        "OSC p99 round trip {p99:.2} ms under load"
    );
    assert_eq!(setter.knob("denoise"), 0.375);

    let (status, took) = daemon.terminate();
    eprintln!("SIGTERM: exit {status:?} in {took:?}");
    assert_eq!(status.code(), Some(0), "{}", daemon.lines().join("\n"));
    assert!(took < Duration::from_secs(1), "exit took {took:?}");
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&daemon.state).unwrap()).unwrap();
    assert_eq!(saved["knobs"]["denoise"], 0.375, "{saved}");

    // The recording: contiguous tone between its first and last sound (the start and the
    // stop may be silent), no run of silence inside longer than one period.
    let reader = hound::WavReader::open(&record).unwrap();
    let channels = usize::from(reader.spec().channels);
    let samples: Vec<f32> = reader.into_samples::<f32>().map(Result::unwrap).collect();
    let silent: Vec<bool> = samples
        .chunks(channels)
        .map(|frame| frame.iter().all(|&v| v == 0.0))
        .collect();
    let first = silent
        .iter()
        .position(|&q| !q)
        .expect("the recording is silent");
    let last = silent.iter().rposition(|&q| !q).unwrap();
    let (mut run, mut longest, mut longest_at) = (0usize, 0usize, 0usize);
    for (i, &q) in silent[first..=last].iter().enumerate() {
        run = if q { run + 1 } else { 0 };
        if run > longest {
            (longest, longest_at) = (run, first + i + 1 - run);
        }
    }
    let frames = silent.len();
    eprintln!(
        "recording: {frames} frames ({:.2} s), sound from frame {first} to {last}, longest \
         silent run inside {longest} frames (at frame {longest_at})",
        frames as f64 / f64::from(rate)
    );
    assert!(
        last - first > rate as usize * 8,
        "only {frames} frames recorded"
    );
    assert!(
        longest <= PERIOD,
        "a gap of {longest} frames at frame {longest_at} of the recording"
    );
}

/// docs/operations.md's OSC transport table also lists the packet, address and string limits
/// of the OSC schema, with their declared values.
#[test]
fn operations_doc_lists_the_packet_limits() {
    let doc = include_str!("../../docs/operations.md");
    let limits = latentd_osc_schema::Limits::default();
    for (name, bytes) in [
        ("packet size", limits.max_packet_bytes),
        ("address length", limits.max_address_bytes),
        ("string argument", limits.max_string_bytes),
    ] {
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| {name} |")))
            .unwrap_or_else(|| panic!("no row {name:?} in docs/operations.md"));
        assert!(row.contains(&format!("| {bytes} bytes |")), "{row}");
    }
}
