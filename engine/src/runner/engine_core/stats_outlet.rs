//! What the engine core reports: the live [`EngineStats`] published through a triple buffer
//! (at most every 0.1 s), with the recent tick and decode percentiles, and the
//! [`EngineRecord`] kept for a dump (trace, replies, bounded duration samples).
//!
//! Threading: owned by the engine core (one thread). Publishing writes a triple buffer
//! (never blocks); the percentiles sort a fixed array; the sample vectors never grow past
//! the capacity they were made with.

use crate::runner::actions::EngineRecord;
use crate::runner::engine_config::EngineStats;

/// Recent durations the published percentiles cover.
const RECENT: usize = 256;
/// Seconds between stats publishes.
const PUBLISH_EVERY_S: f64 = 0.1;

/// A fixed ring of recent durations (ms) for the published percentiles.
struct Recent {
    values: [f64; RECENT],
    len: usize,
    next: usize,
}

impl Recent {
    fn new() -> Self {
        Self {
            values: [0.0; RECENT],
            len: 0,
            next: 0,
        }
    }

    fn push(&mut self, v: f64) {
        self.values[self.next] = v;
        self.next = (self.next + 1) % RECENT;
        self.len = (self.len + 1).min(RECENT);
    }

    /// (p50, p95) without allocating.
    fn percentiles(&self) -> (f64, f64) {
        if self.len == 0 {
            return (0.0, 0.0);
        }
        let mut sorted = self.values;
        let s = &mut sorted[..self.len];
        s.sort_unstable_by(f64::total_cmp);
        let at = |p: usize| s[((p * s.len()).div_ceil(100)).clamp(1, s.len()) - 1];
        (at(50), at(95))
    }
}

/// The live stats and their publisher.
pub(super) struct StatsOutlet {
    /// The stats as of now; the core's parts update them in place.
    pub stats: EngineStats,
    recent_tick: Recent,
    recent_decode: Recent,
    input: triple_buffer::Input<EngineStats>,
    /// `(time, ticks)` of the last publish.
    last_publish: Option<(f64, u64)>,
}

impl StatsOutlet {
    pub fn new(input: triple_buffer::Input<EngineStats>) -> Self {
        Self {
            stats: EngineStats::default(),
            recent_tick: Recent::new(),
            recent_decode: Recent::new(),
            input,
            last_publish: None,
        }
    }

    /// A tick's batched denoise took `seconds` (as charged).
    pub fn tick_took(&mut self, seconds: f64) {
        self.recent_tick.push(seconds * 1e3);
        self.stats.tick_seconds.observe(seconds);
    }

    /// A window's decode took `seconds` (as charged).
    pub fn decode_took(&mut self, seconds: f64) {
        self.recent_decode.push(seconds * 1e3);
    }

    /// Publish at `now_s` (at most every 0.1 s unless `force`), with the state only the
    /// core knows: whether it idles or is paused, and the trace's dropped events.
    pub fn publish(&mut self, now_s: f64, force: bool, idle: bool, paused: bool, dropped: u64) {
        let (t0, ticks0) = self.last_publish.unwrap_or((now_s, self.stats.ticks));
        if !force && self.last_publish.is_some() && now_s - t0 < PUBLISH_EVERY_S {
            return;
        }
        let dt = now_s - t0;
        if dt > 0.0 {
            self.stats.ticks_per_s = (self.stats.ticks - ticks0) as f64 / dt;
        }
        (self.stats.tick_ms_p50, self.stats.tick_ms_p95) = self.recent_tick.percentiles();
        self.stats.decode_ms_p50 = self.recent_decode.percentiles().0;
        self.stats.idle = idle;
        self.stats.paused = paused;
        self.stats.trace_dropped = dropped;
        self.input.write(self.stats.clone());
        self.last_publish = Some((now_s, self.stats.ticks));
    }
}

/// The record kept for a dump, with its bounded samples: once a sample vector is full, a
/// new value overwrites the oldest.
pub(super) struct Recorder {
    /// The trace, the replies and the samples.
    pub record: EngineRecord,
    /// Values seen per sample vector (tick, decode, lead), for the overwrite position.
    seen: [usize; 3],
    capacity: usize,
}

impl Recorder {
    pub fn new(record: EngineRecord, capacity: usize) -> Self {
        Self {
            record,
            seen: [0; 3],
            capacity,
        }
    }

    /// A tick's duration, ms.
    pub fn tick_ms(&mut self, ms: f64) {
        push_sample(
            &mut self.record.tick_ms,
            self.capacity,
            &mut self.seen[0],
            ms,
        );
    }

    /// A decode's duration, ms.
    pub fn decode_ms(&mut self, ms: f64) {
        push_sample(
            &mut self.record.decode_ms,
            self.capacity,
            &mut self.seen[1],
            ms,
        );
    }

    /// A frontier write's lead, seconds.
    pub fn lead_s(&mut self, seconds: f64) {
        push_sample(
            &mut self.record.lead_s,
            self.capacity,
            &mut self.seen[2],
            seconds,
        );
    }
}

fn push_sample(samples: &mut Vec<f64>, cap: usize, count: &mut usize, v: f64) {
    if samples.len() < cap {
        samples.push(v);
    } else {
        samples[*count % cap] = v;
    }
    *count += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_cover_the_recent_values_only() {
        let mut r = Recent::new();
        assert_eq!(r.percentiles(), (0.0, 0.0));
        for v in 1..=100 {
            r.push(f64::from(v));
        }
        assert_eq!(r.percentiles(), (50.0, 95.0));
        for _ in 0..RECENT {
            r.push(7.0);
        }
        assert_eq!(r.percentiles(), (7.0, 7.0));
    }

    #[test]
    fn a_full_sample_vector_overwrites_its_oldest_value() {
        let mut samples = Vec::with_capacity(2);
        let mut seen = 0;
        for v in [1.0, 2.0, 3.0] {
            push_sample(&mut samples, 2, &mut seen, v);
        }
        assert_eq!(samples, [3.0, 2.0]);
        assert_eq!(seen, 3);
    }
}
