//! A JACK client that records what arrives at its two inputs, for tests that check what
//! another client (latentd's output, in-process or the real daemon) plays.
//!
//! [`JackCapture::start`] opens a client with inputs `in_1`, `in_2`;
//! [`connect`](JackCapture::connect) links two source ports to them. Every process cycle
//! the callback copies both inputs, interleaved, into a queue allocated up front, and
//! stamps the cycle with JACK's frame time (`last_frame_time`) and length, so a test can
//! tell a hole in the server's timeline from a hole in the audio. A drain thread moves the
//! queues into a [`Recording`] every few milliseconds, so the test thread may be busy
//! (waiting for a process to exit) without the queue overflowing.
//!
//! Threading: the process callback runs on JACK's thread under `assert_no_alloc` (a test
//! binary with `assert_no_alloc::AllocDisabler` as its allocator aborts on an allocation
//! there); it takes no lock and makes no syscall, and a full queue is counted
//! ([`JackCapture::overflowed`]), never waited on. The drain thread owns the consumers and
//! appends to the recording under a mutex the test thread reads through. libjack finds the
//! server through `JACK_DEFAULT_SERVER`, so the caller sets that first.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use assert_no_alloc::assert_no_alloc;
use jack::{AsyncClient, AudioIn, Client, ClientOptions, Control, Port, ProcessScope};

/// The capture client's input ports, in channel order.
pub const CAPTURE_PORTS: [&str; 2] = ["in_1", "in_2"];
/// Seconds of audio the callback's queue holds before it overflows.
const QUEUE_SECONDS: usize = 2;
/// How often the drain thread empties the queues.
const DRAIN_EVERY: Duration = Duration::from_millis(2);

/// One process cycle as the capture saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapturedPeriod {
    /// JACK's frame time at the start of the cycle (`jack_last_frame_time`).
    pub frame_time: u32,
    /// Frames in the cycle.
    pub frames: u32,
    /// When the cycle started on the machine's monotonic clock, µs (`current_usecs` of
    /// `jack_get_cycle_times`; 0 if the server did not say): comparable across servers.
    pub usecs: u64,
}

/// Where the frame times of consecutive cycles do not follow on: the server skipped
/// `missing` frames (an xrun) before cycle `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameTimeGap {
    /// Index into [`Recording::periods`] of the cycle after the hole.
    pub period: usize,
    /// Index into the recorded frames where that cycle starts.
    pub frame: usize,
    /// Frames of JACK time between the end of the previous cycle and the start of this
    /// one (negative if the clock went back).
    pub missing: i64,
}

/// What a capture has recorded: interleaved frames (`in_1`, `in_2`) and the cycles they
/// came in, in order; the cycles' frames add up to the recorded frames.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    /// Interleaved samples, two per frame.
    pub samples: Vec<f32>,
    /// The cycles, in order.
    pub periods: Vec<CapturedPeriod>,
}

impl Recording {
    /// Recorded frames.
    pub fn frames(&self) -> usize {
        self.samples.len() / 2
    }

    /// Frame `i` as `[in_1, in_2]`.
    pub fn frame(&self, i: usize) -> [f32; 2] {
        [self.samples[2 * i], self.samples[2 * i + 1]]
    }

    /// Every place where a cycle's frame time is not the previous cycle's plus its length.
    pub fn frame_time_gaps(&self) -> Vec<FrameTimeGap> {
        let mut gaps = Vec::new();
        let mut frame = 0usize;
        for (i, pair) in self.periods.windows(2).enumerate() {
            frame += pair[0].frames as usize;
            let expected = pair[0].frame_time.wrapping_add(pair[0].frames);
            let missing = i64::from(pair[1].frame_time.wrapping_sub(expected) as i32);
            if missing != 0 {
                gaps.push(FrameTimeGap {
                    period: i + 1,
                    frame,
                    missing,
                });
            }
        }
        gaps
    }
}

/// The realtime half: the ports and the producer ends of the queues.
struct Recorder {
    inputs: [Port<AudioIn>; 2],
    samples: rtrb::Producer<f32>,
    periods: rtrb::Producer<CapturedPeriod>,
    overflowed: Arc<AtomicU64>,
    /// Cleared before the client is deactivated, which unlinks the inputs one by one while
    /// cycles still run: the recording must not end on a half-linked cycle.
    armed: Arc<AtomicBool>,
}

