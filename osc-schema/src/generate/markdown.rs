//! `docs/osc.md`: the reference in the style of SuperCollider's Server Command Reference.

use std::fmt::Write;

use rosc::{OscMessage, OscPacket, OscType};

use super::{DEFAULT_HOST, DEFAULT_PORT, num};
use crate::limits::{
    MAX_SUBSCRIBERS, MAX_TIMED_BUNDLE_HORIZON, MAX_TIMED_BUNDLES, MAX_TIMED_BUNDLES_PER_CLIENT,
    RATE_BURST, RATE_PER_S, REFUSAL_LOG_INTERVAL, TCP_IDLE_TIMEOUT, TCP_MAX_BEHIND,
    TCP_MAX_CONNECTIONS, TCP_OUTBOX_BYTES, TCP_PACKET_TIMEOUT, UDP_SUBSCRIPTION_LEASE,
};
use crate::schema::Schema;
use crate::table::{ADDRESSES, PUSHES, Timing};

/// A duration in seconds for humans (`300`, `0.5`).
fn secs(d: std::time::Duration) -> String {
    num(d.as_secs_f64())
}

/// Render the reference for `schema`.
pub fn markdown(schema: &Schema) -> String {
    let mut out = String::new();
    let limits = schema.limits();
    let w = &mut out;
    let _ = writeln!(w, "# latentd OSC reference\n");
    let _ = writeln!(
        w,
        "<!-- Generated from osc-schema (cargo run -p latentd-osc-schema --example gen); do not edit. -->\n"
    );
    let _ = writeln!(w, "## Transport\n");
    let _ = writeln!(
        w,
        "- UDP and TCP on port {DEFAULT_PORT}, bound to {DEFAULT_HOST} by default (`--osc ADDR:PORT` or the config file change it). \
When bound wider than loopback, only clients in the configured allowlist of networks (CIDR) are served."
    );
    let _ = writeln!(
        w,
        "- TCP framing: OSC 1.0 (each packet preceded by its size, int32 big-endian) or OSC 1.1 SLIP (packets between 0xC0 bytes). \
The server detects it from the first byte of a connection (0xC0: SLIP) unless configured, and answers in the same framing."
    );
    let _ = writeln!(
        w,
        "- Replies go to the sender: its UDP address, or the same TCP connection."
    );
    let _ = writeln!(
        w,
        "- Limits: packets up to {} bytes, addresses up to {} bytes, strings up to {} bytes; a per-client rate limit (token bucket: {} packets/s sustained, bursts of {}; UDP per address and port, TCP per connection) answers the first packet over it with `/fail` and drops the rest until the bucket refills.",
        limits.max_packet_bytes,
        limits.max_address_bytes,
        limits.max_string_bytes,
        num(RATE_PER_S),
        num(RATE_BURST)
    );
    let _ = writeln!(
        w,
        "- TCP connections: at most {TCP_MAX_CONNECTIONS} open; one more closes the open connection whose last complete packet is oldest (the longest-idle), so a new client is always served. \
A connection that completes no packet for {} s is closed (send any packet, `/status` for one, to keep a quiet connection open); a packet must be complete {} s after its first byte, or the connection is closed. \
Closings by a limit are logged at most once per {} s, with the count of the others.",
        secs(TCP_IDLE_TIMEOUT),
        secs(TCP_PACKET_TIMEOUT),
        secs(REFUSAL_LOG_INTERVAL)
    );
    let _ = writeln!(
        w,
        "- TCP backpressure: replies and pushes wait for a client in a queue of at most {TCP_OUTBOX_BYTES} bytes, written without ever blocking the server or other clients. \
While a client is behind, knob echoes waiting for it are coalesced (only the latest value per address is sent). \
A client whose queue would overflow, or that stays behind for more than {} s, is disconnected (and logged).",
        secs(TCP_MAX_BEHIND)
    );
    let _ = writeln!(w, "\n## Conventions\n");
    let _ = writeln!(
        w,
        "- `/done <address> [...]`: an asynchronous command has taken effect."
    );
    let _ = writeln!(
        w,
        "- `/fail <address> <reason>`: the packet was rejected; nothing in it applied. `<address>` is the address as sent (a pattern stays a pattern), `#bundle` for a malformed bundle, `#packet` when no address could be read."
    );
    let _ = writeln!(
        w,
        "- Numbers: `i`, `f`, `h` and `d` are accepted wherever a number is expected and converted to float64; NaN and infinities are refused. Integer knobs accept a float only when it is integral. `T`, `F`, `N`, strings and blobs are refused where a number is expected."
    );
    let _ = writeln!(
        w,
        "- Address patterns (`*`, `?`, `[a-z]`, `[!0-3]`, `{{a,b}}`) are matched against every address; each match receives the same arguments, and all must be valid for any to apply (`/knob/ch_g* 0` mutes all channel groups)."
    );
    let _ = writeln!(
        w,
        "- Bundles: all elements apply atomically (same engine tick). A bundle whose timetag is in the future waits and is applied when the daemon's wall clock (keep sender and daemon in NTP/PTP sync) reaches the timetag; the engine tick after that uses it, so what it changes is heard one knob-to-ear latency later (docs/PERFORMANCE.md; add `output_latency_ms` of `/status.reply` for the ear). Nothing compensates for that: send a bundle that much early to hear it at a given time. \"Immediately\" (0, 1) or a past time applies at once. Nested bundles are refused."
    );
    let _ = writeln!(
        w,
        "- Timed bundles (timetag in the future) wait in one queue: at most {MAX_TIMED_BUNDLES} in all, at most {MAX_TIMED_BUNDLES_PER_CLIENT} from one client IP address, none more than {} s ahead. \
A bundle over a limit is refused with a `/fail` naming the limit, and nothing in it applies.",
        secs(MAX_TIMED_BUNDLE_HORIZON)
    );
    let _ = writeln!(w, "\n## Commands\n");
    for spec in ADDRESSES {
        let _ = writeln!(w, "### `{}`\n", spec.address);
        let _ = writeln!(w, "{}\n", spec.doc);
        if spec.args.is_empty() {
            let _ = writeln!(w, "Arguments: none.\n");
        } else {
            let _ = writeln!(
                w,
                "| argument | type | unit | meaning |\n| --- | --- | --- | --- |"
            );
            for arg in spec.args {
                let opt = if arg.optional { " (optional)" } else { "" };
                let unit = if arg.unit.is_empty() { "-" } else { arg.unit };
                let _ = writeln!(
                    w,
                    "| `{}`{opt} | `{}` | {unit} | {} |",
                    arg.name,
                    arg.ty.tag(),
                    arg.doc
                );
            }
            let _ = writeln!(w);
        }
        let timing = match spec.timing {
            Timing::Immediate => "immediate",
            Timing::Asynchronous => "**asynchronous**",
        };
        let _ = writeln!(w, "Timing: {timing}. Reply: {}.\n", spec.reply);
    }
    let _ = writeln!(w, "## Knobs\n");
    let _ = writeln!(
        w,
        "Addressed as `/knob/<name>`. Replies and pushes carry the value as `f`, or `i` for integer knobs (`d` when the range exceeds int32).\n"
    );
    let _ = writeln!(
        w,
        "| name | range | default | unit | type | meaning |\n| --- | --- | --- | --- | --- | --- |"
    );
    for k in schema.knobs() {
        let unit = if k.unit.is_empty() { "-" } else { k.unit };
        let ty = if k.integer { "integer" } else { "float" };
        let _ = writeln!(
            w,
            "| `{}` | {} .. {} | {} | {unit} | {ty} (`{}`) | {} |",
            k.name,
            num(k.min),
            num(k.max),
            num(k.default),
            k.reply_tag(),
            k.doc
        );
    }
    presets_section(w);
    midi_section(w);
    let _ = writeln!(w, "\n## Pushes to subscribers\n");
    let _ = writeln!(
        w,
        "After `/notify 1`, the server sends these to the subscriber's address:\n"
    );
    for (msg, doc) in PUSHES {
        let _ = writeln!(w, "- `{msg}`: {doc}");
    }
    let _ = writeln!(
        w,
        "\nAt most {MAX_SUBSCRIBERS} subscribers at once (UDP and TCP together); `/notify 1` beyond that gets `/fail /notify`. \
A UDP subscription is a lease of {} s: send `/notify 1` again before it ends to renew it; it expires otherwise. \
A TCP subscription lasts as long as its connection (see the TCP limits under Transport: a quiet subscriber sends a packet now and then, and one that does not read its pushes is disconnected).",
        secs(UDP_SUBSCRIPTION_LEASE)
    );
    oscquery_section(w);
    let _ = writeln!(w, "\n## Examples of `/fail`\n");
    let _ = writeln!(
        w,
        "Produced by the decoder itself when this file was generated:\n"
    );
    let _ = writeln!(w, "| sent | reply |\n| --- | --- |");
    for (shown, message) in fail_examples() {
        let packet = rosc::encoder::encode(&OscPacket::Message(message)).expect("examples encode");
        if let Err(fail) = schema.decode(&packet) {
            let _ = writeln!(
                w,
                "| `{shown}` | `/fail {} \"{}\"` |",
                fail.address,
                fail.reason.replace('|', "\\|")
            );
        }
    }
    out
}

