//! Who receives pushes (knob echoes, `/prompt/applied`, `/alarm`, status changes): clients
//! that sent `/notify 1`; and who receives `/meter`, at which rate: clients that sent
//! `/notify/meter <hz>`. One list for both, up to a cap (a client taking both counts once).
//! A cloneable handle: the transport adds and removes entries, any other control-side thread
//! (the daemon's dispatcher, the encoder thread, the health thread) broadcasts, and the
//! health thread sends each meter subscriber its `/meter` when due ([`Subscribers::push_meters`]).
//!
//! Backpressure: nothing here waits on a client. A UDP send is one datagram. Every packet
//! for a TCP connection goes through its [`TcpOutbox`]: a bounded queue drained by
//! non-blocking writes (by whoever queues, and by the connection's thread every read tick).
//! While a TCP client is behind, knob echoes waiting for it are coalesced (latest value per
//! address); one that stays behind longer than [`TCP_MAX_BEHIND`] or whose queue would
//! exceed [`TCP_OUTBOX_BYTES`] is dropped: its connection is shut down and the drop logged.
//!
//! Leases: a UDP subscription expires [`UDP_SUBSCRIPTION_LEASE`] after its last `/notify 1`
//! or `/notify/meter <hz>` (either renews it); a TCP subscription ends with its connection. Expired entries are
//! removed before each broadcast and each new subscription.
//!
//! Threading: a mutex guards the list and one per outbox (held for a non-blocking send, never
//! across a wait); never use them from the audio thread.

use latentd_engine::lock::MutexExt;
use std::collections::VecDeque;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use latentd_osc_schema::limits::{
    MAX_SUBSCRIBERS, TCP_MAX_BEHIND, TCP_OUTBOX_BYTES, UDP_SUBSCRIPTION_LEASE,
};
use latentd_osc_schema::rosc::{OscPacket, encoder};

use super::Peer;
use latentd_osc_schema::framing::{Framing, encode_frame};

/// Where packets for one client go: its UDP address, or its TCP connection's outbox.
#[derive(Debug, Clone)]
pub(crate) enum Sink {
    Udp {
        socket: Arc<UdpSocket>,
        to: SocketAddr,
    },
    Tcp(Arc<TcpOutbox>),
    /// The daemon's own commands: replies become log records naming the origin.
    Log(&'static str),
}

impl Sink {
    /// Send one encoded packet; `coalesce` names a push that only its latest value matters
    /// for (a knob echo's address), so a queued older one may be replaced.
    fn send_bytes(&self, bytes: &[u8], coalesce: Option<&str>) -> io::Result<()> {
        match self {
            Sink::Udp { socket, to } => socket.send_to(bytes, to).map(|_| ()),
            Sink::Tcp(outbox) => outbox.queue(bytes, coalesce),
            Sink::Log(_) => Ok(()),
        }
    }

