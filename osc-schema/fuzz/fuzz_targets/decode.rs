//! Fuzz the OSC decoder: arbitrary bytes must decode to validated commands or a `/fail`
//! with a reason, never panic.
#![no_main]

use latentd_osc_schema::{Command, Schema, reference_knobs};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let schema = Schema::new(reference_knobs()).expect("reference knobs are valid");
    match schema.decode(data) {
        Ok(decoded) => {
            for command in decoded.value {
                if let Command::SetKnob { index, value, .. } = command {
                    let knob = &schema.knobs()[index];
                    assert!(value.is_finite() && value >= knob.min && value <= knob.max);
                }
            }
        }
        Err(fail) => assert!(!fail.reason.is_empty()),
    }
});
