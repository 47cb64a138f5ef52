//! The MIDI part of the contract: what a MIDI map binds (a channel and a controller number to
//! a knob or an action), its range, curve and mode, and the checks every way in applies
//! (`/midi/map`, `/midi/learn`, the config file's `[[midi.map]]`, the saved state): one
//! [`Schema::midi_map`] builds a valid [`MidiMap`] or says why not. `docs/osc.md` is
//! generated from the same tables.
//!
//! Threading: constants and pure functions; usable from any thread.

use crate::named;
use crate::presets::FadeCurve;
use crate::schema::Schema;

/// MIDI channels as musicians count them (the wire's 0 to 15, plus one).
pub const CHANNELS: std::ops::RangeInclusive<i64> = 1..=16;

/// Controller (CC) numbers.
pub const CONTROLLERS: std::ops::RangeInclusive<i64> = 0..=127;

/// Most maps kept at once; a new one beyond it is refused.
pub const MAX_MIDI_MAPS: usize = 256;

/// A CC value at or above this is a button press (for actions).
pub const PRESS_THRESHOLD: u8 = 64;

/// What a map does on a press rather than setting a knob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MidiAction {
    /// Play when paused, pause when playing.
    TransportToggle,
    /// `/transport/play`.
    TransportPlay,
    /// `/transport/pause`.
    TransportPause,
    /// Recall the next preset in name order (after the last one recalled by MIDI), at once.
    PresetNext,
    /// The `seed` knob plus one (wrapping to its minimum past its maximum).
    SeedNext,
}

impl MidiAction {
    /// Every action with its target name and what it does.
    pub const ALL: [(MidiAction, &'static str, &'static str); 5] = [
        (
            MidiAction::TransportToggle,
            "transport/toggle",
            "play when paused, pause when playing",
        ),
        (
            MidiAction::TransportPlay,
            "transport/play",
            "as `/transport/play`",
        ),
        (
            MidiAction::TransportPause,
            "transport/pause",
            "as `/transport/pause`",
        ),
        (
            MidiAction::PresetNext,
            "preset/next",
            "recall the next preset in name order (after the one MIDI recalled last; \
             wrapping), at once",
        ),
        (
            MidiAction::SeedNext,
            "seed/next",
            "the `seed` knob plus one (wrapping to 0 past its maximum)",
        ),
    ];

    /// The action's target name.
    pub fn name(self) -> &'static str {
        named::name_of(&Self::ALL, self)
    }
}

/// What a map drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MidiTarget {
    /// A knob (its index in [`Schema::knobs`] and its name); `prompt_blend` is one.
    Knob {
        /// Index into the schema's knob list.
        index: usize,
        /// The knob's name.
        name: &'static str,
    },
    /// An action, fired by a press.
    Action(MidiAction),
}

impl MidiTarget {
    /// The target's name, as sent and listed.
    pub fn name(self) -> &'static str {
        match self {
            MidiTarget::Knob { name, .. } => name,
            MidiTarget::Action(a) => a.name(),
        }
    }
}

/// How controller values move the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MidiMode {
    /// The value sets the target at once (0 is `min`, 127 is `max`).
    #[default]
    Absolute,
    /// As absolute, but only once the fader has reached the target's current value.
    Pickup,
    /// An endless encoder in two's complement: 1 to 63 step up, 127 down to 64 step down.
    Relative,
    /// An endless encoder around 64: 65 and up step up, 63 and down step down.
    RelativeOffset,
}

impl MidiMode {
    /// Every mode with its name on the wire and what it does, the default first.
    pub const ALL: [(MidiMode, &'static str, &'static str); 4] = [
        (
            MidiMode::Absolute,
            "absolute",
            "the controller's value sets the target at once: 0 gives `min`, 127 `max` \
             (the default)",
        ),
        (
            MidiMode::Pickup,
            "pickup",
            "as absolute, but the target does not jump: the fader takes over only once it \
             reaches (or crosses) the target's current value; a change from elsewhere (OSC, \
             a preset) lets go again",
        ),
        (
            MidiMode::Relative,
            "relative",
            "endless encoder, two's complement: values 1 to 63 step up by that many \
             1/127ths of the range, 127 down to 64 step down by 1 to 64",
        ),
        (
            MidiMode::RelativeOffset,
            "relative_offset",
            "endless encoder around 64: 65 and up step up by value - 64, 63 and down step \
             down by 64 - value",
        ),
    ];

    /// The mode of that name; the error lists the names.
    pub fn from_name(name: &str) -> Result<MidiMode, String> {
        named::find(&Self::ALL, name).ok_or_else(|| {
            format!(
                "unknown mode {name:?}; modes are: {}",
                named::listed(&Self::ALL)
            )
        })
    }

    /// The mode's name on the wire.
    pub fn name(self) -> &'static str {
        named::name_of(&Self::ALL, self)
    }
}

/// What a map does, without the controller it listens to (what `/midi/learn` asks for).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MidiBinding {
    /// What it drives.
    pub target: MidiTarget,
    /// Target value at controller value 0 (a knob's minimum unless given); within the knob's
    /// range. May exceed `max` (an inverted fader). Unused by actions.
    pub min: f64,
    /// Target value at controller value 127 (a knob's maximum unless given).
    pub max: f64,
    /// Shape from controller value to target value.
    pub curve: FadeCurve,
    /// How values move the target.
    pub mode: MidiMode,
}

/// One map: controller `cc` on `channel` drives `binding`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MidiMap {
    /// 1 to 16.
    pub channel: u8,
    /// 0 to 127.
    pub cc: u8,
    /// What it drives, and how.
    pub binding: MidiBinding,
}

