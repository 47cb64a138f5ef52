//! The JACK capture client: two input ports connected to the daemon's `out_1`/`out_2`,
//! whose process callback copies each cycle's frames, labelled with the cycle's
//! `jack_last_frame_time`, into preallocated single-producer queues (rtrb).
//!
//! Clock: in a cycle whose `last_frame_time` is `T`, input sample `i` is JACK frame `T + i`.
//! The daemon runs before this client in the same cycle (it feeds it), so that is the cycle
//! in which the daemon's output enters the graph. [`Capture::frame_now`] is
//! `jack_frame_time` (libjack's estimate of the current frame from the microsecond clock and
//! the cycle timing), on the same axis: a send stamped with it compares directly with
//! captured labels. Resolution: one frame (20.8 µs at 48 kHz), plus however far the
//! driver's wake-ups drift from libjack's estimate within a cycle. When the server runs
//! behind the wall clock (no realtime scheduling on a loaded machine), the estimate runs
//! ahead of the frames the graph has processed, and a change could land at a frame
//! "before" its send; [`Capture::frame_now`] then clamps the stamp to the next cycle after
//! the newest one this client ran (an overestimate by at most one period).
//!
//! Threading: [`Capture`] lives on the bench's main thread. JACK's process thread runs
//! [`Recorder::process`]: no allocation, lock, syscall or panic; when the queues lack room
//! it drops the cycle and counts it. JACK's notification thread counts xruns.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use jack::{
    AsyncClient, AudioIn, Client, ClientOptions, Control, LatencyType, NotificationHandler, Port,
    ProcessHandler, ProcessScope,
};
use rtrb::{Consumer, Producer, RingBuffer};

/// One captured cycle's label.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    /// `jack_last_frame_time` of the cycle.
    frame: u32,
    /// Frames in it (their samples follow in the sample queue).
    frames: u32,
}

/// Counters shared with the callbacks.
#[derive(Debug, Default)]
struct Counters {
    xruns: AtomicU64,
    dropped_cycles: AtomicU64,
    /// `last_frame_time` of the newest cycle this client ran.
    cycle_frame: AtomicU32,
    /// Frames in it (0: no cycle yet).
    cycle_frames: AtomicU32,
}

/// The process callback's side.
struct Recorder {
    inputs: [Port<AudioIn>; 2],
    samples: Producer<[f32; 2]>,
    stamps: Producer<Stamp>,
    counters: Arc<Counters>,
}

impl ProcessHandler for Recorder {
    fn process(&mut self, _: &Client, scope: &ProcessScope) -> Control {
        let left = self.inputs[0].as_slice(scope);
        let right = self.inputs[1].as_slice(scope);
        let n = left.len().min(right.len());
        let frame = scope.last_frame_time();
        self.counters.cycle_frame.store(frame, Ordering::Relaxed);
        self.counters
            .cycle_frames
            .store(n as u32, Ordering::Release);
        let room = self.samples.slots() >= n && self.stamps.slots() >= 1;
        let chunk = if room {
            self.samples.write_chunk_uninit(n).ok()
        } else {
            None
        };
        let Some(chunk) = chunk else {
            self.counters.dropped_cycles.fetch_add(1, Ordering::Relaxed);
            return Control::Continue;
        };
        chunk.fill_from_iter(left.iter().zip(right).map(|(&l, &r)| [l, r]));
        let stamp = Stamp {
            frame,
            frames: n as u32,
        };
        // Cannot fail: room was checked and this thread is the only producer.
        if self.stamps.push(stamp).is_err() {
            self.counters.dropped_cycles.fetch_add(1, Ordering::Relaxed);
        }
        Control::Continue
    }
}

/// The notification thread's side.
struct Notices {
    counters: Arc<Counters>,
}

impl NotificationHandler for Notices {
    fn xrun(&mut self, _: &Client) -> Control {
        self.counters.xruns.fetch_add(1, Ordering::Relaxed);
        Control::Continue
    }
}

/// A running capture of the daemon's two output ports.
pub struct Capture {
    client: AsyncClient<Notices, Recorder>,
    samples: Consumer<[f32; 2]>,
    stamps: Consumer<Stamp>,
    counters: Arc<Counters>,
    /// Extends 32-bit frame times to 64 bits.
    clock: FrameClock,
    playback_latency: [u32; 2],
}

