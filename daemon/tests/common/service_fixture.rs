//! A running `latentd` for the service tests: the real binary on the null output (or the
//! backend [`Launch::audio`] names, e.g. a private JACK server), in an isolated environment
//! (no JACK, no PipeWire, its own XDG dirs and state file), with its stderr collected line
//! by line, a raw OSC/UDP client for it, and the sd_notify socket a service manager would
//! own.
//!
//! Threading: one reader thread per daemon collects stderr; everything else runs on the
//! test's thread.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rosc::{OscMessage, OscPacket, OscType};
use tempfile::TempDir;

pub use super::osc_client::Status;
use super::{BIN, isolated_env};

/// Notify datagrams as received, each with its arrival time.
pub type Datagrams = Vec<(String, Instant)>;

/// A Unix datagram socket bound where `NOTIFY_SOCKET` will point, as systemd owns it.
pub struct NotifySocket {
    socket: UnixDatagram,
    /// The socket's path (the value for `NOTIFY_SOCKET`).
    pub path: PathBuf,
}

impl NotifySocket {
    /// Binds `notify.sock` in `dir`.
    pub fn bind(dir: &Path) -> Self {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        Self { socket, path }
    }

    /// The next datagram within `timeout`, with its arrival time.
    pub fn receive(&self, timeout: Duration) -> Option<(String, Instant)> {
        self.socket
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .unwrap();
        let mut buffer = [0u8; 4096];
        match self.socket.recv(&mut buffer) {
            Ok(n) => Some((
                String::from_utf8(buffer[..n].to_vec()).unwrap(),
                Instant::now(),
            )),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("notify socket: {e}"),
        }
    }

    /// A thread that receives every datagram from now on and stamps it on arrival (so the
    /// times are right while the test is busy elsewhere); it ends with the socket's owner.
    pub fn record(&self) -> std::sync::mpsc::Receiver<(String, Instant)> {
        let socket = self.socket.try_clone().unwrap();
        socket.set_read_timeout(None).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = socket.recv(&mut buffer) {
                let text = String::from_utf8(buffer[..n].to_vec()).unwrap();
                if tx.send((text, Instant::now())).is_err() {
                    return;
                }
            }
        });
        rx
    }

    /// Every datagram for `span`.
    pub fn collect_for(&self, span: Duration) -> Vec<(String, Instant)> {
        let end = Instant::now() + span;
        let mut out = Vec::new();
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            if let Some(m) = self.receive(left) {
                out.push(m);
            }
        }
        out
    }

    /// Datagrams until one contains `line` (returned last), or panic after `timeout`.
    pub fn until(&self, line: &str, timeout: Duration) -> Datagrams {
        self.until_or(line, timeout, || false)
            .unwrap_or_else(|got| panic!("no {line} within {timeout:?}; got {got:?}"))
    }

    /// Datagrams until one contains `line` (returned last); `Err` with those received when
    /// `timeout` passes or `give_up` (asked at least every 100 ms while nothing arrives)
    /// says so.
    pub fn until_or(
        &self,
        line: &str,
        timeout: Duration,
        mut give_up: impl FnMut() -> bool,
    ) -> Result<Datagrams, Datagrams> {
        let end = Instant::now() + timeout;
        let mut out = Vec::new();
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.receive(left.min(Duration::from_millis(100))) {
                Some(m) => {
                    let done = m.0.lines().any(|l| l == line);
                    out.push(m);
                    if done {
                        return Ok(out);
                    }
                }
                None if give_up() => return Err(out),
                None => {}
            }
        }
        Err(out)
    }
}

/// How to start a daemon.
pub struct Launch<'a> {
    /// Extra arguments after the fixed ones.
    pub args: Vec<String>,
    /// Extra environment.
    pub env: Vec<(&'a str, String)>,
    /// `NOTIFY_SOCKET` target, if any.
    pub notify: Option<&'a NotifySocket>,
    /// `--osc` (default `127.0.0.1:0`: a free port).
    pub osc_bind: String,
    /// `--audio` (default `null`; `jack` with `JACK_DEFAULT_SERVER` in `env` plays into a
    /// private server).
    pub audio: &'a str,
    /// `--oscquery-port` (default 0: off).
    pub oscquery_port: u16,
    /// `--state` (default `<dir>/state.json`).
    pub state: Option<PathBuf>,
    /// A network namespace (`ip netns`) to run the daemon in (default: this process's).
    pub netns: Option<&'a str>,
}

