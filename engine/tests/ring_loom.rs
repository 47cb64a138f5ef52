//! Model check of the ring's publish protocol with loom (every interleaving and every
//! memory-order outcome the C11 model allows, on a tiny ring: blocks of 2 frames).
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p latentd-engine --release --test ring_loom`
//! (the test script does; without `--cfg loom` this file is empty).
#![cfg(loom)]

use latentd_engine::PlayheadRing;
use loom::thread;

const OLD: f32 = 1.0;
const NEW: f32 = 2.0;

/// An 8-frame mono ring of `OLD`, guard 2 frames (one block).
fn ring() -> PlayheadRing {
    PlayheadRing::from_interleaved(vec![OLD; 8], 1, 48_000, 2).unwrap()
}

/// A reader that is not torn sees each block wholly old or wholly new: the seqlock never
/// lets a mixed block through uncounted.
#[test]
fn an_untorn_read_sees_a_whole_block() {
    loom::model(|| {
        let ring = ring();
        let handle = ring.handle();
        let (mut writer, mut reader) = ring.split();
        // The playhead is at 0; guard [0, 2) = block 0; block 1 ([2, 4)) may be written.
        let w = thread::spawn(move || {
            // Late (2) when the reader has already published playhead 2.
            let report = writer.write(2, &[NEW, NEW]).unwrap();
            assert!(report.late_frames == 0 || report.late_frames == 2);
        });
        let mut first = [0.0f32; 2];
        let mut second = [0.0f32; 2];
        reader.read_interleaved(&mut first, 1);
        reader.read_interleaved(&mut second, 1); // reads block 1 while it may be written
        w.join().unwrap();
        assert_eq!(first, [OLD, OLD]);
        if handle.counters().torn_reads == 0 {
            assert!(
                second == [OLD, OLD] || second == [NEW, NEW],
                "untorn read of a mixed block: {second:?}"
            );
        }
    });
}

/// With the guard respected (the reader reads only inside the zone the writer skips),
/// no interleaving produces a torn read, and the write outside lands whole.
#[test]
fn a_respected_guard_never_tears() {
    loom::model(|| {
        let ring = ring();
        let handle = ring.handle();
        let (mut writer, mut reader) = ring.split();
        let w = thread::spawn(move || {
            // Frames [0, 4): block 0 is the guard zone from playhead 0 (or, once the reader
            // has published 2, block 1 is); either way one block is skipped as late.
            writer.write(0, &[NEW; 4]).unwrap()
        });
        let mut out = [0.0f32; 2];
        reader.read_interleaved(&mut out, 1);
        let report = w.join().unwrap();
        let c = handle.counters();
        assert_eq!(c.torn_reads, 0);
        assert_eq!(report.late_frames + report.written_frames, 4);
        assert!(report.late_frames >= 2, "{report:?}");
    });
}
