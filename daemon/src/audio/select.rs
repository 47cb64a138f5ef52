//! Choosing and opening the output: an explicit backend, or `auto` = JACK if a server
//! answers (never autostarting one), else PipeWire if a server answers, else null.
//!
//! Threading: main thread only, before anything realtime starts. It logs which backend it
//! chose and why.

use std::fmt;
use std::str::FromStr;

use super::null::NullOutput;
use super::{AudioError, AudioOutput};

/// Channels every output opens with (stereo).
pub const OUTPUT_CHANNELS: usize = 2;

/// Which output to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// JACK if a server answers, else PipeWire, else null.
    Auto,
    /// A JACK client (the server dictates rate and period).
    Jack,
    /// A native PipeWire stream.
    Pipewire,
    /// No server: a clock thread at `rate` and `period`.
    Null,
}

impl BackendChoice {
    /// Every accepted spelling, for error messages.
    pub const ACCEPTED: &'static str = "auto, jack, pipewire, null";

    /// The spelling used on the command line and in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Jack => "jack",
            Self::Pipewire => "pipewire",
            Self::Null => "null",
        }
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackendChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "jack" => Ok(Self::Jack),
            "pipewire" => Ok(Self::Pipewire),
            "null" => Ok(Self::Null),
            _ => Err(format!(
                "unknown audio backend {s:?}; accepted: {}",
                Self::ACCEPTED
            )),
        }
    }
}

/// What every backend may need to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputOptions {
    /// JACK client name, PipeWire node name.
    pub client_name: String,
    /// Connect the output ports to the system playback ports (JACK) or let the session
    /// manager link the stream (PipeWire).
    pub autoconnect: bool,
    /// Rate for outputs that let latentd choose (null, PipeWire).
    pub sample_rate: u32,
    /// Period for outputs that let latentd choose (null, PipeWire).
    pub period_frames: usize,
    /// MIDI input: the queue a JACK output's `midi_in` port or a PipeWire output's MIDI
    /// stream feeds (`None`: no MIDI input).
    pub midi_in: Option<super::midi_in::MidiInHandle>,
    /// Input ports (JACK) or input stream channels (PipeWire) for a live capture (0: none;
    /// the null output opens none).
    pub inputs: usize,
}

/// Open the output `choice` names; for [`BackendChoice::Auto`], the first that answers.
pub fn open_output(
    choice: BackendChoice,
    opts: &OutputOptions,
) -> Result<Box<dyn AudioOutput>, AudioError> {
    match choice {
        BackendChoice::Jack => open_jack(opts),
        BackendChoice::Pipewire => open_pipewire(opts),
        BackendChoice::Null => open_null(opts),
        BackendChoice::Auto => {
            if jack_reachable() {
                log::info!("audio: auto: a JACK server answers, using jack");
                return open_jack(opts);
            }
            if pipewire_reachable() {
                log::info!(
                    "audio: auto: no JACK server; a PipeWire server answers, using pipewire"
                );
                return open_pipewire(opts);
            }
            log::info!("audio: auto: neither a JACK nor a PipeWire server answers, using null");
            open_null(opts)
        }
    }
}

/// The sample rate a server of the backend `choice` runs at, if that backend's server
/// dictates one and answers (JACK); `None` otherwise. Opens no ports.
pub fn server_sample_rate(choice: BackendChoice) -> Option<u32> {
    match choice {
        #[cfg(feature = "jack")]
        BackendChoice::Jack => super::jack::JackOutput::server_sample_rate(),
        _ => None,
    }
}

fn open_null(opts: &OutputOptions) -> Result<Box<dyn AudioOutput>, AudioError> {
    warn_no_inputs("null", opts);
    Ok(Box::new(NullOutput::open(
        opts.sample_rate,
        opts.period_frames,
        OUTPUT_CHANNELS,
    )?))
}

/// The JACK output opens input ports, the PipeWire output an input stream; the null output
/// has none, and says that `audio.inputs` is ignored.
fn warn_no_inputs(backend: &str, opts: &OutputOptions) {
    if opts.inputs > 0 {
        log::warn!(
            "audio: the {backend} output has no input ports; audio.inputs = {} is ignored \
             (a capture is refused)",
            opts.inputs
        );
    }
}

fn jack_reachable() -> bool {
    #[cfg(feature = "jack")]
    return super::jack::JackOutput::server_reachable();
    #[cfg(not(feature = "jack"))]
    return false;
}

fn open_jack(opts: &OutputOptions) -> Result<Box<dyn AudioOutput>, AudioError> {
    #[cfg(feature = "jack")]
    return Ok(Box::new(super::jack::JackOutput::open(
        &super::jack::JackOptions {
            client_name: opts.client_name.clone(),
            autoconnect: opts.autoconnect,
            midi_in: opts.midi_in.clone(),
            inputs: opts.inputs,
        },
    )?));
    #[cfg(not(feature = "jack"))]
    return {
        let _ = opts;
        Err(AudioError::BackendUnavailable("jack"))
    };
}

fn pipewire_reachable() -> bool {
    #[cfg(feature = "pipewire")]
    return super::pipewire::PipeWireOutput::server_reachable();
    #[cfg(not(feature = "pipewire"))]
    return false;
}

#[cfg_attr(not(feature = "pipewire"), allow(unused_variables))]
fn open_pipewire(opts: &OutputOptions) -> Result<Box<dyn AudioOutput>, AudioError> {
    #[cfg(feature = "pipewire")]
    return Ok(Box::new(super::pipewire::PipeWireOutput::open(
        &super::pipewire::PipeWireOptions {
            node_name: opts.client_name.clone(),
            target: None,
            sample_rate: opts.sample_rate,
            period_frames: opts.period_frames,
            midi_in: opts.midi_in.clone(),
            autoconnect_inputs: opts.autoconnect,
            inputs: opts.inputs,
        },
    )?));
    #[cfg(not(feature = "pipewire"))]
    return {
        let _ = opts;
        Err(AudioError::BackendUnavailable("pipewire"))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> OutputOptions {
        OutputOptions {
            client_name: "latentd-test".into(),
            autoconnect: false,
            sample_rate: 44_100,
            period_frames: 128,
            midi_in: None,
            inputs: 0,
        }
    }

    #[test]
    fn null_opens_at_the_asked_format() {
        let out = open_output(BackendChoice::Null, &opts()).unwrap();
        assert_eq!(out.name(), "null");
        let f = out.format();
        assert_eq!(
            (f.sample_rate, f.period_frames, f.channels),
            (44_100, 128, 2)
        );
    }

    #[test]
    fn backend_names_parse_and_unknown_ones_are_refused() {
        for c in [
            BackendChoice::Auto,
            BackendChoice::Jack,
            BackendChoice::Pipewire,
            BackendChoice::Null,
        ] {
            assert_eq!(c.as_str().parse::<BackendChoice>(), Ok(c));
        }
        assert_eq!(
            "alsa".parse::<BackendChoice>(),
            Err("unknown audio backend \"alsa\"; accepted: auto, jack, pipewire, null".into())
        );
    }
}
