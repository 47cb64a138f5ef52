//! Live input: the audio callback's copy of the input ports into a preallocated queue,
//! with the frame clock each period started at, for the live capture (`/capture`) to read.
//!
//! [`input_queue`] makes the two ends. The callback end, [`InputTap`], lives in the
//! [`PeriodProcessor`](super::PeriodProcessor) (so it survives a lost output, as the record
//! tap does); [`InputReader`] goes to the capture on the control side. While
//! [`InputShared::armed`] is down the callback only counts frames (the input clock); while
//! it is up it copies each period, interleaved, into an `rtrb` queue of samples and pushes
//! one [`InputBlock`] header per period into a second queue: where the period starts on
//! the input clock and where the ring's playhead was, so the reader can place every frame
//! against the loop (quantize to the wrap) and notice a lost period (a gap in the clock).
//! A period that does not fit whole is dropped and counted ([`InputShared::overruns`]).
//!
//! The JACK callback queues its input ports in the same period it plays
//! ([`InputTap::process`]); the PipeWire output's input stream has a callback of its own,
//! on the same data thread, which queues its interleaved buffer
//! ([`InputTap::process_interleaved`] through
//! [`ProcessorSlot::queue_input_interleaved`](super::ProcessorSlot::queue_input_interleaved)).
//!
//! The backend reports the input latency (JACK: the ports' capture latency range;
//! PipeWire: the input stream's delay) into [`InputShared`]; the capture compensates it and
//! the output's playback latency.
//!
//! Threading: [`InputTap::process`] runs on the realtime thread: no allocation, no lock,
//! no syscall (the queues are wait-free, the rest atomics). [`InputReader`] is `Send`, one
//! reader at a time (the capture holds it while a capture runs). The latency atomics are
//! written by the backend's notification thread and read anywhere.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use latentd_engine::RingHandle;

/// Most input ports an output opens (`audio.inputs`).
pub const MAX_INPUTS: usize = 8;

/// Seconds of input the queue holds before periods are dropped (the capture drains it
/// every few milliseconds).
pub const QUEUE_SECONDS: f64 = 2.0;

/// One period of input as queued: its place on the input clock and against the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputBlock {
    /// Input clock (frames at the output's rate since the tap was made) of the first frame.
    pub start: u64,
    /// Frames in the period (the samples follow in the sample queue, interleaved).
    pub frames: u32,
    /// The ring's playhead (ring frames, in `0 .. loop_frames`) when the period started.
    pub playhead: u32,
}

/// What both ends share.
#[derive(Debug, Default)]
pub struct InputShared {
    /// Raised by the capture while it reads; the callback queues only while it is up.
    pub armed: AtomicBool,
    /// Input frames dropped because the queue was full (whole periods).
    pub overruns: AtomicU64,
    /// Input ports the running output opened (0: none, or a backend without inputs).
    pub ports: AtomicUsize,
    /// Largest capture latency of the input ports, frames (what lies upstream). The
    /// output's playback latency, the other half of the round trip, is the output's own
    /// ([`OutputStateHandle::latency_frames`](super::supervisor::OutputStateHandle::latency_frames)).
    pub capture_latency: AtomicU32,
}

/// The callback's end (see the module doc).
pub struct InputTap {
    samples: rtrb::Producer<f32>,
    blocks: rtrb::Producer<InputBlock>,
    channels: usize,
    /// Input clock at the next period's first frame.
    clock: u64,
    ring: RingHandle,
    shared: Arc<InputShared>,
}

/// The capture's end (see the module doc).
pub struct InputReader {
    /// Interleaved samples, `channels` per frame.
    pub samples: rtrb::Consumer<f32>,
    /// One header per queued period, in order.
    pub blocks: rtrb::Consumer<InputBlock>,
    /// Channels (input ports) per frame.
    pub channels: usize,
    /// Shared with the tap.
    pub shared: Arc<InputShared>,
}

impl InputReader {
    /// Throw away whatever is queued (stale periods of an earlier capture).
    pub fn clear(&mut self) {
        while self.blocks.pop().is_ok() {}
        let n = self.samples.slots();
        if let Ok(chunk) = self.samples.read_chunk(n) {
            chunk.commit_all();
        }
    }
}

