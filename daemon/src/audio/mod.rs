//! Audio outputs: the small trait every backend (JACK, PipeWire, null) implements, and the
//! one [`PeriodProcessor`] every realtime callback calls.
//!
//! Lifecycle: [`AudioOutput`] is an *opened* output whose format (rate, period) the server
//! has dictated; the caller builds the ring at that format, then
//! [`start`](AudioOutput::start)s it with a [`PeriodProcessor`], getting a
//! [`RunningOutput`] to watch and stop. The processor lives in a shared [`ProcessorSlot`]
//! so that [`supervisor::OutputSupervisor`] can play it through a new output when the old
//! one's server went away.
//!
//! Threading: outputs are opened, started and stopped on the main thread. The realtime
//! callback only calls [`PeriodProcessor::process_planar`] (or
//! [`PeriodProcessor::process_duplex`], which first queues the input ports for a live
//! capture, [`input`]) or [`PeriodProcessor::process_interleaved`] (a PipeWire input
//! stream's callback: [`PeriodProcessor::queue_input_interleaved`]): no allocation (checked
//! by `assert_no_alloc` in debug builds), no lock, no syscall, no logging; it reports through atomic counters and
//! the [`Meters`] it keeps on what it played. Each period runs with subnormals flushed to
//! zero, and the first one after the supervisor asks leaves its thread handle for the
//! realtime check ([`realtime`]). With MIDI input on, the JACK callback also copies its
//! `midi_in` port's messages into [`midi_in`]'s queue, and the PipeWire output's MIDI
//! stream callback does the same with its event buffers, under the same rules.

pub mod convert;
pub mod error;
pub mod input;
pub mod links;
pub mod meter;
pub mod midi_in;
pub mod null;
pub mod realtime;
pub mod select;
pub mod slot;
pub mod spa_sequence;
pub mod supervisor;

pub use convert::{RateConverter, Rates};
pub use error::AudioError;
pub use meter::{MeterTotals, Meters};
pub use realtime::{CallbackThread, Scheduling};
pub use slot::ProcessorSlot;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use latentd_engine::{RingHandle, RingReader};
use realtime::rt_guard;

#[cfg(feature = "jack")]
pub mod jack;
#[cfg(feature = "jack")]
mod libjack_log;

#[cfg(feature = "pipewire")]
pub mod pipewire;

/// The format an output runs at, as its server dictates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputFormat {
    /// Frames per second.
    pub sample_rate: u32,
    /// Largest period (frames per callback) the output will ask for.
    pub period_frames: usize,
    /// Output channels (ports).
    pub channels: usize,
}

/// Counters an output's callback keeps; readable from any thread.
#[derive(Debug, Default)]
pub struct OutputStats {
    /// Callbacks run.
    pub callbacks: AtomicU64,
    /// Frames delivered to the server.
    pub frames: AtomicU64,
    /// Over- and underruns the server reported.
    pub xruns: AtomicU64,
    /// Frames the record tap could not queue (its reader fell behind).
    pub record_dropped: AtomicU64,
    /// Most frames any one callback delivered (the server's real period, which may exceed
    /// the one asked for).
    pub max_period_frames: AtomicU64,
}

impl OutputStats {
    /// A plain copy of the counters.
    pub fn snapshot(&self) -> OutputStatsSnapshot {
        OutputStatsSnapshot {
            callbacks: self.callbacks.load(Ordering::Relaxed),
            frames: self.frames.load(Ordering::Relaxed),
            xruns: self.xruns.load(Ordering::Relaxed),
            record_dropped: self.record_dropped.load(Ordering::Relaxed),
            max_period_frames: self.max_period_frames.load(Ordering::Relaxed),
        }
    }
}

/// A plain copy of [`OutputStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputStatsSnapshot {
    /// Callbacks run.
    pub callbacks: u64,
    /// Frames delivered.
    pub frames: u64,
    /// Xruns reported by the server.
    pub xruns: u64,
    /// Frames the record tap dropped.
    pub record_dropped: u64,
    /// Most frames one callback delivered.
    pub max_period_frames: u64,
}

/// The record tap's callback end (the recorder's `Recorder::spawn` makes it): while
/// `armed` is up, the frames played go, interleaved, into `producer`, as many as fit (the
/// rest count as `record_dropped`); while it is down the callback only reads the flag.
pub struct RecordTap {
    /// The queue's writing end.
    pub producer: rtrb::Producer<f32>,
    /// Samples per frame in the queue.
    pub channels: usize,
    /// Raised while a recording runs (by the recorder; read here).
    pub armed: Arc<AtomicBool>,
}

