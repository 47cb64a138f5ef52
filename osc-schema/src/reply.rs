//! Builders for everything the server sends: replies to the sender and pushes to
//! subscribers. Each returns a `rosc` packet; the transport encodes and frames it.
//!
//! Threading: pure functions; usable from any thread.

use rosc::{OscBundle, OscMessage, OscPacket, OscTime, OscType};

use crate::command::Fail;
use crate::knobs::ParamSpec;

fn message(addr: impl Into<String>, args: Vec<OscType>) -> OscPacket {
    OscPacket::Message(OscMessage {
        addr: addr.into(),
        args,
    })
}

/// `/done <address> [extra...]`: an asynchronous command took effect.
pub fn done(address: &str, extra: Vec<OscType>) -> OscPacket {
    let mut args = vec![OscType::String(address.to_string())];
    args.extend(extra);
    message("/done", args)
}

/// `/fail <address> <reason>`.
pub fn fail(failure: &Fail) -> OscPacket {
    message(
        "/fail",
        vec![
            OscType::String(failure.address.clone()),
            OscType::String(failure.reason.clone()),
        ],
    )
}

/// `/synced <id>`.
pub fn synced(id: i32) -> OscPacket {
    message("/synced", vec![OscType::Int(id)])
}

/// `/knob/<name> <value>`, typed by [`ParamSpec::reply_tag`]: `f` for continuous knobs,
/// `i` for integer knobs that fit int32, `d` for wider integer knobs (`seed`).
pub fn knob_value(knob: &ParamSpec, value: f64) -> OscPacket {
    let arg = match knob.reply_tag() {
        'i' => OscType::Int(value as i32),
        'd' => OscType::Double(value),
        _ => OscType::Float(value as f32),
    };
    message(format!("/knob/{}", knob.name), vec![arg])
}

/// A bundle (timetag "immediately") of `/knob/<name> <value>`, one per knob: the reply to `/knobs`.
pub fn knobs_bundle<'a>(values: impl IntoIterator<Item = (&'a ParamSpec, f64)>) -> OscPacket {
    OscPacket::Bundle(OscBundle {
        timetag: OscTime {
            seconds: 0,
            fractional: 1,
        },
        content: values.into_iter().map(|(k, v)| knob_value(k, v)).collect(),
    })
}

/// `/preset/list.reply s name...`: the saved presets, in name order.
pub fn preset_list_reply<'a>(names: impl IntoIterator<Item = &'a str>) -> OscPacket {
    message(
        "/preset/list.reply",
        names
            .into_iter()
            .map(|n| OscType::String(n.to_string()))
            .collect(),
    )
}

/// `/prompt/applied <epoch> <tags>`: pushed to subscribers when the engine uses a prompt.
pub fn prompt_applied(epoch: i32, tags: &str) -> OscPacket {
    message(
        "/prompt/applied",
        vec![OscType::Int(epoch), OscType::String(tags.to_string())],
    )
}

/// What `/status.reply` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusReport {
    /// Engine backend (`builtin`, `cuda`, ...).
    pub backend: String,
    /// Output sample rate in Hz.
    pub sample_rate: u32,
    /// Output period in frames.
    pub period_frames: u32,
    /// Playhead in seconds.
    pub playhead_s: f64,
    /// Loop (ring) length in seconds.
    pub loop_s: f64,
    /// Engine ticks per second.
    pub ticks_per_s: f64,
    /// Median tick duration in ms.
    pub tick_ms_p50: f64,
    /// Current lead in seconds.
    pub lead_s: f64,
    /// Output xruns since start.
    pub xruns: u64,
    /// Ring writes that landed (partly) inside the guard.
    pub late_landings: u64,
    /// Last measured knob-to-ear latency in ms; `None` before the first measurement.
    pub last_knob_to_ear_ms: Option<f64>,
    /// Engine pipeline restarts since start (each after a caught panic in a tick; the
    /// loop kept playing).
    pub engine_restarts: u64,
    /// The audio output's state: `running`, `lost` (its server went away) or
    /// `reconnecting` (attempts to reopen it have failed so far).
    pub output: String,
    /// Times the output came back after a loss.
    pub output_reconnects: u64,
    /// Last period's levels, one per output channel.
    pub levels: [Level; METER_CHANNELS],
    /// Knobs the playing model cannot honour (setting one is accepted and changes nothing),
    /// e.g. `guidance` for a bundle without classifier-free guidance; empty for the built-in
    /// model.
    pub inert_knobs: Vec<String>,
    /// The output's latency to the listener in ms, as its audio server reports it (JACK:
    /// the playback latency range of latentd's ports, a netjack2 hop included; other
    /// outputs: the period).
    pub output_latency_ms: f64,
    /// Whether the audio callback's thread runs with realtime scheduling (`SCHED_FIFO` /
    /// `SCHED_RR`), as checked once per output started; `None` before the first check.
    pub callback_realtime: Option<bool>,
}

/// Output channels the meters report (`/meter`, `/status.reply`): latentd plays stereo.
pub const METER_CHANNELS: usize = 2;

/// One output channel's level over the last period, in dBFS (0 is full scale).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Level {
    /// Largest sample magnitude, dBFS.
    pub peak_dbfs: f64,
    /// Root mean square, dBFS.
    pub rms_dbfs: f64,
}

