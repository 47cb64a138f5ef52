//! Recording what is played, on demand: `--record FILE` from the start, `/record/start
//! [file]` and `/record/stop` over OSC. A recording is a 32-bit float WAV at the output's
//! rate and channels that rolls over to a new file (a *part*) every `[record] split_s`
//! seconds ([`RecordConfig`]), each part a complete WAV, no frame lost or repeated between
//! them.
//!
//! The audio callback's side is a [`RecordTap`] given to the
//! [`PeriodProcessor`](crate::audio::PeriodProcessor): an `rtrb` queue and an `armed` flag.
//! While the flag is up the callback queues the whole frames it played, as many as fit, and
//! counts the rest as `record_dropped`; while it is down it only reads the flag. It never
//! allocates, locks or waits.
//!
//! Threading: the writer thread (`latentd-record`, not realtime) parks while nothing
//! records; while something does, it drains the queue into the current part every
//! [`POLL_INTERVAL`], rolls parts over, and every [`HEADER_UPDATE_INTERVAL`] rewrites the
//! header's sizes and flushes (a daemon killed by SIGKILL or a power cut leaves a WAV that
//! opens, with all but the last interval counted). [`Recorder::start`] and
//! [`Recorder::stop`] run on control threads (OSC) and on the main thread (`--record`, the
//! stop at exit); they and the writer thread share the queue's reading end and the open
//! file under one mutex, which the callback never touches.
//!
//! A write that fails (a full disk, an I/O error) ends the recording on the writer thread:
//! the flag falls (the audio plays on), the part's header is repaired to count the whole
//! frames that reached the file, and [`RecordEvents::faulted`] reports it (the daemon's
//! health module implements [`RecordEvents`] to raise the `record` alarm).

use latentd_engine::lock::MutexExt;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use crate::audio::RecordTap;

/// How long the writer thread sleeps between drains while recording.
pub const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// How often the writer thread rewrites the WAV header's sizes while recording: the most
/// audio a killed daemon's recording can leave uncounted.
pub const HEADER_UPDATE_INTERVAL: Duration = Duration::from_secs(1);

/// Accepted `[record] split_s`, seconds.
pub const SPLIT_S_RANGE: std::ops::RangeInclusive<f64> = 1.0..=86_400.0;

/// Largest data chunk a part holds, bytes: a WAV counts its sizes in 32 bits. A `split_s`
/// whose parts would be larger is shortened to fit (and the log says so).
pub const MAX_PART_DATA_BYTES: u64 = u32::MAX as u64 - 4096;

/// `[record]` besides `file`: how recordings are split. Every field has its default here
/// (and only here).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecordConfig {
    /// A recording rolls over to a new file every this many seconds.
    pub split_s: f64,
}

impl Default for RecordConfig {
    fn default() -> RecordConfig {
        RecordConfig { split_s: 3600.0 }
    }
}

impl RecordConfig {
    /// Check every field; the error names the bad one and what is accepted.
    pub fn validate(&self) -> Result<(), String> {
        if SPLIT_S_RANGE.contains(&self.split_s) {
            Ok(())
        } else {
            Err(format!(
                "split_s = {}: expected {} to {} seconds",
                self.split_s,
                SPLIT_S_RANGE.start(),
                SPLIT_S_RANGE.end()
            ))
        }
    }
}

/// Why a recording could not be started, stopped or completed. Every variant names what
/// it is about.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The format cannot be recorded.
    #[error("record: {what}")]
    Format {
        /// What is wrong.
        what: String,
    },
    /// The file could not be created, written or completed.
    #[error("record {}: {reason}", path.display())]
    Write {
        /// The part's path.
        path: PathBuf,
        /// hound's or the system's message.
        reason: String,
    },
    /// A recording runs already.
    #[error("already recording to {name} (send /record/stop first)")]
    Busy {
        /// The part being written.
        name: String,
    },
    /// Nothing records.
    #[error("not recording{}", last_fault.as_ref().map(|f| format!(" (the last recording stopped: {f})")).unwrap_or_default())]
    Idle {
        /// Why the last recording stopped by itself, if it did.
        last_fault: Option<String>,
    },
    /// The writer thread could not be started.
    #[error("record: cannot start the writer thread: {0}")]
    Thread(String),
}

