//! MIDI maps: what a controller message does to the knobs, as pure logic. [`MidiMaps`] holds
//! the maps (checked by the schema, [`latentd_osc_schema::midi`]), the per-map state the
//! modes need (pickup, encoder position, button edge) and a pending learn; [`MidiMaps::handle`]
//! turns one [`MidiMessage`] into at most one [`Effect`], which the control side applies
//! exactly as the OSC command of the same meaning (see `control::midi`).
//!
//! Positions: a controller's value 0 to 127 is a position 0 to 1; the map's curve (a fade
//! curve, [`FadeCurve`]) shapes it, then it is scaled from `min` to `max`. A relative encoder
//! moves the position by 1/127 per step. An integer knob takes the nearest integer; the
//! encoder keeps its own position between steps, so steps smaller than one integer add up.
//!
//! Persisted form: [`MidiMapEntry`], the same in the config file (`[[midi.map]]`) and the
//! state file.
//!
//! Threading: plain data; the control side keeps it behind its mutex. Never the audio
//! callback (it allocates).

use std::collections::BTreeMap;

use latentd_osc_schema::midi::{
    MAX_MIDI_MAPS, MidiAction, MidiBinding, MidiMap, MidiMode, MidiTarget, PRESS_THRESHOLD,
};
use latentd_osc_schema::presets::FadeCurve;
use latentd_osc_schema::{ParamSpec, Schema};
use serde::{Deserialize, Serialize};

/// One channel message latentd reacts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MidiMessage {
    /// Control Change.
    Control {
        /// 1 to 16.
        channel: u8,
        /// 0 to 127.
        cc: u8,
        /// 0 to 127.
        value: u8,
    },
    /// Program Change.
    Program {
        /// 1 to 16.
        channel: u8,
        /// 0 to 127.
        program: u8,
    },
}

impl MidiMessage {
    /// Parse a status byte and its data bytes; `None` for any other message (notes, clock,
    /// sysex) or malformed data (a data byte with the high bit set).
    pub fn parse(status: u8, data1: u8, data2: u8) -> Option<MidiMessage> {
        let channel = (status & 0x0F) + 1;
        match status & 0xF0 {
            0xB0 if data1 < 0x80 && data2 < 0x80 => Some(MidiMessage::Control {
                channel,
                cc: data1,
                value: data2,
            }),
            0xC0 if data1 < 0x80 => Some(MidiMessage::Program {
                channel,
                program: data1,
            }),
            _ => None,
        }
    }
}

/// What a message does.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Set knob `index` of the schema to `value` (within its range, integral for an
    /// integer knob).
    SetKnob {
        /// Index into the schema's knob list.
        index: usize,
        /// The new value.
        value: f64,
    },
    /// Fire an action.
    Action(MidiAction),
    /// A learn completed: this map is now in place.
    Learned(MidiMap),
    /// Recall the preset at this position of the preset list.
    Program(u8),
}

/// What a map remembers between messages.
#[derive(Debug, Clone, Copy, Default)]
struct MapState {
    /// The value this map last set; the knob still holding it means no one else moved it.
    last_set: Option<f64>,
    /// The position that gave `last_set` (the encoder's, or the fader's).
    position: f64,
    /// Pickup: the value the fader last asked for while not picked up.
    last_asked: Option<f64>,
    /// Pickup: the fader holds the knob.
    picked: bool,
    /// Actions: the controller was at or above the press threshold.
    pressed: bool,
}

/// The maps, their state and a pending learn (see the module doc).
#[derive(Debug, Default)]
pub struct MidiMaps {
    maps: BTreeMap<(u8, u8), (MidiMap, MapState)>,
    learning: Option<MidiBinding>,
}

/// Why a map could not be added or removed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// The table holds [`MAX_MIDI_MAPS`] maps already.
    #[error("{MAX_MIDI_MAPS} maps are kept at most; /midi/unmap one first")]
    Full,
    /// Nothing is mapped on that channel and controller.
    #[error("nothing is mapped on channel {channel} CC {cc} (see /midi/maps)")]
    Unmapped {
        /// 1 to 16.
        channel: u8,
        /// 0 to 127.
        cc: u8,
    },
}

