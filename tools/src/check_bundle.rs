//! `latentctl check-bundle DIR [--runtime LIB]`: checks a `latentd-bundle/1` folder the way
//! latentd would load it, then runs the reference vectors it carries (docs/bundles.md).
//!
//! 1. the manifest, with the daemon's own validation (`manifest::load`);
//! 2. the graphs on ONNX Runtime (`OnnxModel::from_manifest`: tensor names, ranks and fixed
//!    dimensions against the conventions, one probe step and one probe decode);
//! 3. every `[[parity.run]]`, each output within `atol + rtol * |expected|`.
//!
//! Prints one `ok ...` line per check passed; the first failure is returned (main prints it
//! as one `latentctl: error: ...` line and exits 2).
//!
//! Threading: one thread; ONNX Runtime runs on it (one intra-op thread, as the daemon).

use std::path::PathBuf;

use latentd_engine::model::bundle::manifest;
use latentd_engine::model::bundle::onnx::{OnnxModel, OnnxOptions};
use latentd_engine::model::bundle::parity;

/// `check-bundle` arguments.
#[derive(clap::Args, Clone, Debug)]
pub struct CheckBundleArgs {
    /// The bundle folder (holding bundle.toml).
    pub dir: PathBuf,
    /// The ONNX Runtime library (default: ORT_DYLIB_PATH, then beside the executable).
    #[arg(long, value_name = "LIB")]
    pub runtime: Option<PathBuf>,
}

/// Runs the checks, printing a line for each that passes; the first failure, in words.
pub fn run(args: &CheckBundleArgs) -> Result<(), String> {
    let spec = manifest::load(&args.dir).map_err(|e| format!("{}: {e}", args.dir.display()))?;
    println!("ok manifest: {} ({})", spec.name, spec.dir.display());
    println!("   license: {}", spec.license);
    println!("   provenance: {}", spec.provenance);
    let options = OnnxOptions {
        library: args.runtime.clone(),
        ..OnnxOptions::default()
    };
    let model = OnnxModel::from_manifest(spec.clone(), options.clone())
        .map_err(|e| format!("{}: {e}", args.dir.display()))?;
    println!("ok load: {}", model.describe());
    drop(model);
    let Some(vectors) = &spec.parity else {
        println!("ok parity: the bundle carries no [parity] vectors");
        return Ok(());
    };
    for run in &vectors.runs {
        let max_error = parity::check_run(&spec, vectors, run, &options)
            .map_err(|e| format!("{}: {e}", args.dir.display()))?;
        println!(
            "ok {} parity: max |err| {max_error:.1e} (atol {}, rtol {})",
            run.graph.name(),
            vectors.atol,
            vectors.rtol
        );
    }
    Ok(())
}
