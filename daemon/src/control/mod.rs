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
//! Presets ([`crate::presets`]): a save or a delete is a job (the file I/O runs on the job
//! worker, `/done` when written); a recall, a morph and a list answer from the library in
//! memory at once. A recall's fade and a knob's glide are ramps published to the
//! [`KnobStore`] with the ring's frame clock as their timeline: the engine resolves them at
//! each tick's frame, so no thread sleeps through a fade. While knobs ramp, the main
//! thread's serve loop calls [`Dispatcher::push_knob_motion`], which echoes the passing
//! values (and the final ones) to the subscribers.
//!
//! Recording ([`crate::record`]): `/record/start` creates its file and `/record/stop`
//! completes it on the control thread that got the command (file metadata and a header,
//! under the recorder's mutex, which the audio callback never takes), and reply at once.
//!
//! Threading: control threads (the OSC transport's and the scheduler's). Nothing here waits
//! on the engine or the audio thread; the job queue is bounded and a full queue is a `/fail`.

pub mod jobs;
pub mod midi;
pub mod scheduler;
pub mod session;

use latentd_engine::lock::MutexExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use latentd_engine::knobs::{
    Curve, KNOB_COUNT, KNOBS, KnobId, KnobKind, KnobScope, KnobStore, RampTo,
};
use latentd_engine::ring::RingHandle;
use latentd_engine::runner::engine_loop::EngineControl;
use latentd_engine::runner::trace::ActionKind;
use latentd_osc_schema::presets::FadeCurve;
use latentd_osc_schema::record::timestamped_name;
use latentd_osc_schema::reply::{self, StatusReport};
use latentd_osc_schema::rosc::{OscPacket, OscTime, OscType};
use latentd_osc_schema::{Command, Fail, RecordFile, Schema, Timed, When, ntp_to_unix_seconds};

use crate::audio::supervisor::OutputStateHandle;
use crate::audio::{Meters, OutputStats};
use crate::capture::{Capture, CaptureError, CaptureRequest};
use crate::osc::{CommandHandler, Peer, ReplyTo, Subscribers};
use crate::presets::{PRESET_VERSION, Preset, PresetLibrary};
use crate::record::{RecordTarget, Recorder};
use crate::schedule::{Cue, CueSink};
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

/// What the `/status` reply needs besides the engine.
pub struct StatusSources {
    /// The output's counters (xruns).
    pub output: Arc<OutputStats>,
    /// The output's meters (levels).
    pub meters: Arc<Meters>,
    /// Engine backend name for `/status` (the running backend: it changes if a GPU fails).
    pub backend: crate::engine_select::BackendName,
    /// Whether the engine generates (`--engine off`: transport never unpauses it).
    pub generate: bool,
    /// The audio output's state (running, lost, reconnecting), its reconnect count and its
    /// live period.
    pub output_state: OutputStateHandle,
    /// Knobs the model cannot honour (fixed at start: the model does not change while the
    /// daemon runs).
    pub inert_knobs: Vec<String>,
}

/// The `/status` figures whose change is pushed to subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusKey {
    backend: String,
    output: String,
    engine_restarts: u64,
}

/// The engine's ramp shape for a fade curve named on the wire.
fn engine_curve(curve: FadeCurve) -> Curve {
    match curve {
        FadeCurve::Linear => Curve::Linear,
        FadeCurve::Smooth => Curve::Smooth,
        FadeCurve::EaseIn => Curve::EaseIn,
        FadeCurve::EaseOut => Curve::EaseOut,
    }
}

