//! latentd on a GPU host heard on a stage machine through netjack2, on one machine: two
//! network namespaces (`ip netns`) joined by a veth pair with multicast on. Host A runs
//! `jackd -d net` (the netjack2 slave, driven by the network) and the real `latentd`
//! playing a known tone into it; stage B runs `jackd -d dummy` with `jack_load netmanager`
//! (the master) and a capture client on the slave's ports. OSC goes from B to A across the
//! veth, to a daemon bound to A's veth address with an allowlist.
//!
//! The test reports and checks:
//! - the tone arrives at B, and the hop (graph on A to graph on B) measured on a marker in
//!   the loop (a 10 ms gap once a second, timed at A and at B on the machine's one clock);
//! - control-to-ear measured at B (`/transport/play` sent from B, first sound at B)
//!   includes the hop (it is at least the net driver's reported latency) and nothing of
//!   the size of a second buffer chain (under [`MAX_CONTROL_TO_EAR_US`]); control-to-ear at
//!   A is reported beside it (A's cycle stamps follow the network's packets, so it is
//!   indicative only);
//! - latentd's JACK playback latency range includes the net driver's, and `/status`
//!   (`output_latency_ms`) reports it;
//! - an address outside the allowlist is not served across the link;
//! - a link drop (A's veth down for 4 s, then up and its route back, as a network manager
//!   does) is survived without restarting latentd: the slave finds the master again, B
//!   relinks its ports (as `netmanager -c` or a session manager does) and hears the tone.
//!
//! libjack serves one server per process, so A's capture runs in a child process (this
//! binary again, test [`a_side_capture`], told what to do by [`HELPER_DIR`]); both sides
//! stamp cycles with `jack_get_time()`, the machine's monotonic clock.
//!
//! Needs root (`ip netns add`), jackd2 with its net backends. Without them the test prints
//! `SKIPPED: <why>` and passes, unless `LATENTD_REQUIRE_NETNS=1` (scripts/test.sh sets it).
//! Everything started is stopped and the namespaces deleted by guards, also on failure;
//! jackd is stopped with SIGTERM (a SIGKILLed jackd leaks a server slot).
//!
//! Threading: the test's thread drives everything; the capture's callbacks run on JACK's
//! threads (see [`JackCapture`]); a short-lived thread enters B's namespace to bind the
//! OSC sockets (a socket stays in the namespace it was made in).

mod common;

use latentd_engine::lock::MutexExt;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::service_fixture::{Daemon, Launch, NotifySocket, Osc};
use latentd_tests::JackCapture;
use tempfile::TempDir;

/// Set (to a folder) in the child that captures on A's server.
const HELPER_DIR: &str = "LATENTD_NETJACK_CAPTURE_DIR";
/// Serializes this binary's tests: the capture finds its server through the process-wide
/// `JACK_DEFAULT_SERVER`.
static SERIAL: Mutex<()> = Mutex::new(());

const RATE: u32 = 48_000;
const PERIOD: usize = 256;
/// netjack2 latency, in cycles (`jackd -d net -l`).
const NET_LATENCY_CYCLES: u32 = 5;
const LEVEL: f32 = 0.5;
const TONE_HZ: f64 = 440.0;
/// The marker: this many silent frames at the start of each one-second loop.
const MARKER_FRAMES: usize = 480;
/// A's and B's addresses on the veth (each namespace is private, so fixed ones are safe).
const ADDR_A: &str = "10.203.0.1";
const ADDR_B: &str = "10.203.0.2";
/// A second address on B, outside the allowlist.
const ADDR_B_DENIED: &str = "10.203.0.3";
/// The netjack2 slave's name: B's ports are `<SLAVE>:from_slave_1` and `_2`.
const SLAVE: &str = "gpu-host";
/// How long the link stays down: longer than the slave's wait for its master (about 2 s),
/// so A's graph both stops and then runs on its own timer.
const LINK_DOWN: Duration = Duration::from_secs(4);
/// Control edges measured.
const EDGES: usize = 4;
/// Share of B's frames that must play the tone at full level while the link is up. jackd
/// runs --no-realtime here and the async master drops a cycle now and then on a loaded
/// machine (86-87 % measured on a 2-core VM running four builds; 100 % idle).
const MIN_FULL_SHARE: f64 = 0.75;
/// Upper bound of control-to-ear at B: the hop (-l 5 at 256 frames: 26.7 ms of cycles)
/// plus an OSC datagram and a few cycles of scheduling slack; a second buffer chain
/// (another hop, a resampler's block, a lead of the engine) would exceed it.
const MAX_CONTROL_TO_EAR_US: f64 = 100_000.0;