impl Default for Launch<'_> {
    fn default() -> Self {
        Self {
            args: Vec::new(),
            env: Vec::new(),
            notify: None,
            osc_bind: "127.0.0.1:0".into(),
            audio: "null",
            oscquery_port: 0,
            state: None,
            netns: None,
        }
    }
}

impl<'a> Launch<'a> {
    /// `--audio jack --engine off <args>` into the JACK server named `server`, readiness
    /// to `notify`: the loop plays what a source or a capture puts in it, nothing else.
    pub fn engine_off_on_jack(server: &str, notify: &'a NotifySocket, args: &[&str]) -> Self {
        Self {
            audio: "jack",
            notify: Some(notify),
            env: vec![("JACK_DEFAULT_SERVER", server.to_owned())],
            args: ["--engine", "off"]
                .iter()
                .chain(args)
                .map(|a| a.to_string())
                .collect(),
            ..Self::default()
        }
    }

    /// Plays the bundle `model` on the ONNX Runtime `library` into the JACK server named
    /// `server`, with a `loop_s` loop, recording what it plays to `record`.
    pub fn bundle_on_jack(
        server: &str,
        library: &Path,
        model: &Path,
        loop_s: u32,
        record: &Path,
    ) -> Self {
        Self {
            audio: "jack",
            env: vec![
                ("JACK_DEFAULT_SERVER", server.to_owned()),
                ("ORT_DYLIB_PATH", library.display().to_string()),
            ],
            args: vec![
                "--model".into(),
                model.display().to_string(),
                "--loop-seconds".into(),
                loop_s.to_string(),
                "--record".into(),
                record.display().to_string(),
            ],
            ..Self::default()
        }
    }
}

/// A running `latentd` (killed on drop if still running).
pub struct Daemon {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// The state file it was started with.
    pub state: PathBuf,
}

