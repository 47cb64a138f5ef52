//! OSCQuery over HTTP: a JSON description of the OSC address space, with each knob's current
//! value, for clients that discover controls (TouchOSC, Chataigne, Vezér, oscqueryhtml).
//!
//! - `GET /` (or `GET /knob`, `GET /knob/denoise`, ...): the node and everything under it:
//!   `FULL_PATH`, `TYPE`, `RANGE`, `DESCRIPTION`, `ACCESS`, `VALUE`, nested in `CONTENTS`.
//! - `GET /knob/denoise?VALUE`: one attribute, as `{"VALUE": [0.5]}`; 204 No Content when the
//!   node exists but has no such attribute (`/status?VALUE`: write-only), 400 for an attribute
//!   OSCQuery does not define.
//! - `GET /?HOST_INFO`: `NAME`, `OSC_PORT`, `OSC_TRANSPORT`, `EXTENSIONS`.
//! - `GET /metrics`: the daemon's Prometheus metrics ([`KnobValues::metrics`]), same allowlist.
//! - 404 for an unknown path, 405 for methods other than GET and HEAD, 403 for peers outside
//!   the allowlist (the same rule as the OSC server; a reload swaps it,
//!   [`OscQueryServer::set_allowed_networks`]).
//!
//! The static part (types, ranges, docs) is generated once by the osc-schema OSCQuery
//! generator; each request clones it and fills `VALUE` from [`KnobValues`]: each knob's
//! value, and the output's levels at `/meter` (read-only, `ACCESS` 1).
//!
//! HTTP is served by `oscquery::http`, a small server of our own on a std `TcpListener` (requests
//! parsed by `httparse`), under the limits of [`latentd_osc_schema::oscquery_http`]: request
//! heads and bodies bounded before anything is allocated from them, a cap on connections,
//! idle, request and response deadlines, an accept loop that survives running out of file
//! descriptors, and a rate-limited refusal log. Answers are at most the size of the whole
//! namespace.
//!
//! Threading: an accept thread and up to `MAX_CONNECTIONS` connection workers, each
//! answering its own connection; the [`KnobValues`] callback runs on the workers, several at
//! once, and must not block for long.

mod http;
mod refusals;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use latentd_osc_schema::Schema;
use latentd_osc_schema::generate::{METER_PATH, oscquery};
pub use latentd_osc_schema::oscquery_http::MAX_URL_BYTES;

/// The `Content-Type` of the answer to `GET /metrics` (OpenMetrics text).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
use serde_json::{Map, Value, json};

use self::http::{Handler, HttpServer, Request, Response};
use super::{Allowlist, Cidr, SharedAllowlist};

/// Where the daemon's Prometheus metrics are served ([`KnobValues::metrics`]), beside the
/// namespace (no OSC address is named so).
pub const METRICS_PATH: &str = "/metrics";

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

/// Where the current values come from (the daemon's knob store and meters).
pub trait KnobValues: Send + Sync + 'static {
    /// `(knob name, value)` for every knob; names the schema does not know are ignored, and
    /// a knob left out is served without `VALUE`.
    fn knob_values(&self) -> Vec<(String, f64)>;

    /// The output's levels in `/meter`'s argument order (dBFS); `None` (the default)
    /// serves `/meter` without `VALUE`.
    fn levels(&self) -> Option<Vec<f64>> {
        None
    }
    /// The `GET /metrics` answer (OpenMetrics text, made by the daemon's metrics module); `None` (the
    /// default) answers 404.
    fn metrics(&self) -> Option<String> {
        None
    }
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
    /// Knobs the playing model cannot honour: their nodes carry `TAGS: ["inert"]` and say so
    /// in `DESCRIPTION`.
    pub inert_knobs: Vec<String>,
}

