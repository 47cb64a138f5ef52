//! Health: is the room hearing what it should? The health thread reads the output's
//! [`Meters`], sends `/meter` to the clients that asked for it (`/notify/meter <hz>`, each at
//! its own rate), and runs the silence and clip alarms of the `[health]` config section
//! ([`HealthConfig`]).
//!
//! Alarms ([`Alarms`]), armed only while the transport plays (a pause clears a raised one):
//! - **silence**: every channel's RMS stays below `silence_dbfs` for `silence_s` seconds of
//!   playing; cleared as soon as one channel is above it again.
//! - **clip**: a sample at or above `clip_dbfs` (the callback counts every one, so a single
//!   clipped sample between two reads is not missed); cleared after [`CLIP_CLEAR_AFTER`]
//!   without one.
//!
//! A third alarm, **record**, is raised by the recorder when a failed write (a full disk)
//! stops a recording ([`RecordAlarm`]); it is published the same way, and cleared by the
//! next recording that starts; it never withholds the watchdog.
//!
//! Each change is a structured log record (fields `ALARM`, `ALARM_STATE`, `LEVEL_DBFS`,
//! `THRESHOLD_DBFS`: a journal event under systemd) and shows in the `STATUS=` line (the
//! serve loop writes it, [`HealthState::status_suffix`]). With `action = "notify"` or
//! `"restart"` it is also pushed to the `/notify` subscribers as `/alarm s kind, i raised,
//! s detail`; with `"restart"` the watchdog pings are withheld while an alarm is raised
//! ([`HealthState`] is the supervisor's [`Veto`]), so systemd restarts the service.
//!
//! Threading: one thread of its own ("health"), started after the output and the OSC
//! server, stopped (and joined) at shutdown. It reads the meters' atomics and the ring's
//! transport flag, sends through the [`Subscribers`] handle (which never waits on a client)
//! and updates [`HealthState`] under a short mutex that the serve loop and the watchdog
//! thread also take; the audio callback is never touched.

use latentd_engine::lock::MutexExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use latentd_engine::RingHandle;
use latentd_osc_schema::reply::{self, Level};
use serde::{Deserialize, Serialize};

use crate::audio::{MeterTotals, Meters};
use crate::osc::Subscribers;
use crate::record::{RecordEvents, RecordFault};
use crate::stoppable::StoppableThread;
use crate::systemd::Veto;

/// Longest sleep of the health thread: how often the alarms are evaluated, and how late a
/// new meter subscriber may get its first `/meter`.
pub const HEALTH_TICK: Duration = Duration::from_millis(50);
/// A clip alarm clears after this long without a clipped sample.
pub const CLIP_CLEAR_AFTER: Duration = Duration::from_secs(5);
/// Accepted `silence_dbfs`.
pub const SILENCE_DBFS_RANGE: std::ops::RangeInclusive<f64> = Level::FLOOR_DBFS..=-10.0;
/// Accepted `silence_s`: above 0, at most a day.
pub const MAX_SILENCE_S: f64 = 86_400.0;
/// Accepted `clip_dbfs`.
pub const CLIP_DBFS_RANGE: std::ops::RangeInclusive<f64> = -40.0..=0.0;

/// What a raised alarm does besides the log record and the `STATUS=` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlarmAction {
    /// Nothing more.
    Log,
    /// Push `/alarm` to the `/notify` subscribers.
    Notify,
    /// Push `/alarm`, and withhold the watchdog pings while it is raised.
    Restart,
}

/// `[health]`: the alarms' thresholds and action. Every field has its default here (and
/// only here), so a config file names only what it changes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Silence: every channel's RMS below this, dBFS.
    pub silence_dbfs: f64,
    /// Silence: for this long while playing, seconds.
    pub silence_s: f64,
    /// Clip: a sample at or above this, dBFS.
    pub clip_dbfs: f64,
    /// What a raised alarm does.
    pub action: AlarmAction,
}

