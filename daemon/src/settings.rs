//! The daemon's settings: the config file ([`crate::config`]) and the command line
//! ([`crate::cli`]) merged into one validated [`Settings`], with the defaults of every key
//! and flag.
//!
//! Command-line flags override the file. Unknown keys, wrong types and out-of-range values
//! are errors that name the key, the value and what is accepted; every error is one line.
//! `check-config` prints the result as a config file ([`Settings::to_toml`]).
//!
//! Threading: main thread, before anything starts (and on SIGHUP, to reload).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use latentd_engine::conditioning::check_prompt;
use latentd_engine::knobs::KnobId;
use latentd_engine::model::bundle::onnx::Provider;
use latentd_engine::runner::lead::LeadConfig;

use crate::audio::input::MAX_INPUTS;
use crate::audio::select::BackendChoice;
use crate::cli::{
    Cli, Command, DEFAULT_BACKEND, DEFAULT_CLIENT_NAME, DEFAULT_INPUTS, DEFAULT_LOOP_SECONDS,
    DEFAULT_PERIOD, DEFAULT_RATE,
};
use crate::config::{
    AdvertiseKey, ConfigError, ConfigFile, ModelSection, default_config_path, read_config,
};
use crate::discovery::Advertise;
use crate::engine_select::{
    DEFAULT_ENGINE, DEFAULT_EP, DEFAULT_MODEL_THREADS, EngineChoice, MODEL_THREADS_RANGE,
    ModelSettings, NO_BUNDLE,
};
use crate::health::HealthConfig;
use crate::knobs::check_knob;
use crate::logging::{DEFAULT_LEVEL, LogLevel, LogTarget};
use crate::osc::{Cidr, DEFAULT_BIND, DEFAULT_OSCQUERY_PORT};
use crate::schedule::{Cue, ScheduleError, check_entries};

/// Accepted sample rates, in Hz.
pub const RATE_RANGE: std::ops::RangeInclusive<u32> = 8_000..=384_000;
/// Accepted periods, in frames.
pub const PERIOD_RANGE: std::ops::RangeInclusive<usize> = 16..=8192;
/// Longest loop without a source, in seconds: the longest loop a source file may hold.
pub const MAX_LOOP_SECONDS: f64 = latentd_engine::audio_clip::MAX_CLIP_SECONDS;
/// Longest client name (JACK's limit, less the terminating NUL).
pub const MAX_CLIENT_NAME: usize = 63;

/// Everything the daemon runs with, merged and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Loop source; `None`: a silent loop of `loop_seconds` that the engine fills.
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
    /// Length of the loop when there is no source.
    pub loop_seconds: f64,
    /// Where to record what is played.
    pub record: Option<PathBuf>,
    /// How recordings are split.
    pub record_config: crate::record::RecordConfig,
    /// Log verbosity.
    pub log_level: LogLevel,
    /// Where logs go.
    pub log_target: LogTarget,
    /// OSC bind address (UDP and TCP).
    pub osc_bind: SocketAddr,
    /// Client networks served when bound wider than loopback.
    pub osc_allow: Vec<Cidr>,
    /// OSCQuery HTTP port (0: off).
    pub oscquery_port: u16,
    /// When the OSC and OSCQuery ports are advertised over zeroconf.
    pub advertise: Advertise,
    /// Folder OSC paths must stay inside.
    pub media_folder: PathBuf,
    /// Prompt at start (`None`: the saved one, else the engine's default prompt).
    pub prompt: Option<String>,
    /// Second prompt at start.
    pub prompt_b: Option<String>,
    /// Which engine generates.
    pub engine: EngineChoice,
    /// The model bundle and its runtime (`--engine bundle`).
    pub model: ModelSettings,
    /// Knob values at start, canonicalized (file first, then flags).
    pub knobs: Vec<(KnobId, f64)>,
    /// Lead and repatch settings.
    pub lead: LeadConfig,
    /// Silence and clip alarms.
    pub health: HealthConfig,
    /// State file.
    pub state_path: PathBuf,
    /// Cues at a local time of day (`[[schedule]]`), in file order.
    pub schedule: Vec<Cue>,
    /// The config file read, if any (SIGHUP re-reads it).
    pub config_path: Option<PathBuf>,
    /// MIDI input (`--midi`, `[midi] enabled`): a JACK `midi_in` port.
    pub midi: bool,
    /// MIDI maps of the config file (`[[midi.map]]`), checked as `/midi/map` checks them.
    pub midi_maps: Vec<crate::midi::MidiMapEntry>,
    /// Input ports for `/capture` (JACK only; 0: none).
    pub inputs: usize,
    /// `[capture] save`: the folder each capture is saved in as a WAV (`None`: not saved).
    pub capture_save: Option<PathBuf>,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    /// Run with these settings.
    Run(Box<Settings>),
    /// Print this (help or version) on stdout and exit 0.
    Print(String),
    /// `check-config`: these settings are valid; print them and exit 0.
    CheckConfig(Box<Settings>),
}

