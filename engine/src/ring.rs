//! The playhead ring: a loop-length buffer of interleaved `f32` frames at the output rate,
//! played by the audio callback and patched by the engine, with no lock between them.
//!
//! # Contract
//!
//! [`PlayheadRing::split`] gives one [`RingWriter`] (the engine thread) and one [`RingReader`]
//! (the audio callback). Both are `Send` and neither is `Sync` nor `Clone`, so "one writer,
//! one reader" cannot be broken by accident. [`RingHandle`] (any thread, cheap to clone)
//! reads the playhead and the counters and arms the loop band.
//!
//! - **Reader** ([`RingReader::read_planar`], [`RingReader::read_interleaved`]): copies one
//!   period and advances the playhead, published with one `Release` store. It wraps at the
//!   loop end, or from B to A while a loop band `[A, B)` is armed. A band request is applied
//!   at the start of a period; if the playhead is then outside the band it jumps to A. The
//!   reader never allocates, locks, makes a syscall or panics (for ring channels up to
//!   [`MAX_CHANNELS`]).
//! - **Writer** ([`RingWriter::write`]): patches a window at any position, wrapping at the
//!   loop end, crossfading both edges linearly against what is there over
//!   `min(1200 samples at 48 kHz (scaled with the rate), len / 4)` frames.
//! - **Guard rule**: the writer never touches the frames the reader may read next: the next
//!   `guard` frames of the reader's path from the published playhead (through the band's
//!   wrap, and from A of an armed or requested band), rounded out to whole
//!   [`BLOCK_FRAMES`] blocks. The part of a write that falls there is dropped and counted
//!   as a late landing; the older audio stays in place, which is musically valid.
//! - **Torn reads**: every block of [`BLOCK_FRAMES`] frames carries a sequence number that
//!   is odd while the writer is inside it (a seqlock). The reader checks it around each
//!   block it copies and counts a torn read when it changed. With the guard respected (the
//!   writer re-checks the playhead before every block) it stays at zero; it is counted, not
//!   prevented, because the reader must never wait.
//! - **Guard size** ([`PlayheadRing::guard_for_period`]): one period plus two blocks. The
//!   reader publishes its playhead once per period, after it has read the whole period,
//!   so between two publishes it reads only `[published, published + period)`. A block
//!   the writer checked against the published playhead therefore lies beyond the period
//!   being read; the reader reaches it only after its *next* publish plus two blocks of
//!   the period after that, which is a whole callback interval later. A block write takes
//!   nanoseconds from its check to its last store, so only a writer preempted for about a
//!   period between the two can be overtaken, and the seqlock counts exactly that.
//!
//! - **Loop swap** ([`RingWriter::replace_loop`]): a new loop of any allowed length (same
//!   channels and rate) replaces the old while playing. The [`RingLoop`] is built (and
//!   allocated) off the audio thread and handed to the reader through a single-slot
//!   `rtrb` queue that it checks once per period. The reader adopts it at a period start:
//!   the new loop plays from frame 0, the old one's output is crossfaded into it over
//!   [`LOOP_SWAP_FADE_FRAMES`] (both are read during the fade), a band that no longer fits
//!   (`B` beyond the new end) is cleared while one that fits is kept, a pending seek beyond
//!   the new end is dropped, and the transport (paused or playing) is untouched. The old
//!   loop goes back to the writer through a second single-slot queue and is freed on the
//!   writer's thread: the reader never frees memory. From the request until the writer
//!   sees the adoption ([`RingWriter::poll_swap`]) its writes are dropped (counted late);
//!   after that they land in the new loop. One swap at a time: the next is refused until the old loop is
//!   back. Handles follow the swap: [`RingHandle::loop_frames`] changes at the adoption.
//!
//! Samples live in `AtomicU32` cells (the bit patterns of `f32`) accessed with `Relaxed`
//! ordering: plain loads and stores on the machine, but no data race in the language.
//!
//! # Example
//!
//! ```
//! use latentd_engine::PlayheadRing;
//!
//! let ring = PlayheadRing::silence(48_000, 2, 48_000, PlayheadRing::guard_for_period(256)).unwrap();
//! let handle = ring.handle();
//! let (mut writer, mut reader) = ring.split();
//!
//! // The engine writes a window one second... well, 0.5 s ahead of the playhead.
//! let window = vec![0.25f32; 2 * 4800];
//! let report = writer.write(24_000, &window).unwrap();
//! assert_eq!(report.late_frames, 0);
//!
//! // The audio callback plays one period into two output ports.
//! let (mut left, mut right) = ([0f32; 256], [0f32; 256]);
//! reader.read_planar(&mut [&mut left[..], &mut right[..]]);
//! assert_eq!(handle.playhead(), 256);
//! assert_eq!(handle.counters().torn_reads, 0);
//! ```

use crate::lock::MutexExt;
use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::Mutex;

use crate::sync::{Arc, AtomicU32, AtomicU64, Ordering, fence};

/// Frames per sequence-numbered block: the granularity of torn-read detection and of the
/// guard zone.
#[cfg(not(loom))]
pub const BLOCK_FRAMES: usize = 32;
/// Frames per sequence-numbered block (tiny under loom so models stay small).
#[cfg(loom)]
pub const BLOCK_FRAMES: usize = 2;

