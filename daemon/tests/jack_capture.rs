//! The real `latentd` binary playing into a private `jackd -d dummy`, heard through a
//! [`JackCapture`] client on its ports: SIGTERM fades out instead of clicking
//! (exit 0 within a second, the state file written, the capture unbroken up to a ramp down
//! to exact silence), SIGHUP reloads never interrupt the audio, and a `/source` of another
//! length replaces the loop without a click.
//!
//! The daemon plays, with `--engine off`, a one-second loop of a 440 Hz quadrature pair
//! (`out_1` = A·sin, `out_2` = A·cos). Its envelope, √(L² + R²) = A·gain, and its phase,
//! atan2(L, R), are then known at every frame: a dropout, a skipped or repeated period, a
//! cut or a fade each show on their own, whatever the phase at which they happen (a cut
//! always drops at least one channel by A/√2). The loop holds a whole number of cycles, so
//! its wrap is seamless.
//!
//! Threading: libjack finds the private server through the process-wide
//! `JACK_DEFAULT_SERVER`, so each test holds a [`JackSession`] (one at a time per
//! process) while its server runs. The capture's callback runs on JACK's thread (see
//! [`JackCapture`]); everything else on the test's thread.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::jack_tone::{
    FULL_LEVEL_TOLERANCE, LEVEL, PERIOD, PHASE_TOLERANCE, RATE, TONE, start_tone_daemon,
};
use common::service_fixture::{Daemon, NotifySocket, Osc};
use latentd_tests::{JackCapture, JackSession, Recording};
use rosc::OscType;
use tempfile::TempDir;

/// Check that frames `from..to` play the loop unbroken at full level: every envelope
/// within tolerance (no dropout, no exact-zero frame), every phase step the tone's (no
/// skipped, repeated or foreign sample).
fn assert_unbroken(rec: &Recording, from: usize, to: usize, what: &str) {
    for i in from..to {
        let e = TONE.envelope(rec, i);
        assert!(
            (e - 1.0).abs() <= FULL_LEVEL_TOLERANCE,
            "{what}: envelope {e:.4} of full level at frame {i} (unbroken from {from} to {to}; \
             frame {:?})",
            rec.frame(i)
        );
        if i > from {
            let step = TONE.step_at(rec, i);
            assert!(
                (step - TONE.phase_step()).abs() <= PHASE_TOLERANCE,
                "{what}: phase step {step:.5} rad at frame {i}, the tone's is {:.5}; {:?}",
                TONE.phase_step(),
                (i.saturating_sub(4)..i + 4)
                    .map(|j| rec.frame(j))
                    .collect::<Vec<_>>()
            );
        }
    }
}

/// The start of the first cycle that is at full level throughout: the capture starts on
/// silence, then hears `out_1` alone for a cycle or two (the links are made one by one).
fn first_full_level(rec: &Recording) -> usize {
    let mut start = 0;
    for period in &rec.periods {
        let end = start + period.frames as usize;
        if (start..end).all(|i| (TONE.envelope(rec, i) - 1.0).abs() <= FULL_LEVEL_TOLERANCE) {
            return start;
        }
        start = end;
    }
    panic!("the capture never heard the loop at full level for a whole cycle");
}

/// Largest sample-to-sample step on either channel over frames `from..to` (each frame
/// against the one before it).
fn largest_step(rec: &Recording, from: usize, to: usize) -> (f32, usize) {
    (from.max(1)..to)
        .map(|i| {
            let ([a, b], [c, d]) = (rec.frame(i - 1), rec.frame(i));
            ((c - a).abs().max((d - b).abs()), i)
        })
        .fold((0.0, 0), |best, x| if x.0 > best.0 { x } else { best })
}

