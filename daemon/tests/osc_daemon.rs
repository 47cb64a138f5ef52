//! The OSC contract against the running `latentd` binary (null output, built-in
//! engine): every row of docs/osc.md over UDP, TCP with a size prefix and TCP with SLIP;
//! address patterns; immediate, timed and nested bundles; pushes to two subscribers; `/sync`
//! ordering; an independent OSC implementation (liblo's `oscsend`, python-osc); and bad input,
//! each answered with a precise `/fail` while the daemon keeps playing and nothing changes.
//!
//! One daemon serves the whole file (started on first use, stopped at exit); the tests take
//! turns (a lock) since they share its state, and each leaves it as it found it.

mod common;

use latentd_engine::lock::MutexExt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use common::osc_client::{IMMEDIATELY, Link, Status, Transport, bundle, int, msg, s, timetag};
use common::{Daemon, write_float_wav};
use latentd_osc_schema::reference_knobs;
use latentd_osc_schema::rosc::{OscPacket, OscType, encoder};

/// The loop the daemon plays (seconds; no `--source`, so the engine fills it).
const LOOP_S: f64 = 2.0;
const RATE: u32 = 48_000;
const PERIOD: usize = 256;

struct Fixture {
    osc: SocketAddr,
    media: PathBuf,
    daemon: Mutex<Daemon>,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();
static TURN: Mutex<()> = Mutex::new(());
static DAEMON_PID: AtomicI32 = AtomicI32::new(0);
static DAEMON_DIR: OnceLock<PathBuf> = OnceLock::new();

/// At exit: stop the shared daemon (SIGTERM, then SIGKILL) and remove its folder.
extern "C" fn stop_shared_daemon() {
    let pid = DAEMON_PID.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: plain FFI calls on our own child's pid.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
            let mut status = 0;
            let t0 = Instant::now();
            while libc::waitpid(pid, &mut status, libc::WNOHANG) == 0 {
                if t0.elapsed() > Duration::from_secs(2) {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut status, 0);
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    if let Some(dir) = DAEMON_DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The shared daemon, and this test's turn with it.
fn fixture() -> (MutexGuard<'static, ()>, &'static Fixture) {
    let turn = TURN.lock_unpoisoned();
    let fx = FIXTURE.get_or_init(start_daemon);
    let exited = fx.daemon.lock().unwrap().child.try_wait().unwrap();
    assert!(exited.is_none(), "the daemon exited: {exited:?}");
    (turn, fx)
}

fn start_daemon() -> Fixture {
    let dir = tempfile::tempdir().unwrap().keep();
    DAEMON_DIR.set(dir.clone()).unwrap();
    let media = dir.join("media");
    std::fs::create_dir_all(&media).unwrap();
    write_media(&media);
    let state = dir.join("state.json");
    let loop_s = LOOP_S.to_string();
    let period = PERIOD.to_string();
    let daemon = Daemon::start(
        &dir,
        &[
            "--audio",
            "null",
            "--rate",
            "48000",
            "--period",
            &period,
            "--loop-seconds",
            &loop_s,
            "--media",
            media.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
        ],
    );
    DAEMON_PID.store(daemon.child.id() as i32, Ordering::SeqCst);
    // SAFETY: registers a plain extern "C" function.
    assert_eq!(unsafe { libc::atexit(stop_shared_daemon) }, 0);
    let line = daemon.wait_for("OSC on udp+tcp ", Duration::from_secs(20));
    let addr = line
        .split("OSC on udp+tcp ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    Fixture {
        osc: addr.parse().unwrap(),
        media,
        daemon: Mutex::new(daemon),
    }
}

/// The WAVs the tests load: a source of the loop's length, one a quarter as long, one too
/// short for a loop (10 ms), references.
fn write_media(media: &Path) {
    let frames = (LOOP_S * f64::from(RATE)) as usize;
    let tone = |n: usize, hz: f32| -> Vec<f32> {
        (0..n * 2)
            .map(|i| (((i / 2) as f32) * hz * std::f32::consts::TAU / RATE as f32).sin() * 0.3)
            .collect()
    };
    write_float_wav(&media.join("loop.wav"), 2, RATE, &tone(frames, 220.0));
    write_float_wav(&media.join("short.wav"), 2, RATE, &tone(frames / 4, 330.0));
    write_float_wav(
        &media.join("tiny.wav"),
        2,
        RATE,
        &tone(RATE as usize / 100, 330.0),
    );
    write_float_wav(
        &media.join("timbre.wav"),
        2,
        RATE,
        &tone(RATE as usize, 440.0),
    );
    write_float_wav(
        &media.join("structure.wav"),
        2,
        RATE,
        &tone(RATE as usize, 110.0),
    );
    std::fs::write(media.join("notes.wav"), "not audio\n").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", media.join("escape.wav")).unwrap();
}

fn f(v: f32) -> OscType {
    OscType::Float(v)
}

fn i(v: i32) -> OscType {
    OscType::Int(v)
}

/// Wait until `probe` holds (polling every 10 ms), at most `limit`.
fn eventually(limit: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if probe() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn assert_sane(status: &Status) {
    assert_eq!(status.backend, "builtin-cpu", "{status:?}");
    assert_eq!(status.sample_rate, RATE as i32, "{status:?}");
    assert_eq!(status.period_frames, PERIOD as i32, "{status:?}");
    assert!((status.loop_s - LOOP_S).abs() < 1e-3, "{status:?}");
    assert!(
        (0.0..status.loop_s).contains(&status.playhead_s),
        "{status:?}"
    );
    assert!(status.ticks_per_s > 0.0, "{status:?}");
    assert!(status.tick_ms_p50 > 0.0, "{status:?}");
    assert!((0.0..=LOOP_S).contains(&status.lead_s), "{status:?}");
    assert!(status.xruns >= 0 && status.late_landings >= 0, "{status:?}");
    assert!(
        status.last_knob_to_ear_ms == -1.0 || status.last_knob_to_ear_ms > 0.0,
        "{status:?}"
    );
    assert!(
        status.inert_knobs.is_empty(),
        "the built-in model honours every knob: {status:?}"
    );
}

/// The playhead advances: two `/status` 150 ms apart differ (modulo the loop).
fn assert_playing(link: &mut Link) {
    let a = link.status().playhead_s;
    std::thread::sleep(Duration::from_millis(150));
    let b = link.status().playhead_s;
    let moved = (b - a).rem_euclid(LOOP_S);
    assert!(
        (0.05..1.0).contains(&moved),
        "playhead {a} -> {b} in 150 ms"
    );
}

/// One pass over every row of the contract on `transport`; `subscriber` (UDP, subscribed)
/// checks the pushes. `k` makes this pass's knob values its own.
fn contract_rows(fx: &Fixture, transport: Transport, k: f32) {
    let mut link = Link::connect(fx.osc, transport);
    let mut sub = Link::connect(fx.osc, Transport::Udp);
    sub.send(&msg("/notify", vec![i(1)]));
    assert_eq!(sub.expect("/done"), vec![s("/notify")]);

    // /version
    link.send(&msg("/version", vec![]));
    assert_eq!(
        link.expect("/version.reply"),
        vec![s("latentd"), s(env!("CARGO_PKG_VERSION"))]
    );

    // /knob/<name>: set (no reply; subscribers get the echo), then query.
    link.send(&msg("/knob/denoise", vec![f(k)]));
    assert_eq!(sub.expect("/knob/denoise"), vec![f(k)]);
    link.send(&msg("/knob/steps", vec![i(3)]));
    assert_eq!(sub.expect("/knob/steps"), vec![i(3)]);
    link.send(&msg("/knob/seed", vec![OscType::Double(4_000_000_000.0)]));
    assert_eq!(sub.expect("/knob/seed"), vec![OscType::Double(4e9)]);
    link.expect_silence(Duration::from_millis(100));
    assert_eq!(link.knob("denoise"), f64::from(k));
    link.send(&msg("/knob/steps", vec![]));
    assert_eq!(link.expect("/knob/steps"), vec![i(3)]);
    assert_eq!(link.knob("seed"), 4e9);

    // /knobs: a bundle of every knob, the new values in it.
    let all = link.knobs();
    let names: Vec<&str> = reference_knobs().iter().map(|k| k.name).collect();
    assert_eq!(
        all.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        names,
        "{all:?}"
    );
    assert!(all.contains(&("denoise".into(), f64::from(k))), "{all:?}");
    assert!(all.contains(&("steps".into(), 3.0)), "{all:?}");

    // /prompt -> /done /prompt <epoch> [unknown words]; subscribers get
    // /prompt/applied <epoch> <tags>. The transport's name is no tag of the model.
    let tags = format!("warm pad {transport:?}");
    link.send(&msg("/prompt", vec![s(&tags), s("bright pluck")]));
    let done = link.expect("/done");
    assert_eq!(done.len(), 3, "{done:?}");
    assert_eq!(done[0], s("/prompt"));
    let epoch = int(&done[1]);
    assert!(epoch > 0, "{done:?}");
    assert_eq!(done[2], s(&format!("{transport:?}")), "{done:?}");
    assert_eq!(sub.expect("/prompt/applied"), vec![i(epoch), s(&tags)]);
    link.send(&msg("/prompt", vec![s("warm pad")]));
    let done = link.expect("/done");
    assert_eq!(done.len(), 2, "all words known: no unknown list: {done:?}");
    assert_eq!(
        sub.expect("/prompt/applied"),
        vec![i(int(&done[1])), s("warm pad")]
    );

    // /timbre and /structure with a WAV of the media folder, and their /clear.
    for (addr, file) in [("/timbre", "timbre.wav"), ("/structure", "structure.wav")] {
        link.send(&msg(addr, vec![s(file)]));
        let done = link.expect("/done");
        assert_eq!(done[0], s(addr), "{done:?}");
        let set_epoch = int(&done[1]);
        let clear = format!("{addr}/clear");
        link.send(&msg(&clear, vec![]));
        let done = link.expect("/done");
        assert_eq!(done[0], s(&clear), "{done:?}");
        assert!(
            int(&done[1]) > set_epoch,
            "{done:?} after epoch {set_epoch}"
        );
    }
    // An absolute path inside the folder is accepted too.
    let absolute = fx.media.canonicalize().unwrap().join("timbre.wav");
    link.send(&msg("/timbre", vec![s(absolute.to_str().unwrap())]));
    assert_eq!(link.expect("/done")[0], s("/timbre"));
    link.send(&msg("/timbre/clear", vec![]));
    assert_eq!(link.expect("/done")[0], s("/timbre/clear"));

    // /source: a WAV of the loop's length loads; one of another length replaces the loop
    // while playing (the ring takes its length), a band that no longer fits is cleared,
    // one that fits is kept, and so is the transport; one too short for a loop fails.
    link.send(&msg("/source", vec![s("loop.wav")]));
    assert_eq!(link.expect("/done"), vec![s("/source")]);
    let short_s = LOOP_S / 4.0;
    let loop_becomes = |link: &mut Link, want: f64| {
        assert!(
            eventually(Duration::from_secs(2), || (link.status().loop_s - want)
                .abs()
                < 1e-3),
            "loop_s never became {want}: {:?}",
            link.status()
        );
    };
    link.send(&msg("/loop", vec![f(1.0), f(1.5)]));
    link.expect_silence(Duration::from_millis(60));
    link.send(&msg("/source", vec![s("short.wav")]));
    assert_eq!(link.expect("/done"), vec![s("/source")]);
    loop_becomes(&mut link, short_s);
    link.send(&msg("/source", vec![s("loop.wav")]));
    assert_eq!(link.expect("/done"), vec![s("/source")]);
    loop_becomes(&mut link, LOOP_S);
    assert!(
        eventually(Duration::from_secs(1), || !(0.99..1.51)
            .contains(&link.status().playhead_s)),
        "the band [1, 1.5) s outlived a loop of {short_s} s"
    );
    link.send(&msg("/loop", vec![f(0.1), f(0.3)]));
    link.send(&msg("/transport/pause", vec![]));
    link.expect_silence(Duration::from_millis(100));
    link.send(&msg("/source", vec![s("short.wav")]));
    assert_eq!(link.expect("/done"), vec![s("/source")]);
    loop_becomes(&mut link, short_s);
    std::thread::sleep(Duration::from_millis(50));
    let held = link.status().playhead_s;
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        link.status().playhead_s,
        held,
        "paused, yet the playhead moved"
    );
    assert!(
        (0.099..0.301).contains(&held),
        "held at {held}, outside the kept band"
    );
    link.send(&msg("/transport/play", vec![]));
    link.expect_silence(Duration::from_millis(60));
    for _ in 0..6 {
        let p = link.status().playhead_s;
        assert!(
            (0.099..0.301).contains(&p),
            "playhead {p} outside the kept band"
        );
        std::thread::sleep(Duration::from_millis(40));
    }
    assert_ne!(
        link.status().playhead_s,
        held,
        "playing, yet the playhead holds"
    );
    link.send(&msg("/loop/clear", vec![]));
    link.send(&msg("/source", vec![s("loop.wav")]));
    assert_eq!(link.expect("/done"), vec![s("/source")]);
    loop_becomes(&mut link, LOOP_S);
    let (addr, reason) = link.fails(&msg("/source", vec![s("tiny.wav")]));
    assert_eq!(addr, "/source");
    assert!(reason.contains("a loop needs at least"), "{reason}");
    assert_eq!(link.status().loop_s, LOOP_S);

    // /sync: /synced arrives after the /done of every earlier asynchronous command.
    link.send(&msg("/prompt", vec![s("calm pad")]));
    link.send(&msg("/timbre", vec![s("timbre.wav")]));
    link.send(&msg("/structure/clear", vec![]));
    link.send(&msg("/sync", vec![i(42)]));
    assert_eq!(link.expect("/done")[0], s("/prompt"));
    assert_eq!(link.expect("/done")[0], s("/timbre"));
    assert_eq!(link.expect("/done")[0], s("/structure/clear"));
    assert_eq!(link.expect("/synced"), vec![i(42)]);
    assert_eq!(sub.expect("/prompt/applied")[1], s("calm pad"));
    link.send(&msg("/timbre/clear", vec![]));
    assert_eq!(link.expect("/done")[0], s("/timbre/clear"));

    // /status: every field sane, and the playhead moving.
    assert_sane(&link.status());
    assert_playing(&mut link);

    // /loop: the playhead stays inside the band; /loop/clear lets it out again.
    link.send(&msg("/loop", vec![f(0.5), f(0.75)]));
    link.expect_silence(Duration::from_millis(60));
    let mut inside = 0;
    for _ in 0..8 {
        let p = link.status().playhead_s;
        assert!((0.5..0.75).contains(&p), "playhead {p} outside the band");
        inside += 1;
        std::thread::sleep(Duration::from_millis(40));
    }
    assert_eq!(inside, 8);
    link.send(&msg("/loop/clear", vec![]));
    assert!(
        eventually(Duration::from_secs(2), || {
            let p = link.status().playhead_s;
            !(0.5..0.76).contains(&p)
        }),
        "the playhead never left the cleared band"
    );

    // /transport/pause holds the playhead; /transport/seek moves it; /play resumes.
    link.send(&msg("/transport/pause", vec![]));
    link.expect_silence(Duration::from_millis(60));
    let held = link.status().playhead_s;
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        link.status().playhead_s,
        held,
        "the playhead moved while paused"
    );
    link.send(&msg("/transport/seek", vec![f(1.25)]));
    link.expect_silence(Duration::from_millis(60));
    assert!(
        eventually(Duration::from_secs(1), || (link.status().playhead_s - 1.25)
            .abs()
            < 1e-3),
        "seek did not move the paused playhead to 1.25 s"
    );
    std::thread::sleep(Duration::from_millis(100));
    assert!((link.status().playhead_s - 1.25).abs() < 1e-3);
    link.send(&msg("/transport/play", vec![]));
    link.expect_silence(Duration::from_millis(60));
    assert_playing(&mut link);

    // The subscriber got nothing it was not owed.
    sub.send(&msg("/notify", vec![i(0)]));
    assert_eq!(sub.expect("/done"), vec![s("/notify")]);
    sub.expect_silence(Duration::from_millis(50));
    restore_defaults(&mut link);
}

/// Put every knob back to its default (one bundle), and check.
fn restore_defaults(link: &mut Link) {
    let specs = reference_knobs();
    let content = specs
        .iter()
        .map(|k| {
            msg(
                &format!("/knob/{}", k.name),
                vec![OscType::Double(k.default)],
            )
        })
        .collect();
    link.send(&bundle(IMMEDIATELY, content));
    let now = link.knobs();
    for (spec, (name, value)) in specs.iter().zip(&now) {
        assert_eq!((spec.name, spec.default), (name.as_str(), *value));
    }
}

#[test]
fn contract_over_udp() {
    let (_turn, fx) = fixture();
    contract_rows(fx, Transport::Udp, 0.125);
}

#[test]
fn contract_over_tcp_size_prefix() {
    let (_turn, fx) = fixture();
    contract_rows(fx, Transport::TcpSizePrefix, 0.25);
}

#[test]
fn contract_over_tcp_slip() {
    let (_turn, fx) = fixture();
    contract_rows(fx, Transport::TcpSlip, 0.375);
}

/// `/notify 1` from two clients (UDP and TCP): both receive every push; `/notify 0` stops
/// them.
#[test]
fn pushes_reach_two_subscribers() {
    let (_turn, fx) = fixture();
    let mut control = Link::connect(fx.osc, Transport::Udp);
    let mut subs = [
        Link::connect(fx.osc, Transport::Udp),
        Link::connect(fx.osc, Transport::TcpSlip),
    ];
    for sub in &mut subs {
        sub.send(&msg("/notify", vec![i(1)]));
        assert_eq!(sub.expect("/done"), vec![s("/notify")]);
    }
    control.send(&msg("/knob/guidance", vec![f(7.5)]));
    control.send(&msg("/prompt", vec![s("dark drone")]));
    let epoch = int(&control.expect("/done")[1]);
    for sub in &mut subs {
        assert_eq!(sub.expect("/knob/guidance"), vec![f(7.5)]);
        assert_eq!(
            sub.expect("/prompt/applied"),
            vec![i(epoch), s("dark drone")]
        );
    }
    for sub in &mut subs {
        sub.send(&msg("/notify", vec![i(0)]));
        assert_eq!(sub.expect("/done"), vec![s("/notify")]);
    }
    control.send(&msg("/knob/guidance", vec![f(1.0)]));
    assert_eq!(control.knob("guidance"), 1.0);
    for sub in &mut subs {
        sub.expect_silence(Duration::from_millis(100));
    }
}

/// Patterns expand to every matching knob; a bundle's elements apply together, or none.
#[test]
fn patterns_and_immediate_bundles() {
    let (_turn, fx) = fixture();
    let mut link = Link::connect(fx.osc, Transport::Udp);
    let gains = |link: &mut Link| -> Vec<f64> {
        link.knobs()
            .into_iter()
            .filter(|(n, _)| n.starts_with("ch_g"))
            .map(|(_, v)| v)
            .collect()
    };
    link.send(&msg("/knob/ch_g*", vec![f(0.5)]));
    link.expect_silence(Duration::from_millis(50));
    assert_eq!(gains(&mut link), vec![0.5; 8]);
    link.send(&msg("/knob/ch_g[0-3]", vec![f(2.0)]));
    link.send(&msg("/knob/ch_g{5,7}", vec![i(0)]));
    assert_eq!(
        gains(&mut link),
        vec![2.0, 2.0, 2.0, 2.0, 0.5, 0.0, 0.5, 0.0]
    );
    // One bad match refuses the pattern as a whole.
    let (addr, reason) = link.fails(&msg("/knob/ch_g?", vec![f(3.5)]));
    assert_eq!(addr, "/knob/ch_g?");
    assert!(reason.contains("out of range for knob ch_g0"), "{reason}");
    assert_eq!(
        gains(&mut link),
        vec![2.0, 2.0, 2.0, 2.0, 0.5, 0.0, 0.5, 0.0]
    );

    // Several knobs in one bundle: all change, and subscribers see each.
    let mut sub = Link::connect(fx.osc, Transport::TcpSizePrefix);
    sub.send(&msg("/notify", vec![i(1)]));
    sub.expect("/done");
    link.send(&bundle(
        IMMEDIATELY,
        vec![
            msg("/knob/denoise", vec![f(0.75)]),
            msg("/knob/shift", vec![f(2.5)]),
            msg("/knob/depth", vec![i(2)]),
            msg("/knob/ch_g*", vec![f(1.5)]),
        ],
    ));
    link.expect_silence(Duration::from_millis(50));
    let mut echoed: Vec<String> = (0..11).map(|_| sub.recv_message().addr).collect();
    echoed.sort();
    assert_eq!(&echoed[..3], ["/knob/ch_g0", "/knob/ch_g1", "/knob/ch_g2"]);
    assert!(echoed.contains(&"/knob/depth".to_string()), "{echoed:?}");
    assert_eq!(link.knob("denoise"), 0.75);
    assert_eq!(link.knob("shift"), 2.5);
    assert_eq!(link.knob("depth"), 2.0);
    assert_eq!(gains(&mut link), vec![1.5; 8]);
    // A bundle with one bad element changes nothing.
    let before = link.knobs();
    let (addr, reason) = link.fails(&bundle(
        IMMEDIATELY,
        vec![
            msg("/knob/denoise", vec![f(0.25)]),
            msg("/knob/steps", vec![f(2.5)]),
        ],
    ));
    assert_eq!(addr, "/knob/steps");
    assert!(
        reason.contains("knob steps takes an integer in [1, 16]; got 2.5"),
        "{reason}"
    );
    assert_eq!(link.knobs(), before);
    // Refusals only the running daemon can decide (the loop's length) refuse the whole
    // bundle too.
    for (bad, addr, why) in [
        (
            msg("/loop", vec![f(1.0), f(3.0)]),
            "/loop",
            "needs 0 <= A < B <= 2 s",
        ),
        (
            msg("/transport/seek", vec![f(2.5)]),
            "/transport/seek",
            "past the loop end",
        ),
    ] {
        let (got, reason) = link.fails(&bundle(
            IMMEDIATELY,
            vec![
                msg("/knob/denoise", vec![f(0.25)]),
                msg("/transport/pause", vec![]),
                bad,
            ],
        ));
        assert_eq!(got, addr);
        assert!(reason.contains(why), "{reason}");
        link.expect_silence(Duration::from_millis(30));
        assert_eq!(link.knobs(), before, "a refused bundle changed knobs");
        assert_playing(&mut link);
    }
    sub.expect_silence(Duration::from_millis(50));
    restore_defaults(&mut link);
}

/// A bundle timed 300 ms ahead: the knob holds its value before the timetag and has the new
/// one after; the change lands close to the timetag (early by at most the engine's
/// knob-to-ear latency, capped at 50 ms, so it is heard at the timetag).
#[test]
fn timed_bundle_applies_at_its_timetag() {
    let (_turn, fx) = fixture();
    let mut link = Link::connect(fx.osc, Transport::Udp);
    for attempt in 0..3 {
        let before = link.knob("periodicity");
        let new = 1.0 + f64::from(attempt);
        let ahead_ms = link.status().last_knob_to_ear_ms.clamp(0.0, 50.0);
        let at = SystemTime::now() + Duration::from_millis(300);
        link.send(&bundle(
            timetag(at),
            vec![msg("/knob/periodicity", vec![f(new as f32)])],
        ));
        // Poll until the value changes; note when.
        let mut changed_at = None;
        let deadline = at + Duration::from_millis(500);
        while SystemTime::now() < deadline {
            let asked = SystemTime::now();
            let v = link.knob("periodicity");
            if v == new {
                changed_at = Some(asked);
                break;
            }
            assert_eq!(v, before, "an unrelated value appeared");
            std::thread::sleep(Duration::from_millis(2));
        }
        let changed_at = changed_at.expect("the timed bundle never applied");
        // Milliseconds from the timetag to the first query that saw the new value.
        let offset_ms = match changed_at.duration_since(at) {
            Ok(late) => late.as_secs_f64() * 1e3,
            Err(early) => -early.duration().as_secs_f64() * 1e3,
        };
        let period_ms = PERIOD as f64 * 1e3 / f64::from(RATE);
        let lower = -ahead_ms - period_ms - 3.0;
        let upper = 2.0 * period_ms + 10.0; // one poll interval and a loaded machine's wake-up
        eprintln!(
            "attempt {attempt}: change seen {offset_ms:.1} ms from the timetag (ahead {ahead_ms:.1} ms, accepted {lower:.1}..={upper:.1})"
        );
        if (lower..=upper).contains(&offset_ms) {
            link.send(&msg("/knob/periodicity", vec![f(0.0)]));
            assert_eq!(link.knob("periodicity"), 0.0);
            return;
        }
    }
    panic!("the timed bundle missed its timetag three times");
}

/// A bundle inside a bundle is refused as a whole.
#[test]
fn nested_bundle_fails() {
    let (_turn, fx) = fixture();
    let mut link = Link::connect(fx.osc, Transport::TcpSlip);
    let before = link.knob("denoise");
    let (addr, reason) = link.fails(&bundle(
        IMMEDIATELY,
        vec![
            msg("/knob/denoise", vec![f(0.9)]),
            bundle(IMMEDIATELY, vec![msg("/knob/shift", vec![f(2.0)])]),
        ],
    ));
    assert_eq!(addr, "#bundle");
    assert!(
        reason.contains("bundle element 2 is a nested bundle"),
        "{reason}"
    );
    assert_eq!(link.knob("denoise"), before);
}

fn encode(packet: &OscPacket) -> Vec<u8> {
    encoder::encode(packet).unwrap()
}

/// A message with hand-written type tags and argument bytes.
fn raw_message(addr: &str, tags: &str, args: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for text in [addr, tags] {
        out.extend_from_slice(text.as_bytes());
        out.push(0);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    }
    out.extend_from_slice(args);
    out
}

/// Bad input, case by case: each gets `/fail <address> <precise reason>`; afterwards the
/// daemon still plays and no knob changed.
#[test]
fn bad_input_fails_precisely_and_changes_nothing() {
    let (_turn, fx) = fixture();
    let mut link = Link::connect(fx.osc, Transport::Udp);
    let knobs_before = link.knobs();
    let status_before = link.status();

    let denoise = encode(&msg("/knob/denoise", vec![f(0.3)]));
    let long_text = "a".repeat(3000);
    let long_address = format!("/knob/{}", "x".repeat(300));
    let long_address_shown = format!("{}...", &long_address[..64]);
    let cases: Vec<(&str, Vec<u8>, &str, Vec<&str>)> = vec![
        (
            "truncated argument",
            denoise[..denoise.len() - 2].to_vec(),
            "/knob/denoise",
            vec!["truncated packet: the argument of type tag 1 ('f') needs 4 bytes; 2 follow"],
        ),
        (
            "unterminated string argument",
            raw_message("/prompt", ",s", b"calm"),
            "/prompt",
            vec!["the argument of type tag 1 ('s'): string is not NUL-terminated"],
        ),
        (
            "truncated address",
            b"/knob/den".to_vec(),
            "#packet",
            vec!["address"],
        ),
        ("empty packet", Vec::new(), "#packet", vec!["empty packet"]),
        (
            "neither message nor bundle",
            b"knob\0\0\0\0".to_vec(),
            "#packet",
            vec!["0x6b", "neither a message"],
        ),
        (
            "truncated bundle",
            b"#bundle\0\0\0\0\0".to_vec(),
            "#bundle",
            vec!["truncated bundle: 12 bytes"],
        ),
        (
            "string where a number goes",
            encode(&msg("/knob/denoise", vec![s("loud")])),
            "/knob/denoise",
            vec!["must be a number", "got s"],
        ),
        (
            "unknown type tag",
            raw_message("/knob/denoise", ",x", &[0, 0, 0, 0]),
            "/knob/denoise",
            vec!["unknown type tag 'x'"],
        ),
        (
            "type tags without the comma",
            raw_message("/knob/denoise", "f", &0.3f32.to_be_bytes()),
            "/knob/denoise",
            vec!["does not start with ','"],
        ),
        (
            "NaN",
            encode(&msg("/knob/denoise", vec![f(f32::NAN)])),
            "/knob/denoise",
            vec!["is NaN; a finite number is required"],
        ),
        (
            "+inf",
            encode(&msg("/knob/shift", vec![OscType::Double(f64::INFINITY)])),
            "/knob/shift",
            vec!["infinite"],
        ),
        (
            "-inf in /loop",
            encode(&msg("/loop", vec![f(f32::NEG_INFINITY), f(1.0)])),
            "/loop",
            vec!["infinite"],
        ),
        (
            "out of range",
            encode(&msg("/knob/denoise", vec![f(1.5)])),
            "/knob/denoise",
            vec!["value 1.5 is out of range for knob denoise: accepted [0, 1]"],
        ),
        (
            "integer knob below its range",
            encode(&msg("/knob/steps", vec![i(0)])),
            "/knob/steps",
            vec!["[1, 16]"],
        ),
        (
            "band past the loop end",
            encode(&msg("/loop", vec![f(1.0), f(3.0)])),
            "/loop",
            vec!["2 s"],
        ),
        (
            "empty band",
            encode(&msg("/loop", vec![f(1.0), f(1.0)])),
            "/loop",
            vec!["must be greater than a_seconds"],
        ),
        (
            "seek past the loop end",
            encode(&msg("/transport/seek", vec![f(2.5)])),
            "/transport/seek",
            vec!["past the loop end (2.000 s)"],
        ),
        (
            "negative seek",
            encode(&msg("/transport/seek", vec![f(-1.0)])),
            "/transport/seek",
            vec![">= 0"],
        ),
        (
            "missing argument",
            encode(&msg("/transport/seek", vec![])),
            "/transport/seek",
            vec!["takes (f seconds); got 0 argument(s)"],
        ),
        (
            "bad /notify value",
            encode(&msg("/notify", vec![i(2)])),
            "/notify",
            vec!["must be i 0 or i 1; got i 2"],
        ),
        (
            "unknown address",
            encode(&msg("/nope", vec![])),
            "/nope",
            vec!["unknown address"],
        ),
        (
            "unknown knob",
            encode(&msg("/knob/volume", vec![f(1.0)])),
            "/knob/volume",
            vec!["unknown knob \"volume\""],
        ),
        (
            "oversized string",
            encode(&msg("/prompt", vec![s(&long_text)])),
            "/prompt",
            vec!["string of 3000 bytes; the limit is 2048"],
        ),
        (
            "oversized address",
            encode(&msg(&long_address, vec![f(1.0)])),
            &long_address_shown,
            vec!["address is 306 bytes; the limit is 256"],
        ),
        (
            "path outside the media folder",
            encode(&msg("/timbre", vec![s("../../etc/passwd")])),
            "/timbre",
            vec!["\"../../etc/passwd\" is outside the media folder"],
        ),
        (
            "absolute path outside the media folder",
            encode(&msg("/structure", vec![s("/etc/passwd")])),
            "/structure",
            vec!["outside the media folder"],
        ),
        (
            "symlink out of the media folder",
            encode(&msg("/source", vec![s("escape.wav")])),
            "/source",
            vec!["outside the media folder"],
        ),
        (
            "missing file",
            encode(&msg("/timbre", vec![s("missing.wav")])),
            "/timbre",
            vec!["missing.wav"],
        ),
        (
            "not a WAV",
            encode(&msg("/timbre", vec![s("notes.wav")])),
            "/timbre",
            vec!["not a WAV file"],
        ),
    ];
    let mut wrong = Vec::new();
    for (label, bytes, addr, wanted) in &cases {
        link.send_bytes(bytes);
        let (got_addr, reason) = link.expect_fail();
        eprintln!("{label}: /fail {got_addr} {reason:?}");
        if got_addr != *addr || !wanted.iter().all(|w| reason.contains(w)) {
            wrong.push(format!(
                "{label}: /fail {got_addr} {reason:?}; wanted {addr} {wanted:?}"
            ));
        }
        link.expect_silence(Duration::from_millis(5));
    }
    assert!(wrong.is_empty(), "{wrong:#?}");

    // Oversized packets over TCP: a size prefix over the limit closes the connection after
    // its /fail; an oversized SLIP frame is skipped and the connection goes on.
    let mut tcp = Link::connect(fx.osc, Transport::TcpSizePrefix);
    tcp.send_raw_stream(&70_000u32.to_be_bytes());
    let (addr, reason) = tcp.expect_fail();
    assert_eq!(addr, "#packet");
    assert!(
        reason.contains("70000") && reason.contains("65536"),
        "{reason}"
    );
    assert!(tcp.recv(Duration::from_millis(500)).is_none());
    let mut slip = Link::connect(fx.osc, Transport::TcpSlip);
    slip.send(&msg("/prompt", vec![s(&"b".repeat(70_000))]));
    let (addr, reason) = slip.expect_fail();
    assert_eq!(addr, "#packet");
    assert!(reason.contains("65536"), "{reason}");
    assert_eq!(slip.knob("denoise"), knobs_before[0].1);

    // Still playing, nothing changed.
    let status_after = link.status();
    assert_sane(&status_after);
    assert_playing(&mut link);
    assert_eq!(status_after.xruns, status_before.xruns);
    assert_eq!(link.knobs(), knobs_before);
}

/// Run `program args` to completion; its stdout (it must succeed).
fn run_tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Independent implementations against the daemon: liblo's `oscsend` sets knobs (UDP and
/// TCP), a python-osc subscriber (the generated client's `watch`) receives the echoes, and
/// python-osc queries read the values and the status back.
#[test]
fn independent_osc_implementations() {
    let (_turn, fx) = fixture();
    let port = fx.osc.port().to_string();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/osc/latentd_client.py");
    let script = script.to_str().unwrap();
    let mut watch = Command::new("python3")
        .args(["-u", script, "--port", &port, "watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let next_line = || {
        lines
            .recv_timeout(Duration::from_secs(5))
            .expect("the python subscriber printed nothing")
    };
    assert_eq!(next_line(), "/done /notify");

    run_tool(
        "oscsend",
        &["127.0.0.1", &port, "/knob/x0_target", "f", "0.625"],
    );
    assert_eq!(next_line(), "/knob/x0_target 0.625");
    let tcp_url = format!("osc.tcp://127.0.0.1:{port}");
    run_tool("oscsend", &[&tcp_url, "/knob/feedback_depth", "i", "5"]);
    assert_eq!(next_line(), "/knob/feedback_depth 5");
    run_tool("oscsend", &["127.0.0.1", &port, "/knob/ch_g*", "d", "0.25"]);
    let mut gains: Vec<String> = (0..8).map(|_| next_line()).collect();
    gains.sort();
    let wanted: Vec<String> = (0..8).map(|g| format!("/knob/ch_g{g} 0.25")).collect();
    assert_eq!(gains, wanted);
    let _ = watch.kill();
    let _ = watch.wait();

    let get = |name: &str| run_tool("python3", &[script, "--port", &port, "get", name]);
    assert_eq!(get("x0_target").trim(), "/knob/x0_target 0.625");
    assert_eq!(get("feedback_depth").trim(), "/knob/feedback_depth 5");
    let status = run_tool("python3", &[script, "--port", &port, "status"]);
    assert!(
        status.starts_with("/status.reply builtin-cpu 48000 256 "),
        "{status}"
    );
    let fail = Command::new("python3")
        .args([script, "--port", &port, "send", "/knob/x0_target", "nan"])
        .output()
        .unwrap();
    assert!(!fail.status.success());
    assert_eq!(
        String::from_utf8_lossy(&fail.stdout).trim(),
        "/fail /knob/x0_target argument 1 (value) is NaN; a finite number is required"
    );

    let mut link = Link::connect(fx.osc, Transport::Udp);
    assert_eq!(link.knob("x0_target"), 0.625);
    restore_defaults(&mut link);
}
