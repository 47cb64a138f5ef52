//! Timed bundles: a bundle whose timetag lies in the future waits here and is applied, as
//! one batch, when its time comes.
//!
//! Threading: [`Scheduler::schedule`] is called from the OSC handler (a short mutex hold, no
//! waiting); one `osc-scheduler` thread sleeps until the earliest deadline and applies
//! through the [`Dispatcher`]. Replies of scheduled commands (`/fail`, query answers) go to
//! the bundle's sender.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use latentd_osc_schema::Command;

use super::Dispatcher;
use crate::osc::ReplyTo;

/// Bundles waiting at most.
pub const MAX_PENDING: usize = 1024;
/// Furthest a timetag may lie in the future.
pub const MAX_HORIZON: Duration = Duration::from_secs(3600);

struct Pending {
    due: SystemTime,
    seq: u64,
    reply_to: ReplyTo,
    commands: Vec<Command>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Reverse<Pending>>,
    next_seq: u64,
    stop: bool,
}

/// The scheduler thread and its queue; dropping it stops the thread (pending bundles are
/// dropped).
pub struct Scheduler {
    shared: Arc<(Mutex<Queue>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Scheduler {
    /// Start the thread.
    pub fn spawn(dispatcher: Arc<Dispatcher>) -> std::io::Result<Self> {
        let shared = Arc::new((Mutex::new(Queue::default()), Condvar::new()));
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("osc-scheduler".into())
            .spawn(move || run(&worker, &dispatcher))?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Apply `commands` at `due`; refused when too many wait or `due` is too far ahead.
    pub fn schedule(
        &self,
        due: SystemTime,
        reply_to: ReplyTo,
        commands: Vec<Command>,
    ) -> Result<(), String> {
        if due
            .duration_since(SystemTime::now())
            .is_ok_and(|ahead| ahead > MAX_HORIZON)
        {
            return Err(format!(
                "bundle timetag more than {} s ahead",
                MAX_HORIZON.as_secs()
            ));
        }
        let (lock, wake) = &*self.shared;
        let mut q = lock.lock().unwrap_or_else(|p| p.into_inner());
        if q.heap.len() >= MAX_PENDING {
            return Err(format!("{MAX_PENDING} timed bundles are already waiting"));
        }
        let seq = q.next_seq;
        q.next_seq += 1;
        q.heap.push(Reverse(Pending {
            due,
            seq,
            reply_to,
            commands,
        }));
        wake.notify_one();
        Ok(())
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        let (lock, wake) = &*self.shared;
        lock.lock().unwrap_or_else(|p| p.into_inner()).stop = true;
        wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(shared: &(Mutex<Queue>, Condvar), dispatcher: &Dispatcher) {
    let (lock, wake) = shared;
    let mut q = lock.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        if q.stop {
            return;
        }
        let now = SystemTime::now();
        match q.heap.peek().map(|Reverse(p)| p.due) {
            Some(due) if due <= now => {
                let Reverse(p) = q.heap.pop().expect("peeked");
                drop(q);
                for packet in dispatcher.apply(&p.reply_to, p.commands) {
                    if let Err(e) = p.reply_to.send(&packet) {
                        log::debug!("timed bundle reply not delivered: {e}");
                    }
                }
                q = lock.lock().unwrap_or_else(|p| p.into_inner());
            }
            Some(due) => {
                let wait = due.duration_since(now).unwrap_or_default();
                q = wake
                    .wait_timeout(q, wait)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            None => q = wake.wait(q).unwrap_or_else(|p| p.into_inner()),
        }
    }
}
