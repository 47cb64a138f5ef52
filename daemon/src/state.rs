//! State persistence: what the daemon restores at start (knobs, prompts, timbre and
//! structure references, loop band, source, MIDI maps), saved atomically on change (debounced) and at
//! exit.
//!
//! Safety of the file: a save writes a temp file in the same directory, fsyncs it, renames
//! it over the state file and fsyncs the directory, so a crash leaves either the old or the
//! new file, never a torn one. A state file that cannot be read or parsed is renamed to
//! `<name>.corrupt-<unix seconds>` (`-2`, `-3`, … for more in the same second, see
//! [`crate::unique_file`]) with a warning and the daemon starts from defaults; it is
//! never fatal and never silently overwritten (if it cannot be moved aside, saving is
//! refused instead).
//!
//! Limits: the file is read only if it is a regular file of at most [`MAX_STATE_BYTES`] (a
//! larger one is moved aside like a corrupt one; a FIFO or a device is neither read nor moved
//! and saving is refused; the command line refuses such a path before the start). Each value
//! is then checked the way OSC checks it: a knob out of range or fractional for an integer
//! knob, and a prompt that is blank or longer than
//! [`MAX_PROMPT_CHARS`](latentd_engine::conditioning::MAX_PROMPT_CHARS), is logged and dropped
//! (its default kept) while the rest of the file is restored; nothing is rounded or clamped.
//!
//! Threading: [`StateStore`] does blocking file I/O; use it from the main thread or through
//! [`DebouncedSaver`], whose thread owns it. [`DebouncedSaver::request_save`] never does I/O
//! (it only sends on a channel) and may be called from the control thread; never from the
//! realtime thread (it moves a heap value).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use latentd_engine::conditioning::check_prompt;
use latentd_engine::input_file::{InputFileError, read_bounded};
use latentd_engine::knobs::KnobId;
use serde::{Deserialize, Serialize};

use crate::atomic_file::{describe_io, remove_stray_temps, write_atomically};

/// The state file format version this build writes and reads.
pub const STATE_VERSION: u32 = 1;

/// Largest state file read, in bytes (a full state is a few kilobytes).
pub const MAX_STATE_BYTES: u64 = 1 << 20;

/// A loop band in seconds of the playhead ring.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LoopBandSeconds {
    /// Start, seconds.
    pub start: f64,
    /// End, seconds (above `start`).
    pub end: f64,
}

/// Everything the daemon restores at start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersistentState {
    /// File format version; [`STATE_VERSION`] when written by this build.
    pub version: u32,
    /// Knob values by knob name.
    #[serde(default)]
    pub knobs: BTreeMap<String, f64>,
    /// The main text prompt.
    #[serde(default)]
    pub prompt: Option<String>,
    /// The second prompt blended with the first.
    #[serde(default)]
    pub prompt_b: Option<String>,
    /// Blend from `prompt` (0) to `prompt_b` (1).
    #[serde(default)]
    pub prompt_blend: f64,
    /// Audio file the timbre is taken from.
    #[serde(default)]
    pub timbre: Option<PathBuf>,
    /// Audio file the structure is taken from.
    #[serde(default)]
    pub structure: Option<PathBuf>,
    /// Loop band, when one is set.
    #[serde(default)]
    pub loop_band: Option<LoopBandSeconds>,
    /// Source audio file being transformed, when one is loaded.
    #[serde(default)]
    pub source: Option<PathBuf>,
    /// The MIDI maps, once the session changed them (`None`: the config file's apply).
    /// Each is checked at start as `/midi/map` checks it; a bad one is dropped with a
    /// warning. Not written while `None`, so a file without maps stays readable by older
    /// builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub midi_maps: Option<Vec<crate::midi::MidiMapEntry>>,
}

impl Default for PersistentState {
    fn default() -> Self {
        Self {
            version: STATE_VERSION,
            knobs: BTreeMap::new(),
            prompt: None,
            prompt_b: None,
            prompt_blend: 0.0,
            timbre: None,
            structure: None,
            loop_band: None,
            source: None,
            midi_maps: None,
        }
    }
}

impl PersistentState {
    /// Checks the values serde cannot: the version, finite numbers, ranges.
    pub fn validate(&self) -> Result<(), String> {
        if self.version != STATE_VERSION {
            return Err(format!(
                "version {} (this build reads {STATE_VERSION})",
                self.version
            ));
        }
        if let Some((name, value)) = self.knobs.iter().find(|(_, value)| !value.is_finite()) {
            return Err(format!("knob {name:?} is {value}"));
        }
        if !(0.0..=1.0).contains(&self.prompt_blend) {
            return Err(format!("prompt_blend {} outside 0..=1", self.prompt_blend));
        }
        if let Some(band) = self.loop_band
            && !(band.start >= 0.0 && band.end > band.start && band.end.is_finite())
        {
            return Err(format!("loop band {}..{} s", band.start, band.end));
        }
        Ok(())
    }

