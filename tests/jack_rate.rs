//! latentd's JACK output converting a 48 kHz ring for a 44.1 kHz `jackd -d dummy`: a known
//! tone in the ring reaches a second JACK client at its frequency and level, the output
//! reports the server's format, and the ring advances by the ratio of the two rates.
//!
//! Every process callback here (latentd's through `PeriodProcessor`, metering what it
//! plays, the capture's explicitly) runs under `assert_no_alloc`, which aborts the binary
//! on an allocation; the meters read the tone's level.
//!
//! Threading: as in `jack_playback.rs`, libjack finds the private server through the
//! process-wide `JACK_DEFAULT_SERVER`, so every test holds a [`JackSession`] (one at a
//! time per process) from before it sets the variable until its server is gone.

use std::f64::consts::TAU;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use assert_no_alloc::{AllocDisabler, assert_no_alloc};
use jack::contrib::ClosureProcessHandler;
use jack::{AsyncClient, AudioIn, Client, ClientOptions, Control, ProcessScope};
use latentd::audio::jack::{JackOptions, JackOutput};
use latentd::audio::{AudioOutput, OutputFormat, PeriodProcessor, Rates};
use latentd_engine::PlayheadRing;
use latentd_tests::{JackSession, fit_sine};

#[global_allocator]
static ALLOCATOR: AllocDisabler = AllocDisabler;

const RING_RATE: u32 = 48_000;
const SERVER_RATE: u32 = 44_100;
/// 1 kHz fits the one-second ring exactly (1000 cycles), so the loop has no seam.
const TONE_HZ: f64 = 1_000.0;
const LEVEL: f64 = 0.5;

type CaptureCallback = Box<dyn FnMut(&Client, &ProcessScope) -> Control + Send>;

/// A client `capture` whose input `in_1` is fed by `latentd:out_1`; records mono frames
/// into a queue allocated up front, which the test thread drains.
fn capture_mono(
    frames: usize,
) -> (
    AsyncClient<(), ClosureProcessHandler<(), CaptureCallback>>,
    Vec<f32>,
) {
    let (client, _) =
        Client::new("capture", ClientOptions::NO_START_SERVER).expect("opening the capture");
    let input = client.register_port("in_1", AudioIn::default()).unwrap();
    let (mut producer, mut queue) = rtrb::RingBuffer::new(SERVER_RATE as usize);
    let dropped = Arc::new(AtomicU64::new(0));
    let dropped_in_callback = Arc::clone(&dropped);
    let callback: CaptureCallback = Box::new(move |_, scope| {
        assert_no_alloc(|| {
            let samples = input.as_slice(scope);
            match producer.write_chunk_uninit(samples.len()) {
                Ok(chunk) => {
                    chunk.fill_from_iter(samples.iter().copied());
                }
                Err(_) => {
                    dropped_in_callback.fetch_add(samples.len() as u64, Ordering::Relaxed);
                }
            }
        });
        Control::Continue
    });
    let active = client
        .activate_async((), ClosureProcessHandler::new(callback))
        .expect("activating the capture");
    active
        .as_client()
        .connect_ports_by_name("latentd:out_1", "capture:in_1")
        .expect("connecting latentd:out_1 to capture:in_1");
    let mut recorded = Vec::with_capacity(frames);
    let deadline = Instant::now() + Duration::from_secs(20);
    while recorded.len() < frames {
        let chunk = queue.read_chunk(queue.slots()).unwrap();
        let (a, b) = chunk.as_slices();
        recorded.extend_from_slice(a);
        recorded.extend_from_slice(b);
        chunk.commit_all();
        assert!(Instant::now() < deadline, "the capture stalled");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        dropped.load(Ordering::Relaxed),
        0,
        "capture queue overflowed"
    );
    (active, recorded)
}

/// Frequency from the rising zero crossings (linearly interpolated).
fn crossing_frequency(x: &[f32], rate: f64) -> f64 {
    let rising: Vec<f64> = x
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[0] < 0.0 && w[1] >= 0.0)
        .map(|(i, w)| i as f64 + f64::from(w[0] / (w[0] - w[1])))
        .collect();
    assert!(rising.len() > 100, "only {} rising crossings", rising.len());
    (rising.len() - 1) as f64 * rate / (rising[rising.len() - 1] - rising[0])
}

