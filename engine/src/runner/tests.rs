//! The runner's parts together on a real ring, against what the reader actually plays: a
//! simulated tick loop (lead controller, frontier and repatch targeting, trace) writes
//! windows whose channels say whether they reflect an action, and the metrics computed
//! from the trace must equal the first frames the reader plays with the new value.

use super::lead::{LeadConfig, LeadController};
use super::metrics::ActionLatency;
use super::targeting::{LoopGeometry, WritePlan, frontier_target, repatch_target};
use super::trace::{ActionEvent, ActionKind, Trace, WriteEvent, WriteKind, start_reached_frame};
use crate::ring::PlayheadRing;

const RATE: u32 = 48_000;
const LOOP: usize = 4 * RATE as usize;
const PERIOD: usize = 256;
const TICK: u64 = 2_048; // frames of clock between engine ticks (about 43 ms)
const WINDOW: usize = 17_280; // 0.36 s kept
const DEPTH: u64 = 4; // ticks a latent spends in the pipeline
const ARRIVAL: u64 = 48_100;
const SENT: u64 = ARRIVAL - 96;

struct Outcome {
    latency: ActionLatency,
    /// Clock of the first played frame reflecting the action (channel 0 above 0.5).
    heard_first: u64,
    /// Clock of the first played frame computed wholly with it (channel 1 above 0.5).
    heard_full: u64,
    repatches: usize,
}

fn simulate(repatch: bool, band: Option<(usize, usize)>) -> Outcome {
    let guard = PlayheadRing::guard_for_period(PERIOD);
    let ring = PlayheadRing::from_interleaved(vec![0.5; 2 * LOOP], 2, RATE, guard).unwrap();
    let handle = ring.handle();
    let (mut writer, mut reader) = ring.split();
    if let Some((a, b)) = band {
        handle.set_band(a, b).unwrap();
    }
    let mut lead = LeadController::new(LeadConfig {
        repatch,
        ..LeadConfig::default()
    })
    .unwrap();
    let mut trace = Trace::new(4_096).unwrap();
    let mut period = vec![0.0f32; 2 * PERIOD];
    let (mut heard_first, mut heard_full) = (None, None);
    let mut play =
        |reader: &mut crate::ring::RingReader, first: &mut Option<u64>, full: &mut Option<u64>| {
            let clock = handle.counters().frames_played;
            reader.read_interleaved(&mut period, 2);
            for (i, frame) in period.chunks(2).enumerate() {
                if frame[0] > 0.5 && first.is_none() {
                    *first = Some(clock + i as u64);
                }
                if frame[1] > 0.5 && full.is_none() {
                    *full = Some(clock + i as u64);
                }
            }
        };
    let mut action_recorded = false;
    let mut tick_clocks: Vec<u64> = Vec::new();
    let mut audio = vec![0.0f32; 2 * WINDOW];
    let mut repatches = 0;
    while handle.counters().frames_played < ARRIVAL + 3 * RATE as u64 {
        let clock = handle.counters().frames_played;
        let now_s = clock as f64 / RATE as f64;
        if !action_recorded && clock >= ARRIVAL {
            trace.record(ActionEvent {
                id: 1,
                kind: ActionKind::Knob,
                arrival_frame: ARRIVAL,
                sent_frame: Some(SENT),
            });
            lead.note_activity(ARRIVAL as f64 / RATE as f64);
            action_recorded = true;
        }
        if !clock.is_multiple_of(TICK) || clock == 0 {
            play(&mut reader, &mut heard_first, &mut heard_full);
            continue;
        }
        // A tick: a latent finishes. It saw the action if it arrived before this tick; it
        // had it for its whole computation if it arrived before the latent started.
        tick_clocks.push(clock);
        let started = tick_clocks[tick_clocks.len().saturating_sub(DEPTH as usize)];
        let newest = (clock >= ARRIVAL).then_some(1);
        let full = (started >= ARRIVAL).then_some(1);
        for frame in audio.chunks_mut(2) {
            frame[0] = if newest.is_some() { 1.0 } else { 0.5 };
            frame[1] = if full.is_some() { 1.0 } else { 0.5 };
        }
        if tick_clocks.len() > 1 {
            lead.observe_gap(TICK as f64 / RATE as f64, 0.36, now_s)
                .unwrap();
        }
        let playhead = handle.playhead();
        let g = LoopGeometry::new(LOOP, handle.band()).unwrap();
        let frontier =
            frontier_target(&g, playhead, lead.lead_frames(now_s, RATE), WINDOW).unwrap();
        let close = if lead.repatch_due(now_s) {
            repatch_target(&g, playhead, lead.repatch_lead_frames(RATE), guard, WINDOW).unwrap()
        } else {
            None
        };
        // Decoding takes a period: the writes land after the reader moved on.
        play(&mut reader, &mut heard_first, &mut heard_full);
        let mut land = |plan: &WritePlan, first_kind: WriteKind| {
            for (i, s) in plan.segments().iter().enumerate() {
                let r = writer
                    .write(
                        s.ring_start,
                        &audio[2 * s.window_offset..2 * (s.window_offset + s.len)],
                    )
                    .unwrap();
                trace.record(WriteEvent {
                    kind: if i == 0 {
                        first_kind
                    } else {
                        WriteKind::BandWrap
                    },
                    ring_start: s.ring_start,
                    len: s.len,
                    late_frames: r.late_frames,
                    issued_frame: clock,
                    landed_frame: r.landed_at,
                    start_reached_frame: start_reached_frame(&g, clock, playhead, s.ring_start),
                    newest_action_id: newest,
                    full_action_id: full,
                });
            }
        };
        land(&frontier, WriteKind::Frontier);
        if let Some(plan) = close {
            land(&plan, WriteKind::Repatch);
            repatches += 1;
        }
    }
    assert_eq!(handle.counters().torn_reads, 0);
    assert_eq!(trace.dropped(), 0);
    let writes: Vec<WriteEvent> = trace.writes().copied().collect();
    assert!(writes.iter().all(|w| w.late_frames == 0));
    let action = *trace.actions().next().unwrap();
    Outcome {
        latency: ActionLatency::compute(&action, None, &writes),
        heard_first: heard_first.unwrap(),
        heard_full: heard_full.unwrap(),
        repatches,
    }
}

