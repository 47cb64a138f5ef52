//! Loop audio from and to WAV files, converted to the output's format, and a built-in test
//! loop for running without a source file.
//!
//! [`load_wav`] reads any integer bit depth (8 to 32 bits) or 32-bit float WAV with any
//! channel count and sample rate, and returns a [`LoopAudio`] at the asked rate and channel
//! count:
//!
//! - **Channels**: a mono file is copied to every output channel. A file with more channels
//!   than asked is downmixed by averaging: output channel `k` is the mean of the file's
//!   channels `j` with `j % target == k` (so 4.0 folds front and rear, 5.1 folds into L/R
//!   in that order). A file with fewer channels (but more than one) feeds output channel `k`
//!   from file channel `k % file_channels`.
//! - **Rate**: converted with rubato's synchronous FFT resampler. The loop is treated as
//!   periodic: the resampler sees the loop's tail before its head and its head after its
//!   tail, so the seam stays as clean as in the file. The result has exactly
//!   `round(frames * target / source)` frames; the resampler may shift the loop as a whole
//!   by a fraction of an output frame.
//!
//! Limits, all checked on the header before a sample is decoded or a buffer allocated (a
//! file refused by them costs a few reads):
//!
//! - the file is a regular file of at most [`MAX_WAV_FILE_BYTES`] (opened through
//!   [`crate::input_file`], so a FIFO or `/dev/zero` is refused without blocking);
//! - at most [`MAX_CLIP_SECONDS`] of audio (frames / rate as the header says), 1 to
//!   [`MAX_CLIP_CHANNELS`] channels, a rate in [`SAMPLE_RATE_RANGE`];
//! - the data chunk starts within the first [`MAX_WAV_HEADER_BYTES`];
//! - the data chunk the header promises is in the file (a truncated file is refused before
//!   decoding, not after).
//!
//! So the largest file accepted decodes to at most `MAX_CLIP_SECONDS * 384 kHz` frames of
//! the asked channel count (decoding converts the channels frame by frame, so the file's own
//! channel count never multiplies memory), and [`resample_loop`] refuses rates outside the
//! range and an output longer than [`MAX_CLIP_SECONDS`] before allocating anything.
//!
//! Threading: plain functions for the main or engine thread; they allocate and do file I/O,
//! never call them from the audio callback.

use std::f64::consts::TAU;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use rubato::audioadapter_buffers::owned::InterleavedOwned;
use rubato::{Fft, FixedSync, Resampler};

use crate::audio_clip::{MAX_CLIP_CHANNELS, MAX_CLIP_SECONDS, SAMPLE_RATE_RANGE};
use crate::input_file::{InputFileError, open_bounded};

/// Largest WAV file read, in bytes: a RIFF file's own ceiling (its size field is 32 bits,
/// after the 8-byte chunk header).
pub const MAX_WAV_FILE_BYTES: u64 = 8 + u32::MAX as u64;

/// Most bytes read before a WAV's data chunk (its header and any metadata chunks), so a
/// file whose header hides the data behind a huge chunk is refused without reading it.
pub const MAX_WAV_HEADER_BYTES: u64 = 16 << 20;

/// Interleaved `f32` audio at a known rate: a loop, a source, a recording.
#[derive(Debug, Clone, PartialEq)]
pub struct LoopAudio {
    /// Interleaved samples, `channels` per frame.
    pub samples: Vec<f32>,
    /// Channels per frame (at least 1).
    pub channels: usize,
    /// Frames per second.
    pub sample_rate: u32,
}

impl LoopAudio {
    /// Whole frames held.
    pub fn frames(&self) -> usize {
        self.samples.len() / self.channels.max(1)
    }

    /// Length in seconds.
    pub fn seconds(&self) -> f64 {
        self.frames() as f64 / self.sample_rate.max(1) as f64
    }
}

/// What a WAV header says, as checked by [`probe_wav`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavInfo {
    /// Channels per frame.
    pub channels: usize,
    /// Frames per second.
    pub sample_rate: u32,
    /// Frames in the data chunk.
    pub frames: usize,
    /// Bits per sample.
    pub bits: u16,
    /// Whether the samples are IEEE floats.
    pub float: bool,
}

