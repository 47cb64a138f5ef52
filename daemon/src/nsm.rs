//! Session managers: the NSM (New/Non Session Manager) client protocol, API 1.2, spoken
//! when `NSM_URL` is set (`osc.udp://HOST:PORT/`), over the OSC stack latentd already has
//! (`rosc`, one UDP socket).
//!
//! The order at start, so that the session's client id is the JACK client's name:
//!
//! 1. [`NsmClient::join`] (the service's first step at start, before any output or
//!    file opens): bind a UDP socket, send `/nsm/server/announce s:latentd s:<capabilities>
//!    s:<executable> i:1 i:2 i:<pid>`, take the server's `/reply`, then wait (at most
//!    [`OPEN_TIMEOUT`]) for `/nsm/client/open s:path s:display_name s:client_id`. An
//!    `/error` reply or no open is a start failure (exit 2).
//! 2. [`NsmClient::session_settings`]: the settings with the session's overrides (a SIGHUP
//!    reload applies them again to the re-read config, [`NsmClient::apply_overrides`]). The
//!    instance path is a folder (created if missing) holding the state file
//!    (`<path>/state.json`) and the presets (`<path>/presets/`): what is there is loaded;
//!    the JACK client / PipeWire node is named `client_id`; the outputs are not
//!    autoconnected (the session manager restores connections).
//! 3. The daemon starts as usual with those settings; once it is ready (`READY=1`: the
//!    output plays, the sockets are bound) [`NsmClient::opened`] answers `/reply
//!    /nsm/client/open s:<message>`, and starts the NSM thread. A start that fails after
//!    the open answers `/error /nsm/client/open i:-1 s:<reason>` instead
//!    ([`NsmClient::open_failed`]).
//! 4. The NSM thread answers `/nsm/client/save` by saving the session now, atomically,
//!    through the state file's saver (`/reply /nsm/client/save s:Saved.`, or `/error
//!    /nsm/client/save i:-1 s:<reason>`). latentd does not announce `:switch:`, so a second
//!    `/nsm/client/open` is answered `/error ... i:-1` (a session manager restarts clients
//!    that cannot switch). Quitting is SIGTERM, as the protocol says.
//!
//! Only datagrams from the server's address are read; everything is answered from the
//! socket the announce was sent from (the protocol requires it).
//!
//! Threading: [`NsmClient::join`] and the open's answer run on the main thread; the NSM
//! thread (`nsm`) owns the socket's reads afterwards and sends its replies itself. It never
//! touches the audio thread.

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, TryRecvError};
use std::time::{Duration, Instant};

use rosc::{OscMessage, OscPacket, OscType};

use crate::control::session::Session;
use crate::settings::{MAX_CLIENT_NAME, Settings};
use crate::stoppable::StoppableThread;

/// The environment variable a session manager sets.
pub const NSM_URL_VAR: &str = "NSM_URL";
/// The API version latentd speaks.
pub const API_VERSION: (i32, i32) = (1, 2);
/// Capabilities announced: none of the optional ones (no `:switch:`, `:dirty:`,
/// `:progress:`, `:optional-gui:`).
pub const CAPABILITIES: &str = ":";
/// How long the join waits for the server's reply and for `/nsm/client/open`.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// The state file's name in the session's folder.
pub const STATE_FILE: &str = "state.json";
/// NSM's general error code.
pub const ERR_GENERAL: i32 = -1;

/// Why latentd could not join a session.
#[derive(Debug, thiserror::Error)]
#[error("NSM ({url}): {reason}")]
pub struct NsmError {
    /// `NSM_URL`.
    pub url: String,
    /// What failed.
    pub reason: String,
}

/// What `/nsm/client/open` gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsmOpen {
    /// The instance's path (latentd uses it as a folder).
    pub path: PathBuf,
    /// The session's name for people.
    pub display_name: String,
    /// The client's id in the session: latentd's JACK client name.
    pub client_id: String,
}

/// `NSM_URL`, if set and not empty.
pub fn url_from_env() -> Option<String> {
    std::env::var(NSM_URL_VAR).ok().filter(|u| !u.is_empty())
}

/// The server's address in an `osc.udp://HOST:PORT/` URL.
pub fn parse_url(url: &str) -> Result<SocketAddr, String> {
    let rest = url
        .strip_prefix("osc.udp://")
        .ok_or("not an osc.udp:// URL")?;
    let host_port = rest.trim_end_matches('/');
    host_port
        .to_socket_addrs()
        .map_err(|e| format!("{host_port:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host_port:?} resolves to no address"))
}

/// latentd as a client of one session (see the module doc).
pub struct NsmClient {
    url: String,
    socket: UdpSocket,
    server: SocketAddr,
    open: NsmOpen,
    /// The open has been answered (`/reply` or `/error`).
    answered: AtomicBool,
}

