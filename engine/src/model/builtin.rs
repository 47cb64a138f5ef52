//! `builtin`: the default model, on the CPU, with nothing to download. 48 kHz stereo,
//! 64 latent channels, 25 latent frames per second.
//!
//! Latents are an explicit musical description of each 40 ms frame ([`layout`]): spectral
//! envelope, melody and bass voices, onsets, stereo width. [`analysis`] measures them from
//! audio, [`refine`] fits a source's envelope, voice levels and hits by analysis-by-synthesis,
//! [`synth`] resynthesizes audio from them, [`vocab`] turns prompts into a target latent
//! sequence (varied by the slot's seed).
//!
//! The denoiser is the exact posterior-mean denoiser of a Gaussian prior per element,
//! `x0 ~ N(m, sigma_c^2)`, with prior mean `m = S + t_start * (target - S)`: `S` is the source
//! (or the target when there is none), `target` the conditioning's latent sequence (prompt A/B
//! by `prompt_blend`, envelope toward the timbre reference by `timbre_strength`, onsets toward
//! the structure reference by `structure_strength`, contrast scaled by `guidance` and pulled
//! back by `cfg_rescale`), `sigma_c` a per-group spread (the room the seed has to vary things).
//! So `x0_pred = m + k * (x - (1 - t) m)`, `k = (1-t) s^2 / ((1-t)^2 s^2 + t^2)`; denoise 0
//! returns the source, denoise 1 the prompt alone. Per step O(frames x channels).
//!
//! Threading: `Send + Sync`; the target cache and noise scratch sit behind uncontended mutexes
//! (the engine thread is their only user).

pub mod analysis;
pub mod layout;
pub mod refine;
pub mod synth;
pub mod vocab;

#[cfg(test)]
mod tests;

use crate::lock::MutexExt;
use std::sync::{Arc, Mutex};

use layout::*;

use super::{
    ChunkPlace, DecodeError, Geometry, Model, ModelError, SlotStart, SlotStep, StepShared,
};
use crate::audio_clip::AudioView;
use crate::conditioning::{ConditionEncoder, Conditioning, EncodeError, PromptEncoding};
use crate::knobs::{KnobId, KnobSnapshot};
use crate::rng::fill_gaussian;

/// Sample rate of the built-in model.
pub const SAMPLE_RATE: u32 = 48_000;
/// Latent frames per second.
pub const FRAME_RATE: u32 = 25;

/// Prior spread per channel group: envelope x4, melody, bass, onsets, width.
const SIGMA: [f32; GROUPS] = [0.15, 0.15, 0.15, 0.15, 0.12, 0.12, 0.25, 0.1];

/// Latents on the host, frame-major.
#[derive(Clone, Debug, PartialEq)]
pub struct CpuLatents {
    frames: usize,
    data: Vec<f32>,
}

impl CpuLatents {
    /// Wraps frame-major data (`frames * 64` values).
    pub fn from_host(data: Vec<f32>) -> Self {
        Self {
            frames: data.len() / LATENT_CHANNELS,
            data,
        }
    }

    /// The values, frame-major.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }
}

/// The built-in model's conditioning.
#[derive(Clone, Debug, PartialEq)]
pub enum BuiltinCond {
    /// A parsed prompt.
    Prompt(vocab::PromptTarget),
    /// A timbre reference: mean envelope and melody partial shape.
    Timbre {
        /// Mean band levels (latent units).
        envelope: [f32; BANDS],
        /// Mean partial levels 2..=7 (latent units).
        partials: [f32; PARTIALS - 1],
    },
    /// A structure reference: onsets per frame (looped over the loop).
    Structure {
        /// One entry per latent frame.
        onsets: Vec<[f32; GROUPS]>,
    },
}

#[derive(PartialEq, Clone, Copy)]
struct TargetKey {
    epoch: u64,
    /// Addresses of the committed encodings (epochs are only unique per conditioner).
    parts: [usize; 3],
    knob_version: u64,
    frames: usize,
    seed: u32,
}

type CachedTarget = (TargetKey, Arc<Vec<f32>>, Conditioning<BuiltinCond>);

/// The built-in CPU model.
pub struct BuiltinModel {
    synth: synth::Synth,
    /// The source encoder's own decoder (analysis-by-synthesis), so encodes never contend
    /// with the engine thread's decodes.
    encode_synth: synth::Synth,
    /// The cached target, its key, and the conditioning it came from (held so the addresses
    /// in the key cannot be reused while cached).
    target: Mutex<Option<CachedTarget>>,
    noise: Mutex<Vec<f32>>,
}

impl Default for BuiltinModel {
    fn default() -> Self {
        Self::new()
    }
}

