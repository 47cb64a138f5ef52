//! The record tap's far end: a thread that drains what the audio callback played (queued by
//! [`PeriodProcessor`](crate::audio::PeriodProcessor) into an `rtrb` ring) into a 32-bit
//! float WAV file.
//!
//! Threading: [`Recorder::start`] and [`Recorder::finish`] run on the main thread. The
//! returned [`rtrb::Producer`] goes to the audio callback through
//! `PeriodProcessor::new(reader, Some((producer, channels)))`; the callback only queues
//! whole frames, as many as fit, and counts the rest as `record_dropped`. The writer thread
//! (named `latentd-record`) is not realtime: it writes what is queued, sleeps
//! [`POLL_INTERVAL`] when the queue is empty, and on `finish` drains the rest and finalizes
//! the WAV header. Stop the output before `finish` so nothing is queued after the drain.
//!
//! The header is kept valid while the recording runs: every [`HEADER_UPDATE_INTERVAL`] the
//! writer thread (never the audio callback) rewrites the RIFF and data sizes and flushes,
//! so a daemon killed by SIGKILL, a crash or a power cut leaves a WAV file that opens, with
//! all but at most the last interval of audio counted in its header.

use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the writer thread sleeps when the queue is empty.
pub const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// How often the writer thread rewrites the WAV header's sizes while recording: the most
/// audio a killed daemon's recording can leave uncounted.
pub const HEADER_UPDATE_INTERVAL: Duration = Duration::from_secs(1);

/// Why a recording could not be started or completed. Every variant names the path.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The format cannot be recorded.
    #[error("record {}: {what}", path.display())]
    Format {
        /// The recording's path.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The file could not be created, written or finalized.
    #[error("record {}: {reason}", path.display())]
    Write {
        /// The recording's path.
        path: PathBuf,
        /// hound's or the system's message.
        reason: String,
    },
    /// The writer thread panicked.
    #[error("record {}: the writer thread panicked", path.display())]
    Panicked {
        /// The recording's path.
        path: PathBuf,
    },
}

type WavFile = hound::WavWriter<BufWriter<std::fs::File>>;

/// A running recording; [`finish`](Self::finish) it to get a complete WAV file.
pub struct Recorder {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<u64, RecordError>>,
}

