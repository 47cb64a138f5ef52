//! `latentctl check-bundle` on real random-weight bundles (written by
//! `tools/bundles/make_test_bundle.py`) and the real ONNX Runtime library: a sound bundle
//! passes with one `ok` line per check; a broken graph and a tampered parity vector each fail
//! with one `latentctl: error: ...` line, exit 2, naming what is wrong; so does a missing
//! runtime library; a bundle without `[parity]` passes and says it has no vectors.
//!
//! Skips (printing `SKIPPED: <why>`) without python3 + onnx or the runtime library, and fails
//! instead under `LATENTD_REQUIRE_ORT=1`.

use std::path::Path;
use std::process::{Command, Output};

use latentd_tests::test_bundles::{bundle, library};

fn check_bundle(dir: &Path, runtime: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_latentctl"))
        .arg("check-bundle")
        .arg(dir)
        .arg("--runtime")
        .arg(runtime)
        .output()
        .expect("latentctl runs")
}

/// Exit status 2 and exactly one stderr line, `latentctl: error: ...`; returns that line.
fn one_error(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one error line: {stderr}");
    assert!(lines[0].starts_with("latentctl: error: "), "{stderr}");
    lines[0].to_string()
}

#[test]
fn the_tiny_bundle_passes_every_check() {
    passes_every_check("audio");
}

#[test]
fn a_bundle_whose_decoder_outputs_an_stft_passes_every_check() {
    passes_every_check("stft");
}

fn passes_every_check(decoder: &str) {
    let Some(lib) = library() else { return };
    let Some(dir) = bundle(&["--preset", "tiny", "--decoder", decoder]) else {
        return;
    };
    let out = check_bundle(dir.path(), &lib);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ok manifest: tiny-random"), "{stdout}");
    assert!(stdout.contains("license: MIT"), "{stdout}");
    assert!(stdout.contains("ok load: tiny-random"), "{stdout}");
    for graph in ["dit", "decoder", "encoder", "text"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("ok {graph} parity: max |err| ")))
            .unwrap_or_else(|| panic!("no {graph} parity line: {stdout}"));
        assert!(line.ends_with("(atol 0.0001, rtol 0.001)"), "{line}");
    }
}

#[test]
fn a_dit_with_a_wrong_output_name_fails_naming_it() {
    let Some(lib) = library() else { return };
    let Some(dir) = bundle(&["--preset", "tiny", "--fault", "dit-output-name"]) else {
        return;
    };
    let line = one_error(&check_bundle(dir.path(), &lib));
    assert!(line.contains("dit.onnx"), "{line}");
    assert!(line.contains("`velocity`: missing output"), "{line}");
    assert!(
        line.contains("noise_pred"),
        "names what the graph has: {line}"
    );
}

#[test]
fn an_stft_decoder_with_the_wrong_bin_count_fails_naming_it() {
    let Some(lib) = library() else { return };
    let Some(dir) = bundle(&[
        "--preset",
        "tiny",
        "--decoder",
        "stft",
        "--fault",
        "stft-bins",
    ]) else {
        return;
    };
    let line = one_error(&check_bundle(dir.path(), &lib));
    assert!(line.contains("decoder.onnx"), "{line}");
    assert!(
        line.contains("`stft`") && line.contains("axis 3 is 960") && line.contains("961"),
        "{line}"
    );
}

#[test]
fn a_tampered_parity_vector_fails_naming_the_graph_and_the_error() {
    let Some(lib) = library() else { return };
    let Some(dir) = bundle(&["--preset", "tiny"]) else {
        return;
    };
    // Element 5 of the DiT's expected velocity, moved far outside the tolerance.
    let file = dir.path().join("parity/dit.velocity.bin");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[20..24].copy_from_slice(&1000.0f32.to_le_bytes());
    std::fs::write(&file, bytes).unwrap();
    let out = check_bundle(dir.path(), &lib);
    let line = one_error(&out);
    assert!(
        line.contains("dit parity: output `velocity`: element 5: "),
        "{line}"
    );
    assert!(line.contains("expected 1000"), "{line}");
    // The checks before it passed and were reported.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ok load: "), "{stdout}");
    assert!(!stdout.contains("ok dit parity"), "{stdout}");
}

#[test]
fn a_bundle_without_parity_vectors_passes_and_says_so() {
    let Some(lib) = library() else { return };
    let Some(dir) = bundle(&["--preset", "tiny"]) else {
        return;
    };
    let manifest = dir.path().join("bundle.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let cut = text
        .find("[parity]")
        .expect("the tiny bundle carries [parity]");
    std::fs::write(&manifest, &text[..cut]).unwrap();
    let out = check_bundle(dir.path(), &lib);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("ok load: tiny-random"), "{stdout}");
    assert!(
        stdout.contains("ok parity: the bundle carries no [parity] vectors"),
        "{stdout}"
    );
}

#[test]
fn a_missing_runtime_library_is_one_error_line() {
    let Some(dir) = bundle(&["--preset", "tiny"]) else {
        return;
    };
    let line = one_error(&check_bundle(
        dir.path(),
        Path::new("/nonexistent/libort.so"),
    ));
    assert!(line.contains("ONNX Runtime library not found"), "{line}");
    assert!(line.contains("/nonexistent/libort.so"), "{line}");
}
