//! Model check of [`TryCell`]'s try-lock with loom: every interleaving of threads that borrow
//! the value at once, with loom's cell tracking reporting any two accesses that are not
//! ordered (two holders at once, or a holder that does not see the last one's writes).
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p latentd-engine --release --test try_cell_loom`
//! (the test script does; without `--cfg loom` this file is empty). Unbounded: each model
//! has a few thousand interleavings at most.
#![cfg(loom)]

use latentd_engine::TryCell;
use loom::sync::Arc;
use loom::thread;

/// `threads` borrowers (the model's main thread among them), each trying `tries` times to
/// add one: the value counts exactly the borrows that were granted.
fn borrowers_count_their_wins(threads: usize, tries: usize) {
    loom::model(move || {
        let cell = Arc::new(TryCell::new(0usize));
        let borrow = {
            let cell = Arc::clone(&cell);
            move || {
                (0..tries)
                    .filter(|_| cell.with(|v| *v += 1).is_some())
                    .count()
            }
        };
        let others: Vec<_> = (1..threads)
            .map(|_| thread::spawn(borrow.clone()))
            .collect();
        let mut won = borrow();
        for t in others {
            won += t.join().unwrap();
        }
        assert!(won >= 1, "the first borrow always wins");
        assert_eq!(cell.with(|v| *v), Some(won));
    });
}

#[test]
fn three_overlapping_callbacks_take_turns() {
    borrowers_count_their_wins(3, 1);
}

#[test]
fn two_callbacks_borrowing_twice_see_each_others_writes() {
    borrowers_count_their_wins(2, 2);
}

/// A borrower that unwinds still gives the value back, and the next borrower sees what it
/// wrote before it failed.
#[test]
fn a_borrow_that_unwinds_releases_the_cell() {
    loom::model(|| {
        let cell = Arc::new(TryCell::new(0u32));
        let other = {
            let cell = Arc::clone(&cell);
            thread::spawn(move || cell.with(|v| *v += 1).is_some())
        };
        let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            cell.with(|v| {
                *v += 10;
                std::panic::resume_unwind(Box::new("the period's work failed"))
            })
        }));
        let other_won = other.join().unwrap();
        // `failed` is Err when this thread won and unwound, Ok(None) when the other held it.
        let mine = if failed.is_err() { 10 } else { 0 };
        assert_eq!(cell.with(|v| *v), Some(mine + u32::from(other_won)));
    });
}