impl jack::ProcessHandler for Recorder {
    fn process(&mut self, _: &Client, scope: &ProcessScope) -> Control {
        assert_no_alloc(|| {
            if !self.armed.load(Ordering::Acquire) {
                return;
            }
            let [left, right] = [&self.inputs[0], &self.inputs[1]].map(|p| p.as_slice(scope));
            let n = left.len().min(right.len());
            if self.samples.slots() < 2 * n || self.periods.slots() == 0 {
                self.overflowed.fetch_add(n as u64, Ordering::Relaxed);
                return;
            }
            // Samples first: a cycle the drain thread sees has its samples committed.
            if let Ok(chunk) = self.samples.write_chunk_uninit(2 * n) {
                chunk.fill_from_iter(left.iter().zip(right).flat_map(|(&l, &r)| [l, r]));
            }
            let usecs = scope.cycle_times().map_or(0, |t| t.current_usecs);
            let _ = self.periods.push(CapturedPeriod {
                frame_time: scope.last_frame_time(),
                frames: n as u32,
                usecs,
            });
        });
        Control::Continue
    }
}

/// A running capture client (see the module doc). Dropping it closes the client.
pub struct JackCapture {
    client: Option<AsyncClient<(), Recorder>>,
    recording: Arc<Mutex<Recording>>,
    overflowed: Arc<AtomicU64>,
    armed: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    drain: Option<JoinHandle<()>>,
}