/// Most channels a ring may hold (the reader assembles a frame on its stack).
pub const MAX_CHANNELS: usize = 8;

/// Longest crossfade, in frames at 48 kHz; scaled with the ring's rate.
pub const CROSSFADE_FRAMES_48K: usize = 1200;

/// Packed "no band" value: a real band has `B > A >= 0`, so `B != 0`.
const NO_BAND: u64 = 0;

/// "No seek pending".
const NO_SEEK: u64 = u64::MAX;

/// Frames over which the reader crossfades the old loop into the new at a loop swap
/// (10 ms at 48 kHz).
pub const LOOP_SWAP_FADE_FRAMES: usize = 480;

/// Frames over which the reader fades out on pause and in on play (about 5 ms at 48 kHz).
pub const TRANSPORT_FADE_FRAMES: usize = 256;

/// Errors from building a ring, writing a window or arming a band.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The channel count is zero or above [`MAX_CHANNELS`].
    #[error("channel count {0} is outside 1..={MAX_CHANNELS}")]
    Channels(usize),
    /// The sample rate is zero.
    #[error("sample rate must be above 0 Hz")]
    SampleRate,
    /// The sample count is not a whole number of frames.
    #[error("{samples} samples are not a whole number of {channels}-channel frames")]
    Ragged {
        /// Samples given.
        samples: usize,
        /// Channels per frame.
        channels: usize,
    },
    /// The loop is too short for its guard, or too long to index with 32 bits.
    #[error("a loop of {frames} frames is outside {min}..={max} frames (guard {guard} frames)")]
    LoopLength {
        /// Frames asked for.
        frames: usize,
        /// Shortest loop for this guard.
        min: usize,
        /// Longest loop.
        max: usize,
        /// The guard, in frames.
        guard: usize,
    },
    /// The guard is shorter than one block.
    #[error("guard of {guard} frames is below the minimum of {min} frames")]
    Guard {
        /// Guard asked for.
        guard: usize,
        /// Smallest guard.
        min: usize,
    },
    /// A window longer than the loop minus the guard cannot be written.
    #[error("a window of {frames} frames does not fit a loop of {loop_frames} frames")]
    WindowTooLong {
        /// Window length in frames.
        frames: usize,
        /// Loop length in frames.
        loop_frames: usize,
    },
    /// A seek target must lie inside the loop.
    #[error("seek to frame {frame} is outside the loop of {loop_frames} frames")]
    Seek {
        /// Target frame.
        frame: usize,
        /// Loop length in frames.
        loop_frames: usize,
    },
    /// A loop swap is still under way (the old loop has not come back yet).
    #[error("a loop swap is already under way")]
    SwapInFlight,
    /// A new loop must have the ring's channel count.
    #[error("the new loop has {got} channels, the ring {ring}")]
    SwapChannels {
        /// Channels of the new loop.
        got: usize,
        /// Channels of the ring.
        ring: usize,
    },
    /// A loop band must satisfy `A < B <= loop length`.
    #[error("loop band [{a}, {b}) is empty or outside the loop of {loop_frames} frames")]
    Band {
        /// Band start (frames).
        a: usize,
        /// Band end (frames, exclusive).
        b: usize,
        /// Loop length in frames.
        loop_frames: usize,
    },
}

/// Counters of a ring, readable from any thread (each a separate `Relaxed` load).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingCounters {
    /// Periods the reader has played.
    pub periods: u64,
    /// Frames the reader has played since the ring was made.
    pub frames_played: u64,
    /// Blocks the reader met while the writer was inside them.
    pub torn_reads: u64,
    /// Windows written (whole or in part).
    pub writes: u64,
    /// Frames dropped because they fell inside the guard zone.
    pub late_frames: u64,
    /// Writes that lost at least one frame to the guard zone.
    pub late_writes: u64,
}

/// What one [`RingWriter::write`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteReport {
    /// Frames that landed.
    pub written_frames: usize,
    /// Frames dropped inside the guard zone (older audio left in place).
    pub late_frames: usize,
    /// The reader's frame clock ([`RingCounters::frames_played`]) when the write finished.
    pub landed_at: u64,
}

/// State shared by the writer, the reader and the handles.
struct Shared {
    channels: usize,
    /// Length of the loop the reader plays (changes when it adopts a new loop).
    frames: AtomicU64,
    sample_rate: u32,
    /// Longest edge crossfade, in frames, at this rate.
    crossfade: usize,
    /// Loops the reader has adopted since the ring was made.
    loop_generation: AtomicU64,
    /// The loop handles copy in [`RingHandle::snapshot`] (the writer's current one; never
    /// touched by the reader).
    current: Mutex<Arc<Storage>>,
    /// The playhead word: the next frame the reader will play (`0 .. frames`, low 32 bits)
    /// and the low 32 bits of the frame clock at that moment (high 32 bits), published
    /// together with one store so a (playhead, clock) pair is always consistent.
    position: AtomicU64,
    /// Guard length in frames; at least [`BLOCK_FRAMES`].
    guard: AtomicU64,
    /// Band the control side asked for (packed; [`NO_BAND`] for none).
    band_requested: AtomicU64,
    /// Band the reader is using (packed).
    band_applied: AtomicU64,
    /// Transport: 1 while paused (the reader fades out, then plays silence and holds).
    paused: AtomicU64,
    /// A seek the reader applies at its next period ([`NO_SEEK`] for none).
    seek_request: AtomicU64,
    frames_played: AtomicU64,
    periods: AtomicU64,
    torn_reads: AtomicU64,
    writes: AtomicU64,
    late_frames: AtomicU64,
    late_writes: AtomicU64,
}

