//! The real `latentd` binary across restarts of its JACK server: the test's
//! private `jackd -d dummy` is killed (SIGKILL, as a crash) and later stopped cleanly
//! (SIGTERM, as `systemctl stop`), each time brought back under the same name, while one
//! daemon keeps running. Each round checks that the daemon lives through the outage (OSC
//! `/status` answers, a knob set before keeps its value, the playhead stands still at a
//! sane place), logs the loss and the return, and that within [`RETURN_LIMIT`] of the
//! server answering again its ports exist and are linked to `system:playback_1`/`_2`
//! (autoconnect) and to a capture client (the links it learned before the loss), which
//! then hears the source loop unbroken at full level. At the end SIGTERM exits 0.
//!
//! The capture comes back at once after the first outage; after the second, a client of
//! its name first holds its ports inactive for a while (as any client does, briefly,
//! between registering and activating), which JACK refuses to link: the daemon must keep
//! retrying those links rather than forget them.
//!
//! The daemon plays, with `--engine off`, a one-second loop of a 440 Hz quadrature pair
//! (`out_1` = A·sin, `out_2` = A·cos), as in `jack_capture.rs`: every captured frame then
//! has envelope √(L² + R²) = A and advances the phase atan2(L, R) by the tone's step, so
//! silence, a dropout or foreign audio all fail the check.
//!
//! What `/status` shows of an outage: `output` is `lost`, then `reconnecting`, then
//! `running` again with `output_reconnects` one higher; a `/notify` subscriber is pushed a
//! `/status.reply` at each change. `playhead_s` stands still while no callback runs; its
//! `backend` is the engine's (`off` here), and `xruns` counts the output's xruns, which a
//! lost server does not report; neither moves, and the test checks that they do not lie
//! about it.
//!
//! Threading: libjack finds the private server through the process-wide
//! `JACK_DEFAULT_SERVER`, so each test holds a [`JackSession`] (one at a time per
//! process) while its server runs. libjack shares one connection state among the clients of a
//! process, so the test leaks (abandons) its capture client of a dead server before the
//! server returns, as the daemon does with its own client.

#![cfg(feature = "jack")]

mod common;

use std::time::{Duration, Instant};

use common::jack_tone::{
    FULL_LEVEL_TOLERANCE, PERIOD, PHASE_TOLERANCE, RATE, TONE, start_tone_daemon,
};
use common::service_fixture::{Daemon, NotifySocket, Osc, Status};
use latentd_tests::{JackCapture, JackServer, JackSession, Recording};
use rosc::OscType;
use tempfile::TempDir;

/// The promise: this long after the server answers again, latentd's ports are back and
/// linked. The supervisor retries at most every half second (plus a 50 ms tick), and
/// reopening takes a probe client, a client, two ports and the links (0.1 to 0.25 s
/// measured on a loaded 2-core machine): no margin beyond the promise is needed.
const RETURN_LIMIT: Duration = Duration::from_secs(2);
/// How long the loss may take to be noticed: JACK's shutdown notice comes at once; the
/// stall detector (3 s without a callback) is the fallback.
const LOSS_LIMIT: Duration = Duration::from_secs(4);
/// How long the server stays away: long enough for several reopen attempts to fail, so
/// the retry delay has grown to its 0.5 s cap when the server returns.
const AWAY: Duration = Duration::from_millis(2500);
/// The knob set before the first outage, and its value.
const KNOB: (&str, f64) = ("denoise", 0.75);

/// Whether `jack_lsp -c` shows `out_1` feeding exactly `peers_1` and `out_2` `peers_2`.
fn linked_to(server: &JackServer, peers_1: &[&str], peers_2: &[&str]) -> bool {
    let graph = server.connections();
    let is = |port: &str, peers: &[&str]| {
        graph
            .get(port)
            .is_some_and(|have| have.iter().map(String::as_str).eq(peers.iter().copied()))
    };
    is("latentd:out_1", peers_1) && is("latentd:out_2", peers_2)
}

/// The graph and the daemon's log, for a failure message.
fn context(daemon: &Daemon, server: &JackServer) -> String {
    format!(
        "graph: {:?}\njackd log:\n{}\ndaemon log:\n{}",
        server.connections(),
        server.log(),
        daemon.lines().join("\n")
    )
}

