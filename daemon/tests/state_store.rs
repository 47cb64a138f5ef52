//! The state file with real files in a temp dir: round trip, corrupt files moved aside with
//! their bytes kept, stray temp files of an interrupted save ignored, debounced saving.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use latentd::state::{
    DebouncedSaver, LoadOutcome, LoopBandSeconds, PersistentState, STATE_VERSION, StateError,
    StateStore,
};

fn sample_state() -> PersistentState {
    PersistentState {
        version: STATE_VERSION,
        knobs: [
            ("density".to_owned(), 0.75),
            ("brightness".to_owned(), -0.25),
        ]
        .into_iter()
        .collect(),
        prompt: Some("warm analog pads".to_owned()),
        prompt_b: Some("glitchy breakbeat".to_owned()),
        prompt_blend: 0.3,
        timbre: Some(PathBuf::from("/srv/media/cello.wav")),
        structure: Some(PathBuf::from("/srv/media/groove.wav")),
        loop_band: Some(LoopBandSeconds {
            start: 2.5,
            end: 10.0,
        }),
        source: Some(PathBuf::from("/srv/media/source.wav")),
        midi_maps: Some(vec![latentd::midi::MidiMapEntry {
            channel: 1,
            cc: 74,
            target: "denoise".to_owned(),
            min: Some(0.2),
            max: Some(0.8),
            curve: Some("ease_in".to_owned()),
            mode: Some("pickup".to_owned()),
        }]),
    }
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn missing_file_starts_fresh_and_a_save_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/state.json");
    let (store, state, outcome) = StateStore::open(&path);
    assert_eq!(outcome, LoadOutcome::Fresh);
    assert_eq!(state, PersistentState::default());

    store.save_now(&sample_state()).unwrap();
    assert_eq!(entries(&dir.path().join("sub")), ["state.json"]);

    let (_, restored, outcome) = StateStore::open(&path);
    assert_eq!(outcome, LoadOutcome::Restored);
    assert_eq!(restored, sample_state());
}

#[test]
fn corrupt_file_is_moved_aside_with_its_bytes_and_defaults_are_used() {
    for (bytes, reason_part) in [
        (
            &b"{\"version\": 1, \"knobs\": {\"density\": "[..],
            "invalid JSON",
        ),
        (&b"{\"version\": 99}"[..], "version 99"),
        (
            &b"{\"version\": 1, \"prompt_blend\": 4.0}"[..],
            "prompt_blend 4",
        ),
        (&b"{\"version\": 1, \"knbos\": {}}"[..], "unknown field"),
        (
            &b"{\"version\": 1, \"loop_band\": {\"start\": 5.0, \"end\": 1.0}}"[..],
            "loop band",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, bytes).unwrap();

        let (store, state, outcome) = StateStore::open(&path);
        assert_eq!(state, PersistentState::default());
        let LoadOutcome::MovedAside { moved_to, reason } = outcome else {
            panic!("not moved aside: {outcome:?}");
        };
        assert!(reason.contains(reason_part), "{reason}");
        let name = moved_to.file_name().unwrap().to_string_lossy().into_owned();
        let stamp: u64 = name
            .strip_prefix("state.json.corrupt-")
            .unwrap_or_else(|| panic!("{name}"))
            .parse()
            .unwrap();
        assert!(stamp > 1_600_000_000);
        assert_eq!(fs::read(&moved_to).unwrap(), bytes, "content kept");
        assert!(!path.exists());

        // Saving afterwards writes a fresh file beside the kept one.
        store.save_now(&sample_state()).unwrap();
        assert_eq!(entries(dir.path()), ["state.json", name.as_str()]);
    }
}

#[test]
fn two_bad_files_in_one_second_are_both_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let mut kept = Vec::new();
    for bytes in [&b"first, not json"[..], &b"second, not json"[..]] {
        fs::write(&path, bytes).unwrap();
        let (_, _, outcome) = StateStore::open(&path);
        let LoadOutcome::MovedAside { moved_to, .. } = outcome else {
            panic!("not moved aside: {outcome:?}");
        };
        kept.push((moved_to, bytes));
    }
    assert_ne!(
        kept[0].0, kept[1].0,
        "the second bad file overwrote the first"
    );
    for (moved_to, bytes) in &kept {
        assert_eq!(fs::read(moved_to).unwrap(), *bytes);
    }
}

#[test]
fn unreadable_path_is_moved_aside_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    // A directory where the file should be: reading it fails (EISDIR).
    fs::create_dir(&path).unwrap();
    fs::write(path.join("inside"), b"kept").unwrap();
    let (_, state, outcome) = StateStore::open(&path);
    assert_eq!(state, PersistentState::default());
    let LoadOutcome::MovedAside { moved_to, reason } = outcome else {
        panic!("not moved aside: {outcome:?}");
    };
    assert!(reason.starts_with("unreadable"), "{reason}");
    assert_eq!(fs::read(moved_to.join("inside")).unwrap(), b"kept");
}