/// A bad command line or config file, as one line of text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(pub String);

impl From<ConfigError> for SettingsError {
    fn from(e: ConfigError) -> Self {
        SettingsError(e.to_string())
    }
}

impl From<ScheduleError> for SettingsError {
    fn from(e: ScheduleError) -> Self {
        SettingsError(e.to_string())
    }
}

/// Parse `args` (program name first), read the config file if one is named, merge, validate.
pub fn parse_args<I, T>(args: I) -> Result<Invocation, SettingsError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match crate::cli::parse(args) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    Ok(Invocation::Print(e.to_string()))
                }
                _ => Err(SettingsError(crate::cli::one_line(&e))),
            };
        }
    };
    let check = matches!(cli.command, Some(Command::CheckConfig { .. }));
    let config_path = match &cli.command {
        Some(Command::CheckConfig { file: Some(file) }) => Some(file.clone()),
        _ => cli.config.clone().or_else(default_config_path),
    };
    if check && config_path.is_none() {
        return Err(SettingsError(
            "check-config: no config file given and none found at \
             $XDG_CONFIG_HOME/latentd/latentd.toml or /etc/latentd/latentd.toml"
                .into(),
        ));
    }
    let file = match &config_path {
        Some(path) => read_config(path)?,
        None => ConfigFile::default(),
    };
    let settings = Box::new(merge(cli, file, config_path)?);
    Ok(if check {
        Invocation::CheckConfig(settings)
    } else {
        Invocation::Run(settings)
    })
}

/// Re-read the config file for SIGHUP, with the same command line on top.
pub fn reload<I, T>(args: I) -> Result<Settings, SettingsError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    match parse_args(args)? {
        Invocation::Run(s) | Invocation::CheckConfig(s) => Ok(*s),
        Invocation::Print(_) => Err(SettingsError("reload: not a daemon command line".into())),
    }
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

