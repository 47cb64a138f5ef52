//! The [`Model`] trait every backend implements (the built-in CPU model, later CUDA / ONNX),
//! and the plain data the pipeline hands it.
//!
//! Tensors stay on the backend's side: latents ([`Model::Latents`]), per-frame curves
//! ([`Model::Curve`]) and conditioning ([`ConditionEncoder::Cond`]) are associated types, and
//! the backend does all tensor math: slot start, the model's prediction, the Euler / SDE update.
//! The pipeline and runner only ever see decoded audio on the host (plus
//! [`Model::latents_to_host`] for tests and state saving).
//!
//! Sampler convention (flow matching): `x_t = t * noise + (1 - t) * x0`,
//! velocity `v = noise - x0`, so `x0_pred = x_t - t * v` and the Euler step is
//! `x += (t_next - t_curr) * v`. SDE step: `n = randn`,
//! `x_full = t_next * n + (1 - t_next) * x0_pred`, `x_src = t_next * n + (1 - t_next) * source`,
//! `x_next = sdc * x_full + (1 - sdc) * x_src` with `sdc` the per-frame SDE curve (with no
//! source, `x_next = x_full`).
//!
//! Errors: a backend call that can fail returns a typed error ([`ModelError`] from
//! [`Model::denoise_batch`], [`DecodeError`] from the decodes, [`EncodeError`] from the
//! encodes). On a `denoise_batch` error no slot changed; the pipeline tick returns it and the
//! runner counts it ([`crate::runner::EngineStats::model_faults`]); a backend keeps no fault
//! counter of its own.
//!
//! Threading: a model is `Send + Sync`; the engine thread calls the denoise and decode methods,
//! the encoder thread the encode methods, concurrently.

pub mod builtin;
pub mod bundle;
pub mod cuda;
pub mod sampler;

use crate::audio_clip::AudioView;
use crate::conditioning::{ConditionEncoder, Conditioning, EncodeError};
use crate::knobs::KnobSnapshot;
use crate::rng::NoiseKey;

/// The shapes a model works in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Geometry {
    /// Output sample rate, Hz.
    pub sample_rate: u32,
    /// Output channels.
    pub audio_channels: usize,
    /// Channels per latent frame.
    pub latent_channels: usize,
    /// Latent frames per second.
    pub latent_frame_rate: u32,
}

impl Geometry {
    /// Audio frames per latent frame.
    pub fn samples_per_latent_frame(&self) -> usize {
        (self.sample_rate / self.latent_frame_rate) as usize
    }

    /// Latent frames covering `seconds` of audio (rounded to nearest).
    pub fn latent_frames_for(&self, seconds: f64) -> usize {
        (seconds * f64::from(self.latent_frame_rate)).round() as usize
    }
}

/// How a new slot's starting latent is made (backend-side). The rule every backend follows:
/// `base` = the source, moved linearly toward the feedback latent by its weight (the feedback
/// latent alone when there is no source); with a base and `t_start < 1`,
/// `x = t_start * noise + (1 - t_start) * base`; otherwise `x = noise`. Noise draw `i` is
/// element `i` in frame-major order.
pub struct SlotStart<'a, L> {
    /// Latent frames (the loop length).
    pub frames: usize,
    /// The source loop's latents, if any.
    pub source: Option<&'a L>,
    /// A past finished latent and its weight (`feedback`), if feedback is on.
    pub feedback: Option<(&'a L, f32)>,
    /// The schedule's first noise level.
    pub t_start: f32,
    /// The noise stream for the start (`step` = [`crate::rng::INIT_STEP`]).
    pub noise: NoiseKey,
}

/// One slot's step in a batched denoise call.
pub struct SlotStep<'a, L> {
    /// The slot's latent, updated in place.
    pub x: &'a mut L,
    /// Current noise level.
    pub t_curr: f32,
    /// Noise level after the step.
    pub t_next: f32,
    /// The slot's schedule start (how far from the source it began: the model's
    /// source / prompt balance).
    pub t_start: f32,
    /// SDE (true) or ODE Euler (false).
    pub sde: bool,
    /// Source-lock weight for this step (`x0_target` in the schedule's second half, else 0):
    /// `x0_pred` is blended toward the source by it before the update.
    pub x0_lock: f32,
    /// The noise stream for this step's draws (SDE only draws; ODE draws nothing).
    pub noise: NoiseKey,
}

impl<L> SlotStep<'_, L> {
    /// The same step on another view of its latent (a wrapper backend's inner latents), or
    /// `None` where `view` finds none.
    pub fn map_x<'b, T>(
        &'b mut self,
        view: impl FnOnce(&'b mut L) -> Option<&'b mut T>,
    ) -> Option<SlotStep<'b, T>> {
        let (t_curr, t_next, t_start) = (self.t_curr, self.t_next, self.t_start);
        let (sde, x0_lock, noise) = (self.sde, self.x0_lock, self.noise);
        Some(SlotStep {
            x: view(&mut *self.x)?,
            t_curr,
            t_next,
            t_start,
            sde,
            x0_lock,
            noise,
        })
    }
}