    /// Encode and send one packet (a reply: never coalesced).
    pub(crate) fn send(&self, packet: &OscPacket) -> io::Result<()> {
        if let Sink::Log(origin) = self {
            let text = super::describe_reply(packet);
            if text.starts_with("/fail ") {
                log::warn!("{origin}: {text}");
            } else {
                log::info!("{origin}: {text}");
            }
            return Ok(());
        }
        let bytes = encoder::encode(packet).map_err(|e| io::Error::other(e.to_string()))?;
        self.send_bytes(&bytes, None)
    }
}

/// One framed packet waiting for a TCP connection.
#[derive(Debug)]
struct Queued {
    /// The knob echo's address when it may be replaced by a newer value.
    coalesce: Option<String>,
    frame: Vec<u8>,
}

#[derive(Debug, Default)]
struct OutboxState {
    queue: VecDeque<Queued>,
    /// Bytes of the front frame already written.
    front_written: usize,
    /// Bytes in `queue` not yet written.
    queued_bytes: usize,
    /// Since when unwritten bytes have been waiting (the client is behind).
    behind_since: Option<Instant>,
    /// Why the connection was dropped (then nothing more is queued).
    dropped: Option<String>,
}

/// The write side of one TCP connection (see the module doc). Shared by the connection's
/// thread, its [`Sink`]s and the subscriber list.
#[derive(Debug)]
pub(crate) struct TcpOutbox {
    stream: TcpStream,
    framing: Framing,
    peer: Peer,
    state: Mutex<OutboxState>,
}

impl TcpOutbox {
    /// The outbox of `stream` (a clone of the connection's socket), framed with `framing`.
    pub(crate) fn new(stream: TcpStream, framing: Framing, peer: Peer) -> TcpOutbox {
        TcpOutbox {
            stream,
            framing,
            peer,
            state: Mutex::new(OutboxState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, OutboxState> {
        self.state.lock_unpoisoned()
    }

    /// Queue one packet and write what the socket takes now.
    fn queue(&self, bytes: &[u8], coalesce: Option<&str>) -> io::Result<()> {
        let mut state = self.lock();
        if let Some(reason) = &state.dropped {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, reason.clone()));
        }
        let frame = encode_frame(self.framing, bytes);
        if let Some(key) = coalesce {
            // Only an item not yet partly written may be replaced.
            let first = usize::from(state.front_written > 0);
            let state = &mut *state;
            if let Some(older) = state
                .queue
                .iter_mut()
                .skip(first)
                .find(|q| q.coalesce.as_deref() == Some(key))
            {
                state.queued_bytes = state.queued_bytes - older.frame.len() + frame.len();
                older.frame = frame;
                return self.flush_locked(state, Instant::now());
            }
        }
        if state.queued_bytes + frame.len() > TCP_OUTBOX_BYTES {
            let reason = format!(
                "its client is not reading: more than {TCP_OUTBOX_BYTES} bytes of replies and \
                 pushes wait for it"
            );
            log::warn!("OSC TCP: closing {}: {reason}", describe(&self.peer));
            return Err(self.drop_locked(&mut state, reason));
        }
        state.queued_bytes += frame.len();
        state.queue.push_back(Queued {
            coalesce: coalesce.map(str::to_owned),
            frame,
        });
        self.flush_locked(&mut state, Instant::now())
    }

    /// Write what the socket takes now and apply the behind limit (the connection's thread
    /// calls this at every read tick). An error means the connection was dropped.
    pub(crate) fn flush(&self, now: Instant) -> io::Result<()> {
        let mut state = self.lock();
        if let Some(reason) = &state.dropped {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, reason.clone()));
        }
        self.flush_locked(&mut state, now)
    }

