//! Where decoded windows go in the ring: frame arithmetic only, no ring access.
//!
//! # Conventions
//!
//! - All positions and lengths are **frames** at the ring's rate. Ring positions are taken
//!   **modulo the loop**: `0 .. loop_frames`. Leads and offsets are distances along the
//!   **reader's path** from the playhead, not ring differences.
//! - The reader's path: from the playhead forward, wrapping from the loop end to 0, or,
//!   with a loop band `[A, B)` armed, from B to A. A band armed while the playhead is
//!   outside it sends the reader to A before it plays another frame (the ring applies a
//!   band at the start of a period), so targeting then measures from A
//!   ([`LoopGeometry::path_origin`]).
//! - A write is a [`WritePlan`]: one or two [`Segment`]s, each "write `len` frames of the
//!   kept window from `window_offset` on at ring frame `ring_start`". Without a band a
//!   window crossing the loop end stays one segment: the ring wraps it itself, with one
//!   crossfade. Inside a band a window is clamped at B; the frontier patches the rest at A
//!   (a second segment), the repatch does not.
//! - The ring drops whatever part of a write falls inside its guard; the frontier's lead is
//!   far beyond the guard, and the repatch target is pushed out of it here.
//!
//! # Threading
//!
//! Pure functions of plain values, for the engine thread or any tool.

/// One piece of a window write: `len` frames of the kept window, from `window_offset` on,
/// written at ring frame `ring_start`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Segment {
    /// Ring frame (in `0 .. loop_frames`) where the piece starts.
    pub ring_start: usize,
    /// Frame of the kept window the piece starts with.
    pub window_offset: usize,
    /// Frames in the piece (above 0).
    pub len: usize,
}

/// Most segments one window write needs (the clamp at B and the patch at A).
pub const MAX_SEGMENTS: usize = 2;

/// The segments of one window write, in window order; fixed capacity, no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WritePlan {
    segments: [Segment; MAX_SEGMENTS],
    count: usize,
}

impl WritePlan {
    fn one(segment: Segment) -> Self {
        Self {
            segments: [segment, Segment::default()],
            count: 1,
        }
    }

    fn two(first: Segment, second: Segment) -> Self {
        Self {
            segments: [first, second],
            count: 2,
        }
    }

    /// The segments, in window order (the first starts at window offset 0).
    pub fn segments(&self) -> &[Segment] {
        &self.segments[..self.count]
    }

    /// Ring frame of the window's start.
    pub fn target(&self) -> usize {
        self.segments[0].ring_start
    }

    /// Frames written over all segments.
    pub fn total_len(&self) -> usize {
        self.segments().iter().map(|s| s.len).sum()
    }
}

/// Geometry or positions that targeting cannot use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TargetingError {
    /// The loop has no frames.
    #[error("targeting: the loop has no frames")]
    EmptyLoop,
    /// The band is empty or outside the loop.
    #[error("targeting: band [{a}, {b}) is empty or outside the loop of {loop_frames} frames")]
    Band {
        /// Band start.
        a: usize,
        /// Band end (exclusive).
        b: usize,
        /// Loop length.
        loop_frames: usize,
    },
    /// The playhead is not a ring position.
    #[error("targeting: playhead {playhead} is outside the loop of {loop_frames} frames")]
    Playhead {
        /// Playhead given.
        playhead: usize,
        /// Loop length.
        loop_frames: usize,
    },
    /// The window is empty or longer than the loop.
    #[error("targeting: a window of {window} frames does not fit a loop of {loop_frames} frames")]
    Window {
        /// Window length given.
        window: usize,
        /// Loop length.
        loop_frames: usize,
    },
}

/// The loop and its optional band `[A, B)`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopGeometry {
    loop_frames: usize,
    band: Option<(usize, usize)>,
}

