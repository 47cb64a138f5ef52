//! The OSCQuery server's HTTP/1.x layer: a std `TcpListener`, an accept loop, a bounded pool
//! of connection workers, and requests parsed by `httparse` from a fixed buffer, under the
//! limits of [`latentd_osc_schema::oscquery_http`] (each named there once):
//!
//! - Size: the request line and headers are read into one buffer of [`MAX_HEAD_BYTES`] and
//!   parsed into [`MAX_HEADERS`] fields (431 over either); nothing is allocated from a size
//!   the peer sends. A `Content-Length` over [`MAX_BODY_BYTES`], or any `Transfer-Encoding`,
//!   is answered 413 and the connection closed without reading the body; a small body is read
//!   and discarded.
//! - Connections: at most [`MAX_CONNECTIONS`] are served at once, each by its own worker; one
//!   more is answered 503 by the accept loop itself (a non-blocking write) and closed, so a
//!   full server never blocks the accept loop or the clients being served.
//! - Time: [`IDLE_TIMEOUT`] for the first byte of a request, [`REQUEST_TIMEOUT`] from it to
//!   the last byte of the request (a slow client gets 408 and is cut off),
//!   [`RESPONSE_TIMEOUT`] to write the answer; [`MAX_REQUESTS_PER_CONNECTION`] on one
//!   keep-alive connection.
//! - File descriptors: when `accept` fails for want of descriptors or memory (`EMFILE`,
//!   `ENFILE`, `ENOBUFS`, `ENOMEM`) the loop pauses ([`ACCEPT_BACKOFF_MIN`] doubling up to
//!   [`ACCEPT_BACKOFF_MAX`]) and serves again once descriptors are back.
//! - Refusals (allowlist, cap, sizes, timeouts, accept failures) go to one rate-limited log
//!   ([`RefusalLog`]).
//!
//! Threading: one accept thread (`oscquery`), and workers (`oscquery-http`) spawned on demand
//! so that there is one per open connection, at most [`MAX_CONNECTIONS`], kept until
//! shutdown. Every blocking call waits at most [`STOP_POLL`], so [`HttpServer::shutdown`]
//! stops all of them within about that. The [`Handler`] runs on the workers, several at once.

use latentd_engine::lock::MutexExt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use latentd_osc_schema::oscquery_http::{
    ACCEPT_BACKOFF_MAX, ACCEPT_BACKOFF_MIN, IDLE_TIMEOUT, MAX_BODY_BYTES, MAX_CONNECTIONS,
    MAX_HEAD_BYTES, MAX_HEADERS, MAX_REQUESTS_PER_CONNECTION, REQUEST_TIMEOUT, RESPONSE_TIMEOUT,
};

use super::refusals::RefusalLog;
use crate::osc::SharedAllowlist;

/// The longest any blocking call of the server waits before it looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);

/// Stack of a worker thread (answers are built on the heap; the JSON tree is shallow).
const WORKER_STACK_BYTES: usize = 256 * 1024;

/// One parsed request, as the [`Handler`] sees it.
#[derive(Debug)]
pub(super) struct Request<'a> {
    /// `GET`, `HEAD`, ...
    pub method: &'a str,
    /// The request target: path and query, at most `MAX_HEAD_BYTES` long.
    pub target: &'a str,
}

/// An answer: status, extra headers, body (`Content-Length` and `Connection` are added).
#[derive(Debug)]
pub(super) struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, &'static str)>,
    pub body: Vec<u8>,
}

impl Response {
    /// A plain-text answer.
    pub(super) fn text(status: u16, text: &str) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", "text/plain; charset=utf-8")],
            body: text.as_bytes().to_vec(),
        }
    }
}

/// Answers requests from allowed peers; called on the worker threads, several at once.
pub(super) trait Handler: Send + Sync + 'static {
    fn respond(&self, request: &Request<'_>) -> Response;
}

/// What the accept loop and the workers share.
struct Shared {
    handler: Arc<dyn Handler>,
    allow: SharedAllowlist,
    refusals: RefusalLog,
    stop: AtomicBool,
    /// Connections handed to workers and not finished (queued or being served).
    open: AtomicUsize,
}

