//! The schedule's minute logic driven by a test clock that steps through minutes, the
//! entries' checks, and the thread firing through its sink.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use jiff::civil::{DateTime, date};

use super::*;

fn schema() -> Schema {
    Schema::new(latentd_osc_schema::reference_knobs()).unwrap()
}

fn entry(toml_text: &str) -> ScheduleFileEntry {
    toml::from_str(toml_text).unwrap()
}

fn cue(toml_text: &str) -> Cue {
    Cue::from_file(&entry(toml_text), &schema()).unwrap()
}

fn refusal(toml_text: &str) -> String {
    Cue::from_file(&entry(toml_text), &schema()).unwrap_err()
}

/// 2026-12-04 is a Friday.
fn friday(hour: i8, minute: i8, second: i8) -> DateTime {
    date(2026, 12, 4).at(hour, minute, second, 0)
}

/// Every reading from `start` to `end`, every 15 s; each fired cue with the reading it
/// fired at.
fn step(cues: &mut Cues, start: DateTime, end: DateTime) -> Vec<(DateTime, CueAction)> {
    let mut fired = Vec::new();
    let mut now = start;
    while now <= end {
        for cue in cues.due(now) {
            fired.push((now, cue.action.clone()));
        }
        now = now.checked_add(SignedDuration::from_secs(15)).unwrap();
    }
    fired
}

fn transport(t: Transport) -> CueAction {
    CueAction::Transport(t)
}

#[test]
fn an_entry_fires_in_its_minute_once_and_only_on_its_days() {
    let mut cues = Cues::new(vec![
        cue(
            "at = \"09:00\"\ndays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"]\ntransport = \"play\"",
        ),
        cue("at = \"22:30\"\ndays = [\"Sat\"]\ntransport = \"stop\""),
    ]);
    // Friday 08:58 to Monday 09:02, read every 15 s.
    let monday_end = date(2026, 12, 7).at(9, 2, 0, 0);
    let fired = step(&mut cues, friday(8, 58, 0), monday_end);
    assert_eq!(
        fired,
        [
            // Not before its minute (08:58, 08:59 read 8 times), at its first reading in it,
            // once (the other three readings of 09:00 and every later one do not fire it).
            (friday(9, 0, 0), transport(Transport::Play)),
            // Saturday only: not Friday's or Sunday's 22:30.
            (
                date(2026, 12, 5).at(22, 30, 0, 0),
                transport(Transport::Stop)
            ),
            // Not on the weekend; Monday again.
            (date(2026, 12, 7).at(9, 0, 0, 0), transport(Transport::Play)),
        ]
    );
}

#[test]
fn a_skipped_minute_fires_late_and_a_repeated_minute_fires_once() {
    let mut cues = Cues::new(vec![
        cue("at = \"02:30\"\nprompt = \"night\""),
        cue("at = \"02:10\"\ntransport = \"play\""),
    ]);
    // Spring-forward: the local clock jumps from 01:59 to 03:00, so 02:10 and 02:30 never
    // read; they fire at the first reading after, in the order of their minutes.
    assert!(cues.due(friday(1, 59, 59)).is_empty());
    let late: Vec<CueAction> = cues
        .due(friday(3, 0, 0))
        .into_iter()
        .map(|c| c.action.clone())
        .collect();
    assert_eq!(
        late,
        [
            transport(Transport::Play),
            CueAction::Prompt("night".into())
        ]
    );
    // Fall-back: the clock goes back from 02:59 to 02:00 and passes 02:10 and 02:30 again:
    // no second firing on the same day.
    let mut cues = Cues::new(vec![cue("at = \"02:30\"\nprompt = \"night\"")]);
    assert_eq!(step(&mut cues, friday(2, 0, 0), friday(2, 59, 0)).len(), 1);
    assert!(step(&mut cues, friday(2, 0, 0), friday(2, 59, 0)).is_empty());
    // A jump longer than the catch-up span fires nothing it skipped.
    let mut cues = Cues::new(vec![cue("at = \"12:00\"\ntransport = \"play\"")]);
    assert!(cues.due(friday(11, 0, 0)).is_empty());
    assert!(cues.due(friday(13, 0, 0)).is_empty());
    // Next day as usual.
    assert_eq!(cues.due(date(2026, 12, 5).at(12, 0, 30, 0)).len(), 1);
}

#[test]
fn a_reload_keeps_what_fired_for_entries_it_keeps() {
    let play = cue("at = \"09:00\"\ntransport = \"play\"");
    let prompt = cue("at = \"09:00\"\nprompt = \"morning\"");
    let mut cues = Cues::new(vec![play.clone()]);
    assert_eq!(cues.due(friday(9, 0, 10)).len(), 1);
    // Reloaded in the same minute with one more entry for it: only the new one fires.
    cues.replace(vec![prompt.clone(), play.clone()]);
    let due: Vec<CueAction> = cues
        .due(friday(9, 0, 40))
        .into_iter()
        .map(|c| c.action.clone())
        .collect();
    assert_eq!(due, std::slice::from_ref(&prompt.action));
    assert!(cues.due(friday(9, 0, 50)).is_empty());
    // Removed: gone.
    cues.replace(vec![]);
    assert!(cues.due(date(2026, 12, 5).at(9, 0, 0, 0)).is_empty());
}

