//! Knob descriptions as the schema sees them: [`ParamSpec`], and [`reference_knobs`], the
//! knob set the published contract promises: the knob table of `latentd-knobs`, converted.
//!
//! Threading: plain data; usable from any thread.

use std::sync::OnceLock;

use latentd_knobs::{KnobKind, KnobSpec};

/// One knob as the OSC surface sees it: name, range, default, unit and doc.
///
/// The schema does not depend on the engine: a [`crate::Schema`] is built over any knob list
/// (tests use made-up ones); the published one is [`reference_knobs`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParamSpec {
    /// Name as it appears in `/knob/<name>`: `[a-z0-9_]+`.
    pub name: &'static str,
    /// Smallest accepted value (inclusive).
    pub min: f64,
    /// Largest accepted value (inclusive); `min <= default <= max`.
    pub max: f64,
    /// Value at start-up.
    pub default: f64,
    /// True when only integral values are accepted (a float argument must be integral).
    pub integer: bool,
    /// Unit for docs and OSCQuery (`""` when unitless).
    pub unit: &'static str,
    /// One-line description.
    pub doc: &'static str,
}

impl ParamSpec {
    /// True when every value of this integer knob fits an OSC `i` (int32); replies then use `i`,
    /// otherwise `d` (float64, exact for all integers up to 2^53).
    pub fn fits_int32(&self) -> bool {
        self.integer && self.min >= f64::from(i32::MIN) && self.max <= f64::from(i32::MAX)
    }

    /// The range and integrality check every way of setting a knob goes through (OSC, the
    /// config file, the state file): a value outside `[min, max]`, a fractional value for an
    /// integer knob and a non-finite value are refused with the accepted range; nothing is
    /// rounded. Values within f32 rounding of a bound (a client sending `f 0.1` for a bound
    /// of 0.1) are put onto it.
    pub fn check_value(&self, value: f64) -> Result<f64, String> {
        let unit = if self.unit.is_empty() {
            String::new()
        } else {
            format!(" {}", self.unit)
        };
        let slack = |bound: f64| f64::from(f32::EPSILON) * bound.abs().max(1.0);
        if !value.is_finite()
            || value < self.min - slack(self.min)
            || value > self.max + slack(self.max)
        {
            return Err(format!(
                "value {value} is out of range for knob {}: accepted [{}, {}]{unit}",
                self.name, self.min, self.max
            ));
        }
        if self.integer && value.fract() != 0.0 {
            return Err(format!(
                "knob {} takes an integer in [{}, {}]; got {value}",
                self.name, self.min, self.max
            ));
        }
        Ok(value.clamp(self.min, self.max))
    }

    /// The OSC type tag replies and pushes use for this knob's value: `f`, `i` or `d`.
    pub fn reply_tag(&self) -> char {
        match (self.integer, self.fits_int32()) {
            (false, _) => 'f',
            (true, true) => 'i',
            (true, false) => 'd',
        }
    }
}

/// The reference knob set: every knob the published OSC contract promises, with its range:
/// the knob table of `latentd-knobs` (the one the engine acts on), as the schema sees it.
///
/// docs/osc.md, OSCQuery and the client examples are generated from it, so a knob added to
/// the table is published, and one whose range changes is published with its new range.
pub fn reference_knobs() -> &'static [ParamSpec] {
    static KNOBS: OnceLock<Vec<ParamSpec>> = OnceLock::new();
    KNOBS.get_or_init(|| latentd_knobs::KNOBS.iter().map(ParamSpec::from).collect())
}

impl From<&'static KnobSpec> for ParamSpec {
    fn from(k: &'static KnobSpec) -> Self {
        ParamSpec {
            name: k.name,
            min: k.min,
            max: k.max,
            default: k.default,
            integer: k.kind == KnobKind::Int,
            unit: k.unit,
            doc: k.doc,
        }
    }
}
