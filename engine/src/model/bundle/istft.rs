//! [`Istft`]: the inverse STFT of a bundle whose decoder outputs `stft [1,A,N,F,2]`
//! (`[decoder] output = "stft"`, see `docs/bundles.md`): Hann-windowed overlap-add of the
//! inverse real FFT of each frame, divided by the window-square sum, `center = true`: the
//! same numbers as `torch.istft(spec, n_fft, hop, window=torch.hann_window(n_fft),
//! center=True, length=N*hop)`. Frame `n` is centred at output sample `n * hop`.
//!
//! Everything (the realfft plan, the window, the inverse window-square sum, the overlap-add
//! buffer, the FFT scratch and the planar output) is allocated once by [`Istft::new`] for
//! one `(channels, frames)` shape; [`Istft::invert`] allocates nothing.
//!
//! Threading: an `Istft` is plain owned data (`Send`); it is made and used by the engine
//! thread only (inside the decoder's per-window run), never on the audio thread.

use std::sync::Arc;

use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner};

/// The periodic Hann window of length `n` (`torch.hann_window(n)`).
pub fn hann(n: usize) -> Vec<f32> {
    (0..n)
        .map(|k| {
            let x = std::f64::consts::TAU * k as f64 / n as f64;
            (0.5 - 0.5 * x.cos()) as f32
        })
        .collect()
}

/// Inverse STFT for one `(channels, frames)` shape (see the module doc).
pub struct Istft {
    n_fft: usize,
    hop: usize,
    channels: usize,
    frames: usize,
    ifft: Arc<dyn ComplexToReal<f32>>,
    window: Vec<f32>,
    /// `1 / sum_n w²(j + n_fft/2 - n*hop)` for each output sample `j` of a channel.
    inv_wsum: Vec<f32>,
    spectrum: Vec<Complex32>,
    frame: Vec<f32>,
    scratch: Vec<Complex32>,
    /// Overlap-add buffer of one channel, `(frames - 1) * hop + n_fft` samples.
    acc: Vec<f32>,
    /// Planar output, `channels * frames * hop` samples.
    out: Vec<f32>,
}

impl Istft {
    /// Bins per frame (`n_fft / 2 + 1`).
    pub fn bins(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// Plans the inverse for `channels` channels of `frames` frames. `n_fft` is even and at
    /// least `2 * hop` (the manifest checks it), so every output sample has a non-zero
    /// window-square sum.
    pub fn new(n_fft: usize, hop: usize, channels: usize, frames: usize) -> Self {
        assert!(
            hop > 0 && n_fft.is_multiple_of(2) && n_fft >= 2 * hop && frames > 0,
            "Istft::new: n_fft {n_fft}, hop {hop}, frames {frames}"
        );
        let ifft = RealFftPlanner::<f32>::new().plan_fft_inverse(n_fft);
        let window = hann(n_fft);
        let samples = frames * hop;
        let mut wsum = vec![0.0f64; (frames - 1) * hop + n_fft];
        for n in 0..frames {
            for (k, w) in window.iter().enumerate() {
                wsum[n * hop + k] += f64::from(*w) * f64::from(*w);
            }
        }
        let inv_wsum = wsum[n_fft / 2..n_fft / 2 + samples]
            .iter()
            .map(|s| (1.0 / s) as f32)
            .collect();
        Self {
            n_fft,
            hop,
            channels,
            frames,
            spectrum: ifft.make_input_vec(),
            frame: ifft.make_output_vec(),
            scratch: ifft.make_scratch_vec(),
            ifft,
            window,
            inv_wsum,
            acc: vec![0.0; (frames - 1) * hop + n_fft],
            out: vec![0.0; channels * samples],
        }
    }

    /// Inverts `stft` (`[channels, frames, bins, 2]` row-major, `(re, im)` last) into planar
    /// audio `[channels, frames * hop]`, returned. The imaginary parts of the DC and Nyquist
    /// bins are ignored (as every real inverse FFT, torch's included, does).
    pub fn invert(&mut self, stft: &[f32]) -> &[f32] {
        let (bins, n_fft, hop) = (self.bins(), self.n_fft, self.hop);
        assert_eq!(
            stft.len(),
            self.channels * self.frames * bins * 2,
            "Istft::invert: input length"
        );
        let samples = self.frames * hop;
        let scale = 1.0 / n_fft as f32;
        for ch in 0..self.channels {
            self.acc.fill(0.0);
            for n in 0..self.frames {
                let at = (ch * self.frames + n) * bins * 2;
                for (b, c) in self.spectrum.iter_mut().enumerate() {
                    *c = Complex32::new(stft[at + 2 * b], stft[at + 2 * b + 1]);
                }
                self.spectrum[0].im = 0.0;
                self.spectrum[bins - 1].im = 0.0;
                self.ifft
                    .process_with_scratch(&mut self.spectrum, &mut self.frame, &mut self.scratch)
                    .expect("buffers sized by the plan, DC and Nyquist real");
                let acc = &mut self.acc[n * hop..n * hop + n_fft];
                for ((a, x), w) in acc.iter_mut().zip(&self.frame).zip(&self.window) {
                    *a += x * scale * w;
                }
            }
            let out = &mut self.out[ch * samples..(ch + 1) * samples];
            let acc = &self.acc[n_fft / 2..n_fft / 2 + samples];
            for ((o, a), s) in out.iter_mut().zip(acc).zip(&self.inv_wsum) {
                *o = a * s;
            }
        }
        &self.out
    }
}

#[cfg(test)]
mod tests;