/// The `## Presets` section: names, fades, curves ([`crate::presets`]).
fn presets_section(w: &mut String) {
    use crate::presets::{FadeCurve, MAX_FADE_S, MAX_PRESET_NAME_BYTES, MAX_PRESETS};
    let _ = writeln!(w, "\n## Presets\n");
    let _ = writeln!(
        w,
        "A preset name is 1 to {MAX_PRESET_NAME_BYTES} bytes of `A-Z`, `a-z`, `0-9`, `_`, `-` and `.`, not starting with `.`: no path separator, no `..`. \
At most {MAX_PRESETS} presets are kept; saving a new name beyond that is refused. \
Fades (`/preset/recall`) and glides (`/knob/<name> value glide_s`) last 0 to {} s and run on the engine's frame clock, so a paused transport does not stop them and a lost output (no frames played) holds them. \
The file format is in docs/operations.md (Presets).\n",
        num(MAX_FADE_S)
    );
    let _ = writeln!(w, "| curve | progress at time t (0 to 1) |\n| --- | --- |");
    for (_, name, doc) in FadeCurve::ALL {
        let _ = writeln!(w, "| `{name}` | {doc} |");
    }
}

/// The `## MIDI` section: targets, modes, limits ([`crate::midi`]).
fn midi_section(w: &mut String) {
    use crate::midi::{
        CHANNELS, CONTROLLERS, MAX_MIDI_MAPS, MidiAction, MidiMode, PRESS_THRESHOLD,
    };
    let _ = writeln!(w, "\n## MIDI\n");
    let _ = writeln!(
        w,
        "With MIDI input on (docs/operations.md, MIDI), controller changes (CC) move knobs and fire actions through maps: `/midi/map`, `/midi/learn`, or `[[midi.map]]` in the config file. \
A map listens to one controller ({}-{}) on one channel ({}-{}); at most {MAX_MIDI_MAPS} maps are kept. \
A knob moved by MIDI changes as by `/knob/<name>`: the subscribers receive its echo, and the session saves it. \
An action fires when its controller's value rises to {PRESS_THRESHOLD} or above (a button press; the release is ignored), or, in a relative mode, on each step up. \
A Program Change `n` (any channel) recalls the preset at position `n` (from 0) of `/preset/list`, at once; one past the end is ignored. \
The maps are saved with the session (the state file) and restored at start; the config file's maps apply when the session holds none.\n",
        CONTROLLERS.start(),
        CONTROLLERS.end(),
        CHANNELS.start(),
        CHANNELS.end()
    );
    let _ = writeln!(w, "| action target | what it does |\n| --- | --- |");
    for (_, name, doc) in MidiAction::ALL {
        let _ = writeln!(w, "| `{name}` | {doc} |");
    }
    let _ = writeln!(
        w,
        "\n| mode | how the controller moves a knob |\n| --- | --- |"
    );
    for (_, name, doc) in MidiMode::ALL {
        let _ = writeln!(w, "| `{name}` | {doc} |");
    }
    let _ = writeln!(
        w,
        "\nThe curve shapes the controller's position (0 to 127 as 0 to 1) before it is scaled from `min` to `max`; a relative step moves the position, so a curve applies to encoders too. \
An integer knob takes the nearest integer."
    );
}