/// Everything a realtime callback needs, allocated before the callback starts: the ring's
/// reader, the optional rate converter (when the output runs at another rate than the
/// ring), the optional record tap ([`RecordTap`]), the stats and the meters.
pub struct PeriodProcessor {
    reader: RingReader,
    converter: Option<RateConverter>,
    tap: Option<RecordTap>,
    stats: Arc<OutputStats>,
    meters: Arc<Meters>,
    fade: Arc<FadeOut>,
    /// Where a callback leaves its thread for the realtime check.
    thread: Arc<CallbackThread>,
    /// Output gain while fading (1 until a fade is asked for, then down to 0).
    gain: f32,
    /// The live input's callback end, when input ports are asked for ([`input`]).
    input: Option<input::InputTap>,
}

/// Frames over which [`FadeOut`] takes the output from full level to silence (about 5 ms at
/// 48 kHz): short enough to stop within a second, long enough not to click.
pub const FADE_FRAMES: usize = 256;

/// Asks a running output to fade to silence, and tells when it is silent. Shared between the
/// main thread (asks, waits) and the callback (ramps, reports).
#[derive(Debug, Default)]
pub struct FadeOut {
    requested: AtomicBool,
    silent: AtomicBool,
}

impl FadeOut {
    /// Start the fade at the next period.
    pub fn request(&self) {
        self.requested.store(true, Ordering::Release);
    }

    /// True once the callback has played its last non-silent frame.
    pub fn is_silent(&self) -> bool {
        self.silent.load(Ordering::Acquire)
    }

    /// Ask for the fade and wait until the output is silent or `timeout` passed (a stopped
    /// server never runs the callback); returns whether it went silent.
    pub fn fade_and_wait(&self, timeout: std::time::Duration) -> bool {
        self.request();
        let deadline = std::time::Instant::now() + timeout;
        while !self.is_silent() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        self.is_silent()
    }
}

impl PeriodProcessor {
    /// A processor playing `reader`, optionally feeding `tap` with what was played.
    pub fn new(reader: RingReader, tap: Option<RecordTap>) -> Self {
        Self {
            reader,
            converter: None,
            tap,
            stats: Arc::new(OutputStats::default()),
            meters: Arc::new(Meters::default()),
            fade: Arc::new(FadeOut::default()),
            thread: Arc::new(CallbackThread::default()),
            gain: 1.0,
            input: None,
        }
    }

    /// Queue what the input ports bring to `tap` each period ([`Self::process_duplex`]).
    pub fn with_input(mut self, tap: input::InputTap) -> Self {
        self.input = Some(tap);
        self
    }

    /// The live input's shared state, when the processor has an input tap.
    pub fn input_shared(&self) -> Option<Arc<input::InputShared>> {
        self.input.as_ref().map(input::InputTap::shared)
    }

    /// One period: queue the input ports (`inputs`, one slice per port) to the input tap,
    /// if there is one, then play into planar outputs as [`Self::process_planar`].
    /// Realtime-safe.
    pub fn process_duplex(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) {
        if let Some(tap) = self.input.as_mut() {
            rt_guard(|| tap.process(inputs));
        }
        self.process_planar(outputs);
    }

    /// Queue one period of interleaved input (`channels` samples a frame) to the input
    /// tap, if there is one, without playing anything: for an input stream with a callback
    /// of its own (PipeWire). Realtime-safe.
    pub fn queue_input_interleaved(&mut self, samples: &[f32], channels: usize) {
        if let Some(tap) = self.input.as_mut() {
            rt_guard(|| tap.process_interleaved(samples, channels));
        }
    }

    /// Play the ring through an output at `output_rate` (frames per second), converting in
    /// the callback when that differs from the ring's rate; `max_period` is the longest
    /// period the output is known to ask for (the converter preallocates for it, and for
    /// JACK's largest). Equal rates: no converter, the ring is played as is.
    pub fn converting_to(
        mut self,
        output_rate: u32,
        max_period: usize,
    ) -> Result<Self, AudioError> {
        let ring = self.reader.handle();
        let rates = Rates {
            ring: ring.sample_rate(),
            output: output_rate,
        };
        self.converter = if rates.converts() {
            Some(RateConverter::new(rates, ring.channels(), max_period)?)
        } else {
            None
        };
        Ok(self)
    }

