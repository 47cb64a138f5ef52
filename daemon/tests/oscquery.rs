//! The OSCQuery HTTP server over real loopback TCP, with a plain `std::net::TcpStream` client:
//! the full namespace against the schema, live knob values, single paths and attributes,
//! HOST_INFO, the error statuses, the allowlist and shutdown.

mod common;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use latentd::osc::oscquery::{KnobValues, OscQueryConfig, OscQueryServer, OscTransport};
use latentd_osc_schema::generate::oscquery;
use latentd_osc_schema::{Schema, reference_knobs};
use serde_json::{Value, json};

/// A knob store the test changes between requests.
#[derive(Default)]
struct Store(Mutex<HashMap<String, f64>>);

impl KnobValues for Store {
    fn knob_values(&self) -> Vec<(String, f64)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

impl Store {
    fn set(&self, name: &str, value: f64) {
        self.0.lock().unwrap().insert(name.to_string(), value);
    }
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(reference_knobs()).unwrap())
}

/// A store holding every knob at its default.
fn defaults() -> Arc<Store> {
    let store = Arc::new(Store::default());
    for k in reference_knobs() {
        store.set(k.name, k.default);
    }
    store
}

fn local(osc_port: u16) -> OscQueryConfig {
    OscQueryConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        osc_port,
        ..OscQueryConfig::default()
    }
}

struct HttpReply {
    status: u16,
    headers: String,
    body: String,
}

impl HttpReply {
    fn json(&self) -> Value {
        assert_eq!(self.status, 200, "body: {}", self.body);
        assert!(
            self.headers
                .to_ascii_lowercase()
                .contains("content-type: application/json"),
            "headers: {}",
            self.headers
        );
        serde_json::from_str(&self.body).expect("the body is JSON")
    }
}

/// One HTTP/1.0 request, its status line parsed.
fn request(addr: SocketAddr, method: &str, target: &str) -> HttpReply {
    let (head, body) = common::http::exchange(addr, method, target);
    let (status_line, headers) = head.split_once("\r\n").unwrap_or((&head, ""));
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    HttpReply {
        status,
        headers: headers.to_string(),
        body,
    }
}

fn get(addr: SocketAddr, target: &str) -> HttpReply {
    request(addr, "GET", target)
}

fn node<'a>(tree: &'a Value, path: &str) -> &'a Value {
    path.split('/')
        .filter(|p| !p.is_empty())
        .fold(tree, |n, part| &n["CONTENTS"][part])
}

#[test]
fn full_namespace_matches_the_schema_with_live_values() {
    let store = defaults();
    store.set("denoise", 0.25);
    store.set("seed", 4_000_000_000.0);
    store.set("steps", 12.0);
    let server = OscQueryServer::start(local(7770), schema(), store.clone()).unwrap();
    let tree = get(server.addr(), "/").json();

    // Every address is there, with the generator's static description.
    let reference = oscquery(&schema(), None);
    for endpoint in schema().endpoints() {
        let served = node(&tree, &endpoint.address);
        assert_eq!(served["FULL_PATH"], json!(endpoint.address));
        let expected = node(&reference, &endpoint.address);
        for attribute in ["TYPE", "RANGE", "DESCRIPTION", "ACCESS"] {
            assert_eq!(
                served[attribute], expected[attribute],
                "{} {attribute}",
                endpoint.address
            );
        }
    }
    let denoise = node(&tree, "/knob/denoise");
    assert_eq!(denoise["TYPE"], json!("f"));
    assert_eq!(denoise["RANGE"], json!([{ "MIN": 0.0, "MAX": 1.0 }]));
    assert_eq!(denoise["ACCESS"], json!(3));
    assert!(
        denoise["DESCRIPTION"]
            .as_str()
            .unwrap()
            .contains("how far from its base")
    );
    assert_eq!(denoise["VALUE"], json!([0.25]));
    // Integer knobs report integers; the u32 seed is beyond int32 (type `d`).
    assert_eq!(
        node(&tree, "/knob/seed")["VALUE"],
        json!([4_000_000_000_i64])
    );
    assert_eq!(node(&tree, "/knob/seed")["TYPE"], json!("d"));
    assert_eq!(node(&tree, "/knob/steps")["VALUE"], json!([12]));
    assert_eq!(node(&tree, "/status")["ACCESS"], json!(2));
    assert!(node(&tree, "/status").get("VALUE").is_none());

    // Values are read per request.
    store.set("denoise", 0.75);
    let tree = get(server.addr(), "/").json();
    assert_eq!(node(&tree, "/knob/denoise")["VALUE"], json!([0.75]));
}

