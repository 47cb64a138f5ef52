//! `[[schedule]]`: cues the daemon runs by itself at a time of day, so an installation opens
//! and closes without a client (docs/operations.md, Schedules).
//!
//! ```toml
//! [[schedule]]
//! at = "09:00"                                   # local time of day, HH:MM
//! days = ["mon", "tue", "wed", "thu", "fri"]     # optional; every day when left out
//! preset = "morning"                             # recall a preset ...
//! fade_s = 30.0                                  # ... over this long (optional, 0)
//! curve = "smooth"                               # ... in this shape (optional, linear)
//! [[schedule]]
//! at = "22:30"
//! transport = "stop"                             # or "play"
//! [[schedule]]
//! at = "12:00"
//! prompt = "lunchtime bossa, nylon guitar"
//! ```
//!
//! Each entry does one thing, and the thing is an OSC command (`/preset/recall`,
//! `/transport/play` or `/transport/pause`, `/prompt`): at load the entry becomes that
//! message and the OSC contract's own decoder checks it ([`Cue::from_file`]), so a config
//! is refused exactly where a client's message would be, and at its minute the decoded
//! [`Command`] goes through the same `Dispatcher::apply` as a client's (its asynchronous
//! replies, such as a prompt's `/done`, go to the log). A preset is looked up when the cue
//! fires: one saved later is found, one deleted since is a warning in the log.
//!
//! Time: the machine's local time, from jiff's system time zone (`TZ` when set, else
//! `/etc/localtime`, re-read every few minutes). An entry fires once in the minute its
//! `at` names on a day its `days` names ([`Cues::due`]); a minute the clock skips (a
//! spring-forward hour, a suspend or a stall of at most [`CATCH_UP_MINUTES`]) fires late
//! rather than never, and a minute it repeats (a fall-back hour) fires once.
//!
//! Threading: the `schedule` thread ([`ScheduleRunner`]) reads its [`WallClock`] every
//! [`POLL`] and fires through a [`CueSink`] (control's `Dispatcher`, which implements it: a
//! control-side path that never waits on the engine or the audio thread). The main thread
//! replaces the entries on a config reload (a short mutex hold).

use latentd_engine::lock::MutexExt;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::SignedDuration;
use jiff::civil::DateTime;
use latentd_engine::conditioning::check_prompt;
use latentd_osc_schema::presets::FadeCurve;
use latentd_osc_schema::rosc::{OscMessage, OscPacket, OscType, encoder};
use latentd_osc_schema::{Command, Schema};
use serde::Deserialize;

use crate::stoppable::StoppableThread;

/// How often the schedule thread reads the clock.
pub const POLL: Duration = Duration::from_secs(1);
/// The longest jump of the local clock whose skipped minutes still fire (late): a
/// spring-forward hour, a short suspend or stall. After a longer one (a night's suspend, a
/// clock set forward by hours) only the minute now fires.
pub const CATCH_UP_MINUTES: i64 = 90;

/// The day names `days` takes, Monday first.
pub const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// One `[[schedule]]` entry as written in the config file (checked by [`Cue::from_file`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleFileEntry {
    pub(crate) at: Option<String>,
    pub(crate) days: Option<Vec<String>>,
    pub(crate) preset: Option<String>,
    pub(crate) fade_s: Option<f64>,
    pub(crate) curve: Option<String>,
    pub(crate) transport: Option<String>,
    pub(crate) prompt: Option<String>,
}

/// A local time of day, to the minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeOfDay {
    /// 0 to 23.
    pub hour: u8,
    /// 0 to 59.
    pub minute: u8,
}

impl TimeOfDay {
    /// `H:MM` or `HH:MM`, 00:00 to 23:59.
    pub fn parse(text: &str) -> Result<TimeOfDay, String> {
        let bad = || format!("at = {text:?}: expected a time of day \"HH:MM\", 00:00 to 23:59");
        let (h, m) = text.split_once(':').ok_or_else(bad)?;
        let digits = |s: &str, lens: &[usize]| {
            (lens.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse::<u8>().ok())
                .flatten()
        };
        match (digits(h, &[1, 2]), digits(m, &[2])) {
            (Some(hour), Some(minute)) if hour < 24 && minute < 60 => {
                Ok(TimeOfDay { hour, minute })
            }
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)
    }
}

/// The weekdays an entry runs on: bit 0 is Monday, bit 6 Sunday.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Days(u8);

impl Days {
    /// Every day.
    pub const ALL: Days = Days(0x7f);

