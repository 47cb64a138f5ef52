//! `GET /metrics` on the real binary playing into a private `jackd -d dummy`, parsed by an
//! independent parser (the Python `prometheus_client` OpenMetrics parser, installed by
//! scripts/setup.sh): every metric is there with a sane value, the engine's tick histogram
//! grows, knob changes sent over OSC are counted in the knob-to-ear histogram with plausible
//! latencies, a frozen server's xruns and a killed-and-restarted server's reconnect move
//! their counters and `latentd_output_up`.
//!
//! Threading: libjack reads `JACK_DEFAULT_SERVER` process-wide; the test holds a
//! [`JackSession`] while its server runs.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::jack_tone::{PERIOD, RATE, TONE};
use common::service_fixture::{Daemon, Launch, NotifySocket, Osc};
use latentd_tests::JackSession;
use tempfile::TempDir;

const START: Duration = Duration::from_secs(30);

/// Parses OpenMetrics text with `prometheus_client`'s parser; prints one JSON object of
/// `name{label="value",...}` to value (labels sorted), failing on anything it rejects.
const PARSER: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
types = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    types[family.name] = family.type
    for s in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        out[s.name + ("{" + labels + "}" if labels else "")] = s.value
print(json.dumps({"samples": out, "types": types}))
"#;

/// One scrape, parsed: samples and metric family types.
struct Scrape {
    samples: BTreeMap<String, f64>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    fn get(&self, key: &str) -> f64 {
        *self
            .samples
            .get(key)
            .unwrap_or_else(|| panic!("no {key} in {:?}", self.samples.keys()))
    }
}

fn http(addr: SocketAddr, target: &str) -> (String, String) {
    common::http::exchange(addr, "GET", target)
}

