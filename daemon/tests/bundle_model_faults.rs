//! Runtime model faults reach the operator: a bundle whose DiT gives NaN only late in the
//! schedule (`make_test_bundle.py --fault dit-nan-late`: the load probe, a step at t = 1,
//! passes) runs in the real daemon; every later tick's DiT run fails. The engine counts the
//! failed ticks; the log says the model failed (with the count, at most one line per
//! `MODEL_FAULT_LOG_EVERY`), the systemd `STATUS=` line carries the count, and the daemon
//! keeps running and answering `/status`.
//!
//! Skips (printing `SKIPPED: <why>`) without python3 + onnx or the runtime library, and fails
//! instead under `LATENTD_REQUIRE_ORT=1`.
//!
//! Threading: the daemon is a child process; the test reads its stderr and notify socket.

mod common;

use std::time::{Duration, Instant};

use common::service_fixture::{Daemon, Launch, NotifySocket, Osc};
use latentd_tests::test_bundles::{bundle, library};

/// The engine's first ticks may take this long (bundle load, first windows).
const START: Duration = Duration::from_secs(30);

#[test]
fn a_model_that_fails_at_run_time_is_reported_and_the_daemon_keeps_serving() {
    let Some(lib) = library() else { return };
    let Some(model) = bundle(&["--preset", "tiny", "--fault", "dit-nan-late"]) else {
        return;
    };

    let dir = tempfile::tempdir().unwrap();
    let notify = NotifySocket::bind(dir.path());
    let mut daemon = Daemon::start(
        &dir,
        Launch {
            env: vec![("ORT_DYLIB_PATH", lib.display().to_string())],
            notify: Some(&notify),
            args: ["--model", &model.path().display().to_string()]
                .map(String::from)
                .to_vec(),
            ..Launch::default()
        },
    );
    let line = daemon.wait_line("model failed: ", START);
    assert!(line.contains("since start"), "{line}");
    assert!(
        line.contains("dit: output `velocity` holds a non-finite value"),
        "names the failure: {line}"
    );

    // STATUS= carries the count.
    let end = Instant::now() + START;
    let status = loop {
        let left = end
            .checked_duration_since(Instant::now())
            .expect("a STATUS= line with the model's faults");
        if let Some((text, _)) = notify.receive(left)
            && let Some(status) = text.lines().find(|l| l.starts_with("STATUS="))
            && status.contains("model faults ")
        {
            break status.to_string();
        }
    };
    assert!(status.contains("non-finite"), "{status}");

    // The daemon keeps running and answering.
    let osc = Osc::new(daemon.osc_addr(START));
    let backend = osc.status().backend;
    assert!(backend.starts_with("bundle: tiny-random"), "{backend}");
    assert!(daemon.exited().is_none(), "{}", daemon.lines().join("\n"));

    // Rate-limited: a first line, then at most one per 10 s, however many ticks fail.
    let reported = daemon
        .lines()
        .iter()
        .filter(|l| l.contains("model failed: "))
        .count();
    assert!(
        reported <= 2,
        "{reported} lines:\n{}",
        daemon.lines().join("\n")
    );
    daemon.stop_cleanly();
}
