//! [`OnnxModel`]: a model bundle (`latentd-bundle/1`, see `docs/bundles.md`) run by ONNX
//! Runtime through `ort` (loaded at run time, never linked or downloaded at build time).
//!
//! What runs where:
//! - the DiT predicts velocity for every slot of a tick in ONE batched run: `hidden_states
//!   [B,T,C]`, `timestep [B]`, `encoder_hidden_states [B,L,D]`, optional `context_latents
//!   [B,T,2C]` (source latents, then a mask of 1 where a source exists) → `velocity [B,T,C]`;
//!   `T` is padded with zeros to the bundle's `t_multiple`; with `guidance = "cfg"` and the
//!   `guidance` knob off 1 the batch is doubled with the null condition (zeros) and the two
//!   halves combined by [`sampler::combine_cfg`]. The sampler itself (slot start, source
//!   lock, Euler / SDE, noise) is [`sampler`], on the host;
//! - the decoder renders `latents [1,C,W]` → `audio [1,A,W*hop]` for a window of the kept
//!   frames plus `context_frames` on each side, keeping the centre; the eight channel-group
//!   gains scale the latent channel groups (`C / 8` channels each) before decoding; a
//!   decoder with `output = "stft"` gives `stft [1,A,W*hop/stft_hop,F,2]` instead, which
//!   [`Istft`] (allocated with the window's tensors) inverts on the engine thread; a decoder
//!   that takes the optional `frame_offset [1] int64` gets the loop index of the window's
//!   first latent frame;
//! - the encoder maps a source `audio [1,A,S]` → `latents [1,C,S/hop]`; the text model maps
//!   tag ids `ids [1,L] int64` → `encoder_hidden_states [1,R,D]` (`R` the graph's own: `L`
//!   for plain tags).
//!
//! Per tick, latentd's own code does not allocate: the DiT's and the decoder's input and
//! output tensors are allocated once per shape (`(rows, T, L)` / window) and bound to an
//! `IoBinding`; a tick writes into them in place and runs the binding through the C API
//! directly (`ort`'s `run_binding` wraps every output in a new `Arc`). ONNX Runtime's own
//! C-heap allocations inside the run remain (hundreds per DiT run, off the audio thread;
//! counted by `scripts/bench-ort-mallocs.sh`, figures in docs/PERFORMANCE.md).
//!
//! Threading: `Send + Sync`. Each ONNX session sits in its own mutex (ORT runs need `&mut`):
//! the DiT and the decoder are used by the engine thread only, the encoder and the text model
//! by the encoder thread, so no lock is contended. ORT runs on the calling thread plus
//! `intra_threads - 1` pool threads (none by default); never on the audio thread.

use crate::lock::MutexExt;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ort::AsPointer;
use ort::environment::Environment;
use ort::memory::Allocator;
use ort::session::{IoBinding, RunOptions, Session};
use ort::value::{Tensor, TensorElementType, ValueType};

use super::istft::Istft;
use super::manifest::{BundleManifest, DecoderOutput, Guidance, prompt_words};
use crate::audio_clip::AudioView;
use crate::conditioning::{ConditionEncoder, Conditioning, EncodeError, PromptEncoding};
use crate::knobs::KnobId;
use crate::model::sampler::{self, FlowStep};
use crate::model::{
    ChunkPlace, DecodeError, Geometry, Model, SlotStart, SlotStep, StepShared, check_decode_request,
};

/// ORT intra-op threads per session by default: the calling thread alone.
pub const DEFAULT_INTRA_THREADS: usize = 1;
/// Environment variable naming the ONNX Runtime library (`ort`'s own convention).
pub const LIBRARY_ENV: &str = "ORT_DYLIB_PATH";
/// Where an installed latentd finds the library, relative to the executable's folder.
pub const INSTALLED_LIBRARY: &str = "../lib/latentd/libonnxruntime.so";
/// The library of a source checkout, relative to a binary in `target/<profile>/`.
pub const CHECKOUT_LIBRARY: &str = "../../.ort/libonnxruntime.so";
/// Channel groups the `ch_g*` knobs scale.
pub const CHANNEL_GROUPS: usize = 8;
/// Shapes whose tensors a session keeps bound at once (the oldest is dropped past this).
pub const BOUND_SHAPES: usize = 4;

/// How [`OnnxModel::load`] sets ONNX Runtime up.
#[derive(Clone, Debug, PartialEq)]
pub struct OnnxOptions {
    /// The ONNX Runtime library; `None`: [`LIBRARY_ENV`], then [`INSTALLED_LIBRARY`].
    pub library: Option<PathBuf>,
    /// Intra-op threads per session (1 = the calling thread only).
    pub intra_threads: usize,
    /// Let ORT's pool threads spin while waiting for work (burns a core; off by default).
    pub spinning: bool,
    /// Execution providers to try, in order; the first the library has runs every
    /// session, and CPU is the last resort whether listed or not.
    pub providers: Vec<Provider>,
}

/// An ONNX Runtime execution provider latentd can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    /// NVIDIA TensorRT (`TensorrtExecutionProvider`).
    TensorRt,
    /// NVIDIA CUDA (`CUDAExecutionProvider`).
    Cuda,
    /// The CPU provider, always present.
    Cpu,
}

impl Provider {
    /// Every provider, by its config name.
    pub const ALL: [Provider; 3] = [Provider::TensorRt, Provider::Cuda, Provider::Cpu];

