//! Engine model selection (`--engine builtin-cpu | builtin-cuda | auto | bundle | off`) and
//! the running backend's name for `/status` and the log.
//!
//! The built-in model: in a build with the `cuda` feature it is
//! [`FailoverModel<CudaModel>`](latentd_engine::model::cuda::failover::FailoverModel), the
//! CUDA model with the built-in CPU model behind it (a device failure at run time moves the
//! engine to the CPU; the ring keeps playing; `/status` and the log say so), or the CPU model
//! alone for `builtin-cpu`. Without the feature it is the built-in CPU model, `builtin-cuda`
//! is refused with the reason and `auto` picks the CPU.
//!
//! The bundle engine runs a `latentd-bundle/1` folder on ONNX Runtime
//! ([`OnnxModel`], docs/bundles.md). A bundle or runtime that cannot load is a start error
//! (one line, exit 2), never a silent fallback to another model.
//!
//! Runtime model faults (a tick whose model run failed or produced NaN / Inf: the slots were
//! left unchanged, the loop keeps playing) are counted by the engine, not here: see
//! `EngineStats::model_faults`, which the serve loop reports.
//!
//! Threading: called once at start; the name closure is called from any thread.

use std::path::PathBuf;
use std::sync::Arc;

use latentd_engine::knobs::KnobId;
use latentd_engine::model::Geometry;
use latentd_engine::model::bundle::onnx::{OnnxModel, OnnxOptions, Provider};

/// Which engine generates into the ring (`--engine`, `[engine] backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EngineChoice {
    /// The built-in model on the CPU.
    BuiltinCpu,
    /// The built-in model on an NVIDIA GPU (CUDA; needs a build with `--features cuda`),
    /// falling back to the CPU if the device fails while running.
    BuiltinCuda,
    /// CUDA when a usable device exists, else the CPU (the choice is logged).
    Auto,
    /// A model bundle on ONNX Runtime (`--model DIR` / `[model] bundle`, docs/bundles.md).
    Bundle,
    /// No generation: the ring plays the source (or silence) untouched; OSC still steers
    /// the loop band and transport.
    Off,
}

/// The engine without `--engine`, `--model` or `[engine] backend`.
pub const DEFAULT_ENGINE: EngineChoice = EngineChoice::BuiltinCpu;

impl EngineChoice {
    /// The spelling on the command line and in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BuiltinCpu => "builtin-cpu",
            Self::BuiltinCuda => "builtin-cuda",
            Self::Auto => "auto",
            Self::Bundle => "bundle",
            Self::Off => "off",
        }
    }
}

/// The model bundle the `bundle` engine runs, and how ONNX Runtime runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSettings {
    /// The bundle folder (`--model DIR`, `[model] bundle`).
    pub bundle: Option<PathBuf>,
    /// The ONNX Runtime library (`[model] runtime`); `None`: `ORT_DYLIB_PATH`, else the
    /// places docs/bundles.md lists.
    pub runtime: Option<PathBuf>,
    /// Intra-op threads of each ONNX Runtime session (`[model] threads`).
    pub threads: usize,
    /// Execution providers to try in order (`--ep`, `[model] ep`); CPU is the last resort.
    pub ep: Vec<Provider>,
}

/// Default intra-op threads per session: one core, leaving the rest to the audio server.
pub const DEFAULT_MODEL_THREADS: usize = 1;
/// The execution providers without `--ep` or `[model] ep`: the CPU alone.
pub const DEFAULT_EP: Provider = Provider::Cpu;
/// Accepted intra-op threads per session.
pub const MODEL_THREADS_RANGE: std::ops::RangeInclusive<usize> = 1..=64;

/// The backend running now, in words (changes once if the device fails).
pub type BackendName = Arc<dyn Fn() -> String + Send + Sync>;

/// Why `builtin-cuda` is refused by a build without the `cuda` feature.
const NO_CUDA: &str = "--engine builtin-cuda: this latentd was built without CUDA support (build with --features cuda)";

/// Why `bundle` is refused without a bundle.
pub const NO_BUNDLE: &str =
    "engine bundle: no bundle given (--model DIR or config key model.bundle)";

/// Whether this build can run `engine` (with `model`) at all: `builtin-cuda` needs the
/// `cuda` feature, `bundle` a bundle. Whether a device is usable, or a bundle loads, is
/// only known when the model is built.
pub fn check_choice(engine: EngineChoice, model: &ModelSettings) -> Result<(), String> {
    match engine {
        EngineChoice::BuiltinCuda if !cfg!(feature = "cuda") => Err(NO_CUDA.into()),
        EngineChoice::Bundle if model.bundle.is_none() => Err(NO_BUNDLE.into()),
        _ => Ok(()),
    }
}

/// The model the engine runs, chosen at start; `service::start_engine` is generic over it.
pub enum ChosenModel {
    /// The built-in model (see the module doc).
    Builtin(Arc<BuiltinDaemonModel>),
    /// A model bundle on ONNX Runtime.
    Bundle(Arc<OnnxModel>),
}

impl ChosenModel {
    /// The model's shapes.
    pub fn geometry(&self) -> Geometry {
        use latentd_engine::model::Model;
        match self {
            Self::Builtin(m) => m.geometry(),
            Self::Bundle(m) => m.geometry(),
        }
    }

