//! The built-in model's encoder: short-time spectral analysis of audio into latent frames
//! (layout in [`super::layout`]), one frame per `1 / frame_rate` s, each from a Hann-windowed
//! FFT two frames long centred on the frame.
//!
//! Per frame: the strongest peak 35-180 Hz is the bass, the strongest 180-1500 Hz the melody
//! (each only if it stands 9 dB over its band); their partials 2-7 are read at multiples of the
//! peak; the envelope is the mean power of each band with the voices' partials taken out;
//! onsets are the rise in band-group level of that residual against the previous frame, kept
//! only in frames where the rise is broadband (a hit, not a new note); width is side / mid.
//!
//! Threading: pure functions; each call plans its own FFT.

use realfft::RealFftPlanner;

use super::layout::*;
use crate::audio_clip::AudioView;

/// Spectra of one frame: power per bin of mid and side, scaled so white noise of variance
/// `s2` reads `s2` in every bin.
struct FrameSpectrum {
    mid: Vec<f32>,
    side: Vec<f32>,
    /// Peak amplitude factor: a sine of amplitude A has `|X| = A * amp_scale` at its bin.
    amp_scale: f32,
    bin_hz: f32,
}

/// Total power per band (dB, voices included) per frame: a measurement for tests and
/// diagnostics, independent of how the latents split the spectrum.
pub fn band_levels_db(audio: AudioView<'_>, frame_rate: u32) -> Vec<[f32; BANDS]> {
    let (_, lat) = analyse_with(audio, frame_rate, true);
    lat.chunks_exact(LATENT_CHANNELS)
        .map(|f| std::array::from_fn(|b| latent_to_db(f[ENVELOPE + b])))
        .collect()
}

/// Analyses `audio` into `frames` latent frames (frame-major, [`LATENT_CHANNELS`] each).
pub fn analyse(audio: AudioView<'_>, frame_rate: u32) -> (usize, Vec<f32>) {
    analyse_with(audio, frame_rate, false)
}

/// Hann-windowed power spectra two frames long, centred on each latent frame, wrapping at the
/// loop end (the loop wraps, so analysis windows wrap too).
pub(super) struct Spectrogram {
    hop: usize,
    window: Vec<f32>,
    win_sq: f32,
    /// A sine of amplitude A has `|X| = A * amp_scale` at its bin.
    pub(super) amp_scale: f32,
    pub(super) bin_hz: f32,
    fft: std::sync::Arc<dyn realfft::RealToComplex<f32>>,
    input: Vec<f32>,
    spectrum: Vec<realfft::num_complex::Complex32>,
    scratch: Vec<realfft::num_complex::Complex32>,
}

impl Spectrogram {
    pub(super) fn new(sample_rate: u32, frame_rate: u32) -> Self {
        let hop = (sample_rate / frame_rate) as usize;
        let n = 2 * hop;
        let window: Vec<f32> = (0..n)
            .map(|i| 0.5 - 0.5 * (std::f32::consts::TAU * i as f32 / n as f32).cos())
            .collect();
        let win_sum: f32 = window.iter().sum();
        let win_sq: f32 = window.iter().map(|w| w * w).sum();
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(n);
        Self {
            hop,
            amp_scale: win_sum / 2.0 / win_sq.sqrt(),
            bin_hz: sample_rate as f32 / n as f32,
            window,
            win_sq,
            input: fft.make_input_vec(),
            spectrum: fft.make_output_vec(),
            scratch: fft.make_scratch_vec(),
            fft,
        }
    }

    /// Samples per latent frame.
    pub(super) fn hop(&self) -> usize {
        self.hop
    }

    /// Power per bin of frame `f` of `signal` into `out`, scaled so white noise of variance
    /// `s2` reads `s2` in every bin.
    pub(super) fn power(&mut self, signal: &[f32], f: usize, out: &mut Vec<f32>) {
        let centre = f * self.hop + self.hop / 2;
        let len = signal.len();
        for (i, (x, w)) in self.input.iter_mut().zip(&self.window).enumerate() {
            let idx = (centre + i + len * 2 - self.hop) % len;
            *x = signal[idx] * w;
        }
        self.fft
            .process_with_scratch(&mut self.input, &mut self.spectrum, &mut self.scratch)
            .expect("fft sizes");
        out.clear();
        out.extend(self.spectrum.iter().map(|c| c.norm_sqr() / self.win_sq));
    }