impl Default for HealthConfig {
    fn default() -> HealthConfig {
        HealthConfig {
            silence_dbfs: -60.0,
            silence_s: 10.0,
            clip_dbfs: -0.1,
            action: AlarmAction::Notify,
        }
    }
}

impl HealthConfig {
    /// Check every field; the error names the first bad one and what is accepted.
    pub fn validate(&self) -> Result<(), String> {
        let range = |name: &str, v: f64, r: &std::ops::RangeInclusive<f64>| {
            if r.contains(&v) {
                Ok(())
            } else {
                Err(format!(
                    "{name} = {v}: expected {} to {} dBFS",
                    r.start(),
                    r.end()
                ))
            }
        };
        range("silence_dbfs", self.silence_dbfs, &SILENCE_DBFS_RANGE)?;
        range("clip_dbfs", self.clip_dbfs, &CLIP_DBFS_RANGE)?;
        if !(self.silence_s > 0.0 && self.silence_s <= MAX_SILENCE_S) {
            return Err(format!(
                "silence_s = {}: expected seconds above 0 and at most {MAX_SILENCE_S}",
                self.silence_s
            ));
        }
        Ok(())
    }
}

/// Which alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmKind {
    /// The output stayed below `silence_dbfs`.
    Silence,
    /// A sample reached `clip_dbfs`.
    Clip,
    /// A recording stopped because its file could not be written (a full disk); raised by
    /// the recorder ([`RecordAlarm`]), not by the health thread, and never a reason to
    /// restart (the audio plays on).
    Record,
}

impl AlarmKind {
    /// The name in `/alarm`, the log and `STATUS=`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmKind::Silence => "silence",
            AlarmKind::Clip => "clip",
            AlarmKind::Record => "record",
        }
    }
}

/// An alarm raised or cleared.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmEvent {
    /// Which alarm.
    pub kind: AlarmKind,
    /// Raised (true) or cleared.
    pub raised: bool,
    /// What was measured: the level (dBFS) that raised or cleared it, if any.
    pub level_dbfs: Option<f64>,
    /// The threshold, dBFS.
    pub threshold_dbfs: f64,
    /// One line for people.
    pub detail: String,
}

/// The alarms' state machine: fed the meters' totals, whether the transport plays and the
/// time, it says which alarms rise or clear. Pure (no I/O), so tests drive it with made-up
/// times.
#[derive(Debug)]
pub struct Alarms {
    config: HealthConfig,
    last: Option<(MeterTotals, Instant)>,
    /// Playing time since the output was last above the silence threshold.
    silent_for: Duration,
    silence_raised: bool,
    /// When the last clipped sample was seen, while the clip alarm is raised.
    clip_raised_at: Option<Instant>,
}

impl Alarms {
    /// Alarms with `config`'s thresholds.
    pub fn new(config: HealthConfig) -> Alarms {
        Alarms {
            config,
            last: None,
            silent_for: Duration::ZERO,
            silence_raised: false,
            clip_raised_at: None,
        }
    }

    /// Playing time since the output was last above the silence threshold.
    pub fn silent_for(&self) -> Duration {
        self.silent_for
    }

    /// The clip threshold as a linear magnitude (what the meters count against).
    pub fn clip_linear(&self) -> f32 {
        Level::linear(self.config.clip_dbfs) as f32
    }