/// The `## OSCQuery` section: what the HTTP server serves and every limit it enforces
/// ([`crate::oscquery_http`]).
fn oscquery_section(w: &mut String) {
    use crate::oscquery_http as http;
    let _ = writeln!(w, "\n## OSCQuery\n");
    let _ = writeln!(
        w,
        "The same address space as OSCQuery JSON over HTTP, on port {} of the OSC address by default (`--oscquery-port`, 0 turns it off), under the same allowlist (403 outside it). \
`GET /` (or any address) returns the node and everything under it with each knob's current `VALUE`; `GET /knob/denoise?VALUE` one attribute; `GET /?HOST_INFO` the server's name, OSC port and transport. \
HEAD is served like GET without the body; other methods get 405. HTTP/1.1 connections are kept alive unless the client sends `Connection: close`.\n",
        http::DEFAULT_PORT
    );
    let _ = writeln!(
        w,
        "Limits (a request over one is refused with the status shown and changes nothing):\n"
    );
    let _ = writeln!(w, "| limit | value | over it |\n| --- | --- | --- |");
    let rows = [
        (
            "request line + headers",
            format!("{} bytes", http::MAX_HEAD_BYTES),
            "431, connection closed",
        ),
        (
            "header fields",
            format!("{}", http::MAX_HEADERS),
            "431, connection closed",
        ),
        (
            "request target (path + query)",
            format!("{} bytes", http::MAX_URL_BYTES),
            "414",
        ),
        (
            "request body (none needed)",
            format!("{} bytes", http::MAX_BODY_BYTES),
            "413 before reading it (also for any `Transfer-Encoding`), connection closed",
        ),
        (
            "connections served at once",
            format!("{}", http::MAX_CONNECTIONS),
            "503 at once, connection closed",
        ),
        (
            "requests per connection",
            format!("{}", http::MAX_REQUESTS_PER_CONNECTION),
            "connection closed after the last answer",
        ),
        (
            "idle connection (before a request's first byte)",
            duration(http::IDLE_TIMEOUT),
            "connection closed",
        ),
        (
            "one request, first byte to last",
            duration(http::REQUEST_TIMEOUT),
            "408, connection closed",
        ),
        (
            "writing one answer",
            duration(http::RESPONSE_TIMEOUT),
            "connection closed",
        ),
    ];
    for (limit, value, over) in rows {
        let _ = writeln!(w, "| {limit} | {value} | {over} |");
    }
    let _ = writeln!(
        w,
        "\nOut of file descriptors, the server pauses accepting ({} doubling up to {}) and resumes by itself. \
Refusals are logged at most once per {}, with a count of those not logged.",
        duration(http::ACCEPT_BACKOFF_MIN),
        duration(http::ACCEPT_BACKOFF_MAX),
        duration(http::REFUSAL_LOG_INTERVAL)
    );
}