/// The two ends of an input queue for `channels` ports at `rate` frames per second, whose
/// headers carry the playhead of `ring`.
pub fn input_queue(channels: usize, rate: u32, ring: RingHandle) -> (InputTap, InputReader) {
    let channels = channels.clamp(1, MAX_INPUTS);
    let frames = (QUEUE_SECONDS * f64::from(rate)).ceil() as usize;
    let (samples_tx, samples_rx) = rtrb::RingBuffer::new(frames * channels);
    // Headers for periods of 16 frames, the smallest a server gives.
    let (blocks_tx, blocks_rx) = rtrb::RingBuffer::new(frames / 16 + 1);
    let shared = Arc::new(InputShared::default());
    (
        InputTap {
            samples: samples_tx,
            blocks: blocks_tx,
            channels,
            clock: 0,
            ring,
            shared: Arc::clone(&shared),
        },
        InputReader {
            samples: samples_rx,
            blocks: blocks_rx,
            channels,
            shared,
        },
    )
}

impl InputTap {
    /// The state shared with the reader and the backend.
    pub fn shared(&self) -> Arc<InputShared> {
        Arc::clone(&self.shared)
    }

    /// Queue one period of `inputs` (one slice per port; a missing port reads as
    /// silence), as the module doc says. Realtime-safe; call it before the ring is read
    /// for the same period, so the header's playhead is the period's first frame.
    #[inline]
    pub fn process(&mut self, inputs: &[&[f32]]) {
        let n = inputs.iter().map(|s| s.len()).min().unwrap_or(0);
        let ch = self.channels;
        self.queue(n, |idx| {
            inputs.get(idx % ch).map_or(0.0, |port| port[idx / ch])
        });
    }

    /// Queue one period of interleaved input, `channels` samples a frame (channels beyond
    /// the tap's are left out, missing ones read as silence), as [`Self::process`] does.
    /// Realtime-safe.
    #[inline]
    pub fn process_interleaved(&mut self, samples: &[f32], channels: usize) {
        let channels = channels.max(1);
        let n = samples.len() / channels;
        let ch = self.channels;
        self.queue(n, |idx| {
            let (frame, k) = (idx / ch, idx % ch);
            if k < channels {
                samples[frame * channels + k]
            } else {
                0.0
            }
        });
    }

