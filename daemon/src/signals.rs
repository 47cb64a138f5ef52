//! What each signal does to the running daemon, in one table: every signal whose default
//! action would end the process and that can be caught is either a request (stop cleanly,
//! reload, dump the trace) or ignored with a log line. None ends the daemon without the
//! session saved.
//!
//! - Stop cleanly (fade, save the session, exit 0): [`STOP_SIGNALS`].
//! - SIGHUP reloads the config, SIGUSR1 dumps the engine's trace.
//! - Ignored with a warning (at most one line per signal per [`IGNORED_LOG_EVERY`]):
//!   [`IGNORED_SIGNALS`] and the real-time signals `SIGRTMIN..=SIGRTMAX`.
//! - SIGPIPE stays ignored as the Rust runtime set it before `main` (a write to a closed
//!   socket returns `EPIPE` to the writer); it is never given a handler.
//! - Left at their default on purpose: SIGKILL and SIGSTOP (cannot be caught), the faults
//!   (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP, SIGSYS: the process is broken), and
//!   SIGQUIT (the operator's "stop now and dump core", as `kill -QUIT` is meant).
//!
//! Threading: [`install`] and [`stop_flag`] run once on the main thread before any other thread starts;
//! the returned [`Signals`] iterator and [`IgnoredLog`] are read by the main thread's serve
//! loop. The handlers themselves are signal-hook's (async-signal-safe: a write to a pipe).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use libc::{SIGPWR, SIGSTKFLT, c_int};
use signal_hook::consts::{
    SIGALRM, SIGHUP, SIGINT, SIGIO, SIGPROF, SIGTERM, SIGUSR1, SIGUSR2, SIGVTALRM, SIGXCPU, SIGXFSZ,
};
use signal_hook::iterator::Signals;

/// Signals that stop the daemon cleanly: `STOPPING=1`, fade to silence, the session saved,
/// exit 0. SIGPWR (a UPS or init announcing a power failure) and SIGXCPU (the soft CPU-time
/// limit; the hard limit's SIGKILL follows) are stop requests too: saving first is the point.
pub const STOP_SIGNALS: &[c_int] = &[SIGINT, SIGTERM, SIGPWR, SIGXCPU];

/// Signals that are no request to latentd and are ignored with a warning. SIGXFSZ ignored
/// makes a write past the file-size limit fail with `EFBIG` (the recording or the state
/// save reports it) instead of killing the process.
pub const IGNORED_SIGNALS: &[c_int] = &[
    SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF, SIGIO, SIGSTKFLT, SIGXFSZ,
];

/// An ignored signal is logged at most once per this interval (a flood cannot flood the log).
pub const IGNORED_LOG_EVERY: Duration = Duration::from_secs(1);

/// What the daemon does on a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalAction {
    /// Stop cleanly, saving the session.
    Stop,
    /// Re-read the config (SIGHUP).
    Reload,
    /// Write the engine's trace beside the state file (SIGUSR1).
    DumpTrace,
    /// Log it and carry on.
    Ignore,
}

/// The action for `signal` (one [`install`] registered).
pub fn action(signal: c_int) -> SignalAction {
    match signal {
        SIGHUP => SignalAction::Reload,
        SIGUSR1 => SignalAction::DumpTrace,
        s if STOP_SIGNALS.contains(&s) => SignalAction::Stop,
        _ => SignalAction::Ignore,
    }
}

/// Every signal latentd handles: the stop, reload, trace and ignored ones, the real-time
/// range included.
pub fn handled() -> Vec<c_int> {
    let mut all = vec![SIGHUP, SIGUSR1];
    all.extend_from_slice(STOP_SIGNALS);
    all.extend_from_slice(IGNORED_SIGNALS);
    all.extend(libc::SIGRTMIN()..=libc::SIGRTMAX());
    all
}

/// Register the handlers for [`handled`]; their arrivals are read from the returned iterator.
pub fn install() -> std::io::Result<Signals> {
    Signals::new(handled())
}

/// A flag set by any of [`STOP_SIGNALS`] (besides the iterator of [`install`], which still
/// sees them): a long step of the start (loading a file) polls it to stop in time.
pub fn stop_flag() -> std::io::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for &signal in STOP_SIGNALS {
        signal_hook::flag::register(signal, Arc::clone(&flag))?;
    }
    Ok(flag)
}

/// The signal's name: `SIGUSR2`, `SIGRTMIN+3`.
pub fn name(signal: c_int) -> String {
    if let Some(name) = signal_hook::low_level::signal_name(signal) {
        return name.to_string();
    }
    let rt_min = libc::SIGRTMIN();
    if (rt_min..=libc::SIGRTMAX()).contains(&signal) {
        return format!("SIGRTMIN+{}", signal - rt_min);
    }
    format!("signal {signal}")
}

/// Logs ignored signals, at most once per signal per [`IGNORED_LOG_EVERY`], counting the
/// ones not logged.
#[derive(Debug, Default)]
pub struct IgnoredLog {
    /// Per signal: when it was last logged, and how many arrived since without a line.
    seen: HashMap<c_int, (Instant, u64)>,
}

impl IgnoredLog {
    /// Note that `signal` arrived and was ignored.
    pub fn note(&mut self, signal: c_int) {
        let now = Instant::now();
        match self.seen.get_mut(&signal) {
            Some((logged, quiet)) if now.duration_since(*logged) < IGNORED_LOG_EVERY => {
                *quiet += 1;
            }
            entry => {
                let quiet = entry.map_or(0, |(_, quiet)| *quiet);
                let more = if quiet > 0 {
                    format!(" ({quiet} more since the last line)")
                } else {
                    String::new()
                };
                log::warn!(
                    "{} received: ignored{more}; latentd stops on SIGTERM or SIGINT",
                    name(signal)
                );
                self.seen.insert(signal, (now, 0));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catchable_terminating_signal_has_an_action_and_sigpipe_has_none() {
        let handled = handled();
        for s in [SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF, SIGIO, SIGXFSZ] {
            assert!(handled.contains(&s), "{}", name(s));
            assert_eq!(action(s), SignalAction::Ignore, "{}", name(s));
        }
        for s in [SIGINT, SIGTERM, SIGPWR, SIGXCPU] {
            assert_eq!(action(s), SignalAction::Stop, "{}", name(s));
        }
        assert_eq!(action(SIGHUP), SignalAction::Reload);
        assert_eq!(action(SIGUSR1), SignalAction::DumpTrace);
        assert!(handled.contains(&libc::SIGRTMAX()));
        for s in [libc::SIGPIPE, libc::SIGQUIT, libc::SIGKILL, libc::SIGSEGV] {
            assert!(!handled.contains(&s), "{}", name(s));
        }
    }

    #[test]
    fn names_real_time_signals_by_offset() {
        assert_eq!(name(SIGUSR2), "SIGUSR2");
        assert_eq!(name(libc::SIGRTMIN() + 3), "SIGRTMIN+3");
    }
}