/// Where a recording goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordTarget {
    /// The name replies show (relative to the media folder for OSC recordings).
    pub name: String,
    /// The first part's path; later parts go beside it (`<stem>-2.wav`, ...).
    pub path: PathBuf,
    /// Replace a file of that name (`--record`, the operator's own path) instead of
    /// refusing it (OSC).
    pub replace: bool,
}

/// A recording that ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordFinished {
    /// The last part's name.
    pub name: String,
    /// Frames in all parts.
    pub frames: u64,
    /// Seconds in all parts.
    pub seconds: f64,
    /// How many files it took.
    pub parts: u32,
}

/// A recording that a failed write stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordFault {
    /// The part that failed.
    pub name: String,
    /// Whole frames in all parts that reached the disk.
    pub frames: u64,
    /// What failed.
    pub reason: String,
}

/// Who hears about recordings that start and that fail by themselves (called on a control
/// thread and on the writer thread, after the recorder's lock is released).
pub trait RecordEvents: Send + Sync {
    /// A recording started (a raised fault alarm may clear).
    fn started(&self, name: &str);
    /// A recording stopped because a write failed.
    fn faulted(&self, fault: &RecordFault);
}

type WavFile = hound::WavWriter<BufWriter<File>>;

/// One file of a recording.
struct Part {
    wav: WavFile,
    path: PathBuf,
    name: String,
    frames: u64,
    flushed_at: Instant,
}

/// The recording in progress.
struct Active {
    /// The target's name (part names derive from it).
    target: RecordTarget,
    part: Part,
    part_no: u32,
    /// Frames in the parts before this one.
    frames_before: u64,
}

impl Active {
    fn frames(&self) -> u64 {
        self.frames_before + self.part.frames
    }
}

/// What the lock guards.
struct Inner {
    consumer: rtrb::Consumer<f32>,
    active: Option<Active>,
    last_fault: Option<String>,
}

struct Shared {
    armed: Arc<AtomicBool>,
    quit: AtomicBool,
    inner: Mutex<Inner>,
    spec: hound::WavSpec,
    channels: usize,
    split_frames: u64,
    events: Box<dyn RecordEvents>,
    writer: OnceLock<Thread>,
}

/// The recorder: the writer thread and the controls (see the module doc). Dropping it
/// completes a running recording and joins the thread.
pub struct Recorder {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// The format of what is recorded, and the queue.
#[derive(Debug, Clone, Copy)]
pub struct RecordFormat {
    /// The output's rate.
    pub sample_rate: u32,
    /// The output's channels.
    pub channels: usize,
    /// Seconds of audio the queue holds before frames are dropped.
    pub queue_seconds: f64,
}

impl Recorder {
    /// Start the writer thread (parked: nothing records yet); returns the recorder and the
    /// tap for the audio callback.
    pub fn spawn(
        format: RecordFormat,
        config: RecordConfig,
        events: Box<dyn RecordEvents>,
    ) -> Result<(Recorder, RecordTap), RecordError> {
        let RecordFormat {
            sample_rate,
            channels,
            queue_seconds,
        } = format;
        let format_err = |what: String| RecordError::Format { what };
        if channels == 0 || channels > u16::MAX as usize {
            return Err(format_err(format!("{channels} channels")));
        }
        if sample_rate == 0 {
            return Err(format_err("a sample rate of 0 Hz".into()));
        }
        if !(queue_seconds.is_finite() && queue_seconds > 0.0) {
            return Err(format_err(format!(
                "a queue of {queue_seconds} seconds (must be above 0)"
            )));
        }
        config.validate().map_err(format_err)?;
        let frame_bytes = channels as u64 * 4;
        let wanted = (config.split_s * f64::from(sample_rate)).round() as u64;
        let fits = MAX_PART_DATA_BYTES / frame_bytes;
        if wanted > fits {
            log::info!(
                "record: split_s = {} s would make parts over 4 GiB; parts are split every \
                 {:.0} s instead",
                config.split_s,
                fits as f64 / f64::from(sample_rate)
            );
        }
        let frames = ((queue_seconds * f64::from(sample_rate)).ceil() as usize).max(1);
        let (producer, consumer) = rtrb::RingBuffer::new(frames * channels);
        let armed = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            armed: Arc::clone(&armed),
            quit: AtomicBool::new(false),
            inner: Mutex::new(Inner {
                consumer,
                active: None,
                last_fault: None,
            }),
            spec: hound::WavSpec {
                channels: channels as u16,
                sample_rate,
                bits_per_sample: 32,
                sample_format: hound::SampleFormat::Float,
            },
            channels,
            split_frames: wanted.clamp(1, fits),
            events,
            writer: OnceLock::new(),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("latentd-record".into())
                .spawn(move || writer_loop(&shared))
                .map_err(|e| RecordError::Thread(e.to_string()))?
        };
        let _ = shared.writer.set(thread.thread().clone());
        Ok((
            Recorder {
                shared,
                thread: Some(thread),
            },
            RecordTap {
                producer,
                channels,
                armed,
            },
        ))
    }

