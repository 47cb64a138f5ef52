//! Frontier and repatch targeting, and the reader's path, by hand and against a real ring.

use super::*;
use crate::ring::PlayheadRing;
use proptest::prelude::*;

const LOOP: usize = 48_000 * 60;
const WINDOW: usize = 17_280; // 0.36 s at 48 kHz
const GUARD: usize = 320; // PlayheadRing::guard_for_period(256)

fn seg(ring_start: usize, window_offset: usize, len: usize) -> Segment {
    Segment {
        ring_start,
        window_offset,
        len,
    }
}

fn no_band() -> LoopGeometry {
    LoopGeometry::new(LOOP, None).unwrap()
}

fn band(a: usize, b: usize) -> LoopGeometry {
    LoopGeometry::new(LOOP, Some((a, b))).unwrap()
}

#[test]
fn geometry_refuses_bad_loops_and_bands() {
    assert_eq!(LoopGeometry::new(0, None), Err(TargetingError::EmptyLoop));
    assert_eq!(
        LoopGeometry::new(100, Some((50, 50))),
        Err(TargetingError::Band {
            a: 50,
            b: 50,
            loop_frames: 100
        })
    );
    assert_eq!(
        LoopGeometry::new(100, Some((10, 101))),
        Err(TargetingError::Band {
            a: 10,
            b: 101,
            loop_frames: 100
        })
    );
    assert!(LoopGeometry::new(100, Some((0, 100))).is_ok());
    assert_eq!(
        frontier_target(&no_band(), LOOP, 0, WINDOW),
        Err(TargetingError::Playhead {
            playhead: LOOP,
            loop_frames: LOOP
        })
    );
    assert_eq!(
        repatch_target(&no_band(), 0, 0, GUARD, 0),
        Err(TargetingError::Window {
            window: 0,
            loop_frames: LOOP
        })
    );
}

#[test]
fn frontier_without_band() {
    let g = no_band();
    let plan = frontier_target(&g, 1_000, 12_000, WINDOW).unwrap();
    assert_eq!(plan.segments(), &[seg(13_000, 0, WINDOW)]);
    // Across the loop end: one segment, the ring wraps it.
    let plan = frontier_target(&g, LOOP - 5_000, 12_000, WINDOW).unwrap();
    assert_eq!(plan.segments(), &[seg(7_000, 0, WINDOW)]);
    assert_eq!(plan.total_len(), WINDOW);
    // A lead of more than a loop comes round.
    let plan = frontier_target(&g, 10, (LOOP + 90) as u64, WINDOW).unwrap();
    assert_eq!(plan.target(), 100);
}

#[test]
fn frontier_inside_a_band_wraps_clamps_and_patches_at_a() {
    let g = band(100_000, 200_000);
    // Plain: well inside the band.
    let plan = frontier_target(&g, 150_000, 12_000, WINDOW).unwrap();
    assert_eq!(plan.segments(), &[seg(162_000, 0, WINDOW)]);
    // Target past B wraps to A + ((195000 - A + 12000) mod 100000) = 107000.
    let plan = frontier_target(&g, 195_000, 12_000, WINDOW).unwrap();
    assert_eq!(plan.segments(), &[seg(107_000, 0, WINDOW)]);
    // Window crossing B: clamped at B, the rest at A.
    let plan = frontier_target(&g, 180_000, 12_000, WINDOW).unwrap();
    assert_eq!(
        plan.segments(),
        &[seg(192_000, 0, 8_000), seg(100_000, 8_000, WINDOW - 8_000)]
    );
    assert_eq!(plan.total_len(), WINDOW);
    // Playhead outside the band: the reader goes to A first.
    let plan = frontier_target(&g, 5_000, 12_000, WINDOW).unwrap();
    assert_eq!(plan.segments(), &[seg(112_000, 0, WINDOW)]);
    // A band ending at the loop end.
    let g = band(LOOP - 50_000, LOOP);
    let plan = frontier_target(&g, LOOP - 1_000, 12_000, WINDOW).unwrap();
    assert_eq!(plan.segments(), &[seg(LOOP - 50_000 + 11_000, 0, WINDOW)]);
}