    /// The days named (`mon` .. `sun`, any case); an empty list or an unknown name is
    /// refused.
    pub fn parse(names: &[String]) -> Result<Days, String> {
        if names.is_empty() {
            return Err("days = []: name at least one day, or leave days out for every day".into());
        }
        let mut bits = 0u8;
        for name in names {
            let i = DAY_NAMES
                .iter()
                .position(|d| d.eq_ignore_ascii_case(name))
                .ok_or_else(|| {
                    format!(
                        "days: unknown day {name:?}; days are {}",
                        DAY_NAMES.join(", ")
                    )
                })?;
            bits |= 1 << i;
        }
        Ok(Days(bits))
    }

    /// Whether `weekday` is one of them.
    pub fn contains(self, weekday: jiff::civil::Weekday) -> bool {
        self.0 & (1 << weekday.to_monday_zero_offset()) != 0
    }

    /// The names, Monday first.
    pub fn names(self) -> Vec<&'static str> {
        DAY_NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, d)| *d)
            .collect()
    }
}

impl fmt::Display for Days {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Days::ALL {
            f.write_str("every day")
        } else {
            f.write_str(&self.names().join(","))
        }
    }
}

/// The transport states an entry can set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `/transport/play`.
    Play,
    /// `/transport/pause`: the output plays silence, the playhead holds.
    Stop,
}

/// What an entry does.
#[derive(Debug, Clone, PartialEq)]
pub enum CueAction {
    /// Recall a preset over `fade_s` in the shape `curve`.
    Preset {
        /// A valid preset name (the preset itself is looked up when the cue fires).
        name: String,
        /// Fade length, seconds.
        fade_s: f64,
        /// Fade shape.
        curve: FadeCurve,
    },
    /// Play or stop.
    Transport(Transport),
    /// A new prompt.
    Prompt(String),
}

impl CueAction {
    /// The OSC message a client would send for it.
    pub fn message(&self) -> OscMessage {
        let (addr, args) = match self {
            CueAction::Preset {
                name,
                fade_s,
                curve,
            } => (
                "/preset/recall",
                vec![
                    OscType::String(name.clone()),
                    OscType::Double(*fade_s),
                    OscType::String(curve.name().into()),
                ],
            ),
            CueAction::Transport(Transport::Play) => ("/transport/play", vec![]),
            CueAction::Transport(Transport::Stop) => ("/transport/pause", vec![]),
            CueAction::Prompt(tags) => ("/prompt", vec![OscType::String(tags.clone())]),
        };
        OscMessage {
            addr: addr.into(),
            args,
        }
    }

    /// The entry's keys for this action, as a config file writes them.
    fn toml_keys(&self) -> String {
        match self {
            CueAction::Preset {
                name,
                fade_s,
                curve,
            } => format!(
                "preset = {name:?}\nfade_s = {fade_s:?}\ncurve = {:?}\n",
                curve.name()
            ),
            CueAction::Transport(Transport::Play) => "transport = \"play\"\n".into(),
            CueAction::Transport(Transport::Stop) => "transport = \"stop\"\n".into(),
            CueAction::Prompt(tags) => format!("prompt = {tags:?}\n"),
        }
    }
}

impl fmt::Display for CueAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CueAction::Preset {
                name,
                fade_s,
                curve,
            } => write!(f, "preset {name} (fade {fade_s} s, {})", curve.name()),
            CueAction::Transport(Transport::Play) => f.write_str("transport play"),
            CueAction::Transport(Transport::Stop) => f.write_str("transport stop"),
            CueAction::Prompt(tags) => write!(f, "prompt {tags:?}"),
        }
    }
}

/// A checked `[[schedule]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Cue {
    /// When, local time.
    pub at: TimeOfDay,
    /// On which days.
    pub days: Days,
    /// What.
    pub action: CueAction,
    /// The action as the OSC decoder gave it: what the dispatcher applies.
    pub command: Command,
}

