//! A test signal whose every stereo frame names its own ring index exactly, and a checker
//! that decodes captured audio back to indices and verifies they follow the ring reader's
//! path: `i -> i + 1`, the loop end to 0, and, around a loop band `[A, B)`, `B - 1 -> A`
//! while armed plus at most one jump to `A` (at a period boundary) when it was armed.
//!
//! Encoding (exact in `f32`, so any change to a sample is caught):
//! left = `i / 2^24`, right = `-(2 i + 1) / 2^25`. Silence (0.0) never codes the right channel.
//!
//! Threading: plain functions on slices; the capture itself happens elsewhere.

/// Longest loop the encoding can index.
pub const MAX_INDEX_FRAMES: usize = 1 << 23;

const LEFT_SCALE: f32 = (1u32 << 24) as f32;
const RIGHT_SCALE: f32 = (1u32 << 25) as f32;

/// The two samples that name frame `index`.
pub fn encode_frame(index: usize) -> [f32; 2] {
    assert!(
        index < MAX_INDEX_FRAMES,
        "frame {index} is beyond the encoding"
    );
    [
        index as f32 / LEFT_SCALE,
        -((2 * index + 1) as f32) / RIGHT_SCALE,
    ]
}

/// The frame index two samples name, or `None` if they are not an exact code.
pub fn decode_frame(left: f32, right: f32) -> Option<usize> {
    let l = left * LEFT_SCALE;
    let r = -right * RIGHT_SCALE;
    if !(0.0..MAX_INDEX_FRAMES as f32).contains(&l) || l.fract() != 0.0 || r.fract() != 0.0 {
        return None;
    }
    let index = l as usize;
    (r == (2 * index + 1) as f32).then_some(index)
}

/// `frames` interleaved stereo frames, frame `i` encoding `i`.
pub fn index_signal(frames: usize) -> Vec<f32> {
    (0..frames).flat_map(encode_frame).collect()
}

/// Where the checker is in the band's life: before it, inside it, after it was cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BandPhase {
    Before,
    Inside,
    After,
}

/// What [`check_path`] saw in a valid capture.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathReport {
    /// Frames before the first with both channels non-zero (the capture ran before both
    /// connections were made).
    pub leading_silence: usize,
    /// Coded frames checked.
    pub frames: usize,
    /// Loop-end wraps (`L - 1 -> 0`) before the band was seen.
    pub wraps_before_band: usize,
    /// The band was entered by a jump to `A` (armed while the playhead was outside it).
    pub entered_by_jump: bool,
    /// Band wraps (`B - 1 -> A`).
    pub band_wraps: usize,
    /// The playhead went past `B` after the band was cleared.
    pub band_left: bool,
    /// Loop-end wraps after the band was left.
    pub wraps_after_band: usize,
}

