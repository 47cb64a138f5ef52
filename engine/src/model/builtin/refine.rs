//! Source encoding by analysis-by-synthesis: the plain analysis ([`super::analysis`]) gives the
//! voices, onsets and width; the envelope is then solved so that the decoder's output has the
//! source's band levels, frame by frame.
//!
//! 1. Decode the voices alone and measure them; the residual is the source's band power minus
//!    theirs (window leakage, interpolation and all, since it is measured, not modelled).
//! 2. Decode the percussion alone; a hit louder than the residual in any band of its frame or
//!    the next is scaled down to fit (often below the trigger: the envelope then carries the
//!    source's hit), so a source's drum is not played twice (percussion layer and envelope).
//! 3. Envelope = residual minus percussion, then [`REFINE_PASSES`] corrections: decode
//!    everything, measure, move each band's power half way (in dB) toward the source's (the
//!    envelope grains overlap and interfere; the decoder is deterministic, so the corrections
//!    converge on its exact output).
//!
//! Only for audio at the decoder's sample rate (band densities are rate-dependent); other rates
//! keep the plain analysis. Cost: about `2 + REFINE_PASSES` decodes and analyses of the loop.
//!
//! Threading: pure functions over a caller-owned [`Synth`] (the encoder's, not the engine's).

use super::analysis::{self, Spectrogram};
use super::layout::*;
use super::synth::{Synth, TRIGGER};
use crate::audio_clip::AudioView;

/// Full-decode corrections of the envelope.
pub const REFINE_PASSES: usize = 4;
/// Voice-level corrections (voices-only decodes).
pub const VOICE_PASSES: usize = 3;
/// Envelope floor (band power density), about -100 dB.
const FLOOR: f64 = 1e-10;
fn decode_mono(synth: &Synth, lat: &[f32], frames: usize, gains: &[f32; 8]) -> Vec<f32> {
    let mut out = vec![0.0f32; frames * synth.hop() * 2];
    synth.render(lat, frames, gains, 0, frames, &mut out);
    out.chunks_exact(2).map(|p| 0.5 * (p[0] + p[1])).collect()
}

/// Encodes a source loop (see the module doc): `(frames, latents)`.
pub fn encode(audio: AudioView<'_>, frame_rate: u32, synth: &Synth) -> (usize, Vec<f32>) {
    let (frames, mut lat) = analysis::analyse(audio, frame_rate);
    if audio.sample_rate != synth.sample_rate() {
        return (frames, lat);
    }
    let mut spectrogram = Spectrogram::new(audio.sample_rate, frame_rate);
    let target = spectrogram.band_means(&audio.mono(), frames);

    let only_voices = [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0];
    for _ in 0..VOICE_PASSES {
        let voices = decode_mono(synth, &lat, frames, &only_voices);
        let voices = spectrogram.band_means(&voices, frames);
        correct_voice_levels(&mut lat, &target, &voices);
    }
    let voices = decode_mono(synth, &lat, frames, &only_voices);
    let voices = spectrogram.band_means(&voices, frames);
    let residual: Vec<[f64; BANDS]> = target
        .iter()
        .zip(&voices)
        .map(|(t, v)| std::array::from_fn(|b| (t[b] - v[b]).max(0.0)))
        .collect();

    let only_drums = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0];
    let drums = spectrogram.band_means(&decode_mono(synth, &lat, frames, &only_drums), frames);
    let mut scaled = false;
    for f in 0..frames {
        let frame = &mut lat[f * LATENT_CHANNELS..(f + 1) * LATENT_CHANNELS];
        if frame[ONSETS..ONSETS + GROUPS].iter().all(|&o| o < TRIGGER) {
            continue;
        }
        // The loudest the hit may be: under the residual in every band, here and next frame.
        let mut ratio = f64::INFINITY;
        for g in [f, (f + 1) % frames] {
            for b in 0..BANDS {
                if drums[g][b] > 1e-9 {
                    ratio = ratio.min(residual[g][b] / drums[g][b]);
                }
            }
        }
        if ratio < 1.0 {
            let scale = ratio.sqrt() as f32;
            for o in &mut frame[ONSETS..ONSETS + GROUPS] {
                *o *= scale;
            }
            scaled = true;
        }
    }
    let drums = if scaled {
        spectrogram.band_means(&decode_mono(synth, &lat, frames, &only_drums), frames)
    } else {
        drums
    };
    let mut envelope: Vec<[f64; BANDS]> = residual
        .iter()
        .zip(&drums)
        .map(|(r, d)| std::array::from_fn(|b| (r[b] - d[b]).max(FLOOR)))
        .collect();
    write_envelope(&mut lat, &envelope);
    for _ in 0..REFINE_PASSES {
        let decoded = decode_mono(synth, &lat, frames, &[1.0; 8]);
        let decoded = spectrogram.band_means(&decoded, frames);
        for ((e, t), d) in envelope.iter_mut().zip(&target).zip(&decoded) {
            for b in 0..BANDS {
                e[b] = (e[b] * (t[b] / d[b].max(1e-20)).sqrt()).max(FLOOR);
            }
        }
        write_envelope(&mut lat, &envelope);
    }
    (frames, lat)
}

/// Moves each sounding voice's level by the ratio of the source's power to the decoded voices'
/// power in the band of its fundamental (down by up to 12 dB, up by up to 3 dB per pass: the
/// source's band also holds everything else).
fn correct_voice_levels(lat: &mut [f32], target: &[[f64; BANDS]], voices: &[[f64; BANDS]]) {
    for ((frame, t), v) in lat
        .chunks_exact_mut(LATENT_CHANNELS)
        .zip(target)
        .zip(voices)
    {
        for (first, reference) in [(MELODY, MELODY_REF_MIDI), (BASS, BASS_REF_MIDI)] {
            if latent_to_db(frame[first + 1]) <= -80.0 {
                continue;
            }
            let hz = 440.0 * 2f32.powf((reference + 12.0 * frame[first] - 69.0) / 12.0);
            let Some(b) = band_of(hz) else { continue };
            if v[b] <= 0.0 {
                continue;
            }
            let db = (10.0 * (t[b].max(1e-20) / v[b]).log10()) as f32;
            frame[first + 1] += db.clamp(-12.0, 3.0) / 20.0;
        }
    }
}

fn write_envelope(lat: &mut [f32], envelope: &[[f64; BANDS]]) {
    for (frame, e) in lat.chunks_exact_mut(LATENT_CHANNELS).zip(envelope) {
        for b in 0..BANDS {
            frame[ENVELOPE + b] = db_to_latent((10.0 * e[b].log10()) as f32);
        }
    }
}
