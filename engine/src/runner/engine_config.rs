//! Settings, errors and published statistics of the engine's tick loop
//! ([`super::engine_core`], [`super::engine_loop`]).
//!
//! # Threading
//!
//! Plain values: the config is copied into the engine thread at spawn; [`EngineStats`] is
//! published by the engine thread through a triple buffer and read by anyone through
//! [`EngineHandle::stats`](super::engine_loop::EngineHandle::stats).

use serde::{Deserialize, Serialize};

use super::lead::{LeadConfig, LeadError};
use crate::model::DecodeError;
use crate::ring::RingError;

/// Settings of the tick loop; every field has a default, so a config file may name only
/// what it changes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// The lead controller (frontier lead, repatch switch and activity window).
    pub lead: LeadConfig,
    /// Seconds added to `interval_ema * repatch_gain` for the near-playhead repatch
    /// distance (default 0). A player reached over a network would need about 0.05 s here
    /// for the transit to its playhead; latentd owns its playhead and places the repatch
    /// from it after the decode, so nothing is left to cover: the distance is never below
    /// the ring's guard plus one block, which is what the default gives.
    pub repatch_margin_s: f64,
    /// Multiplier on the decode-gap EMA for the near-playhead repatch distance (default 0;
    /// a gain such as 1.6 is only needed when the target is fixed before the decode and
    /// sent over a network, which latentd's is not).
    pub repatch_gain: f64,
    /// Latent frames of each decoded window that are written (9 = 0.36 s at 25 fps).
    pub keep_latent_frames: usize,
    /// Seconds between ticks when no inbound activity is recent (the engine paces itself).
    pub tick_interval_s: f64,
    /// Seconds between ticks within `active_window_s` of inbound activity (0: back to
    /// back, as fast as the model goes).
    pub active_tick_interval_s: f64,
    /// How long after inbound activity the engine ticks at the active interval.
    pub active_window_s: f64,
    /// With no inbound activity for this many seconds the engine stops generating (the
    /// ring keeps looping); any input resumes it at once. 0 disables the idle pause. A loop
    /// with no source is first written whole (until then the rest of it is silence), so
    /// it idles only after every part has been written once.
    pub idle_after_s: f64,
    /// Events the trace keeps (oldest dropped first).
    pub trace_capacity: usize,
    /// Timing samples kept for the stream figures (oldest dropped first).
    pub sample_capacity: usize,
    /// Start with generation paused (as after [`EngineHandle::set_paused`]`(true)`): the ring
    /// plays what it holds, untouched, until the engine is unpaused.
    ///
    /// [`EngineHandle::set_paused`]: super::engine_loop::EngineHandle::set_paused
    pub start_paused: bool,
    /// Walk mode ([`super::walk`]): a loop longer than this many seconds is generated in
    /// chunks of this length around the playhead (default 60 s, the model's window).
    pub walk_chunk_s: f64,
    /// Walk mode: the pipeline switches to the next chunk at the latest when the playhead
    /// is this many seconds from the chunk's end (default 3 s: a slow pipeline's drain plus
    /// the lead ceiling), so fresh latents for the next chunk exist when the playhead
    /// crosses. A faster pipeline switches later: twice its measured drain plus lead, at
    /// least 0.5 s. Below `walk_chunk_s`.
    pub walk_prewarm_s: f64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            lead: LeadConfig::default(),
            repatch_margin_s: 0.0,
            repatch_gain: 0.0,
            keep_latent_frames: 9,
            tick_interval_s: 0.04,
            active_tick_interval_s: 0.0,
            active_window_s: 2.0,
            idle_after_s: 20.0,
            trace_capacity: 1 << 16,
            sample_capacity: 1 << 16,
            start_paused: false,
            walk_chunk_s: 60.0,
            walk_prewarm_s: 3.0,
        }
    }
}

