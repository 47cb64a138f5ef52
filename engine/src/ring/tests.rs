//! Unit tests of the ring's single-thread behaviour: reads, wraps, bands, crossfades, guard.

use super::*;

const RATE: u32 = 48_000;

/// A ring whose channel-0 sample at frame `i` is `i` and channel-1 is `-i`.
fn ramp_ring(frames: usize, guard: usize) -> PlayheadRing {
    let samples = (0..frames).flat_map(|i| [i as f32, -(i as f32)]).collect();
    PlayheadRing::from_interleaved(samples, 2, RATE, guard).unwrap()
}

fn read_period(reader: &mut RingReader, n: usize) -> (Vec<f32>, Vec<f32>) {
    let (mut l, mut r) = (vec![0.0; n], vec![0.0; n]);
    reader.read_planar(&mut [&mut l[..], &mut r[..]]);
    (l, r)
}

#[test]
fn reads_in_order_and_wraps_at_the_loop_end() {
    let ring = ramp_ring(1000, 64);
    let h = ring.handle();
    let (_w, mut r) = ring.split();
    let mut seen = Vec::new();
    for _ in 0..25 {
        let (l, rr) = read_period(&mut r, 100);
        assert!(l.iter().zip(&rr).all(|(a, b)| *a == -*b));
        seen.extend(l);
    }
    let expect: Vec<f32> = (0..2500).map(|i| (i % 1000) as f32).collect();
    assert_eq!(seen, expect);
    assert_eq!(h.playhead(), 500);
    assert_eq!(h.counters().frames_played, 2500);
    assert_eq!(h.counters().periods, 25);
}

#[test]
fn interleaved_read_maps_mono_to_every_output_channel() {
    let ring =
        PlayheadRing::from_interleaved((0..512).map(|i| i as f32).collect(), 1, RATE, 64).unwrap();
    let (_w, mut r) = ring.split();
    let mut out = vec![0.0; 8];
    r.read_interleaved(&mut out, 2);
    assert_eq!(out, vec![0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0]);
}

#[test]
fn band_wraps_from_b_to_a_and_jumps_in_when_outside() {
    let ring = ramp_ring(1000, 64);
    let h = ring.handle();
    let (_w, mut r) = ring.split();
    h.set_band(300, 350).unwrap();
    // The playhead (0) is outside the band: the next period starts at A.
    let (l, _) = read_period(&mut r, 120);
    let expect: Vec<f32> = (0..120).map(|i| (300 + i % 50) as f32).collect();
    assert_eq!(l, expect);
    assert_eq!(h.band_applied(), Some((300, 350)));
    // Clearing the band lets the reader run on past B.
    h.clear_band();
    let (l, _) = read_period(&mut r, 60);
    let expect: Vec<f32> = (320..380).map(|i| i as f32).collect();
    assert_eq!(l, expect);
}

#[test]
fn band_inside_keeps_position() {
    let ring = ramp_ring(1000, 64);
    let h = ring.handle();
    let (_w, mut r) = ring.split();
    read_period(&mut r, 310);
    h.set_band(300, 400).unwrap();
    let (l, _) = read_period(&mut r, 100);
    let expect: Vec<f32> = (0..100).map(|i| (300 + (10 + i) % 100) as f32).collect();
    assert_eq!(l, expect);
}

#[test]
fn bad_bands_are_refused_and_change_nothing() {
    let ring = ramp_ring(1000, 64);
    let h = ring.handle();
    h.set_band(10, 20).unwrap();
    for (a, b) in [(5, 5), (20, 10), (0, 1001)] {
        assert!(matches!(h.set_band(a, b), Err(RingError::Band { .. })));
    }
    assert_eq!(h.band(), Some((10, 20)));
}

