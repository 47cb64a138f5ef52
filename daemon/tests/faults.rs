//! Fault tests on the real binary.
//!
//! - An engine tick that panics (test hook `LATENTD_TEST_ENGINE_PANIC_AFTER_S`) is caught:
//!   the log names it, `/status.reply` counts the restart, the engine generates again (a
//!   knob set after it is heard), and the recording of what the output played has no
//!   silent stretch across it; SIGTERM still exits 0.
//! - The state directory runs out of space, or turns read-only, while the daemon saves:
//!   it keeps running, logs an error naming the state file, the temp file and the errno,
//!   the saved file stays byte-identical and no temp file is left; once the directory is
//!   writable again the session is saved. The directory is a private tmpfs
//!   ([`common::tmpfs`]): these checks need root with `CAP_SYS_ADMIN` and print
//!   `SKIPPED: ...` without it.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::service_fixture::{Daemon, Launch, Osc, Status};
use common::tmpfs::Tmpfs;
use rosc::OscType;
use tempfile::TempDir;

const START: Duration = Duration::from_secs(30);

/// Polls `/status` until `ok` holds (panics with the last one after `limit`).
fn status_until(osc: &Osc, limit: Duration, ok: impl Fn(&Status) -> bool) -> Status {
    let end = Instant::now() + limit;
    loop {
        let s = osc.status();
        if ok(&s) {
            return s;
        }
        assert!(Instant::now() < end, "status never got there: {s:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The longest run of frames whose every sample is exactly 0, before the trailing silence
/// of the stop fade; with the frame it starts at.
fn longest_inner_silence(samples: &[f32], channels: usize) -> (usize, usize) {
    let frames: Vec<bool> = samples
        .chunks_exact(channels)
        .map(|f| f.iter().all(|&v| v == 0.0))
        .collect();
    let end = frames.iter().rposition(|&z| !z).map_or(0, |i| i + 1);
    let (mut best, mut best_at, mut run) = (0, 0, 0);
    for (i, &zero) in frames[..end].iter().enumerate() {
        run = if zero { run + 1 } else { 0 };
        if run > best {
            (best, best_at) = (run, i + 1 - run);
        }
    }
    (best, best_at)
}

#[test]
fn the_silence_measure_finds_inner_runs_and_ignores_the_stop_fade() {
    let mut stereo = vec![0.1f32; 2 * 100];
    stereo[2 * 10..2 * 15].fill(0.0); // 5 silent frames at 10
    stereo[2 * 40 + 1] = 0.0; // one channel only: not silent
    stereo[2 * 90..].fill(0.0); // the trailing fade-out silence
    assert_eq!(longest_inner_silence(&stereo, 2), (5, 10));
    assert_eq!(longest_inner_silence(&[0.0; 8], 2), (0, 0));
}

#[test]
fn a_panicking_engine_tick_is_caught_counted_and_never_heard() {
    let dir = TempDir::new().unwrap();
    let source = dir.path().join("source.wav");
    let loop_audio = latentd_engine::audio_file::test_signal(48_000, 2, 4.0);
    common::write_float_wav(&source, 2, 48_000, &loop_audio.samples);
    let record = dir.path().join("played.wav");
    let panic_after_s = 3.0;
    let mut daemon = Daemon::start(
        &dir,
        Launch {
            args: vec![
                "--source".into(),
                source.display().to_string(),
                "--record".into(),
                record.display().to_string(),
            ],
            env: vec![(
                "LATENTD_TEST_ENGINE_PANIC_AFTER_S",
                panic_after_s.to_string(),
            )],
            ..Launch::default()
        },
    );
    let osc = Osc::new(daemon.osc_addr(START));
    // A subscriber: pushed a `/status.reply` when the engine restarts.
    let watcher = Osc::new(daemon.osc_addr(START));
    watcher
        .ask("/notify", vec![OscType::Int(1)], "/done")
        .expect("/notify 1 answered");
    let audio_line = daemon.wait_line("audio: null output", Duration::from_secs(2));
    let period: usize = audio_line
        .split("period ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no period in {audio_line:?}"));

    // Before the fault: generating, no knob action heard yet, and (when this status
    // certainly predates the hook) nothing restarted.
    let before = status_until(&osc, Duration::from_secs(10), |s| s.ticks_per_s > 0.0);
    if !daemon.has_line("test hook: the engine's next tick panics") {
        assert_eq!(before.engine_restarts, 0, "{before:?}");
    }
    assert_eq!(before.last_knob_to_ear_ms, -1.0, "{before:?}");

    // The fault: the panic is caught on the engine thread and logged by the daemon.
    daemon.wait_line(
        "test hook: the engine's next tick panics",
        Duration::from_secs(5),
    );
    let failed = daemon.wait_line("tick(s) failed", Duration::from_secs(5));
    assert!(
        failed.contains("ERROR")
            && failed.contains("engine: 1 tick(s) failed (1 since start)")
            && failed.contains("pipeline restarted"),
        "{failed}"
    );
    assert!(
        daemon.has_line("panicked") && daemon.has_line("test hook: injected engine tick panic"),
        "the panic message is not in the log:\n{}",
        daemon.lines().join("\n")
    );
    let after = osc.status();
    assert_eq!(after.engine_restarts, 1, "{after:?}");
    let pushed = watcher
        .reply("/status.reply", Duration::from_secs(2))
        .map(|m| Status::parse(&m.args))
        .expect("no /status.reply pushed to the subscriber on the restart");
    assert_eq!(
        (pushed.engine_restarts, pushed.output.as_str()),
        (1, "running"),
        "{pushed:?}"
    );
    assert!(daemon.exited().is_none(), "the daemon died");

    // The engine resumes: a knob set now is heard, and it keeps ticking.
    osc.send("/knob/ch_g4", vec![OscType::Float(0.4)]);
    let heard = status_until(&osc, Duration::from_secs(5), |s| {
        s.last_knob_to_ear_ms >= 0.0
    });
    assert!(heard.ticks_per_s > 0.0, "{heard:?}");
    assert_eq!(heard.engine_restarts, 1, "{heard:?}");
    std::thread::sleep(Duration::from_millis(1500));

    daemon.stop_cleanly();
    assert_eq!(
        daemon
            .lines()
            .iter()
            .filter(|l| l.contains("tick(s) failed"))
            .count(),
        1,
        "one panic, one report"
    );

    // What the output played, across the fault: sound throughout, never a silent period.
    let mut wav = hound::WavReader::open(&record).unwrap();
    let spec = wav.spec();
    let channels = usize::from(spec.channels);
    let samples: Vec<f32> = wav.samples::<f32>().map(Result::unwrap).collect();
    let frames = samples.len() / channels;
    let rate = spec.sample_rate as usize;
    assert!(
        frames as f64 > (panic_after_s + 1.0) * rate as f64,
        "the recording ({frames} frames) does not reach past the fault"
    );
    let (silence, at) = longest_inner_silence(&samples, channels);
    assert!(
        silence <= period,
        "{silence} frames of exact silence at {:.3} s (a period is {period})",
        at as f64 / rate as f64
    );
    let rms =
        (samples.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / samples.len() as f64).sqrt();
    assert!(rms > 1e-3, "rms {rms}");
}

/// Waits until the state file parses and `ok` holds; returns it.
fn wait_for_state(
    path: &Path,
    limit: Duration,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let end = Instant::now() + limit;
    loop {
        if let Ok(bytes) = std::fs::read(path)
            && let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes)
            && ok(&value)
        {
            return value;
        }
        assert!(Instant::now() < end, "state file never matched");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A daemon (engine off: only the session matters here) whose state file is on `fs`,
/// with a first state saved; returns it with its client and the saved bytes.
fn daemon_with_saved_state(dir: &TempDir, fs: &Tmpfs) -> (Daemon, Osc, Vec<u8>) {
    let state = fs.path().join("state.json");
    let daemon = Daemon::start(
        dir,
        Launch {
            args: vec!["--engine".into(), "off".into()],
            state: Some(state.clone()),
            ..Launch::default()
        },
    );
    let osc = Osc::new(daemon.osc_addr(START));
    osc.send("/knob/denoise", vec![OscType::Float(0.25)]);
    wait_for_state(&state, Duration::from_secs(3), |s| {
        s["knobs"]["denoise"] == 0.25
    });
    let saved = std::fs::read(&state).unwrap();
    (daemon, osc, saved)
}

/// A knob set the saver cannot write: the daemon answers, logs one precise error, and
/// leaves the saved file as it was with no temp file beside it.
fn refused_save(daemon: &Daemon, osc: &Osc, fs: &Tmpfs, saved: &[u8], errno: &str, extra: &[&str]) {
    osc.send("/knob/denoise", vec![OscType::Float(0.5)]);
    assert_eq!(osc.knob("denoise"), 0.5);
    let line = daemon.wait_line("saving state failed", Duration::from_secs(3));
    let state = fs.path().join("state.json");
    let temp = fs.path().join(".state.json.tmp-");
    for needle in [
        "ERROR",
        &format!("state file {}:", state.display()),
        &temp.display().to_string(),
        errno,
        "the saved file is untouched",
    ] {
        assert!(line.contains(needle), "{needle:?} not in {line:?}");
    }
    assert!(daemon.has_line(errno));
    let mut expected = vec!["state.json"];
    expected.extend_from_slice(extra);
    expected.sort();
    assert_eq!(names_in(fs.path()), expected, "a temp file was left behind");
    assert_eq!(
        std::fs::read(&state).unwrap(),
        saved,
        "the saved file changed"
    );
    // Still serving.
    assert!(osc.status().loop_s > 0.0);
}

#[test]
fn a_full_state_disk_keeps_the_old_state_and_saves_again_once_freed() {
    let dir = TempDir::new().unwrap();
    let Some(fs) = Tmpfs::mount_or_skip(&dir.path().join("statefs"), 64 * 1024, "disk full") else {
        return;
    };
    let (mut daemon, osc, saved) = daemon_with_saved_state(&dir, &fs);

    let filler = fs.fill("filler");
    refused_save(&daemon, &osc, &fs, &saved, "ENOSPC", &["filler"]);
    assert!(daemon.has_line("No space left on device"));

    // Space again: the next change saves the whole session, the refused change with it.
    std::fs::remove_file(&filler).unwrap();
    osc.send("/knob/shift", vec![OscType::Float(2.5)]);
    let now = wait_for_state(&daemon.state, Duration::from_secs(3), |s| {
        s["knobs"]["shift"] == 2.5
    });
    assert_eq!(now["knobs"]["denoise"], 0.5);
    assert_eq!(names_in(fs.path()), ["state.json"]);
    daemon.stop_cleanly();
}

#[test]
fn a_read_only_state_dir_keeps_the_old_state_and_the_exit_saves_once_writable() {
    let dir = TempDir::new().unwrap();
    let Some(fs) = Tmpfs::mount_or_skip(&dir.path().join("statefs"), 64 * 1024, "read-only") else {
        return;
    };
    let (mut daemon, osc, saved) = daemon_with_saved_state(&dir, &fs);

    fs.set_read_only(true);
    refused_save(&daemon, &osc, &fs, &saved, "EROFS", &[]);
    assert!(daemon.has_line("Read-only file system"));

    // Writable again: the refused session is kept pending and written at exit, without
    // another change.
    fs.set_read_only(false);
    daemon.stop_cleanly();
    let at_exit: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&daemon.state).unwrap()).unwrap();
    assert_eq!(at_exit["knobs"]["denoise"], 0.5);
    assert_eq!(names_in(fs.path()), ["state.json"]);
}
