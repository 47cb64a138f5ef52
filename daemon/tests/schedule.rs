//! `[[schedule]]` cues on the running `latentd` binary (null output, built-in engine), over
//! real UDP on loopback, on the machine's real clock:
//!
//! - a cue fires at its local minute, not before, once, through the OSC path (a preset saved
//!   over OSC after the config was read is recalled; `/notify` subscribers get the knob
//!   echo and `/schedule/fired`), as does a prompt cue of the same minute (its `/done` goes
//!   to the log), and a cue for another weekday does not; the cues arrive by a SIGHUP
//!   reload, so the reload applies schedules live;
//! - bad entries are refused at load with one line and exit status 2, by the start and by
//!   `check-config`.
//!
//! The local time is the daemon's own: its `TZ` is a POSIX zone a few seconds east of UTC,
//! chosen so that a local minute begins 30 s after the test starts (the seconds-level offset
//! is what makes that possible without waiting up to a minute).

mod common;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::osc_client::{Link, Transport, msg, number, s};
use common::run_to_exit;
use common::service_fixture::{Daemon, Launch};
use jiff::civil::DateTime;
use rosc::{OscPacket, OscType};
use tempfile::TempDir;

const START: Duration = Duration::from_secs(30);
/// From the test's start to the local minute the cue names.
const LEAD: u64 = 30;

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The civil time at unix second `t` in UTC, shifted by `offset_s`.
fn civil(t: i64, offset_s: i64) -> DateTime {
    jiff::tz::TimeZone::UTC.to_datetime(jiff::Timestamp::from_second(t + offset_s).unwrap())
}

fn day_name(t: DateTime) -> &'static str {
    latentd::schedule::DAY_NAMES[t.weekday().to_monday_zero_offset() as usize]
}

/// The arguments of the next message to `addr`, skipping other pushes.
fn until(c: &mut Link, addr: &str) -> Vec<OscType> {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if let Some(OscPacket::Message(m)) = c.recv(Duration::from_millis(100))
            && m.addr == addr
        {
            return m.args;
        }
    }
    panic!("no {addr} within 10 s");
}