#[test]
fn single_paths_and_attributes() {
    let store = defaults();
    store.set("guidance", 7.5);
    let server = OscQueryServer::start(local(7770), schema(), store.clone()).unwrap();
    let addr = server.addr();

    let guidance = get(addr, "/knob/guidance").json();
    assert_eq!(guidance["FULL_PATH"], json!("/knob/guidance"));
    assert_eq!(guidance["VALUE"], json!([7.5]));
    assert_eq!(guidance["RANGE"], json!([{ "MIN": 1.0, "MAX": 15.0 }]));
    assert!(guidance.get("CONTENTS").is_none());

    assert_eq!(
        get(addr, "/knob/guidance?VALUE").json(),
        json!({ "VALUE": [7.5] })
    );
    store.set("guidance", 2.0);
    assert_eq!(
        get(addr, "/knob/guidance?VALUE").json(),
        json!({ "VALUE": [2.0] })
    );
    assert_eq!(
        get(addr, "/knob/guidance?TYPE").json(),
        json!({ "TYPE": "f" })
    );
    assert_eq!(
        get(addr, "/knob/steps?ACCESS").json(),
        json!({ "ACCESS": 3 })
    );

    // A container lists its children, each with its value; a trailing slash is the same node.
    let knob = get(addr, "/knob/").json();
    let children = knob["CONTENTS"].as_object().unwrap();
    assert_eq!(children.len(), reference_knobs().len());
    assert_eq!(children["guidance"]["VALUE"], json!([2.0]));
    // `/timbre` is a method and the parent of `/timbre/clear`.
    let timbre = get(addr, "/timbre").json();
    assert_eq!(timbre["TYPE"], json!("s"));
    assert_eq!(
        timbre["CONTENTS"]["clear"]["FULL_PATH"],
        json!("/timbre/clear")
    );
    assert_eq!(get(addr, "/loop?TYPE").json(), json!({ "TYPE": "ff" }));
}

#[test]
fn host_info_names_the_osc_server() {
    let config = OscQueryConfig {
        name: "latentd-test".into(),
        osc_transport: OscTransport::Tcp,
        ..local(9123)
    };
    let server = OscQueryServer::start(config, schema(), defaults()).unwrap();
    let info = get(server.addr(), "/?HOST_INFO").json();
    assert_eq!(info["NAME"], json!("latentd-test"));
    assert_eq!(info["OSC_PORT"], json!(9123));
    assert_eq!(info["OSC_TRANSPORT"], json!("TCP"));
    let extensions = info["EXTENSIONS"].as_object().unwrap();
    for supported in ["ACCESS", "VALUE", "RANGE", "DESCRIPTION"] {
        assert_eq!(extensions[supported], json!(true), "{supported}");
    }
    assert_eq!(extensions["LISTEN"], json!(false));
    assert_eq!(OscQueryConfig::default().osc_transport, OscTransport::Udp);
    assert_eq!(OscQueryConfig::default().bind.port(), 7771);
}

#[test]
fn errors_have_precise_statuses() {
    let store = Arc::new(Store::default());
    // Only one knob reported, plus a name the schema does not know.
    store.set("denoise", 0.5);
    store.set("no_such_knob", 1.0);
    let server = OscQueryServer::start(local(7770), schema(), store).unwrap();
    let addr = server.addr();

    for missing in [
        "/nope",
        "/knob/nope",
        "/knob/denoise/extra",
        "/KNOB/denoise",
    ] {
        let reply = get(addr, missing);
        assert_eq!(reply.status, 404, "{missing}: {}", reply.body);
    }
    // The attribute exists in OSCQuery but not on this node: 204.
    assert_eq!(get(addr, "/status?VALUE").status, 204);
    assert_eq!(
        get(addr, "/knob/steps?VALUE").status,
        204,
        "knob not reported"
    );
    assert_eq!(
        get(addr, "/knob/denoise?VALUE").json(),
        json!({ "VALUE": [0.5] })
    );
    // Not an OSCQuery attribute: 400.
    let bad = get(addr, "/knob/denoise?COLOUR");
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("unknown OSCQuery attribute"));
    // Methods.
    let post = request(addr, "POST", "/knob/denoise");
    assert_eq!(post.status, 405);
    assert!(
        post.headers.contains("Allow: GET, HEAD"),
        "{}",
        post.headers
    );
    let head = request(addr, "HEAD", "/knob/denoise");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    // Bounded URL.
    let long = format!("/knob/{}", "a".repeat(2000));
    assert_eq!(get(addr, &long).status, 414);
    // The server still answers after all of that.
    assert_eq!(
        get(addr, "/knob/denoise?TYPE").json(),
        json!({ "TYPE": "f" })
    );
}

#[test]
fn allowlist_refuses_peers_outside_it() {
    let closed = OscQueryConfig {
        bind: "0.0.0.0:0".parse().unwrap(),
        allow: vec!["10.0.0.0/8".parse().unwrap()],
        ..OscQueryConfig::default()
    };
    let server = OscQueryServer::start(closed, schema(), defaults()).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], server.addr().port()));
    assert_eq!(get(addr, "/").status, 403);

    let open = OscQueryConfig {
        bind: "0.0.0.0:0".parse().unwrap(),
        allow: vec!["127.0.0.0/8".parse().unwrap()],
        ..OscQueryConfig::default()
    };
    let server = OscQueryServer::start(open, schema(), defaults()).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], server.addr().port()));
    assert_eq!(get(addr, "/?HOST_INFO").json()["NAME"], json!("latentd"));
}

#[test]
fn closures_serve_values_and_shutdown_frees_the_port() {
    let values = || vec![("depth".to_string(), 6.0)];
    let server = OscQueryServer::start(local(7770), schema(), Arc::new(values)).unwrap();
    let addr = server.addr();
    assert_eq!(
        get(addr, "/knob/depth?VALUE").json(),
        json!({ "VALUE": [6] })
    );
    server.shutdown();
    // The listener is closed once the accept thread has seen the stop.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while TcpStream::connect(addr).is_ok() {
        assert!(std::time::Instant::now() < deadline, "port still open");
        std::thread::sleep(Duration::from_millis(20));
    }
}
