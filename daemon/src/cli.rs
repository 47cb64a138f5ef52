//! The command line, as clap parses it: [`Cli`], its subcommand and value enums, and the
//! defaults its flags show. The settings module merges it with the config file.
//!
//! `latentd [FLAGS]` runs the daemon; `latentd check-config [FILE]` validates a config file
//! (the default one when `FILE` is omitted), prints the effective settings and exits.
//!
//! Threading: main thread, before anything starts (and on SIGHUP, to reload).

use std::net::SocketAddr;
use std::path::PathBuf;

use std::ffi::OsString;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::audio::select::BackendChoice;
use crate::engine_select::{DEFAULT_ENGINE, DEFAULT_EP, EngineChoice};
use crate::logging::{DEFAULT_LEVEL, LogLevel, LogTarget};
use crate::osc::{DEFAULT_BIND, DEFAULT_OSCQUERY_PORT};

/// The rate of null and PipeWire outputs without `--rate` or `[audio] rate`, in Hz.
pub const DEFAULT_RATE: u32 = 48_000;
/// The period of null and PipeWire outputs without `--period` or `[audio] period`, in frames.
pub const DEFAULT_PERIOD: usize = 256;
/// The JACK client / PipeWire node name without `--client-name` or `[audio] client_name`.
pub const DEFAULT_CLIENT_NAME: &str = "latentd";
/// The loop's length when there is no source, without `--loop-seconds` or
/// `[source] loop_seconds`, in seconds.
pub const DEFAULT_LOOP_SECONDS: f64 = 60.0;
/// The audio output without `--audio` or `[audio] backend`.
pub const DEFAULT_BACKEND: BackendChoice = BackendChoice::Auto;
/// JACK input ports without `--inputs` or `[audio] inputs`.
pub const DEFAULT_INPUTS: usize = 0;

/// The command line, as typed: a flag not given is `None` (or `false`, or empty), so the
/// config file's value can stand; the defaults clap shows in `--help` are the ones the
/// settings module applies when neither gives a value (see [`parse`]).
#[derive(Debug, Parser)]
#[command(
    name = "latentd",
    version,
    about = "Headless realtime generative-music daemon"
)]
pub struct Cli {
    /// Loop source (any WAV; converted to the output's rate, stereo). Without one the loop
    /// starts silent, --loop-seconds long, and the engine fills it from the prompt (with
    /// `--engine off` it stays silent).
    #[arg(long, value_name = "FILE.wav")]
    pub source: Option<PathBuf>,
    /// Audio output: auto = JACK if a server answers, else PipeWire, else null.
    #[arg(long, value_name = "BACKEND", default_value = DEFAULT_BACKEND.as_str())]
    pub audio: Option<BackendChoice>,
    /// Record what is played to this WAV file (32-bit float).
    #[arg(long, value_name = "FILE.wav")]
    pub record: Option<PathBuf>,
    /// TOML config file; flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// JACK client name / PipeWire node name.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_CLIENT_NAME)]
    pub client_name: Option<String>,
    /// Connect the output to the system playback ports.
    #[arg(long)]
    pub autoconnect: bool,
    /// MIDI input: open a JACK `midi_in` port (controllers move knobs through maps).
    #[arg(long)]
    pub midi: bool,
    /// Sample rate for null and PipeWire outputs.
    #[arg(long, value_name = "HZ", default_value = DEFAULT_RATE.to_string())]
    pub rate: Option<u32>,
    /// Period for null and PipeWire outputs.
    #[arg(long, value_name = "FRAMES", default_value = DEFAULT_PERIOD.to_string())]
    pub period: Option<usize>,
    /// Length of the loop when there is no --source, in seconds: it starts silent and the
    /// engine fills it from the prompt.
    #[arg(
        long,
        value_name = "S",
        allow_negative_numbers = true,
        default_value = DEFAULT_LOOP_SECONDS.to_string()
    )]
    pub loop_seconds: Option<f64>,
    /// Log verbosity.
    #[arg(long, value_name = "LEVEL", default_value = DEFAULT_LEVEL.as_str())]
    pub log_level: Option<LogLevel>,
    /// Where logs go: auto (the journal under systemd, else stderr), journal, stderr.
    #[arg(long, value_name = "TARGET", default_value = LogTarget::Auto.as_str())]
    pub log_target: Option<String>,
    /// OSC address for UDP and TCP.
    #[arg(long, value_name = "ADDR:PORT", default_value = DEFAULT_BIND.to_string())]
    pub osc: Option<SocketAddr>,
    /// OSCQuery HTTP port; 0 turns it off.
    #[arg(long, value_name = "PORT", default_value = DEFAULT_OSCQUERY_PORT.to_string())]
    pub oscquery_port: Option<u16>,
    /// Folder that paths given over OSC must stay inside [default: the working directory].
    #[arg(long, value_name = "DIR")]
    pub media: Option<PathBuf>,
    /// Prompt at start (the saved state's prompt wins over the config file's, not over this).
    #[arg(long, value_name = "TAGS")]
    pub prompt: Option<String>,
    /// A knob value at start, `name=value`; may repeat.
    #[arg(long = "knob", value_name = "NAME=VALUE")]
    pub knobs: Vec<String>,
    /// Engine that generates into the loop; `--model DIR` alone picks `bundle`.
    #[arg(long, value_name = "ENGINE", default_value = DEFAULT_ENGINE.as_str())]
    pub engine: Option<EngineChoice>,
    /// A model bundle folder (`bundle.toml` plus ONNX files, docs/bundles.md); implies
    /// `--engine bundle` unless `--engine` says otherwise.
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// ONNX Runtime execution providers to try in order, comma-separated (`tensorrt`,
    /// `cuda`, `cpu`; `[model] ep`).
    #[arg(long, value_name = "LIST", default_value = DEFAULT_EP.name())]
    pub ep: Option<String>,
    /// Turn the near-playhead repatch off (for A/B latency measurement).
    #[arg(long)]
    pub no_repatch: bool,
    /// State file (knobs, prompt, references, loop band, source) [default:
    /// $STATE_DIRECTORY/state.json, else $XDG_STATE_HOME/latentd/state.json, else
    /// ~/.local/state/latentd/state.json].
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// JACK input ports `in_1 .. in_N` for `/capture`; 0 opens none.
    #[arg(long, value_name = "N", default_value = DEFAULT_INPUTS.to_string())]
    pub inputs: Option<usize>,
    /// Subcommand; without one, run the daemon.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// `latentd` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a config file and print the effective settings.
    CheckConfig {
        /// The file [default: $XDG_CONFIG_HOME/latentd/latentd.toml or
        /// /etc/latentd/latentd.toml].
        file: Option<PathBuf>,
    },
}

/// Parse `args` (program name first). Help, version and errors come from the command with
/// every default shown; the values from the same command with the defaults removed, so a
/// flag not typed is `None` and does not hide the config file's key.
pub fn parse<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    Cli::command().try_get_matches_from(&args)?;
    let typed = Cli::command()
        .mut_args(|arg| arg.default_value(None::<&'static str>))
        .try_get_matches_from(&args)?;
    Cli::from_arg_matches(&typed)
}

/// clap's multi-line message as one line: no `error:` prefix, no usage, no help hint.
pub fn one_line(e: &clap::Error) -> String {
    e.to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more"))
        .map(|l| l.strip_prefix("error: ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join(" ")
}
