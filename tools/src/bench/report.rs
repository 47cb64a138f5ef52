//! What `bench knob-to-ear` reports: one record per change, summaries (percentiles and
//! jitter) per edge and overall, the JACK server's format, the daemon's counters before and
//! after, and the flood when one ran. Serialized as JSON (`--out`) and printed as text.
//!
//! Percentiles are nearest-rank (p99 of 50 values is the largest but none). Jitter is the
//! standard deviation of the latencies; `spread_ms` is max − min.
//!
//! Threading: plain data, built on the bench's main thread.

use serde::Serialize;

use super::detect::Edge;
use super::flood::FloodReport;

/// One change sent, and when it was heard.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// Order of sending, from 0.
    pub index: usize,
    /// Which way the gains went.
    pub edge: Edge,
    /// JACK frame time when the UDP datagram was handed to the kernel (`jack_frame_time`
    /// just before `send`).
    pub sent_frame: u64,
    /// JACK frame time of the first changed output frame; `None`: not heard in time.
    pub heard_frame: Option<u64>,
    /// `heard_frame - sent_frame`.
    pub latency_frames: Option<u64>,
    /// The same in milliseconds.
    pub latency_ms: Option<f64>,
    /// The output held the previous state until the send (see `detect`).
    pub clean: bool,
    /// Sent while the flood was running.
    pub during_flood: bool,
    /// When the output left the new state again before the next change (sound back after
    /// silence, or a silent run after sound), ms after `heard_frame`; `None`: it held.
    pub reverted_after_ms: Option<f64>,
}

/// Percentiles and jitter of a set of latencies.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// How many latencies.
    pub count: usize,
    /// Smallest, ms.
    pub min_ms: f64,
    /// Median (nearest rank), ms.
    pub p50_ms: f64,
    /// 95th percentile (nearest rank), ms.
    pub p95_ms: f64,
    /// 99th percentile (nearest rank), ms.
    pub p99_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
    /// Mean, ms.
    pub mean_ms: f64,
    /// Standard deviation, ms.
    pub jitter_ms: f64,
    /// max − min, ms.
    pub spread_ms: f64,
}

impl Summary {
    /// The summary of `values_ms`; `None` when empty.
    pub fn of(values_ms: &[f64]) -> Option<Summary> {
        if values_ms.is_empty() {
            return None;
        }
        let mut v = values_ms.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let rank = |p: f64| v[((p / 100.0 * n as f64).ceil() as usize).clamp(1, n) - 1];
        let mean = v.iter().sum::<f64>() / n as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        Some(Summary {
            count: n,
            min_ms: v[0],
            p50_ms: rank(50.0),
            p95_ms: rank(95.0),
            p99_ms: rank(99.0),
            max_ms: v[n - 1],
            mean_ms: mean,
            jitter_ms: var.sqrt(),
            spread_ms: v[n - 1] - v[0],
        })
    }
}

/// Summaries over all changes and per edge.
#[derive(Debug, Clone, Serialize)]
pub struct Summaries {
    /// Every detected change.
    pub all: Option<Summary>,
    /// Gains 1 → 0: first frame of exact silence (includes the ring's fade-out).
    pub to_silence: Option<Summary>,
    /// Gains 0 → 1: first non-zero frame (exact first changed sample).
    pub to_sound: Option<Summary>,
}

impl Summaries {
    /// Over the detected changes among `changes` that `keep` selects.
    pub fn of(changes: &[Change], keep: impl Fn(&Change) -> bool) -> Summaries {
        let pick = |edge: Option<Edge>| -> Vec<f64> {
            changes
                .iter()
                .filter(|c| keep(c) && edge.is_none_or(|e| c.edge == e))
                .filter_map(|c| c.latency_ms)
                .collect()
        };
        Summaries {
            all: Summary::of(&pick(None)),
            to_silence: Summary::of(&pick(Some(Edge::ToSilence))),
            to_sound: Summary::of(&pick(Some(Edge::ToSound))),
        }
    }
}

/// The JACK side of the measurement.
#[derive(Debug, Clone, Serialize)]
pub struct JackSide {
    /// Server sample rate, Hz.
    pub sample_rate: u32,
    /// Server period, frames.
    pub period_frames: u32,
    /// Playback latency range JACK reports for the daemon's first port, frames (what a
    /// real device would add after the graph; the dummy driver's own latency is in it).
    pub playback_latency_frames: [u32; 2],
    /// xruns the capture client was told of during the run.
    pub capture_xruns: u64,
    /// Capture cycles dropped because the bench fell behind (0 on a sane run).
    pub capture_dropped_cycles: u64,
}

