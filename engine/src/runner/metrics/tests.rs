//! The knob-to-ear metrics on synthetic write streams, percentiles, the golden report.

use super::*;
use crate::runner::trace::{Trace, WriteKind};

fn knob(id: u64, arrival_frame: u64) -> ActionEvent {
    ActionEvent {
        id,
        kind: ActionKind::Knob,
        arrival_frame,
        sent_frame: None,
    }
}

/// A write of 1000 frames with nothing lost to the guard.
fn write(
    kind: WriteKind,
    landed_frame: u64,
    start_reached_frame: Option<u64>,
    newest_action_id: Option<u64>,
    full_action_id: Option<u64>,
) -> WriteEvent {
    WriteEvent {
        kind,
        ring_start: 0,
        len: 1_000,
        late_frames: 0,
        issued_frame: landed_frame.saturating_sub(150),
        landed_frame,
        start_reached_frame,
        newest_action_id,
        full_action_id,
    }
}

/// Frontier writes every 2000 frames, 12000 frames ahead; the one landing at 2100 is the
/// first to reflect action 1 (partly), the one at 4100 the first computed wholly with it.
fn frontier_stream() -> Vec<WriteEvent> {
    vec![
        write(WriteKind::Frontier, 600, Some(12_600), None, None),
        write(WriteKind::Frontier, 2_100, Some(14_100), Some(1), None),
        write(WriteKind::Frontier, 4_100, Some(16_100), Some(1), Some(1)),
        write(WriteKind::Frontier, 6_100, Some(18_100), Some(1), Some(1)),
    ]
}

#[test]
fn frontier_only_stream_by_hand() {
    let l = ActionLatency::compute(&knob(1, 1_000), None, &frontier_stream());
    assert_eq!(l.origin_frame, 1_000);
    assert_eq!(
        l.next_slice,
        Some(1_100),
        "the write landing at 600 came before"
    );
    assert_eq!(l.audible_first, Some(13_100));
    assert_eq!(l.audible_full, Some(15_100));
    assert_eq!(l.ack_gap, None);
}

#[test]
fn close_repatch_slice_wins_though_it_lands_after_the_frontier() {
    let mut writes = frontier_stream();
    // Same latents, repatched 7776 frames ahead, landing just after each frontier write.
    writes.insert(
        2,
        write(WriteKind::Repatch, 2_200, Some(9_976), Some(1), None),
    );
    writes.push(write(
        WriteKind::Repatch,
        4_200,
        Some(11_976),
        Some(1),
        Some(1),
    ));
    let l = ActionLatency::compute(&knob(1, 1_000), None, &writes);
    assert_eq!(l.next_slice, Some(1_100));
    assert_eq!(l.audible_first, Some(8_976));
    assert_eq!(l.audible_full, Some(10_976));
    // The old metric, first qualifying write in landing order, reports the frontier.
    let first_landed = writes
        .iter()
        .filter(|w| w.newest_action_id.is_some_and(|n| n >= 1))
        .min_by_key(|w| w.landed_frame)
        .unwrap();
    assert_eq!(first_landed.start_reached_frame.unwrap() - 1_000, 13_100);
}

#[test]
fn late_arriving_close_slice_does_not_win() {
    let mut writes = frontier_stream();
    // Starts at 3000 but lands at 3500: the playhead had passed its start, so it is heard
    // a lap later, not at 3000 and not at 3500.
    writes.push(write(
        WriteKind::Repatch,
        3_500,
        Some(3_000),
        Some(1),
        Some(1),
    ));
    let l = ActionLatency::compute(&knob(1, 1_000), None, &writes);
    assert_eq!(l.audible_first, Some(13_100));
    assert_eq!(l.audible_full, Some(15_100));
    // Taking max(landed, reached) over every write would have let it win at 2500.
    let naive = writes
        .iter()
        .filter(|w| w.newest_action_id.is_some_and(|n| n >= 1))
        .map(|w| w.landed_frame.max(w.start_reached_frame.unwrap()) - 1_000)
        .min();
    assert_eq!(naive, Some(2_500));

    // Landing just before its start, it counts, at its start.
    writes.push(write(WriteKind::Repatch, 9_800, Some(9_900), Some(1), None));
    let l = ActionLatency::compute(&knob(1, 1_000), None, &writes);
    assert_eq!(l.audible_first, Some(8_900));
    assert_eq!(l.audible_full, Some(15_100));

    // Losing its first 300 frames to the guard, it is heard 300 frames later.
    let mut clipped = write(WriteKind::Repatch, 5_000, Some(5_100), Some(1), Some(1));
    clipped.late_frames = 300;
    writes.push(clipped);
    let l = ActionLatency::compute(&knob(1, 1_000), None, &writes);
    assert_eq!(l.audible_first, Some(4_400));
    assert_eq!(l.audible_full, Some(4_400));
}

