//! SIGHUP: re-read the config and apply what can change while the audio plays.
//!
//! The file is read and validated as a whole first ([`crate::settings::reload`]: the same
//! command line on top); a file that does not parse or validate is refused and nothing
//! changes. Then, live:
//!
//! - `log.level`: the logger's level.
//! - `osc.allowlist`: the OSC and OSCQuery servers judge new packets and requests by the new
//!   list; subscribers outside it stop receiving pushes, open TCP connections from peers
//!   outside it are closed before their next packet.
//! - `engine.knobs`: each knob whose configured value (its default at start) changed is set
//!   to the new value as a client's `/knob/<name>` would set it (validated, echoed to
//!   subscribers, saved in the session); a knob removed from the file goes back to the
//!   engine's default. Knobs whose configured value did not change keep what the performer
//!   set.
//! - `[lead]`: handed to the engine thread through its control queue (it never waits on it);
//!   the learned lead state carries over.
//! - `[[schedule]]`: the schedule thread runs the new entries from its next reading; an
//!   entry also in the old list keeps its record of the minute it last fired, so a reload
//!   in that minute does not fire it twice.
//!
//! Every other changed key is named in the log line as waiting for a restart, and stays as
//! started in the running settings, so the next reload names it again.
//!
//! Threading: the main thread (the daemon's signal loop). Nothing here touches the audio
//! thread; the servers' allowlist swap takes a write lock their control threads also take.

use std::ffi::OsString;

use latentd_engine::knobs::{KNOBS, KnobId};

use crate::control::{DaemonEngine, Dispatcher};
use crate::osc::OscServer;
use crate::osc::oscquery::OscQueryServer;
use crate::schedule::ScheduleRunner;
use crate::settings::{Settings, reload};
use crate::systemd::Notifier;

/// The running parts a reload changes.
pub struct LiveParts<'a> {
    /// Knob sets go through it, as a client's would.
    pub dispatcher: &'a Dispatcher,
    /// Takes the new lead settings.
    pub engine: &'a DaemonEngine,
    /// Takes the new allowlist.
    pub osc: &'a OscServer,
    /// Takes the new allowlist too, when it runs.
    pub oscquery: Option<&'a OscQueryServer>,
    /// The session manager's session, whose overrides apply over the re-read config.
    pub nsm: Option<&'a crate::nsm::NsmClient>,
    /// Takes the new `[[schedule]]` entries.
    pub schedule: &'a ScheduleRunner,
}

/// SIGHUP: `RELOADING=1`, re-read the config, apply what can change live (see the module
/// doc), log what applied and what waits for a restart, `READY=1`. `running` is what the
/// daemon runs with; the keys applied live are updated in it.
pub fn reload_config(
    notifier: &Notifier,
    running: &mut Settings,
    args: &[OsString],
    live: &LiveParts<'_>,
) {
    let _ = notifier.reloading();
    match reload(args.iter().cloned()) {
        Ok(new) => {
            let new = match live.nsm {
                Some(nsm) => nsm.apply_overrides(new),
                None => new,
            };
            let applied = apply_live(running, &new, live);
            let pending = changed_until_restart(running, &new);
            log::info!(
                "config reloaded: log level {}{}{}",
                new.log_level.as_str(),
                if applied.is_empty() {
                    String::new()
                } else {
                    format!("; applied live: {}", applied.join(", "))
                },
                if pending.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; changed, applied at the next restart: {}",
                        pending.join(", ")
                    )
                }
            );
        }
        Err(e) => log::error!("config reload refused, keeping the running settings: {e}"),
    }
    let _ = notifier.ready();
}

