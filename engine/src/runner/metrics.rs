//! Knob-to-ear metrics over a trace: for each control action, how long until the ring
//! changed, and until the change could be heard; percentiles over a run; and the
//! [`GoldenReport`] a benchmark run writes.
//!
//! For an action with origin `t0` ([`ActionEvent::origin_frame`]: the client's send when
//! known, else the arrival), over every write in the trace, in any order:
//!
//! - `ack_gap`: the action's reply minus `t0` (the reply's clock is given by the caller).
//! - `next_slice`: the first write landing at or after `t0`, minus `t0` (reflecting the
//!   action or not: it shows the engine kept writing).
//! - `audible_first`: the minimum, over writes that **reflect** the action
//!   (`newest_action_id >= id`) and whose start is still **ahead of the playhead when the
//!   write lands**, of `max(landed, playhead reaches the write start) - t0`.
//! - `audible_full`: the same over writes whose latent had the action's value for its
//!   whole computation (`full_action_id >= id`).
//!
//! Why a minimum and not the first qualifying write in landing order: the near-playhead
//! repatch lands a few milliseconds after the frontier write yet starts far closer to the
//! playhead, so landing order and hearing order differ. A write whose start the playhead
//! had already passed when it landed is not heard until a lap later, so it does not
//! qualify; landing time is inside the `max`, so a late write cannot win by its target
//! alone. Frames a write lost to the ring's guard are taken off its start (the guard lies
//! just ahead of the playhead); a write that lost every frame does not qualify.
//!
//! All figures are in frames of the reader's clock; [`frames_to_ms`] converts.
//!
//! # Threading
//!
//! Offline analysis (after a run, or on a dump): allocates freely, touches no shared state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::trace::{ActionEvent, ActionKind, WriteEvent};

/// Frames at `sample_rate` as milliseconds.
pub fn frames_to_ms(frames: u64, sample_rate: u32) -> f64 {
    frames as f64 * 1000.0 / sample_rate as f64
}

/// The latency figures of one action, in frames of the reader's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionLatency {
    /// The action's id.
    pub id: u64,
    /// What it changed.
    pub kind: ActionKind,
    /// The clock latency is measured from (send, else arrival).
    pub origin_frame: u64,
    /// Reply minus origin; `None` without a reply (or one stamped before the origin).
    pub ack_gap: Option<u64>,
    /// First write landing at or after the origin, minus origin.
    pub next_slice: Option<u64>,
    /// First moment a write reflecting the action is played, minus origin.
    pub audible_first: Option<u64>,
    /// First moment a write computed wholly with the action's value is played, minus
    /// origin.
    pub audible_full: Option<u64>,
}

/// When the first frame of `write` that landed is played, if the write qualifies: its start
/// was still ahead of the playhead when it landed, and some of it landed.
fn heard_at(write: &WriteEvent) -> Option<u64> {
    if write.late_frames >= write.len {
        return None;
    }
    let reached = write.start_reached_frame?;
    (reached >= write.landed_frame)
        .then(|| write.landed_frame.max(reached + write.late_frames as u64))
}

impl ActionLatency {
    /// The figures of `action` over `writes` (any order), with its reply's clock if any.
    pub fn compute<'a>(
        action: &ActionEvent,
        ack_frame: Option<u64>,
        writes: impl IntoIterator<Item = &'a WriteEvent>,
    ) -> Self {
        let t0 = action.origin_frame();
        let id = action.id;
        let mut next_slice: Option<u64> = None;
        let mut first: Option<u64> = None;
        let mut full: Option<u64> = None;
        let min_in = |slot: &mut Option<u64>, v: u64| {
            *slot = Some(slot.map_or(v, |s| s.min(v)));
        };
        for w in writes {
            if w.landed_frame >= t0 {
                min_in(&mut next_slice, w.landed_frame - t0);
            }
            let Some(heard) = heard_at(w) else { continue };
            let heard = heard.saturating_sub(t0);
            if w.newest_action_id.is_some_and(|n| n >= id) {
                min_in(&mut first, heard);
            }
            if w.full_action_id.is_some_and(|n| n >= id) {
                min_in(&mut full, heard);
            }
        }
        Self {
            id,
            kind: action.kind,
            origin_frame: t0,
            ack_gap: ack_frame.and_then(|a| a.checked_sub(t0)),
            next_slice,
            audible_first: first,
            audible_full: full,
        }
    }
}

/// Figures for every action, in the order given; `ack_frame` maps an action id to its
/// reply's clock.
pub fn action_latencies<'a>(
    actions: impl IntoIterator<Item = &'a ActionEvent>,
    writes: &[WriteEvent],
    ack_frame: impl Fn(u64) -> Option<u64>,
) -> Vec<ActionLatency> {
    actions
        .into_iter()
        .map(|a| ActionLatency::compute(a, ack_frame(a.id), writes))
        .collect()
}

