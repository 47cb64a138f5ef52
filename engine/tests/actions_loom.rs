//! Model check of the action log with loom: control threads take ids and mark their actions
//! applied while the engine thread advances the applied prefix.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p latentd-engine --release --test actions_loom`
//! (the test script does; without `--cfg loom` this file is empty). Under loom the log has
//! 8 applied slots, so these few actions never reach its "taken as applied" rule.
#![cfg(loom)]

use latentd_engine::runner::actions::ActionLog;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;

/// Two control threads, `per_thread` actions each: take an id, publish the action's change
/// (a relaxed store, as a knob set or a conditioning commit is to the log), mark it applied.
/// The engine thread advances the prefix `engine_passes` times meanwhile, then once after
/// the joins.
fn control_and_engine(per_thread: usize, engine_passes: usize, preemptions: Option<usize>) {
    let total = 2 * per_thread;
    let mut model = loom::model::Builder::new();
    // LOOM_MAX_PREEMPTIONS, when set, overrides the test's own bound.
    if model.preemption_bound.is_none() {
        model.preemption_bound = preemptions;
    }
    model.check(move || {
        let log = Arc::new(ActionLog::new());
        // published[id]: the change of action `id` is where the engine reads it.
        let published: Arc<Vec<AtomicBool>> =
            Arc::new((0..=total).map(|_| AtomicBool::new(false)).collect());
        let control: Vec<_> = (0..2)
            .map(|_| {
                let (log, published) = (Arc::clone(&log), Arc::clone(&published));
                thread::spawn(move || {
                    (0..per_thread)
                        .map(|_| {
                            let id = log.begin();
                            published[id as usize].store(true, Ordering::Relaxed);
                            log.mark_applied(id);
                            id
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        let mut prefix = 0;
        let check = |prefix: u64| {
            assert!(
                prefix <= total as u64,
                "prefix {prefix} past the ids handed out"
            );
            for id in 1..=prefix {
                assert!(
                    published[id as usize].load(Ordering::Relaxed),
                    "prefix {prefix} passed action {id}, whose change is not visible"
                );
            }
        };
        for _ in 0..engine_passes {
            let before = prefix;
            log.advance_prefix(&mut prefix);
            assert!(prefix >= before, "the prefix went back");
            check(prefix);
        }
        let mut ids: Vec<u64> = Vec::new();
        for t in control {
            let mine = t.join().unwrap();
            assert!(
                mine.windows(2).all(|w| w[0] < w[1]),
                "ids out of order: {mine:?}"
            );
            ids.extend(mine);
        }
        ids.sort_unstable();
        assert_eq!(
            ids,
            (1..=total as u64).collect::<Vec<_>>(),
            "ids not unique"
        );
        log.advance_prefix(&mut prefix);
        check(prefix);
        assert_eq!(prefix, total as u64, "the prefix stopped short of the end");
    });
}

#[test]
fn one_action_each_while_the_engine_advances_twice() {
    control_and_engine(1, 2, None);
}

/// Two actions per thread and two engine passes: the full state space is more than a test
/// run should take, so the model is bounded at 3 preemptions (most concurrency bugs need
/// one or two; `LOOM_MAX_PREEMPTIONS` overrides the bound).
#[test]
fn two_actions_each_while_the_engine_advances_twice() {
    control_and_engine(2, 2, Some(3));
}