/// A running server; [`HttpServer::shutdown`] (or drop) stops and joins every thread.
pub(super) struct HttpServer {
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Serve `listener` with `handler`, for the peers `allow` admits (others get 403).
    pub(super) fn start(
        listener: TcpListener,
        allow: SharedAllowlist,
        handler: Arc<dyn Handler>,
    ) -> io::Result<HttpServer> {
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            handler,
            allow,
            refusals: RefusalLog::new(),
            stop: AtomicBool::new(false),
            open: AtomicUsize::new(0),
        });
        let thread_shared = shared.clone();
        let accept = std::thread::Builder::new()
            .name("oscquery".into())
            .spawn(move || accept_loop(&listener, &thread_shared))?;
        Ok(HttpServer {
            shared,
            accept: Some(accept),
        })
    }

    /// Stop accepting, close every connection and join every thread (within about
    /// [`STOP_POLL`]).
    pub(super) fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The pool: workers take connections from one queue; there are always at least as many
/// workers as open connections, so a connection never waits for a worker.
struct Pool {
    queue: SyncSender<(TcpStream, SocketAddr)>,
    jobs: Arc<Mutex<Receiver<(TcpStream, SocketAddr)>>>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    fn new() -> Pool {
        let (queue, jobs) = sync_channel(MAX_CONNECTIONS);
        Pool {
            queue,
            jobs: Arc::new(Mutex::new(jobs)),
            workers: Vec::new(),
        }
    }

