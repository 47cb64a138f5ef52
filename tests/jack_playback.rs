//! latentd's JACK output against a real `jackd -d dummy`: its ports appear, a second JACK
//! client captures what it plays, and the capture decodes sample-exactly to the ring
//! reader's path, across loop wraps and a loop-band change, at 44.1 and 48 kHz with periods
//! of 64 and 1024 frames.
//!
//! Every process callback here (latentd's through `PeriodProcessor`, the capture's in
//! [`JackCapture`]) runs under `assert_no_alloc`, which aborts the binary on an allocation.
//!
//! Threading: the jack crate cannot name a server, so libjack finds each test's private
//! server through the process-wide `JACK_DEFAULT_SERVER` variable. Changing the environment
//! while another thread may read it is undefined behaviour (hence `unsafe` `set_var`), and
//! two tests would also aim at each other's servers; so every test holds a [`JackSession`]
//! (one at a time per process) from before it sets the variable until its server is gone.

use std::time::{Duration, Instant};

use assert_no_alloc::AllocDisabler;
use jack::contrib::ClosureProcessHandler;
use jack::{Client, ClientOptions, Control, LatencyType, ProcessScope};
use latentd::audio::jack::{JackOptions, JackOutput};
use latentd::audio::{AudioError, AudioOutput, OutputFormat, PeriodProcessor};
use latentd_engine::PlayheadRing;
use latentd_tests::{JackCapture, JackSession, check_path, index_signal};

#[global_allocator]
static ALLOCATOR: AllocDisabler = AllocDisabler;

/// The most a capture may take to record what it waits for.
const CAPTURE_SLACK: Duration = Duration::from_secs(10);

/// Playback latency JACK reports for `port`, as `capture`'s client sees it.
fn playback_latency(capture: &JackCapture, port: &str) -> (u32, u32) {
    capture
        .client()
        .port_by_name(port)
        .unwrap_or_else(|| panic!("port {port} not found"))
        .get_latency_range(LatencyType::Playback)
}

/// Play a 0.25 s index-coded loop through latentd's JACK output, capture it, arm a band
/// mid-capture and clear it, and check every captured frame against the reader's path.
fn playback_is_sample_exact(sample_rate: u32, period: usize) {
    let session = JackSession::start(sample_rate, period);
    let output = JackOutput::open(&JackOptions::default()).expect("opening the JACK output");
    let expected = OutputFormat {
        sample_rate,
        period_frames: period,
        channels: 2,
    };
    assert_eq!(output.format(), expected);

    let loop_frames = sample_rate as usize / 4;
    let guard = PlayheadRing::guard_for_period(period);
    let ring =
        PlayheadRing::from_interleaved(index_signal(loop_frames), 2, sample_rate, guard).unwrap();
    let handle = ring.handle();
    let (_writer, reader) = ring.split();
    let processor = PeriodProcessor::new(reader, None);
    let stats = processor.stats();
    let running = Box::new(output)
        .start(processor)
        .expect("starting the JACK output");

    let capture = JackCapture::connected("capture", ["latentd:out_1", "latentd:out_2"]);
    capture.record(3 * loop_frames + loop_frames / 2, CAPTURE_SLACK);
    let band = (loop_frames / 4, loop_frames / 4 + loop_frames / 8);
    handle.set_band(band.0, band.1).unwrap();
    capture.record(4 * (band.1 - band.0) + 4 * period, CAPTURE_SLACK);
    assert_eq!(
        handle.band_applied(),
        Some(band),
        "the reader never took the band"
    );
    handle.clear_band();
    capture.record(loop_frames + 4 * period, CAPTURE_SLACK);
    let latency = playback_latency(&capture, "latentd:out_1");
    let captured = capture.finish().samples;

    assert_eq!(running.format(), expected);
    running.stop().expect("stopping the JACK output");
    let stats = stats.snapshot();
    let counters = handle.counters();
    assert_eq!(counters.torn_reads, 0);
    assert_eq!(stats.callbacks, counters.periods);
    assert_eq!(stats.frames, counters.frames_played);
    eprintln!("{sample_rate} Hz / {period}: {stats:?}, playback latency {latency:?}");
    assert_eq!(latency, (period as u32, period as u32));

    let report = check_path(&captured, loop_frames, period, Some(band))
        .unwrap_or_else(|e| panic!("{sample_rate} Hz, period {period}: {e}"));
    assert!(report.wraps_before_band >= 3, "{report:?}");
    assert!(
        report.entered_by_jump || report.band_wraps > 0,
        "{report:?}"
    );
    assert!(report.band_wraps >= 2, "{report:?}");
    assert!(
        report.band_left && report.wraps_after_band >= 1,
        "{report:?}"
    );
    drop(session);
}

#[test]
fn playback_is_sample_exact_44100_period_64() {
    playback_is_sample_exact(44_100, 64);
}

#[test]
fn playback_is_sample_exact_44100_period_1024() {
    playback_is_sample_exact(44_100, 1024);
}

#[test]
fn playback_is_sample_exact_48000_period_64() {
    playback_is_sample_exact(48_000, 64);
}

#[test]
fn playback_is_sample_exact_48000_period_1024() {
    playback_is_sample_exact(48_000, 1024);
}

