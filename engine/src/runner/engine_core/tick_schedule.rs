//! When the engine core ticks: at once after activity, at the active interval within the
//! activity window, at the slow interval after it, never while paused, idle or stopped.
//!
//! Threading: owned by the engine core (one thread); plain values, times passed in.

use crate::runner::engine_config::EngineConfig;

/// The tick timing state (see the module doc).
pub(super) struct TickSchedule {
    /// When the last tick ran.
    pub last_tick_s: Option<f64>,
    /// When the last activity (an action, a knob publish, a commit...) arrived.
    pub last_activity_s: f64,
    /// Activity arrived since the last tick: tick at once.
    pub activity_pending: bool,
    /// Paused by the control side.
    pub paused: bool,
    /// A stop arrived.
    pub stopped: bool,
}

impl TickSchedule {
    pub fn new(paused: bool) -> Self {
        Self {
            last_tick_s: None,
            last_activity_s: 0.0,
            activity_pending: false,
            paused,
            stopped: false,
        }
    }

    /// Activity at `now_s` (times only move forward).
    pub fn note_activity(&mut self, now_s: f64) {
        self.last_activity_s = self.last_activity_s.max(now_s);
    }

    /// A tick runs at `now_s`.
    pub fn ticked(&mut self, now_s: f64) {
        self.last_tick_s = Some(now_s);
        self.activity_pending = false;
    }

    /// Whether no input arrived for `idle_after_s` before `now_s`.
    pub fn idle(&self, now_s: f64, config: &EngineConfig) -> bool {
        config.idle_after_s > 0.0 && now_s - self.last_activity_s > config.idle_after_s
    }

    /// When the next tick is due; `None` while paused, `idle` (the core's idle rule, of
    /// which [`Self::idle`] is the input part) or stopped.
    pub fn next_due(&self, now_s: f64, config: &EngineConfig, idle: bool) -> Option<f64> {
        if self.stopped || self.paused || idle {
            return None;
        }
        if self.activity_pending {
            return Some(now_s);
        }
        let active = now_s - self.last_activity_s <= config.active_window_s;
        let interval = if active {
            config.active_tick_interval_s
        } else {
            config.tick_interval_s
        };
        Some(self.last_tick_s.map_or(now_s, |t| t + interval))
    }
}