#[test]
fn frontier_lead_longer_than_the_band() {
    let g = band(1_000, 21_000); // span 20000 >= window
    let plan = frontier_target(&g, 1_000, 50_000, WINDOW).unwrap();
    // 50000 mod 20000 = 10000: target 11000, clamp 10000 at B, 7280 at A.
    assert_eq!(
        plan.segments(),
        &[seg(11_000, 0, 10_000), seg(1_000, 10_000, 7_280)]
    );
}

#[test]
fn frontier_in_a_sub_window_band_is_pinned_at_a() {
    let g = band(1_000, 11_000); // span 10000 < window
    for playhead in [1_000, 5_000, 10_999, 0, 50_000] {
        let plan = frontier_target(&g, playhead, 12_000, WINDOW).unwrap();
        assert_eq!(plan.segments(), &[seg(1_000, 0, 10_000)], "{playhead}");
    }
}

#[test]
fn repatch_without_band() {
    let g = no_band();
    let plan = repatch_target(&g, 1_000, 7_776, GUARD, WINDOW)
        .unwrap()
        .unwrap();
    assert_eq!(plan.segments(), &[seg(8_776, 0, WINDOW)]);
    // A lead inside the guard is pushed to the guard's end.
    let plan = repatch_target(&g, 1_000, 100, GUARD, WINDOW)
        .unwrap()
        .unwrap();
    assert_eq!(plan.target(), 1_000 + GUARD);
    // Across the loop end.
    let plan = repatch_target(&g, LOOP - 100, 7_776, GUARD, WINDOW)
        .unwrap()
        .unwrap();
    assert_eq!(plan.segments(), &[seg(7_676, 0, WINDOW)]);
}

#[test]
fn repatch_inside_a_band() {
    let g = band(100_000, 200_000);
    // Wraps inside the band.
    let plan = repatch_target(&g, 195_000, 7_776, GUARD, WINDOW)
        .unwrap()
        .unwrap();
    assert_eq!(plan.segments(), &[seg(102_776, 0, WINDOW)]);
    // Clamped at B, nothing at A.
    let plan = repatch_target(&g, 180_000, 7_776, GUARD, WINDOW)
        .unwrap()
        .unwrap();
    assert_eq!(plan.segments(), &[seg(187_776, 0, 12_224)]);
    // Guard push inside a band, across B.
    let plan = repatch_target(&g, 199_800, 0, GUARD, WINDOW)
        .unwrap()
        .unwrap();
    assert_eq!(plan.target(), 100_000 + GUARD - 200);
    // Playhead outside the band: measured from A.
    let plan = repatch_target(&g, 300_000, 7_776, GUARD, WINDOW)
        .unwrap()
        .unwrap();
    assert_eq!(plan.target(), 107_776);
}

#[test]
fn repatch_skips_sub_window_bands() {
    let g = band(1_000, 1_000 + WINDOW - 1);
    assert_eq!(
        repatch_target(&g, 2_000, 7_776, GUARD, WINDOW).unwrap(),
        None
    );
    let g = band(1_000, 1_000 + WINDOW);
    assert!(
        repatch_target(&g, 2_000, 7_776, GUARD, WINDOW)
            .unwrap()
            .is_some()
    );
}

#[test]
fn repatch_never_runs_back_into_the_playhead() {
    let (a, b) = (1_000, 21_000);
    let g = band(a, b);
    // Target wraps to A + 3000; the window would run past the playhead at A + 15000.
    let plan = repatch_target(&g, a + 15_000, 8_000, GUARD, WINDOW)
        .unwrap()
        .unwrap();
    assert_eq!(plan.segments(), &[seg(a + 3_000, 0, 12_000)]);
    // A lead longer than the band comes round, then is pushed out of the guard again.
    let plan = repatch_target(&g, a, 45_000, GUARD, WINDOW)
        .unwrap()
        .unwrap();
    assert_eq!(plan.segments(), &[seg(a + 5_000, 0, 15_000)]);
    let plan = repatch_target(&g, a, 40_100, GUARD, WINDOW)
        .unwrap()
        .unwrap();
    assert_eq!(plan.target(), a + GUARD);
    // A guard covering the whole band: nothing can land.
    assert_eq!(repatch_target(&g, a, 0, 25_000, 1_000).unwrap(), None);
}