fn required() -> bool {
    std::env::var("LATENTD_REQUIRE_NETNS").is_ok_and(|v| v == "1")
}

fn skip(why: &str) {
    assert!(
        !required(),
        "LATENTD_REQUIRE_NETNS=1 but the netjack2 topology cannot be built: {why}"
    );
    println!("SKIPPED: {why}");
}

/// Run `ip args`; its stderr on failure.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Two namespaces joined by a veth pair (`va` in A, `vb` in B), addressed, multicast on,
/// with a multicast route each; deleted (with the veth) on drop.
struct Topology {
    a: String,
    b: String,
}

impl Topology {
    fn build() -> Result<Topology, String> {
        let pid = std::process::id();
        let (a, b) = (format!("latentd-a-{pid}"), format!("latentd-b-{pid}"));
        // Built before the namespaces, so a failure half-way deletes what was made.
        let topology = Topology {
            a: a.clone(),
            b: b.clone(),
        };
        ip(&["netns", "add", &a])?;
        ip(&["netns", "add", &b])?;
        ip(&[
            "-n", &a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &b,
        ])?;
        for (ns, dev, addr) in [(&a, "va", ADDR_A), (&b, "vb", ADDR_B)] {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up", "multicast", "on"])?;
            ip(&["-n", ns, "route", "add", "224.0.0.0/4", "dev", dev])?;
        }
        ip(&[
            "-n",
            &b,
            "addr",
            "add",
            &format!("{ADDR_B_DENIED}/24"),
            "dev",
            "vb",
        ])?;
        Ok(topology)
    }

    /// Take A's end of the link down (its routes go with it).
    fn link_down(&self) {
        ip(&["-n", &self.a, "link", "set", "va", "down"]).unwrap();
    }

    /// Bring A's end up again and restore its multicast route, as a network manager does.
    fn link_up(&self) {
        ip(&["-n", &self.a, "link", "set", "va", "up"]).unwrap();
        ip(&[
            "-n",
            &self.a,
            "route",
            "replace",
            "224.0.0.0/4",
            "dev",
            "va",
        ])
        .unwrap();
    }

    /// A UDP socket bound to `addr` inside namespace `ns`.
    fn udp_socket(ns: &str, addr: &str) -> UdpSocket {
        let path = PathBuf::from("/run/netns").join(ns);
        let addr: SocketAddr = format!("{addr}:0").parse().unwrap();
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap();
            // SAFETY: setns(2) on a namespace file we hold open; it moves only this
            // short-lived thread, which binds the socket and ends.
            let rc =
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            UdpSocket::bind(addr).unwrap()
        })
        .join()
        .unwrap()
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// How long a jackd may take to exit after SIGTERM before it gets SIGKILL.
const STOP_SECONDS: u64 = 40;

