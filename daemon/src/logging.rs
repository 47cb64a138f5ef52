//! Logging: [`init`] sends records to the journal (with structured fields) when stderr is
//! connected to it, to stderr otherwise, at a level [`set_level`] can change live (SIGHUP);
//! [`rt_log`] is the lock-free path by which realtime code reports events without logging
//! itself.
//!
//! Threading: [`init`] runs once on the main thread before any other thread starts.
//! [`RtLogSender::push`] is realtime-safe: it copies a small `Copy` [`RtEvent`] (codes and
//! numbers, no `String`) into a preallocated rtrb ring; no allocation, no lock, no syscall.
//! An [`RtLogger`] thread drains that ring and turns each event into a log record with the
//! target [`RT_TARGET`] and the structured field `RT_EVENT=<code>`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use log::{Level, LevelFilter, Log};

use crate::stoppable::StoppableThread;

/// Log verbosity (`--log-level`, `[log] level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Nothing.
    Off,
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// What the daemon does (the default).
    Info,
    /// Details for debugging.
    Debug,
    /// Everything.
    Trace,
}

/// The level without `--log-level` or `[log] level`.
pub const DEFAULT_LEVEL: LogLevel = LogLevel::Info;

impl LogLevel {
    /// The spelling on the command line and in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }

    /// As a `log` filter.
    pub fn filter(self) -> log::LevelFilter {
        match self {
            Self::Off => log::LevelFilter::Off,
            Self::Error => log::LevelFilter::Error,
            Self::Warn => log::LevelFilter::Warn,
            Self::Info => log::LevelFilter::Info,
            Self::Debug => log::LevelFilter::Debug,
            Self::Trace => log::LevelFilter::Trace,
        }
    }
}

/// Where log records go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    /// The journal when stderr is connected to it (`JOURNAL_STREAM` matches), else stderr.
    Auto,
    /// The journal's native protocol, with structured fields.
    Journal,
    /// Plain lines on stderr.
    Stderr,
}

impl LogTarget {
    /// The spelling in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Journal => "journal",
            Self::Stderr => "stderr",
        }
    }
}

impl FromStr for LogTarget {
    type Err = LogError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "auto" => Ok(Self::Auto),
            "journal" => Ok(Self::Journal),
            "stderr" => Ok(Self::Stderr),
            other => Err(LogError::UnknownTarget(other.to_owned())),
        }
    }
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The level is not one of off, error, warn, info, debug, trace.
    #[error("unknown log level {0:?} (expected off, error, warn, info, debug or trace)")]
    UnknownLevel(String),
    /// The target is not one of auto, journal, stderr.
    #[error("unknown log target {0:?} (expected auto, journal or stderr)")]
    UnknownTarget(String),
    /// The journal was asked for but its socket could not be opened.
    #[error("cannot open the journal socket: {0}")]
    Journal(#[source] std::io::Error),
    /// A logger is already installed in this process.
    #[error("a logger is already installed")]
    AlreadyInstalled,
}

/// Parses a config or command-line level (case-insensitive).
pub fn parse_level(text: &str) -> Result<LevelFilter, LogError> {
    LevelFilter::from_str(text).map_err(|_| LogError::UnknownLevel(text.to_owned()))
}

/// Installs the process logger at `level`; returns the target actually chosen
/// ([`LogTarget::Journal`] or [`LogTarget::Stderr`]). With [`LogTarget::Auto`], a journal
/// stream whose native socket cannot be opened falls back to stderr (which systemd still
/// forwards to the journal, without structured fields) and says so in a warning.
pub fn init(level: LevelFilter, target: LogTarget) -> Result<LogTarget, LogError> {
    let wants_journal = match target {
        LogTarget::Auto => systemd_journal_logger::connected_to_journal(),
        LogTarget::Journal => true,
        LogTarget::Stderr => false,
    };
    if wants_journal {
        match systemd_journal_logger::JournalLog::new() {
            Ok(journal) => {
                journal
                    .with_syslog_identifier("latentd".to_owned())
                    .install()
                    .map_err(|_| LogError::AlreadyInstalled)?;
                log::set_max_level(level);
                return Ok(LogTarget::Journal);
            }
            Err(error) if target == LogTarget::Journal => return Err(LogError::Journal(error)),
            Err(error) => {
                init_stderr(level)?;
                log::warn!("journal socket unavailable ({error}): logging plain lines to stderr");
                return Ok(LogTarget::Stderr);
            }
        }
    }
    init_stderr(level)?;
    Ok(LogTarget::Stderr)
}

/// Changes the level of the installed logger, live (SIGHUP): both the journal and the stderr
/// logger filter by `log`'s global maximum only, so this is the one switch.
pub fn set_level(level: LevelFilter) {
    log::set_max_level(level);
}

fn init_stderr(level: LevelFilter) -> Result<(), LogError> {
    // env_logger keeps its own filter, fixed when it is built; it passes everything here so
    // that the global maximum ([`set_level`]) alone decides, and a reload can raise it.
    let inner = env_logger::Builder::new()
        .filter_level(LevelFilter::Trace)
        .target(env_logger::Target::Stderr)
        .format_timestamp_millis()
        .build();
    let logger: &'static StderrLog = Box::leak(Box::new(StderrLog { inner }));
    log::set_logger(logger).map_err(|_| LogError::AlreadyInstalled)?;
    set_level(level);
    Ok(())
}

/// env_logger behind the global level, with libjack's chatter held back below debug.
struct StderrLog {
    inner: env_logger::Logger,
}

