//! Conditioning: the prompt (tags, optional second prompt `tags_b`), the timbre reference and
//! the structure reference, encoded by the model and committed for the engine to read.
//!
//! Every change is applied as snapshot → encode → commit:
//! 1. under the state mutex, note `cond_epoch` (a few nanoseconds);
//! 2. encode with no lock that the engine takes (the engine takes none at all: it reads the
//!    committed [`Conditioning`] through a `triple_buffer` of `Arc`s);
//! 3. under the state mutex, commit iff `cond_epoch` is unchanged, bumping it; otherwise
//!    re-snapshot and re-encode. After [`UNLOCKED_ATTEMPTS`] lost races the encode runs under
//!    the state mutex, which blocks other writers (never the engine) and guarantees progress.
//!
//! Encodes are serialized by one encode lock, so two encodes never overlap; commits that need
//! no encode (`clear_*`) take only the state mutex and are O(1). A stale encode never
//! overwrites a newer commit: the epoch check forbids it. Each commit sends a
//! [`ConditioningEvent`] carrying its epoch (epochs are 1, 2, 3, ... in commit order).
//!
//! The `prompt_blend` knob mixes the A and B prompts at denoise time; it is not conditioning
//! state, so moving it needs no encode and no commit.
//!
//! [`ConditioningControl`] is the conditioner's model-independent surface as a trait object
//! (the daemon's job worker holds an `Arc<dyn ConditioningControl>`, whatever the model).
//!
//! Threading: [`Conditioner`] is `Sync` and shared by the control / encoder threads; the one
//! [`ConditioningReader`] belongs to the engine thread. Superseded `Arc`s are dropped by the
//! writers when the triple buffer recycles them, never by the engine.

use crate::lock::MutexExt;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use triple_buffer::{Input, Output, triple_buffer};

use crate::audio_clip::{AudioClip, AudioClipError, AudioView};

/// Longest prompt accepted, in characters.
pub const MAX_PROMPT_CHARS: usize = 1000;

/// Encode attempts made without the state mutex before the encode runs under it.
pub const UNLOCKED_ATTEMPTS: usize = 3;

/// A prompt encoded by the model, with the words it did not understand.
#[derive(Clone, Debug, PartialEq)]
pub struct PromptEncoding<C> {
    /// The model's conditioning for the prompt.
    pub cond: C,
    /// Words ignored because the model's vocabulary lacks them, in prompt order.
    pub unknown_words: Vec<String>,
}

/// Why an encode failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    /// The reference audio was unusable.
    #[error(transparent)]
    Audio(#[from] AudioClipError),
    /// The model refused the input.
    #[error("{field}: {reason}")]
    Refused {
        /// Which input.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

/// The encoders a model offers for conditioning (a supertrait of the engine's `Model`).
pub trait ConditionEncoder: Send + Sync {
    /// The model's conditioning for one input.
    type Cond: Send + Sync + 'static;
    /// Encodes a prompt's tags.
    fn encode_prompt(&self, tags: &str) -> Result<PromptEncoding<Self::Cond>, EncodeError>;
    /// Encodes a timbre reference.
    fn encode_timbre(&self, audio: AudioView<'_>) -> Result<Self::Cond, EncodeError>;
    /// Encodes a structure (rhythm) reference.
    fn encode_structure(&self, audio: AudioView<'_>) -> Result<Self::Cond, EncodeError>;
    /// The prompt a fresh start plays when neither the saved state nor the settings name one
    /// (`None`: start with no prompt, the model's null condition).
    fn default_prompt(&self) -> Option<&str> {
        None
    }
}

/// Why a conditioning change was refused; nothing changed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConditioningError {
    /// Empty (or all-whitespace) prompt.
    #[error("{field}: prompt is empty (accepted: 1 to {MAX_PROMPT_CHARS} characters)")]
    EmptyPrompt {
        /// `tags` or `tags_b`.
        field: &'static str,
    },
    /// Prompt too long.
    #[error("{field}: prompt has {chars} characters (accepted: 1 to {MAX_PROMPT_CHARS})")]
    PromptTooLong {
        /// `tags` or `tags_b`.
        field: &'static str,
        /// Its length.
        chars: usize,
    },
    /// The encode failed.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

impl From<AudioClipError> for ConditioningError {
    fn from(e: AudioClipError) -> Self {
        Self::Encode(e.into())
    }
}

/// A prompt as given by the performer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromptSpec {
    /// Prompt A.
    pub tags: String,
    /// Optional prompt B, mixed in by the `prompt_blend` knob.
    pub tags_b: Option<String>,
}

/// A committed prompt: the spec and its encodings.
#[derive(Debug)]
pub struct CommittedPrompt<C> {
    /// What was asked.
    pub spec: PromptSpec,
    /// Prompt A's encoding.
    pub a: PromptEncoding<C>,
    /// Prompt B's encoding, if any.
    pub b: Option<PromptEncoding<C>>,
}

/// Everything the denoiser is conditioned on, as of one commit.
#[derive(Debug)]
pub struct Conditioning<C> {
    /// The commit's epoch (0 = nothing committed yet).
    pub epoch: u64,
    /// The prompt, if any.
    pub prompt: Option<Arc<CommittedPrompt<C>>>,
    /// The timbre reference's encoding, if any.
    pub timbre: Option<Arc<C>>,
    /// The structure reference's encoding, if any.
    pub structure: Option<Arc<C>>,
}

impl<C> Conditioning<C> {
    /// A commit of prompt `tags` alone (encoded as `a`, no prompt B, no references), at
    /// `epoch`.
    pub fn prompt_only(epoch: u64, tags: &str, a: PromptEncoding<C>) -> Self {
        Self {
            epoch,
            prompt: Some(Arc::new(CommittedPrompt {
                spec: PromptSpec {
                    tags: tags.into(),
                    tags_b: None,
                },
                a,
                b: None,
            })),
            timbre: None,
            structure: None,
        }
    }
}

impl<C> Clone for Conditioning<C> {
    fn clone(&self) -> Self {
        Self {
            epoch: self.epoch,
            prompt: self.prompt.clone(),
            timbre: self.timbre.clone(),
            structure: self.structure.clone(),
        }
    }
}

impl<C> Default for Conditioning<C> {
    fn default() -> Self {
        Self {
            epoch: 0,
            prompt: None,
            timbre: None,
            structure: None,
        }
    }
}

/// What a commit changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConditioningChange {
    /// A new prompt.
    Prompt,
    /// A new timbre reference.
    Timbre,
    /// A new structure reference.
    Structure,
    /// The timbre reference was removed.
    ClearTimbre,
    /// The structure reference was removed.
    ClearStructure,
}

/// Sent after every commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditioningEvent {
    /// The commit's epoch.
    pub epoch: u64,
    /// What changed.
    pub change: ConditioningChange,
    /// For prompts: words the model ignored (A's, then B's).
    pub unknown_words: Vec<String>,
}

struct State<C: Send + Sync + 'static> {
    committed: Arc<Conditioning<C>>,
    publisher: Input<Arc<Conditioning<C>>>,
}

