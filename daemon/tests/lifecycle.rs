//! The daemon's life at its edges, with the real binary on the null output: a recording
//! survives SIGKILL with a valid WAV header; signals that are no stop request (SIGUSR2,
//! SIGALRM, SIGPIPE, a real-time signal) are ignored and stop signals save the session;
//! trace dumps made in the same second never overwrite each other; SIGTERM while a long
//! source loads (at start or over `/source`) ends the daemon within a second; a stop runs
//! its steps in the order `service::Daemon::stop` declares, the fade before the output
//! stops and the recording completes.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::service_fixture::{Daemon, Launch, NotifySocket, Osc};
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
    daemon.stop_cleanly();
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
    daemon.stop_cleanly();
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

/// The stop's steps, in the order they must run (written here on purpose, apart from
/// `service::Daemon::stop`, so that reordering the stop fails this test).
const STOP_ORDER: &[&str] = &[
    "stop: watchdog pings end, STOPPING=1",
    "stop: NSM, health, schedule and MIDI threads end",
    "stop: fade to silence",
    "stop: zeroconf goodbyes",
    "stop: OSC, OSCQuery and the capture close",
    "stop: queued jobs finish, the session is saved",
    "stop: output and engine stop",
    "stop: the recording completes",
    "latentd: stopped:",
    "recorded ",
];

#[test]
fn sigterm_stops_the_parts_in_their_declared_order_fading_before_the_output_stops() {
    let dir = TempDir::new().unwrap();
    // A loud constant loop: whatever the recording's end, it is this level or the fade.
    let source = dir.path().join("source.wav");
    common::write_float_wav(&source, 2, 48_000, &vec![0.5; 2 * 48_000]);
    let record = dir.path().join("take.wav");
    let notify = NotifySocket::bind(dir.path());
    let mut daemon = Daemon::start(
        &dir,
        Launch {
            notify: Some(&notify),
            ..engine_off(&[
                "--source",
                source.to_str().unwrap(),
                "--record",
                record.to_str().unwrap(),
                "--rate",
                "48000",
                "--period",
                "256",
            ])
        },
    );
    notify.until("READY=1", START);
    let osc = Osc::new(daemon.osc_addr(START));
    osc.send("/knob/denoise", vec![OscType::Float(0.375)]);
    assert_eq!(osc.knob("denoise"), 0.375);
    std::thread::sleep(Duration::from_millis(300));

    let (status, took) = daemon.terminate();
    let lines = daemon.lines();
    let log = lines.join("\n");
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(
        took < Duration::from_secs(1),
        "stopping took {took:?}:\n{log}"
    );
    let at: Vec<usize> = STOP_ORDER
        .iter()
        .map(|step| {
            lines
                .iter()
                .position(|l| l.contains(step))
                .unwrap_or_else(|| panic!("no {step:?} line:\n{log}"))
        })
        .collect();
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "the stop ran out of order (line numbers {at:?} for {STOP_ORDER:#?}):\n{log}"
    );
    // Each step once.
    for step in &STOP_ORDER[..8] {
        assert_eq!(
            lines.iter().filter(|l| l.contains(step)).count(),
            1,
            "{log}"
        );
    }
    // systemd heard STOPPING=1.
    notify.until("STOPPING=1", Duration::from_secs(1));
    // The session was saved with the change made just before the signal (inside the save
    // debounce: only the stop's save writes it).
    assert_eq!(saved_state(&daemon)["knobs"]["denoise"], 0.375);
    // The recording completed after the fade: it plays the loop at full level, then ramps
    // down to exact silence, never back up (a stop that cut the output, or completed the
    // recording before the fade, ends it at 0.5).
    let recorded: Vec<f32> = hound::WavReader::open(&record)
        .unwrap()
        .samples::<f32>()
        .map(Result::unwrap)
        .collect();
    let left: Vec<f32> = recorded.chunks_exact(2).map(|f| f[0]).collect();
    assert!(
        left.len() > 48_000 / 10,
        "only {} frames recorded",
        left.len()
    );
    let fade_start = left
        .iter()
        .position(|&s| s != 0.5)
        .expect("the recording ends in a fade");
    assert!(fade_start > 0, "the recording starts faded");
    let ending = &left[fade_start..];
    assert!(
        ending.windows(2).all(|w| w[1] <= w[0]),
        "the ending rises again: {ending:?}"
    );
    assert_eq!(
        *ending.last().unwrap(),
        0.0,
        "the recording ends at {ending:?}"
    );
}
