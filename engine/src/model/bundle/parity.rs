//! Runs a bundle's `[parity]` vectors (docs/bundles.md) on ONNX Runtime: each
//! [`ParityRun`] opens its graph in a session of its own, feeds it the run's input tensors
//! by name and compares every expected output with [`ParitySpec::compare`].
//!
//! This is a check of the bundle against the runtime (`latentctl check-bundle`), not part of
//! playing it: the sessions are opened per run and dropped after it, and each run allocates.
//!
//! Threading: blocking (file reads, session creation, a model run); call it from a
//! command-line tool or a control thread, never the engine or audio thread.

use std::path::Path;

use ort::value::{DynValue, Tensor};

use super::manifest::{
    BundleManifest, GraphKind, ParityMismatch, ParityRun, ParitySpec, TensorData,
};
use super::onnx::{OnnxLoadError, OnnxOptions, choose_provider, open_session, runtime};

impl GraphKind {
    /// The graph's name as `[[parity.run]] graph` writes it: `"dit"`, `"decoder"`, ...
    pub fn name(self) -> &'static str {
        match self {
            Self::Dit => "dit",
            Self::Decoder => "decoder",
            Self::Encoder => "encoder",
            Self::Text => "text",
            Self::Timbre => "timbre",
        }
    }
}

/// Why a parity run did not pass.
#[derive(Debug, thiserror::Error)]
pub enum ParityError {
    /// The runtime or the graph could not be opened.
    #[error("{graph} parity: {source}")]
    Load {
        /// The graph's name.
        graph: &'static str,
        /// Why.
        source: OnnxLoadError,
    },
    /// A tensor file could not be read, a tensor not built, or the run failed.
    #[error("{graph} parity: {reason}")]
    Run {
        /// The graph's name.
        graph: &'static str,
        /// Why (ONNX Runtime's message, or the file's).
        reason: String,
    },
    /// An output differs from its expected vector.
    #[error("{graph} parity: output `{output}`: {mismatch}")]
    Mismatch {
        /// The graph's name.
        graph: &'static str,
        /// The output's name.
        output: String,
        /// How it differs.
        mismatch: ParityMismatch,
    },
}

/// The graph file a parity run names (the manifest checked that the bundle declares it).
fn graph_file(manifest: &BundleManifest, graph: GraphKind) -> Option<&Path> {
    match graph {
        GraphKind::Dit => Some(&manifest.dit.file),
        GraphKind::Decoder => Some(&manifest.decoder.file),
        GraphKind::Encoder => manifest.encoder.as_deref(),
        GraphKind::Text => manifest.text.as_ref().map(|t| t.file.as_path()),
        GraphKind::Timbre => manifest.timbre.as_ref().map(|t| t.file.as_path()),
    }
}

/// Runs one parity vector of `manifest`'s `spec` on ONNX Runtime (the library `options`
/// name, found as [`runtime`] does); `Ok(max |actual - expected|)` over all its outputs.
pub fn check_run(
    manifest: &BundleManifest,
    spec: &ParitySpec,
    run: &ParityRun,
    options: &OnnxOptions,
) -> Result<f32, ParityError> {
    let graph = run.graph.name();
    let failed = |reason: String| ParityError::Run { graph, reason };
    let (_, env) = runtime(options.library.as_deref())
        .map_err(|source| ParityError::Load { graph, source })?;
    let file = graph_file(manifest, run.graph)
        .ok_or_else(|| failed("the bundle declares no such graph".into()))?;
    let mut session = open_session(
        &env,
        &manifest.dir,
        file,
        options,
        choose_provider(&options.providers).0,
    )
    .map_err(|source| ParityError::Load { graph, source })?;
    let mut inputs: Vec<(String, DynValue)> = Vec::with_capacity(run.inputs.len());
    for tensor in &run.inputs {
        let data = tensor.read().map_err(|e| failed(e.to_string()))?;
        let shape = tensor.shape.clone();
        let value = match data {
            TensorData::F32(v) => {
                Tensor::from_array((shape, v.into_boxed_slice())).map(|t| t.into_dyn())
            }
            TensorData::I64(v) => {
                Tensor::from_array((shape, v.into_boxed_slice())).map(|t| t.into_dyn())
            }
        }
        .map_err(|e| failed(format!("input `{}`: {e}", tensor.name)))?;
        inputs.push((tensor.name.clone(), value));
    }
    let outputs = session
        .run(inputs)
        .map_err(|e| failed(format!("run failed: {e}")))?;
    let mut max_error = 0.0f32;
    for expected in &run.outputs {
        let Some(value) = outputs.get(&expected.name) else {
            let names: Vec<&str> = outputs.keys().collect();
            return Err(failed(format!(
                "the graph has no output `{}` (its outputs: {})",
                expected.name,
                names.join(", ")
            )));
        };
        let (shape, actual) = value
            .try_extract_tensor::<f32>()
            .map_err(|e| failed(format!("output `{}`: {e}", expected.name)))?;
        let want: Vec<i64> = expected.shape.iter().map(|&d| d as i64).collect();
        if shape[..] != want[..] {
            return Err(failed(format!(
                "output `{}` has shape {:?}, the parity vector {:?}",
                expected.name,
                &shape[..],
                want
            )));
        }
        let TensorData::F32(want_data) = expected.read().map_err(|e| failed(e.to_string()))? else {
            return Err(failed(format!("output `{}`: not f32", expected.name)));
        };
        let error = spec
            .compare(&want_data, actual)
            .map_err(|mismatch| ParityError::Mismatch {
                graph,
                output: expected.name.clone(),
                mismatch,
            })?;
        max_error = max_error.max(error);
    }
    Ok(max_error)
}