impl MidiMaps {
    /// Add `map`, replacing the map on its channel and controller.
    pub fn insert(&mut self, map: MidiMap) -> Result<(), MapError> {
        let key = (map.channel, map.cc);
        if !self.maps.contains_key(&key) && self.maps.len() >= MAX_MIDI_MAPS {
            return Err(MapError::Full);
        }
        self.maps.insert(key, (map, MapState::default()));
        Ok(())
    }

    /// Remove the map on `channel` and `cc`.
    pub fn remove(&mut self, channel: u8, cc: u8) -> Result<MidiMap, MapError> {
        self.maps
            .remove(&(channel, cc))
            .map(|(m, _)| m)
            .ok_or(MapError::Unmapped { channel, cc })
    }

    /// Every map, in channel and controller order.
    pub fn list(&self) -> Vec<MidiMap> {
        self.maps.values().map(|(m, _)| *m).collect()
    }

    /// Bind the next controller moved to `binding`; returns the learn it replaces.
    pub fn learn(&mut self, binding: MidiBinding) -> Option<MidiBinding> {
        self.learning.replace(binding)
    }

    /// Is a learn waiting?
    pub fn learning(&self) -> bool {
        self.learning.is_some()
    }

    /// What `message` does. `knobs` is the schema's knob list, `current(index)` a knob's
    /// value now (its target, mid-glide).
    pub fn handle(
        &mut self,
        message: MidiMessage,
        knobs: &[ParamSpec],
        current: impl Fn(usize) -> f64,
    ) -> Option<Effect> {
        let (channel, cc, value) = match message {
            MidiMessage::Program { program, .. } => return Some(Effect::Program(program)),
            MidiMessage::Control { channel, cc, value } => (channel, cc, value),
        };
        if let Some(binding) = self.learning.take() {
            let map = MidiMap {
                channel,
                cc,
                binding,
            };
            if self.insert(map).is_ok() {
                return Some(Effect::Learned(map));
            }
            // The table is full: keep waiting (a controller already mapped may come).
            self.learning = Some(binding);
            return None;
        }
        let (map, state) = self.maps.get_mut(&(channel, cc))?;
        let binding = map.binding;
        match binding.target {
            MidiTarget::Action(action) => {
                let fire = match binding.mode {
                    MidiMode::Absolute | MidiMode::Pickup => {
                        let pressed = value >= PRESS_THRESHOLD;
                        let rising = pressed && !state.pressed;
                        state.pressed = pressed;
                        rising
                    }
                    MidiMode::Relative | MidiMode::RelativeOffset => {
                        relative_steps(binding.mode, value) > 0
                    }
                };
                fire.then_some(Effect::Action(action))
            }
            MidiTarget::Knob { index, .. } => {
                let knob = knobs.get(index)?;
                let now = current(index);
                let own = state.last_set.is_some_and(|v| same(v, now));
                let (position, wanted) = match binding.mode {
                    MidiMode::Absolute | MidiMode::Pickup => {
                        let p = f64::from(value) / 127.0;
                        (p, value_at(&binding, knob, p))
                    }
                    MidiMode::Relative | MidiMode::RelativeOffset => {
                        let from = if own {
                            state.position
                        } else {
                            position_of(&binding, now)
                        };
                        let step = f64::from(relative_steps(binding.mode, value)) / 127.0;
                        let p = (from + step).clamp(0.0, 1.0);
                        (p, value_at(&binding, knob, p))
                    }
                };
                if binding.mode == MidiMode::Pickup && !(state.picked && own) {
                    state.picked = false;
                    let near = (wanted - now).abs() <= step_size(&binding, knob);
                    let crossed = state
                        .last_asked
                        .is_some_and(|before| (before - now).signum() != (wanted - now).signum());
                    state.last_asked = Some(wanted);
                    if !(near || crossed) {
                        return None;
                    }
                    state.picked = true;
                }
                state.last_set = Some(wanted);
                state.last_asked = Some(wanted);
                state.position = position;
                Some(Effect::SetKnob {
                    index,
                    value: wanted,
                })
            }
        }
    }
}