/// Why a WAV file could not be read or written. Every variant names the path.
#[derive(Debug, thiserror::Error)]
pub enum AudioFileError {
    /// The file does not exist.
    #[error("{}: no such file", path.display())]
    Missing {
        /// The path given.
        path: PathBuf,
    },
    /// The path is not a regular file, or the file is larger than [`MAX_WAV_FILE_BYTES`].
    #[error(transparent)]
    File(InputFileError),
    /// The header is valid but claims more than latentd accepts (length, channels, rate).
    #[error("{}: {what}", path.display())]
    Limit {
        /// The path given.
        path: PathBuf,
        /// What the header claims, and what is accepted.
        what: String,
    },
    /// The file could not be opened, read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path given.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The file is not a WAV file, or its header is corrupt.
    #[error("{}: not a WAV file or corrupt header: {reason}", path.display())]
    NotWav {
        /// The path given.
        path: PathBuf,
        /// What the parser found wrong.
        reason: String,
    },
    /// The header is fine but the sample data is truncated or damaged.
    #[error("{}: corrupt sample data: {reason}", path.display())]
    CorruptData {
        /// The path given.
        path: PathBuf,
        /// What went wrong, and where.
        reason: String,
    },
    /// The file holds no audio frames.
    #[error("{}: holds zero audio frames", path.display())]
    Empty {
        /// The path given.
        path: PathBuf,
    },
    /// A valid WAV in a format latentd does not read.
    #[error("{}: unsupported WAV format: {what}", path.display())]
    Unsupported {
        /// The path given.
        path: PathBuf,
        /// The format, and what is accepted instead.
        what: String,
    },
    /// The requested output format is outside [`SAMPLE_RATE_RANGE`] or 1 to
    /// [`MAX_CLIP_CHANNELS`] channels.
    #[error("{}: cannot convert to {channels} channels at {sample_rate} Hz", path.display())]
    Target {
        /// The path given.
        path: PathBuf,
        /// Channels asked for.
        channels: usize,
        /// Rate asked for.
        sample_rate: u32,
    },
    /// The resampler refused the conversion.
    #[error("{}: resampling {from} Hz to {to} Hz failed: {reason}", path.display())]
    Resample {
        /// The path given.
        path: PathBuf,
        /// Source rate.
        from: u32,
        /// Target rate.
        to: u32,
        /// The resampler's message.
        reason: String,
    },
}

/// Map a hound error on `path` to a precise [`AudioFileError`].
fn from_hound(path: &Path, err: hound::Error, reading_samples: bool) -> AudioFileError {
    let path = path.to_path_buf();
    match err {
        hound::Error::IoError(e) if e.kind() == io::ErrorKind::NotFound => {
            AudioFileError::Missing { path }
        }
        // hound reports a short read as `UnexpectedEof` or as `Other` "Failed to read
        // enough bytes."
        hound::Error::IoError(e)
            if e.kind() == io::ErrorKind::UnexpectedEof
                || (e.kind() == io::ErrorKind::Other && e.to_string().contains("enough bytes")) =>
        {
            if reading_samples {
                AudioFileError::CorruptData {
                    path,
                    reason: "the data chunk ends early (truncated file)".into(),
                }
            } else {
                AudioFileError::NotWav {
                    path,
                    reason: "the file ends inside its header".into(),
                }
            }
        }
        hound::Error::IoError(source) => AudioFileError::Io { path, source },
        hound::Error::FormatError(reason) if reading_samples => AudioFileError::CorruptData {
            path,
            reason: reason.into(),
        },
        hound::Error::FormatError(reason) => AudioFileError::NotWav {
            path,
            reason: reason.into(),
        },
        hound::Error::UnfinishedSample => AudioFileError::CorruptData {
            path,
            reason: "the data chunk ends inside a sample".into(),
        },
        hound::Error::TooWide | hound::Error::Unsupported | hound::Error::InvalidSampleFormat => {
            AudioFileError::Unsupported {
                path,
                what: format!("{err}; accepted: PCM integer 8 to 32 bits or 32-bit float"),
            }
        }
    }
}

type Reader = hound::WavReader<BufReader<std::fs::File>>;

