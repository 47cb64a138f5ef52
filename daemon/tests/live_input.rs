//! Live input on the real binary: `latentd --inputs 2` on a private `jackd -d dummy`, a
//! tone client of this test playing a 1 kHz sine into `latentd:in_1` / `in_2`,
//! `/capture/start` over OSC on loopback (quantized to the loop's wrap), `/done /source`,
//! then latentd's own output, recorded by a [`JackCapture`] client, holds the tone: its
//! 1 kHz bin stands far above the neighbouring bins, where before the capture (a silent
//! loop) it did not. The daemon runs a debug build, whose callback aborts on an allocation
//! (`assert_no_alloc`), with the input ports enabled throughout.
//!
//! Bad input: a capture without input ports (`audio.inputs = 0`, or the null output),
//! `seconds` out of range or not a number, a second capture while one runs, a stop with
//! none running: each a `/fail <address> <reason>`, nothing changed.
//!
//! Threading: libjack finds the private server through `JACK_DEFAULT_SERVER`; each JACK
//! test holds a [`JackSession`] while its server runs. The tone's callback runs on JACK's
//! thread; everything else on the test's.

mod common;

use std::f32::consts::TAU;
use std::time::{Duration, Instant};

use common::jack_tone::{PERIOD, RATE, START};
use common::osc_client::{Link, Transport, msg};
use common::service_fixture::{Daemon, Launch, NotifySocket};
use common::tone::tone_over_neighbours;
use jack::contrib::ClosureProcessHandler;
use jack::{AudioOut, Client, ClientOptions, Control, ProcessScope};
use latentd_tests::{JackCapture, JackSession};
use rosc::{OscMessage, OscType};
use tempfile::TempDir;

/// The tone fed into the input ports.
const TONE_HZ: f32 = 1000.0;
/// Its peak level.
const TONE_LEVEL: f32 = 0.5;
/// The silent loop the daemon starts with, seconds.
const LOOP_S: &str = "2";
/// Frames analysed for each spectrum (0.25 s: 4 Hz bins).
const WINDOW: usize = 12_000;

/// A client `tone` with two outputs playing the sine (a preallocated closure: no
/// allocation in its callback), linked to latentd's input ports.
fn play_tone_into_latentd() -> jack::AsyncClient<(), impl jack::ProcessHandler> {
    let (client, _) = Client::new("tone", ClientOptions::NO_START_SERVER).expect("tone client");
    let mut out_1 = client.register_port("out_1", AudioOut::default()).unwrap();
    let mut out_2 = client.register_port("out_2", AudioOut::default()).unwrap();
    let mut frame: u64 = 0;
    let step = TAU * TONE_HZ / RATE as f32;
    let handler = ClosureProcessHandler::new(move |_: &Client, ps: &ProcessScope| {
        let (a, b) = (out_1.as_mut_slice(ps), out_2.as_mut_slice(ps));
        for (i, (l, r)) in a.iter_mut().zip(b.iter_mut()).enumerate() {
            // The phase kept within one second of whole cycles: no precision drift.
            let n = (frame + i as u64) % u64::from(RATE);
            let v = TONE_LEVEL * (step * n as f32).sin();
            *l = v;
            *r = v;
        }
        frame += a.len() as u64;
        Control::Continue
    });
    let active = client
        .activate_async((), handler)
        .expect("activate the tone");
    for k in 1..=2 {
        active
            .as_client()
            .connect_ports_by_name(&format!("tone:out_{k}"), &format!("latentd:in_{k}"))
            .unwrap_or_else(|e| panic!("tone:out_{k} -> latentd:in_{k}: {e}"));
    }
    active
}

/// `latentd --audio jack --engine off --loop-seconds 2 <extra>` on `session`'s server.
fn start_daemon(session: &JackSession, dir: &TempDir, extra: &[&str]) -> (Daemon, Link) {
    let notify = NotifySocket::bind(dir.path());
    let args: Vec<&str> = ["--loop-seconds", LOOP_S]
        .iter()
        .chain(extra)
        .copied()
        .collect();
    let mut daemon = Daemon::start(
        dir,
        Launch::engine_off_on_jack(session.server.name(), &notify, &args),
    );
    daemon.until_ready(&notify, START);
    let osc = Link::connect(daemon.osc_addr(Duration::from_secs(5)), Transport::Udp);
    (daemon, osc)
}

fn is_fail(m: &OscMessage) -> bool {
    m.addr == "/fail"
}

/// The reason of a `/fail`.
fn reason(m: &OscMessage) -> String {
    match m.args.get(1) {
        Some(OscType::String(s)) => s.clone(),
        other => panic!("not a /fail reason: {other:?} in {m:?}"),
    }
}