#[test]
fn non_monotonic_stream_gives_the_same_figures_in_any_order() {
    let mut writes = frontier_stream();
    writes.push(write(WriteKind::Repatch, 2_200, Some(9_976), Some(1), None));
    writes.push(write(
        WriteKind::Repatch,
        4_200,
        Some(11_976),
        Some(1),
        Some(1),
    ));
    writes.push(write(WriteKind::GapFill, 3_000, Some(3_800), Some(1), None));
    writes.push(write(
        WriteKind::Repatch,
        3_500,
        Some(3_000),
        Some(1),
        Some(1),
    ));
    writes.push(write(
        WriteKind::BandWrap,
        1_500,
        Some(20_000),
        Some(2),
        Some(2),
    ));
    let want = ActionLatency::compute(&knob(1, 1_000), Some(1_480), &writes);
    assert_eq!(want.next_slice, Some(500));
    assert_eq!(
        want.audible_first,
        Some(2_800),
        "the gap-fill near the playhead"
    );
    assert_eq!(want.audible_full, Some(10_976));
    assert_eq!(want.ack_gap, Some(480));
    for turn in 0..writes.len() {
        let mut order = writes.clone();
        order.rotate_left(turn);
        assert_eq!(
            ActionLatency::compute(&knob(1, 1_000), Some(1_480), &order),
            want
        );
        order.reverse();
        assert_eq!(
            ActionLatency::compute(&knob(1, 1_000), Some(1_480), &order),
            want
        );
    }
}

#[test]
fn writes_that_cannot_be_heard_do_not_qualify() {
    let mut lost = write(WriteKind::Repatch, 2_000, Some(2_500), Some(5), Some(5));
    lost.late_frames = lost.len;
    let writes = [
        lost,
        // Outside the band: the reader never gets there.
        write(WriteKind::Frontier, 2_000, None, Some(5), Some(5)),
        // Does not reflect action 5.
        write(WriteKind::Frontier, 2_000, Some(2_200), Some(4), Some(4)),
        write(WriteKind::Frontier, 2_000, Some(2_300), None, None),
    ];
    let l = ActionLatency::compute(&knob(5, 1_000), Some(900), &writes);
    assert_eq!(l.next_slice, Some(1_000));
    assert_eq!(l.audible_first, None);
    assert_eq!(l.audible_full, None);
    assert_eq!(l.ack_gap, None, "a reply stamped before the origin");
}

#[test]
fn latency_counts_from_the_send_when_known() {
    let mut a = knob(1, 1_000);
    a.sent_frame = Some(520);
    let l = ActionLatency::compute(&a, Some(1_100), &frontier_stream());
    assert_eq!(l.origin_frame, 520);
    assert_eq!(l.ack_gap, Some(580));
    assert_eq!(
        l.next_slice,
        Some(80),
        "the write at 600 landed after the send"
    );
    assert_eq!(l.audible_first, Some(13_580));
}

