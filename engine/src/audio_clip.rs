//! Reference audio handed to the engine (a source loop, a timbre or structure reference):
//! interleaved `f32` samples with their channel count and rate, validated once on the way in.
//!
//! Threading: plain data. [`AudioClip`] shares its samples through an `Arc`, so snapshots of
//! conditioning inputs copy a pointer, not the audio.

use std::ops::RangeInclusive;
use std::sync::Arc;

/// The longest reference accepted, in seconds.
pub const MAX_CLIP_SECONDS: f64 = 600.0;

/// Sample rates accepted for reference audio, in Hz.
pub const SAMPLE_RATE_RANGE: RangeInclusive<u32> = 8_000..=384_000;

/// Most channels accepted for reference audio.
pub const MAX_CLIP_CHANNELS: usize = crate::ring::MAX_CHANNELS;

/// Why reference audio was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AudioClipError {
    /// No samples.
    #[error("{field}: audio is empty")]
    Empty {
        /// Which input ("timbre", "structure", "source").
        field: &'static str,
    },
    /// Channel count outside 1 to [`MAX_CLIP_CHANNELS`].
    #[error("{field}: {channels} channels (accepted: 1 to {MAX_CLIP_CHANNELS})")]
    Channels {
        /// Which input.
        field: &'static str,
        /// The count given.
        channels: usize,
    },
    /// Sample rate outside [`SAMPLE_RATE_RANGE`].
    #[error(
        "{field}: sample rate {rate} Hz (accepted: {} to {})",
        SAMPLE_RATE_RANGE.start(),
        SAMPLE_RATE_RANGE.end()
    )]
    Rate {
        /// Which input.
        field: &'static str,
        /// The rate given.
        rate: u32,
    },
    /// Sample count not a multiple of the channel count.
    #[error("{field}: {samples} samples is not a whole number of {channels}-channel frames")]
    Ragged {
        /// Which input.
        field: &'static str,
        /// Samples given.
        samples: usize,
        /// Channels given.
        channels: usize,
    },
    /// A NaN or infinite sample.
    #[error("{field}: sample {index} is not finite")]
    NotFinite {
        /// Which input.
        field: &'static str,
        /// Index of the first bad sample.
        index: usize,
    },
    /// Longer than [`MAX_CLIP_SECONDS`].
    #[error("{field}: {seconds:.1} s is too long (accepted: up to {MAX_CLIP_SECONDS} s)")]
    TooLong {
        /// Which input.
        field: &'static str,
        /// Its length.
        seconds: f64,
    },
}

/// A borrowed view of interleaved audio.
#[derive(Clone, Copy, Debug)]
pub struct AudioView<'a> {
    /// Interleaved samples, nominally in [-1, 1].
    pub samples: &'a [f32],
    /// Channels per frame.
    pub channels: usize,
    /// Frames per second.
    pub sample_rate: u32,
}

impl AudioView<'_> {
    /// Frames in the view.
    pub fn frames(&self) -> usize {
        self.samples.len() / self.channels.max(1)
    }

    /// Checks shape, rate, length and finiteness; `field` names the input in errors.
    pub fn validate(&self, field: &'static str) -> Result<(), AudioClipError> {
        let channels = self.channels;
        if !(1..=MAX_CLIP_CHANNELS).contains(&channels) {
            return Err(AudioClipError::Channels { field, channels });
        }
        if !SAMPLE_RATE_RANGE.contains(&self.sample_rate) {
            return Err(AudioClipError::Rate {
                field,
                rate: self.sample_rate,
            });
        }
        if self.samples.is_empty() {
            return Err(AudioClipError::Empty { field });
        }
        if !self.samples.len().is_multiple_of(channels) {
            let samples = self.samples.len();
            return Err(AudioClipError::Ragged {
                field,
                samples,
                channels,
            });
        }
        let seconds = self.frames() as f64 / f64::from(self.sample_rate);
        if seconds > MAX_CLIP_SECONDS {
            return Err(AudioClipError::TooLong { field, seconds });
        }
        if let Some(index) = self.samples.iter().position(|s| !s.is_finite()) {
            return Err(AudioClipError::NotFinite { field, index });
        }
        Ok(())
    }

    /// Mono mixdown (the mean of the channels).
    pub fn mono(&self) -> Vec<f32> {
        let c = self.channels.max(1);
        let scale = 1.0 / c as f32;
        self.samples
            .chunks_exact(c)
            .map(|f| f.iter().sum::<f32>() * scale)
            .collect()
    }
}

/// Owned, validated, cheaply clonable reference audio.
#[derive(Clone, Debug, PartialEq)]
pub struct AudioClip {
    samples: Arc<[f32]>,
    channels: usize,
    sample_rate: u32,
}

impl AudioClip {
    /// Validates `view` (naming `field` in errors) and keeps a copy.
    pub fn new(field: &'static str, view: AudioView<'_>) -> Result<Self, AudioClipError> {
        view.validate(field)?;
        Ok(Self {
            samples: view.samples.into(),
            channels: view.channels,
            sample_rate: view.sample_rate,
        })
    }

    /// A view of the clip.
    pub fn view(&self) -> AudioView<'_> {
        AudioView {
            samples: &self.samples,
            channels: self.channels,
            sample_rate: self.sample_rate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(samples: &[f32], channels: usize, sample_rate: u32) -> AudioView<'_> {
        AudioView {
            samples,
            channels,
            sample_rate,
        }
    }

    #[test]
    fn bad_audio_is_refused_with_the_field_named() {
        let ok = [0.0f32; 4];
        assert!(view(&ok, 2, 48_000).validate("timbre").is_ok());
        assert_eq!(
            view(&[], 2, 48_000).validate("timbre"),
            Err(AudioClipError::Empty { field: "timbre" })
        );
        assert!(matches!(
            view(&ok, 0, 48_000).validate("x"),
            Err(AudioClipError::Channels { .. })
        ));
        assert!(matches!(
            view(&ok, 3, 48_000).validate("x"),
            Err(AudioClipError::Ragged { .. })
        ));
        assert!(matches!(
            view(&ok, 2, 100).validate("x"),
            Err(AudioClipError::Rate { .. })
        ));
        let nan = [0.0, f32::NAN];
        let err = view(&nan, 1, 48_000).validate("structure").unwrap_err();
        assert_eq!(
            err,
            AudioClipError::NotFinite {
                field: "structure",
                index: 1
            }
        );
        assert!(err.to_string().starts_with("structure"));
        let long = vec![0.0f32; 8000 * 601];
        assert!(matches!(
            view(&long, 1, 8000).validate("x"),
            Err(AudioClipError::TooLong { .. })
        ));
    }

    #[test]
    fn mono_is_the_channel_mean() {
        assert_eq!(
            view(&[1.0, 0.0, 0.5, 0.5], 2, 48_000).mono(),
            vec![0.5, 0.5]
        );
    }
}
