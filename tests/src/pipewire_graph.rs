//! A private PipeWire graph for tests: its own `XDG_RUNTIME_DIR`, session D-Bus, `pipewire`
//! (Debian's `minimal.conf` minus its ALSA nodes), `wireplumber`, and one null sink created
//! at run time, as /work/shared/notes/headless-audio.md describes.
//!
//! [`PipeWireGraph::kill_servers`] and [`PipeWireGraph::start_servers`] take PipeWire and
//! WirePlumber away (SIGKILL, as a crash) and bring them back in the same runtime directory
//! and on the same bus, as a restart of the user's session services looks to a client;
//! [`PipeWireGraph::create_sink`] then brings back a null sink of the same name (a sound
//! card's sink also appears a moment after the servers).
//!
//! Threading: a [`PipeWireGraph`] is a plain value owned by one test. [`Drop`] kills the
//! processes it started, by PID (through their [`Child`] handles), and removes the runtime
//! directory. Nothing here touches the test process's environment except
//! [`PipeWireGraph::export_client_env`], which is `unsafe` for that reason.

use std::ffi::OsString;
use std::fmt;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Debian's minimal PipeWire configuration, the base of the headless one.
pub const MINIMAL_CONF: &str = "/usr/share/pipewire/minimal.conf";

/// Longest wait for each startup step.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Binaries the graph needs.
const BINARIES: [&str; 5] = [
    "dbus-daemon",
    "pipewire",
    "wireplumber",
    "pw-cli",
    "pw-metadata",
];

/// Environment variables that would point a client at another server; removed.
pub const CLIENT_ENV_REMOVE: [&str; 1] = ["PIPEWIRE_REMOTE"];

/// Why a graph could not be started; the test prints it and skips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkipReason(pub String);

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A running private PipeWire graph with a null sink.
pub struct PipeWireGraph {
    runtime_dir: PathBuf,
    dbus_address: String,
    sink_name: String,
    /// Started processes, stopped in reverse order.
    children: Vec<(&'static str, Child)>,
}

impl PipeWireGraph {
    /// Start D-Bus, PipeWire and WirePlumber in a fresh runtime directory and create a
    /// null sink. Returns why not when a binary or the base configuration is missing or a
    /// step does not complete in time.
    pub fn start() -> Result<Self, SkipReason> {
        for binary in BINARIES {
            if find_in_path(binary).is_none() {
                return Err(SkipReason(format!("`{binary}` not found in PATH")));
            }
        }
        let minimal = std::fs::read_to_string(MINIMAL_CONF)
            .map_err(|e| SkipReason(format!("cannot read {MINIMAL_CONF}: {e}")))?;
        let runtime_dir = make_private_dir()?;
        let mut graph = Self {
            runtime_dir,
            dbus_address: String::new(),
            sink_name: format!("latentd-test-sink-{}", unique_suffix()),
            children: Vec::new(),
        };
        let conf = graph.conf_path();
        std::fs::write(&conf, headless_conf(&minimal))
            .map_err(|e| SkipReason(format!("cannot write {}: {e}", conf.display())))?;
        graph.start_dbus()?;
        graph.start_servers()?;
        graph.create_sink()?;
        Ok(graph)
    }

