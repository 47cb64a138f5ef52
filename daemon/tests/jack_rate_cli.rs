//! `latentd --audio jack` with the engine on, against a `jackd -d dummy` at 44.1 kHz: the
//! daemon starts (it used to refuse any rate but the model's 48 kHz), says it converts in
//! the callback and how much latency that adds, registers its ports, answers `/status`
//! with the engine's rate (48000: the rate `playhead_s` and `loop_s` are counted in) and
//! the server's period, records what it played at the server's rate, and stops cleanly.
//!
//! Threading: the daemon finds the server through `JACK_DEFAULT_SERVER` set on its own
//! environment only; the test's one JACK server is private to it.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use latentd_tests::JackServer;
use rosc::{OscMessage, OscPacket, OscType, decoder, encoder};

const BIN: &str = env!("CARGO_BIN_EXE_latentd");
const PERIOD: usize = 256;

struct Daemon {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Daemon {
    fn wait_for(&self, needle: &str, limit: Duration) -> String {
        let t0 = Instant::now();
        while let Some(left) = limit.checked_sub(t0.elapsed()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("no stderr line with {needle:?} within {limit:?}");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `/status` over UDP; the reply's arguments.
fn status(osc: &str) -> Vec<OscType> {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let packet = OscPacket::Message(OscMessage {
        addr: "/status".into(),
        args: vec![],
    });
    socket
        .send_to(&encoder::encode(&packet).unwrap(), osc)
        .unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = socket.recv_from(&mut buf).expect("no /status reply");
    match decoder::decode_udp(&buf[..n]).unwrap().1 {
        OscPacket::Message(m) if m.addr == "/status.reply" => m.args,
        other => panic!("unexpected reply {other:?}"),
    }
}

#[test]
fn the_engine_plays_on_a_44_1_khz_server_converted_in_the_callback() {
    let server = JackServer::start(44_100, PERIOD);
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("played.wav");
    let mut child = server
        .command(BIN)
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .env_remove("STATE_DIRECTORY")
        .env_remove("NOTIFY_SOCKET")
        .env("RUST_LOG", "info")
        .args([
            "--audio",
            "jack",
            "--osc",
            "127.0.0.1:0",
            "--oscquery-port",
            "0",
        ])
        .args(["--loop-seconds", "2", "--record", record.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("latentd: {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let daemon = Daemon { child, lines };

    let line = daemon.wait_for("converting in the callback", Duration::from_secs(20));
    assert!(
        line.contains("audio: output at 44100 Hz, engine and ring at 48000 Hz"),
        "{line}"
    );
    let latency: usize = line
        .split('(')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no latency in {line:?}"));
    assert!(latency > 0 && latency < 64, "{line}");
    daemon.wait_for("playing a loop of 96000 frames", Duration::from_secs(20));
    let osc_line = daemon.wait_for("OSC on udp+tcp", Duration::from_secs(20));
    let osc = osc_line
        .split("udp+tcp ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .to_string();

    let ports = server.list_ports();
    for port in ["latentd:out_1", "latentd:out_2"] {
        assert!(ports.iter().any(|p| p == port), "{port} missing: {ports:?}");
    }
    std::thread::sleep(Duration::from_millis(1500));
    let args = status(&osc);
    assert_eq!(args[1], OscType::Int(48_000), "sample_rate: {args:?}");
    assert_eq!(
        args[2],
        OscType::Int(PERIOD as i32),
        "period_frames: {args:?}"
    );
    match (&args[3], &args[4]) {
        (OscType::Float(playhead), OscType::Float(loop_s)) => {
            assert!((*loop_s - 2.0).abs() < 1e-3, "loop_s {loop_s}");
            assert!((0.0..2.0).contains(playhead), "playhead_s {playhead}");
        }
        other => panic!("playhead_s, loop_s: {other:?}"),
    }

    // SAFETY: plain kill(2) on our own child, not reaped yet.
    assert_eq!(
        unsafe { libc::kill(daemon.child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let stopped = daemon.wait_for("latentd: stopped:", Duration::from_secs(10));
    let counter = |key: &str| -> u64 {
        stopped
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} missing from {stopped:?}"))
            .parse()
            .unwrap()
    };
    assert_eq!(counter("torn_reads"), 0, "{stopped}");
    let mut daemon = daemon;
    let status = daemon.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{stopped}");

    // The record tap has what was played: at the server's rate, and the engine's music
    // (not silence) once it had generated its first windows.
    let mut wav = hound::WavReader::open(&record).unwrap();
    assert_eq!(wav.spec().sample_rate, 44_100);
    let samples: Vec<f32> = wav.samples::<f32>().map(Result::unwrap).collect();
    assert!(
        samples.len() / 2 > 44_100,
        "only {} frames",
        samples.len() / 2
    );
    let peak = samples.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(peak > 0.01, "the recording is silent (peak {peak})");
    // Ring frames played vs output frames: the ratio of the rates.
    let ring = counter("frames") as f64;
    let played = (samples.len() / 2) as f64;
    assert!(
        (ring / played - 48_000.0 / 44_100.0).abs() < 0.01,
        "{ring} ring frames for {played} recorded frames"
    );
}
