//! The config file: one TOML document, every key optional, unknown keys refused.
//!
//! ```toml
//! [audio]
//! backend = "auto"        # auto | jack | pipewire | null
//! client_name = "latentd" # JACK client / PipeWire node name
//! autoconnect = false     # connect to the system playback ports
//! rate = 48000            # Hz, for null and PipeWire (a JACK server dictates its own)
//! period = 256            # frames, for null and PipeWire
//! inputs = 0              # JACK input ports in_1 .. in_N for /capture (0: none)
//! [source]
//! file = "loop.wav"       # the loop to play and re-imagine; without it the loop starts
//!                         # silent and the engine fills it from the prompt (text only)
//! loop_seconds = 60.0     # loop length without a source file (at most 600)
//! [record]
//! file = "out.wav"        # record what is played (32-bit float WAV) from the start
//! split_s = 3600           # every recording rolls over to a new file this often
//! [capture]
//! save = "/srv/latentd/captures" # save each /capture as a WAV here (default: not saved)
//! [osc]
//! bind = "127.0.0.1:7770" # UDP and TCP, same port
//! allowlist = ["127.0.0.0/8", "::1/128"] # client networks served when bound wider
//! oscquery_port = 7771    # OSCQuery HTTP; 0 turns it off
//! advertise = "auto"      # zeroconf: auto (beyond loopback) | true | false
//! [media]
//! folder = "/srv/latentd/media" # paths given over OSC must stay inside it
//! [engine]
//! backend = "builtin-cpu"  # builtin-cpu | builtin-cuda | auto | bundle | off (untouched)
//! prompt = "calm warm pad pluck bass"
//! prompt_b = ""            # optional second prompt, mixed by the prompt_blend knob
//! knobs = { denoise = 0.5, ch_g0 = 1.2 }
//! [model]                  # the bundle engine (docs/bundles.md)
//! bundle = "/srv/latentd/models/gm-tiny" # a latentd-bundle/1 folder; --model DIR
//! runtime = "/usr/lib/latentd/libonnxruntime.so" # ONNX Runtime; else ORT_DYLIB_PATH, ...
//! threads = 1              # intra-op threads per ONNX Runtime session
//! ep = ["cpu"]             # execution providers to try in order (tensorrt, cuda, cpu)
//! [lead]                   # see docs/operations.md; field names as in LeadConfig
//! gain = 1.6
//! repatch = true
//! [health]                # silence and clip alarms, see docs/operations.md
//! silence_dbfs = -60.0     # every channel's RMS below this ...
//! silence_s = 10.0         # ... for this long while playing: silence alarm
//! clip_dbfs = -0.1         # a sample at or above this: clip alarm
//! action = "notify"        # log | notify (push /alarm) | restart (also stop watchdog pings)
//! [state]
//! path = "/var/lib/latentd/state.json"
//! [log]
//! level = "info"          # off | error | warn | info | debug | trace
//! target = "auto"         # auto | journal | stderr
//! [[schedule]]            # cues at a local time of day, see crate::schedule; repeatable
//! at = "22:30"
//! days = ["fri", "sat"]    # optional: every day
//! transport = "stop"       # or: preset = "name" (fade_s, curve), prompt = "..."
//! [midi]                  # MIDI input, see docs/operations.md
//! enabled = true           # a JACK midi_in port (--midi)
//! [[midi.map]]            # repeatable; as /midi/map (docs/osc.md, MIDI)
//! channel = 1
//! cc = 74
//! target = "denoise"       # a knob, or transport/toggle, preset/next, seed/next, ...
//! min = 0.2                # optional: the knob's range
//! max = 0.9
//! curve = "linear"         # optional: linear | smooth | ease_in | ease_out
//! mode = "pickup"          # optional: absolute | pickup | relative | relative_offset
//! ```
//!
//! The file must be a regular file of at most [`MAX_CONFIG_BYTES`]; a FIFO, a device or a
//! larger file is refused before a byte is read (see [`latentd_engine::input_file`]).
//!
//! Threading: main thread (at start and on SIGHUP).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use latentd_engine::input_file::{InputFileError, read_bounded_to_string};
use latentd_engine::runner::lead::LeadConfig;
use serde::Deserialize;

use crate::audio::select::BackendChoice;
use crate::engine_select::EngineChoice;
use crate::health::HealthConfig;
use crate::logging::LogLevel;
use crate::schedule::ScheduleFileEntry;

/// `[audio]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioSection {
    pub(crate) backend: Option<BackendChoice>,
    pub(crate) client_name: Option<String>,
    pub(crate) autoconnect: Option<bool>,
    pub(crate) rate: Option<u32>,
    pub(crate) period: Option<usize>,
    pub(crate) inputs: Option<usize>,
}

/// `[source]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    pub(crate) file: Option<PathBuf>,
    pub(crate) loop_seconds: Option<f64>,
}