/// What all slots of one tick share.
pub struct StepShared<'a, M: Model + ?Sized> {
    /// The committed conditioning.
    pub cond: &'a Conditioning<M::Cond>,
    /// The knob snapshot of this tick (guidance, cfg_rescale, blends ...).
    pub knobs: &'a KnobSnapshot,
    /// The source loop's latents, if any.
    pub source: Option<&'a M::Latents>,
    /// The SDE blend curve (`None` when `sde_amp` is 0: the curve is identically 0).
    pub sde_curve: Option<&'a M::Curve>,
}

/// Why a decode failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// The output buffer has the wrong length.
    #[error("decode: output buffer holds {got} samples, the window needs {want}")]
    BufferLength {
        /// Samples given.
        got: usize,
        /// Samples needed.
        want: usize,
    },
    /// The backend failed (a device error); the model's failover moves to the CPU.
    #[error("decode: backend failure: {0}")]
    Backend(String),
    /// The window is empty or longer than the loop.
    #[error("decode: window of {frames} frames (accepted: 1 to {loop_frames})")]
    Window {
        /// Frames asked.
        frames: usize,
        /// Loop length in frames.
        loop_frames: usize,
    },
}

/// Device-measured durations of finished work (GPU backends), read without blocking.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DeviceTimes {
    /// The newest tick (`denoise_batch`) whose events have completed: usually the previous
    /// tick, since the current one is still running when the runner asks.
    pub tick_s: Option<f64>,
    /// The newest decode whose events have completed.
    pub decode_s: Option<f64>,
}

/// Why a backend call ([`Model::denoise_batch`]) failed at run time; the slots were left
/// unchanged. One typed error for every backend: the caller gets it from the call's
/// `Result`, never from an out-of-band flag.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// [`Model::interrupt_denoise`] stopped the call early: not a fault, nothing to count;
    /// no slot changed and the slots' steps do not advance (the runner runs the step again).
    #[error("dit: interrupted")]
    Interrupted,
    /// The runtime (ONNX Runtime, the CUDA driver) reported an error.
    #[error("{file}: run failed: {reason}")]
    Run {
        /// The model file, or the backend part that failed.
        file: &'static str,
        /// The runtime's message.
        reason: String,
    },
    /// An output held NaN or infinity.
    #[error("{file}: output `{tensor}` holds a non-finite value (batch row {row})")]
    NonFinite {
        /// The model file.
        file: &'static str,
        /// The output tensor.
        tensor: &'static str,
        /// The first batch row with one.
        row: usize,
    },
    /// The slots of one batch disagree on their length, or a latent has the wrong size.
    #[error("dit: slot {slot} holds {got} values, the batch needs {want}")]
    Shape {
        /// The slot's index in the batch.
        slot: usize,
        /// Values it holds.
        got: usize,
        /// Values expected.
        want: usize,
    },
}

