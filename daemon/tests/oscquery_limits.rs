//! The OSCQuery HTTP server cannot be crashed, stalled or exhausted from the network (issue
//! 11): the real `latentd` binary (null output, engine off) with OSCQuery on a free loopback
//! port, driven by raw `TcpStream`s. Each test states the finding it reproduces; the limits
//! come from `latentd_osc_schema::oscquery_http`, where they are declared once, and
//! `docs_list_every_limit` checks docs/operations.md against them.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::hostile::{
    http_exchange as exchange, http_status as status, read_http_answer as read_answer, rss_kib,
};
use common::service_fixture::{Daemon, Launch, Osc};
use latentd_osc_schema::oscquery_http::{
    IDLE_TIMEOUT, MAX_BODY_BYTES, MAX_CONNECTIONS, MAX_HEAD_BYTES, MAX_HEADERS, MAX_URL_BYTES,
    REFUSAL_LOG_INTERVAL, REQUEST_TIMEOUT,
};
use tempfile::TempDir;

const START: Duration = Duration::from_secs(30);
/// How long a served request may take on this (busy, 2-core) machine.
const ANSWER: Duration = Duration::from_secs(2);

/// A daemon with OSCQuery on a free port of 127.0.0.1 (or of `bind`'s address), with
/// `config` as its config file; returns it with the OSC and OSCQuery loopback addresses.
fn start(dir: &TempDir, bind: &str, config: &str) -> (Daemon, SocketAddr, SocketAddr) {
    let oscquery_port = common::http::free_port();
    let config_path = dir.path().join("latentd.toml");
    std::fs::write(&config_path, config).unwrap();
    let daemon = Daemon::start(
        dir,
        Launch {
            args: vec![
                "--config".into(),
                config_path.display().to_string(),
                "--engine".into(),
                "off".into(),
            ],
            osc_bind: bind.into(),
            oscquery_port,
            ..Launch::default()
        },
    );
    let line = daemon.wait_line("OSCQuery listening on http://", START);
    let bound: SocketAddr = line
        .split("http://")
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let query = SocketAddr::from(([127, 0, 0, 1], bound.port()));
    let osc = SocketAddr::from(([127, 0, 0, 1], daemon.osc_addr(START).port()));
    (daemon, osc, query)
}

/// A daemon on loopback with an empty config.
fn start_local(dir: &TempDir) -> (Daemon, SocketAddr, SocketAddr) {
    start(dir, "127.0.0.1:0", "")
}

/// `GET /?HOST_INFO` on a new connection: its status, or why there is none.
fn host_info(addr: SocketAddr) -> Result<u16, String> {
    let answer = exchange(
        addr,
        b"GET /?HOST_INFO HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ANSWER,
    )?;
    status(&answer).ok_or_else(|| format!("no status in {answer:?}"))
}

fn assert_served(addr: SocketAddr, what: &str) {
    let t0 = Instant::now();
    assert_eq!(host_info(addr), Ok(200), "{what}");
    assert!(t0.elapsed() < ANSWER, "{what}: took {:?}", t0.elapsed());
}

fn assert_alive(daemon: &mut Daemon) {
    assert!(
        daemon.exited().is_none(),
        "the daemon exited: {:?}\n{}",
        daemon.exited(),
        daemon.lines().join("\n")
    );
}

