//! `bundle.toml`, the manifest of a `latentd-bundle/1` folder: serde structs that refuse
//! unknown keys (`deny_unknown_fields` everywhere), then validation into typed values
//! ([`BundleManifest`]) with absolute, checked file paths.
//!
//! Every refusal is one [`BundleError`] whose message names the file and the key, e.g.
//! `bundle.toml: [sampler] guidance: "foo" (accepted: "none", "cfg")` or
//! `bundle.toml: [dit] file: "dit.onnx": no such file in /srv/bundle`. The limits are the
//! constants below; `docs/bundles.md` lists them with the format.
//!
//! What is checked here: the format string, each value's type and range, geometry the loop
//! can take (`latent_frame_rate` divides `sample_rate`; an STFT decoder's `hop` divides
//! `rate/fps` and its `n_fft` is even and at least `2 * hop`), the sampler's defaults inside the
//! knob table's ranges, every named file a regular file inside its size limit, the tag
//! vocabulary (no empty, duplicate or spaced tags), and the parity vectors' files against
//! their declared shapes. What is not: the graphs' tensor names and shapes (the ONNX
//! backend checks them against the conventions when it opens the sessions).
//!
//! Threading: [`load`] does blocking file I/O; call it off the engine and audio threads.

use std::collections::HashMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::conditioning::MAX_PROMPT_CHARS;
use crate::knobs::KnobId;
use crate::model::Geometry;

/// The `format` string this version reads.
pub const FORMAT: &str = "latentd-bundle/1";
/// The manifest's file name inside a bundle folder.
pub const MANIFEST_FILE: &str = "bundle.toml";
/// Largest manifest accepted, bytes.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;
/// Largest ONNX file accepted, bytes: protobuf's 2 GiB limit (bigger models keep their
/// weights in external data files beside the graph, which this check does not cover).
pub const MAX_GRAPH_BYTES: u64 = 2 << 30;
/// Largest tag vocabulary file accepted, bytes.
pub const MAX_VOCAB_BYTES: u64 = 4 << 20;
/// Most tags a vocabulary may hold.
pub const MAX_VOCAB_TAGS: usize = 65_536;
/// Longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 64;
/// Largest parity vector file accepted, bytes.
pub const MAX_PARITY_FILE_BYTES: u64 = 256 << 20;
/// Longest `name`, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest `license` or `provenance`, in characters.
pub const MAX_TEXT_CHARS: usize = 4096;
/// Accepted `[geometry] sample_rate`, Hz.
pub const SAMPLE_RATES: (u32, u32) = (8_000, 192_000);
/// Most `[geometry] audio_channels`.
pub const MAX_AUDIO_CHANNELS: u32 = 8;
/// Most `[geometry] latent_channels`.
pub const MAX_LATENT_CHANNELS: u32 = 4096;
/// Largest `[dit] t_multiple`.
pub const MAX_T_MULTIPLE: u32 = 64;
/// Shortest `[dit] chunk_frames`, in seconds of latents: walk mode moves to the next chunk
/// 3 s before a chunk's end ([`crate::runner::EngineConfig::walk_prewarm_s`]),
/// so a chunk must be longer than that.
pub const MIN_CHUNK_SECONDS: u32 = 4;
/// Largest `[dit] chunk_frames`.
pub const MAX_CHUNK_FRAMES: u32 = 1 << 20;
/// Largest `[decoder] context_frames` (frames decoded on each side of the kept part).
pub const MAX_CONTEXT_FRAMES: u32 = 256;
/// Largest `[decoder] n_fft`.
pub const MAX_N_FFT: usize = 1 << 16;
/// Largest `[timbre] reference_frames`.
pub const MAX_REFERENCE_FRAMES: u32 = 6000;

/// Why a bundle was refused. Each message names the file and, for manifest values, the key.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A file could not be read (the manifest, the vocabulary, the bundle folder itself).
    #[error("{}: {source}", path.display())]
    Io {
        /// The path read.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// `bundle.toml` is not valid TOML for this format: a syntax error, an unknown key, a
    /// missing key or a value of the wrong type.
    #[error("{MANIFEST_FILE}: {}{message}", location(*line, section.as_deref()))]
    Syntax {
        /// 1-based line of the offending text, when known.
        line: Option<usize>,
        /// The `[section]` that line sits in, when there is one.
        section: Option<String>,
        /// The parser's message (one line).
        message: String,
    },
    /// A value outside what the key accepts.
    #[error("{MANIFEST_FILE}: {key}: {value} (accepted: {accepted})")]
    Invalid {
        /// The key, with its section: `[sampler] guidance`.
        key: String,
        /// The value found, as written in TOML.
        value: String,
        /// What the key accepts.
        accepted: String,
    },
    /// A file the manifest names is missing, escapes the folder, is not a regular file, or is
    /// too big.
    #[error("{MANIFEST_FILE}: {key}: {file:?}: {problem}")]
    File {
        /// The key naming the file: `[dit] file`.
        key: String,
        /// The path as written in the manifest.
        file: String,
        /// What is wrong with it.
        problem: FileProblem,
    },
    /// The tag vocabulary breaks a rule.
    #[error("{}: line {line}: {problem}", file.display())]
    Vocab {
        /// The vocabulary file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong there.
        problem: String,
    },
}