impl EngineConfig {
    /// Check every field; the first bad one is named in the error.
    pub fn validate(&self) -> Result<(), EngineError> {
        self.lead.validate()?;
        let non_negative = [
            ("repatch_margin_s", self.repatch_margin_s),
            ("repatch_gain", self.repatch_gain),
            ("tick_interval_s", self.tick_interval_s),
            ("active_tick_interval_s", self.active_tick_interval_s),
            ("active_window_s", self.active_window_s),
            ("idle_after_s", self.idle_after_s),
            ("walk_prewarm_s", self.walk_prewarm_s),
        ];
        for (field, value) in non_negative {
            if !(value.is_finite() && value >= 0.0) {
                return Err(EngineError::Config {
                    field,
                    reason: format!("must be a finite number >= 0, got {value}"),
                });
            }
        }
        if !(self.walk_chunk_s.is_finite() && self.walk_chunk_s > 0.0) {
            return Err(EngineError::Config {
                field: "walk_chunk_s",
                reason: format!("must be a finite number > 0, got {}", self.walk_chunk_s),
            });
        }
        if self.walk_prewarm_s >= self.walk_chunk_s {
            return Err(EngineError::Config {
                field: "walk_prewarm_s",
                reason: format!(
                    "must be below walk_chunk_s ({} s), got {}",
                    self.walk_chunk_s, self.walk_prewarm_s
                ),
            });
        }
        for (field, value) in [
            ("keep_latent_frames", self.keep_latent_frames),
            ("trace_capacity", self.trace_capacity),
            ("sample_capacity", self.sample_capacity),
        ] {
            if value == 0 {
                return Err(EngineError::Config {
                    field,
                    reason: "must be at least 1".into(),
                });
            }
        }
        Ok(())
    }
}

/// What the engine cannot do, with the reason.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A setting is out of range.
    #[error("engine config: {field} {reason}")]
    Config {
        /// The setting.
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// The lead settings are invalid.
    #[error(transparent)]
    Lead(#[from] LeadError),
    /// The ring and the model disagree (rate, channels) or the window does not fit.
    #[error("engine: {0}")]
    Geometry(String),
    /// A loop band in seconds that is not a band of this loop.
    #[error("loop band [{a_s} s, {b_s} s): {reason}")]
    Band {
        /// Start, seconds.
        a_s: f64,
        /// End, seconds.
        b_s: f64,
        /// Why it was refused.
        reason: String,
    },
    /// The ring refused something.
    #[error(transparent)]
    Ring(#[from] RingError),
    /// The model could not encode a source.
    #[error("engine: source: {0}")]
    Source(String),
    /// A decode failed.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The engine thread is gone (stopped, or it died).
    #[error("engine: the engine thread is not running")]
    NotRunning,
    /// The engine thread panicked outside the caught tick.
    #[error("engine: the engine thread panicked")]
    ThreadPanicked,
    /// Spawning the thread failed.
    #[error("engine: cannot spawn the engine thread: {0}")]
    Spawn(std::io::Error),
    /// Writing a dump failed.
    #[error("engine: dump: {0}")]
    Io(std::io::Error),
}

/// Upper bounds, in seconds, of the buckets of a [`DurationHistogram`] (tick durations and
/// knob-to-ear latencies); one more bucket, unbounded, follows the last.
pub const DURATION_BUCKETS_S: [f64; 10] =
    [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0];

/// Durations since start, in the buckets of [`DURATION_BUCKETS_S`] (the shape a Prometheus
/// histogram exports). Fixed size: counting never allocates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DurationHistogram {
    /// Durations per bucket: `counts[i]` were at most `DURATION_BUCKETS_S[i]` and more than
    /// the bound before it (not cumulative).
    pub counts: [u64; DURATION_BUCKETS_S.len()],
    /// Durations longer than the last bound.
    pub over: u64,
    /// Sum of every duration, seconds.
    pub sum_s: f64,
}

impl DurationHistogram {
    /// Count one duration of `seconds`.
    pub fn observe(&mut self, seconds: f64) {
        match DURATION_BUCKETS_S
            .iter()
            .position(|&bound| seconds <= bound)
        {
            Some(i) => self.counts[i] += 1,
            None => self.over += 1,
        }
        self.sum_s += seconds;
    }

    /// Durations counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum::<u64>() + self.over
    }

    /// `(upper bound, durations in that bucket)` per bucket, not cumulative (as
    /// `prometheus-client` takes them), the last bound infinite.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        DURATION_BUCKETS_S
            .iter()
            .copied()
            .zip(self.counts.iter().copied())
            .chain(std::iter::once((f64::INFINITY, self.over)))
            .collect()
    }
}

