//! SIGUSR1 dumps the engine's trace on demand: a JSON-lines file beside the state file,
//! every line valid JSON, with the ring writes the engine made.

mod common;

use std::time::Duration;

use common::{Daemon, wait_timeout};

#[test]
fn sigusr1_writes_the_trace_as_json_lines_beside_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let mut daemon = Daemon::start(
        dir.path(),
        &[
            "--audio",
            "null",
            "--loop-seconds",
            "4",
            "--state",
            state.to_str().unwrap(),
        ],
    );
    daemon.wait_for("playing a loop", Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(800));
    daemon.signal(libc::SIGUSR1);
    let line = daemon.wait_for("trace written to", Duration::from_secs(10));
    let path = line
        .rsplit("trace written to ")
        .next()
        .unwrap()
        .trim()
        .to_string();
    assert!(path.starts_with(dir.path().to_str().unwrap()), "{path}");
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() > 2, "{text}");
    assert!(
        text.contains("\"landed_frame\""),
        "no ring writes in the trace: {text}"
    );
    daemon.signal(libc::SIGTERM);
    let status = wait_timeout(&mut daemon.child, Duration::from_secs(2)).expect("exits");
    assert_eq!(status.code(), Some(0));
}
