//! Live capture: `/capture/start [seconds] [quantize]` and `/capture/stop` read the input
//! ports' queue ([`crate::audio::input`]) into a clip that becomes the new source through
//! the `/source` path (a [`ClipSink`]: the control job queue, where the engine re-encodes it,
//! `/done /source`, optionally saved as a WAV under `[capture] save`).
//!
//! Placing the clip: every queued period carries its first frame's place on the input
//! clock and the ring's playhead then ([`InputBlock`]). A [`Window`] on the input clock is
//! kept: it starts at the first period read (or, quantized, at the next loop wrap, found by
//! [`WrapGeometry::wrap_in`]) plus the round-trip latency (the input ports' capture latency
//! and the output's playback latency, `Capture::round_trip_frames`): a player hears
//! the loop that much after the callback plays it and is heard that much later again, so
//! the first frames that belong to the loop's start arrive that many frames late and the
//! ones before them are dropped. It ends `seconds` later (default: the loop's length), or
//! at `/capture/stop` (quantized: at the next wrap, plus the latency).
//!
//! Threading: [`Capture::start`] and [`Capture::stop`] run on control threads and only take
//! short locks; each capture runs on its own `latentd-capture` thread, which drains the
//! queue every few milliseconds (never blocking the callback, which only sees the
//! `armed` flag and a wait-free queue), then hands the clip to its [`ClipSink`] (never
//! blocks: a full queue is a `/fail /source`). [`Capture::shutdown`] ends a running capture
//! without a source and joins its thread (at stop, before the job worker is joined).

use latentd_engine::lock::MutexExt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use latentd_engine::RingHandle;
use latentd_engine::audio_file::LoopAudio;
use latentd_osc_schema::{Fail, reply};

use crate::audio::Rates;
use crate::audio::input::{InputBlock, InputReader, InputShared};
use crate::audio::supervisor::OutputStateHandle;
use crate::osc::ReplyTo;

/// Where a finished capture goes: the control job queue's `/source` path, which re-encodes
/// it, replies `/done /source` to `reply_to` and saves it under `save` when given.
pub trait ClipSink: Send + Sync {
    /// Hand `audio` on without blocking; `Err` with the reason when it cannot be taken (a
    /// full queue, the daemon stopping): the capture then replies `/fail /source`.
    fn take_clip(
        &self,
        audio: LoopAudio,
        save: Option<PathBuf>,
        reply_to: ReplyTo,
    ) -> Result<(), String>;
}

/// How often the capture thread drains the queue (the queue holds seconds).
const POLL: Duration = Duration::from_millis(5);

/// Why a capture cannot start or stop (answered `/fail <address> <reason>`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaptureError {
    /// `audio.inputs = 0`, or an output that opened no input ports.
    #[error("no input ports: {0}")]
    NoInputs(String),
    /// A capture already runs.
    #[error("a capture is already running (/capture/stop ends it)")]
    Running,
    /// `/capture/stop` with no capture running.
    #[error("no capture is running")]
    NotRunning,
    /// A capture longer than the longest loop, or not positive.
    #[error("{0}")]
    Length(String),
    /// The capture thread could not start, or the daemon is stopping.
    #[error("{0}")]
    Unavailable(String),
}

/// Where the loop wraps, in the ring's frames, and how ring frames map to input frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrapGeometry {
    /// The ring's (and the engine's) rate.
    pub ring_rate: u32,
    /// The input's rate (the output's, the server's).
    pub input_rate: u32,
    /// Where the playhead goes at the wrap (the band's start, else 0).
    pub wrap_start: u32,
    /// Where it wraps (the band's end, else the loop's length).
    pub wrap_end: u32,
}

impl WrapGeometry {
    /// The wrap of `ring` as it plays now (its band if one applies).
    pub fn of(ring: &RingHandle, rates: Rates) -> Self {
        let (start, end) = ring.band_applied().unwrap_or((0, ring.loop_frames()));
        Self {
            ring_rate: rates.ring,
            input_rate: rates.output,
            wrap_start: start as u32,
            wrap_end: end as u32,
        }
    }

