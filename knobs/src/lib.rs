//! The knob table: every performer knob's name, range, default, unit, meaning and scope,
//! declared once ([`KNOBS`], indexed by [`KnobId`]).
//!
//! The engine (`latentd-engine`'s knob store, which validates and acts on the values) and the
//! OSC contract (`latentd-osc-schema`, from which docs/osc.md, OSCQuery and the client
//! examples are generated) both read this table; neither keeps a copy. Adding a knob here adds
//! it everywhere.
//!
//! Threading: static data; usable from any thread.

/// What a knob's value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KnobKind {
    /// A real number (stored at `f32` precision).
    Float,
    /// An integer in range (rounded at the setter).
    Int,
}

/// When a knob's new value reaches the sound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KnobScope {
    /// A shared curve: every in-flight slot uses it from the next tick.
    SharedCurve,
    /// A per-slot value: captured when a slot starts, so it reaches only new slots.
    PerSlot,
    /// Shapes the pipeline itself (slot count, steps); applied between ticks without dropout.
    Pipeline,
    /// Read by the decoder on every window.
    Decoder,
}

/// One row of the knob table.
#[derive(Clone, Copy, Debug)]
pub struct KnobSpec {
    /// The knob's name (OSC: `/knob/<name>`).
    pub name: &'static str,
    /// Smallest accepted value.
    pub min: f64,
    /// Largest accepted value.
    pub max: f64,
    /// Value at start.
    pub default: f64,
    /// Unit, for documentation and UIs ("" when unitless).
    pub unit: &'static str,
    /// Float or integer.
    pub kind: KnobKind,
    /// When it takes effect.
    pub scope: KnobScope,
    /// One line on what it does.
    pub doc: &'static str,
}

