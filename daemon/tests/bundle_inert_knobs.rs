//! Knobs a bundle cannot honour are named at start: the tiny test bundle
//! (`guidance = "none"`, with `[text]` and `[encoder]`) makes `guidance` and `cfg_rescale`
//! inert, and the timbre and structure strengths (it has no `[timbre]`, and bundles take no
//! structure reference), but not `prompt_blend` or `x0_target`.
//!
//! Skips (printing `SKIPPED: <why>`) without python3 + onnx or the runtime library, and fails
//! instead under `LATENTD_REQUIRE_ORT=1`.
//!
//! Threading: the daemon is a child process; the test reads its stderr.

mod common;

use std::time::Duration;

use common::service_fixture::{Daemon, Launch};
use latentd_tests::test_bundles::{bundle, library};

/// Bundle load and start may take this long.
const START: Duration = Duration::from_secs(30);

#[test]
fn the_knobs_a_bundle_cannot_honour_are_logged_at_start() {
    let Some(lib) = library() else { return };
    let Some(model) = bundle(&["--preset", "tiny"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(
        &dir,
        Launch {
            env: vec![("ORT_DYLIB_PATH", lib.display().to_string())],
            args: ["--model", &model.path().display().to_string()]
                .map(String::from)
                .to_vec(),
            ..Launch::default()
        },
    );
    let line = daemon.wait_line("inert knobs", START);
    let names: Vec<&str> = line
        .rsplit_once(": ")
        .map(|(_, list)| list.split(", ").collect())
        .unwrap_or_default();
    assert_eq!(
        names,
        [
            "guidance",
            "cfg_rescale",
            "timbre_strength",
            "structure_strength"
        ],
        "{line}"
    );
    assert!(line.contains("bundle tiny-random"), "{line}");
    daemon.stop_cleanly();
}
