//! The OSC contract's effects: every decoded command lands here and reaches the engine.
//!
//! [`Dispatcher`] applies one packet's commands: knob sets go to the lock-free
//! [`KnobStore`] in one publish (so a bundle's knobs change in the same tick), the loop band
//! and transport to the ring and the engine, queries are answered at once, and the
//! asynchronous commands (prompt, timbre, structure, source, `/sync`) go in order to the
//! [`jobs`] worker, which replies `/done` or `/fail` when they complete. A bundle with a
//! future timetag waits in the [`scheduler`] and is applied at that time, early by the
//! engine's measured knob-to-ear latency so the change is heard at the timetag.
//!
//! Every change is recorded in the [`session::Session`] (saved, debounced, to the state
//! file) and echoed to `/notify` subscribers.
//!
//! Threading: control threads (the OSC transport's and the scheduler's). Nothing here waits
//! on the engine or the audio thread; the job queue is bounded and a full queue is a `/fail`.

pub mod jobs;
pub mod scheduler;
pub mod session;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use latentd_engine::knobs::{KNOBS, KnobId, KnobKind, KnobScope, KnobStore};
use latentd_engine::ring::RingHandle;
use latentd_engine::runner::engine_loop::EngineControl;
use latentd_engine::runner::trace::ActionKind;
use latentd_osc_schema::reply::{self, StatusReport};
use latentd_osc_schema::rosc::{OscBundle, OscMessage, OscPacket, OscTime, OscType, encoder};
use latentd_osc_schema::{Command, Fail, ParamSpec, Schema, Timed, When, ntp_to_unix_seconds};

use crate::audio::OutputStats;
use crate::audio::supervisor::OutputStateHandle;
use crate::osc::{CommandHandler, Peer, ReplyTo, Subscribers};
use jobs::{Job, JobQueue};
use scheduler::Scheduler;
use session::Session;

/// The daemon's engine handle: the engine's control surface, whatever model runs behind it
/// (chosen at start, see [`crate::engine_select`]).
pub type DaemonEngine = dyn EngineControl;

/// The OSC timetag as a wall-clock time.
pub fn timetag_to_system_time(t: OscTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs_f64(ntp_to_unix_seconds(t).max(0.0))
}

/// The engine's knob table as the OSC schema's parameters (the schema may not depend on
/// the engine; the daemon joins them).
pub fn param_specs() -> Vec<ParamSpec> {
    KNOBS
        .iter()
        .map(|k| ParamSpec {
            name: k.name,
            min: k.min,
            max: k.max,
            default: k.default,
            integer: k.kind == KnobKind::Int,
            unit: k.unit,
            doc: k.doc,
        })
        .collect()
}

/// What the `/status` reply needs besides the engine.
pub struct StatusSources {
    /// The output's counters (xruns).
    pub output: Arc<OutputStats>,
    /// Engine backend name for `/status` (the running backend: it changes if a GPU fails).
    pub backend: crate::engine_select::BackendName,
    /// Whether the engine generates (`--engine off`: transport never unpauses it).
    pub generate: bool,
    /// The audio output's state (running, lost, reconnecting), its reconnect count and its
    /// live period.
    pub output_state: OutputStateHandle,
}

/// The `/status` figures whose change is pushed to subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusKey {
    backend: String,
    output: String,
    engine_restarts: u64,
}

/// Applies commands (see the module doc). Shared by the OSC handler and the scheduler.
pub struct Dispatcher {
    schema: Arc<Schema>,
    knobs: Arc<KnobStore>,
    engine: Arc<DaemonEngine>,
    ring: RingHandle,
    jobs: JobQueue,
    subscribers: Subscribers,
    session: Arc<Session>,
    status: StatusSources,
}

