//! Knob descriptions as the schema sees them: a neutral [`ParamSpec`] the daemon fills from
//! the engine's knob table, and [`reference_knobs`], the knob set the published contract
//! promises.
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

const fn int(
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
        integer: true,
        unit,
        doc,
    }
}

/// The reference knob set: every knob the published OSC contract promises, with its range.
///
/// This list is what `docs/osc.md` and the client examples are generated from, and the daemon
/// checks the engine's knob table against it (a test there asserts that the converted engine
/// table equals this list), so a knob added in the engine without updating this list fails
/// a test instead of silently changing the published OSC contract.
pub fn reference_knobs() -> &'static [ParamSpec] {
    static KNOBS: [ParamSpec; 24] = [
        float(
            "denoise",
            0.0,
            1.0,
            0.5,
            "",
            "ODE: how far from the source a new slot starts (0 = the source, 1 = pure noise)",
        ),
        int(
            "sampler",
            0.0,
            1.0,
            0.0,
            "",
            "sampling mode of new slots: 0 = ODE (Euler, uses denoise), 1 = SDE (uses sde_amp)",
        ),
        float(
            "sde_amp",
            0.0,
            1.0,
            0.5,
            "",
            "SDE: amplitude of the per-frame blend between generation and source",
        ),
        float(
            "periodicity",
            0.0,
            12.5,
            0.0,
            "Hz",
            "SDE: cycles per second of the generation/source blend (0 = constant)",
        ),
        int(
            "seed",
            0.0,
            4294967295.0,
            0.0,
            "",
            "noise seed of new slots",
        ),
        float(
            "shift",
            1.0,
            6.0,
            3.5,
            "",
            "schedule warp: higher spends more steps at high noise (broad strokes)",
        ),
        float(
            "guidance",
            1.0,
            15.0,
            1.0,
            "",
            "how hard the denoiser pushes toward the prompt (1 = plain)",
        ),
        float(
            "cfg_rescale",
            0.0,
            1.0,
            0.0,
            "",
            "pulls guided predictions back toward the unguided level (tames harshness)",
        ),
        float(
            "x0_target",
            0.0,
            1.0,
            0.0,
            "",
            "source lock: in the second half of the schedule, blend the prediction toward the source",
        ),
        float(
            "feedback",
            0.0,
            1.0,
            0.0,
            "",
            "new slots start from a blend of the source and a past finished latent",
        ),
        int(
            "feedback_depth",
            1.0,
            8.0,
            1.0,
            "latents",
            "which past latent feedback uses: 1 = the last finished, N = N back",
        ),
        float(
            "ch_g0",
            0.0,
            3.0,
            1.0,
            "x",
            "gain of latent channel group 0 (ch 0-7)",
        ),
        float(
            "ch_g1",
            0.0,
            3.0,
            1.0,
            "x",
            "gain of latent channel group 1 (ch 8-15)",
        ),
        float(
            "ch_g2",
            0.0,
            3.0,
            1.0,
            "x",
            "gain of latent channel group 2 (ch 16-23)",
        ),
        float(
            "ch_g3",
            0.0,
            3.0,
            1.0,
            "x",
            "gain of latent channel group 3 (ch 24-31)",
        ),
        float(
            "ch_g4",
            0.0,
            3.0,
            1.0,
            "x",
            "gain of latent channel group 4 (ch 32-39)",
        ),
        float(
            "ch_g5",
            0.0,
            3.0,
            1.0,
            "x",
            "gain of latent channel group 5 (ch 40-47)",
        ),
        float(
            "ch_g6",
            0.0,
            3.0,
            1.0,
            "x",
            "gain of latent channel group 6 (ch 48-55)",
        ),
        float(
            "ch_g7",
            0.0,
            3.0,
            1.0,
            "x",
            "gain of latent channel group 7 (ch 56-63)",
        ),
        int(
            "steps",
            1.0,
            16.0,
            8.0,
            "steps",
            "denoising steps per request (new slots; finishing slots keep theirs)",
        ),
        int(
            "depth",
            1.0,
            8.0,
            4.0,
            "slots",
            "slots in flight (more = more throughput, same per-request latency in ticks)",
        ),
        float(
            "timbre_strength",
            0.0,
            1.0,
            0.5,
            "",
            "how strongly the timbre reference shapes the spectral envelope",
        ),
        float(
            "structure_strength",
            0.0,
            1.0,
            0.5,
            "",
            "how strongly the structure reference shapes rhythm",
        ),
        float(
            "prompt_blend",
            0.0,
            1.0,
            0.0,
            "",
            "mix between prompt A (0) and prompt B (1)",
        ),
    ];
    &KNOBS
}
