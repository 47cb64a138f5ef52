//! The golden run in simulated time: structure, not numbers.

use std::sync::Arc;

use super::*;
use crate::model::builtin::BuiltinModel;
use crate::runner::metrics::ActionLatency;
use crate::runner::trace::WriteKind;

fn opts(scenarios: &[Scenario], repatch: bool, floor_s: f64) -> GoldenOptions {
    let mut o = GoldenOptions {
        scenarios: scenarios.to_vec(),
        actions: 8,
        loop_s: 4.0,
        ..GoldenOptions::default()
    };
    o.engine.lead.repatch = repatch;
    o.engine.lead.floor_s = floor_s;
    o
}

/// Per knob action: its latency and the kind of the write first heard with it.
fn knob_latencies(repatch: bool, floor_s: f64) -> Vec<(ActionLatency, WriteKind)> {
    let model = Arc::new(BuiltinModel::new());
    let o = opts(&[], repatch, floor_s);
    let (_, sim) = run_sim_scenario(model, Scenario::KnobStep, &o).unwrap();
    let rec = sim.record();
    assert_eq!(sim.ring().counters().torn_reads, 0);
    let writes: Vec<WriteEvent> = rec.trace.writes().copied().collect();
    rec.trace
        .actions()
        .map(|a| {
            let l = ActionLatency::compute(a, None, &writes);
            let first = l.audible_first.expect("every knob step is heard");
            let kind = writes
                .iter()
                .find(|w| {
                    ActionLatency::compute(a, None, std::iter::once(*w)).audible_first
                        == Some(first)
                })
                .unwrap()
                .kind;
            (l, kind)
        })
        .collect()
}

#[test]
fn repatch_removes_the_lead_floor_from_knob_to_ear() {
    let rate = 48_000.0;
    let on = knob_latencies(true, 0.25);
    let on_high_floor = knob_latencies(true, 0.6);
    let off = knob_latencies(false, 0.25);
    let off_high_floor = knob_latencies(false, 0.6);
    assert_eq!(on.len(), 8);
    // With repatch on, every knob step (a channel gain: decoder scope) is first heard
    // through a knob repatch of the cached latent, and the figure does not move when the
    // floor does.
    for ((a, kind), (b, _)) in on.iter().zip(&on_high_floor) {
        assert_eq!(*kind, WriteKind::KnobRepatch);
        assert_eq!(a.audible_first, b.audible_first);
    }
    // Bounded by the tick in progress (its tick and up to three decodes), the knob
    // repatch's decode, the guard plus one block, and a period of publish granularity.
    let costs = SimCosts::default();
    let guard = PlayheadRing::guard_for_period(128) + crate::ring::BLOCK_FRAMES;
    let bound_s = costs.tick_s + 4.0 * costs.decode_s + (guard + 128) as f64 / rate;
    for (l, _) in &on {
        let s = l.audible_first.unwrap() as f64 / rate;
        assert!(s <= bound_s, "{s} > {bound_s}");
    }
    // With it off, the floor bounds it from below.
    for ((l, kind), floor) in off
        .iter()
        .map(|x| (x, 0.25))
        .chain(off_high_floor.iter().map(|x| (x, 0.6)))
        .map(|((l, k), f)| ((l, k), f))
    {
        assert!(!matches!(kind, WriteKind::Repatch | WriteKind::KnobRepatch));
        let s = l.audible_first.unwrap() as f64 / rate;
        assert!(s >= floor, "{s} < floor {floor}");
    }
    let p = |v: &[(ActionLatency, WriteKind)]| {
        let mut x: Vec<u64> = v.iter().map(|(l, _)| l.audible_first.unwrap()).collect();
        x.sort();
        x[x.len() / 2]
    };
    assert!(p(&on_high_floor) < p(&off_high_floor));
}

#[test]
fn a_stall_plays_older_audio_with_gap_fill_and_a_lead_bump() {
    let model = Arc::new(BuiltinModel::new());
    let o = opts(&[], true, 0.25);
    let (mut sim, end) = sim_scenario(model, Scenario::Stall, &o).unwrap();
    sim.clock().record_output();
    sim.run_until(end);
    let played = sim.clock().played().to_vec();
    // No silence: the longest run of exactly-zero frames stays under a millisecond (the
    // source's notes start at zero for a sample).
    let mut run = 0usize;
    let mut longest = 0usize;
    for frame in played.chunks(2) {
        if frame.iter().all(|&s| s == 0.0) {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    assert!(longest < 48, "{longest} silent frames in a row");
    assert!(played.len() as f64 / 2.0 / 48_000.0 > end - 0.1);
    let rec = sim.record();
    assert!(rec.trace.writes().any(|w| w.kind == WriteKind::GapFill));
    // The stall (300 ms plus the fresh-latent spacing) exceeds the kept window (0.36 s):
    // the frontier lead rises above what it was before the first stall.
    let before = rec.lead_s[..20].iter().cloned().fold(0.0, f64::max);
    let after = rec.lead_s.iter().cloned().fold(0.0, f64::max);
    assert!(after > before + 0.02, "lead {before} -> {after}");
    // The trace shows it too: a frontier write's distance from the playhead.
    let max_lead_frames = rec
        .trace
        .writes()
        .filter(|w| w.kind == WriteKind::Frontier)
        .filter_map(|w| w.start_reached_frame.map(|r| r - w.issued_frame))
        .max()
        .unwrap();
    assert!(max_lead_frames as f64 / 48_000.0 > before + 0.02);
    assert_eq!(sim.ring().counters().torn_reads, 0);
}

#[test]
fn simulated_runs_are_deterministic() {
    let model = Arc::new(BuiltinModel::new());
    let o = opts(
        &[
            Scenario::KnobStep,
            Scenario::PromptChange,
            Scenario::LoopBand,
        ],
        true,
        0.25,
    );
    let a = run_sim(Arc::clone(&model), &o).unwrap();
    let b = run_sim(model, &o).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.to_json(), b.to_json());
    for scenario in ["knob_step", "prompt_change", "loop_band"] {
        let report = &a.scenarios[scenario];
        assert!(
            report.actions.values().all(|k| k.unheard == 0),
            "{scenario}"
        );
    }
}

#[test]
fn every_scenario_reports_its_kind() {
    let model = Arc::new(BuiltinModel::new());
    let mut o = opts(&Scenario::ALL, true, 0.25);
    o.actions = 4;
    let run = run_sim(model, &o).unwrap();
    let kinds = [
        ("knob_step", ActionKind::Knob),
        ("denoise_step", ActionKind::PerSlotKnob),
        ("prompt_change", ActionKind::Prompt),
        ("timbre_apply", ActionKind::Timbre),
        ("loop_band", ActionKind::Loop),
        ("stall", ActionKind::Knob),
    ];
    for (name, kind) in kinds {
        let f = run.scenarios[name].actions[&kind];
        assert_eq!(f.actions, 4, "{name}");
        assert_eq!(f.unheard, 0, "{name}");
        assert!(f.ack_gap_ms.is_some(), "{name}");
    }
    // A per-slot knob is heard only from slots started after it: later than a shared one.
    let first = |n: &str, k| run.scenarios[n].actions[&k].audible_first_ms.unwrap().p50;
    assert!(first("denoise_step", ActionKind::PerSlotKnob) > first("knob_step", ActionKind::Knob));
    // Prompts wait for the encode: the reply comes encode_s after arrival.
    let ack = run.scenarios["prompt_change"].actions[&ActionKind::Prompt]
        .ack_gap_ms
        .unwrap();
    assert!((ack.p50 - 30.0).abs() < 3.0, "{ack:?}");
}
