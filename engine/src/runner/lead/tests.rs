//! Lead controller against hand-computed sequences.

use super::*;

const EPS: f64 = 1e-12;

fn close(got: f64, want: f64) {
    assert!((got - want).abs() < EPS, "got {got}, want {want}");
}

fn controller() -> LeadController {
    LeadController::new(LeadConfig::default()).unwrap()
}

#[test]
fn seeded_controller_sits_on_the_floor() {
    let c = controller();
    close(c.interval_ema_s(), 0.07);
    // 0.07 * 1.6 + 0.05 = 0.162, below the 0.25 floor.
    close(c.lead_s(0.0), 0.25);
    close(c.repatch_lead_s(), 0.162);
    assert_eq!(c.lead_frames(0.0, 48_000), 12_000);
    assert_eq!(c.repatch_lead_frames(48_000), 7_776);
}

#[test]
fn ema_follows_capped_gaps() {
    let mut c = controller();
    // 0.07 + 0.1 * (0.1 - 0.07) = 0.073
    c.observe_gap(0.1, 0.36, 1.0).unwrap();
    close(c.interval_ema_s(), 0.073);
    // 0.073 + 0.1 * (0.1 - 0.073) = 0.0757
    c.observe_gap(0.1, 0.36, 1.1).unwrap();
    close(c.interval_ema_s(), 0.0757);
    // 0.3 is capped at 0.18: 0.0757 + 0.1 * (0.18 - 0.0757) = 0.08613
    c.observe_gap(0.3, 0.36, 1.4).unwrap();
    close(c.interval_ema_s(), 0.08613);
    // No stall (every gap <= window): repatch lead 0.08613 * 1.6 + 0.05.
    close(c.stall_extra_s(1.4), 0.0);
    close(c.repatch_lead_s(), 0.187808);
    close(c.lead_s(1.4), 0.25);
}

#[test]
fn slow_engine_lifts_the_lead_off_the_floor() {
    let mut c = controller();
    // 30 gaps of 0.15 s: ema = 0.15 - 0.08 * 0.9^30.
    for i in 0..30 {
        c.observe_gap(0.15, 0.36, i as f64 * 0.15).unwrap();
    }
    let ema = 0.15 - 0.08 * 0.9f64.powi(30);
    assert!((c.interval_ema_s() - ema).abs() < 1e-12);
    // 1.6 * ema + 0.05 is above the floor now.
    let want = ema * 1.6 + 0.05;
    assert!(want > 0.25);
    assert!((c.lead_s(4.5) - want).abs() < 1e-12);
}

#[test]
fn stall_bumps_and_decays() {
    let mut c = controller();
    // gap 1.0 over a 0.36 s window at t = 10: ema = 0.07 + 0.1 * (0.18 - 0.07) = 0.081,
    // stall = 1.0 - 0.36 + 0.05 = 0.69.
    c.observe_gap(1.0, 0.36, 10.0).unwrap();
    close(c.interval_ema_s(), 0.081);
    close(c.stall_extra_s(10.0), 0.69);
    close(c.lead_s(10.0), 0.081 * 1.6 + 0.05 + 0.69);
    // One tau later the bump is 0.69 / e.
    let left = 0.69 * (-1.0f64).exp();
    close(c.stall_extra_s(11.5), left);
    close(c.lead_s(11.5), 0.1796 + left);
    // The repatch lead never sees the bump.
    close(c.repatch_lead_s(), 0.1796);
    // A second, smaller stall at 11.5 adds to what is left: 0.5 - 0.36 + 0.05 = 0.19.
    c.observe_gap(0.5, 0.36, 11.5).unwrap();
    close(c.interval_ema_s(), 0.0909);
    close(c.stall_extra_s(11.5), left + 0.19);
    close(c.lead_s(11.5), 0.0909 * 1.6 + 0.05 + left + 0.19);
    // Long after, the lead is back on the floor.
    close(c.lead_s(40.0), 0.25);
    // A time before the bump sees it undecayed.
    close(c.stall_extra_s(5.0), left + 0.19);
}

#[test]
fn gap_equal_to_the_window_is_no_stall() {
    let mut c = controller();
    c.observe_gap(0.36, 0.36, 1.0).unwrap();
    close(c.stall_extra_s(1.0), 0.0);
    c.observe_gap(0.37, 0.36, 2.0).unwrap();
    close(c.stall_extra_s(2.0), 0.01 + 0.05);
}

#[test]
fn ceiling_clamps_and_transport_extra_goes_on_top() {
    let mut c = controller();
    // Bump 2.0 - 0.36 + 0.05 = 1.69: raw lead well above the 1.35 ceiling.
    c.observe_gap(2.0, 0.36, 0.0).unwrap();
    close(c.lead_s(0.0), 1.35);
    c.set_transport_extra(0.5).unwrap();
    close(c.lead_s(0.0), 1.85);
    // The floor is also raised by the extra.
    close(c.lead_s(100.0), 0.75);
    c.set_transport_extra(0.0).unwrap();
    close(c.lead_s(100.0), 0.25);
    assert_eq!(
        c.set_transport_extra(-0.1),
        Err(LeadError::Negative {
            field: "transport_extra_s",
            value: -0.1
        })
    );
    close(c.transport_extra_s(), 0.0);
}

