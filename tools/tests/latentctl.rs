//! The `latentctl` binary against a real OSC server in-process (the daemon's `OscServer` with
//! a small knob-table handler), over UDP, TCP size-prefix and TCP SLIP: send then query back,
//! `/knobs`, `/status`, `/fail` (exit 1 with the reason), bad words (exit 2), timeouts (exit 3
//! with a clear message), and `watch` printing pushes until SIGINT, then unsubscribing.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use latentd::osc::{CommandHandler, OscConfig, OscServer, Peer, ReplyTo, Subscribers};
use latentd_osc_schema::reply::{self, Level, StatusReport};
use latentd_osc_schema::rosc::{OscPacket, OscType};
use latentd_osc_schema::{Command as Cmd, Schema, Timed, reference_knobs};

/// A real, minimal handler: knob values, prompts with pushes, status, sync.
struct KnobTable {
    schema: Arc<Schema>,
    values: Vec<f64>,
    subscribers: Subscribers,
    epoch: i32,
}

impl CommandHandler for KnobTable {
    fn handle(
        &mut self,
        _from: &Peer,
        _reply: &ReplyTo,
        packet: Timed<Vec<Cmd>>,
    ) -> Vec<OscPacket> {
        let mut replies = Vec::new();
        for command in packet.value {
            match command {
                Cmd::SetKnob { index, value, .. } => {
                    self.values[index] = value;
                    self.subscribers
                        .broadcast(&reply::knob_value(&self.schema.knobs()[index], value));
                }
                Cmd::QueryKnob { index, .. } => replies.push(reply::knob_value(
                    &self.schema.knobs()[index],
                    self.values[index],
                )),
                Cmd::QueryKnobs => replies.push(reply::knobs_bundle(
                    self.schema.knobs().iter().zip(self.values.iter().copied()),
                )),
                Cmd::Prompt { tags, .. } => {
                    self.epoch += 1;
                    replies.push(reply::done("/prompt", vec![OscType::Int(self.epoch)]));
                    self.subscribers
                        .broadcast(&reply::prompt_applied(self.epoch, &tags));
                }
                Cmd::Status => replies.push(reply::status_reply(&StatusReport {
                    backend: "builtin".into(),
                    sample_rate: 48_000,
                    period_frames: 256,
                    playhead_s: 1.5,
                    loop_s: 8.0,
                    ticks_per_s: 20.0,
                    tick_ms_p50: 3.25,
                    lead_s: 0.5,
                    xruns: 2,
                    late_landings: 0,
                    last_knob_to_ear_ms: Some(41.5),
                    engine_restarts: 0,
                    output: "running".into(),
                    output_reconnects: 0,
                    levels: [Level::from_linear(0.5, 0.25), Level::SILENT],
                    inert_knobs: Vec::new(),
                    output_latency_ms: 10.5,
                    callback_realtime: None,
                })),
                Cmd::Sync(id) => replies.push(reply::synced(id)),
                Cmd::Version => replies.push(reply::version_reply("latentd", "test")),
                other => replies.push(reply::done(&other.address(), vec![])),
            }
        }
        replies
    }
}

struct Harness {
    server: OscServer,
    subscribers: Subscribers,
    schema: Arc<Schema>,
}

fn start() -> Harness {
    let schema = Arc::new(Schema::new(reference_knobs()).unwrap());
    let subscribers = Subscribers::new(8);
    let handler = KnobTable {
        schema: schema.clone(),
        values: schema.knobs().iter().map(|k| k.default).collect(),
        subscribers: subscribers.clone(),
        epoch: 0,
    };
    let config = OscConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..OscConfig::default()
    };
    let server = OscServer::start(config, schema.clone(), subscribers.clone(), handler).unwrap();
    Harness {
        server,
        subscribers,
        schema,
    }
}

/// Transport flags: UDP, TCP size-prefix, TCP SLIP.
const TRANSPORTS: [&[&str]; 3] = [&[], &["--tcp"], &["--slip"]];

fn latentctl(port: u16, transport: &[&str], words: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_latentctl"));
    command
        .args(["--port", &port.to_string(), "--timeout", "3"])
        .args(transport)
        .args(words);
    command
}