/// What [`Dispatcher::push_knob_motion`] echoed last.
struct Motion {
    /// Knobs ramping at the last push (or whose ramp started since).
    moving: [bool; KNOB_COUNT],
    /// The value last echoed for each moving knob.
    sent: [f64; KNOB_COUNT],
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
    presets: Arc<PresetLibrary>,
    motion: Mutex<Motion>,
    status: StatusSources,
    recorder: Option<Arc<Recorder>>,
    midi: midi::MidiControl,
    capture: Option<Arc<Capture>>,
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
        presets: Arc<PresetLibrary>,
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
            presets,
            motion: Mutex::new(Motion {
                moving: [false; KNOB_COUNT],
                sent: [0.0; KNOB_COUNT],
            }),
            status,
            recorder: None,
            midi: midi::MidiControl::default(),
            capture: None,
        }
    }

    /// Serve `/capture/start` and `/capture/stop` with `capture` (without one, as with
    /// `audio.inputs = 0`, they fail).
    pub fn with_capture(mut self, capture: Option<Arc<Capture>>) -> Self {
        self.capture = capture;
        self
    }

    /// Serve `/record/start` and `/record/stop` with `recorder` (without one they fail).
    pub fn with_recorder(mut self, recorder: Arc<Recorder>) -> Self {
        self.recorder = Some(recorder);
        self
    }

    /// The ring's frame clock now: the timeline of glides and fades.
    fn frame_now(&self) -> u64 {
        self.ring.playhead_and_clock().1
    }

    /// Fade or glide seconds in frames of the ring's clock.
    fn fade_frames(&self, seconds: f64) -> u64 {
        (seconds * f64::from(self.ring.sample_rate())).round() as u64
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
        let mut glides: Vec<(f64, RampTo)> = Vec::new();
        for command in commands {
            match command {
                Command::SetKnob {
                    name,
                    value,
                    glide_s,
                    ..
                } => {
                    // Known: checked by `refusal`.
                    if let Some(id) = KnobId::from_name(name) {
                        if glide_s > 0.0 {
                            let to = RampTo {
                                id,
                                from: None,
                                to: value,
                            };
                            glides.push((glide_s, to));
                        } else {
                            knob_sets.push((id, name, value));
                        }
                    }
                }
                other => self.apply_one(reply_to, other, &mut replies),
            }
        }
        // Knobs last, in one publish: the engine wakes once everything else is in place.
        if !knob_sets.is_empty() {
            self.set_knobs(&knob_sets, &mut replies);
        }
        // Glides of one length in one publish (a pattern or a bundle shares its length).
        glides.sort_by(|a, b| a.0.total_cmp(&b.0));
        for group in glides.chunk_by(|a, b| a.0 == b.0) {
            let ramps: Vec<RampTo> = group.iter().map(|g| g.1).collect();
            let frames = self.fade_frames(group[0].0);
            self.ramp_knobs(&ramps, frames, Curve::Linear, &mut replies);
        }
        replies
    }

    /// Set knobs exactly as one OSC bundle of `/knob/<name> <value>` messages from a
    /// client would (the config reload uses it): range-checked by the schema's rule
    /// ([`ParamSpec::check_value`](latentd_osc_schema::ParamSpec::check_value)), checked
    /// against the engine, published at once in one store publish, echoed to the `/notify`
    /// subscribers and saved with the session. All or nothing: the error names the first
    /// refusal.
    pub fn set_knobs_as_client(&self, values: &[(KnobId, f64)]) -> Result<(), String> {
        let mut sets = Vec::with_capacity(values.len());
        for &(id, value) in values {
            let spec = latentd_osc_schema::ParamSpec::from(id.spec());
            let value = spec
                .check_value(value)
                .map_err(|why| format!("/knob/{}: {why}", spec.name))?;
            let command = Command::SetKnob {
                index: id as usize,
                name: spec.name,
                value,
                glide_s: 0.0,
            };
            if let Some(why) = self.refusal(&command) {
                return Err(format!("{}: {why}", command.address()));
            }
            sets.push((id, spec.name, value));
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
            Command::PresetRecall { ref name, .. } | Command::PresetDelete { ref name } => {
                self.unknown_preset(name)
            }
            Command::PresetMorph { ref a, ref b, .. } => {
                self.unknown_preset(a).or_else(|| self.unknown_preset(b))
            }
            Command::MidiLearn(_) | Command::MidiMap(_) | Command::MidiUnmap { .. } => {
                self.midi_refusal(command)
            }
            _ => None,
        }
    }

    fn unknown_preset(&self, name: &str) -> Option<String> {
        match self.presets.get(name) {
            Some(_) => None,
            None => Some(format!(
                "no preset named {name:?} (see /preset/list; a save is there from its /done)"
            )),
        }
    }

    /// Ramp `ramps` from the frame clock now over `frames` (0: at once): one publish,
    /// noted for the engine, saved (the targets), echoed (at once, or by
    /// [`Self::push_knob_motion`] while they move).
    fn ramp_knobs(
        &self,
        ramps: &[RampTo],
        frames: u64,
        curve: Curve,
        replies: &mut Vec<OscPacket>,
    ) {
        let start = self.frame_now();
        if let Err(e) = self.knobs.ramp_many(ramps, start, frames, curve) {
            let name = ramps.first().map_or("", |r| r.id.spec().name);
            replies.push(fail(&format!("/knob/{name}"), &e.to_string()));
            return;
        }
        let per_slot = ramps
            .iter()
            .any(|r| r.id.spec().scope == KnobScope::PerSlot);
        self.engine.note_action(if per_slot {
            ActionKind::PerSlotKnob
        } else {
            ActionKind::Knob
        });
        let now = self.knobs.current();
        if frames == 0 {
            for r in ramps {
                self.echo(r.id, now.get(r.id));
            }
        } else {
            let mut motion = self.motion.lock_unpoisoned();
            for r in ramps {
                motion.moving[r.id as usize] = true;
            }
        }
        self.session.knobs_changed(&now);
    }

    fn echo(&self, id: KnobId, value: f64) {
        if let Some(spec) = self
            .schema
            .knob_index(id.spec().name)
            .map(|i| &self.schema.knobs()[i])
        {
            self.subscribers.broadcast(&reply::knob_value(spec, value));
        }
    }

    /// Echo the values of ramping knobs to the subscribers: each moving knob's value now
    /// when it changed since the last push, and its final value once its ramp ends. Called
    /// by the main thread's serve loop (every 20 ms).
    pub fn push_knob_motion(&self) {
        let snap = self.knobs.current();
        let frame = self.frame_now();
        let mut motion = self.motion.lock_unpoisoned();
        for &id in KnobId::ALL {
            let i = id as usize;
            let active = snap.ramping_at(id, frame);
            if active || motion.moving[i] {
                let value = snap.value_at(id, frame);
                if !active || value != motion.sent[i] {
                    self.echo(id, value);
                    motion.sent[i] = value;
                }
            }
            motion.moving[i] = active;
        }
    }

    /// Recall preset `name` over `fade_s` (see `/preset/recall` in docs/osc.md).
    fn recall(
        &self,
        reply_to: &ReplyTo,
        name: &str,
        fade_s: f64,
        curve: FadeCurve,
        replies: &mut Vec<OscPacket>,
    ) {
        let Some(preset) = self.presets.get(name) else {
            let why = self.unknown_preset(name).unwrap_or_default();
            replies.push(fail("/preset/recall", &why));
            return;
        };
        let frames = self.fade_frames(fade_s);
        let mut ramps: Vec<RampTo> = preset
            .known_knobs()
            .map(|(id, to)| RampTo { id, from: None, to })
            .collect();
        let saved = self.session.snapshot();
        if let Some(tags) = &preset.prompt
            && (saved.prompt.as_ref() != Some(tags) || saved.prompt_b != preset.prompt_b)
        {
            let (tags, tags_b) = match &saved.prompt {
                // Crossfade: from the current prompt to the preset's, through the blend.
                Some(current) if frames > 0 => {
                    ramps.retain(|r| r.id != KnobId::prompt_blend);
                    ramps.push(RampTo {
                        id: KnobId::prompt_blend,
                        from: Some(0.0),
                        to: 1.0,
                    });
                    (current.clone(), Some(tags.clone()))
                }
                _ => (tags.clone(), preset.prompt_b.clone()),
            };
            let action = self.engine.note_action_pending(ActionKind::Prompt);
            let job = Job::Prompt {
                tags,
                tags_b,
                action,
            };
            if let Err(reason) = self.jobs.push(job, reply_to.clone()) {
                self.engine.mark_applied(action);
                replies.push(fail("/preset/recall", &reason));
                return;
            }
        }
        if !ramps.is_empty() {
            self.ramp_knobs(&ramps, frames, engine_curve(curve), replies);
        }
    }

    /// Set every knob both presets hold between them (see `/preset/morph` in docs/osc.md).
    fn morph(&self, a: &str, b: &str, x: f64, replies: &mut Vec<OscPacket>) {
        let (Some(pa), Some(pb)) = (self.presets.get(a), self.presets.get(b)) else {
            let why = self
                .unknown_preset(a)
                .or_else(|| self.unknown_preset(b))
                .unwrap_or_default();
            replies.push(fail("/preset/morph", &why));
            return;
        };
        let sets: Vec<(KnobId, &'static str, f64)> = pa
            .known_knobs()
            .filter_map(|(id, va)| {
                let vb = *pb.knobs.get(id.spec().name)?;
                let value = match id.spec().kind {
                    KnobKind::Float => va + (vb - va) * x,
                    KnobKind::Int if x < 0.5 => va,
                    KnobKind::Int => vb,
                };
                Some((id, id.spec().name, value))
            })
            .collect();
        if !sets.is_empty() {
            self.set_knobs(&sets, replies);
        }
    }

    /// The preset a save writes: the knobs' targets and the saved prompts.
    fn preset_now(&self) -> Preset {
        let now = self.knobs.current();
        let saved = self.session.snapshot();
        Preset {
            version: PRESET_VERSION,
            knobs: KNOBS
                .iter()
                .zip(KnobId::ALL)
                .map(|(spec, &id)| (spec.name.to_string(), now.get(id)))
                .collect(),
            prompt: saved.prompt,
            prompt_b: saved.prompt_b,
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
            Command::SetKnob { .. } | Command::Notify(_) | Command::NotifyMeter(_) => {}
            Command::QueryKnob { name, index } => {
                let spec = &self.schema.knobs()[index];
                match KnobId::from_name(name) {
                    Some(id) => {
                        let value = self.knobs.current().value_at(id, self.frame_now());
                        replies.push(reply::knob_value(spec, value));
                    }
                    None => replies.push(fail(&address, "the engine has no such knob")),
                }
            }
            Command::QueryKnobs => {
                let now = self.knobs.current().at(self.frame_now());
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
            Command::PresetSave { name } => {
                let preset = self.preset_now();
                self.queue(reply_to, Job::PresetSave { name, preset }, replies);
            }
            Command::PresetDelete { name } => {
                self.queue(reply_to, Job::PresetDelete { name }, replies)
            }
            Command::PresetList => {
                let names = self.presets.names();
                replies.push(reply::preset_list_reply(names.iter().map(String::as_str)));
            }
            Command::PresetRecall {
                name,
                fade_s,
                curve,
            } => self.recall(reply_to, &name, fade_s, curve, replies),
            Command::PresetMorph { a, b, x } => self.morph(&a, &b, x, replies),
            Command::RecordStart { file } => replies.push(self.record_start(file)),
            Command::RecordStop => replies.push(self.record_stop()),
            Command::MidiLearn(_)
            | Command::MidiMap(_)
            | Command::MidiUnmap { .. }
            | Command::MidiMaps => self.midi_command(reply_to, command, replies),
            Command::CaptureStart { seconds, quantize } => {
                replies.push(self.capture_start(reply_to, CaptureRequest { seconds, quantize }))
            }
            Command::CaptureStop => replies.push(self.capture_stop()),
            Command::Status => replies.push(reply::status_reply(&self.status_report())),
            Command::Version => {
                replies.push(reply::version_reply("latentd", env!("CARGO_PKG_VERSION")))
            }
        }
    }

    /// `/record/start [file]`: create the file (a timestamped name in the media folder
    /// without one) and record; the reply names it.
    fn record_start(&self, file: Option<RecordFile>) -> OscPacket {
        const ADDRESS: &str = "/record/start";
        let Some(recorder) = &self.recorder else {
            return fail(ADDRESS, "this daemon has no recorder");
        };
        let file = match file {
            Some(file) => file,
            None => {
                let Some(media) = self.schema.media_root() else {
                    return fail(ADDRESS, "no media folder is configured");
                };
                let name = timestamped_name(crate::unique_file::unix_seconds());
                RecordFile {
                    path: media.path().join(&name),
                    name,
                }
            }
        };
        let target = RecordTarget {
            name: file.name,
            path: file.path,
            replace: false,
        };
        match recorder.start(target) {
            Ok(name) => reply::done(ADDRESS, vec![OscType::String(name)]),
            Err(e) => fail(ADDRESS, &e.to_string()),
        }
    }

    /// `/record/stop`: complete the recording; the reply names its last file and its
    /// length.
    fn record_stop(&self) -> OscPacket {
        const ADDRESS: &str = "/record/stop";
        let Some(recorder) = &self.recorder else {
            return fail(ADDRESS, "this daemon has no recorder");
        };
        match recorder.stop() {
            Ok(done) => reply::done(
                ADDRESS,
                vec![
                    OscType::String(done.name),
                    OscType::Float(done.seconds as f32),
                ],
            ),
            Err(e) => fail(ADDRESS, &e.to_string()),
        }
    }

    /// `/capture/start [seconds] [quantize]`: arm a capture ([`crate::capture`]); its end
    /// answers as `/source`.
    fn capture_start(&self, reply_to: &ReplyTo, request: CaptureRequest) -> OscPacket {
        const ADDRESS: &str = "/capture/start";
        let Some(capture) = &self.capture else {
            return fail(
                ADDRESS,
                &CaptureError::NoInputs("audio.inputs = 0".into()).to_string(),
            );
        };
        match capture.start(request, reply_to.clone()) {
            Ok(()) => reply::done(ADDRESS, vec![]),
            Err(e) => fail(ADDRESS, &e.to_string()),
        }
    }

    /// `/capture/stop`: end the running capture.
    fn capture_stop(&self) -> OscPacket {
        const ADDRESS: &str = "/capture/stop";
        let result = match &self.capture {
            Some(capture) => capture.stop(),
            None => Err(CaptureError::NotRunning),
        };
        match result {
            Ok(()) => reply::done(ADDRESS, vec![]),
            Err(e) => fail(ADDRESS, &e.to_string()),
        }
    }

    fn queue(&self, reply_to: &ReplyTo, job: Job, replies: &mut Vec<OscPacket>) {
        let address = job.address();
        if let Err(reason) = self.jobs.push(job, reply_to.clone()) {
            replies.push(fail(address, &reason));
        }
    }

    /// The audio output's published state (what `/status` and `/metrics` read).
    pub fn output_state(&self) -> &OutputStateHandle {
        &self.status.output_state
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
            levels: self.status.meters.levels(),
            inert_knobs: self.status.inert_knobs.clone(),
            output_latency_ms: self.status.output_state.latency_ms(),
            callback_realtime: self
                .status
                .output_state
                .callback_scheduling()
                .map(|s| s.is_realtime()),
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

    /// Push `packet` to the `/notify` subscribers.
    pub fn push(&self, packet: &OscPacket) {
        self.subscribers.broadcast(packet);
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

impl CueSink for Dispatcher {
    /// Apply the cue's command as a client's would be applied; log it, and push
    /// `/schedule/fired` to the `/notify` subscribers. A refusal (a preset deleted since
    /// the config was read) is a warning; later replies (a prompt's `/done` or `/fail`) go to
    /// the log.
    fn fire(&self, cue: &Cue) {
        let reply_to = ReplyTo::log("schedule");
        let replies: Vec<String> = self
            .apply(&reply_to, vec![cue.command.clone()])
            .iter()
            .map(crate::osc::describe_reply)
            .collect();
        let refusals: Vec<&String> = replies.iter().filter(|r| r.starts_with("/fail ")).collect();
        if refusals.is_empty() {
            log::info!("schedule: {cue}: fired");
            for other in &replies {
                log::info!("schedule: {other}");
            }
            self.push(&reply::schedule_fired(
                &cue.at.to_string(),
                &cue.action.to_string(),
            ));
        } else {
            for refusal in refusals {
                log::warn!("schedule: {cue}: not applied: {refusal}");
            }
        }
    }
}