#[test]
fn frames_until_reached_follows_the_path() {
    // No band: through the loop end.
    assert_eq!(frames_until_reached(10, 10, 100, None), Some(0));
    assert_eq!(frames_until_reached(10, 30, 100, None), Some(20));
    assert_eq!(frames_until_reached(90, 5, 100, None), Some(15));
    assert_eq!(frames_until_reached(10, 9, 100, None), Some(99));
    // Band [20, 60): through B to A.
    let band = Some((20, 60));
    assert_eq!(frames_until_reached(30, 50, 100, band), Some(20));
    assert_eq!(frames_until_reached(50, 25, 100, band), Some(15));
    assert_eq!(frames_until_reached(30, 29, 100, band), Some(39));
    // Outside the band: never.
    assert_eq!(frames_until_reached(30, 70, 100, band), None);
    assert_eq!(frames_until_reached(30, 10, 100, band), None);
    // Playhead outside the band: jumps to A first.
    assert_eq!(frames_until_reached(80, 20, 100, band), Some(0));
    assert_eq!(frames_until_reached(5, 45, 100, band), Some(25));
    // Bad arguments: never.
    assert_eq!(frames_until_reached(100, 5, 100, None), None);
    assert_eq!(frames_until_reached(5, 100, 100, None), None);
    assert_eq!(frames_until_reached(5, 6, 100, Some((60, 20))), None);
    assert_eq!(frames_until_reached(5, 6, 0, None), None);
}

/// Play a real ring one frame at a time until the first nonzero frame; return the frame
/// clock at which it was played.
fn clock_of_first_sound(ring_reader: &mut crate::ring::RingReader, limit: usize) -> Option<u64> {
    let handle = ring_reader.handle();
    let mut frame = [0.0f32; 1];
    for _ in 0..limit {
        let clock = handle.counters().frames_played;
        ring_reader.read_interleaved(&mut frame, 1);
        if frame[0] != 0.0 {
            return Some(clock);
        }
    }
    None
}

/// Writes planned here land where the real reader plays them at the clock predicted by
/// `frames_until_reached`, with and without a band, through B, with no late frames.
#[test]
fn plans_land_where_the_real_reader_hears_them() {
    let loop_frames = 48_000;
    let window = 4_000;
    let guard = PlayheadRing::guard_for_period(256);
    for (band, playhead_steps, kind) in [
        (None, 46_000, "loop end"),
        (Some((10_000, 30_000)), 29_000 - 10_000, "band wrap"),
        (Some((10_000, 30_000)), 5_000, "band inside"),
    ] {
        let ring = PlayheadRing::silence(loop_frames, 1, 48_000, guard).unwrap();
        let handle = ring.handle();
        let (mut writer, mut reader) = ring.split();
        if let Some((a, b)) = band {
            handle.set_band(a, b).unwrap();
        }
        let mut period = vec![0.0f32; 1_000];
        let mut left = playhead_steps;
        while left > 0 {
            let n = left.min(period.len());
            reader.read_interleaved(&mut period[..n], 1);
            left -= n;
        }
        let playhead = handle.playhead();
        let clock = handle.counters().frames_played;
        let g = LoopGeometry::new(loop_frames, handle.band()).unwrap();
        let plan = repatch_target(&g, playhead, 1_500, guard, window)
            .unwrap()
            .unwrap();
        let audio = vec![1.0f32; window];
        for s in plan.segments() {
            let r = writer
                .write(
                    s.ring_start,
                    &audio[s.window_offset..s.window_offset + s.len],
                )
                .unwrap();
            assert_eq!(r.late_frames, 0, "{kind}");
        }
        let until = g.frames_until_reached(playhead, plan.target()).unwrap();
        assert_eq!(until, 1_500, "{kind}: repatch lead is the path distance");
        let heard = clock_of_first_sound(&mut reader, 3 * loop_frames).unwrap();
        assert_eq!(heard, clock + until, "{kind}");
    }
}