#[test]
fn latencies_from_a_trace() {
    let mut trace = Trace::new(64).unwrap();
    trace.record(knob(1, 1_000));
    for w in frontier_stream() {
        trace.record(w);
    }
    trace.record(ActionEvent {
        id: 2,
        kind: ActionKind::Prompt,
        arrival_frame: 5_000,
        sent_frame: None,
    });
    trace.record(write(
        WriteKind::Frontier,
        8_100,
        Some(20_100),
        Some(2),
        Some(2),
    ));
    let writes: Vec<WriteEvent> = trace.writes().copied().collect();
    let acks = |id| (id == 2).then_some(5_200);
    let all = action_latencies(trace.actions(), &writes, acks);
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].audible_first, Some(13_100));
    assert_eq!(all[1].kind, ActionKind::Prompt);
    assert_eq!(all[1].ack_gap, Some(200));
    assert_eq!(all[1].next_slice, Some(1_100));
    assert_eq!(all[1].audible_first, Some(15_100));
    assert_eq!(late_landings(&writes), 0);
}

#[test]
fn frames_convert_to_milliseconds() {
    assert_eq!(frames_to_ms(4_800, 48_000), 100.0);
    assert_eq!(frames_to_ms(441, 44_100), 10.0);
}

#[test]
fn percentiles_by_nearest_rank() {
    let mut values: Vec<f64> = (1..=100).map(f64::from).collect();
    values.reverse();
    let p = Percentiles::of(&values).unwrap();
    assert_eq!((p.count, p.p50, p.p95, p.p99), (100, 50.0, 95.0, 99.0));
    let twenty: Vec<f64> = (1..=20).map(|v| v as f64 * 10.0).collect();
    let p = Percentiles::of(&twenty).unwrap();
    assert_eq!((p.p50, p.p95, p.p99), (100.0, 190.0, 200.0));
    let p = Percentiles::of(&[7.0, f64::NAN]).unwrap();
    assert_eq!((p.count, p.p50, p.p95, p.p99), (1, 7.0, 7.0, 7.0));
    assert_eq!(Percentiles::of(&[]), None);
    assert_eq!(Percentiles::of(&[f64::NAN]), None);
    let p = Percentiles::of_frames_ms([Some(4_800), None, Some(9_600)], 48_000).unwrap();
    assert_eq!((p.count, p.p50, p.p99), (2, 100.0, 200.0));
}

#[test]
fn golden_report_groups_by_kind_and_serializes() {
    let lat = |id, kind, first: Option<u64>| ActionLatency {
        id,
        kind,
        origin_frame: 0,
        ack_gap: Some(480),
        next_slice: Some(1_440),
        audible_first: first,
        audible_full: first.map(|f| f * 2),
    };
    let latencies = [
        lat(1, ActionKind::Knob, Some(2_880)),
        lat(2, ActionKind::Knob, Some(4_800)),
        lat(3, ActionKind::Knob, None),
        lat(4, ActionKind::Prompt, Some(14_400)),
    ];
    let stream = StreamFigures::from_samples(&[40.0, 43.0, 50.0], &[4.5], &[0.25, 0.3], 2, 0);
    let report = GoldenReport::new(48_000, &latencies, stream);
    let knob = report.actions[&ActionKind::Knob];
    assert_eq!(knob.actions, 3);
    assert_eq!(knob.unheard, 1);
    let first = knob.audible_first_ms.unwrap();
    assert_eq!((first.count, first.p50, first.p95), (2, 60.0, 100.0));
    assert_eq!(knob.audible_full_ms.unwrap().p50, 120.0);
    assert_eq!(knob.ack_gap_ms.unwrap().p50, 10.0);
    assert!(!report.actions.contains_key(&ActionKind::Timbre));

    let json = report.to_json();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["sample_rate"], 48_000);
    assert_eq!(value["actions"]["knob"]["audible_first_ms"]["p50"], 60.0);
    assert_eq!(value["actions"]["prompt"]["next_slice_ms"]["p95"], 30.0);
    assert_eq!(value["actions"]["prompt"]["audible_full_ms"]["p50"], 600.0);
    assert_eq!(value["stream"]["tick_ms"]["p50"], 43.0);
    assert_eq!(value["stream"]["tick_ms"]["p95"], 50.0);
    assert_eq!(value["stream"]["lead_s"]["p50"], 0.25);
    assert_eq!(value["stream"]["late_landings"], 2);
    assert_eq!(value["stream"]["underruns"], 0);
    let back: GoldenReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
}