#[test]
fn entries_become_the_osc_commands_a_client_would_send() {
    let c = cue("at = \"7:05\"\npreset = \"dawn\"\nfade_s = 30\ncurve = \"smooth\"");
    assert_eq!(c.at, TimeOfDay { hour: 7, minute: 5 });
    assert_eq!(c.days, Days::ALL);
    assert_eq!(
        c.command,
        Command::PresetRecall {
            name: "dawn".into(),
            fade_s: 30.0,
            curve: FadeCurve::Smooth,
        }
    );
    assert_eq!(
        cue("at = \"00:00\"\ntransport = \"stop\"").command,
        Command::Pause
    );
    assert_eq!(
        cue("at = \"23:59\"\ntransport = \"play\"").command,
        Command::Play
    );
    assert_eq!(
        cue("at = \"12:00\"\nprompt = \"bossa\"").command,
        Command::Prompt {
            tags: "bossa".into(),
            tags_b: None
        }
    );
    // What check-config prints reads back as the same entry.
    let printed = c.to_toml();
    let body = printed.strip_prefix("[[schedule]]\n").unwrap();
    assert_eq!(cue(body), c);
}

#[test]
fn bad_entries_are_refused_with_what_is_accepted() {
    for (text, expected) in [
        (
            "at = \"25:00\"\ntransport = \"play\"",
            "expected a time of day \"HH:MM\"",
        ),
        ("at = \"9\"\ntransport = \"play\"", "expected a time of day"),
        ("at = \"09:60\"\ntransport = \"play\"", "00:00 to 23:59"),
        (
            "at = \"09:00:30\"\ntransport = \"play\"",
            "expected a time of day",
        ),
        ("transport = \"play\"", "no `at`"),
        (
            "at = \"09:00\"\ndays = [\"mon\", \"funday\"]\ntransport = \"play\"",
            "unknown day \"funday\"; days are mon, tue, wed, thu, fri, sat, sun",
        ),
        (
            "at = \"09:00\"\ndays = []\ntransport = \"play\"",
            "name at least one day",
        ),
        (
            "at = \"09:00\"",
            "no action: give one of preset, transport or prompt",
        ),
        (
            "at = \"09:00\"\npreset = \"a\"\nprompt = \"b\"",
            "2 actions (preset, prompt): an entry does one thing",
        ),
        (
            "at = \"09:00\"\ntransport = \"rewind\"",
            "expected \"play\" or \"stop\"",
        ),
        (
            "at = \"09:00\"\ntransport = \"play\"\nfade_s = 2",
            "fade_s applies only to a preset",
        ),
        (
            "at = \"09:00\"\npreset = \"../night\"",
            "/preset/recall refuses it: argument 1 (name): preset name \"../night\" holds a path separator",
        ),
        (
            "at = \"09:00\"\npreset = \"n\"\nfade_s = -1",
            "/preset/recall refuses it",
        ),
        (
            "at = \"09:00\"\npreset = \"n\"\ncurve = \"wobbly\"",
            "unknown curve \"wobbly\"",
        ),
        ("at = \"09:00\"\nprompt = \"   \"", "prompt: "),
    ] {
        let why = refusal(text);
        assert!(
            why.contains(expected),
            "{text:?}: {why:?} lacks {expected:?}"
        );
    }
    // An unknown key is refused by the file's parser (with its line).
    assert!(toml::from_str::<ScheduleFileEntry>("at = \"09:00\"\nvolume = 3").is_err());
}

/// A clock the test sets; counts its readings.
#[derive(Clone)]
struct TestClock {
    now: Arc<Mutex<DateTime>>,
    reads: Arc<AtomicU64>,
}

impl TestClock {
    fn set(&self, t: DateTime) {
        *self.now.lock().unwrap() = t;
    }

    /// Wait until the thread has read the clock twice more (so it has seen the time set).
    fn settle(&self) {
        let target = self.reads.load(Ordering::SeqCst) + 2;
        let start = Instant::now();
        while self.reads.load(Ordering::SeqCst) < target {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "thread stopped reading"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl WallClock for TestClock {
    fn now(&self) -> DateTime {
        self.reads.fetch_add(1, Ordering::SeqCst);
        *self.now.lock().unwrap()
    }
}

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl CueSink for Recorder {
    fn fire(&self, cue: &Cue) {
        self.0.lock().unwrap().push(cue.to_string());
    }
}

#[test]
fn the_thread_reads_its_clock_and_fires_through_its_sink() {
    let clock = TestClock {
        now: Arc::new(Mutex::new(friday(8, 59, 0))),
        reads: Arc::new(AtomicU64::new(0)),
    };
    let sink = Arc::new(Recorder::default());
    let runner = ScheduleRunner::spawn(
        vec![cue(
            "at = \"09:00\"\ndays = [\"fri\"]\ntransport = \"stop\"",
        )],
        clock.clone(),
        Arc::clone(&sink) as Arc<dyn CueSink>,
        Duration::from_millis(2),
    )
    .unwrap();
    let fired = || sink.0.lock().unwrap().clone();
    for second in [0, 30, 59] {
        clock.set(friday(8, 59, second));
        clock.settle();
    }
    assert!(fired().is_empty(), "fired before its minute: {:?}", fired());
    for (minute, second) in [(0, 0), (0, 1), (0, 59), (1, 0)] {
        clock.set(friday(9, minute, second));
        clock.settle();
    }
    assert_eq!(fired(), ["09:00 fri: transport stop"]);
    // A reload with a new entry for the next minute: fired from the thread's next readings.
    runner.replace(vec![cue("at = \"09:02\"\nprompt = \"later\"")]);
    clock.set(friday(9, 2, 0));
    clock.settle();
    assert_eq!(
        fired(),
        [
            "09:00 fri: transport stop",
            "09:02 every day: prompt \"later\""
        ]
    );
    runner.stop();
}
