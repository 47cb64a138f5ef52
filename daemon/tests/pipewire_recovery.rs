//! The real `latentd` binary across a restart of its PipeWire server: `latentd --audio
//! pipewire` plays a 1 kHz tone loop (`--source`, `--engine off`) into a private PipeWire
//! graph (D-Bus, pipewire, WirePlumber, a null sink), and the null sink's monitor, recorded
//! with `pw-record`, hears it. Then the graph's pipewire and wireplumber are killed
//! (SIGKILL, as a crash) while the daemon keeps running: within [`LOSS_LIMIT`] `/status`
//! says the output is `lost` (then `reconnecting`), the log says why, and OSC still
//! answers. The servers are started again in the same runtime directory, without a sink
//! at first (as a sound card's sink may appear a moment after the servers): within
//! [`RETURN_LIMIT`] `/status` says `running` with `output_reconnects` 1 and the daemon's
//! node is in the new graph, and it stays so while the session manager has no sink to
//! link it to ([`SINKLESS`]; it tells the stream "no node available", which is no loss).
//! Then a new null sink of the same name appears, becomes the default sink, and its
//! monitor hears the tone again, still after one reconnect. At the end SIGTERM exits 0.
//!
//! The daemon is a debug build whose callbacks abort on an allocation (`assert_no_alloc`).
//!
//! When the graph cannot start (or `pw-record` is missing) the test prints `SKIPPED:` and
//! passes, unless `LATENTD_REQUIRE_PIPEWIRE=1`, which turns the skip into a failure.
//!
//! Threading: the daemon and the PipeWire tools are child processes; the graph's processes
//! are stopped by [`PipeWireGraph`]'s drop.

mod common;

use std::f32::consts::TAU;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::pipewire::{daemon_env, in_path, skip_or_fail, wait_for_node};
use common::service_fixture::{Daemon, Launch, NotifySocket, Osc, Status};
use common::tone::tone_over_neighbours;
use latentd_tests::pipewire_graph::{PipeWireGraph, stop_gracefully};
use tempfile::TempDir;

/// The daemon's playback node (`--client-name` is the default, `latentd`).
const NODE: &str = "latentd";
const RATE: u32 = 48_000;
/// The source loop's tone and its peak level.
const TONE_HZ: f32 = 1000.0;
const TONE_LEVEL: f32 = 0.5;
/// Frames analysed for each spectrum (0.25 s: 4 Hz bins).
const WINDOW: usize = 12_000;
/// How long the loss may take to show in `/status`: the connection closes with the
/// server, and the supervisor looks every 50 ms.
const LOSS_LIMIT: Duration = Duration::from_secs(2);
/// How long the servers stay away: long enough for several reopen attempts to fail, so the
/// retry delay has grown to its 0.5 s cap when the server returns.
const AWAY: Duration = Duration::from_millis(2000);
/// How long after the servers are back (WirePlumber connected) `/status` may take to say
/// `running` again: a retry every 0.5 s at most, plus a loaded machine.
const RETURN_LIMIT: Duration = Duration::from_secs(3);
/// How long the new graph stays without a sink once the daemon's output is back.
const SINKLESS: Duration = Duration::from_millis(1000);
/// Takes of [`hear_tone`] until the tone is heard: the session manager links the new
/// stream a moment after the sink exists, and a loaded machine may run the graph behind.
const TAKES: usize = 5;

/// The left channel of the last [`WINDOW`] frames of a stereo float WAV (empty when the
/// recording is shorter, or was not written).
fn last_window_left(path: &Path) -> Vec<f32> {
    let Ok(wav) = hound::WavReader::open(path) else {
        return Vec::new();
    };
    assert_eq!(wav.spec().channels, 2);
    let left: Vec<f32> = wav
        .into_samples::<f32>()
        .step_by(2)
        .map(Result::unwrap)
        .collect();
    left[left.len().saturating_sub(WINDOW)..].to_vec()
}

/// The power a sine at [`TONE_LEVEL`] puts in its bin.
const TONE_POWER: f32 = TONE_LEVEL * TONE_LEVEL / 4.0;

/// Whether `(tone, neighbours)` power (from [`tone_over_neighbours`]) is the tone heard: at
/// least half its power, and 1000 times its neighbours'.
fn tone_heard((tone, neighbours): (f32, f32)) -> bool {
    tone > 0.5 * TONE_POWER && tone > 1000.0 * neighbours
}

/// Asserts [`tone_heard`] of what [`hear_tone`] heard `when` (panics with `diagnose`'s
/// text).
fn assert_tone_heard(when: &str, (tone, neighbours): (f32, f32), diagnose: &dyn Fn() -> String) {
    assert!(
        tone_heard((tone, neighbours)),
        "{when}: the tone's bin {tone:.3e} (a sine at {TONE_LEVEL} gives {TONE_POWER:.3e}), \
         its neighbours' {neighbours:.3e}\n{}",
        diagnose()
    );
}

/// Asserts the `/status` output state and reconnect count (panics with `diagnose`'s text).
fn assert_output(status: &Status, state: &str, reconnects: i32, diagnose: &dyn Fn() -> String) {
    assert_eq!(
        (status.output.as_str(), status.output_reconnects),
        (state, reconnects),
        "{}",
        diagnose()
    );
}

