//! The shipped default config `systemd/latentd.toml` is accepted by the daemon's own
//! parser (the same one `latentd check-config` uses), every key in it is documented by a
//! comment, what `check-config` prints is itself a valid config with the same meaning, and
//! docs/operations.md's key table lists exactly the keys the daemon reads.

use std::path::PathBuf;

use latentd::audio::select::BackendChoice;
use latentd::engine_select::EngineChoice;
use latentd::settings::{Invocation, Settings, parse_args};

const DEFAULT_CONFIG: &str = include_str!("../../systemd/latentd.toml");

fn shipped() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../systemd/latentd.toml")
}

fn check(path: &std::path::Path) -> Settings {
    let argv = ["latentd", "check-config", path.to_str().unwrap()];
    match parse_args(argv).unwrap() {
        Invocation::CheckConfig(s) => *s,
        _ => panic!("check-config did not check"),
    }
}

#[test]
fn the_daemon_accepts_the_shipped_config() {
    let s = check(&shipped());
    assert_eq!(s.backend, BackendChoice::Jack);
    assert_eq!(s.osc_bind.to_string(), "127.0.0.1:7770");
    assert_eq!(s.oscquery_port, 7771);
    assert_eq!(s.media_folder, PathBuf::from("/srv/latentd/media"));
    assert!(s.prompt.as_deref().is_some_and(|p| p.contains("pad")));
    // The package's default engine is its own trained model, installed beside the config.
    assert_eq!(s.engine, EngineChoice::Bundle);
    assert_eq!(
        s.model.bundle.as_deref(),
        Some(std::path::Path::new("/usr/share/latentd/models/gm-tiny"))
    );
    assert_eq!(s.knobs.len(), 3);
    assert!(s.lead.repatch);
}

#[test]
fn every_key_of_the_shipped_config_has_a_comment_above_it() {
    let lines: Vec<&str> = DEFAULT_CONFIG.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let is_key = !line.starts_with('#') && !line.starts_with('[') && line.contains(" = ");
        if is_key {
            // A comment somewhere in the key's paragraph (keys may share one).
            let documented = lines[..i]
                .iter()
                .rev()
                .take_while(|l| !l.is_empty() && !l.starts_with('['))
                .any(|l| l.starts_with('#'));
            assert!(documented, "`{line}` has no comment above it");
        }
    }
}

#[test]
fn check_config_output_reads_back_to_the_same_settings() {
    let first = check(&shipped());
    let dir = tempfile::tempdir().unwrap();
    let printed = dir.path().join("effective.toml");
    std::fs::write(&printed, first.to_toml()).unwrap();
    let mut second = check(&printed);
    second.config_path = first.config_path.clone();
    assert_eq!(first, second);
}

/// Keys (`section.key`) in a config as `check-config` prints it, commented-out unset paths
/// (`# file: none`) included. An array of tables (`[[schedule]]`, printed as
/// `# [[schedule]]: none` when empty) counts as one key by that name: its fields are
/// documented in a section of their own.
fn printed_keys(settings: &Settings) -> std::collections::BTreeSet<String> {
    let mut section = String::new();
    let mut keys = std::collections::BTreeSet::new();
    for line in settings.to_toml().lines() {
        let array = line.trim_start_matches("# ");
        if array.starts_with("[[") {
            let name = array.split_once(": none").map_or(array, |(n, _)| n);
            keys.insert(name.to_string());
            section = name.to_string();
        } else if section.starts_with("[[") {
            // A field of an array entry.
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
        } else if let Some((key, _)) = line
            .strip_prefix("# ")
            .and_then(|l| l.split_once(": none"))
            .or_else(|| line.split_once(" = "))
        {
            keys.insert(format!("{section}.{}", key.trim()));
        }
    }
    keys
}

#[test]
fn docs_operations_lists_exactly_the_keys_the_daemon_reads() {
    let docs = include_str!("../../docs/operations.md");
    let table = docs
        .split("## Config keys")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("docs/operations.md has a Config keys section");
    let documented: std::collections::BTreeSet<String> = table
        .lines()
        .filter(|l| l.starts_with("| `"))
        .flat_map(|row| {
            let first_cell = row.split('|').nth(1).unwrap_or("");
            first_cell
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    let read = printed_keys(&check(&shipped()));
    assert!(read.len() > 20, "{read:?}");
    assert_eq!(
        documented, read,
        "docs/operations.md's key table differs from what the daemon reads"
    );
}