/// One loop's audio: the part of a ring a loop swap replaces.
struct Storage {
    frames: usize,
    /// `frames * channels` sample cells (`f32` bit patterns), interleaved.
    samples: Box<[AtomicU32]>,
    /// One sequence number per block; odd while the writer is inside the block.
    seqs: Box<[AtomicU32]>,
}

impl Storage {
    fn new(samples: Vec<f32>, channels: usize) -> Self {
        let frames = samples.len() / channels;
        Self {
            frames,
            samples: samples
                .into_iter()
                .map(|s| AtomicU32::new(s.to_bits()))
                .collect(),
            seqs: (0..frames.div_ceil(BLOCK_FRAMES))
                .map(|_| AtomicU32::new(0))
                .collect(),
        }
    }
}

/// A new loop for [`RingWriter::replace_loop`], built (and allocated) on any thread.
pub struct RingLoop {
    storage: Arc<Storage>,
    channels: usize,
}

impl RingLoop {
    /// A loop of `samples` (interleaved, `channels` per frame).
    pub fn from_interleaved(samples: Vec<f32>, channels: usize) -> Result<Self, RingError> {
        if channels == 0 || channels > MAX_CHANNELS {
            return Err(RingError::Channels(channels));
        }
        if !samples.len().is_multiple_of(channels) {
            return Err(RingError::Ragged {
                samples: samples.len(),
                channels,
            });
        }
        Ok(Self {
            storage: Arc::new(Storage::new(samples, channels)),
            channels,
        })
    }

    /// Length in frames.
    pub fn frames(&self) -> usize {
        self.storage.frames
    }
}

/// The crossfade of a loop swap on the reader's side: the old loop, where it was, and how
/// far the fade has gone.
struct SwapFade {
    old: Arc<Storage>,
    pos: usize,
    done: usize,
}

fn pack_band(a: usize, b: usize) -> u64 {
    ((a as u64) << 32) | b as u64
}

fn unpack_band(v: u64) -> Option<(usize, usize)> {
    (v != NO_BAND).then_some(((v >> 32) as usize, (v & 0xffff_ffff) as usize))
}

/// Does `[bs, be)` meet `[start, start + len)` taken modulo `frames`?
fn meets_wrapped(bs: usize, be: usize, start: usize, len: usize, frames: usize) -> bool {
    if len == 0 {
        return false;
    }
    if len >= frames {
        return true;
    }
    let end = start + len;
    let meets = |s: usize, e: usize| bs < e && s < be;
    if end <= frames {
        meets(start, end)
    } else {
        meets(start, frames) || meets(0, end - frames)
    }
}

/// Edge weight of window frame `i` of `len` with crossfade `xf`: 1 in the middle, ramping
/// linearly toward (but never reaching) 0 at both edges.
#[inline]
fn edge_weight(i: usize, len: usize, xf: usize) -> f32 {
    if i < xf {
        (i + 1) as f32 / (xf + 1) as f32
    } else if i >= len - xf {
        (len - i) as f32 / (xf + 1) as f32
    } else {
        1.0
    }
}

/// Pack a playhead and the frame clock into one word.
fn pack_position(pos: usize, clock: u64) -> u64 {
    (clock << 32) | pos as u64
}

/// The full frame clock whose low 32 bits are `low`, given a full counter `near` read a
/// little later (within 2^31 frames, i.e. hours): the nearest value with those low bits.
fn unpack_clock(low: u64, near: u64) -> u64 {
    let clock = (near & !0xffff_ffff) | low;
    if clock > near.saturating_add(1 << 31) {
        clock.saturating_sub(1 << 32)
    } else if clock.saturating_add(1 << 31) < near {
        clock + (1 << 32)
    } else {
        clock
    }
}

impl Shared {
    /// Length of the loop the reader plays.
    fn frames(&self) -> usize {
        self.frames.load(Ordering::Acquire) as usize
    }

    /// The published playhead.
    fn playhead(&self) -> usize {
        (self.position.load(Ordering::Acquire) & 0xffff_ffff) as usize
    }

    /// The published playhead and the frame clock when it was published, consistent.
    fn playhead_and_clock(&self) -> (usize, u64) {
        let word = self.position.load(Ordering::Acquire);
        let played = self.frames_played.load(Ordering::Relaxed);
        (
            (word & 0xffff_ffff) as usize,
            unpack_clock(word >> 32, played),
        )
    }

    fn band_requested(&self) -> Option<(usize, usize)> {
        unpack_band(self.band_requested.load(Ordering::Acquire))
    }