    /// Take the meters' totals at `now` with the transport `playing`; returns the alarms
    /// that rose or cleared since the last call.
    pub fn update(&mut self, totals: MeterTotals, playing: bool, now: Instant) -> Vec<AlarmEvent> {
        let mut events = Vec::new();
        let Some((before, then)) = self.last.replace((totals, now)) else {
            return events;
        };
        if !playing {
            self.silent_for = Duration::ZERO;
            if self.silence_raised {
                self.silence_raised = false;
                events.push(self.silence_event(false, None, "transport paused"));
            }
            if self.clip_raised_at.take().is_some() {
                events.push(self.clip_event(false, None, "transport paused"));
            }
            return events;
        }
        // Silence: judged on the frames played since the last call (none: no news).
        if let Some(rms) = totals.rms_since(&before) {
            let loudest = rms.iter().copied().fold(0.0, f64::max);
            let threshold = Level::linear(self.config.silence_dbfs);
            if loudest < threshold {
                self.silent_for += now.saturating_duration_since(then);
                let limit = Duration::from_secs_f64(self.config.silence_s);
                if !self.silence_raised && self.silent_for >= limit {
                    self.silence_raised = true;
                    let detail = format!(
                        "output below {} dBFS RMS for {:.1} s while playing (loudest channel \
                         {:.1} dBFS)",
                        self.config.silence_dbfs,
                        self.silent_for.as_secs_f64(),
                        Level::dbfs(loudest)
                    );
                    events.push(self.silence_event(true, Some(Level::dbfs(loudest)), &detail));
                }
            } else {
                self.silent_for = Duration::ZERO;
                if self.silence_raised {
                    self.silence_raised = false;
                    let detail = format!(
                        "output back above {} dBFS RMS ({:.1} dBFS)",
                        self.config.silence_dbfs,
                        Level::dbfs(loudest)
                    );
                    events.push(self.silence_event(false, Some(Level::dbfs(loudest)), &detail));
                }
            }
        }
        // Clip: every sample at or above the threshold was counted by the callback.
        let clipped = totals.clipped_since(&before);
        if clipped > 0 {
            if self.clip_raised_at.is_none() {
                let detail = format!(
                    "{clipped} sample(s) at or above {} dBFS",
                    self.config.clip_dbfs
                );
                events.push(self.clip_event(true, None, &detail));
            }
            self.clip_raised_at = Some(now);
        } else if let Some(at) = self.clip_raised_at
            && now.saturating_duration_since(at) >= CLIP_CLEAR_AFTER
        {
            self.clip_raised_at = None;
            let detail = format!(
                "no sample at or above {} dBFS for {} s",
                self.config.clip_dbfs,
                CLIP_CLEAR_AFTER.as_secs()
            );
            events.push(self.clip_event(false, None, &detail));
        }
        events
    }

    fn silence_event(&self, raised: bool, level: Option<f64>, detail: &str) -> AlarmEvent {
        AlarmEvent {
            kind: AlarmKind::Silence,
            raised,
            level_dbfs: level,
            threshold_dbfs: self.config.silence_dbfs,
            detail: detail.to_string(),
        }
    }

    fn clip_event(&self, raised: bool, level: Option<f64>, detail: &str) -> AlarmEvent {
        AlarmEvent {
            kind: AlarmKind::Clip,
            raised,
            level_dbfs: level,
            threshold_dbfs: self.config.clip_dbfs,
            detail: detail.to_string(),
        }
    }
}

/// The raised alarms, shared by the health thread (writes), the serve loop (`STATUS=`) and
/// the watchdog supervisor ([`Veto`]).
#[derive(Debug)]
pub struct HealthState {
    action: AlarmAction,
    /// Raised alarms and their detail, in the order they rose.
    raised: Mutex<Vec<(AlarmKind, String)>>,
    /// Bumped at every change, so the serve loop refreshes `STATUS=` at once.
    changes: AtomicU64,
    /// Seconds of playing below the silence threshold so far (0 once a channel is above
    /// it or the transport pauses), `f64` bits.
    silent_s: AtomicU64,
}