#[test]
fn write_middle_is_exact_and_edges_crossfade_linearly() {
    let ring = PlayheadRing::silence(96_000, 2, RATE, 256).unwrap();
    let h = ring.handle();
    let (mut w, _r) = ring.split();
    let len = 48_000;
    let report = w.write(10_000, &vec![1.0; 2 * len]).unwrap();
    assert_eq!(report.written_frames, len);
    assert_eq!(report.late_frames, 0);
    let snap = h.snapshot();
    let xf = 1200;
    assert_eq!(w.crossfade_frames(len), xf);
    for i in 0..len {
        let got = snap[(10_000 + i) * 2];
        let want = edge_weight(i, len, xf);
        assert_eq!(got, want, "frame {i}");
    }
    assert_eq!(snap[(10_000 + xf) * 2], 1.0);
    assert!(snap[10_000 * 2] > 0.0 && snap[10_000 * 2] < 0.001);
    assert_eq!(snap[(10_000 - 1) * 2], 0.0);
    assert_eq!(snap[(10_000 + len) * 2], 0.0);
}

#[test]
fn crossfade_is_a_quarter_of_short_windows_and_scales_with_rate() {
    let ring = PlayheadRing::silence(44_100, 2, 44_100, 256).unwrap();
    let (w, _r) = ring.split();
    assert_eq!(w.crossfade_frames(100_000), 1103);
    assert_eq!(w.crossfade_frames(400), 100);
}

#[test]
fn write_wraps_at_the_loop_end() {
    let ring = PlayheadRing::silence(2_000, 1, RATE, 64).unwrap();
    let h = ring.handle();
    let (mut w, mut r) = ring.split();
    let mut rd = vec![0.0; 500];
    r.read_interleaved(&mut rd, 1); // playhead at 500, guard [500, 564)
    let len = 400;
    let report = w.write(1_800, &vec![1.0; len]).unwrap();
    assert_eq!(report.late_frames, 0);
    let snap = h.snapshot();
    assert_eq!(snap[1_900], 1.0);
    assert_eq!(snap[50], 1.0);
    assert!(snap[199] > 0.0 && snap[199] < 0.02);
    assert_eq!(snap[200], 0.0);
}

#[test]
fn late_landings_are_counted_exactly_in_whole_blocks() {
    let guard = 100;
    let ring = PlayheadRing::silence(10_000, 2, RATE, guard).unwrap();
    let h = ring.handle();
    let (mut w, mut r) = ring.split();
    read_period(&mut r, 1_000 + 5); // playhead 1005, inside block 31 (992..1024)
    // Guard zone [1005, 1105) rounds out to blocks 31..=34: frames [992, 1120).
    let report = w.write(900, &vec![1.0; 2 * 400]).unwrap();
    assert_eq!(report.late_frames, 1120 - 992);
    assert_eq!(report.written_frames, 400 - 128);
    let c = h.counters();
    assert_eq!((c.late_frames, c.late_writes, c.writes), (128, 1, 1));
    let snap = h.snapshot();
    assert_eq!(snap[1_000 * 2], 0.0, "older audio stays inside the guard");
    assert_eq!(snap[1_150 * 2], 1.0);
    // A write clear of the guard loses nothing.
    let report = w.write(3_000, &vec![1.0; 2 * 400]).unwrap();
    assert_eq!(report.late_frames, 0);
    assert_eq!(h.counters().late_writes, 1);
}

#[test]
fn guard_follows_the_band_wrap_and_a_requested_band() {
    let ring = ramp_ring(10_000, 64);
    let h = ring.handle();
    let (mut w, mut r) = ring.split();
    h.set_band(2_000, 3_000).unwrap();
    read_period(&mut r, 990); // playhead 2990: the path runs to 3000 then from 2000.
    // Path [2990, 3000) + [2000, 2054): blocks [1984, 2080) meet it; the window from 2000 loses 80.
    assert_eq!(h.playhead(), 2_990);
    let at_a = w.write(2_000, &vec![0.5; 2 * 200]).unwrap();
    assert_eq!(
        at_a.late_frames, 80,
        "A's first blocks are on the reader's path"
    );
    // A requested band puts its A on the path too.
    h.set_band(6_000, 7_000).unwrap();
    let at_new_a = w.write(6_000, &vec![0.5; 2 * 200]).unwrap();
    assert_eq!(at_new_a.late_frames, 80);
}