fn tone_at_48_khz_plays_at_44_1_khz(period: usize) {
    let _session = JackSession::start(SERVER_RATE, period);
    let output = JackOutput::open(&JackOptions::default()).expect("opening the JACK output");
    let format = output.format();
    assert_eq!(
        format,
        OutputFormat {
            sample_rate: SERVER_RATE,
            period_frames: period,
            channels: 2,
        }
    );
    let w = TAU * TONE_HZ / f64::from(RING_RATE);
    let samples = (0..RING_RATE as usize)
        .flat_map(|i| {
            let v = (LEVEL * (w * i as f64).sin()) as f32;
            [v, v]
        })
        .collect();
    let rates = Rates {
        ring: RING_RATE,
        output: SERVER_RATE,
    };
    let guard = PlayheadRing::guard_for_period(rates.ring_frames_per_period(period));
    let ring = PlayheadRing::from_interleaved(samples, 2, RING_RATE, guard).unwrap();
    let handle = ring.handle();
    let (_writer, reader) = ring.split();
    let processor = PeriodProcessor::new(reader, None)
        .converting_to(format.sample_rate, format.period_frames)
        .expect("a converter for 48 kHz to 44.1 kHz");
    assert_eq!(processor.rates(), rates);
    let latency = processor.conversion_latency_frames();
    let stats = processor.stats();
    let meters = processor.meters();
    let running = Box::new(output).start(processor).expect("starting");

    // Half a second of the server's frames.
    let (capture, recorded) = capture_mono(SERVER_RATE as usize / 2);
    capture.deactivate().expect("deactivating the capture");
    running.stop().expect("stopping the JACK output");

    // Skip the first periods: the capture connects mid-stream, and its first period may
    // hold silence from before the link.
    let steady = &recorded[4 * period + latency..];
    let rate = f64::from(SERVER_RATE);
    let measured = crossing_frequency(steady, rate);
    let (amplitude, residual) = fit_sine(steady, rate, TONE_HZ);
    let stats = stats.snapshot();
    let played = handle.counters().frames_played;
    eprintln!(
        "period {period}: {measured:.4} Hz, amplitude {amplitude:.5}, residual {residual:.2e}, \
         latency {latency} frames, {stats:?}, ring frames {played}"
    );
    assert!((measured - TONE_HZ).abs() < 0.1, "{measured} Hz");
    assert!((amplitude - LEVEL).abs() < 0.01, "amplitude {amplitude}");
    assert!(
        residual < LEVEL * 1e-3,
        "residual {residual}: not a clean tone"
    );
    // The callback's meters heard the same tone on both channels.
    for (peak, _) in meters.linear() {
        assert!((f64::from(peak) - LEVEL).abs() < 0.01, "meter peak {peak}");
    }
    let totals = meters.totals();
    assert_eq!(totals.periods, stats.callbacks);
    for rms in totals.rms_since(&Default::default()).unwrap() {
        assert!((rms - LEVEL / 2f64.sqrt()).abs() < 0.01, "meter rms {rms}");
    }
    assert_eq!(stats.max_period_frames, period as u64);
    assert_eq!(stats.frames, stats.callbacks * period as u64);
    assert_eq!(handle.counters().torn_reads, 0);
    // The ring ran at its own rate: 48000 ring frames for every 44100 output frames.
    let expected = stats.frames as f64 * f64::from(RING_RATE) / rate;
    assert!(
        (played as f64 - expected).abs() <= 64.0,
        "{played} ring frames for {} output frames",
        stats.frames
    );
}

#[test]
fn a_48_khz_tone_reaches_a_44_1_khz_server_at_its_frequency_period_256() {
    tone_at_48_khz_plays_at_44_1_khz(256);
}

#[test]
fn a_48_khz_tone_reaches_a_44_1_khz_server_at_its_frequency_period_1023() {
    tone_at_48_khz_plays_at_44_1_khz(1023);
}
