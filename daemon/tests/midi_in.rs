//! MIDI input end to end: `latentd --midi` on a private `jackd -d dummy` opens
//! `latentd:midi_in`; a JACK MIDI client of this test ([`MidiController`]) sends Control and
//! Program Changes into it, and a `/notify` subscriber on loopback OSC sees the knobs move:
//! a map from the config file (absolute), `/midi/learn`, pickup, both relative modes and an
//! action. Bad maps are answered `/fail` with the reason and change nothing; the maps are
//! saved with the state. The daemon under test is a debug build whose callback runs under
//! `assert_no_alloc`, so the MIDI path allocating in the callback would abort it.
//!
//! Threading: libjack reads `JACK_DEFAULT_SERVER` process-wide; the test holds a
//! [`JackSession`] while its server runs.

mod common;

use std::time::Duration;

use common::jack_tone::{PERIOD, RATE, start_tone_daemon};
use common::midi_ctl::MidiController;
use common::osc_client::{Link, Transport, msg, number, s};
use common::service_fixture::{Daemon, NotifySocket};
use latentd_tests::JackSession;
use rosc::{OscPacket, OscType};
use tempfile::TempDir;

/// How long a knob echo may take from the controller's period to the subscriber.
const ECHO: Duration = Duration::from_secs(2);

/// The next `/knob/<name>` push (other pushes skipped); its value.
fn echo(sub: &mut Link, name: &str) -> f64 {
    let addr = format!("/knob/{name}");
    let deadline = std::time::Instant::now() + ECHO;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match sub.recv(left) {
            Some(OscPacket::Message(m)) if m.addr == addr => return number(&m.args[0]),
            Some(_) => continue,
            None => panic!("no {addr} echo within {ECHO:?}"),
        }
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-5
}

/// Send `packet` on `ctl`, then wait until the daemon has applied it: a `/midi/maps` sent
/// after it on the same socket is answered after it is applied. (A MIDI message sent right
/// after an OSC command may otherwise overtake it: the two take different paths.)
fn applied(ctl: &mut Link, packet: &OscPacket) {
    ctl.send(packet);
    maps(ctl);
}

/// `/midi/maps`, as (channel, cc, target, mode).
fn maps(ctl: &mut Link) -> Vec<(i32, i32, String, String)> {
    ctl.send(&msg("/midi/maps", vec![]));
    match ctl.recv(Duration::from_secs(2)) {
        Some(OscPacket::Bundle(b)) => b
            .content
            .iter()
            .map(|p| match p {
                OscPacket::Message(m) => {
                    assert_eq!(m.addr, "/midi/map");
                    match m.args.as_slice() {
                        [
                            OscType::Int(ch),
                            OscType::Int(cc),
                            OscType::String(target),
                            OscType::Float(_),
                            OscType::Float(_),
                            OscType::String(_),
                            OscType::String(mode),
                        ] => (*ch, *cc, target.clone(), mode.clone()),
                        other => panic!("/midi/map {other:?}"),
                    }
                }
                other => panic!("{other:?}"),
            })
            .collect(),
        other => panic!("/midi/maps: expected a bundle, got {other:?}"),
    }
}

/// The tone daemon with MIDI on and the config's map (channel 1 CC 20 -> `ch_g0`), once its
/// `midi_in` port is up; its OSC address and a `/notify` subscriber.
fn start_midi_daemon(
    session: &JackSession,
    dir: &TempDir,
    notify: &NotifySocket,
) -> (Daemon, std::net::SocketAddr, Link) {
    let config = dir.path().join("latentd.toml");
    std::fs::write(
        &config,
        "[midi]\nenabled = true\n\n[[midi.map]]\nchannel = 1\ncc = 20\ntarget = \"ch_g0\"\n",
    )
    .unwrap();
    let daemon = start_tone_daemon(session, dir, notify, &config, &[]);
    daemon.wait_line(
        "MIDI input on: port latentd:midi_in",
        Duration::from_secs(2),
    );
    let addr = daemon.osc_addr(Duration::from_secs(2));
    let mut sub = Link::connect(addr, Transport::Udp);
    sub.send(&msg("/notify", vec![OscType::Int(1)]));
    assert_eq!(sub.expect("/done"), vec![s("/notify")]);
    (daemon, addr, sub)
}