#[test]
fn ragged_and_oversized_windows_are_refused() {
    let ring = PlayheadRing::silence(1_000, 2, RATE, 64).unwrap();
    let h = ring.handle();
    let (mut w, _r) = ring.split();
    assert!(matches!(
        w.write(0, &[0.0; 3]),
        Err(RingError::Ragged { .. })
    ));
    assert!(matches!(
        w.write(0, &vec![0.0; 2 * 1_000]),
        Err(RingError::WindowTooLong { .. })
    ));
    assert_eq!(h.counters().writes, 0);
}

#[test]
fn construction_checks_geometry() {
    assert_eq!(
        PlayheadRing::silence(1_000, 0, RATE, 64).err(),
        Some(RingError::Channels(0))
    );
    assert_eq!(
        PlayheadRing::silence(1_000, 2, 0, 64).err(),
        Some(RingError::SampleRate)
    );
    assert!(matches!(
        PlayheadRing::silence(100, 2, RATE, 64),
        Err(RingError::LoopLength { .. })
    ));
    assert!(matches!(
        PlayheadRing::silence(1_000, 2, RATE, 8),
        Err(RingError::Guard { .. })
    ));
    assert!(matches!(
        PlayheadRing::from_interleaved(vec![0.0; 1001], 2, RATE, 64),
        Err(RingError::Ragged { .. })
    ));
}

#[test]
fn playhead_and_clock_are_published_together() {
    let ring = ramp_ring(1000, 64);
    let h = ring.handle();
    let (_w, mut r) = ring.split();
    assert_eq!(h.playhead_and_clock(), (0, 0));
    for _ in 0..7 {
        read_period(&mut r, 300);
    }
    assert_eq!(h.playhead_and_clock(), (100, 2100));
    h.set_band(500, 600).unwrap();
    read_period(&mut r, 10);
    assert_eq!(h.playhead_and_clock(), (510, 2110));
}

#[test]
fn the_clock_is_rebuilt_across_32_bit_rollovers() {
    let two32 = 1u64 << 32;
    assert_eq!(unpack_clock(5, 5), 5);
    assert_eq!(unpack_clock(5, 900), 5);
    // The counter moved past a rollover after the word was published.
    assert_eq!(unpack_clock(0xffff_ff00, two32 + 100), 0xffff_ff00);
    assert_eq!(unpack_clock(100, 3 * two32 + 200), 3 * two32 + 100);
    assert_eq!(unpack_clock(200, 7 * two32 + 100), 7 * two32 + 200);
}

fn constant_ring(frames: usize) -> PlayheadRing {
    PlayheadRing::from_interleaved(vec![1.0; 2 * frames], 2, RATE, 64).unwrap()
}

#[test]
fn pause_fades_to_silence_holds_the_playhead_and_play_fades_back_in() {
    let ring = constant_ring(10_000);
    let h = ring.handle();
    let (_w, mut r) = ring.split();
    read_period(&mut r, 100);
    h.set_paused(true);
    let (l, _) = read_period(&mut r, 400);
    let n = TRANSPORT_FADE_FRAMES;
    assert!(l[..n].windows(2).all(|w| w[1] < w[0]), "ramps down");
    assert!(l[n - 1..].iter().all(|&v| v == 0.0), "then silent");
    let held = h.playhead();
    assert_eq!(held, 100 + n, "the fade plays on, then the playhead holds");
    let (l, _) = read_period(&mut r, 300);
    assert!(l.iter().all(|&v| v == 0.0));
    assert_eq!(h.playhead(), held);
    assert_eq!(
        h.counters().frames_played,
        800,
        "the clock runs while paused"
    );
    h.set_paused(false);
    let (l, _) = read_period(&mut r, 400);
    assert!(l[..n].windows(2).all(|w| w[1] > w[0]), "ramps up");
    assert!(l[n..].iter().all(|&v| v == 1.0));
    assert_eq!(h.playhead(), held + 400);
}