/// A band armed while the playhead is outside it: the real reader jumps to A, as
/// `frames_until_reached` assumes. Then a frontier window crossing B: the reader plays it
/// unbroken, the head segment up to B and the wrap segment from A.
#[test]
fn armed_band_outside_the_playhead_and_frontier_wrap_on_a_real_ring() {
    let guard = PlayheadRing::guard_for_period(256);
    let ring = PlayheadRing::silence(48_000, 1, 48_000, guard).unwrap();
    let handle = ring.handle();
    let (mut writer, mut reader) = ring.split();
    let mut period = vec![0.0f32; 700];
    reader.read_interleaved(&mut period, 1);
    handle.set_band(20_000, 30_000).unwrap();
    let playhead = handle.playhead();
    assert_eq!(playhead, 700, "the band is applied at the next period");
    let clock = handle.counters().frames_played;
    let g = LoopGeometry::new(48_000, handle.band()).unwrap();
    let plan = frontier_target(&g, playhead, 5_000, 1_000).unwrap();
    assert_eq!(plan.segments(), &[seg(25_000, 0, 1_000)]);
    let r = writer.write(25_000, &[1.0; 1_000]).unwrap();
    assert_eq!(r.late_frames, 0);
    let until = g.frames_until_reached(playhead, 25_000).unwrap();
    assert_eq!(until, 5_000);
    assert_eq!(
        clock_of_first_sound(&mut reader, 20_000),
        Some(clock + until)
    );

    // Now inside the band at 25001: lead 4000 puts a 5000-frame window at 29001.
    let playhead = handle.playhead();
    assert_eq!(playhead, 25_001);
    let clock = handle.counters().frames_played;
    let plan = frontier_target(&g, playhead, 4_000, 5_000).unwrap();
    assert_eq!(
        plan.segments(),
        &[seg(29_001, 0, 999), seg(20_000, 999, 4_001)]
    );
    // Window frame i carries i + 1, so what the reader plays tells where it came from.
    let audio: Vec<f32> = (0..5_000).map(|i| (i + 1) as f32).collect();
    for s in plan.segments() {
        let r = writer
            .write(
                s.ring_start,
                &audio[s.window_offset..s.window_offset + s.len],
            )
            .unwrap();
        assert_eq!(r.late_frames, 0);
    }
    let until = g.frames_until_reached(playhead, plan.target()).unwrap();
    assert_eq!(until, 4_000);
    let mut skip = vec![0.0f32; until as usize];
    reader.read_interleaved(&mut skip, 1);
    assert_eq!(handle.counters().frames_played, clock + until);
    let mut played = vec![0.0f32; 5_000];
    reader.read_interleaved(&mut played, 1);
    // The edges are crossfaded against silence (249 and 1000 frames); the middles are
    // exact, in window order across B -> A.
    assert!(played[0] > 0.0, "the window starts exactly at the target");
    for i in (249..750).chain(999 + 1_000..999 + 3_001) {
        assert_eq!(played[i], (i + 1) as f32, "window frame {i}");
    }
    assert_eq!(handle.counters().torn_reads, 0);
}

