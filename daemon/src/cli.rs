//! The command line, as clap parses it: [`Cli`], its subcommand and value enums. The
//! settings it yields once merged with the config file are [`crate::settings`]'s.
//!
//! `latentd [FLAGS]` runs the daemon; `latentd check-config [FILE]` validates a config file
//! (the default one when `FILE` is omitted), prints the effective settings and exits.
//!
//! Threading: main thread, before anything starts (and on SIGHUP, to reload).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::audio::select::BackendChoice;
use crate::engine_select::EngineChoice;
use crate::logging::LogLevel;

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
    /// MIDI input: open a JACK `midi_in` port (controllers move knobs through maps).
    #[arg(long)]
    pub midi: bool,
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
    /// Where logs go: auto (the journal under systemd, else stderr), journal, stderr.
    #[arg(long, value_name = "TARGET")]
    pub log_target: Option<String>,
    /// OSC address for UDP and TCP [default: 127.0.0.1:7770].
    #[arg(long, value_name = "ADDR:PORT")]
    pub osc: Option<SocketAddr>,
    /// OSCQuery HTTP port; 0 turns it off [default: 7771].
    #[arg(long, value_name = "PORT")]
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
    /// Engine: builtin-cpu (the default), builtin-cuda (NVIDIA GPU; a build with the `cuda`
    /// feature), auto (CUDA when a usable device exists, else the CPU), or off (play the loop
    /// untouched).
    #[arg(long, value_name = "ENGINE")]
    pub engine: Option<EngineChoice>,
    /// A model bundle folder (`bundle.toml` plus ONNX files, docs/bundles.md); implies
    /// `--engine bundle` unless `--engine` says otherwise.
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// ONNX Runtime execution providers to try in order, comma-separated (`tensorrt`,
    /// `cuda`, `cpu`; `[model] ep`).
    #[arg(long, value_name = "LIST")]
    pub ep: Option<String>,
    /// Turn the near-playhead repatch off (for A/B latency measurement).
    #[arg(long)]
    pub no_repatch: bool,
    /// State file (knobs, prompt, references, loop band, source).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// JACK input ports `in_1 .. in_N` for `/capture`; 0 opens none [default: 0].
    #[arg(long, value_name = "N")]
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
