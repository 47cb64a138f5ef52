//! A knob value that arrives from outside the OSC path (the command line, the config file,
//! the state file, a preset file), checked by the same rule as a knob set over OSC, against
//! the one knob table (`latentd_knobs::KNOBS`), so no reader keeps its own ranges.
//!
//! Threading: pure functions; any thread (never the audio callback: errors allocate).

use latentd_engine::knobs::{self, KnobId};
use latentd_osc_schema::ParamSpec;

/// A knob value from the command line, the config file or the state file, checked like a
/// knob set over OSC ([`ParamSpec::check_value`]: refused out of range or fractional for an
/// integer knob, never rounded or clamped), then put in the engine's canonical form.
pub fn check_knob(name: &str, value: f64) -> Result<(KnobId, f64), String> {
    let names = || {
        knobs::KNOBS
            .iter()
            .map(|k| k.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let id = KnobId::from_name(name)
        .ok_or_else(|| format!("unknown knob {name:?}; known: {}", names()))?;
    let spec = ParamSpec::from(id.spec());
    let value = spec.check_value(value)?;
    let value = knobs::canonicalize(id, value).map_err(|e| e.to_string())?;
    Ok((id, value))
}
