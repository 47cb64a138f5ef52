//! Zeroconf discovery: the OSC and OSCQuery ports advertised over mDNS / DNS-SD, so that
//! TouchOSC, OSCQuery browsers and other clients find latentd without an IP address typed in.
//!
//! Three services are registered under one instance name, the JACK client / PipeWire node
//! name (`--client-name`, `audio.client_name`): `_osc._udp` and `_osc._tcp` on the OSC port,
//! and `_oscjson._tcp` on the OSCQuery HTTP port (when OSCQuery is on). The OSCQuery proposal
//! defines no TXT keys; each service carries `txtvers=1` (the RFC 6763 convention, which
//! OSCQuery implementations follow). The host name is this machine's (`<host>.local.`); the
//! addresses are the bound one, or every interface's when bound to `0.0.0.0` (IPv4 only) or
//! `[::]` (kept current as interfaces come and go).
//!
//! When: [`Advertise`] (`osc.advertise`): `auto` advertises only when OSC is bound beyond
//! loopback, `true` also on loopback (tests, odd setups; the log says so), `false` never.
//!
//! Names: the mdns-sd daemon probes each name before announcing it (RFC 6762 section 8), so
//! a second latentd with the same client name, on this host or another, is renamed by
//! mdns-sd (`latentd (2)`, logged) instead of clashing; a JACK server already keeps client
//! names unique on one host.
//!
//! Failure never stops the audio: a daemon or registration that fails, a socket error the
//! mdns-sd thread reports (port 5353 unusable, multicast refused), or nothing announced within
//! [`ANNOUNCE_WAIT`] (no multicast-capable interface up) is logged as a warning with the
//! reason, and latentd plays on without discovery, whatever `osc.advertise` says.
//!
//! Stop: [`Advertiser::stop`] unregisters every service, which multicasts goodbyes (TTL 0)
//! so browsers drop latentd at once, then shuts the mdns-sd daemon down. The service stops
//! it before it closes OSC, so no client is sent to a closed port.
//!
//! Threading: [`Advertiser`] is created and stopped on the main thread. The mdns-sd crate runs
//! all mDNS socket I/O (probes, announcements, answers to queries, goodbyes) on one thread of
//! its own, named `mDNS_daemon` by the crate, fed through a command channel. A second thread,
//! [`WATCHER_THREAD`], only reads that daemon's event channel and logs. Neither touches the
//! audio path or latentd's state. The main thread waits for them only at stop, at most
//! [`STOP_TIMEOUT`] per step (the watcher ends within [`WATCH_POLL`] of its flag).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mdns_sd::{DaemonEvent, IfKind, ServiceDaemon, ServiceInfo, UnregisterStatus};

/// The OSC service types and the OSCQuery one (RFC 6763 names, `.local.` domain).
pub const OSC_UDP: &str = "_osc._udp.local.";
/// OSC over TCP.
pub const OSC_TCP: &str = "_osc._tcp.local.";
/// OSCQuery (HTTP + JSON namespace).
pub const OSCQUERY: &str = "_oscjson._tcp.local.";
/// Longest wait for each goodbye to be sent, and for the mdns-sd thread to end, at stop.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(1);
/// A first announcement is expected within this (probing takes under a second).
pub const ANNOUNCE_WAIT: Duration = Duration::from_secs(5);
/// How often the watcher looks at its stop flag.
pub const WATCH_POLL: Duration = Duration::from_millis(100);
/// The watcher thread's name.
pub const WATCHER_THREAD: &str = "zeroconf";

/// `osc.advertise`: when the services are advertised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Advertise {
    /// Only when OSC is bound beyond loopback.
    #[default]
    Auto,
    /// Always, loopback included.
    On,
    /// Never.
    Off,
}

impl Advertise {
    /// The config spelling: `auto`, `true`, `false`.
    pub fn as_str(self) -> &'static str {
        match self {
            Advertise::Auto => "auto",
            Advertise::On => "true",
            Advertise::Off => "false",
        }
    }

    /// Parse the config spelling (`auto`, `true`, `false`).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "auto" => Some(Advertise::Auto),
            "true" => Some(Advertise::On),
            "false" => Some(Advertise::Off),
            _ => None,
        }
    }

    /// Whether OSC bound to `bind` is advertised.
    pub fn applies_to(self, bind: IpAddr) -> bool {
        match self {
            Advertise::Auto => !bind.is_loopback(),
            Advertise::On => true,
            Advertise::Off => false,
        }
    }
}

/// What is advertised.
#[derive(Debug, Clone)]
pub struct Announcement {
    /// Instance name (the client name).
    pub instance: String,
    /// Where OSC is bound (UDP and TCP, one port).
    pub osc: SocketAddr,
    /// The OSCQuery HTTP port, if OSCQuery is on.
    pub oscquery_port: Option<u16>,
}

