//! Shared by the ONNX tests and bench: where the ONNX Runtime library is, and random-weight
//! test bundles written into temp folders by `tools/bundles/make_test_bundle.py` or, in
//! ACE-Step v1.5's architecture, by `tools/export-acestep/export_acestep.py`.
//!
//! A test that needs the library skips (printing `SKIPPED: <why>`) only when the library or
//! the bundle tooling is absent, and fails instead when `LATENTD_REQUIRE_ORT=1` (CI).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Set to `1` to turn every skip into a failure.
pub const REQUIRE_ENV: &str = "LATENTD_REQUIRE_ORT";

/// The repository's root (this crate lives in `<root>/tests`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Set to `1` to make the ACE-Step export tests fail, not skip, without torch, diffusers and
/// transformers (`scripts/test.sh` installs them and sets it).
pub const REQUIRE_EXPORT_ENV: &str = "LATENTD_REQUIRE_EXPORT_TOOLS";

/// Skips (returns `None` after printing why) or, under `LATENTD_REQUIRE_ORT=1`, fails.
pub fn skip<T>(why: &str) -> Option<T> {
    skip_unless_required(REQUIRE_ENV, why)
}

/// Skips (returns `None` after printing why) or, when `env` is `1`, fails.
fn skip_unless_required<T>(env: &str, why: &str) -> Option<T> {
    if std::env::var(env).is_ok_and(|v| v == "1") {
        panic!("{env}=1 but: {why}");
    }
    println!("SKIPPED: {why}");
    None
}

/// The ONNX Runtime library: `ORT_DYLIB_PATH`, else `<repo>/.ort/libonnxruntime.so`
/// (where `scripts/setup.sh` installs it).
pub fn library() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Some(p)
        } else {
            skip(&format!("ORT_DYLIB_PATH={} does not exist", p.display()))
        };
    }
    let p = repo_root().join(".ort/libonnxruntime.so");
    if p.is_file() {
        Some(p)
    } else {
        skip(&format!(
            "no ONNX Runtime library at {} (run scripts/setup.sh)",
            p.display()
        ))
    }
}

/// Writes a test bundle with `make_test_bundle.py <args>` into a new temp folder.
pub fn bundle(args: &[&str]) -> Option<tempfile::TempDir> {
    write_bundle(
        "tools/bundles/make_test_bundle.py",
        args,
        "python3 with onnx + numpy needed; scripts/setup.sh",
        REQUIRE_ENV,
    )
}

/// Writes a random-weight bundle in ACE-Step v1.5's own architecture (diffusers' model code
/// at small widths) with `tools/export-acestep/export_acestep.py --random-tiny --seed SEED`
/// into a new temp folder. Skips without torch, diffusers and transformers unless
/// [`REQUIRE_EXPORT_ENV`] is `1`.
pub fn acestep_export(seed: u32) -> Option<tempfile::TempDir> {
    write_bundle(
        "tools/export-acestep/export_acestep.py",
        &["--random-tiny", "--seed", &seed.to_string()],
        "torch, diffusers and transformers needed; scripts/test.sh installs them",
        REQUIRE_EXPORT_ENV,
    )
}

/// Runs the bundle writer `script` (relative to the repository) with `args --out <a new temp
/// folder>`; on failure skips, saying what it `needs` and the error's line, or fails when
/// `require_env` is `1`.
fn write_bundle(
    script: &str,
    args: &[&str],
    needs: &str,
    require_env: &str,
) -> Option<tempfile::TempDir> {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new("python3")
        .arg(repo_root().join(script))
        .args(args)
        .arg("--out")
        .arg(dir.path())
        .output();
    let why = match out {
        Ok(o) if o.status.success() => return Some(dir),
        Ok(o) => {
            // The exception's own line (torch's exporter ends with generic advice), else the
            // last.
            let stderr = String::from_utf8_lossy(&o.stderr);
            let line = stderr
                .lines()
                .rev()
                .find(|l| l.contains("Error") || l.contains("error:"))
                .or_else(|| stderr.lines().last())
                .unwrap_or("");
            let name = Path::new(script).file_name().unwrap_or_default().display();
            format!("{name} {args:?} failed ({needs}): {line}")
        }
        Err(e) => format!("python3 not runnable: {e}"),
    };
    skip_unless_required(require_env, &why)
}

/// Edits `file` in the bundle `dir` with a Python snippet that sees the loaded model as `m`
/// and `onnx`, `helper`, `np`, `numpy_helper`; the edited model is saved in place.
pub fn edit_graph(dir: &Path, file: &str, snippet: &str) {
    let path = dir.join(file);
    let code = format!(
        "import onnx, numpy as np\nfrom onnx import helper, numpy_helper, TensorProto\n\
         m = onnx.load({path:?})\n{snippet}\nonnx.save(m, {path:?})\n"
    );
    let o = Command::new("python3")
        .arg("-c")
        .arg(code)
        .output()
        .expect("python3");
    assert!(
        o.status.success(),
        "graph edit failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}