/// What is wrong with a file a manifest names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileProblem {
    /// Not there.
    Missing {
        /// The bundle folder looked in.
        dir: PathBuf,
    },
    /// Absolute, or reaching out of the bundle folder with `..`.
    Escapes,
    /// A directory or a special file.
    NotRegular,
    /// Bigger than the limit for its kind.
    TooLarge {
        /// Its size, bytes.
        bytes: u64,
        /// The limit, bytes.
        limit: u64,
    },
    /// A parity vector file whose size does not match its declared shape and dtype.
    WrongSize {
        /// Its size, bytes.
        bytes: u64,
        /// The size the shape and dtype need, bytes.
        want: u64,
    },
    /// `stat` or `read` failed.
    Unreadable(String),
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { dir } => write!(f, "no such file in {}", dir.display()),
            Self::Escapes => f.write_str("must be a relative path inside the bundle folder"),
            Self::NotRegular => f.write_str("not a regular file"),
            Self::TooLarge { bytes, limit } => {
                write!(f, "{bytes} bytes (accepted: at most {limit})")
            }
            Self::WrongSize { bytes, want } => {
                write!(f, "{bytes} bytes, its shape and dtype need {want}")
            }
            Self::Unreadable(why) => f.write_str(why),
        }
    }
}

fn location(line: Option<usize>, section: Option<&str>) -> String {
    match (line, section) {
        (Some(line), Some(section)) => format!("line {line} ({section}): "),
        (Some(line), None) => format!("line {line}: "),
        (None, Some(section)) => format!("{section}: "),
        (None, None) => String::new(),
    }
}

/// The sampler convention the DiT's output follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Convention {
    /// Flow matching: `x_t = t * noise + (1 - t) * x0`; the DiT predicts `v = noise - x0`.
    FlowVelocity,
}

/// Whether the bundle's DiT is run with classifier-free guidance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guidance {
    /// One DiT run per slot; the `guidance` knob is inert.
    None,
    /// The batch is doubled with the null condition and the two velocities combined
    /// `v = v_null + g * (v_cond - v_null)` with `g` the `guidance` knob.
    Cfg,
}

/// How the prompt becomes `encoder_hidden_states`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextKind {
    /// Prompt words looked up in a tag vocabulary; their line numbers (from 0) are the `ids`.
    Tags,
}

/// The graphs a bundle may hold (the parity runs name one of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphKind {
    /// `[dit]`.
    Dit,
    /// `[decoder]`.
    Decoder,
    /// `[encoder]`.
    Encoder,
    /// `[text]`.
    Text,
    /// `[timbre]`.
    Timbre,
}

/// Element type of a parity tensor file (little-endian, row-major).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// `f32`.
    F32,
    /// `i64`.
    I64,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            Self::F32 => 4,
            Self::I64 => 8,
        }
    }
}

/// The sampler defaults of `[sampler]`.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerSpec {
    /// The output convention.
    pub convention: Convention,
    /// Steps the `steps` knob starts at (inside its knob range).
    pub default_steps: u32,
    /// Shift the `shift` knob starts at (inside its knob range).
    pub default_shift: f32,
    /// Guidance mode.
    pub guidance: Guidance,
    /// Scale the `guidance` knob starts at: `default_guidance` when given, else the knob's
    /// own default; always that default with guidance `"none"`.
    pub default_guidance: f32,
}

impl SamplerSpec {
    /// The knobs a daemon running this bundle starts at, before its config and saved
    /// session override them: `steps`, `shift` and `guidance`.
    pub fn start_knobs(&self) -> [(KnobId, f64); 3] {
        [
            (KnobId::steps, f64::from(self.default_steps)),
            (KnobId::shift, f64::from(self.default_shift)),
            (KnobId::guidance, f64::from(self.default_guidance)),
        ]
    }
}

/// `[dit]`.
#[derive(Clone, Debug, PartialEq)]
pub struct DitSpec {
    /// Absolute path of the graph.
    pub file: PathBuf,
    /// T given to the DiT is a multiple of this (the caller pads).
    pub t_multiple: usize,
    /// Latent frames one DiT run should cover: a longer loop is generated in chunks of
    /// about this length (walk mode). `None`: the engine's default chunk.
    pub chunk_frames: Option<usize>,
}

/// `[decoder]`.
#[derive(Clone, Debug, PartialEq)]
pub struct DecoderSpec {
    /// Absolute path of the graph.
    pub file: PathBuf,
    /// Latent frames decoded on each side of the frames kept from a window.
    pub context_frames: usize,
    /// What the graph outputs.
    pub output: DecoderOutput,
}

