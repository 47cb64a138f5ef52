//! The OSC schema's reference knob list (from which docs/osc.md, OSCQuery and the client
//! examples are generated, and which latentctl types its arguments with) is the engine's
//! knob table: same names, ranges, defaults, integer flags and units, in the same order.

use latentd::control::param_specs;
use latentd_osc_schema::reference_knobs;

#[test]
fn the_generated_contract_describes_the_engine_s_knobs() {
    let engine = param_specs();
    let reference = reference_knobs();
    let names = |v: &[latentd_osc_schema::ParamSpec]| v.iter().map(|k| k.name).collect::<Vec<_>>();
    assert_eq!(names(&engine), names(reference));
    for (e, r) in engine.iter().zip(reference) {
        assert_eq!(
            (e.min, e.max, e.default, e.integer, e.unit),
            (r.min, r.max, r.default, r.integer, r.unit),
            "knob {}",
            e.name
        );
    }
}