/// Open `path` through [`open_bounded`], parse its header and check it against the limits
/// (module doc) before any sample is read.
fn open_reader(path: &Path) -> Result<(Reader, WavInfo), AudioFileError> {
    let (file, file_bytes) = open_bounded(path, MAX_WAV_FILE_BYTES).map_err(|e| match e {
        InputFileError::Missing { path } => AudioFileError::Missing { path },
        other => AudioFileError::File(other),
    })?;
    let mut buffered = BufReader::new(file);
    // Parse the header once to learn where the data chunk starts, then again from the
    // start for the reader that decodes (hound keeps its data offset to itself).
    // The first parse reads at most MAX_WAV_HEADER_BYTES, so chunks before the data (which
    // hound skips by reading them) cannot make it read the whole file.
    let io_error = |source| AudioFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let spec = {
        let mut bounded = (&mut buffered).take(MAX_WAV_HEADER_BYTES);
        let parsed = hound::WavReader::new(&mut bounded).map(|h| (h.spec(), h.len()));
        match parsed {
            Ok(spec) => spec,
            Err(_) if bounded.limit() == 0 => {
                return Err(AudioFileError::Limit {
                    path: path.to_path_buf(),
                    what: format!(
                        "no data chunk in its first {MAX_WAV_HEADER_BYTES} bytes (accepted: \
                         up to {MAX_WAV_HEADER_BYTES} bytes of header and metadata)"
                    ),
                });
            }
            Err(e) => return Err(from_hound(path, e, false)),
        }
    };
    let data_start = buffered.stream_position().map_err(io_error)?;
    buffered.seek(SeekFrom::Start(0)).map_err(io_error)?;
    let reader = hound::WavReader::new(buffered).map_err(|e| from_hound(path, e, false))?;
    let (spec, samples) = spec;
    let float = spec.sample_format == hound::SampleFormat::Float;
    let unsupported = |what: String| AudioFileError::Unsupported {
        path: path.to_path_buf(),
        what,
    };
    if float && spec.bits_per_sample != 32 {
        return Err(unsupported(format!(
            "{}-bit float; accepted: 32-bit float or PCM integer 8 to 32 bits",
            spec.bits_per_sample
        )));
    }
    if !float && !(8..=32).contains(&spec.bits_per_sample) {
        return Err(unsupported(format!(
            "{}-bit integer; accepted: PCM integer 8 to 32 bits or 32-bit float",
            spec.bits_per_sample
        )));
    }
    if spec.channels == 0 || spec.sample_rate == 0 {
        return Err(AudioFileError::NotWav {
            path: path.to_path_buf(),
            reason: format!(
                "header says {} channels at {} Hz",
                spec.channels, spec.sample_rate
            ),
        });
    }
    let limit = |what: String| AudioFileError::Limit {
        path: path.to_path_buf(),
        what,
    };
    if usize::from(spec.channels) > MAX_CLIP_CHANNELS {
        return Err(limit(format!(
            "{} channels (accepted: 1 to {MAX_CLIP_CHANNELS})",
            spec.channels
        )));
    }
    if !SAMPLE_RATE_RANGE.contains(&spec.sample_rate) {
        return Err(limit(format!(
            "sample rate {} Hz (accepted: {} to {} Hz)",
            spec.sample_rate,
            SAMPLE_RATE_RANGE.start(),
            SAMPLE_RATE_RANGE.end()
        )));
    }
    let info = WavInfo {
        channels: spec.channels as usize,
        sample_rate: spec.sample_rate,
        frames: reader.duration() as usize,
        bits: spec.bits_per_sample,
        float,
    };
    if info.frames == 0 {
        return Err(AudioFileError::Empty {
            path: path.to_path_buf(),
        });
    }
    let seconds = info.frames as f64 / f64::from(info.sample_rate);
    if seconds > MAX_CLIP_SECONDS {
        return Err(limit(format!(
            "the header claims {seconds:.1} s of audio (accepted: up to {MAX_CLIP_SECONDS} s)"
        )));
    }
    // At least this many bytes of samples (a 24-bit sample may sit in 4 bytes).
    let data_bytes = u64::from(samples) * u64::from(spec.bits_per_sample.div_ceil(8));
    let present = file_bytes.saturating_sub(data_start);
    if present < data_bytes {
        return Err(AudioFileError::CorruptData {
            path: path.to_path_buf(),
            reason: format!(
                "the header promises {data_bytes} bytes of samples, the file holds {present} \
                 (truncated file)"
            ),
        });
    }
    Ok((reader, info))
}

/// Check that `path` is a readable, supported, non-empty WAV without reading its samples.
pub fn probe_wav(path: &Path) -> Result<WavInfo, AudioFileError> {
    open_reader(path).map(|(_, info)| info)
}