    /// Queue `n` frames whose interleaved sample `idx` (of `n * channels`) is
    /// `sample(idx)`: count them on the input clock, and while armed copy them with their
    /// header, or drop and count the whole period when it does not fit.
    #[inline]
    fn queue(&mut self, n: usize, sample: impl Fn(usize) -> f32) {
        let start = self.clock;
        self.clock += n as u64;
        if n == 0 || !self.shared.armed.load(Ordering::Acquire) {
            return;
        }
        let ch = self.channels;
        if self.samples.slots() < n * ch || self.blocks.slots() == 0 {
            self.shared.overruns.fetch_add(n as u64, Ordering::Relaxed);
            return;
        }
        let playhead = self.ring.playhead_and_clock().0 as u32;
        if let Ok(mut chunk) = self.samples.write_chunk_uninit(n * ch) {
            let (a, b) = chunk.as_mut_slices();
            for (idx, slot) in a.iter_mut().chain(b.iter_mut()).enumerate() {
                slot.write(sample(idx));
            }
            // SAFETY: every slot of both slices was written just above.
            unsafe { chunk.commit_all() };
        }
        // Cannot fail: a free slot was checked above and this is the only writer.
        let _ = self.blocks.push(InputBlock {
            start,
            frames: n as u32,
            playhead,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latentd_engine::PlayheadRing;

    fn ring() -> (latentd_engine::RingWriter, latentd_engine::RingReader) {
        PlayheadRing::from_interleaved(vec![0.0; 2 * 4096], 2, 48_000, 64)
            .unwrap()
            .split()
    }

    #[test]
    fn an_unarmed_tap_only_counts_and_an_armed_one_queues_interleaved_with_headers() {
        let (_w, reader) = ring();
        let (mut tap, mut rx) = input_queue(2, 48_000, reader.handle());
        let left: Vec<f32> = (0..64).map(|i| i as f32).collect();
        let right: Vec<f32> = (0..64).map(|i| -(i as f32)).collect();
        assert_no_alloc::assert_no_alloc(|| tap.process(&[&left, &right]));
        assert!(rx.blocks.pop().is_err(), "nothing queued while unarmed");
        rx.shared.armed.store(true, Ordering::Release);
        assert_no_alloc::assert_no_alloc(|| tap.process(&[&left, &right]));
        let block = rx.blocks.pop().unwrap();
        assert_eq!((block.start, block.frames, block.playhead), (64, 64, 0));
        let chunk = rx.samples.read_chunk(128).unwrap();
        let (a, b) = chunk.as_slices();
        let got: Vec<f32> = a.iter().chain(b).copied().collect();
        assert_eq!(&got[..6], &[0.0, 0.0, 1.0, -1.0, 2.0, -2.0]);
        chunk.commit_all();
        // One port given for two channels: the other reads as silence.
        assert_no_alloc::assert_no_alloc(|| tap.process(&[&left]));
        assert_eq!(rx.blocks.pop().unwrap().start, 128);
        assert_eq!(rx.samples.pop().unwrap(), 0.0);
        assert_eq!(rx.samples.pop().unwrap(), 0.0);
        assert_eq!(rx.samples.pop().unwrap(), 1.0);
    }

    #[test]
    fn a_duplex_period_queues_the_input_and_plays_the_ring_without_allocating() {
        let ring = PlayheadRing::from_interleaved(vec![0.5; 2 * 4096], 2, 48_000, 64).unwrap();
        let (_w, reader) = ring.split();
        let (tap, mut rx) = input_queue(2, 48_000, reader.handle());
        let slot = super::super::ProcessorSlot::new(
            super::super::PeriodProcessor::new(reader, None).with_input(tap),
        );
        let shared = slot.input().expect("the slot shares the input state");
        shared.armed.store(true, Ordering::Release);
        let input = [0.25f32; 64];
        let (mut left, mut right) = (vec![0.0f32; 64], vec![0.0f32; 64]);
        for _ in 0..3 {
            assert_no_alloc::assert_no_alloc(|| {
                slot.process_duplex(&[&input, &input], &mut [&mut left, &mut right])
            });
        }
        assert!(left.iter().chain(&right).all(|&v| v == 0.5));
        // Each block's playhead is where the ring was when its period began.
        let playheads: Vec<u32> = std::iter::from_fn(|| rx.blocks.pop().ok())
            .map(|b| b.playhead)
            .collect();
        assert_eq!(playheads, [0, 64, 128]);
        assert_eq!(rx.samples.slots(), 3 * 64 * 2);
    }

    #[test]
    fn interleaved_input_is_queued_like_ports_without_allocating() {
        let (_w, reader) = ring();
        let (mut tap, mut rx) = input_queue(2, 48_000, reader.handle());
        rx.shared.armed.store(true, Ordering::Release);
        let stereo: Vec<f32> = (0..8).map(|i| i as f32).collect();
        assert_no_alloc::assert_no_alloc(|| tap.process_interleaved(&stereo, 2));
        let block = rx.blocks.pop().unwrap();
        assert_eq!((block.start, block.frames), (0, 4));
        let got: Vec<f32> = std::iter::from_fn(|| rx.samples.pop().ok()).collect();
        assert_eq!(got, stereo);
        // Three channels into a two-channel tap: the third is left out.
        let three = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_no_alloc::assert_no_alloc(|| tap.process_interleaved(&three, 3));
        assert_eq!(rx.blocks.pop().unwrap().start, 4);
        let got: Vec<f32> = std::iter::from_fn(|| rx.samples.pop().ok()).collect();
        assert_eq!(got, [1.0, 2.0, 4.0, 5.0]);
        // One channel into two: the second reads as silence.
        assert_no_alloc::assert_no_alloc(|| tap.process_interleaved(&[7.0, 8.0], 1));
        let got: Vec<f32> = std::iter::from_fn(|| rx.samples.pop().ok()).collect();
        assert_eq!(got, [7.0, 0.0, 8.0, 0.0]);
    }

    #[test]
    fn a_full_queue_drops_whole_periods_and_counts_them() {
        let (_w, reader) = ring();
        let (mut tap, mut rx) = input_queue(1, 8_000, reader.handle());
        rx.shared.armed.store(true, Ordering::Release);
        let period = vec![0.25f32; 1000];
        for _ in 0..20 {
            assert_no_alloc::assert_no_alloc(|| tap.process(&[&period]));
        }
        // 2 s at 8 kHz hold 16 periods of 1000 frames; 4 were dropped.
        assert_eq!(rx.shared.overruns.load(Ordering::Relaxed), 4000);
        let mut starts = Vec::new();
        while let Ok(b) = rx.blocks.pop() {
            starts.push(b.start);
        }
        assert_eq!(starts.len(), 16);
        assert_eq!(starts[15], 15_000);
        rx.clear();
        assert_eq!(rx.samples.slots(), 0);
    }
}
