//! `latentd check-config` refuses what the start would refuse: each
//! config below used to pass `check-config` and then fail to start. Now both give the same
//! one-line error and exit status 2; a good config still passes both.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{BIN, isolated, wait_timeout, write_float_wav};

/// `latentd check-config <config>`: (status, stderr).
fn check_config(dir: &Path, config: &Path) -> (Option<i32>, String) {
    let out = isolated(&mut Command::new(BIN), dir)
        .arg("check-config")
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// `latentd --config <config> --audio null --engine off`: the status if it exited within
/// `limit` (then with its stderr), or `None` if it is still running then (then stopped).
fn start(dir: &Path, config: &Path, limit: Duration) -> Option<(Option<i32>, String)> {
    let mut child = isolated(&mut Command::new(BIN), dir)
        .arg("--config")
        .arg(config)
        .args(["--audio", "null", "--engine", "off"])
        .arg("--state")
        .arg(dir.join("state.json"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    match wait_timeout(&mut child, limit) {
        Some(status) => {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            Some((status.code(), err))
        }
        None => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    }
}

/// The `latentd: error: ...` line of `stderr`.
fn error_line(stderr: &str) -> String {
    stderr
        .lines()
        .find(|l| l.starts_with("latentd: error: "))
        .unwrap_or_else(|| panic!("no error line in {stderr:?}"))
        .to_string()
}

#[test]
fn configs_that_cannot_start_are_refused_by_check_config_with_the_start_s_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let text = d.join("notes.txt");
    std::fs::write(&text, "not audio").unwrap();
    let folder = d.join("folder");
    std::fs::create_dir(&folder).unwrap();
    // A WAV of 0.1 s: shorter than the engine's kept window (0.4 s).
    let short = d.join("short.wav");
    write_float_wav(&short, 2, 48_000, &vec![0.0; 2 * 4800]);
    let p = |path: &Path| path.display().to_string();
    let mut cases = vec![
        (
            "source missing",
            format!("[source]\nfile = \"{}\"\n", p(&d.join("gone.wav"))),
            "source ",
        ),
        (
            "source not a WAV",
            format!("[source]\nfile = \"{}\"\n", p(&text)),
            "not a WAV",
        ),
        (
            "source a folder",
            format!("[source]\nfile = \"{}\"\n", p(&folder)),
            "directory",
        ),
        (
            "source shorter than the engine's window",
            format!("[source]\nfile = \"{}\"\n", p(&short)),
            "loop: ",
        ),
        (
            "record folder missing",
            format!("[record]\nfile = \"{}\"\n", p(&d.join("no/take.wav"))),
            "does not exist",
        ),
        (
            "record a folder",
            format!("[record]\nfile = \"{}\"\n", p(&folder)),
            "is a directory",
        ),
        (
            "media folder missing",
            format!("[media]\nfolder = \"{}\"\n", p(&d.join("no-media"))),
            "media folder",
        ),
        (
            "media folder a file",
            format!("[media]\nfolder = \"{}\"\n", p(&text)),
            "not a directory",
        ),
        (
            "loop too short",
            "[source]\nloop_seconds = 0.05\n".to_string(),
            "loop: ",
        ),
    ];
    if !cfg!(feature = "cuda") {
        cases.push((
            "CUDA engine in a build without it",
            "[engine]\nbackend = \"builtin-cuda\"\n".to_string(),
            "built without CUDA",
        ));
    }
    cases.push((
        "bundle engine without a bundle",
        "[engine]\nbackend = \"bundle\"\n".to_string(),
        "no bundle given",
    ));
    for (what, toml, expected) in cases {
        let config = d.join("case.toml");
        std::fs::write(&config, &toml).unwrap();
        let (code, stderr) = check_config(d, &config);
        assert_eq!(
            code,
            Some(2),
            "{what}: check-config passed {toml:?}: {stderr}"
        );
        let checked = error_line(&stderr);
        assert!(checked.contains(expected), "{what}: {checked}");
        assert_eq!(stderr.lines().count(), 1, "{what}: {stderr}");
        // The start refuses it with the same line (the engine choice is the command line's
        // `--engine off` there, so the engine cases only apply to check-config).
        if !what.starts_with("CUDA") && !what.starts_with("bundle") {
            let (code, stderr) = start(d, &config, Duration::from_secs(10))
                .unwrap_or_else(|| panic!("{what}: the daemon started with {toml:?}"));
            assert_eq!(code, Some(2), "{what}: {stderr}");
            assert_eq!(error_line(&stderr), checked, "{what}");
        }
    }
}

#[test]
fn a_good_config_passes_check_config_and_starts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let source = d.join("loop.wav");
    write_float_wav(&source, 2, 44_100, &vec![0.0; 2 * 44_100]);
    let config = d.join("good.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nfile = \"{}\"\n[record]\nfile = \"{}\"\n[media]\nfolder = \"{}\"\n",
            source.display(),
            d.join("take.wav").display(),
            d.display()
        ),
    )
    .unwrap();
    let (code, stderr) = check_config(d, &config);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        start(d, &config, Duration::from_secs(3)).is_none(),
        "a good config did not keep running"
    );
}
