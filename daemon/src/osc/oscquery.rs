//! OSCQuery over HTTP: a JSON description of the OSC address space, with each knob's current
//! value, for clients that discover controls (TouchOSC, Chataigne, Vezér, oscqueryhtml).
//!
//! - `GET /` (or `GET /knob`, `GET /knob/denoise`, ...): the node and everything under it:
//!   `FULL_PATH`, `TYPE`, `RANGE`, `DESCRIPTION`, `ACCESS`, `VALUE`, nested in `CONTENTS`.
//! - `GET /knob/denoise?VALUE`: one attribute, as `{"VALUE": [0.5]}`; 204 No Content when the
//!   node exists but has no such attribute (`/status?VALUE`: write-only), 400 for an attribute
//!   OSCQuery does not define.
//! - `GET /?HOST_INFO`: `NAME`, `OSC_PORT`, `OSC_TRANSPORT`, `EXTENSIONS`.
//! - 404 for an unknown path, 405 for methods other than GET and HEAD, 403 for peers outside
//!   the allowlist (the same rule as the OSC server; a reload swaps it,
//!   [`OscQueryServer::set_allowed_networks`]).
//!
//! The static part (types, ranges, docs) is generated once by the osc-schema OSCQuery
//! generator; each request clones it and fills `VALUE` from [`KnobValues`].
//!
//! Threading: one thread of ours answers every request in turn. `tiny_http` reads requests on
//! its own accept thread and connection pool; requests wait in its queue until ours is free.
//! Bounds: only the request line and headers are read (bodies are ignored), URLs over
//! [`MAX_URL_BYTES`] get 414, and answers are at most the size of the whole namespace. The
//! knob callback runs on our thread and must not block for long.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use latentd_osc_schema::Schema;
use latentd_osc_schema::generate::oscquery;
use serde_json::{Map, Value, json};
use tiny_http::{Header, Method, Request, Response, Server};

use super::{Allowlist, Cidr, SharedAllowlist};

/// Default OSCQuery HTTP port.
pub const DEFAULT_OSCQUERY_PORT: u16 = 7771;

/// Longest request URL served (path and query), in bytes.
pub const MAX_URL_BYTES: usize = 1024;

/// Attributes a node may be asked for with `?NAME`.
const ATTRIBUTES: &[&str] = &[
    "FULL_PATH",
    "CONTENTS",
    "TYPE",
    "RANGE",
    "DESCRIPTION",
    "ACCESS",
    "VALUE",
    "UNIT",
    "TAGS",
    "EXTENDED_TYPE",
    "CRITICAL",
    "CLIPMODE",
    "OVERLOADS",
];

/// Where the current knob values come from (the daemon's knob store).
pub trait KnobValues: Send + Sync + 'static {
    /// `(knob name, value)` for every knob; names the schema does not know are ignored, and
    /// a knob left out is served without `VALUE`.
    fn knob_values(&self) -> Vec<(String, f64)>;
}

impl<F> KnobValues for F
where
    F: Fn() -> Vec<(String, f64)> + Send + Sync + 'static,
{
    fn knob_values(&self) -> Vec<(String, f64)> {
        self()
    }
}

/// Which transport `HOST_INFO` names (the OSC server serves both on one port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OscTransport {
    /// `"UDP"`.
    Udp,
    /// `"TCP"`.
    Tcp,
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct OscQueryConfig {
    /// HTTP bind address (port 0 picks a free one).
    pub bind: SocketAddr,
    /// Client networks served when `bind` is wider than loopback.
    pub allow: Vec<Cidr>,
    /// `HOST_INFO.NAME`.
    pub name: String,
    /// `HOST_INFO.OSC_PORT`: the OSC server's port.
    pub osc_port: u16,
    /// `HOST_INFO.OSC_TRANSPORT`.
    pub osc_transport: OscTransport,
}

impl Default for OscQueryConfig {
    fn default() -> OscQueryConfig {
        OscQueryConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], DEFAULT_OSCQUERY_PORT)),
            allow: super::OscConfig::default().allow,
            name: "latentd".to_string(),
            osc_port: super::DEFAULT_PORT,
            osc_transport: OscTransport::Udp,
        }
    }
}