/// The engine's figures, published a few times a second and on demand.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineStats {
    /// Ticks run.
    pub ticks: u64,
    /// Ticks per second over the last publish interval.
    pub ticks_per_s: f64,
    /// Tick duration over the recent ticks, ms (median).
    pub tick_ms_p50: f64,
    /// Tick duration over the recent ticks, ms (95th percentile).
    pub tick_ms_p95: f64,
    /// Windowed decode duration over the recent decodes, ms (median).
    pub decode_ms_p50: f64,
    /// Current frontier lead, seconds.
    pub lead_s: f64,
    /// Writes that lost frames to the ring's guard.
    pub late_landings: u64,
    /// Ticks without a fresh latent that re-rendered the cached one.
    pub gap_fills: u64,
    /// Near-playhead repatch writes.
    pub repatches: u64,
    /// Frontier writes of fresh latents.
    pub frontier_writes: u64,
    /// Panics caught inside the tick (the pipeline was restarted each time).
    pub panics: u64,
    /// Pipeline restarts after a caught panic (an `Err` tick counts in `panics` only).
    #[serde(default)]
    pub pipeline_restarts: u64,
    /// Ticks whose batched model call failed (the slots were left unchanged and the loop
    /// kept playing), since start: counted here, from the pipeline tick's `Result`, so the
    /// count outlives a pipeline rebuilt on a source change or after a panic.
    #[serde(default)]
    pub model_faults: u64,
    /// The newest of those failures, in words.
    #[serde(default)]
    pub last_model_fault: Option<String>,
    /// Batched model calls a decoder-scope knob interrupted so its near-playhead repatch
    /// could run first (the step ran again at the next tick; not a fault).
    #[serde(default)]
    pub denoise_interrupts: u64,
    /// Whether generation is paused by the idle rule.
    pub idle: bool,
    /// Whether generation is paused by the transport.
    pub paused: bool,
    /// Knob-to-ear (`audible_first`) of the newest knob action, ms, once heard.
    pub last_knob_to_ear_ms: Option<f64>,
    /// Trace events dropped because the trace was full.
    pub trace_dropped: u64,
    /// Walk mode: the window the pipeline generates for: a chunk, or the chunk count while
    /// it generates a band across a boundary as a window of its own (0 when the loop is one
    /// chunk).
    pub walk_chunk: usize,
    /// Walk mode: pipeline switches from one chunk to another.
    pub walk_switches: u64,
    /// Every tick's duration since start.
    #[serde(default)]
    pub tick_seconds: DurationHistogram,
    /// Knob-to-ear (`audible_first`, see [`super::knob_to_ear`]) of every knob action
    /// since start, counted once final.
    #[serde(default)]
    pub knob_to_ear_seconds: DurationHistogram,
}

#[cfg(test)]
mod duration_histogram_tests {
    use super::*;

    #[test]
    fn durations_land_in_their_buckets_and_add_up() {
        let mut h = DurationHistogram::default();
        for s in [0.0005, 0.001, 0.0015, 0.3, 2.0] {
            h.observe(s);
        }
        assert_eq!(h.count(), 5);
        assert!((h.sum_s - 2.303).abs() < 1e-12);
        let b = h.buckets();
        assert_eq!(b.len(), DURATION_BUCKETS_S.len() + 1);
        assert_eq!(b[0], (0.001, 2));
        assert_eq!(b[1], (0.002, 1));
        assert_eq!(b[8], (0.5, 1));
        assert_eq!(b[10], (f64::INFINITY, 1));
        assert_eq!(b.iter().map(|&(_, n)| n).sum::<u64>(), h.count());
    }
}