/// Encoder steps a relative value stands for (positive: up).
pub fn relative_steps(mode: MidiMode, value: u8) -> i32 {
    let v = i32::from(value & 0x7F);
    match mode {
        MidiMode::Relative if v >= 64 => v - 128,
        MidiMode::Relative => v,
        MidiMode::RelativeOffset => v - 64,
        MidiMode::Absolute | MidiMode::Pickup => 0,
    }
}

/// The curve at position `t` (0 to 1).
pub fn shape(curve: FadeCurve, t: f64) -> f64 {
    let t = t.clamp(0.0, 1.0);
    match curve {
        FadeCurve::Linear => t,
        FadeCurve::Smooth => t * t * (3.0 - 2.0 * t),
        FadeCurve::EaseIn => t * t,
        FadeCurve::EaseOut => 1.0 - (1.0 - t) * (1.0 - t),
    }
}

/// The position (0 to 1) whose shaped value is `y` (0 to 1): every curve is monotonic, so
/// bisection finds it.
pub fn unshape(curve: FadeCurve, y: f64) -> f64 {
    let y = y.clamp(0.0, 1.0);
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if shape(curve, mid) < y {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// The knob value at `position` (0 to 1) of `binding`, inside the knob's range, integral for
/// an integer knob.
pub fn value_at(binding: &MidiBinding, knob: &ParamSpec, position: f64) -> f64 {
    let v = binding.min + shape(binding.curve, position) * (binding.max - binding.min);
    let v = if knob.integer { v.round() } else { v };
    v.clamp(knob.min, knob.max)
}

/// The position (0 to 1) at which `binding` gives `value` (the nearest end outside its
/// span).
pub fn position_of(binding: &MidiBinding, value: f64) -> f64 {
    let span = binding.max - binding.min;
    if span == 0.0 {
        return 0.0;
    }
    unshape(binding.curve, (value - binding.min) / span)
}

/// One controller step of `binding`, in knob units (at least half an integer for an integer
/// knob, which rounds): how near a fader must come to pick a knob up.
fn step_size(binding: &MidiBinding, knob: &ParamSpec) -> f64 {
    let step = (binding.max - binding.min).abs() / 127.0;
    if knob.integer { step.max(0.5) } else { step }
}

/// Equal up to the knob store's rounding (float knobs are kept at `f32` precision).
fn same(a: f64, b: f64) -> bool {
    (a - b).abs() <= f64::from(f32::EPSILON) * a.abs().max(b.abs()).max(1.0)
}

/// A map as the config file (`[[midi.map]]`) and the state file write it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MidiMapEntry {
    /// 1 to 16.
    pub channel: i64,
    /// 0 to 127.
    pub cc: i64,
    /// A knob's name or an action.
    pub target: String,
    /// Value at controller 0 (the knob's minimum when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Value at controller 127 (the knob's maximum when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// A fade curve's name (`linear` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curve: Option<String>,
    /// A mode's name (`absolute` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

impl MidiMapEntry {
    /// Check it as `/midi/map` is checked; the error says why (with its channel and CC).
    pub fn to_map(&self, schema: &Schema) -> Result<MidiMap, String> {
        schema
            .midi_map(
                self.channel as f64,
                self.cc as f64,
                &self.target,
                self.min,
                self.max,
                self.curve.as_deref(),
                self.mode.as_deref(),
            )
            .map_err(|why| {
                format!(
                    "MIDI map (channel {}, cc {}, target {:?}): {why}",
                    self.channel, self.cc, self.target
                )
            })
    }

    /// The entry that gives `map` back, every field written.
    pub fn from_map(map: &MidiMap) -> MidiMapEntry {
        let b = &map.binding;
        MidiMapEntry {
            channel: i64::from(map.channel),
            cc: i64::from(map.cc),
            target: b.target.name().to_string(),
            min: Some(b.min),
            max: Some(b.max),
            curve: Some(b.curve.name().to_string()),
            mode: Some(b.mode.name().to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latentd_osc_schema::reference_knobs;
    use proptest::prelude::*;

    fn schema() -> Schema {
        Schema::new(reference_knobs()).unwrap()
    }

    fn cc(cc: u8, value: u8) -> MidiMessage {
        MidiMessage::Control {
            channel: 1,
            cc,
            value,
        }
    }

    fn map(s: &Schema, target: &str, mode: &str, curve: &str) -> MidiMaps {
        let mut maps = MidiMaps::default();
        maps.insert(
            s.midi_map(1.0, 7.0, target, None, None, Some(curve), Some(mode))
                .unwrap(),
        )
        .unwrap();
        maps
    }

    fn set(effect: Option<Effect>) -> Option<f64> {
        match effect {
            Some(Effect::SetKnob { value, .. }) => Some(value),
            None => None,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn messages_parse_by_status() {
        assert_eq!(MidiMessage::parse(0xB0, 7, 100), Some(cc(7, 100)));
        assert_eq!(
            MidiMessage::parse(0xCF, 3, 0),
            Some(MidiMessage::Program {
                channel: 16,
                program: 3
            })
        );
        assert_eq!(MidiMessage::parse(0x90, 60, 100), None, "a note");
        assert_eq!(MidiMessage::parse(0xB0, 0x80, 1), None, "bad data byte");
    }

    #[test]
    fn absolute_scales_through_the_curve() {
        let s = schema();
        let mut m = map(&s, "denoise", "absolute", "linear");
        let at = |m: &mut MidiMaps, v| set(m.handle(cc(7, v), s.knobs(), |_| 0.5));
        assert_eq!(at(&mut m, 0), Some(0.0));
        assert_eq!(at(&mut m, 127), Some(1.0));
        let mut m = map(&s, "denoise", "absolute", "ease_in");
        let v = at(&mut m, 64).unwrap();
        assert!((v - (64.0f64 / 127.0).powi(2)).abs() < 1e-12, "{v}");
        // Unmapped controllers do nothing.
        assert_eq!(m.handle(cc(8, 1), s.knobs(), |_| 0.5), None);
    }

    #[test]
    fn pickup_waits_until_the_fader_reaches_the_knob() {
        let s = schema();
        let mut m = map(&s, "denoise", "pickup", "linear");
        let knob = std::cell::Cell::new(0.5);
        let mut send = |v| {
            let r = set(m.handle(cc(7, v), s.knobs(), |_| knob.get()));
            if let Some(x) = r {
                knob.set(x);
            }
            r
        };
        assert_eq!(send(10), None, "far below: no jump");
        assert_eq!(send(40), None);
        // Crossing 0.5 (63.5) picks it up.
        assert_eq!(send(70), Some(70.0 / 127.0));
        assert_eq!(send(20), Some(20.0 / 127.0), "held: follows at once");
        // Someone else moves the knob: the fader lets go until it comes back.
        knob.set(0.9);
        assert_eq!(send(30), None);
        assert_eq!(send(114), Some(114.0 / 127.0), "within one step of 0.9");
    }

    #[test]
    fn relative_modes_step_from_the_knob() {
        let s = schema();
        let mut m = map(&s, "denoise", "relative", "linear");
        let v = set(m.handle(cc(7, 3), s.knobs(), |_| 0.5)).unwrap();
        assert!((v - (0.5 + 3.0 / 127.0)).abs() < 1e-9, "{v}");
        let v = set(m.handle(cc(7, 127), s.knobs(), |_| 0.5)).unwrap();
        assert!((v - (0.5 - 1.0 / 127.0)).abs() < 1e-9, "{v}");
        let mut m = map(&s, "denoise", "relative_offset", "linear");
        let v = set(m.handle(cc(7, 62), s.knobs(), |_| 0.0)).unwrap();
        assert_eq!(v, 0.0, "clamped at the bottom");
        // An integer knob: small steps add up in the encoder's own position.
        let mut m = map(&s, "steps", "relative", "linear");
        let mut value = 8.0;
        let mut seen = Vec::new();
        for _ in 0..20 {
            value = set(m.handle(cc(7, 1), s.knobs(), |_| value)).unwrap();
            seen.push(value);
        }
        assert!(seen.last().unwrap() > &8.0, "{seen:?}");
    }

    #[test]
    fn actions_fire_on_a_press_and_learn_binds_the_next_controller() {
        let s = schema();
        let mut m = map(&s, "seed/next", "absolute", "linear");
        let fire = |m: &mut MidiMaps, v| m.handle(cc(7, v), s.knobs(), |_| 0.0);
        assert_eq!(
            fire(&mut m, 127),
            Some(Effect::Action(MidiAction::SeedNext))
        );
        assert_eq!(fire(&mut m, 127), None, "held");
        assert_eq!(fire(&mut m, 0), None, "release");
        assert_eq!(
            fire(&mut m, 100),
            Some(Effect::Action(MidiAction::SeedNext))
        );
        let binding = s
            .midi_binding("prompt_blend", None, None, None, None)
            .unwrap();
        assert_eq!(m.learn(binding), None);
        let learned = m.handle(cc(21, 5), s.knobs(), |_| 0.0);
        assert_eq!(
            learned,
            Some(Effect::Learned(MidiMap {
                channel: 1,
                cc: 21,
                binding
            }))
        );
        assert!(!m.learning());
        assert_eq!(m.list().len(), 2);
        assert_eq!(
            m.handle(
                MidiMessage::Program {
                    channel: 1,
                    program: 2
                },
                s.knobs(),
                |_| 0.0
            ),
            Some(Effect::Program(2))
        );
    }

    #[test]
    fn the_table_is_bounded_and_unmapping_names_what_is_missing() {
        let s = schema();
        let mut m = MidiMaps::default();
        for i in 0..MAX_MIDI_MAPS {
            let ch = (i / 128 + 1) as f64;
            let map = s
                .midi_map(ch, (i % 128) as f64, "denoise", None, None, None, None)
                .unwrap();
            m.insert(map).unwrap();
        }
        let extra = s
            .midi_map(16.0, 0.0, "denoise", None, None, None, None)
            .unwrap();
        assert_eq!(m.insert(extra), Err(MapError::Full));
        assert_eq!(
            m.remove(16, 0).unwrap_err().to_string(),
            "nothing is mapped on channel 16 CC 0 (see /midi/maps)"
        );
        let entry = MidiMapEntry::from_map(&m.remove(1, 5).unwrap());
        assert_eq!(entry.to_map(&s).unwrap().cc, 5);
    }

    proptest! {
        #[test]
        fn curves_invert_and_values_stay_in_range(
            t in 0.0f64..=1.0,
            v in 0u8..=127,
            curve in 0usize..4,
            lo in 0.0f64..=1.0,
            hi in 0.0f64..=1.0,
        ) {
            let curve = FadeCurve::ALL[curve].0;
            prop_assert!((shape(curve, unshape(curve, shape(curve, t))) - shape(curve, t)).abs() < 1e-9);
            let s = schema();
            let b = MidiBinding {
                target: s.midi_target("denoise").unwrap(),
                min: lo,
                max: hi,
                curve,
                mode: MidiMode::Absolute,
            };
            let knob = &s.knobs()[s.knob_index("denoise").unwrap()];
            let x = value_at(&b, knob, f64::from(v) / 127.0);
            prop_assert!(x >= lo.min(hi) - 1e-12 && x <= lo.max(hi) + 1e-12);
            if (hi - lo).abs() > 1e-6 {
                let p = position_of(&b, x);
                prop_assert!((value_at(&b, knob, p) - x).abs() < 1e-6);
            }
        }
    }
}