    /// The input clock of the wrap inside `block`, if one falls in it: where the playhead,
    /// `block.playhead` at its first frame, reaches the wrap (a block that starts at the
    /// wrap's target has it at its first frame).
    pub fn wrap_in(&self, block: &InputBlock) -> Option<u64> {
        let p = block.playhead;
        if p == self.wrap_start || p >= self.wrap_end {
            return Some(block.start);
        }
        let ring_frames = u64::from(self.wrap_end - p);
        let input_frames = (ring_frames * u64::from(self.input_rate)
            + u64::from(self.ring_rate) / 2)
            / u64::from(self.ring_rate.max(1));
        (input_frames < u64::from(block.frames)).then(|| block.start + input_frames)
    }
}

/// The span of the input clock a capture keeps (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Frames of round-trip latency to skip.
    latency: u64,
    /// Longest capture, frames.
    length: u64,
    /// Start (and end on stop) at a wrap.
    quantize: bool,
    /// First frame kept, once known.
    start: Option<u64>,
    /// First frame no longer kept, once known.
    end: Option<u64>,
    /// Stop asked for; a quantized capture waits for the next wrap.
    stopping: bool,
    /// Stopped before it started: nothing to keep.
    cancelled: bool,
}

impl Window {
    /// A window that skips `latency` frames and keeps at most `length`.
    pub fn new(latency: u64, length: u64, quantize: bool) -> Self {
        Self {
            latency,
            length,
            quantize,
            start: None,
            end: None,
            stopping: false,
            cancelled: false,
        }
    }

    /// Place the window against the next block read (`wrap`: the wrap inside it, from
    /// [`WrapGeometry::wrap_in`]); returns the block's frames to keep (block-relative).
    pub fn place(&mut self, block: &InputBlock, wrap: Option<u64>) -> Range<usize> {
        if self.cancelled {
            return 0..0;
        }
        if self.start.is_none() {
            let at = if self.quantize {
                wrap
            } else {
                Some(block.start)
            };
            if let Some(at) = at {
                self.start = Some(at + self.latency);
                self.end = Some(at + self.latency + self.length);
            }
        } else if self.stopping
            && self.quantize
            && let (Some(wrap), Some(start), Some(end)) = (wrap, self.start, self.end)
        {
            let at = (wrap + self.latency).max(start);
            self.end = Some(end.min(at));
            self.stopping = false;
        }
        let (Some(start), Some(end)) = (self.start, self.end) else {
            return 0..0;
        };
        let first = block.start;
        let last = block.start + u64::from(block.frames);
        let a = start.clamp(first, last);
        let b = end.clamp(first, last);
        if a >= b {
            return 0..0;
        }
        ((a - first) as usize)..((b - first) as usize)
    }

    /// Stop, as of input clock `now` (the end of the last block read): at once (plus the
    /// latency still in flight), or quantized at the next wrap. Before the start: cancelled.
    pub fn stop(&mut self, now: u64) {
        match (self.start, self.end) {
            (Some(start), Some(end)) if !self.quantize => {
                self.end = Some(end.min((now + self.latency).max(start)));
            }
            (Some(_), Some(_)) => self.stopping = true,
            _ => self.cancelled = true,
        }
    }

    /// Has the window closed, with blocks read up to input clock `now`?
    pub fn done(&self, now: u64) -> bool {
        self.cancelled || self.end.is_some_and(|end| now >= end)
    }

    /// Stopped before it started?
    pub fn cancelled(&self) -> bool {
        self.cancelled
    }

    /// The first frame kept, once known.
    pub fn start(&self) -> Option<u64> {
        self.start
    }
}

/// What a capture was asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CaptureRequest {
    /// Longest capture, seconds (`None`: the loop's length).
    pub seconds: Option<f64>,
    /// Start (and end on stop) at a wrap.
    pub quantize: bool,
}

/// One running capture's flags.
#[derive(Debug, Default)]
struct Flags {
    /// `/capture/stop` asked.
    stop: AtomicBool,
    /// The daemon stops: end without a source.
    cancel: AtomicBool,
    /// The capture thread has ended its capture (the reader is back).
    finished: AtomicBool,
}

/// The live capture (see the module doc).
pub struct Capture {
    /// The queue's reader; taken by the running capture, `None` meanwhile.
    reader: Mutex<Option<InputReader>>,
    shared: Arc<InputShared>,
    /// The output whose playback latency is half the round trip.
    output: OutputStateHandle,
    ring: RingHandle,
    rates: Rates,
    /// Where clips go; gone once [`Capture::shutdown`] ran.
    jobs: Mutex<Option<Arc<dyn ClipSink>>>,
    /// `[capture] save`: the folder captures are saved in.
    save: Option<PathBuf>,
    /// The last capture started, and its thread.
    current: Mutex<Option<(Arc<Flags>, JoinHandle<()>)>>,
}