/// `[decoder] output`: what the decoder graph produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecoderOutput {
    /// `audio [B,A,T*rate/fps]`, the samples themselves.
    Audio,
    /// `stft [B,A,N,n_fft/2+1,2]`, a Hann-windowed one-sided STFT the host inverts
    /// (`model::bundle::istft`); `N = T * rate/fps / hop`.
    Stft {
        /// FFT length, even, at least `2 * hop`.
        n_fft: usize,
        /// Samples between frames; divides `rate/fps`.
        hop: usize,
    },
}

impl DecoderOutput {
    /// The name of the decoder graph's output tensor: `audio` or `stft`.
    pub fn tensor(self) -> &'static str {
        match self {
            DecoderOutput::Audio => "audio",
            DecoderOutput::Stft { .. } => "stft",
        }
    }
}

/// `[text]`.
#[derive(Clone, Debug, PartialEq)]
pub struct TextSpec {
    /// How prompts are turned into ids.
    pub kind: TextKind,
    /// Absolute path of the vocabulary file.
    pub vocab_file: PathBuf,
    /// The tags, in file order: tag `i` has id `i`.
    pub vocab: Vec<String>,
    /// Absolute path of the graph.
    pub file: PathBuf,
    /// The prompt a fresh start plays (every word in `vocab`), if the bundle names one.
    pub default_prompt: Option<String>,
}

/// `[timbre]`.
#[derive(Clone, Debug, PartialEq)]
pub struct TimbreSpec {
    /// Absolute path of the graph.
    pub file: PathBuf,
    /// Latent frames of one reference the graph takes.
    pub reference_frames: usize,
}

/// One tensor of a parity run.
#[derive(Clone, Debug, PartialEq)]
pub struct ParityTensor {
    /// The graph's input or output name.
    pub name: String,
    /// Absolute path of the raw little-endian, row-major data.
    pub file: PathBuf,
    /// Element type.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
}

/// A parity tensor's data.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    /// `f32` elements.
    F32(Vec<f32>),
    /// `i64` elements.
    I64(Vec<i64>),
}

impl ParityTensor {
    /// Elements the shape holds.
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// Read the file (its size was checked against the shape at [`load`]).
    pub fn read(&self) -> Result<TensorData, BundleError> {
        let bytes = std::fs::read(&self.file).map_err(|source| BundleError::Io {
            path: self.file.clone(),
            source,
        })?;
        let want = self.elements() as u64 * self.dtype.size();
        if bytes.len() as u64 != want {
            return Err(BundleError::Io {
                path: self.file.clone(),
                source: std::io::Error::other(format!(
                    "{} bytes, its shape and dtype need {want}",
                    bytes.len()
                )),
            });
        }
        Ok(match self.dtype {
            Dtype::F32 => TensorData::F32(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            ),
            Dtype::I64 => TensorData::I64(
                bytes
                    .chunks_exact(8)
                    .map(|b| i64::from_le_bytes(b.try_into().expect("chunks of 8")))
                    .collect(),
            ),
        })
    }
}

/// One parity run: feed `inputs` to `graph`, compare its `outputs`.
#[derive(Clone, Debug, PartialEq)]
pub struct ParityRun {
    /// The graph run.
    pub graph: GraphKind,
    /// Its inputs, by name.
    pub inputs: Vec<ParityTensor>,
    /// Its expected outputs, by name (`f32`).
    pub outputs: Vec<ParityTensor>,
}

/// `[parity]`: reference vectors a runtime must reproduce, each output element within
/// `atol + rtol * |expected|`.
#[derive(Clone, Debug, PartialEq)]
pub struct ParitySpec {
    /// Absolute tolerance.
    pub atol: f32,
    /// Relative tolerance.
    pub rtol: f32,
    /// The runs, in manifest order.
    pub runs: Vec<ParityRun>,
}

/// Why a graph's output fails its parity vector.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
pub enum ParityMismatch {
    /// The output has another element count than the expected vector.
    #[error("{actual} elements, the expected vector has {expected}")]
    Length {
        /// Elements expected.
        expected: usize,
        /// Elements produced.
        actual: usize,
    },
    /// An element outside `atol + rtol * |expected|` (a NaN or infinity never is within).
    #[error("element {index}: {actual}, expected {expected} (tolerance {tolerance})")]
    Value {
        /// Flat (row-major) index of the first element out of tolerance.
        index: usize,
        /// The expected value.
        expected: f32,
        /// The value produced.
        actual: f32,
        /// The tolerance at that element.
        tolerance: f32,
    },
}