    /// Drops each value OSC would refuse (a knob out of its range or fractional for an
    /// integer knob; a blank or over-long prompt), so its default is used; returns one
    /// line per value dropped, saying why.
    pub fn drop_refused(&mut self) -> Vec<String> {
        let mut dropped = Vec::new();
        // A knob this build does not know is kept (a newer build may have saved it); the
        // start skips it with a warning.
        self.knobs.retain(|name, value| {
            if KnobId::from_name(name).is_none() {
                return true;
            }
            match crate::knobs::check_knob(name, *value) {
                Ok(_) => true,
                Err(e) => {
                    dropped.push(format!("knob {name} = {value} dropped: {e}"));
                    false
                }
            }
        });
        for (field, prompt) in [
            ("prompt", &mut self.prompt),
            ("prompt_b", &mut self.prompt_b),
        ] {
            if let Some(text) = prompt.as_deref()
                && let Err(e) = check_prompt(field, text)
            {
                dropped.push(format!("{field} dropped: {e}"));
                *prompt = None;
            }
        }
        dropped
    }
}

/// What [`StateStore::open`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadOutcome {
    /// The file was read and restored.
    Restored,
    /// There was no file; starting from defaults.
    Fresh,
    /// The file was unreadable or invalid and was renamed to `moved_to`.
    MovedAside {
        /// Where the bad file now is.
        moved_to: PathBuf,
        /// Why it was rejected.
        reason: String,
    },
    /// The file was bad and could not be moved aside; saving is refused so it is kept.
    KeptInPlace {
        /// Why it was rejected.
        reason: String,
    },
}

/// Why a save failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file operation failed.
    #[error("state file {path}: {operation}: {}", describe_io(source))]
    Io {
        /// The state file.
        path: PathBuf,
        /// What was being done, naming any other path involved (the temp file, the
        /// directory) and whether the saved file was left as it was.
        operation: String,
        /// The OS error.
        source: io::Error,
    },
    /// A bad state file could not be moved aside, so it is not overwritten.
    #[error("state file {0} was unreadable and could not be moved aside; not overwriting it")]
    Protected(PathBuf),
    /// The saver thread is gone.
    #[error("state saver thread has stopped")]
    SaverStopped,
}

/// The state file: loads it once, saves atomically.
#[derive(Debug)]
pub struct StateStore {
    path: PathBuf,
    protected: bool,
}

impl StateStore {
    /// Opens the store at `path` and loads it. Never fails: a missing file gives defaults, a
    /// bad one is moved aside (see [`LoadOutcome`]). Stray temp files of an interrupted save
    /// are removed.
    pub fn open(path: impl Into<PathBuf>) -> (Self, PersistentState, LoadOutcome) {
        let path = path.into();
        remove_stray_temps(&path);
        let (state, outcome) = match read_bounded(&path, MAX_STATE_BYTES) {
            Err(InputFileError::Missing { .. }) => {
                log::info!(
                    "no state file at {}: starting from defaults",
                    path.display()
                );
                (PersistentState::default(), LoadOutcome::Fresh)
            }
            // A FIFO or a device is not ours to move aside (think `/dev/zero`).
            Err(error @ InputFileError::NotRegular { kind, .. }) if kind != "directory" => {
                log::error!("{error}: starting from defaults and not saving over it");
                let reason = format!("unreadable: {error}");
                (
                    PersistentState::default(),
                    LoadOutcome::KeptInPlace { reason },
                )
            }
            Err(error) => reject(&path, format!("unreadable: {error}")),
            Ok(bytes) => match parse(&bytes) {
                Ok(mut state) => {
                    for line in state.drop_refused() {
                        log::warn!("state file {}: {line}; the default is kept", path.display());
                    }
                    log::info!("restored state from {}", path.display());
                    (state, LoadOutcome::Restored)
                }
                Err(reason) => reject(&path, reason),
            },
        };
        let protected = matches!(outcome, LoadOutcome::KeptInPlace { .. });
        (Self { path, protected }, state, outcome)
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `state` atomically: temp file in the same directory, fsync, rename, fsync dir.
    pub fn save_now(&self, state: &PersistentState) -> Result<(), StateError> {
        if self.protected {
            return Err(StateError::Protected(self.path.clone()));
        }
        let mut bytes = serde_json::to_vec_pretty(state).expect("state serialises");
        bytes.push(b'\n');
        write_atomically(&self.path, &bytes).map_err(|e| StateError::Io {
            path: self.path.clone(),
            operation: e.operation,
            source: e.source,
        })
    }
}

fn parse(bytes: &[u8]) -> Result<PersistentState, String> {
    let state: PersistentState =
        serde_json::from_slice(bytes).map_err(|error| format!("invalid JSON: {error}"))?;
    state
        .validate()
        .map_err(|reason| format!("invalid: {reason}"))?;
    Ok(state)
}

fn reject(path: &Path, reason: String) -> (PersistentState, LoadOutcome) {
    let mut stem = path.as_os_str().to_owned();
    stem.push(format!(".corrupt-{}", crate::unique_file::unix_seconds()));
    let outcome = match crate::unique_file::rename_unique(path, Path::new(&stem), "") {
        Ok(moved_to) => {
            log::warn!(
                "state file {} {reason}; moved to {} and starting from defaults",
                path.display(),
                moved_to.display()
            );
            LoadOutcome::MovedAside { moved_to, reason }
        }
        Err(error) => {
            log::error!(
                "state file {} {reason}; cannot move it aside ({error}): starting from \
                 defaults and not saving over it",
                path.display()
            );
            LoadOutcome::KeptInPlace { reason }
        }
    };
    (PersistentState::default(), outcome)
}

enum SaverMessage {
    Save(Box<PersistentState>),
    Flush(mpsc::SyncSender<Result<(), StateError>>),
}

/// A thread that owns a [`StateStore`] and writes the latest requested state at most once
/// per debounce window. A failed write is logged and its state kept pending (not retried
/// on a timer): the next request replaces it, [`DebouncedSaver::flush`] and the exit retry
/// it.
pub struct DebouncedSaver {
    sender: Option<mpsc::Sender<SaverMessage>>,
    thread: Option<JoinHandle<()>>,
    writes: Arc<AtomicU64>,
}

impl DebouncedSaver {
    /// Starts the saver; a requested state is written `debounce` after the first request of
    /// a quiet period, with every later request in that window coalesced into it.
    pub fn spawn(store: StateStore, debounce: Duration) -> io::Result<Self> {
        let (sender, receiver) = mpsc::channel();
        let writes = Arc::new(AtomicU64::new(0));
        let thread_writes = Arc::clone(&writes);
        let thread = thread::Builder::new()
            .name("state-saver".into())
            .spawn(move || run_saver(store, debounce, receiver, thread_writes))?;
        Ok(Self {
            sender: Some(sender),
            thread: Some(thread),
            writes,
        })
    }

