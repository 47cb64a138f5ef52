//! The realtime environment of the audio callback: what the wrapper sets around every
//! period (`rt_guard`), and the once-per-stream check that the server really runs the
//! callback with realtime scheduling ([`CallbackThread`], [`Scheduling`]).
//!
//! Around each period, `rt_guard` flushes subnormal floats to zero
//! ([`latentd_engine::denormals`]: the MXCSR FTZ and DAZ bits on x86, FPCR FZ on aarch64)
//! and, in debug builds, forbids allocation (`assert_no_alloc`). The audio server owns the
//! callback's thread (JACK's process thread, PipeWire's data thread), so the flags are set
//! on entry and restored on exit: the server gets its thread back as it lent it.
//!
//! The realtime check: a callback may not make a syscall, and asking for a thread's
//! scheduling is one. So the work is split. The supervisor arms the output's
//! [`CallbackThread`] once a new output runs; the next callback stores its own
//! `pthread_self()` (a read of the thread pointer: no syscall, no allocation) and disarms
//! it; the supervising thread, which is not realtime, then asks `pthread_getschedparam`
//! for that thread once, logs the answer ("the jack callback runs SCHED_FIFO prio 65", or a
//! warning when it is not realtime) and publishes it for `/metrics`
//! (`latentd_callback_realtime`).
//!
//! Threading: `rt_guard` and [`CallbackThread::note`] run on the callback's thread and are
//! realtime-safe (atomics only). [`CallbackThread::arm`], [`CallbackThread::disarm`],
//! [`CallbackThread::take`] and [`scheduling_of`] run on the supervising thread. A thread
//! handle is only asked about while the output whose callback stored it is running: the
//! supervisor arms after any older output is gone and disarms when it loses the output, and
//! it alone stops outputs (a lost JACK client is leaked with its threads, never joined).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Runs one period's work `f` in the callback's realtime environment: subnormals flushed
/// to zero, and no allocation in debug builds (needs `assert_no_alloc`'s `AllocDisabler` as
/// the global allocator, which the binary and the tests install). Realtime-safe.
#[inline]
pub(super) fn rt_guard<T>(f: impl FnOnce() -> T) -> T {
    latentd_engine::denormals::flush_denormals(|| {
        #[cfg(debug_assertions)]
        {
            assert_no_alloc::assert_no_alloc(f)
        }
        #[cfg(not(debug_assertions))]
        {
            f()
        }
    })
}

/// Where the callback leaves its thread handle for the supervisor to ask about. See the
/// module doc.
#[derive(Debug, Default)]
pub struct CallbackThread {
    /// Set by [`Self::arm`]; the next callback clears it and stores its thread.
    wanted: AtomicBool,
    /// The callback's `pthread_t` once stored; 0 while none is.
    thread: AtomicUsize,
}

impl CallbackThread {
    /// Ask the next callback to store its thread (forgetting one stored before).
    pub fn arm(&self) {
        self.thread.store(0, Ordering::Relaxed);
        self.wanted.store(true, Ordering::Release);
    }

    /// Forget the stored thread and stop asking (the output it belonged to is gone).
    pub fn disarm(&self) {
        self.wanted.store(false, Ordering::Relaxed);
        self.thread.store(0, Ordering::Release);
    }

    /// Called by the callback, every period: stores the calling thread if asked to.
    /// Realtime-safe: one relaxed load per period; when armed, one swap and one store.
    #[inline]
    pub fn note(&self) {
        if self.wanted.load(Ordering::Relaxed) && self.wanted.swap(false, Ordering::Acquire) {
            // SAFETY: pthread_self has no preconditions; it reads the calling thread's
            // pointer (no syscall, no allocation).
            let me = unsafe { libc::pthread_self() };
            self.thread.store(me as usize, Ordering::Release);
        }
    }

    /// The thread a callback stored since the last [`Self::arm`], once (a second call says
    /// `None`).
    pub fn take(&self) -> Option<libc::pthread_t> {
        match self.thread.swap(0, Ordering::Acquire) {
            0 => None,
            thread => Some(thread as libc::pthread_t),
        }
    }
}

/// A thread's scheduling policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// `SCHED_FIFO`: realtime, first in first out.
    Fifo,
    /// `SCHED_RR`: realtime, round robin.
    RoundRobin,
    /// `SCHED_OTHER`: the ordinary time-shared policy.
    Other,
    /// Any other policy (`SCHED_BATCH`, `SCHED_IDLE`, `SCHED_DEADLINE`, ...), by number.
    Unknown(i32),
}

impl Policy {
    fn from_raw(policy: libc::c_int) -> Policy {
        match policy {
            libc::SCHED_FIFO => Policy::Fifo,
            libc::SCHED_RR => Policy::RoundRobin,
            libc::SCHED_OTHER => Policy::Other,
            other => Policy::Unknown(other),
        }
    }
}