/// `5 s`, `50 ms`.
fn duration(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

fn fail_examples() -> Vec<(&'static str, OscMessage)> {
    let m = |addr: &str, args: Vec<OscType>| OscMessage {
        addr: addr.to_string(),
        args,
    };
    vec![
        (
            "/knob/denoise 1.5",
            m("/knob/denoise", vec![OscType::Float(1.5)]),
        ),
        (
            "/knob/denoise NaN",
            m("/knob/denoise", vec![OscType::Float(f32::NAN)]),
        ),
        (
            "/knob/denoise T",
            m("/knob/denoise", vec![OscType::Bool(true)]),
        ),
        (
            "/knob/steps 2.5",
            m("/knob/steps", vec![OscType::Float(2.5)]),
        ),
        (
            "/knob/volume 1",
            m("/knob/volume", vec![OscType::Float(1.0)]),
        ),
        ("/knob/ch_g* 5", m("/knob/ch_g*", vec![OscType::Int(5)])),
        (
            "/preset/save \"../x\"",
            m("/preset/save", vec![OscType::String("../x".into())]),
        ),
        (
            "/preset/recall verse 2 \"cubic\"",
            m(
                "/preset/recall",
                vec![
                    OscType::String("verse".into()),
                    OscType::Float(2.0),
                    OscType::String("cubic".into()),
                ],
            ),
        ),
        (
            "/loop 4 2",
            m("/loop", vec![OscType::Float(4.0), OscType::Float(2.0)]),
        ),
        ("/transport/seek", m("/transport/seek", vec![])),
        ("/notify 2", m("/notify", vec![OscType::Int(2)])),
        (
            "/midi/map 1 128 denoise",
            m(
                "/midi/map",
                vec![
                    OscType::Int(1),
                    OscType::Int(128),
                    OscType::String("denoise".into()),
                ],
            ),
        ),
        (
            "/midi/map 1 74 volume",
            m(
                "/midi/map",
                vec![
                    OscType::Int(1),
                    OscType::Int(74),
                    OscType::String("volume".into()),
                ],
            ),
        ),
        ("/nope", m("/nope", vec![])),
    ]
}
