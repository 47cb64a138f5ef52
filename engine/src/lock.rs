//! Locks that outlive a panic: [`MutexExt::lock_unpoisoned`] and
//! [`RwLockExt::read_unpoisoned`] / [`RwLockExt::write_unpoisoned`] take the lock whether or
//! not a thread panicked while holding it.
//!
//! Why that is right for latentd: every critical section behind these locks is short and
//! leaves its data whole at each step (an assignment, a push, a swap of a value), so a panic
//! in one (caught by the engine's or a worker's guard) leaves nothing half-written; refusing
//! the lock afterwards would turn one caught panic into a dead control path on stage.
//! A lock whose data could be left torn must not use these.
//!
//! Threading: these are the std locks; never use them on the audio callback, which takes
//! no locks at all.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// [`Mutex::lock`] that ignores poisoning (see the module doc).
pub trait MutexExt<T: ?Sized> {
    /// Lock, whether or not a holder panicked.
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> MutexExt<T> for Mutex<T> {
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T> {
        self.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// [`RwLock::read`] / [`RwLock::write`] that ignore poisoning (see the module doc).
pub trait RwLockExt<T: ?Sized> {
    /// Read-lock, whether or not a writer panicked.
    fn read_unpoisoned(&self) -> RwLockReadGuard<'_, T>;
    /// Write-lock, whether or not a writer panicked.
    fn write_unpoisoned(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T: ?Sized> RwLockExt<T> for RwLock<T> {
    fn read_unpoisoned(&self) -> RwLockReadGuard<'_, T> {
        self.read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_unpoisoned(&self) -> RwLockWriteGuard<'_, T> {
        self.write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_lock_poisoned_by_a_panic_is_still_taken() {
        let m = Arc::new(Mutex::new(1));
        let rw = Arc::new(RwLock::new(1));
        let (m2, rw2) = (Arc::clone(&m), Arc::clone(&rw));
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            let _w = rw2.write().unwrap();
            panic!("poison both");
        })
        .join();
        assert!(m.is_poisoned() && rw.is_poisoned());
        *m.lock_unpoisoned() += 1;
        *rw.write_unpoisoned() += 1;
        assert_eq!((*m.lock_unpoisoned(), *rw.read_unpoisoned()), (2, 2));
    }
}