fn merge(
    cli: Cli,
    file: ConfigFile,
    config_path: Option<PathBuf>,
) -> Result<Settings, SettingsError> {
    let rate = pick(cli.rate, "--rate", file.audio.rate, "audio.rate");
    let sample_rate = match rate {
        Some((v, origin)) if !RATE_RANGE.contains(&v) => {
            let accepted = format!("{}..={} Hz", RATE_RANGE.start(), RATE_RANGE.end());
            return Err(bad(&origin, v, &accepted));
        }
        Some((v, _)) => v,
        None => DEFAULT_RATE,
    };
    let period = pick(cli.period, "--period", file.audio.period, "audio.period");
    let period_frames = match period {
        Some((v, origin)) if !PERIOD_RANGE.contains(&v) => {
            let accepted = format!("{}..={} frames", PERIOD_RANGE.start(), PERIOD_RANGE.end());
            return Err(bad(&origin, v, &accepted));
        }
        Some((v, _)) => v,
        None => DEFAULT_PERIOD,
    };
    let seconds = pick(
        cli.loop_seconds,
        "--loop-seconds",
        file.source.loop_seconds,
        "source.loop_seconds",
    );
    let loop_seconds = match seconds {
        Some((v, origin)) if !(v > 0.0 && v <= MAX_LOOP_SECONDS) => {
            let accepted = format!("seconds above 0 and at most {MAX_LOOP_SECONDS}");
            return Err(bad(&origin, v, &accepted));
        }
        Some((v, _)) => v,
        None => DEFAULT_LOOP_SECONDS,
    };
    let name = pick(
        cli.client_name,
        "--client-name",
        file.audio.client_name,
        "audio.client_name",
    );
    let client_name = match name {
        Some((v, origin)) if v.is_empty() || v.len() > MAX_CLIENT_NAME || v.contains(':') => {
            let accepted = format!("1 to {MAX_CLIENT_NAME} bytes without ':'");
            return Err(bad(&origin, format!("{v:?}"), &accepted));
        }
        Some((v, _)) => v,
        None => DEFAULT_CLIENT_NAME.into(),
    };
    let inputs = match pick(cli.inputs, "--inputs", file.audio.inputs, "audio.inputs") {
        Some((v, origin)) if v > MAX_INPUTS => {
            return Err(bad(&origin, v, &format!("0..={MAX_INPUTS} input ports")));
        }
        Some((v, _)) => v,
        None => DEFAULT_INPUTS,
    };
    let (engine, model) = model_settings(
        cli.engine,
        cli.model,
        cli.ep,
        file.engine.backend,
        file.model,
    )?;
    Ok(Settings {
        source: cli.source.or(file.source.file),
        backend: cli.audio.or(file.audio.backend).unwrap_or(DEFAULT_BACKEND),
        client_name,
        autoconnect: cli.autoconnect || file.audio.autoconnect.unwrap_or(false),
        sample_rate,
        period_frames,
        loop_seconds,
        record: cli.record.or(file.record.file),
        record_config: record_config(file.record.split_s)?,
        log_level: cli.log_level.or(file.log.level).unwrap_or(DEFAULT_LEVEL),
        log_target: log_target(cli.log_target, file.log.target)?,
        osc_bind: osc_bind(cli.osc, file.osc.bind)?,
        osc_allow: allowlist(file.osc.allowlist)?,
        oscquery_port: cli
            .oscquery_port
            .or(file.osc.oscquery_port)
            .unwrap_or(DEFAULT_OSCQUERY_PORT),
        advertise: advertise(file.osc.advertise)?,
        media_folder: media_folder(cli.media.or(file.media.folder))?,
        prompt: prompt(
            "--prompt",
            cli.prompt,
            "engine.prompt",
            file.engine.prompt,
            "prompt",
        )?,
        // A blank second prompt means none.
        prompt_b: prompt(
            "engine.prompt_b",
            None,
            "engine.prompt_b",
            file.engine.prompt_b.filter(|p| !p.trim().is_empty()),
            "prompt_b",
        )?,
        engine,
        model,
        knobs: start_knobs(&file.engine.knobs, &cli.knobs)?,
        lead: lead(file.lead, cli.no_repatch)?,
        health: file
            .health
            .validate()
            .map(|()| file.health)
            .map_err(|e| SettingsError(format!("config section [health]: {e}")))?,
        state_path: state_path(cli.state.or(file.state.path))?,
        schedule: check_entries(&file.schedule)?,
        config_path,
        midi: cli.midi || file.midi.enabled.unwrap_or(false),
        midi_maps: midi_maps(file.midi.map)?,
        inputs,
        capture_save: file.capture.save,
    })
}

/// `[[midi.map]]` entries, each checked as `/midi/map` checks it (against the engine's
/// knobs), with no two on one channel and controller.
fn midi_maps(
    entries: Vec<crate::midi::MidiMapEntry>,
) -> Result<Vec<crate::midi::MidiMapEntry>, SettingsError> {
    let schema = latentd_osc_schema::Schema::new(latentd_osc_schema::reference_knobs())
        .map_err(|e| SettingsError(format!("knob table: {e}")))?;
    let mut seen = std::collections::BTreeSet::new();
    for entry in &entries {
        let map = entry
            .to_map(&schema)
            .map_err(|e| SettingsError(format!("config [[midi.map]]: {e}")))?;
        if !seen.insert((map.channel, map.cc)) {
            return Err(SettingsError(format!(
                "config [[midi.map]]: channel {} cc {} is mapped twice",
                map.channel, map.cc
            )));
        }
    }
    if entries.len() > latentd_osc_schema::midi::MAX_MIDI_MAPS {
        return Err(SettingsError(format!(
            "config [[midi.map]]: {} maps; at most {}",
            entries.len(),
            latentd_osc_schema::midi::MAX_MIDI_MAPS
        )));
    }
    Ok(entries)
}

