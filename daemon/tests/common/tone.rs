//! A tone's level in a recording: the Goertzel power at one frequency, against its
//! neighbours (the live-input tests on JACK and PipeWire).

use std::f32::consts::TAU;

/// Power of `samples` (mono, at `rate`) at `hz` (Goertzel), normalised to the window.
pub fn power_at(samples: &[f32], hz: f32, rate: u32) -> f32 {
    let w = TAU * hz / rate as f32;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    for &x in samples {
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let n = samples.len() as f32;
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (n * n)
}

/// The power at `hz` and the loudest of its neighbours' (±150 Hz to ±400 Hz).
pub fn tone_over_neighbours(samples: &[f32], hz: f32, rate: u32) -> (f32, f32) {
    let tone = power_at(samples, hz, rate);
    let neighbours = [-400.0, -300.0, -150.0, 150.0, 300.0, 400.0]
        .iter()
        .map(|d| power_at(samples, hz + d, rate))
        .fold(0.0f32, f32::max);
    (tone, neighbours)
}