    /// The name a config or CLI uses.
    pub fn name(self) -> &'static str {
        match self {
            Provider::TensorRt => "tensorrt",
            Provider::Cuda => "cuda",
            Provider::Cpu => "cpu",
        }
    }

    /// ONNX Runtime's own short name for it, as logs and `/status` show it.
    pub fn label(self) -> &'static str {
        match self {
            Provider::TensorRt => "TensorRT",
            Provider::Cuda => "CUDA",
            Provider::Cpu => "CPU",
        }
    }

    /// The provider a config or CLI name means, if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Whether the loaded library was built with this provider; `Err` says why not.
    fn check(self) -> Result<(), String> {
        use ort::ep::ExecutionProvider;
        let has = match self {
            Provider::TensorRt => ort::ep::TensorRT::is_available(),
            Provider::Cuda => ort::ep::CUDA::is_available(),
            Provider::Cpu => return Ok(()),
        };
        match has {
            Ok(true) => Ok(()),
            Ok(false) => Err("the loaded ONNX Runtime library was built without it".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// This provider, configured, refusing to fall back silently.
    fn dispatch(self) -> ort::ep::ExecutionProviderDispatch {
        // CUDA: ort exposes a user compute stream only as a raw `cudaStream_t`
        // (`CUDA::with_compute_stream`); latentd owns no stream on this path, so ORT's
        // CUDA provider keeps its own (see docs/bundles.md).
        match self {
            Provider::TensorRt => ort::ep::TensorRT::default().build(),
            Provider::Cuda => ort::ep::CUDA::default().build(),
            Provider::Cpu => ort::ep::CPU::default().build(),
        }
        .error_on_failure()
    }
}

/// The provider that will run: the first of `asked` the library has (CPU otherwise), and
/// each one skipped before it with the reason.
pub(super) fn choose_provider(asked: &[Provider]) -> (Provider, Vec<(Provider, String)>) {
    let mut skipped = Vec::new();
    for &p in asked {
        match p.check() {
            Ok(()) => return (p, skipped),
            Err(why) => skipped.push((p, why)),
        }
    }
    (Provider::Cpu, skipped)
}

impl Default for OnnxOptions {
    fn default() -> Self {
        Self {
            library: None,
            intra_threads: DEFAULT_INTRA_THREADS,
            spinning: false,
            providers: vec![Provider::Cpu],
        }
    }
}

/// Why a bundle could not be loaded; nothing was started.
#[derive(Debug, thiserror::Error)]
pub enum OnnxLoadError {
    /// No ONNX Runtime library where latentd looks.
    #[error(
        "ONNX Runtime library not found (looked at: {tried}); run scripts/setup.sh or set \
         {LIBRARY_ENV}"
    )]
    LibraryNotFound {
        /// The places tried, in order.
        tried: String,
    },
    /// The library exists but cannot be used (not a library, not ONNX Runtime, too old).
    #[error("ONNX Runtime library {path}: {reason}")]
    Library {
        /// The library.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The manifest was refused.
    #[error(transparent)]
    Manifest(#[from] super::BundleError),
    /// A bundle file is missing or unreadable.
    #[error("bundle file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// ONNX Runtime refused a model file.
    #[error("{file}: ONNX Runtime refused the model: {reason}")]
    Session {
        /// The file (relative to the bundle).
        file: String,
        /// ORT's message.
        reason: String,
    },
    /// A model's inputs or outputs do not follow the bundle's tensor conventions.
    #[error("{file}: tensor `{tensor}`: {reason}")]
    Tensor {
        /// The file (relative to the bundle).
        file: String,
        /// The tensor's conventional name.
        tensor: String,
        /// What is wrong.
        reason: String,
    },
    /// A check run at load (one DiT step, one decode) failed.
    #[error("{0}")]
    Probe(ModelError),
}

pub use crate::model::ModelError;

/// Latents of an [`OnnxModel`]: `[frames, channels]` on the host, frame-major.
#[derive(Clone, Debug, PartialEq)]
pub struct OnnxLatents {
    frames: usize,
    data: Vec<f32>,
}

impl OnnxLatents {
    /// Wraps frame-major data of `channels` channels.
    pub fn from_host(data: Vec<f32>, channels: usize) -> Self {
        Self {
            frames: data.len() / channels.max(1),
            data,
        }
    }

    /// The values, frame-major.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }
}

/// The conditioning of an [`OnnxModel`].
#[derive(Clone, Debug, PartialEq)]
pub enum OnnxCond {
    /// A prompt's text embedding: `tokens` rows of the DiT's condition width.
    Prompt {
        /// Rows (`L`).
        tokens: usize,
        /// `[tokens, D]`, row-major.
        embedding: Vec<f32>,
    },
    /// A timbre reference's encoding: `tokens` rows of the DiT's condition width, the timbre
    /// graph's output for the reference.
    Timbre {
        /// Rows (`K`, the timbre graph's).
        tokens: usize,
        /// `[tokens, D]`, row-major.
        embedding: Vec<f32>,
    },
}

impl OnnxCond {
    /// The rows: `(count, [count, D] row-major)`.
    fn rows(&self) -> Embedding<'_> {
        match self {
            Self::Prompt { tokens, embedding } | Self::Timbre { tokens, embedding } => {
                (*tokens, &embedding[..])
            }
        }
    }
}

/// `file` as the bundle names it (relative to its folder), for messages.
fn file_name(dir: &Path, file: &Path) -> String {
    file.strip_prefix(dir).unwrap_or(file).display().to_string()
}

/// The process's ONNX Runtime: the first library loaded serves every later bundle.
static RUNTIME: Mutex<Option<(PathBuf, Environment)>> = Mutex::new(None);

/// Where the ONNX Runtime library is: `explicit`, else [`LIBRARY_ENV`], else the first of
/// [`INSTALLED_LIBRARY`] beside the executable (a package) and [`CHECKOUT_LIBRARY`] (a
/// binary built in a source checkout, where `scripts/setup.sh` installs the library). An
/// explicit or environment path must exist.
pub fn find_library(explicit: Option<&Path>) -> Result<PathBuf, OnnxLoadError> {
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let must_exist = |p: PathBuf| {
        if p.is_file() {
            Ok(absolute(&p))
        } else {
            Err(OnnxLoadError::LibraryNotFound {
                tried: p.display().to_string(),
            })
        }
    };
    if let Some(p) = explicit {
        return must_exist(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(LIBRARY_ENV).filter(|p| !p.is_empty()) {
        return must_exist(PathBuf::from(p));
    }
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    let beside_exe: Vec<PathBuf> = [INSTALLED_LIBRARY, CHECKOUT_LIBRARY]
        .iter()
        .map(|rel| match &exe_dir {
            Some(d) => d.join(rel),
            None => PathBuf::from("<exe dir>").join(rel),
        })
        .collect();
    match beside_exe.iter().find(|p| p.is_file()) {
        Some(p) => Ok(absolute(p)),
        None => Err(OnnxLoadError::LibraryNotFound {
            tried: format!(
                "{LIBRARY_ENV} (unset), {}",
                beside_exe
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// Loads ONNX Runtime (once per process; later calls get the loaded one whatever they ask)
/// and returns its environment and the library's path. A missing, foreign or too-old library
/// is an error, never a panic: `ort`'s loader asserts on some bad libraries, so it runs
/// under `catch_unwind`.
pub fn runtime(explicit: Option<&Path>) -> Result<(PathBuf, Environment), OnnxLoadError> {
    let mut rt = RUNTIME.lock_unpoisoned();
    if let Some((path, env)) = rt.as_ref() {
        return Ok((path.clone(), env.clone()));
    }
    let path = find_library(explicit)?;
    let bad = |reason: String| OnnxLoadError::Library {
        path: path.clone(),
        reason,
    };
    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ort::init_from(&path)
            .map_err(|e| e.to_string())?
            .with_name("latentd")
            .with_telemetry(false)
            .build()
            .map_err(|e| e.to_string())
    }));
    let env = match built {
        Ok(Ok(env)) => env,
        Ok(Err(reason)) => return Err(bad(reason)),
        Err(panic) => {
            let reason = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the loader panicked".into());
            return Err(bad(reason));
        }
    };
    *rt = Some((path.clone(), env.clone()));
    Ok((path, env))
}

/// Opens the graph `file` of the bundle in `dir` as an ONNX Runtime session with the
/// threading `options` ask for (blocking: reads and optimises the graph).
pub(super) fn open_session(
    env: &Environment,
    dir: &Path,
    file: &Path,
    options: &OnnxOptions,
    provider: Provider,
) -> Result<Session, OnnxLoadError> {
    let path = dir.join(file);
    let name = file_name(dir, file);
    if !path.is_file() {
        return Err(OnnxLoadError::File {
            path,
            reason: "missing".into(),
        });
    }
    let refused = |e: String| OnnxLoadError::Session {
        file: name.clone(),
        reason: e,
    };
    let e = |e: ort::Error<_>| refused(e.to_string());
    Session::builder(env)
        .map_err(|e| refused(e.to_string()))?
        .with_intra_threads(options.intra_threads.max(1))
        .map_err(e)?
        .with_inter_threads(1)
        .map_err(e)?
        .with_intra_op_spinning(options.spinning)
        .map_err(e)?
        .with_inter_op_spinning(false)
        .map_err(e)?
        .with_execution_providers([provider.dispatch()])
        .map_err(e)?
        .commit_from_file(&path)
        .map_err(|e| refused(e.to_string()))
}

/// One tensor an ONNX file must have: conventional name, element type, rank.
struct Convention {
    name: &'static str,
    ty: TensorElementType,
    rank: usize,
}

const fn f32_tensor(name: &'static str, rank: usize) -> Convention {
    Convention {
        name,
        ty: TensorElementType::Float32,
        rank,
    }
}

/// The decoder's optional input: the loop index of the window's first latent frame,
/// `frame_offset [1] int64` (docs/bundles.md). A decoder that turns its partials' phases by
/// their position in the loop takes it, so a held note continues across windows.
const FRAME_OFFSET: Convention = Convention {
    name: "frame_offset",
    ty: TensorElementType::Int64,
    rank: 1,
};

/// Static dims of one checked tensor (`None` where dynamic).
type Dims = Vec<Option<usize>>;

/// Checks a session's inputs and outputs against the convention: every required tensor
/// present with its type and rank, no input the convention does not name. Returns the dims
/// of each `(inputs, outputs)` entry (`None` for an absent optional input).
fn check_tensors(
    session: &Session,
    file: &str,
    inputs: &[(Convention, bool)],
    outputs: &[Convention],
) -> Result<(Vec<Option<Dims>>, Vec<Dims>), OnnxLoadError> {
    let err = |tensor: &str, reason: String| OnnxLoadError::Tensor {
        file: file.to_string(),
        tensor: tensor.to_string(),
        reason,
    };
    let dims_of = |dtype: &ValueType, c: &Convention| -> Result<Dims, OnnxLoadError> {
        let ValueType::Tensor { ty, shape, .. } = dtype else {
            return Err(err(c.name, format!("is a {dtype}, not a tensor")));
        };
        if *ty != c.ty {
            return Err(err(
                c.name,
                format!("element type {ty}, the convention says {}", c.ty),
            ));
        }
        if shape.len() != c.rank {
            return Err(err(
                c.name,
                format!(
                    "rank {} ({shape:?}), the convention says {}",
                    shape.len(),
                    c.rank
                ),
            ));
        }
        Ok(shape
            .iter()
            .map(|&d| usize::try_from(d).ok().filter(|&d| d > 0))
            .collect())
    };
    let names =
        |list: &[ort::value::Outlet]| list.iter().map(|o| o.name()).collect::<Vec<_>>().join(", ");
    for given in session.inputs() {
        if !inputs.iter().any(|(c, _)| c.name == given.name()) {
            let known: Vec<&str> = inputs.iter().map(|(c, _)| c.name).collect();
            return Err(err(
                given.name(),
                format!(
                    "input not in the convention (accepted inputs: {})",
                    known.join(", ")
                ),
            ));
        }
    }
    let mut in_dims = Vec::new();
    for (c, required) in inputs {
        match session.inputs().iter().find(|o| o.name() == c.name) {
            Some(o) => in_dims.push(Some(dims_of(o.dtype(), c)?)),
            None if *required => {
                return Err(err(
                    c.name,
                    format!(
                        "missing input (the model's inputs: {})",
                        names(session.inputs())
                    ),
                ));
            }
            None => in_dims.push(None),
        }
    }
    let mut out_dims = Vec::new();
    for c in outputs {
        match session.outputs().iter().find(|o| o.name() == c.name) {
            Some(o) => out_dims.push(dims_of(o.dtype(), c)?),
            None => {
                return Err(err(
                    c.name,
                    format!(
                        "missing output (the model's outputs: {})",
                        names(session.outputs())
                    ),
                ));
            }
        }
    }
    Ok((in_dims, out_dims))
}

/// A static dim that must equal `want`.
fn check_dim(
    file: &str,
    tensor: &str,
    dims: &Dims,
    axis: usize,
    want: usize,
    what: &str,
) -> Result<(), OnnxLoadError> {
    match dims[axis] {
        Some(d) if d != want => Err(OnnxLoadError::Tensor {
            file: file.to_string(),
            tensor: tensor.to_string(),
            reason: format!("axis {axis} is {d}, the manifest's {what} is {want}"),
        }),
        _ => Ok(()),
    }
}

/// Runs a bound session through the C API (no Rust-side allocation; see the module doc).
fn run_bound(
    session: &mut Session,
    binding: &IoBinding,
    file: &'static str,
) -> Result<(), ModelError> {
    run_bound_with(session, binding, std::ptr::null(), file)
}

/// [`run_bound`] with run options (`options` null: the defaults).
fn run_bound_with(
    session: &mut Session,
    binding: &IoBinding,
    options: *const ort::sys::OrtRunOptions,
    file: &'static str,
) -> Result<(), ModelError> {
    let api = ort::api();
    // SAFETY: the pointers come from live `ort` objects owned by the caller for the call's
    // duration (or are null, which ORT reads as the default options); `RunWithBinding`
    // needs the session exclusively, which `&mut` guarantees.
    let status = unsafe { (api.RunWithBinding)(session.ptr_mut(), options, binding.ptr()) };
    // SAFETY: `status` was just returned by an ORT API call; this takes ownership of it.
    unsafe { ort::Error::result_from_status(status) }.map_err(|e| ModelError::Run {
        file,
        reason: e.to_string(),
    })
}

fn new_tensor(dims: &[usize]) -> Result<Tensor<f32>, ModelError> {
    Tensor::<f32>::new(&Allocator::default(), dims.to_vec()).map_err(|e| ModelError::Run {
        file: "tensor",
        reason: e.to_string(),
    })
}

fn bind_err(file: &'static str) -> impl Fn(ort::Error) -> ModelError {
    move |e| ModelError::Run {
        file,
        reason: e.to_string(),
    }
}

/// The DiT's tensors for one shape, bound once.
struct DitRun {
    rows: usize,
    tp: usize,
    tokens: usize,
    binding: IoBinding,
    hidden: Tensor<f32>,
    timestep: Tensor<f32>,
    cond: Tensor<f32>,
    context: Option<Tensor<f32>>,
    velocity: Tensor<f32>,
    /// What `cond` holds now.
    cond_filled: Option<CondFill>,
}

/// What a DiT run's condition tensor was filled from: the commit, the `prompt_blend` and
/// `timbre_strength` knobs (as bits) and whether the batch is CFG-doubled.
struct CondFill {
    cond: Conditioning<OnnxCond>,
    blend: u32,
    timbre_strength: u32,
    cfg: bool,
}

impl CondFill {
    fn holds(&self, cond: &Conditioning<OnnxCond>, blend: f32, strength: f32, cfg: bool) -> bool {
        same_arc(&self.cond.prompt, &cond.prompt)
            && same_arc(&self.cond.timbre, &cond.timbre)
            && self.blend == blend.to_bits()
            && self.timbre_strength == strength.to_bits()
            && self.cfg == cfg
    }
}

struct DitState {
    session: Session,
    runs: Vec<DitRun>,
    /// SDE noise scratch, grown to the largest latent (only when a longer loop arrives).
    noise: Vec<f32>,
}

/// The decoder's tensors for one window length, bound once.
struct DecodeRun {
    window: usize,
    binding: IoBinding,
    latents: Tensor<f32>,
    /// [`FRAME_OFFSET`], where the decoder takes it.
    frame_offset: Option<Tensor<i64>>,
    /// The graph's output: `audio`, or `stft` for `istft` to invert.
    output: Tensor<f32>,
    istft: Option<Istft>,
}

struct DecoderState {
    session: Session,
    runs: Vec<DecodeRun>,
}

struct TextModel {
    session: Mutex<Session>,
    vocab: HashMap<String, i64>,
}

/// The `[timbre]` graph: a reference's latents in, condition rows out.
struct TimbreModel {
    session: Mutex<Session>,
    /// Latent frames of one reference (`[timbre] reference_frames`).
    reference_frames: usize,
    /// The graph's rows for an all-zero reference (no reference): `[tokens, D]`. Every
    /// condition ends with these, moved toward a committed reference's rows by
    /// `timbre_strength`.
    neutral: Vec<f32>,
    /// Rows the graph returns (`K`).
    tokens: usize,
}

/// A model bundle on ONNX Runtime (see the module doc).
pub struct OnnxModel {
    manifest: BundleManifest,
    library: PathBuf,
    /// The execution provider every session runs on.
    provider: Provider,
    /// Providers asked for before it that the library lacks, with the reason.
    skipped: Vec<(Provider, String)>,
    /// The DiT's condition width `D`.
    cond_width: usize,
    has_context: bool,
    /// The decoder takes [`FRAME_OFFSET`].
    decoder_takes_offset: bool,
    dit: Mutex<DitState>,
    /// [`Model::interrupt_denoise`]'s request: the DiT runs with these options, whose
    /// terminate flag ONNX Runtime checks between kernels.
    dit_interrupt: DitInterrupt,
    decoder: Mutex<DecoderState>,
    encoder: Option<Mutex<Session>>,
    text: Option<TextModel>,
    timbre: Option<TimbreModel>,
}

/// The DiT's run options and whether an interrupt is asked for (ORT's flag cannot be read).
struct DitInterrupt {
    options: RunOptions,
    asked: AtomicBool,
}

impl DitInterrupt {
    fn new() -> Result<Self, OnnxLoadError> {
        let options = RunOptions::new().map_err(|e| OnnxLoadError::Session {
            file: "dit".into(),
            reason: format!("run options: {e}"),
        })?;
        Ok(Self {
            options,
            asked: AtomicBool::new(false),
        })
    }

    fn ask(&self) {
        self.asked.store(true, Ordering::Release);
        // Only fails on an invalid pointer, which a live `RunOptions` is not.
        let _ = self.options.terminate();
    }

    fn clear(&self) {
        let _ = self.options.unterminate();
        self.asked.store(false, Ordering::Release);
    }

    fn asked(&self) -> bool {
        self.asked.load(Ordering::Acquire)
    }
}

impl OnnxModel {
    /// Loads the bundle in `dir`: validates its manifest, loads ONNX Runtime and every
    /// model, checks their tensors against the conventions, and runs one probe step and one
    /// probe decode (a bundle whose graph produces NaN is refused here).
    pub fn load(dir: &Path, options: OnnxOptions) -> Result<Self, OnnxLoadError> {
        Self::from_manifest(super::manifest::load(dir)?, options)
    }

    /// [`OnnxModel::load`] from an already-validated manifest.
    pub fn from_manifest(
        spec: BundleManifest,
        options: OnnxOptions,
    ) -> Result<Self, OnnxLoadError> {
        let (library, env) = runtime(options.library.as_deref())?;
        let dir = spec.dir.clone();
        let (provider, skipped) = choose_provider(&options.providers);
        let open = |file: &Path| open_session(&env, &dir, file, &options, provider);
        let g = spec.geometry;
        let c = g.latent_channels;
        if c == 0 || !c.is_multiple_of(CHANNEL_GROUPS) {
            return Err(OnnxLoadError::Tensor {
                file: "bundle.toml".into(),
                tensor: "latent_channels".into(),
                reason: format!("{c} is not a positive multiple of {CHANNEL_GROUPS}"),
            });
        }

        let dit_file = file_name(&dir, &spec.dit.file);
        let dit = open(&spec.dit.file)?;
        let (ins, outs) = check_tensors(
            &dit,
            &dit_file,
            &[
                (f32_tensor("hidden_states", 3), true),
                (f32_tensor("timestep", 1), true),
                (f32_tensor("encoder_hidden_states", 3), true),
                (f32_tensor("context_latents", 3), false),
            ],
            &[f32_tensor("velocity", 3)],
        )?;
        let hidden = ins[0].as_ref().expect("required");
        check_dim(&dit_file, "hidden_states", hidden, 2, c, "latent_channels")?;
        check_dim(&dit_file, "velocity", &outs[0], 2, c, "latent_channels")?;
        if let Some(ctx) = &ins[3] {
            check_dim(
                &dit_file,
                "context_latents",
                ctx,
                2,
                2 * c,
                "2 x latent_channels",
            )?;
        }
        let has_context = ins[3].is_some();
        let dit_cond_width = ins[2].as_ref().expect("required")[2];

        let dec_file = file_name(&dir, &spec.decoder.file);
        let decoder = open(&spec.decoder.file)?;
        let out_name = spec.decoder.output.tensor();
        let out_convention = match spec.decoder.output {
            DecoderOutput::Audio => f32_tensor(out_name, 3),
            DecoderOutput::Stft { .. } => f32_tensor(out_name, 5),
        };
        let (ins, outs) = check_tensors(
            &decoder,
            &dec_file,
            &[(f32_tensor("latents", 3), true), (FRAME_OFFSET, false)],
            &[out_convention],
        )?;
        let decoder_takes_offset = ins[1].is_some();
        if let DecoderOutput::Stft { n_fft, .. } = spec.decoder.output {
            check_dim(
                &dec_file,
                out_name,
                &outs[0],
                3,
                n_fft / 2 + 1,
                "n_fft / 2 + 1",
            )?;
            check_dim(&dec_file, out_name, &outs[0], 4, 2, "(re, im) pair")?;
        }
        check_dim(
            &dec_file,
            "latents",
            ins[0].as_ref().expect("required"),
            1,
            c,
            "latent_channels",
        )?;
        check_dim(
            &dec_file,
            out_name,
            &outs[0],
            1,
            g.audio_channels,
            "audio_channels",
        )?;

        let encoder = match &spec.encoder {
            Some(file) => {
                let name = file_name(&dir, file);
                let s = open(file)?;
                let (_, outs) = check_tensors(
                    &s,
                    &name,
                    &[(f32_tensor("audio", 3), true)],
                    &[f32_tensor("latents", 3)],
                )?;
                check_dim(&name, "latents", &outs[0], 1, c, "latent_channels")?;
                Some(Mutex::new(s))
            }
            None => None,
        };

        let mut text_width = None;
        let text = match &spec.text {
            Some(text) => {
                let name = file_name(&dir, &text.file);
                let s = open(&text.file)?;
                let (_, outs) = check_tensors(
                    &s,
                    &name,
                    &[(
                        Convention {
                            name: "ids",
                            ty: TensorElementType::Int64,
                            rank: 2,
                        },
                        true,
                    )],
                    &[f32_tensor("encoder_hidden_states", 3)],
                )?;
                text_width = outs[0][2];
                let mut vocab = HashMap::new();
                for (id, tag) in text.vocab.iter().enumerate() {
                    vocab.entry(tag.to_lowercase()).or_insert(id as i64);
                }
                Some(TextModel {
                    session: Mutex::new(s),
                    vocab,
                })
            }
            None => None,
        };
        let cond_width = match (dit_cond_width, text_width) {
            (Some(a), Some(b)) if a != b => {
                return Err(OnnxLoadError::Tensor {
                    file: dit_file,
                    tensor: "encoder_hidden_states".into(),
                    reason: format!("width {a}, the text model's output width is {b}"),
                });
            }
            (Some(d), _) | (None, Some(d)) => d,
            (None, None) => {
                return Err(OnnxLoadError::Tensor {
                    file: dit_file,
                    tensor: "encoder_hidden_states".into(),
                    reason: "its width (axis 2) must be static in the DiT or the text model".into(),
                });
            }
        };
        let timbre = match &spec.timbre {
            Some(t) => {
                let name = file_name(&dir, &t.file);
                let mut s = open(&t.file)?;
                let (_, outs) = check_tensors(
                    &s,
                    &name,
                    &[(f32_tensor("reference_latents", 3), true)],
                    &[f32_tensor("encoder_hidden_states", 3)],
                )?;
                check_dim(
                    &name,
                    "encoder_hidden_states",
                    &outs[0],
                    2,
                    cond_width,
                    "the DiT's condition width",
                )?;
                let neutral_reference = vec![0.0f32; t.reference_frames * c];
                let (tokens, neutral) =
                    run_timbre(&mut s, t.reference_frames, c, cond_width, neutral_reference)
                        .map_err(|reason| OnnxLoadError::Tensor {
                            file: name,
                            tensor: "encoder_hidden_states".into(),
                            reason: format!("on an all-zero reference: {reason}"),
                        })?;
                Some(TimbreModel {
                    session: Mutex::new(s),
                    reference_frames: t.reference_frames,
                    neutral,
                    tokens,
                })
            }
            None => None,
        };

        let model = Self {
            manifest: spec,
            library,
            provider,
            skipped,
            cond_width,
            has_context,
            decoder_takes_offset,
            dit: Mutex::new(DitState {
                session: dit,
                runs: Vec::new(),
                noise: Vec::new(),
            }),
            dit_interrupt: DitInterrupt::new()?,
            decoder: Mutex::new(DecoderState {
                session: decoder,
                runs: Vec::new(),
            }),
            encoder,
            text,
            timbre,
        };
        model.probe().map_err(OnnxLoadError::Probe)?;
        Ok(model)
    }

    /// One DiT step on noise and one decode, so a graph that cannot run at the loop's
    /// shapes, or produces NaN, is refused at load rather than at the first tick.
    fn probe(&self) -> Result<(), ModelError> {
        let frames =
            (self.manifest.decoder.context_frames * 2 + 1).max(self.manifest.dit.t_multiple);
        let c = self.manifest.geometry.latent_channels;
        let mut x = OnnxLatents {
            frames,
            data: vec![0.0; frames * c],
        };
        crate::rng::fill_gaussian(
            crate::rng::NoiseKey {
                seed: 0,
                window: 0,
                step: 0,
            },
            0,
            &mut x.data,
        );
        let knobs = crate::knobs::KnobSnapshot::defaults();
        let cond = Conditioning::default();
        let shared = StepShared::<Self> {
            cond: &cond,
            knobs: &knobs,
            source: None,
            sde_curve: None,
        };
        let mut batch = [SlotStep {
            x: &mut x,
            t_curr: 1.0,
            t_next: 0.5,
            t_start: 1.0,
            sde: false,
            x0_lock: 0.0,
            noise: crate::rng::NoiseKey {
                seed: 0,
                window: 0,
                step: 1,
            },
        }];
        self.step_batch(&mut batch, &shared)?;
        let hop = self.manifest.geometry.samples_per_latent_frame()
            * self.manifest.geometry.audio_channels;
        let mut out = vec![0.0f32; hop];
        self.decode_chunk_window(&x, None, &[1.0; 8], false, 0, 1, &mut out)
            .map_err(|e| match e {
                DecodeError::Backend(reason) => ModelError::Run {
                    file: "decoder",
                    reason,
                },
                other => ModelError::Run {
                    file: "decoder",
                    reason: other.to_string(),
                },
            })
    }

    /// The model and its provider, in words.
    pub fn describe(&self) -> String {
        format!(
            "{} (onnx bundle, ONNX Runtime {} provider, {})",
            self.manifest.name,
            self.provider.label(),
            self.library.display()
        )
    }

    /// The execution provider every session runs on.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// Providers asked for ahead of [`OnnxModel::provider`] that the library lacks, each
    /// with the reason it was skipped.
    pub fn skipped_providers(&self) -> &[(Provider, String)] {
        &self.skipped
    }

    /// The knobs this bundle cannot honour (they change nothing it plays), in knob-table
    /// order: `guidance` and `cfg_rescale` with `guidance = "none"`; `prompt_blend` without
    /// `[text]` (there is no prompt to blend); `x0_target` without `[encoder]` (no source
    /// to lock to); `timbre_strength` without `[timbre]`; `structure_strength` always (this
    /// backend takes no structure reference).
    pub fn inert_knobs(&self) -> Vec<&'static str> {
        let m = &self.manifest;
        let no_guidance = m.sampler.guidance == Guidance::None;
        [
            (KnobId::guidance, no_guidance),
            (KnobId::cfg_rescale, no_guidance),
            (KnobId::x0_target, m.encoder.is_none()),
            (KnobId::timbre_strength, m.timbre.is_none()),
            (KnobId::structure_strength, true),
            (KnobId::prompt_blend, m.text.is_none()),
        ]
        .into_iter()
        .filter(|&(_, inert)| inert)
        .map(|(id, _)| id.spec().name)
        .collect()
    }

    /// The bundle's manifest.
    pub fn manifest(&self) -> &BundleManifest {
        &self.manifest
    }

    /// The batched step: what [`Model::denoise_batch`] runs (the runner counts its errors).
    /// On an error no slot changed.
    fn step_batch(
        &self,
        batch: &mut [SlotStep<'_, OnnxLatents>],
        shared: &StepShared<'_, Self>,
    ) -> Result<(), ModelError> {
        let Some(frames) = batch.first().map(|s| s.x.frames) else {
            return Ok(());
        };
        let c = self.manifest.geometry.latent_channels;
        let want = frames * c;
        for (slot, s) in batch.iter().enumerate() {
            if s.x.data.len() != want {
                return Err(ModelError::Shape {
                    slot,
                    got: s.x.data.len(),
                    want,
                });
            }
        }
        let guidance = shared.knobs.f32(KnobId::guidance);
        let cfg = self.manifest.sampler.guidance == Guidance::Cfg && guidance != 1.0;
        let b = batch.len();
        let rows = if cfg { 2 * b } else { b };
        let m = self.manifest.dit.t_multiple.max(1);
        let tp = frames.div_ceil(m) * m;
        let (prompt_a, prompt_b) = prompt_embeddings(shared.cond);
        let prompt_tokens = prompt_a.map_or(1, |p| p.0).max(prompt_b.map_or(1, |p| p.0));
        let tokens = prompt_tokens + self.timbre.as_ref().map_or(0, |t| t.tokens);
        let d = self.cond_width;
        let blend = shared.knobs.f32(KnobId::prompt_blend);
        let strength = shared.knobs.f32(KnobId::timbre_strength);
        let source = shared
            .source
            .filter(|s| s.data.len() == want)
            .map(|s| &s.data[..]);

        let mut state = self.dit.lock_unpoisoned();
        let DitState {
            session,
            runs,
            noise,
        } = &mut *state;
        if noise.len() < want {
            noise.resize(want, 0.0);
        }
        let at = match runs
            .iter()
            .position(|r| (r.rows, r.tp, r.tokens) == (rows, tp, tokens))
        {
            Some(i) => i,
            None => {
                if runs.len() == BOUND_SHAPES {
                    runs.remove(0);
                }
                runs.push(self.new_dit_run(session, rows, tp, tokens)?);
                runs.len() - 1
            }
        };
        let run = &mut runs[at];

        // Inputs: every row's latent (CFG: the same latents again), zero padding past T.
        let (_, hidden) = run.hidden.extract_tensor_mut();
        for (r, row) in hidden.chunks_exact_mut(tp * c).enumerate() {
            row[..want].copy_from_slice(&batch[r % b].x.data);
            row[want..].fill(0.0);
        }
        let (_, ts) = run.timestep.extract_tensor_mut();
        for (r, t) in ts.iter_mut().enumerate() {
            *t = batch[r % b].t_curr;
        }
        let filled_now = run
            .cond_filled
            .as_ref()
            .is_some_and(|f| f.holds(shared.cond, blend, strength, cfg));
        if !filled_now {
            let (_, ehs) = run.cond.extract_tensor_mut();
            let row_len = tokens * d;
            let reference = shared.cond.timbre.as_deref().map(OnnxCond::rows);
            for (r, row) in ehs.chunks_exact_mut(row_len).enumerate() {
                if r >= b {
                    row.fill(0.0); // the null condition
                    continue;
                }
                let (prompt, timbre) = row.split_at_mut(prompt_tokens * d);
                fill_condition(prompt, d, prompt_a, prompt_b, blend);
                if let Some(t) = &self.timbre {
                    fill_timbre(timbre, &t.neutral, reference, strength);
                }
            }
            run.cond_filled = Some(CondFill {
                cond: shared.cond.clone(),
                blend: blend.to_bits(),
                timbre_strength: strength.to_bits(),
                cfg,
            });
        }
        if let Some(ctx) = run.context.as_mut() {
            let (_, ctx) = ctx.extract_tensor_mut();
            for row in ctx.chunks_exact_mut(tp * 2 * c) {
                row.fill(0.0);
                if let Some(src) = source {
                    for (f, frame) in row.chunks_exact_mut(2 * c).take(frames).enumerate() {
                        frame[..c].copy_from_slice(&src[f * c..(f + 1) * c]);
                        frame[c..].fill(1.0);
                    }
                }
            }
        }

        if self.dit_interrupt.asked() {
            return Err(ModelError::Interrupted);
        }
        run_bound_with(
            session,
            &run.binding,
            self.dit_interrupt.options.ptr(),
            "dit",
        )
        .map_err(|e| {
            if self.dit_interrupt.asked() {
                ModelError::Interrupted
            } else {
                e
            }
        })?;

        let (_, velocity) = run.velocity.extract_tensor_mut();
        for (r, row) in velocity.chunks_exact(tp * c).enumerate() {
            if row[..want].iter().any(|v| !v.is_finite()) {
                return Err(ModelError::NonFinite {
                    file: "dit",
                    tensor: "velocity",
                    row: r,
                });
            }
        }
        let (cond_rows, uncond_rows) = velocity.split_at_mut(b * tp * c);
        let rescale = shared.knobs.f32(KnobId::cfg_rescale);
        let curve = shared.sde_curve.map(|c| &c[..]);
        for (i, slot) in batch.iter_mut().enumerate() {
            let v = &mut cond_rows[i * tp * c..i * tp * c + want];
            if cfg {
                let u = &uncond_rows[i * tp * c..i * tp * c + want];
                sampler::combine_cfg(v, u, guidance, rescale);
            }
            let step = FlowStep::of(slot);
            sampler::flow_update(&mut slot.x.data, v, c, &step, source, curve, noise);
        }
        Ok(())
    }

    fn new_dit_run(
        &self,
        session: &Session,
        rows: usize,
        tp: usize,
        tokens: usize,
    ) -> Result<DitRun, ModelError> {
        let c = self.manifest.geometry.latent_channels;
        let err = bind_err("dit");
        let hidden = new_tensor(&[rows, tp, c])?;
        let timestep = new_tensor(&[rows])?;
        let cond = new_tensor(&[rows, tokens, self.cond_width])?;
        let context = if self.has_context {
            Some(new_tensor(&[rows, tp, 2 * c])?)
        } else {
            None
        };
        let mut velocity = new_tensor(&[rows, tp, c])?;
        let mut binding = session.create_binding().map_err(&err)?;
        binding.bind_input("hidden_states", &hidden).map_err(&err)?;
        binding.bind_input("timestep", &timestep).map_err(&err)?;
        binding
            .bind_input("encoder_hidden_states", &cond)
            .map_err(&err)?;
        if let Some(ctx) = &context {
            binding.bind_input("context_latents", ctx).map_err(&err)?;
        }
        binding
            .bind_output("velocity", &mut velocity)
            .map_err(&err)?;
        Ok(DitRun {
            rows,
            tp,
            tokens,
            binding,
            hidden,
            timestep,
            cond,
            context,
            velocity,
            cond_filled: None,
        })
    }

    fn new_decode_run(&self, session: &Session, window: usize) -> Result<DecodeRun, ModelError> {
        let g = self.manifest.geometry;
        let err = bind_err("decoder");
        let latents = new_tensor(&[1, g.latent_channels, window])?;
        let (a, samples) = (g.audio_channels, window * g.samples_per_latent_frame());
        let (mut output, istft) = match self.manifest.decoder.output {
            DecoderOutput::Audio => (new_tensor(&[1, a, samples])?, None),
            DecoderOutput::Stft { n_fft, hop } => {
                let frames = samples / hop;
                let istft = Istft::new(n_fft, hop, a, frames);
                let dims = [1, a, frames, istft.bins(), 2];
                (new_tensor(&dims)?, Some(istft))
            }
        };
        let mut binding = session.create_binding().map_err(&err)?;
        binding.bind_input("latents", &latents).map_err(&err)?;
        let frame_offset = if self.decoder_takes_offset {
            let offset = Tensor::<i64>::new(&Allocator::default(), vec![1usize]).map_err(&err)?;
            binding
                .bind_input(FRAME_OFFSET.name, &offset)
                .map_err(&err)?;
            Some(offset)
        } else {
            None
        };
        let name = self.manifest.decoder.output.tensor();
        binding.bind_output(name, &mut output).map_err(&err)?;
        Ok(DecodeRun {
            window,
            binding,
            latents,
            frame_offset,
            output,
            istft,
        })
    }
}

/// Prompt A's and B's embeddings `(tokens, [tokens, D])`, if committed.
type Embedding<'a> = (usize, &'a [f32]);

fn prompt_embeddings(
    cond: &Conditioning<OnnxCond>,
) -> (Option<Embedding<'_>>, Option<Embedding<'_>>) {
    match &cond.prompt {
        Some(p) => (Some(p.a.cond.rows()), p.b.as_ref().map(|b| b.cond.rows())),
        None => (None, None),
    }
}

/// Whether `a` and `b` are the same commit (or both absent).
fn same_arc<T>(a: &Option<Arc<T>>, b: &Option<Arc<T>>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => Arc::ptr_eq(x, y),
        (None, None) => true,
        _ => false,
    }
}

/// A condition row's timbre rows: the neutral rows (no reference), moved toward the
/// reference's by `strength`; the neutral rows alone without a reference (or one of another
/// row count, which [`OnnxModel::encode_timbre`] never makes).
fn fill_timbre(rows: &mut [f32], neutral: &[f32], reference: Option<Embedding<'_>>, strength: f32) {
    rows.copy_from_slice(neutral);
    if let Some((_, r)) = reference.filter(|(_, r)| r.len() == rows.len()) {
        for (x, y) in rows.iter_mut().zip(r) {
            *x += strength * (y - *x);
        }
    }
}

/// One batch row of `encoder_hidden_states`: prompt A, moved toward B by `blend` (each
/// padded with zero rows to the row's token count); zeros (the null condition) without a
/// prompt.
fn fill_condition(
    row: &mut [f32],
    d: usize,
    a: Option<Embedding<'_>>,
    b: Option<Embedding<'_>>,
    blend: f32,
) {
    row.fill(0.0);
    let Some((_, a)) = a else {
        return;
    };
    row[..a.len()].copy_from_slice(a);
    if let Some((_, b)) = b.filter(|_| blend > 0.0) {
        debug_assert_eq!(row.len() % d.max(1), 0);
        for (i, x) in row.iter_mut().enumerate() {
            let y = b.get(i).copied().unwrap_or(0.0);
            *x += blend * (y - *x);
        }
    }
}

impl OnnxModel {
    /// Encodes `audio` (the bundle's rate and channels) into latents; `field` names what it is
    /// in a refusal (`source`, `timbre`).
    fn encode_audio(
        &self,
        field: &'static str,
        audio: AudioView<'_>,
    ) -> Result<OnnxLatents, EncodeError> {
        audio.validate(field)?;
        let g = self.manifest.geometry;
        let refused = |reason: String| EncodeError::Refused { field, reason };

        let Some(encoder) = &self.encoder else {
            return Err(refused(format!(
                "bundle `{}` has no encoder",
                self.manifest.name
            )));
        };
        if audio.sample_rate != g.sample_rate || audio.channels != g.audio_channels {
            return Err(refused(format!(
                "{} Hz x {} channels given, the bundle takes {} Hz x {} (convert first)",
                audio.sample_rate, audio.channels, g.sample_rate, g.audio_channels
            )));
        }
        // A whole number of latent frames: the loop is periodic, so wrap to pad.
        let hop = g.samples_per_latent_frame();
        let given = audio.frames();
        let frames = ((given as f64 / hop as f64).round() as usize).max(1);
        let s = frames * hop;
        let a = g.audio_channels;
        let mut planar = vec![0.0f32; a * s];
        for ch in 0..a {
            for i in 0..s {
                planar[ch * s + i] = audio.samples[(i % given) * a + ch];
            }
        }
        let input = Tensor::from_array(([1usize, a, s], planar.into_boxed_slice()))
            .map_err(|e| refused(e.to_string()))?;
        let mut session = encoder.lock_unpoisoned();
        let outputs = session
            .run(ort::inputs!["audio" => input])
            .map_err(|e| refused(format!("encoder: {e}")))?;
        let (shape, data) = outputs["latents"]
            .try_extract_tensor::<f32>()
            .map_err(|e| refused(format!("encoder: {e}")))?;
        let c = g.latent_channels;
        let want = [1, c as i64, frames as i64];
        if shape[..] != want {
            return Err(refused(format!(
                "encoder output has shape {shape:?}, expected {want:?}"
            )));
        }
        if data.iter().any(|v| !v.is_finite()) {
            return Err(refused("encoder output holds a non-finite value".into()));
        }
        let mut out = vec![0.0f32; frames * c];
        for ch in 0..c {
            for f in 0..frames {
                out[f * c + ch] = data[ch * frames + f];
            }
        }
        Ok(OnnxLatents { frames, data: out })
    }
}

/// Runs the timbre graph on `reference` (`[frames, C]` frame-major): `(rows, [rows, width])`.
fn run_timbre(
    session: &mut Session,
    frames: usize,
    channels: usize,
    width: usize,
    reference: Vec<f32>,
) -> Result<(usize, Vec<f32>), String> {
    let input = Tensor::from_array(([1usize, frames, channels], reference.into_boxed_slice()))
        .map_err(|e| e.to_string())?;
    let outputs = session
        .run(ort::inputs!["reference_latents" => input])
        .map_err(|e| format!("timbre graph: {e}"))?;
    condition_rows(&outputs, "timbre graph", width)
}

/// A text or timbre graph's `encoder_hidden_states`, checked: `[1, rows >= 1, width]` and
/// finite. `(rows, [rows, width] row-major)`; `graph` names it in the error.
fn condition_rows(
    outputs: &ort::session::SessionOutputs<'_>,
    graph: &str,
    width: usize,
) -> Result<(usize, Vec<f32>), String> {
    let (shape, data) = outputs["encoder_hidden_states"]
        .try_extract_tensor::<f32>()
        .map_err(|e| format!("{graph}: {e}"))?;
    let rows = match shape[..] {
        [1, rows, w] if rows >= 1 && w == width as i64 => rows as usize,
        _ => {
            return Err(format!(
                "{graph} output has shape {shape:?}, expected [1, rows >= 1, {width}]"
            ));
        }
    };
    if data.iter().any(|v| !v.is_finite()) {
        return Err(format!("{graph} output holds a non-finite value"));
    }
    Ok((rows, data.to_vec()))
}

impl ConditionEncoder for OnnxModel {
    type Cond = OnnxCond;

    fn default_prompt(&self) -> Option<&str> {
        self.manifest.text.as_ref()?.default_prompt.as_deref()
    }

    fn encode_prompt(&self, tags: &str) -> Result<PromptEncoding<OnnxCond>, EncodeError> {
        let Some(text) = &self.text else {
            return Err(EncodeError::Refused {
                field: "tags",
                reason: format!("bundle `{}` has no text model", self.manifest.name),
            });
        };
        let mut ids = Vec::new();
        let mut unknown_words = Vec::new();
        for word in prompt_words(tags) {
            match text.vocab.get(&word.to_lowercase()) {
                Some(&id) => ids.push(id),
                None => unknown_words.push(word.to_owned()),
            }
        }
        if ids.is_empty() {
            return Err(EncodeError::Refused {
                field: "tags",
                reason: format!(
                    "no word of the prompt is in bundle `{}`'s vocabulary (unknown: {})",
                    self.manifest.name,
                    unknown_words.join(" ")
                ),
            });
        }
        let refused = |reason: String| EncodeError::Refused {
            field: "tags",
            reason,
        };
        let input = Tensor::from_array(([1usize, ids.len()], ids.into_boxed_slice()))
            .map_err(|e| refused(e.to_string()))?;
        let mut session = text.session.lock_unpoisoned();
        let outputs = session
            .run(ort::inputs!["ids" => input])
            .map_err(|e| refused(format!("text model: {e}")))?;
        // The condition's length is the graph's: one row per tag, or more (ACE-Step's text
        // graph wraps the tags in its caption template and adds a lyric's rows).
        let (tokens, embedding) =
            condition_rows(&outputs, "text model", self.cond_width).map_err(refused)?;
        Ok(PromptEncoding {
            cond: OnnxCond::Prompt { tokens, embedding },
            unknown_words,
        })
    }

    fn encode_timbre(&self, audio: AudioView<'_>) -> Result<OnnxCond, EncodeError> {
        let refused = |reason: String| EncodeError::Refused {
            field: "timbre",
            reason,
        };
        let Some(timbre) = &self.timbre else {
            return Err(refused(format!(
                "bundle `{}` takes no timbre reference",
                self.manifest.name
            )));
        };
        let latents = self.encode_audio("timbre", audio)?;
        // The graph takes `reference_frames` frames: a shorter reference repeats (it is a
        // sound's colour, not a part of the loop), a longer one is cut.
        let c = self.manifest.geometry.latent_channels;
        let f = timbre.reference_frames;
        let reference: Vec<f32> = (0..f)
            .flat_map(|i| {
                let at = (i % latents.frames) * c;
                latents.data[at..at + c].iter().copied()
            })
            .collect();
        let mut session = timbre.session.lock_unpoisoned();
        let (tokens, embedding) =
            run_timbre(&mut session, f, c, self.cond_width, reference).map_err(refused)?;
        if tokens != timbre.tokens {
            return Err(refused(format!(
                "the timbre graph returned {tokens} rows; it returned {} for no reference",
                timbre.tokens
            )));
        }
        Ok(OnnxCond::Timbre { tokens, embedding })
    }

    fn encode_structure(&self, _audio: AudioView<'_>) -> Result<OnnxCond, EncodeError> {
        Err(EncodeError::Refused {
            field: "structure",
            reason: format!(
                "bundle `{}` takes no structure reference",
                self.manifest.name
            ),
        })
    }
}

impl Model for OnnxModel {
    type Latents = OnnxLatents;
    type Curve = Vec<f32>;

    fn geometry(&self) -> Geometry {
        self.manifest.geometry
    }

    fn encode_source(&self, audio: AudioView<'_>) -> Result<OnnxLatents, EncodeError> {
        self.encode_audio("source", audio)
    }

    fn latent_frames(&self, latents: &OnnxLatents) -> usize {
        latents.frames
    }

    fn slice_latents(
        &self,
        latents: &OnnxLatents,
        start_frame: usize,
        frames: usize,
    ) -> OnnxLatents {
        let c = self.manifest.geometry.latent_channels;
        OnnxLatents {
            frames,
            data: crate::model::slice_host_frames(&latents.data, c, start_frame, frames),
        }
    }

    fn latents_to_host(&self, latents: &OnnxLatents) -> Vec<f32> {
        latents.data.clone()
    }

    fn upload_curve(&self, host: &[f32]) -> Vec<f32> {
        host.to_vec()
    }

    fn start_slot(&self, start: SlotStart<'_, OnnxLatents>) -> OnnxLatents {
        let c = self.manifest.geometry.latent_channels;
        let data = sampler::start_slot_host(&start, c, |l: &OnnxLatents| &l.data[..]);
        OnnxLatents {
            frames: start.frames,
            data,
        }
    }

    fn denoise_batch(
        &self,
        batch: &mut [SlotStep<'_, OnnxLatents>],
        shared: &StepShared<'_, Self>,
    ) -> Result<(), ModelError> {
        self.step_batch(batch, shared)
    }

    fn interrupt_denoise(&self) {
        self.dit_interrupt.ask();
    }

    fn clear_denoise_interrupt(&self) {
        self.dit_interrupt.clear();
    }

    fn decode_context_frames(&self) -> usize {
        self.manifest.decoder.context_frames
    }

    fn decode_chunk_window(
        &self,
        latents: &OnnxLatents,
        place: Option<&ChunkPlace<'_, OnnxLatents>>,
        gains: &[f32; 8],
        all_zero: bool,
        start_frame: usize,
        frames: usize,
        out: &mut [f32],
    ) -> Result<(), DecodeError> {
        let g = self.manifest.geometry;
        let (c, a, hop) = (
            g.latent_channels,
            g.audio_channels,
            g.samples_per_latent_frame(),
        );
        check_decode_request(latents.frames, frames, hop * a, out.len())?;
        if all_zero {
            out.fill(0.0);
            return Ok(());
        }
        let total = latents.frames;
        let start = start_frame % total;
        let ctx = self.manifest.decoder.context_frames;
        let window = frames + 2 * ctx;
        // The latent frame at position `p` relative to the chunk's start (may be negative
        // or past its end): wrapping in the loop, or from the neighbours of a walk chunk.
        let frame_at = |p: isize| -> &[f32] {
            let (src, n, i) = match place {
                Some(pl) if p < 0 && pl.before.frames > 0 => (pl.before, pl.before.frames, p),
                Some(pl) if p >= total as isize && pl.after.frames > 0 => {
                    (pl.after, pl.after.frames, p - total as isize)
                }
                _ => (latents, total, p),
            };
            let i = i.rem_euclid(n as isize) as usize;
            &src.data[i * c..(i + 1) * c]
        };
        let mut state = self.decoder.lock_unpoisoned();
        let DecoderState { session, runs } = &mut *state;
        let at = match runs.iter().position(|r| r.window == window) {
            Some(i) => i,
            None => {
                if runs.len() == BOUND_SHAPES {
                    runs.remove(0);
                }
                let run = self
                    .new_decode_run(session, window)
                    .map_err(|e| DecodeError::Backend(e.to_string()))?;
                runs.push(run);
                runs.len() - 1
            }
        };
        let run = &mut runs[at];
        if let Some(offset) = &mut run.frame_offset {
            // The window's first frame in the loop (negative where it reaches back past the
            // loop's start): one count for every window, so a partial continues across them.
            let chunk_start = place.map_or(0, |p| p.loop_offset);
            offset.extract_tensor_mut().1[0] = (chunk_start + start) as i64 - ctx as i64;
        }
        let group = c / CHANNEL_GROUPS;
        let (_, lat) = run.latents.extract_tensor_mut();
        for w in 0..window {
            let frame = frame_at(start as isize - ctx as isize + w as isize);
            for (ch, v) in frame.iter().enumerate() {
                lat[ch * window + w] = v * gains[ch / group];
            }
        }
        run_bound(session, &run.binding, "decoder")
            .map_err(|e| DecodeError::Backend(e.to_string()))?;
        let tensor = self.manifest.decoder.output.tensor();
        let (_, output) = run.output.extract_tensor();
        let audio = match &mut run.istft {
            None => output,
            Some(istft) => istft.invert(output),
        };
        let samples = window * hop;
        let kept =
            |ch: usize| &audio[ch * samples + ctx * hop..ch * samples + (ctx + frames) * hop];
        if (0..a).any(|ch| kept(ch).iter().any(|v| !v.is_finite())) {
            let e = ModelError::NonFinite {
                file: "decoder",
                tensor,
                row: 0,
            };
            return Err(DecodeError::Backend(e.to_string()));
        }
        for ch in 0..a {
            for (i, v) in kept(ch).iter().enumerate() {
                out[i * a + ch] = *v;
            }
        }
        Ok(())
    }
}
