//! Execution providers through the real daemon on real ONNX Runtime: asked for
//! `ep = ["cuda", "cpu"]` with a library built without CUDA (the PyPI CPU wheel), the daemon
//! logs one line naming the skipped provider and why, plays on the CPU provider, and
//! `/status.reply` names that provider; an unknown provider name is one error line and exit 2.
//!
//! Skips (printing `SKIPPED: <why>`) without python3 + onnx or the runtime library, and fails
//! instead under `LATENTD_REQUIRE_ORT=1`.
//!
//! Threading: the daemon is a child process; the test reads its stderr and talks OSC over
//! loopback.

mod common;

use std::time::Duration;

use common::run_to_exit;
use common::service_fixture::{Daemon, Launch, Osc};
use latentd_tests::test_bundles::{bundle, library};

/// How long a refused start may take to exit.
const EXIT_LIMIT: Duration = Duration::from_secs(10);

/// Bundle load and start may take this long.
const START: Duration = Duration::from_secs(30);

#[test]
fn a_provider_the_library_lacks_is_skipped_and_cpu_plays() {
    let Some(lib) = library() else { return };
    let Some(model) = bundle(&["--preset", "tiny"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("latentd.toml");
    std::fs::write(&config, "[model]\nep = [\"cuda\", \"cpu\"]\n").unwrap();
    let mut daemon = Daemon::start(
        &dir,
        Launch {
            env: vec![("ORT_DYLIB_PATH", lib.display().to_string())],
            args: [
                "--config",
                &config.display().to_string(),
                "--model",
                &model.path().display().to_string(),
            ]
            .map(String::from)
            .to_vec(),
            ..Launch::default()
        },
    );
    let skipped = daemon.wait_line("execution provider cuda skipped", START);
    assert!(skipped.contains("without it"), "{skipped}");
    daemon.wait_line("playing a loop", START);
    let osc = Osc::new(daemon.osc_addr(START));
    let first = osc.status();
    std::thread::sleep(Duration::from_millis(800));
    let later = osc.status();
    assert!(
        later.backend.contains("ONNX Runtime CPU provider"),
        "/status backend {:?}",
        later.backend
    );
    assert_ne!(first.playhead_s, later.playhead_s, "the loop did not play");
    assert!(later.ticks_per_s > 0.0, "no engine ticks: {later:?}");
    let (exit, _) = daemon.terminate();
    let lines = daemon.lines();
    assert!(exit.success(), "{exit:?}\n{}", lines.join("\n"));
    let skips = lines.iter().filter(|l| l.contains("skipped")).count();
    assert_eq!(skips, 1, "{}", lines.join("\n"));
}

#[test]
fn an_unknown_provider_is_one_line_naming_the_key_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = run_to_exit(
        dir.path(),
        &["--audio", "null", "--engine", "off", "--ep", "cuda,warp"],
        EXIT_LIMIT,
    );
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--ep") && err.contains("warp"), "{err}");

    let config = dir.path().join("latentd.toml");
    std::fs::write(&config, "[model]\nep = [\"cpu\", \"npu\"]\n").unwrap();
    let (code, err) = run_to_exit(
        dir.path(),
        &["check-config", &config.display().to_string()],
        EXIT_LIMIT,
    );
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("model.ep") && err.contains("npu"), "{err}");
}