    fn flush_locked(&self, state: &mut OutboxState, now: Instant) -> io::Result<()> {
        while let Some(front) = state.queue.front() {
            match send_nonblocking(&self.stream, &front.frame[state.front_written..]) {
                Ok(n) => {
                    state.front_written += n;
                    state.queued_bytes -= n;
                    if state.front_written == front.frame.len() {
                        state.queue.pop_front();
                        state.front_written = 0;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::info!(
                        "OSC TCP: closing {}: write failed: {e}",
                        describe(&self.peer)
                    );
                    return Err(self.drop_locked(state, format!("write failed: {e}")));
                }
            }
        }
        if state.queue.is_empty() {
            state.behind_since = None;
            return Ok(());
        }
        let since = *state.behind_since.get_or_insert(now);
        if now.duration_since(since) > TCP_MAX_BEHIND {
            let reason = format!(
                "its client is not reading: replies and pushes have waited more than {} s",
                TCP_MAX_BEHIND.as_secs_f64()
            );
            log::warn!("OSC TCP: closing {}: {reason}", describe(&self.peer));
            return Err(self.drop_locked(state, reason));
        }
        Ok(())
    }

    /// Mark the connection dropped and shut its socket down (its thread sees the end at its
    /// next read); returns the error for the caller.
    fn drop_locked(&self, state: &mut OutboxState, reason: String) -> io::Error {
        if state.dropped.is_none() {
            state.queue.clear();
            state.queued_bytes = 0;
            let _ = self.stream.shutdown(Shutdown::Both);
            state.dropped = Some(reason.clone());
        }
        io::Error::new(io::ErrorKind::BrokenPipe, reason)
    }

    /// Close the connection for `reason` (an idle or slow client, an eviction; the caller
    /// logs).
    pub(crate) fn close(&self, reason: String) {
        let mut state = self.lock();
        let _ = self.drop_locked(&mut state, reason);
    }

    /// True once the connection was dropped.
    pub(crate) fn is_dropped(&self) -> bool {
        self.lock().dropped.is_some()
    }
}

/// A peer as log lines name it.
pub(crate) fn describe(peer: &Peer) -> String {
    match peer {
        Peer::Udp(addr) => format!("udp://{addr}"),
        Peer::Tcp { addr, connection } => format!("tcp://{addr} (connection {connection})"),
        Peer::Daemon => "the daemon".into(),
    }
}

/// `send(2)` with `MSG_DONTWAIT`: writes what the socket buffer takes now, never waits (the
/// socket's reads stay blocking for its own thread). `MSG_NOSIGNAL`: a closed peer is an
/// error, not SIGPIPE.
fn send_nonblocking(stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: the pointer and length describe `bytes`, alive for the call; the descriptor is
    // owned by `stream`, open for the call.
    let n = unsafe {
        libc::send(
            stream.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[derive(Debug)]
struct Entry {
    peer: Peer,
    sink: Sink,
    /// UDP: the end of the lease; TCP: none (the connection's lifetime).
    expires: Option<Instant>,
    /// Takes the general pushes (`/notify 1`).
    pushes: bool,
    /// Takes `/meter` (`/notify/meter <hz>`).
    meter: Option<MeterPushes>,
    /// Set while a `/meter` push due now is being sent.
    meter_due_now: bool,
}

/// One client's `/meter` rate.
#[derive(Debug, Clone, Copy)]
struct MeterPushes {
    every: Duration,
    due: Instant,
}

/// What a `/notify` or `/notify/meter` asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Subscription {
    /// `/notify 1` (true) or `/notify 0` (false).
    Pushes(bool),
    /// `/notify/meter <hz>`: `/meter` this many times a second; 0 stops.
    Meter(f64),
}

#[derive(Debug)]
struct List {
    cap: usize,
    udp_lease: Duration,
    entries: Vec<Entry>,
}

impl List {
    /// Remove UDP subscriptions whose lease ended.
    fn expire(&mut self, now: Instant) {
        let before = self.entries.len();
        self.entries
            .retain(|e| e.expires.is_none_or(|end| end > now));
        let expired = before - self.entries.len();
        if expired > 0 {
            log::info!(
                "OSC: {expired} UDP subscriber(s) expired ({} s without /notify 1)",
                self.udp_lease.as_secs_f64()
            );
        }
    }
}

/// The subscriber list (cloneable handle).
#[derive(Debug, Clone)]
pub struct Subscribers {
    inner: Arc<Mutex<List>>,
}

impl Default for Subscribers {
    /// [`MAX_SUBSCRIBERS`] subscribers, UDP leases of [`UDP_SUBSCRIPTION_LEASE`].
    fn default() -> Subscribers {
        Subscribers::new(MAX_SUBSCRIBERS)
    }
}

impl Subscribers {
    /// An empty list holding at most `cap` subscribers, UDP leases of
    /// [`UDP_SUBSCRIPTION_LEASE`].
    pub fn new(cap: usize) -> Subscribers {
        Subscribers::with_udp_lease(cap, UDP_SUBSCRIPTION_LEASE)
    }

    /// An empty list holding at most `cap` subscribers; a UDP subscription lasts `udp_lease`
    /// after its last `/notify 1` (tests use a short one).
    pub fn with_udp_lease(cap: usize, udp_lease: Duration) -> Subscribers {
        Subscribers {
            inner: Arc::new(Mutex::new(List {
                cap,
                udp_lease,
                entries: Vec::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, List> {
        let mut list = self.inner.lock_unpoisoned();
        list.expire(Instant::now());
        list
    }

    /// Number of subscribers (leases in force).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// True when nobody is subscribed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when `peer` is subscribed (its lease in force).
    pub fn contains(&self, peer: &Peer) -> bool {
        self.lock().entries.iter().any(|e| e.peer == *peer)
    }

    /// Send `packet` to every `/notify 1` subscriber without waiting on any; returns how
    /// many took it. Knob echoes (`/knob/...`) are coalesced for TCP subscribers that are
    /// behind; TCP subscribers dropped for being behind, or whose connection failed, are
    /// removed.
    pub fn broadcast(&self, packet: &OscPacket) -> usize {
        let coalesce = match packet {
            OscPacket::Message(m) if m.addr.starts_with("/knob/") => Some(m.addr.as_str()),
            _ => None,
        };
        self.send_where(packet, coalesce, |e| e.pushes)
    }

    /// Send `/meter` (built by `packet`, once, if anyone is due) to every meter subscriber
    /// whose next push is due at `now`, and schedule its next; returns when the next one is
    /// due (`None`: nobody takes meters). A TCP client that is behind gets only the latest.
    pub fn push_meters(&self, now: Instant, packet: impl FnOnce() -> OscPacket) -> Option<Instant> {
        let due = {
            let mut list = self.lock();
            let mut due = false;
            for entry in &mut list.entries {
                if let Some(m) = entry.meter.as_mut()
                    && m.due <= now
                {
                    due = true;
                    // Keep the rate; after a stall, start again from now.
                    m.due = (m.due + m.every).max(now);
                    entry.meter_due_now = true;
                }
            }
            due
        };
        if due {
            let packet = packet();
            self.send_where(&packet, Some("/meter"), |e| {
                std::mem::take(&mut e.meter_due_now)
            });
        }
        self.lock()
            .entries
            .iter()
            .filter_map(|e| e.meter.map(|m| m.due))
            .min()
    }

    /// Send `packet` to the entries `pick` chooses (it may update them), removing TCP ones
    /// whose connection failed or fell behind.
    fn send_where(
        &self,
        packet: &OscPacket,
        coalesce: Option<&str>,
        mut pick: impl FnMut(&mut Entry) -> bool,
    ) -> usize {
        let Ok(bytes) = encoder::encode(packet) else {
            return 0;
        };
        let mut list = self.lock();
        let before = list.entries.len();
        let mut delivered = 0;
        list.entries.retain_mut(|e| {
            if !pick(e) {
                return true;
            }
            match e.sink.send_bytes(&bytes, coalesce) {
                Ok(()) => {
                    delivered += 1;
                    true
                }
                Err(err) => {
                    log::debug!("push to {} failed: {err}", describe(&e.peer));
                    matches!(e.sink, Sink::Udp { .. })
                }
            }
        });
        if list.entries.len() < before {
            log::info!(
                "dropped {} TCP subscriber(s) whose connection failed or fell behind",
                before - list.entries.len()
            );
        }
        delivered
    }

    /// Apply a `/notify` or `/notify/meter` from `peer`: add it, change what it takes, or
    /// renew its lease; an entry left taking nothing is removed. The error is the `/fail`
    /// reason when the list is full.
    pub(crate) fn subscribe(
        &self,
        peer: Peer,
        sink: Sink,
        what: Subscription,
    ) -> Result<(), String> {
        let mut list = self.lock();
        let now = Instant::now();
        let expires = match peer {
            Peer::Udp(_) => Some(now + list.udp_lease),
            Peer::Tcp { .. } | Peer::Daemon => None,
        };
        let apply = |entry: &mut Entry| match what {
            Subscription::Pushes(on) => entry.pushes = on,
            Subscription::Meter(hz) if hz > 0.0 => {
                entry.meter = Some(MeterPushes {
                    every: Duration::from_secs_f64(1.0 / hz),
                    due: now,
                });
            }
            Subscription::Meter(_) => entry.meter = None,
        };
        if let Some(i) = list.entries.iter().position(|e| e.peer == peer) {
            let entry = &mut list.entries[i];
            entry.expires = expires;
            apply(entry);
            if !entry.pushes && entry.meter.is_none() {
                list.entries.remove(i);
            }
            return Ok(());
        }
        let mut entry = Entry {
            peer,
            sink,
            expires,
            pushes: false,
            meter: None,
            meter_due_now: false,
        };
        apply(&mut entry);
        if !entry.pushes && entry.meter.is_none() {
            return Ok(()); // turning off what was never on
        }
        if list.entries.len() >= list.cap {
            return Err(format!(
                "subscriber list is full ({} subscribers); a UDP subscription expires {} s \
                 after its last /notify 1 or /notify/meter, a TCP one with its connection",
                list.cap,
                list.udp_lease.as_secs_f64()
            ));
        }
        list.entries.push(entry);
        Ok(())
    }

    /// Keep only the subscribers `keep` accepts (an allowlist reload); returns how many
    /// were removed.
    pub(crate) fn retain(&self, mut keep: impl FnMut(&Peer) -> bool) -> usize {
        let mut list = self.lock();
        let before = list.entries.len();
        list.entries.retain(|e| keep(&e.peer));
        before - list.entries.len()
    }

    /// Remove `peer` (both kinds of subscription); true when it was subscribed.
    pub(crate) fn unsubscribe(&self, peer: &Peer) -> bool {
        let mut list = self.lock();
        let before = list.entries.len();
        list.entries.retain(|e| e.peer != *peer);
        list.entries.len() < before
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latentd_osc_schema::framing::{FrameReader, FramingMode};
    use latentd_osc_schema::rosc::{OscMessage, OscType, decoder};
    use std::io::Read;
    use std::net::TcpListener;

    /// An outbox on one end of a loopback connection whose other end does not read yet,
    /// with the path between them full: the next packets wait in the outbox.
    fn behind_outbox() -> (TcpOutbox, TcpStream, usize) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, addr) = listener.accept().unwrap();
        let peer = Peer::Tcp {
            addr,
            connection: 1,
        };
        let outbox = TcpOutbox::new(server, Framing::SizePrefix, peer);
        let blob = vec![0u8; 16 * 1024];
        let mut blobs = 0;
        while outbox.lock().queue.is_empty() {
            outbox.queue(&blob, None).unwrap();
            blobs += 1;
        }
        (outbox, client, blobs)
    }

    fn knob(value: f32) -> Vec<u8> {
        encoder::encode(&OscPacket::Message(OscMessage {
            addr: "/knob/denoise".into(),
            args: vec![OscType::Float(value)],
        }))
        .unwrap()
    }

    #[test]
    fn a_client_that_is_behind_gets_only_the_latest_knob_echo() {
        let (outbox, mut client, blobs) = behind_outbox();
        let waiting = outbox.lock().queue.len();
        for i in 0..100 {
            outbox
                .queue(&knob(i as f32), Some("/knob/denoise"))
                .unwrap();
        }
        assert_eq!(outbox.lock().queue.len(), waiting + 1, "echoes coalesced");

        // The client catches up: every blob, then one echo with the latest value.
        let mut reader = FrameReader::new(FramingMode::Fixed(Framing::SizePrefix), 1 << 20);
        let mut frames = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        client
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let t0 = Instant::now();
        while frames.len() < blobs + 1 && t0.elapsed() < Duration::from_secs(5) {
            outbox.flush(Instant::now()).unwrap();
            if let Ok(n) = client.read(&mut buf) {
                frames.extend(reader.push(&buf[..n]).into_iter().map(Result::unwrap));
            }
        }
        assert_eq!(frames.len(), blobs + 1);
        let last = decoder::decode_udp(frames.last().unwrap()).unwrap().1;
        let OscPacket::Message(m) = last else {
            panic!("{last:?}")
        };
        assert_eq!(m.args, vec![OscType::Float(99.0)]);
        assert!(outbox.lock().behind_since.is_none(), "caught up");
    }

    #[test]
    fn a_client_behind_for_too_long_is_disconnected() {
        let (outbox, mut client, _) = behind_outbox();
        let since = outbox.lock().behind_since.unwrap();
        outbox.flush(since + TCP_MAX_BEHIND / 2).unwrap();
        assert!(outbox.flush(since + TCP_MAX_BEHIND * 2).is_err());
        assert!(outbox.is_dropped());
        assert!(outbox.queue(&knob(1.0), Some("/knob/denoise")).is_err());
        // The client reads what was already sent, then the end of the connection.
        let mut buf = vec![0u8; 64 * 1024];
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        loop {
            match client.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    #[test]
    fn a_client_whose_outbox_overflows_is_disconnected() {
        let (outbox, _client, _) = behind_outbox();
        let blob = vec![0u8; 16 * 1024];
        let mut result = Ok(());
        for _ in 0..=TCP_OUTBOX_BYTES / blob.len() {
            result = outbox.queue(&blob, None);
            if result.is_err() {
                break;
            }
        }
        assert!(
            result.is_err(),
            "the outbox grew past {TCP_OUTBOX_BYTES} bytes"
        );
        assert!(outbox.is_dropped());
    }
}