#[test]
fn a_tone_fed_into_the_input_ports_becomes_the_source_and_is_heard() {
    let session = JackSession::start(RATE, PERIOD);
    let dir = TempDir::new().unwrap();
    // Captures are also saved, as WAVs, in a folder of their own.
    let saves = dir.path().join("captures");
    std::fs::create_dir(&saves).unwrap();
    let config = dir.path().join("latentd.toml");
    std::fs::write(
        &config,
        format!("[capture]\nsave = {:?}\n", saves.display().to_string()),
    )
    .unwrap();
    let config = config.display().to_string();
    let (daemon, mut osc) = start_daemon(&session, &dir, &["--inputs", "2", "--config", &config]);
    let ports = session.server.list_ports();
    for port in [
        "latentd:in_1",
        "latentd:in_2",
        "latentd:out_1",
        "latentd:out_2",
    ] {
        assert!(ports.iter().any(|p| p == port), "{port} missing: {ports:?}");
    }
    let tone = play_tone_into_latentd();
    let listener = JackCapture::connected("listener", ["latentd:out_1", "latentd:out_2"]);

    // Before: the silent loop, no tone in the output.
    listener.record(WINDOW, Duration::from_secs(5));
    let before: Vec<f32> = {
        let rec = listener.recording();
        let end = rec.frames();
        (end - WINDOW..end).map(|i| rec.frame(i)[0]).collect()
    };
    let (tone_before, _) = tone_over_neighbours(&before, TONE_HZ, RATE);
    assert!(
        tone_before < 1e-8,
        "a tone before the capture: {tone_before}"
    );

    // One second of the input, from the next wrap of the two-second loop: a loop of
    // another length, so the ring plays the capture itself (`--engine off`).
    osc.send(&msg(
        "/capture/start",
        vec![OscType::Float(1.0), OscType::Int(1)],
    ));
    let started = osc.answer("/capture/start", Duration::from_secs(2));
    assert!(!is_fail(&started), "{started:?}");
    let done = osc.answer("/source", Duration::from_secs(10));
    assert!(!is_fail(&done), "{done:?}\n{:?}", daemon.lines());
    // The reply names the saved WAV: one second of the tone on both ports.
    let Some(OscType::String(saved)) = done.args.get(1) else {
        panic!("no file in {done:?}");
    };
    let saved = std::path::PathBuf::from(saved);
    assert_eq!(saved.parent(), Some(saves.as_path()), "{saved:?}");
    let wav = hound::WavReader::open(&saved).unwrap();
    let spec = wav.spec();
    assert_eq!((spec.channels, spec.sample_rate), (2, RATE));
    assert_eq!(wav.duration(), RATE);
    let left: Vec<f32> = wav
        .into_samples::<f32>()
        .step_by(2)
        .map(Result::unwrap)
        .collect();
    let (tone_saved, _) = tone_over_neighbours(&left, TONE_HZ, RATE);
    assert!(
        tone_saved > 0.5 * TONE_LEVEL * TONE_LEVEL / 4.0,
        "{tone_saved}"
    );
    // Nothing else is left in the folder (no partial file).
    assert_eq!(std::fs::read_dir(&saves).unwrap().count(), 1);
    // The reader adopts the new loop at its next turn, then crossfades into it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while (osc.status_among_others(Duration::from_secs(2)).loop_s - 1.0).abs() > 0.01 {
        assert!(
            Instant::now() < deadline,
            "the loop is still {} s",
            osc.status_among_others(Duration::from_secs(2)).loop_s
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    listener.record(WINDOW, Duration::from_secs(5));
    let after: Vec<f32> = {
        let rec = listener.recording();
        let end = rec.frames();
        (end - WINDOW..end).map(|i| rec.frame(i)[0]).collect()
    };
    let (tone_after, neighbours) = tone_over_neighbours(&after, TONE_HZ, RATE);
    eprintln!(
        "1 kHz bin before {tone_before:.3e}, after {tone_after:.3e}; neighbours after \
         {neighbours:.3e}; {:?}",
        daemon
            .lines()
            .iter()
            .filter(|l| l.contains("capture"))
            .collect::<Vec<_>>()
    );
    // A full-scale sine of peak A has power A²/4 in its bin.
    let expected = TONE_LEVEL * TONE_LEVEL / 4.0;
    assert!(
        tone_after > 0.5 * expected,
        "the tone's bin: {tone_after}, a sine at {TONE_LEVEL} gives {expected}"
    );
    assert!(
        tone_after > 1000.0 * neighbours,
        "the tone's bin {tone_after} against its neighbours' {neighbours}"
    );
    // The compensated latency comes from the server: the outputs' playback latency holds
    // at least latentd's own period.
    let started = daemon.wait_line("capture: started", Duration::from_secs(1));
    let latency: u32 = started
        .split(" frames of latency")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no latency in {started}"));
    assert!(latency >= PERIOD as u32, "{started}");
    assert!(
        !daemon.has_line("the callback dropped"),
        "{:?}",
        daemon.lines()
    );
    // The state file remembers the saved capture as the source.
    std::thread::sleep(Duration::from_secs(1));
    let state = std::fs::read_to_string(&daemon.state).unwrap();
    assert!(
        state.contains(saved.file_name().unwrap().to_str().unwrap()),
        "{state}"
    );
    drop(listener);
    tone.deactivate().expect("deactivate the tone");
}

#[test]
fn bad_captures_fail_and_change_nothing() {
    let session = JackSession::start(RATE, PERIOD);
    let dir = TempDir::new().unwrap();
    let (daemon, mut osc) = start_daemon(&session, &dir, &["--inputs", "2"]);
    let loop_s = osc.status_among_others(Duration::from_secs(2)).loop_s;
    for (args, why) in [
        (vec![OscType::Float(0.0)], "above 0"),
        (vec![OscType::Float(-1.0)], "above 0"),
        (vec![OscType::Float(601.0)], "at most 600"),
        (vec![OscType::Float(f32::NAN)], "finite"),
        (vec![OscType::Float(1.0), OscType::Int(2)], "i 0 or i 1"),
        (vec![OscType::String("long".into())], "seconds"),
    ] {
        osc.send(&msg("/capture/start", args.clone()));
        let m = osc.answer("/capture/start", Duration::from_secs(2));
        assert!(is_fail(&m), "{args:?}: {m:?}");
        assert!(reason(&m).contains(why), "{args:?}: {}", reason(&m));
    }
    // Nothing runs: a stop fails.
    osc.send(&msg("/capture/stop", vec![]));
    let m = osc.answer("/capture/stop", Duration::from_secs(2));
    assert!(is_fail(&m) && reason(&m).contains("no capture"), "{m:?}");
    // One capture at a time (quantized to a wrap two seconds away: still waiting).
    osc.send(&msg(
        "/capture/start",
        vec![OscType::Float(1.0), OscType::Int(1)],
    ));
    assert!(!is_fail(
        &osc.answer("/capture/start", Duration::from_secs(2))
    ));
    osc.send(&msg("/capture/start", vec![]));
    let m = osc.answer("/capture/start", Duration::from_secs(2));
    assert!(
        is_fail(&m) && reason(&m).contains("already running"),
        "{m:?}"
    );
    // Stopped before any audio (it had to wait for the wrap, or it had only the latency):
    // the source path fails and the loop stays.
    osc.send(&msg("/capture/stop", vec![]));
    assert!(!is_fail(
        &osc.answer("/capture/stop", Duration::from_secs(2))
    ));
    let m = osc.answer("/source", Duration::from_secs(10));
    assert!(is_fail(&m), "{m:?}");
    assert_eq!(
        osc.status_among_others(Duration::from_secs(2)).loop_s,
        loop_s
    );
    drop(daemon);
}

#[test]
fn a_capture_without_input_ports_fails_with_the_reason() {
    let session = JackSession::start(RATE, PERIOD);
    let dir = TempDir::new().unwrap();
    let (_daemon, mut osc) = start_daemon(&session, &dir, &[]);
    let loop_s = osc.status_among_others(Duration::from_secs(2)).loop_s;
    assert!(
        !session
            .server
            .list_ports()
            .iter()
            .any(|p| p == "latentd:in_1"),
        "no input ports without --inputs"
    );
    osc.send(&msg("/capture/start", vec![]));
    let m = osc.answer("/capture/start", Duration::from_secs(2));
    assert!(is_fail(&m), "{m:?}");
    assert!(
        reason(&m).contains("no input ports") && reason(&m).contains("audio.inputs = 0"),
        "{}",
        reason(&m)
    );
    assert_eq!(
        osc.status_among_others(Duration::from_secs(2)).loop_s,
        loop_s
    );
}

#[test]
fn the_null_output_has_no_input_ports_to_capture() {
    let dir = TempDir::new().unwrap();
    let notify = NotifySocket::bind(dir.path());
    let mut daemon = Daemon::start(
        &dir,
        Launch {
            notify: Some(&notify),
            args: ["--engine", "off", "--inputs", "2"]
                .iter()
                .map(|a| a.to_string())
                .collect(),
            ..Launch::default()
        },
    );
    daemon.until_ready(&notify, START);
    assert!(
        daemon.has_line("has no input ports"),
        "{:?}",
        daemon.lines()
    );
    let mut osc = Link::connect(daemon.osc_addr(Duration::from_secs(5)), Transport::Udp);
    osc.send(&msg("/capture/start", vec![]));
    let m = osc.answer("/capture/start", Duration::from_secs(2));
    assert!(
        is_fail(&m) && reason(&m).contains("no input ports"),
        "{m:?}"
    );
}