    /// Hand `stream` to a worker, spawning one when every worker is busy (the caller
    /// counted it in `shared.open`, which is at most `MAX_CONNECTIONS`, the queue's
    /// capacity); 503 when no thread can be had.
    fn dispatch(&mut self, shared: &Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
        if self.workers.len() < shared.open.load(Ordering::Acquire) {
            let jobs = self.jobs.clone();
            let worker_shared = shared.clone();
            match std::thread::Builder::new()
                .name("oscquery-http".into())
                .stack_size(WORKER_STACK_BYTES)
                .spawn(move || worker(&jobs, &worker_shared))
            {
                Ok(handle) => self.workers.push(handle),
                // No thread to serve it (the process is at its thread limit): refused like
                // one over the cap, rather than left waiting for a busy worker.
                Err(e) => {
                    shared.open.fetch_sub(1, Ordering::AcqRel);
                    shared
                        .refusals
                        .refused(format_args!("{peer}: no worker thread ({e}) (503)"));
                    answer_and_close(&stream, &Response::text(503, "server busy; try again\n"));
                    return;
                }
            }
        }
        match self.queue.try_send((stream, peer)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                shared.open.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    fn join(self) {
        drop(self.queue);
        for worker in self.workers {
            let _ = worker.join();
        }
    }
}

fn worker(jobs: &Mutex<Receiver<(TcpStream, SocketAddr)>>, shared: &Shared) {
    loop {
        let job = jobs.lock_unpoisoned().recv();
        let Ok((stream, peer)) = job else {
            return;
        };
        // A panic in a handler ends that connection only: the worker and its slot live on.
        let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Connection::new(stream, peer, shared).serve();
        }));
        if served.is_err() {
            log::error!("OSCQuery: answering {peer} panicked; connection closed");
        }
        shared.open.fetch_sub(1, Ordering::AcqRel);
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut pool = Pool::new();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    while !shared.stop.load(Ordering::Relaxed) {
        shared.refusals.flush();
        if !readable(listener, STOP_POLL) {
            continue;
        }
        match listener.accept() {
            Ok((stream, peer)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                admit(&mut pool, shared, stream, peer);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if out_of_resources(&e) => {
                shared.refusals.refused(format_args!(
                    "new connections: accept failed ({e}); retrying in {} ms",
                    backoff.as_millis()
                ));
                sleep_unless_stopped(backoff, &shared.stop);
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
            // ECONNABORTED, EINTR, EPROTO...: that one connection is gone; go on.
            Err(e) => log::debug!("OSCQuery: accept: {e}"),
        }
    }
    pool.join();
}

/// Count `stream` in and hand it to a worker, or answer 503 over the cap.
fn admit(pool: &mut Pool, shared: &Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let open = shared.open.fetch_add(1, Ordering::AcqRel);
    if open >= MAX_CONNECTIONS {
        shared.open.fetch_sub(1, Ordering::AcqRel);
        shared.refusals.refused(format_args!(
            "{peer}: {MAX_CONNECTIONS} connections already open (503)"
        ));
        answer_and_close(
            &stream,
            &Response::text(503, "too many connections; try again\n"),
        );
        return;
    }
    pool.dispatch(shared, stream, peer);
}

/// Most bytes a refused connection's unread input is drained of before the close.
const DRAIN_BYTES: usize = 64 * 1024;

/// Answer `response` and close, never waiting on the peer: the write is non-blocking (the
/// answer is small, the send buffer has room; if not, the close alone tells the client), and
/// input already received is drained so that the close does not reset the connection before
/// the client reads the answer.
fn answer_and_close(stream: &TcpStream, response: &Response) {
    let _ = stream.set_nonblocking(true);
    let _ = (&*stream).write_all(&encode(response, false, false));
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut scratch = [0u8; 4096];
    let mut drained = 0;
    while drained < DRAIN_BYTES {
        match (&*stream).read(&mut scratch) {
            Ok(n) if n > 0 => drained += n,
            _ => break,
        }
    }
}

/// True when `accept` failed for want of descriptors or kernel memory: worth a pause.
fn out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Wait up to `limit` for a connection to accept (or an error to read).
fn readable(listener: &TcpListener, limit: Duration) -> bool {
    let mut fd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = libc::c_int::try_from(limit.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd, the listener's open descriptor, for the length of the call.
    let ready = unsafe { libc::poll(&mut fd, 1, millis) };
    ready > 0
}

fn sleep_unless_stopped(total: Duration, stop: &AtomicBool) {
    let end = Instant::now() + total;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        std::thread::sleep(left.min(STOP_POLL));
    }
}

/// Why a connection ends without another request.
enum Ended {
    /// The peer closed, the server stops, or an I/O error: nothing more to say.
    Quietly,
    /// Refused: answer `status` (best effort) and close; logged.
    Refused(u16, &'static str),
}

/// One connection on one worker: a fixed head buffer, reused across its requests.
struct Connection<'a> {
    stream: TcpStream,
    peer: SocketAddr,
    shared: &'a Shared,
    buffer: Box<[u8]>,
    /// Bytes of `buffer` holding received data not yet consumed (a pipelined next request).
    filled: usize,
}

/// A request head, parsed: what the rest of the exchange needs, copied out of the buffer.
struct Head {
    /// Bytes of the buffer it took.
    len: usize,
    method: String,
    target: String,
    keep_alive: bool,
    body: u64,
    /// When the whole request (its body included) must have arrived.
    deadline: Instant,
}

impl<'a> Connection<'a> {
    fn new(stream: TcpStream, peer: SocketAddr, shared: &'a Shared) -> Connection<'a> {
        Connection {
            stream,
            peer,
            shared,
            buffer: vec![0; MAX_HEAD_BYTES].into_boxed_slice(),
            filled: 0,
        }
    }

    fn serve(mut self) {
        let _ = self.stream.set_nodelay(true);
        for served in 1..=MAX_REQUESTS_PER_CONNECTION {
            let ended = match self.read_head() {
                Ok(head) => self.exchange(head, served == MAX_REQUESTS_PER_CONNECTION),
                Err(ended) => Err(ended),
            };
            match ended {
                Ok(true) => {}
                Ok(false) | Err(Ended::Quietly) => return,
                Err(Ended::Refused(status, why)) => {
                    // A refused peer learns only that it is refused.
                    let (status, why) = if self.shared.allow.allows(self.peer.ip()) {
                        (status, why)
                    } else {
                        (403, "peer outside the allowlist")
                    };
                    return self.refuse(status, why);
                }
            }
        }
    }

    /// Answer one parsed request; `Ok(true)` when the connection stays open for another.
    fn exchange(&mut self, head: Head, last: bool) -> Result<bool, Ended> {
        if !self.shared.allow.allows(self.peer.ip()) {
            return Err(Ended::Refused(403, "peer outside the allowlist"));
        }
        self.consume_body(head.len, head.body, head.deadline)?;
        let response = self.shared.handler.respond(&Request {
            method: &head.method,
            target: &head.target,
        });
        let keep_alive = head.keep_alive && !last;
        let bytes = encode(&response, head.method == "HEAD", keep_alive);
        self.write(&bytes)?;
        Ok(keep_alive)
    }

    /// Read until one request head is complete (the idle, then the request deadline).
    fn read_head(&mut self) -> Result<Head, Ended> {
        let waiting = Instant::now();
        let mut started = (self.filled > 0).then(Instant::now);
        loop {
            if self.filled > 0 {
                let deadline = started.unwrap_or_else(Instant::now) + REQUEST_TIMEOUT;
                if let Some(head) = self.parse(deadline)? {
                    return Ok(head);
                }
                if self.filled == self.buffer.len() {
                    return Err(Ended::Refused(431, "request head too large"));
                }
            }
            let deadline = match started {
                Some(t) => t + REQUEST_TIMEOUT,
                None => waiting + IDLE_TIMEOUT,
            };
            let filled = self.filled;
            match self.read_some(filled, deadline)? {
                Some(0) => return Err(Ended::Quietly),
                Some(n) => {
                    started.get_or_insert_with(Instant::now);
                    self.filled += n;
                }
                None if started.is_some() => {
                    return Err(Ended::Refused(408, "request not complete in time"));
                }
                None => return Err(Ended::Quietly),
            }
        }
    }

    /// Parse the head in `buffer[..filled]` of a request due complete by `deadline`:
    /// `Ok(None)` while incomplete.
    fn parse(&self, deadline: Instant) -> Result<Option<Head>, Ended> {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut fields);
        let len = match request.parse(&self.buffer[..self.filled]) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Ended::Refused(431, "too many header fields"));
            }
            Err(_) => return Err(Ended::Refused(400, "malformed request")),
        };
        let version = request.version.unwrap_or(0);
        let mut keep_alive = version >= 1;
        let mut body: Option<u64> = None;
        for field in request.headers.iter() {
            if field.name.eq_ignore_ascii_case("Content-Length") {
                let length = std::str::from_utf8(field.value)
                    .ok()
                    .map(str::trim)
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .map(|v| v.parse::<u64>().unwrap_or(u64::MAX))
                    .ok_or(Ended::Refused(400, "malformed Content-Length"))?;
                if body.is_some_and(|b| b != length) {
                    return Err(Ended::Refused(400, "conflicting Content-Length"));
                }
                body = Some(length);
            } else if field.name.eq_ignore_ascii_case("Transfer-Encoding") {
                return Err(Ended::Refused(413, "request body (Transfer-Encoding)"));
            } else if field.name.eq_ignore_ascii_case("Connection") {
                for token in String::from_utf8_lossy(field.value).split(',') {
                    let token = token.trim();
                    if token.eq_ignore_ascii_case("close") {
                        keep_alive = false;
                    } else if token.eq_ignore_ascii_case("keep-alive") && version == 0 {
                        keep_alive = true;
                    }
                }
            }
        }
        let body = body.unwrap_or(0);
        if body > MAX_BODY_BYTES {
            return Err(Ended::Refused(413, "request body too large"));
        }
        Ok(Some(Head {
            len,
            method: request.method.unwrap_or_default().to_string(),
            target: request.path.unwrap_or_default().to_string(),
            keep_alive,
            body,
            deadline,
        }))
    }

    /// Drop the head and its body (at most `MAX_BODY_BYTES`) from the buffer, reading the
    /// part of the body not received yet before `deadline`; what follows is kept (the next
    /// request).
    fn consume_body(&mut self, head: usize, body: u64, deadline: Instant) -> Result<(), Ended> {
        // body <= MAX_BODY_BYTES, far below usize::MAX.
        let body = usize::try_from(body).unwrap_or(usize::MAX);
        let buffered = (self.filled - head).min(body);
        let consumed = head + buffered;
        self.buffer.copy_within(consumed..self.filled, 0);
        self.filled -= consumed;
        let mut left = body - buffered;
        let mut scratch = [0u8; 256];
        while left > 0 {
            let want = left.min(scratch.len());
            match read_until(
                &mut self.stream,
                &mut scratch[..want],
                deadline,
                self.shared,
            )? {
                Some(0) => return Err(Ended::Quietly),
                Some(n) => left -= n,
                None => return Err(Ended::Refused(408, "request body not complete in time")),
            }
        }
        Ok(())
    }

    /// Read into `buffer[from..]` before `deadline`: `Some(0)` at end of stream, `None` at
    /// the deadline.
    fn read_some(&mut self, from: usize, deadline: Instant) -> Result<Option<usize>, Ended> {
        read_until(
            &mut self.stream,
            &mut self.buffer[from..],
            deadline,
            self.shared,
        )
    }

    /// Write all of `bytes` before the response deadline.
    fn write(&mut self, bytes: &[u8]) -> Result<(), Ended> {
        let deadline = Instant::now() + RESPONSE_TIMEOUT;
        let mut written = 0;
        while written < bytes.len() {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Err(Ended::Quietly);
            };
            if self.shared.stop.load(Ordering::Relaxed) {
                return Err(Ended::Quietly);
            }
            let slice = left.min(STOP_POLL).max(Duration::from_millis(1));
            self.stream
                .set_write_timeout(Some(slice))
                .map_err(|_| Ended::Quietly)?;
            match self.stream.write(&bytes[written..]) {
                Ok(0) => return Err(Ended::Quietly),
                Ok(n) => written += n,
                Err(e) if retry(&e) => {}
                Err(_) => return Err(Ended::Quietly),
            }
        }
        Ok(())
    }

    /// Log the refusal, answer `status` without waiting on the peer, close.
    fn refuse(self, status: u16, why: &str) {
        self.shared
            .refusals
            .refused(format_args!("{}: {why} ({status})", self.peer));
        answer_and_close(&self.stream, &Response::text(status, &format!("{why}\n")));
    }
}