/// A running OSCQuery server; [`OscQueryServer::shutdown`] (or drop) stops it.
pub struct OscQueryServer {
    addr: SocketAddr,
    allow: SharedAllowlist,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl OscQueryServer {
    /// Bind `config.bind` and serve `schema` with values from `values`.
    pub fn start(
        config: OscQueryConfig,
        schema: Arc<Schema>,
        values: Arc<dyn KnobValues>,
    ) -> io::Result<OscQueryServer> {
        let listener = TcpListener::bind(config.bind)?;
        let addr = listener.local_addr()?;
        let server = Server::from_listener(listener, None).map_err(io::Error::other)?;
        let allow = SharedAllowlist::new(Allowlist::new(config.bind.ip(), config.allow.clone()));
        let namespace = Namespace {
            tree: oscquery(&schema, None),
            host_info: host_info(&config),
            schema,
            values,
            allow: allow.clone(),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("oscquery".into())
            .spawn(move || serve(&server, &namespace, &thread_stop))?;
        log::info!("OSCQuery listening on http://{addr}");
        Ok(OscQueryServer {
            addr,
            allow,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serve these client networks from the next request on (a config reload); a server
    /// bound to loopback stays open to everyone.
    pub fn set_allowed_networks(&self, networks: Vec<Cidr>) {
        self.allow.set_networks(networks);
    }

    /// Stop and join the server thread (within about 100 ms).
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for OscQueryServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn serve(server: &Server, namespace: &Namespace, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match server.recv_timeout(Duration::from_millis(100)) {
            Ok(Some(request)) => namespace.respond(request),
            Ok(None) => {}
            Err(e) => {
                log::warn!("OSCQuery server stopped accepting: {e}");
                return;
            }
        }
    }
}

fn host_info(config: &OscQueryConfig) -> Value {
    let transport = match config.osc_transport {
        OscTransport::Udp => "UDP",
        OscTransport::Tcp => "TCP",
    };
    json!({
        "NAME": config.name,
        "OSC_PORT": config.osc_port,
        "OSC_TRANSPORT": transport,
        "EXTENSIONS": {
            "ACCESS": true,
            "VALUE": true,
            "RANGE": true,
            "DESCRIPTION": true,
            "UNIT": true,
            "TAGS": false,
            "EXTENDED_TYPE": false,
            "CRITICAL": false,
            "CLIPMODE": false,
            "LISTEN": false,
            "PATH_CHANGED": false,
        },
    })
}

/// An answer before it becomes an HTTP response.
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    body: Option<Value>,
    reason: &'static str,
}

impl Answer {
    fn json(body: Value) -> Answer {
        Answer {
            status: 200,
            body: Some(body),
            reason: "",
        }
    }

    fn error(status: u16, reason: &'static str) -> Answer {
        Answer {
            status,
            body: None,
            reason,
        }
    }
}

struct Namespace {
    /// The generated description with default values.
    tree: Value,
    host_info: Value,
    schema: Arc<Schema>,
    values: Arc<dyn KnobValues>,
    allow: SharedAllowlist,
}

impl Namespace {
    fn respond(&self, request: Request) {
        let allowed = request
            .remote_addr()
            .is_some_and(|peer| self.allow.allows(peer.ip()));
        let answer = if !allowed {
            Answer::error(403, "peer outside the allowlist\n")
        } else {
            match request.method() {
                Method::Get | Method::Head => self.answer(request.url()),
                _ => Answer::error(405, "only GET and HEAD are served\n"),
            }
        };
        // tiny_http leaves the body out for HEAD itself.
        let result = match answer.body {
            Some(body) => {
                let text = serde_json::to_string(&body).expect("JSON values serialize");
                let content_type =
                    Header::from_bytes("Content-Type", "application/json").expect("valid header");
                request.respond(
                    Response::from_string(text)
                        .with_status_code(answer.status)
                        .with_header(content_type),
                )
            }
            None => {
                let mut response =
                    Response::from_string(answer.reason).with_status_code(answer.status);
                if answer.status == 405 {
                    response.add_header(Header::from_bytes("Allow", "GET, HEAD").expect("valid"));
                }
                request.respond(response)
            }
        };
        if let Err(e) = result {
            log::debug!("OSCQuery reply failed: {e}");
        }
    }

    /// Answer `GET url`.
    fn answer(&self, url: &str) -> Answer {
        if url.len() > MAX_URL_BYTES {
            return Answer::error(414, "URL too long\n");
        }
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        if query == "HOST_INFO" {
            return Answer::json(self.host_info.clone());
        }
        let Some(node) = find(&self.tree, path) else {
            return Answer::error(404, "no such OSC address\n");
        };
        let mut node = node.clone();
        self.fill_values(&mut node);
        if query.is_empty() {
            return Answer::json(node);
        }
        if !ATTRIBUTES.contains(&query) {
            return Answer::error(400, "unknown OSCQuery attribute\n");
        }
        match node.get(query) {
            Some(value) => {
                let mut one = Map::new();
                one.insert(query.to_string(), value.clone());
                Answer::json(Value::Object(one))
            }
            None => Answer::error(204, ""),
        }
    }

    /// Set `VALUE` of every knob leaf under `node` from the current values.
    fn fill_values(&self, node: &mut Value) {
        let knobs = self.schema.knobs();
        let mut current: Vec<Option<f64>> = vec![None; knobs.len()];
        for (name, value) in self.values.knob_values() {
            if let Some(index) = self.schema.knob_index(&name) {
                current[index] = Some(value);
            }
        }
        visit_leaves(node, &mut |leaf| {
            let Some(path) = leaf.get("FULL_PATH").and_then(Value::as_str) else {
                return;
            };
            let Some(name) = path.strip_prefix("/knob/") else {
                return;
            };
            let Some(index) = self.schema.knob_index(name) else {
                return;
            };
            match current[index] {
                Some(v) if knobs[index].integer && v.fract() == 0.0 => {
                    leaf.insert("VALUE".into(), json!([v as i64]));
                }
                Some(v) => {
                    leaf.insert("VALUE".into(), json!([v]));
                }
                None => {
                    leaf.remove("VALUE");
                }
            }
        });
    }
}

/// The node at `path` (`/`, `/knob`, `/knob/denoise`; a trailing `/` is ignored).
fn find<'a>(tree: &'a Value, path: &str) -> Option<&'a Value> {
    let mut node = tree;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        node = node.get("CONTENTS")?.get(part)?;
    }
    Some(node)
}

fn visit_leaves(node: &mut Value, f: &mut dyn FnMut(&mut Map<String, Value>)) {
    let Some(object) = node.as_object_mut() else {
        return;
    };
    if let Some(children) = object.get_mut("CONTENTS").and_then(Value::as_object_mut) {
        for child in children.values_mut() {
            visit_leaves(child, f);
        }
    }
    f(object);
}