    /// The ring's rate and the rate this processor plays at.
    pub fn rates(&self) -> Rates {
        match &self.converter {
            Some(c) => c.rates(),
            None => {
                let rate = self.reader.handle().sample_rate();
                Rates {
                    ring: rate,
                    output: rate,
                }
            }
        }
    }

    /// Delay the rate conversion adds, in output frames (0 without conversion).
    pub fn conversion_latency_frames(&self) -> usize {
        self.converter
            .as_ref()
            .map_or(0, RateConverter::latency_frames)
    }

    /// The fade-out control, to share with the main thread (shutdown fades, then stops).
    pub fn fade(&self) -> Arc<FadeOut> {
        Arc::clone(&self.fade)
    }

    /// Apply the fade ramp to frame `i` of this period (`scale(i, gain)` multiplies that
    /// frame by `gain`); a no-op until a fade is asked for.
    #[inline]
    fn apply_fade(&mut self, n: usize, mut scale: impl FnMut(usize, f32)) {
        if self.gain >= 1.0 && !self.fade.requested.load(Ordering::Acquire) {
            return;
        }
        let step = 1.0 / FADE_FRAMES as f32;
        for i in 0..n {
            self.gain = (self.gain - step).max(0.0);
            scale(i, self.gain);
        }
        if self.gain == 0.0 {
            self.fade.silent.store(true, Ordering::Release);
        }
    }

    /// Where the callback leaves its thread for the realtime check, to share with the
    /// supervising thread.
    pub fn callback_thread(&self) -> Arc<CallbackThread> {
        Arc::clone(&self.thread)
    }

    /// The counters, to share with the main thread.
    pub fn stats(&self) -> Arc<OutputStats> {
        Arc::clone(&self.stats)
    }

    /// The meters, to share with the threads that read levels.
    pub fn meters(&self) -> Arc<Meters> {
        Arc::clone(&self.meters)
    }

    /// A handle on the ring being played, for the output's non-realtime callbacks (a JACK
    /// buffer-size change grows the ring's guard through it).
    pub fn ring_handle(&self) -> RingHandle {
        self.reader.handle()
    }

    /// One period into planar outputs (JACK ports). Realtime-safe.
    pub fn process_planar(&mut self, outputs: &mut [&mut [f32]]) {
        rt_guard(|| {
            self.thread.note();
            let n = outputs.iter().map(|o| o.len()).min().unwrap_or(0);
            match self.converter.as_mut() {
                None => self.reader.read_planar(outputs),
                Some(converter) => {
                    let ch = converter.channels();
                    converter.convert(&mut self.reader, n, |first, samples| {
                        for (i, frame) in samples.chunks_exact(ch).enumerate() {
                            for (k, out) in outputs.iter_mut().enumerate() {
                                out[first + i] = frame[k % ch];
                            }
                        }
                    });
                }
            }
            self.apply_fade(n, |i, g| {
                for out in outputs.iter_mut() {
                    out[i] *= g;
                }
            });
            let ports = outputs.len().max(1);
            self.finish_period(n, outputs.len(), |i, k| outputs[k % ports][i]);
        });
    }

    /// One period into an interleaved buffer of `channels` channels (PipeWire, null).
    /// Realtime-safe.
    pub fn process_interleaved(&mut self, out: &mut [f32], channels: usize) {
        rt_guard(|| {
            self.thread.note();
            if self.converter.is_none() {
                self.reader.read_interleaved(out, channels);
            }
            let channels = channels.max(1);
            let n = out.len() / channels;
            match self.converter.as_mut() {
                None => {}
                Some(converter) => {
                    let ch = converter.channels();
                    converter.convert(&mut self.reader, n, |first, samples| {
                        for (i, frame) in samples.chunks_exact(ch).enumerate() {
                            let at = (first + i) * channels;
                            for (k, o) in out[at..at + channels].iter_mut().enumerate() {
                                *o = frame[k % ch];
                            }
                        }
                    });
                }
            }
            self.apply_fade(n, |i, g| {
                for o in &mut out[i * channels..(i + 1) * channels] {
                    *o *= g;
                }
            });
            self.finish_period(n, channels, |i, k| out[i * channels + k % channels]);
        });
    }