/// The engine choice and the model bundle: a bundle (`--model DIR` or `[model] bundle`) picks
/// the bundle engine unless an engine is named (flag first, then `[engine] backend`); the
/// bundle engine without a bundle is refused.
fn model_settings(
    engine_flag: Option<EngineChoice>,
    bundle_flag: Option<PathBuf>,
    ep_flag: Option<String>,
    engine_key: Option<EngineChoice>,
    file: ModelSection,
) -> Result<(EngineChoice, ModelSettings), SettingsError> {
    let flag_names_bundle = bundle_flag.is_some();
    let bundle = bundle_flag.or(file.bundle);
    let engine = match (engine_flag, engine_key) {
        (Some(e), _) => e,
        (None, _) if flag_names_bundle => EngineChoice::Bundle,
        (None, Some(e)) => e,
        (None, None) if bundle.is_some() => EngineChoice::Bundle,
        (None, None) => DEFAULT_ENGINE,
    };
    if engine == EngineChoice::Bundle && bundle.is_none() {
        return Err(SettingsError(NO_BUNDLE.into()));
    }
    let threads = match file.threads {
        Some(t) if !MODEL_THREADS_RANGE.contains(&t) => {
            let accepted = format!(
                "{}..={} threads",
                MODEL_THREADS_RANGE.start(),
                MODEL_THREADS_RANGE.end()
            );
            return Err(bad("config key model.threads", t, &accepted));
        }
        Some(t) => t,
        None => DEFAULT_MODEL_THREADS,
    };
    let ep = match (ep_flag, file.ep) {
        (Some(list), _) => providers("--ep", list.split(',').map(str::trim))?,
        (None, Some(list)) => providers("config key model.ep", list.iter().map(String::as_str))?,
        (None, None) => vec![DEFAULT_EP],
    };
    Ok((
        engine,
        ModelSettings {
            bundle,
            runtime: file.runtime,
            threads,
            ep,
        },
    ))
}

/// The execution providers `names` (from `origin`) list; an unknown or missing one is refused.
fn providers<'a>(
    origin: &str,
    names: impl Iterator<Item = &'a str>,
) -> Result<Vec<Provider>, SettingsError> {
    let accepted = "a list of tensorrt, cuda, cpu";
    let list = names
        .map(|n| Provider::parse(n).ok_or_else(|| bad(origin, format!("{n:?}"), accepted)))
        .collect::<Result<Vec<_>, _>>()?;
    if list.is_empty() {
        return Err(bad(origin, "an empty list", accepted));
    }
    Ok(list)
}

fn log_target(flag: Option<String>, file: Option<String>) -> Result<LogTarget, SettingsError> {
    match pick(flag, "--log-target", file, "log.target") {
        Some((v, origin)) => v
            .parse()
            .map_err(|_| bad(&origin, format!("{v:?}"), "auto, journal or stderr")),
        None => Ok(LogTarget::Auto),
    }
}

fn osc_bind(flag: Option<SocketAddr>, file: Option<String>) -> Result<SocketAddr, SettingsError> {
    if let Some(addr) = flag {
        return Ok(addr);
    }
    match file {
        Some(text) => text.parse().map_err(|_| {
            bad(
                "config key osc.bind",
                format!("{text:?}"),
                "ADDR:PORT, e.g. \"127.0.0.1:7770\" or \"[::]:7770\"",
            )
        }),
        None => Ok(DEFAULT_BIND),
    }
}

fn advertise(file: Option<AdvertiseKey>) -> Result<Advertise, SettingsError> {
    match file {
        None => Ok(Advertise::default()),
        Some(AdvertiseKey::Bool(true)) => Ok(Advertise::On),
        Some(AdvertiseKey::Bool(false)) => Ok(Advertise::Off),
        Some(AdvertiseKey::Text(text)) => Advertise::parse(&text).ok_or_else(|| {
            bad(
                "config key osc.advertise",
                format!("{text:?}"),
                "\"auto\", \"true\" or \"false\"",
            )
        }),
    }
}