proptest! {
    /// Frontier plans stay inside the region, cover min(window, span) frames without
    /// overlap, start where the reader's path puts them, and the wrap segment follows
    /// the head segment on the path.
    #[test]
    fn frontier_plans_are_consistent(
        loop_frames in 2_000usize..100_000,
        a_frac in 0.0f64..1.0,
        b_frac in 0.0f64..1.0,
        banded in any::<bool>(),
        playhead_frac in 0.0f64..1.0,
        lead in 0u64..300_000,
        window in 1usize..20_000,
    ) {
        let window = window.min(loop_frames);
        let a = (a_frac * (loop_frames - 1) as f64) as usize;
        let b = a + 1 + (b_frac * (loop_frames - a - 1) as f64) as usize;
        let band = banded.then_some((a, b));
        let g = LoopGeometry::new(loop_frames, band).unwrap();
        let playhead = (playhead_frac * (loop_frames - 1) as f64) as usize;
        let plan = frontier_target(&g, playhead, lead, window).unwrap();
        let (start, span) = g.region();
        prop_assert_eq!(plan.total_len(), window.min(span));
        let mut offset = 0;
        for s in plan.segments() {
            prop_assert_eq!(s.window_offset, offset);
            prop_assert!(s.len > 0);
            if band.is_some() {
                prop_assert!(s.ring_start >= start && s.ring_start + s.len <= start + span);
            }
            offset += s.len;
        }
        if span >= window {
            let until = g.frames_until_reached(playhead, plan.target()).unwrap();
            prop_assert_eq!(until, lead % span as u64);
        } else {
            prop_assert_eq!(plan.target(), start);
        }
        if let [head, wrap] = plan.segments() {
            // Path-adjacent: the end of the head segment is B, the wrap starts at A.
            prop_assert_eq!(head.ring_start + head.len, start + span);
            prop_assert_eq!(wrap.ring_start, start);
        }
    }

    /// Repatch plans never start inside the guard and never run into the playhead.
    #[test]
    fn repatch_plans_respect_the_guard(
        loop_frames in 2_000usize..100_000,
        a_frac in 0.0f64..1.0,
        b_frac in 0.0f64..1.0,
        banded in any::<bool>(),
        playhead_frac in 0.0f64..1.0,
        lead in 0u64..300_000,
        guard in 32usize..2_000,
        window in 1usize..20_000,
    ) {
        let window = window.min(loop_frames);
        let a = (a_frac * (loop_frames - 1) as f64) as usize;
        let b = a + 1 + (b_frac * (loop_frames - a - 1) as f64) as usize;
        let band = banded.then_some((a, b));
        let g = LoopGeometry::new(loop_frames, band).unwrap();
        let playhead = (playhead_frac * (loop_frames - 1) as f64) as usize;
        let (start, span) = g.region();
        match repatch_target(&g, playhead, lead, guard, window).unwrap() {
            None => prop_assert!(span < window || guard >= span),
            Some(plan) => {
                prop_assert_eq!(plan.segments().len(), 1);
                let s = plan.segments()[0];
                let until = g.frames_until_reached(playhead, s.ring_start).unwrap();
                prop_assert!(until >= guard as u64);
                prop_assert!(until + s.len as u64 <= span as u64);
                if lead >= guard as u64 && lead < span as u64 {
                    prop_assert_eq!(until, lead);
                }
                if band.is_some() {
                    prop_assert!(s.ring_start + s.len <= start + span);
                }
            }
        }
    }
}

#[test]
fn a_chunk_start_the_frontier_jumped_over_is_backfilled_while_the_reader_is_short_of_it() {
    let g = no_band();
    let start = 48_000 * 8; // a chunk boundary at 8 s
    // The playhead 0.2 s before it, the frontier target 0.05 s past it: fill from it.
    let plan = chunk_start_backfill(&g, start - 9_600, start + 2_400, start, GUARD, WINDOW);
    assert_eq!(plan.unwrap().segments(), &[seg(start, 0, WINDOW)]);
    // The target on the start itself: nothing was jumped over.
    assert_eq!(
        chunk_start_backfill(&g, start - 9_600, start, start, GUARD, WINDOW),
        None
    );
    // The reader inside the guard of the start, or past it: too late.
    assert_eq!(
        chunk_start_backfill(&g, start - GUARD / 2, start + 2_400, start, GUARD, WINDOW),
        None
    );
    assert_eq!(
        chunk_start_backfill(&g, start + 100, start + 2_400, start, GUARD, WINDOW),
        None
    );
    // Across the loop's end: the chunk starting at frame 0.
    let plan = chunk_start_backfill(&g, LOOP - 9_600, 2_400, 0, GUARD, WINDOW);
    assert_eq!(plan.unwrap().segments(), &[seg(0, 0, WINDOW)]);
    // With a band armed the band's own wrap writes cover it.
    let b = band(0, LOOP / 2);
    assert_eq!(
        chunk_start_backfill(&b, start - 9_600, start + 2_400, start, GUARD, WINDOW),
        None
    );
}