impl NsmClient {
    /// Announce to the server at `url` and wait for the session's open (steps 1 of the
    /// module doc).
    pub fn join(url: &str) -> Result<NsmClient, NsmError> {
        let err = |reason: String| NsmError {
            url: url.to_string(),
            reason,
        };
        let server = parse_url(url).map_err(err)?;
        let bind: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0".parse().expect("a socket address")
        } else {
            "[::]:0".parse().expect("a socket address")
        };
        let socket = UdpSocket::bind(bind).map_err(|e| err(format!("bind: {e}")))?;
        let executable = std::env::args_os()
            .next()
            .map(PathBuf::from)
            .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "latentd".into());
        send(
            &socket,
            server,
            "/nsm/server/announce",
            vec![
                s("latentd"),
                s(CAPABILITIES),
                s(&executable),
                OscType::Int(API_VERSION.0),
                OscType::Int(API_VERSION.1),
                OscType::Int(std::process::id() as i32),
            ],
        )
        .map_err(|e| err(format!("announce: {e}")))?;
        let deadline = Instant::now() + OPEN_TIMEOUT;
        let mut announced = false;
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .ok_or_else(|| {
                    err(format!(
                        "no {} within {} s",
                        if announced {
                            "/nsm/client/open"
                        } else {
                            "reply to /nsm/server/announce"
                        },
                        OPEN_TIMEOUT.as_secs()
                    ))
                })?;
            let Some(m) = receive(&socket, server, left).map_err(|e| err(e.to_string()))? else {
                continue;
            };
            match (m.addr.as_str(), text(&m, 0)) {
                ("/reply", Some("/nsm/server/announce")) => {
                    log::info!(
                        "NSM: announced to {} ({})",
                        text(&m, 2).unwrap_or("a session manager"),
                        text(&m, 1).unwrap_or("")
                    );
                    announced = true;
                }
                ("/error", Some("/nsm/server/announce")) => {
                    let why = text(&m, 2).unwrap_or("no reason given");
                    return Err(err(format!("the server refused the announce: {why}")));
                }
                ("/nsm/client/open", _) => {
                    let (Some(path), Some(display_name), Some(client_id)) =
                        (text(&m, 0), text(&m, 1), text(&m, 2))
                    else {
                        return Err(err(format!("malformed /nsm/client/open: {:?}", m.args)));
                    };
                    let open = NsmOpen {
                        path: PathBuf::from(path),
                        display_name: display_name.to_string(),
                        client_id: client_id.to_string(),
                    };
                    log::info!(
                        "NSM: opening {:?} as client {:?} in {}",
                        open.display_name,
                        open.client_id,
                        open.path.display()
                    );
                    return Ok(NsmClient {
                        url: url.to_string(),
                        socket,
                        server,
                        open,
                        answered: AtomicBool::new(false),
                    });
                }
                _ => log::debug!("NSM: ignored {} before the open", m.addr),
            }
        }
    }

    /// What the open gave.
    pub fn open(&self) -> &NsmOpen {
        &self.open
    }

    /// `settings` with the session's overrides (step 2 of the module doc); creates the
    /// session's folder.
    pub fn session_settings(&self, settings: &Settings) -> Result<Settings, NsmError> {
        let err = |reason: String| NsmError {
            url: self.url.clone(),
            reason,
        };
        let id = &self.open.client_id;
        if id.is_empty() || id.len() > MAX_CLIENT_NAME || id.contains(':') {
            return Err(err(format!(
                "client id {id:?} cannot name a JACK client (1 to {MAX_CLIENT_NAME} bytes \
                 without ':')"
            )));
        }
        std::fs::create_dir_all(&self.open.path)
            .map_err(|e| err(format!("session folder {}: {e}", self.open.path.display())))?;
        Ok(self.apply_overrides(settings.clone()))
    }

    /// `settings` with the session's overrides, without checks (a SIGHUP reload applies
    /// them to the re-read config, so they never count as changed).
    pub fn apply_overrides(&self, mut settings: Settings) -> Settings {
        settings.client_name = self.open.client_id.clone();
        settings.autoconnect = false;
        settings.state_path = self.open.path.join(STATE_FILE);
        settings
    }

    /// The daemon is ready: answer the open, and serve saves on the NSM thread from now on
    /// (it ends when the returned handle is dropped).
    pub fn opened(&self, session: Arc<Session>) -> std::io::Result<NsmThread> {
        self.answered.store(true, Ordering::Release);
        let message = format!("latentd plays session {:?}", self.open.display_name);
        self.reply("/nsm/client/open", &message)?;
        let socket = self.socket.try_clone()?;
        let server = self.server;
        StoppableThread::spawn("nsm", move |stopped| {
            serve(&socket, server, &session, &stopped)
        })
        .map(NsmThread)
    }

    /// The start failed after the open: answer it with `/error` (once; a no-op when the
    /// open was answered already).
    pub fn open_failed(&self, why: &str) {
        if !self.answered.swap(true, Ordering::AcqRel)
            && let Err(e) = self.error("/nsm/client/open", why)
        {
            log::warn!("NSM: answering the open: {e}");
        }
    }

    fn reply(&self, path: &str, message: &str) -> std::io::Result<()> {
        send(
            &self.socket,
            self.server,
            "/reply",
            vec![s(path), s(message)],
        )
    }

    fn error(&self, path: &str, message: &str) -> std::io::Result<()> {
        send_error(&self.socket, self.server, path, message)
    }
}