#[test]
fn sigterm_fades_out_without_a_click_and_exits_0_within_a_second() {
    let session = JackSession::start(RATE, PERIOD);
    let dir = TempDir::new().unwrap();
    let notify = NotifySocket::bind(dir.path());
    let config = dir.path().join("latentd.toml");
    std::fs::write(&config, "[log]\nlevel = \"info\"\n").unwrap();
    let mut daemon = start_tone_daemon(&session, &dir, &notify, &config, &[]);
    let capture = JackCapture::connected("capture", ["latentd:out_1", "latentd:out_2"]);
    capture.record(RATE as usize, Duration::from_secs(10));

    // A change right before SIGTERM, which only the save at exit can write.
    let osc = Osc::new(daemon.osc_addr(Duration::from_secs(2)));
    osc.send("/knob/denoise", vec![OscType::Float(0.75)]);
    assert_eq!(osc.knob("denoise"), 0.75);
    let took = daemon.stop_cleanly();
    assert!(took < Duration::from_secs(1), "exit took {took:?}");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&daemon.state).expect("the state file"))
            .expect("the state file is JSON");
    assert_eq!(state["knobs"]["denoise"], 0.75, "{state}");
    // The capture keeps running on the silence after the daemon's ports went.
    capture.record(RATE as usize / 10, Duration::from_secs(5));
    let rec = capture.finish();

    let start = first_full_level(&rec);
    let last_sound = (0..rec.frames())
        .rev()
        .find(|&i| rec.frame(i) != [0.0, 0.0])
        .expect("nothing captured");
    // The ending starts at the first frame below full level.
    let ending = (start..=last_sound)
        .find(|&i| TONE.envelope(&rec, i) < 1.0 - FULL_LEVEL_TOLERANCE)
        .unwrap_or(last_sound);
    let ending_frames = last_sound + 1 - ending;
    let ending_ms = 1000.0 * ending_frames as f64 / f64::from(RATE);
    eprintln!(
        "captured {} frames; full level from {start}, ending {ending}..={last_sound} \
         ({ending_frames} frames, {ending_ms:.2} ms); frame-time gaps {:?}",
        rec.frames(),
        rec.frame_time_gaps()
    );
    assert!(
        ending - start > RATE as usize / 2,
        "full level for only {} frames",
        ending - start
    );

    // No click: near the end no step is larger than the steady tone's own, with room for
    // the fade's slope (LEVEL / 256 per frame) and rounding. A cut from full level steps by
    // up to LEVEL, and by LEVEL / √2 at least on one channel if both are cut at once.
    let (steady, _) = largest_step(&rec, start + 1, ending);
    let bound = 1.25 * steady + 0.01 * LEVEL;
    let tail = ending.saturating_sub(RATE as usize / 50).max(start + 1);
    let (worst, at) = largest_step(&rec, tail, (last_sound + 2).min(rec.frames()));
    assert!(
        worst <= bound,
        "a click: step {worst:.4} at frame {at} (ending {ending}..={last_sound}); the steady \
         tone's largest is {steady:.4}, bound {bound:.4}"
    );

    // Unbroken up to the ending: the audio, and JACK's timeline under it.
    assert_unbroken(&rec, start, ending, "before the fade");
    let gaps: Vec<_> = rec
        .frame_time_gaps()
        .into_iter()
        .filter(|g| (start..=last_sound + 1).contains(&g.frame))
        .collect();
    assert!(gaps.is_empty(), "holes in the capture's timeline: {gaps:?}");

    // The ending is a fade: a ramp of a few milliseconds down to exact silence, never back
    // up, the tone still in phase on both channels (a channel cut before the other would
    // show as a phase jump).
    assert!(
        (2.0..50.0).contains(&ending_ms),
        "the sound ended over {ending_ms:.2} ms ({ending_frames} frames), not in a fade"
    );
    for i in ending..=last_sound {
        let (before, now) = (TONE.envelope(&rec, i - 1), TONE.envelope(&rec, i));
        assert!(
            now <= before + 1e-4,
            "the fade rose at frame {i}: {before:.5} -> {now:.5}"
        );
        if now > 0.05 {
            let step = TONE.step_at(&rec, i);
            assert!(
                (step - TONE.phase_step()).abs() <= PHASE_TOLERANCE,
                "the fade is not the tone at frame {i}: phase step {step:.5}"
            );
        }
    }
    assert!(
        TONE.envelope(&rec, last_sound) < 0.02,
        "the last sound was at {:.3} of full level: a cut, not a fade",
        TONE.envelope(&rec, last_sound)
    );
    assert!(
        (last_sound + 1..rec.frames()).all(|i| rec.frame(i) == [0.0, 0.0]),
        "sound after the end"
    );
    drop(session);
}

/// The config the SIGHUP test starts with, and the one it alternates with: every key that
/// a reload may apply live (log level, OSC allowlist, knob defaults, lead) differs.
const CONFIG_A: &str = "[log]\nlevel = \"info\"\n\
    [osc]\nallowlist = [\"127.0.0.0/8\"]\n\
    [engine]\nknobs = { denoise = 0.5, steps = 8 }\n\
    [lead]\ngain = 1.6\nmargin_s = 0.05\nfloor_s = 0.25\n";
