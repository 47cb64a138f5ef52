//! `latentd --audio jack` with the engine on, against a `jackd -d dummy` at 44.1 kHz: the
//! daemon starts (it used to refuse any rate but the model's 48 kHz), says it converts in
//! the callback and how much latency that adds, registers its ports, answers `/status`
//! with the engine's rate (48000: the rate `playhead_s` and `loop_s` are counted in) and
//! the server's period, records what it played at the server's rate, and stops cleanly.
//!
//! Threading: the daemon finds the server through `JACK_DEFAULT_SERVER` set on its own
//! environment only; the test's one JACK server is private to it.

mod common;

use std::time::Duration;

use common::service_fixture::{Daemon, Launch, Osc};
use latentd_tests::JackServer;

const PERIOD: usize = 256;

#[test]
fn the_engine_plays_on_a_44_1_khz_server_converted_in_the_callback() {
    let server = JackServer::start(44_100, PERIOD);
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("played.wav");
    let mut daemon = Daemon::start(
        &dir,
        Launch {
            audio: "jack",
            env: vec![("JACK_DEFAULT_SERVER", server.name().to_owned())],
            args: [
                "--loop-seconds",
                "2",
                "--record",
                record.to_str().unwrap(),
                "--log-level",
                "info",
            ]
            .map(String::from)
            .to_vec(),
            ..Launch::default()
        },
    );

    let line = daemon.wait_line("converting in the callback", Duration::from_secs(20));
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
    daemon.wait_line("playing a loop of 96000 frames", Duration::from_secs(20));
    let osc = Osc::new(daemon.osc_addr(Duration::from_secs(20)));

    let ports = server.list_ports();
    for port in ["latentd:out_1", "latentd:out_2"] {
        assert!(ports.iter().any(|p| p == port), "{port} missing: {ports:?}");
    }
    std::thread::sleep(Duration::from_millis(1500));
    let status = osc.status();
    assert_eq!(status.sample_rate, 48_000, "{status:?}");
    assert_eq!(status.period_frames, PERIOD as i32, "{status:?}");
    assert!((status.loop_s - 2.0).abs() < 1e-3, "{status:?}");
    assert!((0.0..2.0).contains(&status.playhead_s), "{status:?}");

    daemon.signal(libc::SIGINT);
    let stopped = daemon.wait_line("latentd: stopped:", Duration::from_secs(10));
    let counter = |key: &str| -> u64 {
        stopped
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} missing from {stopped:?}"))
            .parse()
            .unwrap()
    };
    assert_eq!(counter("torn_reads"), 0, "{stopped}");
    let exit = daemon
        .wait(Duration::from_secs(5))
        .expect("latentd did not exit after SIGINT");
    assert_eq!(exit.code(), Some(0), "{stopped}");

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