impl JackCapture {
    /// Open and activate a client `name` with inputs [`CAPTURE_PORTS`], unconnected.
    /// Panics with the reason if the server does not answer or the name is taken.
    pub fn start(name: &str) -> JackCapture {
        let (client, _) = Client::new(name, ClientOptions::NO_START_SERVER).unwrap_or_else(|e| {
            panic!("opening the capture client {name} (JACK_DEFAULT_SERVER must name a running server): {e}")
        });
        let inputs = CAPTURE_PORTS.map(|port| {
            client
                .register_port(port, AudioIn::default())
                .unwrap_or_else(|e| panic!("registering {name}:{port}: {e}"))
        });
        let rate = client.sample_rate() as usize;
        let (samples, mut sample_queue) = rtrb::RingBuffer::new(2 * QUEUE_SECONDS * rate);
        // One stamp per cycle; JACK's shortest period is 16 frames.
        let (periods, mut period_queue) = rtrb::RingBuffer::new(QUEUE_SECONDS * rate / 16);
        let overflowed = Arc::new(AtomicU64::new(0));
        let armed = Arc::new(AtomicBool::new(true));
        let recorder = Recorder {
            inputs,
            samples,
            periods,
            overflowed: Arc::clone(&overflowed),
            armed: Arc::clone(&armed),
        };
        let recording = Arc::new(Mutex::new(Recording {
            samples: Vec::with_capacity(2 * 8 * rate),
            periods: Vec::with_capacity(8 * rate / 64),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let drain = {
            let (recording, stop) = (Arc::clone(&recording), Arc::clone(&stop));
            std::thread::Builder::new()
                .name(format!("{name}-drain"))
                .spawn(move || {
                    loop {
                        // Read the flag first: what was queued before it was set is drained.
                        let last = stop.load(Ordering::Acquire);
                        drain_into(&mut sample_queue, &mut period_queue, &recording);
                        if last {
                            return;
                        }
                        std::thread::sleep(DRAIN_EVERY);
                    }
                })
                .expect("spawning the capture's drain thread")
        };
        let client = client
            .activate_async((), recorder)
            .unwrap_or_else(|e| panic!("activating the capture client {name}: {e}"));
        JackCapture {
            client: Some(client),
            recording,
            overflowed,
            armed,
            stop,
            drain: Some(drain),
        }
    }

    /// [`start`](JackCapture::start), then [`connect`](JackCapture::connect) `sources`.
    pub fn connected(name: &str, sources: [&str; 2]) -> JackCapture {
        let capture = JackCapture::start(name);
        capture.connect(sources);
        capture
    }

    /// Link `sources[k]` (full port names, e.g. `latentd:out_1`) to input `k`. Panics
    /// with the ports and the reason if JACK refuses.
    pub fn connect(&self, sources: [&str; 2]) {
        let client = self.client();
        for (source, input) in sources.iter().zip(CAPTURE_PORTS) {
            let input = format!("{}:{input}", client.name());
            client
                .connect_ports_by_name(source, &input)
                .unwrap_or_else(|e| panic!("connecting {source} to {input}: {e}"));
        }
    }

    /// The JACK client (to connect other ports, read latencies, list ports).
    pub fn client(&self) -> &Client {
        self.client
            .as_ref()
            .expect("the client lives until finish or abandon")
            .as_client()
    }

    /// The recording so far, locked (hold it briefly: the drain thread waits for it).
    pub fn recording(&self) -> MutexGuard<'_, Recording> {
        self.recording
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Frames recorded so far.
    pub fn frames(&self) -> usize {
        self.recording().frames()
    }

    /// Frames the callback could not queue (the drain thread fell behind); 0 when healthy.
    pub fn overflowed(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
    }

    /// Wait until `more` frames beyond those recorded now have arrived; panics after
    /// `limit`.
    pub fn record(&self, more: usize, limit: Duration) {
        let target = self.frames() + more;
        let deadline = Instant::now() + limit;
        while self.frames() < target {
            assert!(
                Instant::now() < deadline,
                "the capture stalled: {} of {target} frames after {limit:?}",
                self.frames()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stop recording (from the next cycle on; the recording ends on a whole cycle),
    /// deactivate and close the client, take the last queued frames and return the whole
    /// recording. Panics if the client cannot be deactivated or the queue overflowed.
    pub fn finish(mut self) -> Recording {
        self.disarm();
        let client = self.client.take().expect("finish once");
        client
            .deactivate()
            .unwrap_or_else(|e| panic!("deactivating the capture client: {e}"));
        self.stop_draining();
        assert_eq!(self.overflowed(), 0, "the capture queue overflowed");
        std::mem::take(&mut *self.recording())
    }

    /// Stop recording and leak the client without closing it: for a client whose server
    /// died, since closing it makes libjack cancel its threads, and a cancellation that
    /// unwinds through the jack crate's Rust callback frames aborts the process.
    pub fn abandon(mut self) {
        std::mem::forget(self.client.take());
        self.stop_draining();
    }

    /// Stop recording and wait until a cycle has passed, so none is being recorded.
    fn disarm(&mut self) {
        self.armed.store(false, Ordering::Release);
        let cycle = self.client().buffer_size() as f64 / self.client().sample_rate() as f64;
        std::thread::sleep(Duration::from_secs_f64(2.0 * cycle) + Duration::from_millis(5));
    }

    fn stop_draining(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(drain) = self.drain.take() {
            drain.join().expect("the capture's drain thread panicked");
        }
    }
}

impl Drop for JackCapture {
    fn drop(&mut self) {
        if self.client.is_some() {
            self.disarm();
        }
        // Close the client first, so the drain thread's last pass takes everything.
        drop(self.client.take());
        self.stop_draining();
    }
}

/// Move every whole cycle queued so far into `recording`.
fn drain_into(
    samples: &mut rtrb::Consumer<f32>,
    periods: &mut rtrb::Consumer<CapturedPeriod>,
    recording: &Mutex<Recording>,
) {
    let Ok(stamps) = periods.read_chunk(periods.slots()) else {
        return;
    };
    let (a, b) = stamps.as_slices();
    let wanted: usize = a.iter().chain(b).map(|p| 2 * p.frames as usize).sum();
    let mut recording = recording
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    recording.periods.extend_from_slice(a);
    recording.periods.extend_from_slice(b);
    stamps.commit_all();
    // The callback committed these samples before their stamps.
    let chunk = samples
        .read_chunk(wanted)
        .expect("a queued cycle's samples are queued before its stamp");
    let (a, b) = chunk.as_slices();
    recording.samples.extend_from_slice(a);
    recording.samples.extend_from_slice(b);
    chunk.commit_all();
}