#[test]
fn ports_appear_and_autoconnect_to_the_physical_playback_ports() {
    let session = JackSession::start(48_000, 256);
    let options = JackOptions {
        autoconnect: true,
        ..JackOptions::default()
    };
    let output = JackOutput::open(&options).unwrap();
    let ring = PlayheadRing::silence(48_000, 2, 48_000, PlayheadRing::guard_for_period(256));
    let (_writer, reader) = ring.unwrap().split();
    let running = Box::new(output)
        .start(PeriodProcessor::new(reader, None))
        .unwrap();

    let ports = session.server.list_ports();
    for port in ["latentd:out_1", "latentd:out_2"] {
        assert!(ports.iter().any(|p| p == port), "{port} not in {ports:?}");
    }
    let graph = session.server.connections();
    assert_eq!(graph["latentd:out_1"], ["system:playback_1"]);
    assert_eq!(graph["latentd:out_2"], ["system:playback_2"]);

    assert!(
        running.stats().callbacks > 0,
        "the process callback never ran"
    );
    running.stop().unwrap();
    let ports = session.server.list_ports();
    assert!(
        !ports.iter().any(|p| p.starts_with("latentd:")),
        "{ports:?}"
    );
}

#[test]
fn an_absent_server_is_unreachable_and_a_running_one_reachable() {
    let session = JackSession::start(48_000, 256);
    assert!(JackOutput::server_reachable());
    let absent = format!("{}-absent", session.server.name());
    // SAFETY: `session` holds the process-wide JACK session lock.
    unsafe { std::env::set_var("JACK_DEFAULT_SERVER", &absent) };
    assert!(!JackOutput::server_reachable());
    match JackOutput::open(&JackOptions::default()) {
        Err(AudioError::ServerUnreachable {
            backend: "jack", ..
        }) => {}
        Err(other) => panic!("expected ServerUnreachable, got {other}"),
        Ok(_) => panic!("opened a client on the absent server {absent}"),
    }
}

#[test]
fn a_taken_client_name_is_a_precise_error() {
    let _session = JackSession::start(48_000, 256);
    let first = JackOutput::open(&JackOptions::default()).unwrap();
    match JackOutput::open(&JackOptions::default()) {
        Err(e @ AudioError::ClientNameTaken { .. }) => {
            assert!(e.to_string().contains("already taken"), "{e}")
        }
        Err(other) => panic!("expected ClientNameTaken, got {other}"),
        Ok(_) => panic!("a second client named latentd was opened"),
    }
    drop(first);
}

/// Poll `condition` every 10 ms for up to five seconds.
fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_buffer_size_change_is_followed() {
    let session = JackSession::start(48_000, 256);
    let output = JackOutput::open(&JackOptions::default()).unwrap();
    let ring = PlayheadRing::silence(12_000, 2, 48_000, PlayheadRing::guard_for_period(256));
    let ring = ring.unwrap();
    let handle = ring.handle();
    let (_writer, reader) = ring.split();
    let running = Box::new(output)
        .start(PeriodProcessor::new(reader, None))
        .unwrap();
    let (probe, _) = Client::new("probe", ClientOptions::NO_START_SERVER).unwrap();
    let latency = || {
        probe
            .port_by_name("latentd:out_2")
            .unwrap()
            .get_latency_range(LatencyType::Playback)
    };
    eventually("latency of one 256-frame period", || {
        latency() == (256, 256)
    });

    let resize = session.server.command("jack_bufsize").arg("1024").output();
    assert!(resize.unwrap().status.success(), "jack_bufsize 1024 failed");
    eventually("the new period", || running.format().period_frames == 1024);
    assert_eq!(handle.guard_frames(), PlayheadRing::guard_for_period(1024));
    eventually("latency of one 1024-frame period", || {
        latency() == (1024, 1024)
    });
    let before = running.stats();
    eventually("callbacks at the new period", || {
        running.stats().callbacks >= before.callbacks + 3
    });
    let after = running.stats();
    assert_eq!(
        (after.frames - before.frames) % 1024,
        0,
        "{before:?} -> {after:?}"
    );
    running.stop().unwrap();
    assert_eq!(handle.counters().torn_reads, 0);
}

#[test]
fn xruns_are_counted() {
    let _session = JackSession::start(48_000, 64);
    let output = JackOutput::open(&JackOptions::default()).unwrap();
    let ring = PlayheadRing::silence(12_000, 2, 48_000, PlayheadRing::guard_for_period(64));
    let (_writer, reader) = ring.unwrap().split();
    let running = Box::new(output)
        .start(PeriodProcessor::new(reader, None))
        .unwrap();
    assert_eq!(running.stats().xruns, 0);
    // A client that overruns its 1.3 ms cycles by far, for a few cycles.
    let (slow, _) = Client::new("slow", ClientOptions::NO_START_SERVER).unwrap();
    let mut late_cycles = 5;
    let slow = slow
        .activate_async(
            (),
            ClosureProcessHandler::new(move |_: &Client, _: &ProcessScope| {
                if late_cycles > 0 {
                    late_cycles -= 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Control::Continue
            }),
        )
        .unwrap();
    eventually("an xrun", || running.stats().xruns > 0);
    slow.deactivate().unwrap();
    running.stop().unwrap();
}
