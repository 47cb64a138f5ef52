//! The asynchronous commands, one at a time and in arrival order, on the `encoder` thread:
//! prompt, timbre and structure encodes (snapshot → encode off every engine lock → commit by
//! epoch, in [`latentd_engine::conditioning::Conditioner`]), source loads, preset file
//! writes and deletes, and `/sync` markers (answered once everything queued before them is
//! done).
//!
//! Each job ends with one reply to its sender (`/done <address> [epoch]` or `/fail <address>
//! <reason>`); prompt commits are also pushed to subscribers as `/prompt/applied`.
//!
//! Threading: [`JobQueue::push`] is called from control threads and never blocks (a full
//! queue is an error the caller turns into `/fail`); the worker owns the encoder side.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

use latentd_engine::audio_clip::AudioView;
use latentd_engine::audio_file::{LoopAudio, remap_channels, resample_loop};
use latentd_engine::conditioning::{ConditioningControl, PromptSpec};
use latentd_engine::model::Geometry;
use latentd_osc_schema::rosc::OscType;
use latentd_osc_schema::{Fail, reply};

use super::DaemonEngine;
use super::session::Session;
use crate::load::load_wav_or_stop;
use crate::osc::{ReplyTo, Subscribers};
use crate::presets::{Preset, PresetLibrary};

/// Jobs waiting at most; more are refused with `/fail` (the client should `/sync`).
pub const QUEUE_CAPACITY: usize = 64;

/// One asynchronous command.
#[derive(Debug)]
pub enum Job {
    /// Encode and commit a prompt (`action`: the engine's trace id).
    Prompt {
        /// Primary tags.
        tags: String,
        /// Second prompt.
        tags_b: Option<String>,
        /// Trace id.
        action: u64,
    },
    /// Load and commit a timbre reference, or clear it (`None`).
    Timbre {
        /// Canonical path inside the media folder.
        path: Option<PathBuf>,
        /// Trace id.
        action: u64,
    },
    /// Load and commit a structure reference, or clear it (`None`).
    Structure {
        /// Canonical path inside the media folder.
        path: Option<PathBuf>,
        /// Trace id.
        action: u64,
    },
    /// Load a new source loop.
    Source {
        /// Canonical path inside the media folder.
        path: PathBuf,
    },
    /// Reply `/synced id` once the jobs before it are done.
    Sync(i32),
    /// Write a preset file.
    PresetSave {
        /// A valid name.
        name: String,
        /// What to save (taken when the command arrived).
        preset: Preset,
    },
    /// Remove a preset file.
    PresetDelete {
        /// A valid name.
        name: String,
    },
    /// Make a live capture the source ([`crate::capture`]); answered as `/source`.
    CaptureSource {
        /// What the input ports brought, at the output's rate and the ports' channels.
        audio: LoopAudio,
        /// Save it as a WAV in this folder first (`[capture] save`).
        save: Option<PathBuf>,
    },
}

impl Job {
    /// The address replies name.
    pub fn address(&self) -> &'static str {
        match self {
            Job::Prompt { .. } => "/prompt",
            Job::Timbre { path: Some(_), .. } => "/timbre",
            Job::Timbre { path: None, .. } => "/timbre/clear",
            Job::Structure { path: Some(_), .. } => "/structure",
            Job::Structure { path: None, .. } => "/structure/clear",
            Job::Source { .. } => "/source",
            Job::Sync(_) => "/sync",
            Job::PresetSave { .. } => "/preset/save",
            Job::PresetDelete { .. } => "/preset/delete",
            Job::CaptureSource { .. } => "/source",
        }
    }
}

/// The sending side (cloneable).
#[derive(Clone)]
pub struct JobQueue {
    tx: SyncSender<(Job, ReplyTo)>,
}

impl crate::capture::ClipSink for JobQueue {
    /// A captured clip becomes the new source through the `/source` path.
    fn take_clip(
        &self,
        audio: LoopAudio,
        save: Option<PathBuf>,
        reply_to: ReplyTo,
    ) -> Result<(), String> {
        self.push(Job::CaptureSource { audio, save }, reply_to)
    }
}