/// Check interleaved stereo `captured` (whole periods of `period` frames from the first
/// sample on) against the reader's path through a loop of `loop_frames`, with `band` the
/// one band armed (then cleared) during the capture, if any. Returns what it saw, or the
/// first illegal frame or transition.
pub fn check_path(
    captured: &[f32],
    loop_frames: usize,
    period: usize,
    band: Option<(usize, usize)>,
) -> Result<PathReport, String> {
    let frames: Vec<[f32; 2]> = captured.chunks_exact(2).map(|f| [f[0], f[1]]).collect();
    // Before both connections are made a channel is silent: 0.0 never codes the right
    // channel, and codes the left one only at frame 0, which is safe to skip.
    let first = frames
        .iter()
        .position(|f| f[0] != 0.0 && f[1] != 0.0)
        .ok_or("the capture never carries both channels")?;
    let mut report = PathReport {
        leading_silence: first,
        ..PathReport::default()
    };
    let mut phase = BandPhase::Before;
    let mut prev: Option<usize> = None;
    for (k, f) in frames.iter().enumerate().skip(first) {
        let next = decode_frame(f[0], f[1])
            .filter(|&i| i < loop_frames)
            .ok_or_else(|| format!("captured frame {k} ({f:?}) is no ring frame"))?;
        report.frames += 1;
        let Some(p) = prev.replace(next) else {
            continue;
        };
        let step = next == p + 1 && next < loop_frames;
        let loop_wrap = p + 1 == loop_frames && next == 0;
        let at_boundary = k % period == 0;
        let illegal = || {
            format!(
                "illegal transition {p} -> {next} at captured frame {k} ({phase:?}, band {band:?})"
            )
        };
        match (phase, band) {
            (BandPhase::Before, Some((a, b))) if !step && !loop_wrap && next == a => {
                if p + 1 == b {
                    report.band_wraps += 1;
                } else if at_boundary {
                    report.entered_by_jump = true;
                } else {
                    return Err(illegal());
                }
                phase = BandPhase::Inside;
            }
            (BandPhase::Before, _) if step || loop_wrap => {
                report.wraps_before_band += loop_wrap as usize;
            }
            (BandPhase::Inside, Some((a, b))) => {
                if p + 1 == b && next == a {
                    report.band_wraps += 1;
                } else if (step && next == b) || (b == loop_frames && loop_wrap) {
                    report.band_left = true;
                    report.wraps_after_band += loop_wrap as usize;
                    phase = BandPhase::After;
                } else if !(step && next < b) {
                    return Err(illegal());
                }
            }
            (BandPhase::After, _) if step || loop_wrap => {
                report.wraps_after_band += loop_wrap as usize;
            }
            _ => return Err(illegal()),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(path: &[usize]) -> Vec<f32> {
        path.iter().flat_map(|&i| encode_frame(i)).collect()
    }

    #[test]
    fn every_index_round_trips_and_silence_is_no_frame() {
        for i in [0, 1, 2, 12_345, MAX_INDEX_FRAMES - 1] {
            let [l, r] = encode_frame(i);
            assert_eq!(decode_frame(l, r), Some(i));
            assert_eq!(decode_frame(l + f32::EPSILON, r), None);
        }
        assert_eq!(decode_frame(0.0, 0.0), None);
    }

    #[test]
    fn plain_loop_wraps_are_counted_and_skips_are_caught() {
        let path: Vec<usize> = (5..10).chain(0..10).chain(0..3).collect();
        let mut with_silence = vec![0.0, 0.0, 0.25, 0.0];
        with_silence.extend(capture(&path));
        let report = check_path(&with_silence, 10, 2, None).unwrap();
        assert_eq!(report.leading_silence, 2);
        assert_eq!(report.wraps_before_band, 2);
        assert_eq!(report.frames, path.len());
        assert!(check_path(&capture(&[1, 2, 4]), 10, 2, None).is_err());
        assert!(check_path(&capture(&[1, 2, 2]), 10, 2, None).is_err());
        assert!(check_path(&capture(&[8, 9, 0]), 11, 2, None).is_err());
    }

    #[test]
    fn band_life_is_followed() {
        // Linear 0..4, jump to A=6 at frame 4 (a period boundary for period 2), two band
        // wraps, cleared: on past B=8 to the loop end and round.
        let path = [0, 1, 2, 3, 6, 7, 6, 7, 6, 7, 8, 9, 0, 1];
        let report = check_path(&capture(&path), 10, 2, Some((6, 8))).unwrap();
        assert!(report.entered_by_jump && report.band_left);
        assert_eq!((report.band_wraps, report.wraps_after_band), (2, 1));
        // A jump to A off a period boundary, a jump elsewhere, and a re-arm are illegal.
        assert!(check_path(&capture(&[0, 1, 2, 6, 7]), 10, 2, Some((6, 8))).is_err());
        assert!(check_path(&capture(&[0, 1, 5, 6]), 10, 2, Some((6, 8))).is_err());
        let rearmed = [6, 7, 6, 7, 8, 9, 0, 1, 6];
        assert!(check_path(&capture(&rearmed), 10, 1, Some((6, 8))).is_err());
    }
}
