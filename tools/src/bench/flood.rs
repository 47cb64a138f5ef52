//! `bench flood`: knob messages at a fixed rate over UDP, alternating between two values
//! inside the knob's range, for a fixed time (or until stopped).
//!
//! The daemon limits each UDP sender (address and port) to 2000 packets/s with a burst of
//! 500; beyond that it answers one `/fail` and drops. So the flood spreads its messages
//! round-robin over several sockets (by default one per 1000 messages/s) and counts every
//! `/fail` that comes back: a run with `fails == 0` had every message admitted.
//!
//! Pacing: every ~200 µs the sender tops the count up to `rate × elapsed`, so short sleeps
//! that overrun are caught up at once; the achieved rate is reported.
//!
//! Threading: runs on the thread that calls [`run`] (the main thread for `bench flood`, a
//! helper thread beside `bench knob-to-ear --flood-rate`); `stop` ends it early.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use latentd_osc_schema::rosc::{OscMessage, OscPacket, OscType, decoder, encoder};
use serde::Serialize;

/// How to flood.
#[derive(Debug, Clone)]
pub struct FloodPlan {
    /// The daemon's OSC address.
    pub server: SocketAddr,
    /// The knob address, e.g. `/knob/denoise`.
    pub address: String,
    /// The two values sent in turn, already typed.
    pub values: [OscType; 2],
    /// Messages per second, in all.
    pub rate: f64,
    /// How long.
    pub duration: Duration,
    /// Sockets to spread the messages over.
    pub sockets: usize,
}

/// What a flood did.
#[derive(Debug, Clone, Serialize)]
pub struct FloodReport {
    /// The knob address flooded.
    pub address: String,
    /// Messages per second asked for.
    pub rate_asked: f64,
    /// Sockets used.
    pub sockets: usize,
    /// Messages sent.
    pub sent: u64,
    /// Seconds it ran.
    pub seconds: f64,
    /// `sent / seconds`.
    pub rate_achieved: f64,
    /// `/fail` replies received (rate limit or bad value): 0 means every message was
    /// admitted.
    pub fails: u64,
    /// The first `/fail` reason, if any.
    pub first_fail: Option<String>,
}

impl FloodReport {
    /// One line for a terminal.
    pub fn text(&self) -> String {
        format!(
            "flood: {} messages to {} in {:.2} s ({:.0}/s asked {:.0}/s, {} sockets), {} /fail{}\n",
            self.sent,
            self.address,
            self.seconds,
            self.rate_achieved,
            self.rate_asked,
            self.sockets,
            self.fails,
            self.first_fail
                .as_ref()
                .map(|f| format!(" (first: {f})"))
                .unwrap_or_default()
        )
    }
}

/// Sockets needed so that each stays at or under 1000 messages/s.
pub fn default_sockets(rate: f64) -> usize {
    ((rate / 1000.0).ceil() as usize).max(1)
}

/// Run `plan` until its duration passes or `stop` is set.
pub fn run(plan: &FloodPlan, stop: &AtomicBool) -> io::Result<FloodReport> {
    let sockets = (0..plan.sockets.max(1))
        .map(|_| {
            let s = UdpSocket::bind(if plan.server.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            })?;
            s.connect(plan.server)?;
            s.set_nonblocking(true)?;
            Ok(s)
        })
        .collect::<io::Result<Vec<_>>>()?;
    let packets = plan
        .values
        .iter()
        .map(|v| {
            encoder::encode(&OscPacket::Message(OscMessage {
                addr: plan.address.clone(),
                args: vec![v.clone()],
            }))
            .map_err(|e| io::Error::other(e.to_string()))
        })
        .collect::<io::Result<Vec<_>>>()?;
    let (mut sent, mut fails, mut first_fail) = (0u64, 0u64, None);
    let mut buf = vec![0u8; 64 * 1024];
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let elapsed = start.elapsed();
        if elapsed >= plan.duration {
            break;
        }
        let due = (plan.rate * elapsed.as_secs_f64()) as u64;
        while sent < due {
            let socket = &sockets[sent as usize % sockets.len()];
            match socket.send(&packets[(sent % 2) as usize]) {
                Ok(_) => sent += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        for socket in &sockets {
            while let Ok(n) = socket.recv(&mut buf) {
                if let Some(why) = fail_reason(&buf[..n]) {
                    fails += 1;
                    first_fail.get_or_insert(why);
                }
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let seconds = start.elapsed().as_secs_f64();
    // Late replies to the last messages.
    std::thread::sleep(Duration::from_millis(50));
    for socket in &sockets {
        while let Ok(n) = socket.recv(&mut buf) {
            if let Some(why) = fail_reason(&buf[..n]) {
                fails += 1;
                first_fail.get_or_insert(why);
            }
        }
    }
    Ok(FloodReport {
        address: plan.address.clone(),
        rate_asked: plan.rate,
        sockets: sockets.len(),
        sent,
        seconds,
        rate_achieved: sent as f64 / seconds.max(1e-9),
        fails,
        first_fail,
    })
}

/// The reason of a `/fail` packet, if `bytes` is one.
fn fail_reason(bytes: &[u8]) -> Option<String> {
    let (_, packet) = decoder::decode_udp(bytes).ok()?;
    crate::show::messages(&packet)
        .into_iter()
        .find_map(crate::show::failure)
}