/// Percentiles of a set of values, nearest-rank: `p`-th is the value at 1-based rank
/// `ceil(p / 100 * n)` of the sorted set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Values in the set.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

impl Percentiles {
    /// Percentiles of `values` (NaN ignored); `None` when nothing is left.
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let at = |percent: usize| sorted[(percent * n).div_ceil(100).clamp(1, n) - 1];
        Some(Self {
            count: n,
            p50: at(50),
            p95: at(95),
            p99: at(99),
        })
    }

    /// Percentiles of frame figures, in milliseconds; actions without the figure are left
    /// out.
    pub fn of_frames_ms(
        frames: impl IntoIterator<Item = Option<u64>>,
        sample_rate: u32,
    ) -> Option<Self> {
        let ms: Vec<f64> = frames
            .into_iter()
            .flatten()
            .map(|f| frames_to_ms(f, sample_rate))
            .collect();
        Self::of(&ms)
    }
}

/// The figures of one action kind in a report, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KindFigures {
    /// Actions of this kind.
    pub actions: usize,
    /// Send (or arrival) to reply.
    pub ack_gap_ms: Option<Percentiles>,
    /// Send to the next ring write.
    pub next_slice_ms: Option<Percentiles>,
    /// Send to the first audible change.
    pub audible_first_ms: Option<Percentiles>,
    /// Send to the first audio computed wholly with the new value.
    pub audible_full_ms: Option<Percentiles>,
    /// Actions never heard in the trace (no qualifying write).
    pub unheard: usize,
}

impl KindFigures {
    /// Figures over `latencies` (all of one kind).
    pub fn of(latencies: &[&ActionLatency], sample_rate: u32) -> Self {
        let ms = |f: fn(&ActionLatency) -> Option<u64>| {
            Percentiles::of_frames_ms(latencies.iter().map(|l| f(l)), sample_rate)
        };
        Self {
            actions: latencies.len(),
            ack_gap_ms: ms(|l| l.ack_gap),
            next_slice_ms: ms(|l| l.next_slice),
            audible_first_ms: ms(|l| l.audible_first),
            audible_full_ms: ms(|l| l.audible_full),
            unheard: latencies
                .iter()
                .filter(|l| l.audible_first.is_none())
                .count(),
        }
    }
}

/// Figures of the whole stream over a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StreamFigures {
    /// Engine tick duration, ms.
    pub tick_ms: Option<Percentiles>,
    /// Windowed decode duration, ms.
    pub decode_ms: Option<Percentiles>,
    /// Frontier lead, seconds.
    pub lead_s: Option<Percentiles>,
    /// Writes that lost frames to the ring's guard.
    pub late_landings: u64,
    /// Output underruns (xruns) the audio backend reported.
    pub underruns: u64,
}

impl StreamFigures {
    /// Figures from per-tick samples and counters.
    pub fn from_samples(
        tick_ms: &[f64],
        decode_ms: &[f64],
        lead_s: &[f64],
        late_landings: u64,
        underruns: u64,
    ) -> Self {
        Self {
            tick_ms: Percentiles::of(tick_ms),
            decode_ms: Percentiles::of(decode_ms),
            lead_s: Percentiles::of(lead_s),
            late_landings,
            underruns,
        }
    }
}

/// Writes in a trace that lost frames to the ring's guard.
pub fn late_landings<'a>(writes: impl IntoIterator<Item = &'a WriteEvent>) -> u64 {
    writes.into_iter().filter(|w| w.late_frames > 0).count() as u64
}

/// The report of a benchmark run: per action kind the latency figures, plus the stream's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoldenReport {
    /// Output rate the frame figures were converted at.
    pub sample_rate: u32,
    /// Figures per action kind (kinds without actions are left out).
    pub actions: BTreeMap<ActionKind, KindFigures>,
    /// Stream figures.
    pub stream: StreamFigures,
}

impl GoldenReport {
    /// Group `latencies` by kind and attach the stream figures.
    pub fn new(sample_rate: u32, latencies: &[ActionLatency], stream: StreamFigures) -> Self {
        let actions = ActionKind::ALL
            .iter()
            .filter_map(|&kind| {
                let of_kind: Vec<&ActionLatency> =
                    latencies.iter().filter(|l| l.kind == kind).collect();
                (!of_kind.is_empty()).then(|| (kind, KindFigures::of(&of_kind, sample_rate)))
            })
            .collect();
        Self {
            sample_rate,
            actions,
            stream,
        }
    }

    /// The report as pretty-printed JSON (non-finite numbers come out as `null`).
    pub fn to_json(&self) -> String {
        // Plain structs of numbers and string-keyed maps: serialization cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
