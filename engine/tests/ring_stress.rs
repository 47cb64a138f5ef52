//! Concurrent stress of the playhead ring: a reader thread playing random periods, a writer
//! thread patching random windows, band changes from the writer side, millions of frames.
//!
//! "Guard respected" is made explicit. The guard is one period plus two blocks
//! ([`PlayheadRing::guard_for_period`]): a block the writer checked against playhead `P` is
//! safe while the reader plays the period from `P`, but not the one after. So before each
//! period the reader waits until every write that had started when it published its
//! previous playhead has finished: a write whose checks saw an older playhead is then
//! over (real periods last milliseconds, real block writes nanoseconds; here the wait
//! stands in for that, so a writer preempted in the middle of a block cannot be
//! overtaken). Under that rule torn reads must be zero. A second test breaks the rule on purpose and checks that torn reads
//! are then detected, so the first test's zero means something.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::thread;
use std::time::{Duration, Instant};

use latentd_engine::PlayheadRing;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const RATE: u32 = 48_000;
const LOOP: usize = 20_000;

/// Channel 1 is always the negation of channel 0, in the source and in every window; the
/// crossfade keeps that exact, so a frame that breaks it was torn between its channels.
fn source() -> Vec<f32> {
    (0..LOOP)
        .flat_map(|i| {
            let v = (i as f32 * 0.001).sin();
            [v, -v]
        })
        .collect()
}

fn window(rng: &mut StdRng, len: usize) -> Vec<f32> {
    let level: f32 = rng.random_range(-1.0..1.0);
    (0..len)
        .flat_map(|i| {
            let v = level * (1.0 + i as f32 * 1e-5);
            [v, -v]
        })
        .collect()
}

#[test]
fn millions_of_frames_with_random_windows_and_bands_have_no_torn_reads() {
    let max_period = 1024;
    let ring = PlayheadRing::from_interleaved(
        source(),
        2,
        RATE,
        PlayheadRing::guard_for_period(max_period),
    )
    .unwrap();
    let handle = ring.handle();
    let (mut writer, mut reader) = ring.split();
    let target_frames: u64 = 3_000_000;
    let done = Arc::new(AtomicBool::new(false));
    let broken_frames = Arc::new(AtomicU64::new(0));
    // Writes started and finished, counted around `write` by the writer thread.
    let started = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicU64::new(0));

    let reader_thread = {
        let (handle, done, broken) = (handle.clone(), done.clone(), broken_frames.clone());
        let (started, finished) = (started.clone(), finished.clone());
        thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(1);
            let mut out = vec![0.0f32; 2 * max_period];
            // Writes started by the time the previous period's playhead was published.
            let mut started_at_publish = 0;
            let mut last_finished = u64::MAX;
            while handle.counters().frames_played < target_frames {
                // The guard rule: every write in flight at the last publish (whose checks
                // may have seen the playhead before it) is over before the next period.
                // Waiting also for one more finished write keeps the two threads in step.
                let mut now_finished = finished.load(Ordering::SeqCst);
                while now_finished < started_at_publish || now_finished == last_finished {
                    thread::yield_now();
                    now_finished = finished.load(Ordering::SeqCst);
                }
                last_finished = now_finished;
                let n = rng.random_range(64..=max_period);
                reader.read_interleaved(&mut out[..2 * n], 2);
                // The publish (a release store inside the read) is ordered before this
                // load: a write not counted here checks against the new playhead.
                fence(Ordering::SeqCst);
                started_at_publish = started.load(Ordering::SeqCst);
                let bad = out[..2 * n]
                    .chunks_exact(2)
                    .filter(|f| f[1] != -f[0])
                    .count();
                broken.fetch_add(bad as u64, Ordering::Relaxed);
            }
            done.store(true, Ordering::Release);
        })
    };

    let mut rng = StdRng::seed_from_u64(2);
    let mut writes = 0u64;
    while !done.load(Ordering::Acquire) {
        let len = rng.random_range(100..6_000);
        let start = rng.random_range(0..LOOP);
        let audio = window(&mut rng, len);
        started.fetch_add(1, Ordering::SeqCst);
        // Ordered before the guard checks' playhead loads (see the reader's fence).
        fence(Ordering::SeqCst);
        writer.write(start, &audio).unwrap();
        finished.fetch_add(1, Ordering::SeqCst);
        writes += 1;
        if writes.is_multiple_of(97) {
            let a = rng.random_range(0..LOOP - 6_000);
            let b = a + rng.random_range(3_000..6_000);
            handle.set_band(a, b).unwrap();
        } else if writes.is_multiple_of(131) {
            handle.clear_band();
        }
    }
    reader_thread.join().unwrap();

    let c = handle.counters();
    assert!(c.frames_played >= target_frames);
    assert_eq!(c.torn_reads, 0, "{c:?}");
    assert_eq!(broken_frames.load(Ordering::Relaxed), 0);
    assert!(
        c.late_frames > 0,
        "random windows must hit the guard sometimes: {c:?}"
    );
    assert!(c.writes > 1_000, "{c:?}");
}

#[test]
fn a_reader_that_overtakes_writes_is_caught_as_torn() {
    // A tiny guard and a reader spinning as fast as it can: it will meet blocks mid-write.
    let ring = PlayheadRing::from_interleaved(source(), 2, RATE, 32).unwrap();
    let handle = ring.handle();
    let (mut writer, mut reader) = ring.split();
    let stop = Arc::new(AtomicBool::new(false));
    let reader_thread = {
        let (handle, stop) = (handle.clone(), stop.clone());
        thread::spawn(move || {
            let mut out = vec![0.0f32; 2 * 4096];
            let deadline = Instant::now() + Duration::from_secs(20);
            while handle.counters().torn_reads == 0 && Instant::now() < deadline {
                reader.read_interleaved(&mut out, 2);
            }
            stop.store(true, Ordering::Release);
        })
    };
    let mut rng = StdRng::seed_from_u64(3);
    let full = window(&mut rng, LOOP - 64);
    while !stop.load(Ordering::Acquire) {
        let start = rng.random_range(0..LOOP);
        writer.write(start, &full).unwrap();
    }
    reader_thread.join().unwrap();
    assert!(handle.counters().torn_reads > 0, "{:?}", handle.counters());
}