impl ParitySpec {
    /// Compare a graph's output with its expected vector: `Ok(max |actual - expected|)` when
    /// every element is within `atol + rtol * |expected|`, else the first one that is not.
    pub fn compare(&self, expected: &[f32], actual: &[f32]) -> Result<f32, ParityMismatch> {
        if expected.len() != actual.len() {
            return Err(ParityMismatch::Length {
                expected: expected.len(),
                actual: actual.len(),
            });
        }
        let mut max_error = 0.0f32;
        for (index, (&e, &a)) in expected.iter().zip(actual).enumerate() {
            let error = (a - e).abs();
            let tolerance = self.atol + self.rtol * e.abs();
            // A NaN error compares false, so it is out of tolerance.
            let within = error <= tolerance;
            if !within || !a.is_finite() {
                return Err(ParityMismatch::Value {
                    index,
                    expected: e,
                    actual: a,
                    tolerance,
                });
            }
            max_error = max_error.max(error);
        }
        Ok(max_error)
    }
}

/// A validated `bundle.toml`, with absolute file paths.
#[derive(Clone, Debug, PartialEq)]
pub struct BundleManifest {
    /// The bundle folder (canonical, absolute).
    pub dir: PathBuf,
    /// The bundle's name (reported in `/status`).
    pub name: String,
    /// Licence of the weights (SPDX identifier or free text).
    pub license: String,
    /// Where the weights come from (free text).
    pub provenance: String,
    /// Audio and latent geometry.
    pub geometry: Geometry,
    /// Sampler convention and defaults.
    pub sampler: SamplerSpec,
    /// The denoiser.
    pub dit: DitSpec,
    /// Latents to audio.
    pub decoder: DecoderSpec,
    /// Audio to latents (source loops); `None`: the bundle cannot take a source.
    pub encoder: Option<PathBuf>,
    /// Prompt conditioning; `None`: the prompt is inert.
    pub text: Option<TextSpec>,
    /// Timbre reference conditioning; `None`: timbre references are inert.
    pub timbre: Option<TimbreSpec>,
    /// Reference vectors, when the bundle carries them.
    pub parity: Option<ParitySpec>,
}

impl BundleManifest {
    /// The walk-mode chunk the bundle asks for, seconds: `[dit] chunk_frames` at its latent
    /// frame rate (what [`crate::runner::EngineConfig::walk_chunk_s`] should be); `None`
    /// when it names none.
    pub fn walk_chunk_s(&self) -> Option<f64> {
        self.dit
            .chunk_frames
            .map(|frames| frames as f64 / f64::from(self.geometry.latent_frame_rate))
    }
}