/// The writers' side of conditioning (see the module doc).
pub struct Conditioner<E: ConditionEncoder> {
    encoder: Arc<E>,
    encode_lock: Mutex<()>,
    state: Mutex<State<E::Cond>>,
    events: Option<Sender<ConditioningEvent>>,
}

/// The engine's lock-free view of the committed conditioning.
pub struct ConditioningReader<C: Send + Sync + 'static> {
    output: Output<Arc<Conditioning<C>>>,
}

impl<C: Send + Sync + 'static> ConditioningReader<C> {
    /// The newest commit. Never blocks.
    #[inline]
    pub fn read(&mut self) -> &Arc<Conditioning<C>> {
        self.output.read()
    }
}

/// The prompt check every way of setting a prompt goes through (OSC, the config file, the
/// state file): not blank, at most [`MAX_PROMPT_CHARS`] characters.
pub fn check_prompt(field: &'static str, text: &str) -> Result<(), ConditioningError> {
    let chars = text.chars().count();
    if text.trim().is_empty() {
        Err(ConditioningError::EmptyPrompt { field })
    } else if chars > MAX_PROMPT_CHARS {
        Err(ConditioningError::PromptTooLong { field, chars })
    } else {
        Ok(())
    }
}

/// The conditioner's model-independent surface (see the module doc); each method is the
/// [`Conditioner`] method of the same name.
pub trait ConditioningControl: Send + Sync {
    /// [`Conditioner::set_prompt`].
    fn set_prompt(&self, spec: PromptSpec) -> Result<ConditioningEvent, ConditioningError>;
    /// [`Conditioner::set_timbre`].
    fn set_timbre(&self, audio: AudioView<'_>) -> Result<ConditioningEvent, ConditioningError>;
    /// [`Conditioner::set_structure`].
    fn set_structure(&self, audio: AudioView<'_>) -> Result<ConditioningEvent, ConditioningError>;
    /// [`Conditioner::clear_timbre`].
    fn clear_timbre(&self) -> ConditioningEvent;
    /// [`Conditioner::clear_structure`].
    fn clear_structure(&self) -> ConditioningEvent;
}

impl<E: ConditionEncoder> ConditioningControl for Conditioner<E> {
    fn set_prompt(&self, spec: PromptSpec) -> Result<ConditioningEvent, ConditioningError> {
        Conditioner::set_prompt(self, spec)
    }
    fn set_timbre(&self, audio: AudioView<'_>) -> Result<ConditioningEvent, ConditioningError> {
        Conditioner::set_timbre(self, audio)
    }
    fn set_structure(&self, audio: AudioView<'_>) -> Result<ConditioningEvent, ConditioningError> {
        Conditioner::set_structure(self, audio)
    }
    fn clear_timbre(&self) -> ConditioningEvent {
        Conditioner::clear_timbre(self)
    }
    fn clear_structure(&self) -> ConditioningEvent {
        Conditioner::clear_structure(self)
    }
}

impl<E: ConditionEncoder> Conditioner<E> {
    /// A conditioner with nothing committed, its reader, and where commit events go.
    pub fn new(
        encoder: Arc<E>,
        events: Option<Sender<ConditioningEvent>>,
    ) -> (Self, ConditioningReader<E::Cond>) {
        let initial = Arc::new(Conditioning::default());
        let (publisher, output) = triple_buffer(&initial);
        let state = State {
            committed: initial,
            publisher,
        };
        let conditioner = Self {
            encoder,
            encode_lock: Mutex::new(()),
            state: Mutex::new(state),
            events,
        };
        (conditioner, ConditioningReader { output })
    }

    /// The newest commit (for replies and state saving; the engine uses its reader).
    pub fn committed(&self) -> Arc<Conditioning<E::Cond>> {
        Arc::clone(&self.state.lock_unpoisoned().committed)
    }

    /// Encodes and commits a prompt; returns the commit event (also sent to the channel).
    pub fn set_prompt(&self, spec: PromptSpec) -> Result<ConditioningEvent, ConditioningError> {
        check_prompt("tags", &spec.tags)?;
        if let Some(b) = &spec.tags_b {
            check_prompt("tags_b", b)?;
        }
        let encode = || -> Result<CommittedPrompt<E::Cond>, ConditioningError> {
            let a = self.encoder.encode_prompt(&spec.tags)?;
            let b = spec
                .tags_b
                .as_deref()
                .map(|t| self.encoder.encode_prompt(t))
                .transpose()?;
            Ok(CommittedPrompt {
                spec: spec.clone(),
                a,
                b,
            })
        };
        self.apply(encode, |next, prompt| {
            let mut unknown = prompt.a.unknown_words.clone();
            unknown.extend(
                prompt
                    .b
                    .iter()
                    .flat_map(|b| b.unknown_words.iter().cloned()),
            );
            next.prompt = Some(Arc::new(prompt));
            (ConditioningChange::Prompt, unknown)
        })
    }

    /// Encodes and commits a timbre reference.
    pub fn set_timbre(&self, audio: AudioView<'_>) -> Result<ConditioningEvent, ConditioningError> {
        let clip = AudioClip::new("timbre", audio)?;
        self.apply(
            || Ok(self.encoder.encode_timbre(clip.view())?),
            |next, cond| {
                next.timbre = Some(Arc::new(cond));
                (ConditioningChange::Timbre, Vec::new())
            },
        )
    }

    /// Encodes and commits a structure reference.
    pub fn set_structure(
        &self,
        audio: AudioView<'_>,
    ) -> Result<ConditioningEvent, ConditioningError> {
        let clip = AudioClip::new("structure", audio)?;
        self.apply(
            || Ok(self.encoder.encode_structure(clip.view())?),
            |next, cond| {
                next.structure = Some(Arc::new(cond));
                (ConditioningChange::Structure, Vec::new())
            },
        )
    }

    /// Removes the timbre reference (no encode; O(1)).
    pub fn clear_timbre(&self) -> ConditioningEvent {
        let mut state = self.state.lock_unpoisoned();
        self.commit(&mut state, |next| {
            next.timbre = None;
            (ConditioningChange::ClearTimbre, Vec::new())
        })
    }

    /// Removes the structure reference (no encode; O(1)).
    pub fn clear_structure(&self) -> ConditioningEvent {
        let mut state = self.state.lock_unpoisoned();
        self.commit(&mut state, |next| {
            next.structure = None;
            (ConditioningChange::ClearStructure, Vec::new())
        })
    }

    fn apply<R>(
        &self,
        encode: impl Fn() -> Result<R, ConditioningError>,
        install: impl FnOnce(&mut Conditioning<E::Cond>, R) -> (ConditioningChange, Vec<String>),
    ) -> Result<ConditioningEvent, ConditioningError> {
        let _encoding = self.encode_lock.lock_unpoisoned();
        for _ in 0..UNLOCKED_ATTEMPTS {
            let snapshot_epoch = self.state.lock_unpoisoned().committed.epoch;
            let encoded = encode()?;
            let mut state = self.state.lock_unpoisoned();
            if state.committed.epoch == snapshot_epoch {
                return Ok(self.commit(&mut state, |next| install(next, encoded)));
            }
            // A commit landed during the encode: drop this one, re-snapshot, re-encode.
        }
        let mut state = self.state.lock_unpoisoned();
        let encoded = encode()?;
        Ok(self.commit(&mut state, |next| install(next, encoded)))
    }

    fn commit(
        &self,
        state: &mut State<E::Cond>,
        change: impl FnOnce(&mut Conditioning<E::Cond>) -> (ConditioningChange, Vec<String>),
    ) -> ConditioningEvent {
        let mut next = (*state.committed).clone();
        next.epoch += 1;
        let (change, unknown_words) = change(&mut next);
        let next = Arc::new(next);
        state.committed = Arc::clone(&next);
        state.publisher.write(next);
        let event = ConditioningEvent {
            epoch: state.committed.epoch,
            change,
            unknown_words,
        };
        if let Some(events) = &self.events {
            // Sent under the state mutex so events arrive in epoch order.
            let _ = events.send(event.clone());
        }
        event
    }
}

#[cfg(test)]
mod tests;