impl Capture {
    /// A capture reading `reader`, compensating `output`'s latency, placing against `ring`
    /// played at `rates`, handing the clip to `jobs` ([`ClipSink`]), saving under `save`.
    pub fn new(
        reader: InputReader,
        output: OutputStateHandle,
        ring: RingHandle,
        rates: Rates,
        jobs: impl ClipSink + 'static,
        save: Option<PathBuf>,
    ) -> Arc<Self> {
        Arc::new(Self {
            shared: Arc::clone(&reader.shared),
            reader: Mutex::new(Some(reader)),
            output,
            ring,
            rates,
            jobs: Mutex::new(Some(Arc::new(jobs))),
            save,
            current: Mutex::new(None),
        })
    }

    /// The latency to compensate, in frames at the output's rate: what the player hears
    /// from the output reaches the input this much later (playback plus capture).
    fn round_trip_frames(&self) -> u64 {
        u64::from(self.shared.capture_latency.load(Ordering::Relaxed))
            + self.output.latency_frames() as u64
    }

    /// Start a capture; its end replies to `reply_to` (see the module doc). Refused, with
    /// nothing changed, without input ports, while one runs, or for a bad length.
    pub fn start(
        self: &Arc<Self>,
        request: CaptureRequest,
        reply_to: ReplyTo,
    ) -> Result<(), CaptureError> {
        if self.shared.ports.load(Ordering::Relaxed) == 0 {
            return Err(CaptureError::NoInputs(
                "the running output opened none (only the JACK and PipeWire outputs have inputs)"
                    .into(),
            ));
        }
        let loop_s = self.ring.loop_frames() as f64 / f64::from(self.rates.ring.max(1));
        let seconds = request.seconds.unwrap_or(loop_s);
        let max = latentd_osc_schema::limits::CAPTURE_MAX_S;
        if !(seconds > 0.0 && seconds <= max) {
            return Err(CaptureError::Length(format!(
                "seconds must be above 0 and at most {max}; got {seconds}"
            )));
        }
        let Some(jobs) = self.jobs.lock_unpoisoned().clone() else {
            return Err(CaptureError::Unavailable("shutting down".into()));
        };
        let mut current = self.current.lock_unpoisoned();
        let Some(mut reader) = self.reader.lock_unpoisoned().take() else {
            return Err(CaptureError::Running);
        };
        // The previous capture's thread has given the reader back: it is ending.
        if let Some((_, thread)) = current.take() {
            let _ = thread.join();
        }
        reader.clear();
        let flags = Arc::new(Flags::default());
        let length = (seconds * f64::from(self.rates.output)).round() as u64;
        let window = Window::new(self.round_trip_frames(), length, request.quantize);
        // Long enough for a wrap to come round twice, the capture and the latency.
        let deadline = Duration::from_secs_f64(2.0 * loop_s + seconds + 5.0);
        let run = Run {
            capture: Arc::clone(self),
            flags: Arc::clone(&flags),
            window,
            deadline,
        };
        self.shared.armed.store(true, Ordering::Release);
        let spawned = std::thread::Builder::new()
            .name("latentd-capture".into())
            .spawn(move || run.run(reader, jobs, reply_to));
        match spawned {
            Ok(thread) => {
                *current = Some((flags, thread));
                log::info!(
                    "capture: started ({seconds:.2} s at most{}, {} frames of latency \
                     compensated)",
                    if request.quantize {
                        ", from the next loop wrap"
                    } else {
                        ""
                    },
                    self.round_trip_frames()
                );
                Ok(())
            }
            Err(e) => {
                // The closure (and the reader in it) is gone with the failed spawn.
                self.shared.armed.store(false, Ordering::Release);
                Err(CaptureError::Unavailable(format!(
                    "cannot start the capture thread: {e}; captures are off until restart"
                )))
            }
        }
    }

    /// End the running capture (see the module doc).
    pub fn stop(&self) -> Result<(), CaptureError> {
        match self.current.lock_unpoisoned().as_ref() {
            Some((flags, _)) if !flags.finished.load(Ordering::Acquire) => {
                flags.stop.store(true, Ordering::Release);
                Ok(())
            }
            _ => Err(CaptureError::NotRunning),
        }
    }