impl Level {
    /// What silence reads as: levels are never reported below this, in dBFS.
    pub const FLOOR_DBFS: f64 = -120.0;

    /// Silence.
    pub const SILENT: Level = Level {
        peak_dbfs: Level::FLOOR_DBFS,
        rms_dbfs: Level::FLOOR_DBFS,
    };

    /// A linear amplitude (1.0 is full scale) in dBFS, never below [`Level::FLOOR_DBFS`].
    pub fn dbfs(linear: f64) -> f64 {
        let db = 20.0 * linear.abs().log10();
        if db.is_nan() {
            Level::FLOOR_DBFS
        } else {
            db.max(Level::FLOOR_DBFS)
        }
    }

    /// dBFS back to a linear amplitude.
    pub fn linear(dbfs: f64) -> f64 {
        10f64.powf(dbfs / 20.0)
    }

    /// A level from a linear peak and RMS.
    pub fn from_linear(peak: f64, rms: f64) -> Level {
        Level {
            peak_dbfs: Level::dbfs(peak),
            rms_dbfs: Level::dbfs(rms),
        }
    }
}

/// The level arguments as `/meter` and the end of `/status.reply` carry them: per channel,
/// `f peak_dbfs, f rms_dbfs`.
fn level_args(levels: &[Level]) -> impl Iterator<Item = OscType> + '_ {
    levels.iter().flat_map(|l| {
        [
            OscType::Float(l.peak_dbfs as f32),
            OscType::Float(l.rms_dbfs as f32),
        ]
    })
}

/// The names of the level arguments in wire order: `peak_dbfs_1, rms_dbfs_1, peak_dbfs_2,
/// ...` (channels counted from 1, as the JACK ports `out_1`, `out_2`).
pub fn level_arg_names() -> Vec<String> {
    (1..=METER_CHANNELS)
        .flat_map(|c| [format!("peak_dbfs_{c}"), format!("rms_dbfs_{c}")])
        .collect()
}

/// `/meter f peak_dbfs_1, f rms_dbfs_1, f peak_dbfs_2, f rms_dbfs_2`: pushed to the clients
/// that asked with `/notify/meter <hz>`.
pub fn meter(levels: &[Level]) -> OscPacket {
    message("/meter", level_args(levels).collect())
}

/// `/alarm s kind, i raised, s detail`: a silence or clip alarm was raised (1) or cleared
/// (0); pushed to `/notify` subscribers.
pub fn alarm(kind: &str, raised: bool, detail: &str) -> OscPacket {
    message(
        "/alarm",
        vec![
            OscType::String(kind.to_string()),
            OscType::Int(i32::from(raised)),
            OscType::String(detail.to_string()),
        ],
    )
}

/// `/schedule/fired s at, s action`: a `[[schedule]]` cue of the daemon's config ran
/// (`at` its time of day, `action` what it did, in words); pushed to `/notify` subscribers.
pub fn schedule_fired(at: &str, action: &str) -> OscPacket {
    message(
        "/schedule/fired",
        vec![
            OscType::String(at.to_string()),
            OscType::String(action.to_string()),
        ],
    )
}

/// `/status.reply s backend, i sample_rate, i period_frames, f playhead_s, f loop_s,
/// f ticks_per_s, f tick_ms_p50, f lead_s, i xruns, i late_landings, f last_knob_to_ear_ms,
/// i engine_restarts, s output, i output_reconnects, f peak_dbfs_1, f rms_dbfs_1,
/// f peak_dbfs_2, f rms_dbfs_2, s inert_knobs, f output_latency_ms, i callback_realtime`
/// (counters saturate at i32::MAX; -1 stands for "not measured"; levels as in [`meter`];
/// `inert_knobs` comma-separated, empty for none; `callback_realtime` 1, 0 or -1).
pub fn status_reply(s: &StatusReport) -> OscPacket {
    let int = |v: u64| OscType::Int(i32::try_from(v).unwrap_or(i32::MAX));
    let mut args = vec![
        OscType::String(s.backend.clone()),
        int(u64::from(s.sample_rate)),
        int(u64::from(s.period_frames)),
        OscType::Float(s.playhead_s as f32),
        OscType::Float(s.loop_s as f32),
        OscType::Float(s.ticks_per_s as f32),
        OscType::Float(s.tick_ms_p50 as f32),
        OscType::Float(s.lead_s as f32),
        int(s.xruns),
        int(s.late_landings),
        OscType::Float(s.last_knob_to_ear_ms.map_or(-1.0, |v| v as f32)),
        int(s.engine_restarts),
        OscType::String(s.output.clone()),
        int(s.output_reconnects),
    ];
    args.extend(level_args(&s.levels));
    args.push(OscType::String(s.inert_knobs.join(",")));
    args.push(OscType::Float(s.output_latency_ms as f32));
    args.push(OscType::Int(match s.callback_realtime {
        Some(true) => 1,
        Some(false) => 0,
        None => -1,
    }));
    message("/status.reply", args)
}

/// `/version.reply <name> <version>`.
pub fn version_reply(name: &str, version: &str) -> OscPacket {
    message(
        "/version.reply",
        vec![
            OscType::String(name.to_string()),
            OscType::String(version.to_string()),
        ],
    )
}