fn check_against_the_reader(o: &Outcome) {
    assert_eq!(o.latency.origin_frame, SENT);
    assert_eq!(o.latency.audible_first, Some(o.heard_first - SENT));
    assert_eq!(o.latency.audible_full, Some(o.heard_full - SENT));
}

#[test]
fn metrics_match_what_the_reader_plays_without_repatch() {
    let o = simulate(false, None);
    check_against_the_reader(&o);
    assert_eq!(o.repatches, 0);
    // The lead floor (0.25 s = 12000 frames) bounds how soon anything is heard.
    assert!(o.latency.audible_first.unwrap() >= 12_000);
}

#[test]
fn repatch_beats_the_lead_floor_and_the_metrics_still_match() {
    let off = simulate(false, None);
    let on = simulate(true, None);
    check_against_the_reader(&on);
    assert!(on.repatches > 0);
    let (first_on, first_off) = (
        on.latency.audible_first.unwrap(),
        off.latency.audible_first.unwrap(),
    );
    // About the repatch lead (0.162 s + a tick) instead of the floor.
    assert!(first_on < 12_000, "{first_on}");
    assert!(first_on + 3_000 < first_off, "{first_on} vs {first_off}");
}

#[test]
fn metrics_match_the_reader_inside_a_loop_band() {
    // A 1 s band: frontier windows wrap at B and the repatch clamps there.
    let o = simulate(true, Some((30_000, 78_000)));
    check_against_the_reader(&o);
    assert!(o.repatches > 0);
}
