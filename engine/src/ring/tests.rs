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