// The manifest as written: serde structs, unknown keys refused. Enumerated values are
// strings here and typed in validation, so a bad one is reported with the accepted list.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    format: String,
    name: String,
    license: String,
    provenance: String,
    geometry: RawGeometry,
    sampler: RawSampler,
    dit: RawDit,
    decoder: RawDecoder,
    encoder: Option<RawEncoder>,
    text: Option<RawText>,
    timbre: Option<RawTimbre>,
    parity: Option<RawParity>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGeometry {
    sample_rate: u32,
    audio_channels: u32,
    latent_channels: u32,
    latent_frame_rate: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSampler {
    convention: String,
    default_steps: u32,
    default_shift: f64,
    guidance: String,
    #[serde(default)]
    default_guidance: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDit {
    file: String,
    t_multiple: u32,
    chunk_frames: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDecoder {
    file: String,
    context_frames: u32,
    output: Option<String>,
    n_fft: Option<u32>,
    hop: Option<u32>,
    window: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEncoder {
    file: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawText {
    kind: String,
    vocab: String,
    file: String,
    default_prompt: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimbre {
    file: String,
    reference_frames: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParity {
    atol: f64,
    rtol: f64,
    run: Vec<RawParityRun>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParityRun {
    graph: String,
    inputs: Vec<RawTensor>,
    outputs: Vec<RawTensor>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTensor {
    name: String,
    file: String,
    dtype: String,
    shape: Vec<u64>,
}

/// Read and validate the bundle in `dir` (its `bundle.toml` and every file it names).
pub fn load(dir: &Path) -> Result<BundleManifest, BundleError> {
    let dir = std::fs::canonicalize(dir).map_err(|source| BundleError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let manifest_path = dir.join(MANIFEST_FILE);
    let text = read_limited(&manifest_path, MAX_MANIFEST_BYTES)?;
    let text = String::from_utf8(text).map_err(|_| BundleError::Io {
        path: manifest_path.clone(),
        source: std::io::Error::other("not UTF-8"),
    })?;
    let raw: RawManifest = toml::from_str(&text).map_err(|e| syntax_error(&text, &e))?;
    Validator { dir: &dir }.manifest(raw)
}

/// `path`'s bytes, refused past `limit`.
fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, BundleError> {
    let io = |source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(io(std::io::Error::other("not a regular file")));
    }
    if meta.len() > limit {
        return Err(io(std::io::Error::other(format!(
            "{} bytes (accepted: at most {limit})",
            meta.len()
        ))));
    }
    std::fs::read(path).map_err(io)
}

fn syntax_error(text: &str, e: &toml::de::Error) -> BundleError {
    let message = e.message().trim().replace('\n', " ");
    let Some(span) = e.span() else {
        return BundleError::Syntax {
            line: None,
            section: None,
            message,
        };
    };
    let start = span.start.min(text.len());
    let line = text[..start].matches('\n').count() + 1;
    // The section: the last table header at or before that line.
    let section = text
        .lines()
        .take(line)
        .map(str::trim)
        .filter(|l| l.starts_with('['))
        .last()
        .map(|header| {
            let end = header.rfind(']').map_or(header.len(), |i| i + 1);
            header[..end].to_string()
        });
    BundleError::Syntax {
        line: Some(line),
        section,
        message,
    }
}

/// The words of a prompt, as the vocabulary is matched against them: runs of letters,
/// digits and `-` (everything else separates; matching lowercases them).
pub(crate) fn prompt_words(tags: &str) -> impl Iterator<Item = &str> {
    tags.split(|c: char| !(c.is_alphanumeric() || c == '-'))
        .filter(|w| !w.is_empty())
}

/// `[text] default_prompt`: non-empty, at most `MAX_PROMPT_CHARS`, and every word a tag of
/// the vocabulary (a default that reports unknown words at every start would be a bug).
fn check_default_prompt(prompt: &str, vocab: &[String]) -> Result<(), BundleError> {
    const KEY: &str = "[text] default_prompt";
    let words: Vec<&str> = prompt_words(prompt).collect();
    if words.is_empty() || prompt.chars().count() > MAX_PROMPT_CHARS {
        return Err(invalid(
            KEY,
            format!("{prompt:?}"),
            format!("1 to {MAX_PROMPT_CHARS} characters of tags from the vocabulary"),
        ));
    }
    match words
        .iter()
        .find(|w| !vocab.iter().any(|t| t == &w.to_lowercase()))
    {
        Some(word) => Err(invalid(
            KEY,
            format!("{prompt:?}"),
            format!("tags of the vocabulary (`{word}` is not one)"),
        )),
        None => Ok(()),
    }
}

fn invalid(key: &str, value: impl fmt::Display, accepted: impl Into<String>) -> BundleError {
    BundleError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        accepted: accepted.into(),
    }
}

/// `value` if it is one of `accepted` (by name), else the error listing them.
fn choice<T: Copy>(key: &str, value: &str, accepted: &[(&str, T)]) -> Result<T, BundleError> {
    accepted
        .iter()
        .find(|(name, _)| *name == value)
        .map(|&(_, v)| v)
        .ok_or_else(|| {
            let list: Vec<String> = accepted.iter().map(|(n, _)| format!("{n:?}")).collect();
            invalid(key, format!("{value:?}"), list.join(", "))
        })
}

fn in_range(key: &str, value: u32, min: u32, max: u32) -> Result<u32, BundleError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(invalid(key, value, format!("{min} to {max}")))
    }
}

/// A free-text value: not blank, at most `max_chars`, no control characters except, where
/// `multiline`, newlines and tabs.
fn text_field(
    key: &str,
    value: String,
    max_chars: usize,
    multiline: bool,
) -> Result<String, BundleError> {
    let allowed = |c: char| !c.is_control() || (multiline && (c == '\n' || c == '\t'));
    if value.trim().is_empty() || value.chars().count() > max_chars || !value.chars().all(allowed) {
        return Err(invalid(
            key,
            format!("{value:?}"),
            format!("1 to {max_chars} characters, not blank, no control characters"),
        ));
    }
    Ok(value)
}

struct Validator<'a> {
    dir: &'a Path,
}

impl Validator<'_> {
    fn manifest(&self, raw: RawManifest) -> Result<BundleManifest, BundleError> {
        if raw.format != FORMAT {
            return Err(invalid(
                "format",
                format!("{:?}", raw.format),
                format!("{FORMAT:?}"),
            ));
        }
        let name = text_field("name", raw.name, MAX_NAME_CHARS, false)?;
        let license = text_field("license", raw.license, MAX_TEXT_CHARS, true)?;
        let provenance = text_field("provenance", raw.provenance, MAX_TEXT_CHARS, true)?;
        let geometry = geometry(&raw.geometry)?;
        let text = raw.text.map(|t| self.text(t)).transpose()?;
        let sampler = sampler(&raw.sampler, text.is_some())?;
        let dit = DitSpec {
            file: self.graph("[dit] file", &raw.dit.file)?,
            t_multiple: in_range("[dit] t_multiple", raw.dit.t_multiple, 1, MAX_T_MULTIPLE)?
                as usize,
            chunk_frames: raw
                .dit
                .chunk_frames
                .map(|frames| {
                    let min = MIN_CHUNK_SECONDS * geometry.latent_frame_rate;
                    in_range("[dit] chunk_frames", frames, min, MAX_CHUNK_FRAMES)
                })
                .transpose()?
                .map(|frames| frames as usize),
        };
        let decoder = DecoderSpec {
            file: self.graph("[decoder] file", &raw.decoder.file)?,
            context_frames: in_range(
                "[decoder] context_frames",
                raw.decoder.context_frames,
                0,
                MAX_CONTEXT_FRAMES,
            )? as usize,
            output: decoder_output(&raw.decoder, &geometry)?,
        };
        let encoder = raw
            .encoder
            .map(|e| self.graph("[encoder] file", &e.file))
            .transpose()?;
        let timbre = raw
            .timbre
            .map(|t| -> Result<TimbreSpec, BundleError> {
                if encoder.is_none() {
                    // A reference reaches the timbre graph as latents of the bundle's encoder.
                    return Err(invalid(
                        "[timbre] file",
                        format!("{:?}", t.file),
                        "only with an [encoder] section (references are encoded by it)",
                    ));
                }
                Ok(TimbreSpec {
                    file: self.graph("[timbre] file", &t.file)?,
                    reference_frames: in_range(
                        "[timbre] reference_frames",
                        t.reference_frames,
                        1,
                        MAX_REFERENCE_FRAMES,
                    )? as usize,
                })
            })
            .transpose()?;
        let present = |graph: GraphKind| match graph {
            GraphKind::Dit | GraphKind::Decoder => true,
            GraphKind::Encoder => encoder.is_some(),
            GraphKind::Text => text.is_some(),
            GraphKind::Timbre => timbre.is_some(),
        };
        let parity = raw.parity.map(|p| self.parity(p, present)).transpose()?;
        Ok(BundleManifest {
            dir: self.dir.to_path_buf(),
            name,
            license,
            provenance,
            geometry,
            sampler,
            dit,
            decoder,
            encoder,
            text,
            timbre,
            parity,
        })
    }

    /// The absolute path of `file` (as written under `key`), checked to be a regular file
    /// inside the folder of at most `limit` bytes.
    fn file(&self, key: &str, file: &str, limit: u64) -> Result<PathBuf, BundleError> {
        let err = |problem| BundleError::File {
            key: key.to_string(),
            file: file.to_string(),
            problem,
        };
        let relative = Path::new(file);
        let inside = !file.is_empty()
            && relative
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !inside {
            return Err(err(FileProblem::Escapes));
        }
        let path = self.dir.join(relative);
        let meta = match std::fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(err(FileProblem::Missing {
                    dir: self.dir.to_path_buf(),
                }));
            }
            Err(e) => return Err(err(FileProblem::Unreadable(e.to_string()))),
        };
        if !meta.is_file() {
            return Err(err(FileProblem::NotRegular));
        }
        if meta.len() > limit {
            return Err(err(FileProblem::TooLarge {
                bytes: meta.len(),
                limit,
            }));
        }
        Ok(path)
    }

    fn graph(&self, key: &str, file: &str) -> Result<PathBuf, BundleError> {
        self.file(key, file, MAX_GRAPH_BYTES)
    }

    fn text(&self, raw: RawText) -> Result<TextSpec, BundleError> {
        let kind = choice("[text] kind", &raw.kind, &[("tags", TextKind::Tags)])?;
        let vocab_file = self.file("[text] vocab", &raw.vocab, MAX_VOCAB_BYTES)?;
        let bytes = read_limited(&vocab_file, MAX_VOCAB_BYTES)?;
        let vocab = parse_vocab(&vocab_file, &bytes)?;
        if let Some(prompt) = &raw.default_prompt {
            check_default_prompt(prompt, &vocab)?;
        }
        Ok(TextSpec {
            kind,
            vocab_file,
            vocab,
            file: self.graph("[text] file", &raw.file)?,
            default_prompt: raw.default_prompt,
        })
    }

    fn parity(
        &self,
        raw: RawParity,
        present: impl Fn(GraphKind) -> bool,
    ) -> Result<ParitySpec, BundleError> {
        let tolerance = |key: &str, value: f64| {
            if value.is_finite() && (0.0..=1.0).contains(&value) {
                Ok(value as f32)
            } else {
                Err(invalid(key, value, "0 to 1"))
            }
        };
        let atol = tolerance("[parity] atol", raw.atol)?;
        let rtol = tolerance("[parity] rtol", raw.rtol)?;
        if raw.run.is_empty() {
            return Err(invalid("[parity] run", "[]", "at least one [[parity.run]]"));
        }
        let graphs = [
            ("dit", GraphKind::Dit),
            ("decoder", GraphKind::Decoder),
            ("encoder", GraphKind::Encoder),
            ("text", GraphKind::Text),
            ("timbre", GraphKind::Timbre),
        ];
        let mut runs = Vec::with_capacity(raw.run.len());
        for (index, run) in raw.run.into_iter().enumerate() {
            let at = format!("[[parity.run]] #{}", index + 1);
            let graph = choice(&format!("{at} graph"), &run.graph, &graphs)?;
            if !present(graph) {
                return Err(invalid(
                    &format!("{at} graph"),
                    format!("{:?}", run.graph),
                    "a graph the bundle declares",
                ));
            }
            let mut seen: HashMap<String, &str> = HashMap::new();
            let mut tensors = |list: Vec<RawTensor>, side: &'static str| {
                if list.is_empty() {
                    return Err(invalid(
                        &format!("{at} {side}"),
                        "[]",
                        "at least one tensor",
                    ));
                }
                list.into_iter()
                    .map(|t| {
                        let key = format!("{at} {side} {:?}", t.name);
                        if t.name.is_empty() {
                            return Err(invalid(&key, "name \"\"", "a tensor name"));
                        }
                        if let Some(first) = seen.insert(t.name.clone(), side) {
                            return Err(invalid(
                                &key,
                                "a second tensor of that name",
                                format!("each name once (first in {first})"),
                            ));
                        }
                        let tensor = self.parity_tensor(&key, t)?;
                        if side == "outputs" && tensor.dtype != Dtype::F32 {
                            return Err(invalid(&format!("{key} dtype"), "\"i64\"", "\"f32\""));
                        }
                        Ok(tensor)
                    })
                    .collect::<Result<Vec<_>, _>>()
            };
            let inputs = tensors(run.inputs, "inputs")?;
            let outputs = tensors(run.outputs, "outputs")?;
            runs.push(ParityRun {
                graph,
                inputs,
                outputs,
            });
        }
        Ok(ParitySpec { atol, rtol, runs })
    }

    fn parity_tensor(&self, key: &str, raw: RawTensor) -> Result<ParityTensor, BundleError> {
        let dtype = choice(
            &format!("{key} dtype"),
            &raw.dtype,
            &[("f32", Dtype::F32), ("i64", Dtype::I64)],
        )?;
        let elements = raw
            .shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n > 0 && n * dtype.size() <= MAX_PARITY_FILE_BYTES)
            .ok_or_else(|| {
                invalid(
                    &format!("{key} shape"),
                    format!("{:?}", raw.shape),
                    format!("positive dimensions, at most {MAX_PARITY_FILE_BYTES} bytes of data"),
                )
            })?;
        let file_key = format!("{key} file");
        let file = self.file(&file_key, &raw.file, MAX_PARITY_FILE_BYTES)?;
        let bytes = std::fs::metadata(&file).map_or(0, |m| m.len());
        let want = elements * dtype.size();
        if bytes != want {
            return Err(BundleError::File {
                key: file_key,
                file: raw.file,
                problem: FileProblem::WrongSize { bytes, want },
            });
        }
        Ok(ParityTensor {
            name: raw.name,
            file,
            dtype,
            shape: raw.shape.iter().map(|&d| d as usize).collect(),
        })
    }
}

