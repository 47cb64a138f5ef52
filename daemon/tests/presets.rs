//! Presets and scenes against the running `latentd` binary (null output, built-in engine),
//! over real UDP sockets on loopback, with real files beside the state file:
//!
//! - save, list, recall and delete, across a daemon restart (the files are read back);
//! - a recall with a fade passes through intermediate values (queried, and echoed to a
//!   `/notify` subscriber) and reaches the preset's values only after the fade; an integer
//!   knob switches halfway;
//! - a recall with another prompt crossfades through `prompt_blend`;
//! - a glide on one knob (`/knob/<name> value glide_s`);
//! - a morph at x = 0, 0.5 and 1;
//! - a recall in a timed bundle starts at the timetag;
//! - bad names and unknown presets get `/fail` and change nothing;
//! - a save that cannot be written (a full disk: a private tmpfs, which needs root with
//!   `CAP_SYS_ADMIN`, else `SKIPPED`) leaves no file, no temp file, the old file as it was.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use common::osc_client::{Link, Transport, bundle, msg, number, s, timetag};
use common::service_fixture::{Daemon, Launch};
use common::tmpfs::Tmpfs;
use rosc::{OscPacket, OscType};
use tempfile::TempDir;

const START: Duration = Duration::from_secs(30);

fn f(v: f32) -> OscType {
    OscType::Float(v)
}

fn start(dir: &TempDir, state: Option<&Path>) -> (Daemon, SocketAddr) {
    let daemon = Daemon::start(
        dir,
        Launch {
            args: ["--loop-seconds", "2", "--period", "256"]
                .map(String::from)
                .to_vec(),
            state: state.map(Path::to_path_buf),
            ..Launch::default()
        },
    );
    let addr = daemon.osc_addr(START);
    (daemon, addr)
}

/// Sends `packet`, expects `/done <address> <name>`.
fn done(link: &mut Link, address: &str, name: &str) {
    link.send(&msg(address, vec![s(name)]));
    let args = link.expect("/done");
    assert_eq!(args, vec![s(address), s(name)]);
}

fn list(link: &mut Link) -> Vec<String> {
    link.send(&msg("/preset/list", vec![]));
    link.expect("/preset/list.reply")
        .into_iter()
        .map(|a| a.string().unwrap())
        .collect()
}

fn set(link: &mut Link, knobs: &[(&str, f32)]) {
    for &(name, value) in knobs {
        link.send(&msg(&format!("/knob/{name}"), vec![f(value)]));
    }
    // Knob sets answer nothing; a query after them answers once they are applied.
    let (last, value) = knobs[knobs.len() - 1];
    assert_eq!(link.knob(last), f64::from(value));
}