impl Cue {
    /// Check one entry: `at` a time of day, `days` known day names, exactly one action
    /// (`preset` with its optional `fade_s` and `curve`, `transport`, or `prompt`), and
    /// that action's OSC message accepted by `schema` as a client's would be. The error
    /// says what is wrong and what is accepted.
    pub fn from_file(entry: &ScheduleFileEntry, schema: &Schema) -> Result<Cue, String> {
        let at = TimeOfDay::parse(
            entry
                .at
                .as_deref()
                .ok_or("no `at` (the time of day, \"HH:MM\")")?,
        )?;
        let days = match &entry.days {
            Some(names) => Days::parse(names)?,
            None => Days::ALL,
        };
        let given: Vec<&str> = [
            ("preset", entry.preset.is_some()),
            ("transport", entry.transport.is_some()),
            ("prompt", entry.prompt.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect();
        match given.as_slice() {
            [_] => {}
            [] => return Err("no action: give one of preset, transport or prompt".into()),
            many => {
                return Err(format!(
                    "{} actions ({}): an entry does one thing; give each its own [[schedule]]",
                    many.len(),
                    many.join(", ")
                ));
            }
        }
        if entry.preset.is_none() {
            for (key, set) in [
                ("fade_s", entry.fade_s.is_some()),
                ("curve", entry.curve.is_some()),
            ] {
                if set {
                    return Err(format!(
                        "{key} applies only to a preset recall (preset = ...)"
                    ));
                }
            }
        }
        let action = if let Some(name) = &entry.preset {
            let curve = match &entry.curve {
                Some(c) => FadeCurve::from_name(c).map_err(|why| format!("curve: {why}"))?,
                None => FadeCurve::default(),
            };
            CueAction::Preset {
                name: name.clone(),
                fade_s: entry.fade_s.unwrap_or(0.0),
                curve,
            }
        } else if let Some(state) = &entry.transport {
            CueAction::Transport(match state.as_str() {
                "play" => Transport::Play,
                "stop" => Transport::Stop,
                _ => {
                    return Err(format!(
                        "transport = {state:?}: expected \"play\" or \"stop\""
                    ));
                }
            })
        } else {
            let tags = entry.prompt.clone().unwrap_or_default();
            check_prompt("prompt", &tags).map_err(|e| format!("prompt: {e}"))?;
            CueAction::Prompt(tags)
        };
        let message = action.message();
        let packet = OscPacket::Message(message);
        let bytes = encoder::encode(&packet).map_err(|e| e.to_string())?;
        let mut commands = schema
            .decode(&bytes)
            .map_err(|f| format!("{} refuses it: {}", f.address, f.reason))?
            .value;
        let command = match (commands.pop(), commands.is_empty()) {
            (Some(c), true) => c,
            _ => return Err("the action is not one OSC command".into()),
        };
        Ok(Cue {
            at,
            days,
            action,
            command,
        })
    }

    /// Whether the cue runs in local minute `minute`.
    pub fn matches(&self, minute: DateTime) -> bool {
        self.days.contains(minute.weekday())
            && i32::from(self.at.hour) == i32::from(minute.hour())
            && i32::from(self.at.minute) == i32::from(minute.minute())
    }

    /// The entry as a config file writes it.
    pub fn to_toml(&self) -> String {
        let days = self
            .days
            .names()
            .iter()
            .map(|d| format!("{d:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "[[schedule]]\nat = \"{}\"\ndays = [{days}]\n{}",
            self.at,
            self.action.toml_keys()
        )
    }
}

impl fmt::Display for Cue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.at, self.days, self.action)
    }
}

/// Why the `[[schedule]]` entries of a config file are refused (one line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The knob table could not make the OSC schema the entries are checked against.
    #[error("knob table: {0}")]
    KnobTable(String),
    /// An entry is not a cue: named by its place in the file (from 1) and its `at`.
    #[error("config [[schedule]] entry {entry}{}: {why}", at_suffix(at))]
    Entry {
        /// The entry's place in the file, from 1.
        entry: usize,
        /// Its `at`, as written, if it has one.
        at: Option<String>,
        /// What is wrong with it.
        why: String,
    },
}

/// ` (at "22:30")` when the entry has an `at`.
fn at_suffix(at: &Option<String>) -> String {
    at.as_deref()
        .map(|a| format!(" (at {a:?})"))
        .unwrap_or_default()
}

/// Check every `[[schedule]]` entry of a config file (see [`Cue::from_file`]); the error
/// names the entry by its place in the file and its `at`.
pub fn check_entries(entries: &[ScheduleFileEntry]) -> Result<Vec<Cue>, ScheduleError> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let schema = Schema::new(latentd_osc_schema::reference_knobs())
        .map_err(|e| ScheduleError::KnobTable(e.to_string()))?;
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            Cue::from_file(entry, &schema).map_err(|why| ScheduleError::Entry {
                entry: i + 1,
                at: entry.at.clone(),
                why,
            })
        })
        .collect()
}

/// The local wall clock the schedule reads.
pub trait WallClock: Send + 'static {
    /// The local date and time now.
    fn now(&self) -> DateTime;
}

/// The machine's local time: jiff's system time zone (`TZ`, else `/etc/localtime`; UTC when
/// neither gives one, with a warning at start).
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalClock;

impl LocalClock {
    /// The zone local time is read in, in words, for the start's log line.
    pub fn zone_description() -> String {
        match jiff::tz::TimeZone::try_system() {
            Ok(tz) => match tz.iana_name() {
                Some(name) => name.to_string(),
                None => format!(
                    "a zone without an IANA name, now UTC{}",
                    jiff::ZonedDateTime::now().offset()
                ),
            },
            Err(e) => format!("UTC: no system time zone found ({e})"),
        }
    }
}