/// Read into `buffer` before `deadline`, in slices of at most [`STOP_POLL`]: `Some(0)` at the
/// end of the stream, `None` at the deadline, `Err` on an error or a stop.
fn read_until(
    stream: &mut TcpStream,
    buffer: &mut [u8],
    deadline: Instant,
    shared: &Shared,
) -> Result<Option<usize>, Ended> {
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return Err(Ended::Quietly);
        }
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return Ok(None);
        };
        let slice = left.min(STOP_POLL).max(Duration::from_millis(1));
        stream
            .set_read_timeout(Some(slice))
            .map_err(|_| Ended::Quietly)?;
        match stream.read(buffer) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if retry(&e) => {}
            Err(_) => return Err(Ended::Quietly),
        }
    }
}

/// A timed-out or interrupted socket call, to try again.
fn retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// The bytes of `response`: status line, headers, body (left out for HEAD; and for 204,
/// which has no `Content-Length` either).
fn encode(response: &Response, head_only: bool, keep_alive: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(response.body.len() + 256);
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    for (name, value) in &response.headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    if response.status != 204 {
        let _ = write!(out, "Content-Length: {}\r\n", response.body.len());
    }
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let _ = write!(out, "Connection: {connection}\r\n\r\n");
    if !head_only && response.status != 204 {
        out.extend_from_slice(&response.body);
    }
    out
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_leaves_bodies_out_of_head_and_204() {
        let ok = Response::text(200, "hello");
        let full = String::from_utf8(encode(&ok, false, true)).unwrap();
        assert!(full.starts_with("HTTP/1.1 200 OK\r\n"), "{full}");
        assert!(full.contains("Content-Length: 5\r\n"), "{full}");
        assert!(full.contains("Connection: keep-alive\r\n"), "{full}");
        assert!(full.ends_with("\r\n\r\nhello"), "{full}");
        let head = String::from_utf8(encode(&ok, true, false)).unwrap();
        assert!(head.contains("Content-Length: 5\r\n"), "{head}");
        assert!(head.ends_with("Connection: close\r\n\r\n"), "{head}");
        let empty = String::from_utf8(encode(&Response::text(204, ""), false, false)).unwrap();
        assert!(!empty.contains("Content-Length"), "{empty}");
        assert!(empty.ends_with("\r\n\r\n"), "{empty}");
    }
}
