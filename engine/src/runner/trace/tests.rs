//! The trace buffer, its JSON lines, and the reach clock of a write.

use super::*;

fn action(id: u64, arrival_frame: u64) -> ActionEvent {
    ActionEvent {
        id,
        kind: ActionKind::Knob,
        arrival_frame,
        sent_frame: None,
    }
}

fn write(ring_start: usize, landed_frame: u64) -> WriteEvent {
    WriteEvent {
        kind: WriteKind::Frontier,
        ring_start,
        len: 17_280,
        late_frames: 0,
        issued_frame: landed_frame - 100,
        landed_frame,
        start_reached_frame: Some(landed_frame + 12_000),
        newest_action_id: Some(3),
        full_action_id: None,
    }
}

fn ids(trace: &Trace) -> Vec<u64> {
    trace
        .iter()
        .map(|e| match e {
            TraceEvent::Action(a) => a.id,
            TraceEvent::Write(w) => w.landed_frame,
        })
        .collect()
}

#[test]
fn zero_capacity_is_refused() {
    assert!(matches!(Trace::new(0), Err(TraceError::ZeroCapacity)));
}

#[test]
fn keeps_the_latest_events_in_order_and_counts_the_dropped() {
    let mut t = Trace::new(3).unwrap();
    assert!(t.is_empty());
    t.record(action(1, 0));
    t.record(action(2, 0));
    assert_eq!(ids(&t), [1, 2]);
    assert_eq!(t.dropped(), 0);
    t.record(action(3, 0));
    t.record(action(4, 0));
    t.record(action(5, 0));
    assert_eq!(ids(&t), [3, 4, 5]);
    assert_eq!(t.dropped(), 2);
    t.record(action(6, 0));
    t.record(action(7, 0));
    t.record(action(8, 0));
    assert_eq!(ids(&t), [6, 7, 8], "a whole lap later");
    assert_eq!(t.dropped(), 5);
    assert_eq!(t.len(), 3);
    t.clear();
    assert!(t.is_empty());
    assert_eq!(t.dropped(), 0);
    t.record(action(9, 0));
    assert_eq!(ids(&t), [9]);
}

#[test]
fn recording_never_reallocates() {
    let mut t = Trace::new(64).unwrap();
    let ptr = t.events.as_ptr();
    let cap = t.events.capacity();
    for i in 0..10_000u64 {
        if i % 3 == 0 {
            t.record(action(i, i));
        } else {
            t.record(write(i as usize, i + 1_000));
        }
    }
    assert_eq!(t.events.as_ptr(), ptr);
    assert_eq!(t.events.capacity(), cap);
    assert_eq!(t.len(), 64);
    assert_eq!(t.dropped(), 10_000 - 64);
}

#[test]
fn actions_and_writes_are_split_in_order() {
    let mut t = Trace::new(2).unwrap();
    t.record(write(0, 5_000));
    t.record(action(1, 5_100));
    t.record(write(10, 6_000)); // drops the first write
    let actions: Vec<_> = t.actions().map(|a| a.id).collect();
    let writes: Vec<_> = t.writes().map(|w| w.landed_frame).collect();
    assert_eq!(actions, [1]);
    assert_eq!(writes, [6_000]);
}

#[test]
fn json_lines_have_a_header_and_tagged_events() {
    let mut t = Trace::new(8).unwrap();
    t.record(ActionEvent {
        id: 1,
        kind: ActionKind::PerSlotKnob,
        arrival_frame: 4_800,
        sent_frame: Some(4_700),
    });
    t.record(WriteEvent {
        kind: WriteKind::Repatch,
        ring_start: 90,
        len: 100,
        late_frames: 2,
        issued_frame: 5_000,
        landed_frame: 5_256,
        start_reached_frame: None,
        newest_action_id: Some(1),
        full_action_id: None,
    });
    let mut out = Vec::new();
    t.write_jsonl(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            r#"{"event":"header","capacity":8,"events":2,"dropped":0}"#,
            r#"{"event":"action","id":1,"kind":"per_slot_knob","arrival_frame":4800,"sent_frame":4700}"#,
            concat!(
                r#"{"event":"write","kind":"repatch","ring_start":90,"len":100,"late_frames":2,"#,
                r#""issued_frame":5000,"landed_frame":5256,"start_reached_frame":null,"#,
                r#""newest_action_id":1,"full_action_id":null}"#
            ),
        ]
    );
    let (header, events) = read_jsonl(text.as_bytes()).unwrap();
    assert_eq!(header, t.header());
    assert_eq!(events, t.iter().copied().collect::<Vec<_>>());
}

#[test]
fn a_full_trace_round_trips_with_its_dropped_count() {
    let mut t = Trace::new(5).unwrap();
    for (i, kind) in ActionKind::ALL.iter().enumerate() {
        t.record(ActionEvent {
            id: i as u64 + 1,
            kind: *kind,
            arrival_frame: 1_000 * i as u64,
            sent_frame: None,
        });
        t.record(write(i, 1_000 * i as u64 + 500));
    }
    let mut out = Vec::new();
    t.write_jsonl(&mut out).unwrap();
    let (header, events) = read_jsonl(out.as_slice()).unwrap();
    assert_eq!(header.dropped, 9);
    assert_eq!(header.events, 5);
    assert_eq!(events, t.iter().copied().collect::<Vec<_>>());
}

#[test]
fn bad_dumps_name_the_line() {
    let header = r#"{"event":"header","capacity":8,"events":0,"dropped":0}"#;
    let err = read_jsonl(format!("{header}\n\n{{\"event\":\"nope\"}}\n").as_bytes()).unwrap_err();
    assert!(matches!(err, TraceError::Parse { line: 3, .. }), "{err}");
    let err = read_jsonl(
        r#"{"event":"action","id":1,"kind":"knob","arrival_frame":0,"sent_frame":null}"#.as_bytes(),
    )
    .unwrap_err();
    assert!(matches!(err, TraceError::Layout { line: 1, .. }), "{err}");
    let err = read_jsonl(format!("{header}\n{header}\n").as_bytes()).unwrap_err();
    assert!(matches!(err, TraceError::Layout { line: 2, .. }), "{err}");
    let err = read_jsonl("".as_bytes()).unwrap_err();
    assert!(err.to_string().contains("header"), "{err}");
    let err = read_jsonl(format!("{header}\n{{\"event\":\"action\",\"id\":1,\"kind\":\"knobb\",\"arrival_frame\":0,\"sent_frame\":null}}\n").as_bytes()).unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
}

#[test]
fn reach_clock_follows_the_band() {
    let g = LoopGeometry::new(48_000, Some((10_000, 20_000))).unwrap();
    assert_eq!(
        start_reached_frame(&g, 1_000_000, 19_000, 10_500),
        Some(1_001_500)
    );
    assert_eq!(start_reached_frame(&g, 1_000_000, 19_000, 25_000), None);
    let g = LoopGeometry::new(48_000, None).unwrap();
    assert_eq!(start_reached_frame(&g, 7, 47_000, 1_000), Some(7 + 2_000));
}

#[test]
fn origin_is_the_send_when_known() {
    let mut a = action(1, 5_000);
    assert_eq!(a.origin_frame(), 5_000);
    a.sent_frame = Some(4_900);
    assert_eq!(a.origin_frame(), 4_900);
}
