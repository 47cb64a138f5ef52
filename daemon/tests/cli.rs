//! The `latentd` binary end to end: bad input fails with one line and status 2; the null
//! output plays until SIGINT or SIGTERM and exits 0 within a second with the counters line;
//! `--record` captures exactly the source loop (with `--engine off`), then the fade-out.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Daemon, counter, isolated, wait_timeout, write_float_wav};
use tempfile::TempDir;

/// Run `latentd args`, expect status 2 and exactly one stderr line; return that line.
fn expect_startup_error(dir: &TempDir, args: &[&str]) -> String {
    let mut child = isolated(&mut Command::new(BIN), dir.path())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(10));
    let Some(status) = status else {
        child.kill().unwrap();
        panic!("latentd {args:?} did not exit");
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(2), "latentd {args:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "latentd {args:?} printed {lines:#?}");
    assert!(lines[0].starts_with("latentd: error: "), "{}", lines[0]);
    lines[0].to_string()
}

#[test]
fn bad_inputs_exit_2_with_one_line_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.wav");
    let text = dir.path().join("notes.wav");
    std::fs::write(&text, "not audio at all\n").unwrap();
    let avi = dir.path().join("movie.wav");
    std::fs::write(&avi, b"RIFF\x24\x00\x00\x00AVI LIST\x00\x00\x00\x00").unwrap();
    let empty = dir.path().join("empty.wav");
    write_float_wav(&empty, 2, 48_000, &[]);
    let unknown_key = dir.path().join("unknown.toml");
    std::fs::write(&unknown_key, "[audio]\nbakend = \"null\"\n").unwrap();
    let bad_value = dir.path().join("value.toml");
    std::fs::write(&bad_value, "[audio]\nperiod = 100000\n").unwrap();

    let cases: Vec<(Vec<&str>, Vec<String>)> = vec![
        (
            vec!["--audio", "null", "--source", missing.to_str().unwrap()],
            vec![format!("source {}: no such file", missing.display())],
        ),
        (
            vec!["--audio", "null", "--source", text.to_str().unwrap()],
            vec![format!("source {}: not a WAV file", text.display())],
        ),
        (
            vec!["--audio", "null", "--source", avi.to_str().unwrap()],
            vec![
                format!("source {}: not a WAV file", avi.display()),
                "WAVE".into(),
            ],
        ),
        (
            vec!["--audio", "null", "--source", empty.to_str().unwrap()],
            vec![format!(
                "source {}: holds zero audio frames",
                empty.display()
            )],
        ),
        (
            vec!["--audio", "alsa"],
            vec![
                "'alsa'".into(),
                "--audio".into(),
                "auto, jack, pipewire, null".into(),
            ],
        ),
        (
            vec!["--config", unknown_key.to_str().unwrap()],
            vec!["line 2".into(), "bakend".into(), "`backend`".into()],
        ),
        (
            vec!["--config", bad_value.to_str().unwrap()],
            vec!["config key audio.period = 100000: expected 16..=8192 frames".into()],
        ),
        (
            vec!["--audio", "jack"],
            vec!["latentd: error: jack: ".into()],
        ),
        (
            vec!["--audio", "pipewire"],
            vec!["latentd: error: pipewire: ".into()],
        ),
        (
            vec![
                "--audio",
                "null",
                "--record",
                "/nonexistent-latentd-dir/out.wav",
            ],
            vec!["directory /nonexistent-latentd-dir does not exist".into()],
        ),
        (vec!["--bogus"], vec!["--bogus".into()]),
    ];
    for (args, wanted) in cases {
        let line = expect_startup_error(&dir, &args);
        for w in wanted {
            assert!(line.contains(&w), "latentd {args:?}: {line:?} lacks {w:?}");
        }
    }
}

