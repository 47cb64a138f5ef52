//! Typed results of decoding: [`Command`], the time it applies at ([`When`], [`Timed`]) and
//! the error every bad input becomes ([`Fail`], sent back as `/fail <address> <reason>`).
//!
//! Threading: plain data; `Send` and `Sync`.

use std::path::PathBuf;

use rosc::OscTime;

use crate::midi::{MidiBinding, MidiMap};
use crate::presets::FadeCurve;

/// One validated command. Values are within range and paths inside the media folder.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Set knob `index` (position in [`crate::Schema::knobs`]) to `value` (within range,
    /// integral for integer knobs).
    SetKnob {
        /// Index into the schema's knob list.
        index: usize,
        /// The knob's name.
        name: &'static str,
        /// The new value.
        value: f64,
        /// Seconds to glide there over (0: at once); `0 ..= MAX_FADE_S`.
        glide_s: f64,
    },
    /// Reply with one knob's value.
    QueryKnob {
        /// Index into the schema's knob list.
        index: usize,
        /// The knob's name.
        name: &'static str,
    },
    /// Reply with every knob's value.
    QueryKnobs,
    /// New text conditioning.
    Prompt {
        /// Primary tags.
        tags: String,
        /// Optional second prompt blended by `prompt_blend`.
        tags_b: Option<String>,
    },
    /// Use a timbre reference (canonical path inside the media folder).
    Timbre {
        /// Canonical path of an existing file.
        path: PathBuf,
    },
    /// Remove the timbre reference.
    TimbreClear,
    /// Use a structure reference (canonical path inside the media folder).
    Structure {
        /// Canonical path of an existing file.
        path: PathBuf,
    },
    /// Remove the structure reference.
    StructureClear,
    /// Load a new source loop (canonical path inside the media folder).
    Source {
        /// Canonical path of an existing file.
        path: PathBuf,
    },
    /// Arm the loop band `[a, b)` in seconds; `0 <= a < b`, both finite.
    Loop {
        /// Band start in seconds.
        a: f64,
        /// Band end in seconds.
        b: f64,
    },
    /// Disarm the loop band.
    LoopClear,
    /// Start playback.
    Play,
    /// Pause playback.
    Pause,
    /// Move the playhead; `seconds >= 0`, finite.
    Seek {
        /// New playhead in seconds.
        seconds: f64,
    },
    /// Reply `/status.reply`.
    Status,
    /// Subscribe (true) or unsubscribe (false) the sender.
    Notify(bool),
    /// Push `/meter` to the sender this many times a second (0: stop); 0 or within
    /// 1..=[`crate::limits::METER_MAX_HZ`].
    NotifyMeter(f64),
    /// Reply `/synced id` once earlier asynchronous commands completed.
    Sync(i32),
    /// Reply `/version.reply`.
    Version,
    /// Save the knobs and prompts as preset `name` (a valid name).
    PresetSave {
        /// Checked by [`crate::presets::check_preset_name`].
        name: String,
    },
    /// Recall preset `name` over `fade_s` seconds.
    PresetRecall {
        /// Checked by [`crate::presets::check_preset_name`].
        name: String,
        /// `0 ..= MAX_FADE_S`.
        fade_s: f64,
        /// The fade's shape.
        curve: FadeCurve,
    },
    /// Reply `/preset/list.reply`.
    PresetList,
    /// Delete preset `name`.
    PresetDelete {
        /// Checked by [`crate::presets::check_preset_name`].
        name: String,
    },
    /// Set the knobs between presets `a` (x = 0) and `b` (x = 1).
    PresetMorph {
        /// Checked by [`crate::presets::check_preset_name`].
        a: String,
        /// Checked by [`crate::presets::check_preset_name`].
        b: String,
        /// `0 ..= 1`.
        x: f64,
    },
    /// Start recording the output to `file` (`None`: a timestamped name in the media
    /// folder).
    RecordStart {
        /// The file, checked and resolved inside the media folder.
        file: Option<RecordFile>,
    },
    /// Stop the recording.
    RecordStop,
    /// Bind the next controller moved to this binding.
    MidiLearn(MidiBinding),
    /// Add (or replace) a MIDI map.
    MidiMap(MidiMap),
    /// Remove the map of controller `cc` on `channel`.
    MidiUnmap {
        /// 1 to 16.
        channel: u8,
        /// 0 to 127.
        cc: u8,
    },
    /// Reply with every MIDI map.
    MidiMaps,
    /// Capture the input ports into a new source.
    CaptureStart {
        /// Longest capture, `0 < s <= CAPTURE_MAX_S`; `None`: the loop's length.
        seconds: Option<f64>,
        /// Start (and end on stop) at the loop's wrap.
        quantize: bool,
    },
    /// End the running capture.
    CaptureStop,
}