/// Read `path` and convert it to `target_channels` at `target_rate` (see the module doc for
/// the channel and rate rules).
pub fn load_wav(
    path: &Path,
    target_rate: u32,
    target_channels: usize,
) -> Result<LoopAudio, AudioFileError> {
    if !SAMPLE_RATE_RANGE.contains(&target_rate)
        || !(1..=MAX_CLIP_CHANNELS).contains(&target_channels)
    {
        return Err(AudioFileError::Target {
            path: path.to_path_buf(),
            channels: target_channels,
            sample_rate: target_rate,
        });
    }
    let (mut reader, info) = open_reader(path)?;
    // Decoded frame by frame into the asked channel count: the file's channel count never
    // multiplies what is held.
    let mut samples = Vec::with_capacity(info.frames * target_channels);
    let mut frame = [0.0f32; MAX_CLIP_CHANNELS];
    let mut filled = 0;
    let mut push = |v: f32| {
        frame[filled] = v;
        filled += 1;
        if filled == info.channels {
            remap_frame(&frame[..info.channels], target_channels, &mut samples);
            filled = 0;
        }
    };
    if info.float {
        for s in reader.samples::<f32>() {
            push(s.map_err(|e| from_hound(path, e, true))?);
        }
    } else {
        let scale = 1.0 / (1u64 << (info.bits - 1)) as f64;
        for s in reader.samples::<i32>() {
            let v = s.map_err(|e| from_hound(path, e, true))?;
            push((v as f64 * scale) as f32);
        }
    }
    if samples.len() < info.frames * target_channels {
        return Err(AudioFileError::CorruptData {
            path: path.to_path_buf(),
            reason: format!(
                "header promises {} frames, the data chunk holds {}",
                info.frames,
                samples.len() / target_channels
            ),
        });
    }
    let audio = LoopAudio {
        samples,
        channels: target_channels,
        sample_rate: info.sample_rate,
    };
    resample_loop(&audio, target_rate).map_err(|reason| AudioFileError::Resample {
        path: path.to_path_buf(),
        from: info.sample_rate,
        to: target_rate,
        reason,
    })
}

/// Convert interleaved `samples` from `from` channels to `to` channels (module doc rules).
pub fn remap_channels(samples: &[f32], from: usize, to: usize) -> Vec<f32> {
    if from == to {
        return samples.to_vec();
    }
    let frames = samples.len() / from;
    let mut out = Vec::with_capacity(frames * to);
    for frame in samples.chunks_exact(from) {
        remap_frame(frame, to, &mut out);
    }
    out
}

