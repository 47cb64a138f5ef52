//! A private JACK server for one test: `jackd --no-realtime --sync -n <pool name> -d dummy`,
//! started by [`JackServer::start`] and stopped by PID when dropped. A test of recovery can
//! [`kill`](JackServer::kill) it and [`restart`](JackServer::restart) it under the same name.
//! [`JackServer::start_realtime`] starts one with `--realtime --realtime-priority <p>`
//! instead, for the tests of what a realtime server gives its clients.
//!
//! `--sync` makes the server wait for the whole graph every cycle: without realtime
//! scheduling on a loaded machine a client can miss a cycle (an xrun), and a capture
//! client would then see a hole that is no fault of the client under test. In sync mode a
//! late cycle is late, never skipped, so captures stay contiguous.
//!
//! # Names, and JACK's eight server slots
//!
//! libjack registers every server in one shared table of eight slots (`/dev/shm`), freed
//! when a server exits cleanly and otherwise kept until a server of the *same name* starts
//! and reclaims it. A test run that leaked slots under unique names would fill the table
//! ("Too many servers already active") and fail every JACK test after. So names come from
//! a pool of [`NAME_POOL`] (`latentd-test-<n>`), each held through an exclusive `flock` on
//! a lock file while its server lives (across test processes; a dead process's lock is
//! released by the kernel): a slot leaked by a crashed test is reclaimed by the next
//! server of that name. The pool leaves two slots free for servers started elsewhere (the
//! netjack test's). A stop waits up to 30 s for jackd to exit on SIGTERM (it
//! can take seconds on a loaded machine) before it is killed.
//!
//! Threading: a plain value owned by one test. Clients reach it through
//! `JACK_DEFAULT_SERVER=<name>`; subprocesses get that variable from
//! [`JackServer::command`].

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a server may take to answer `jack_lsp` after it is spawned.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to exit after SIGTERM before it gets SIGKILL (which leaks
/// its registry slot until the name is used again).
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Server names in the pool (see the module doc): JACK's 8 slots less 2.
pub const NAME_POOL: usize = 6;
/// How long a server start waits for a free name.
const NAME_TIMEOUT: Duration = Duration::from_secs(120);

/// A pool name, held while the returned file (its lock) is open.
fn claim_name() -> (String, File) {
    let deadline = Instant::now() + NAME_TIMEOUT;
    loop {
        for n in 0..NAME_POOL {
            let path = std::env::temp_dir().join(format!("latentd-test-jack-{n}.lock"));
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
            // SAFETY: flock(2) on a descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return (format!("latentd-test-{n}"), file);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no JACK test server name free for {NAME_TIMEOUT:?}: {NAME_POOL} servers are running"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A `jackd` with the dummy driver under a name no other test uses.
pub struct JackServer {
    name: String,
    /// The lock on `name` (see the module doc); released when the server is dropped.
    _name_lock: File,
    /// The running jackd; `None` between [`JackServer::kill`] and
    /// [`JackServer::restart`] (never a reaped child, whose PID may be reused).
    child: Option<Child>,
    log: PathBuf,
    /// `--realtime-priority` when started realtime; `None`: `--no-realtime`.
    realtime: Option<u32>,
}

impl JackServer {
    /// Start a dummy-driver server at `sample_rate` Hz with `period` frames per cycle and
    /// wait until it answers. Panics with the reason (jackd missing, jackd exited, no answer
    /// in time) and jackd's own output.
    pub fn start(sample_rate: u32, period: usize) -> JackServer {
        JackServer::start_with(sample_rate, period, None)
    }

    /// [`JackServer::start`], but realtime: `jackd --realtime --realtime-priority
    /// <priority>` (jackd keeps running without realtime where the system refuses it; the
    /// caller checks what its clients got).
    pub fn start_realtime(sample_rate: u32, period: usize, priority: u32) -> JackServer {
        JackServer::start_with(sample_rate, period, Some(priority))
    }

    fn start_with(sample_rate: u32, period: usize, realtime: Option<u32>) -> JackServer {
        let (name, name_lock) = claim_name();
        let log = std::env::temp_dir().join(format!("{name}.log"));
        // A leftover of an earlier server of the same name; restarts append to it.
        let _ = std::fs::remove_file(&log);
        let mut server = JackServer {
            name,
            _name_lock: name_lock,
            child: None,
            log,
            realtime,
        };
        server.spawn(sample_rate, period);
        server
    }

    /// Kill the server with SIGKILL, as a crash would (no goodbye to its clients; they
    /// learn it from their sockets), and reap it. A no-op if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stop the server with SIGTERM, as `systemctl stop` would (it disconnects every port,
    /// then tells its clients it is going), and reap it; SIGKILL if it lingers. A no-op if
    /// it is not running.
    pub fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: plain kill(2) on our own child, which has not been reaped yet.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Start the server again under the same name (after [`JackServer::kill`]; it kills a
    /// running one first), at `sample_rate` and `period`, and wait until it answers.
    pub fn restart(&mut self, sample_rate: u32, period: usize) {
        self.kill();
        self.spawn(sample_rate, period);
    }

    fn spawn(&mut self, sample_rate: u32, period: usize) {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", self.log.display()));
        let log_err = log_file
            .try_clone()
            .expect("duplicating the log file handle");
        let scheduling = match self.realtime {
            Some(priority) => vec![
                "--realtime".to_owned(),
                "--realtime-priority".to_owned(),
                priority.to_string(),
            ],
            None => vec!["--no-realtime".to_owned()],
        };
        let child = Command::new("jackd")
            .args(&scheduling)
            .args(["--sync", "-n", &self.name, "-d", "dummy"])
            .args(["-r", &sample_rate.to_string(), "-p", &period.to_string()])
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run jackd ({e}); install the jackd2 package (apt-get install jackd2)"
                )
            });
        self.child = Some(child);
        self.wait_until_answering();
    }

    /// Send `signal` to the running server (SIGSTOP and SIGCONT freeze and resume it, as a
    /// hung machine would). Panics if it is not running.
    pub fn signal(&self, signal: libc::c_int) {
        let child = self
            .child
            .as_ref()
            .expect("signal: the server is not running");
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        // SAFETY: plain kill(2) on our own child, which has not been reaped yet.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// The server name, for `JACK_DEFAULT_SERVER`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command aimed at this server (`JACK_DEFAULT_SERVER` set, autostart off).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("JACK_DEFAULT_SERVER", &self.name)
            .env("JACK_NO_START_SERVER", "1");
        cmd
    }

    /// Port names as `jack_lsp` lists them. Panics if `jack_lsp` cannot run or keeps failing.
    pub fn list_ports(&self) -> Vec<String> {
        // Right after a restart jack_lsp can fail once to open its client ("Cannot open lsp
        // client", status 0x21) while the server settles: try a few times before failing.
        let mut last_error = String::new();
        for attempt in 0..5 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(50));
            }
            let out = self.command("jack_lsp").output().unwrap_or_else(|e| {
                panic!(
                    "cannot run jack_lsp ({e}); install the jackd2 package (apt-get install jackd2)"
                )
            });
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .map(str::to_owned)
                    .collect();
            }
            last_error = String::from_utf8_lossy(&out.stderr).into_owned();
        }
        panic!(
            "jack_lsp against {} failed 5 times: {last_error}",
            self.name
        )
    }

    /// Every port and the ports it is linked to (sorted), as `jack_lsp -c` lists them; empty
    /// when `jack_lsp` cannot answer (e.g. while the server restarts), so it can be polled.
    pub fn connections(&self) -> BTreeMap<String, Vec<String>> {
        let Ok(out) = self.command("jack_lsp").arg("-c").output() else {
            return BTreeMap::new();
        };
        let mut map = BTreeMap::<String, Vec<String>>::new();
        let mut current = String::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(peer) = line.strip_prefix("   ") {
                map.entry(current.clone())
                    .or_default()
                    .push(peer.to_owned());
            } else {
                current = line.to_owned();
                map.entry(current.clone()).or_default();
            }
        }
        map.values_mut().for_each(|peers| peers.sort());
        map
    }

    /// What jackd has written to its stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_until_answering(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let child = self
                .child
                .as_mut()
                .expect("wait_until_answering after spawn");
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "jackd {} exited early ({status}):\n{}",
                    self.name,
                    self.log()
                );
            }
            let answered = self
                .command("jack_lsp")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .output()
                .unwrap_or_else(|e| {
                    panic!("cannot run jack_lsp ({e}); install the jackd2 package (apt-get install jackd2)")
                });
            if answered.status.success() && !answered.stdout.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "jackd {} did not answer jack_lsp within {START_TIMEOUT:?}:\n{}",
                    self.name,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for JackServer {
    /// SIGTERM (jackd then removes its sockets and shared memory), SIGKILL if it lingers.
    fn drop(&mut self) {
        self.terminate();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The lock that serializes [`JackSession`]s within one test process.
static JACK_SESSIONS: Mutex<()> = Mutex::new(());

/// A private server made this process's default (`JACK_DEFAULT_SERVER`) while the session
/// lives. libjack reads the variable process-wide, so sessions in one process take turns: a
/// second [`JackSession::start`] waits until the first is dropped.
pub struct JackSession {
    // Field order is drop order: the server stops before the lock is released.
    /// The private server.
    pub server: JackServer,
    _serial: MutexGuard<'static, ()>,
}

impl JackSession {
    /// Wait for the process's turn, start a server at `sample_rate` / `period` and make it
    /// the default.
    pub fn start(sample_rate: u32, period: usize) -> JackSession {
        JackSession::start_with(|| JackServer::start(sample_rate, period))
    }

    /// [`JackSession::start`] with a realtime server ([`JackServer::start_realtime`]).
    pub fn start_realtime(sample_rate: u32, period: usize, priority: u32) -> JackSession {
        JackSession::start_with(|| JackServer::start_realtime(sample_rate, period, priority))
    }

    fn start_with(start: impl FnOnce() -> JackServer) -> JackSession {
        let serial = JACK_SESSIONS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let server = start();
        // SAFETY: JACK_SESSIONS is held, so no other thread of this process using a session
        // reads or writes the environment now.
        unsafe { std::env::set_var("JACK_DEFAULT_SERVER", server.name()) };
        JackSession {
            server,
            _serial: serial,
        }
    }
}