#[test]
fn seek_moves_the_playhead_and_lands_at_a_outside_the_band() {
    let ring = ramp_ring(10_000, 64);
    let h = ring.handle();
    let (_w, mut r) = ring.split();
    read_period(&mut r, 100);
    h.seek(5_000).unwrap();
    let (l, _) = read_period(&mut r, 10);
    assert_eq!(l[0], 5_000.0);
    h.set_band(1_000, 2_000).unwrap();
    read_period(&mut r, 10);
    h.seek(7_000).unwrap();
    let (l, _) = read_period(&mut r, 10);
    assert_eq!(l[0], 1_000.0, "outside the armed band: A");
    assert!(matches!(h.seek(10_000), Err(RingError::Seek { .. })));
}

#[test]
fn a_pending_seek_target_is_inside_the_guard() {
    let ring = PlayheadRing::silence(10_000, 2, RATE, 64).unwrap();
    let h = ring.handle();
    let (mut w, _r) = ring.split();
    h.seek(6_400).unwrap();
    let report = w.write(6_400, &vec![1.0; 2 * 200]).unwrap();
    assert_eq!(report.late_frames, 64);
}

/// A two-channel loop whose every frame is `(value, -value)`.
fn flat_loop(frames: usize, value: f32) -> RingLoop {
    RingLoop::from_interleaved([value, -value].repeat(frames), 2).unwrap()
}

#[test]
fn a_swapped_loop_of_another_length_plays_from_zero_after_a_crossfade() {
    let ring = ramp_ring(1000, 64);
    let h = ring.handle();
    let (mut w, mut r) = ring.split();
    read_period(&mut r, 100);
    assert_eq!(h.playhead(), 100);
    w.replace_loop(flat_loop(3000, 5000.0)).unwrap();
    assert_eq!(h.loop_frames(), 1000, "the reader has not adopted it yet");
    let mut out = Vec::new();
    for _ in 0..10 {
        out.extend(read_period(&mut r, 100).0);
    }
    assert_eq!(h.loop_frames(), 3000);
    assert_eq!(h.loop_generation(), 1);
    // Frame i of the fade mixes old frame 100 + i into the new loop's 5000.
    for (i, v) in out.iter().take(LOOP_SWAP_FADE_FRAMES).enumerate() {
        let wgt = (i + 1) as f32 / (LOOP_SWAP_FADE_FRAMES + 1) as f32;
        let old = (100 + i) as f32;
        assert!(
            (v - (old + (5000.0 - old) * wgt)).abs() < 0.05,
            "frame {i}: {v}"
        );
    }
    assert!(out[LOOP_SWAP_FADE_FRAMES..].iter().all(|&v| v == 5000.0));
    assert_eq!(h.playhead(), 1000, "the new loop started at frame 0");
    assert!(
        !w.poll_swap(),
        "the old loop is back and freed on the writer's side"
    );
}

#[test]
fn a_swap_between_tones_makes_no_step_larger_than_the_tones_own() {
    let tone = |frames: usize, hz: f32, phase: f32| -> Vec<f32> {
        (0..frames)
            .flat_map(|i| {
                let v = (std::f32::consts::TAU * hz * i as f32 / RATE as f32 + phase).sin();
                [v, v]
            })
            .collect()
    };
    let ring = PlayheadRing::from_interleaved(tone(8 * 4800, 440.0, 0.0), 2, RATE, 320).unwrap();
    let (mut w, mut r) = ring.split();
    let mut out = Vec::new();
    for _ in 0..7 {
        out.extend(read_period(&mut r, 256).0);
    }
    let new = RingLoop::from_interleaved(tone(3 * 4800, 660.0, 1.3), 2).unwrap();
    w.replace_loop(new).unwrap();
    for _ in 0..7 {
        out.extend(read_period(&mut r, 256).0);
    }
    let own = (std::f32::consts::TAU * 660.0 / RATE as f32).sin();
    let worst = out
        .windows(2)
        .map(|p| (p[1] - p[0]).abs())
        .fold(0.0, f32::max);
    assert!(worst < own * 1.1, "step {worst} vs the tone's own {own}");
}

