//! Walk mode in simulated time: a 150 s source in 60 s chunks. The writes follow the
//! playhead from chunk to chunk (never outside the playhead's chunk or the prewarmed next
//! one, never across a chunk's end), fresh latents for a chunk are written before the
//! playhead crosses into it, and the output never goes silent where the source sounds.

use std::sync::Arc;

use super::WalkLayout;
use crate::audio_clip::AudioView;
use crate::model::builtin::BuiltinModel;
use crate::ring::PlayheadRing;
use crate::runner::clock::SimCosts;
use crate::runner::engine_config::EngineConfig;
use crate::runner::sim::SimHarness;
use crate::runner::trace::WriteKind;

const RATE: usize = 48_000;
const HOP: usize = 1920;

/// Per 50 ms window: whether any sample's magnitude exceeds 1e-3.
fn sounding(interleaved: &[f32]) -> Vec<bool> {
    interleaved
        .chunks(RATE / 20 * 2)
        .map(|w| w.iter().any(|v| v.abs() > 1e-3))
        .collect()
}

#[test]
fn a_150_s_source_walks_through_its_60_s_chunks() {
    let seconds = 150.0;
    let model = Arc::new(BuiltinModel::new());
    let source = crate::audio_file::test_signal(RATE as u32, 2, seconds);
    let ring = PlayheadRing::from_interleaved(
        source.samples.clone(),
        2,
        RATE as u32,
        PlayheadRing::guard_for_period(256),
    )
    .unwrap();
    let loop_frames = ring.handle().loop_frames();
    let config = EngineConfig {
        idle_after_s: 0.0,
        ..EngineConfig::default()
    };
    let mut sim = SimHarness::new(model, ring, 256, config, SimCosts::default()).unwrap();
    sim.set_source(AudioView {
        samples: &source.samples,
        channels: 2,
        sample_rate: RATE as u32,
    })
    .unwrap();
    sim.clock().record_output();
    // Past both boundaries and the wrap back to chunk 0.
    let end_s = 152.0;
    sim.run_until(end_s);

    let walk = WalkLayout::new(loop_frames, HOP, 3750, 1500);
    assert_eq!(walk.count(), 3);
    assert_eq!(sim.stats().panics, 0);
    // 0 -> 1 -> 2 -> 0.
    assert_eq!(sim.stats().walk_switches, 3, "{:?}", sim.stats());
    assert_eq!(sim.stats().walk_chunk, 0);

    let writes: Vec<_> = sim.record().trace.writes().copied().collect();
    assert!(writes.len() > 1000, "{}", writes.len());
    for w in &writes {
        // The clock and the playhead start together at 0 and no band is armed.
        let playhead = (w.issued_frame % loop_frames as u64) as usize;
        let at = walk.chunk_of(playhead);
        let chunk = walk.chunk_of(w.ring_start);
        assert!(
            chunk == at || chunk == (at + 1) % walk.count(),
            "a write at {} (chunk {chunk}) with the playhead at {playhead} (chunk {at})",
            w.ring_start
        );
        let (_, end) = walk.ring_range(chunk);
        assert!(
            w.len > 0 && w.ring_start + w.len <= end,
            "{w:?} crosses {end}"
        );
    }
    // Prewarm: fresh latents of each next chunk land before the playhead crosses into it.
    for (chunk, boundary) in [(1, 60 * RATE), (2, 120 * RATE), (0, loop_frames)] {
        let first = writes
            .iter()
            .filter(|w| w.kind == WriteKind::Frontier && walk.chunk_of(w.ring_start) == chunk)
            .find(|w| w.issued_frame > (boundary - 10 * RATE) as u64)
            .unwrap_or_else(|| panic!("no fresh write into chunk {chunk}"));
        assert!(
            first.issued_frame < boundary as u64,
            "chunk {chunk}: first fresh write at frame {} after the boundary {boundary}",
            first.issued_frame
        );
        assert!(first.ring_start >= boundary % loop_frames);
    }
    // Fresh writes followed the playhead into every chunk, at the lead ahead of it.
    for chunk in 0..walk.count() {
        let (start, end) = walk.ring_range(chunk);
        let fresh = writes
            .iter()
            .filter(|w| w.kind == WriteKind::Frontier && (start..end).contains(&w.ring_start))
            .count();
        assert!(fresh > 100, "chunk {chunk}: {fresh} fresh writes");
    }

    // Never silent where the source sounds.
    let source_sounds = sounding(&source.samples);
    let played = sim.clock().played().to_vec();
    let played_sounds = sounding(&played);
    let windows_per_loop = source_sounds.len();
    let mut checked = 0;
    for (i, &heard) in played_sounds.iter().enumerate() {
        if source_sounds[i % windows_per_loop] {
            checked += 1;
            assert!(heard, "silent 50 ms window at {:.2} s", i as f64 / 20.0);
        }
    }
    assert!(checked as f64 > 0.9 * end_s * 20.0, "{checked}");
}