impl HealthState {
    /// No alarm raised; `action` decides whether a raised one vetoes the watchdog.
    pub fn new(action: AlarmAction) -> HealthState {
        HealthState {
            action,
            raised: Mutex::new(Vec::new()),
            changes: AtomicU64::new(0),
            silent_s: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(AlarmKind, String)>> {
        self.raised.lock_unpoisoned()
    }

    fn apply(&self, event: &AlarmEvent) {
        self.set(event.kind, event.raised, &event.detail);
    }

    /// Raise (with its `detail`) or clear alarm `kind`.
    fn set(&self, kind: AlarmKind, raised: bool, detail: &str) {
        let mut list = self.lock();
        list.retain(|(k, _)| *k != kind);
        if raised {
            list.push((kind, detail.to_string()));
        }
        self.changes.fetch_add(1, Ordering::Release);
    }

    /// Whether alarm `kind` is raised.
    pub fn is_raised(&self, kind: AlarmKind) -> bool {
        self.lock().iter().any(|(k, _)| *k == kind)
    }

    /// Seconds the output has been below `silence_dbfs` while playing (0 when it is not).
    pub fn silent_s(&self) -> f64 {
        f64::from_bits(self.silent_s.load(Ordering::Relaxed))
    }

    /// Changes so far (any change means `STATUS=` is stale).
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// The raised alarms' names, in the order they rose.
    pub fn raised(&self) -> Vec<&'static str> {
        self.lock().iter().map(|(kind, _)| kind.as_str()).collect()
    }

    /// What `STATUS=` adds: nothing while no alarm is raised.
    pub fn status_suffix(&self) -> String {
        let raised = self.lock();
        if raised.is_empty() {
            return String::new();
        }
        let list: Vec<String> = raised
            .iter()
            .map(|(kind, detail)| format!("{} ({detail})", kind.as_str()))
            .collect();
        format!(", ALARM {}", list.join(", "))
    }
}

impl Veto for HealthState {
    fn withhold(&self) -> Option<String> {
        if self.action != AlarmAction::Restart {
            return None;
        }
        // A restart cannot bring a failed recording's disk space back.
        let raised: Vec<&str> = self
            .lock()
            .iter()
            .filter(|(kind, _)| *kind != AlarmKind::Record)
            .map(|(kind, _)| kind.as_str())
            .collect();
        (!raised.is_empty()).then(|| {
            format!(
                "health alarm {} raised and [health] action = \"restart\"",
                raised.join(", ")
            )
        })
    }
}

/// What the health thread reads and sends through.
pub struct HealthParts {
    /// The output's meters.
    pub meters: Arc<Meters>,
    /// Meter subscribers, and the `/notify` ones that get `/alarm`.
    pub subscribers: Subscribers,
    /// The ring, for its transport (alarms are armed only while it plays).
    pub ring: RingHandle,
    /// Thresholds and action.
    pub config: HealthConfig,
    /// Where raised alarms are published.
    pub state: Arc<HealthState>,
}

/// The running health thread; [`HealthThread::stop`] (or drop) ends it.
pub struct HealthThread(StoppableThread<()>);

impl HealthThread {
    /// Start the thread (and set the meters' clip threshold from the config).
    pub fn spawn(parts: HealthParts) -> std::io::Result<HealthThread> {
        StoppableThread::spawn("health", move |stopped| run(parts, stopped)).map(HealthThread)
    }