impl Dispatcher {
    /// A dispatcher over the daemon's parts.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        schema: Arc<Schema>,
        knobs: Arc<KnobStore>,
        engine: Arc<DaemonEngine>,
        jobs: JobQueue,
        subscribers: Subscribers,
        session: Arc<Session>,
        status: StatusSources,
    ) -> Self {
        let ring = engine.ring().clone();
        Self {
            schema,
            knobs,
            engine,
            ring,
            jobs,
            subscribers,
            session,
            status,
        }
    }

    /// The schema the commands were decoded with.
    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    /// Apply one packet's commands now; returns the immediate replies. A packet with any
    /// command the running engine refuses (a band or seek outside the loop, a knob it lacks)
    /// is refused as a whole: `/fail` for each such command, nothing applied.
    pub fn apply(&self, reply_to: &ReplyTo, commands: Vec<Command>) -> Vec<OscPacket> {
        let refusals: Vec<OscPacket> = commands
            .iter()
            .filter_map(|c| self.refusal(c).map(|why| fail(&c.address(), &why)))
            .collect();
        if !refusals.is_empty() {
            return refusals;
        }
        let mut replies = Vec::new();
        let mut knob_sets: Vec<(KnobId, &'static str, f64)> = Vec::new();
        for command in commands {
            match command {
                Command::SetKnob { name, value, .. } => {
                    if let Some(id) = KnobId::from_name(name) {
                        knob_sets.push((id, name, value)); // known: checked by `refusal`
                    }
                }
                other => self.apply_one(reply_to, other, &mut replies),
            }
        }
        // Knobs last, in one publish: the engine wakes once everything else is in place.
        if !knob_sets.is_empty() {
            self.set_knobs(&knob_sets, &mut replies);
        }
        replies
    }

    /// Set knobs exactly as one OSC bundle of `/knob/<name> <value>` messages from a
    /// client would (the config reload uses it): decoded and range-checked by the schema,
    /// checked against the engine, published at once in one store publish, echoed to the
    /// `/notify` subscribers and saved with the session. All or nothing: the error names
    /// the first refusal.
    pub fn set_knobs_as_osc(&self, values: &[(&str, f64)]) -> Result<(), String> {
        let bundle = OscPacket::Bundle(OscBundle {
            timetag: OscTime::from((0, 1)), // "immediately"
            content: values
                .iter()
                .map(|&(name, value)| {
                    OscPacket::Message(OscMessage {
                        addr: format!("/knob/{name}"),
                        args: vec![OscType::Double(value)],
                    })
                })
                .collect(),
        });
        let bytes = encoder::encode(&bundle).map_err(|e| e.to_string())?;
        let commands = self
            .schema
            .decode(&bytes)
            .map_err(|f| format!("{}: {}", f.address, f.reason))?
            .value;
        let mut sets = Vec::with_capacity(commands.len());
        for command in &commands {
            if let Some(why) = self.refusal(command) {
                return Err(format!("{}: {why}", command.address()));
            }
            match *command {
                Command::SetKnob { name, value, .. } => {
                    if let Some(id) = KnobId::from_name(name) {
                        sets.push((id, name, value));
                    }
                }
                ref other => return Err(format!("{}: not a knob set", other.address())),
            }
        }
        let mut failures = Vec::new();
        if !sets.is_empty() {
            self.set_knobs(&sets, &mut failures);
        }
        match failures.first() {
            // `/fail address reason`.
            Some(OscPacket::Message(m)) => Err(m
                .args
                .iter()
                .filter_map(|a| a.clone().string())
                .collect::<Vec<_>>()
                .join(": ")),
            Some(other) => Err(format!("{other:?}")),
            None => Ok(()),
        }
    }

    /// Why the engine as it runs now refuses `command` (the decoder has checked everything
    /// that does not depend on it, such as ranges and types).
    fn refusal(&self, command: &Command) -> Option<String> {
        let rate = f64::from(self.ring.sample_rate());
        let loop_frames = self.ring.loop_frames();
        let loop_s = loop_frames as f64 / rate;
        match *command {
            Command::SetKnob { name, .. } if KnobId::from_name(name).is_none() => {
                Some("the engine has no such knob".to_string())
            }
            Command::Loop { a, b } => {
                let a_frame = (a * rate).round();
                let b_frame = (b * rate).round().min(loop_frames as f64);
                if !(0.0 <= a && a < b && b <= loop_s) {
                    Some(format!(
                        "loop band [{a} s, {b} s): needs 0 <= A < B <= {loop_s} s (the loop)"
                    ))
                } else if a_frame >= b_frame {
                    Some(format!(
                        "loop band [{a} s, {b} s) is shorter than one frame"
                    ))
                } else {
                    None
                }
            }
            Command::Seek { seconds } if (seconds * rate).round() >= loop_frames as f64 => {
                Some(format!("{seconds} s is past the loop end ({loop_s:.3} s)"))
            }
            _ => None,
        }
    }

    fn set_knobs(&self, sets: &[(KnobId, &'static str, f64)], replies: &mut Vec<OscPacket>) {
        let changes: Vec<(KnobId, f64)> = sets.iter().map(|&(id, _, v)| (id, v)).collect();
        match self.knobs.set_many(&changes) {
            Ok(_) => {
                let per_slot = sets
                    .iter()
                    .any(|(id, _, _)| id.spec().scope == KnobScope::PerSlot);
                self.engine.note_action(if per_slot {
                    ActionKind::PerSlotKnob
                } else {
                    ActionKind::Knob
                });
                let now = self.knobs.current();
                for &(id, name, _) in sets {
                    if let Some(spec) = self
                        .schema
                        .knob_index(name)
                        .map(|i| &self.schema.knobs()[i])
                    {
                        self.subscribers
                            .broadcast(&reply::knob_value(spec, now.get(id)));
                    }
                }
                self.session.knobs_changed(&now);
            }
            Err(e) => {
                let name = sets.first().map(|s| s.1).unwrap_or("");
                replies.push(fail(&format!("/knob/{name}"), &e.to_string()));
            }
        }
    }

    fn apply_one(&self, reply_to: &ReplyTo, command: Command, replies: &mut Vec<OscPacket>) {
        let address = command.address();
        match command {
            Command::SetKnob { .. } | Command::Notify(_) => {}
            Command::QueryKnob { name, index } => {
                let spec = &self.schema.knobs()[index];
                match KnobId::from_name(name) {
                    Some(id) => replies.push(reply::knob_value(spec, self.knobs.current().get(id))),
                    None => replies.push(fail(&address, "the engine has no such knob")),
                }
            }
            Command::QueryKnobs => {
                let now = self.knobs.current();
                let values =
                    self.schema.knobs().iter().filter_map(|spec| {
                        KnobId::from_name(spec.name).map(|id| (spec, now.get(id)))
                    });
                replies.push(reply::knobs_bundle(values));
            }
            Command::Prompt { tags, tags_b } => {
                let id = self.engine.note_action_pending(ActionKind::Prompt);
                self.queue(
                    reply_to,
                    Job::Prompt {
                        tags,
                        tags_b,
                        action: id,
                    },
                    replies,
                );
            }
            Command::Timbre { path } => {
                let id = self.engine.note_action_pending(ActionKind::Timbre);
                self.queue(
                    reply_to,
                    Job::Timbre {
                        path: Some(path),
                        action: id,
                    },
                    replies,
                );
            }
            Command::TimbreClear => {
                let id = self.engine.note_action_pending(ActionKind::Timbre);
                self.queue(
                    reply_to,
                    Job::Timbre {
                        path: None,
                        action: id,
                    },
                    replies,
                );
            }
            Command::Structure { path } => {
                let id = self.engine.note_action_pending(ActionKind::Structure);
                self.queue(
                    reply_to,
                    Job::Structure {
                        path: Some(path),
                        action: id,
                    },
                    replies,
                );
            }
            Command::StructureClear => {
                let id = self.engine.note_action_pending(ActionKind::Structure);
                self.queue(
                    reply_to,
                    Job::Structure {
                        path: None,
                        action: id,
                    },
                    replies,
                );
            }
            Command::Source { path } => self.queue(reply_to, Job::Source { path }, replies),
            Command::Sync(id) => self.queue(reply_to, Job::Sync(id), replies),
            Command::Loop { a, b } => match self.engine.set_loop(a, b) {
                Ok(()) => {
                    self.engine.note_action(ActionKind::Loop);
                    self.session.loop_changed(Some((a, b)));
                }
                Err(e) => replies.push(fail(&address, &e.to_string())),
            },
            Command::LoopClear => {
                self.engine.clear_loop();
                self.engine.note_action(ActionKind::Loop);
                self.session.loop_changed(None);
            }
            Command::Play | Command::Pause => {
                let paused = matches!(command, Command::Pause);
                self.ring.set_paused(paused);
                self.engine.set_paused(paused || !self.status.generate);
                self.engine.note_action(ActionKind::Transport);
            }
            Command::Seek { seconds } => {
                // In the loop: checked by `refusal`.
                let frame = (seconds * f64::from(self.ring.sample_rate())).round() as usize;
                match self.ring.seek(frame) {
                    Ok(()) => {
                        self.engine.note_action(ActionKind::Transport);
                    }
                    Err(e) => replies.push(fail(&address, &e.to_string())),
                }
            }
            Command::Status => replies.push(reply::status_reply(&self.status_report())),
            Command::Version => {
                replies.push(reply::version_reply("latentd", env!("CARGO_PKG_VERSION")))
            }
        }
    }

    fn queue(&self, reply_to: &ReplyTo, job: Job, replies: &mut Vec<OscPacket>) {
        let address = job.address();
        if let Err(reason) = self.jobs.push(job, reply_to.clone()) {
            replies.push(fail(address, &reason));
        }
    }

    /// The `/status.reply` figures now.
    pub fn status_report(&self) -> StatusReport {
        let stats = self.engine.stats();
        let (output_state, output_reconnects) = self.status.output_state.get();
        let rate = f64::from(self.ring.sample_rate());
        let counters = self.ring.counters();
        StatusReport {
            backend: (self.status.backend)(),
            sample_rate: self.ring.sample_rate(),
            period_frames: self.status.output_state.period_frames() as u32,
            playhead_s: self.ring.playhead() as f64 / rate,
            loop_s: self.ring.loop_frames() as f64 / rate,
            ticks_per_s: stats.ticks_per_s,
            tick_ms_p50: stats.tick_ms_p50,
            lead_s: stats.lead_s,
            xruns: self.status.output.snapshot().xruns,
            late_landings: counters.late_writes,
            last_knob_to_ear_ms: stats.last_knob_to_ear_ms,
            engine_restarts: stats.pipeline_restarts,
            output: output_state.as_str().into(),
            output_reconnects,
        }
    }

    /// Push `/status.reply` to the subscribers when the engine backend, the output's state
    /// or the engine's restart count differs from `last` (updated); the first call only
    /// records. Called by the main thread's serve loop.
    pub fn push_status_changes(&self, last: &mut Option<StatusKey>) {
        let report = self.status_report();
        let key = StatusKey {
            backend: report.backend.clone(),
            output: report.output.clone(),
            engine_restarts: report.engine_restarts,
        };
        if last.as_ref().is_some_and(|k| *k != key) {
            self.subscribers.broadcast(&reply::status_reply(&report));
        }
        *last = Some(key);
    }

    /// How early to apply a timed bundle so it is heard at its timetag: the engine's last
    /// measured knob-to-ear latency, at most 50 ms.
    pub fn apply_ahead(&self) -> Duration {
        let ms = self.engine.stats().last_knob_to_ear_ms.unwrap_or(0.0);
        Duration::from_secs_f64((ms / 1000.0).clamp(0.0, 0.05))
    }
}

fn fail(address: &str, reason: &str) -> OscPacket {
    reply::fail(&Fail::new(address, reason))
}

/// The transport's [`CommandHandler`]: immediate packets go to the [`Dispatcher`], timed
/// ones to the [`Scheduler`].
pub struct ControlHandler {
    dispatcher: Arc<Dispatcher>,
    scheduler: Scheduler,
}

impl ControlHandler {
    /// A handler applying through `dispatcher`, with its own scheduler thread.
    pub fn new(dispatcher: Arc<Dispatcher>) -> std::io::Result<Self> {
        let scheduler = Scheduler::spawn(Arc::clone(&dispatcher))?;
        Ok(Self {
            dispatcher,
            scheduler,
        })
    }
}

impl CommandHandler for ControlHandler {
    fn handle(
        &mut self,
        _from: &Peer,
        reply: &ReplyTo,
        packet: Timed<Vec<Command>>,
    ) -> Vec<OscPacket> {
        match packet.when {
            When::At(time) => {
                let at = timetag_to_system_time(time);
                let due = at.checked_sub(self.dispatcher.apply_ahead()).unwrap_or(at);
                if due > SystemTime::now() {
                    return match self.scheduler.schedule(due, reply.clone(), packet.value) {
                        Ok(()) => Vec::new(),
                        Err(reason) => vec![reply::fail(&Fail::packet(reason))],
                    };
                }
                self.dispatcher.apply(reply, packet.value)
            }
            When::Immediately => self.dispatcher.apply(reply, packet.value),
        }
    }
}