impl JobQueue {
    /// Queue `job`; its reply goes to `reply_to`. Never blocks.
    pub fn push(&self, job: Job, reply_to: ReplyTo) -> Result<(), String> {
        self.tx.try_send((job, reply_to)).map_err(|e| match e {
            TrySendError::Full(_) => format!(
                "busy: {QUEUE_CAPACITY} asynchronous commands are waiting; retry after /sync"
            ),
            TrySendError::Disconnected(_) => "shutting down".to_string(),
        })
    }
}

/// What the worker needs.
pub struct JobContext {
    /// Prompt / timbre / structure encodes and commits.
    pub conditioner: Arc<dyn ConditioningControl>,
    /// The engine (sources, action bookkeeping).
    pub engine: Arc<DaemonEngine>,
    /// Pushes to subscribers.
    pub subscribers: Subscribers,
    /// What is saved to the state file.
    pub session: Arc<Session>,
    /// The presets (saves and deletes write their files here).
    pub presets: Arc<PresetLibrary>,
    /// The model's geometry (references are converted to its rate and channels).
    pub geometry: Geometry,
    /// Set by a stop signal: a file load in progress gives up (fails its job) at once, so
    /// the stop never waits for it (see [`crate::load`]).
    pub stop: Arc<AtomicBool>,
}

/// The worker thread.
pub struct JobWorker {
    thread: Option<JoinHandle<()>>,
}

impl JobWorker {
    /// Start the worker; returns it and its queue.
    pub fn spawn(context: JobContext) -> std::io::Result<(JobWorker, JobQueue)> {
        let (tx, rx) = sync_channel(QUEUE_CAPACITY);
        let thread = std::thread::Builder::new()
            .name("encoder".into())
            .spawn(move || run(context, rx))?;
        Ok((
            JobWorker {
                thread: Some(thread),
            },
            JobQueue { tx },
        ))
    }

    /// Wait for the worker to finish the queued jobs (every [`JobQueue`] must be dropped
    /// first, which ends the queue).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(cx: JobContext, rx: Receiver<(Job, ReplyTo)>) {
    for (job, reply_to) in rx {
        let address = job.address();
        let outcome = perform(&cx, job);
        let packet = match outcome {
            Ok(extra) => match extra {
                Done::Synced(id) => reply::synced(id),
                Done::Epoch(epoch) => reply::done(address, vec![OscType::Int(epoch)]),
                Done::Prompt {
                    epoch,
                    unknown_words,
                } => {
                    let mut args = vec![OscType::Int(epoch)];
                    if !unknown_words.is_empty() {
                        args.push(OscType::String(unknown_words.join(" ")));
                    }
                    reply::done(address, args)
                }
                Done::Plain => reply::done(address, vec![]),
                Done::Named(name) => reply::done(address, vec![OscType::String(name)]),
            },
            Err(reason) => {
                log::warn!("{address}: {reason}");
                reply::fail(&Fail::new(address, reason))
            }
        };
        if let Err(e) = reply_to.send(&packet) {
            log::debug!("{address}: reply not delivered: {e}");
        }
    }
}

enum Done {
    Plain,
    Named(String),
    Epoch(i32),
    /// A prompt in use: its epoch and the words the model does not know (never dropped
    /// silently: they travel in the reply, space-separated, when there are any).
    Prompt {
        epoch: i32,
        unknown_words: Vec<String>,
    },
    Synced(i32),
}

fn epoch(e: u64) -> i32 {
    i32::try_from(e).unwrap_or(i32::MAX)
}

