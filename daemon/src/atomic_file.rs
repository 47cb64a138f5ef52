//! Files replaced whole: [`write_atomically`] writes a temp file in the same directory,
//! fsyncs it, renames it over the target and fsyncs the directory, so a crash leaves either
//! the old file or the new one, never a torn one; [`remove_stray_temps`] clears what an
//! interrupted write left. The state file and the preset files are saved this way.
//!
//! Threading: blocking file I/O; call it from the main thread or a worker thread, never from
//! the audio callback.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Why [`write_atomically`] failed: what was being done (naming any other path involved,
/// and whether the file was left as it was) and the OS error.
#[derive(Debug)]
pub struct AtomicWriteError {
    /// What was being done, and what that left.
    pub operation: String,
    /// The OS error.
    pub source: io::Error,
}

impl std::fmt::Display for AtomicWriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.operation, describe_io(&self.source))
    }
}

/// Writes `bytes` to `path` so that a crash or a failure leaves either the old file or the
/// new one, never a torn one: a temp file in the same directory (`.<name>.tmp-<pid>`,
/// created with its directory if missing), fsync, rename over `path`, fsync the directory.
/// A failed write removes its temp file. One writer per path at a time (the temp name is
/// per process). Blocking file I/O: never on the audio thread.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), AtomicWriteError> {
    let failed = |operation: String| move |source| AtomicWriteError { operation, source };
    let dir = parent_dir(path);
    fs::create_dir_all(dir).map_err(failed(format!(
        "create directory {} (the saved file is untouched)",
        dir.display()
    )))?;
    let temp = temp_path(path);
    let mut file = File::create(&temp).map_err(failed(format!(
        "create temp file {} (the saved file is untouched)",
        temp.display()
    )))?;
    if let Err(source) = file.write_all(bytes).and_then(|()| file.sync_all()) {
        drop(file);
        let removed = remove_temp(&temp);
        return Err(failed(format!(
            "write temp file {} (the saved file is untouched; {removed})",
            temp.display()
        ))(source));
    }
    drop(file);
    if let Err(source) = fs::rename(&temp, path) {
        let removed = remove_temp(&temp);
        return Err(failed(format!(
            "rename temp file {} over it (the saved file is untouched; {removed})",
            temp.display()
        ))(source));
    }
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(failed(format!(
            "fsync directory {} after the rename (the new file is in place)",
            dir.display()
        )))
}

/// Remove the temp file of a failed save; says what happened, for the error.
fn remove_temp(temp: &Path) -> String {
    match fs::remove_file(temp) {
        Ok(()) => "temp file removed".into(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => "no temp file left".into(),
        Err(e) => format!("the temp file could not be removed: {}", describe_io(&e)),
    }
}

/// An I/O error with its errno name (`No space left on device (os error 28, ENOSPC)`), so
/// an operator can grep the log for the condition.
pub fn describe_io(error: &io::Error) -> String {
    let name = match error.raw_os_error() {
        Some(libc::ENOSPC) => "ENOSPC",
        Some(libc::EDQUOT) => "EDQUOT",
        Some(libc::EROFS) => "EROFS",
        Some(libc::EACCES) => "EACCES",
        Some(libc::EPERM) => "EPERM",
        Some(libc::EIO) => "EIO",
        Some(libc::ENOENT) => "ENOENT",
        Some(libc::ENOTDIR) => "ENOTDIR",
        Some(libc::EISDIR) => "EISDIR",
        Some(libc::EXDEV) => "EXDEV",
        Some(libc::EBUSY) => "EBUSY",
        _ => return error.to_string(),
    };
    let text = error.to_string();
    match text.strip_suffix(')') {
        Some(open) if open.contains("(os error") => format!("{open}, {name})"),
        _ => format!("{text} ({name})"),
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

fn temp_prefix(path: &Path) -> String {
    let name = path.file_name().map_or_else(
        || "state".into(),
        |name| name.to_string_lossy().into_owned(),
    );
    format!(".{name}.tmp-")
}

fn temp_path(path: &Path) -> PathBuf {
    parent_dir(path).join(format!("{}{}", temp_prefix(path), std::process::id()))
}

/// Removes temp files an interrupted [`write_atomically`] of `path` left.
pub fn remove_stray_temps(path: &Path) {
    let prefix = temp_prefix(path);
    let Ok(entries) = fs::read_dir(parent_dir(path)) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            match fs::remove_file(entry.path()) {
                Ok(()) => log::info!(
                    "removed {} left by an interrupted save",
                    entry.path().display()
                ),
                Err(error) => log::warn!("cannot remove {}: {error}", entry.path().display()),
            }
        }
    }
}
