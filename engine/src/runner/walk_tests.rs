//! Walk mode in simulated time: a 150 s source in 60 s chunks. The writes follow the
//! playhead from chunk to chunk (never outside the playhead's chunk or the prewarmed next
//! one, never across a chunk's end), fresh latents for a chunk are written before the
//! playhead crosses into it, and the output never goes silent where the source sounds.
//! Adjacent chunks decoded with their neighbours join without a seam; a loop band across a
//! boundary is one window (regenerated on both sides, no switches, nothing dropped), and a
//! band too long for that keeps its wrap segments.

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

/// The built-in engine, simulated, on a ring looping a `seconds`-long test signal that is
/// also its source (so it walks when longer than a chunk), never idling, period 256.
fn walking_sim(seconds: f64) -> SimHarness<BuiltinModel> {
    let model = Arc::new(BuiltinModel::new());
    let source = crate::audio_file::test_signal(RATE as u32, 2, seconds);
    let ring = PlayheadRing::from_interleaved(
        source.samples.clone(),
        2,
        RATE as u32,
        PlayheadRing::guard_for_period(256),
    )
    .unwrap();
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
    sim
}

#[test]
fn a_150_s_source_walks_through_its_60_s_chunks() {
    let seconds = 150.0;
    let mut sim = walking_sim(seconds);
    let loop_frames = (seconds * RATE as f64) as usize;
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
        // ... yet the pipeline stayed on the playhead's chunk until shortly before: the
        // prewarm follows the (fast) pipeline, not the 3 s ceiling, so a knob turned up to
        // then still reaches the stretch the playhead plays next.
        let previous = (chunk + walk.count() - 1) % walk.count();
        let last = writes
            .iter()
            .filter(|w| w.kind == WriteKind::Frontier && walk.chunk_of(w.ring_start) == previous)
            .filter(|w| w.issued_frame < boundary as u64)
            .map(|w| w.issued_frame)
            .max()
            .unwrap();
        assert!(
            last > (boundary - 2 * RATE) as u64,
            "chunk {previous}: the last fresh write {:.2} s before the boundary",
            (boundary as u64 - last) as f64 / RATE as f64
        );
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
    let source = crate::audio_file::test_signal(RATE as u32, 2, seconds);
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

/// Per channel, the largest sample-to-sample step at `at` (a frame index) of stereo
/// interleaved audio, and the 99.9th percentile of the steps more than a latent frame away
/// from it (the signal's own steps).
fn seam_step(audio: &[f32], at: usize) -> (f32, f32) {
    let frames = audio.len() / 2;
    let step = |i: usize, c: usize| (audio[i * 2 + c] - audio[(i - 1) * 2 + c]).abs();
    let mut others: Vec<f32> = (1..frames)
        .filter(|&i| i.abs_diff(at) > HOP)
        .flat_map(|i| [step(i, 0), step(i, 1)])
        .collect();
    others.sort_by(f32::total_cmp);
    let p999 = others[others.len() * 999 / 1000];
    (step(at, 0).max(step(at, 1)), p999)
}

/// A 12 s loop in 5.2 s chunks (chunks 0..130 and 130..300 latent frames): the prompt's
/// music (melody, bass, drums, envelope), the last frames of chunk 0 and the first of
/// chunk 1 decoded as two windows, as the engine writes them on either side of the
/// boundary, joined.
fn decode_across_the_boundary(with_place: bool) -> (Vec<f32>, usize) {
    use crate::model::builtin::{CpuLatents, FRAME_RATE, vocab};
    use crate::model::{ChunkPlace, Model};

    let model = BuiltinModel::new();
    let total = 300;
    let mut data = vec![0.0f32; total * 64];
    let prompt = vocab::parse("energetic bright lead pluck bass drums wide").0;
    vocab::render_target(&prompt, 7, total, FRAME_RATE, &mut data);
    let whole = CpuLatents::from_host(data);
    let walk = WalkLayout::new(total * HOP, HOP, total, 130);
    assert_eq!(walk.count(), 2);
    let chunks: Vec<CpuLatents> = (0..2)
        .map(|k| {
            let (start, len) = walk.latent_range(k);
            model.slice_latents(&whole, start, len)
        })
        .collect();
    let frames = 4;
    let mut joined = vec![0.0f32; 2 * frames * HOP * 2];
    let (left, right) = joined.split_at_mut(frames * HOP * 2);
    for (k, start, out) in [(0, 130 - frames, left), (1, 0, right)] {
        let place = ChunkPlace {
            before: &chunks[1 - k],
            after: &chunks[1 - k],
            loop_offset: walk.latent_range(k).0,
            loop_frames: total,
        };
        let place = with_place.then_some(&place);
        model
            .decode_chunk_window(&chunks[k], place, &[1.0; 8], false, start, frames, out)
            .unwrap();
    }
    (joined, frames * HOP)
}

#[test]
fn adjacent_chunks_join_without_a_seam() {
    let (joined, boundary) = decode_across_the_boundary(true);
    let (seam, usual) = seam_step(&joined, boundary);
    eprintln!("with neighbours: step at the boundary {seam:.4}, 99.9th percentile {usual:.4}");
    assert!(usual > 1e-3, "the windows are near silent: {usual}");
    assert!(
        seam <= usual,
        "a seam: step {seam} at the chunk boundary, 99.9 % of steps are under {usual}"
    );
    // The check finds the seam of chunks decoded alone (each wrapping onto its own start,
    // phases from chunk-relative frames): what walk mode did before.
    let (alone, boundary) = decode_across_the_boundary(false);
    let (seam, usual) = seam_step(&alone, boundary);
    eprintln!("alone: step at the boundary {seam:.4}, 99.9th percentile {usual:.4}");
    assert!(
        seam > usual,
        "no seam found without neighbours: {seam} <= {usual}"
    );
}

#[test]
fn a_band_across_a_chunk_boundary_plays_and_is_regenerated_as_one_window() {
    use crate::runner::sim::SimAction;

    let mut sim = walking_sim(150.0);
    let window = EngineConfig::default().keep_latent_frames * HOP;
    // 58.5 .. 61.5 s across the 60 s boundary; armed at once, the reader jumps to A.
    let (a, b) = (58 * RATE + RATE / 2, 61 * RATE + RATE / 2);
    sim.schedule(0.0, SimAction::Loop(Some((58.5, 61.5))));
    sim.clock().record_output();
    let end_s = 12.0; // four passes of the band
    sim.run_until(end_s);

    let stats = sim.stats().clone();
    assert_eq!(stats.panics, 0);
    // The band is one window (index 3, after the three chunks): the pipeline never
    // switches while the band plays.
    assert_eq!(stats.walk_chunk, 3, "{stats:?}");
    assert_eq!(stats.walk_switches, 0, "{stats:?}");

    let writes: Vec<_> = sim.record().trace.writes().copied().collect();
    for w in &writes {
        assert!(
            w.ring_start >= a && w.ring_start + w.len <= b,
            "a write outside the band: {w:?}"
        );
    }
    // Every pass regenerates both sides of the boundary with fresh latents.
    let pass_frames = (b - a) as u64;
    for pass in 0..3u64 {
        let in_pass: Vec<_> = writes
            .iter()
            .filter(|w| w.kind == WriteKind::Frontier && w.issued_frame / pass_frames == pass)
            .collect();
        let before = in_pass.iter().filter(|w| w.ring_start < 60 * RATE).count();
        let after = in_pass.iter().filter(|w| w.ring_start >= 60 * RATE).count();
        assert!(
            before > 5 && after > 5,
            "pass {pass}: {before} fresh writes before the boundary, {after} after"
        );
    }
    // Nothing dropped: every window clamped at B goes on at A with the rest of it.
    let mut wraps = 0;
    for (i, w) in writes.iter().enumerate() {
        let clamped = w.kind != WriteKind::BandWrap
            && w.kind != WriteKind::Repatch
            && w.kind != WriteKind::KnobRepatch
            && w.ring_start + w.len == b
            && w.len < window;
        if clamped {
            let next = writes
                .get(i + 1)
                .unwrap_or_else(|| panic!("{w:?}: no wrap"));
            assert_eq!(next.kind, WriteKind::BandWrap, "{w:?} then {next:?}");
            assert_eq!((next.ring_start, next.len), (a, window - w.len), "{next:?}");
            wraps += 1;
        }
    }
    assert!(wraps >= 3, "{wraps} band wraps in four passes");

    // The band sounds throughout.
    let played = sim.clock().played().to_vec();
    let silent = sounding(&played).iter().filter(|s| !**s).count();
    assert_eq!(silent, 0, "{silent} silent 50 ms windows");
}

#[test]
fn a_band_longer_than_a_chunk_walks_and_keeps_its_wrap_segments() {
    use crate::runner::sim::SimAction;

    let mut sim = walking_sim(150.0);
    let window = EngineConfig::default().keep_latent_frames * HOP;
    // 0 .. 95 s: across the 60 s boundary and longer than the longest chunk (90 s), so
    // the chunks walk through it; its wrap runs from chunk 1 (B) into chunk 0 (A).
    let b = 95 * RATE;
    sim.schedule(0.0, SimAction::Loop(Some((0.0, 95.0))));
    sim.run_until(96.5);

    let stats = sim.stats().clone();
    assert_eq!(stats.panics, 0);
    // 0 -> 1 at the boundary, 1 -> 0 before the wrap.
    assert_eq!((stats.walk_switches, stats.walk_chunk), (2, 0), "{stats:?}");
    let writes: Vec<_> = sim.record().trace.writes().copied().collect();
    let mut wraps = 0;
    for (i, w) in writes.iter().enumerate() {
        if w.kind != WriteKind::BandWrap
            && w.kind != WriteKind::Repatch
            && w.ring_start + w.len == b
            && w.len < window
        {
            let next = writes
                .get(i + 1)
                .unwrap_or_else(|| panic!("{w:?}: no wrap"));
            assert_eq!(next.kind, WriteKind::BandWrap, "{w:?} then {next:?}");
            assert_eq!((next.ring_start, next.len), (0, window - w.len), "{next:?}");
            wraps += 1;
        }
    }
    assert!(wraps >= 1, "no window wrapped at B");
}