const CONFIG_B: &str = "[log]\nlevel = \"debug\"\n\
    [osc]\nallowlist = [\"127.0.0.0/8\", \"10.0.0.0/8\"]\n\
    [engine]\nknobs = { denoise = 0.3, steps = 6 }\n\
    [lead]\ngain = 2.0\nmargin_s = 0.1\nfloor_s = 0.3\n";
/// Reloads in the SIGHUP test.
const RELOADS: usize = 6;
/// How long a window waits after its event, so an xrun it caused is counted.
const SETTLE: Duration = Duration::from_millis(30);

/// A stretch of the capture (frames `from..to`) with the xruns `/status` counted over it.
#[derive(Debug)]
struct Window {
    from: usize,
    to: usize,
    xruns: i32,
    took: Duration,
}

impl Window {
    /// Run `during`, then [`SETTLE`], and measure.
    fn measure(osc: &Osc, capture: &JackCapture, during: impl FnOnce()) -> Window {
        let xruns = osc.status().xruns;
        let (from, t) = (capture.frames(), Instant::now());
        during();
        std::thread::sleep(SETTLE);
        Window {
            from,
            to: capture.frames(),
            xruns: osc.status().xruns - xruns,
            took: t.elapsed(),
        }
    }

    /// Whether JACK xran or its timeline has a hole within the window (give or take the
    /// capture's drain delay).
    fn disturbed(&self, rec: &Recording) -> bool {
        let span = self.from.saturating_sub(2 * PERIOD)..self.to + 2 * PERIOD;
        self.xruns > 0
            || rec
                .frame_time_gaps()
                .iter()
                .any(|g| span.contains(&g.frame))
    }
}

/// How many stderr lines of `daemon` contain `text`.
fn count_lines(daemon: &Daemon, text: &str) -> usize {
    daemon.lines().iter().filter(|l| l.contains(text)).count()
}