#[test]
fn controllers_move_knobs_and_subscribers_see_them() {
    let session = JackSession::start(RATE, PERIOD);
    let dir = TempDir::new().unwrap();
    let notify = NotifySocket::bind(dir.path());
    let (mut daemon, addr, mut sub) = start_midi_daemon(&session, &dir, &notify);
    let mut ctl = Link::connect(addr, Transport::Udp);
    let midi = MidiController::connect("latentd:midi_in");

    // The config file's map, absolute: CC 20 at 127 is ch_g0's maximum.
    midi.cc(1, 20, 127);
    assert!(close(echo(&mut sub, "ch_g0"), 3.0));

    // Learn: the next controller moved is bound; its value is not applied.
    applied(&mut ctl, &msg("/midi/learn", vec![s("denoise")]));
    midi.cc(2, 7, 10);
    let learned = vec![OscType::Int(2), OscType::Int(7), s("denoise")];
    assert_eq!(ctl.expect("/midi/learned"), learned);
    assert_eq!(sub.expect("/midi/learned"), learned);
    assert!(
        close(ctl.knob("denoise"), 0.5),
        "the learning value applied"
    );
    midi.cc(2, 7, 127);
    assert!(close(echo(&mut sub, "denoise"), 1.0));

    // Pickup: shift (3.5) does not jump to the fader; it follows once the fader crosses it.
    applied(
        &mut ctl,
        &msg(
            "/midi/map",
            vec![
                OscType::Int(1),
                OscType::Int(21),
                s("shift"),
                OscType::Float(1.0),
                OscType::Float(6.0),
                s("linear"),
                s("pickup"),
            ],
        ),
    );
    midi.cc(1, 21, 0);
    midi.cc(1, 21, 20);
    sub.expect_silence(Duration::from_millis(300));
    assert!(close(ctl.knob("shift"), 3.5));
    midi.cc(1, 21, 90);
    assert!(close(echo(&mut sub, "shift"), 1.0 + 5.0 * 90.0 / 127.0));
    midi.cc(1, 21, 100);
    assert!(close(echo(&mut sub, "shift"), 1.0 + 5.0 * 100.0 / 127.0));
    // A client moves it: the fader lets go until it comes back.
    ctl.send(&msg("/knob/shift", vec![OscType::Float(2.0)]));
    assert!(close(echo(&mut sub, "shift"), 2.0));
    midi.cc(1, 21, 110);
    sub.expect_silence(Duration::from_millis(300));

    // Relative (two's complement): 127 is one step down from denoise's 1.0; 3 three up.
    let relative = |cc: i32, target: &str, mode: &str| {
        msg(
            "/midi/map",
            vec![
                OscType::Int(1),
                OscType::Int(cc),
                s(target),
                OscType::Float(0.0),
                OscType::Float(1.0),
                s("linear"),
                s(mode),
            ],
        )
    };
    applied(&mut ctl, &relative(22, "denoise", "relative"));
    midi.cc(1, 22, 127);
    let down = echo(&mut sub, "denoise");
    assert!(close(down, 1.0 - 1.0 / 127.0), "{down}");
    midi.cc(1, 22, 3);
    assert!(close(echo(&mut sub, "denoise"), 1.0), "clamped at the top");
    // Relative around 64: 66 is two steps up from sde_amp's 0.5.
    applied(&mut ctl, &relative(23, "sde_amp", "relative_offset"));
    midi.cc(1, 23, 66);
    assert!(close(echo(&mut sub, "sde_amp"), 0.5 + 2.0 / 127.0));

    // An action: a press on CC 24 is seed + 1.
    applied(
        &mut ctl,
        &msg(
            "/midi/map",
            vec![OscType::Int(1), OscType::Int(24), s("seed/next")],
        ),
    );
    midi.cc(1, 24, 127);
    assert_eq!(echo(&mut sub, "seed"), 1.0);
    midi.cc(1, 24, 0);

    // Bad input: /fail with the reason, nothing changes.
    let before = maps(&mut ctl);
    assert_eq!(
        before,
        [
            (1, 20, "ch_g0".into(), "absolute".into()),
            (1, 21, "shift".into(), "pickup".into()),
            (1, 22, "denoise".into(), "relative".into()),
            (1, 23, "sde_amp".into(), "relative_offset".into()),
            (1, 24, "seed/next".into(), "absolute".into()),
            (2, 7, "denoise".into(), "absolute".into()),
        ]
    );
    let (address, reason) = ctl.fails(&msg(
        "/midi/map",
        vec![OscType::Int(1), OscType::Int(128), s("denoise")],
    ));
    assert_eq!(address, "/midi/map");
    assert!(reason.contains("0 to 127; got 128"), "{reason}");
    let (_, reason) = ctl.fails(&msg(
        "/midi/map",
        vec![OscType::Int(1), OscType::Int(21), s("volume")],
    ));
    assert!(reason.contains("unknown target \"volume\""), "{reason}");
    let (_, reason) = ctl.fails(&msg("/midi/learn", vec![s("volume")]));
    assert!(reason.contains("unknown target"), "{reason}");
    let (_, reason) = ctl.fails(&msg(
        "/midi/map",
        vec![
            OscType::Int(1),
            OscType::Int(25),
            s("denoise"),
            OscType::Float(0.0),
            OscType::Float(2.0),
        ],
    ));
    assert!(reason.contains("outside knob denoise's range"), "{reason}");
    let (_, reason) = ctl.fails(&msg("/midi/unmap", vec![OscType::Int(3), OscType::Int(3)]));
    assert!(
        reason.contains("nothing is mapped on channel 3 CC 3"),
        "{reason}"
    );
    assert_eq!(maps(&mut ctl), before, "a refused map changed the table");
    sub.expect_silence(Duration::from_millis(200));

    // Unmap: the controller does nothing any more.
    ctl.send(&msg("/midi/unmap", vec![OscType::Int(1), OscType::Int(23)]));
    assert_eq!(maps(&mut ctl).len(), before.len() - 1);
    midi.cc(1, 23, 70);
    sub.expect_silence(Duration::from_millis(300));

    // Program Change n recalls the n-th preset of /preset/list.
    for name in ["a-low", "b-high"] {
        ctl.send(&msg(
            "/knob/sde_amp",
            vec![OscType::Float(if name == "a-low" { 0.1 } else { 0.9 })],
        ));
        ctl.send(&msg("/preset/save", vec![s(name)]));
        assert_eq!(ctl.expect("/done"), vec![s("/preset/save"), s(name)]);
    }
    while sub.recv(Duration::from_millis(200)).is_some() {}
    midi.program(1, 0);
    assert!(close(echo(&mut sub, "sde_amp"), 0.1));

    midi.close();
    // Let the debounced save (500 ms) see the last change before the stop writes it.
    daemon.stop_cleanly();
    let state = std::fs::read_to_string(&daemon.state).unwrap();
    let saved: serde_json::Value = serde_json::from_str(&state).unwrap();
    let saved_maps = saved["midi_maps"].as_array().expect("midi_maps saved");
    assert_eq!(saved_maps.len(), before.len() - 1, "{state}");
    assert!(
        saved_maps
            .iter()
            .any(|m| m["cc"] == 21 && m["mode"] == "pickup" && m["target"] == "shift"),
        "{state}"
    );

    // A restart restores the session's maps (over the config's), and they work at once.
    let notify_dir = TempDir::new().unwrap();
    let notify = NotifySocket::bind(notify_dir.path());
    let config = dir.path().join("latentd.toml");
    let mut daemon = start_tone_daemon(&session, &dir, &notify, &config, &[]);
    let addr = daemon.osc_addr(Duration::from_secs(2));
    let mut ctl = Link::connect(addr, Transport::Udp);
    let mut restored = before.clone();
    restored.retain(|m| m.1 != 23);
    assert_eq!(maps(&mut ctl), restored);
    let mut sub = Link::connect(addr, Transport::Udp);
    sub.send(&msg("/notify", vec![OscType::Int(1)]));
    assert_eq!(sub.expect("/done"), vec![s("/notify")]);
    let midi = MidiController::connect("latentd:midi_in");
    midi.cc(2, 7, 0);
    assert!(close(echo(&mut sub, "denoise"), 0.0));
    midi.close();
    // A clean stop: a client killed under the server can make it linger at its own stop.
    let (status, _) = daemon.terminate();
    assert!(status.success(), "{status:?}");
}