    /// Is any frame of block `block` of a loop of `frames` inside the guard zone as of now?
    fn block_in_guard(&self, block: usize, frames: usize) -> bool {
        let bs = block * BLOCK_FRAMES;
        let be = (bs + BLOCK_FRAMES).min(frames);
        let pos = self.playhead();
        let guard = self.guard.load(Ordering::Relaxed) as usize;
        let applied = unpack_band(self.band_applied.load(Ordering::Acquire));
        let requested = self.band_requested();
        let seek = self.seek_request.load(Ordering::Acquire);
        if seek != NO_SEEK && meets_wrapped(bs, be, seek as usize, guard, frames) {
            return true;
        }
        match applied {
            // Steady band with the playhead inside it: the path runs to B, then from A.
            Some((a, b)) if requested == applied && (a..b).contains(&pos) => {
                let first = guard.min(b - pos);
                meets_wrapped(bs, be, pos, first, frames)
                    || meets_wrapped(bs, be, a, (guard - first).min(b - a), frames)
            }
            // No band, or one about to change: the linear path and every A it may jump to.
            _ => {
                meets_wrapped(bs, be, pos, guard, frames)
                    || applied.is_some_and(|(a, _)| meets_wrapped(bs, be, a, guard, frames))
                    || requested.is_some_and(|(a, _)| meets_wrapped(bs, be, a, guard, frames))
            }
        }
    }
}

/// A loop-length ring of audio frames; build it, then [`split`](Self::split) it.
pub struct PlayheadRing {
    shared: Arc<Shared>,
    storage: Arc<Storage>,
}

impl PlayheadRing {
    /// The guard a ring needs behind an output with this period: one period and two blocks.
    ///
    /// Between two publishes the reader reads only `[published, published + period)`, so a
    /// block checked against the published playhead is safe while that period is read.
    /// The reader gets past the guard only after it has published again *and* played two
    /// blocks of the following period; with the callback's cadence that is at least one
    /// period (milliseconds) after any check that saw the older playhead, while a block
    /// write takes nanoseconds. Only a writer preempted between its check and the end of
    /// its block for about a period can be overtaken, and that is what torn-read
    /// detection counts (see the module doc).
    pub fn guard_for_period(period_frames: usize) -> usize {
        period_frames + 2 * BLOCK_FRAMES
    }

    /// Longest loop a ring can hold, in frames (positions are 32-bit in the band encoding).
    pub const MAX_FRAMES: usize = u32::MAX as usize;

    /// A ring holding `samples` (interleaved, `channels` per frame) as its initial loop.
    pub fn from_interleaved(
        samples: Vec<f32>,
        channels: usize,
        sample_rate: u32,
        guard_frames: usize,
    ) -> Result<Self, RingError> {
        if channels == 0 || channels > MAX_CHANNELS {
            return Err(RingError::Channels(channels));
        }
        if sample_rate == 0 {
            return Err(RingError::SampleRate);
        }
        if !samples.len().is_multiple_of(channels) {
            return Err(RingError::Ragged {
                samples: samples.len(),
                channels,
            });
        }
        if guard_frames < BLOCK_FRAMES {
            return Err(RingError::Guard {
                guard: guard_frames,
                min: BLOCK_FRAMES,
            });
        }
        let frames = samples.len() / channels;
        let min = Self::min_frames(guard_frames);
        if !(min..=Self::MAX_FRAMES).contains(&frames) {
            return Err(RingError::LoopLength {
                frames,
                min,
                max: Self::MAX_FRAMES,
                guard: guard_frames,
            });
        }
        let crossfade =
            ((CROSSFADE_FRAMES_48K as u64 * sample_rate as u64 + 24_000) / 48_000).max(1) as usize;
        let storage = Arc::new(Storage::new(samples, channels));
        let shared = Shared {
            channels,
            frames: AtomicU64::new(frames as u64),
            sample_rate,
            crossfade,
            loop_generation: AtomicU64::new(0),
            current: Mutex::new(Arc::clone(&storage)),
            position: AtomicU64::new(0),
            guard: AtomicU64::new(guard_frames as u64),
            band_requested: AtomicU64::new(NO_BAND),
            band_applied: AtomicU64::new(NO_BAND),
            paused: AtomicU64::new(0),
            seek_request: AtomicU64::new(NO_SEEK),
            frames_played: AtomicU64::new(0),
            periods: AtomicU64::new(0),
            torn_reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            late_frames: AtomicU64::new(0),
            late_writes: AtomicU64::new(0),
        };
        Ok(Self {
            shared: Arc::new(shared),
            storage,
        })
    }

    /// A ring of `frames` frames of silence.
    pub fn silence(
        frames: usize,
        channels: usize,
        sample_rate: u32,
        guard_frames: usize,
    ) -> Result<Self, RingError> {
        Self::from_interleaved(
            vec![0.0; frames.saturating_mul(channels.max(1))],
            channels,
            sample_rate,
            guard_frames,
        )
    }

    /// Shortest loop for a guard: room for the guard zone twice over, so a window can
    /// always land somewhere.
    pub fn min_frames(guard_frames: usize) -> usize {
        2 * guard_frames + 2 * BLOCK_FRAMES
    }

    /// A handle for any thread.
    pub fn handle(&self) -> RingHandle {
        RingHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Split into the engine's writer and the audio callback's reader.
    pub fn split(self) -> (RingWriter, RingReader) {
        let (outgoing, incoming) = rtrb::RingBuffer::new(1);
        let (retire, retired) = rtrb::RingBuffer::new(1);
        let writer = RingWriter {
            shared: Arc::clone(&self.shared),
            storage: Arc::clone(&self.storage),
            outgoing,
            retired,
            swap: None,
            _not_sync: PhantomData,
        };
        let reader = RingReader {
            shared: self.shared,
            storage: self.storage,
            incoming,
            retire,
            fade: None,
            pos: 0,
            band: NO_BAND,
            played: 0,
            periods: 0,
            gain: 1.0,
            _not_sync: PhantomData,
        };
        (writer, reader)
    }
}

/// Read-mostly view of a ring for any thread: playhead, geometry, counters, loop band.
#[derive(Clone)]
pub struct RingHandle {
    shared: Arc<Shared>,
}

impl RingHandle {
    /// The published playhead, in `0 .. loop_frames()`.
    pub fn playhead(&self) -> usize {
        self.shared.playhead()
    }

