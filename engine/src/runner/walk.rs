//! Walk mode: how a loop longer than the model's window is cut into **chunks** the pipeline
//! generates one at a time, and which chunk a ring position belongs to. Frame arithmetic
//! only; [`super::engine_core`] does the switching.
//!
//! # The layout
//!
//! The ring holds the whole loop (`loop_frames` frames, `total_latent` latent frames of
//! `hop` frames each). With a chunk length of `chunk_latent` latent frames
//! ([`EngineConfig::walk_chunk_s`](super::EngineConfig::walk_chunk_s)), chunk `k` starts at
//! latent frame `k * chunk_latent`; the last chunk runs to the loop's end. A remainder
//! shorter than half a chunk is not a chunk of its own: it joins the chunk before it (so a
//! chunk is never shorter than half the chunk length, and never longer than one and a
//! half). A loop no longer than one chunk is a single chunk: the whole loop, as before walk
//! mode existed.
//!
//! Chunk `k` covers ring frames `[k * chunk_latent * hop, next start)`; the last one ends at
//! `loop_frames` (which may differ from `total_latent * hop` by less than a latent frame
//! or two: the encoder rounds).
//!
//! # Threading
//!
//! Plain values, owned by the engine thread.

/// The chunks of one loop (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalkLayout {
    loop_frames: usize,
    hop: usize,
    total_latent: usize,
    chunk_latent: usize,
    count: usize,
}

impl WalkLayout {
    /// The layout of a loop of `loop_frames` ring frames holding `total_latent` latent
    /// frames of `hop` ring frames each, cut into chunks of `chunk_latent` latent frames
    /// (all at least 1; `chunk_latent` is clamped to `total_latent`).
    pub fn new(loop_frames: usize, hop: usize, total_latent: usize, chunk_latent: usize) -> Self {
        let total_latent = total_latent.max(1);
        let chunk_latent = chunk_latent.clamp(1, total_latent);
        let full = total_latent / chunk_latent;
        let rest = total_latent % chunk_latent;
        let count = if rest * 2 >= chunk_latent {
            full + 1
        } else {
            full
        };
        Self {
            loop_frames: loop_frames.max(1),
            hop: hop.max(1),
            total_latent,
            chunk_latent,
            count: count.max(1),
        }
    }

    /// Number of chunks (1: no walking).
    pub fn count(&self) -> usize {
        self.count
    }

    /// Latent frames in the whole loop.
    pub fn total_latent(&self) -> usize {
        self.total_latent
    }

    /// Whether the loop is cut into more than one chunk.
    pub fn walking(&self) -> bool {
        self.count > 1
    }

    /// Latent frames `(start, len)` of chunk `k` in the whole loop's latents.
    pub fn latent_range(&self, k: usize) -> (usize, usize) {
        let k = k.min(self.count - 1);
        let start = k * self.chunk_latent;
        let end = if k + 1 == self.count {
            self.total_latent
        } else {
            start + self.chunk_latent
        };
        (start, end - start)
    }

    /// Ring frames `[start, end)` of chunk `k`.
    pub fn ring_range(&self, k: usize) -> (usize, usize) {
        let k = k.min(self.count - 1);
        let start = (k * self.chunk_latent * self.hop).min(self.loop_frames);
        let end = if k + 1 == self.count {
            self.loop_frames
        } else {
            ((k + 1) * self.chunk_latent * self.hop).min(self.loop_frames)
        };
        (start, end)
    }

    /// The chunk holding ring frame `frame` (taken modulo the loop).
    pub fn chunk_of(&self, frame: usize) -> usize {
        let frame = frame % self.loop_frames;
        (frame / (self.chunk_latent * self.hop)).min(self.count - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOP: usize = 1920;

    #[test]
    fn a_150_s_loop_in_60_s_chunks_has_a_short_last_chunk() {
        let w = WalkLayout::new(150 * 48_000, HOP, 3750, 1500);
        assert_eq!(w.count(), 3);
        assert_eq!(w.latent_range(0), (0, 1500));
        assert_eq!(w.latent_range(2), (3000, 750));
        assert_eq!(w.ring_range(1), (60 * 48_000, 120 * 48_000));
        assert_eq!(w.ring_range(2), (120 * 48_000, 150 * 48_000));
        assert_eq!(w.chunk_of(60 * 48_000 - 1), 0);
        assert_eq!(w.chunk_of(60 * 48_000), 1);
        assert_eq!(w.chunk_of(150 * 48_000 - 1), 2);
        assert_eq!(w.chunk_of(150 * 48_000), 0);
    }

    #[test]
    fn a_short_remainder_joins_the_chunk_before() {
        // 130 s: the 10 s rest joins chunk 1, which covers 60 .. 130 s.
        let w = WalkLayout::new(130 * 48_000, HOP, 3250, 1500);
        assert_eq!(w.count(), 2);
        assert_eq!(w.latent_range(1), (1500, 1750));
        assert_eq!(w.ring_range(1), (60 * 48_000, 130 * 48_000));
        assert_eq!(w.chunk_of(125 * 48_000), 1);
    }

    #[test]
    fn a_loop_within_one_chunk_is_one_chunk() {
        let w = WalkLayout::new(10 * 48_000, HOP, 250, 1500);
        assert!(!w.walking());
        assert_eq!(w.latent_range(0), (0, 250));
        assert_eq!(w.ring_range(0), (0, 10 * 48_000));
        assert_eq!(w.chunk_of(9 * 48_000), 0);
        // The encoder's rounding: the ring may be a little longer than the latents.
        let w = WalkLayout::new(10 * 48_000 + 700, HOP, 250, 250);
        assert_eq!(w.ring_range(0), (0, 10 * 48_000 + 700));
        assert_eq!(w.chunk_of(10 * 48_000 + 699), 0);
    }
}

#[cfg(test)]
#[path = "walk_tests.rs"]
mod walk_sim_tests;