impl Recorder {
    /// Create `path` (a float WAV of `channels` at `sample_rate`) and start the writer
    /// thread; returns it with the producer for the audio callback, which can queue
    /// `capacity_seconds` of audio before frames are dropped.
    pub fn start(
        path: &Path,
        sample_rate: u32,
        channels: usize,
        capacity_seconds: f64,
    ) -> Result<(Recorder, rtrb::Producer<f32>), RecordError> {
        let format_err = |what: String| RecordError::Format {
            path: path.to_path_buf(),
            what,
        };
        if channels == 0 || channels > u16::MAX as usize {
            return Err(format_err(format!("{channels} channels")));
        }
        if sample_rate == 0 {
            return Err(format_err("a sample rate of 0 Hz".into()));
        }
        if !(capacity_seconds.is_finite() && capacity_seconds > 0.0) {
            return Err(format_err(format!(
                "a queue of {capacity_seconds} seconds (must be above 0)"
            )));
        }
        let spec = hound::WavSpec {
            channels: channels as u16,
            sample_rate,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let writer = hound::WavWriter::create(path, spec).map_err(|e| RecordError::Write {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let frames = ((capacity_seconds * sample_rate as f64).ceil() as usize).max(1);
        let (producer, consumer) = rtrb::RingBuffer::new(frames * channels);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            let thread_path = path.to_path_buf();
            std::thread::Builder::new()
                .name("latentd-record".into())
                .spawn(move || drain_loop(&thread_path, writer, consumer, channels, &stop))
                .map_err(|e| RecordError::Write {
                    path: path.to_path_buf(),
                    reason: format!("cannot start the writer thread: {e}"),
                })?
        };
        Ok((
            Recorder {
                path: path.to_path_buf(),
                stop,
                thread,
            },
            producer,
        ))
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Drain what is still queued, finalize the WAV header, and return the frames written.
    pub fn finish(self) -> Result<u64, RecordError> {
        self.stop.store(true, Ordering::Release);
        self.thread.join().map_err(|_| RecordError::Panicked {
            path: self.path.clone(),
        })?
    }
}

/// The writer thread: write what is queued until told to stop, then drain and finalize.
fn drain_loop(
    path: &Path,
    mut writer: WavFile,
    mut consumer: rtrb::Consumer<f32>,
    channels: usize,
    stop: &AtomicBool,
) -> Result<u64, RecordError> {
    let write_err = |e: hound::Error| RecordError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut samples_written = 0u64;
    let mut header_updated = Instant::now();
    loop {
        // Read the flag first: everything queued before `stop` was set is then visible to
        // the drain below, so the last pass misses nothing.
        let stopping = stop.load(Ordering::Acquire);
        let available = consumer.slots();
        if available > 0 {
            let chunk = consumer
                .read_chunk(available)
                .expect("slots() said these were available");
            let (a, b) = chunk.as_slices();
            for &s in a.iter().chain(b) {
                writer.write_sample(s).map_err(write_err)?;
            }
            chunk.commit_all();
            samples_written += available as u64;
            if header_updated.elapsed() >= HEADER_UPDATE_INTERVAL {
                // Sizes in the header, buffer to the file: a kill now leaves a valid WAV.
                writer.flush().map_err(write_err)?;
                header_updated = Instant::now();
            }
        } else if stopping {
            break;
        } else {
            std::thread::sleep(POLL_INTERVAL);
        }
    }
    writer.finalize().map_err(write_err)?;
    Ok(samples_written / channels as u64)
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

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("latentd-record-{}-{name}", std::process::id()))
    }

    #[test]
    fn recording_holds_exactly_what_the_ring_played() {
        let (channels, rate, period) = (2usize, 48_000u32, 256usize);
        let loop_frames = 3001; // not a multiple of the period: the wrap lands mid-period
        let content: Vec<f32> = (0..loop_frames * channels)
            .map(|i| ((i as f32) * 0.013).sin() * 0.5 + (i % 7) as f32 * 1e-3)
            .collect();
        let ring = PlayheadRing::from_interleaved(
            content.clone(),
            channels,
            rate,
            PlayheadRing::guard_for_period(period),
        )
        .unwrap();
        let (_writer, reader) = ring.split();
        let path = temp_path("exact.wav");
        let (recorder, producer) = Recorder::start(&path, rate, channels, 0.5).unwrap();
        let mut processor = PeriodProcessor::new(reader, Some((producer, channels)));
        let stats = processor.stats();
        let mut buffer = vec![0.0f32; period * channels];
        let periods = 40; // 10240 frames, about 3.4 laps
        for _ in 0..periods {
            processor.process_interleaved(&mut buffer, channels);
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(processor);
        let frames = recorder.finish().unwrap();
        assert_eq!(frames, (periods * period) as u64);
        assert_eq!(stats.snapshot().record_dropped, 0);

        let mut wav = hound::WavReader::open(&path).unwrap();
        let spec = wav.spec();
        assert_eq!(
            (spec.channels, spec.sample_rate, spec.bits_per_sample),
            (2, rate, 32)
        );
        let recorded: Vec<f32> = wav.samples::<f32>().map(Result::unwrap).collect();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(recorded.len(), periods * period * channels);
        for (i, &s) in recorded.iter().enumerate() {
            assert_eq!(s, content[i % content.len()], "sample {i}");
        }
    }

    #[test]
    fn a_full_queue_drops_frames_and_counts_them() {
        let path = temp_path("full.wav");
        // A queue of 100 frames, never drained before the processor fills it.
        let (recorder, producer) = Recorder::start(&path, 1000, 1, 0.1).unwrap();
        let ring =
            PlayheadRing::silence(1000, 1, 1000, PlayheadRing::guard_for_period(64)).unwrap();
        let (_w, reader) = ring.split();
        let mut processor = PeriodProcessor::new(reader, Some((producer, 1)));
        let stats = processor.stats();
        let mut buffer = vec![0.0f32; 500];
        processor.process_interleaved(&mut buffer, 1);
        drop(processor);
        let frames = recorder.finish().unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(frames, 100);
        assert_eq!(stats.snapshot().record_dropped, 400);
    }

    #[test]
    fn unwritable_path_is_named() {
        let path = Path::new("/nonexistent-dir-latentd/out.wav");
        let err = Recorder::start(path, 48_000, 2, 1.0).err().unwrap();
        assert!(
            err.to_string()
                .starts_with("record /nonexistent-dir-latentd/out.wav: "),
            "{err}"
        );
    }
}
