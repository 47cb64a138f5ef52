//! The native PipeWire output on a private PipeWire graph: it must refuse cleanly and at
//! once when no server answers (a typed error worth retrying, as the supervisor does while
//! a server is away), then, on a graph with a null sink, run its realtime callback at the
//! requested period, play the ring without torn reads, and deliver the ring's exact signal
//! to the sink (recorded with `pw-record` from the sink's monitor).
//!
//! One test in this binary, because it points the process environment (read by
//! libpipewire) first at an empty runtime directory, then at the graph. When the graph
//! cannot start it prints `SKIPPED: pipewire test: <reason>` and passes, unless
//! `LATENTD_REQUIRE_PIPEWIRE=1`, which turns the skip into a failure.
//!
//! The global allocator is `assert_no_alloc`'s, so an allocation inside the realtime
//! callback aborts the test in debug builds.

use std::path::Path;
use std::time::Duration;

use latentd::audio::pipewire::{PipeWireOptions, PipeWireOutput};
use latentd::audio::{AudioError, AudioOutput, PeriodProcessor};
use latentd_engine::PlayheadRing;
use latentd_tests::pipewire_graph::{CLIENT_ENV_REMOVE, PipeWireGraph, stop_gracefully};

#[global_allocator]
static ALLOCATOR: assert_no_alloc::AllocDisabler = assert_no_alloc::AllocDisabler;

const RATE: u32 = 48_000;
const PERIOD: usize = 256;
/// Ring length: half a second of noise, so every 64-frame stretch is unique.
const LOOP_FRAMES: usize = 24_000;
const PLAY_TIME: Duration = Duration::from_millis(2500);

#[test]
fn pipewire_output_plays_the_ring_into_a_null_sink() {
    no_server_is_unreachable();

    let graph = match PipeWireGraph::start() {
        Ok(graph) => graph,
        Err(reason) => {
            if std::env::var("LATENTD_REQUIRE_PIPEWIRE").as_deref() == Ok("1") {
                panic!("pipewire test required (LATENTD_REQUIRE_PIPEWIRE=1) but: {reason}");
            }
            println!("SKIPPED: pipewire test: {reason}");
            return;
        }
    };
    // SAFETY: this is the binary's only test and it has started no thread that reads
    // the environment (pipewire threads are all stopped by now).
    unsafe { graph.export_client_env() };
    assert!(PipeWireOutput::server_reachable(), "{}", graph.log_tail(30));

    let recording = graph.runtime_dir().join("capture.wav");
    let mut recorder = graph
        .command("pw-record")
        .args(["--target", graph.sink_name()])
        .args(["--format", "f32", "--rate", "48000", "--channels", "2"])
        .arg(&recording)
        .spawn()
        .expect("spawn pw-record");

    let signal = test_signal(LOOP_FRAMES);
    let ring = PlayheadRing::from_interleaved(
        signal.clone(),
        2,
        RATE,
        PlayheadRing::guard_for_period(PERIOD),
    )
    .expect("ring");
    let ring_handle = ring.handle();
    let (_writer, reader) = ring.split();

    let options = PipeWireOptions {
        node_name: format!("latentd-test-{}", std::process::id()),
        target: Some(graph.sink_name().to_owned()),
        sample_rate: RATE,
        period_frames: PERIOD,
        ..PipeWireOptions::default()
    };
    let output = PipeWireOutput::open(&options).expect("open the pipewire output");
    let format = output.format();
    assert_eq!(
        (format.sample_rate, format.period_frames, format.channels),
        (RATE, PERIOD, 2)
    );
    let processor = PeriodProcessor::new(reader, None);
    let output_stats = processor.stats();
    let running = Box::new(output)
        .start(processor)
        .expect("start the pipewire output");
    std::thread::sleep(PLAY_TIME);
    assert_eq!(running.stats(), output_stats.snapshot());
    running.stop().expect("stop");
    let stats = output_stats.snapshot();
    let counters = ring_handle.counters();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(output_stats.snapshot(), stats, "callback ran after stop()");
    stop_gracefully(&mut recorder);

    println!("stats after {PLAY_TIME:?}: {stats:?}");
    // 256 frames at 48 kHz is 187 callbacks a second; ask for a third of that.
    assert!(
        stats.callbacks > 150,
        "too few callbacks: {stats:?}\n{}",
        graph.log_tail(30)
    );
    assert!(
        stats.frames >= u64::from(RATE),
        "under 1 s of audio delivered: {stats:?}"
    );
    let real_time = PLAY_TIME.as_secs_f64() * f64::from(RATE);
    assert!(
        (stats.frames as f64) < real_time * 1.2 + 8192.0,
        "delivered faster than real time (large buffers queued): {stats:?}"
    );
    assert!(
        stats.max_period_frames as usize <= 2 * PERIOD,
        "a callback filled {} frames; asked for {PERIOD}",
        stats.max_period_frames
    );
    assert_eq!(counters.torn_reads, 0);
    assert_eq!(counters.frames_played, stats.frames);
    assert_eq!(counters.periods, stats.callbacks);

    check_recording(&recording, &signal);
}