impl Capture {
    /// Open a client called `own_name`, connect it to `<daemon>:out_1` and `:out_2`, and
    /// queue up to `seconds` of audio.
    pub fn start(own_name: &str, daemon: &str, seconds: f64) -> Result<Capture, String> {
        let (client, _status) = Client::new(own_name, ClientOptions::NO_START_SERVER)
            .map_err(|e| format!("cannot open a JACK client (is a JACK server running? JACK_DEFAULT_SERVER names it): {e}"))?;
        let sources = [format!("{daemon}:out_1"), format!("{daemon}:out_2")];
        let mut playback_latency = [0, 0];
        for source in &sources {
            let port = client.port_by_name(source).ok_or_else(|| {
                format!("JACK has no port {source} (is latentd running with --audio jack and --client-name {daemon}?)")
            })?;
            if source.ends_with("out_1") {
                let (min, max) = port.get_latency_range(LatencyType::Playback);
                playback_latency = [min, max];
            }
        }
        let register = |name: &str| {
            client
                .register_port(name, AudioIn::default())
                .map_err(|e| format!("cannot register JACK port {name}: {e}"))
        };
        let inputs = [register("in_1")?, register("in_2")?];
        let capacity = (client.sample_rate() as f64 * seconds).ceil() as usize;
        let cycles = capacity / client.buffer_size().max(1) as usize + 16;
        let (samples_in, samples) = RingBuffer::new(capacity.max(1 << 14));
        let (stamps_in, stamps) = RingBuffer::new(cycles);
        let counters = Arc::new(Counters::default());
        let own_ports: Vec<String> = inputs
            .iter()
            .map(|p| p.name().map_err(|e| format!("JACK port name: {e}")))
            .collect::<Result<_, _>>()?;
        let recorder = Recorder {
            inputs,
            samples: samples_in,
            stamps: stamps_in,
            counters: counters.clone(),
        };
        let notices = Notices {
            counters: counters.clone(),
        };
        let client = client
            .activate_async(notices, recorder)
            .map_err(|e| format!("cannot activate the JACK client: {e}"))?;
        for (source, sink) in sources.iter().zip(&own_ports) {
            client
                .as_client()
                .connect_ports_by_name(source, sink)
                .map_err(|e| format!("cannot connect {source} to {sink}: {e}"))?;
        }
        Ok(Capture {
            client,
            samples,
            stamps,
            counters,
            clock: FrameClock::default(),
            playback_latency,
        })
    }

    /// The current JACK frame time (see the module doc), extended to 64 bits, and whether
    /// it was clamped: when the server runs late, `jack_frame_time` (wall clock) runs ahead
    /// of the frames the graph has processed; the send is then stamped with the first frame
    /// of the next cycle after the newest this client ran, the earliest cycle a change sent
    /// now can reach.
    pub fn frame_now(&mut self) -> (u64, bool) {
        let estimate = self.client.as_client().frame_time();
        let frames = self.counters.cycle_frames.load(Ordering::Acquire);
        let next_cycle = self
            .counters
            .cycle_frame
            .load(Ordering::Relaxed)
            .wrapping_add(frames);
        let ahead = estimate.wrapping_sub(next_cycle) as i32 > 0;
        if frames > 0 && ahead {
            (self.clock.extend(next_cycle), true)
        } else {
            (self.clock.extend(estimate), false)
        }
    }

    /// Hand every queued frame to `sink(frame, left, right)`, in order.
    pub fn drain(&mut self, mut sink: impl FnMut(u64, f32, f32)) {
        while let Ok(stamp) = self.stamps.pop() {
            let start = self.clock.extend(stamp.frame);
            let n = stamp.frames as usize;
            let Ok(chunk) = self.samples.read_chunk(n) else {
                // The samples are pushed before their stamp, so this does not happen.
                continue;
            };
            for (i, [l, r]) in chunk.into_iter().enumerate() {
                sink(start + i as u64, l, r);
            }
        }
    }

    /// Server sample rate, Hz.
    pub fn sample_rate(&self) -> u32 {
        self.client.as_client().sample_rate()
    }

    /// Server period, frames.
    pub fn period_frames(&self) -> u32 {
        self.client.as_client().buffer_size()
    }

    /// Playback latency range of the daemon's `out_1`, frames.
    pub fn playback_latency(&self) -> [u32; 2] {
        self.playback_latency
    }

    /// xruns reported to this client.
    pub fn xruns(&self) -> u64 {
        self.counters.xruns.load(Ordering::Relaxed)
    }

    /// Cycles dropped because the queues were full.
    pub fn dropped_cycles(&self) -> u64 {
        self.counters.dropped_cycles.load(Ordering::Relaxed)
    }

    /// Disconnect and close the client.
    pub fn stop(self) {
        let _ = self.client.deactivate();
    }
}

/// Extends JACK's wrapping 32-bit frame times to 64 bits, given that successive values are
/// within 2^31 frames of each other (12 hours at 48 kHz).
#[derive(Debug, Default)]
struct FrameClock {
    newest: Option<u64>,
}

impl FrameClock {
    fn extend(&mut self, low: u32) -> u64 {
        let Some(newest) = self.newest else {
            // Start well above 0 so a value slightly older than the first stays positive.
            let v = (1u64 << 32) + u64::from(low);
            self.newest = Some(v);
            return v;
        };
        let delta = low.wrapping_sub(newest as u32) as i32;
        let v = newest.wrapping_add_signed(i64::from(delta));
        self.newest = Some(newest.max(v));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::FrameClock;

    #[test]
    fn frame_times_extend_across_the_wrap_and_back() {
        let mut c = FrameClock::default();
        let a = c.extend(u32::MAX - 10);
        assert_eq!(c.extend(5), a + 16);
        assert_eq!(c.extend(u32::MAX - 20), a - 10);
        assert_eq!(c.extend(100), a + 111);
    }
}
