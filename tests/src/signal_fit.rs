//! Measuring a tone in captured audio: the best-fitting sine at a known frequency.
//!
//! Threading: pure functions.

use std::f64::consts::TAU;

/// Amplitude of the best-fitting sine at `freq` Hz in `x` (sampled at `rate` Hz) and the
/// RMS of what is left once it is subtracted.
pub fn fit_sine(x: &[f32], rate: f64, freq: f64) -> (f64, f64) {
    let w = TAU * freq / rate;
    let (mut s, mut c) = (0.0, 0.0);
    for (i, &v) in x.iter().enumerate() {
        s += f64::from(v) * (w * i as f64).sin();
        c += f64::from(v) * (w * i as f64).cos();
    }
    let (a, b) = (2.0 * s / x.len() as f64, 2.0 * c / x.len() as f64);
    let residual = x
        .iter()
        .enumerate()
        .map(|(i, &v)| (f64::from(v) - a * (w * i as f64).sin() - b * (w * i as f64).cos()).powi(2))
        .sum::<f64>()
        / x.len() as f64;
    (a.hypot(b), residual.sqrt())
}
