//! The command line and the config file, merged into one validated [`Settings`].
//!
//! `latentd [--source FILE.wav] [--audio auto|jack|pipewire|null] [--record FILE.wav]
//! [--config FILE] [--client-name NAME] [--autoconnect] [--rate HZ] [--period FRAMES]
//! [--loop-seconds S] [--log-level LEVEL]`
//!
//! The config file is TOML with the same settings in sections (every key optional):
//!
//! ```toml
//! [audio]
//! backend = "auto"        # auto | jack | pipewire | null
//! client_name = "latentd" # JACK client / PipeWire node name
//! autoconnect = false     # connect to the system playback ports
//! rate = 48000            # Hz, for null and PipeWire (JACK's server dictates its own)
//! period = 256            # frames, for null and PipeWire
//! [source]
//! file = "loop.wav"       # without it: the built-in test loop
//! loop_seconds = 8.0      # length of the built-in test loop
//! [record]
//! file = "out.wav"        # record what is played (32-bit float WAV)
//! [log]
//! level = "info"          # off | error | warn | info | debug | trace
//! ```
//!
//! Command-line flags override the file. Unknown keys, wrong types and out-of-range values
//! are errors that name the key, the value and what is accepted; every error is one line.
//!
//! Threading: main thread, before anything starts.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Parser, ValueEnum};
use serde::Deserialize;

use crate::audio::select::BackendChoice;

/// Accepted sample rates, in Hz.
pub const RATE_RANGE: std::ops::RangeInclusive<u32> = 8_000..=384_000;
/// Accepted periods, in frames.
pub const PERIOD_RANGE: std::ops::RangeInclusive<usize> = 16..=8192;
/// Longest built-in test loop, in seconds.
pub const MAX_LOOP_SECONDS: f64 = 600.0;
/// Longest client name (JACK's limit, less the terminating NUL).
pub const MAX_CLIENT_NAME: usize = 63;

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
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

impl LogLevel {
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

/// The command line, as typed (unset flags are `None`).
#[derive(Debug, Parser)]
#[command(
    name = "latentd",
    version,
    about = "Headless realtime generative-music daemon"
)]
pub struct Cli {
    /// Loop source (any WAV; converted to the output's rate, stereo). Default: a built-in
    /// test loop.
    #[arg(long, value_name = "FILE.wav")]
    pub source: Option<PathBuf>,
    /// Audio output: auto = JACK if a server answers, else PipeWire, else null.
    #[arg(long, value_name = "BACKEND")]
    pub audio: Option<BackendChoice>,
    /// Record what is played to this WAV file (32-bit float).
    #[arg(long, value_name = "FILE.wav")]
    pub record: Option<PathBuf>,
    /// TOML config file; flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// JACK client name / PipeWire node name [default: latentd].
    #[arg(long, value_name = "NAME")]
    pub client_name: Option<String>,
    /// Connect the output to the system playback ports.
    #[arg(long)]
    pub autoconnect: bool,
    /// Sample rate for null and PipeWire outputs [default: 48000].
    #[arg(long, value_name = "HZ")]
    pub rate: Option<u32>,
    /// Period for null and PipeWire outputs [default: 256].
    #[arg(long, value_name = "FRAMES")]
    pub period: Option<usize>,
    /// Length of the built-in test loop when there is no --source [default: 8].
    #[arg(long, value_name = "S", allow_negative_numbers = true)]
    pub loop_seconds: Option<f64>,
    /// Log verbosity [default: info].
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<LogLevel>,
}

/// The config file's `[audio]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AudioSection {
    backend: Option<BackendChoice>,
    client_name: Option<String>,
    autoconnect: Option<bool>,
    rate: Option<u32>,
    period: Option<usize>,
}

/// The config file's `[source]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceSection {
    file: Option<PathBuf>,
    loop_seconds: Option<f64>,
}

/// The config file's `[record]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordSection {
    file: Option<PathBuf>,
}

/// The config file's `[log]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogSection {
    level: Option<LogLevel>,
}

/// The whole config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    audio: AudioSection,
    #[serde(default)]
    source: SourceSection,
    #[serde(default)]
    record: RecordSection,
    #[serde(default)]
    log: LogSection,
}

