//! Timed bundles: a bundle whose timetag lies in the future waits here and is applied, as
//! one batch, when its time comes.
//!
//! Limits (declared in [`latentd_osc_schema::limits`], documented in docs/osc.md): at most
//! [`MAX_PENDING`] bundles wait, at most [`MAX_PENDING_PER_CLIENT`] of them from one client IP
//! address (so one client's flood leaves room for the others), none more than
//! [`MAX_HORIZON`] ahead. A bundle over a limit is refused with a `/fail` naming it.
//!
//! Threading: [`Scheduler::schedule`] is called from the OSC handler (a short mutex hold, no
//! waiting); one `osc-scheduler` thread sleeps until the earliest deadline and applies
//! through the [`Dispatcher`]. Replies of scheduled commands (`/fail`, query answers) go to
//! the bundle's sender.

use latentd_engine::lock::MutexExt;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use latentd_osc_schema::Command;
use latentd_osc_schema::limits::{
    MAX_TIMED_BUNDLE_HORIZON, MAX_TIMED_BUNDLES, MAX_TIMED_BUNDLES_PER_CLIENT,
};

use super::Dispatcher;
use crate::osc::ReplyTo;

/// Bundles waiting at most.
pub const MAX_PENDING: usize = MAX_TIMED_BUNDLES;
/// Bundles waiting at most from one client IP address.
pub const MAX_PENDING_PER_CLIENT: usize = MAX_TIMED_BUNDLES_PER_CLIENT;
/// Furthest a timetag may lie in the future.
pub const MAX_HORIZON: Duration = MAX_TIMED_BUNDLE_HORIZON;

struct Pending {
    due: SystemTime,
    seq: u64,
    client: IpAddr,
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
    /// Bundles waiting per client IP address (entries at zero are removed).
    per_client: HashMap<IpAddr, usize>,
    next_seq: u64,
    stop: bool,
}

impl Queue {
    fn pop(&mut self) -> Option<Pending> {
        let Reverse(p) = self.heap.pop()?;
        if let Some(n) = self.per_client.get_mut(&p.client) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&p.client);
            }
        }
        Some(p)
    }
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

    /// Apply `commands` at `due`; refused when too many wait (in all, or from this client's
    /// IP address) or `due` is too far ahead.
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
        let mut q = lock.lock_unpoisoned();
        let client = reply_to.peer().addr().ip();
        let from_client = q.per_client.get(&client).copied().unwrap_or(0);
        if from_client >= MAX_PENDING_PER_CLIENT {
            return Err(format!(
                "{from_client} timed bundles from {client} are already waiting; the limit per \
                 client is {MAX_PENDING_PER_CLIENT}"
            ));
        }
        if q.heap.len() >= MAX_PENDING {
            return Err(format!(
                "{MAX_PENDING} timed bundles are already waiting (the limit for all clients)"
            ));
        }
        let seq = q.next_seq;
        q.next_seq += 1;
        *q.per_client.entry(client).or_insert(0) += 1;
        q.heap.push(Reverse(Pending {
            due,
            seq,
            client,
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
        lock.lock_unpoisoned().stop = true;
        wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(shared: &(Mutex<Queue>, Condvar), dispatcher: &Dispatcher) {
    let (lock, wake) = shared;
    let mut q = lock.lock_unpoisoned();
    loop {
        if q.stop {
            return;
        }
        let now = SystemTime::now();
        match q.heap.peek().map(|Reverse(p)| p.due) {
            Some(due) if due <= now => {
                let p = q.pop().expect("peeked");
                drop(q);
                for packet in dispatcher.apply(&p.reply_to, p.commands) {
                    if let Err(e) = p.reply_to.send(&packet) {
                        log::debug!("timed bundle reply not delivered: {e}");
                    }
                }
                q = lock.lock_unpoisoned();
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