impl LoopGeometry {
    /// A loop of `loop_frames` frames with an optional band (`A < B <= loop_frames`), as
    /// [`RingHandle::band`](crate::ring::RingHandle::band) reports it.
    pub fn new(loop_frames: usize, band: Option<(usize, usize)>) -> Result<Self, TargetingError> {
        if loop_frames == 0 {
            return Err(TargetingError::EmptyLoop);
        }
        if let Some((a, b)) = band
            && (a >= b || b > loop_frames)
        {
            return Err(TargetingError::Band { a, b, loop_frames });
        }
        Ok(Self { loop_frames, band })
    }

    /// Loop length in frames.
    pub fn loop_frames(&self) -> usize {
        self.loop_frames
    }

    /// The band, if armed.
    pub fn band(&self) -> Option<(usize, usize)> {
        self.band
    }

    /// The region the reader cycles through: `(start, span)`, the band or the whole loop.
    pub fn region(&self) -> (usize, usize) {
        match self.band {
            Some((a, b)) => (a, b - a),
            None => (0, self.loop_frames),
        }
    }

    /// Where the reader's path starts from a published playhead: the playhead itself, or A
    /// when a band is armed and the playhead is outside it (the reader jumps there).
    pub fn path_origin(&self, playhead: usize) -> usize {
        match self.band {
            Some((a, b)) if !(a..b).contains(&playhead) => a,
            _ => playhead,
        }
    }

    /// The ring frame `distance` frames along the reader's path from `playhead`.
    pub fn advance(&self, playhead: usize, distance: u64) -> usize {
        let (start, span) = self.region();
        let from = (self.path_origin(playhead) - start) as u64;
        start + ((from + distance) % span as u64) as usize
    }

    /// Frames the reader plays from `playhead` until it reaches ring frame `target`
    /// (0 when it is there); `None` when its path never gets there. See
    /// [`frames_until_reached`].
    pub fn frames_until_reached(&self, playhead: usize, target: usize) -> Option<u64> {
        if playhead >= self.loop_frames || target >= self.loop_frames {
            return None;
        }
        let (start, span) = self.region();
        if !(start..start + span).contains(&target) {
            return None;
        }
        let from = self.path_origin(playhead) - start;
        let to = target - start;
        Some(((to + span - from) % span) as u64)
    }

    fn check(&self, playhead: usize, window: usize) -> Result<(), TargetingError> {
        if playhead >= self.loop_frames {
            return Err(TargetingError::Playhead {
                playhead,
                loop_frames: self.loop_frames,
            });
        }
        if window == 0 || window > self.loop_frames {
            return Err(TargetingError::Window {
                window,
                loop_frames: self.loop_frames,
            });
        }
        Ok(())
    }
}

/// Frames the reader plays from ring frame `playhead` until it reaches ring frame
/// `target`, following its path: through the loop end, or from B to A inside an armed
/// band `[A, B)` (jumping to A first when the playhead is outside the band). `None` when
/// the reader will not go there: the target is outside the band, or an argument is not a
/// position of a valid loop and band.
///
/// Adding the result to the frame clock read together with `playhead` gives the clock
/// value at which `target` is played, as long as the band does not change meanwhile.
pub fn frames_until_reached(
    playhead: usize,
    target: usize,
    loop_frames: usize,
    band: Option<(usize, usize)>,
) -> Option<u64> {
    LoopGeometry::new(loop_frames, band)
        .ok()?
        .frames_until_reached(playhead, target)
}

