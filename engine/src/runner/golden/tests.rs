//! The golden run in simulated time: structure, not numbers.

use std::sync::Arc;

use super::*;
use crate::model::builtin::BuiltinModel;
use crate::runner::metrics::Percentiles;
use crate::runner::trace::WriteKind;

fn opts(scenarios: &[Scenario], repatch: bool, floor_s: f64) -> GoldenOptions {
    let mut o = GoldenOptions {
        scenarios: scenarios.to_vec(),
        actions: 10,
        loop_s: 6.0,
        ..GoldenOptions::default()
    };
    o.engine.lead.repatch = repatch;
    o.engine.lead.floor_s = floor_s;
    o
}

fn first(run: &GoldenRun, scenario: &str, kind: ActionKind) -> Percentiles {
    let figures = run.scenarios[scenario].actions[&kind];
    assert_eq!(figures.unheard, 0, "{scenario}: every action must be heard");
    figures.audible_first_ms.unwrap()
}

#[test]
fn print_sim() {
    let model = Arc::new(BuiltinModel::new());
    let run = run_sim(model, &opts(&Scenario::ALL, true, 0.25)).unwrap();
    println!("{}", run.to_json());
}

#[test]
fn debug_knob() {
    let model = Arc::new(BuiltinModel::new());
    let (_r, sim) = run_sim_scenario(model, Scenario::KnobStep, &opts(&[], true, 0.25)).unwrap();
    println!("{:?}", sim.stats());
    let rec = sim.record();
    for e in rec.trace.iter().skip(60).take(30) {
        println!("{e:?}");
    }
}