    /// The published playhead and the reader's frame clock
    /// ([`RingCounters::frames_played`]) at the same instant: the pair the latency
    /// metrics need (two separate loads could straddle a period).
    pub fn playhead_and_clock(&self) -> (usize, u64) {
        self.shared.playhead_and_clock()
    }

    /// Loop length in frames (of the loop the reader plays: it changes when the reader
    /// adopts a swapped-in loop).
    pub fn loop_frames(&self) -> usize {
        self.shared.frames()
    }

    /// Loops the reader has adopted since the ring was made (see the module doc).
    pub fn loop_generation(&self) -> u64 {
        self.shared.loop_generation.load(Ordering::Acquire)
    }

    /// Channels per frame.
    pub fn channels(&self) -> usize {
        self.shared.channels
    }

    /// Sample rate in Hz.
    pub fn sample_rate(&self) -> u32 {
        self.shared.sample_rate
    }

    /// Current guard length in frames.
    pub fn guard_frames(&self) -> usize {
        self.shared.guard.load(Ordering::Relaxed) as usize
    }

    /// Change the guard (for example after the output's period changed).
    pub fn set_guard_frames(&self, guard_frames: usize) -> Result<(), RingError> {
        if guard_frames < BLOCK_FRAMES {
            return Err(RingError::Guard {
                guard: guard_frames,
                min: BLOCK_FRAMES,
            });
        }
        let min = PlayheadRing::min_frames(guard_frames);
        let frames = self.shared.frames();
        if frames < min {
            return Err(RingError::LoopLength {
                frames,
                min,
                max: PlayheadRing::MAX_FRAMES,
                guard: guard_frames,
            });
        }
        self.shared
            .guard
            .store(guard_frames as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Ask the reader to loop `[a, b)` (frames) from its next period on.
    pub fn set_band(&self, a: usize, b: usize) -> Result<(), RingError> {
        let frames = self.shared.frames();
        if a >= b || b > frames {
            return Err(RingError::Band {
                a,
                b,
                loop_frames: frames,
            });
        }
        self.shared
            .band_requested
            .store(pack_band(a, b), Ordering::Release);
        Ok(())
    }

    /// Disarm the loop band from the reader's next period on.
    pub fn clear_band(&self) {
        self.shared.band_requested.store(NO_BAND, Ordering::Release);
    }

    /// Pause (fade out over [`TRANSPORT_FADE_FRAMES`], then silence with the playhead held)
    /// or play (fade back in from where it stopped), from the reader's next period.
    pub fn set_paused(&self, paused: bool) {
        self.shared
            .paused
            .store(u64::from(paused), Ordering::Release);
    }

    /// Whether the transport is paused (asked for; the fade may still be running).
    pub fn is_paused(&self) -> bool {
        self.shared.paused.load(Ordering::Acquire) == 1
    }

    /// Move the playhead to `frame` at the reader's next period (into the band's A if a band
    /// is armed and `frame` lies outside it).
    pub fn seek(&self, frame: usize) -> Result<(), RingError> {
        let frames = self.shared.frames();
        if frame >= frames {
            return Err(RingError::Seek {
                frame,
                loop_frames: frames,
            });
        }
        self.shared
            .seek_request
            .store(frame as u64, Ordering::Release);
        Ok(())
    }

    /// The band last asked for (what the reader will use from its next period).
    pub fn band(&self) -> Option<(usize, usize)> {
        self.shared.band_requested()
    }

    /// The band the reader is using now.
    pub fn band_applied(&self) -> Option<(usize, usize)> {
        unpack_band(self.shared.band_applied.load(Ordering::Acquire))
    }

    /// All counters.
    pub fn counters(&self) -> RingCounters {
        let s = &self.shared;
        RingCounters {
            periods: s.periods.load(Ordering::Relaxed),
            frames_played: s.frames_played.load(Ordering::Relaxed),
            torn_reads: s.torn_reads.load(Ordering::Relaxed),
            writes: s.writes.load(Ordering::Relaxed),
            late_frames: s.late_frames.load(Ordering::Relaxed),
            late_writes: s.late_writes.load(Ordering::Relaxed),
        }
    }

    /// Copy the ring's current content (interleaved). Not for the audio thread: it
    /// allocates; a block being written may be copied half old, half new.
    pub fn snapshot(&self) -> Vec<f32> {
        let storage = Arc::clone(&self.shared.current.lock_unpoisoned());
        storage
            .samples
            .iter()
            .map(|c| f32::from_bits(c.load(Ordering::Relaxed)))
            .collect()
    }
}

/// The engine's side of the ring: patches windows ahead of the playhead.
pub struct RingWriter {
    shared: Arc<Shared>,
    /// The loop writes land in (the reader's, once it has adopted a swap).
    storage: Arc<Storage>,
    /// New loops to the reader (one slot).
    outgoing: rtrb::Producer<Arc<Storage>>,
    /// Old loops back from the reader, freed here (one slot).
    retired: rtrb::Consumer<Arc<Storage>>,
    /// The swap under way: the new loop and the generation the reader reaches adopting it;
    /// `None` once adopted *and* the old loop is back.
    swap: Option<(Arc<Storage>, u64)>,
    _not_sync: PhantomData<Cell<()>>,
}

impl RingWriter {
    /// A handle for any thread.
    pub fn handle(&self) -> RingHandle {
        RingHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The published playhead.
    pub fn playhead(&self) -> usize {
        self.shared.playhead()
    }

    /// Length of the loop writes land in, in frames.
    pub fn loop_frames(&self) -> usize {
        self.storage.frames
    }

    /// Hand `new` to the reader, which plays it from its next period on (see the module
    /// doc). Refused while a swap is under way, for another channel count, or for a length
    /// outside the ring's limits for its guard; the ring is unchanged then.
    pub fn replace_loop(&mut self, new: RingLoop) -> Result<(), RingError> {
        self.poll_swap();
        if self.swap.is_some() {
            return Err(RingError::SwapInFlight);
        }
        if new.channels != self.shared.channels {
            return Err(RingError::SwapChannels {
                got: new.channels,
                ring: self.shared.channels,
            });
        }
        let guard = self.shared.guard.load(Ordering::Relaxed) as usize;
        let min = PlayheadRing::min_frames(guard);
        let frames = new.storage.frames;
        if !(min..=PlayheadRing::MAX_FRAMES).contains(&frames) {
            return Err(RingError::LoopLength {
                frames,
                min,
                max: PlayheadRing::MAX_FRAMES,
                guard,
            });
        }
        let target = self.shared.loop_generation.load(Ordering::Acquire) + 1;
        if self.outgoing.push(Arc::clone(&new.storage)).is_err() {
            return Err(RingError::SwapInFlight);
        }
        self.swap = Some((new.storage, target));
        Ok(())
    }

    /// Advance a loop swap: once the reader has adopted the new loop, writes go there; an
    /// old loop the reader gave back is freed here. Returns whether a swap is still under
    /// way (adopted or not).
    pub fn poll_swap(&mut self) -> bool {
        let mut back = false;
        while let Ok(old) = self.retired.pop() {
            drop(old);
            back = true;
        }
        if let Some((new, target)) = &self.swap {
            let adopted = self.shared.loop_generation.load(Ordering::Acquire) >= *target;
            if adopted && !Arc::ptr_eq(&self.storage, new) {
                self.storage = Arc::clone(new);
                *self.shared.current.lock_unpoisoned() = Arc::clone(new);
            }
            if adopted && back {
                self.swap = None;
            }
        }
        self.swap.is_some()
    }

    /// Whether the loop last handed over is not yet in use here (the reader has not
    /// adopted it, or [`Self::poll_swap`] has not seen it since): writes are dropped.
    pub fn swap_awaiting_adoption(&self) -> bool {
        self.swap
            .as_ref()
            .is_some_and(|(new, _)| !Arc::ptr_eq(&self.storage, new))
    }

    /// Crossfade length (frames) a window of `len` frames gets on each edge.
    pub fn crossfade_frames(&self, len: usize) -> usize {
        self.shared.crossfade.min(len / 4)
    }

    /// Patch `audio` (interleaved, the ring's channel count) at loop frame `start`
    /// (taken modulo the loop), crossfading both edges against what is there. Blocks
    /// inside the guard zone are skipped and their frames counted as late.
    pub fn write(&mut self, start: usize, audio: &[f32]) -> Result<WriteReport, RingError> {
        let s = &*self.shared;
        let st = &*self.storage;
        let ch = s.channels;
        if !audio.len().is_multiple_of(ch) {
            return Err(RingError::Ragged {
                samples: audio.len(),
                channels: ch,
            });
        }
        let len = audio.len() / ch;
        if len > st.frames - self.shared.guard.load(Ordering::Relaxed) as usize {
            return Err(RingError::WindowTooLong {
                frames: len,
                loop_frames: st.frames,
            });
        }
        let xf = self.crossfade_frames(len);
        let mut late = 0;
        let mut offset = 0;
        let mut frame = start % st.frames;
        // Until the reader adopts a swapped-in loop, positions name neither loop: drop all.
        let dropping = self.swap_awaiting_adoption();
        while offset < len {
            let block = frame / BLOCK_FRAMES;
            let block_end = ((block + 1) * BLOCK_FRAMES).min(st.frames);
            let chunk = (block_end - frame).min(len - offset);
            if dropping || s.block_in_guard(block, st.frames) {
                late += chunk;
            } else {
                let seq = &st.seqs[block];
                let v = seq.load(Ordering::Relaxed);
                seq.store(v.wrapping_add(1), Ordering::Relaxed);
                fence(Ordering::Release);
                for i in 0..chunk {
                    let w = edge_weight(offset + i, len, xf);
                    let src = &audio[(offset + i) * ch..(offset + i + 1) * ch];
                    let dst = &st.samples[(frame + i) * ch..(frame + i + 1) * ch];
                    for (cell, &new) in dst.iter().zip(src) {
                        let value = if w >= 1.0 {
                            new
                        } else {
                            let old = f32::from_bits(cell.load(Ordering::Relaxed));
                            old + (new - old) * w
                        };
                        cell.store(value.to_bits(), Ordering::Relaxed);
                    }
                }
                seq.store(v.wrapping_add(2), Ordering::Release);
            }
            offset += chunk;
            frame = if block_end == st.frames { 0 } else { block_end };
        }
        s.writes.fetch_add(1, Ordering::Relaxed);
        if late > 0 {
            s.late_frames.fetch_add(late as u64, Ordering::Relaxed);
            s.late_writes.fetch_add(1, Ordering::Relaxed);
        }
        Ok(WriteReport {
            written_frames: len - late,
            late_frames: late,
            landed_at: s.frames_played.load(Ordering::Relaxed),
        })
    }
}

/// The audio callback's side of the ring: plays periods and advances the playhead.
pub struct RingReader {
    shared: Arc<Shared>,
    /// The loop being played.
    storage: Arc<Storage>,
    /// New loops from the writer.
    incoming: rtrb::Consumer<Arc<Storage>>,
    /// Old loops back to the writer (never dropped here).
    retire: rtrb::Producer<Arc<Storage>>,
    /// The crossfade from the old loop while a swap's fade runs (or its loop waits to go
    /// back).
    fade: Option<SwapFade>,
    /// Private copy of the playhead (the reader is its only writer).
    pos: usize,
    /// Packed band in use.
    band: u64,
    played: u64,
    periods: u64,
    /// Transport gain: 1 playing, 0 paused, in between while fading.
    gain: f32,
    _not_sync: PhantomData<Cell<()>>,
}

impl RingReader {
    /// A handle for any thread.
    pub fn handle(&self) -> RingHandle {
        RingHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Channels per ring frame.
    pub fn channels(&self) -> usize {
        self.shared.channels
    }

    /// Play one period into planar outputs (one slice per port, all the same length).
    /// Output `k` takes ring channel `k % channels`, so a mono loop feeds both ports.
    #[inline]
    pub fn read_planar(&mut self, outputs: &mut [&mut [f32]]) {
        let n = outputs.iter().map(|o| o.len()).min().unwrap_or(0);
        let ch = self.shared.channels;
        self.read_with(n, |i, frame| {
            for (k, out) in outputs.iter_mut().enumerate() {
                out[i] = frame[k % ch];
            }
        });
    }

    /// Play `out.len() / out_channels` frames into an interleaved buffer of `out_channels`
    /// channels (output channel `k` takes ring channel `k % channels`).
    #[inline]
    pub fn read_interleaved(&mut self, out: &mut [f32], out_channels: usize) {
        if out_channels == 0 {
            return;
        }
        let n = out.len() / out_channels;
        let ch = self.shared.channels;
        self.read_with(n, |i, frame| {
            for (k, o) in out[i * out_channels..(i + 1) * out_channels]
                .iter_mut()
                .enumerate()
            {
                *o = frame[k % ch];
            }
        });
    }

    /// Adopt a loop the writer handed over, at the period boundary (see the module doc).
    #[inline]
    fn adopt_loop(&mut self) {
        if self.fade.is_some() {
            return; // one swap at a time: the writer waits for the old loop anyway
        }
        let Ok(new) = self.incoming.pop() else {
            return;
        };
        let s = &*self.shared;
        let frames = new.frames;
        let old = core::mem::replace(&mut self.storage, new);
        let old_pos = self.pos;
        s.frames.store(frames as u64, Ordering::Release);
        let requested = s.band_requested.load(Ordering::Acquire);
        if unpack_band(requested).is_some_and(|(_, b)| b > frames) {
            // Only if no newer band was asked for meanwhile.
            let _ = s.band_requested.compare_exchange(
                requested,
                NO_BAND,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
        if unpack_band(self.band).is_some_and(|(_, b)| b > frames) {
            self.band = NO_BAND;
            s.band_applied.store(NO_BAND, Ordering::Release);
        }
        let seek = s.seek_request.load(Ordering::Acquire);
        if seek != NO_SEEK && seek as usize >= frames {
            let _ =
                s.seek_request
                    .compare_exchange(seek, NO_SEEK, Ordering::AcqRel, Ordering::Relaxed);
        }
        self.pos = 0;
        s.position
            .store(pack_position(0, self.played), Ordering::Release);
        s.loop_generation.fetch_add(1, Ordering::AcqRel);
        // Silent (paused and faded out): nothing to crossfade.
        let done = if self.gain == 0.0 {
            LOOP_SWAP_FADE_FRAMES
        } else {
            0
        };
        self.fade = Some(SwapFade {
            old,
            pos: old_pos,
            done,
        });
    }

    /// Give a faded-out old loop back to the writer (kept for the next period if the slot
    /// is full; never freed here).
    #[inline]
    fn retire_faded(&mut self) {
        if self
            .fade
            .as_ref()
            .is_some_and(|f| f.done >= LOOP_SWAP_FADE_FRAMES)
            && self.retire.slots() > 0
            && let Some(fade) = self.fade.take()
            && let Err(rtrb::PushError::Full(old)) = self.retire.push(fade.old)
        {
            // Unreachable (a free slot was checked), but never drop it here.
            self.fade = Some(SwapFade {
                old,
                pos: 0,
                done: LOOP_SWAP_FADE_FRAMES,
            });
        }
    }

    /// Apply a newly requested band at the period boundary.
    #[inline]
    fn apply_band(&mut self) {
        let s = &*self.shared;
        let mut requested = s.band_requested.load(Ordering::Acquire);
        if unpack_band(requested).is_some_and(|(_, b)| b > self.storage.frames) {
            requested = NO_BAND; // asked for against a loop since replaced
        }
        if requested != self.band {
            self.band = requested;
            if let Some((a, b)) = unpack_band(requested)
                && !(a..b).contains(&self.pos)
            {
                self.pos = a;
                s.position
                    .store(pack_position(a, self.played), Ordering::Release);
            }
            s.band_applied.store(requested, Ordering::Release);
        }
    }

    /// The core of every read: `n` frames along the reader's path, each handed to `sink`
    /// with its index in the period, then one playhead publish.
    #[inline]
    fn read_with(&mut self, n: usize, mut sink: impl FnMut(usize, &[f32])) {
        self.adopt_loop();
        // Load first: the swap (a locked instruction) only when a seek is pending.
        if self.shared.seek_request.load(Ordering::Acquire) != NO_SEEK {
            let seek = self.shared.seek_request.swap(NO_SEEK, Ordering::AcqRel);
            if seek != NO_SEEK && (seek as usize) < self.storage.frames {
                self.pos = seek as usize;
            }
        }
        self.apply_band();
        let s = &*self.shared;
        let st = &*self.storage;
        let band = unpack_band(self.band);
        if let Some((a, b)) = band
            && !(a..b).contains(&self.pos)
        {
            self.pos = a; // a seek outside the armed band lands at A
        }
        let ch = s.channels;
        let mut frame = [0.0f32; MAX_CHANNELS];
        let target = if s.paused.load(Ordering::Acquire) == 1 {
            0.0
        } else {
            1.0
        };
        let step = (target - self.gain).signum() / TRANSPORT_FADE_FRAMES as f32;
        // Fading out, the playhead stops where the sound does: only the frames until the
        // gain reaches 0 advance it (the gain is a multiple of 1/256, so this is exact).
        // Paused and silent, none do: the playhead holds while the clock runs.
        let audible = if target == 0.0 {
            ((self.gain * TRANSPORT_FADE_FRAMES as f32).ceil() as usize).min(n)
        } else {
            n
        };
        let mut torn = 0u64;
        let mut done = 0;
        while done < audible {
            let (wrap_at, wrap_to) = match band {
                Some((a, b)) => (b, a),
                None => (st.frames, 0),
            };
            let seg_end = (self.pos + (audible - done)).min(wrap_at);
            let mut f = self.pos;
            while f < seg_end {
                let block = f / BLOCK_FRAMES;
                let block_end = ((block + 1) * BLOCK_FRAMES).min(seg_end);
                let seq = &st.seqs[block];
                let before = seq.load(Ordering::Acquire);
                for x in f..block_end {
                    let cells = &st.samples[x * ch..(x + 1) * ch];
                    for (slot, cell) in frame.iter_mut().zip(cells) {
                        *slot = f32::from_bits(cell.load(Ordering::Relaxed));
                    }
                    if let Some(fade) = &mut self.fade
                        && fade.done < LOOP_SWAP_FADE_FRAMES
                    {
                        // The old loop runs on linearly (its band is gone) under the new.
                        let w = (fade.done + 1) as f32 / (LOOP_SWAP_FADE_FRAMES + 1) as f32;
                        let old = &fade.old.samples[fade.pos * ch..(fade.pos + 1) * ch];
                        for (slot, cell) in frame.iter_mut().zip(old) {
                            let o = f32::from_bits(cell.load(Ordering::Relaxed));
                            *slot = o + (*slot - o) * w;
                        }
                        fade.pos = if fade.pos + 1 == fade.old.frames {
                            0
                        } else {
                            fade.pos + 1
                        };
                        fade.done += 1;
                    }
                    if self.gain != target {
                        self.gain = (self.gain + step).clamp(0.0, 1.0);
                        frame.iter_mut().for_each(|v| *v *= self.gain);
                    }
                    sink(done + x - self.pos, &frame[..ch]);
                }
                fence(Ordering::Acquire);
                let after = seq.load(Ordering::Relaxed);
                if before & 1 == 1 || before != after {
                    torn += 1;
                }
                f = block_end;
            }
            done += seg_end - self.pos;
            self.pos = if seg_end == wrap_at { wrap_to } else { seg_end };
        }
        frame.fill(0.0);
        for i in audible..n {
            sink(i, &frame[..ch]);
        }
        if self.gain == 0.0
            && let Some(fade) = &mut self.fade
        {
            fade.done = LOOP_SWAP_FADE_FRAMES; // faded out to silence: nothing left to mix
        }
        self.retire_faded();
        self.publish(n, torn);
    }

    /// End of a period: advance the clock, publish the playhead, count.
    #[inline]
    fn publish(&mut self, n: usize, torn: u64) {
        let s = &*self.shared;
        self.played += n as u64;
        self.periods += 1;
        s.frames_played.store(self.played, Ordering::Relaxed);
        s.position
            .store(pack_position(self.pos, self.played), Ordering::Release);
        s.periods.store(self.periods, Ordering::Relaxed);
        if torn > 0 {
            s.torn_reads.fetch_add(torn, Ordering::Relaxed);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