    /// Stop the thread and wait for it.
    pub fn stop(self) {
        self.0.stop();
    }
}

fn run(parts: HealthParts, stopped: mpsc::Receiver<()>) {
    let mut alarms = Alarms::new(parts.config);
    parts.meters.set_clip_threshold(alarms.clip_linear());
    loop {
        let now = Instant::now();
        let next_meter = parts
            .subscribers
            .push_meters(now, || reply::meter(&parts.meters.levels()));
        let playing = !parts.ring.is_paused();
        for event in alarms.update(parts.meters.totals(), playing, now) {
            report(&parts, &event);
        }
        parts.state.silent_s.store(
            alarms.silent_for().as_secs_f64().to_bits(),
            Ordering::Relaxed,
        );
        let wake = next_meter.map_or(now + HEALTH_TICK, |due| due.min(now + HEALTH_TICK));
        match stopped.recv_timeout(wake.saturating_duration_since(Instant::now())) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Log `event` (a structured record), publish it, and push `/alarm` unless the action is
/// `log`.
fn report(parts: &HealthParts, event: &AlarmEvent) {
    let kind = event.kind.as_str();
    let state = if event.raised { "raised" } else { "cleared" };
    if event.raised {
        log::warn!(
            alarm = kind, alarm_state = state, level_dbfs = event.level_dbfs,
            threshold_dbfs = event.threshold_dbfs;
            "health: {kind} alarm raised: {}", event.detail
        );
    } else {
        log::info!(
            alarm = kind, alarm_state = state, level_dbfs = event.level_dbfs,
            threshold_dbfs = event.threshold_dbfs;
            "health: {kind} alarm cleared: {}", event.detail
        );
    }
    parts.state.apply(event);
    if parts.config.action != AlarmAction::Log {
        parts
            .subscribers
            .broadcast(&reply::alarm(kind, event.raised, &event.detail));
    }
}

/// The `record` alarm: raised (a structured error record, `STATUS=`, and `/alarm record 1
/// <detail>` unless the action is `log`) when a failed write stops a recording, cleared
/// when the next recording starts. The recorder calls it ([`RecordEvents`]).
pub struct RecordAlarm {
    /// Where raised alarms are published.
    pub state: Arc<HealthState>,
    /// The `/notify` subscribers.
    pub subscribers: Subscribers,
    /// The `[health]` action (`log` sends no `/alarm`).
    pub action: AlarmAction,
}

impl RecordAlarm {
    fn push(&self, raised: bool, detail: &str) {
        self.state.set(AlarmKind::Record, raised, detail);
        if self.action != AlarmAction::Log {
            self.subscribers
                .broadcast(&reply::alarm(AlarmKind::Record.as_str(), raised, detail));
        }
    }
}

impl RecordEvents for RecordAlarm {
    fn started(&self, name: &str) {
        if self.state.is_raised(AlarmKind::Record) {
            log::info!(
                alarm = "record", alarm_state = "cleared";
                "health: record alarm cleared: recording to {name}"
            );
            self.push(false, &format!("recording to {name}"));
        }
    }

    fn faulted(&self, fault: &RecordFault) {
        let detail = format!(
            "recording {} stopped after {} frames, the audio plays on: {}",
            fault.name, fault.frames, fault.reason
        );
        log::error!(
            alarm = "record", alarm_state = "raised";
            "health: record alarm raised: {detail}"
        );
        self.push(true, &detail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Totals after `frames` more frames at RMS `rms` on both channels and `clipped` more
    /// clipped samples.
    fn advance(t: &MeterTotals, frames: u64, rms: f64, clipped: u64) -> MeterTotals {
        let mut next = *t;
        next.frames += frames;
        next.periods += 1;
        for k in 0..next.energy.len() {
            next.energy[k] += rms * rms * frames as f64;
        }
        next.clipped[0] += clipped;
        next
    }

    fn config() -> HealthConfig {
        HealthConfig {
            silence_dbfs: -60.0,
            silence_s: 1.0,
            clip_dbfs: -1.0,
            action: AlarmAction::Notify,
        }
    }

    #[test]
    fn silence_rises_after_silence_s_of_playing_and_a_pause_neither_counts_nor_raises() {
        let mut alarms = Alarms::new(config());
        let t0 = Instant::now();
        let step = Duration::from_millis(50);
        let mut totals = MeterTotals::default();
        let mut at = t0;
        assert!(alarms.update(totals, true, at).is_empty());
        // Ten seconds of silence, paused: nothing.
        for _ in 0..200 {
            at += step;
            totals = advance(&totals, 2400, 0.0, 0);
            assert!(alarms.update(totals, false, at).is_empty());
        }
        // Playing: 0.95 s of silence, a loud period, then silence again: the timer restarts.
        for _ in 0..19 {
            at += step;
            totals = advance(&totals, 2400, 1e-4, 0);
            assert!(alarms.update(totals, true, at).is_empty());
        }
        at += step;
        totals = advance(&totals, 2400, 0.1, 0);
        assert!(alarms.update(totals, true, at).is_empty());
        let mut raised_after = None;
        for i in 1..=40 {
            at += step;
            totals = advance(&totals, 2400, 0.0, 0);
            let events = alarms.update(totals, true, at);
            if !events.is_empty() {
                assert_eq!(events.len(), 1);
                assert_eq!(
                    (events[0].kind, events[0].raised),
                    (AlarmKind::Silence, true)
                );
                raised_after = Some(i);
                break;
            }
        }
        assert_eq!(raised_after, Some(20), "1 s at 50 ms steps");
        // No frames played (output lost): no news, no change.
        at += step;
        assert!(alarms.update(totals, true, at).is_empty());
        // Sound again clears it; so would a pause.
        at += step;
        totals = advance(&totals, 2400, 0.01, 0);
        let events = alarms.update(totals, true, at);
        assert_eq!(
            (events[0].kind, events[0].raised),
            (AlarmKind::Silence, false)
        );
    }

    #[test]
    fn one_clipped_sample_raises_the_clip_alarm_which_clears_after_a_quiet_spell() {
        let mut alarms = Alarms::new(config());
        assert!((alarms.clip_linear() - 0.891_25).abs() < 1e-4);
        let mut at = Instant::now();
        let mut totals = MeterTotals::default();
        alarms.update(totals, true, at);
        at += Duration::from_millis(50);
        totals = advance(&totals, 2400, 0.3, 1);
        let events = alarms.update(totals, true, at);
        assert_eq!(events.len(), 1);
        assert_eq!((events[0].kind, events[0].raised), (AlarmKind::Clip, true));
        assert!(events[0].detail.contains("1 sample(s) at or above -1 dBFS"));
        // Still clipping: no new event; then quiet until CLIP_CLEAR_AFTER has passed.
        at += Duration::from_millis(50);
        totals = advance(&totals, 2400, 0.3, 7);
        assert!(alarms.update(totals, true, at).is_empty());
        at += CLIP_CLEAR_AFTER - Duration::from_millis(1);
        totals = advance(&totals, 2400, 0.3, 0);
        assert!(alarms.update(totals, true, at).is_empty());
        at += Duration::from_millis(2);
        totals = advance(&totals, 2400, 0.3, 0);
        let events = alarms.update(totals, true, at);
        assert_eq!((events[0].kind, events[0].raised), (AlarmKind::Clip, false));
    }

    #[test]
    fn the_state_vetoes_the_watchdog_only_for_restart() {
        let event = AlarmEvent {
            kind: AlarmKind::Silence,
            raised: true,
            level_dbfs: Some(-90.0),
            threshold_dbfs: -60.0,
            detail: "quiet".into(),
        };
        let notify = HealthState::new(AlarmAction::Notify);
        notify.apply(&event);
        assert_eq!(notify.withhold(), None);
        assert_eq!(notify.status_suffix(), ", ALARM silence (quiet)");
        let restart = HealthState::new(AlarmAction::Restart);
        assert_eq!(restart.withhold(), None);
        restart.apply(&event);
        assert!(restart.withhold().unwrap().contains("silence"));
        restart.apply(&AlarmEvent {
            raised: false,
            ..event
        });
        assert_eq!(restart.withhold(), None);
        assert_eq!(restart.status_suffix(), "");
        assert_eq!(restart.changes(), 2);
    }

    #[test]
    fn bad_values_are_named_with_what_is_accepted() {
        assert_eq!(HealthConfig::default().validate(), Ok(()));
        for (config, wants) in [
            (
                HealthConfig {
                    silence_dbfs: -130.0,
                    ..HealthConfig::default()
                },
                "silence_dbfs = -130: expected -120 to -10 dBFS",
            ),
            (
                HealthConfig {
                    silence_s: 0.0,
                    ..HealthConfig::default()
                },
                "silence_s = 0",
            ),
            (
                HealthConfig {
                    clip_dbfs: 3.0,
                    ..HealthConfig::default()
                },
                "clip_dbfs = 3: expected -40 to 0 dBFS",
            ),
            (
                HealthConfig {
                    silence_s: f64::NAN,
                    ..HealthConfig::default()
                },
                "silence_s = NaN",
            ),
        ] {
            let err = config.validate().unwrap_err();
            assert!(err.contains(wants), "{err}");
        }
    }
}
