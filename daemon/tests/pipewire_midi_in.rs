//! MIDI input on the PipeWire output, end to end: `latentd --audio pipewire` with `[midi]
//! enabled` on a private PipeWire graph (D-Bus, pipewire, WirePlumber, a null sink) opens
//! its `latentd-midi-in` node; `pw-midiplay --target latentd-midi-in` plays a standard MIDI
//! file the test writes byte by byte (Control Changes, a note and a pitch bend to ignore),
//! and a `/notify` subscriber on loopback OSC sees the mapped knobs move: a map from the
//! config file and one set over OSC, on another channel. The daemon under test is a debug
//! build whose callbacks run under `assert_no_alloc`, so the pod walk allocating in the
//! MIDI stream's callback would abort it.
//!
//! When the graph cannot start (or `pw-midiplay` is missing) the test prints `SKIPPED:`
//! and passes, unless `LATENTD_REQUIRE_PIPEWIRE=1`, which turns the skip into a failure.
//!
//! Threading: the daemon is a child process; the graph's processes are stopped by
//! [`PipeWireGraph`]'s drop.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::osc_client::{Link, Transport, msg, number, s};
use common::pipewire::{daemon_env, in_path, skip_or_fail, wait_for_node};
use common::service_fixture::{Daemon, Launch, NotifySocket};
use latentd_tests::pipewire_graph::PipeWireGraph;
use rosc::{OscPacket, OscType};
use tempfile::TempDir;

/// The daemon's MIDI node (`--client-name` is the default, `latentd`).
const MIDI_NODE: &str = "latentd-midi-in";
/// How long a knob echo may take once `pw-midiplay` has sent it.
const ECHO: Duration = Duration::from_secs(3);

/// A format-0 standard MIDI file, 96 ticks a quarter note at the default 120 bpm (so 96
/// ticks are 0.5 s): channel 1 CC 20 = 127, a note on, channel 2 CC 21 = 64, a pitch bend,
/// a note off, channel 1 CC 20 = 0.
fn write_midi_file(path: &Path) {
    #[rustfmt::skip]
    let track: &[u8] = &[
        // delta 192 (1 s at the default 120 bpm): pw-midiplay starts its clock before
        // the session manager has linked it to latentd; an event at 0 can be lost.
        0x81, 0x40, 0xB0, 20, 127,  // ch 1 CC 20 = 127
        0x18, 0x90, 60, 100,  // delta 24: ch 1 note on (ignored)
        0x18, 0xB1, 21, 64,   // delta 24: ch 2 CC 21 = 64
        0x18, 0xE0, 0, 0x40,  // delta 24: pitch bend (ignored)
        0x18, 0x80, 60, 0,    // delta 24: note off (ignored)
        0x60, 0xB0, 20, 0,    // delta 96: ch 1 CC 20 = 0
        0x60, 0xFF, 0x2F, 0,  // delta 96: end of track
    ];
    let mut file = Vec::new();
    file.extend_from_slice(b"MThd");
    file.extend_from_slice(&6u32.to_be_bytes());
    file.extend_from_slice(&0u16.to_be_bytes()); // format 0
    file.extend_from_slice(&1u16.to_be_bytes()); // one track
    file.extend_from_slice(&96u16.to_be_bytes()); // ticks per quarter note
    file.extend_from_slice(b"MTrk");
    file.extend_from_slice(&(track.len() as u32).to_be_bytes());
    file.extend_from_slice(track);
    std::fs::write(path, file).unwrap();
}

/// The next `/knob/<name>` push (other pushes skipped); its value. A daemon that died (an
/// allocation in a callback aborts it) shows in the panic message.
fn echo(sub: &mut Link, daemon: &Daemon, name: &str) -> f64 {
    let addr = format!("/knob/{name}");
    let deadline = Instant::now() + ECHO;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match sub.recv(left) {
            Some(OscPacket::Message(m)) if m.addr == addr => return number(&m.args[0]),
            Some(_) => continue,
            None => panic!(
                "no {addr} echo within {ECHO:?}; daemon log:\n{}",
                daemon.lines().join("\n")
            ),
        }
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-5
}

#[test]
fn a_pipewire_midi_peer_moves_mapped_knobs() {
    if !in_path("pw-midiplay") {
        return skip_or_fail("pipewire MIDI test", "`pw-midiplay` not found in PATH");
    }
    let graph = match PipeWireGraph::start() {
        Ok(graph) => graph,
        Err(reason) => return skip_or_fail("pipewire MIDI test", &reason.to_string()),
    };
    let dir = TempDir::new().unwrap();
    let notify = NotifySocket::bind(dir.path());
    let config = dir.path().join("latentd.toml");
    std::fs::write(
        &config,
        "[midi]\nenabled = true\n\n[[midi.map]]\nchannel = 1\ncc = 20\ntarget = \"ch_g0\"\n",
    )
    .unwrap();
    let env = daemon_env(&graph);
    let mut daemon = Daemon::start(
        &dir,
        Launch {
            audio: "pipewire",
            notify: Some(&notify),
            env,
            args: ["--engine", "off", "--loop-seconds", "2", "--config"]
                .iter()
                .map(|a| a.to_string())
                .chain([config.display().to_string()])
                .collect(),
            ..Launch::default()
        },
    );
    notify.until("READY=1", Duration::from_secs(30));
    daemon.wait_line(
        &format!("MIDI input on: PipeWire node {MIDI_NODE}"),
        Duration::from_secs(2),
    );
    wait_for_node(&graph, &daemon, MIDI_NODE);

    let addr = daemon.osc_addr(Duration::from_secs(2));
    let mut sub = Link::connect(addr, Transport::Udp);
    sub.send(&msg("/notify", vec![OscType::Int(1)]));
    assert_eq!(sub.expect("/done"), vec![s("/notify")]);
    // A second map over OSC, on channel 2; `/midi/maps` answers once it is applied.
    let mut ctl = Link::connect(addr, Transport::Udp);
    ctl.send(&msg(
        "/midi/map",
        vec![OscType::Int(2), OscType::Int(21), s("denoise")],
    ));
    ctl.send(&msg("/midi/maps", vec![]));
    assert!(matches!(
        ctl.recv(Duration::from_secs(2)),
        Some(OscPacket::Bundle(b)) if b.content.len() == 2
    ));

    let song = dir.path().join("controls.mid");
    write_midi_file(&song);
    let mut player = graph
        .command("pw-midiplay")
        .args(["--target", MIDI_NODE])
        .arg(&song)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pw-midiplay");

    assert!(
        close(echo(&mut sub, &daemon, "ch_g0"), 3.0),
        "CC 20 = 127 on ch 1"
    );
    assert!(
        close(echo(&mut sub, &daemon, "denoise"), 64.0 / 127.0),
        "CC 21 = 64 on ch 2"
    );
    assert!(
        close(echo(&mut sub, &daemon, "ch_g0"), 0.0),
        "CC 20 = 0 on ch 1"
    );
    let status = common::wait_timeout(&mut player, Duration::from_secs(10));
    if status.is_none() {
        let _ = player.kill();
        let _ = player.wait();
    }
    assert!(
        status.is_some_and(|s| s.success()),
        "pw-midiplay: {status:?}"
    );
    // Nothing else moved (the note and the bend are not controls), nothing was malformed.
    sub.expect_silence(Duration::from_millis(300));
    assert!(
        !daemon.has_line("malformed"),
        "{}",
        daemon.lines().join("\n")
    );

    daemon.stop_cleanly();
}
