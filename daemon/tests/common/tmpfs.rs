//! A small private tmpfs for the state-directory fault tests: a real filesystem that runs
//! out of space (`ENOSPC`) or turns read-only (`EROFS`) on demand, which `chmod` cannot
//! give a test running as root. Mounting needs `CAP_SYS_ADMIN`; without it
//! [`Tmpfs::mount_or_skip`] prints `SKIPPED: <why>` and the test passes without checking
//! anything, unless `LATENTD_REQUIRE_MOUNT=1` turns the skip into a failure.
//!
//! Threading: owned by one test; it is unmounted when dropped, also when the test panics.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A tmpfs mounted on a test's folder (unmounted on drop).
pub struct Tmpfs {
    path: PathBuf,
    size_bytes: u64,
}

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap()
}

impl Tmpfs {
    /// Mounts a tmpfs of `size_bytes` on `path` (created if missing). `None`, after printing
    /// `SKIPPED: ...`, when this process may not mount (not root, or a container without
    /// `CAP_SYS_ADMIN`); panics instead when `LATENTD_REQUIRE_MOUNT=1`.
    pub fn mount_or_skip(path: &Path, size_bytes: u64, test: &str) -> Option<Self> {
        std::fs::create_dir_all(path).unwrap();
        match Self::mount(path, size_bytes) {
            Ok(fs) => Some(fs),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) => {
                let why = format!(
                    "{test}: cannot mount a tmpfs on {} ({e}); the test needs root with \
                     CAP_SYS_ADMIN",
                    path.display()
                );
                if std::env::var("LATENTD_REQUIRE_MOUNT").as_deref() == Ok("1") {
                    panic!("{why} (LATENTD_REQUIRE_MOUNT=1)");
                }
                println!("SKIPPED: {why}");
                eprintln!("SKIPPED: {why}");
                None
            }
            Err(e) => panic!("mount tmpfs on {}: {e}", path.display()),
        }
    }

    fn mount(path: &Path, size_bytes: u64) -> io::Result<Self> {
        let fs = Self {
            path: path.to_owned(),
            size_bytes,
        };
        fs.mount_call(0)?;
        Ok(fs)
    }

    /// mount(2) of the tmpfs with `flags` (0 for a fresh mount, `MS_REMOUNT | ...`).
    fn mount_call(&self, flags: libc::c_ulong) -> io::Result<()> {
        let source = CString::new("tmpfs").unwrap();
        let target = c_path(&self.path);
        let data = CString::new(format!("size={},mode=0755", self.size_bytes)).unwrap();
        // SAFETY: valid NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                source.as_ptr(),
                flags,
                data.as_ptr().cast(),
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Remount read-only (`true`) or read-write (`false`), keeping the contents.
    pub fn set_read_only(&self, read_only: bool) {
        let ro = if read_only { libc::MS_RDONLY } else { 0 };
        self.mount_call(libc::MS_REMOUNT | ro)
            .unwrap_or_else(|e| panic!("remount {} ro={read_only}: {e}", self.path.display()));
    }

    /// Fill the filesystem with a file `name` until a write fails with `ENOSPC`; returns the
    /// file's path (remove it to free the space).
    pub fn fill(&self, name: &str) -> PathBuf {
        use std::io::Write;
        let path = self.path.join(name);
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = [0xA5u8; 4096];
        loop {
            match file.write(&chunk) {
                Ok(0) => panic!("write returned 0 before ENOSPC"),
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
        path
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let target = c_path(&self.path);
        // SAFETY: a valid NUL-terminated path. A lazy detach when something still holds it.
        unsafe {
            if libc::umount2(target.as_ptr(), 0) != 0 {
                libc::umount2(target.as_ptr(), libc::MNT_DETACH);
            }
        }
    }
}
