//! Client examples: SuperCollider, Max, Pure Data, Python (python-osc), and the README that
//! explains them. Each is generated from the knob list, so ranges never drift.

use std::fmt::Write;

use super::{DEFAULT_HOST, DEFAULT_PORT, num};
use crate::schema::Schema;

const HEADER: &str =
    "Generated from osc-schema (cargo run -p latentd-osc-schema --example gen); do not edit.";

/// `examples/osc/README.md`.
pub fn readme() -> String {
    format!(
        "# latentd OSC client examples\n\n{HEADER}\n\n\
All of them talk to latentd at {DEFAULT_HOST}:{DEFAULT_PORT} over UDP. The reference is `docs/osc.md`.\n\n\
| file | client | how to use |\n| --- | --- | --- |\n\
| `latentd.scd` | SuperCollider | open in the IDE, run the block: a slider window, replies posted |\n\
| `latentd.maxpat` | Max | open; number boxes send `/knob/<name>`, message boxes send the rest |\n\
| `latentd.pd` | Pure Data (vanilla >= 0.46) | open; number boxes send through `oscformat` and `netsend -u -b` |\n\
| `latentd_client.py` | Python with python-osc | `python3 latentd_client.py set denoise 0.7`, `get denoise`, `knobs`, `status`, `watch` |\n\
| `touchosc/latentd.tosc` | TouchOSC (2022+) | a page of faders, one per knob |\n\
| `oscquery.json` | OSCQuery clients | the namespace with types, ranges and defaults |\n\n\
Replies go to the address a packet came from. Max's `udpsend` sends from an ephemeral port its \
`udpreceive` cannot bind, so the Max patch only sends; the other clients receive replies and pushes.\n\n\
TouchOSC: `latentd.tosc` is the zlib-compressed form of `touchosc/latentd.xml` (the format \
TouchOSC's editor saves). It has not been opened in TouchOSC by the generator's authors; if the \
editor refuses it, `latentd.xml` is a readable template of the same layout: one fader per knob \
sending `/knob/<name>` with its range.\n"
    )
}

/// `examples/osc/latentd.scd`.
pub fn supercollider(schema: &Schema) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "// latentd from SuperCollider. {HEADER}");
    let _ = writeln!(
        s,
        "// Run the block below (Cmd/Ctrl-Enter inside the parentheses).\n("
    );
    let _ = writeln!(s, "~latentd = NetAddr(\"{DEFAULT_HOST}\", {DEFAULT_PORT});");
    let _ = writeln!(
        s,
        "// name, min, max, default, step (0 = continuous)\n~latentdKnobs = ["
    );
    for k in schema.knobs() {
        let step = if k.integer { "1" } else { "0" };
        let _ = writeln!(
            s,
            "    [\\{}, {}, {}, {}, {step}],",
            k.name,
            num(k.min),
            num(k.max),
            num(k.default)
        );
    }
    let _ = writeln!(s, "];");
    let _ = writeln!(
        s,
        "OSCdef(\\latentdFail, {{ |msg| (\"latentd /fail: \" ++ msg[1] ++ \" \" ++ msg[2]).warn }}, '/fail', ~latentd);"
    );
    let _ = writeln!(
        s,
        "OSCdef(\\latentdDone, {{ |msg| (\"latentd /done: \" ++ msg[1..]).postln }}, '/done', ~latentd);"
    );
    let _ = writeln!(
        s,
        "OSCdef(\\latentdStatus, {{ |msg| (\"latentd status: \" ++ msg[1..]).postln }}, '/status.reply', ~latentd);"
    );
    let _ = writeln!(
        s,
        "OSCdef(\\latentdApplied, {{ |msg| (\"prompt applied: \" ++ msg[1..]).postln }}, '/prompt/applied', ~latentd);"
    );
    let _ = writeln!(
        s,
        "~latentd.sendMsg('/notify', 1);    // receive knob echoes and applied events"
    );
    let _ = writeln!(s, "~latentd.sendMsg('/version');");
    let _ = writeln!(
        s,
        "w = Window(\"latentd\", Rect(100, 100, 440, 28 * ~latentdKnobs.size + 20)).front;"
    );
    let _ = writeln!(s, "w.addFlowLayout;");
    let _ = writeln!(s, "~latentdKnobs.do {{ |k|");
    let _ = writeln!(
        s,
        "    var spec = ControlSpec(k[1], k[2], \\lin, k[4], k[3]);"
    );
    let _ = writeln!(
        s,
        "    EZSlider(w, 420 @ 24, k[0], spec, {{ |ez| ~latentd.sendMsg((\"/knob/\" ++ k[0]).asSymbol, ez.value) }}, k[3]);"
    );
    let _ = writeln!(s, "}};");
    let _ = writeln!(s, ")\n");
    let _ = writeln!(s, "// More:");
    let _ = writeln!(
        s,
        "~latentd.sendMsg('/prompt', \"ambient, felt piano\", \"glitch,808\");"
    );
    let _ = writeln!(
        s,
        "~latentd.sendMsg('/knob/ch_g*', 0);    // patterns: all channel gains at once"
    );
    let _ = writeln!(
        s,
        "~latentd.sendBundle(0.5, ['/knob/ch_g0', 1], ['/knob/ch_g1', 1]);    // atomically, 0.5 s from now"
    );
    let _ = writeln!(s, "~latentd.sendMsg('/loop', 4.0, 8.0);");
    let _ = writeln!(s, "~latentd.sendMsg('/status');");
    let _ = writeln!(s, "~latentd.sendMsg('/sync', 1);");
    s
}

