//! The daemon's life at its edges, with the real binary on the null output: a recording
//! survives SIGKILL with a valid WAV header.

mod common;

use std::time::{Duration, Instant};

use common::service_fixture::{Daemon, Launch};
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