/// Without MIDI input, a learn could never complete: it is refused with the reason. Here
/// `--midi` asks for it on the null output, which has no MIDI port: the daemon says so and
/// runs with MIDI input off. Maps can still be set, listed and saved for a later start.
#[test]
fn learn_without_midi_input_is_refused_and_maps_still_keep() {
    let dir = TempDir::new().unwrap();
    let mut daemon = common::service_fixture::Daemon::start(
        &dir,
        common::service_fixture::Launch {
            args: ["--engine", "off", "--loop-seconds", "2", "--midi"]
                .iter()
                .map(|a| a.to_string())
                .collect(),
            ..Default::default()
        },
    );
    let addr = daemon.osc_addr(Duration::from_secs(20));
    daemon.wait_line(
        "the null output has no MIDI port (it talks to no audio server",
        Duration::from_secs(2),
    );
    let mut ctl = Link::connect(addr, Transport::Udp);
    let (address, reason) = ctl.fails(&msg("/midi/learn", vec![s("denoise")]));
    assert_eq!(address, "/midi/learn");
    assert!(reason.contains("MIDI input is off"), "{reason}");
    ctl.send(&msg(
        "/midi/map",
        vec![OscType::Int(16), OscType::Int(0), s("transport/toggle")],
    ));
    assert_eq!(
        maps(&mut ctl),
        [(16, 0, "transport/toggle".into(), "absolute".into())]
    );
    let (status, _) = daemon.terminate();
    assert!(status.success(), "{status:?}");
    let state = std::fs::read_to_string(&daemon.state).unwrap();
    assert!(state.contains("transport/toggle"), "{state}");
}

