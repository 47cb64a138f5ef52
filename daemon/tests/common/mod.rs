//! Helpers shared by the tests that run the `latentd` binary: an isolated environment (no
//! JACK or PipeWire server, no systemd, private XDG folders), a running daemon whose stderr
//! lines arrive on a channel, WAV writing, waiting for a child with a limit.
//!
//! Threading: a [`Daemon`] is owned by one test (or a shared fixture); a reader thread per
//! daemon forwards its stderr lines.

#![allow(dead_code)] // each test binary uses a subset

pub mod hostile;
pub mod http;
pub mod jack_tone;
pub mod midi_ctl;
pub mod osc_client;
pub mod pipewire;
pub mod service_fixture;
pub mod tmpfs;
pub mod tone;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The daemon binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_latentd");

/// Isolate `cmd`'s environment from the machine's audio servers, systemd, the journal and
/// the user's folders (all under `dir`).
pub fn isolated_env<'a>(cmd: &'a mut Command, dir: &Path) -> &'a mut Command {
    let runtime = dir.join("xdg-runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    // An empty user config, so that a system config (/etc/latentd/latentd.toml of an
    // installed package) is never read by a test; a test may write its own over it.
    let config = dir.join("config/latentd/latentd.toml");
    if !config.exists() {
        std::fs::create_dir_all(config.parent().unwrap()).unwrap();
        std::fs::write(&config, "").unwrap();
    }
    cmd.env(
        "JACK_DEFAULT_SERVER",
        format!("latentd-none-{}", std::process::id()),
    )
    .env("JACK_NO_START_SERVER", "1")
    .env("XDG_RUNTIME_DIR", &runtime)
    .env("PIPEWIRE_REMOTE", "latentd-none")
    .env("XDG_STATE_HOME", dir.join("state"))
    .env("XDG_CONFIG_HOME", dir.join("config"))
    .env_remove("STATE_DIRECTORY")
    .env_remove("NOTIFY_SOCKET")
    .env_remove("WATCHDOG_USEC")
    .env_remove("WATCHDOG_PID")
    .env_remove("LATENTD_TEST_ENGINE_STALL_S")
    .env_remove("LATENTD_TEST_ENGINE_PANIC_AFTER_S")
    .env_remove("JOURNAL_STREAM")
    .env_remove("NSM_URL")
    .env_remove("RUST_LOG")
}

/// [`isolated_env`], plus OSC on a free port and no OSCQuery (tests run side by side).
pub fn isolated<'a>(cmd: &'a mut Command, dir: &Path) -> &'a mut Command {
    isolated_env(cmd, dir).args(["--osc", "127.0.0.1:0", "--oscquery-port", "0"])
}

/// Write a 32-bit float WAV of interleaved `samples`.
pub fn write_float_wav(path: &Path, channels: u16, rate: u32, samples: &[f32]) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

/// Wait for `child` to exit, at most `limit`.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// Start `latentd args` isolated under `dir`, stderr piped, stdout discarded.
pub fn spawn_isolated(dir: &Path, args: &[&str]) -> Child {
    isolated(&mut Command::new(BIN), dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Run `latentd args` isolated under `dir` until it exits (panics after `limit`): its exit
/// code and stderr.
pub fn run_to_exit(dir: &Path, args: &[&str], limit: Duration) -> (Option<i32>, String) {
    let mut child = spawn_isolated(dir, args);
    let Some(status) = wait_timeout(&mut child, limit) else {
        child.kill().unwrap();
        child.wait().unwrap();
        panic!("latentd {args:?} did not exit within {limit:?}");
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.code(), stderr)
}

/// A running daemon whose stderr lines arrive on a channel; killed on drop if still running.
pub struct Daemon {
    /// The process.
    pub child: Child,
    lines: mpsc::Receiver<String>,
}

impl Daemon {
    /// Start `latentd args`, isolated under `dir`.
    pub fn start(dir: &Path, args: &[&str]) -> Self {
        let mut child = spawn_isolated(dir, args);
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // Nobody listening any more: keep draining so the daemon never blocks.
                let _ = tx.send(line);
            }
        });
        Self { child, lines }
    }

    /// Wait for a stderr line containing `needle`; returns it.
    pub fn wait_for(&self, needle: &str, limit: Duration) -> String {
        let t0 = Instant::now();
        while let Some(left) = limit.checked_sub(t0.elapsed()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("no stderr line with {needle:?} within {limit:?}");
    }

    /// The stderr lines that arrive until none has for `quiet` (at most `limit` in all).
    pub fn lines_until_quiet(&self, quiet: Duration, limit: Duration) -> Vec<String> {
        let t0 = Instant::now();
        let mut lines = Vec::new();
        while t0.elapsed() < limit {
            match self.lines.recv_timeout(quiet) {
                Ok(line) => lines.push(line),
                Err(_) => break,
            }
        }
        lines
    }

    /// Send `sig` to the daemon.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: plain FFI call; the pid is our own child, still unreaped.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Parse `key=value` pairs of the counters line.
pub fn counter(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} missing from {line:?}"))
        .parse()
        .unwrap()
}