/// A private jackd in a namespace, stopped with SIGTERM on drop (SIGKILL only if it
/// lingers).
struct Server {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Server {
    /// `ip netns exec <ns> jackd --no-realtime -n <name> -d <driver args>`; waits until it
    /// answers (a net slave answers once it has found its master).
    fn start(ns: &str, name: String, dir: &Path, driver: &[&str]) -> Server {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "jackd",
                "--no-realtime",
                "-n",
                &name,
                "-d",
            ])
            .args(driver)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let server = Server {
            name,
            child: Some(child),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !server.answers() {
            assert!(
                Instant::now() < deadline,
                "jackd {} did not answer within 20 s:\n{}",
                server.name,
                server.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("JACK_DEFAULT_SERVER", &self.name)
            .env("JACK_NO_START_SERVER", "1");
        cmd
    }

    fn answers(&self) -> bool {
        self.command("jack_lsp")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success() && !o.stdout.is_empty())
    }

    /// `jack_load netmanager` (in-process client of the server, so no namespace needed:
    /// its sockets are the server's).
    fn load_netmanager(&self) {
        let out = self
            .command("jack_load")
            .arg("netmanager")
            .output()
            .unwrap();
        assert!(out.status.success(), "jack_load netmanager: {out:?}");
    }

    /// `jack_lsp -l`'s playback latency range of `port`.
    fn playback_latency(&self, port: &str) -> (u32, u32) {
        let out = self
            .command("jack_lsp")
            .args(["-l", port])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.contains("port playback latency"))
            .unwrap_or_else(|| panic!("no playback latency for {port}: {text}"));
        let inner = line.split('[').nth(1).unwrap().split(']').next().unwrap();
        let mut it = inner.split_whitespace().map(|v| v.parse().unwrap());
        (it.next().unwrap(), it.next().unwrap())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on our own unreaped child (`ip netns exec` execs jackd).
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        // With netmanager loaded jackd takes seconds to close (its thread waits on the
        // multicast socket); `jack_unload` first does not help and can hang itself.
        let deadline = Instant::now() + Duration::from_secs(STOP_SECONDS);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "jackd {} ignored SIGTERM for {STOP_SECONDS} s: SIGKILL (a server slot leaks)",
            self.name
        );
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One capture with every cycle's start on the monotonic clock (µs, `jack_get_time`).
#[derive(Debug, Default)]
struct Timed {
    /// Interleaved stereo.
    samples: Vec<f32>,
    /// Per cycle: start (µs) and frames.
    periods: Vec<(f64, usize)>,
}

impl Timed {
    fn frames(&self) -> usize {
        self.samples.len() / 2
    }

    /// Envelope of frame `i` relative to [`LEVEL`] (1 for the tone, 0 for the marker).
    fn envelope(&self, i: usize) -> f32 {
        let (l, r) = (self.samples[2 * i], self.samples[2 * i + 1]);
        (l * l + r * r).sqrt() / LEVEL
    }

    /// The time of every frame, µs.
    fn times(&self) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.frames());
        for &(start, frames) in &self.periods {
            out.extend((0..frames).map(|k| start + k as f64 * 1e6 / f64::from(RATE)));
        }
        out
    }

    /// Times (µs) of the marker's starts: full level, then silence at once.
    fn markers(&self) -> Vec<f64> {
        let t = self.times();
        (1..self.frames())
            .filter(|&i| self.envelope(i - 1) > 0.9 && self.envelope(i) < 0.05)
            .map(|i| t[i])
            .collect()
    }

    /// The time (µs) of the first sound (a frame above 1 % of full level after one below)
    /// after `t`: sent during a pause, the transport's return.
    fn onset_after(&self, t: f64) -> Option<f64> {
        let times = self.times();
        (1..self.frames())
            .find(|&i| times[i] > t && self.envelope(i - 1) < 0.01 && self.envelope(i) >= 0.01)
            .map(|i| times[i])
    }

    /// Share of the frames timed within `from..to` (µs) that play the tone at full level.
    fn full_share(&self, from: f64, to: f64) -> (usize, f64) {
        let t = self.times();
        let inside: Vec<usize> = (0..self.frames())
            .filter(|&i| (from..to).contains(&t[i]))
            .collect();
        let full = inside
            .iter()
            .filter(|&&i| (self.envelope(i) - 1.0).abs() < 0.01)
            .count();
        (inside.len(), full as f64 / inside.len().max(1) as f64)
    }
}