/// How a thread is scheduled: its policy and, for the realtime ones, its priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheduling {
    /// The policy.
    pub policy: Policy,
    /// The static priority (1..=99 for the realtime policies, 0 otherwise).
    pub priority: i32,
}

impl Scheduling {
    /// `SCHED_FIFO` or `SCHED_RR`.
    pub fn is_realtime(&self) -> bool {
        matches!(self.policy, Policy::Fifo | Policy::RoundRobin)
    }
}

impl fmt::Display for Scheduling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.policy {
            Policy::Fifo => write!(f, "SCHED_FIFO prio {}", self.priority),
            Policy::RoundRobin => write!(f, "SCHED_RR prio {}", self.priority),
            Policy::Other => f.write_str("SCHED_OTHER"),
            Policy::Unknown(p) => write!(f, "scheduling policy {p} prio {}", self.priority),
        }
    }
}

/// Ask how `thread` is scheduled (a syscall: never from the callback).
///
/// `thread` must be a live thread of this process: one that [`CallbackThread::take`] gave
/// while the output whose callback stored it still runs, or `pthread_self()`.
pub fn scheduling_of(thread: libc::pthread_t) -> std::io::Result<Scheduling> {
    let mut policy: libc::c_int = 0;
    let mut param = libc::sched_param { sched_priority: 0 };
    // SAFETY: the caller guarantees `thread` is live (see above); both out-pointers are
    // valid for writes.
    let rc = unsafe { libc::pthread_getschedparam(thread, &mut policy, &mut param) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    Ok(Scheduling {
        policy: Policy::from_raw(policy),
        priority: param.sched_priority,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MXCSR as the CPU has it now (x86_64): FTZ is bit 15, DAZ bit 6.
    #[cfg(target_arch = "x86_64")]
    fn mxcsr() -> u32 {
        let mut value: u32 = 0;
        // SAFETY: stmxcsr only stores the register into the 4 bytes `value` provides.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut value, options(nostack, preserves_flags));
        }
        value
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_wrapper_sets_ftz_and_daz_and_restores_mxcsr() {
        const FTZ: u32 = 1 << 15;
        const DAZ: u32 = 1 << 6;
        let before = mxcsr();
        assert_eq!(
            before & (FTZ | DAZ),
            0,
            "the test thread starts without FTZ/DAZ"
        );
        let inside = rt_guard(mxcsr);
        assert_eq!(inside & (FTZ | DAZ), FTZ | DAZ, "inside: {inside:#x}");
        assert_eq!(inside & !(FTZ | DAZ), before, "nothing else changed");
        assert_eq!(mxcsr(), before, "restored after the period");
    }

    #[test]
    fn the_wrapper_flushes_subnormals_and_gives_the_thread_back() {
        use latentd_engine::denormals::flushing;
        assert!(!flushing());
        assert!(rt_guard(flushing));
        assert!(!flushing());
    }

    #[test]
    fn a_callback_stores_its_thread_once_per_arming() {
        let probe = CallbackThread::default();
        probe.note();
        assert_eq!(probe.take(), None, "not armed: nothing stored");
        probe.arm();
        // SAFETY: no preconditions.
        let me = unsafe { libc::pthread_self() };
        assert_no_alloc::assert_no_alloc(|| probe.note());
        assert_eq!(probe.take(), Some(me));
        assert_eq!(probe.take(), None, "taken once");
        probe.note();
        assert_eq!(probe.take(), None, "one arming, one store");
        probe.arm();
        probe.disarm();
        probe.note();
        assert_eq!(probe.take(), None, "disarmed");
    }

    #[test]
    fn a_thread_s_scheduling_is_read_from_another_thread() {
        let probe = std::sync::Arc::new(CallbackThread::default());
        probe.arm();
        let (stored_tx, stored_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let worker = {
            let probe = std::sync::Arc::clone(&probe);
            std::thread::spawn(move || {
                let param = libc::sched_param { sched_priority: 7 };
                // SAFETY: plain FFI call on the current thread with a valid parameter.
                let fifo = unsafe {
                    libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param)
                } == 0;
                probe.note();
                stored_tx.send(fifo).unwrap();
                // Stay alive until the other thread has asked.
                let _ = done_rx.recv();
            })
        };
        let fifo = stored_rx.recv().unwrap();
        let thread = probe.take().expect("the worker stored its thread");
        let seen = scheduling_of(thread).unwrap();
        done_tx.send(()).unwrap();
        worker.join().unwrap();
        if fifo {
            assert_eq!(seen.to_string(), "SCHED_FIFO prio 7");
            assert!(seen.is_realtime());
        } else {
            // Not allowed realtime here (no root, no RLIMIT_RTPRIO): the default policy.
            assert_eq!(seen.to_string(), "SCHED_OTHER");
            assert!(!seen.is_realtime());
        }
        // SAFETY: no preconditions.
        let own = scheduling_of(unsafe { libc::pthread_self() }).unwrap();
        assert_eq!(own.policy, Policy::Other, "the test thread is not realtime");
    }
}