/// The daemon's `/status.reply` counters around the run.
#[derive(Debug, Clone, Serialize)]
pub struct DaemonCounters {
    /// xruns before the first change.
    pub xruns_before: i64,
    /// xruns after the last.
    pub xruns_after: i64,
    /// Late landings before.
    pub late_landings_before: i64,
    /// Late landings after.
    pub late_landings_after: i64,
    /// The daemon's own knob-to-ear estimate of its newest knob action, ms (after the run).
    pub internal_last_knob_to_ear_ms: Option<f64>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always `knob-to-ear`.
    pub bench: &'static str,
    /// The OSC address sent (`/knob/ch_g*`).
    pub address: String,
    /// Where it was sent (`udp://127.0.0.1:7770`).
    pub server: String,
    /// The daemon's JACK client name.
    pub client_name: String,
    /// Exactly-zero frames that make a silent run.
    pub silence_run_frames: u64,
    /// How send times become JACK frames, in words.
    pub clock: &'static str,
    /// Changes sent.
    pub sent: usize,
    /// Changes heard.
    pub detected: usize,
    /// Changes heard whose output held the previous state until the send.
    pub clean: usize,
    /// Sends whose stamp was clamped because the server ran behind the wall clock.
    pub clamped_sends: usize,
    /// Changes whose new state did not hold until the next send (see `reverted_after_ms`).
    pub reverted: usize,
    /// Summaries over every detected change.
    pub latency: Summaries,
    /// Summaries over the changes sent while the flood ran (`None` without a flood).
    pub latency_during_flood: Option<Summaries>,
    /// The JACK side.
    pub jack: JackSide,
    /// The daemon's counters.
    pub daemon: DaemonCounters,
    /// The flood, when one ran.
    pub flood: Option<FloodReport>,
    /// Every change.
    pub changes: Vec<Change>,
}

impl Report {
    /// A few lines for a terminal.
    pub fn text(&self) -> String {
        let mut out = format!(
            "knob-to-ear via {} on {} ({} Hz, period {} frames): {} sent, {} detected, {} clean, {} reverted\n",
            self.address,
            self.server,
            self.jack.sample_rate,
            self.jack.period_frames,
            self.sent,
            self.detected,
            self.clean,
            self.reverted
        );
        let mut rows = vec![("all", &self.latency.all)];
        rows.push(("to_silence", &self.latency.to_silence));
        rows.push(("to_sound", &self.latency.to_sound));
        if let Some(f) = &self.latency_during_flood {
            rows.push(("flood_all", &f.all));
        }
        out.push_str("           n      p50      p95      p99   jitter     min      max  (ms)\n");
        for (name, s) in rows {
            if let Some(s) = s {
                out.push_str(&format!(
                    "{name:<10} {:>3} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7.2} {:>8.2}\n",
                    s.count, s.p50_ms, s.p95_ms, s.p99_ms, s.jitter_ms, s.min_ms, s.max_ms
                ));
            }
        }
        out.push_str(&format!(
            "xruns: daemon {} -> {}, capture {}; late landings {} -> {}; capture cycles dropped {}; \
             send stamps clamped {}\n",
            self.daemon.xruns_before,
            self.daemon.xruns_after,
            self.jack.capture_xruns,
            self.daemon.late_landings_before,
            self.daemon.late_landings_after,
            self.jack.capture_dropped_cycles,
            self.clamped_sends
        ));
        if let Some(f) = &self.flood {
            out.push_str(&f.text());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_and_jitter() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Summary::of(&v).unwrap();
        assert_eq!((s.p50_ms, s.p95_ms, s.p99_ms), (50.0, 95.0, 99.0));
        assert_eq!((s.min_ms, s.max_ms, s.spread_ms), (1.0, 100.0, 99.0));
        assert!((s.mean_ms - 50.5).abs() < 1e-12);
        assert!((s.jitter_ms - 28.866_070_047_722_12).abs() < 1e-9);
        let one = Summary::of(&[7.0]).unwrap();
        assert_eq!((one.p50_ms, one.p99_ms, one.jitter_ms), (7.0, 7.0, 0.0));
        assert!(Summary::of(&[]).is_none());
    }
}