/// Append one `frame` converted to `to` channels (module doc rules) to `out`.
fn remap_frame(frame: &[f32], to: usize, out: &mut Vec<f32>) {
    let from = frame.len();
    if from == to {
        out.extend_from_slice(frame);
        return;
    }
    for k in 0..to {
        let v = if from == 1 {
            frame[0]
        } else if from < to {
            frame[k % from]
        } else {
            let (sum, n) = frame
                .iter()
                .skip(k)
                .step_by(to)
                .fold((0.0f32, 0usize), |(s, n), &x| (s + x, n + 1));
            sum / n as f32
        };
        out.push(v);
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Resample a loop to `target_rate`, treating it as periodic; exactly
/// `round(frames * target / source)` frames come out.
///
/// The cost is bounded before anything is allocated: both rates must be in
/// [`SAMPLE_RATE_RANGE`] (so the wrap margin, at most one reduced input step, stays under a
/// second) and the output at most [`MAX_CLIP_SECONDS`] long.
pub fn resample_loop(audio: &LoopAudio, target_rate: u32) -> Result<LoopAudio, String> {
    let (from, to) = (audio.sample_rate as u64, target_rate as u64);
    if from == to {
        return Ok(audio.clone());
    }
    for rate in [audio.sample_rate, target_rate] {
        if !SAMPLE_RATE_RANGE.contains(&rate) {
            return Err(format!(
                "sample rate {rate} Hz (accepted: {} to {} Hz)",
                SAMPLE_RATE_RANGE.start(),
                SAMPLE_RATE_RANGE.end()
            ));
        }
    }
    let ch = audio.channels;
    let frames = audio.frames();
    let out_frames = ((frames as u64 * to + from / 2) / from) as usize;
    let out_seconds = out_frames as f64 / to as f64;
    if out_seconds > MAX_CLIP_SECONDS {
        return Err(format!(
            "the output would be {out_seconds:.1} s long (accepted: up to {MAX_CLIP_SECONDS} s)"
        ));
    }
    // Wrap margin: a whole number of the reduced input step, so it maps to whole output
    // frames, and long enough to cover the resampler's filter.
    let step = from / gcd(from, to);
    let margin = (2048u64.div_ceil(step) * step) as usize;
    let margin_out = (margin as u64 * to / from) as usize;
    let padded_frames = frames + 2 * margin;
    let mut padded = Vec::with_capacity(padded_frames * ch);
    for i in 0..padded_frames {
        let src = (i + frames * (margin / frames + 1) - margin) % frames;
        padded.extend_from_slice(&audio.samples[src * ch..(src + 1) * ch]);
    }
    let input = InterleavedOwned::new_from(padded, ch, padded_frames).map_err(|e| e.to_string())?;
    let mut resampler = Fft::<f32>::new(from as usize, to as usize, 1024, ch, FixedSync::Both)
        .map_err(|e| e.to_string())?;
    let output = resampler
        .process_all(&input, padded_frames, None)
        .map_err(|e| e.to_string())?;
    let data = output.take_data();
    let start = margin_out * ch;
    let end = start + out_frames * ch;
    if data.len() < end {
        return Err(format!(
            "resampler returned {} frames, {} needed",
            data.len() / ch,
            end / ch
        ));
    }
    Ok(LoopAudio {
        samples: data[start..end].to_vec(),
        channels: ch,
        sample_rate: target_rate,
    })
}

/// Write `audio` as a 32-bit float WAV (exact: every `f32` survives the round trip).
pub fn write_wav_f32(path: &Path, audio: &LoopAudio) -> Result<(), AudioFileError> {
    let spec = hound::WavSpec {
        channels: audio.channels as u16,
        sample_rate: audio.sample_rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let err = |e| from_hound(path, e, false);
    let mut writer = hound::WavWriter::create(path, spec).map_err(err)?;
    for &s in &audio.samples {
        writer.write_sample(s).map_err(err)?;
    }
    writer.finalize().map_err(err)
}

/// Built-in test loop: an A-minor-seventh arpeggio (A3 C4 E4 G4 A4 G4 E4 C4) of soft
/// plucked notes, a quarter second each, alternating slightly left and right. Every note
/// starts and ends at exactly zero inside its slot, so the loop is seamless; the peak stays
/// below 0.5. `seconds` is rounded to whole frames; channels beyond two repeat L and R.
pub fn test_signal(sample_rate: u32, channels: usize, seconds: f64) -> LoopAudio {
    const NOTES_HZ: [f64; 8] = [220.0, 261.63, 329.63, 392.0, 440.0, 392.0, 329.63, 261.63];
    const NOTE_SECONDS: f64 = 0.25;
    let channels = channels.max(1);
    let rate = sample_rate.max(1) as f64;
    let frames = (seconds.max(0.0) * rate).round() as usize;
    let slots = ((frames as f64 / rate / NOTE_SECONDS).round() as usize).max(1);
    let slot_len = frames as f64 / slots as f64;
    let mut samples = Vec::with_capacity(frames * channels);
    for i in 0..frames {
        let slot = ((i as f64 / slot_len) as usize).min(slots - 1);
        let t = (i as f64 - slot as f64 * slot_len) / rate;
        let len = slot_len / rate;
        let hz = NOTES_HZ[slot % NOTES_HZ.len()];
        let attack = (t / 0.012).min(1.0);
        let attack = 0.5 - 0.5 * (std::f64::consts::PI * attack).cos();
        let decay = (-t / (0.35 * len)).exp();
        let release = ((len - t) / 0.01).clamp(0.0, 1.0);
        let tone = (TAU * hz * t).sin() + 0.25 * (TAU * 2.0 * hz * t).sin();
        let v = 0.36 * attack * decay * release * tone / 1.25;
        let pan = if slot.is_multiple_of(2) { 0.8 } else { 1.0 };
        for k in 0..channels {
            let gain = if (k % 2 == 0) == slot.is_multiple_of(2) {
                1.0
            } else {
                pan
            };
            samples.push((v * gain) as f32);
        }
    }
    LoopAudio {
        samples,
        channels,
        sample_rate: sample_rate.max(1),
    }
}

#[cfg(test)]
mod tests;