impl Default for OscQueryConfig {
    fn default() -> OscQueryConfig {
        OscQueryConfig {
            bind: SocketAddr::new(super::DEFAULT_BIND.ip(), super::DEFAULT_OSCQUERY_PORT),
            allow: super::OscConfig::default().allow,
            name: "latentd".to_string(),
            osc_port: super::DEFAULT_PORT,
            osc_transport: OscTransport::Udp,
            inert_knobs: Vec::new(),
        }
    }
}

/// A running OSCQuery server; [`OscQueryServer::shutdown`] (or drop) stops it.
pub struct OscQueryServer {
    addr: SocketAddr,
    allow: SharedAllowlist,
    http: HttpServer,
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
        let allow = SharedAllowlist::new(Allowlist::new(config.bind.ip(), config.allow.clone()));
        let mut tree = oscquery(&schema, None);
        mark_inert(&mut tree, &config.inert_knobs);
        let namespace = Namespace {
            tree,
            host_info: host_info(&config),
            schema,
            values,
        };
        let http = HttpServer::start(listener, allow.clone(), Arc::new(namespace))?;
        log::info!("OSCQuery listening on http://{addr}");
        Ok(OscQueryServer { addr, allow, http })
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

    /// Stop, close the listener and every connection, and join the server's threads
    /// (within about 100 ms).
    pub fn shutdown(mut self) {
        self.http.shutdown();
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
}

impl Handler for Namespace {
    fn respond(&self, request: &Request<'_>) -> Response {
        if request.target.split('?').next() == Some(METRICS_PATH) {
            return self.metrics(request.method);
        }
        let answer = match request.method {
            "GET" | "HEAD" => self.answer(request.target),
            _ => Answer::error(405, "only GET and HEAD are served\n"),
        };
        match answer.body {
            Some(body) => Response {
                status: answer.status,
                headers: vec![("Content-Type", "application/json")],
                body: serde_json::to_vec(&body).expect("JSON values serialize"),
            },
            None => {
                let mut response = Response::text(answer.status, answer.reason);
                if answer.status == 405 {
                    response.headers.push(("Allow", "GET, HEAD"));
                }
                response
            }
        }
    }
}

impl Namespace {
    /// Answer a request for [`METRICS_PATH`].
    fn metrics(&self, method: &str) -> Response {
        if !matches!(method, "GET" | "HEAD") {
            let mut response = Response::text(405, "only GET and HEAD are served\n");
            response.headers.push(("Allow", "GET, HEAD"));
            return response;
        }
        match self.values.metrics() {
            Some(text) => Response {
                status: 200,
                headers: vec![("Content-Type", METRICS_CONTENT_TYPE)],
                body: text.into_bytes(),
            },
            None => Response::text(404, "no metrics here\n"),
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
        let mut levels = None;
        visit_leaves(node, &mut |leaf| {
            let Some(path) = leaf.get("FULL_PATH").and_then(Value::as_str) else {
                return;
            };
            if path == METER_PATH {
                match levels.get_or_insert_with(|| self.values.levels()) {
                    Some(values) => leaf.insert("VALUE".into(), json!(values)),
                    None => leaf.remove("VALUE"),
                };
                return;
            }
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

/// Tag each of `knobs` (names under `/knob`) `inert` and say why in its `DESCRIPTION`.
fn mark_inert(tree: &mut Value, knobs: &[String]) {
    for name in knobs {
        let node = tree
            .get_mut("CONTENTS")
            .and_then(|c| c.get_mut("knob"))
            .and_then(|k| k.get_mut("CONTENTS"))
            .and_then(|c| c.get_mut(name.as_str()))
            .and_then(Value::as_object_mut);
        let Some(node) = node else {
            continue;
        };
        node.insert("TAGS".into(), json!(["inert"]));
        let description = node
            .get("DESCRIPTION")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let description = format!(
            "{description} Inert here: the playing model cannot honour it (setting it is \
             accepted and changes nothing)."
        );
        node.insert("DESCRIPTION".into(), Value::String(description));
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
