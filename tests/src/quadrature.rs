//! A quadrature test tone: a loop with a sine on the left channel and the matching cosine
//! on the right, so that every captured frame tells its level (the envelope √(L² + R²))
//! and its phase (atan2(L, R)) on its own. A dropout, an exact-zero frame, a skipped or
//! repeated sample or foreign audio then shows at the frame where it happens, whatever the
//! tone's phase there.
//!
//! Threading: plain functions.

use std::f32::consts::PI;
use std::path::Path;

use crate::Recording;

/// The tone: frequency and peak level of each channel, at a sample rate.
#[derive(Debug, Clone, Copy)]
pub struct Quadrature {
    /// Frequency, Hz.
    pub tone_hz: f32,
    /// Peak level of each channel (and the envelope of every frame).
    pub level: f32,
    /// Sample rate, Hz.
    pub rate: u32,
}

impl Quadrature {
    /// Write one second of the tone (a whole number of cycles when `tone_hz` is whole) to
    /// `path` as a 32-bit float stereo WAV.
    pub fn write_loop(&self, path: &Path) {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: self.rate,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut wav = hound::WavWriter::create(path, spec).unwrap();
        for i in 0..self.rate {
            let phase = std::f64::consts::TAU * f64::from(self.tone_hz) * f64::from(i)
                / f64::from(self.rate);
            wav.write_sample(self.level * phase.sin() as f32).unwrap();
            wav.write_sample(self.level * phase.cos() as f32).unwrap();
        }
        wav.finalize().unwrap();
    }

    /// The tone's phase step per frame, radians.
    pub fn phase_step(&self) -> f32 {
        2.0 * PI * self.tone_hz / self.rate as f32
    }

    /// The envelope of frame `i` of `rec`, relative to the tone's level.
    pub fn envelope(&self, rec: &Recording, i: usize) -> f32 {
        let [l, r] = rec.frame(i);
        l.hypot(r) / self.level
    }

    /// The phase step from frame `i - 1` to frame `i` of `rec`, radians in (-π, π].
    pub fn step_at(&self, rec: &Recording, i: usize) -> f32 {
        let ([pl, pr], [l, r]) = (rec.frame(i - 1), rec.frame(i));
        phase_difference(l.atan2(r), pl.atan2(pr))
    }
}

/// `a - b` wrapped into (-π, π].
pub fn phase_difference(a: f32, b: f32) -> f32 {
    let d = (a - b).rem_euclid(2.0 * PI);
    if d > PI { d - 2.0 * PI } else { d }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_differences_wrap_into_the_half_open_circle() {
        assert!((phase_difference(0.1, -0.1) - 0.2).abs() < 1e-6);
        assert!((phase_difference(-3.0, 3.0) - (2.0 * PI - 6.0)).abs() < 1e-5);
        assert!((phase_difference(PI, -PI)).abs() < 1e-6);
    }
}
