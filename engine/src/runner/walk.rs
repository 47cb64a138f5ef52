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
//! # A band across a boundary
//!
//! A loop band `[A, B)` that straddles a chunk boundary would make the pipeline switch
//! chunks at every pass of the reader. [`WalkWindows`] turns such a band into a **window**
//! of its own: the latent frames covering the band (from `A`'s latent frame to the one
//! holding `B - 1`), generated like a chunk, so the band plays continuously and is
//! regenerated as a whole. Window indices are the chunks `0 .. count` and, while such a
//! band is armed, the band window at index `count`. A band inside one chunk needs none (the
//! pipeline stays on that chunk); a band shorter than the shortest chunk allowed or longer
//! than the longest chunk gets none either (the chunks walk through it as they do through
//! the loop).
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

/// A loop band generated as a window of its own (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BandWindow {
    /// The band `[A, B)`, ring frames.
    band: (usize, usize),
    /// Its latent frames `(start, len)` in the whole loop.
    latent: (usize, usize),
}

/// The windows the pipeline generates for: the chunks of a [`WalkLayout`] and, while a
/// band straddles a chunk boundary, the band's own window (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalkWindows {
    layout: WalkLayout,
    band: Option<BandWindow>,
    /// Fewest latent frames a band window may hold (a chunk's minimum).
    min_frames: usize,
}

impl WalkWindows {
    /// The chunks of `layout`, no band window; a band window holds at least `min_frames`
    /// latent frames.
    pub fn new(layout: WalkLayout, min_frames: usize) -> Self {
        Self {
            layout,
            band: None,
            min_frames,
        }
    }

    /// Number of chunks (the band window, when there is one, has index `count`).
    pub fn count(&self) -> usize {
        self.layout.count()
    }

    /// Whether the loop is cut into more than one chunk.
    pub fn walking(&self) -> bool {
        self.layout.walking()
    }

    /// Latent frames in the whole loop.
    pub fn total_latent(&self) -> usize {
        self.layout.total_latent()
    }

    /// The band window's index (`count`); whether one exists: [`WalkWindows::band_window`].
    pub fn band_index(&self) -> usize {
        self.layout.count()
    }

    /// The band window, if the armed band has one.
    pub fn band_window(&self) -> Option<BandWindow> {
        self.band
    }

    /// Follows the ring's band: `true` when the band window changed (appeared, moved or
    /// went away). A walking loop's band `[a, b)` gets a window when it straddles a chunk
    /// boundary and covers between `min_frames` and one and a half chunk lengths of latent
    /// frames.
    pub fn set_band(&mut self, band: Option<(usize, usize)>) -> bool {
        let l = &self.layout;
        let window = band
            .filter(|&(a, b)| l.walking() && a < b && l.chunk_of(a) != l.chunk_of(b - 1))
            .map(|(a, b)| {
                let first = a / l.hop;
                let end = b.div_ceil(l.hop).min(l.total_latent);
                BandWindow {
                    band: (a, b),
                    latent: (first, end.saturating_sub(first)),
                }
            })
            .filter(|w| (self.min_frames..=l.chunk_latent * 3 / 2).contains(&w.latent.1));
        let changed = window != self.band;
        self.band = window;
        changed
    }

    /// The window holding ring frame `frame`: the band window inside the band, else the
    /// chunk.
    pub fn window_of(&self, frame: usize) -> usize {
        let frame = frame % self.layout.loop_frames;
        match self.band {
            Some(w) if (w.band.0..w.band.1).contains(&frame) => self.band_index(),
            _ => self.layout.chunk_of(frame),
        }
    }

    /// Latent frames `(start, len)` of window `w` in the whole loop's latents.
    pub fn latent_range(&self, w: usize) -> (usize, usize) {
        match self.band {
            Some(b) if w == self.band_index() => b.latent,
            _ => self.layout.latent_range(w),
        }
    }

    /// Ring frames `[start, end)` of window `w`: its decodes are placed from `start` (its
    /// first latent frame) and its writes end at `end` (a band window's: B).
    pub fn ring_range(&self, w: usize) -> (usize, usize) {
        match self.band {
            Some(b) if w == self.band_index() => (b.latent.0 * self.layout.hop, b.band.1),
            _ => self.layout.ring_range(w),
        }
    }

    /// The chunks before and after chunk `w` (whose latents surround its decodes); `None`
    /// for the band window (the band loops on itself) and for a loop of one chunk.
    pub fn neighbours(&self, w: usize) -> Option<(usize, usize)> {
        let count = self.count();
        (self.walking() && w < count).then(|| ((w + count - 1) % count, (w + 1) % count))
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
    fn a_band_across_a_boundary_is_a_window_of_its_own() {
        let layout = WalkLayout::new(150 * 48_000, HOP, 3750, 1500);
        let mut w = WalkWindows::new(layout, 20);
        // 58 .. 62.01 s straddles the 60 s boundary.
        let band = (58 * 48_000, 62 * 48_000 + 480);
        assert!(w.set_band(Some(band)));
        assert!(
            !w.set_band(Some(band)),
            "the same band again changes nothing"
        );
        assert_eq!(w.band_index(), 3);
        assert_eq!(w.latent_range(3), (1450, 101));
        assert_eq!(w.ring_range(3), (58 * 48_000, band.1));
        assert_eq!(w.window_of(59 * 48_000), 3);
        assert_eq!(w.window_of(61 * 48_000), 3);
        assert_eq!(w.window_of(band.1), 1);
        assert_eq!(w.window_of(57 * 48_000), 0);
        assert_eq!(w.neighbours(3), None);
        assert_eq!(w.neighbours(0), Some((2, 1)));
        // Inside one chunk, too short, or longer than the longest chunk: no band window.
        for band in [
            (61 * 48_000, 65 * 48_000),
            (60 * 48_000 - 100, 60 * 48_000 + 100),
            (10 * 48_000, 110 * 48_000),
        ] {
            w.set_band(Some(band));
            assert_eq!(w.band_window(), None, "{band:?}");
            assert_eq!(w.window_of(band.0), layout.chunk_of(band.0));
        }
        assert!(!w.set_band(None));
        // A loop of one chunk never has one.
        let mut one = WalkWindows::new(WalkLayout::new(10 * 48_000, HOP, 250, 1500), 20);
        assert!(!one.set_band(Some((48_000, 9 * 48_000))));
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