fn geometry(raw: &RawGeometry) -> Result<Geometry, BundleError> {
    let (min_rate, max_rate) = SAMPLE_RATES;
    let sample_rate = in_range(
        "[geometry] sample_rate",
        raw.sample_rate,
        min_rate,
        max_rate,
    )?;
    let audio_channels = in_range(
        "[geometry] audio_channels",
        raw.audio_channels,
        1,
        MAX_AUDIO_CHANNELS,
    )?;
    let latent_channels = in_range(
        "[geometry] latent_channels",
        raw.latent_channels,
        1,
        MAX_LATENT_CHANNELS,
    )?;
    let fps = raw.latent_frame_rate;
    if fps == 0 || sample_rate % fps != 0 {
        return Err(invalid(
            "[geometry] latent_frame_rate",
            fps,
            format!("a divisor of [geometry] sample_rate {sample_rate}"),
        ));
    }
    Ok(Geometry {
        sample_rate,
        audio_channels: audio_channels as usize,
        latent_channels: latent_channels as usize,
        latent_frame_rate: fps,
    })
}

/// `[decoder] output` and, for `"stft"`, its `n_fft`, `hop` and `window`.
fn decoder_output(raw: &RawDecoder, g: &Geometry) -> Result<DecoderOutput, BundleError> {
    #[derive(Clone, Copy)]
    enum Kind {
        Audio,
        Stft,
    }
    let kind = choice(
        "[decoder] output",
        raw.output.as_deref().unwrap_or("audio"),
        &[("audio", Kind::Audio), ("stft", Kind::Stft)],
    )?;
    if let Kind::Audio = kind {
        for (key, given) in [
            ("[decoder] n_fft", raw.n_fft.is_some()),
            ("[decoder] hop", raw.hop.is_some()),
            ("[decoder] window", raw.window.is_some()),
        ] {
            if given {
                return Err(invalid(key, "given", "only with output = \"stft\""));
            }
        }
        return Ok(DecoderOutput::Audio);
    }
    let samples = g.samples_per_latent_frame();
    let hop = raw.hop.ok_or_else(|| {
        invalid(
            "[decoder] hop",
            "missing",
            format!("a divisor of rate/fps = {samples}, required with output = \"stft\""),
        )
    })? as usize;
    if hop == 0 || !samples.is_multiple_of(hop) {
        return Err(invalid(
            "[decoder] hop",
            hop,
            format!("a divisor of rate/fps = {samples}"),
        ));
    }
    let n_fft = raw.n_fft.ok_or_else(|| {
        invalid(
            "[decoder] n_fft",
            "missing",
            "an even number >= 2 * hop, required with output = \"stft\"",
        )
    })? as usize;
    if !n_fft.is_multiple_of(2) || n_fft < 2 * hop || n_fft > MAX_N_FFT {
        return Err(invalid(
            "[decoder] n_fft",
            n_fft,
            format!("an even number from 2 * hop = {} to {MAX_N_FFT}", 2 * hop),
        ));
    }
    if let Some(window) = &raw.window {
        choice("[decoder] window", window, &[("hann", ())])?;
    }
    Ok(DecoderOutput::Stft { n_fft, hop })
}