#[test]
fn bad_gaps_are_refused_and_change_nothing() {
    let mut c = controller();
    let before = c.clone();
    assert!(matches!(
        c.observe_gap(f64::NAN, 0.36, 0.0),
        Err(LeadError::NotFinite { field: "gap_s", .. })
    ));
    assert_eq!(
        c.observe_gap(-0.1, 0.36, 0.0),
        Err(LeadError::Negative {
            field: "gap_s",
            value: -0.1
        })
    );
    assert_eq!(
        c.observe_gap(0.1, 0.0, 0.0),
        Err(LeadError::NotPositive {
            field: "window_s",
            value: 0.0
        })
    );
    assert!(matches!(
        c.observe_gap(0.1, 0.36, f64::INFINITY),
        Err(LeadError::NotFinite { field: "now_s", .. })
    ));
    assert_eq!(c, before);
}

#[test]
fn repatch_runs_only_within_the_activity_window() {
    let mut c = controller();
    assert!(!c.repatch_due(0.0), "no activity yet");
    c.note_activity(5.0);
    assert!(c.repatch_due(5.0));
    assert!(c.repatch_due(7.0), "the window's end is inside");
    assert!(!c.repatch_due(7.001));
    // An older activity does not move the window back.
    c.note_activity(1.0);
    assert!(c.repatch_due(6.5));
    c.note_activity(8.0);
    assert!(c.repatch_due(9.9));

    let off = LeadConfig {
        repatch: false,
        ..LeadConfig::default()
    };
    let mut c = LeadController::new(off).unwrap();
    c.note_activity(5.0);
    assert!(!c.repatch_due(5.0));
}

#[test]
fn config_file_names_only_what_it_changes() {
    let cfg: LeadConfig = serde_json::from_str(r#"{"gain": 2.0, "repatch": false}"#).unwrap();
    assert_eq!(
        cfg,
        LeadConfig {
            gain: 2.0,
            repatch: false,
            ..LeadConfig::default()
        }
    );
    let empty: LeadConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(empty, LeadConfig::default());
    let err = serde_json::from_str::<LeadConfig>(r#"{"gian": 2.0}"#).unwrap_err();
    assert!(err.to_string().contains("gian"), "{err}");
}

#[test]
fn config_validation_names_the_bad_field() {
    let bad = |f: fn(&mut LeadConfig)| {
        let mut c = LeadConfig::default();
        f(&mut c);
        LeadController::new(c).unwrap_err()
    };
    assert_eq!(
        bad(|c| c.gain = 0.0),
        LeadError::NotPositive {
            field: "gain",
            value: 0.0
        }
    );
    assert_eq!(
        bad(|c| c.margin_s = -0.01),
        LeadError::Negative {
            field: "margin_s",
            value: -0.01
        }
    );
    assert_eq!(
        bad(|c| c.ceiling_s = 0.2),
        LeadError::CeilingBelowFloor {
            floor: 0.25,
            ceiling: 0.2
        }
    );
    assert_eq!(bad(|c| c.ema_alpha = 1.5), LeadError::Alpha(1.5));
    assert_eq!(bad(|c| c.ema_alpha = 0.0), LeadError::Alpha(0.0));
    assert!(matches!(
        bad(|c| c.stall_tau_s = f64::NAN),
        LeadError::NotFinite {
            field: "stall_tau_s",
            ..
        }
    ));
    assert_eq!(
        bad(|c| c.gap_cap_s = -1.0),
        LeadError::NotPositive {
            field: "gap_cap_s",
            value: -1.0
        }
    );
    assert_eq!(
        bad(|c| c.repatch_window_s = -2.0),
        LeadError::Negative {
            field: "repatch_window_s",
            value: -2.0
        }
    );
    assert!(
        bad(|c| c.ema_seed_s = 0.0)
            .to_string()
            .contains("ema_seed_s")
    );
}

#[test]
fn deterministic_for_the_same_inputs() {
    let run = || {
        let mut c = controller();
        let mut out = Vec::new();
        for i in 0..200 {
            let t = i as f64 * 0.09;
            let gap = if i % 37 == 0 { 0.8 } else { 0.09 };
            c.observe_gap(gap, 0.36, t).unwrap();
            out.push(c.lead_s(t).to_bits());
        }
        out
    };
    assert_eq!(run(), run());
}

#[test]
fn new_settings_keep_the_learned_state_and_bad_ones_change_nothing() {
    let mut c = controller();
    c.observe_gap(0.1, 0.36, 1.0).unwrap();
    c.observe_gap(0.5, 0.36, 1.0).unwrap(); // a stall: 0.5 - 0.36 + 0.05 = 0.19
    c.set_transport_extra(0.1).unwrap();
    c.note_activity(1.0);
    let ema = c.interval_ema_s();
    let stall = c.stall_extra_s(1.0);
    close(stall, 0.19);
    let lifted = LeadConfig {
        floor_s: 0.9,
        ceiling_s: 1.2,
        repatch_window_s: 0.5,
        ..LeadConfig::default()
    };
    c.set_config(lifted).unwrap();
    assert_eq!(c.config(), &lifted);
    close(c.interval_ema_s(), ema);
    close(c.stall_extra_s(1.0), stall);
    // The raw lead (ema * 1.6 + 0.05 + 0.19) is under the new floor: floor + transport extra.
    close(c.lead_s(1.0), 0.9 + 0.1);
    assert!(
        c.repatch_due(1.4) && !c.repatch_due(1.6),
        "the new window applies"
    );
    let bad = LeadConfig {
        ceiling_s: 0.5,
        ..lifted
    };
    assert_eq!(
        c.set_config(bad).unwrap_err(),
        LeadError::CeilingBelowFloor {
            floor: 0.9,
            ceiling: 0.5
        }
    );
    assert_eq!(c.config(), &lifted);
}
