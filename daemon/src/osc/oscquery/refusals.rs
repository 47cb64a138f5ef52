//! The OSCQuery server's refusal log: at most one line per [`REFUSAL_LOG_INTERVAL`], the next
//! line carrying the number of refusals not logged since the last one, so a flood of bad
//! requests (or an accept loop out of file descriptors) costs one log line per interval.
//!
//! Threading: [`RefusalLog`] is shared by the accept thread and the connection workers behind
//! one mutex, held only to count and decide; control threads only.

use latentd_engine::lock::MutexExt;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use latentd_osc_schema::oscquery_http::REFUSAL_LOG_INTERVAL;

/// When to log, given the clock (pure: tested without sleeping).
#[derive(Debug)]
struct Window {
    interval: Duration,
    last_line: Option<Instant>,
    /// Refusals counted but not logged since `last_line`.
    suppressed: u64,
}

impl Window {
    fn new(interval: Duration) -> Window {
        Window {
            interval,
            last_line: None,
            suppressed: 0,
        }
    }

    fn due(&self, now: Instant) -> bool {
        self.last_line
            .is_none_or(|last| now.saturating_duration_since(last) >= self.interval)
    }

    /// One refusal at `now`: `Some(suppressed before it)` when it is to be logged.
    fn refusal(&mut self, now: Instant) -> Option<u64> {
        if self.due(now) {
            self.last_line = Some(now);
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }

    /// The count of refusals not logged, once the interval since the last line has passed.
    fn flush(&mut self, now: Instant) -> Option<u64> {
        if self.suppressed > 0 && self.due(now) {
            self.last_line = Some(now);
            Some(std::mem::take(&mut self.suppressed))
        } else {
            None
        }
    }
}

/// The rate-limited log of refused requests and connections.
#[derive(Debug)]
pub(super) struct RefusalLog(Mutex<Window>);

impl RefusalLog {
    pub(super) fn new() -> RefusalLog {
        RefusalLog(Mutex::new(Window::new(REFUSAL_LOG_INTERVAL)))
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.0.lock_unpoisoned()
    }

    /// Count one refusal; log it when the interval since the last line has passed.
    pub(super) fn refused(&self, what: fmt::Arguments<'_>) {
        let logged = self.window().refusal(Instant::now());
        match logged {
            Some(0) => log::warn!("OSCQuery: refused {what}"),
            Some(n) => log::warn!(
                "OSCQuery: refused {what} ({n} more refusal(s) not logged since the last line)"
            ),
            None => {}
        }
    }

    /// Log the count of refusals not logged, once the interval has passed (the accept loop
    /// calls this on every tick, so a burst's tail is reported without a later refusal).
    pub(super) fn flush(&self) {
        let count = self.window().flush(Instant::now());
        if let Some(n) = count {
            log::warn!(
                "OSCQuery: {n} more refusal(s) not logged in the last {} s",
                REFUSAL_LOG_INTERVAL.as_secs()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_of_the_others() {
        let mut window = Window::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(window.refusal(at(0)), Some(0), "the first is logged");
        for ms in 1..=500 {
            assert_eq!(window.refusal(at(ms)), None, "then counted");
        }
        assert_eq!(window.flush(at(9_999)), None, "not before the interval");
        assert_eq!(window.flush(at(10_000)), Some(500), "then one line");
        assert_eq!(window.flush(at(30_000)), None, "nothing left to report");
        assert_eq!(window.refusal(at(30_001)), Some(0));
        assert_eq!(window.refusal(at(30_002)), None);
        assert_eq!(
            window.refusal(at(40_001)),
            Some(1),
            "the next line carries the count"
        );
    }
}