/// Finding: `Content-Length: 99999999999` (GET or POST, no body) aborted the daemon with an
/// allocation failure. Now: 413 at once, the daemon serves on, OSC included.
#[test]
fn a_huge_content_length_is_refused_at_once_without_a_crash() {
    let dir = TempDir::new().unwrap();
    let (mut daemon, osc, query) = start_local(&dir);
    for method in ["GET", "POST"] {
        let raw = format!(
            "{method} /?HOST_INFO HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n"
        );
        let answer = exchange(query, raw.as_bytes(), ANSWER);
        std::thread::sleep(Duration::from_millis(200));
        assert_alive(&mut daemon);
        let answer = answer.unwrap_or_else(|e| panic!("{method}: {e}"));
        assert_eq!(status(&answer), Some(413), "{method}: {answer:?}");
    }
    // Over u64 and not a number: refused the same way, nothing allocated from them.
    for length in ["999999999999999999999999", "12x", "-1"] {
        let raw = format!("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n");
        let answer = exchange(query, raw.as_bytes(), ANSWER).unwrap();
        assert!(
            matches!(status(&answer), Some(400 | 413)),
            "{length}: {answer:?}"
        );
    }
    assert_served(query, "after the refusals");
    assert!(
        Osc::new(osc)
            .ask("/version", vec![], "/version.reply")
            .is_some()
    );
    assert_alive(&mut daemon);
}

/// Finding: a refused peer (outside the allowlist) took the same crashing path. Now: 403, and
/// the daemon serves on.
#[test]
fn a_refused_peer_with_a_huge_content_length_gets_403_without_a_crash() {
    let dir = TempDir::new().unwrap();
    let (mut daemon, _, query) = start(&dir, "0.0.0.0:0", "[osc]\nallowlist = [\"10.0.0.0/8\"]\n");
    for method in ["GET", "POST"] {
        let raw = format!("{method} / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n");
        let answer = exchange(query, raw.as_bytes(), ANSWER);
        std::thread::sleep(Duration::from_millis(200));
        assert_alive(&mut daemon);
        let answer = answer.unwrap_or_else(|e| panic!("{method}: {e}"));
        assert_eq!(status(&answer), Some(403), "{method}: {answer:?}");
    }
    assert_eq!(host_info(query), Ok(403));
    assert_alive(&mut daemon);
}

/// Finding: a large `Content-Length` with no body stalled the single OSCQuery thread for
/// everyone. Now: the large one is refused at once; a small one waiting for its body holds
/// only its own connection, and other clients are served meanwhile.
#[test]
fn a_body_that_never_comes_does_not_hold_up_other_clients() {
    let dir = TempDir::new().unwrap();
    let (mut daemon, _, query) = start_local(&dir);
    // Large enough to take the body-reading path, small enough to allocate.
    let mut large = TcpStream::connect(query).unwrap();
    large
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
        .unwrap();
    let mut small = TcpStream::connect(query).unwrap();
    let within = MAX_BODY_BYTES / 2;
    write!(
        small,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {within}\r\n\r\n"
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    for n in 0..3 {
        assert_served(query, &format!("other client {n}"));
    }
    let answer = read_answer(&mut large, ANSWER).unwrap();
    assert_eq!(status(&answer), Some(413), "{answer:?}");
    // The small one is cut off at the request deadline.
    let answer = read_answer(&mut small, REQUEST_TIMEOUT + ANSWER).unwrap();
    assert_eq!(status(&answer), Some(408), "{answer:?}");
    assert_alive(&mut daemon);
}

/// A client sending a byte at a time, slower than the request deadline allows, is answered
/// 408 and cut off once the deadline passes; others are served meanwhile.
#[test]
fn a_byte_at_a_time_client_is_cut_off_at_the_request_deadline() {
    let dir = TempDir::new().unwrap();
    let (_daemon, _, query) = start_local(&dir);
    let mut slow = TcpStream::connect(query).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(1)))
        .unwrap();
    let request = format!(
        "GET /?HOST_INFO HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(200)
    );
    let t0 = Instant::now();
    let give_up = REQUEST_TIMEOUT + Duration::from_secs(3);
    let mut answer = Vec::new();
    let mut cut = None;
    for (i, byte) in request.bytes().enumerate() {
        if t0.elapsed() > give_up {
            break;
        }
        if slow.write_all(&[byte]).is_err() {
            cut = Some(t0.elapsed());
            break;
        }
        let mut chunk = [0u8; 1024];
        match slow.read(&mut chunk) {
            Ok(0) => {
                cut = Some(t0.elapsed());
                break;
            }
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                cut = Some(t0.elapsed());
                break;
            }
        }
        if i == 10 {
            assert_served(query, "while the slow client dribbles");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let cut = cut.unwrap_or_else(|| panic!("still open after {give_up:?}"));
    assert!(
        cut >= REQUEST_TIMEOUT - Duration::from_millis(200),
        "cut after {cut:?}"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || status(&answer) == Some(408),
        "{answer:?}"
    );
    assert_served(query, "after the slow client");
}