fn run(port: u16, transport: &[&str], words: &[&str]) -> Output {
    latentctl(port, transport, words).output().unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "status {:?}, stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[test]
fn send_then_query_back_over_each_transport() {
    let h = start();
    let port = h.server.udp_addr().port();
    for (i, transport) in TRANSPORTS.iter().enumerate() {
        let value = format!("0.{}5", i + 1);
        assert_eq!(
            stdout(&run(port, transport, &["send", "/knob/denoise", &value])),
            ""
        );
        assert_eq!(
            stdout(&run(port, transport, &["query", "/knob/denoise"])),
            format!("/knob/denoise {value}\n"),
            "{transport:?}"
        );
        // Integer knobs travel as `i`, the u32 seed as `d`.
        let steps = (10 + i).to_string();
        stdout(&run(port, transport, &["send", "/knob/steps", &steps]));
        assert_eq!(
            stdout(&run(port, transport, &["query", "/knob/steps"])),
            format!("/knob/steps {steps}\n")
        );
    }
    stdout(&run(port, &[], &["send", "/knob/seed", "4000000000"]));
    assert_eq!(
        stdout(&run(port, &["--tcp"], &["query", "/knob/seed"])),
        "/knob/seed 4000000000\n"
    );
    // A pattern sets all eight channel gains; a set through `query` ends at /synced.
    assert_eq!(
        stdout(&run(port, &[], &["query", "/knob/ch_g*", "2.5"])),
        ""
    );
    let all = stdout(&run(port, &["--slip"], &["query", "/knobs"]));
    assert_eq!(all.lines().count(), h.schema.knobs().len());
    assert_eq!(all.matches(" 2.5\n").count(), 8, "{all}");
    assert!(all.contains("/knob/denoise 0.35\n"), "{all}");
    // Asynchronous commands print their /done; explicit types pass through.
    assert_eq!(
        stdout(&run(
            port,
            &["--tcp"],
            &["query", "/prompt", "s:dub, techno"]
        )),
        "/done \"/prompt\" 1\n"
    );
    assert_eq!(
        stdout(&run(port, &[], &["query", "/version"])),
        "/version.reply \"latentd\" \"test\"\n"
    );
}

#[test]
fn status_prints_named_fields() {
    let h = start();
    let port = h.server.udp_addr().port();
    for transport in TRANSPORTS {
        let text = stdout(&run(port, transport, &["status"]));
        assert!(text.contains("backend              builtin\n"), "{text}");
        assert!(text.contains("sample_rate          48000 Hz\n"), "{text}");
        assert!(text.contains("xruns                2\n"), "{text}");
        assert!(text.contains("last_knob_to_ear_ms  41.5 ms\n"), "{text}");
        assert!(
            text.contains("peak_dbfs_1          -6.0206 dBFS\n"),
            "{text}"
        );
        assert!(text.contains("peak_dbfs_2          -120 dBFS\n"), "{text}");
    }
}

#[test]
fn fail_exits_1_with_the_reason() {
    let h = start();
    let port = h.server.udp_addr().port();
    for transport in TRANSPORTS {
        let out = run(port, transport, &["query", "/knob/denoise", "7"]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{transport:?}: {}",
            stderr(&out)
        );
        let text = stderr(&out);
        assert!(
            text.starts_with("latentctl: failed: /knob/denoise: "),
            "{text}"
        );
        assert!(
            text.contains('7') && text.contains('1'),
            "names value and range: {text}"
        );
        // The knob kept its value.
        assert_eq!(
            stdout(&run(port, transport, &["query", "/knob/denoise"])),
            "/knob/denoise 0.5\n"
        );
    }
    // Over TCP, `send` waits until the server applied the message, so it sees the /fail.
    for transport in [&["--tcp"][..], &["--slip"]] {
        let out = run(port, transport, &["send", "/knob/steps", "99"]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).starts_with("latentctl: failed: /knob/steps: "));
    }
    // Over UDP it does not wait.
    assert_eq!(stdout(&run(port, &[], &["send", "/knob/steps", "99"])), "");
    // No media folder configured on this server.
    let out = run(port, &[], &["query", "/timbre", "pad.wav"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("/timbre: "), "{}", stderr(&out));
    // Bad words never reach the server: exit 2 with the argument named.
    let out = run(port, &[], &["send", "/knob/steps", "many"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "latentctl: /knob/steps argument 1 (value): \"many\" is not an integer in int32 range\n"
    );
}

#[test]
fn timeout_and_refused_connections_exit_3_with_a_clear_message() {
    // A UDP socket that never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_latentctl"))
        .args([
            "--port",
            &port.to_string(),
            "--timeout",
            "0.3",
            "query",
            "/version",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        stderr(&out),
        format!(
            "latentctl: no reply from udp://127.0.0.1:{port} within 0.3 s (is latentd running there?)\n"
        )
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    // The datagrams did arrive: it was the reply that was missing.
    let mut buf = [0u8; 256];
    silent
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    assert!(silent.recv(&mut buf).unwrap() > 0);
    drop(silent);

    // Nothing listening on TCP.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let out = run(port, &["--tcp"], &["status"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).starts_with(&format!("latentctl: cannot reach tcp://127.0.0.1:{port}: ")),
        "{}",
        stderr(&out)
    );
    // A bad timeout is a usage error.
    let out = run(port, &[], &["--timeout", "-1", "status"]);
    assert_eq!(out.status.code(), Some(2));
}

/// Lines of a child's stdout, read on a helper thread.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let out = BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn is_timestamp(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 24
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'.'
        && b[23] == b'Z'
        && text[..4].parse::<u32>().is_ok_and(|y| y >= 2024)
}

#[test]
fn watch_prints_pushes_until_interrupted() {
    let h = start();
    let port = h.server.udp_addr().port();
    for transport in [&[][..], &["--tcp"], &["--slip"]] {
        let mut child = latentctl(port, transport, &["watch"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let rx = lines(&mut child);
        wait_until("the subscription", || h.subscribers.len() == 1);

        let denoise = &h.schema.knobs()[h.schema.knob_index("denoise").unwrap()];
        assert_eq!(
            h.subscribers.broadcast(&reply::knob_value(denoise, 0.75)),
            1
        );
        assert_eq!(h.subscribers.broadcast(&reply::prompt_applied(4, "dub")), 1);
        // A push caused by another client's command.
        stdout(&run(port, &[], &["send", "/knob/steps", "3"]));

        let mut seen = Vec::new();
        for expected in [
            "/knob/denoise 0.75",
            "/prompt/applied 4 \"dub\"",
            "/knob/steps 3",
        ] {
            let line = rx
                .recv_timeout(Duration::from_secs(5))
                .unwrap_or_else(|_| panic!("{transport:?}: no line for {expected}; saw {seen:?}"));
            let (at, message) = line.split_once(' ').unwrap();
            assert!(is_timestamp(at), "{line}");
            assert_eq!(message, expected, "{transport:?}");
            seen.push(line);
        }

        // Ctrl-C: the client unsubscribes and exits 0.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
        let status = child.wait().unwrap();
        assert!(status.success(), "{transport:?}: {status:?}");
        wait_until("the unsubscribe", || h.subscribers.is_empty());
    }
}