/// Take the cycles recorded since `done`, with their start times.
fn stamp(capture: &JackCapture, timed: &mut Timed, done: &mut usize, samples_done: &mut usize) {
    let rec = capture.recording();
    for p in &rec.periods[*done..] {
        let t = p.usecs as f64;
        timed.periods.push((t, p.frames as usize));
    }
    *done = rec.periods.len();
    let frames: usize = timed.periods.iter().map(|p| p.1).sum();
    timed
        .samples
        .extend_from_slice(&rec.samples[*samples_done..2 * frames]);
    *samples_done = 2 * frames;
}

/// The child's half: capture `latentd:out_*` on A's server (`JACK_DEFAULT_SERVER`), stamp
/// as it goes, and when `<dir>/stop` appears write `periods.txt` and `samples.f32`.
#[test]
fn a_side_capture() {
    let _serial = SERIAL.lock_unpoisoned();
    let Some(dir) = std::env::var_os(HELPER_DIR).map(PathBuf::from) else {
        return; // only the parent test runs this, in a child
    };
    let capture = JackCapture::connected("capture-a", ["latentd:out_1", "latentd:out_2"]);
    let mut timed = Timed::default();
    let (mut done, mut samples_done) = (0, 0);
    std::fs::write(dir.join("started"), "").unwrap();
    while !dir.join("stop").exists() {
        stamp(&capture, &mut timed, &mut done, &mut samples_done);
        std::thread::sleep(Duration::from_millis(20));
    }
    stamp(&capture, &mut timed, &mut done, &mut samples_done);
    capture.abandon(); // the server may be restarting its driver; leave the close to exit
    let periods: String = timed
        .periods
        .iter()
        .map(|(t, n)| format!("{t} {n}\n"))
        .collect();
    std::fs::write(dir.join("periods.txt"), periods).unwrap();
    let bytes: Vec<u8> = timed.samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(dir.join("samples.f32"), bytes).unwrap();
    std::fs::write(dir.join("written"), "").unwrap();
}

/// The parent's handle on the child capturing on A; killed on drop if still running.
struct ASide {
    child: Child,
    dir: PathBuf,
}