impl Daemon {
    /// Starts `latentd --audio <launch.audio> --oscquery-port <launch.oscquery_port> --osc
    /// <launch.osc_bind> --state <launch.state or dir/state.json>` plus `launch`.
    pub fn start(dir: &TempDir, launch: Launch<'_>) -> Self {
        let state = launch
            .state
            .clone()
            .unwrap_or_else(|| dir.path().join("state.json"));
        let mut cmd = match launch.netns {
            Some(netns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", netns, BIN]);
                cmd
            }
            None => Command::new(BIN),
        };
        isolated_env(&mut cmd, dir.path())
            .args(["--audio", launch.audio, "--oscquery-port"])
            .arg(launch.oscquery_port.to_string())
            .arg("--osc")
            .arg(&launch.osc_bind)
            .arg("--state")
            .arg(&state)
            .args(&launch.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(notify) = launch.notify {
            cmd.env("NOTIFY_SOCKET", &notify.path);
        }
        for (key, value) in &launch.env {
            cmd.env(key, value);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            lines,
            state,
        }
    }

    /// The stderr lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits until a stderr line contains `text`; returns it.
    pub fn wait_line(&self, text: &str, timeout: Duration) -> String {
        let end = Instant::now() + timeout;
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| l.contains(text)) {
                return line;
            }
            if Instant::now() > end {
                panic!(
                    "no line with {text:?} in {timeout:?}:\n{}",
                    self.lines().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for `READY=1` on `notify`. A daemon that exits first fails the test at once
    /// with its exit status and log, and one still starting after `timeout` fails with its
    /// log: the reason is in the failure, not lost with the child.
    pub fn until_ready(&mut self, notify: &NotifySocket, timeout: Duration) {
        if let Err(failure) = self.start_outcome(notify, timeout) {
            panic!("{failure}");
        }
    }

    /// [`until_ready`](Self::until_ready), with the failure returned instead of panicking.
    pub fn start_outcome(
        &mut self,
        notify: &NotifySocket,
        timeout: Duration,
    ) -> Result<(), String> {
        let got = match notify.until_or("READY=1", timeout, || self.exited().is_some()) {
            Ok(_) => return Ok(()),
            Err(got) => got,
        };
        let why = match self.exited() {
            Some(status) => {
                // Let the reader thread take the last lines.
                std::thread::sleep(Duration::from_millis(50));
                format!("exited before READY=1 ({status:?})")
            }
            None => format!("no READY=1 within {timeout:?}"),
        };
        Err(format!(
            "{why}; notify got {got:?}; log:\n{}",
            self.lines().join("\n")
        ))
    }

    /// Whether a stderr line contains `text` now.
    pub fn has_line(&self, text: &str) -> bool {
        self.lines().iter().any(|l| l.contains(text))
    }

    /// The OSC address from the "OSC listening on udp://…" line.
    pub fn osc_addr(&self, timeout: Duration) -> SocketAddr {
        let line = self.wait_line("OSC listening on udp://", timeout);
        let rest = line.split("udp://").nth(1).unwrap();
        rest.split_whitespace().next().unwrap().parse().unwrap()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits up to `limit` for the exit.
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    /// SIGTERM, then the exit status and how long the exit took (panics after 5 s).
    pub fn terminate(&mut self) -> (ExitStatus, Duration) {
        let sent = Instant::now();
        self.signal(libc::SIGTERM);
        let status = self
            .wait(Duration::from_secs(5))
            .unwrap_or_else(|| panic!("no exit 5 s after SIGTERM:\n{}", self.lines().join("\n")));
        let took = sent.elapsed();
        // Let the reader thread take the last lines.
        std::thread::sleep(Duration::from_millis(50));
        (status, took)
    }

    /// [`terminate`](Self::terminate), which must end in exit status 0 (else a panic with
    /// the status and the daemon's log); how long the exit took.
    pub fn stop_cleanly(&mut self) -> Duration {
        let (status, took) = self.terminate();
        assert_eq!(
            status.code(),
            Some(0),
            "{status:?}\n{}",
            self.lines().join("\n")
        );
        took
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

/// A raw OSC/UDP client.
pub struct Osc {
    socket: UdpSocket,
    to: SocketAddr,
}

impl Osc {
    /// A client for the daemon at `to`.
    pub fn new(to: SocketAddr) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        Self { socket, to }
    }

    /// A client for the daemon at `to` sending from `socket` (e.g. one bound in another
    /// network namespace).
    pub fn from_socket(socket: UdpSocket, to: SocketAddr) -> Self {
        Self { socket, to }
    }

    /// Sends `/addr args…`.
    pub fn send(&self, addr: &str, args: Vec<OscType>) {
        let packet = OscPacket::Message(OscMessage {
            addr: addr.to_string(),
            args,
        });
        self.socket
            .send_to(&rosc::encoder::encode(&packet).unwrap(), self.to)
            .unwrap();
    }

    /// The next message addressed `addr` within `timeout` (others are skipped).
    pub fn reply(&self, addr: &str, timeout: Duration) -> Option<OscMessage> {
        let end = Instant::now() + timeout;
        let mut buffer = [0u8; 65_536];
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            self.socket
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let Ok(n) = self.socket.recv(&mut buffer) else {
                continue;
            };
            let (_, packet) = rosc::decoder::decode_udp(&buffer[..n]).unwrap();
            if let Some(m) = find(packet, addr) {
                return Some(m);
            }
        }
        None
    }

    /// Sends `/addr args…` and waits for `reply_addr`.
    pub fn ask(&self, addr: &str, args: Vec<OscType>, reply_addr: &str) -> Option<OscMessage> {
        self.send(addr, args);
        self.reply(reply_addr, Duration::from_secs(2))
    }

    /// `/status` now (panics without a reply).
    pub fn status(&self) -> Status {
        let m = self
            .ask("/status", vec![], "/status.reply")
            .expect("no /status.reply within 2 s");
        Status::parse(&m.args)
    }

    /// A knob's value, queried.
    pub fn knob(&self, name: &str) -> f64 {
        let addr = format!("/knob/{name}");
        let m = self
            .ask(&addr, vec![], &addr)
            .unwrap_or_else(|| panic!("no reply to {addr}"));
        match m.args[0] {
            OscType::Float(v) => f64::from(v),
            OscType::Double(v) => v,
            OscType::Int(v) => f64::from(v),
            ref other => panic!("{addr}: {other:?}"),
        }
    }
}

fn find(packet: OscPacket, addr: &str) -> Option<OscMessage> {
    match packet {
        OscPacket::Message(m) if m.addr == addr => Some(m),
        OscPacket::Message(_) => None,
        OscPacket::Bundle(b) => b.content.into_iter().find_map(|p| find(p, addr)),
    }
}
