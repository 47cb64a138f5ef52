//! The engine thread on a real ring, played by a reader thread in real time: a knob action
//! is heard, stats move, the idle pause and `stop` work.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::*;
use crate::audio_clip::AudioView;
use crate::conditioning::Conditioner;
use crate::knobs::{KnobId, KnobStore};
use crate::model::builtin::BuiltinModel;
use crate::ring::PlayheadRing;
use crate::runner::RealClock;
use crate::runner::metrics::ActionLatency;
use crate::runner::trace::{ActionKind, WriteEvent};

#[test]
fn the_engine_thread_hears_a_knob_and_stops() {
    let model = Arc::new(BuiltinModel::new());
    let source = crate::audio_file::test_signal(48_000, 2, 4.0);
    let ring = PlayheadRing::from_interleaved(
        source.samples.clone(),
        2,
        48_000,
        PlayheadRing::guard_for_period(256),
    )
    .unwrap();
    let handle_ring = ring.handle();
    let (writer, mut reader) = ring.split();
    let done = Arc::new(AtomicBool::new(false));
    let stop_reader = Arc::clone(&done);
    let player = std::thread::spawn(move || {
        let mut buf = vec![0.0f32; 512];
        let start = Instant::now();
        let mut periods = 0u64;
        while !stop_reader.load(Ordering::Relaxed) {
            reader.read_interleaved(&mut buf, 2);
            periods += 1;
            let due = start + Duration::from_secs_f64(periods as f64 * 256.0 / 48_000.0);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
    });
    let (store, knob_reader) = KnobStore::new();
    let (_conditioner, cond_reader) = Conditioner::new(Arc::clone(&model), None);
    let config = EngineConfig {
        idle_after_s: 1.5,
        ..EngineConfig::default()
    };
    let engine = Engine::spawn(
        model,
        writer,
        knob_reader,
        cond_reader,
        config,
        RealClock::new(handle_ring.clone()),
    )
    .unwrap();
    store.set_waker(engine.waker());
    engine
        .set_source(AudioView {
            samples: &source.samples,
            channels: 2,
            sample_rate: 48_000,
        })
        .unwrap();
    assert!(engine.set_loop(2.0, 1.0).is_err());
    std::thread::sleep(Duration::from_millis(400));
    store.set_id(KnobId::ch_g4, 0.3).unwrap();
    let id = engine.note_action(ActionKind::Knob);
    engine.note_ack(id);
    std::thread::sleep(Duration::from_millis(600));
    let stats = engine.stats();
    assert!(stats.ticks > 5, "{stats:?}");
    assert!(
        stats.frontier_writes > 0 && stats.repatches > 0,
        "{stats:?}"
    );
    assert!(stats.last_knob_to_ear_ms.is_some(), "{stats:?}");
    let record = engine.record().unwrap();
    let writes: Vec<WriteEvent> = record.trace.writes().copied().collect();
    let action = *record.trace.actions().next().unwrap();
    let l = ActionLatency::compute(&action, record.acks.first().map(|a| a.1), &writes);
    assert!(l.audible_first.is_some() && l.ack_gap.is_some());
    let mut dump = Vec::new();
    engine.dump_trace(&mut dump).unwrap();
    assert!(
        String::from_utf8(dump)
            .unwrap()
            .starts_with("{\"event\":\"header\"")
    );
    // No activity for 1.5 s: the engine idles (the heartbeat keeps moving).
    std::thread::sleep(Duration::from_millis(1800));
    let idle = engine.stats();
    assert!(idle.idle, "{idle:?}");
    let beat = engine.heartbeat();
    std::thread::sleep(Duration::from_millis(200));
    assert!(engine.heartbeat() > beat);
    assert_eq!(engine.stats().ticks, idle.ticks);
    // Any input resumes it (a debug build on a loaded machine may take a while for its
    // first ticks and their stats publish: wait for them, up to a generous deadline).
    store.set_id(KnobId::ch_g4, 1.0).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.stats().ticks <= idle.ticks && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(engine.stats().ticks > idle.ticks);
    let _writer = engine.stop().unwrap();
    done.store(true, Ordering::Relaxed);
    player.join().unwrap();
    assert_eq!(handle_ring.counters().torn_reads, 0);
}