/// Request line and headers are bounded in bytes and in count; the URL has its own bound.
#[test]
fn request_heads_are_bounded_in_bytes_and_fields() {
    let dir = TempDir::new().unwrap();
    let (mut daemon, _, query) = start_local(&dir);
    let long_header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Long: {}\r\n\r\n",
        "a".repeat(4 * MAX_HEAD_BYTES)
    );
    let answer = exchange(query, long_header.as_bytes(), ANSWER).unwrap();
    assert_eq!(status(&answer), Some(431), "{answer:?}");
    let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: y\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    let answer = exchange(query, many.as_bytes(), ANSWER).unwrap();
    assert_eq!(status(&answer), Some(431), "{answer:?}");
    let long_url = format!(
        "GET /knob/{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "a".repeat(MAX_URL_BYTES)
    );
    let answer = exchange(query, long_url.as_bytes(), ANSWER).unwrap();
    assert_eq!(status(&answer), Some(414), "{answer:?}");
    let answer = exchange(query, b"\x00\x01garbage\r\n\r\n", ANSWER).unwrap();
    assert_eq!(status(&answer), Some(400), "{answer:?}");
    let chunked = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffff\r\n";
    let answer = exchange(query, chunked, ANSWER).unwrap();
    assert_eq!(status(&answer), Some(413), "{answer:?}");
    assert_served(query, "after the oversized heads");
    assert_alive(&mut daemon);
}

/// Keep-alive: several requests on one connection, pipelined, each answered in order.
#[test]
fn keep_alive_serves_pipelined_requests_in_order() {
    let dir = TempDir::new().unwrap();
    let (_daemon, _, query) = start_local(&dir);
    let raw = "GET /?HOST_INFO HTTP/1.1\r\nHost: x\r\n\r\n\
               HEAD /knob/denoise HTTP/1.1\r\nHost: x\r\n\r\n\
               GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let answer = exchange(query, raw.as_bytes(), ANSWER).unwrap();
    let statuses: Vec<&str> = answer
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &answer[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["200", "200", "404"], "{answer}");
}

/// Finding: one thread and two fds per connection, no cap. Now: over `MAX_CONNECTIONS` a
/// new connection is answered 503 (or closed) at once; idle connections are closed after
/// `IDLE_TIMEOUT`, and the server serves again.
#[test]
fn connections_over_the_cap_are_refused_at_once_and_idle_ones_time_out() {
    let dir = TempDir::new().unwrap();
    let (mut daemon, _, query) = start_local(&dir);
    let mut idle: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(query).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let over = host_info(query);
    assert!(
        matches!(over, Ok(503)) || over.as_ref().is_err_and(|e| !e.contains("no end")),
        "over the cap: {over:?}"
    );
    assert!(t0.elapsed() < ANSWER, "refusal took {:?}", t0.elapsed());
    // The idle connections are closed by the server.
    std::thread::sleep(IDLE_TIMEOUT + Duration::from_millis(500));
    for (n, stream) in idle.iter_mut().enumerate() {
        let end = read_answer(stream, ANSWER);
        assert_eq!(end, Ok(String::new()), "idle connection {n}");
    }
    assert_served(query, "after the idle connections timed out");
    assert_alive(&mut daemon);
}

/// The open file descriptors of process `pid`.
fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as u64
}