/// A new file a recording creates: the client's name and where it lands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFile {
    /// The name as the client sent it (relative to the media folder), echoed in replies.
    pub name: String,
    /// Its path: the media folder's canonical folder joined with the name (it did not exist
    /// when decoded).
    pub path: PathBuf,
}

impl Command {
    /// The concrete address this command answers to (for `/done` and `/fail`).
    pub fn address(&self) -> String {
        let fixed = match self {
            Command::SetKnob { name, .. } | Command::QueryKnob { name, .. } => {
                return format!("/knob/{name}");
            }
            Command::QueryKnobs => "/knobs",
            Command::Prompt { .. } => "/prompt",
            Command::Timbre { .. } => "/timbre",
            Command::TimbreClear => "/timbre/clear",
            Command::Structure { .. } => "/structure",
            Command::StructureClear => "/structure/clear",
            Command::Source { .. } => "/source",
            Command::Loop { .. } => "/loop",
            Command::LoopClear => "/loop/clear",
            Command::Play => "/transport/play",
            Command::Pause => "/transport/pause",
            Command::Seek { .. } => "/transport/seek",
            Command::Status => "/status",
            Command::Notify(_) => "/notify",
            Command::NotifyMeter(_) => "/notify/meter",
            Command::Sync(_) => "/sync",
            Command::Version => "/version",
            Command::PresetSave { .. } => "/preset/save",
            Command::PresetRecall { .. } => "/preset/recall",
            Command::PresetList => "/preset/list",
            Command::PresetDelete { .. } => "/preset/delete",
            Command::PresetMorph { .. } => "/preset/morph",
            Command::RecordStart { .. } => "/record/start",
            Command::RecordStop => "/record/stop",
            Command::MidiLearn(_) => "/midi/learn",
            Command::MidiMap(_) => "/midi/map",
            Command::MidiUnmap { .. } => "/midi/unmap",
            Command::MidiMaps => "/midi/maps",
            Command::CaptureStart { .. } => "/capture/start",
            Command::CaptureStop => "/capture/stop",
        };
        fixed.to_string()
    }
}

/// When a decoded packet applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// A plain message, or a bundle with the timetag "immediately" (0 s, fraction 1) or a
    /// time already past: apply at once.
    Immediately,
    /// A bundle timetag (NTP format: seconds since 1900 and 2^-32 fractions); the daemon maps it
    /// to an audio frame and applies the commands at that frame.
    At(OscTime),
}

impl When {
    /// Map an OSC timetag: `(0, 1)` (the OSC "immediately") becomes [`When::Immediately`].
    pub fn from_timetag(time: OscTime) -> When {
        if time.seconds == 0 && time.fractional <= 1 {
            When::Immediately
        } else {
            When::At(time)
        }
    }
}

/// NTP time in seconds since the Unix epoch (negative before 1970); never panics, unlike
/// `SystemTime::from(OscTime)`.
pub fn ntp_to_unix_seconds(time: OscTime) -> f64 {
    const UNIX_OFFSET: f64 = 2_208_988_800.0;
    f64::from(time.seconds) - UNIX_OFFSET + f64::from(time.fractional) / 4_294_967_296.0
}

/// A value with the time it applies at.
#[derive(Debug, Clone, PartialEq)]
pub struct Timed<T> {
    /// When it applies.
    pub when: When,
    /// What applies.
    pub value: T,
}

/// The address packet-level failures are reported under (no message could be read).
pub const PACKET_ADDRESS: &str = "#packet";

/// A rejected input: sent back as `/fail <address> <reason>`. Nothing of the packet applies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("/fail {address} {reason}")]
pub struct Fail {
    /// The address as received (a pattern stays a pattern), or [`PACKET_ADDRESS`].
    pub address: String,
    /// Human-readable, names the argument and what is accepted.
    pub reason: String,
}

impl Fail {
    /// A failure of the message sent to `address`.
    pub fn new(address: impl Into<String>, reason: impl Into<String>) -> Fail {
        Fail {
            address: address.into(),
            reason: reason.into(),
        }
    }

    /// A failure of the packet as a whole.
    pub fn packet(reason: impl Into<String>) -> Fail {
        Fail::new(PACKET_ADDRESS, reason)
    }
}