fn scrape(addr: SocketAddr) -> Scrape {
    let (head, body) = http(addr, "/metrics");
    assert!(head.contains(" 200 "), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    let mut python = Command::new("python3")
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    python
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = python.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the parser refused the scrape ({}; run scripts/setup.sh):\n{body}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let map = |key: &str| -> BTreeMap<String, serde_json::Value> {
        parsed[key]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    Scrape {
        samples: map("samples")
            .into_iter()
            .map(|(k, v)| (k, v.as_f64().unwrap()))
            .collect(),
        types: map("types")
            .into_iter()
            .map(|(k, v)| (k, v.as_str().unwrap().to_string()))
            .collect(),
    }
}

/// Scrapes until `ok` holds (panics with the last one after `limit`).
fn scrape_until(addr: SocketAddr, limit: Duration, ok: impl Fn(&Scrape) -> bool) -> Scrape {
    let end = Instant::now() + limit;
    loop {
        let s = scrape(addr);
        if ok(&s) {
            return s;
        }
        assert!(Instant::now() < end, "never got there: {:?}", s.samples);
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn metrics_parse_and_their_counters_move_with_xruns_and_reconnects() {
    let mut session = JackSession::start(RATE, PERIOD);
    let dir = TempDir::new().unwrap();
    let notify = NotifySocket::bind(dir.path());
    let source = dir.path().join("tone.wav");
    TONE.write_loop(&source);
    let oscquery_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The built-in engine runs, so ticks are counted.
    let mut daemon = Daemon::start(
        &dir,
        Launch {
            audio: "jack",
            notify: Some(&notify),
            env: vec![("JACK_DEFAULT_SERVER", session.server.name().to_owned())],
            args: ["--source", &source.display().to_string()]
                .iter()
                .map(|a| a.to_string())
                .collect(),
            oscquery_port,
            ..Launch::default()
        },
    );
    notify.until("READY=1", START);
    let addr = SocketAddr::from(([127, 0, 0, 1], oscquery_port));

    // The callback's scheduling is checked on the supervisor's first ticks after the start.
    let first = scrape_until(addr, Duration::from_secs(10), |s| {
        s.get("latentd_tick_seconds_count") > 0.0
            && s.samples.contains_key("latentd_callback_realtime")
    });
    for (family, kind) in [
        ("latentd_xruns", "counter"),
        ("latentd_late_landings", "counter"),
        ("latentd_engine_restarts", "counter"),
        ("latentd_output_reconnects", "counter"),
        ("latentd_output_up", "gauge"),
        ("latentd_callback_realtime", "gauge"),
        ("latentd_lead_seconds", "gauge"),
        ("latentd_level_peak_dbfs", "gauge"),
        ("latentd_level_rms_dbfs", "gauge"),
        ("latentd_silence_seconds", "gauge"),
        ("latentd_tick_seconds", "histogram"),
        ("latentd_knob_to_ear_seconds", "histogram"),
    ] {
        assert_eq!(
            first.types.get(family).map(String::as_str),
            Some(kind),
            "{family}: {:?}",
            first.types
        );
    }
    assert_eq!(first.get("latentd_output_up"), 1.0);
    // The test's jackd runs --no-realtime: its clients' threads are SCHED_OTHER.
    assert_eq!(first.get("latentd_callback_realtime"), 0.0);
    assert_eq!(first.get("latentd_output_reconnects_total"), 0.0);
    assert_eq!(first.get("latentd_engine_restarts_total"), 0.0);
    assert_eq!(first.get("latentd_silence_seconds"), 0.0);
    let lead = first.get("latentd_lead_seconds");
    assert!((0.0..=2.0).contains(&lead), "lead {lead}");
    // The levels are the last period's (5 ms): a period may fall between two notes of the
    // engine's loop, so they are read until one carries sound on both channels.
    let level = |s: &Scrape, what: &str, channel: &str| {
        s.get(&format!(
            "latentd_level_{what}_dbfs{{channel=\"{channel}\"}}"
        ))
    };
    let sounding = scrape_until(addr, Duration::from_secs(10), |s| {
        ["1", "2"].iter().all(|c| level(s, "peak", c) > -40.0)
    });
    for channel in ["1", "2"] {
        let peak = level(&sounding, "peak", channel);
        let rms = level(&sounding, "rms", channel);
        assert!(peak < 6.0 && rms <= peak, "{peak} / {rms}");
    }
    let ticks = first.get("latentd_tick_seconds_count");
    assert_eq!(first.get("latentd_tick_seconds_bucket{le=\"+Inf\"}"), ticks);
    assert!(first.get("latentd_tick_seconds_sum") > 0.0);

    // Knob changes over OSC, each left to be heard before the next: each is counted once,
    // between its arrival and a second later.
    let heard = |s: &Scrape| {
        (
            s.get("latentd_knob_to_ear_seconds_count"),
            s.get("latentd_knob_to_ear_seconds_sum"),
        )
    };
    let (count0, sum0) = heard(&first);
    let osc = Osc::new(daemon.osc_addr(START));
    const KNOB_SENDS: u32 = 5;
    for i in 0..KNOB_SENDS {
        osc.send(
            "/knob/denoise",
            vec![rosc::OscType::Float(0.3 + 0.1 * i as f32)],
        );
        std::thread::sleep(Duration::from_millis(400));
    }
    let knobs = scrape_until(addr, Duration::from_secs(10), |s| {
        heard(s).0 >= count0 + f64::from(KNOB_SENDS)
    });
    let (count, sum) = heard(&knobs);
    assert_eq!(count, count0 + f64::from(KNOB_SENDS), "counted twice?");
    let mean = (sum - sum0) / (count - count0);
    eprintln!(
        "knob-to-ear: mean {:.1} ms over {KNOB_SENDS} changes",
        mean * 1e3
    );
    assert!(mean > 0.0 && mean < 1.0, "mean knob-to-ear {mean} s");
    assert_eq!(
        knobs.get("latentd_knob_to_ear_seconds_bucket{le=\"+Inf\"}"),
        count
    );
    assert_eq!(
        knobs.get("latentd_knob_to_ear_seconds_bucket{le=\"1.0\"}"),
        count,
        "a knob change took over 1 s: {:?}",
        knobs.samples
    );

    // A frozen server: the daemon counts xruns when it runs again.
    let xruns = first.get("latentd_xruns_total");
    session.server.signal(libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(500));
    session.server.signal(libc::SIGCONT);
    let after_freeze = scrape_until(addr, Duration::from_secs(10), |s| {
        s.get("latentd_xruns_total") > xruns
    });
    assert!(after_freeze.get("latentd_tick_seconds_count") > ticks);

    // A server killed and started again: output_up drops, then the reconnect is counted.
    session.server.kill();
    scrape_until(addr, Duration::from_secs(10), |s| {
        s.get("latentd_output_up") == 0.0
    });
    session.server.restart(RATE, PERIOD);
    let back = scrape_until(addr, Duration::from_secs(20), |s| {
        s.get("latentd_output_up") == 1.0
    });
    assert_eq!(back.get("latentd_output_reconnects_total"), 1.0);
    assert_eq!(daemon.terminate().0.code(), Some(0));
}