    /// Frames per part.
    pub fn split_frames(&self) -> u64 {
        self.shared.split_frames
    }

    /// The part being written, if something records.
    pub fn recording(&self) -> Option<String> {
        self.shared
            .lock()
            .active
            .as_ref()
            .map(|a| a.part.name.clone())
    }

    /// Create the first part and start recording from the next period on; fails (and
    /// changes nothing) when something records already or the file cannot be created.
    pub fn start(&self, target: RecordTarget) -> Result<String, RecordError> {
        let shared = &self.shared;
        let name = {
            let mut inner = shared.lock();
            if let Some(active) = &inner.active {
                return Err(RecordError::Busy {
                    name: active.part.name.clone(),
                });
            }
            let file = if target.replace {
                File::create(&target.path)
            } else {
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&target.path)
            }
            .map_err(|e| RecordError::Write {
                path: target.path.clone(),
                reason: e.to_string(),
            })?;
            let part = shared.open_part(file, target.path.clone(), target.name.clone())?;
            // What an earlier recording's last period left queued is not this one's.
            let stale = inner.consumer.slots();
            if stale > 0
                && let Ok(chunk) = inner.consumer.read_chunk(stale)
            {
                chunk.commit_all();
            }
            let name = part.name.clone();
            inner.active = Some(Active {
                target,
                part,
                part_no: 1,
                frames_before: 0,
            });
            inner.last_fault = None;
            shared.armed.store(true, Ordering::Release);
            name
        };
        if let Some(writer) = shared.writer.get() {
            writer.unpark();
        }
        log::info!("record: recording to {name}");
        shared.events.started(&name);
        Ok(name)
    }

    /// Stop recording: write what is queued, complete the last part.
    pub fn stop(&self) -> Result<RecordFinished, RecordError> {
        let shared = &self.shared;
        let mut inner = shared.lock();
        let Some(mut active) = inner.active.take() else {
            return Err(RecordError::Idle {
                last_fault: inner.last_fault.clone(),
            });
        };
        shared.armed.store(false, Ordering::Release);
        // Everything the callback queued before it saw the flag fall (but a period it was
        // in the middle of) is drained here.
        if let Err(reason) = shared.drain(&mut inner.consumer, &mut active) {
            let path = active.part.path.clone();
            inner.active = Some(active);
            let fault = shared.fail(&mut inner, reason.clone());
            drop(inner);
            shared.events.faulted(&fault);
            return Err(RecordError::Write { path, reason });
        }
        drop(inner);
        let frames = active.frames();
        let Part {
            wav, path, name, ..
        } = active.part;
        wav.finalize().map_err(|e| RecordError::Write {
            path,
            reason: e.to_string(),
        })?;
        let seconds = frames as f64 / f64::from(shared.spec.sample_rate);
        log::info!(
            "record: stopped; {frames} frames ({seconds:.3} s) in {} file(s), the last {name}",
            active.part_no
        );
        Ok(RecordFinished {
            name,
            frames,
            seconds,
            parts: active.part_no,
        })
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        match self.stop() {
            Ok(_) | Err(RecordError::Idle { .. }) => {}
            Err(e) => log::error!("{e}"),
        }
        self.shared.quit.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            if thread.join().is_err() {
                log::error!("record: the writer thread panicked");
            }
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock_unpoisoned()
    }

    /// A part writing into `file` (its header written); on failure the file is removed.
    fn open_part(&self, file: File, path: PathBuf, name: String) -> Result<Part, RecordError> {
        match hound::WavWriter::new(BufWriter::new(file), self.spec) {
            Ok(wav) => Ok(Part {
                wav,
                path,
                name,
                frames: 0,
                flushed_at: Instant::now(),
            }),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(RecordError::Write {
                    path,
                    reason: e.to_string(),
                })
            }
        }
    }

    /// Write what is queued into the recording, rolling parts over at `split_frames`.
    fn drain(&self, consumer: &mut rtrb::Consumer<f32>, active: &mut Active) -> Result<(), String> {
        let ch = self.channels;
        loop {
            let queued = consumer.slots() / ch;
            if queued == 0 {
                break;
            }
            let room = (self.split_frames - active.part.frames) as usize;
            let n = queued.min(room);
            let chunk = consumer
                .read_chunk(n * ch)
                .expect("slots() said these were available");
            let (a, b) = chunk.as_slices();
            for &s in a.iter().chain(b) {
                active
                    .part
                    .wav
                    .write_sample(s)
                    .map_err(|e| format!("{}: {e}", active.part.path.display()))?;
            }
            chunk.commit_all();
            active.part.frames += n as u64;
            if active.part.frames >= self.split_frames {
                self.roll(active)?;
            }
        }
        let part = &mut active.part;
        if part.flushed_at.elapsed() >= HEADER_UPDATE_INTERVAL {
            // Sizes in the header, buffer to the file: a kill now leaves a valid WAV.
            part.wav
                .flush()
                .map_err(|e| format!("{}: {e}", part.path.display()))?;
            part.flushed_at = Instant::now();
        }
        Ok(())
    }

    /// Complete the current part and go on in the next, `<stem>-<n>.wav` beside the first
    /// (numbered further if that name is taken: a part never replaces a file).
    fn roll(&self, active: &mut Active) -> Result<(), String> {
        let next_no = active.part_no + 1;
        let first = &active.target.path;
        let stem = first.with_extension("");
        let ext = first
            .extension()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut numbered = stem.into_os_string();
        numbered.push(format!("-{next_no}"));
        let (file, path) = crate::unique_file::create_unique(Path::new(&numbered), &ext)
            .map_err(|e| format!("{}: next part: {e}", Path::new(&numbered).display()))?;
        let name = sibling_name(&active.target.name, &path);
        let next = self
            .open_part(file, path, name)
            .map_err(|e| e.to_string())?;
        let done = std::mem::replace(&mut active.part, next);
        active.part_no = next_no;
        active.frames_before += done.frames;
        let (done_path, done_name) = (done.path.clone(), done.name.clone());
        if let Err(e) = done.wav.finalize() {
            let _ = repair_wav(&done_path, self.channels);
            return Err(format!("{}: {e}", done_path.display()));
        }
        log::info!(
            "record: {done_name} complete ({} frames); continuing in {}",
            self.split_frames,
            active.part.name
        );
        Ok(())
    }

    /// End the recording after a failed write: the flag falls, the part is closed and its
    /// header repaired to what reached the disk.
    fn fail(&self, inner: &mut Inner, reason: String) -> RecordFault {
        self.armed.store(false, Ordering::Release);
        let active = inner.active.take().expect("a recording to fail");
        let Part {
            wav, path, name, ..
        } = active.part;
        // hound completes what it can as it is dropped; the repair counts what is there.
        drop(wav);
        let on_disk = match repair_wav(&path, self.channels) {
            Ok(frames) => frames,
            Err(e) => {
                log::error!("record {}: repairing the header: {e}", path.display());
                0
            }
        };
        inner.last_fault = Some(reason.clone());
        RecordFault {
            name,
            frames: active.frames_before + on_disk,
            reason,
        }
    }
}