impl WallClock for LocalClock {
    fn now(&self) -> DateTime {
        jiff::ZonedDateTime::now().datetime()
    }
}

/// `t` with its seconds and fraction dropped.
fn minute_of(t: DateTime) -> DateTime {
    t.with().second(0).subsec_nanosecond(0).build().unwrap_or(t)
}

/// Which cues are due: the minute logic of the schedule, fed the clock's readings. Pure
/// (no clock, no thread), so tests step through minutes.
#[derive(Debug, Default)]
pub struct Cues {
    cues: Vec<Cue>,
    /// Per cue, the local minute it last fired in.
    fired: Vec<Option<DateTime>>,
    /// The minute of the newest reading.
    last: Option<DateTime>,
}

impl Cues {
    /// The schedule of `cues`, nothing fired yet.
    pub fn new(cues: Vec<Cue>) -> Cues {
        Cues {
            fired: vec![None; cues.len()],
            cues,
            last: None,
        }
    }

    /// Use `cues` from now on. A cue also in the old list keeps the minute it last fired
    /// in, so a reload in its minute does not fire it again.
    pub fn replace(&mut self, cues: Vec<Cue>) {
        self.fired = cues
            .iter()
            .map(|c| {
                self.cues
                    .iter()
                    .position(|old| old == c)
                    .and_then(|i| self.fired[i])
            })
            .collect();
        self.cues = cues;
    }

    /// The cues in force.
    pub fn cues(&self) -> &[Cue] {
        &self.cues
    }

    /// The clock reads `now`: the cues due, each marked fired, in the order of their
    /// minutes, then of the file. A cue is due in the minute its `at` names on one of its
    /// days, once per such minute. The minutes since the previous reading count too (a
    /// clock that jumped ahead by at most [`CATCH_UP_MINUTES`]), so a skipped minute fires
    /// late; a clock that went back (a fall-back hour) starts over from its new minute,
    /// and a minute seen again does not fire its cues twice.
    pub fn due(&mut self, now: DateTime) -> Vec<&Cue> {
        let now = minute_of(now);
        let mut minute = match self.last {
            Some(last) if last < now && now.duration_since(last).as_mins() <= CATCH_UP_MINUTES => {
                last.checked_add(SignedDuration::from_mins(1))
                    .unwrap_or(now)
            }
            _ => now,
        };
        self.last = Some(now);
        let mut due = Vec::new();
        while minute <= now {
            for (i, cue) in self.cues.iter().enumerate() {
                if cue.matches(minute) && self.fired[i] != Some(minute) {
                    self.fired[i] = Some(minute);
                    due.push(i);
                }
            }
            match minute.checked_add(SignedDuration::from_mins(1)) {
                Ok(next) => minute = next,
                Err(_) => break,
            }
        }
        due.into_iter().map(|i| &self.cues[i]).collect()
    }
}

/// Where a due cue goes.
pub trait CueSink: Send + Sync + 'static {
    /// Run `cue` now.
    fn fire(&self, cue: &Cue);
}

/// The `schedule` thread: reads its clock every poll and fires the due cues.
pub struct ScheduleRunner {
    cues: Arc<Mutex<Cues>>,
    thread: StoppableThread<()>,
}

impl ScheduleRunner {
    /// Run `cues` against `clock`, firing into `sink`, reading the clock every `poll`.
    pub fn spawn(
        cues: Vec<Cue>,
        clock: impl WallClock,
        sink: Arc<dyn CueSink>,
        poll: Duration,
    ) -> std::io::Result<ScheduleRunner> {
        let shared = Arc::new(Mutex::new(Cues::new(cues)));
        let cues = Arc::clone(&shared);
        let thread = StoppableThread::spawn("schedule", move |stop| {
            loop {
                let due: Vec<Cue> = {
                    let mut cues = cues.lock_unpoisoned();
                    cues.due(clock.now()).into_iter().cloned().collect()
                };
                for cue in &due {
                    sink.fire(cue);
                }
                if !matches!(
                    stop.recv_timeout(poll),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                ) {
                    return;
                }
            }
        })?;
        Ok(ScheduleRunner {
            cues: shared,
            thread,
        })
    }

    /// Use `cues` from now on (a config reload; see [`Cues::replace`]).
    pub fn replace(&self, cues: Vec<Cue>) {
        self.cues.lock_unpoisoned().replace(cues);
    }

    /// Stop the thread (after the cue it may be firing).
    pub fn stop(self) {
        self.thread.stop();
    }
}

#[cfg(test)]
mod tests;
