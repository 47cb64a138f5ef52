//! Engine backend selection (`--engine builtin-cpu | builtin-cuda | auto | off`) and the
//! backend's name for `/status` and the log.
//!
//! In a build with the `cuda` feature the daemon's model is
//! [`FailoverModel<CudaModel>`](latentd_engine::model::cuda::failover::FailoverModel): the
//! CUDA model with the built-in CPU model behind it (a device failure at run time moves the
//! engine to the CPU; the ring keeps playing; `/status` and the log say so), or the CPU model
//! alone for `builtin-cpu`. Without the feature it is the built-in CPU model, `builtin-cuda`
//! is refused with the reason and `auto` picks the CPU.
//!
//! Threading: called once at start; the name closure is called from any thread.

use std::sync::Arc;

use crate::cli::EngineChoice;

/// The backend running now, in words (changes once if the device fails).
pub type BackendName = Arc<dyn Fn() -> String + Send + Sync>;

#[cfg(feature = "cuda")]
mod imp {
    use super::*;
    use latentd_engine::model::cuda::failover::FailoverModel;
    use latentd_engine::model::cuda::{CudaModel, cuda_available};

    /// The engine model the daemon runs.
    pub type DaemonModel = FailoverModel<CudaModel>;

    /// Builds the model `choice` asks for (see the module doc).
    pub fn build_model(choice: EngineChoice) -> Result<(Arc<DaemonModel>, BackendName), String> {
        let model = match choice {
            EngineChoice::BuiltinCpu | EngineChoice::Off => FailoverModel::cpu_only(),
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

    /// The engine model the daemon runs.
    pub type DaemonModel = BuiltinModel;

    /// Builds the model `choice` asks for (see the module doc).
    pub fn build_model(choice: EngineChoice) -> Result<(Arc<DaemonModel>, BackendName), String> {
        match choice {
            EngineChoice::BuiltinCuda => Err(
                "--engine builtin-cuda: this latentd was built without CUDA support (build with --features cuda)".into(),
            ),
            EngineChoice::Auto => {
                log::info!("engine auto: built without CUDA support; using the CPU");
                Ok((Arc::new(BuiltinModel::new()), Arc::new(|| "builtin-cpu".into())))
            }
            EngineChoice::BuiltinCpu | EngineChoice::Off => {
                Ok((Arc::new(BuiltinModel::new()), Arc::new(|| "builtin-cpu".into())))
            }
        }
    }
}

pub use imp::{DaemonModel, build_model};
