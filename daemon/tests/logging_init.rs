//! `logging::init` in child processes (a process has one logger): `Auto` picks stderr
//! unless stderr is the journal stream named by `JOURNAL_STREAM`; lines carry level and
//! message; the level filters; bad names are precise errors.

use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};

use latentd::logging::{LogError, LogTarget, init, parse_level};

const CHILD_ENV: &str = "LATENTD_LOGGING_CHILD";

/// Runs this test binary's `child_logs` test in a child with `env`, stderr to `stderr`.
fn run_child(level: &str, env: &[(&str, String)], stderr: Stdio) -> String {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["child_logs", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, level)
        .env_remove("JOURNAL_STREAM")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(stderr);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    assert!(output.status.success(), "child failed: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// The child side: installs the logger from the environment and logs two lines.
#[test]
fn child_logs() {
    let Ok(level) = std::env::var(CHILD_ENV) else {
        return;
    };
    if let Some(level) = level.strip_suffix(":journal") {
        let error = init(parse_level(level).unwrap(), LogTarget::Journal).unwrap_err();
        println!("journal error: {error}");
        return;
    }
    let chosen = init(parse_level(&level).unwrap(), LogTarget::Auto).unwrap();
    println!("chosen={chosen:?}");
    log::warn!("state file moved aside");
    log::debug!("debug detail");
    assert!(matches!(
        init(log::LevelFilter::Info, LogTarget::Stderr),
        Err(LogError::AlreadyInstalled)
    ));
}

#[test]
fn auto_without_journal_writes_level_filtered_lines_to_stderr() {
    let command_stderr = tempfile::NamedTempFile::new().unwrap();
    let stdout = run_child(
        "warn",
        &[],
        Stdio::from(command_stderr.as_file().try_clone().unwrap()),
    );
    assert!(stdout.contains("chosen=Stderr"), "{stdout}");
    let text = std::fs::read_to_string(command_stderr.path()).unwrap();
    let line = text
        .lines()
        .find(|line| line.contains("state file moved aside"))
        .unwrap_or_else(|| panic!("no warn line in {text:?}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(
        !text.contains("debug detail"),
        "debug filtered at warn: {text}"
    );
}

#[test]
fn auto_with_stderr_on_the_journal_stream_tries_the_journal() {
    // systemd sets JOURNAL_STREAM=<dev>:<inode> of the stream it gives as stderr.
    let stderr_file = tempfile::NamedTempFile::new().unwrap();
    let metadata = stderr_file.as_file().metadata().unwrap();
    let stream = format!("{}:{}", metadata.dev(), metadata.ino());
    let stdout = run_child(
        "info",
        &[("JOURNAL_STREAM", stream)],
        Stdio::from(stderr_file.as_file().try_clone().unwrap()),
    );
    let text = std::fs::read_to_string(stderr_file.path()).unwrap();
    if journald_running() {
        assert!(stdout.contains("chosen=Journal"), "{stdout} {text}");
    } else {
        // No journald here: the native socket is missing, so Auto falls back and says why.
        assert!(stdout.contains("chosen=Stderr"), "{stdout} {text}");
        assert!(
            text.lines()
                .any(|line| line.contains("WARN") && line.contains("journal socket unavailable")),
            "{text}"
        );
    }
}

#[test]
fn explicit_journal_without_journald_is_an_error() {
    if journald_running() {
        return;
    }
    let stdout = run_child("info:journal", &[], Stdio::null());
    assert!(
        stdout.contains("journal error: cannot open the journal socket: No such file"),
        "{stdout}"
    );
}

fn journald_running() -> bool {
    std::path::Path::new("/run/systemd/journal/socket").exists()
}

#[test]
fn bad_names_are_precise_errors() {
    assert_eq!(parse_level("DEBUG").unwrap(), log::LevelFilter::Debug);
    let error = parse_level("verbose").unwrap_err();
    assert_eq!(
        error.to_string(),
        "unknown log level \"verbose\" (expected off, error, warn, info, debug or trace)"
    );
    assert_eq!("journal".parse::<LogTarget>().unwrap(), LogTarget::Journal);
    let error = "syslog".parse::<LogTarget>().unwrap_err();
    assert_eq!(
        error.to_string(),
        "unknown log target \"syslog\" (expected auto, journal or stderr)"
    );
}