    /// Queue the `n` frames just played (`sample(frame, channel)`, `channels` of them) to
    /// the record tap, as many as fit, meter them, then count the period.
    #[inline]
    fn finish_period(&mut self, n: usize, channels: usize, sample: impl Fn(usize, usize) -> f32) {
        if let Some(tap) = self.tap.as_mut()
            && tap.armed.load(Ordering::Acquire)
        {
            let ch = tap.channels.max(1);
            let frames = n.min(tap.producer.slots() / ch);
            if let Ok(mut chunk) = tap.producer.write_chunk_uninit(frames * ch) {
                let (a, b) = chunk.as_mut_slices();
                for (idx, slot) in a.iter_mut().chain(b.iter_mut()).enumerate() {
                    slot.write(sample(idx / ch, idx % ch));
                }
                // SAFETY: every slot of both slices was written just above.
                unsafe { chunk.commit_all() };
            }
            if frames < n {
                self.stats
                    .record_dropped
                    .fetch_add((n - frames) as u64, Ordering::Relaxed);
            }
        }
        self.meters.record_period(n, channels, &sample);
        self.count(n);
    }

    fn count(&self, frames: usize) {
        self.stats.callbacks.fetch_add(1, Ordering::Relaxed);
        self.stats
            .frames
            .fetch_add(frames as u64, Ordering::Relaxed);
        self.stats
            .max_period_frames
            .fetch_max(frames as u64, Ordering::Relaxed);
    }
}

/// An opened output whose format is known; start it to play.
pub trait AudioOutput: Send {
    /// Backend name: `jack`, `pipewire` or `null`.
    fn name(&self) -> &'static str;
    /// The format the server dictates.
    fn format(&self) -> OutputFormat;
    /// Start the realtime callback, which calls `processor` once per period.
    fn start(
        self: Box<Self>,
        processor: PeriodProcessor,
    ) -> Result<Box<dyn RunningOutput>, AudioError> {
        self.start_shared(ProcessorSlot::new(processor))
    }
    /// Start the realtime callback on a processor that outlives this output: the callback
    /// plays `processor` once per period; a later output may play the same slot.
    fn start_shared(
        self: Box<Self>,
        processor: Arc<ProcessorSlot>,
    ) -> Result<Box<dyn RunningOutput>, AudioError>;
}

/// Linking an output channel to a port of the server's graph ([`RunningOutput::connect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerLink {
    /// The channel feeds the port now, newly.
    Linked,
    /// The channel fed the port already (the server says so; its graph may not show it
    /// yet while it stands still).
    AlreadyLinked,
    /// The server has no port of that name (yet).
    Absent,
}

/// A started output.
pub trait RunningOutput: Send {
    /// Backend name.
    fn name(&self) -> &'static str;
    /// The format it runs at (it may have changed since it was opened: JACK buffer size).
    fn format(&self) -> OutputFormat;
    /// Frames from the callback's buffer to the listener, at the output's rate, as the
    /// server reports them: JACK's playback latency range of our ports (our period plus
    /// all that lies downstream, a netjack2 hop included); by default the period.
    fn latency_frames(&self) -> usize {
        self.format().period_frames
    }
    /// The callback's counters.
    fn stats(&self) -> OutputStatsSnapshot;
    /// Stop the callback and close the client; returns once the callback no longer runs.
    fn stop(self: Box<Self>) -> Result<(), AudioError>;