/// Everything the daemon runs with, merged and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Loop source; `None` plays the built-in test loop.
    pub source: Option<PathBuf>,
    /// Which output to open.
    pub backend: BackendChoice,
    /// JACK client / PipeWire node name.
    pub client_name: String,
    /// Connect to the system playback ports.
    pub autoconnect: bool,
    /// Rate for null and PipeWire outputs.
    pub sample_rate: u32,
    /// Period for null and PipeWire outputs.
    pub period_frames: usize,
    /// Length of the built-in test loop.
    pub loop_seconds: f64,
    /// Where to record what is played.
    pub record: Option<PathBuf>,
    /// Log verbosity.
    pub log_level: LogLevel,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    /// Run with these settings.
    Run(Box<Settings>),
    /// Print this (help or version) on stdout and exit 0.
    Print(String),
}

/// A bad command line or config file, as one line of text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(pub String);

/// Parse `args` (program name first), read the config file if one is named, merge, validate.
pub fn parse_args<I, T>(args: I) -> Result<Invocation, SettingsError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    Ok(Invocation::Print(e.to_string()))
                }
                _ => Err(SettingsError(one_line_clap(&e.to_string()))),
            };
        }
    };
    let file = match &cli.config {
        Some(path) => read_config(path)?,
        None => ConfigFile::default(),
    };
    merge(cli, file).map(|s| Invocation::Run(Box::new(s)))
}

/// clap's multi-line message as one line: no `error:` prefix, no usage, no help hint.
fn one_line_clap(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more"))
        .map(|l| l.strip_prefix("error: ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join(" ")
}

fn read_config(path: &Path) -> Result<ConfigFile, SettingsError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| SettingsError(format!("config {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| {
        let (line_no, line) = match e.span() {
            Some(span) => {
                let start = span.start.min(text.len());
                let line_no = text[..start].matches('\n').count() + 1;
                let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
                (line_no, line)
            }
            None => (0, ""),
        };
        let message = e.message().trim().replace('\n', " ");
        if line.is_empty() {
            SettingsError(format!("config {}: {message}", path.display()))
        } else {
            SettingsError(format!(
                "config {}: line {line_no}: `{line}`: {message}",
                path.display()
            ))
        }
    })
}

/// A flag's value if given, else the file's, with the name to blame in errors.
fn pick<T>(flag: Option<T>, flag_name: &str, file: Option<T>, key: &str) -> Option<(T, String)> {
    match (flag, file) {
        (Some(v), _) => Some((v, flag_name.to_string())),
        (None, Some(v)) => Some((v, format!("config key {key}"))),
        (None, None) => None,
    }
}

fn bad(origin: &str, value: impl std::fmt::Display, accepted: &str) -> SettingsError {
    SettingsError(format!("{origin} = {value}: expected {accepted}"))
}

fn merge(cli: Cli, file: ConfigFile) -> Result<Settings, SettingsError> {
    let rate = pick(cli.rate, "--rate", file.audio.rate, "audio.rate");
    let sample_rate = match rate {
        Some((v, origin)) if !RATE_RANGE.contains(&v) => {
            return Err(bad(&origin, v, "8000..=384000 Hz"));
        }
        Some((v, _)) => v,
        None => 48_000,
    };
    let period = pick(cli.period, "--period", file.audio.period, "audio.period");
    let period_frames = match period {
        Some((v, origin)) if !PERIOD_RANGE.contains(&v) => {
            return Err(bad(&origin, v, "16..=8192 frames"));
        }
        Some((v, _)) => v,
        None => 256,
    };
    let seconds = pick(
        cli.loop_seconds,
        "--loop-seconds",
        file.source.loop_seconds,
        "source.loop_seconds",
    );
    let loop_seconds = match seconds {
        Some((v, origin)) if !(v > 0.0 && v <= MAX_LOOP_SECONDS) => {
            return Err(bad(&origin, v, "seconds above 0 and at most 600"));
        }
        Some((v, _)) => v,
        None => 8.0,
    };
    let name = pick(
        cli.client_name,
        "--client-name",
        file.audio.client_name,
        "audio.client_name",
    );
    let client_name = match name {
        Some((v, origin)) if v.is_empty() || v.len() > MAX_CLIENT_NAME || v.contains(':') => {
            return Err(bad(&origin, format!("{v:?}"), "1 to 63 bytes without ':'"));
        }
        Some((v, _)) => v,
        None => "latentd".into(),
    };
    Ok(Settings {
        source: cli.source.or(file.source.file),
        backend: cli
            .audio
            .or(file.audio.backend)
            .unwrap_or(BackendChoice::Auto),
        client_name,
        autoconnect: cli.autoconnect || file.audio.autoconnect.unwrap_or(false),
        sample_rate,
        period_frames,
        loop_seconds,
        record: cli.record.or(file.record.file),
        log_level: cli.log_level.or(file.log.level).unwrap_or(LogLevel::Info),
    })
}

#[cfg(test)]
mod tests;