    /// End a running capture without a source, join its thread, and let the job queue go.
    pub fn shutdown(&self) {
        let current = self.current.lock_unpoisoned().take();
        if let Some((flags, thread)) = current {
            flags.cancel.store(true, Ordering::Release);
            let _ = thread.join();
        }
        self.jobs.lock_unpoisoned().take();
    }
}

/// One capture on its thread.
struct Run {
    capture: Arc<Capture>,
    flags: Arc<Flags>,
    window: Window,
    deadline: Duration,
}

impl Run {
    fn run(mut self, mut reader: InputReader, jobs: Arc<dyn ClipSink>, reply_to: ReplyTo) {
        let outcome = self.collect(&mut reader);
        let capture = &self.capture;
        capture.shared.armed.store(false, Ordering::Release);
        *capture.reader.lock_unpoisoned() = Some(reader);
        self.flags.finished.store(true, Ordering::Release);
        let failure = match outcome {
            Ok(Some(audio)) => {
                log::info!("capture: {:.2} s captured", audio.seconds());
                jobs.take_clip(audio, capture.save.clone(), reply_to.clone())
                    .err()
            }
            Ok(None) => None,
            Err(reason) => Some(reason),
        };
        if let Some(reason) = failure {
            log::warn!("/source: capture: {reason}");
            let packet = reply::fail(&Fail::new("/source", format!("capture: {reason}")));
            if let Err(e) = reply_to.send(&packet) {
                log::debug!("/source: reply not delivered: {e}");
            }
        }
    }

    /// Drain the queue until the window closes; `None` when cancelled by the daemon's stop.
    fn collect(&mut self, reader: &mut InputReader) -> Result<Option<LoopAudio>, String> {
        let ch = reader.channels;
        let begun = Instant::now();
        let mut out: Vec<f32> = Vec::new();
        let mut clock: Option<u64> = None;
        let mut lost = 0u64;
        let overruns = &self.capture.shared.overruns;
        let overruns_before = overruns.load(Ordering::Relaxed);
        loop {
            if self.flags.cancel.load(Ordering::Acquire) {
                return Ok(None);
            }
            let wrap = WrapGeometry::of(&self.capture.ring, self.capture.rates);
            while let Ok(block) = reader.blocks.pop() {
                let n = block.frames as usize * ch;
                let Ok(chunk) = reader.samples.read_chunk(n) else {
                    return Err("the input queue lost its samples".into());
                };
                let (a, b) = chunk.as_slices();
                let keep = self.window.place(&block, wrap.wrap_in(&block));
                if let Some(start) = self.window.start() {
                    let first = block.start + keep.start as u64;
                    let have = start + (out.len() / ch) as u64;
                    if !keep.is_empty() && first > have {
                        // Periods dropped by the callback: silence in their place.
                        lost += first - have;
                        out.resize(out.len() + (first - have) as usize * ch, 0.0);
                    }
                }
                let (i, j) = (keep.start * ch, keep.end * ch);
                let split = a.len();
                if i < split {
                    out.extend_from_slice(&a[i..j.min(split)]);
                }
                if j > split {
                    out.extend_from_slice(&b[i.max(split) - split..j - split]);
                }
                chunk.commit_all();
                clock = Some(block.start + u64::from(block.frames));
            }
            if self.flags.stop.swap(false, Ordering::AcqRel) {
                self.window.stop(clock.unwrap_or(0));
            }
            if self.window.done(clock.unwrap_or(0)) {
                break;
            }
            if begun.elapsed() > self.deadline {
                return Err(if self.window.start().is_none() {
                    "no loop wrap came to start at (is the transport paused?)".into()
                } else {
                    "the input stopped coming (is the audio server running?)".into()
                });
            }
            std::thread::sleep(POLL);
        }
        if self.window.cancelled() || out.is_empty() {
            return Err("stopped before any audio was captured".into());
        }
        let dropped = overruns.load(Ordering::Relaxed) - overruns_before;
        if dropped > 0 || lost > 0 {
            log::warn!(
                "capture: the callback dropped {dropped} input frames (the queue was full); \
                 {lost} of them fell inside the capture and are silence there"
            );
        }
        Ok(Some(LoopAudio {
            samples: out,
            channels: ch,
            sample_rate: self.capture.rates.output,
        }))
    }
}

