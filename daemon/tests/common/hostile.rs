//! Pieces shared by the issue-11 limit tests (`osc_limits`, `oscquery_limits`, `file_limits`,
//! `hardening_load`): hostile clients (a TCP connection with a tiny receive window, raw HTTP
//! exchanges) and the measurements taken under attack (resident memory, percentiles). Hostile files are
//! `latentd_tests::hostile_files`, shared with the engine's tests.
//!
//! Threading: plain functions; each call blocks its caller at most the limit it is given.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use latentd::osc::{Framing, encode_frame};
use latentd_osc_schema::rosc::{OscPacket, encoder};

/// Resident memory of process `pid`, in KiB (`VmRSS` of /proc/<pid>/status).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The `p` quantile (0 to 1) of `sorted`, nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// `packet` encoded and framed for OSC over TCP (OSC 1.0 size prefix).
pub fn framed(packet: &OscPacket) -> Vec<u8> {
    encode_frame(Framing::SizePrefix, &encoder::encode(packet).unwrap())
}

/// A TCP connection whose receive buffer is 4 KiB, so a client that does not read fills the
/// path between it and the daemon within a fraction of a second.
pub fn connect_small_window(addr: SocketAddr) -> TcpStream {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 expected: {addr}")
    };
    // SAFETY: plain socket calls on a descriptor created here and handed to TcpStream once
    // connected; the pointers describe live locals of the right size.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let size: libc::c_int = 4096;
        let rc = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw const size).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        assert_eq!(rc, 0);
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            fd,
            (&raw const sin).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
        TcpStream::from_raw_fd(fd)
    }
}

/// Send `raw` over a new HTTP connection, read until the server closes or `limit` passes;
/// the text received (possibly partial) or the error that ended it.
pub fn http_exchange(addr: SocketAddr, raw: &[u8], limit: Duration) -> Result<String, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream.write_all(raw).map_err(|e| format!("write: {e}"))?;
    read_http_answer(&mut stream, limit)
}

/// Read from `stream` until the server closes it or `limit` passes (see [`http_exchange`]).
pub fn read_http_answer(stream: &mut TcpStream, limit: Duration) -> Result<String, String> {
    let end = Instant::now() + limit;
    let mut got = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let Some(left) = end.checked_duration_since(Instant::now()) else {
            return Err(format!(
                "no end of answer within {limit:?}; got {:?}",
                String::from_utf8_lossy(&got)
            ));
        };
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) if !got.is_empty() => return Ok(String::from_utf8_lossy(&got).into_owned()),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// The status code of an HTTP answer.
pub fn http_status(answer: &str) -> Option<u16> {
    answer.split(' ').nth(1)?.parse().ok()
}