/// Record the null sink's monitor with `pw-record` for 0.7 s, up to [`TAKES`] times until
/// the tone is in the last window; the tone's and its neighbours' power in the last take.
fn hear_tone(graph: &PipeWireGraph, dir: &Path, what: &str) -> (f32, f32) {
    let mut result = (0.0, 0.0);
    for take in 1..=TAKES {
        let path = dir.join(format!("{what}-{take}.wav"));
        let mut recorder = graph
            .command("pw-record")
            .args(["--target", graph.sink_name()])
            .args(["--format", "f32", "--rate", "48000", "--channels", "2"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pw-record");
        std::thread::sleep(Duration::from_millis(700));
        stop_gracefully(&mut recorder);
        let window = last_window_left(&path);
        if window.len() == WINDOW {
            result = tone_over_neighbours(&window, TONE_HZ, RATE);
            if tone_heard(result) {
                eprintln!(
                    "{what}: the tone heard in take {take}: {:.3e} against {:.3e}",
                    result.0, result.1
                );
                return result;
            }
        }
    }
    result
}

/// Poll `/status` every 20 ms until `condition` holds (panics after `limit` since `from`,
/// with `diagnose`'s text); the status that satisfied it.
fn status_within(
    osc: &Osc,
    what: &str,
    from: Instant,
    limit: Duration,
    diagnose: &dyn Fn() -> String,
    condition: impl Fn(&Status) -> bool,
) -> Status {
    loop {
        let status = osc.status();
        if condition(&status) {
            eprintln!("{what}: after {:?}", from.elapsed());
            return status;
        }
        assert!(
            from.elapsed() < limit,
            "{what}: not within {limit:?}; last /status: output {} reconnects {}\n{}",
            status.output,
            status.output_reconnects,
            diagnose()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_pipewire_output_comes_back_after_the_server_restarts() {
    if !in_path("pw-record") {
        return skip_or_fail("pipewire recovery test", "`pw-record` not found in PATH");
    }
    let mut graph = match PipeWireGraph::start() {
        Ok(graph) => graph,
        Err(reason) => return skip_or_fail("pipewire recovery test", &reason.to_string()),
    };
    let dir = TempDir::new().unwrap();
    let tone: Vec<f32> = (0..RATE)
        .flat_map(|i| {
            let v = TONE_LEVEL * (TAU * TONE_HZ * i as f32 / RATE as f32).sin();
            [v, v]
        })
        .collect();
    let source = dir.path().join("tone.wav");
    common::write_float_wav(&source, 2, RATE, &tone);

    let notify = NotifySocket::bind(dir.path());
    let mut daemon = Daemon::start(
        &dir,
        Launch {
            audio: "pipewire",
            notify: Some(&notify),
            env: daemon_env(&graph),
            args: ["--engine", "off", "--source"]
                .iter()
                .map(|a| a.to_string())
                .chain([source.display().to_string()])
                .collect(),
            ..Launch::default()
        },
    );
    notify.until("READY=1", Duration::from_secs(30));
    wait_for_node(&graph, &daemon, NODE);
    let osc = Osc::new(daemon.osc_addr(Duration::from_secs(2)));
    assert_output(&osc.status(), "running", 0, &|| daemon.lines().join("\n"));
    assert_tone_heard(
        "before the restart",
        hear_tone(&graph, dir.path(), "before"),
        &|| format!("{}\n{}", daemon.lines().join("\n"), graph.log_tail(30)),
    );

    // The servers go away; the daemon lives on and says so.
    let mark = daemon.lines().len();
    let killed = Instant::now();
    graph.kill_servers();
    let diagnose = || daemon.lines().join("\n");
    status_within(&osc, "output lost", killed, LOSS_LIMIT, &diagnose, |s| {
        s.output != "running"
    });
    daemon.wait_line("pipewire output lost", Duration::from_secs(1));
    std::thread::sleep(AWAY.saturating_sub(killed.elapsed()));
    assert_output(&osc.status(), "reconnecting", 0, &|| {
        daemon.lines()[mark..].join("\n")
    });
    assert!(
        daemon.exited().is_none(),
        "the daemon exited without its server"
    );

    // The servers come back in the same runtime directory, without a sink for now; so does
    // the daemon's node.
    graph
        .start_servers()
        .unwrap_or_else(|reason| panic!("restarting the graph: {reason}"));
    let back = Instant::now();
    let diagnose = || format!("{}\n{}", daemon.lines().join("\n"), graph.log_tail(30));
    status_within(
        &osc,
        "output running again",
        back,
        RETURN_LIMIT,
        &diagnose,
        |s| s.output == "running" && s.output_reconnects == 1,
    );
    wait_for_node(&graph, &daemon, NODE);
    daemon.wait_line("pipewire output back after", Duration::from_secs(1));
    std::thread::sleep(SINKLESS);
    assert_output(&osc.status(), "running", 1, &|| {
        format!(
            "with no sink to link to: {}",
            daemon.lines()[mark..].join("\n")
        )
    });

    // The sink returns; the session manager links the daemon's stream to it.
    graph
        .create_sink()
        .unwrap_or_else(|reason| panic!("creating the sink again: {reason}"));
    assert_tone_heard(
        "after the restart",
        hear_tone(&graph, dir.path(), "after"),
        &|| {
            format!(
                "{}\n{}",
                daemon.lines()[mark..].join("\n"),
                graph.log_tail(30)
            )
        },
    );
    assert_output(&osc.status(), "running", 1, &|| {
        daemon.lines()[mark..].join("\n")
    });
    assert!(
        !daemon.has_line("the callback dropped"),
        "{}",
        daemon.lines().join("\n")
    );
    daemon.stop_cleanly();
}
