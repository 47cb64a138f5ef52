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
use crate::ring::{PlayheadRing, RingHandle, RingWriter};
use crate::runner::RealClock;
use crate::runner::lead::LeadConfig;
use crate::runner::metrics::ActionLatency;
use crate::runner::trace::{ActionKind, WriteEvent};

/// The engine thread (built-in model, real clock on `ring`) writing through `writer`, with
/// the knob store and conditioner it reads (kept alive while the test runs).
struct Running {
    engine: EngineHandle<BuiltinModel>,
    store: KnobStore,
    _conditioner: Conditioner<BuiltinModel>,
}

fn spawn_builtin(writer: RingWriter, ring: RingHandle, config: EngineConfig) -> Running {
    let model = Arc::new(BuiltinModel::new());
    let (store, knob_reader) = KnobStore::new();
    let (conditioner, cond_reader) = Conditioner::new(Arc::clone(&model), None);
    let engine = Engine::spawn(
        model,
        writer,
        knob_reader,
        cond_reader,
        config,
        RealClock::new(ring),
    )
    .unwrap();
    Running {
        engine,
        store,
        _conditioner: conditioner,
    }
}

/// A reader thread playing a ring in real time (stereo, 48 kHz, 256-frame periods), as the
/// audio callback would; [`RealtimePlayer::stop`] ends and joins it.
struct RealtimePlayer {
    done: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl RealtimePlayer {
    fn stop(self) {
        self.done.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
    }
}

/// A ring holding `clip` (stereo, 48 kHz), played by a [`RealtimePlayer`]: its handle, the
/// writer for the engine, and the player.
fn play_in_real_time(
    clip: &crate::audio_file::LoopAudio,
) -> (RingHandle, RingWriter, RealtimePlayer) {
    let ring = PlayheadRing::from_interleaved(
        clip.samples.clone(),
        2,
        48_000,
        PlayheadRing::guard_for_period(256),
    )
    .unwrap();
    let handle = ring.handle();
    let (writer, mut reader) = ring.split();
    let done = Arc::new(AtomicBool::new(false));
    let stop_reader = Arc::clone(&done);
    let thread = std::thread::spawn(move || {
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
    (handle, writer, RealtimePlayer { done, thread })
}

#[test]
fn the_engine_thread_hears_a_knob_and_stops() {
    let source = crate::audio_file::test_signal(48_000, 2, 4.0);
    let (handle_ring, writer, player) = play_in_real_time(&source);
    let config = EngineConfig {
        idle_after_s: 1.5,
        ..EngineConfig::default()
    };
    let Running {
        engine,
        store,
        _conditioner,
    } = spawn_builtin(writer, handle_ring.clone(), config);
    store.set_waker(engine.knob_waker());
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
    player.stop();
    assert_eq!(handle_ring.counters().torn_reads, 0);
}

#[test]
fn set_source_takes_a_walking_source_as_long_as_the_ring_and_refuses_one_too_short() {
    // 50 s in 20 s chunks: three chunks (the 10 s rest is half a chunk, a chunk of its own).
    let source = crate::audio_file::test_signal(48_000, 2, 50.0);
    let ring = PlayheadRing::from_interleaved(
        source.samples.clone(),
        2,
        48_000,
        PlayheadRing::guard_for_period(256),
    )
    .unwrap();
    let handle_ring = ring.handle();
    let (writer, _reader) = ring.split();
    let config = EngineConfig {
        walk_chunk_s: 20.0,
        ..EngineConfig::default()
    };
    let Running {
        engine,
        store: _store,
        _conditioner,
    } = spawn_builtin(writer, handle_ring.clone(), config);
    engine
        .set_source(AudioView {
            samples: &source.samples,
            channels: 2,
            sample_rate: 48_000,
        })
        .unwrap();
    let tiny = crate::audio_file::test_signal(48_000, 2, 0.01);
    let err = engine
        .set_source(AudioView {
            samples: &tiny.samples,
            channels: 2,
            sample_rate: 48_000,
        })
        .unwrap_err();
    assert!(err.to_string().contains("a loop needs at least"), "{err}");
    assert_eq!(handle_ring.loop_frames(), 50 * 48_000);
    // The walking engine generates for chunk 0 (the playhead stays at 0: no reader).
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.stats().frontier_writes < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = engine.stats();
    assert!(stats.frontier_writes >= 3, "{stats:?}");
    assert_eq!((stats.panics, stats.walk_chunk), (0, 0));
    let record = engine.record().unwrap();
    let (_, chunk_end) =
        super::super::walk::WalkLayout::new(50 * 48_000, 1920, 1250, 500).ring_range(0);
    assert!(
        record
            .trace
            .writes()
            .all(|w| w.ring_start + w.len <= chunk_end),
        "a write outside chunk 0"
    );
    engine.stop().unwrap();
}

#[test]
fn new_lead_settings_reach_the_running_engine_and_bad_ones_are_refused() {
    let ring =
        PlayheadRing::silence(4 * 48_000, 2, 48_000, PlayheadRing::guard_for_period(256)).unwrap();
    let handle_ring = ring.handle();
    let (writer, _reader) = ring.split();
    let config = EngineConfig {
        start_paused: true,
        ..EngineConfig::default()
    };
    let Running {
        engine,
        store: _store,
        _conditioner,
    } = spawn_builtin(writer, handle_ring, config);
    let lifted = LeadConfig {
        floor_s: 0.9,
        ceiling_s: 1.2,
        ..LeadConfig::default()
    };
    engine.set_lead(lifted).unwrap();
    // Paused, the engine never ticks; the lead it would use shows in the stats anyway.
    let deadline = Instant::now() + Duration::from_secs(5);
    while engine.stats().lead_s < 0.9 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let stats = engine.stats();
    assert!((stats.lead_s - 0.9).abs() < 1e-9, "{stats:?}");
    assert_eq!(stats.ticks, 0, "a settings change is not activity");
    let err = engine
        .set_lead(LeadConfig {
            gain: -1.0,
            ..lifted
        })
        .unwrap_err();
    assert!(err.to_string().contains("gain must be above 0"), "{err}");
    engine.stop().unwrap();
}

#[test]
fn set_source_of_another_length_swaps_the_loop_and_the_engine_follows() {
    let long = crate::audio_file::test_signal(48_000, 2, 8.0);
    let (handle_ring, writer, player) = play_in_real_time(&long);
    let Running {
        engine,
        store: _store,
        _conditioner,
    } = spawn_builtin(writer, handle_ring.clone(), EngineConfig::default());
    engine.set_source(view(&long)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let short = crate::audio_file::test_signal(48_000, 2, 3.0);
    engine.set_source(view(&short)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while handle_ring.loop_frames() != 3 * 48_000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(handle_ring.loop_frames(), 3 * 48_000);
    assert!(
        engine.set_loop(1.0, 4.0).is_err(),
        "the band is checked against 3 s"
    );
    engine.set_loop(1.0, 2.0).unwrap();
    // The engine keeps writing, now into the new loop.
    let before = engine.stats().frontier_writes;
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.stats().frontier_writes < before + 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = engine.stats();
    assert!(stats.frontier_writes >= before + 3, "{stats:?}");
    assert_eq!(stats.panics, 0, "{stats:?}");
    let record = engine.record().unwrap();
    let last = record.trace.writes().last().copied().unwrap();
    assert!(
        last.ring_start + last.len <= 3 * 48_000 + 48_000,
        "{last:?}"
    );
    engine.stop().unwrap();
    player.stop();
    assert_eq!(handle_ring.counters().torn_reads, 0);
}

fn view(clip: &crate::audio_file::LoopAudio) -> AudioView<'_> {
    AudioView {
        samples: &clip.samples,
        channels: clip.channels,
        sample_rate: clip.sample_rate,
    }
}