/// The writer thread (see the module doc).
fn writer_loop(shared: &Shared) {
    loop {
        if shared.quit.load(Ordering::Acquire) {
            return;
        }
        if !shared.armed.load(Ordering::Acquire) {
            std::thread::park_timeout(Duration::from_secs(1));
            continue;
        }
        let fault = {
            let mut inner = shared.lock();
            let Inner {
                consumer, active, ..
            } = &mut *inner;
            match active.as_mut().map(|a| shared.drain(consumer, a)) {
                Some(Err(reason)) => Some(shared.fail(&mut inner, reason)),
                _ => None,
            }
        };
        if let Some(fault) = fault {
            shared.events.faulted(&fault);
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// `name` with its last component replaced by `path`'s file name (`sub/take.wav` and
/// `/m/sub/take-2.wav` give `sub/take-2.wav`).
fn sibling_name(name: &str, path: &Path) -> String {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{file}"),
        None => file,
    }
}

/// Make the WAV at `path` count exactly the whole frames (`channels` of 32-bit samples)
/// its data chunk holds on disk: cut a partial frame, rewrite the RIFF and data sizes.
/// Used after a failed write, whatever state the writer left the header in. Returns the
/// frames. Writes only inside the file's first bytes and shortens it, so it works on a
/// full disk.
pub fn repair_wav(path: &Path, channels: usize) -> std::io::Result<u64> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let len = file.metadata()?.len();
    let mut head = vec![0u8; len.min(4096) as usize];
    file.read_exact(&mut head)?;
    if head.len() < 12 || &head[0..4] != b"RIFF" || &head[8..12] != b"WAVE" {
        return Err(bad("not a RIFF WAVE file"));
    }
    let mut at = 12usize;
    let data_size_at = loop {
        if at + 8 > head.len() {
            return Err(bad("no data chunk in the header"));
        }
        let size = u32::from_le_bytes(head[at + 4..at + 8].try_into().expect("4 bytes"));
        if &head[at..at + 4] == b"data" {
            break at + 4;
        }
        at += 8 + size as usize + (size as usize & 1);
    };
    let data_start = (data_size_at + 4) as u64;
    let frame_bytes = channels.max(1) as u64 * 4;
    let data_len = (len.saturating_sub(data_start) / frame_bytes * frame_bytes)
        .min(MAX_PART_DATA_BYTES / frame_bytes * frame_bytes);
    file.set_len(data_start + data_len)?;
    file.seek(SeekFrom::Start(4))?;
    file.write_all(&((data_start + data_len - 8) as u32).to_le_bytes())?;
    file.seek(SeekFrom::Start(data_size_at as u64))?;
    file.write_all(&(data_len as u32).to_le_bytes())?;
    file.flush()?;
    Ok(data_len / frame_bytes)
}

/// Check that a record path can be created (not a directory, its folder exists), before
/// anything opens.
pub fn check_record_path(path: &std::path::Path) -> Result<(), String> {
    if path.is_dir() {
        return Err(format!("record {}: is a directory", path.display()));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    if !dir.is_dir() {
        return Err(format!(
            "record {}: directory {} does not exist",
            path.display(),
            dir.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::PeriodProcessor;
    use latentd_engine::PlayheadRing;

    /// Counts what the recorder reports.
    #[derive(Default)]
    struct Heard {
        started: Mutex<Vec<String>>,
        faults: Mutex<Vec<RecordFault>>,
    }

    impl RecordEvents for Arc<Heard> {
        fn started(&self, name: &str) {
            self.started.lock().unwrap().push(name.to_string());
        }
        fn faulted(&self, fault: &RecordFault) {
            self.faults.lock().unwrap().push(fault.clone());
        }
    }

    fn format(channels: usize, sample_rate: u32, queue_seconds: f64) -> RecordFormat {
        RecordFormat {
            sample_rate,
            channels,
            queue_seconds,
        }
    }

    fn target(path: &Path) -> RecordTarget {
        RecordTarget {
            name: path.file_name().unwrap().to_string_lossy().into_owned(),
            path: path.to_path_buf(),
            replace: false,
        }
    }

    fn read_wav(path: &Path) -> (hound::WavSpec, Vec<f32>) {
        let mut wav = hound::WavReader::open(path).unwrap();
        let spec = wav.spec();
        (spec, wav.samples::<f32>().map(Result::unwrap).collect())
    }

    fn looping_ring(channels: usize, rate: u32, frames: usize) -> (PlayheadRing, Vec<f32>) {
        let content: Vec<f32> = (0..frames * channels)
            .map(|i| ((i as f32) * 0.013).sin() * 0.5 + (i % 7) as f32 * 1e-3)
            .collect();
        let ring = PlayheadRing::from_interleaved(
            content.clone(),
            channels,
            rate,
            PlayheadRing::guard_for_period(256),
        )
        .unwrap();
        (ring, content)
    }

    #[test]
    fn recording_holds_exactly_what_the_ring_played_while_armed() {
        let (channels, rate, period) = (2usize, 48_000u32, 256usize);
        let (ring, content) = looping_ring(channels, rate, 3001);
        let (_writer, reader) = ring.split();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exact.wav");
        let heard = Arc::new(Heard::default());
        let (recorder, tap) = Recorder::spawn(
            format(channels, rate, 0.5),
            RecordConfig::default(),
            Box::new(Arc::clone(&heard)),
        )
        .unwrap();
        let mut processor = PeriodProcessor::new(reader, Some(tap));
        let stats = processor.stats();
        let mut buffer = vec![0.0f32; period * channels];
        // Not armed: played, not recorded.
        for _ in 0..3 {
            processor.process_interleaved(&mut buffer, channels);
        }
        assert_eq!(recorder.start(target(&path)).unwrap(), "exact.wav");
        assert!(recorder.start(target(&path)).is_err(), "already recording");
        let periods = 40; // about 3.4 laps
        for _ in 0..periods {
            processor.process_interleaved(&mut buffer, channels);
            std::thread::sleep(Duration::from_millis(1));
        }
        let finished = recorder.stop().unwrap();
        // Stopped: played, not recorded.
        processor.process_interleaved(&mut buffer, channels);
        assert_eq!(finished.frames, (periods * period) as u64);
        assert_eq!((finished.parts, finished.name.as_str()), (1, "exact.wav"));
        assert_eq!(stats.snapshot().record_dropped, 0);
        assert_eq!(*heard.started.lock().unwrap(), ["exact.wav"]);
        assert!(matches!(recorder.stop(), Err(RecordError::Idle { .. })));

        let (spec, recorded) = read_wav(&path);
        assert_eq!(
            (spec.channels, spec.sample_rate, spec.bits_per_sample),
            (2, rate, 32)
        );
        assert_eq!(recorded.len(), periods * period * channels);
        let skip = 3 * period * channels;
        for (i, &s) in recorded.iter().enumerate() {
            assert_eq!(s, content[(skip + i) % content.len()], "sample {i}");
        }
    }

    #[test]
    fn parts_split_at_split_s_and_add_up_without_a_gap() {
        let (channels, rate, period) = (1usize, 1000u32, 100usize);
        let (ring, content) = looping_ring(channels, rate, 777);
        let (_writer, reader) = ring.split();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("take.wav");
        // A file with the second part's name: the part goes beside it.
        std::fs::write(dir.path().join("take-2.wav"), b"keep").unwrap();
        let (recorder, tap) = Recorder::spawn(
            format(channels, rate, 2.0),
            RecordConfig { split_s: 1.0 },
            Box::new(Arc::new(Heard::default())),
        )
        .unwrap();
        let mut processor = PeriodProcessor::new(reader, Some(tap));
        let mut buffer = vec![0.0f32; period];
        recorder.start(target(&path)).unwrap();
        for _ in 0..25 {
            processor.process_interleaved(&mut buffer, channels);
            std::thread::sleep(Duration::from_millis(2));
        }
        let finished = recorder.stop().unwrap();
        assert_eq!((finished.frames, finished.parts), (2500, 3));
        assert_eq!(finished.name, "take-3.wav");
        assert_eq!(
            std::fs::read(dir.path().join("take-2.wav")).unwrap(),
            b"keep"
        );
        let mut joined = Vec::new();
        for (name, frames) in [
            ("take.wav", 1000),
            ("take-2-2.wav", 1000),
            ("take-3.wav", 500),
        ] {
            let (_, samples) = read_wav(&dir.path().join(name));
            assert_eq!(samples.len(), frames, "{name}");
            joined.extend(samples);
        }
        for (i, &s) in joined.iter().enumerate() {
            assert_eq!(s, content[i % content.len()], "sample {i}");
        }
    }

    #[test]
    fn a_full_queue_drops_frames_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("full.wav");
        // A queue of 100 frames, filled by one period before the writer drains it.
        let (recorder, tap) = Recorder::spawn(
            format(1, 1000, 0.1),
            RecordConfig::default(),
            Box::new(Arc::new(Heard::default())),
        )
        .unwrap();
        let ring =
            PlayheadRing::silence(1000, 1, 1000, PlayheadRing::guard_for_period(64)).unwrap();
        let (_w, reader) = ring.split();
        let mut processor = PeriodProcessor::new(reader, Some(tap));
        let stats = processor.stats();
        // Hold the lock: the writer thread cannot drain.
        recorder.start(target(&path)).unwrap();
        let guard = recorder.shared.lock();
        let mut buffer = vec![0.0f32; 500];
        processor.process_interleaved(&mut buffer, 1);
        drop(guard);
        let finished = recorder.stop().unwrap();
        assert_eq!(finished.frames, 100);
        assert_eq!(stats.snapshot().record_dropped, 400);
    }

    #[test]
    fn a_taken_or_unwritable_name_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let taken = dir.path().join("taken.wav");
        std::fs::write(&taken, b"mine").unwrap();
        let (recorder, _tap) = Recorder::spawn(
            format(2, 48_000, 1.0),
            RecordConfig::default(),
            Box::new(Arc::new(Heard::default())),
        )
        .unwrap();
        let err = recorder.start(target(&taken)).unwrap_err().to_string();
        assert!(err.contains("taken.wav") && err.contains("exists"), "{err}");
        assert_eq!(std::fs::read(&taken).unwrap(), b"mine");
        let missing = Path::new("/nonexistent-dir-latentd/out.wav");
        let err = recorder.start(target(missing)).unwrap_err().to_string();
        assert!(
            err.starts_with("record /nonexistent-dir-latentd/out.wav: "),
            "{err}"
        );
        assert_eq!(recorder.recording(), None);
    }

    #[test]
    fn repair_counts_the_whole_frames_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 48_000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut wav = hound::WavWriter::create(&path, spec).unwrap();
        for i in 0..200 {
            wav.write_sample(i as f32).unwrap();
        }
        for i in 200..300 {
            wav.write_sample(i as f32).unwrap();
        }
        drop(wav);
        // As if the disk filled mid-frame: 100 whole frames and 6 bytes more reached the
        // file, and the header claims 150.
        let len = std::fs::metadata(&path).unwrap().len();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(len - 50 * 8 + 6).unwrap();
        drop(file);
        assert_eq!(repair_wav(&path, 2).unwrap(), 100);
        let (_, samples) = read_wav(&path);
        assert_eq!(samples, (0..200).map(|i| i as f32).collect::<Vec<_>>());
    }

    #[test]
    fn bad_split_s_is_named_with_what_is_accepted() {
        assert_eq!(RecordConfig::default().validate(), Ok(()));
        for bad in [0.5, 0.0, -1.0, f64::NAN, 100_000.0] {
            let err = RecordConfig { split_s: bad }.validate().unwrap_err();
            assert!(err.contains("expected 1 to 86400 seconds"), "{err}");
        }
    }
}
