//! Files named after the time that never overwrite one another: the bad-state files moved
//! aside (`state.json.corrupt-<unix seconds>`) and the SIGUSR1 trace dumps
//! (`trace-<unix seconds>.jsonl`). A second file in the same second gets `-2`, then `-3`, …
//! before the extension; the name is reserved with `O_EXCL` (`create_new`), so it is never
//! one that exists, even if another process makes files in the same folder.
//!
//! Threading: blocking file I/O; call it from the main thread or a worker thread, never from
//! the audio callback.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// How many numbered names are tried in one second before giving up.
pub const MAX_SAME_SECOND: u32 = 1_000;

/// Whole seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// The `n`th candidate: `<stem>.<ext>` first, then `<stem>-<n>.<ext>` (`ext` may be empty).
fn candidate(stem: &Path, ext: &str, n: u32) -> PathBuf {
    let mut name: OsString = stem.as_os_str().to_owned();
    if n > 1 {
        name.push(format!("-{n}"));
    }
    if !ext.is_empty() {
        name.push(".");
        name.push(ext);
    }
    PathBuf::from(name)
}

/// The first candidate name that `make` can create (it fails with `AlreadyExists` for a
/// taken one), with what `make` returned.
fn make_unique<T>(
    stem: &Path,
    ext: &str,
    make: impl Fn(&Path) -> io::Result<T>,
) -> io::Result<(T, PathBuf)> {
    for n in 1..=MAX_SAME_SECOND {
        let path = candidate(stem, ext, n);
        match make(&path) {
            Ok(made) => return Ok((made, path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "{} and {MAX_SAME_SECOND} numbered names beside it exist",
            candidate(stem, ext, 1).display()
        ),
    ))
}

/// Create a new file `<stem>.<ext>`, or `<stem>-2.<ext>`, … if that exists; returns it open
/// for writing with its path.
pub fn create_unique(stem: &Path, ext: &str) -> io::Result<(File, PathBuf)> {
    make_unique(stem, ext, |path| {
        OpenOptions::new().write(true).create_new(true).open(path)
    })
}

/// Rename `from` to a name no file has yet, `<stem>.<ext>` or a numbered one (see
/// [`create_unique`]: the name is reserved first, by an empty file, or an empty directory
/// when `from` is one, then `from` renamed over the reservation). Returns the new path.
pub fn rename_unique(from: &Path, stem: &Path, ext: &str) -> io::Result<PathBuf> {
    let is_dir = fs::symlink_metadata(from)?.is_dir();
    let ((), to) = make_unique(stem, ext, |path| {
        if is_dir {
            fs::create_dir(path)
        } else {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map(drop)
        }
    })?;
    match fs::rename(from, &to) {
        Ok(()) => Ok(to),
        Err(e) => {
            let _ = if is_dir {
                fs::remove_dir(&to)
            } else {
                fs::remove_file(&to)
            };
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_stem_twice_gives_two_files() {
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("trace-100");
        let (_, a) = create_unique(&stem, "jsonl").unwrap();
        let (_, b) = create_unique(&stem, "jsonl").unwrap();
        assert_eq!(a, dir.path().join("trace-100.jsonl"));
        assert_eq!(b, dir.path().join("trace-100-2.jsonl"));
    }

    #[test]
    fn rename_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("s.json.corrupt-7");
        for text in ["one", "two"] {
            let from = dir.path().join("s.json");
            fs::write(&from, text).unwrap();
            rename_unique(&from, &stem, "").unwrap();
        }
        assert_eq!(fs::read_to_string(&stem).unwrap(), "one");
        let second = dir.path().join("s.json.corrupt-7-2");
        assert_eq!(fs::read_to_string(second).unwrap(), "two");
    }
}
