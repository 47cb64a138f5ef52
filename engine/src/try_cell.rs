//! [`TryCell`]: a value that several threads may ask for but only one holds at a time, and a
//! thread that finds it held goes without instead of waiting.
//!
//! The daemon keeps its period processor in one: overlapping realtime callbacks (a dying
//! output's and the next one's) each try to borrow it for a period, and the one that loses
//! plays silence. The protocol is one compare-exchange to take the value and one store to
//! give it back, so it is realtime-safe: no wait, no syscall, no allocation.
//!
//! # Threading
//!
//! Shared (`&TryCell<T>` across threads; it is `Sync` when `T: Send`). [`TryCell::with`] from
//! any thread: it never waits, and the value is released when the borrow ends, also when
//! the closure unwinds. The protocol is model-checked by loom (`engine/tests/try_cell_loom.rs`,
//! under `--cfg loom`).

use crate::sync::{AtomicBool, Ordering, UnsafeCell};

/// A value borrowed by one thread at a time, through a try-lock that never waits.
#[derive(Debug)]
pub struct TryCell<T> {
    /// True while one [`TryCell::with`] holds `value`.
    busy: AtomicBool,
    /// Reached only inside [`TryCell::with`], by the thread that set `busy` from false to
    /// true, until it sets it back.
    value: UnsafeCell<T>,
}

// SAFETY: `value` is reached only by the one thread that won `busy` (an acquire
// compare-exchange) until it releases it (a release store), so a `&TryCell` hands `&mut T`
// to one thread at a time: exactly what `T: Send` allows.
unsafe impl<T: Send> Sync for TryCell<T> {}

/// Gives the cell back when the borrow ends, even if the borrower unwinds.
struct Release<'a>(&'a AtomicBool);

impl Drop for Release<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl<T> TryCell<T> {
    /// A free cell holding `value`.
    pub fn new(value: T) -> Self {
        Self {
            busy: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Runs `f` on the value unless another thread holds it (then `None`, and `f` is not
    /// called). Never waits. A call from inside `f` on the same cell gets `None` too.
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        if self
            .busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        let _release = Release(&self.busy);
        // SAFETY: `busy` is ours until `_release` drops, so no other reference to the value
        // exists (the acquire above saw the last holder's release).
        Some(self.value.with_mut(|value| f(unsafe { &mut *value })))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::sync::{Arc, Barrier};

    #[test]
    fn a_held_cell_refuses_and_a_free_one_lends() {
        let cell = TryCell::new(1);
        let inner = cell.with(|v| {
            *v += 1;
            cell.with(|w| *w += 10)
        });
        assert_eq!(inner, Some(None), "a nested borrow must be refused");
        assert_eq!(cell.with(|v| *v), Some(2));
    }

    #[test]
    fn a_borrow_that_unwinds_releases_the_cell() {
        let cell = TryCell::new(0);
        let caught = catch_unwind(AssertUnwindSafe(|| {
            cell.with(|v| {
                *v = 7;
                panic!("the period's work failed");
            })
        }));
        assert!(caught.is_err());
        assert_eq!(
            cell.with(|v| *v),
            Some(7),
            "the cell stays held after a panic"
        );
    }

    #[test]
    fn threads_that_overlap_never_share_the_value() {
        const THREADS: usize = 4;
        const ROUNDS: usize = 10_000;
        let cell = Arc::new(TryCell::new((0u64, false)));
        let start = Arc::new(Barrier::new(THREADS));
        let won: u64 = (0..THREADS)
            .map(|_| {
                let (cell, start) = (Arc::clone(&cell), Arc::clone(&start));
                std::thread::spawn(move || {
                    start.wait();
                    let mut won = 0;
                    for _ in 0..ROUNDS {
                        let got = cell.with(|(count, inside)| {
                            assert!(!*inside, "two holders at once");
                            *inside = true;
                            *count += 1;
                            std::hint::spin_loop();
                            *inside = false;
                        });
                        won += u64::from(got.is_some());
                    }
                    won
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(cell.with(|(count, _)| *count), Some(won));
    }
}