/// A controller's link to `latentd:midi_in` is remembered like an output's links: when the
/// JACK server dies and comes back, and the controller's client returns after it (a MIDI
/// bridge restarting), latentd links it again by itself and the faders work on.
#[test]
fn the_controller_link_comes_back_after_a_server_restart() {
    let mut session = JackSession::start(RATE, PERIOD);
    let dir = TempDir::new().unwrap();
    let notify = NotifySocket::bind(dir.path());
    let (daemon, _, mut sub) = start_midi_daemon(&session, &dir, &notify);
    let midi = MidiController::connect("latentd:midi_in");
    midi.cc(1, 20, 127);
    assert!(close(echo(&mut sub, "ch_g0"), 3.0));
    // The link is seen (and remembered) at the supervisor's next look.
    std::thread::sleep(Duration::from_millis(500));

    // The controller leaves with the server (closed first: a client of a killed server
    // cannot be closed cleanly in this process), the server crashes and comes back.
    midi.close();
    session.server.kill();
    std::thread::sleep(Duration::from_millis(500));
    session.server.restart(RATE, PERIOD);
    daemon.wait_line("jack output back", Duration::from_secs(20));

    let midi = MidiController::open();
    let controller_port = format!("{}:midi_out", common::midi_ctl::CLIENT);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !session
        .server
        .connections()
        .get(&controller_port)
        .is_some_and(|peers| peers.iter().any(|p| p == "latentd:midi_in"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "latentd did not link {controller_port} to latentd:midi_in again:\n{}",
            daemon.lines().join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    daemon.wait_line(
        "input port 1 is fed by midi-ctl:midi_out again",
        Duration::from_secs(2),
    );
    std::thread::sleep(Duration::from_millis(200));
    midi.cc(1, 20, 0);
    assert!(close(echo(&mut sub, "ch_g0"), 0.0));
    midi.close();
}