impl BuiltinModel {
    /// The model.
    pub fn new() -> Self {
        Self {
            synth: synth::Synth::new(SAMPLE_RATE, FRAME_RATE),
            encode_synth: synth::Synth::new(SAMPLE_RATE, FRAME_RATE),
            target: Mutex::new(None),
            noise: Mutex::new(Vec::new()),
        }
    }

    /// The target latent sequence for this conditioning and knob snapshot, with the prompt's
    /// own pattern (seed 0; cached).
    pub fn target(
        &self,
        cond: &Conditioning<BuiltinCond>,
        knobs: &KnobSnapshot,
        frames: usize,
    ) -> Arc<Vec<f32>> {
        self.target_for_seed(cond, knobs, frames, 0)
    }

    /// The target latent sequence for this conditioning, knob snapshot and slot seed (the seed
    /// picks the prompt's pattern variation; cached, one entry).
    pub fn target_for_seed(
        &self,
        cond: &Conditioning<BuiltinCond>,
        knobs: &KnobSnapshot,
        frames: usize,
        seed: u32,
    ) -> Arc<Vec<f32>> {
        let parts = [
            cond.prompt.as_ref().map_or(0, |p| Arc::as_ptr(p) as usize),
            cond.timbre.as_ref().map_or(0, |p| Arc::as_ptr(p) as usize),
            cond.structure
                .as_ref()
                .map_or(0, |p| Arc::as_ptr(p) as usize),
        ];
        let key = TargetKey {
            epoch: cond.epoch,
            parts,
            knob_version: knobs.version,
            frames,
            seed,
        };
        let mut cache = self.target.lock_unpoisoned();
        if let Some((k, t, _)) = cache.as_ref()
            && *k == key
        {
            return Arc::clone(t);
        }
        let t = Arc::new(build_target(cond, knobs, frames, seed));
        *cache = Some((key, Arc::clone(&t), cond.clone()));
        t
    }
}

fn prompt_target(encoding: &PromptEncoding<BuiltinCond>) -> Option<&vocab::PromptTarget> {
    match &encoding.cond {
        BuiltinCond::Prompt(t) => Some(t),
        _ => None,
    }
}

fn build_target(
    cond: &Conditioning<BuiltinCond>,
    knobs: &KnobSnapshot,
    frames: usize,
    seed: u32,
) -> Vec<f32> {
    let mut out = vec![0.0f32; frames * LATENT_CHANNELS];
    let default = vocab::parse(vocab::DEFAULT_PROMPT).0;
    let (a, b) = match &cond.prompt {
        Some(p) => (prompt_target(&p.a), p.b.as_ref().and_then(prompt_target)),
        None => (None, None),
    };
    vocab::render_target(a.unwrap_or(&default), seed, frames, FRAME_RATE, &mut out);
    let blend = knobs.f32(KnobId::prompt_blend);
    if let Some(b) = b.filter(|_| blend > 0.0) {
        let mut other = vec![0.0f32; out.len()];
        vocab::render_target(b, seed, frames, FRAME_RATE, &mut other);
        for (x, y) in out.iter_mut().zip(&other) {
            *x += blend * (y - *x);
        }
    }
    if let Some(BuiltinCond::Timbre { envelope, partials }) = cond.timbre.as_deref() {
        let s = knobs.f32(KnobId::timbre_strength);
        for frame in out.chunks_exact_mut(LATENT_CHANNELS) {
            for (x, e) in frame[ENVELOPE..ENVELOPE + BANDS].iter_mut().zip(envelope) {
                *x += s * (e - *x);
            }
            for (x, p) in frame[MELODY + 2..MELODY + 2 + PARTIALS - 1]
                .iter_mut()
                .zip(partials)
            {
                *x += s * (p - *x);
            }
        }
    }
    if let Some(BuiltinCond::Structure { onsets }) = cond.structure.as_deref()
        && !onsets.is_empty()
    {
        let s = knobs.f32(KnobId::structure_strength);
        for (f, frame) in out.chunks_exact_mut(LATENT_CHANNELS).enumerate() {
            let pattern = &onsets[f % onsets.len()];
            for (x, o) in frame[ONSETS..ONSETS + GROUPS].iter_mut().zip(pattern) {
                *x += s * (o - *x);
            }
        }
    }
    // Guidance: scale each channel's deviation from its loop mean (the "unconditioned" level);
    // cfg_rescale pulls the result back toward the plain target.
    let guidance = knobs.f32(KnobId::guidance);
    if guidance != 1.0 {
        let rescale = knobs.f32(KnobId::cfg_rescale);
        for c in 0..LATENT_CHANNELS {
            let mean =
                out.iter().skip(c).step_by(LATENT_CHANNELS).sum::<f32>() / frames.max(1) as f32;
            for x in out.iter_mut().skip(c).step_by(LATENT_CHANNELS) {
                let guided = mean + guidance * (*x - mean);
                *x = guided + rescale * (*x - guided);
            }
        }
    }
    out
}

