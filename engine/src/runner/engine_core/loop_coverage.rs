//! [`LoopCoverage`]: which parts of the loop the engine has written since the loop began.
//!
//! A loop with no source (generation from the prompt alone) starts as silence, and the
//! engine fills it just ahead of the playhead. The idle pause (`idle_after_s` without
//! input) must not stop it half-way round, or every later lap would play the unwritten
//! rest as silence; so without a source the engine idles only once every part of the loop
//! has been written at least once. A loop made from a source holds the source where
//! nothing was written yet, which is music already: there the idle rule is unchanged.
//!
//! The loop is cut into cells (one latent frame of audio each); a write marks the cells it
//! covers whole. A cell two writes share between them is not marked until one write covers
//! it whole: writes are not aligned to cells, and "touched" would call a cell written while
//! part of it was still silence (the frontier's overlapping windows soon cover every cell).
//!
//! Threading: owned by the engine core (one thread). Allocated when a loop begins, never
//! in a tick.

/// The cells of the loop written at least once (see the module doc).
pub(super) struct LoopCoverage {
    /// Ring frames in the loop.
    loop_frames: usize,
    /// Ring frames per cell (the last cell may be shorter).
    cell_frames: usize,
    /// Per cell, whether a write has touched it.
    written: Vec<bool>,
    /// Cells not written yet.
    missing: usize,
}

impl LoopCoverage {
    /// A loop of `loop_frames` ring frames, nothing written, in cells of `cell_frames`.
    pub fn new(loop_frames: usize, cell_frames: usize) -> Self {
        let cell_frames = cell_frames.max(1);
        let cells = loop_frames.div_ceil(cell_frames);
        Self {
            loop_frames,
            cell_frames,
            written: vec![false; cells],
            missing: cells,
        }
    }

    /// `len` frames were written from ring frame `start` (wrapping at the loop's end).
    pub fn mark(&mut self, start: usize, len: usize) {
        let loop_frames = self.loop_frames;
        if loop_frames == 0 || self.missing == 0 {
            return;
        }
        if len >= loop_frames {
            self.mark_span(0, loop_frames);
            return;
        }
        let start = start % loop_frames;
        let end = start + len;
        if end <= loop_frames {
            self.mark_span(start, end);
        } else {
            self.mark_span(start, loop_frames);
            self.mark_span(0, end - loop_frames);
        }
    }

    /// Mark the cells lying wholly inside ring frames `start..end` (no wrap).
    fn mark_span(&mut self, start: usize, end: usize) {
        let cell_frames = self.cell_frames;
        for cell in start.div_ceil(cell_frames)..self.written.len() {
            let cell_end = ((cell + 1) * cell_frames).min(self.loop_frames);
            if cell_end > end {
                break;
            }
            if !self.written[cell] {
                self.written[cell] = true;
                self.missing -= 1;
            }
        }
    }

    /// Every cell has been written.
    pub fn complete(&self) -> bool {
        self.missing == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_is_complete_once_every_cell_is_covered_whole_and_not_before() {
        // 10 frames in cells of 4: cells [0,4) [4,8) [8,10).
        let mut c = LoopCoverage::new(10, 4);
        assert!(!c.complete());
        c.mark(0, 3);
        c.mark(3, 3); // covers no cell whole: [0,4) nor [4,8)
        assert_eq!(c.missing, 3, "partial writes mark nothing");
        c.mark(0, 4);
        c.mark(4, 4);
        assert!(!c.complete(), "the last, short cell is still missing");
        c.mark(0, 0);
        assert!(!c.complete(), "an empty write marks nothing");
        c.mark(8, 2);
        assert!(c.complete());
    }

    #[test]
    fn a_write_past_the_end_wraps_to_the_start() {
        let mut c = LoopCoverage::new(12, 4);
        c.mark(8, 8); // cells 2, then 0 (frames 12..16 are 0..4)
        assert_eq!(c.missing, 1);
        c.mark(5, 4);
        assert!(!c.complete(), "cell 1 [4,8) is only partly written");
        c.mark(4, 4);
        assert!(c.complete());
        let mut whole = LoopCoverage::new(12, 4);
        whole.mark(5, 100); // longer than the loop: every cell once
        assert!(whole.complete());
    }
}