/// The running advertisement: the mdns-sd daemon, the services it announces, and the
/// thread that logs what it reports.
pub struct Advertiser {
    daemon: ServiceDaemon,
    /// Full names of the registered services, as `unregister` takes them.
    fullnames: Vec<String>,
    /// Set when the shutdown starts (it runs once); ends the watcher.
    stop: Arc<AtomicBool>,
    watcher: Option<JoinHandle<()>>,
}

impl Advertiser {
    /// Advertise `what` if `mode` says so for its bind address. `None` when not advertising,
    /// for whatever reason; a failure is logged as a warning and otherwise ignored.
    pub fn start(mode: Advertise, what: &Announcement) -> Option<Advertiser> {
        let ip = what.osc.ip();
        if !mode.applies_to(ip) {
            log::debug!(
                "zeroconf: not advertising (osc.advertise = {}, OSC bound to {ip})",
                mode.as_str()
            );
            return None;
        }
        match Self::register(what) {
            Ok(advertiser) => {
                log::info!(
                    "zeroconf: advertising {:?} as {}{} on {}{}",
                    what.instance,
                    describe(OSC_UDP, what.osc.port()),
                    match what.oscquery_port {
                        Some(p) => format!(", {}", describe(OSCQUERY, p)),
                        None => String::new(),
                    },
                    if ip.is_unspecified() {
                        "every interface".to_string()
                    } else {
                        ip.to_string()
                    },
                    if ip.is_loopback() {
                        " (loopback: osc.advertise = true)"
                    } else {
                        ""
                    }
                );
                Some(advertiser)
            }
            Err(e) => {
                log::warn!(
                    "zeroconf: not advertising (osc.advertise = {}): {e}; {PLAYS_ON}",
                    mode.as_str()
                );
                None
            }
        }
    }

    fn register(what: &Announcement) -> Result<Advertiser, String> {
        let daemon = ServiceDaemon::new().map_err(|e| format!("mDNS daemon: {e}"))?;
        // Subscribed before the first registration, so no report is missed.
        let events = daemon.monitor().map_err(|e| format!("mDNS daemon: {e}"));
        let stop = Arc::new(AtomicBool::new(false));
        let mut advertiser = Advertiser {
            daemon,
            fullnames: Vec::new(),
            stop: Arc::clone(&stop),
            watcher: None,
        };
        let events = match events {
            Ok(events) => events,
            Err(e) => {
                advertiser.stop();
                return Err(e);
            }
        };
        let host = format!("{}.local.", host_label());
        let mut services = vec![(OSC_UDP, what.osc.port()), (OSC_TCP, what.osc.port())];
        if let Some(port) = what.oscquery_port {
            services.push((OSCQUERY, port));
        }
        for (ty, port) in services {
            let registered = service_info(ty, what, &host, port).and_then(|info| {
                let fullname = info.get_fullname().to_string();
                advertiser
                    .daemon
                    .register(info)
                    .map(|()| fullname.clone())
                    .map_err(|e| format!("registering {fullname}: {e}"))
            });
            match registered {
                Ok(fullname) => advertiser.fullnames.push(fullname),
                Err(e) => {
                    advertiser.stop();
                    return Err(e);
                }
            }
        }
        match std::thread::Builder::new()
            .name(WATCHER_THREAD.into())
            .spawn(move || watch(&events, &stop))
        {
            Ok(handle) => advertiser.watcher = Some(handle),
            Err(e) => {
                advertiser.stop();
                return Err(format!("{WATCHER_THREAD} thread: {e}"));
            }
        }
        Ok(advertiser)
    }

    /// Unregister every service (goodbyes go out), then end the mdns-sd thread and the
    /// watcher. Dropping the advertiser does the same (a start cut short says goodbye too).
    pub fn stop(mut self) {
        self.shut_down();
    }

    /// [`Advertiser::stop`]; does nothing the second time.
    fn shut_down(&mut self) {
        if self.stop.swap(true, Ordering::Relaxed) {
            return;
        }
        for name in &self.fullnames {
            match self.daemon.unregister(name) {
                Ok(done) => match done.recv_timeout(STOP_TIMEOUT) {
                    Ok(UnregisterStatus::OK) => log::debug!("zeroconf: goodbye sent for {name}"),
                    Ok(status) => log::warn!("zeroconf: unregistering {name}: {status:?}"),
                    Err(e) => log::warn!("zeroconf: unregistering {name}: {e}"),
                },
                Err(e) => log::warn!("zeroconf: unregistering {name}: {e}"),
            }
        }
        match self.daemon.shutdown() {
            Ok(done) => {
                if let Err(e) = done.recv_timeout(STOP_TIMEOUT) {
                    log::warn!("zeroconf: mDNS daemon shutdown: {e}");
                }
            }
            Err(e) => log::warn!("zeroconf: mDNS daemon shutdown: {e}"),
        }
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
    }
}