/// The frontier write: the kept window of `window_frames` frames placed `lead_frames`
/// along the reader's path from `playhead`.
///
/// - No band: one segment at `(playhead + lead) mod loop` (the ring wraps it at the end).
/// - Band `[A, B)` at least a window long: the target is `A + ((origin - A + lead) mod
///   span)`; the write is clamped at B and the rest of the window is written at A (a
///   second segment), so the reader hears the window unbroken through its wrap.
/// - Band shorter than the window: pinned at A, clamped at B (one segment of `span`).
pub fn frontier_target(
    geometry: &LoopGeometry,
    playhead: usize,
    lead_frames: u64,
    window_frames: usize,
) -> Result<WritePlan, TargetingError> {
    geometry.check(playhead, window_frames)?;
    let Some((a, b)) = geometry.band() else {
        return Ok(WritePlan::one(Segment {
            ring_start: geometry.advance(playhead, lead_frames),
            window_offset: 0,
            len: window_frames,
        }));
    };
    let span = b - a;
    if span < window_frames {
        return Ok(WritePlan::one(Segment {
            ring_start: a,
            window_offset: 0,
            len: span,
        }));
    }
    let target = geometry.advance(playhead, lead_frames);
    let first = window_frames.min(b - target);
    let head = Segment {
        ring_start: target,
        window_offset: 0,
        len: first,
    };
    if first == window_frames {
        return Ok(WritePlan::one(head));
    }
    let wrap = Segment {
        ring_start: a,
        window_offset: first,
        len: window_frames - first,
    };
    Ok(WritePlan::two(head, wrap))
}

/// The backfill at a walk chunk's start. Writes stay inside their chunk, so the last
/// frontier write before a chunk stops at its end, and the first one into it starts at
/// `target` (`playhead + lead`), past the chunk's start by however far the playhead moved
/// in between: `[chunk_start, target)` would never be written. A window written at
/// `chunk_start` fills it. `None` when there is nothing to fill (`target` is the chunk's
/// start), when a band is armed (a band's writes wrap inside it), or when the reader is too
/// close: `chunk_start` must be at least `guard_frames` ahead of `playhead` and before
/// `target` along the reader's path.
pub fn chunk_start_backfill(
    geometry: &LoopGeometry,
    playhead: usize,
    target: usize,
    chunk_start: usize,
    guard_frames: usize,
    window_frames: usize,
) -> Option<WritePlan> {
    if geometry.band().is_some() || target == chunk_start {
        return None;
    }
    let to_start = geometry.frames_until_reached(playhead, chunk_start)?;
    let to_target = geometry.frames_until_reached(playhead, target)?;
    if to_start < guard_frames as u64 || to_start >= to_target {
        return None;
    }
    Some(WritePlan::one(Segment {
        ring_start: chunk_start,
        window_offset: 0,
        len: window_frames,
    }))
}

/// The near-playhead repatch: the kept window placed `repatch_lead_frames` along the
/// reader's path, but never inside the guard (at least `guard_frames` ahead). `None` when
/// it should be skipped.
///
/// - No band: one segment at `playhead + max(lead, guard)` modulo the loop.
/// - Band `[A, B)`: the target wraps inside the band; a lead longer than the band is
///   taken modulo the span and pushed out of the guard again; the write is clamped at B
///   and never runs back into the playhead. No segment at A: the repatch is
///   opportunistic, the frontier covers the rest.
/// - Skipped (`None`): a band shorter than the window, a guard that covers the whole band,
///   or nothing left to write after the clamps.
pub fn repatch_target(
    geometry: &LoopGeometry,
    playhead: usize,
    repatch_lead_frames: u64,
    guard_frames: usize,
    window_frames: usize,
) -> Result<Option<WritePlan>, TargetingError> {
    geometry.check(playhead, window_frames)?;
    let (_, span) = geometry.region();
    if span < window_frames {
        return Ok(None);
    }
    let guard = guard_frames as u64;
    let span64 = span as u64;
    let mut distance = repatch_lead_frames.max(guard);
    if distance >= span64 {
        if guard >= span64 {
            return Ok(None);
        }
        distance = (distance % span64).max(guard);
    }
    let target = geometry.advance(playhead, distance);
    // Path frames left before the reader's own position comes round again.
    let before_playhead = (span64 - distance) as usize;
    let len = match geometry.band() {
        Some((_, b)) => window_frames.min(b - target).min(before_playhead),
        None => window_frames.min(before_playhead),
    };
    if len == 0 {
        return Ok(None);
    }
    Ok(Some(WritePlan::one(Segment {
        ring_start: target,
        window_offset: 0,
        len,
    })))
}

#[cfg(test)]
mod tests;