    /// Knobs the model cannot honour (`/status.reply`, OSCQuery); none for the built-in
    /// model, which acts on every knob.
    pub fn inert_knobs(&self) -> Vec<String> {
        match self {
            Self::Builtin(_) => Vec::new(),
            Self::Bundle(m) => m.inert_knobs().into_iter().map(String::from).collect(),
        }
    }

    /// The knobs the model asks to start at, before the config and the saved session: a
    /// bundle's `[sampler]` defaults (docs/bundles.md); none for the built-in model, which
    /// starts at the knob table's defaults.
    pub fn start_knobs(&self) -> Vec<(KnobId, f64)> {
        match self {
            Self::Builtin(_) => Vec::new(),
            Self::Bundle(m) => m.manifest().sampler.start_knobs().to_vec(),
        }
    }

    /// The walk-mode chunk the model asks for, seconds: a bundle's `[dit] chunk_frames`
    /// (docs/bundles.md); `None` (the engine's default) for the built-in model and for a
    /// bundle that names none.
    pub fn walk_chunk_s(&self) -> Option<f64> {
        match self {
            Self::Builtin(_) => None,
            Self::Bundle(m) => m.manifest().walk_chunk_s(),
        }
    }
}

/// Builds the model `engine` (with `settings` for a bundle) asks for (see the module doc).
pub fn build_model(
    engine: EngineChoice,
    settings: &ModelSettings,
) -> Result<(ChosenModel, BackendName), String> {
    if engine != EngineChoice::Bundle {
        let (model, name) = imp::build_builtin(engine)?;
        return Ok((ChosenModel::Builtin(model), name));
    }
    let dir = settings.bundle.as_deref().ok_or(NO_BUNDLE)?;
    let options = OnnxOptions {
        library: settings.runtime.clone(),
        intra_threads: settings.threads,
        providers: settings.ep.clone(),
        ..OnnxOptions::default()
    };
    let model =
        OnnxModel::load(dir, options).map_err(|e| format!("model {}: {e}", dir.display()))?;
    for (provider, why) in model.skipped_providers() {
        log::warn!(
            "execution provider {} skipped: {why}; trying the next",
            provider.name()
        );
    }
    let name = format!("bundle: {}", model.describe());
    log::info!("engine backend: {name}");
    let inert = model.inert_knobs();
    if !inert.is_empty() {
        log::info!(
            "bundle {}: inert knobs (the bundle cannot honour them): {}",
            model.manifest().name,
            inert.join(", ")
        );
    }
    Ok((
        ChosenModel::Bundle(Arc::new(model)),
        Arc::new(move || name.clone()),
    ))
}

#[cfg(feature = "cuda")]
mod imp {
    use super::*;
    use latentd_engine::model::cuda::failover::FailoverModel;
    use latentd_engine::model::cuda::{CudaModel, cuda_available};

    /// The built-in model the daemon runs.
    pub type BuiltinDaemonModel = FailoverModel<CudaModel>;

    /// Builds the built-in model `choice` asks for (see the module doc).
    pub fn build_builtin(
        choice: EngineChoice,
    ) -> Result<(Arc<BuiltinDaemonModel>, BackendName), String> {
        let model = match choice {
            EngineChoice::BuiltinCpu | EngineChoice::Off | EngineChoice::Bundle => {
                FailoverModel::cpu_only()
            }
            EngineChoice::BuiltinCuda => FailoverModel::new(CudaModel::new(0)?),
            EngineChoice::Auto if cuda_available() => match CudaModel::new(0) {
                Ok(m) => FailoverModel::new(m),
                Err(e) => {
                    log::warn!(
                        "engine auto: a CUDA device is present but unusable ({e}); using the CPU"
                    );
                    FailoverModel::cpu_only()
                }
            },
            EngineChoice::Auto => {
                log::info!("engine auto: no CUDA driver or device; using the CPU");
                FailoverModel::cpu_only()
            }
        };
        let status = model.status();
        log::info!("engine backend: {}", status.describe());
        Ok((Arc::new(model), Arc::new(move || status.describe())))
    }
}

#[cfg(not(feature = "cuda"))]
mod imp {
    use super::*;
    use latentd_engine::model::builtin::BuiltinModel;

    /// The built-in model the daemon runs.
    pub type BuiltinDaemonModel = BuiltinModel;

    /// Builds the built-in model `choice` asks for (see the module doc).
    pub fn build_builtin(
        choice: EngineChoice,
    ) -> Result<(Arc<BuiltinDaemonModel>, BackendName), String> {
        match choice {
            EngineChoice::BuiltinCuda => Err(NO_CUDA.into()),
            EngineChoice::Auto => {
                log::info!("engine auto: built without CUDA support; using the CPU");
                Ok((
                    Arc::new(BuiltinModel::new()),
                    Arc::new(|| "builtin-cpu".into()),
                ))
            }
            EngineChoice::BuiltinCpu | EngineChoice::Off | EngineChoice::Bundle => Ok((
                Arc::new(BuiltinModel::new()),
                Arc::new(|| "builtin-cpu".into()),
            )),
        }
    }
}

pub use imp::{BuiltinDaemonModel, build_builtin};