/// SIGHUP with `config` written, until `READY=1` and the "config reloaded" line.
fn reload(daemon: &Daemon, notify: &NotifySocket, path: &Path, config: &str) {
    let done = count_lines(daemon, "config reloaded");
    std::fs::write(path, config).unwrap();
    daemon.signal(libc::SIGHUP);
    notify.until("READY=1", Duration::from_secs(5));
    let t = Instant::now();
    while count_lines(daemon, "config reloaded") == done {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "reload not logged: {:?}",
            daemon.lines()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The audio must not break across reloads: checked on every captured frame (the phase
/// and envelope of the tone, see the module doc), which in `--sync` mode holds even when
/// the dummy server xruns, since a late cycle is late, never skipped.
///
/// JACK's xruns and frame-time holes are checked against quiet windows instead: jackd
/// without realtime scheduling on a small shared machine xruns now and then by itself (a
/// quiet window of the same length catches one in a few runs), so a single xrun during a
/// reload proves nothing. A reload that disturbs the graph, by blocking the callback or
/// re-opening the client, does so every time: the test fails when most reload windows are
/// disturbed and at least twice as many as the quiet windows.
#[test]
fn sighup_reloads_never_interrupt_the_audio() {
    let session = JackSession::start(RATE, PERIOD);
    let dir = TempDir::new().unwrap();
    let notify = NotifySocket::bind(dir.path());
    let config = dir.path().join("latentd.toml");
    std::fs::write(&config, CONFIG_A).unwrap();
    let mut daemon = start_tone_daemon(&session, &dir, &notify, &config, &[]);
    let osc = Osc::new(daemon.osc_addr(Duration::from_secs(2)));
    let capture = JackCapture::connected("capture", ["latentd:out_1", "latentd:out_2"]);
    capture.record(RATE as usize / 2, Duration::from_secs(10));

    let (mut reloads, mut quiet) = (Vec::new(), Vec::new());
    for k in 0..RELOADS {
        let next = if k % 2 == 0 { CONFIG_B } else { CONFIG_A };
        let window = Window::measure(&osc, &capture, || reload(&daemon, &notify, &config, next));
        std::thread::sleep(Duration::from_millis(100));
        let same_length = window.took.saturating_sub(SETTLE);
        quiet.push(Window::measure(&osc, &capture, || {
            std::thread::sleep(same_length)
        }));
        reloads.push(window);
        std::thread::sleep(Duration::from_millis(100));
    }
    let end = capture.frames();
    let lines = daemon.lines();
    let reloaded: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("config reloaded"))
        .collect();
    assert_eq!(reloaded.len(), RELOADS, "{lines:?}");
    assert!(reloaded[0].contains("log level debug"), "{reloaded:?}");
    assert!(reloaded[1].contains("log level info"), "{reloaded:?}");
    assert!(
        !lines.iter().any(|l| l.contains("config reload refused")),
        "{lines:?}"
    );
    daemon.stop_cleanly();
    let rec = capture.finish();
    eprintln!(
        "captured {} frames; reload windows {reloads:?}; quiet windows {quiet:?}; frame-time \
         gaps {:?}",
        rec.frames(),
        rec.frame_time_gaps()
    );

    let start = first_full_level(&rec);
    assert!(
        start < reloads[0].from,
        "the loop was not heard before the first reload"
    );
    assert_unbroken(&rec, start, end, "across the reloads");

    let disturbed = |windows: &[Window]| windows.iter().filter(|w| w.disturbed(&rec)).count();
    let (by_reload, by_itself) = (disturbed(&reloads), disturbed(&quiet));
    assert!(
        by_reload <= RELOADS / 2 || by_reload < 2 * by_itself,
        "{by_reload} of {RELOADS} reloads disturbed JACK, {by_itself} quiet windows did: \
         reloads {reloads:?}, quiet {quiet:?}, frame-time gaps {:?}",
        rec.frame_time_gaps()
    );
    drop(session);
}

/// `/source` of a 3 s loop while the 1 s tone plays: answered `/done`, the ring
/// takes the new length, and the capture shows no step around the swap larger than the
/// new tone's own (a cut from one tone to the other, out of phase, steps by up to 2·A).
#[test]
fn a_source_of_another_length_replaces_the_loop_without_a_click() {
    let session = JackSession::start(RATE, PERIOD);
    let dir = TempDir::new().unwrap();
    let notify = NotifySocket::bind(dir.path());
    let config = dir.path().join("latentd.toml");
    std::fs::write(&config, "[log]\nlevel = \"info\"\n").unwrap();
    let media = dir.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    // 3 s of a 660 Hz quadrature pair, a third of a cycle on: no frame lines up with the
    // 440 Hz loop's, so a swap without a crossfade jumps.
    let new_tone = latentd_tests::Quadrature {
        tone_hz: 660.0,
        ..TONE
    };
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: RATE,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut wav = hound::WavWriter::create(media.join("swap.wav"), spec).unwrap();
    for i in 0..3 * RATE {
        let phase = std::f64::consts::TAU * (660.0 * f64::from(i) / f64::from(RATE) + 1.0 / 3.0);
        wav.write_sample(LEVEL * phase.sin() as f32).unwrap();
        wav.write_sample(LEVEL * phase.cos() as f32).unwrap();
    }
    wav.finalize().unwrap();
    let daemon = start_tone_daemon(
        &session,
        &dir,
        &notify,
        &config,
        &["--media", media.to_str().unwrap()],
    );
    let capture = JackCapture::connected("capture", ["latentd:out_1", "latentd:out_2"]);
    capture.record(RATE as usize / 2, Duration::from_secs(10));
    let osc = Osc::new(daemon.osc_addr(Duration::from_secs(2)));
    assert!((osc.status().loop_s - 1.0).abs() < 1e-3);
    let done = osc.ask("/source", vec![OscType::String("swap.wav".into())], "/done");
    assert!(done.is_some(), "no /done for /source: {:?}", daemon.lines());
    let deadline = Instant::now() + Duration::from_secs(2);
    while (osc.status().loop_s - 3.0).abs() > 1e-3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        (osc.status().loop_s - 3.0).abs() < 1e-3,
        "{:?}",
        osc.status()
    );
    capture.record(RATE as usize / 2, Duration::from_secs(10));
    let rec = capture.finish();

    let start = first_full_level(&rec);
    let end = rec.frames();
    // The new tone plays at the end, at full level.
    assert!((new_tone.envelope(&rec, end - 1) - 1.0).abs() <= FULL_LEVEL_TOLERANCE);
    let step = new_tone.step_at(&rec, end - 1);
    assert!(
        (step - new_tone.phase_step()).abs() <= PHASE_TOLERANCE,
        "the end plays a phase step of {step}, not the new tone's"
    );
    // No click: the crossfade's slope adds at most 2·A / 481 per frame to the tone's own
    // step (A·2·sin(π·660/48000)).
    let own = 2.0 * LEVEL * (std::f32::consts::PI * 660.0 / RATE as f32).sin();
    let bound = own + 2.5 * LEVEL / 481.0;
    let (worst, at) = largest_step(&rec, start + 1, end);
    assert!(
        worst <= bound,
        "a click: step {worst:.4} at frame {at} (full level from {start}); bound {bound:.4}"
    );
}