#[test]
fn a_band_that_no_longer_fits_is_cleared_and_one_that_fits_is_kept() {
    let ring = ramp_ring(2000, 64);
    let h = ring.handle();
    let (mut w, mut r) = ring.split();
    h.set_band(1200, 1800).unwrap();
    read_period(&mut r, 100);
    w.replace_loop(flat_loop(1000, 1.0)).unwrap();
    read_period(&mut r, 100);
    assert_eq!(h.band(), None);
    assert_eq!(h.band_applied(), None);
    assert_eq!(h.playhead(), 100);

    let ring = ramp_ring(2000, 64);
    let h = ring.handle();
    let (mut w, mut r) = ring.split();
    h.set_band(200, 600).unwrap();
    read_period(&mut r, 100);
    let ramp: Vec<f32> = (0..1000).flat_map(|i| [i as f32, -(i as f32)]).collect();
    w.replace_loop(RingLoop::from_interleaved(ramp, 2).unwrap())
        .unwrap();
    for _ in 0..6 {
        read_period(&mut r, 100);
    }
    assert_eq!(h.band(), Some((200, 600)));
    assert_eq!(
        h.playhead(),
        200 + 600 % 400,
        "looping inside the kept band"
    );
    let (l, _) = read_period(&mut r, 100);
    assert_eq!(l[0], 400.0);
}

#[test]
fn a_paused_ring_stays_paused_through_a_swap() {
    let ring = ramp_ring(1000, 64);
    let h = ring.handle();
    let (mut w, mut r) = ring.split();
    h.set_paused(true);
    for _ in 0..4 {
        read_period(&mut r, 100);
    }
    w.replace_loop(flat_loop(500, 7.0)).unwrap();
    let (l, _) = read_period(&mut r, 100);
    assert!(l.iter().all(|&v| v == 0.0));
    assert!(h.is_paused());
    assert_eq!(h.loop_frames(), 500);
    assert_eq!(h.playhead(), 0, "held at the new loop's start");
    assert!(
        !w.poll_swap(),
        "silent: no fade, the old loop is back at once"
    );
    h.set_paused(false);
    let (l, _) = read_period(&mut r, 300);
    assert!(l[0] > 0.0 && l[0] < 7.0, "fades in: {}", l[0]);
    assert_eq!(l[299], 7.0);
}

#[test]
fn writes_wait_for_the_adoption_then_land_in_the_new_loop() {
    let ring = ramp_ring(1000, 64);
    let h = ring.handle();
    let (mut w, mut r) = ring.split();
    w.replace_loop(flat_loop(2000, 1.0)).unwrap();
    let report = w.write(500, &vec![9.0; 2 * 100]).unwrap();
    assert_eq!(report.late_frames, 100, "dropped before the adoption");
    assert_eq!(
        w.replace_loop(flat_loop(2000, 2.0)).err(),
        Some(RingError::SwapInFlight)
    );
    read_period(&mut r, 100);
    assert_eq!(w.loop_frames(), 1000, "not polled yet");
    w.poll_swap();
    assert_eq!(w.loop_frames(), 2000);
    let report = w.write(1500, &vec![9.0; 2 * 100]).unwrap();
    assert_eq!(report.late_frames, 0);
    assert_eq!(h.snapshot()[2 * 1550], 9.0);
    for _ in 0..5 {
        read_period(&mut r, 100);
    }
    assert!(!w.poll_swap());
    w.replace_loop(flat_loop(300, 2.0)).unwrap();
}

#[test]
fn a_swap_is_refused_for_another_channel_count_or_a_loop_too_short() {
    let ring = ramp_ring(1000, 64);
    let h = ring.handle();
    let (mut w, _r) = ring.split();
    let mono = RingLoop::from_interleaved(vec![0.0; 500], 1).unwrap();
    assert_eq!(
        w.replace_loop(mono).err(),
        Some(RingError::SwapChannels { got: 1, ring: 2 })
    );
    assert!(matches!(
        w.replace_loop(flat_loop(10, 0.0)),
        Err(RingError::LoopLength { frames: 10, .. })
    ));
    assert!(!w.poll_swap());
    assert_eq!(h.loop_frames(), 1000);
}