    /// Mean power per band (all bins, voices included) of every frame of mono `signal`.
    pub(super) fn band_means(&mut self, signal: &[f32], frames: usize) -> Vec<[f64; BANDS]> {
        let mut power = Vec::new();
        (0..frames)
            .map(|f| {
                self.power(signal, f, &mut power);
                let (mut sum, mut count) = ([0.0f64; BANDS], [0usize; BANDS]);
                for (k, &p) in power.iter().enumerate() {
                    if let Some(b) = band_of(k as f32 * self.bin_hz) {
                        sum[b] += f64::from(p);
                        count[b] += 1;
                    }
                }
                std::array::from_fn(|b| sum[b] / count[b].max(1) as f64)
            })
            .collect()
    }
}

fn analyse_with(audio: AudioView<'_>, frame_rate: u32, total_bands: bool) -> (usize, Vec<f32>) {
    let mut spectrogram = Spectrogram::new(audio.sample_rate, frame_rate);
    let hop = spectrogram.hop();
    let mono = audio.mono();
    let side: Vec<f32> = if audio.channels >= 2 {
        audio
            .samples
            .chunks_exact(audio.channels)
            .map(|f| 0.5 * (f[0] - f[1]))
            .collect()
    } else {
        vec![0.0; mono.len()]
    };
    let frames = (mono.len() as f64 / hop as f64).round().max(1.0) as usize;
    let mut out = vec![0.0f32; frames * LATENT_CHANNELS];
    let mut prev_group_db = [f32::NEG_INFINITY; GROUPS];
    let mut spec = FrameSpectrum {
        mid: Vec::new(),
        side: Vec::new(),
        amp_scale: spectrogram.amp_scale,
        bin_hz: spectrogram.bin_hz,
    };
    for f in 0..frames {
        spectrogram.power(&mono, f, &mut spec.mid);
        spectrogram.power(&side, f, &mut spec.side);
        let frame = &mut out[f * LATENT_CHANNELS..(f + 1) * LATENT_CHANNELS];
        analyse_frame(&spec, frame, &mut prev_group_db, f == 0, total_bands);
    }
    hold_silent_pitches(&mut out, frames);
    (frames, out)
}

/// A silent voice frame keeps the pitch of the last sounding one (wrapping round the loop), so
/// the decoder's level interpolation into and out of it stays on the note's pitch.
fn hold_silent_pitches(out: &mut [f32], frames: usize) {
    for first in [MELODY, BASS] {
        let sounding =
            |f: usize, out: &[f32]| latent_to_db(out[f * LATENT_CHANNELS + first + 1]) > -80.0;
        let Some(last) = (0..frames).rev().find(|&f| sounding(f, out)) else {
            continue;
        };
        let mut pitch = out[last * LATENT_CHANNELS + first];
        for f in 0..frames {
            if sounding(f, out) {
                pitch = out[f * LATENT_CHANNELS + first];
            } else {
                out[f * LATENT_CHANNELS + first] = pitch;
            }
        }
    }
}

fn peak_in(spec: &FrameSpectrum, lo_hz: f32, hi_hz: f32) -> Option<(f32, usize)> {
    let lo = (lo_hz / spec.bin_hz).ceil() as usize;
    let hi = ((hi_hz / spec.bin_hz) as usize).min(spec.mid.len() - 2);
    let (k, &p) = spec.mid[lo..=hi]
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))?;
    let k = k + lo;
    let band = &spec.mid[k.saturating_sub(12)..(k + 13).min(spec.mid.len())];
    let mean = band.iter().sum::<f32>() / band.len() as f32;
    if p < 8.0 * mean || p <= 1e-12 {
        return None;
    }
    // Parabolic interpolation on log power for the frequency.
    let (a, b, c) = (
        spec.mid[k - 1].max(1e-20).ln(),
        p.ln(),
        spec.mid[k + 1].max(1e-20).ln(),
    );
    let delta = 0.5 * (a - c) / (a - 2.0 * b + c).min(-1e-9);
    Some(((k as f32 + delta.clamp(-0.5, 0.5)) * spec.bin_hz, k))
}

/// The amplitude of the sinusoid nearest `hz`: the strongest of the three nearest bins, its
/// level interpolated (parabola through the log power of it and its neighbours) to undo the
/// window's scalloping loss between bins.
fn amplitude_near(spec: &FrameSpectrum, hz: f32) -> f32 {
    let k = (hz / spec.bin_hz).round() as usize;
    if k + 2 >= spec.mid.len() || k < 2 {
        return 0.0;
    }
    let m = (k - 1..=k + 1)
        .max_by(|&a, &b| spec.mid[a].total_cmp(&spec.mid[b]))
        .unwrap_or(k);
    let (a, b, c) = (
        spec.mid[m - 1].max(1e-20).ln(),
        spec.mid[m].max(1e-20).ln(),
        spec.mid[m + 1].max(1e-20).ln(),
    );
    let curvature = (a - 2.0 * b + c).min(-1e-9);
    let delta = (0.5 * (a - c) / curvature).clamp(-0.5, 0.5);
    let peak = b - 0.25 * (a - c) * delta;
    (0.5 * peak).exp() / spec.amp_scale
}

