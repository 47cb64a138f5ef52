//! Opening a file the daemon reads (a WAV, the config, the state): it must be a regular file
//! no larger than a limit the caller declares, checked on the open descriptor before a byte
//! is read or a buffer allocated.
//!
//! The file is opened with `O_NONBLOCK`, so a FIFO without a writer cannot block the open,
//! then `fstat`ed: a FIFO, a character device such as `/dev/zero`, a socket or a directory
//! is refused by its type, a regular file by its size. On a regular file `O_NONBLOCK` has no
//! effect, so the descriptor is used as it is. [`read_bounded`] also stops reading one byte
//! past the limit, so a file that grows after the check cannot make it read more.
//!
//! Threading: plain functions doing blocking file I/O; never call them from the audio
//! callback.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why a file was not opened for reading. Every variant names the path.
#[derive(Debug, thiserror::Error)]
pub enum InputFileError {
    /// The file does not exist.
    #[error("{}: no such file", path.display())]
    Missing {
        /// The path given.
        path: PathBuf,
    },
    /// The file could not be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path given.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The path names something other than a regular file.
    #[error("{}: is a {kind}, not a regular file", path.display())]
    NotRegular {
        /// The path given.
        path: PathBuf,
        /// What it is: "directory", "FIFO", "character device", ...
        kind: &'static str,
    },
    /// The file is larger than the caller's limit.
    #[error("{}: {bytes} bytes is too large (accepted: up to {limit} bytes)", path.display())]
    TooLarge {
        /// The path given.
        path: PathBuf,
        /// Its size (at least; a growing file may be larger).
        bytes: u64,
        /// The limit.
        limit: u64,
    },
}

/// Open `path` for reading if it is a regular file of at most `limit` bytes; returns the
/// file (positioned at its start) and its size.
pub fn open_bounded(path: &Path, limit: u64) -> Result<(File, u64), InputFileError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => InputFileError::Missing {
                path: path.to_path_buf(),
            },
            _ => InputFileError::Io {
                path: path.to_path_buf(),
                source,
            },
        })?;
    let meta = file.metadata().map_err(|source| InputFileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let kind = if kind.is_dir() {
            "directory"
        } else if kind.is_fifo() {
            "FIFO"
        } else if kind.is_char_device() {
            "character device"
        } else if kind.is_block_device() {
            "block device"
        } else if kind.is_socket() {
            "socket"
        } else {
            "special file"
        };
        return Err(InputFileError::NotRegular {
            path: path.to_path_buf(),
            kind,
        });
    }
    if meta.len() > limit {
        return Err(InputFileError::TooLarge {
            path: path.to_path_buf(),
            bytes: meta.len(),
            limit,
        });
    }
    Ok((file, meta.len()))
}

/// Read all of `path` if it is a regular file of at most `limit` bytes.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, InputFileError> {
    let (file, len) = open_bounded(path, limit)?;
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| InputFileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() as u64 > limit {
        return Err(InputFileError::TooLarge {
            path: path.to_path_buf(),
            bytes: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

/// [`read_bounded`] as UTF-8 text.
pub fn read_bounded_to_string(path: &Path, limit: u64) -> Result<String, InputFileError> {
    String::from_utf8(read_bounded(path, limit)?).map_err(|e| InputFileError::Io {
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidData, e.utf8_error()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regular_file_within_the_limit_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello").unwrap();
        assert_eq!(read_bounded(&path, 5).unwrap(), b"hello");
        assert!(matches!(
            read_bounded(&path, 4),
            Err(InputFileError::TooLarge {
                bytes: 5,
                limit: 4,
                ..
            })
        ));
    }

    #[test]
    fn a_fifo_a_device_and_a_directory_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        latentd_tests::hostile_files::mkfifo(&fifo);
        let kind = |p: &Path| match open_bounded(p, 1 << 20) {
            Err(InputFileError::NotRegular { kind, .. }) => kind,
            other => panic!("{}: {other:?}", p.display()),
        };
        assert_eq!(kind(&fifo), "FIFO");
        assert_eq!(kind(Path::new("/dev/zero")), "character device");
        assert_eq!(kind(dir.path()), "directory");
        assert!(matches!(
            open_bounded(&dir.path().join("none"), 1),
            Err(InputFileError::Missing { .. })
        ));
    }
}
