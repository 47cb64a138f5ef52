//! The media folder: the only place `/timbre`, `/structure` and `/source` may read from,
//! and `/record/start` may write to. A client path is resolved against it, normalised
//! lexically (so `..` escapes are refused before touching the filesystem), then
//! canonicalised (so symlinks out are refused too). A new file's name is checked by
//! [`crate::record::check_record_name`] and its folder canonicalised the same way.
//!
//! Threading: immutable after construction; usable from any thread. Resolving touches the
//! filesystem (metadata only), so call it from control threads, never the audio thread.

use std::path::{Component, Path, PathBuf};

/// A canonical, existing directory that client paths must stay inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRoot {
    root: PathBuf,
}

impl MediaRoot {
    /// Canonicalise `dir`; fails when it does not exist or is not a directory.
    pub fn new(dir: impl AsRef<Path>) -> Result<MediaRoot, String> {
        let dir = dir.as_ref();
        let root = dir
            .canonicalize()
            .map_err(|e| format!("media folder {}: {e}", dir.display()))?;
        if !root.is_dir() {
            return Err(format!(
                "media folder {} is not a directory",
                root.display()
            ));
        }
        Ok(MediaRoot { root })
    }

    /// The canonical folder.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Resolve a client path to the canonical path of an existing regular file inside the
    /// folder; the error says which rule it broke.
    pub fn resolve(&self, client_path: &str) -> Result<PathBuf, String> {
        if client_path.is_empty() {
            return Err("path is empty".to_string());
        }
        let joined = self.root.join(client_path);
        let mut lexical = PathBuf::new();
        for part in joined.components() {
            match part {
                Component::ParentDir => {
                    lexical.pop();
                }
                Component::CurDir => {}
                other => lexical.push(other),
            }
        }
        if !lexical.starts_with(&self.root) {
            return Err(format!(
                "path {client_path:?} is outside the media folder {}",
                self.root.display()
            ));
        }
        let canonical = lexical.canonicalize().map_err(|e| {
            format!("path {client_path:?} does not name a readable file in the media folder: {e}")
        })?;
        if !canonical.starts_with(&self.root) {
            return Err(format!(
                "path {client_path:?} resolves (through a symlink) outside the media folder {}",
                self.root.display()
            ));
        }
        if !canonical.is_file() {
            return Err(format!("path {client_path:?} is not a regular file"));
        }
        Ok(canonical)
    }

    /// Resolve a client's name for a file to create (a recording) to its path inside the
    /// folder: the name must pass [`check_record_name`](crate::record::check_record_name),
    /// its folder must exist and resolve (through symlinks) inside the media folder, and
    /// no file of that name may exist yet. The error says which rule it broke.
    pub fn resolve_new(&self, name: &str) -> Result<PathBuf, String> {
        crate::record::check_record_name(name)?;
        let joined = self.root.join(name);
        let (Some(parent), Some(file)) = (joined.parent(), joined.file_name()) else {
            return Err(format!("file name {name:?} has no file part"));
        };
        let folder = parent.canonicalize().map_err(|e| {
            format!("file name {name:?}: its folder is not in the media folder: {e}")
        })?;
        if !folder.starts_with(&self.root) || !folder.is_dir() {
            return Err(format!(
                "file name {name:?} resolves (through a symlink) outside the media folder {}",
                self.root.display()
            ));
        }
        let path = folder.join(file);
        if std::fs::symlink_metadata(&path).is_ok() {
            return Err(format!(
                "file {name:?} exists in the media folder; a recording never replaces a file"
            ));
        }
        Ok(path)
    }
}