fn sampler(raw: &RawSampler, has_text: bool) -> Result<SamplerSpec, BundleError> {
    let convention = choice(
        "[sampler] convention",
        &raw.convention,
        &[("flow-velocity", Convention::FlowVelocity)],
    )?;
    let steps = KnobId::steps.spec();
    let default_steps = in_range(
        "[sampler] default_steps",
        raw.default_steps,
        steps.min as u32,
        steps.max as u32,
    )?;
    let shift = KnobId::shift.spec();
    if !(raw.default_shift.is_finite() && (shift.min..=shift.max).contains(&raw.default_shift)) {
        return Err(invalid(
            "[sampler] default_shift",
            raw.default_shift,
            format!("{} to {} (the shift knob's range)", shift.min, shift.max),
        ));
    }
    let guidance = choice(
        "[sampler] guidance",
        &raw.guidance,
        &[("none", Guidance::None), ("cfg", Guidance::Cfg)],
    )?;
    if guidance == Guidance::Cfg && !has_text {
        return Err(invalid(
            "[sampler] guidance",
            "\"cfg\"",
            "\"none\" (a bundle without [text] has no condition to guide)",
        ));
    }
    let default_guidance = sampler_guidance(raw.default_guidance, guidance)?;
    Ok(SamplerSpec {
        convention,
        default_steps,
        default_shift: raw.default_shift as f32,
        guidance,
        default_guidance,
    })
}