/// Apply the live keys of `new` that differ from `running` and record them in `running`;
/// returns what was applied, for the log line.
fn apply_live(running: &mut Settings, new: &Settings, live: &LiveParts<'_>) -> Vec<String> {
    let mut applied = Vec::new();
    crate::logging::set_level(new.log_level.filter());
    running.log_level = new.log_level;

    if running.osc_allow != new.osc_allow {
        live.osc.set_allowed_networks(new.osc_allow.clone());
        if let Some(query) = live.oscquery {
            query.set_allowed_networks(new.osc_allow.clone());
        }
        let list: Vec<String> = new.osc_allow.iter().map(|c| c.to_string()).collect();
        applied.push(format!("osc.allowlist = [{}]", list.join(", ")));
        running.osc_allow = new.osc_allow.clone();
    }

    if running.lead != new.lead {
        match live.engine.set_lead(new.lead) {
            Ok(()) => {
                applied.push("lead".to_string());
                running.lead = new.lead;
            }
            Err(e) => log::error!("config reload: [lead] not applied: {e}"),
        }
    }

    if running.schedule != new.schedule {
        live.schedule.replace(new.schedule.clone());
        applied.push(format!("schedule ({} entries)", new.schedule.len()));
        running.schedule = new.schedule.clone();
    }

    let knob_sets = changed_knob_defaults(&running.knobs, &new.knobs);
    if !knob_sets.is_empty() {
        match live.dispatcher.set_knobs_as_client(&knob_sets) {
            Ok(()) => {
                for &(id, value) in &knob_sets {
                    applied.push(format!("engine.knobs.{} = {value}", id.spec().name));
                }
                running.knobs = new.knobs.clone();
            }
            Err(e) => log::error!("config reload: engine.knobs not applied: {e}"),
        }
    }
    applied
}

/// The knobs whose configured value differs between `running` and `new`, with the value to
/// set: the new configured one, or the engine's default for a knob no longer configured.
/// In the knob table's order.
pub fn changed_knob_defaults(
    running: &[(KnobId, f64)],
    new: &[(KnobId, f64)],
) -> Vec<(KnobId, f64)> {
    let configured =
        |list: &[(KnobId, f64)], id: KnobId| list.iter().find(|(k, _)| *k == id).map(|&(_, v)| v);
    KNOBS
        .iter()
        .filter_map(|spec| KnobId::from_name(spec.name))
        .filter_map(|id| {
            let (before, after) = (configured(running, id), configured(new, id));
            (before != after).then(|| (id, after.unwrap_or(id.spec().default)))
        })
        .collect()
}

/// The settings that differ between `running` and `new` and only apply at a restart.
pub fn changed_until_restart(running: &Settings, new: &Settings) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |differs: bool, name: &'static str| {
        if differs {
            changed.push(name);
        }
    };
    check(running.backend != new.backend, "audio.backend");
    check(running.client_name != new.client_name, "audio.client_name");
    check(running.autoconnect != new.autoconnect, "audio.autoconnect");
    check(running.sample_rate != new.sample_rate, "audio.rate");
    check(running.period_frames != new.period_frames, "audio.period");
    check(running.source != new.source, "source.file");
    check(
        running.loop_seconds != new.loop_seconds,
        "source.loop_seconds",
    );
    check(running.record != new.record, "record.file");
    check(running.record_config != new.record_config, "record.split_s");
    check(running.inputs != new.inputs, "audio.inputs");
    check(running.capture_save != new.capture_save, "capture.save");
    check(running.log_target != new.log_target, "log.target");
    check(running.osc_bind != new.osc_bind, "osc.bind");
    check(
        running.oscquery_port != new.oscquery_port,
        "osc.oscquery_port",
    );
    check(running.advertise != new.advertise, "osc.advertise");
    check(running.media_folder != new.media_folder, "media.folder");
    check(running.engine != new.engine, "engine.backend");
    check(
        running.prompt != new.prompt || running.prompt_b != new.prompt_b,
        "engine.prompt",
    );
    check(running.state_path != new.state_path, "state.path");
    check(running.health != new.health, "health");
    check(running.midi != new.midi, "midi.enabled");
    check(running.midi_maps != new.midi_maps, "midi.map");
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_knobs_whose_configured_value_changed_are_set() {
        let running = [(KnobId::denoise, 0.5), (KnobId::shift, 1.0)];
        let new = [(KnobId::denoise, 0.5), (KnobId::shift, 2.0)];
        assert_eq!(
            changed_knob_defaults(&running, &new),
            [(KnobId::shift, 2.0)]
        );
        assert!(changed_knob_defaults(&running, &running).is_empty());
        // Removed from the file: back to the engine's default; added: the new value.
        let removed = changed_knob_defaults(&running, &[(KnobId::shift, 1.0)]);
        assert_eq!(removed, [(KnobId::denoise, KnobId::denoise.spec().default)]);
        let added = changed_knob_defaults(&[], &[(KnobId::denoise, 0.25)]);
        assert_eq!(added, [(KnobId::denoise, 0.25)]);
    }
}
