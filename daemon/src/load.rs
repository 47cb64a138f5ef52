//! Loading an audio file without keeping a stop signal waiting: the decode and
//! resample of a long WAV (up to the length limit) take seconds, while SIGTERM must end the
//! daemon within one. [`load_wav_or_stop`] runs the load on its own thread and waits for it,
//! looking at the stop flag every [`STOP_POLL`]; on a stop it returns
//! [`LoadError::Stopped`] at once and abandons the thread, which ends with the process
//! (what it computes is never used, and nothing it does outlives the process: it only
//! reads the file and allocates).
//!
//! Used by the start (main thread) and by the `/source`, `/timbre` and `/structure` jobs
//! (encoder thread): a stop during a job's load fails that job at once, so the stop does
//! not wait for it either.
//!
//! Threading: called from the main thread or the encoder thread; spawns one short-lived
//! loader thread (`latentd-load`) per call.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use latentd_engine::audio_file::{self, AudioFileError, LoopAudio};

/// How often the wait for a load looks at the stop flag: the most a stop is delayed by it.
pub const STOP_POLL: Duration = Duration::from_millis(10);

/// Why a load gave nothing.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A stop signal arrived first.
    #[error("stopped while loading {}", .0.display())]
    Stopped(std::path::PathBuf),
    /// The file could not be loaded.
    #[error(transparent)]
    File(#[from] AudioFileError),
    /// The loader thread could not start or died.
    #[error("loading {}: {reason}", path.display())]
    Thread {
        /// The file.
        path: std::path::PathBuf,
        /// What happened to the thread.
        reason: String,
    },
}

/// [`audio_file::load_wav`] of `path` at `rate` with `channels`, given up as soon as `stop`
/// is set (checked before the load starts, then every [`STOP_POLL`]).
pub fn load_wav_or_stop(
    path: &Path,
    rate: u32,
    channels: usize,
    stop: &AtomicBool,
) -> Result<LoopAudio, LoadError> {
    let stopped = || LoadError::Stopped(path.to_path_buf());
    if stop.load(Ordering::Relaxed) {
        return Err(stopped());
    }
    let (tx, rx) = mpsc::sync_channel(1);
    let owned = path.to_path_buf();
    std::thread::Builder::new()
        .name("latentd-load".into())
        .spawn(move || {
            // The receiver may be gone (a stop came first): nobody wants the result then.
            let _ = tx.send(audio_file::load_wav(&owned, rate, channels));
        })
        .map_err(|e| LoadError::Thread {
            path: path.to_path_buf(),
            reason: format!("cannot start the loader thread: {e}"),
        })?;
    loop {
        match rx.recv_timeout(STOP_POLL) {
            Ok(result) => return result.map_err(LoadError::from),
            Err(RecvTimeoutError::Timeout) if stop.load(Ordering::Relaxed) => {
                return Err(stopped());
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                return Err(LoadError::Thread {
                    path: path.to_path_buf(),
                    reason: "the loader thread panicked".into(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn long_wav(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("long.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 44_100,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        let mut frames = w.get_i16_writer(44_100 * 60);
        for i in 0..44_100 * 60 {
            frames.write_sample((i % 200) as i16 * 50);
        }
        frames.flush().unwrap();
        w.finalize().unwrap();
        path
    }

    #[test]
    fn a_stop_during_the_load_returns_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = long_wav(dir.path());
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let setter = {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                stop.store(true, Ordering::Relaxed);
                Instant::now()
            })
        };
        let result = load_wav_or_stop(&path, 48_000, 2, &stop);
        let returned = Instant::now();
        let set_at = setter.join().unwrap();
        assert!(matches!(result, Err(LoadError::Stopped(_))), "{result:?}");
        assert!(returned.duration_since(set_at) < Duration::from_millis(100));
    }

    #[test]
    fn without_a_stop_the_file_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("short.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 48_000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for i in 0..4800 {
            w.write_sample(i as f32 / 4800.0).unwrap();
        }
        w.finalize().unwrap();
        let audio = load_wav_or_stop(&path, 48_000, 2, &AtomicBool::new(false)).unwrap();
        assert_eq!(audio.frames(), 2400);
    }
}