impl Drop for Advertiser {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// What every failure's log line ends with.
const PLAYS_ON: &str = "OSC and the audio go on, clients need the address typed in";

/// The watcher thread: logs the mdns-sd daemon's errors (warnings) and renames (info), and
/// warns once when nothing was announced within [`ANNOUNCE_WAIT`] (no multicast-capable
/// interface up, or multicast refused). Ends when `stop` is set or the daemon is gone.
fn watch(events: &mdns_sd::Receiver<DaemonEvent>, stop: &AtomicBool) {
    let started = Instant::now();
    let mut announced = false;
    let mut warned = false;
    let mut renamed = std::collections::BTreeSet::new();
    while !stop.load(Ordering::Relaxed) {
        match events.recv_timeout(WATCH_POLL) {
            Ok(DaemonEvent::Announce(name, at)) => {
                if !announced {
                    log::debug!("zeroconf: announced {name} on {at}");
                }
                announced = true;
            }
            Ok(DaemonEvent::Error(e)) => log::warn!("zeroconf: {e}"),
            Ok(DaemonEvent::NameChange(change)) => {
                // Once per rename, not once per interface and probe.
                if renamed.insert((change.original.clone(), change.new_name.clone())) {
                    log::info!(
                        "zeroconf: {:?} is taken (seen on {}); advertising as {:?}",
                        change.original,
                        change.intf_name,
                        change.new_name
                    );
                }
            }
            Ok(_) => {}
            Err(mdns_sd::RecvTimeoutError::Disconnected) => return,
            Err(mdns_sd::RecvTimeoutError::Timeout) => {}
        }
        if !announced && !warned && started.elapsed() >= ANNOUNCE_WAIT {
            warned = true;
            log::warn!(
                "zeroconf: nothing announced within {} s (no multicast-capable interface up, \
                 or multicast refused); {PLAYS_ON}",
                ANNOUNCE_WAIT.as_secs()
            );
        }
    }
}

/// `_osc._udp+tcp port 7770` and the like, for the log line.
fn describe(ty: &str, port: u16) -> String {
    let ty = ty.trim_end_matches(".local.");
    if ty == OSC_UDP.trim_end_matches(".local.") {
        format!("_osc._udp+_osc._tcp port {port}")
    } else {
        format!("{ty} port {port}")
    }
}

/// One service record set: the bound address, or every address of the matching family's
/// interfaces (kept current) when bound to the unspecified address.
fn service_info(
    ty: &str,
    what: &Announcement,
    host: &str,
    port: u16,
) -> Result<ServiceInfo, String> {
    let ip = what.osc.ip();
    let addrs = if ip.is_unspecified() {
        String::new()
    } else {
        ip.to_string()
    };
    let info = ServiceInfo::new(
        ty,
        &what.instance,
        host,
        addrs,
        port,
        &[("txtvers", "1")][..],
    )
    .map_err(|e| format!("service {ty}: {e}"))?;
    Ok(match ip {
        // 0.0.0.0 takes IPv4 only; [::] takes both on Linux (dual-stack sockets).
        IpAddr::V4(v4) if v4.is_unspecified() => {
            let mut info = info.enable_addr_auto();
            info.set_interfaces(vec![IfKind::IPv4]);
            info
        }
        IpAddr::V6(v6) if v6.is_unspecified() => info.enable_addr_auto(),
        ip => {
            let mut info = info;
            info.set_interfaces(vec![IfKind::Addr(ip)]);
            info
        }
    })
}

/// This machine's host name, first label only (`studio` of `studio.example.org`); `latentd`
/// when it cannot be read.
fn host_label() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    match name.split('.').next() {
        Some(label) if !label.is_empty() => label.to_string(),
        _ => "latentd".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_advertises_beyond_loopback_only() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let lo6: IpAddr = "::1".parse().unwrap();
        let any: IpAddr = "0.0.0.0".parse().unwrap();
        let lan: IpAddr = "192.168.1.20".parse().unwrap();
        assert!(!Advertise::Auto.applies_to(lo));
        assert!(!Advertise::Auto.applies_to(lo6));
        assert!(Advertise::Auto.applies_to(any));
        assert!(Advertise::Auto.applies_to(lan));
        assert!(Advertise::On.applies_to(lo));
        assert!(!Advertise::Off.applies_to(lan));
    }

    #[test]
    fn spelling_round_trips() {
        for mode in [Advertise::Auto, Advertise::On, Advertise::Off] {
            assert_eq!(Advertise::parse(mode.as_str()), Some(mode));
        }
        assert_eq!(Advertise::parse("yes"), None);
    }
}
