//! Knob descriptions as the schema sees them: a neutral [`ParamSpec`] the daemon fills from
//! the engine's knob table, and [`reference_knobs`], the knob set of the engine issue.
//!
//! Threading: plain data; usable from any thread.

/// One knob as the OSC surface sees it: name, range, default, unit and doc.
///
/// The schema does not depend on the engine; the daemon converts the engine's static knob
/// table into a `&[ParamSpec]` and builds a [`crate::Schema`] from it.
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

    /// The OSC type tag replies and pushes use for this knob's value: `f`, `i` or `d`.
    pub fn reply_tag(&self) -> char {
        match (self.integer, self.fits_int32()) {
            (false, _) => 'f',
            (true, true) => 'i',
            (true, false) => 'd',
        }
    }
}

const fn float(
    name: &'static str,
    min: f64,
    max: f64,
    default: f64,
    unit: &'static str,
    doc: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        min,
        max,
        default,
        integer: false,
        unit,
        doc,
    }
}

const fn int(name: &'static str, min: f64, max: f64, default: f64, doc: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        min,
        max,
        default,
        integer: true,
        unit: "",
        doc,
    }
}

const CHANNEL_GAIN_DOC: &str = "gain of one latent channel group (0 mutes it, 1 is neutral)";

/// The reference knob set: the knobs of the engine issue (issue 3), with their ranges.
///
/// This list is what `docs/osc.md` and the client examples are generated from, and the daemon
/// checks the engine's knob table against it (a test there asserts that the converted engine
/// table equals this list), so a knob added in the engine without updating this list fails
/// a test instead of silently changing the published OSC contract.
pub fn reference_knobs() -> &'static [ParamSpec] {
    static KNOBS: [ParamSpec; 22] = [
        float(
            "denoise",
            0.0,
            1.0,
            0.5,
            "",
            "how much of the source is re-generated (0 keeps it, 1 replaces it)",
        ),
        float(
            "sde_amp",
            0.0,
            1.0,
            0.0,
            "",
            "stochastic noise amplitude re-injected at each sampler step",
        ),
        float(
            "periodicity",
            0.0,
            12.5,
            0.0,
            "Hz",
            "strength of the periodic (beat-locked) noise component",
        ),
        int("seed", 0.0, 4_294_967_295.0, 0.0, "noise seed (u32)"),
        float(
            "shift",
            1.0,
            6.0,
            3.5,
            "",
            "timestep shift of the sampler schedule",
        ),
        float(
            "guidance",
            1.0,
            15.0,
            1.0,
            "",
            "classifier-free guidance scale",
        ),
        float(
            "cfg_rescale",
            0.0,
            1.0,
            0.0,
            "",
            "rescale of the guided prediction toward the conditional one",
        ),
        float(
            "x0_target",
            0.0,
            1.0,
            0.0,
            "",
            "pull of the predicted clean latent toward the source",
        ),
        float(
            "feedback",
            0.0,
            1.0,
            0.0,
            "",
            "amount of the previous output fed back as the next source",
        ),
        int(
            "feedback_depth",
            1.0,
            8.0,
            1.0,
            "how many generations back the feedback reaches",
        ),
        float("ch_g0", 0.0, 3.0, 1.0, "", CHANNEL_GAIN_DOC),
        float("ch_g1", 0.0, 3.0, 1.0, "", CHANNEL_GAIN_DOC),
        float("ch_g2", 0.0, 3.0, 1.0, "", CHANNEL_GAIN_DOC),
        float("ch_g3", 0.0, 3.0, 1.0, "", CHANNEL_GAIN_DOC),
        float("ch_g4", 0.0, 3.0, 1.0, "", CHANNEL_GAIN_DOC),
        float("ch_g5", 0.0, 3.0, 1.0, "", CHANNEL_GAIN_DOC),
        float("ch_g6", 0.0, 3.0, 1.0, "", CHANNEL_GAIN_DOC),
        float("ch_g7", 0.0, 3.0, 1.0, "", CHANNEL_GAIN_DOC),
        int("steps", 1.0, 16.0, 8.0, "sampler steps per generation"),
        int(
            "depth",
            1.0,
            8.0,
            4.0,
            "pipeline depth (generations in flight)",
        ),
        float(
            "timbre_strength",
            0.0,
            1.0,
            0.0,
            "",
            "weight of the timbre reference",
        ),
        float(
            "prompt_blend",
            0.0,
            1.0,
            0.0,
            "",
            "blend from prompt tags (0) to tags_b (1)",
        ),
    ];
    &KNOBS
}
