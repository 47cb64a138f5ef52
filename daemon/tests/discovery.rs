//! Zeroconf discovery on the real binary: latentd bound to `0.0.0.0` (`osc.advertise =
//! "auto"`) advertises `_osc._udp`, `_osc._tcp` and `_oscjson._tcp` with the OSC and OSCQuery
//! ports, a browser in the test process (mdns-sd, as a client would) finds all three, and
//! after SIGTERM their goodbyes arrive within a couple of seconds. Two daemons with the same
//! client name on one host are both found, under distinct instance names.
//!
//! mDNS needs a multicast-capable interface, and a test must not announce itself on the
//! machine's real network: each test re-runs itself in a private network namespace
//! (`unshare -rn`) with loopback up and a veth pair carrying an address, and runs the
//! daemon and the browser there. Where the namespace cannot be made the test prints
//! `SKIPPED: <why>` and passes, unless `LATENTD_REQUIRE_NETNS=1` (scripts/test.sh sets it),
//! where it fails.
//!
//! Threading: the test's thread, plus one stderr reader per daemon and the browser's
//! mdns-sd thread.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mdns_sd::{ServiceDaemon, ServiceEvent};

/// Set in the re-run inside the namespace.
const IN_NETNS: &str = "LATENTD_TEST_IN_NETNS";
const TYPES: [&str; 3] = [
    "_osc._udp.local.",
    "_osc._tcp.local.",
    "_oscjson._tcp.local.",
];
const START: Duration = Duration::from_secs(30);
const FIND: Duration = Duration::from_secs(10);
const GOODBYE: Duration = Duration::from_secs(3);

fn required() -> bool {
    std::env::var("LATENTD_REQUIRE_NETNS").is_ok_and(|v| v == "1")
}

fn skip(why: &str) {
    assert!(
        !required(),
        "LATENTD_REQUIRE_NETNS=1 but the network namespace failed: {why}"
    );
    println!("SKIPPED: {why}");
}

