//! latentd under a session manager: the real binary started with `NSM_URL` pointing at a
//! test NSM server (a real UDP socket on loopback speaking the protocol, API 1.2), playing
//! into a private `jackd -d dummy`:
//!
//! - it announces itself (`/nsm/server/announce` with its name, capabilities, executable,
//!   API 1.2 and pid) before it opens anything, and waits for `/nsm/client/open`;
//! - after the open its JACK client is named by the client id (not the configured name),
//!   its ports are not autoconnected (though the config asks for it), and the open is
//!   answered `/reply /nsm/client/open` once it plays;
//! - `/nsm/client/save` writes the session to `<path>/state.json` at once and replies; a
//!   second open (no `:switch:`) is an `/error`;
//! - a SIGHUP reload keeps the session's overrides;
//! - started again into the same session, it loads that state.
//!
//! Threading: libjack finds the private server through the process-wide
//! `JACK_DEFAULT_SERVER`, so the test holds a [`JackSession`] while its server runs.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use common::jack_tone::{PERIOD, RATE, START, TONE};
use common::service_fixture::{Daemon, Launch, NotifySocket, Osc};
use latentd_tests::JackSession;
use rosc::{OscMessage, OscPacket, OscType};
use tempfile::TempDir;

const REPLY: Duration = Duration::from_secs(5);

/// The test's session manager: one UDP socket, as nsmd has.
struct NsmServer {
    socket: UdpSocket,
}

impl NsmServer {
    fn bind() -> NsmServer {
        NsmServer {
            socket: UdpSocket::bind("127.0.0.1:0").unwrap(),
        }
    }

    fn url(&self) -> String {
        format!("osc.udp://{}/", self.socket.local_addr().unwrap())
    }

    /// The next message within `limit`, with its sender.
    fn receive(&self, limit: Duration) -> Option<(OscMessage, SocketAddr)> {
        let end = Instant::now() + limit;
        let mut buffer = [0u8; 65_536];
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            self.socket
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let Ok((n, from)) = self.socket.recv_from(&mut buffer) else {
                continue;
            };
            match rosc::decoder::decode_udp(&buffer[..n]).unwrap().1 {
                OscPacket::Message(m) => return Some((m, from)),
                other => panic!("a bundle from the client: {other:?}"),
            }
        }
        None
    }

    fn send(&self, to: SocketAddr, addr: &str, args: Vec<OscType>) {
        let packet = OscPacket::Message(OscMessage {
            addr: addr.into(),
            args,
        });
        self.socket
            .send_to(&rosc::encoder::encode(&packet).unwrap(), to)
            .unwrap();
    }

    /// Waits for `/reply <path> ...` or `/error <path> ...`; returns it.
    fn answer_to(&self, path: &str) -> OscMessage {
        let end = Instant::now() + REPLY;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            if let Some((m, _)) = self.receive(left)
                && (m.addr == "/reply" || m.addr == "/error")
                && m.args.first() == Some(&s(path))
            {
                return m;
            }
        }
        panic!("no /reply or /error for {path} within {REPLY:?}");
    }
}

fn s(v: &str) -> OscType {
    OscType::String(v.into())
}

/// A daemon playing the tone into `session`'s server under the NSM server `nsm`, with a
/// config that names another client and asks for autoconnect.
fn start_under_nsm(
    session: &JackSession,
    dir: &TempDir,
    notify: &NotifySocket,
    nsm: &NsmServer,
) -> Daemon {
    let source = dir.path().join("quadrature.wav");
    TONE.write_loop(&source);
    let config = dir.path().join("latentd.toml");
    std::fs::write(
        &config,
        "[audio]\nclient_name = \"configured\"\nautoconnect = true\n",
    )
    .unwrap();
    Daemon::start(
        dir,
        Launch {
            audio: "jack",
            notify: Some(notify),
            env: vec![
                ("JACK_DEFAULT_SERVER", session.server.name().to_owned()),
                ("NSM_URL", nsm.url()),
            ],
            args: ["--engine", "off", "--source"]
                .iter()
                .map(|a| a.to_string())
                .chain([
                    source.display().to_string(),
                    "--config".into(),
                    config.display().to_string(),
                ])
                .collect(),
            ..Launch::default()
        },
    )
}

/// The announce handshake and the open of `path` as client `id`; returns the client's
/// address once the daemon is ready and has answered the open.
fn announce_and_open(
    daemon: &Daemon,
    nsm: &NsmServer,
    notify: &NotifySocket,
    path: &Path,
    id: &str,
) -> SocketAddr {
    let (announce, client) = nsm
        .receive(START)
        .unwrap_or_else(|| panic!("no announce: {:?}", daemon.lines()));
    assert_eq!(announce.addr, "/nsm/server/announce", "{announce:?}");
    assert_eq!(
        announce.args,
        [
            s("latentd"),
            s(":"),
            s("latentd"),
            OscType::Int(1),
            OscType::Int(2),
            OscType::Int(daemon.pid() as i32),
        ]
    );
    // Nothing is open before the session's open: no JACK client yet.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !daemon.has_line("audio: jack output"),
        "the output opened before the session's open: {:?}",
        daemon.lines()
    );
    nsm.send(
        client,
        "/reply",
        vec![
            s("/nsm/server/announce"),
            s("Howdy, what took you so long?"),
            s("test-nsm"),
            s(":server-control:"),
        ],
    );
    nsm.send(
        client,
        "/nsm/client/open",
        vec![s(&path.display().to_string()), s("My Song"), s(id)],
    );
    notify.until("READY=1", START);
    let m = nsm.answer_to("/nsm/client/open");
    assert_eq!(m.addr, "/reply", "{m:?}");
    client
}