/// The running NSM thread; [`NsmThread::stop`] (or drop) ends it.
pub struct NsmThread(StoppableThread<()>);

impl NsmThread {
    /// Stop the thread and wait for it.
    pub fn stop(self) {
        self.0.stop();
    }
}

/// The NSM thread: answer the server until stopped.
fn serve(socket: &UdpSocket, server: SocketAddr, session: &Session, stopped: &mpsc::Receiver<()>) {
    loop {
        match stopped.try_recv() {
            Err(TryRecvError::Empty) => {}
            Ok(()) | Err(TryRecvError::Disconnected) => return,
        }
        let m = match receive(socket, server, Duration::from_millis(100)) {
            Ok(Some(m)) => m,
            Ok(None) => continue,
            Err(e) => {
                log::warn!("NSM: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let sent = match m.addr.as_str() {
            "/nsm/client/save" => match session.save_now() {
                Ok(()) => {
                    log::info!("NSM: session saved");
                    send(socket, server, "/reply", vec![s(&m.addr), s("Saved.")])
                }
                Err(why) => {
                    log::error!("NSM: save failed: {why}");
                    send_error(socket, server, &m.addr, &why)
                }
            },
            "/nsm/client/open" => send_error(
                socket,
                server,
                &m.addr,
                "latentd cannot switch sessions while running (no :switch: capability); \
                 restart it",
            ),
            other => {
                log::debug!("NSM: ignored {other}");
                Ok(())
            }
        };
        if let Err(e) = sent {
            log::warn!("NSM: answering {}: {e}", m.addr);
        }
    }
}

fn s(v: &str) -> OscType {
    OscType::String(v.to_string())
}

fn text(m: &OscMessage, i: usize) -> Option<&str> {
    match m.args.get(i) {
        Some(OscType::String(v)) => Some(v),
        _ => None,
    }
}

fn send(socket: &UdpSocket, to: SocketAddr, addr: &str, args: Vec<OscType>) -> std::io::Result<()> {
    let packet = OscPacket::Message(OscMessage {
        addr: addr.to_string(),
        args,
    });
    let bytes = rosc::encoder::encode(&packet)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    socket.send_to(&bytes, to).map(drop)
}

fn send_error(
    socket: &UdpSocket,
    to: SocketAddr,
    path: &str,
    message: &str,
) -> std::io::Result<()> {
    send(
        socket,
        to,
        "/error",
        vec![s(path), OscType::Int(ERR_GENERAL), s(message)],
    )
}

/// The next message from `server` within `limit` (`None`: none came; datagrams from others
/// and undecodable ones are skipped; a bundle gives its first message).
fn receive(
    socket: &UdpSocket,
    server: SocketAddr,
    limit: Duration,
) -> std::io::Result<Option<OscMessage>> {
    socket.set_read_timeout(Some(limit.max(Duration::from_millis(1))))?;
    let mut buffer = [0u8; 65_536];
    let (n, from) = match socket.recv_from(&mut buffer) {
        Ok(got) => got,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    if from != server {
        log::debug!("NSM: ignored a datagram from {from}");
        return Ok(None);
    }
    Ok(match rosc::decoder::decode_udp(&buffer[..n]) {
        Ok((_, OscPacket::Message(m))) => Some(m),
        Ok((_, OscPacket::Bundle(b))) => b.content.into_iter().find_map(|p| match p {
            OscPacket::Message(m) => Some(m),
            OscPacket::Bundle(_) => None,
        }),
        Err(e) => {
            log::debug!("NSM: ignored an undecodable datagram: {e}");
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_udp_server() {
        assert_eq!(
            parse_url("osc.udp://127.0.0.1:4567/").unwrap(),
            "127.0.0.1:4567".parse().unwrap()
        );
        assert_eq!(parse_url("osc.udp://localhost:4567/").unwrap().port(), 4567);
        assert!(parse_url("osc.tcp://127.0.0.1:4567/").is_err());
        assert!(parse_url("osc.udp://127.0.0.1/").is_err());
    }
}