impl StderrLog {
    /// libjack reports every failed connect (and its shared-memory chatter) as errors
    /// through the jack crate's log bridge; latentd states the outcome in its own words, so
    /// libjack's lines only show when debugging.
    fn is_libjack_below_debug(target: &str) -> bool {
        let libjack = ["jack", "jack_sys"].iter().any(|module| {
            target == *module
                || target
                    .strip_prefix(module)
                    .is_some_and(|rest| rest.starts_with("::"))
        });
        libjack && log::max_level() < LevelFilter::Debug
    }
}

impl Log for StderrLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level() && !Self::is_libjack_below_debug(metadata.target())
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// Log target of records made from [`RtEvent`]s.
pub const RT_TARGET: &str = "latentd::rt";

/// Something the realtime callback saw, as plain numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtEvent {
    /// The audio server reported an over- or underrun; `total` counts them since start.
    Xrun {
        /// Xruns since the output started.
        total: u64,
    },
    /// The server changed the period.
    PeriodChanged {
        /// New frames per callback.
        frames: u32,
    },
    /// The server changed the sample rate.
    SampleRateChanged {
        /// New frames per second.
        rate: u32,
    },
    /// The playhead ring caught a torn read and played silence for that period.
    TornRead {
        /// Torn reads since start.
        total: u64,
    },
    /// The record tap's queue was full; frames were dropped.
    RecordDropped {
        /// Frames dropped in this callback.
        frames: u32,
    },
    /// A callback asked for more frames than the output was prepared for.
    PeriodOverCapacity {
        /// Frames asked for.
        requested: u32,
        /// Frames the buffers hold.
        capacity: u32,
    },
}

impl RtEvent {
    /// Short stable code, the journal's `RT_EVENT` field.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Xrun { .. } => "xrun",
            Self::PeriodChanged { .. } => "period_changed",
            Self::SampleRateChanged { .. } => "rate_changed",
            Self::TornRead { .. } => "torn_read",
            Self::RecordDropped { .. } => "record_dropped",
            Self::PeriodOverCapacity { .. } => "period_over_capacity",
        }
    }

    /// The level its record is logged at.
    pub fn level(&self) -> Level {
        match self {
            Self::PeriodChanged { .. } | Self::SampleRateChanged { .. } => Level::Info,
            Self::Xrun { .. } | Self::TornRead { .. } | Self::RecordDropped { .. } => Level::Warn,
            Self::PeriodOverCapacity { .. } => Level::Error,
        }
    }
}

impl fmt::Display for RtEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Xrun { total } => write!(f, "audio xrun ({total} since start)"),
            Self::PeriodChanged { frames } => write!(f, "period changed to {frames} frames"),
            Self::SampleRateChanged { rate } => write!(f, "sample rate changed to {rate} Hz"),
            Self::TornRead { total } => write!(f, "torn ring read ({total} since start)"),
            Self::RecordDropped { frames } => write!(f, "record tap dropped {frames} frames"),
            Self::PeriodOverCapacity {
                requested,
                capacity,
            } => write!(
                f,
                "callback asked for {requested} frames, buffers hold {capacity}"
            ),
        }
    }
}

/// Creates the realtime event queue with room for `capacity` events.
pub fn rt_log(capacity: usize) -> (RtLogSender, RtLogReceiver) {
    let (producer, consumer) = rtrb::RingBuffer::new(capacity);
    let dropped = Arc::new(AtomicU64::new(0));
    (
        RtLogSender {
            producer,
            dropped: Arc::clone(&dropped),
        },
        RtLogReceiver { consumer, dropped },
    )
}

/// The realtime end: moved into the callback.
pub struct RtLogSender {
    producer: rtrb::Producer<RtEvent>,
    dropped: Arc<AtomicU64>,
}

impl RtLogSender {
    /// Queues `event`; when the queue is full, counts it as dropped and returns false.
    /// Realtime-safe.
    #[inline]
    pub fn push(&mut self, event: RtEvent) -> bool {
        match self.producer.push(event) {
            Ok(()) => true,
            Err(_) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
}

/// The draining end, handed to [`RtLogger::spawn`].
pub struct RtLogReceiver {
    consumer: rtrb::Consumer<RtEvent>,
    dropped: Arc<AtomicU64>,
}

impl RtLogReceiver {
    /// Logs every queued event and any new drops; returns how many events it logged.
    pub fn drain(&mut self, reported_drops: &mut u64) -> usize {
        let mut logged = 0;
        while let Ok(event) = self.consumer.pop() {
            log::log!(
                target: RT_TARGET,
                event.level(),
                rt_event = event.code();
                "{event}"
            );
            logged += 1;
        }
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > *reported_drops {
            log::warn!(
                target: RT_TARGET,
                rt_event = "queue_full", rt_dropped = dropped - *reported_drops;
                "realtime event queue full: {} events dropped",
                dropped - *reported_drops
            );
            *reported_drops = dropped;
        }
        logged
    }
}

/// The logger thread: drains an [`RtLogReceiver`] every `poll` interval.
pub struct RtLogger(StoppableThread<u64>);

impl RtLogger {
    /// Starts the thread.
    pub fn spawn(mut receiver: RtLogReceiver, poll: Duration) -> std::io::Result<Self> {
        StoppableThread::spawn("rt-log", move |stop_rx| {
            let mut reported_drops = 0;
            let mut logged = 0u64;
            loop {
                logged += receiver.drain(&mut reported_drops) as u64;
                match stop_rx.recv_timeout(poll) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                        logged += receiver.drain(&mut reported_drops) as u64;
                        return logged;
                    }
                }
            }
        })
        .map(Self)
    }

    /// Drains what is left, stops the thread, and returns how many events it logged (0 if
    /// it panicked).
    pub fn stop(self) -> u64 {
        self.0.stop().unwrap_or(0)
    }
}