fn allowlist(file: Option<Vec<String>>) -> Result<Vec<Cidr>, SettingsError> {
    let Some(entries) = file else {
        return Ok(vec![
            "127.0.0.0/8".parse().expect("valid"),
            "::1/128".parse().expect("valid"),
        ]);
    };
    entries
        .iter()
        .map(|e| {
            e.parse().map_err(|_| {
                bad(
                    "config key osc.allowlist",
                    format!("{e:?}"),
                    "networks in CIDR notation, e.g. \"192.168.1.0/24\"",
                )
            })
        })
        .collect()
}

/// `[record]`'s split, checked; the default is [`crate::record::RecordConfig`]'s.
fn record_config(split_s: Option<f64>) -> Result<crate::record::RecordConfig, SettingsError> {
    let mut config = crate::record::RecordConfig::default();
    if let Some(split_s) = split_s {
        config.split_s = split_s;
    }
    config
        .validate()
        .map(|()| config)
        .map_err(|e| SettingsError(format!("config section [record]: {e}")))
}

fn media_folder(dir: Option<PathBuf>) -> Result<PathBuf, SettingsError> {
    let dir = match dir {
        Some(d) => d,
        None => std::env::current_dir()
            .map_err(|e| SettingsError(format!("media folder: working directory: {e}")))?,
    };
    Ok(dir)
}

/// A prompt from the command line or the config file, checked like a prompt over OSC
/// ([`check_prompt`]); `field` names it in the engine's message.
fn prompt(
    flag_name: &str,
    flag: Option<String>,
    key: &str,
    file: Option<String>,
    field: &'static str,
) -> Result<Option<String>, SettingsError> {
    match pick(flag, flag_name, file, key) {
        Some((v, origin)) => match check_prompt(field, &v) {
            Ok(()) => Ok(Some(v)),
            Err(e) => Err(SettingsError(format!("{origin}: {e}"))),
        },
        None => Ok(None),
    }
}

fn start_knobs(
    file: &std::collections::BTreeMap<String, f64>,
    flags: &[String],
) -> Result<Vec<(KnobId, f64)>, SettingsError> {
    let mut out: Vec<(KnobId, f64)> = Vec::new();
    let mut set = |origin: String, name: &str, value: f64| {
        let (id, value) =
            check_knob(name, value).map_err(|e| SettingsError(format!("{origin}: {e}")))?;
        out.retain(|(k, _)| *k != id);
        out.push((id, value));
        Ok::<(), SettingsError>(())
    };
    for (name, value) in file {
        set(format!("config key engine.knobs.{name}"), name, *value)?;
    }
    for flag in flags {
        let (name, value) = flag
            .split_once('=')
            .and_then(|(n, v)| Some((n.trim(), v.trim().parse::<f64>().ok()?)))
            .ok_or_else(|| {
                bad(
                    "--knob",
                    format!("{flag:?}"),
                    "NAME=NUMBER, e.g. denoise=0.7",
                )
            })?;
        set(format!("--knob {name}"), name, value)?;
    }
    Ok(out)
}

fn lead(mut lead: LeadConfig, no_repatch: bool) -> Result<LeadConfig, SettingsError> {
    if no_repatch {
        lead.repatch = false;
    }
    lead.validate()
        .map_err(|e| SettingsError(format!("config section [lead]: {e}")))?;
    Ok(lead)
}

/// The state file's path, refused when it names something that exists and is not a regular
/// file: a FIFO would block the start, a device such as `/dev/zero` would be read until
/// memory runs out, and neither may be moved aside as a corrupt state file would be.
fn state_path(given: Option<PathBuf>) -> Result<PathBuf, SettingsError> {
    let path = given.unwrap_or_else(default_state_path);
    match std::fs::metadata(&path) {
        Ok(meta) if !meta.is_file() => {
            let kind = meta.file_type();
            use std::os::unix::fs::FileTypeExt;
            let what = if kind.is_dir() {
                "a directory"
            } else if kind.is_fifo() {
                "a FIFO"
            } else if kind.is_char_device() || kind.is_block_device() {
                "a device"
            } else {
                "a special file"
            };
            Err(SettingsError(format!(
                "state file {} is {what}, not a regular file",
                path.display()
            )))
        }
        _ => Ok(path),
    }
}

