//! Every file the `latentd` binary reads is bounded before it is read: a FIFO, a
//! device, a directory, a huge file, a WAV whose header claims too long a loop or a 1 Hz rate,
//! given at start (flag or config), from the saved state or over OSC. At start: one
//! `latentd: error:` line and exit 2 at once (never a hang); from the state: that item is
//! logged and skipped, the rest restored; over OSC: `/fail <address> <reason>` at once.
//! Knob and prompt values from the config and the state are checked the way OSC checks them.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::osc_client::{Link, Transport, msg, s};
use common::{BIN, Daemon, isolated, run_to_exit, write_float_wav};
use latentd_tests::hostile_files::{mkfifo, write_wav_claiming};

/// Run `latentd args`; it must exit 2 within 5 s printing exactly one `latentd: error:` line,
/// which is returned.
fn expect_startup_error(dir: &Path, args: &[&str]) -> String {
    let (code, stderr) = run_to_exit(dir, args, Duration::from_secs(5));
    assert_eq!(code, Some(2), "latentd {args:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "latentd {args:?} printed {lines:#?}");
    assert!(lines[0].starts_with("latentd: error: "), "{}", lines[0]);
    lines[0].to_string()
}

/// Run `latentd check-config file`; returns its status and output.
fn check_config(dir: &Path, file: &Path) -> std::process::Output {
    isolated(&mut Command::new(BIN), dir)
        .arg("check-config")
        .arg(file)
        .output()
        .unwrap()
}

/// 601 s of 8-bit mono at 8 kHz (sparse), and the report's 52-byte 1 Hz WAV.
fn write_bad_wavs(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let long = dir.join("long.wav");
    write_wav_claiming(&long, 1, 8_000, 8, 601 * 8_000, 0, true);
    let one_hz = dir.join("onehz.wav");
    write_wav_claiming(&one_hz, 1, 1, 16, 8, 8, false);
    (long, one_hz)
}

#[test]
fn fifo_device_directory_huge_and_over_limit_inputs_at_start_exit_2_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let folder = dir.path().join("folder");
    std::fs::create_dir(&folder).unwrap();
    let huge = dir.path().join("huge.toml");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(2 << 20)
        .unwrap();
    let (long, one_hz) = write_bad_wavs(dir.path());
    let p = |p: &Path| p.to_str().unwrap().to_string();
    let (fifo_s, long_s, one_hz_s) = (p(&fifo), p(&long), p(&one_hz));
    let cases: Vec<(Vec<&str>, Vec<String>)> = vec![
        (
            vec!["--config", &fifo_s],
            vec![format!("config {fifo_s}: is a FIFO, not a regular file")],
        ),
        (
            vec!["check-config", &fifo_s],
            vec![format!("config {fifo_s}: is a FIFO, not a regular file")],
        ),
        (
            vec!["--audio", "null", "--state", &fifo_s],
            vec![format!("state file {fifo_s} is a FIFO, not a regular file")],
        ),
        (
            vec!["--audio", "null", "--source", &fifo_s],
            vec![format!("source {fifo_s}: is a FIFO, not a regular file")],
        ),
        (
            vec!["--config", "/dev/zero"],
            vec!["config /dev/zero: is a character device, not a regular file".into()],
        ),
        (
            vec!["--audio", "null", "--state", "/dev/zero"],
            vec!["state file /dev/zero is a device, not a regular file".into()],
        ),
        (
            vec!["--audio", "null", "--source", "/dev/zero"],
            vec!["source /dev/zero: is a character device, not a regular file".into()],
        ),
        (
            vec!["--config", folder.to_str().unwrap()],
            vec!["is a directory, not a regular file".into()],
        ),
        (
            vec!["--config", huge.to_str().unwrap()],
            vec!["2097152 bytes is too large (accepted: up to 1048576 bytes)".into()],
        ),
        (
            vec!["--audio", "null", "--source", &long_s],
            vec![format!(
                "source {long_s}: the header claims 601.0 s of audio (accepted: up to 600 s)"
            )],
        ),
        (
            vec!["--audio", "null", "--source", &one_hz_s],
            vec![format!(
                "source {one_hz_s}: sample rate 1 Hz (accepted: 8000 to 384000 Hz)"
            )],
        ),
    ];
    for (args, wanted) in cases {
        let t0 = Instant::now();
        let line = expect_startup_error(dir.path(), &args);
        for w in wanted {
            assert!(line.contains(&w), "latentd {args:?}: {line:?} lacks {w:?}");
        }
        assert!(t0.elapsed() < Duration::from_secs(3), "latentd {args:?}");
    }
}

#[test]
fn config_knobs_and_prompts_are_refused_like_osc_never_rounded() {
    let dir = tempfile::tempdir().unwrap();
    let fractional = dir.path().join("fractional.toml");
    std::fs::write(&fractional, "[engine]\nknobs = { sampler = 0.5 }\n").unwrap();
    let long_prompt = dir.path().join("prompt.toml");
    std::fs::write(
        &long_prompt,
        format!("[engine]\nprompt = \"{}\"\n", "a".repeat(1001)),
    )
    .unwrap();
    let out = check_config(dir.path(), &fractional);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "config key engine.knobs.sampler: knob sampler takes an integer in [0, 1]; got 0.5"
        ),
        "{err}"
    );
    let line = expect_startup_error(dir.path(), &["--audio", "null", "--knob", "sampler=0.5"]);
    assert!(
        line.contains("--knob sampler: knob sampler takes an integer"),
        "{line}"
    );
    let out = check_config(dir.path(), &long_prompt);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "config key engine.prompt: prompt: prompt has 1001 characters (accepted: 1 to 1000)"
        ),
        "{err}"
    );
}