/// A backend whose conditioning encoders are the built-in model's (CPU) ones: implementing
/// this one accessor gives it [`ConditionEncoder`] (the GPU backend, its failover wrapper and
/// test models that wrap the built-in model).
pub trait BuiltinEncoders: Send + Sync {
    /// The built-in model whose encoders this backend uses.
    fn builtin_encoders(&self) -> &BuiltinModel;
}

impl<T: BuiltinEncoders> ConditionEncoder for T {
    type Cond = BuiltinCond;

    fn encode_prompt(&self, tags: &str) -> Result<PromptEncoding<BuiltinCond>, EncodeError> {
        self.builtin_encoders().encode_prompt(tags)
    }

    fn encode_timbre(&self, audio: AudioView<'_>) -> Result<BuiltinCond, EncodeError> {
        self.builtin_encoders().encode_timbre(audio)
    }

    fn encode_structure(&self, audio: AudioView<'_>) -> Result<BuiltinCond, EncodeError> {
        self.builtin_encoders().encode_structure(audio)
    }

    fn default_prompt(&self) -> Option<&str> {
        self.builtin_encoders().default_prompt()
    }
}

impl ConditionEncoder for BuiltinModel {
    type Cond = BuiltinCond;

    fn encode_prompt(&self, tags: &str) -> Result<PromptEncoding<BuiltinCond>, EncodeError> {
        let (target, unknown_words) = vocab::parse(tags);
        Ok(PromptEncoding {
            cond: BuiltinCond::Prompt(target),
            unknown_words,
        })
    }

    fn encode_timbre(&self, audio: AudioView<'_>) -> Result<BuiltinCond, EncodeError> {
        audio.validate("timbre")?;
        let (frames, lat) = analysis::analyse(audio, FRAME_RATE);
        let mut envelope = [0.0f32; BANDS];
        let mut partials = [0.0f32; PARTIALS - 1];
        let mut voiced = 0usize;
        for frame in lat.chunks_exact(LATENT_CHANNELS) {
            for (e, v) in envelope.iter_mut().zip(&frame[ENVELOPE..]) {
                *e += v / frames as f32;
            }
            if latent_to_db(frame[MELODY + 1]) > -80.0 {
                voiced += 1;
                for (p, v) in partials.iter_mut().zip(&frame[MELODY + 2..]) {
                    *p += v;
                }
            }
        }
        for p in &mut partials {
            *p = if voiced > 0 {
                *p / voiced as f32
            } else {
                -0.35
            };
        }
        Ok(BuiltinCond::Timbre { envelope, partials })
    }

    fn encode_structure(&self, audio: AudioView<'_>) -> Result<BuiltinCond, EncodeError> {
        audio.validate("structure")?;
        let (_, lat) = analysis::analyse(audio, FRAME_RATE);
        let onsets = lat
            .chunks_exact(LATENT_CHANNELS)
            .map(|f| std::array::from_fn(|g| f[ONSETS + g]))
            .collect();
        Ok(BuiltinCond::Structure { onsets })
    }

    fn default_prompt(&self) -> Option<&str> {
        Some(vocab::DEFAULT_PROMPT)
    }
}

impl Model for BuiltinModel {
    type Latents = CpuLatents;
    type Curve = Vec<f32>;

    fn geometry(&self) -> Geometry {
        Geometry {
            sample_rate: SAMPLE_RATE,
            audio_channels: 2,
            latent_channels: LATENT_CHANNELS,
            latent_frame_rate: FRAME_RATE,
        }
    }

    fn encode_source(&self, audio: AudioView<'_>) -> Result<CpuLatents, EncodeError> {
        audio.validate("source")?;
        let (frames, data) = refine::encode(audio, FRAME_RATE, &self.encode_synth);
        Ok(CpuLatents { frames, data })
    }

    fn latent_frames(&self, latents: &CpuLatents) -> usize {
        latents.frames
    }

    fn slice_latents(&self, latents: &CpuLatents, start_frame: usize, frames: usize) -> CpuLatents {
        let data = super::slice_host_frames(&latents.data, LATENT_CHANNELS, start_frame, frames);
        CpuLatents { frames, data }
    }

    fn latents_to_host(&self, latents: &CpuLatents) -> Vec<f32> {
        latents.data.clone()
    }