    /// Kill PipeWire and WirePlumber (SIGKILL, as a crash) and reap them; D-Bus and the
    /// runtime directory stay. Their clients see the connection close.
    pub fn kill_servers(&mut self) {
        for name in ["wireplumber", "pipewire"] {
            if let Some(at) = self.children.iter().position(|(n, _)| *n == name) {
                let (_, mut child) = self.children.remove(at);
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// Start PipeWire and WirePlumber (again, after [`kill_servers`](Self::kill_servers))
    /// in the runtime directory; returns once WirePlumber is connected, with no sink yet
    /// ([`create_sink`](Self::create_sink)). Their logs are appended to.
    pub fn start_servers(&mut self) -> Result<(), SkipReason> {
        let socket = self.runtime_dir.join("pipewire-0");
        // A killed server leaves its socket file behind: wait for the new one.
        for stale in ["pipewire-0", "pipewire-0-manager"] {
            let _ = std::fs::remove_file(self.runtime_dir.join(stale));
        }
        let conf = self.conf_path();
        self.spawn_logged("pipewire", &[OsString::from("-c"), conf.into_os_string()])?;
        self.wait_for("the pipewire socket", |_| socket.exists())?;
        self.spawn_logged("wireplumber", &[])?;
        self.wait_for("wireplumber to connect", |graph| {
            graph
                .capture("pw-cli", &["ls", "Client"])
                .is_some_and(|out| out.contains("application.name = \"WirePlumber\""))
        })
    }

    fn conf_path(&self) -> PathBuf {
        self.runtime_dir.join("headless.conf")
    }

    /// The private runtime directory (`XDG_RUNTIME_DIR` and `PIPEWIRE_RUNTIME_DIR`).
    pub fn runtime_dir(&self) -> &Path {
        &self.runtime_dir
    }

    /// The private session bus address (`DBUS_SESSION_BUS_ADDRESS`).
    pub fn dbus_address(&self) -> &str {
        &self.dbus_address
    }

    /// `node.name` of the null sink, a target for streams and `pw-record --target`.
    pub fn sink_name(&self) -> &str {
        &self.sink_name
    }

    /// The variables a client process needs to reach this graph (also remove
    /// [`CLIENT_ENV_REMOVE`]).
    pub fn client_env(&self) -> Vec<(&'static str, OsString)> {
        let dir = self.runtime_dir.as_os_str().to_owned();
        vec![
            ("XDG_RUNTIME_DIR", dir.clone()),
            ("PIPEWIRE_RUNTIME_DIR", dir),
            ("DBUS_SESSION_BUS_ADDRESS", self.dbus_address.clone().into()),
        ]
    }

    /// A command for a PipeWire tool (`pw-record`, `pw-cli`, ...) aimed at this graph.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        for key in CLIENT_ENV_REMOVE {
            cmd.env_remove(key);
        }
        cmd.envs(self.client_env());
        cmd.env("XDG_STATE_HOME", self.runtime_dir.join("state"));
        cmd
    }

    /// Point this process's own libpipewire at the graph.
    ///
    /// # Safety
    /// Mutates the process environment: call it while no other thread reads or writes the
    /// environment (at the start of a test binary's only test).
    pub unsafe fn export_client_env(&self) {
        for key in CLIENT_ENV_REMOVE {
            // SAFETY: the caller guarantees no concurrent environment access.
            unsafe { std::env::remove_var(key) };
        }
        for (key, value) in self.client_env() {
            // SAFETY: as above.
            unsafe { std::env::set_var(key, value) };
        }
    }

    /// The last lines of the pipewire and wireplumber logs, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for name in ["pipewire", "wireplumber"] {
            let text = std::fs::read_to_string(self.log_path(name)).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {name} log (last {lines} lines) ---\n"));
            for line in &all[all.len().saturating_sub(lines)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.runtime_dir.join(format!("{name}.log"))
    }

    /// `dbus-daemon --session` in the foreground, its address read from its stdout.
    fn start_dbus(&mut self) -> Result<(), SkipReason> {
        let mut child = self
            .command("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| SkipReason(format!("cannot start dbus-daemon: {e}")))?;
        let stdout = child.stdout.take();
        self.children.push(("dbus-daemon", child));
        let mut line = String::new();
        if let Some(stdout) = stdout {
            // dbus-daemon prints the address once it listens.
            let _ = BufReader::new(stdout).read_line(&mut line);
        }
        let address = line.trim();
        if address.is_empty() {
            return Err(SkipReason("dbus-daemon printed no address".to_owned()));
        }
        self.dbus_address = address.to_owned();
        Ok(())
    }

    /// Spawn `program` aimed at the graph, stdout and stderr appended to `<program>.log`.
    fn spawn_logged(&mut self, program: &'static str, args: &[OsString]) -> Result<(), SkipReason> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(program))
            .map_err(|e| SkipReason(format!("cannot create {program}.log: {e}")))?;
        let log_err = log
            .try_clone()
            .map_err(|e| SkipReason(format!("cannot dup {program}.log: {e}")))?;
        let child = self
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| SkipReason(format!("cannot start {program}: {e}")))?;
        self.children.push((program, child));
        Ok(())
    }

    /// Create the null sink ([`sink_name`](Self::sink_name)) and wait until WirePlumber
    /// has made it the default sink (which shows that its policy is running).
    pub fn create_sink(&mut self) -> Result<(), SkipReason> {
        let spec = format!(
            "{{ factory.name=support.null-audio-sink node.name={} media.class=Audio/Sink \
             object.linger=true audio.position=[FL FR] }}",
            self.sink_name
        );
        let out = self
            .command("pw-cli")
            .args(["create-node", "adapter", &spec])
            .output()
            .map_err(|e| SkipReason(format!("cannot run pw-cli: {e}")))?;
        if !out.status.success() {
            return Err(SkipReason(format!(
                "pw-cli create-node failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let quoted = format!("\"{}\"", self.sink_name);
        self.wait_for("wireplumber to pick up the null sink", |graph| {
            graph
                .capture("pw-metadata", &["-n", "default", "0", "default.audio.sink"])
                .is_some_and(|out| out.contains(&quoted))
        })
    }

    /// Run a tool aimed at the graph; its stdout when it succeeds.
    fn capture(&self, program: &str, args: &[&str]) -> Option<String> {
        let out = self
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Poll `ready` every 50 ms for [`STEP_TIMEOUT`], failing early when a started
    /// process has exited.
    fn wait_for(
        &mut self,
        what: &str,
        mut ready: impl FnMut(&Self) -> bool,
    ) -> Result<(), SkipReason> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            if ready(self) {
                return Ok(());
            }
            if let Some(exited) = self.exited_child() {
                return Err(SkipReason(format!(
                    "{exited} while waiting for {what}\n{}",
                    self.log_tail(20)
                )));
            }
            if Instant::now() >= deadline {
                return Err(SkipReason(format!(
                    "timed out after {} s waiting for {what}\n{}",
                    STEP_TIMEOUT.as_secs(),
                    self.log_tail(20)
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl PipeWireGraph {
    /// `"<name> exited (<status>)"` for the first started process that has exited.
    fn exited_child(&mut self) -> Option<String> {
        self.children.iter_mut().find_map(|(name, child)| {
            let status = child.try_wait().ok().flatten()?;
            Some(format!("{name} exited ({status})"))
        })
    }
}

impl Drop for PipeWireGraph {
    fn drop(&mut self) {
        while let Some((_, mut child)) = self.children.pop() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.runtime_dir);
    }
}

/// `minimal` with every `context.objects` entry whose factory is an ALSA PCM removed.
/// Entries are found by brace matching outside `#` comments.
pub fn headless_conf(minimal: &str) -> String {
    let mut out = String::with_capacity(minimal.len());
    let mut entry: Option<(String, i32)> = None;
    for line in minimal.split_inclusive('\n') {
        let code = line.split('#').next().unwrap_or("");
        let opens = code.matches('{').count() as i32;
        let closes = code.matches('}').count() as i32;
        match entry.as_mut() {
            Some((text, depth)) => {
                text.push_str(line);
                *depth += opens - closes;
                if *depth <= 0 {
                    let (text, _) = entry.take().unwrap_or_default();
                    if !is_alsa_pcm_entry(&text) {
                        out.push_str(&text);
                    }
                }
            }
            None if code.trim_start().starts_with("{ factory") && opens > closes => {
                entry = Some((line.to_owned(), opens - closes));
            }
            None => out.push_str(line),
        }
    }
    if let Some((text, _)) = entry {
        out.push_str(&text);
    }
    out
}

fn is_alsa_pcm_entry(text: &str) -> bool {
    text.lines().any(|line| {
        let code = line.split('#').next().unwrap_or("");
        code.contains("factory.name") && code.contains("api.alsa.pcm.")
    })
}

/// A fresh mode-700 directory under the system temp dir.
fn make_private_dir() -> Result<PathBuf, SkipReason> {
    let dir = std::env::temp_dir().join(format!("latentd-pw-{}", unique_suffix()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| SkipReason(format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir)
}

/// `<pid>-<n>-<nanos>`: unique within and across test processes.
fn unique_suffix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The first `PATH` entry holding an executable file named `binary`.
pub fn find_in_path(binary: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// SIGINT a PipeWire tool (`pw-record`, `pw-cat`), so it finishes its file's header, and
/// reap it; killed outright if it has not ended within 2 s.
pub fn stop_gracefully(tool: &mut Child) {
    let _ = Command::new("kill")
        .args(["-INT", &tool.id().to_string()])
        .status();
    for _ in 0..50 {
        if let Ok(Some(_)) = tool.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(40));
    }
    let _ = tool.kill();
    let _ = tool.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headless_conf_drops_alsa_pcm_nodes_and_keeps_the_drivers() {
        let Ok(minimal) = std::fs::read_to_string(MINIMAL_CONF) else {
            println!("SKIPPED: {MINIMAL_CONF} absent");
            return;
        };
        let conf = headless_conf(&minimal);
        assert!(minimal.contains("api.alsa.pcm.sink"));
        let live = |s: &str, needle: &str| {
            s.lines()
                .any(|l| l.split('#').next().unwrap_or("").contains(needle))
        };
        assert!(!live(&conf, "api.alsa.pcm.source"));
        assert!(!live(&conf, "api.alsa.pcm.sink"));
        assert!(live(&conf, "Dummy-Driver"));
        assert!(live(&conf, "Freewheel-Driver"));
        assert!(live(&conf, "context.exec"));
        let balance = |s: &str| {
            s.lines()
                .map(|l| l.split('#').next().unwrap_or(""))
                .map(|c| c.matches('{').count() as i64 - c.matches('}').count() as i64)
                .sum::<i64>()
        };
        assert_eq!(
            balance(&conf),
            0,
            "unbalanced braces in the headless config"
        );
    }
}