/// The OSC address a started daemon serves.
fn osc_address(daemon: &Daemon) -> std::net::SocketAddr {
    let line = daemon.wait_for("OSC on udp+tcp ", Duration::from_secs(20));
    line.split("OSC on udp+tcp ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .parse()
        .unwrap()
}

#[test]
fn bad_items_in_the_saved_state_are_skipped_and_the_rest_restored() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("source.wav");
    mkfifo(&fifo);
    let (long, _) = write_bad_wavs(dir.path());
    let state = dir.path().join("state.json");
    let saved = serde_json::json!({
        "version": 1,
        "knobs": { "denoise": 0.25, "sampler": 0.5, "periodicity": 99.0 },
        "prompt": "a".repeat(1001),
        "source": fifo,
        "timbre": long,
    });
    std::fs::write(&state, saved.to_string()).unwrap();
    let daemon = Daemon::start(
        dir.path(),
        &[
            "--audio",
            "null",
            "--loop-seconds",
            "1",
            "--state",
            state.to_str().unwrap(),
            "--media",
            dir.path().to_str().unwrap(),
        ],
    );
    // One log line per item dropped or skipped, in start order (knobs, the loop's source, the
    // prompt and references as the engine starts), then the daemon serves.
    for needle in [
        "knob periodicity = 99 dropped: value 99 is out of range for knob periodicity",
        "knob sampler = 0.5 dropped: knob sampler takes an integer in [0, 1]; got 0.5",
        "prompt dropped: prompt: prompt has 1001 characters (accepted: 1 to 1000)",
        "is a FIFO, not a regular file",
        "the header claims 601.0 s of audio (accepted: up to 600 s)",
    ] {
        daemon.wait_for(needle, Duration::from_secs(10));
    }
    let mut link = Link::connect(osc_address(&daemon), Transport::Udp);
    assert_eq!(link.knob("denoise"), 0.25, "the valid knob is restored");
    assert_eq!(link.knob("sampler"), 0.0, "not rounded to 1: dropped");
    assert_eq!(link.knob("periodicity"), 0.0, "out of range: dropped");
}

#[test]
fn over_limit_wavs_over_osc_fail_at_once_naming_file_and_limit() {
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("media");
    std::fs::create_dir(&media).unwrap();
    write_bad_wavs(&media);
    write_float_wav(&media.join("ok.wav"), 2, 48_000, &[0.0; 2 * 4800]);
    let daemon = Daemon::start(
        dir.path(),
        &[
            "--audio",
            "null",
            "--loop-seconds",
            "1",
            "--media",
            media.to_str().unwrap(),
        ],
    );
    let mut link = Link::connect(osc_address(&daemon), Transport::Udp);
    for (address, file, wanted) in [
        (
            "/source",
            "long.wav",
            "the header claims 601.0 s of audio (accepted: up to 600 s)",
        ),
        (
            "/timbre",
            "onehz.wav",
            "sample rate 1 Hz (accepted: 8000 to 384000 Hz)",
        ),
        (
            "/structure",
            "long.wav",
            "the header claims 601.0 s of audio (accepted: up to 600 s)",
        ),
    ] {
        let t0 = Instant::now();
        let (addr, reason) = link.fails(&msg(address, vec![s(file)]));
        assert_eq!(addr, address);
        assert!(reason.contains(file), "{reason}");
        assert!(reason.contains(wanted), "{reason}");
        assert!(t0.elapsed() < Duration::from_secs(1), "{address} {file}");
    }
    // The daemon still serves.
    link.send(&msg("/timbre", vec![s("ok.wav")]));
    assert_eq!(link.expect("/done")[0], s("/timbre"));
}

#[test]
fn the_documented_file_limits_are_the_declared_ones() {
    use latentd_engine::audio_clip::{MAX_CLIP_CHANNELS, MAX_CLIP_SECONDS, SAMPLE_RATE_RANGE};
    let operations = include_str!("../../docs/operations.md");
    let osc = include_str!("../../docs/osc.md");
    for doc in [operations, osc] {
        for fact in [
            format!("at most {MAX_CLIP_SECONDS} s"),
            format!("1 to {MAX_CLIP_CHANNELS}"),
            format!(
                "{} to {} Hz",
                SAMPLE_RATE_RANGE.start(),
                SAMPLE_RATE_RANGE.end()
            ),
        ] {
            assert!(doc.contains(&fact), "a doc lacks {fact:?}");
        }
    }
    for bytes in [
        latentd::config::MAX_CONFIG_BYTES,
        latentd::state::MAX_STATE_BYTES,
    ] {
        assert!(operations.contains(&format!("at most 1 MiB ({bytes} bytes)")));
    }
    let wav = latentd_engine::audio_file::MAX_WAV_FILE_BYTES;
    assert!(operations.contains(&format!("at most {wav} bytes")));
    let header = latentd_engine::audio_file::MAX_WAV_HEADER_BYTES;
    assert!(operations.contains(&format!("first 16 MiB ({header} bytes")));
}