fn stops_cleanly_on(sig: libc::c_int) {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(
        dir.path(),
        &["--audio", "null", "--period", "256", "--loop-seconds", "1"],
    );
    daemon.wait_for("playing a loop", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    daemon.signal(sig);
    let status = wait_timeout(&mut daemon.child, Duration::from_secs(1))
        .unwrap_or_else(|| panic!("still running 1 s after signal {sig}"));
    assert!(t0.elapsed() < Duration::from_secs(1));
    assert_eq!(status.code(), Some(0));
    let line = daemon.wait_for("latentd: stopped:", Duration::from_secs(1));
    let periods = counter(&line, "periods");
    // About 0.3 s of 256-frame periods at 48 kHz is 56; allow a loaded machine its slack.
    assert!(periods >= 20, "{line}");
    assert_eq!(counter(&line, "frames"), periods * 256, "{line}");
    assert_eq!(counter(&line, "torn_reads"), 0, "{line}");
    assert_eq!(counter(&line, "late_frames"), 0, "{line}");
    counter(&line, "xruns");
}

#[test]
fn sigint_stops_within_a_second_with_the_counters_line() {
    stops_cleanly_on(libc::SIGINT);
}

#[test]
fn sigterm_stops_within_a_second_with_the_counters_line() {
    stops_cleanly_on(libc::SIGTERM);
}

#[test]
fn record_on_null_captures_the_source_loop_sample_exact() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.wav");
    let out = dir.path().join("out.wav");
    let loop_frames = 20_011usize; // about 0.42 s (the engine needs a kept window): laps get recorded
    let samples: Vec<f32> = (0..loop_frames * 2)
        .map(|i| ((i as f32 * 0.0071).sin() * 0.4) + if i % 2 == 0 { 0.01 } else { -0.01 })
        .collect();
    write_float_wav(&source, 2, 48_000, &samples);
    let mut daemon = Daemon::start(
        dir.path(),
        &[
            "--audio",
            "null",
            "--rate",
            "48000",
            "--period",
            "128",
            "--source",
            source.to_str().unwrap(),
            "--record",
            out.to_str().unwrap(),
            // The ring plays the source untouched: what is recorded must be the source.
            "--engine",
            "off",
        ],
    );
    daemon.wait_for("playing a loop", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(1200));
    daemon.signal(libc::SIGINT);
    let status = wait_timeout(&mut daemon.child, Duration::from_secs(1)).expect("exits");
    assert_eq!(status.code(), Some(0));
    let line = daemon.wait_for("latentd: stopped:", Duration::from_secs(1));
    assert_eq!(counter(&line, "record_dropped"), 0, "{line}");

    let mut wav = hound::WavReader::open(&out).unwrap();
    let spec = wav.spec();
    assert_eq!((spec.channels, spec.sample_rate), (2, 48_000));
    assert_eq!(spec.sample_format, hound::SampleFormat::Float);
    let recorded: Vec<f32> = wav.samples::<f32>().map(Result::unwrap).collect();
    let frames = recorded.len() / 2;
    assert_eq!(frames as u64, counter(&line, "frames"), "{line}");
    assert!(frames > 2 * loop_frames, "only {frames} frames recorded");
    // Sample-exact up to the stop, where the output fades to silence (no click): from the
    // first difference on, every sample is the source scaled down, and the last is zero.
    let fade_start = recorded
        .iter()
        .enumerate()
        .position(|(i, &s)| s != samples[i % samples.len()])
        .expect("the stop fades out");
    assert!(
        fade_start > 2 * 2 * loop_frames,
        "differs at sample {fade_start}"
    );
    for (i, &s) in recorded.iter().enumerate().skip(fade_start) {
        let source = samples[i % samples.len()];
        assert!(
            s.abs() <= source.abs() && s * source >= 0.0,
            "sample {i}: {s} vs {source}"
        );
    }
    assert_eq!(recorded[recorded.len() - 2..], [0.0, 0.0]);
}

#[test]
fn auto_falls_back_to_null_when_no_server_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path(), &["--audio", "auto", "--loop-seconds", "1"]);
    let why = daemon.wait_for("audio: auto:", Duration::from_secs(10));
    assert!(why.ends_with("using null"), "{why}");
    daemon.wait_for("playing a loop", Duration::from_secs(10));
    daemon.signal(libc::SIGTERM);
    let status = wait_timeout(&mut daemon.child, Duration::from_secs(1)).expect("exits");
    assert_eq!(status.code(), Some(0));
}
