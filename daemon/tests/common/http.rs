//! One plain HTTP/1.0 exchange with the daemon's HTTP port (OSCQuery, `/metrics`): the server
//! closes after its reply, so reading to the end is the whole reply (no chunking).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Sends `method target` and returns the reply's header block and body.
pub fn exchange(addr: SocketAddr, method: &str, target: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(stream, "{method} {target} HTTP/1.0\r\nHost: test\r\n\r\n").unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header block");
    (head.to_string(), body.to_string())
}

/// A TCP port free on loopback now (bound and released; for `--oscquery-port`).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