/// `[sampler] default_guidance`: inside the guidance knob's range, and only its default
/// where the bundle runs without guidance (the knob is inert there).
fn sampler_guidance(given: Option<f64>, guidance: Guidance) -> Result<f32, BundleError> {
    let knob = KnobId::guidance.spec();
    let Some(value) = given else {
        return Ok(knob.default as f32);
    };
    if guidance == Guidance::None && value != knob.default {
        return Err(invalid(
            "[sampler] default_guidance",
            value,
            format!(
                "{} only (guidance = \"none\" leaves the knob inert)",
                knob.default
            ),
        ));
    }
    if !(value.is_finite() && (knob.min..=knob.max).contains(&value)) {
        return Err(invalid(
            "[sampler] default_guidance",
            value,
            format!("{} to {} (the guidance knob's range)", knob.min, knob.max),
        ));
    }
    Ok(value as f32)
}

/// The tags of a vocabulary file: one a line, in order; a final newline is optional.
fn parse_vocab(file: &Path, bytes: &[u8]) -> Result<Vec<String>, BundleError> {
    let err = |line: usize, problem: String| BundleError::Vocab {
        file: file.to_path_buf(),
        line,
        problem,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        err(line, "not UTF-8".to_string())
    })?;
    let body = text.strip_suffix('\n').unwrap_or(text);
    let mut first_line: HashMap<&str, usize> = HashMap::new();
    let mut vocab = Vec::new();
    for (index, raw_line) in body.split('\n').enumerate() {
        let line = index + 1;
        let tag = raw_line.strip_suffix('\r').unwrap_or(raw_line);
        if tag.is_empty() {
            return Err(err(line, "empty line (one tag a line)".to_string()));
        }
        if tag.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err(
                line,
                format!("{tag:?}: a tag is one word (no spaces or control characters)"),
            ));
        }
        if tag.chars().count() > MAX_TAG_CHARS {
            return Err(err(
                line,
                format!("{tag:?}: longer than {MAX_TAG_CHARS} characters"),
            ));
        }
        if let Some(first) = first_line.insert(tag, line) {
            return Err(err(line, format!("{tag:?}: duplicate of line {first}")));
        }
        if vocab.len() == MAX_VOCAB_TAGS {
            return Err(err(line, format!("more than {MAX_VOCAB_TAGS} tags")));
        }
        vocab.push(tag.to_string());
    }
    Ok(vocab)
}

#[cfg(test)]
mod tests;