/// Poll `condition` every 10 ms until `limit` has passed since `from` (then panic with
/// `diagnose`'s text); returns how long it took.
fn within(
    what: &str,
    from: Instant,
    limit: Duration,
    diagnose: &dyn Fn() -> String,
    mut condition: impl FnMut() -> bool,
) -> Duration {
    while !condition() {
        assert!(
            from.elapsed() < limit,
            "{what}: not within {limit:?} ({:?} passed); {}",
            from.elapsed(),
            diagnose()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = from.elapsed();
    eprintln!("{what}: after {took:?}");
    took
}

/// The daemon's stderr lines from index `mark` on that contain `text`.
fn lines_since(daemon: &Daemon, mark: usize, text: &str) -> Vec<String> {
    daemon.lines()[mark..]
        .iter()
        .filter(|l| l.contains(text))
        .cloned()
        .collect()
}

/// Check that `rec` hears the source loop: from the first whole cycle at full level (the
/// links are made one by one, so it may start on silence and one channel) to the end,
/// at least `min_frames` frames of the tone at full level with the tone's phase step at
/// every frame (no dropout, no silence, no skipped, repeated or foreign sample).
fn assert_hears_the_loop(rec: &Recording, min_frames: usize, what: &str) {
    let mut start = None;
    let mut at = 0;
    for period in &rec.periods {
        let end = at + period.frames as usize;
        if (at..end).all(|i| (TONE.envelope(rec, i) - 1.0).abs() <= FULL_LEVEL_TOLERANCE) {
            start = Some(at);
            break;
        }
        at = end;
    }
    let start = start.unwrap_or_else(|| {
        panic!(
            "{what}: the capture never heard the loop at full level for a cycle ({} frames, \
             peak envelope {:.3})",
            rec.frames(),
            (0..rec.frames())
                .map(|i| TONE.envelope(rec, i))
                .fold(0.0, f32::max)
        )
    });
    let heard = rec.frames() - start;
    assert!(
        heard >= min_frames,
        "{what}: the loop heard for {heard} frames, {min_frames} wanted"
    );
    let step = TONE.phase_step();
    for i in start..rec.frames() {
        let e = TONE.envelope(rec, i);
        assert!(
            (e - 1.0).abs() <= FULL_LEVEL_TOLERANCE,
            "{what}: envelope {e:.4} of full level at frame {i} (full from {start}); {:?}",
            rec.frame(i)
        );
        if i > start {
            let d = TONE.step_at(rec, i);
            assert!(
                (d - step).abs() <= PHASE_TOLERANCE,
                "{what}: phase step {d:.5} rad at frame {i}, the tone's is {step:.5}"
            );
        }
    }
    eprintln!("{what}: the loop heard unbroken for {heard} frames from frame {start}");
}

/// A daemon playing the loop into `session`'s server with autoconnect, a capture client
/// hearing it, and an OSC client.
struct Playing {
    daemon: Daemon,
    osc: Osc,
    /// The capture on the server now; `None` only while it is replaced.
    capture: Option<JackCapture>,
    /// A `/notify` subscriber: pushed a `/status.reply` at each change of the output.
    watcher: Osc,
    _notify: NotifySocket,
}

/// The next `/status.reply` pushed to `watcher`, parsed (panics after `limit`).
fn pushed_status(watcher: &Osc, limit: Duration) -> Status {
    let m = watcher
        .reply("/status.reply", limit)
        .expect("no /status.reply pushed to the subscriber");
    Status::parse(&m.args)
}

fn start_playing(session: &JackSession, dir: &TempDir) -> Playing {
    let notify = NotifySocket::bind(dir.path());
    let config = dir.path().join("latentd.toml");
    std::fs::write(&config, "[log]\nlevel = \"info\"\n").unwrap();
    let daemon = start_tone_daemon(session, dir, &notify, &config, &["--autoconnect"]);
    let osc = Osc::new(daemon.osc_addr(Duration::from_secs(2)));
    within(
        "autoconnected to system:playback_1/2",
        Instant::now(),
        Duration::from_secs(2),
        &|| context(&daemon, &session.server),
        || {
            linked_to(
                &session.server,
                &["system:playback_1"],
                &["system:playback_2"],
            )
        },
    );
    let capture = JackCapture::connected("capture", ["latentd:out_1", "latentd:out_2"]);
    capture.record(RATE as usize / 2, Duration::from_secs(10));
    assert_hears_the_loop(&capture.recording(), RATE as usize / 4, "before any outage");
    osc.send(
        &format!("/knob/{}", KNOB.0),
        vec![OscType::Float(KNOB.1 as f32)],
    );
    assert_eq!(osc.knob(KNOB.0), KNOB.1);
    let watcher = Osc::new(daemon.osc_addr(Duration::from_secs(2)));
    watcher
        .ask("/notify", vec![OscType::Int(1)], "/done")
        .expect("/notify 1 answered");
    Playing {
        daemon,
        osc,
        watcher,
        capture: Some(capture),
        _notify: notify,
    }
}

/// How the capture client comes back after an outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CaptureReturns {
    /// Its ports registered and the client activated at once ([`JackCapture::start`]).
    AtOnce,
    /// First a client of the same name whose ports stay inactive for a while, as a slow
    /// client's would between registering and activating: JACK refuses to link them,
    /// and the daemon must keep the links pending rather than forget them.
    InactiveFirst,
}

/// How long the inactive client of [`CaptureReturns::InactiveFirst`] holds its ports:
/// many supervisor ticks (50 ms), each trying to link them and refused.
const INACTIVE_FOR: Duration = Duration::from_millis(500);

/// Register `capture:in_1` and `capture:in_2` on a client that never activates, hold them
/// for [`INACTIVE_FOR`], check that JACK kept them unlinked, and close the client.
fn ports_before_activation(server: &JackServer) {
    let (client, _) = jack::Client::new("capture", jack::ClientOptions::NO_START_SERVER)
        .expect("opening the inactive capture client");
    let _ports = ["in_1", "in_2"].map(|port| {
        client
            .register_port(port, jack::AudioIn::default())
            .expect("registering an inactive capture port")
    });
    std::thread::sleep(INACTIVE_FOR);
    assert!(
        linked_to(server, &["system:playback_1"], &["system:playback_2"]),
        "linked to an inactive client: {:?}",
        server.connections()
    );
    drop(client);
}

/// What one round measured, for the report.
struct Round {
    loss_noticed: Duration,
    ports_back: Duration,
    system_links_back: Duration,
    capture_links_back: Duration,
}

/// Stop the server with `stop`, keep it away for [`AWAY`], bring it back, and check the
/// daemon through it all (see the module doc). `round` counts from 1.
fn outage_round(
    session: &mut JackSession,
    playing: &mut Playing,
    round: usize,
    stop: fn(&mut JackServer),
    capture_returns: CaptureReturns,
) -> Round {
    let before = playing.osc.status();
    assert_eq!(
        (before.output.as_str(), before.output_reconnects),
        ("running", round as i32 - 1),
        "{before:?}"
    );
    let mark = playing.daemon.lines().len();
    let gone = Instant::now();
    stop(&mut session.server);
    // Leaked: its server is dead (see the module doc and JackCapture::abandon).
    if let Some(capture) = playing.capture.take() {
        capture.abandon();
    }

    let loss_noticed = within(
        "the loss logged",
        gone,
        LOSS_LIMIT,
        &|| context(&playing.daemon, &session.server),
        || !lines_since(&playing.daemon, mark, "jack output lost").is_empty(),
    );
    let lost = lines_since(&playing.daemon, mark, "jack output lost");
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert!(
        lost[0].contains("WARN") && lost[0].contains("the engine keeps running"),
        "{lost:?}"
    );

    // The subscriber hears of the loss (lost, or already reconnecting), unasked.
    let pushed = pushed_status(&playing.watcher, LOSS_LIMIT);
    assert!(
        ["lost", "reconnecting"].contains(&pushed.output.as_str()),
        "{pushed:?}"
    );

    // Through the outage: alive, answering, its state kept, the playhead standing still.
    std::thread::sleep(Duration::from_millis(200));
    let during = playing.osc.status();
    std::thread::sleep(Duration::from_millis(300));
    let later = playing.osc.status();
    assert_eq!(
        playing.daemon.exited(),
        None,
        "{:?}",
        playing.daemon.lines()
    );
    assert_eq!(
        during.playhead_s, later.playhead_s,
        "the playhead moved with no server"
    );
    assert!(
        (0.0..later.loop_s).contains(&later.playhead_s),
        "playhead {} outside the {} s loop",
        later.playhead_s,
        later.loop_s
    );
    assert_eq!(
        (later.backend.as_str(), later.loop_s, later.sample_rate),
        (before.backend.as_str(), before.loop_s, before.sample_rate)
    );
    // No server, no xrun reports: the counter stands still too (it does not count the loss).
    assert_eq!(later.xruns, during.xruns, "{during:?} -> {later:?}");
    assert!(
        ["lost", "reconnecting"].contains(&later.output.as_str()),
        "{later:?}"
    );
    assert_eq!(later.output_reconnects, before.output_reconnects);
    assert_eq!(playing.osc.knob(KNOB.0), KNOB.1);

    let away = AWAY.saturating_sub(gone.elapsed());
    std::thread::sleep(away);
    let failures = lines_since(&playing.daemon, mark, "cannot reopen the jack output yet");
    assert_eq!(
        failures.len(),
        1,
        "one warning, then quiet retries: {failures:?}"
    );
    let early = lines_since(&playing.daemon, mark, "jack output back");
    assert!(early.is_empty(), "back with no server: {early:?}");
    // An attempt to reopen has failed (the warning above): reconnecting.
    let waiting = playing.osc.status();
    assert_eq!(waiting.output, "reconnecting", "{waiting:?}");

    session.server.restart(RATE, PERIOD);
    let back = Instant::now();
    let ports_back = within(
        "latentd's ports registered again",
        back,
        RETURN_LIMIT,
        &|| context(&playing.daemon, &session.server),
        || {
            let graph = session.server.connections();
            ["latentd:out_1", "latentd:out_2"]
                .iter()
                .all(|p| graph.contains_key(*p))
        },
    );
    let system_links_back = within(
        "latentd's ports linked to system:playback_1/2 again",
        back,
        RETURN_LIMIT,
        &|| context(&playing.daemon, &session.server),
        || {
            linked_to(
                &session.server,
                &["system:playback_1"],
                &["system:playback_2"],
            )
        },
    );
    let returned = playing.osc.status();
    assert_eq!(
        (returned.output.as_str(), returned.output_reconnects),
        ("running", round as i32),
        "{returned:?}"
    );
    // The subscriber was pushed every change since the loss, the last one the return.
    let mut last_pushed = pushed;
    while let Some(m) = playing
        .watcher
        .reply("/status.reply", Duration::from_millis(200))
    {
        last_pushed = Status::parse(&m.args);
    }
    assert_eq!(
        (last_pushed.output.as_str(), last_pushed.output_reconnects),
        ("running", round as i32),
        "{last_pushed:?}"
    );
    let back_lines = lines_since(&playing.daemon, mark, "jack output back after");
    assert_eq!(back_lines.len(), 1, "{back_lines:?}");
    assert!(
        back_lines[0].contains("waiting for capture:in_1"),
        "{back_lines:?}"
    );

    if capture_returns == CaptureReturns::InactiveFirst {
        ports_before_activation(&session.server);
    }
    // A capture client under the old name: the daemon links it as it was linked before.
    let capture_start = Instant::now();
    let capture = JackCapture::start("capture");
    let capture_links_back = within(
        "latentd's ports linked to the capture again",
        capture_start,
        RETURN_LIMIT,
        &|| context(&playing.daemon, &session.server),
        || {
            linked_to(
                &session.server,
                &["capture:in_1", "system:playback_1"],
                &["capture:in_2", "system:playback_2"],
            )
        },
    );
    capture.record(RATE as usize / 2, Duration::from_secs(10));
    assert_hears_the_loop(
        &capture.recording(),
        RATE as usize / 4,
        &format!("after outage {round}"),
    );
    playing.capture = Some(capture);

    // Playing again: the playhead moves, the state is the one from before.
    let a = playing.osc.status();
    std::thread::sleep(Duration::from_millis(100));
    let b = playing.osc.status();
    assert_ne!(a.playhead_s, b.playhead_s, "the playhead stands still");
    assert_eq!(playing.osc.knob(KNOB.0), KNOB.1);
    assert_eq!(
        lines_since(&playing.daemon, mark, "jack output lost").len(),
        1,
        "lost again after the return: {:?}",
        playing.daemon.lines()
    );
    eprintln!(
        "daemon log of outage {round}:\n{}",
        playing.daemon.lines()[mark..].join("\n")
    );
    Round {
        loss_noticed,
        ports_back,
        system_links_back,
        capture_links_back,
    }
}

#[test]
fn latentd_plays_on_after_its_jack_server_is_killed_and_after_it_stops_cleanly() {
    let mut session = JackSession::start(RATE, PERIOD);
    let dir = TempDir::new().unwrap();
    let mut playing = start_playing(&session, &dir);

    let killed = outage_round(
        &mut session,
        &mut playing,
        1,
        JackServer::kill,
        CaptureReturns::AtOnce,
    );
    // SIGTERM: jackd disconnects every port, then tells its clients it is going; the links
    // removed in that moment must still come back.
    let stopped = outage_round(
        &mut session,
        &mut playing,
        2,
        JackServer::terminate,
        CaptureReturns::InactiveFirst,
    );
    for (how, r) in [("killed", killed), ("stopped cleanly", stopped)] {
        eprintln!(
            "{how}: loss logged after {:?}; after the server answered again: ports after \
             {:?}, system links after {:?}; capture links {:?} after the capture opened",
            r.loss_noticed, r.ports_back, r.system_links_back, r.capture_links_back
        );
    }

    let (status, took) = playing.daemon.terminate();
    assert_eq!(status.code(), Some(0), "{:?}", playing.daemon.lines());
    assert!(took < Duration::from_secs(1), "exit took {took:?}");
    let lines = playing.daemon.lines();
    for (text, count) in [("jack output lost", 2), ("jack output back after", 2)] {
        let found = lines.iter().filter(|l| l.contains(text)).count();
        assert_eq!(found, count, "{text:?}: {lines:?}");
    }
    assert!(!lines.iter().any(|l| l.contains("panicked")), "{lines:?}");
    if let Some(capture) = playing.capture.take() {
        drop(capture.finish());
    }
    drop(session);
}