#[test]
fn presets_are_saved_listed_recalled_and_deleted_across_a_restart() {
    let dir = TempDir::new().unwrap();
    let (mut daemon, addr) = start(&dir, None);
    let mut c = Link::connect(addr, Transport::Udp);
    assert_eq!(list(&mut c), Vec::<String>::new());
    set(
        &mut c,
        &[("guidance", 4.0), ("steps", 12.0), ("denoise", 0.25)],
    );
    done(&mut c, "/preset/save", "verse");
    set(
        &mut c,
        &[("guidance", 9.0), ("steps", 4.0), ("denoise", 0.75)],
    );
    done(&mut c, "/preset/save", "chorus");
    assert_eq!(list(&mut c), ["chorus", "verse"]);
    // The files sit beside the state file, one per preset, in the documented format.
    let file = dir.path().join("presets/verse.json");
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(saved["version"], 1);
    assert_eq!(saved["knobs"]["guidance"], 4.0);
    assert_eq!(saved["knobs"]["steps"], 12.0);
    daemon.stop_cleanly();

    let (_daemon, addr) = start(&dir, None);
    let mut c = Link::connect(addr, Transport::Udp);
    assert_eq!(list(&mut c), ["chorus", "verse"]);
    c.send(&msg("/preset/recall", vec![s("verse")]));
    assert_eq!(c.knob("guidance"), 4.0);
    assert_eq!(c.knob("steps"), 12.0);
    assert_eq!(c.knob("denoise"), 0.25);
    done(&mut c, "/preset/delete", "verse");
    assert!(!file.exists());
    assert_eq!(list(&mut c), ["chorus"]);
    let (address, reason) = c.fails(&msg("/preset/recall", vec![s("verse")]));
    assert_eq!(address, "/preset/recall");
    assert!(reason.contains("no preset named \"verse\""), "{reason}");
    // Bad names and unknown presets: a precise /fail, and nothing changes.
    let before = c.knobs();
    for (packet, address, why) in [
        (
            msg("/preset/save", vec![s("../escape")]),
            "/preset/save",
            "path separator",
        ),
        (
            msg("/preset/save", vec![s(&"n".repeat(65))]),
            "/preset/save",
            "65 bytes",
        ),
        (
            msg("/preset/save", vec![s(".hidden")]),
            "/preset/save",
            "starts with '.'",
        ),
        (
            msg("/preset/recall", vec![s("a/b"), f(1.0)]),
            "/preset/recall",
            "path separator",
        ),
        (
            msg("/preset/recall", vec![s("nope")]),
            "/preset/recall",
            "no preset named \"nope\"",
        ),
        (
            msg("/preset/recall", vec![s("chorus"), f(1.0), s("cubic")]),
            "/preset/recall",
            "unknown curve",
        ),
        (
            msg("/preset/morph", vec![s("chorus"), s("nope"), f(0.5)]),
            "/preset/morph",
            "no preset named \"nope\"",
        ),
        (
            msg("/preset/delete", vec![s("nope")]),
            "/preset/delete",
            "no preset named",
        ),
    ] {
        let (got_address, reason) = c.fails(&packet);
        assert_eq!(got_address, address, "{reason}");
        assert!(reason.contains(why), "expected {why:?} in {reason:?}");
    }
    // A bundle with one bad recall applies nothing of it.
    let (_, reason) = c.fails(&bundle(
        common::osc_client::IMMEDIATELY,
        vec![
            msg("/knob/guidance", vec![f(2.0)]),
            msg("/preset/recall", vec![s("nope")]),
        ],
    ));
    assert!(reason.contains("no preset"), "{reason}");
    assert_eq!(c.knobs(), before);
    assert_eq!(list(&mut c), ["chorus"]);
    let names: Vec<String> = std::fs::read_dir(dir.path().join("presets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["chorus.json"]);
    assert!(!dir.path().join("escape.json").exists());
}

/// Queries `knob` until `limit` after `t0`; returns (seconds since `t0` when the reply
/// arrived, value).
fn trace(c: &mut Link, knob: &str, t0: Instant, limit: Duration) -> Vec<(f64, f64)> {
    let mut seen = Vec::new();
    while t0.elapsed() < limit {
        let v = c.knob(knob);
        seen.push((t0.elapsed().as_secs_f64(), v));
        std::thread::sleep(Duration::from_millis(15));
    }
    seen
}

/// The `/knob/<name>` values pushed to `sub` within `span`.
fn echoes(sub: &mut Link, name: &str, span: Duration) -> Vec<f64> {
    let addr = format!("/knob/{name}");
    let end = Instant::now() + span;
    let mut values = Vec::new();
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match sub.recv(left) {
            Some(OscPacket::Message(m)) if m.addr == addr => values.push(number(&m.args[0])),
            Some(_) => {}
            None => break,
        }
    }
    values
}

#[test]
fn fades_glides_morphs_and_timed_recalls_run_on_the_engine_clock() {
    let dir = TempDir::new().unwrap();
    let (_daemon, addr) = start(&dir, None);
    let mut c = Link::connect(addr, Transport::Udp);
    set(
        &mut c,
        &[("guidance", 1.0), ("steps", 8.0), ("x0_target", 0.0)],
    );
    done(&mut c, "/preset/save", "a");
    set(
        &mut c,
        &[("guidance", 9.0), ("steps", 12.0), ("x0_target", 1.0)],
    );
    done(&mut c, "/preset/save", "b");
    c.send(&msg("/preset/recall", vec![s("a")]));
    assert_eq!(c.knob("guidance"), 1.0);

    // A 1 s fade: intermediate values on the way, the target only after it.
    let mut sub = Link::connect(addr, Transport::Udp);
    sub.send(&msg("/notify", vec![OscType::Int(1)]));
    assert_eq!(sub.expect("/done"), vec![s("/notify")]);
    let t0 = Instant::now();
    c.send(&msg("/preset/recall", vec![s("b"), f(1.0)]));
    let guidance = trace(&mut c, "guidance", t0, Duration::from_millis(1500));
    let between: Vec<f64> = guidance
        .iter()
        .map(|&(_, v)| v)
        .filter(|&v| v > 1.0 && v < 9.0)
        .collect();
    assert!(
        between.len() >= 5,
        "too few intermediate values: {guidance:?}"
    );
    assert!(
        between.windows(2).all(|w| w[0] <= w[1]),
        "not monotonic: {guidance:?}"
    );
    // Margins: the fade runs on the output's frame clock, which may catch up on the wall
    // clock after a stall of a loaded machine.
    for &(t, v) in &guidance {
        if t < 0.75 {
            assert!(v < 9.0, "target reached at {t} s, before the fade ended");
        }
    }
    assert_eq!(guidance.last().unwrap().1, 9.0, "{guidance:?}");
    assert_eq!(c.knob("steps"), 12.0);
    // Subscribers saw the fade go by and its end.
    let pushed = echoes(&mut sub, "guidance", Duration::from_millis(300));
    assert!(
        pushed.iter().filter(|&&v| v > 1.0 && v < 9.0).count() >= 5,
        "{pushed:?}"
    );
    assert_eq!(pushed.last(), Some(&9.0), "{pushed:?}");

    // An integer knob switches halfway through the fade.
    let t0 = Instant::now();
    c.send(&msg("/preset/recall", vec![s("a"), f(1.0), s("smooth")]));
    let steps = trace(&mut c, "steps", t0, Duration::from_millis(1300));
    for &(t, v) in &steps {
        if t < 0.3 {
            assert_eq!(v, 12.0, "switched before halfway at {t} s: {steps:?}");
        }
    }
    assert_eq!(steps.last().unwrap().1, 8.0);
    assert_eq!(c.knob("guidance"), 1.0);

    // A glide on one knob.
    let t0 = Instant::now();
    c.send(&msg("/knob/guidance", vec![f(5.0), f(0.6)]));
    let glide = trace(&mut c, "guidance", t0, Duration::from_millis(1000));
    assert!(
        glide.iter().any(|&(_, v)| v > 1.0 && v < 5.0),
        "no value in between: {glide:?}"
    );
    assert_eq!(glide.last().unwrap().1, 5.0);

    // The XY pad: x = 0, 0.5, 1.
    for (x, guidance, steps, x0) in [
        (0.0, 1.0, 8.0, 0.0),
        (0.5, 5.0, 12.0, 0.5),
        (1.0, 9.0, 12.0, 1.0),
        (0.25, 3.0, 8.0, 0.25),
    ] {
        c.send(&msg("/preset/morph", vec![s("a"), s("b"), f(x)]));
        assert_eq!(c.knob("guidance"), guidance, "x = {x}");
        assert_eq!(c.knob("steps"), steps, "x = {x}");
        assert_eq!(c.knob("x0_target"), x0, "x = {x}");
    }

    // A recall in a timed bundle starts at its timetag.
    c.send(&msg("/preset/recall", vec![s("a")]));
    assert_eq!(c.knob("guidance"), 1.0);
    let at = SystemTime::now() + Duration::from_millis(800);
    c.send(&bundle(
        timetag(at),
        vec![msg("/preset/recall", vec![s("b")])],
    ));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(c.knob("guidance"), 1.0, "applied before its timetag");
    while SystemTime::now() < at + Duration::from_millis(100) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(c.knob("guidance"), 9.0, "not applied at its timetag");
}

#[test]
fn a_save_that_cannot_be_written_leaves_no_file_and_changes_nothing() {
    let dir = TempDir::new().unwrap();
    let Some(fs) = Tmpfs::mount_or_skip(&dir.path().join("statefs"), 64 * 1024, "preset save")
    else {
        return;
    };
    let state = fs.path().join("state.json");
    let (_daemon, addr) = start(&dir, Some(&state));
    let mut c = Link::connect(addr, Transport::Udp);
    set(&mut c, &[("guidance", 3.0)]);
    done(&mut c, "/preset/save", "kept");
    let kept = fs.path().join("presets/kept.json");
    let kept_bytes = std::fs::read(&kept).unwrap();

    let filler = fs.fill("filler");
    set(&mut c, &[("guidance", 6.0)]);
    for name in ["kept", "new"] {
        c.send(&msg("/preset/save", vec![s(name)]));
        let (address, reason) = c.expect_fail();
        assert_eq!(address, "/preset/save");
        assert!(reason.contains("ENOSPC"), "{reason}");
        assert!(reason.contains("untouched"), "{reason}");
    }
    assert_eq!(std::fs::read(&kept).unwrap(), kept_bytes);
    let files: Vec<String> = std::fs::read_dir(fs.path().join("presets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["kept.json"], "a partial or temp file was left");
    assert_eq!(list(&mut c), ["kept"]);
    c.send(&msg("/preset/recall", vec![s("kept")]));
    assert_eq!(c.knob("guidance"), 3.0, "the old preset is what recalls");

    // Space again: the save goes through.
    std::fs::remove_file(&filler).unwrap();
    done(&mut c, "/preset/save", "new");
    assert_eq!(list(&mut c), ["kept", "new"]);
}

#[test]
fn the_documented_preset_format_is_the_one_read() {
    let doc = include_str!("../../docs/operations.md");
    let section = doc
        .split("\n## Presets\n")
        .nth(1)
        .expect("docs/operations.md has a Presets section");
    let example = section
        .split("```json")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the Presets section shows a preset file");
    let preset: latentd::presets::Preset = serde_json::from_str(example).unwrap();
    preset.validate().unwrap();
    let bytes = latentd::presets::MAX_PRESET_BYTES;
    assert!(doc.contains(&format!("at most 64 KiB ({bytes} bytes)")));
}

#[test]
fn a_recall_with_another_prompt_crossfades_through_prompt_blend() {
    let dir = TempDir::new().unwrap();
    let (_daemon, addr) = start(&dir, None);
    let mut c = Link::connect(addr, Transport::Udp);
    let prompt = |c: &mut Link, tags: &str| {
        c.send(&msg("/prompt", vec![s(tags)]));
        assert_eq!(c.expect("/done")[0], s("/prompt"));
    };
    prompt(&mut c, "calm pad");
    done(&mut c, "/preset/save", "calm");
    prompt(&mut c, "dark drone");
    done(&mut c, "/preset/save", "dark");
    assert_eq!(c.knob("prompt_blend"), 0.0);

    // From "dark drone" to "calm pad" over 1 s: the pair becomes (dark drone, calm pad)
    // and prompt_blend ramps from 0 to 1.
    let t0 = Instant::now();
    c.send(&msg("/preset/recall", vec![s("calm"), f(1.0)]));
    assert_eq!(
        c.expect("/done")[0],
        s("/prompt"),
        "the prompt pair changes"
    );
    let blend = trace(&mut c, "prompt_blend", t0, Duration::from_millis(1400));
    assert!(
        blend.iter().filter(|&&(_, v)| v > 0.0 && v < 1.0).count() >= 5,
        "no crossfade: {blend:?}"
    );
    assert_eq!(blend.last().unwrap().1, 1.0, "{blend:?}");
    // With no fade, the preset's prompt replaces the pair and its blend (0) applies.
    c.send(&msg("/preset/recall", vec![s("dark")]));
    assert_eq!(c.expect("/done")[0], s("/prompt"));
    assert_eq!(c.knob("prompt_blend"), 0.0);
}