#[test]
fn under_nsm_it_announces_opens_as_the_client_id_and_saves_into_the_session() {
    let session = JackSession::start(RATE, PERIOD);
    let dir = TempDir::new().unwrap();
    let notify = NotifySocket::bind(dir.path());
    let nsm = NsmServer::bind();
    let path = dir.path().join("sessions/My Song/latentd.nQXYZ");
    let mut daemon = start_under_nsm(&session, &dir, &notify, &nsm);
    let client = announce_and_open(&daemon, &nsm, &notify, &path, "nQXYZ");
    assert!(path.is_dir(), "the session's folder");

    // The JACK client is the client id; the configured name is unused.
    let ports = session.server.list_ports();
    for port in ["nQXYZ:out_1", "nQXYZ:out_2"] {
        assert!(ports.iter().any(|p| p == port), "{port} not in {ports:?}");
    }
    assert!(
        !ports.iter().any(|p| p.starts_with("configured:")),
        "{ports:?}"
    );
    // No autoconnect under NSM, though the config asks for it.
    std::thread::sleep(Duration::from_millis(300));
    let links = session.server.connections();
    for port in ["nQXYZ:out_1", "nQXYZ:out_2"] {
        assert_eq!(links.get(port), Some(&Vec::new()), "{port}: {links:?}");
    }

    // A change, then a save: written at once (the debounced save would take 500 ms).
    let osc = Osc::new(daemon.osc_addr(REPLY));
    osc.send("/knob/denoise", vec![OscType::Float(0.8)]);
    assert!((osc.knob("denoise") - 0.8).abs() < 1e-6);
    let asked = Instant::now();
    nsm.send(client, "/nsm/client/save", vec![]);
    let m = nsm.answer_to("/nsm/client/save");
    assert_eq!(m.addr, "/reply", "{m:?}");
    assert!(
        asked.elapsed() < Duration::from_millis(400),
        "{:?}",
        asked.elapsed()
    );
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path.join("state.json")).unwrap()).unwrap();
    assert!(
        (state["knobs"]["denoise"].as_f64().unwrap() - 0.8).abs() < 1e-6,
        "{state}"
    );
    assert!(
        !dir.path().join("state.json").exists(),
        "the state went to the --state path, not the session"
    );

    // A reload keeps the session's name, folder and links: none of them counts as changed.
    daemon.signal(libc::SIGHUP);
    let line = daemon.wait_line("config reloaded", REPLY);
    for key in ["audio.client_name", "audio.autoconnect", "state.path"] {
        assert!(!line.contains(key), "{line}");
    }

    // No :switch:, so a second open is an error and changes nothing.
    nsm.send(
        client,
        "/nsm/client/open",
        vec![s("/elsewhere"), s("Other"), s("nOTHER")],
    );
    let m = nsm.answer_to("/nsm/client/open");
    assert_eq!(m.addr, "/error", "{m:?}");
    assert_eq!(m.args[1], OscType::Int(-1), "{m:?}");
    daemon.stop_cleanly();

    // Into the same session again: its state is loaded.
    let nsm = NsmServer::bind();
    std::fs::create_dir_all(dir.path().join("again")).unwrap();
    let notify = NotifySocket::bind(&dir.path().join("again"));
    let mut daemon = start_under_nsm(&session, &dir, &notify, &nsm);
    announce_and_open(&daemon, &nsm, &notify, &path, "nQXYZ");
    let osc = Osc::new(daemon.osc_addr(REPLY));
    assert!((osc.knob("denoise") - 0.8).abs() < 1e-6);
    daemon.stop_cleanly();
}

#[test]
fn an_announce_the_server_refuses_is_a_start_failure() {
    let dir = TempDir::new().unwrap();
    let nsm = NsmServer::bind();
    let mut daemon = Daemon::start(
        &dir,
        Launch {
            env: vec![("NSM_URL", nsm.url())],
            args: vec!["--engine".into(), "off".into()],
            ..Launch::default()
        },
    );
    let (announce, client) = nsm.receive(START).expect("no announce");
    assert_eq!(announce.addr, "/nsm/server/announce");
    nsm.send(
        client,
        "/error",
        vec![
            s("/nsm/server/announce"),
            OscType::Int(-2),
            s("incompatible API version"),
        ],
    );
    let status = daemon
        .wait(REPLY)
        .expect("still running after a refused announce");
    assert_eq!(status.code(), Some(2));
    daemon.wait_line(
        "the server refused the announce: incompatible API version",
        REPLY,
    );
}