/// Outside the namespace: re-run test `name` of this binary inside a fresh one and relay
/// its verdict. `true` when the caller is already inside and should run the test body.
fn in_private_netns(name: &str) -> bool {
    if std::env::var_os(IN_NETNS).is_some() {
        return true;
    }
    match Command::new("unshare").args(["-rn", "true"]).output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            skip(&format!(
                "unshare -rn: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            return false;
        }
        Err(e) => {
            skip(&format!("unshare: {e}"));
            return false;
        }
    }
    let out = Command::new("unshare")
        .arg("-rn")
        .arg(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(IN_NETNS, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    assert!(out.status.success(), "the test inside the namespace failed");
    assert!(
        stdout.contains("1 passed"),
        "the test did not run inside the namespace"
    );
    false
}

/// Loopback up, multicast on.
const LOOPBACK: &[&[&str]] = &[
    &["link", "set", "lo", "up"],
    &["link", "set", "lo", "multicast", "on"],
];
/// A veth pair, 10.77.0.1/24 on one end: a multicast-capable interface with an address.
const VETH: &[&[&str]] = &[
    &["link", "add", "v0", "type", "veth", "peer", "name", "v1"],
    &["addr", "add", "10.77.0.1/24", "dev", "v0"],
    &["link", "set", "v0", "up"],
    &["link", "set", "v1", "up"],
];

/// Inside the namespace: run each `ip` command of `steps`. `Err` says why not.
fn network(steps: &[&[&[&str]]]) -> Result<(), String> {
    for args in steps.iter().copied().flatten() {
        let out = Command::new("ip")
            .args(*args)
            .output()
            .map_err(|e| format!("ip: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    Ok(())
}

/// A daemon on the null output, its stderr lines on a channel.
struct Daemon {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Daemon {
    fn start(dir: &std::path::Path, args: &[&str]) -> Daemon {
        Self::start_with_config(dir, "", args)
    }

    /// With `config` as the config file.
    fn start_with_config(dir: &std::path::Path, config: &str, args: &[&str]) -> Daemon {
        let file = dir.join("config/latentd/latentd.toml");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, config).unwrap();
        let mut child = common::isolated_env(&mut Command::new(common::BIN), dir)
            .args(["--audio", "null", "--engine", "off", "--loop-seconds", "2"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("latentd: {line}");
                let _ = tx.send(line);
            }
        });
        Daemon { child, lines }
    }

    fn wait_for(&self, needle: &str, limit: Duration) -> String {
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

    fn terminate(&mut self) {
        // SAFETY: plain FFI call; the pid is our own child, still unreaped.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
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

/// Two ports free in this namespace: OSC (UDP and TCP) and OSCQuery.
fn free_ports() -> (u16, u16) {
    let udp = UdpSocket::bind("0.0.0.0:0").unwrap();
    let tcp = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    (
        udp.local_addr().unwrap().port(),
        tcp.local_addr().unwrap().port(),
    )
}

/// Browses the three types; merges their events into one channel of `(type, event)`.
struct Browser {
    daemon: ServiceDaemon,
    events: mpsc::Receiver<(String, ServiceEvent)>,
}

impl Browser {
    fn new() -> Browser {
        let daemon = ServiceDaemon::new().unwrap();
        let (tx, events) = mpsc::channel();
        for ty in TYPES {
            let rx = daemon.browse(ty).unwrap();
            let tx = tx.clone();
            std::thread::spawn(move || {
                while let Ok(event) = rx.recv() {
                    if tx.send((ty.to_string(), event)).is_err() {
                        return;
                    }
                }
            });
        }
        Browser { daemon, events }
    }

    /// Resolved `(type, fullname) -> port` for instances whose name starts with `prefix`,
    /// until `count` are known (panics after [`FIND`]).
    fn resolve(&self, prefix: &str, count: usize) -> BTreeMap<(String, String), u16> {
        self.resolve_with_addresses(prefix, count, None)
            .into_iter()
            .map(|(k, (port, _))| (k, port))
            .collect()
    }

    /// [`Browser::resolve`], with each service's addresses (from every interface it was
    /// resolved on), and until each has `want` among them if given.
    fn resolve_with_addresses(
        &self,
        prefix: &str,
        count: usize,
        want: Option<IpAddr>,
    ) -> BTreeMap<(String, String), (u16, BTreeSet<IpAddr>)> {
        let mut found: BTreeMap<(String, String), (u16, BTreeSet<IpAddr>)> = BTreeMap::new();
        let t0 = Instant::now();
        let done = |found: &BTreeMap<_, (u16, BTreeSet<IpAddr>)>| {
            found.len() >= count
                && want.is_none_or(|ip| found.values().all(|(_, addrs)| addrs.contains(&ip)))
        };
        while !done(&found) {
            let left = FIND.checked_sub(t0.elapsed()).unwrap_or_else(|| {
                panic!("found {found:?} within {FIND:?}, expected {count} services")
            });
            let Ok((ty, event)) = self.events.recv_timeout(left) else {
                continue;
            };
            if let ServiceEvent::ServiceResolved(info) = event
                && info.fullname.starts_with(prefix)
            {
                let entry = found
                    .entry((ty, info.fullname.clone()))
                    .or_insert((info.port, BTreeSet::new()));
                entry.0 = info.port;
                entry
                    .1
                    .extend(info.addresses.iter().map(|a| a.to_ip_addr()));
            }
        }
        found
    }

    /// Waits for `ServiceRemoved` of every name in `names` within `limit`; returns how long
    /// the last took.
    fn removed(&self, names: &[(String, String)], limit: Duration) -> Duration {
        let mut left: Vec<_> = names.to_vec();
        let t0 = Instant::now();
        while !left.is_empty() {
            let Some(wait) = limit.checked_sub(t0.elapsed()) else {
                panic!("no goodbye within {limit:?} for {left:?}");
            };
            if let Ok((ty, ServiceEvent::ServiceRemoved(_, name))) = self.events.recv_timeout(wait)
            {
                left.retain(|k| *k != (ty.clone(), name.clone()));
            }
        }
        t0.elapsed()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Ok(done) = self.daemon.shutdown() {
            let _ = done.recv_timeout(Duration::from_secs(1));
        }
    }
}

#[test]
fn three_services_are_found_with_their_ports_and_say_goodbye() {
    if !in_private_netns("three_services_are_found_with_their_ports_and_say_goodbye") {
        return;
    }
    if let Err(why) = network(&[LOOPBACK, VETH]) {
        return skip(&why);
    }
    let dir = tempfile::tempdir().unwrap();
    let (osc_port, query_port) = free_ports();
    let browser = Browser::new();
    let mut daemon = Daemon::start(
        dir.path(),
        &[
            "--client-name",
            "latentd-disco",
            "--osc",
            &format!("0.0.0.0:{osc_port}"),
            "--oscquery-port",
            &query_port.to_string(),
        ],
    );
    let line = daemon.wait_for("zeroconf: advertising", START);
    assert!(line.contains("every interface"), "{line}");

    let veth: IpAddr = "10.77.0.1".parse().unwrap();
    let found = browser.resolve_with_addresses("latentd-disco.", 3, Some(veth));
    let service = |ty: &str| &found[&(ty.to_string(), format!("latentd-disco.{ty}"))];
    assert_eq!(service(TYPES[0]).0, osc_port, "{found:?}");
    assert_eq!(service(TYPES[1]).0, osc_port, "{found:?}");
    assert_eq!(service(TYPES[2]).0, query_port, "{found:?}");
    // Bound to 0.0.0.0: the veth's IPv4 address (waited for above), and no IPv6 one (OSC
    // does not listen there).
    for ty in TYPES {
        let addrs = &service(ty).1;
        assert!(addrs.iter().all(IpAddr::is_ipv4), "{ty}: {addrs:?}");
    }

    daemon.terminate();
    let names: Vec<_> = found.keys().cloned().collect();
    let took = browser.removed(&names, GOODBYE);
    println!("goodbyes of {} services within {took:?}", names.len());
    let status = common::wait_timeout(&mut daemon.child, START).expect("latentd exits");
    assert!(status.success(), "{status}");
}

#[test]
fn two_daemons_with_one_client_name_do_not_clash() {
    if !in_private_netns("two_daemons_with_one_client_name_do_not_clash") {
        return;
    }
    if let Err(why) = network(&[LOOPBACK, VETH]) {
        return skip(&why);
    }
    let browser = Browser::new();
    let mut daemons = Vec::new();
    let mut ports = Vec::new();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    for dir in &dirs {
        let (osc_port, _) = free_ports();
        let d = Daemon::start(
            dir.path(),
            &[
                "--client-name",
                "twin",
                "--osc",
                &format!("0.0.0.0:{osc_port}"),
                "--oscquery-port",
                "0",
            ],
        );
        d.wait_for("zeroconf: advertising", START);
        daemons.push(d);
        ports.push(osc_port);
    }
    // Two `_osc._udp` and two `_osc._tcp` instances, no OSCQuery (port 0 turns it off).
    let found = browser.resolve("twin", 4);
    let udp: BTreeMap<_, _> = found
        .iter()
        .filter(|((ty, _), _)| ty == TYPES[0])
        .map(|((_, name), port)| (name.clone(), *port))
        .collect();
    assert_eq!(udp.len(), 2, "{found:?}");
    println!("two daemons named twin advertised as {:?}", udp.keys());
    let mut got: Vec<u16> = udp.values().copied().collect();
    got.sort_unstable();
    ports.sort_unstable();
    assert_eq!(got, ports, "{found:?}");
    assert!(
        !found.keys().any(|(ty, _)| ty == TYPES[2]),
        "OSCQuery is off but advertised: {found:?}"
    );
    for d in &mut daemons {
        d.terminate();
        assert!(common::wait_timeout(&mut d.child, START).is_some_and(|s| s.success()));
    }
}

#[test]
fn loopback_is_advertised_only_when_forced() {
    if !in_private_netns("loopback_is_advertised_only_when_forced") {
        return;
    }
    if let Err(why) = network(&[LOOPBACK]) {
        return skip(&why);
    }
    let browser = Browser::new();
    let (dirs, quiet_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (osc_port, query_port) = free_ports();
    let loud = Daemon::start_with_config(
        dirs.path(),
        "[osc]\nadvertise = \"true\"\n",
        &[
            "--client-name",
            "loud",
            "--osc",
            &format!("127.0.0.1:{osc_port}"),
            "--oscquery-port",
            &query_port.to_string(),
        ],
    );
    let line = loud.wait_for("zeroconf: advertising", START);
    assert!(line.contains("loopback: osc.advertise = true"), "{line}");
    // `auto` (the default) on loopback: nothing.
    let (quiet_port, _) = free_ports();
    let quiet = Daemon::start(
        quiet_dir.path(),
        &[
            "--client-name",
            "quiet",
            "--osc",
            &format!("127.0.0.1:{quiet_port}"),
            "--oscquery-port",
            "0",
        ],
    );
    quiet.wait_for("OSC on udp+tcp", START);
    let found = browser.resolve("loud.", 3);
    let ports: Vec<u16> = found.values().copied().collect();
    assert_eq!(
        ports.iter().filter(|&&p| p == osc_port).count(),
        2,
        "{found:?}"
    );
    assert!(ports.contains(&query_port), "{found:?}");
    // Both started before loud's services resolved (probing takes ~1 s); give quiet as long
    // again to show up.
    let t0 = Instant::now();
    while let Some(left) = Duration::from_secs(2).checked_sub(t0.elapsed()) {
        if let Ok((ty, event)) = browser.events.recv_timeout(left) {
            let name = match &event {
                ServiceEvent::ServiceFound(_, name) => name.clone(),
                ServiceEvent::ServiceResolved(info) => info.fullname.clone(),
                _ => continue,
            };
            assert!(
                !name.starts_with("quiet"),
                "auto advertised loopback: {ty} {name}"
            );
        }
    }
}

#[test]
fn no_multicast_interface_is_a_warning_and_the_audio_plays_on() {
    if !in_private_netns("no_multicast_interface_is_a_warning_and_the_audio_plays_on") {
        return;
    }
    // No interface up at all: 0.0.0.0 binds, nothing can be announced.
    let dir = tempfile::tempdir().unwrap();
    let (osc_port, _) = free_ports();
    let mut daemon = Daemon::start_with_config(
        dir.path(),
        "[osc]\nadvertise = true\n",
        &[
            "--osc",
            &format!("0.0.0.0:{osc_port}"),
            "--oscquery-port",
            "0",
        ],
    );
    daemon.wait_for("zeroconf: advertising", START);
    let started = Instant::now();
    let line = daemon.wait_for("zeroconf: nothing announced", START);
    assert!(
        line.contains("WARN") && line.contains("audio go on"),
        "{line}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(daemon.child.try_wait().unwrap().is_none(), "latentd exited");
    let played = started.elapsed();
    daemon.terminate();
    let stopped = daemon.wait_for("latentd: stopped:", START);
    // The null output kept playing through it all (48 kHz, 256-frame periods; half the pace
    // at least, room for a loaded CI machine: a stalled output would be near zero).
    let periods = common::counter(&stopped, "periods") as f64;
    let expected = played.as_secs_f64() * 48_000.0 / 256.0;
    assert!(
        periods >= expected * 0.5,
        "{periods} periods in {played:?}: {stopped}"
    );
    let status = common::wait_timeout(&mut daemon.child, START).expect("latentd exits");
    assert!(status.success(), "{status}");
}
