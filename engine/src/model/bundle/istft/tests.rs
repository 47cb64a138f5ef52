//! Istft tests: perfect reconstruction of a forward STFT written here with realfft (the
//! torch.stft convention, reflect padding, frames 0..N-1), and parity with torch.istft
//! vectors made once by `make_fixtures.py` beside this file.

use super::*;
use rand::{RngExt, SeedableRng};

/// `torch.stft(x, n_fft, hop, hann, center=True, pad_mode="reflect", onesided=True)` of each
/// channel, frames 0..N-1 (`N = len / hop`), laid out `[A, N, F, 2]`.
fn stft(x: &[Vec<f32>], n_fft: usize, hop: usize) -> Vec<f32> {
    let fft = RealFftPlanner::<f32>::new().plan_fft_forward(n_fft);
    let w = hann(n_fft);
    let half = n_fft / 2;
    let mut out = Vec::new();
    for ch in x {
        let len = ch.len() as isize;
        let reflect = |i: isize| -> f32 {
            let i = if i < 0 { -i } else { i };
            let i = if i >= len { 2 * (len - 1) - i } else { i };
            ch[i as usize]
        };
        for n in 0..ch.len() / hop {
            let mut frame: Vec<f32> = (0..n_fft)
                .map(|k| reflect((n * hop + k) as isize - half as isize) * w[k])
                .collect();
            let mut spec = fft.make_output_vec();
            fft.process(&mut frame, &mut spec).unwrap();
            for c in spec {
                out.extend([c.re, c.im]);
            }
        }
    }
    out
}

fn reconstructs(n_fft: usize, hop: usize, channels: usize, frames: usize) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(n_fft as u64);
    let x: Vec<Vec<f32>> = (0..channels)
        .map(|_| {
            (0..frames * hop)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect()
        })
        .collect();
    let spec = stft(&x, n_fft, hop);
    let mut istft = Istft::new(n_fft, hop, channels, frames);
    let y = istft.invert(&spec);
    // Past the last frame's centre only that frame's tail covers a sample, whose window
    // square sum falls towards 0 and magnifies rounding: "the edge", which a windowed decode
    // crops away with its context frames.
    let edge = frames * hop - n_fft / 2;
    let (mut inner, mut tail) = (0.0f32, 0.0f32);
    for (ch, xs) in x.iter().enumerate() {
        for (i, v) in xs.iter().enumerate() {
            let e = (y[ch * frames * hop + i] - v).abs();
            if i < edge {
                inner = inner.max(e);
            } else {
                tail = tail.max(e);
            }
        }
    }
    assert!(inner < 1e-5, "n_fft {n_fft} hop {hop}: max error {inner}");
    assert!(
        tail < 1e-3,
        "n_fft {n_fft} hop {hop}: max error at the end {tail}"
    );
}

#[test]
fn inverts_a_forward_stft_to_the_same_samples() {
    // The lead's model: 48 kHz, 25 fps, n_fft 1920, hop 480 (4 frames per latent frame).
    reconstructs(1920, 480, 2, 4 * 25);
    reconstructs(16, 4, 1, 20);
    // hop = n_fft / 2, the largest the manifest accepts.
    reconstructs(64, 32, 2, 9);
}

#[test]
fn matches_torch_istft() {
    for (bytes, n_fft, hop, a, n) in [
        (&include_bytes!("torch_16_4_2x6.f32")[..], 16, 4, 2, 6),
        (
            &include_bytes!("torch_1920_480_2x4.f32")[..],
            1920,
            480,
            2,
            4,
        ),
    ] {
        let data: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let spec_len = a * n * (n_fft / 2 + 1) * 2;
        assert_eq!(data.len(), spec_len + a * n * hop);
        let (spec, want) = data.split_at(spec_len);
        let mut istft = Istft::new(n_fft, hop, a, n);
        let got = istft.invert(spec);
        let worst = got
            .iter()
            .zip(want)
            .map(|(g, w)| (g - w).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "n_fft {n_fft} hop {hop}: max error {worst}");
        assert!(want.iter().any(|v| v.abs() > 0.1), "fixture is not silent");
    }
}