/// `[record]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordSection {
    pub(crate) file: Option<PathBuf>,
    pub(crate) split_s: Option<f64>,
}

/// `[capture]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureSection {
    pub(crate) save: Option<PathBuf>,
}

/// `[osc]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OscSection {
    pub(crate) bind: Option<String>,
    pub(crate) allowlist: Option<Vec<String>>,
    pub(crate) oscquery_port: Option<u16>,
    pub(crate) advertise: Option<AdvertiseKey>,
}

/// `osc.advertise` as written: `"auto"`, `"true"`, `"false"`, or a TOML boolean.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum AdvertiseKey {
    /// `advertise = true`
    Bool(bool),
    /// `advertise = "auto"`
    Text(String),
}

/// `[media]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaSection {
    pub(crate) folder: Option<PathBuf>,
}

/// `[engine]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSection {
    pub(crate) backend: Option<EngineChoice>,
    pub(crate) prompt: Option<String>,
    pub(crate) prompt_b: Option<String>,
    #[serde(default)]
    pub(crate) knobs: BTreeMap<String, f64>,
}

/// `[model]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    pub(crate) bundle: Option<PathBuf>,
    pub(crate) runtime: Option<PathBuf>,
    pub(crate) threads: Option<usize>,
    pub(crate) ep: Option<Vec<String>>,
}

/// `[state]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSection {
    pub(crate) path: Option<PathBuf>,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    pub(crate) level: Option<LogLevel>,
    pub(crate) target: Option<String>,
}

/// `[midi]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MidiSection {
    pub(crate) enabled: Option<bool>,
    /// `[[midi.map]]` entries, in file order.
    #[serde(default)]
    pub(crate) map: Vec<crate::midi::MidiMapEntry>,
}

/// The whole config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub(crate) audio: AudioSection,
    #[serde(default)]
    pub(crate) source: SourceSection,
    #[serde(default)]
    pub(crate) record: RecordSection,
    #[serde(default)]
    pub(crate) osc: OscSection,
    #[serde(default)]
    pub(crate) media: MediaSection,
    #[serde(default)]
    pub(crate) engine: EngineSection,
    #[serde(default)]
    pub(crate) model: ModelSection,
    #[serde(default)]
    pub(crate) lead: LeadConfig,
    #[serde(default)]
    pub(crate) health: HealthConfig,
    #[serde(default)]
    pub(crate) state: StateSection,
    #[serde(default)]
    pub(crate) log: LogSection,
    /// `[[schedule]]` entries, in file order.
    #[serde(default)]
    pub(crate) schedule: Vec<ScheduleFileEntry>,
    #[serde(default)]
    pub(crate) midi: MidiSection,
    #[serde(default)]
    pub(crate) capture: CaptureSection,
}

/// Largest config file read, in bytes.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Why a config file cannot be used; one line that names the file (and the line and key).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Missing, not a regular file, unreadable or larger than [`MAX_CONFIG_BYTES`].
    #[error("config {0}")]
    Read(#[from] InputFileError),
    /// Not TOML, or not this schema (an unknown key, a wrong type, a bad variant).
    #[error("config {}: {}{message}", path.display(), line_prefix(at))]
    Parse {
        /// The file.
        path: PathBuf,
        /// The line number and the offending line (trimmed), when TOML knows where.
        at: Option<(usize, String)>,
        /// TOML's message, on one line.
        message: String,
    },
}

/// `line N: `text`: ` when the line is known.
fn line_prefix(at: &Option<(usize, String)>) -> String {
    at.as_ref()
        .map(|(n, line)| format!("line {n}: `{line}`: "))
        .unwrap_or_default()
}

/// Read and parse a config file; errors name the file, the line and the key.
pub fn read_config(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = read_bounded_to_string(path, MAX_CONFIG_BYTES)?;
    toml::from_str(&text).map_err(|e| {
        let at = e.span().and_then(|span| {
            let start = span.start.min(text.len());
            let line_no = text[..start].matches('\n').count() + 1;
            let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
            (!line.is_empty()).then(|| (line_no, line.to_owned()))
        });
        ConfigError::Parse {
            path: path.to_owned(),
            at,
            message: e.message().trim().replace('\n', " "),
        }
    })
}

/// Where the config file is looked for when `--config` is not given: the system file for
/// the system unit, the user's otherwise. `None` when neither exists.
pub fn default_config_path() -> Option<PathBuf> {
    let user = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .map(|base| base.join("latentd/latentd.toml"));
    let system = PathBuf::from("/etc/latentd/latentd.toml");
    // The system unit runs with a StateDirectory under /var/lib; a user session has HOME.
    let candidates = if std::env::var_os("STATE_DIRECTORY")
        .is_some_and(|d| Path::new(&d).starts_with("/var/lib"))
    {
        vec![Some(system)]
    } else {
        vec![user, Some(system)]
    };
    candidates.into_iter().flatten().find(|p| p.is_file())
}
