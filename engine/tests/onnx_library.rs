//! Finding and loading the ONNX Runtime library: a missing, foreign or non-library file is
//! one typed error, never a panic, and a later good path still loads.
//!
//! One test in its own binary: ONNX Runtime is loaded once per process, so the bad paths
//! must be tried before the good one, in order.

use latentd_tests::test_bundles;

use std::path::Path;

use latentd_engine::model::bundle::onnx::{OnnxLoadError, find_library, runtime};

#[test]
fn bad_libraries_are_typed_errors_and_a_good_one_loads_after_them() {
    let good = test_bundles::library();
    let saved_env = std::env::var_os("ORT_DYLIB_PATH");
    let missing = Path::new("/nonexistent/libonnxruntime.so");
    let e = runtime(Some(missing)).expect_err("missing");
    assert!(
        matches!(&e, OnnxLoadError::LibraryNotFound { tried } if tried.contains("/nonexistent")),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("scripts/setup.sh"),
        "says how to fix: {e}"
    );

    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("libonnxruntime.so");
    std::fs::write(&text, b"not a shared library").unwrap();
    let e = runtime(Some(&text)).expect_err("not a library");
    assert!(matches!(&e, OnnxLoadError::Library { .. }), "{e:?}");

    // A real shared library that is not ONNX Runtime (no `OrtGetApiBase`).
    let foreign = [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
    ]
    .into_iter()
    .map(Path::new)
    .find(|p| p.is_file());
    if let Some(foreign) = foreign {
        let e = runtime(Some(foreign)).expect_err("foreign library");
        assert!(
            matches!(&e, OnnxLoadError::Library { reason, .. } if reason.contains("OrtGetApiBase")),
            "{e:?}"
        );
    }

    // SAFETY (env): this binary's only test; no other thread reads the environment.
    unsafe { std::env::set_var("ORT_DYLIB_PATH", "/nonexistent/env/libonnxruntime.so") };
    let e = find_library(None).expect_err("env path missing");
    assert!(e.to_string().contains("/nonexistent/env"), "{e}");
    match saved_env {
        Some(v) => unsafe { std::env::set_var("ORT_DYLIB_PATH", v) },
        None => unsafe { std::env::remove_var("ORT_DYLIB_PATH") },
    }

    let Some(good) = good else {
        return;
    };
    let (path, _env) = runtime(Some(&good)).expect("the real library loads after the bad ones");
    assert!(path.is_absolute());
}
