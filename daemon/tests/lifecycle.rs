//! The daemon's life at its edges, with the real binary on the null output: a recording
//! survives SIGKILL with a valid WAV header; signals that are no stop request (SIGUSR2,
//! SIGALRM, SIGPIPE, a real-time signal) are ignored and stop signals save the session;
//! trace dumps made in the same second never overwrite each other; SIGTERM while a long
//! source loads (at start or over `/source`) ends the daemon within a second.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::service_fixture::{Daemon, Launch, Osc};
use rosc::OscType;
use tempfile::TempDir;

const START: Duration = Duration::from_secs(30);

fn engine_off(args: &[&str]) -> Launch<'static> {
    let mut all = vec!["--engine".to_string(), "off".to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    Launch {
        args: all,
        ..Launch::default()
    }
}

fn saved_state(daemon: &Daemon) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(&daemon.state).unwrap()).unwrap()
}

#[test]
fn a_recording_killed_with_sigkill_opens_with_its_audio_counted() {
    let dir = TempDir::new().unwrap();
    let wav = dir.path().join("take.wav");
    let mut daemon = Daemon::start(
        &dir,
        engine_off(&["--loop-seconds", "1", "--record", wav.to_str().unwrap()]),
    );
    daemon.wait_line("recording to", START);
    let playing = Instant::now();
    std::thread::sleep(Duration::from_millis(2300));
    daemon.signal(libc::SIGKILL);
    let recorded_for = playing.elapsed().as_secs_f64();
    assert!(daemon.wait(Duration::from_secs(5)).is_some());

    let reader = hound::WavReader::open(&wav)
        .unwrap_or_else(|e| panic!("the killed recording does not open: {e}"));
    let spec = reader.spec();
    let frames = reader.len() as f64 / f64::from(spec.channels);
    let seconds = frames / f64::from(spec.sample_rate);
    // The header is at most one update interval (1 s) behind what was played.
    assert!(
        seconds >= recorded_for - 1.5 && seconds <= recorded_for + 0.1,
        "header counts {seconds:.2} s of {recorded_for:.2} s played"
    );
    let samples: Vec<f32> = reader
        .into_samples::<f32>()
        .map(|s| s.expect("every counted sample reads"))
        .collect();
    assert_eq!(samples.len() as f64, frames * f64::from(spec.channels));
}

#[test]
fn sigusr2_sigalrm_sigpipe_and_realtime_signals_are_ignored_and_nothing_is_lost() {
    let dir = TempDir::new().unwrap();
    let mut daemon = Daemon::start(&dir, engine_off(&[]));
    let osc = Osc::new(daemon.osc_addr(START));
    osc.send("/knob/denoise", vec![OscType::Float(0.25)]);
    assert_eq!(osc.knob("denoise"), 0.25);

    let realtime = libc::SIGRTMIN() + 2;
    for signal in [libc::SIGUSR2, libc::SIGALRM, libc::SIGPIPE, realtime] {
        daemon.signal(signal);
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            daemon.exited().is_none(),
            "signal {signal} ended the daemon:\n{}",
            daemon.lines().join("\n")
        );
    }
    daemon.wait_line("SIGUSR2 received: ignored", Duration::from_secs(2));
    daemon.wait_line("SIGALRM received: ignored", Duration::from_secs(2));
    daemon.wait_line("SIGRTMIN+2 received: ignored", Duration::from_secs(2));
    // Still serving, the knob as set.
    assert_eq!(osc.knob("denoise"), 0.25);
    let (status, _) = daemon.terminate();
    assert_eq!(status.code(), Some(0));
    assert_eq!(saved_state(&daemon)["knobs"]["denoise"], 0.25);
}

#[test]
fn sigpwr_stops_cleanly_and_saves_a_change_made_just_before() {
    let dir = TempDir::new().unwrap();
    let mut daemon = Daemon::start(&dir, engine_off(&[]));
    let osc = Osc::new(daemon.osc_addr(START));
    osc.send("/knob/denoise", vec![OscType::Float(0.625)]);
    assert_eq!(osc.knob("denoise"), 0.625);
    // Inside the 500 ms save debounce: only a clean stop writes it.
    daemon.signal(libc::SIGPWR);
    let status = daemon
        .wait(Duration::from_secs(2))
        .expect("SIGPWR stops the daemon");
    assert_eq!(status.code(), Some(0), "{}", daemon.lines().join("\n"));
    assert_eq!(saved_state(&daemon)["knobs"]["denoise"], 0.625);
}