#[test]
fn bad_file_that_cannot_be_moved_aside_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    fs::write(&path, b"not json").unwrap();
    // Occupy every name it could be moved to (the plain one and the numbered ones), so the
    // move fails (whatever the user's privileges).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for second in now..now + 5 {
        fs::write(dir.path().join(format!("state.json.corrupt-{second}")), b"").unwrap();
        for n in 2..=latentd::unique_file::MAX_SAME_SECOND {
            let blocker = dir.path().join(format!("state.json.corrupt-{second}-{n}"));
            fs::write(blocker, b"").unwrap();
        }
    }
    let (store, state, outcome) = StateStore::open(&path);
    assert_eq!(state, PersistentState::default());
    assert!(
        matches!(outcome, LoadOutcome::KeptInPlace { .. }),
        "{outcome:?}"
    );
    assert!(matches!(
        store.save_now(&sample_state()),
        Err(StateError::Protected(_))
    ));
    assert_eq!(fs::read(&path).unwrap(), b"not json");
}

#[test]
fn a_crash_between_write_and_rename_leaves_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let (store, _, _) = StateStore::open(&path);
    store.save_now(&sample_state()).unwrap();

    // What a save killed before its rename leaves: a half-written temp file.
    let stray = dir.path().join(".state.json.tmp-424242");
    fs::write(&stray, b"{\"version\": 1, \"knobs\": {\"dens").unwrap();

    let (_, restored, outcome) = StateStore::open(&path);
    assert_eq!(outcome, LoadOutcome::Restored);
    assert_eq!(restored, sample_state());
    assert!(!stray.exists(), "stray temp removed at open");
    assert_eq!(entries(dir.path()), ["state.json"]);
}

#[test]
fn debounced_saver_coalesces_changes_and_flushes_the_latest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let (store, mut state, _) = StateStore::open(&path);
    let saver = DebouncedSaver::spawn(store, Duration::from_millis(500)).unwrap();

    // 100 knob changes in a burst: one write, 500 ms after the first.
    let first = Instant::now();
    for step in 0..100 {
        state
            .knobs
            .insert("density".into(), f64::from(step) / 100.0);
        saver.request_save(state.clone()).unwrap();
    }
    assert!(
        first.elapsed() < Duration::from_millis(400),
        "requests too slow to test"
    );
    assert_eq!(saver.writes(), 0, "nothing written inside the window");
    let deadline = Instant::now() + Duration::from_secs(3);
    while saver.writes() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(first.elapsed() >= Duration::from_millis(500));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(saver.writes(), 1);
    let (_, on_disk, _) = StateStore::open(&path);
    assert_eq!(on_disk.knobs["density"], 0.99);

    // A change then an immediate flush (exit): written at once, no second write later.
    state.prompt = Some("late change".into());
    saver.request_save(state.clone()).unwrap();
    saver.flush().unwrap();
    assert_eq!(saver.writes(), 2);
    let (_, on_disk, _) = StateStore::open(&path);
    assert_eq!(on_disk.prompt.as_deref(), Some("late change"));
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(saver.writes(), 2);

    // Dropping the saver writes what is pending.
    state.prompt = Some("at drop".into());
    saver.request_save(state).unwrap();
    drop(saver);
    let (_, on_disk, _) = StateStore::open(&path);
    assert_eq!(on_disk.prompt.as_deref(), Some("at drop"));
}

#[test]
fn values_osc_would_refuse_are_dropped_and_the_rest_restored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let long = "a".repeat(1001);
    fs::write(
        &path,
        format!(
            "{{\"version\": 1, \"knobs\": {{\"denoise\": 0.25, \"sampler\": 0.5, \
             \"periodicity\": 99.0, \"from_a_newer_build\": 1.0}}, \"prompt\": \"{long}\", \
             \"prompt_b\": \"soft keys\", \"prompt_blend\": 0.5}}"
        ),
    )
    .unwrap();
    let (_, state, outcome) = StateStore::open(&path);
    assert_eq!(outcome, LoadOutcome::Restored);
    let knobs: Vec<(&str, f64)> = state.knobs.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    // sampler 0.5 is not rounded, periodicity 99 not clamped: both dropped.
    assert_eq!(knobs, [("denoise", 0.25), ("from_a_newer_build", 1.0)]);
    assert_eq!(state.prompt, None, "1001 characters: dropped");
    assert_eq!(state.prompt_b.as_deref(), Some("soft keys"));
    assert_eq!(state.prompt_blend, 0.5);
}

/// Run `f` on another thread; panics if it has not returned within 5 s (it blocked).
fn within_5_s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("the call blocked for 5 s")
}

#[test]
fn a_fifo_state_path_is_neither_read_nor_moved_nor_saved_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    latentd_tests::hostile_files::mkfifo(&path);
    let opened = path.clone();
    let (store, state, outcome) = within_5_s(move || StateStore::open(&opened));
    assert_eq!(state, PersistentState::default());
    let LoadOutcome::KeptInPlace { reason } = outcome else {
        panic!("{outcome:?}");
    };
    assert!(reason.contains("is a FIFO, not a regular file"), "{reason}");
    assert_eq!(entries(dir.path()), ["state.json"]);
    assert!(matches!(
        store.save_now(&sample_state()),
        Err(StateError::Protected(_))
    ));
}

#[test]
fn an_oversized_state_file_is_moved_aside_unread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    fs::File::create(&path)
        .unwrap()
        .set_len(latentd::state::MAX_STATE_BYTES + 1)
        .unwrap();
    let (_, state, outcome) = StateStore::open(&path);
    assert_eq!(state, PersistentState::default());
    let LoadOutcome::MovedAside { reason, .. } = outcome else {
        panic!("{outcome:?}");
    };
    assert!(
        reason.contains("1048577 bytes is too large (accepted: up to 1048576 bytes)"),
        "{reason}"
    );
}
