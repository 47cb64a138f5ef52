//! Who may talk to the server (an allowlist of client networks) and how fast (a token bucket
//! per client); how often refusals are logged ([`LogLimiter`]).
//!
//! Threading: `Allowlist` is immutable; `LogLimiter` is owned by one thread; [`SharedAllowlist`] is the servers' copy that a
//! config reload swaps (a read lock per packet, the write lock only for the swap; control
//! threads only, never the audio thread); `RateLimiter` is owned by one control thread or
//! held behind the server's mutex.

use latentd_engine::lock::RwLockExt;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// A client network in CIDR notation (`10.0.0.0/8`, `::1/128`, or a bare address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?}: {addr:?} is not an IP address"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0..={max}"))?,
        };
        Ok(Cidr { network, prefix })
    }
}

impl Cidr {
    /// True when `ip` is inside this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The access rule: a server bound to loopback serves everyone who can reach it; a server
/// bound wider serves only peers inside one of the allowed networks.
#[derive(Debug, Clone)]
pub struct Allowlist {
    open: bool,
    networks: Vec<Cidr>,
}

impl Allowlist {
    /// The rule for a server bound to `bind` with the configured networks.
    pub fn new(bind: IpAddr, networks: Vec<Cidr>) -> Allowlist {
        Allowlist {
            open: bind.is_loopback(),
            networks,
        }
    }

    /// True when `peer` may be served.
    pub fn allows(&self, peer: IpAddr) -> bool {
        self.open || self.networks.iter().any(|n| n.contains(peer))
    }
}

/// The allowlist the server threads consult, replaceable while they run (a SIGHUP reload).
/// Cloning shares it.
#[derive(Debug, Clone)]
pub struct SharedAllowlist(Arc<RwLock<Allowlist>>);

impl SharedAllowlist {
    /// Share `list`.
    pub fn new(list: Allowlist) -> SharedAllowlist {
        SharedAllowlist(Arc::new(RwLock::new(list)))
    }

    /// True when `peer` may be served under the list in force now.
    pub fn allows(&self, peer: IpAddr) -> bool {
        self.0.read_unpoisoned().allows(peer)
    }

    /// Serve these networks from now on (the bind rule stays: a loopback server stays open).
    pub fn set_networks(&self, networks: Vec<Cidr>) {
        self.0.write_unpoisoned().networks = networks;
    }
}

/// What to do with a packet from a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Within the rate: process it.
    Admit,
    /// First packet over the rate: answer `/fail` once.
    FailOnce,
    /// Still over the rate: drop silently.
    Drop,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
    over: bool,
}

/// Per-client token buckets: `rate` packets per second sustained, `burst` at once.
#[derive(Debug)]
pub struct RateLimiter<K> {
    rate: f64,
    burst: f64,
    buckets: HashMap<K, Bucket>,
}

/// Clients tracked before idle (full) buckets are forgotten.
const MAX_TRACKED: usize = 4096;

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// A limiter allowing `rate` packets/s with bursts of `burst`.
    pub fn new(rate: f64, burst: f64) -> RateLimiter<K> {
        RateLimiter {
            rate,
            burst: burst.max(1.0),
            buckets: HashMap::new(),
        }
    }

    /// Account one packet from `client` at `now`.
    pub fn admit(&mut self, client: &K, now: Instant) -> Admission {
        if self.buckets.len() >= MAX_TRACKED && !self.buckets.contains_key(client) {
            let (rate, burst) = (self.rate, self.burst);
            self.buckets
                .retain(|_, b| b.tokens + now.duration_since(b.last).as_secs_f64() * rate < burst);
        }
        let burst = self.burst;
        let bucket = self.buckets.entry(client.clone()).or_insert(Bucket {
            tokens: burst,
            last: now,
            over: false,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            bucket.over = false;
            Admission::Admit
        } else if !bucket.over {
            bucket.over = true;
            Admission::FailOnce
        } else {
            Admission::Drop
        }
    }

    /// Sustained packets per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Burst size.
    pub fn burst(&self) -> f64 {
        self.burst
    }

    /// Forget a client (a closed TCP connection).
    pub fn forget(&mut self, client: &K) {
        self.buckets.remove(client);
    }
}

/// At most one log line per interval for a repeated event (refused or evicted connections):
/// the first is logged at once, later ones within the interval are counted, and the next
/// line logged says how many were suppressed.
#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    /// A limiter allowing one line per `interval`.
    pub fn new(interval: Duration) -> LogLimiter {
        LogLimiter {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// One event at `now`: `Some(suppressed)` when it may be logged (with the number of
    /// events not logged since the last line), `None` when it is only counted.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < self.interval)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn cidr_matching() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.168.1.1".parse().unwrap()));
        let host: Cidr = "::1".parse().unwrap();
        assert!(host.contains("::1".parse().unwrap()));
        assert!(
            "10.0.0.0/33"
                .parse::<Cidr>()
                .unwrap_err()
                .contains("0..=32")
        );
        assert!(
            "ten/8"
                .parse::<Cidr>()
                .unwrap_err()
                .contains("not an IP address")
        );
    }

    #[test]
    fn allowlist_is_open_on_loopback_only() {
        let lan: Cidr = "192.168.0.0/16".parse().unwrap();
        let local = Allowlist::new("127.0.0.1".parse().unwrap(), vec![]);
        assert!(local.allows("127.0.0.1".parse().unwrap()));
        let wide = Allowlist::new("0.0.0.0".parse().unwrap(), vec![lan]);
        assert!(wide.allows("192.168.4.4".parse().unwrap()));
        assert!(!wide.allows("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn a_shared_allowlist_swaps_its_networks_for_every_holder() {
        let wide = SharedAllowlist::new(Allowlist::new(
            "0.0.0.0".parse().unwrap(),
            vec!["10.0.0.0/8".parse().unwrap()],
        ));
        let server_copy = wide.clone();
        assert!(!server_copy.allows("127.0.0.1".parse().unwrap()));
        wide.set_networks(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(server_copy.allows("127.0.0.1".parse().unwrap()));
        assert!(!server_copy.allows("10.1.1.1".parse().unwrap()));
        let local = SharedAllowlist::new(Allowlist::new("127.0.0.1".parse().unwrap(), vec![]));
        local.set_networks(vec!["10.0.0.0/8".parse().unwrap()]);
        assert!(
            local.allows("127.0.0.1".parse().unwrap()),
            "loopback binds stay open"
        );
    }

    #[test]
    fn log_limiter_logs_once_per_interval_and_counts_the_rest() {
        let mut log = LogLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(log.allow(t0), Some(0));
        assert_eq!(log.allow(t0 + Duration::from_secs(1)), None);
        assert_eq!(log.allow(t0 + Duration::from_secs(9)), None);
        assert_eq!(log.allow(t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(log.allow(t0 + Duration::from_secs(30)), Some(0));
    }

    #[test]
    fn bucket_fails_once_then_drops_then_refills() {
        let mut limiter = RateLimiter::new(10.0, 3.0);
        let t0 = Instant::now();
        let got: Vec<Admission> = (0..6).map(|_| limiter.admit(&1, t0)).collect();
        use Admission::*;
        assert_eq!(got, [Admit, Admit, Admit, FailOnce, Drop, Drop]);
        assert_eq!(
            limiter.admit(&2, t0),
            Admit,
            "clients have their own buckets"
        );
        assert_eq!(limiter.admit(&1, t0 + Duration::from_millis(110)), Admit);
        assert_eq!(limiter.admit(&1, t0 + Duration::from_millis(110)), FailOnce);
    }
}