impl ASide {
    fn start(server: &Server, dir: &Path) -> ASide {
        let dir = dir.join("a-capture");
        std::fs::create_dir_all(&dir).unwrap();
        let child = server
            .command(std::env::current_exe().unwrap().to_str().unwrap())
            .args([
                "a_side_capture",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HELPER_DIR, &dir)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let side = ASide { child, dir };
        wait_for(&side.dir.join("started"), Duration::from_secs(10));
        side
    }

    fn finish(mut self) -> Timed {
        std::fs::write(self.dir.join("stop"), "").unwrap();
        wait_for(&self.dir.join("written"), Duration::from_secs(10));
        let _ = self.child.wait();
        let periods = std::fs::read_to_string(self.dir.join("periods.txt")).unwrap();
        let bytes = std::fs::read(self.dir.join("samples.f32")).unwrap();
        Timed {
            samples: bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            periods: periods
                .lines()
                .map(|l| {
                    let (t, n) = l.split_once(' ').unwrap();
                    (t.parse().unwrap(), n.parse().unwrap())
                })
                .collect(),
        }
    }
}

impl Drop for ASide {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = std::fs::write(self.dir.join("stop"), "");
            if common::wait_timeout(&mut self.child, Duration::from_secs(5)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

fn wait_for(path: &Path, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "no {} within {limit:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The loop: a 440 Hz quadrature pair (so the envelope is constant) with the marker.
fn write_tone(path: &Path) {
    let mut samples = Vec::with_capacity(2 * RATE as usize);
    for i in 0..RATE as usize {
        let phase = std::f64::consts::TAU * TONE_HZ * i as f64 / f64::from(RATE);
        let on = if i < MARKER_FRAMES { 0.0 } else { LEVEL };
        samples.push(on * phase.sin() as f32);
        samples.push(on * phase.cos() as f32);
    }
    common::write_float_wav(path, 2, RATE, &samples);
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(v: &[f64]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{:.2}", x / 1000.0)).collect();
    format!("[{}] ms", parts.join(", "))
}

/// The slave's two ports on B as its server lists them now (panics if absent).
fn slave_ports_now(stage: &Server) -> [String; 2] {
    let out = stage.command("jack_lsp").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let find = |k: usize| {
        text.lines()
            .find(|l| l.starts_with(SLAVE) && l.ends_with(&format!(":from_slave_{k}")))
            .unwrap_or_else(|| panic!("no {SLAVE}:from_slave_{k} on B: {text}"))
            .to_owned()
    };
    [find(1), find(2)]
}

/// The slave's two ports on B, when B's server lists them. The master registers them
/// under the slave's name, or a variant of it (`gpu-host-01`) when the slave returns
/// before its old client is gone.
fn slave_ports(capture: &JackCapture) -> Option<[String; 2]> {
    let find = |k: usize| {
        capture
            .client()
            .ports(
                Some(&format!("^{SLAVE}.*:from_slave_{k}$")),
                None,
                jack::PortFlags::empty(),
            )
            .pop()
    };
    Some([find(1)?, find(2)?])
}

#[test]
fn netjack2_carries_the_tone_to_the_stage_and_survives_a_link_drop() {
    let _serial = SERIAL.lock_unpoisoned();
    if std::env::var_os(HELPER_DIR).is_some() {
        return;
    }
    let topology = match Topology::build() {
        Ok(t) => t,
        Err(why) => return skip(&format!("network namespaces: {why}")),
    };
    if Command::new("jackd").arg("--version").output().is_err() {
        return skip("jackd is not installed (apt-get install jackd2)");
    }
    let dir = TempDir::new().unwrap();
    let pid = std::process::id();
    let period = PERIOD.to_string();
    let rate = RATE.to_string();

    // B: the stage's server and the netjack2 master.
    let stage = Server::start(
        &topology.b,
        format!("latentd-stage-{pid}"),
        dir.path(),
        &["dummy", "-r", &rate, "-p", &period],
    );
    stage.load_netmanager();
    // A: the GPU host's server, a netjack2 slave driven by B.
    let latency = NET_LATENCY_CYCLES.to_string();
    let host = Server::start(
        &topology.a,
        format!("latentd-host-{pid}"),
        dir.path(),
        &["net", "-l", &latency, "-n", SLAVE],
    );

    // latentd on A, bound to A's veth address, serving B only.
    let tone = dir.path().join("tone.wav");
    write_tone(&tone);
    let config = dir.path().join("latentd.toml");
    std::fs::write(
        &config,
        format!("[log]\nlevel = \"info\"\n[osc]\nallowlist = [\"{ADDR_B}/32\"]\n"),
    )
    .unwrap();
    let notify = NotifySocket::bind(dir.path());
    let mut daemon = Daemon::start(
        &dir,
        Launch {
            audio: "jack",
            netns: Some(&topology.a),
            notify: Some(&notify),
            osc_bind: format!("{ADDR_A}:0"),
            env: vec![("JACK_DEFAULT_SERVER", host.name.clone())],
            args: [
                "--engine",
                "off",
                "--autoconnect",
                "--source",
                tone.to_str().unwrap(),
                "--config",
                config.to_str().unwrap(),
            ]
            .map(String::from)
            .to_vec(),
            ..Launch::default()
        },
    );
    notify.until("READY=1", Duration::from_secs(30));
    daemon.wait_line("audio: jack output, 48000 Hz", Duration::from_secs(2));
    let osc_addr = daemon.osc_addr(Duration::from_secs(2));
    let osc = Osc::from_socket(Topology::udp_socket(&topology.b, ADDR_B), osc_addr);
    let denied = Osc::from_socket(Topology::udp_socket(&topology.b, ADDR_B_DENIED), osc_addr);
    assert_eq!(osc.status().output, "running");
    denied.send("/status", vec![]);
    assert!(
        denied
            .reply("/status.reply", Duration::from_millis(500))
            .is_none(),
        "{ADDR_B_DENIED} is outside the allowlist but was answered"
    );

    // JACK's latency ranges on A: the net driver's playback latency, and latentd's on top.
    let deadline = Instant::now() + Duration::from_secs(5);
    while host.playback_latency("latentd:out_1").0 == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let net_range = host.playback_latency("system:playback_1");
    let ours = host.playback_latency("latentd:out_1");
    eprintln!(
        "JACK playback latency on A: system:playback_1 {net_range:?}, latentd:out_1 {ours:?} \
         frames"
    );
    assert!(net_range.0 > 0, "the net driver reports no latency");
    assert_eq!(ours.0, net_range.0 + PERIOD as u32);
    // `/status` reports the same latency to the listener, the hop included (the output's
    // supervisor refreshes it every tick).
    let want_ms = 1000.0 * f64::from(ours.1) / f64::from(RATE);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = osc.status().output_latency_ms;
        if (got - want_ms).abs() < 0.01 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/status output_latency_ms {got}, JACK says {want_ms} ms"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Captures on both sides.
    let a_side = ASide::start(&host, dir.path());
    // SAFETY: SERIAL is held, and this test's other threads do not read the environment.
    unsafe { std::env::set_var("JACK_DEFAULT_SERVER", &stage.name) };
    let b_ports = slave_ports_now(&stage);
    let capture = JackCapture::connected("capture-b", [&b_ports[0], &b_ports[1]]);
    let mut b = Timed::default();
    let (mut done, mut samples_done) = (0, 0);
    let mut keep = |for_: Duration, b: &mut Timed| {
        let end = Instant::now() + for_;
        while Instant::now() < end {
            stamp(&capture, b, &mut done, &mut samples_done);
            std::thread::sleep(Duration::from_millis(20));
        }
        stamp(&capture, b, &mut done, &mut samples_done);
    };
    keep(Duration::from_millis(3500), &mut b);

    // Control edges sent from B: pause, then play, stamped on the same clock.
    let mut sent = Vec::new();
    for _ in 0..EDGES {
        osc.send("/transport/pause", vec![]);
        keep(Duration::from_millis(400), &mut b);
        sent.push(capture.client().time() as f64);
        osc.send("/transport/play", vec![]);
        keep(Duration::from_millis(500), &mut b);
    }
    let steady_end = capture.client().time() as f64;

    // The link drops and comes back.
    topology.link_down();
    let down_at = capture.client().time() as f64;
    keep(LINK_DOWN, &mut b);
    topology.link_up();
    let up_at = capture.client().time() as f64;
    assert!(
        daemon.exited().is_none(),
        "latentd exited during the link drop: {:?}",
        daemon.lines()
    );
    // The master notices the loss only when its receive times out, so the slave's ports
    // on B may still be the old ones for a while: poll until the tone is heard again,
    // relinking B's capture to the slave's ports whenever they are there (the stage side
    // reconnects: `netmanager -c` or a session manager does this for its speakers).
    let deadline = Instant::now() + Duration::from_secs(30);
    let relinked_at = loop {
        if let Some(ports) = slave_ports(&capture) {
            for (from, to) in ports.iter().zip(["in_1", "in_2"]) {
                let _ = capture
                    .client()
                    .connect_ports_by_name(from, &format!("capture-b:{to}"));
            }
        }
        keep(Duration::from_millis(300), &mut b);
        let now = capture.client().time() as f64;
        if b.full_share(now - 250_000.0, now + 1.0).1 > MIN_FULL_SHARE {
            break now - 250_000.0;
        }
        assert!(
            Instant::now() < deadline,
            "B did not hear the tone again within 30 s of the link's return:\nlatentd: {}\n\
             A: {}\nB: {}",
            daemon.lines().join("\n"),
            host.log(),
            stage.log()
        );
    };
    keep(Duration::from_millis(2500), &mut b);
    let end_at = capture.client().time() as f64;
    let status = osc.status();
    assert!(
        daemon.exited().is_none(),
        "latentd exited: {:?}",
        daemon.lines()
    );
    let a = a_side.finish();

    // The tone arrives at B: the marker once a second, the tone in between.
    let (a_markers, b_markers) = (a.markers(), b.markers());
    let hops: Vec<f64> = a_markers
        .iter()
        .filter(|&&t| t < steady_end - 200_000.0)
        .filter_map(|ta| {
            b_markers
                .iter()
                .map(|tb| tb - ta)
                .find(|d| (0.0..500_000.0).contains(d))
        })
        .collect();
    let (_, b_full) = b.full_share(sent[0] - 3_000_000.0, sent[0]);
    assert!(
        b_full > MIN_FULL_SHARE,
        "B heard the tone at full level for only {:.1} % of the second before the edges",
        100.0 * b_full
    );
    assert!(hops.len() >= 3, "markers: A {a_markers:?}, B {b_markers:?}");
    let hop = median(&hops);
    let spread =
        hops.iter().copied().fold(0.0, f64::max) - hops.iter().copied().fold(f64::MAX, f64::min);

    // Control-to-ear at A and at B on the same edges.
    // A's cycle stamps follow the network's packets, not a steady clock: reported only.
    let to_a: Vec<f64> = sent
        .iter()
        .filter_map(|&t| a.onset_after(t - 50_000.0).map(|o| o - t))
        .collect();
    let to_b: Vec<f64> = sent
        .iter()
        .map(|&t| {
            b.onset_after(t)
                .expect("no sound at B after /transport/play")
                - t
        })
        .collect();
    eprintln!(
        "netjack2 (-l {NET_LATENCY_CYCLES}, {PERIOD} frames at {RATE} Hz): hop A->B {} \
         (median {:.2} ms, spread {:.2} ms); control-to-ear at A {}, at B {}; JACK reports \
         {} frames ({:.2} ms) for the net driver",
        ms(&hops),
        hop / 1000.0,
        spread / 1000.0,
        ms(&to_a),
        ms(&to_b),
        net_range.0,
        1000.0 * f64::from(net_range.0) / f64::from(RATE),
    );
    assert!(
        (0.0..200_000.0).contains(&hop),
        "hop {:.2} ms",
        hop / 1000.0
    );
    let reported_us = 1e6 * f64::from(net_range.0) / f64::from(RATE);
    for (i, tb) in to_b.iter().enumerate() {
        // At B: it includes the network hop (at least what the net driver reports) and
        // nothing of the size of another buffer chain.
        assert!(
            (reported_us..MAX_CONTROL_TO_EAR_US).contains(tb),
            "edge {i}: control-to-ear at B {:.2} ms, not between the net driver's {:.2} ms \
             and {:.0} ms",
            tb / 1000.0,
            reported_us / 1000.0,
            MAX_CONTROL_TO_EAR_US / 1000.0
        );
    }

    // The link drop: what A played meanwhile, and B hears the tone again afterwards.
    let (a_during, a_full_during) = a.full_share(down_at + 100_000.0, up_at);
    let (b_after, b_full_after) = b.full_share(relinked_at + 250_000.0, end_at);
    eprintln!(
        "link drop: down for {:.2} s; A's graph ran {a_during} frames meanwhile ({:.1} % at \
         full level); B heard the tone again {:.2} s after the link came back, then {b_after} frames, {:.1} % at full level; latentd /status output {} \
         xruns {}",
        (up_at - down_at) / 1e6,
        100.0 * a_full_during,
        (relinked_at - up_at) / 1e6,
        100.0 * b_full_after,
        status.output,
        status.xruns,
    );
    let said: Vec<String> = daemon
        .lines()
        .into_iter()
        .filter(|l| l.contains("audio:") && !l.contains("feeds"))
        .collect();
    eprintln!("latentd's audio lines: {said:#?}");
    assert!(
        b_after > RATE as usize,
        "B heard only {b_after} frames after the return"
    );
    assert!(
        b_full_after > MIN_FULL_SHARE,
        "B heard the tone at full level for only {:.1} % after the return",
        100.0 * b_full_after
    );
    assert_eq!(status.output, "running");

    daemon.stop_cleanly();
    drop(capture);
    drop(host);
    drop(stage);
    drop(topology);
}