/// `examples/osc/latentd.maxpat` (Max JSON patcher).
pub fn max_patch(schema: &Schema) -> String {
    let mut boxes = Vec::new();
    let mut lines = Vec::new();
    let sender = "obj-udpsend";
    let y_send = 40.0 + 30.0 * schema.knobs().len() as f64;
    boxes.push(serde_json::json!({ "box": { "id": sender, "maxclass": "newobj", "numinlets": 1, "numoutlets": 0,
        "patching_rect": [20.0, y_send, 160.0, 22.0], "text": format!("udpsend {DEFAULT_HOST} {DEFAULT_PORT}") } }));
    boxes.push(serde_json::json!({ "box": { "id": "obj-comment", "maxclass": "comment", "numinlets": 1, "numoutlets": 0,
        "patching_rect": [20.0, 10.0, 520.0, 20.0], "text": format!("latentd knobs. {HEADER}") } }));
    for (i, k) in schema.knobs().iter().enumerate() {
        let y = 40.0 + 30.0 * i as f64;
        let number = format!("obj-num-{}", k.name);
        let msg = format!("obj-msg-{}", k.name);
        let class = if k.integer { "number" } else { "flonum" };
        boxes.push(serde_json::json!({ "box": { "id": number, "maxclass": class, "numinlets": 1, "numoutlets": 2,
            "outlettype": ["", "bang"], "parameter_enable": 0, "minimum": k.min, "maximum": k.max,
            "patching_rect": [20.0, y, 60.0, 22.0] } }));
        boxes.push(serde_json::json!({ "box": { "id": msg, "maxclass": "message", "numinlets": 2, "numoutlets": 1,
            "outlettype": [""], "patching_rect": [90.0, y, 200.0, 22.0], "text": format!("/knob/{} $1", k.name) } }));
        lines.push(
            serde_json::json!({ "patchline": { "source": [number, 0], "destination": [msg, 0] } }),
        );
        lines.push(
            serde_json::json!({ "patchline": { "source": [msg, 0], "destination": [sender, 0] } }),
        );
    }
    let extra = [
        "/status",
        "/version",
        "/knobs",
        "/prompt \"ambient, felt piano\"",
        "/transport/play",
        "/transport/pause",
        "/loop/clear",
    ];
    for (i, text) in extra.iter().enumerate() {
        let id = format!("obj-extra-{i}");
        boxes.push(serde_json::json!({ "box": { "id": id, "maxclass": "message", "numinlets": 2, "numoutlets": 1,
            "outlettype": [""], "patching_rect": [320.0, 40.0 + 30.0 * i as f64, 220.0, 22.0], "text": text } }));
        lines.push(
            serde_json::json!({ "patchline": { "source": [id, 0], "destination": [sender, 0] } }),
        );
    }
    let patch = serde_json::json!({ "patcher": {
        "fileversion": 1,
        "appversion": { "major": 8, "minor": 5, "revision": 0, "architecture": "x64", "modernui": 1 },
        "classnamespace": "box",
        "rect": [100.0, 100.0, 600.0, y_send + 80.0],
        "boxes": boxes,
        "lines": lines,
    } });
    serde_json::to_string_pretty(&patch).expect("JSON values serialize") + "\n"
}

