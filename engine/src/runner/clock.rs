//! The engine's view of time: [`EngineClock`], with a real implementation
//! ([`RealClock`]: the ring's frame clock and `Instant`) and a simulated one ([`SimClock`]:
//! time is driven by the caller, a simulated reader plays the ring as simulated time
//! passes, and work is charged at modeled costs, so runs are deterministic and fast).
//!
//! # The contract
//!
//! The engine core asks the clock for the time (`now_s`, any monotonic timeline in
//! seconds) and for the ring's `(playhead, frame clock)` pair, and reports each piece of
//! work it finished with its measured duration through [`EngineClock::charge`]. A real clock
//! returns the measured time (it has already passed); the simulated clock advances
//! simulated time by the modeled cost, playing the ring period by period meanwhile, and
//! returns the modeled cost, so the figures the engine records are the modeled ones.
//!
//! # Threading
//!
//! A clock is owned by whoever runs the core: the engine thread ([`RealClock`]) or a test
//! harness ([`SimClock`]). The simulated clock owns the ring's reader.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::ring::{RingHandle, RingReader};

/// A piece of engine work, for [`EngineClock::charge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// One pipeline tick (the batched denoise).
    Tick,
    /// One windowed decode.
    Decode,
    /// An injected stall (a test hook), of the given length.
    Stall,
}

/// Time and playhead as the engine core sees them.
pub trait EngineClock {
    /// Seconds on a monotonic timeline.
    fn now_s(&self) -> f64;
    /// The ring's published playhead and frame clock, read together.
    fn playhead_and_clock(&self) -> (usize, u64);
    /// `work` just finished after `measured_s` seconds of real time; returns the seconds it
    /// counts for (real: `measured_s`; simulated: the modeled cost, which is also spent).
    fn charge(&mut self, work: Work, measured_s: f64) -> f64;
    /// Stall for `seconds` (a test hook): real clocks sleep, simulated ones advance.
    fn stall(&mut self, seconds: f64);
}

/// The real clock: `Instant` since construction and the ring's frame clock.
pub struct RealClock {
    ring: RingHandle,
    start: Instant,
}

impl RealClock {
    /// A clock over the ring `ring` (played by some output), starting at 0 s now.
    pub fn new(ring: RingHandle) -> Self {
        Self {
            ring,
            start: Instant::now(),
        }
    }
}

impl EngineClock for RealClock {
    fn now_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn playhead_and_clock(&self) -> (usize, u64) {
        self.ring.playhead_and_clock()
    }

    fn charge(&mut self, _work: Work, measured_s: f64) -> f64 {
        measured_s
    }

    fn stall(&mut self, seconds: f64) {
        std::thread::sleep(Duration::from_secs_f64(seconds.max(0.0)));
    }
}

/// Modeled costs of engine work in simulated time, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimCosts {
    /// One tick.
    pub tick_s: f64,
    /// One windowed decode.
    pub decode_s: f64,
    /// One prompt / timbre encode (on the encoder thread: it delays the commit, not the
    /// engine).
    pub encode_s: f64,
}

impl Default for SimCosts {
    /// ACE-Step v1.5's figures on an RTX 5090: 43 ms a tick, 4.5 ms a windowed decode; an
    /// encode of 30 ms.
    fn default() -> Self {
        Self {
            tick_s: 0.043,
            decode_s: 0.0045,
            encode_s: 0.030,
        }
    }
}

/// Simulated time: integer nanoseconds, a reader playing one period at every period
/// boundary, modeled costs. Optionally keeps everything the reader played.
pub struct SimClock {
    reader: RingReader,
    ring: RingHandle,
    costs: SimCosts,
    period: usize,
    now_ns: u64,
    periods_read: u64,
    buf: Vec<f32>,
    played: Option<Vec<f32>>,
}

const NS: u128 = 1_000_000_000;

impl SimClock {
    /// A clock at 0 s whose reader plays `period_frames` per period.
    pub fn new(reader: RingReader, period_frames: usize, costs: SimCosts) -> Self {
        let ring = reader.handle();
        let period = period_frames.max(1);
        Self {
            buf: vec![0.0; period * ring.channels()],
            reader,
            ring,
            costs,
            period,
            now_ns: 0,
            periods_read: 0,
            played: None,
        }
    }

    /// Keep every played sample (interleaved) from now on; see [`Self::played`].
    pub fn record_output(&mut self) {
        self.played.get_or_insert_with(Vec::new);
    }

    /// What the reader played since [`Self::record_output`] (interleaved, ring channels).
    pub fn played(&self) -> &[f32] {
        self.played.as_deref().unwrap_or(&[])
    }

    /// The ring being played.
    pub fn ring(&self) -> &RingHandle {
        &self.ring
    }

    /// The modeled costs.
    pub fn costs(&self) -> SimCosts {
        self.costs
    }

    /// Simulated time in nanoseconds.
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// Seconds to simulated nanoseconds (rounded).
    pub fn ns(seconds: f64) -> u64 {
        (seconds.max(0.0) * 1e9).round() as u64
    }

    /// The frame clock at simulated time `ns`: the frames of every period whose boundary
    /// has passed (the reader publishes once per period).
    pub fn frame_clock_at(&self, ns: u64) -> u64 {
        let rate = self.ring.sample_rate() as u128;
        let periods = ns as u128 * rate / (NS * self.period as u128);
        periods as u64 * self.period as u64
    }

    /// Advance simulated time to `ns` (never backwards), playing every period whose
    /// boundary passes.
    pub fn advance_to(&mut self, ns: u64) {
        let ns = ns.max(self.now_ns);
        let rate = self.ring.sample_rate() as u128;
        loop {
            let next = self.periods_read as u128 + 1;
            // Period k ends at k * period / rate seconds.
            if next * self.period as u128 * NS > ns as u128 * rate {
                break;
            }
            let channels = self.ring.channels();
            self.reader.read_interleaved(&mut self.buf, channels);
            if let Some(p) = self.played.as_mut() {
                p.extend_from_slice(&self.buf);
            }
            self.periods_read += 1;
        }
        self.now_ns = ns;
    }

    /// Advance simulated time by `seconds`.
    pub fn advance_by(&mut self, seconds: f64) {
        self.advance_to(self.now_ns + Self::ns(seconds));
    }
}

impl EngineClock for SimClock {
    fn now_s(&self) -> f64 {
        self.now_ns as f64 / 1e9
    }

    fn playhead_and_clock(&self) -> (usize, u64) {
        self.ring.playhead_and_clock()
    }

    fn charge(&mut self, work: Work, _measured_s: f64) -> f64 {
        let cost = match work {
            Work::Tick => self.costs.tick_s,
            Work::Decode => self.costs.decode_s,
            Work::Stall => 0.0,
        };
        self.advance_by(cost);
        cost
    }

    fn stall(&mut self, seconds: f64) {
        self.advance_by(seconds);
    }
}