/// Set the soft `RLIMIT_NOFILE` of process `pid`.
fn limit_fds(pid: u32, soft: u64) {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit(2) on our own child, reading into and from valid rlimit structs.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            std::ptr::null(),
            &mut old,
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    let new = libc::rlimit {
        rlim_cur: soft,
        rlim_max: old.rlim_max,
    };
    // SAFETY: as above.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &new,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// Finding: when fds ran out, OSCQuery never recovered. Now: with the daemon out of file
/// descriptors, OSC over UDP keeps answering and, once the idle connections are closed,
/// OSCQuery serves new clients again.
#[test]
fn out_of_file_descriptors_the_server_recovers() {
    let dir = TempDir::new().unwrap();
    let (mut daemon, osc, query) = start_local(&dir);
    assert_served(query, "before");
    let pid = daemon.pid();
    // A few descriptors to spare, far fewer than the connections below.
    limit_fds(pid, open_fds(pid) + 4);
    let hogs: Vec<TcpStream> = (0..MAX_CONNECTIONS / 2)
        .map(|_| TcpStream::connect(query).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let osc = Osc::new(osc);
    for _ in 0..5 {
        assert!(
            osc.ask("/version", vec![], "/version.reply").is_some(),
            "OSC over UDP unanswered while OSCQuery is out of descriptors"
        );
    }
    drop(hogs);
    let end = Instant::now() + Duration::from_secs(5);
    let mut last = host_info(query);
    while last != Ok(200) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
        last = host_info(query);
    }
    assert_eq!(last, Ok(200), "not served again once descriptors were free");
    assert!(
        daemon.has_line("accept failed"),
        "the test never ran the daemon out of descriptors:\n{}",
        daemon.lines().join("\n")
    );
    assert_alive(&mut daemon);
}

/// Refusals are logged at most once per interval; the next line carries the count of the
/// others.
#[test]
fn refusals_are_logged_once_per_interval_with_a_count() {
    let dir = TempDir::new().unwrap();
    let (daemon, _, query) = start_local(&dir);
    let raw = b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n";
    for _ in 0..50 {
        let answer = exchange(query, raw, ANSWER).unwrap();
        assert_eq!(status(&answer), Some(413));
    }
    let refused = |daemon: &Daemon| {
        daemon
            .lines()
            .into_iter()
            .filter(|l| l.contains("OSCQuery: "))
            .filter(|l| l.contains("refus"))
            .collect::<Vec<_>>()
    };
    std::thread::sleep(Duration::from_millis(200));
    let lines = refused(&daemon);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("request body too large (413)"),
        "{lines:#?}"
    );
    let summary = daemon.wait_line(
        "49 more refusal(s) not logged",
        REFUSAL_LOG_INTERVAL + ANSWER,
    );
    assert_eq!(refused(&daemon).len(), 2, "{summary}");
}

/// docs/operations.md lists every limit with its value, in its own "OSCQuery HTTP" table.
#[test]
fn docs_list_every_limit() {
    use latentd_osc_schema::oscquery_http as http;
    let docs = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md"),
    )
    .unwrap();
    let section = docs
        .split("### OSCQuery HTTP")
        .nth(1)
        .expect("docs/operations.md has an \"### OSCQuery HTTP\" table");
    let table: String = section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .collect::<Vec<_>>()
        .join("\n");
    let secs = |d: Duration| {
        if d.subsec_millis() == 0 {
            format!("{} s", d.as_secs())
        } else {
            format!("{} ms", d.as_millis())
        }
    };
    let rows = [
        ("MAX_HEAD_BYTES", format!("{} bytes", http::MAX_HEAD_BYTES)),
        ("MAX_HEADERS", format!("{}", http::MAX_HEADERS)),
        ("MAX_URL_BYTES", format!("{} bytes", http::MAX_URL_BYTES)),
        ("MAX_BODY_BYTES", format!("{} bytes", http::MAX_BODY_BYTES)),
        ("MAX_CONNECTIONS", format!("{}", http::MAX_CONNECTIONS)),
        (
            "MAX_REQUESTS_PER_CONNECTION",
            format!("{}", http::MAX_REQUESTS_PER_CONNECTION),
        ),
        ("IDLE_TIMEOUT", secs(http::IDLE_TIMEOUT)),
        ("REQUEST_TIMEOUT", secs(http::REQUEST_TIMEOUT)),
        ("RESPONSE_TIMEOUT", secs(http::RESPONSE_TIMEOUT)),
        ("ACCEPT_BACKOFF_MIN", secs(http::ACCEPT_BACKOFF_MIN)),
        ("ACCEPT_BACKOFF_MAX", secs(http::ACCEPT_BACKOFF_MAX)),
        ("REFUSAL_LOG_INTERVAL", secs(http::REFUSAL_LOG_INTERVAL)),
    ];
    for (name, value) in rows {
        let row = table
            .lines()
            .find(|l| l.contains(&format!("`{name}`")))
            .unwrap_or_else(|| panic!("no row for {name} in:\n{table}"));
        assert!(row.contains(&format!("| {value} |")), "{name}: {row}");
    }
}