/// With the environment pointing at an empty runtime directory, open fails as
/// `Unreachable` and the probe says false.
fn no_server_is_unreachable() {
    let empty = std::env::temp_dir().join(format!("latentd-pw-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).expect("create empty runtime dir");
    // SAFETY: first thing in the binary's only test; no other thread touches the env.
    unsafe {
        for key in CLIENT_ENV_REMOVE {
            std::env::remove_var(key);
        }
        std::env::set_var("XDG_RUNTIME_DIR", &empty);
        std::env::set_var("PIPEWIRE_RUNTIME_DIR", &empty);
    }
    // The supervisor retries this open with backoff while a server is away: it must fail
    // at once, not after the startup timeout, and say that retrying may help.
    let asked = std::time::Instant::now();
    match PipeWireOutput::open(&PipeWireOptions::default()) {
        Err(e @ AudioError::ServerUnreachable { .. }) => {
            assert_eq!(e.backend(), "pipewire");
            assert!(e.retry_may_help(), "{e}");
            println!("no server: {e}");
        }
        Err(other) => panic!("expected ServerUnreachable, got {other}"),
        Ok(_) => panic!("opened a PipeWire output with no server running"),
    }
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "failing to open took {:?}",
        asked.elapsed()
    );
    assert!(!PipeWireOutput::server_reachable());
    let bad = PipeWireOptions {
        period_frames: 0,
        ..PipeWireOptions::default()
    };
    assert!(matches!(
        PipeWireOutput::open(&bad),
        Err(AudioError::Unsupported { .. })
    ));
    let _ = std::fs::remove_dir_all(&empty);
}

/// Deterministic stereo noise in [-0.5, 0.5), left and right independent.
fn test_signal(frames: usize) -> Vec<f32> {
    let mut state: u32 = 0x1234_5678;
    (0..frames * 2)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

/// Samples closer than this are the same sample (PipeWire passes F32 through exactly at
/// unity volume; the margin only forgives a float-exact volume of 0.999999).
const SAME: f32 = 1e-6;
/// Frames a probe compares to find where in the ring a stretch of the recording is.
const PROBE: usize = 64;

/// The recording must be the ring played in order, sample for sample. An xrun (likely on a
/// loaded machine without realtime scheduling) may break it: a cycle the stream missed
/// shows as a quantum of silence, a cycle the recorder missed as a quantum skipped; after
/// either the ring must go on where it was or at most a few periods later. Any frame that
/// is neither, or less than 90 % of the span matching, fails.
fn check_recording(path: &Path, signal: &[f32]) {
    let mut wav = hound::WavReader::open(path).expect("open the recording");
    let spec = wav.spec();
    assert_eq!(
        (
            spec.channels,
            spec.sample_rate,
            spec.sample_format,
            spec.bits_per_sample
        ),
        (2, RATE, hound::SampleFormat::Float, 32)
    );
    let rec: Vec<f32> = wav.samples::<f32>().map(|s| s.expect("sample")).collect();
    let frames = rec.len() / 2;
    let audible = |i: &usize| rec[2 * i].abs() > 1e-3;
    let first = (0..frames).find(audible).expect("the recording is silent");
    let last = (0..frames).rev().find(audible).unwrap_or(first);
    // Skip 0.1 s at both ends in case the stream ramps in or out.
    let (start, end) = (first + 4800, last.saturating_sub(4800));
    assert!(
        end >= start + RATE as usize,
        "under 1 s of signal recorded: frames {first}..{last} of {frames}"
    );

    let ring_frames = signal.len() / 2;
    let same = |i: usize, pos: usize| {
        (0..2).all(|ch| (rec[2 * i + ch] - signal[2 * (pos % ring_frames) + ch]).abs() < SAME)
    };
    let silent = |i: usize| rec[2 * i] == 0.0 && rec[2 * i + 1] == 0.0;
    let locate = |i: usize| {
        (0..ring_frames).find(|&pos| (0..PROBE).all(|k| i + k >= end || same(i + k, pos + k)))
    };

    let mut pos = locate(start).expect("the recording does not contain the ring's signal");
    let (mut matched, mut gaps, mut i) = (0usize, Vec::new(), start);
    while i < end {
        if same(i, pos) {
            matched += 1;
            i += 1;
            pos += 1;
            continue;
        }
        let silence = (i..end).take_while(|&j| silent(j)).count();
        i += silence;
        if i >= end {
            break;
        }
        let resumed = locate(i).unwrap_or_else(|| {
            panic!(
                "at frame {i} (after {silence} silent frames) the recording left the ring's signal"
            )
        });
        let jump = (resumed + ring_frames - pos % ring_frames) % ring_frames;
        assert!(
            jump <= 4 * PERIOD,
            "after {silence} silent frames at {i} the ring jumped {jump} frames"
        );
        gaps.push((silence, jump));
        pos = resumed;
    }
    let span = end - start;
    println!(
        "{matched} of {span} recorded frames are the ring's, in order; gaps (silent frames, \
         ring jump): {gaps:?}"
    );
    assert!(
        matched * 10 >= span * 9,
        "only {matched} of {span} frames matched"
    );
}