macro_rules! knob_table {
    ($($id:ident = $name:literal, $min:expr, $max:expr, $default:expr, $unit:literal,
       $kind:ident, $scope:ident, $doc:literal;)*) => {
        /// Every knob, in table order ([`KnobId`] `as usize` indexes [`KNOBS`]).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(usize)]
        #[allow(non_camel_case_types)]
        pub enum KnobId { $(#[doc = $doc] $id,)* }

        /// The knob table: the one source of truth for names, ranges, defaults and docs.
        pub static KNOBS: &[KnobSpec] = &[$(KnobSpec {
            name: $name, min: $min as f64, max: $max as f64, default: $default as f64,
            unit: $unit, kind: KnobKind::$kind, scope: KnobScope::$scope, doc: $doc,
        },)*];

        impl KnobId {
            /// Every id, in table order.
            pub const ALL: &[KnobId] = &[$(KnobId::$id,)*];
        }
    };
}

knob_table! {
    denoise = "denoise", 0, 1, 0.5, "", Float, PerSlot,
        "ODE: how far from its base (source or feedback latent) a new slot starts (0 = base; no base: 1)";
    sampler = "sampler", 0, 1, 0, "", Int, PerSlot,
        "sampling mode of new slots: 0 = ODE (Euler, uses denoise), 1 = SDE (uses sde_amp)";
    sde_amp = "sde_amp", 0, 1, 0.5, "", Float, SharedCurve,
        "SDE: amplitude of the per-frame blend between generation and source";
    periodicity = "periodicity", 0, 12.5, 0, "Hz", Float, SharedCurve,
        "SDE: cycles per second of the generation/source blend (0 = constant)";
    seed = "seed", 0, u32::MAX, 0, "", Int, PerSlot,
        "noise seed of new slots: the same seed and knobs replay the same take";
    shift = "shift", 1, 6, 3.5, "", Float, PerSlot,
        "schedule warp: higher spends more steps at high noise (broad strokes)";
    guidance = "guidance", 1, 15, 1, "", Float, SharedCurve,
        "how hard the denoiser pushes toward the prompt (1 = plain)";
    cfg_rescale = "cfg_rescale", 0, 1, 0, "", Float, SharedCurve,
        "pulls guided predictions back toward the unguided level (tames harshness)";
    x0_target = "x0_target", 0, 1, 0, "", Float, SharedCurve,
        "source lock: in the second half of the schedule, blend the prediction toward the source";
    feedback = "feedback", 0, 1, 0, "", Float, PerSlot,
        "new slots start from a blend of the source and a past finished latent";
    feedback_depth = "feedback_depth", 1, 8, 1, "latents", Int, PerSlot,
        "which past latent feedback uses: 1 = the last finished, N = N back";
    ch_g0 = "ch_g0", 0, 3, 1, "x", Float, Decoder, "gain of latent channel group 0 (ch 0-7)";
    ch_g1 = "ch_g1", 0, 3, 1, "x", Float, Decoder, "gain of latent channel group 1 (ch 8-15)";
    ch_g2 = "ch_g2", 0, 3, 1, "x", Float, Decoder, "gain of latent channel group 2 (ch 16-23)";
    ch_g3 = "ch_g3", 0, 3, 1, "x", Float, Decoder, "gain of latent channel group 3 (ch 24-31)";
    ch_g4 = "ch_g4", 0, 3, 1, "x", Float, Decoder, "gain of latent channel group 4 (ch 32-39)";
    ch_g5 = "ch_g5", 0, 3, 1, "x", Float, Decoder, "gain of latent channel group 5 (ch 40-47)";
    ch_g6 = "ch_g6", 0, 3, 1, "x", Float, Decoder, "gain of latent channel group 6 (ch 48-55)";
    ch_g7 = "ch_g7", 0, 3, 1, "x", Float, Decoder, "gain of latent channel group 7 (ch 56-63)";
    steps = "steps", 1, 16, 8, "steps", Int, Pipeline,
        "denoising steps per request (new slots; finishing slots keep theirs)";
    depth = "depth", 1, 8, 4, "slots", Int, Pipeline,
        "slots in flight (more = more throughput, same per-request latency in ticks)";
    timbre_strength = "timbre_strength", 0, 1, 0.5, "", Float, SharedCurve,
        "how strongly the timbre reference shapes the spectral envelope";
    structure_strength = "structure_strength", 0, 1, 0.5, "", Float, SharedCurve,
        "how strongly the structure reference shapes rhythm";
    prompt_blend = "prompt_blend", 0, 1, 0, "", Float, SharedCurve,
        "mix between prompt A (0) and prompt B (1)";
}

/// How many knobs there are.
pub const KNOB_COUNT: usize = KnobId::ALL.len();

impl KnobId {
    /// The knob's table row.
    pub fn spec(self) -> &'static KnobSpec {
        &KNOBS[self as usize]
    }

    /// Looks a knob up by name.
    pub fn from_name(name: &str) -> Option<Self> {
        KnobId::ALL
            .iter()
            .copied()
            .find(|id| id.spec().name == name)
    }

    /// The eight channel-group gains, in order.
    pub const CHANNEL_GAINS: [KnobId; 8] = [
        KnobId::ch_g0,
        KnobId::ch_g1,
        KnobId::ch_g2,
        KnobId::ch_g3,
        KnobId::ch_g4,
        KnobId::ch_g5,
        KnobId::ch_g6,
        KnobId::ch_g7,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_addressable_and_in_range() {
        assert_eq!(KNOBS.len(), KNOB_COUNT);
        for (i, (id, spec)) in KnobId::ALL.iter().zip(KNOBS).enumerate() {
            assert_eq!(*id as usize, i, "{}", spec.name);
            assert_eq!(KnobId::from_name(spec.name), Some(*id));
            assert!(
                !spec.name.is_empty()
                    && spec
                        .name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}: an OSC address segment is [a-z0-9_]+",
                spec.name
            );
            assert!(
                spec.min <= spec.default && spec.default <= spec.max,
                "{}",
                spec.name
            );
            if spec.kind == KnobKind::Int {
                for v in [spec.min, spec.max, spec.default] {
                    assert_eq!(v.fract(), 0.0, "{}: integer knob, bound {v}", spec.name);
                }
            }
        }
        assert_eq!(KnobId::from_name("no_such_knob"), None);
    }
}