/// Every finding at once, bounded in time: slow, idle and oversized clients hammer OSCQuery
/// while one well-behaved client polls it and another sends OSC over UDP. The daemon stays
/// up, its memory stays put, and both well-behaved clients keep being answered quickly.
#[test]
fn under_all_of_it_at_once_others_are_served_and_memory_stays_bounded() {
    let dir = TempDir::new().unwrap();
    let (mut daemon, osc, query) = start_local(&dir);
    assert_served(query, "before");
    let rss_before = rss_kib(daemon.pid());
    let run = Duration::from_secs(4);
    let stop = Instant::now() + run;
    let attackers: Vec<_> = (0..4)
        .map(|kind| {
            std::thread::spawn(move || {
                let mut held = Vec::new();
                let mut sent = 0u64;
                while Instant::now() < stop {
                    let raw: &[u8] = match kind {
                        0 => b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n",
                        1 => b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                        2 => b"GET / HTTP/1.1\r\n",
                        _ => b"",
                    };
                    if let Ok(mut stream) = TcpStream::connect(query) {
                        let _ = stream.write_all(raw);
                        sent += 1;
                        // Slow and idle clients hold their connections (a few, under the cap).
                        if kind != 0 && held.len() < MAX_CONNECTIONS / 8 {
                            held.push(stream);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(if kind == 0 { 2 } else { 50 }));
                }
                sent
            })
        })
        .collect();
    let udp = Osc::new(osc);
    let (mut http_ms, mut osc_ms) = (Vec::new(), Vec::new());
    while Instant::now() < stop {
        let t0 = Instant::now();
        assert_eq!(host_info(query), Ok(200), "a well-behaved client refused");
        http_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        let t0 = Instant::now();
        assert!(
            udp.ask("/version", vec![], "/version.reply").is_some(),
            "OSC unanswered after {} round trips:\n{}",
            osc_ms.len(),
            daemon.lines().join("\n")
        );
        osc_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        // Well under the OSC server's per-client rate limit.
        std::thread::sleep(Duration::from_millis(5));
    }
    let sent: u64 = attackers.into_iter().map(|a| a.join().unwrap()).sum();
    let rss_after = rss_kib(daemon.pid());
    let p99 = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[(v.len() * 99 / 100).min(v.len() - 1)]
    };
    let (http_p99, osc_p99) = (p99(&mut http_ms), p99(&mut osc_ms));
    eprintln!(
        "{sent} hostile connections in {run:?}; {} GETs, p99 {http_p99:.2} ms; {} OSC round trips, \
         p99 {osc_p99:.2} ms; RSS {rss_before} -> {rss_after} KiB",
        http_ms.len(),
        osc_ms.len()
    );
    assert_alive(&mut daemon);
    // Loose bounds for a busy 2-core machine; the figures above are what to look at.
    assert!(http_p99 < 250.0, "GET p99 {http_p99:.1} ms");
    assert!(osc_p99 < 100.0, "OSC p99 {osc_p99:.1} ms");
    assert!(
        rss_after < rss_before + 32 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
}