    /// Discard an output whose server went away. By default [`stop`](Self::stop); a
    /// backend whose close is unsafe against a dead server (JACK) leaks the client instead.
    fn abandon(self: Box<Self>) {
        if let Err(e) = self.stop() {
            log::debug!("audio: closing a lost output: {e}");
        }
    }
    /// True once the server told this output it is gone (JACK's shutdown notice) or the
    /// connection to it was lost (PipeWire): the callback will not run again. Backends
    /// without such a notice say false.
    fn server_lost(&self) -> bool {
        false
    }
    /// True if a live server calls the callback every period whatever the graph looks
    /// like (JACK, null), so a callback that stops counting means a dead server. False
    /// where an unlinked or suspended stream is legitimately not called (PipeWire).
    fn called_every_period(&self) -> bool {
        false
    }
    /// For each of our ports, the full names of the ports it is linked to now: the output
    /// channels first (the ports each feeds), then any input ports (the ports that feed
    /// each: JACK's `midi_in` and `in_1 ..`); empty for backends without a port graph.
    fn connections(&self) -> Vec<Vec<String>> {
        Vec::new()
    }
    /// Whether the server lists a port named `name` now (asks the server); false for
    /// backends without a port graph.
    fn has_port(&self, _name: &str) -> bool {
        false
    }
    /// Link our port `channel` (as numbered by [`connections`](Self::connections)) with the
    /// port named `peer`: an output channel feeds it, an input port is fed by it.
    fn connect(&self, channel: usize, peer: &str) -> Result<PeerLink, AudioError> {
        Err(AudioError::Unsupported {
            backend: self.name(),
            what: format!("connecting channel {channel} to {peer:?}: no port graph"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latentd_engine::PlayheadRing;

    #[test]
    fn fade_out_ramps_to_exact_silence_and_says_so() {
        let ring = PlayheadRing::from_interleaved(vec![1.0; 2 * 4096], 2, 48_000, 64).unwrap();
        let (_w, reader) = ring.split();
        let mut p = PeriodProcessor::new(reader, None);
        let fade = p.fade();
        let mut out = vec![0.0f32; 2 * 200];
        p.process_interleaved(&mut out, 2);
        assert!(out.iter().all(|&v| v == 1.0));
        assert!(!fade.is_silent());
        fade.request();
        let mut played = Vec::new();
        for _ in 0..2 {
            p.process_interleaved(&mut out, 2);
            played.extend(out.chunks_exact(2).map(|f| f[0]));
        }
        // Strictly decreasing through the ramp, exactly zero from FADE_FRAMES on.
        assert!(played[..FADE_FRAMES].windows(2).all(|w| w[1] < w[0]));
        assert!(played[0] < 1.0 && played[0] > 0.99);
        assert!(played[FADE_FRAMES - 1..].iter().all(|&v| v == 0.0));
        assert!(fade.is_silent());
    }

    #[test]
    fn the_callback_s_arithmetic_flushes_subnormals_to_zero() {
        // The fade multiplies every sample by a gain below 1: on the smallest normal float
        // that gives a subnormal, unless the callback runs with flush-to-zero.
        let ring = PlayheadRing::from_interleaved(vec![f32::MIN_POSITIVE; 2 * 4096], 2, 48_000, 64)
            .unwrap();
        let (_w, reader) = ring.split();
        let mut p = PeriodProcessor::new(reader, None);
        p.fade().request();
        let mut out = vec![1.0f32; 2 * 64];
        assert_no_alloc::assert_no_alloc(|| p.process_interleaved(&mut out, 2));
        assert!(out.iter().all(|&v| v == 0.0), "{:?}", &out[..4]);
        let (mut left, mut right) = (vec![1.0f32; 64], vec![1.0f32; 64]);
        assert_no_alloc::assert_no_alloc(|| p.process_planar(&mut [&mut left, &mut right]));
        assert!(left.iter().chain(&right).all(|&v| v == 0.0));
        assert!(
            !latentd_engine::denormals::flushing(),
            "the thread is given back"
        );
    }

    #[test]
    fn meters_follow_what_is_played_without_allocating() {
        // Left at 0.5, right at -1.0 (full scale), unconverted.
        let samples = (0..4096).flat_map(|_| [0.5f32, -1.0]).collect();
        let ring = PlayheadRing::from_interleaved(samples, 2, 48_000, 64).unwrap();
        let (_w, reader) = ring.split();
        let mut p = PeriodProcessor::new(reader, None);
        let meters = p.meters();
        meters.set_clip_threshold(0.9);
        let start = meters.totals();
        let (mut left, mut right) = (vec![0.0f32; 128], vec![0.0f32; 128]);
        assert_no_alloc::assert_no_alloc(|| p.process_planar(&mut [&mut left, &mut right]));
        assert_eq!(meters.linear(), [(0.5, 0.5), (1.0, 1.0)]);
        let mut out = vec![0.0f32; 2 * 64];
        assert_no_alloc::assert_no_alloc(|| p.process_interleaved(&mut out, 2));
        assert_eq!(meters.linear(), [(0.5, 0.5), (1.0, 1.0)]);
        let now = meters.totals();
        assert_eq!(now.frames - start.frames, 192);
        assert_eq!(now.periods - start.periods, 2);
        // Every right-channel sample is at full scale, above the 0.9 threshold.
        assert_eq!(now.clipped_since(&start), 192);
        // A fade to silence shows in the meters: the last period is silent.
        p.fade().request();
        for _ in 0..(FADE_FRAMES / 64 + 1) {
            assert_no_alloc::assert_no_alloc(|| p.process_interleaved(&mut out, 2));
        }
        assert_eq!(meters.linear(), [(0.0, 0.0), (0.0, 0.0)]);
    }
}