#[test]
fn two_trace_dumps_in_one_second_leave_two_files() {
    let dir = TempDir::new().unwrap();
    let mut daemon = Daemon::start(&dir, engine_off(&["--loop-seconds", "1"]));
    daemon.wait_line("playing a loop", START);
    // Start early in a second so both dumps fall in it.
    while SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_millis()
        > 200
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let dumped = |n: usize| -> Vec<String> {
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let paths: Vec<String> = daemon
                .lines()
                .iter()
                .filter_map(|l| l.split("trace written to ").nth(1))
                .map(|p| p.trim().to_string())
                .collect();
            if paths.len() >= n {
                return paths;
            }
            assert!(Instant::now() < end, "{}", daemon.lines().join("\n"));
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    daemon.signal(libc::SIGUSR1);
    dumped(1);
    daemon.signal(libc::SIGUSR1);
    let paths = dumped(2);
    assert_ne!(paths[0], paths[1], "the second dump overwrote the first");
    for path in &paths {
        assert!(std::fs::metadata(path).unwrap().len() > 0, "{path} empty");
    }
    let traces = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with("trace-")
        })
        .count();
    assert_eq!(traces, 2);
    let (status, _) = daemon.terminate();
    assert_eq!(status.code(), Some(0));
}

/// A mono 16-bit WAV of `seconds` of silence at `rate`, written as a header and a sparse
/// data chunk (quick to make; decoding it costs what any such file costs).
fn long_silent_wav(path: &std::path::Path, rate: u32, seconds: u32) {
    use std::io::Write;
    let data_bytes = rate * seconds * 2;
    let mut header = Vec::with_capacity(44);
    header.extend_from_slice(b"RIFF");
    header.extend_from_slice(&(36 + data_bytes).to_le_bytes());
    header.extend_from_slice(b"WAVEfmt ");
    header.extend_from_slice(&16u32.to_le_bytes());
    header.extend_from_slice(&1u16.to_le_bytes()); // PCM
    header.extend_from_slice(&1u16.to_le_bytes()); // mono
    header.extend_from_slice(&rate.to_le_bytes());
    header.extend_from_slice(&(rate * 2).to_le_bytes());
    header.extend_from_slice(&2u16.to_le_bytes());
    header.extend_from_slice(&16u16.to_le_bytes());
    header.extend_from_slice(b"data");
    header.extend_from_slice(&data_bytes.to_le_bytes());
    let mut file = std::fs::File::create(path).unwrap();
    file.write_all(&header).unwrap();
    file.set_len(44 + u64::from(data_bytes)).unwrap();
}

#[test]
fn sigterm_while_a_long_source_loads_exits_within_a_second() {
    let dir = TempDir::new().unwrap();
    let source = dir.path().join("long.wav");
    long_silent_wav(&source, 44_100, 590);
    let mut daemon = Daemon::start(&dir, engine_off(&["--source", source.to_str().unwrap()]));
    std::thread::sleep(Duration::from_millis(200));
    assert!(daemon.exited().is_none(), "{}", daemon.lines().join("\n"));
    let sent = Instant::now();
    daemon.signal(libc::SIGTERM);
    let status = daemon.wait(Duration::from_secs(5));
    let took = sent.elapsed();
    std::thread::sleep(Duration::from_millis(50));
    let log = daemon.lines().join("\n");
    let status = status.unwrap_or_else(|| panic!("no exit 5 s after SIGTERM:\n{log}"));
    assert!(took < Duration::from_secs(1), "exit took {took:?}:\n{log}");
    assert_eq!(status.code(), Some(0), "{log}");
}

#[test]
fn sigterm_while_a_source_loads_over_osc_exits_within_a_second() {
    let dir = TempDir::new().unwrap();
    let source = dir.path().join("long.wav");
    long_silent_wav(&source, 44_100, 590);
    let mut daemon = Daemon::start(&dir, engine_off(&["--media", dir.path().to_str().unwrap()]));
    let osc = Osc::new(daemon.osc_addr(START));
    osc.send(
        "/source",
        vec![OscType::String(source.display().to_string())],
    );
    std::thread::sleep(Duration::from_millis(300));
    let (status, took) = daemon.terminate();
    assert!(
        took < Duration::from_secs(1),
        "exit took {took:?}:\n{}",
        daemon.lines().join("\n")
    );
    assert_eq!(status.code(), Some(0));
}