fn voice(
    spec: &FrameSpectrum,
    frame: &mut [f32],
    first: usize,
    range: (f32, f32),
    reference: f32,
    taken: &mut [bool],
) {
    let Some((f0, _)) = peak_in(spec, range.0, range.1) else {
        frame[first] = 0.0;
        frame[first + 1] = db_to_latent(-90.0);
        for k in 2..=PARTIALS {
            frame[first + k] = -1.0;
        }
        return;
    };
    let a1 = amplitude_near(spec, f0).max(1e-9);
    frame[first] = (69.0 + 12.0 * (f0 / 440.0).log2() - reference) / 12.0;
    frame[first + 1] = db_to_latent(20.0 * a1.log10());
    for k in 1..=PARTIALS {
        let hz = f0 * k as f32;
        let centre = (hz / spec.bin_hz).round() as usize;
        if k >= 2 {
            let owned = taken.get(centre).copied().unwrap_or(true);
            let ak = if owned {
                1e-9
            } else {
                amplitude_near(spec, hz).max(1e-9)
            };
            frame[first + k] = (20.0 * (ak / a1).log10()).max(-60.0) / PARTIAL_DB_SCALE;
        }
        for t in taken
            .iter_mut()
            .take(centre + 4)
            .skip(centre.saturating_sub(3))
        {
            *t = true;
        }
    }
}

fn analyse_frame(
    spec: &FrameSpectrum,
    frame: &mut [f32],
    prev_group_db: &mut [f32; GROUPS],
    first: bool,
    total_bands: bool,
) {
    let mut taken = vec![false; spec.mid.len()];
    // Melody first: bass partials that land on melody partials are left to the melody.
    voice(
        spec,
        frame,
        MELODY,
        (180.0, 1500.0),
        MELODY_REF_MIDI,
        &mut taken,
    );
    voice(spec, frame, BASS, (35.0, 180.0), BASS_REF_MIDI, &mut taken);
    let mut sum = [0.0f64; BANDS];
    let mut count = [0usize; BANDS];
    let mut count_all = [0usize; BANDS];
    let mut mid_g = [0.0f64; GROUPS];
    let mut side_g = [0.0f64; GROUPS];
    for (k, (&p, &s)) in spec.mid.iter().zip(&spec.side).enumerate() {
        let Some(b) = band_of(k as f32 * spec.bin_hz) else {
            continue;
        };
        count_all[b] += 1;
        if total_bands || !taken[k] {
            sum[b] += f64::from(p);
            count[b] += 1;
        }
        mid_g[b * GROUPS / BANDS] += f64::from(p);
        side_g[b * GROUPS / BANDS] += f64::from(s);
    }
    let mut group_power = [0.0f64; GROUPS];
    for b in 0..BANDS {
        // A band wholly covered by voice partials has no residual: the voices carry it.
        let mean = if count[b] > 0 {
            sum[b] / count[b] as f64
        } else {
            0.0
        };
        frame[ENVELOPE + b] = db_to_latent((10.0 * (mean + 1e-12).log10()) as f32);
        // Onsets come from the residual (voices taken out): a new note is not a drum hit.
        group_power[b * GROUPS / BANDS] += mean * count_all[b] as f64;
    }
    // Group power as signal variance (bins hold per-sample density): comparable to dBFS.
    let bins = spec.mid.len() as f64;
    let group_db = group_power.map(|p| (10.0 * (p / bins + 1e-12).log10()) as f32);
    let loudest = group_db.iter().fold(f32::NEG_INFINITY, |m, &d| m.max(d));
    let rise: [f32; GROUPS] = std::array::from_fn(|g| {
        if first {
            0.0
        } else {
            group_db[g] - prev_group_db[g]
        }
    });
    // A hit is broadband: at least three groups rise by more than 3 dB (a new note does not).
    let hit = rise.iter().filter(|&&r| r > 3.0).count() >= 3;
    for g in 0..GROUPS {
        let db = group_db[g];
        // Only rises in a group within 30 dB of the loudest count, scaled by level (full at
        // -15 dB, none at -45 dB): quiet ticks do not become drums.
        let audible = hit && db > -60.0 && db > loudest - 30.0;
        let level = ((db + 45.0) / 30.0).clamp(0.0, 1.0);
        frame[ONSETS + g] = if audible {
            level * ((rise[g] - 3.0) / 12.0).clamp(0.0, 1.5)
        } else {
            0.0
        };
        prev_group_db[g] = db;
        let ratio = side_g[g] / mid_g[g].max(1e-12);
        frame[WIDTH + g] = (ratio.sqrt() as f32).clamp(0.0, 1.0);
    }
}
