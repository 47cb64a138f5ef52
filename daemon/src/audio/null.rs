//! The null output: no audio server, a clock thread that plays the ring into a scratch buffer
//! at the real-time rate. For headless runs without JACK or PipeWire, recording through the
//! record tap, and tests.
//!
//! Threading: [`NullOutput::open`] and [`RunningOutput::stop`] run on the main thread. The
//! clock thread (named `latentd-null-clock`) asks for `SCHED_FIFO` once (kept if the system
//! allows it, ignored otherwise), then loops on an absolute-deadline schedule: it calls
//! [`ProcessorSlot::process_interleaved`] once per period, then sleeps until the next
//! deadline (`deadline += period`, so no drift accumulates). When it falls more than
//! [`RESYNC_PERIODS`] periods behind it counts one xrun and restarts the schedule from now
//! instead of bursting to catch up. The buffer is allocated before the thread starts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{
    AudioError, AudioOutput, OutputFormat, OutputStats, OutputStatsSnapshot, ProcessorSlot,
    RunningOutput,
};

/// How many periods behind schedule the clock may fall before it counts an xrun and resyncs.
pub const RESYNC_PERIODS: u32 = 4;

/// `SCHED_FIFO` priority the clock thread asks for (below JACK's usual 70-95).
const FIFO_PRIORITY: i32 = 10;

/// An opened null output (nothing runs until [`start`](AudioOutput::start)).
#[derive(Debug)]
pub struct NullOutput {
    format: OutputFormat,
}

impl NullOutput {
    /// A null output of `channels` channels at `sample_rate`, `period_frames` per period.
    pub fn open(
        sample_rate: u32,
        period_frames: usize,
        channels: usize,
    ) -> Result<Self, AudioError> {
        let unsupported = |what: String| AudioError::Unsupported {
            backend: "null",
            what,
        };
        if sample_rate == 0 {
            return Err(unsupported("a sample rate of 0 Hz".into()));
        }
        if period_frames == 0 {
            return Err(unsupported("a period of 0 frames".into()));
        }
        if channels == 0 {
            return Err(unsupported("0 channels".into()));
        }
        Ok(Self {
            format: OutputFormat {
                sample_rate,
                period_frames,
                channels,
            },
        })
    }
}

impl AudioOutput for NullOutput {
    fn name(&self) -> &'static str {
        "null"
    }

    fn format(&self) -> OutputFormat {
        self.format
    }

    fn start_shared(
        self: Box<Self>,
        processor: Arc<ProcessorSlot>,
    ) -> Result<Box<dyn RunningOutput>, AudioError> {
        let format = self.format;
        let stats = processor.stats();
        let stop = Arc::new(AtomicBool::new(false));
        let period =
            Duration::from_secs_f64(format.period_frames as f64 / format.sample_rate as f64);
        let mut buffer = vec![0.0f32; format.period_frames * format.channels];
        let thread = {
            let stop = Arc::clone(&stop);
            let stats = Arc::clone(&stats);
            std::thread::Builder::new()
                .name("latentd-null-clock".into())
                .spawn(move || {
                    let fifo = try_sched_fifo();
                    log::debug!("null: clock thread started (SCHED_FIFO: {fifo})");
                    let late_limit = period * RESYNC_PERIODS;
                    let mut deadline = Instant::now();
                    while !stop.load(Ordering::Acquire) {
                        processor.process_interleaved(&mut buffer, format.channels);
                        deadline += period;
                        let now = Instant::now();
                        if now > deadline + late_limit {
                            stats.xruns.fetch_add(1, Ordering::Relaxed);
                            deadline = now;
                        } else if deadline > now {
                            std::thread::sleep(deadline - now);
                        }
                    }
                })
                .map_err(|e| AudioError::Other {
                    backend: "null",
                    detail: format!("cannot start the clock thread: {e}"),
                })?
        };
        Ok(Box::new(RunningNull {
            format,
            stats,
            stop,
            thread,
        }))
    }
}

/// Ask for `SCHED_FIFO` on the calling thread; `true` if granted.
fn try_sched_fifo() -> bool {
    let param = libc::sched_param {
        sched_priority: FIFO_PRIORITY,
    };
    // SAFETY: plain FFI call on the current thread with a valid, initialised parameter.
    unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) == 0 }
}

/// A started null output.
struct RunningNull {
    format: OutputFormat,
    stats: Arc<OutputStats>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl RunningOutput for RunningNull {
    fn name(&self) -> &'static str {
        "null"
    }

    fn format(&self) -> OutputFormat {
        self.format
    }

    fn stats(&self) -> OutputStatsSnapshot {
        self.stats.snapshot()
    }

    fn called_every_period(&self) -> bool {
        true
    }

    fn stop(self: Box<Self>) -> Result<(), AudioError> {
        self.stop.store(true, Ordering::Release);
        self.thread.join().map_err(|_| AudioError::Other {
            backend: "null",
            detail: "the clock thread panicked".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::PeriodProcessor;
    use latentd_engine::PlayheadRing;

    fn start(rate: u32, period: usize) -> (Box<dyn RunningOutput>, latentd_engine::RingHandle) {
        let ring = PlayheadRing::silence(
            rate as usize,
            2,
            rate,
            PlayheadRing::guard_for_period(period),
        )
        .unwrap();
        let handle = ring.handle();
        let (_writer, reader) = ring.split();
        let output = Box::new(NullOutput::open(rate, period, 2).unwrap());
        assert_eq!(output.format().period_frames, period);
        let running = output.start(PeriodProcessor::new(reader, None)).unwrap();
        (running, handle)
    }

    #[test]
    fn plays_one_period_per_period_of_wall_time() {
        let (rate, period) = (48_000, 960); // 20 ms periods
        let t0 = Instant::now();
        let (running, handle) = start(rate, period);
        std::thread::sleep(Duration::from_millis(1000));
        let stats = running.stats();
        let elapsed = t0.elapsed().as_secs_f64();
        let expected = elapsed * rate as f64 / period as f64;
        running.stop().unwrap();
        let after_stop = handle.counters();
        assert!(
            (stats.callbacks as f64 - expected).abs() <= 0.1 * expected + 2.0,
            "{} periods in {elapsed:.3} s, expected about {expected:.1}",
            stats.callbacks
        );
        assert_eq!(stats.frames, stats.callbacks * period as u64);
        // The ring's reader advanced with the output, and stopped with it.
        assert!(after_stop.periods >= stats.callbacks);
        assert_eq!(after_stop.frames_played, after_stop.periods * period as u64);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(handle.counters(), after_stop);
        assert_eq!(
            handle.playhead() as u64,
            after_stop.frames_played % rate as u64
        );
    }

    #[test]
    fn stop_returns_promptly() {
        let (running, _handle) = start(48_000, 4096); // 85 ms periods
        std::thread::sleep(Duration::from_millis(20));
        let t0 = Instant::now();
        running.stop().unwrap();
        assert!(
            t0.elapsed() < Duration::from_millis(200),
            "{:?}",
            t0.elapsed()
        );
    }

    #[test]
    fn bad_formats_are_refused() {
        assert!(NullOutput::open(0, 256, 2).is_err());
        assert!(NullOutput::open(48_000, 0, 2).is_err());
        let err = NullOutput::open(48_000, 256, 0).unwrap_err();
        assert_eq!(err.to_string(), "null: unsupported: 0 channels");
    }
}
