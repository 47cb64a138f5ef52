//! `GET /metrics`: the daemon's health in the OpenMetrics text format (which Prometheus
//! scrapes), encoded by the `prometheus-client` crate, served on the OSCQuery HTTP port under
//! its allowlist (see [`crate::osc::oscquery`]).
//!
//! Nothing is kept here: each scrape reads the sources the rest of the daemon already keeps
//! (the `/status.reply` figures, the engine's tick histogram, the health thread's silence
//! time) through a [`Collector`], so the values are never stale and never counted twice.
//!
//! | metric | type | from |
//! | --- | --- | --- |
//! | `latentd_xruns_total` | counter | the output's xruns |
//! | `latentd_late_landings_total` | counter | ring writes that landed (partly) in the guard |
//! | `latentd_engine_restarts_total` | counter | engine pipeline restarts |
//! | `latentd_output_reconnects_total` | counter | returns of the output after a loss |
//! | `latentd_midi_messages_total`, `latentd_midi_dropped_total`, `latentd_midi_malformed_total` | counter | MIDI messages the callback queued and dropped, malformed input it skipped (only with MIDI input on, [`crate::audio::midi_in`]) |
//! | `latentd_output_up` | gauge | 1 while the output runs, 0 while lost or reconnecting |
//! | `latentd_callback_realtime` | gauge | 1 when the callback's thread runs `SCHED_FIFO` / `SCHED_RR`, 0 when not; absent until checked ([`crate::audio::realtime`]) |
//! | `latentd_lead_seconds` | gauge | the frontier lead |
//! | `latentd_level_peak_dbfs{channel}`, `latentd_level_rms_dbfs{channel}` | gauge | the last period's levels (`channel` 1 is `out_1`) |
//! | `latentd_silence_seconds` | gauge | playing time below `health.silence_dbfs` so far |
//! | `latentd_tick_seconds` | histogram | every engine tick's duration |
//! | `latentd_knob_to_ear_seconds` | histogram | each knob action's arrival to the callback's read of the first frame reflecting it |
//!
//! Threading: called on the HTTP worker threads, several at once; it only reads atomics and
//! takes the short locks the `/status` reply takes.

use std::collections::HashMap;
use std::sync::Arc;

use latentd_engine::runner::engine_config::DurationHistogram;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use crate::control::{DaemonEngine, Dispatcher};
use crate::health::HealthState;

/// Where a scrape reads from.
pub struct MetricsSources {
    /// The `/status.reply` figures.
    pub dispatcher: Arc<Dispatcher>,
    /// The engine's stats (tick histogram).
    pub engine: Arc<DaemonEngine>,
    /// The silence time.
    pub health: Arc<HealthState>,
}

impl std::fmt::Debug for MetricsSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsSources").finish_non_exhaustive()
    }
}

/// The registry a scrape encodes (its one collector reads [`MetricsSources`]).
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// Metrics read from `sources` at each scrape.
    pub fn new(sources: MetricsSources) -> Metrics {
        let mut registry = Registry::with_prefix("latentd");
        registry.register_collector(Box::new(sources));
        Metrics { registry }
    }

    /// The scrape's text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail; the collector's own encoders return Ok.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            log::warn!("metrics: encoding failed: {e}");
        }
        out
    }
}

/// A histogram given as its buckets, for [`EncodeMetric`].
struct Buckets<'a>(&'a DurationHistogram);

impl EncodeMetric for Buckets<'_> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(
            self.0.sum_s,
            self.0.count(),
            &self.0.buckets(),
            None::<&HashMap<usize, Exemplar<NoLabelSet, f64>>>,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, unit, metric.metric_type())?)
}

impl Collector for MetricsSources {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let status = self.dispatcher.status_report();
        let enc = &mut encoder;
        counter(
            enc,
            "xruns",
            "Over- and underruns the audio server reported",
            status.xruns,
        )?;
        counter(
            enc,
            "late_landings",
            "Ring writes that landed (partly) inside the guard",
            status.late_landings,
        )?;
        counter(
            enc,
            "engine_restarts",
            "Engine pipeline restarts after a failed tick",
            status.engine_restarts,
        )?;
        counter(
            enc,
            "output_reconnects",
            "Times the audio output came back after a loss",
            status.output_reconnects,
        )?;
        if let Some(midi) = self.dispatcher.midi_counters() {
            counter(
                enc,
                "midi_messages",
                "MIDI Control and Program Changes the audio callback queued",
                midi.received,
            )?;
            counter(
                enc,
                "midi_dropped",
                "MIDI messages the audio callback dropped: its queue was full",
                midi.dropped,
            )?;
            counter(
                enc,
                "midi_malformed",
                "Malformed MIDI input (PipeWire events or buffers) the callback skipped",
                midi.malformed,
            )?;
        }
        gauge(
            enc,
            "output_up",
            "1 while the audio output runs, 0 while it is lost or reconnecting",
            None,
            if status.output == "running" { 1.0 } else { 0.0 },
        )?;
        if let Some(scheduling) = self.dispatcher.output_state().callback_scheduling() {
            gauge(
                enc,
                "callback_realtime",
                "1 when the audio callback's thread has realtime scheduling (SCHED_FIFO or \
                 SCHED_RR), 0 when not; absent until checked",
                None,
                if scheduling.is_realtime() { 1.0 } else { 0.0 },
            )?;
        }
        gauge(
            enc,
            "lead",
            "Frontier lead ahead of the playhead",
            Some(&Unit::Seconds),
            status.lead_s,
        )?;
        for (name, help, pick) in [
            (
                "level_peak_dbfs",
                "Last period's peak per output channel, dBFS (-120: silence)",
                (|l: &latentd_osc_schema::reply::Level| l.peak_dbfs) as fn(&_) -> f64,
            ),
            (
                "level_rms_dbfs",
                "Last period's RMS per output channel, dBFS (-120: silence)",
                |l| l.rms_dbfs,
            ),
        ] {
            let mut family = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (k, level) in status.levels.iter().enumerate() {
                let channel = (k + 1).to_string();
                let labels = [("channel", channel.as_str())];
                ConstGauge::new(pick(level)).encode(family.encode_family(&labels)?)?;
            }
        }
        gauge(
            enc,
            "silence",
            "Playing time so far below health.silence_dbfs (0 when not silent)",
            Some(&Unit::Seconds),
            self.health.silent_s(),
        )?;
        let stats = self.engine.stats();
        let ticks = Buckets(&stats.tick_seconds);
        ticks.encode(enc.encode_descriptor(
            "tick",
            "Engine tick durations",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?)?;
        Buckets(&stats.knob_to_ear_seconds).encode(enc.encode_descriptor(
            "knob_to_ear",
            "Knob actions: from the command's arrival (after OSC decoding) to the output \
             callback's read of the first ring frame reflecting it, on the frame clock (about \
             one period's resolution); excludes network transit and the audio server's and \
             device's buffering after the callback; actions never heard are not counted",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?)
    }
}
