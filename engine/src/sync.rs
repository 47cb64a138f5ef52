//! Atomics, `Arc` and `UnsafeCell`, from `std` normally and from `loom` under `--cfg loom`,
//! so the lock-free protocols (the ring's publish, [`crate::try_cell::TryCell`], the action
//! log's applied marks) can be model-checked with the same code that ships.
//!
//! `UnsafeCell` has loom's interface (`with` / `with_mut` take a closure over the raw
//! pointer) in both builds, so loom sees every access and reports two that overlap.

#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;
#[cfg(loom)]
pub(crate) use loom::sync::Arc;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering, fence};

#[cfg(not(loom))]
pub(crate) use std::sync::Arc;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering, fence};

/// `std`'s `UnsafeCell` behind loom's closure interface (what `loom::cell::UnsafeCell`
/// offers; tokio's loom shim does the same).
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    /// A cell holding `value`.
    pub(crate) const fn new(value: T) -> Self {
        Self(std::cell::UnsafeCell::new(value))
    }

    /// Runs `f` with a mutable pointer to the value; the caller's protocol makes the access
    /// exclusive.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}