fn perform(cx: &JobContext, job: Job) -> Result<Done, String> {
    match job {
        Job::PresetSave { name, preset } => {
            cx.presets.save(&name, preset)?;
            log::info!("preset {name:?} saved in {}", cx.presets.dir().display());
            Ok(Done::Named(name))
        }
        Job::PresetDelete { name } => {
            cx.presets.delete(&name)?;
            log::info!("preset {name:?} deleted");
            Ok(Done::Named(name))
        }
        Job::Prompt {
            tags,
            tags_b,
            action,
        } => {
            let spec = PromptSpec {
                tags: tags.clone(),
                tags_b: tags_b.clone(),
            };
            let result = cx.conditioner.set_prompt(spec);
            cx.engine.mark_applied(action);
            let event = result.map_err(|e| e.to_string())?;
            cx.subscribers
                .broadcast(&reply::prompt_applied(epoch(event.epoch), &tags));
            cx.session.prompt_changed(&tags, tags_b.as_deref());
            Ok(Done::Prompt {
                epoch: epoch(event.epoch),
                unknown_words: event.unknown_words,
            })
        }
        Job::Timbre { path, action } => {
            let result = reference(cx, path.as_deref(), |view| match view {
                Some(v) => cx.conditioner.set_timbre(v),
                None => Ok(cx.conditioner.clear_timbre()),
            });
            cx.engine.mark_applied(action);
            let event = result?;
            cx.session.timbre_changed(path);
            Ok(Done::Epoch(epoch(event.epoch)))
        }
        Job::Structure { path, action } => {
            let result = reference(cx, path.as_deref(), |view| match view {
                Some(v) => cx.conditioner.set_structure(v),
                None => Ok(cx.conditioner.clear_structure()),
            });
            cx.engine.mark_applied(action);
            let event = result?;
            cx.session.structure_changed(path);
            Ok(Done::Epoch(epoch(event.epoch)))
        }
        Job::Source { path } => {
            let audio = load(cx, &path)?;
            cx.engine
                .set_source(view(&audio))
                .map_err(|e| e.to_string())?;
            cx.session.source_changed(Some(path));
            Ok(Done::Plain)
        }
        Job::Sync(id) => Ok(Done::Synced(id)),
        Job::CaptureSource { audio, save } => captured_source(cx, audio, save.as_deref()),
    }
}

/// A live capture as the source: saved first (when asked), converted to the model's rate
/// and channels, set; nothing changes (the saved file is removed again) if that fails.
fn captured_source(cx: &JobContext, audio: LoopAudio, save: Option<&Path>) -> Result<Done, String> {
    let saved = match save {
        Some(dir) => Some(crate::capture::save_wav(dir, &audio)?),
        None => None,
    };
    let g = cx.geometry;
    let converted = LoopAudio {
        samples: remap_channels(&audio.samples, audio.channels, g.audio_channels),
        channels: g.audio_channels,
        sample_rate: audio.sample_rate,
    };
    let result = resample_loop(&converted, g.sample_rate)
        .map_err(|e| format!("capture: {e}"))
        .and_then(|source| {
            cx.engine
                .set_source(view(&source))
                .map_err(|e| e.to_string())
        });
    if let Err(reason) = result {
        if let Some(path) = &saved {
            let _ = std::fs::remove_file(path);
        }
        return Err(reason);
    }
    cx.session.source_changed(saved.clone());
    Ok(match saved {
        Some(path) => Done::Named(path.display().to_string()),
        None => Done::Plain,
    })
}

/// Load the reference at `path` (if any) and hand it to `apply`.
fn reference<T, E: std::fmt::Display>(
    cx: &JobContext,
    path: Option<&Path>,
    apply: impl FnOnce(Option<AudioView<'_>>) -> Result<T, E>,
) -> Result<T, String> {
    match path {
        Some(path) => {
            let audio = load(cx, path)?;
            apply(Some(view(&audio))).map_err(|e| e.to_string())
        }
        None => apply(None).map_err(|e| e.to_string()),
    }
}

fn load(cx: &JobContext, path: &Path) -> Result<LoopAudio, String> {
    let g = cx.geometry;
    load_wav_or_stop(path, g.sample_rate, g.audio_channels, &cx.stop).map_err(|e| e.to_string())
}

fn view(audio: &LoopAudio) -> AudioView<'_> {
    AudioView {
        samples: &audio.samples,
        channels: audio.channels,
        sample_rate: audio.sample_rate,
    }
}