/// `examples/osc/latentd.pd` (Pure Data vanilla patch).
pub fn pure_data(schema: &Schema) -> String {
    let height = 80 + 30 * schema.knobs().len();
    let mut s = format!("#N canvas 50 50 640 {} 12;\n", height + 60);
    // Object indices count every #X line except `connect`, in order.
    let mut index = 0usize;
    let mut obj = |s: &mut String, line: String| -> usize {
        s.push_str(&line);
        s.push('\n');
        index += 1;
        index - 1
    };
    let connect = obj(
        &mut s,
        format!("#X msg 20 20 connect {DEFAULT_HOST} {DEFAULT_PORT};"),
    );
    let netsend = obj(&mut s, format!("#X obj 20 {height} netsend -u -b;"));
    let prepend = obj(
        &mut s,
        format!("#X obj 20 {} list prepend send;", height - 60),
    );
    let trim = obj(&mut s, format!("#X obj 20 {} list trim;", height - 30));
    obj(
        &mut s,
        format!(
            "#X text 250 20 latentd knobs. {};",
            HEADER.replace(';', " \\;").replace(',', " \\,")
        ),
    );
    let mut connects = vec![(connect, netsend), (prepend, trim), (trim, netsend)];
    for (i, k) in schema.knobs().iter().enumerate() {
        let y = 50 + 30 * i;
        let atom = obj(
            &mut s,
            format!(
                "#X floatatom 20 {y} 8 {} {} 0 {} - -;",
                num(k.min),
                num(k.max),
                k.name
            ),
        );
        let format = obj(&mut s, format!("#X obj 120 {y} oscformat knob {};", k.name));
        connects.push((atom, format));
        connects.push((format, prepend));
    }
    for (from, to) in connects {
        let _ = writeln!(s, "#X connect {from} 0 {to} 0;");
    }
    s
}

/// `examples/osc/latentd_client.py` (python-osc).
pub fn python(schema: &Schema) -> String {
    let mut knobs = String::new();
    for k in schema.knobs() {
        let _ = writeln!(
            knobs,
            "    \"{}\": ({}, {}, {}, {}),",
            k.name,
            num(k.min),
            num(k.max),
            num(k.default),
            if k.integer { "True" } else { "False" }
        );
    }
    PYTHON
        .replace("{HEADER}", HEADER)
        .replace("{HOST}", DEFAULT_HOST)
        .replace("{PORT}", &DEFAULT_PORT.to_string())
        .replace("{KNOBS}", knobs.trim_end())
}

const PYTHON: &str = r#"#!/usr/bin/env python3
"""latentd from Python (python-osc). {HEADER}

    python3 latentd_client.py set denoise 0.7      # set a knob (no reply on success)
    python3 latentd_client.py get denoise          # query one knob
    python3 latentd_client.py knobs                # query all knobs
    python3 latentd_client.py status               # /status
    python3 latentd_client.py send /prompt "ambient, piano"
    python3 latentd_client.py watch                # subscribe and print pushes
"""
import argparse
import socket
import sys

from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

# name: (min, max, default, integer)
KNOBS = {
{KNOBS}
}


def build(address, args):
    builder = OscMessageBuilder(address=address)
    for arg in args:
        builder.add_arg(arg)
    return builder.build().dgram


def messages(dgram):
    if OscBundle.dgram_is_bundle(dgram):
        for element in OscBundle(dgram):
            yield from messages(element.dgram)
    else:
        message = OscMessage(dgram)
        yield message.address, list(message.params)


def parse_arg(text):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main():
    parser = argparse.ArgumentParser(description="talk to latentd over OSC/UDP")
    parser.add_argument("--host", default="{HOST}")
    parser.add_argument("--port", type=int, default={PORT})
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for replies")
    parser.add_argument("command", choices=["set", "get", "knobs", "status", "version", "send", "watch"])
    parser.add_argument("args", nargs="*")
    opts = parser.parse_args()

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(opts.timeout)
    server = (opts.host, opts.port)
    expect_reply = True
    if opts.command == "set":
        name, value = opts.args
        low, high, _default, integer = KNOBS[name]
        value = int(value) if integer else float(value)
        if not low <= value <= high:
            sys.exit(f"{name} takes a value in [{low}, {high}]")
        packet, expect_reply = build(f"/knob/{name}", [value]), False
    elif opts.command == "get":
        packet = build(f"/knob/{opts.args[0]}", [])
    elif opts.command == "send":
        packet = build(opts.args[0], [parse_arg(a) for a in opts.args[1:]])
    elif opts.command == "watch":
        packet = build("/notify", [1])
    else:
        packet = build("/" + opts.command, [])
    sock.sendto(packet, server)

    failed = False
    while expect_reply or opts.command == "watch":
        try:
            dgram, _ = sock.recvfrom(65536)
        except socket.timeout:
            if opts.command == "watch":
                continue
            break
        for address, params in messages(dgram):
            print(address, *params, flush=True)
            failed |= address == "/fail"
        if opts.command in ("get", "status", "version", "set", "send"):
            break
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
"#;