/// A MIDI channel argument: an integral number 1 to 16.
pub fn check_channel(value: f64) -> Result<u8, String> {
    integral_in(value, &CHANNELS, "a MIDI channel is an integer")
}

/// A controller number argument: an integral number 0 to 127.
pub fn check_controller(value: f64) -> Result<u8, String> {
    integral_in(
        value,
        &CONTROLLERS,
        "a controller (CC) number is an integer",
    )
}

fn integral_in(
    value: f64,
    range: &std::ops::RangeInclusive<i64>,
    what: &str,
) -> Result<u8, String> {
    let (lo, hi) = (*range.start(), *range.end());
    if value.fract() != 0.0 || value < lo as f64 || value > hi as f64 {
        return Err(format!("{what} {lo} to {hi}; got {value}"));
    }
    Ok(value as u8)
}

impl Schema {
    /// The target of that name: a knob of this schema, or an action. The error lists them.
    pub fn midi_target(&self, name: &str) -> Result<MidiTarget, String> {
        if let Some(index) = self.knob_index(name) {
            return Ok(MidiTarget::Knob {
                index,
                name: self.knobs()[index].name,
            });
        }
        if let Some(action) = named::find(&MidiAction::ALL, name) {
            return Ok(MidiTarget::Action(action));
        }
        Err(format!(
            "unknown target {name:?}; a target is a knob name (see the knob table) or one of: {}",
            named::listed(&MidiAction::ALL)
        ))
    }

    /// A binding with its defaults filled in and checked: `min` and `max` within the knob's
    /// range (the knob's bounds when omitted), finite. The error names the argument.
    pub fn midi_binding(
        &self,
        target: &str,
        min: Option<f64>,
        max: Option<f64>,
        curve: Option<&str>,
        mode: Option<&str>,
    ) -> Result<MidiBinding, String> {
        let target = self.midi_target(target)?;
        let (lo, hi) = match target {
            MidiTarget::Knob { index, .. } => {
                let k = &self.knobs()[index];
                (k.min, k.max)
            }
            MidiTarget::Action(_) => (0.0, 1.0),
        };
        let bound = |which: &str, given: Option<f64>, default: f64| -> Result<f64, String> {
            let Some(v) = given else {
                return Ok(default);
            };
            if matches!(target, MidiTarget::Knob { .. }) && !(v.is_finite() && lo <= v && v <= hi) {
                return Err(format!(
                    "{which} {v} is outside knob {}'s range [{lo}, {hi}]",
                    target.name()
                ));
            }
            Ok(v)
        };
        Ok(MidiBinding {
            target,
            min: bound("min", min, lo)?,
            max: bound("max", max, hi)?,
            curve: match curve {
                Some(name) => FadeCurve::from_name(name)?,
                None => FadeCurve::default(),
            },
            mode: match mode {
                Some(name) => MidiMode::from_name(name)?,
                None => MidiMode::default(),
            },
        })
    }

    /// A whole map, checked as [`Schema::midi_binding`] plus the channel and controller.
    #[allow(clippy::too_many_arguments)]
    pub fn midi_map(
        &self,
        channel: f64,
        cc: f64,
        target: &str,
        min: Option<f64>,
        max: Option<f64>,
        curve: Option<&str>,
        mode: Option<&str>,
    ) -> Result<MidiMap, String> {
        Ok(MidiMap {
            channel: check_channel(channel)?,
            cc: check_controller(cc)?,
            binding: self.midi_binding(target, min, max, curve, mode)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference_knobs;

    #[test]
    fn maps_are_checked_with_their_reasons() {
        let schema = Schema::new(reference_knobs()).unwrap();
        let m = schema
            .midi_map(1.0, 74.0, "denoise", None, None, None, None)
            .unwrap();
        assert_eq!((m.channel, m.cc), (1, 74));
        assert_eq!((m.binding.min, m.binding.max), (0.0, 1.0));
        assert_eq!(m.binding.mode, MidiMode::Absolute);
        let m = schema
            .midi_map(16.0, 0.0, "seed/next", None, None, None, Some("relative"))
            .unwrap();
        assert_eq!(m.binding.target, MidiTarget::Action(MidiAction::SeedNext));
        for (args, why) in [
            (
                (0.0, 1.0, "denoise"),
                "channel is an integer 1 to 16; got 0",
            ),
            ((17.0, 1.0, "denoise"), "got 17"),
            (
                (1.0, 128.0, "denoise"),
                "(CC) number is an integer 0 to 127; got 128",
            ),
            ((1.0, 1.5, "denoise"), "got 1.5"),
            ((1.0, 1.0, "volume"), "unknown target \"volume\""),
        ] {
            let err = schema
                .midi_map(args.0, args.1, args.2, None, None, None, None)
                .unwrap_err();
            assert!(err.contains(why), "{args:?}: {err}");
        }
        let err = schema
            .midi_binding("denoise", Some(0.0), Some(2.0), None, None)
            .unwrap_err();
        assert!(
            err.contains("max 2 is outside knob denoise's range"),
            "{err}"
        );
        let err = schema
            .midi_binding("denoise", None, None, None, Some("jog"))
            .unwrap_err();
        assert!(err.contains("relative_offset"), "{err}");
    }

    #[test]
    fn modes_and_actions_round_trip_by_name() {
        for (mode, name, _) in MidiMode::ALL {
            assert_eq!(MidiMode::from_name(name), Ok(mode));
            assert_eq!(mode.name(), name);
        }
        let schema = Schema::new(reference_knobs()).unwrap();
        for (action, name, _) in MidiAction::ALL {
            assert_eq!(schema.midi_target(name), Ok(MidiTarget::Action(action)));
            assert_eq!(action.name(), name);
        }
    }
}
