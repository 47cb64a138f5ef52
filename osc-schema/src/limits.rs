//! The server's limits per client: connections, timeouts, subscriptions, rate, timed bundles.
//! They are part of the contract a client sees (a client over a limit gets `/fail`, loses its
//! subscription or its connection), so they are declared here, once: the daemon enforces
//! these values and `docs/osc.md` is generated from them. Packet, address and string sizes
//! are in [`crate::Limits`].
//!
//! Threading: constants only.

use std::time::Duration;

/// Sustained packets per second per client (UDP: per address and port; TCP: per connection).
pub const RATE_PER_S: f64 = 2000.0;
/// Packets a client may send at once above the sustained rate (token bucket size).
pub const RATE_BURST: f64 = 500.0;

/// Most TCP connections open at once. A new connection beyond it closes the longest-idle
/// open connection (the one whose last complete packet is oldest), so a new client is
/// always served.
pub const TCP_MAX_CONNECTIONS: usize = 64;
/// A TCP connection that completes no packet for this long is closed.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// A TCP packet whose first byte arrived must be complete within this time, or the
/// connection is closed (slow senders cannot hold a connection with a trickle of bytes).
pub const TCP_PACKET_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes waiting to be written to one TCP connection (replies and pushes that its client has
/// not read yet). A push or reply that would exceed it closes the connection.
pub const TCP_OUTBOX_BYTES: usize = 256 * 1024;
/// A TCP connection whose waiting replies and pushes have not all been written for this long
/// (its client is not reading fast enough) is closed. While it is behind, knob echoes
/// waiting for it are coalesced: only the latest value per address is kept.
pub const TCP_MAX_BEHIND: Duration = Duration::from_secs(2);
/// Log lines about refused or evicted connections: at most one per this interval; the next
/// line says how many were suppressed.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Most `/notify` subscribers at once (UDP and TCP together).
pub const MAX_SUBSCRIBERS: usize = 32;
/// A UDP subscription lasts this long after the last `/notify 1` from that address and port;
/// send `/notify 1` again to renew it. A TCP subscription lasts as long as its connection.
pub const UDP_SUBSCRIPTION_LEASE: Duration = Duration::from_secs(300);

/// Fastest `/meter` push a client may ask for with `/notify/meter <hz>`, per second.
pub const METER_MAX_HZ: f64 = 30.0;

/// Most timed bundles waiting at once (all clients).
pub const MAX_TIMED_BUNDLES: usize = 1024;
/// Most timed bundles waiting at once from one client IP address.
pub const MAX_TIMED_BUNDLES_PER_CLIENT: usize = 256;
/// Furthest a bundle's timetag may lie in the future.
pub const MAX_TIMED_BUNDLE_HORIZON: Duration = Duration::from_secs(3600);

/// Longest live capture (`/capture/start`), seconds: the longest loop a source may hold.
pub const CAPTURE_MAX_S: f64 = 600.0;
