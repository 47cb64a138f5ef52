//! `latentctl bench knob-to-ear` against a real latentd (built-in engine, JACK output) on a
//! private dummy JACK server: a short run (5 changes) must hear every change and write a
//! report of the documented shape. No speed is asserted; figures live in
//! docs/PERFORMANCE.md.
//!
//! The daemon binary is taken from the same target folder as this test (`latentd` beside
//! `deps/`), built with `cargo build -p latentd` first when missing; `LATENTD_BIN`
//! overrides it.

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use latentd_tests::JackServer;
use serde_json::Value;

const CHANGES: u64 = 5;

/// The latentd binary, built when missing.
fn latentd_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("LATENTD_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("tests run from <target>/<profile>/deps");
    let bin = profile_dir.join("latentd");
    if !bin.exists() {
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args(["build", "-p", "latentd", "--bin", "latentd"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cargo.arg("--release");
        }
        let target = profile_dir.parent().expect("a target folder");
        let status = cargo
            .env("CARGO_TARGET_DIR", target)
            .status()
            .expect("running cargo");
        assert!(status.success(), "cargo build -p latentd failed");
    }
    bin
}

/// A port free for both UDP and TCP on loopback (the daemon binds both).
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The daemon, stopped by PID (SIGTERM, then SIGKILL) when dropped.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn latentctl(jack: &JackServer, port: u16) -> Command {
    let mut c = jack.command(env!("CARGO_BIN_EXE_latentctl"));
    c.args(["--port", &port.to_string(), "--timeout", "5"]);
    c
}

#[test]
fn a_short_run_hears_every_change_and_reports_it() {
    let latentd = latentd_binary();
    let jack = JackServer::start(48_000, 256);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let name = format!("latentd-bench-{}", std::process::id());
    let log = dir.path().join("latentd.log");
    let child = jack
        .command(latentd.to_str().unwrap())
        .args([
            "--audio",
            "jack",
            "--client-name",
            &name,
            "--log-level",
            "warn",
        ])
        .args([
            "--osc",
            &format!("127.0.0.1:{port}"),
            "--oscquery-port",
            "0",
        ])
        .arg("--state")
        .arg(dir.path().join("state.toml"))
        .arg("--media")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.path().join("latentd.err")).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", latentd.display()));
    let mut daemon = Daemon {
        child,
        log: dir.path().join("latentd.err"),
    };

    // Ready: its ports exist and /status answers.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = daemon.child.try_wait() {
            panic!("latentd exited early ({status}): {}", daemon.log());
        }
        let ports = jack.list_ports();
        let answered = latentctl(&jack, port)
            .arg("status")
            .output()
            .is_ok_and(|o| o.status.success());
        if answered && ports.contains(&format!("{name}:out_1")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "latentd not ready in 60 s: {}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let out = dir.path().join("report.json");
    let run = latentctl(&jack, port)
        .args(["bench", "knob-to-ear", "--count", &CHANGES.to_string()])
        .args(["--interval-ms", "100", "--detect-timeout", "20"])
        .args([
            "--client-name",
            &name,
            "--capture-name",
            &format!("{name}-cap"),
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "bench failed ({:?}): {}\n{stdout}\nlatentd: {}",
        run.status,
        String::from_utf8_lossy(&run.stderr),
        daemon.log()
    );
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        stdout.contains("5 sent, 5 detected"),
        "{stdout}\n{text}\nlatentd: {}",
        daemon.log()
    );
    let report: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["bench"], "knob-to-ear");
    assert_eq!(report["address"], "/knob/ch_g*");
    assert_eq!(report["client_name"], name.as_str());
    assert_eq!(report["sent"], CHANGES);
    assert_eq!(
        report["detected"], CHANGES,
        "every change is heard: {report:#}"
    );
    assert_eq!(report["jack"]["sample_rate"], 48_000);
    assert_eq!(report["jack"]["period_frames"], 256);
    assert!(report["flood"].is_null());

    let changes = report["changes"].as_array().unwrap();
    assert_eq!(changes.len() as u64, CHANGES);
    for (i, c) in changes.iter().enumerate() {
        let edge = if i % 2 == 0 { "to_silence" } else { "to_sound" };
        assert_eq!(c["index"], i as u64);
        assert_eq!(c["edge"], edge);
        let sent = c["sent_frame"].as_u64().unwrap();
        let heard = c["heard_frame"].as_u64().expect("heard");
        assert!(heard >= sent, "{c}");
        assert_eq!(c["latency_frames"].as_u64(), Some(heard - sent));
        let ms = c["latency_ms"].as_f64().unwrap();
        assert!((ms - (heard - sent) as f64 / 48.0).abs() < 1e-9, "{c}");
        if i > 0 {
            assert!(sent > changes[i - 1]["heard_frame"].as_u64().unwrap());
        }
    }

    // The summaries cover the clean changes, edge by edge, with ordered percentiles.
    let clean = report["clean"].as_u64().unwrap();
    let count = |s: &Value| s["count"].as_u64().unwrap_or(0);
    let latency = &report["latency"];
    assert_eq!(count(&latency["all"]), clean);
    assert_eq!(
        count(&latency["to_silence"]) + count(&latency["to_sound"]),
        clean
    );
    for s in [
        &latency["all"],
        &latency["to_silence"],
        &latency["to_sound"],
    ] {
        if s.is_null() {
            continue;
        }
        let f = |k: &str| s[k].as_f64().unwrap();
        assert!(
            f("min_ms") <= f("p50_ms") && f("p50_ms") <= f("p95_ms"),
            "{s}"
        );
        assert!(
            f("p95_ms") <= f("p99_ms") && f("p99_ms") <= f("max_ms"),
            "{s}"
        );
        // serde_json parses floats to within an ulp, not always exactly.
        let spread = f("max_ms") - f("min_ms");
        assert!(
            f("jitter_ms") >= 0.0 && (f("spread_ms") - spread).abs() < 1e-9,
            "{s}"
        );
    }
    for key in ["xruns_before", "xruns_after", "late_landings_after"] {
        assert!(report["daemon"][key].is_i64(), "{key}: {report:#}");
    }

    // The bench restored the gains: the daemon reports them at 1.
    let query = latentctl(&jack, port)
        .args(["query", "/knob/ch_g0"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&query.stdout).trim(),
        "/knob/ch_g0 1"
    );
    drop(daemon);
}