/// `$STATE_DIRECTORY/state.json` under systemd, else `$XDG_STATE_HOME/latentd/state.json`,
/// else `~/.local/state/latentd/state.json`, else `./latentd-state.json`.
fn default_state_path() -> PathBuf {
    if let Some(dir) = std::env::var_os("STATE_DIRECTORY") {
        // systemd may pass several, colon-separated; the first is ours.
        let first = dir
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or("")
            .to_owned();
        if !first.is_empty() {
            return Path::new(&first).join("state.json");
        }
    }
    if let Some(base) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(base).join("latentd/state.json");
    }
    if let Some(home) = std::env::var_os("HOME") {
        return PathBuf::from(home).join(".local/state/latentd/state.json");
    }
    PathBuf::from("latentd-state.json")
}

#[cfg(test)]
mod tests;

impl Settings {
    /// The effective settings as a config file (what `check-config` prints).
    pub fn to_toml(&self) -> String {
        let opt_key = |key: &str, p: &Option<PathBuf>| match p {
            Some(p) => format!("{key} = {:?}", p.display().to_string()),
            None => format!("# {key}: none"),
        };
        let opt_path = |p: &Option<PathBuf>| opt_key("file", p);
        let knobs = self
            .knobs
            .iter()
            .map(|(id, v)| format!("{} = {v}", id.spec().name))
            .collect::<Vec<_>>()
            .join(", ");
        let allow = self
            .osc_allow
            .iter()
            .map(|c| format!("{:?}", c.to_string()))
            .collect::<Vec<_>>()
            .join(", ");
        let lead = toml::to_string(&self.lead).unwrap_or_default();
        let health = toml::to_string(&self.health).unwrap_or_default();
        let midi = format!(
            "\n[midi]\nenabled = {}\n{}",
            self.midi,
            if self.midi_maps.is_empty() {
                "# [[midi.map]]: none\n".to_string()
            } else {
                self.midi_maps
                    .iter()
                    .map(|m| format!("[[midi.map]]\n{}", toml::to_string(m).unwrap_or_default()))
                    .collect()
            }
        );
        let schedule: String = if self.schedule.is_empty() {
            "\n# [[schedule]]: none\n".into()
        } else {
            self.schedule
                .iter()
                .map(|cue| format!("\n{}", cue.to_toml()))
                .collect()
        };
        format!(
            "# effective settings{}\n\
             [audio]\nbackend = \"{}\"\nclient_name = {:?}\nautoconnect = {}\nrate = {}\n\
             period = {}\ninputs = {}\n\n[source]\n{}\nloop_seconds = {}\n\n[record]\n{}\nsplit_s = {}\n\n[capture]\n{}\n\n\
             [osc]\nbind = \"{}\"\nallowlist = [{allow}]\noscquery_port = {}\nadvertise = \"{}\"\n\n\
             [media]\nfolder = {:?}\n\n[engine]\nbackend = \"{}\"\nprompt = {:?}\nprompt_b = {:?}\n\
             knobs = {{ {knobs} }}\n\n[model]\n{}\n{}\nthreads = {}\nep = [{}]\n\n[lead]\n{lead}\n[health]\n{health}\n[state]\npath = {:?}\n\n\
             [log]\nlevel = \"{}\"\ntarget = \"{}\"\n{midi}{schedule}",
            match &self.config_path {
                Some(p) => format!(" (from {})", p.display()),
                None => " (no config file)".into(),
            },
            self.backend,
            self.client_name,
            self.autoconnect,
            self.sample_rate,
            self.period_frames,
            self.inputs,
            opt_path(&self.source),
            self.loop_seconds,
            opt_path(&self.record),
            self.record_config.split_s,
            opt_key("save", &self.capture_save),
            self.osc_bind,
            self.oscquery_port,
            self.advertise.as_str(),
            self.media_folder.display().to_string(),
            self.engine.as_str(),
            self.prompt.as_deref().unwrap_or(""),
            self.prompt_b.as_deref().unwrap_or(""),
            opt_key("bundle", &self.model.bundle),
            opt_key("runtime", &self.model.runtime),
            self.model.threads,
            self.model
                .ep
                .iter()
                .map(|p| format!("{:?}", p.name()))
                .collect::<Vec<_>>()
                .join(", "),
            self.state_path.display().to_string(),
            self.log_level.as_str(),
            self.log_target.as_str(),
        )
    }
}