/// Save `audio` as a 32-bit float WAV in `dir`, atomically: written beside, then renamed
/// to `capture-YYYYMMDD-HHMMSS.wav` (`-2`, `-3` … when taken). Returns the path.
pub fn save_wav(dir: &Path, audio: &LoopAudio) -> Result<PathBuf, String> {
    let secs = crate::unique_file::unix_seconds();
    let stamp = latentd_osc_schema::record::timestamped_name(secs);
    let stamp = stamp
        .trim_start_matches("latentd-")
        .trim_end_matches(".wav")
        .to_owned();
    let partial = dir.join(format!(".capture-{stamp}-{}.part", std::process::id()));
    latentd_engine::audio_file::write_wav_f32(&partial, audio).map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        format!("saving the capture: {e}")
    })?;
    crate::unique_file::rename_unique(&partial, &dir.join(format!("capture-{stamp}")), "wav")
        .map_err(|e| {
            let _ = std::fs::remove_file(&partial);
            format!("saving the capture in {}: {e}", dir.display())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(start: u64, frames: u32, playhead: u32) -> InputBlock {
        InputBlock {
            start,
            frames,
            playhead,
        }
    }

    const LOOP: WrapGeometry = WrapGeometry {
        ring_rate: 48_000,
        input_rate: 48_000,
        wrap_start: 0,
        wrap_end: 48_000,
    };

    #[test]
    fn the_wrap_is_found_where_the_playhead_reaches_the_loop_end() {
        assert_eq!(LOOP.wrap_in(&block(1000, 256, 47_900)), Some(1100));
        // Reached exactly at the block's end: the next block has it at its first frame.
        assert_eq!(LOOP.wrap_in(&block(1000, 100, 47_900)), None);
        assert_eq!(LOOP.wrap_in(&block(1100, 100, 0)), Some(1100));
        assert_eq!(LOOP.wrap_in(&block(1000, 256, 100)), None);
        // A band wraps at its end, back to its start.
        let band = WrapGeometry {
            wrap_start: 4800,
            wrap_end: 9600,
            ..LOOP
        };
        assert_eq!(band.wrap_in(&block(0, 256, 9500)), Some(100));
        assert_eq!(band.wrap_in(&block(0, 256, 4800)), Some(0));
        // An output at 44.1 kHz: 100 ring frames are 91.875 input frames, rounded.
        let converted = WrapGeometry {
            input_rate: 44_100,
            ..LOOP
        };
        assert_eq!(converted.wrap_in(&block(0, 256, 47_900)), Some(92));
    }

    #[test]
    fn the_latency_is_dropped_from_the_start_and_the_length_kept() {
        let mut w = Window::new(300, 1000, false);
        // Starts at the first block read; its first 300 frames are the round trip.
        assert_eq!(w.place(&block(0, 256, 0), None), 0..0);
        assert_eq!(w.place(&block(256, 256, 256), None), 44..256);
        assert_eq!(w.start(), Some(300));
        assert!(!w.done(512));
        assert_eq!(w.place(&block(1280, 256, 0), None), 0..20);
        assert!(w.done(1536));
    }

    #[test]
    fn a_quantized_capture_starts_at_the_wrap_plus_the_latency_and_stops_at_the_next() {
        let mut w = Window::new(10, 1_000_000, true);
        assert_eq!(w.place(&block(0, 256, 47_000), None), 0..0);
        assert_eq!(w.start(), None);
        let b = block(1000, 256, 47_900);
        assert_eq!(w.place(&b, LOOP.wrap_in(&b)), 110..256);
        assert_eq!(w.start(), Some(1110));
        // A stop waits for the next wrap, then keeps the latency still in flight.
        w.stop(1256);
        assert!(!w.done(2000));
        let b = block(49_100, 256, 47_900);
        assert_eq!(w.place(&b, LOOP.wrap_in(&b)), 0..110);
        assert!(w.done(49_356));
    }

    #[test]
    fn a_stop_ends_at_once_plus_the_latency_or_cancels_before_the_start() {
        let mut w = Window::new(100, 10_000, false);
        w.place(&block(0, 256, 0), None);
        w.stop(256);
        assert!(!w.done(256));
        assert_eq!(w.place(&block(256, 256, 256), None), 0..100);
        assert!(w.done(512));
        let mut q = Window::new(0, 10_000, true);
        q.place(&block(0, 256, 1000), None);
        q.stop(256);
        assert!(q.cancelled() && q.done(256));
    }
}