    fn upload_curve(&self, host: &[f32]) -> Vec<f32> {
        host.to_vec()
    }

    fn start_slot(&self, start: SlotStart<'_, CpuLatents>) -> CpuLatents {
        let mut data = vec![0.0f32; start.frames * LATENT_CHANNELS];
        fill_gaussian(start.noise, 0, &mut data);
        let base: Option<Vec<f32>> = match (start.source, start.feedback) {
            (Some(s), Some((p, w))) => Some(
                s.data
                    .iter()
                    .zip(&p.data)
                    .map(|(s, p)| s + w * (p - s))
                    .collect(),
            ),
            (Some(s), None) => Some(s.data.clone()),
            (None, Some((p, _))) => Some(p.data.clone()),
            (None, None) => None,
        };
        let t = start.t_start;
        if let Some(base) = base.filter(|b| b.len() == data.len() && t < 1.0) {
            for (x, b) in data.iter_mut().zip(&base) {
                *x = t * *x + (1.0 - t) * b;
            }
        }
        CpuLatents {
            frames: start.frames,
            data,
        }
    }

    fn denoise_batch(
        &self,
        batch: &mut [SlotStep<'_, CpuLatents>],
        shared: &StepShared<'_, Self>,
    ) -> Result<(), ModelError> {
        let Some(frames) = batch.first().map(|s| s.x.frames) else {
            return Ok(());
        };
        let source = shared
            .source
            .filter(|s| s.frames == frames)
            .map(|s| &s.data[..]);
        let mut noise = self.noise.lock_unpoisoned();
        for slot in batch.iter_mut() {
            let target = self.target_for_seed(shared.cond, shared.knobs, frames, slot.noise.seed);
            let anchor = source.unwrap_or(&target);
            let (t, tn, ts) = (slot.t_curr, slot.t_next, slot.t_start);
            if t <= 0.0 || slot.x.data.len() != target.len() {
                continue;
            }
            let k: [f32; GROUPS] = std::array::from_fn(|g| {
                let s2 = SIGMA[g] * SIGMA[g];
                (1.0 - t) * s2 / ((1.0 - t) * (1.0 - t) * s2 + t * t)
            });
            if slot.sde {
                noise.resize(slot.x.data.len(), 0.0);
                fill_gaussian(slot.noise, 0, &mut noise);
            }
            let r = tn / t;
            let lock = if source.is_some() { slot.x0_lock } else { 0.0 };
            let curve = shared.sde_curve.map(|c| &c[..]);
            for (i, x) in slot.x.data.iter_mut().enumerate() {
                let c = i % LATENT_CHANNELS;
                let m = anchor[i] + ts * (target[i] - anchor[i]);
                let mut x0 = m + k[group_of(c)] * (*x - (1.0 - t) * m);
                if let Some(src) = source {
                    x0 += lock * (src[i] - x0);
                }
                *x = if slot.sde {
                    let n = noise[i];
                    let full = tn * n + (1.0 - tn) * x0;
                    match source {
                        Some(src) => {
                            let sdc =
                                curve.map_or(0.0, |c| c[(i / LATENT_CHANNELS).min(c.len() - 1)]);
                            let from_src = tn * n + (1.0 - tn) * src[i];
                            sdc * full + (1.0 - sdc) * from_src
                        }
                        None => full,
                    }
                } else {
                    r * *x + (1.0 - r) * x0
                };
            }
        }
        Ok(())
    }

    fn decode_context_frames(&self) -> usize {
        // Every sample is a pure function of its loop position (see `synth`): context
        // frames would not change the kept ones.
        0
    }

    fn decode_chunk_window(
        &self,
        latents: &CpuLatents,
        place: Option<&ChunkPlace<'_, CpuLatents>>,
        gains: &[f32; 8],
        all_zero: bool,
        start_frame: usize,
        frames: usize,
        out: &mut [f32],
    ) -> Result<(), DecodeError> {
        let hop = (SAMPLE_RATE / FRAME_RATE) as usize;
        super::check_decode_request(latents.frames, frames, hop * 2, out.len())?;
        if all_zero {
            out.fill(0.0);
            return Ok(());
        }
        let total = latents.frames;
        let neighbours = match place {
            Some(p) => synth::Neighbours {
                before: &p.before.data,
                before_total: p.before.frames,
                after: &p.after.data,
                after_total: p.after.frames,
                loop_offset: p.loop_offset,
                loop_total: p.loop_frames,
            },
            None => synth::Neighbours::alone(&latents.data, total),
        };
        self.synth.render_chunk(
            &latents.data,
            total,
            &neighbours,
            gains,
            start_frame % total,
            frames,
            out,
        );
        Ok(())
    }
}
