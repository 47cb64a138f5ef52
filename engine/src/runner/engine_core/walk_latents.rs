//! The latents the engine core writes from, per walk window ([`WalkWindows`]): each
//! window's cut of the source, each window's newest finished latent, and the newest of all
//! with the knobs it finished under; plus the scratch a window is decoded into
//! ([`WindowDecoder`]).
//!
//! A loop of one chunk has one window (the whole loop) and the band window's entry stays
//! empty; a walking loop has one per chunk, then the band's (see [`super::super::walk`]).
//!
//! Threading: owned by the engine core (one thread). Latents are shared `Arc`s (the
//! pipeline made them); the decode scratch is sized at construction and grows only if a
//! model asks for a longer window than it declared.

use std::sync::Arc;

use super::attribution::Attribution;
use crate::knobs::KnobSnapshot;
use crate::model::{ChunkPlace, DecodeError, Model};
use crate::runner::walk::WalkWindows;

/// The per-window latents (see the module doc).
pub(super) struct WalkLatents<L> {
    /// The walk windows: the chunks, then the band's.
    pub windows: WalkWindows,
    /// The source's latents cut into the windows; `None` without a source or band window.
    pub chunks: Vec<Option<Arc<L>>>,
    /// The whole source's latents (what a band window is cut from).
    pub source: Option<Arc<L>>,
    /// The window the pipeline generates for; `None` until the next tick picks one.
    pub pipeline_chunk: Option<usize>,
    /// The newest finished latent of each window (what a write into it falls back to).
    pub newest_of: Vec<Option<(Arc<L>, Attribution)>>,
    /// The newest finished latent, with its window.
    pub newest: Option<(usize, Arc<L>, Attribution)>,
    /// The knobs of the tick that finished `newest`.
    pub newest_knobs: KnobSnapshot,
}

impl<L> WalkLatents<L> {
    /// No latents yet, over `windows`.
    pub fn new(windows: WalkWindows) -> Self {
        let count = windows.count() + 1;
        Self {
            pipeline_chunk: (!windows.walking()).then_some(0),
            windows,
            chunks: vec![None; count],
            source: None,
            newest_of: vec![None; count],
            newest: None,
            newest_knobs: KnobSnapshot::defaults(),
        }
    }

    /// A fresh latent of window `chunk`, finished under `knobs`.
    pub fn finished(
        &mut self,
        chunk: usize,
        latent: &Arc<L>,
        attr: Attribution,
        knobs: &KnobSnapshot,
    ) {
        self.newest = Some((chunk, Arc::clone(latent), attr));
        if let Some(slot) = self.newest_of.get_mut(chunk) {
            *slot = Some((Arc::clone(latent), attr));
        }
        self.newest_knobs = knobs.clone();
    }

    /// Forget every finished latent (the loop they were made for is gone).
    pub fn forget_finished(&mut self) {
        self.newest = None;
        self.newest_of.iter_mut().for_each(|c| *c = None);
    }

    /// Forget window `w`'s finished latents (its source was cut anew).
    pub fn forget_window(&mut self, w: usize) {
        self.newest_of[w] = None;
        if self.newest.as_ref().is_some_and(|(c, _, _)| *c == w) {
            self.newest = None;
        }
    }

    /// What decodes next to window `k`: its newest latent, else its source.
    fn neighbour(&self, k: usize) -> Option<Arc<L>> {
        self.newest_of[k]
            .as_ref()
            .map(|(l, _)| Arc::clone(l))
            .or_else(|| self.chunks[k].clone())
    }
}

/// The scratch a kept window is decoded into, with the geometry of a window.
pub(super) struct WindowDecoder {
    scratch: Vec<f32>,
    /// Where the kept window starts in `scratch` (samples), after the last decode.
    window_at: usize,
    /// Audio frames per latent frame.
    pub hop: usize,
    /// Audio channels.
    pub channels: usize,
    /// Audio frames of a kept window.
    pub keep_len: usize,
}

impl WindowDecoder {
    /// A decoder for kept windows of `keep_latent` latent frames with `context` latent
    /// frames on each side.
    pub fn new(keep_latent: usize, context: usize, hop: usize, channels: usize) -> Self {
        Self {
            scratch: vec![0.0; (keep_latent + 1 + 2 * context) * hop * channels],
            window_at: 0,
            hop,
            channels,
            keep_len: keep_latent * hop,
        }
    }

    /// Decode the kept window for frames `[at, at + keep)` of walk window `chunk` (of the
    /// loop when it is one chunk) into the scratch. Returns the frames from `at` on that
    /// the scratch holds clear of the decode's right context (at least the kept window),
    /// read with [`Self::audio`]. A walk chunk is decoded with its neighbours' newest
    /// latents (else their source) around it, so adjacent chunks join without a seam
    /// ([`Model::decode_chunk_window`]).
    pub fn decode<M: Model>(
        &mut self,
        model: &M,
        walk: &WalkLatents<M::Latents>,
        latent: &M::Latents,
        chunk: usize,
        knobs: &KnobSnapshot,
        at: usize,
    ) -> Result<usize, DecodeError> {
        let (hop, ch) = (self.hop, self.channels);
        let lat_frames = model.latent_frames(latent).max(1);
        let first = at / hop;
        let offset = at % hop;
        let kept = (offset + self.keep_len).div_ceil(hop);
        let mut ctx = model.decode_context_frames();
        if kept + 2 * ctx > lat_frames {
            ctx = lat_frames.saturating_sub(kept) / 2;
        }
        let frames = (kept + 2 * ctx).min(lat_frames);
        let start = (first % lat_frames + lat_frames - ctx % lat_frames) % lat_frames;
        let want = frames * hop * ch;
        if self.scratch.len() < want {
            self.scratch.resize(want, 0.0);
        }
        let gains = knobs.channel_gains();
        // A band window loops on itself: its own latent on both sides.
        let around = match walk.windows.neighbours(chunk) {
            Some((before, after)) => Some((walk.neighbour(before), walk.neighbour(after))),
            None => walk.windows.walking().then_some((None, None)),
        };
        let place = around.as_ref().map(|(before, after)| ChunkPlace {
            before: before.as_deref().unwrap_or(latent),
            after: after.as_deref().unwrap_or(latent),
            loop_offset: walk.windows.latent_range(chunk).0,
            loop_frames: walk.windows.total_latent(),
        });
        model.decode_chunk_window(
            latent,
            place.as_ref(),
            &gains,
            knobs.flags.ch_gains_all_zero,
            start,
            frames,
            &mut self.scratch[..want],
        )?;
        self.window_at = (ctx * hop + offset) * ch;
        Ok((frames - ctx) * hop - offset)
    }

    /// `len` frames of the last decode, from `offset` frames past the kept window's start.
    pub fn audio(&self, offset: usize, len: usize) -> &[f32] {
        let from = self.window_at + offset * self.channels;
        &self.scratch[from..from + len * self.channels]
    }
}