    /// Asks for `state` to be saved soon; never blocks, never does I/O.
    pub fn request_save(&self, state: PersistentState) -> Result<(), StateError> {
        self.send(SaverMessage::Save(Box::new(state)))
    }

    /// Writes any pending state now and waits for the result (call at exit).
    pub fn flush(&self) -> Result<(), StateError> {
        let (reply, result) = mpsc::sync_channel(1);
        self.send(SaverMessage::Flush(reply))?;
        result.recv().map_err(|_| StateError::SaverStopped)?
    }

    /// State files successfully written so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    fn send(&self, message: SaverMessage) -> Result<(), StateError> {
        self.sender
            .as_ref()
            .ok_or(StateError::SaverStopped)?
            .send(message)
            .map_err(|_| StateError::SaverStopped)
    }
}

impl Drop for DebouncedSaver {
    /// Writes any pending state, then stops the thread.
    fn drop(&mut self) {
        drop(self.sender.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            log::error!("state saver thread panicked");
        }
    }
}

fn run_saver(
    store: StateStore,
    debounce: Duration,
    receiver: mpsc::Receiver<SaverMessage>,
    writes: Arc<AtomicU64>,
) {
    let mut pending: Option<Box<PersistentState>> = None;
    let mut deadline: Option<Instant> = None;
    let write = |pending: &mut Option<Box<PersistentState>>| -> Result<(), StateError> {
        let Some(state) = pending.take() else {
            return Ok(());
        };
        if let Err(error) = store.save_now(&state) {
            // Kept for the next request or the flush at exit (a disk with space again
            // then gets the newest session without waiting for another change).
            *pending = Some(state);
            return Err(error);
        }
        writes.fetch_add(1, Ordering::Relaxed);
        log::debug!("state saved to {}", store.path().display());
        Ok(())
    };
    let write_logged = |pending: &mut Option<Box<PersistentState>>| {
        if let Err(error) = write(pending) {
            log::error!("saving state failed: {error}");
        }
    };
    loop {
        let message = match deadline {
            None => receiver.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(at) => receiver.recv_timeout(at.saturating_duration_since(Instant::now())),
        };
        match message {
            Ok(SaverMessage::Save(state)) => {
                pending = Some(state);
                deadline.get_or_insert_with(|| Instant::now() + debounce);
            }
            Ok(SaverMessage::Flush(reply)) => {
                deadline = None;
                let _ = reply.send(write(&mut pending));
            }
            Err(RecvTimeoutError::Timeout) => {
                deadline = None;
                write_logged(&mut pending);
            }
            Err(RecvTimeoutError::Disconnected) => {
                write_logged(&mut pending);
                return;
            }
        }
    }
}