/// Rewrite `config`, SIGHUP, wait for the `n`th reload line; returns it.
fn reload(daemon: &Daemon, config: &Path, text: &str, n: usize) -> String {
    std::fs::write(config, text).unwrap();
    daemon.signal(libc::SIGHUP);
    let end = Instant::now() + START;
    loop {
        let lines: Vec<String> = daemon
            .lines()
            .into_iter()
            .filter(|l| l.contains("config reloaded"))
            .collect();
        if lines.len() >= n {
            return lines[n - 1].clone();
        }
        assert!(
            Instant::now() < end,
            "no reload:\n{}",
            daemon.lines().join("\n")
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_cue_fires_at_its_local_minute_once_and_only_on_its_days() {
    let dir = TempDir::new().unwrap();
    // The unix second at which a local minute begins, and the zone that makes it so.
    let cross = unix_now().ceil() as i64 + LEAD as i64;
    let offset = (60 - cross.rem_euclid(60)) % 60;
    let minute = civil(cross, offset);
    assert_eq!(minute.second(), 0);
    let at = format!("{:02}:{:02}", minute.hour(), minute.minute());
    let tomorrow = civil(cross + 86_400, offset);
    let other_day = format!(
        "[[schedule]]\nat = \"{at}\"\ndays = [\"{}\"]\ntransport = \"stop\"\n",
        day_name(tomorrow)
    );
    let config = dir.path().join("latentd.toml");
    std::fs::write(&config, &other_day).unwrap();
    let daemon = Daemon::start(
        &dir,
        Launch {
            args: vec![
                "--loop-seconds".into(),
                "2".into(),
                "--config".into(),
                config.display().to_string(),
            ],
            env: vec![("TZ", format!("LTZ-00:00:{offset:02}"))],
            ..Launch::default()
        },
    );
    let addr = daemon.osc_addr(START);
    daemon.wait_line("schedule: 1 entries, local time zone", START);
    let mut c = Link::connect(addr, Transport::Udp);
    c.send(&msg("/notify", vec![OscType::Int(1)]));
    assert_eq!(until(&mut c, "/done"), vec![s("/notify")]);
    // A preset saved now, after the config was read: the cue looks it up when it fires.
    c.send(&msg("/knob/denoise", vec![OscType::Float(0.25)]));
    assert_eq!(number(&until(&mut c, "/knob/denoise")[0]), 0.25);
    c.send(&msg("/preset/save", vec![s("dusk")]));
    assert_eq!(until(&mut c, "/done"), vec![s("/preset/save"), s("dusk")]);
    c.send(&msg("/knob/denoise", vec![OscType::Float(0.75)]));
    assert_eq!(number(&until(&mut c, "/knob/denoise")[0]), 0.75);
    // The recall arrives by a reload, live.
    let line = reload(
        &daemon,
        &config,
        &format!(
            "{other_day}\n[[schedule]]\nat = \"{at}\"\npreset = \"dusk\"\n\n\
             [[schedule]]\nat = \"{at}\"\nprompt = \"evening rain\"\n"
        ),
        1,
    );
    assert!(
        line.contains("applied live: schedule (3 entries)"),
        "{line}"
    );
    let ready = unix_now();
    assert!(
        ready < cross as f64 - 1.0,
        "the daemon took {LEAD} s to start and take the reload; nothing left to test"
    );

    // Until 5 s past the minute: every push, stamped.
    let mut pushes: Vec<(f64, String, Vec<OscType>)> = Vec::new();
    while unix_now() < cross as f64 + 5.0 {
        if let Some(OscPacket::Message(m)) = c.recv(Duration::from_millis(100)) {
            pushes.push((unix_now(), m.addr, m.args));
        }
    }
    let fired: Vec<_> = pushes
        .iter()
        .filter(|(_, addr, _)| addr == "/schedule/fired")
        .collect();
    // The two cues of the minute, in the file's order; not the other weekday's.
    assert_eq!(fired.len(), 2, "{pushes:?}");
    let (when, _, args) = fired[0];
    assert_eq!(
        *args,
        vec![s(&at), s("preset dusk (fade 0 s, linear)")],
        "{pushes:?}"
    );
    assert_eq!(
        fired[1].2,
        vec![s(&at), s("prompt \"evening rain\"")],
        "{pushes:?}"
    );
    // Not before its minute; within the schedule's poll (1 s) and a margin after.
    assert!(
        *when >= cross as f64,
        "fired {} s early",
        cross as f64 - when
    );
    assert!(
        *when < cross as f64 + 2.5,
        "fired {} s late",
        when - cross as f64
    );
    // Through the OSC path: the knob echo of the recall, and the knob itself.
    assert!(
        pushes
            .iter()
            .any(|(_, addr, args)| addr == "/knob/denoise" && number(&args[0]) == 0.25),
        "{pushes:?}"
    );
    c.send(&msg("/knob/denoise", vec![]));
    assert_eq!(number(&until(&mut c, "/knob/denoise")[0]), 0.25);
    // The prompt was encoded and used: pushed, and its `/done` went to the log.
    assert!(
        pushes
            .iter()
            .any(|(_, addr, args)| addr == "/prompt/applied"
                && args.get(1) == Some(&s("evening rain"))),
        "{pushes:?}"
    );
    daemon.wait_line("schedule: /done /prompt", START);
    // The other weekday's cue did not run; the ones that ran are in the log.
    let lines = daemon.lines();
    assert!(
        lines.iter().any(
            |l| l.contains(&format!("schedule: {at} every day: preset dusk"))
                && l.contains("fired")
        ),
        "{}",
        lines.join("\n")
    );
    assert!(
        !lines.iter().any(|l| l.contains("transport stop: fired")),
        "{}",
        lines.join("\n")
    );
}

#[test]
fn bad_entries_are_refused_at_load_with_one_line_and_exit_2() {
    let dir = TempDir::new().unwrap();
    let config = dir.path().join("bad.toml");
    let path = config.display().to_string();
    for (entry, expected) in [
        (
            "at = \"24:00\"\ntransport = \"play\"",
            "config [[schedule]] entry 1 (at \"24:00\"): at = \"24:00\": expected a time of day \"HH:MM\", 00:00 to 23:59",
        ),
        (
            "at = \"08:00\"\ndays = [\"mon\", \"mo\"]\ntransport = \"play\"",
            "unknown day \"mo\"; days are mon, tue, wed, thu, fri, sat, sun",
        ),
        ("at = \"08:00\"\nvolume = 0.5", "unknown field `volume`"),
        (
            "at = \"08:00\"\ntransport = \"stop\"\nprompt = \"rain\"",
            "2 actions (transport, prompt): an entry does one thing",
        ),
        (
            "at = \"08:00\"\npreset = \"a/b\"",
            "/preset/recall refuses it: argument 1 (name): preset name \"a/b\" holds a path separator",
        ),
    ] {
        // A good entry first: the bad one is named by its place.
        let text = format!(
            "[[schedule]]\nat = \"07:00\"\ntransport = \"play\"\n\n[[schedule]]\n{entry}\n"
        );
        let text = text.replace("entry 1", "entry 2");
        std::fs::write(&config, &text).unwrap();
        let expected = expected.replace("entry 1", "entry 2");
        for args in [
            vec!["--config", &path, "--audio", "null", "--engine", "off"],
            vec!["check-config", &path],
        ] {
            let (code, stderr) = run_to_exit(dir.path(), &args, START);
            assert_eq!(code, Some(2), "{args:?} {entry:?}: {stderr}");
            let lines: Vec<&str> = stderr.lines().collect();
            assert_eq!(lines.len(), 1, "{args:?} {entry:?}: {stderr}");
            assert!(
                lines[0].starts_with("latentd: error: ") && lines[0].contains(&expected),
                "{args:?} {entry:?}: {stderr}\nexpected {expected:?}"
            );
        }
    }
    // A good schedule passes check-config and prints back as entries that read again.
    std::fs::write(
        &config,
        "[[schedule]]\nat = \"7:30\"\ndays = [\"sat\", \"SUN\"]\npreset = \"brunch\"\nfade_s = 20\n",
    )
    .unwrap();
    let out = common::isolated(&mut std::process::Command::new(common::BIN), dir.path())
        .args(["check-config", &path])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(
        printed.contains(
            "[[schedule]]\nat = \"07:30\"\ndays = [\"sat\", \"sun\"]\npreset = \"brunch\"\nfade_s = 20.0\ncurve = \"linear\"\n"
        ),
        "{printed}"
    );
    let entries = &printed[printed.find("[[schedule]]").unwrap()..];
    std::fs::write(&config, entries).unwrap();
    let (code, stderr) = run_to_exit(dir.path(), &["check-config", &path], START);
    assert_eq!(code, Some(0), "{stderr}");
}