/// A generative model backend.
pub trait Model: ConditionEncoder + 'static {
    /// A `[frames, latent_channels]` latent tensor, wherever the backend keeps it.
    type Latents: Send + Sync + 'static;
    /// A per-frame curve, wherever the backend keeps it.
    type Curve: Send + Sync + 'static;

    /// The model's shapes.
    fn geometry(&self) -> Geometry;

    /// Analyses a source loop into latents (one latent frame per 1/frame_rate s of audio).
    fn encode_source(&self, audio: AudioView<'_>) -> Result<Self::Latents, EncodeError>;

    /// Latent frames in `latents`.
    fn latent_frames(&self, latents: &Self::Latents) -> usize;

    /// Latent frames `start_frame .. start_frame + frames` of `latents` (wrapping at the
    /// end) as latents of their own: a walk-mode chunk ([`crate::runner::walk`]). Called when
    /// a source arrives, not per tick.
    fn slice_latents(
        &self,
        latents: &Self::Latents,
        start_frame: usize,
        frames: usize,
    ) -> Self::Latents;

    /// Copies latents to the host, frame-major (tests, hashing, state saving; not per tick).
    fn latents_to_host(&self, latents: &Self::Latents) -> Vec<f32>;

    /// Moves a per-frame curve to the backend (called when the curve changes, not per tick).
    fn upload_curve(&self, host: &[f32]) -> Self::Curve;

    /// Makes a new slot's starting latent (see [`SlotStart`] for the rule).
    fn start_slot(&self, start: SlotStart<'_, Self::Latents>) -> Self::Latents;

    /// Advances every slot in `batch` by one step, in one batched call. Each slot's result
    /// must not depend on which other slots share the batch. On an error no slot changed
    /// and the caller counts the failure (the slot's step still advances), except
    /// [`ModelError::Interrupted`] (see [`Model::interrupt_denoise`]).
    fn denoise_batch(
        &self,
        batch: &mut [SlotStep<'_, Self::Latents>],
        shared: &StepShared<'_, Self>,
    ) -> Result<(), ModelError>;

    /// Asks a [`Model::denoise_batch`] running now, or the next one to start, to return
    /// [`ModelError::Interrupted`] as soon as it can, leaving every slot as it was. Called
    /// from any thread (the control thread, when a decoder-scope knob arrives, so the
    /// near-playhead repatch need not wait for a long batched run); never blocks. The
    /// request stands until [`Model::clear_denoise_interrupt`]. The default does nothing:
    /// a backend whose step is short (the built-in model) has no reason to stop one.
    fn interrupt_denoise(&self) {}

    /// Withdraws [`Model::interrupt_denoise`]'s request (the engine thread, at the start of
    /// each tick, before it looks at the knobs). The default does nothing.
    fn clear_denoise_interrupt(&self) {}

    /// Latent frames of context a windowed decode needs on each side of the frames it keeps.
    /// A convolutional VAE decoder (ACE-Step's, for one) is run on a fixed 1 s window (25
    /// frames) of which the centre 0.36 s (9 frames) is kept, so the default is 8. A
    /// decoder whose every sample is a function of its position in the loop alone (the
    /// built-in model) needs none and returns 0: decoding the kept frames directly gives
    /// the same samples at a third of the cost.
    fn decode_context_frames(&self) -> usize {
        8
    }

    /// Device times of the newest work already finished. `None`
    /// (the default, CPU backends): the runner's wall-clock measurement is the time. A GPU
    /// backend measures with events and resolves them with non-blocking queries, one tick
    /// late, so the tick loop never waits for the device to time it.
    fn device_times(&self) -> Option<DeviceTimes> {
        None
    }

    /// Renders latent frames `start_frame .. start_frame + frames` (wrapping at the loop end)
    /// into `out`: interleaved, `frames * samples_per_latent_frame * audio_channels` samples.
    /// `gains` are the eight channel-group gains; `all_zero` says they are all 0 (exact
    /// silence is then required). The latents are the whole loop:
    /// [`Model::decode_chunk_window`] with no [`ChunkPlace`].
    fn decode_window(
        &self,
        latents: &Self::Latents,
        gains: &[f32; 8],
        all_zero: bool,
        start_frame: usize,
        frames: usize,
        out: &mut [f32],
    ) -> Result<(), DecodeError> {
        self.decode_chunk_window(latents, None, gains, all_zero, start_frame, frames, out)
    }

    /// [`Model::decode_window`] for latents that are one walk chunk of a longer loop
    /// (`place`), or the whole loop (`None`). With a place, the frames around the chunk's
    /// edges come from its neighbours (frames past the chunk's end from `place.after`, not
    /// wrapping to the chunk's start) and the decoder's phases from the loop position, so
    /// windows decoded from adjacent chunks join without a seam; `start_frame` is then
    /// taken modulo the chunk.
    #[allow(clippy::too_many_arguments)]
    fn decode_chunk_window(
        &self,
        latents: &Self::Latents,
        place: Option<&ChunkPlace<'_, Self::Latents>>,
        gains: &[f32; 8],
        all_zero: bool,
        start_frame: usize,
        frames: usize,
        out: &mut [f32],
    ) -> Result<(), DecodeError>;
}

/// Where a walk chunk's latents sit in the whole loop ([`Model::decode_chunk_window`]).
pub struct ChunkPlace<'a, L> {
    /// Latents whose last frames come just before the chunk (the previous chunk's newest,
    /// or its source).
    pub before: &'a L,
    /// Latents whose first frames come just after the chunk.
    pub after: &'a L,
    /// The chunk's first latent frame in the loop.
    pub loop_offset: usize,
    /// Latent frames in the whole loop.
    pub loop_frames: usize,
}

impl<'a, L> ChunkPlace<'a, L> {
    /// The same place with the latents mapped (a wrapper backend's inner latents).
    pub fn map<'b, T>(&self, f: impl Fn(&'a L) -> &'b T) -> ChunkPlace<'b, T> {
        ChunkPlace {
            before: f(self.before),
            after: f(self.after),
            loop_offset: self.loop_offset,
            loop_frames: self.loop_frames,
        }
    }
}

/// Frames `start .. start + frames` (wrapping) of frame-major host latents of `channels`
/// channels: the host half of every backend's [`Model::slice_latents`].
pub fn slice_host_frames(data: &[f32], channels: usize, start: usize, frames: usize) -> Vec<f32> {
    let total = (data.len() / channels.max(1)).max(1);
    let mut out = Vec::with_capacity(frames * channels);
    for f in 0..frames {
        let at = (start + f) % total * channels;
        out.extend_from_slice(&data[at..at + channels]);
    }
    out
}

/// The checks every [`Model::decode_window`] makes before rendering: at least one frame, no
/// more than the latents hold, and an output buffer of exactly `frames` latent frames of
/// `samples_per_frame` interleaved samples.
pub fn check_decode_request(
    latent_frames: usize,
    frames: usize,
    samples_per_frame: usize,
    out_len: usize,
) -> Result<(), DecodeError> {
    if frames == 0 || frames > latent_frames {
        return Err(DecodeError::Window {
            frames,
            loop_frames: latent_frames,
        });
    }
    let want = frames * samples_per_frame;
    if out_len != want {
        return Err(DecodeError::BufferLength { got: out_len, want });
    }
    Ok(())
}
