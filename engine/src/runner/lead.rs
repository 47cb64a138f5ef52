//! The adaptive lead: how far ahead of the playhead (seconds) the engine writes a fresh
//! window, learned from the gaps between finished decodes.
//!
//! ```text
//! lead(now)     = clamp(interval_ema * gain + margin + stall_extra(now), floor, ceiling)
//!                 + transport_extra
//! repatch_lead  = interval_ema * gain + margin          (no floor, no stall bump)
//! ```
//!
//! - `interval_ema` follows the gaps between fresh decodes (exponential moving average,
//!   `alpha` 0.1, seeded at 0.07 s); each gap is capped (0.18 s) before it enters, so one
//!   stall does not drag the average for seconds.
//! - A gap longer than the audio one decode produces (`window`) is a stall: `stall_extra`
//!   rises by `gap - window + 0.05` s (on top of what is left of earlier bumps) and decays
//!   as `exp(-dt / tau)` with `tau` 1.5 s. It pushes the frontier out while the engine is
//!   slow, and it is why the frontier cannot go near the playhead: the near-playhead
//!   repatch ([`LeadController::repatch_lead_s`]) does, and only within
//!   [`LeadConfig::repatch_window_s`] of inbound activity.
//! - The repatch write does not feed the gap EMA (it is a second write in the same tick).
//!
//! # Threading and time
//!
//! A plain value owned by the engine thread. It never reads a clock: every time is passed
//! in, in seconds on any monotonic timeline the caller chooses, so a simulated clock works
//! the same as the real one and results are deterministic.

use serde::{Deserialize, Serialize};

/// Settings of the lead controller; every field has a default ([`LeadConfig::default`]),
/// so a config file may name only what it changes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeadConfig {
    /// Multiplier on the decode-gap EMA (> 0).
    pub gain: f64,
    /// Seconds added to the scaled EMA (>= 0).
    pub margin_s: f64,
    /// Smallest frontier lead in seconds (>= 0), for stall safety.
    pub floor_s: f64,
    /// Largest frontier lead in seconds (>= floor), before the transport extra.
    pub ceiling_s: f64,
    /// EMA weight of each new gap, in `(0, 1]`.
    pub ema_alpha: f64,
    /// The EMA's starting value in seconds (> 0).
    pub ema_seed_s: f64,
    /// Gaps are capped at this many seconds (> 0) before entering the EMA.
    pub gap_cap_s: f64,
    /// Decay time constant of the stall bump in seconds (> 0).
    pub stall_tau_s: f64,
    /// Whether the near-playhead repatch runs at all.
    pub repatch: bool,
    /// The repatch runs only this many seconds (>= 0) after inbound activity.
    pub repatch_window_s: f64,
}

impl Default for LeadConfig {
    fn default() -> Self {
        Self {
            gain: 1.6,
            margin_s: 0.05,
            floor_s: 0.25,
            ceiling_s: 1.35,
            ema_alpha: 0.1,
            ema_seed_s: 0.07,
            gap_cap_s: 0.18,
            stall_tau_s: 1.5,
            repatch: true,
            repatch_window_s: 2.0,
        }
    }
}

/// Extra seconds a stall adds on top of `gap - window`.
const STALL_PAD_S: f64 = 0.05;

/// A setting or an input the lead controller cannot use.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum LeadError {
    /// A value is NaN or infinite.
    #[error("lead: {field} must be finite, got {value}")]
    NotFinite {
        /// The setting or argument.
        field: &'static str,
        /// What was given.
        value: f64,
    },
    /// A value must be above zero.
    #[error("lead: {field} must be above 0, got {value}")]
    NotPositive {
        /// The setting or argument.
        field: &'static str,
        /// What was given.
        value: f64,
    },
    /// A value must not be below zero.
    #[error("lead: {field} must not be negative, got {value}")]
    Negative {
        /// The setting or argument.
        field: &'static str,
        /// What was given.
        value: f64,
    },
    /// The EMA weight is outside `(0, 1]`.
    #[error("lead: ema_alpha must be in (0, 1], got {0}")]
    Alpha(f64),
    /// The ceiling is below the floor.
    #[error("lead: ceiling_s {ceiling} is below floor_s {floor}")]
    CeilingBelowFloor {
        /// The floor given.
        floor: f64,
        /// The ceiling given.
        ceiling: f64,
    },
}

fn finite(field: &'static str, value: f64) -> Result<f64, LeadError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(LeadError::NotFinite { field, value })
    }
}

fn positive(field: &'static str, value: f64) -> Result<f64, LeadError> {
    if finite(field, value)? > 0.0 {
        Ok(value)
    } else {
        Err(LeadError::NotPositive { field, value })
    }
}

fn non_negative(field: &'static str, value: f64) -> Result<f64, LeadError> {
    if finite(field, value)? >= 0.0 {
        Ok(value)
    } else {
        Err(LeadError::Negative { field, value })
    }
}

impl LeadConfig {
    /// Check every field; the first bad one is named in the error.
    pub fn validate(&self) -> Result<(), LeadError> {
        positive("gain", self.gain)?;
        non_negative("margin_s", self.margin_s)?;
        non_negative("floor_s", self.floor_s)?;
        non_negative("ceiling_s", self.ceiling_s)?;
        if self.ceiling_s < self.floor_s {
            return Err(LeadError::CeilingBelowFloor {
                floor: self.floor_s,
                ceiling: self.ceiling_s,
            });
        }
        finite("ema_alpha", self.ema_alpha)?;
        if !(self.ema_alpha > 0.0 && self.ema_alpha <= 1.0) {
            return Err(LeadError::Alpha(self.ema_alpha));
        }
        positive("ema_seed_s", self.ema_seed_s)?;
        positive("gap_cap_s", self.gap_cap_s)?;
        positive("stall_tau_s", self.stall_tau_s)?;
        non_negative("repatch_window_s", self.repatch_window_s)?;
        Ok(())
    }
}

/// Seconds to whole frames at `sample_rate`, rounded to nearest (negative gives 0).
pub fn seconds_to_frames(seconds: f64, sample_rate: u32) -> u64 {
    (seconds * sample_rate as f64).round().max(0.0) as u64
}

/// The lead controller: decode-gap EMA, stall bump, transport extra, repatch activity.
#[derive(Debug, Clone, PartialEq)]
pub struct LeadController {
    config: LeadConfig,
    /// EMA of capped decode gaps, seconds.
    interval_ema: f64,
    /// Stall bump as of `stall_at_s`, seconds.
    stall_base: f64,
    /// When `stall_base` was set; the bump decays from here.
    stall_at_s: f64,
    /// Seconds added after the clamp (transport changes).
    transport_extra_s: f64,
    /// Time of the latest inbound activity, if any.
    last_activity_s: Option<f64>,
}

impl LeadController {
    /// A controller with the EMA at its seed, no stall bump and no transport extra.
    pub fn new(config: LeadConfig) -> Result<Self, LeadError> {
        config.validate()?;
        Ok(Self {
            config,
            interval_ema: config.ema_seed_s,
            stall_base: 0.0,
            stall_at_s: 0.0,
            transport_extra_s: 0.0,
            last_activity_s: None,
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &LeadConfig {
        &self.config
    }

    /// Switch to `config` while running (a config reload): the learned state (the gap
    /// EMA, the stall bump, the transport extra, the latest activity) carries over, so
    /// the lead moves to the new bounds at once instead of restarting from the seed. A bad
    /// `config` is refused and the settings in use stay.
    pub fn set_config(&mut self, config: LeadConfig) -> Result<(), LeadError> {
        config.validate()?;
        self.config = config;
        Ok(())
    }

    /// The EMA of capped decode gaps, seconds.
    pub fn interval_ema_s(&self) -> f64 {
        self.interval_ema
    }

    /// Record the gap (seconds) between this fresh decode and the previous one, at `now_s`.
    /// `window_s` is the audio one decode produces (the kept window). Only frontier
    /// decodes count: the repatch and band-wrap writes must not be observed here.
    pub fn observe_gap(&mut self, gap_s: f64, window_s: f64, now_s: f64) -> Result<(), LeadError> {
        non_negative("gap_s", gap_s)?;
        positive("window_s", window_s)?;
        finite("now_s", now_s)?;
        let capped = gap_s.min(self.config.gap_cap_s);
        self.interval_ema += self.config.ema_alpha * (capped - self.interval_ema);
        if gap_s > window_s {
            let left = self.stall_extra_s(now_s);
            self.stall_base = left + (gap_s - window_s + STALL_PAD_S);
            self.stall_at_s = now_s.max(self.stall_at_s);
        }
        Ok(())
    }

    /// What is left of the stall bumps at `now_s`, seconds. A `now_s` before the latest
    /// bump (a caller's clocks disagreeing) sees the bump undecayed.
    pub fn stall_extra_s(&self, now_s: f64) -> f64 {
        if self.stall_base == 0.0 {
            return 0.0;
        }
        let dt = (now_s - self.stall_at_s).max(0.0);
        self.stall_base * (-dt / self.config.stall_tau_s).exp()
    }

    /// Frontier lead at `now_s`, seconds:
    /// `clamp(interval_ema * gain + margin + stall_extra(now), floor, ceiling) + transport_extra`.
    pub fn lead_s(&self, now_s: f64) -> f64 {
        let c = &self.config;
        let raw = self.interval_ema * c.gain + c.margin_s + self.stall_extra_s(now_s);
        raw.clamp(c.floor_s, c.ceiling_s) + self.transport_extra_s
    }

    /// Frontier lead at `now_s` in frames at `sample_rate` (rounded).
    pub fn lead_frames(&self, now_s: f64, sample_rate: u32) -> u64 {
        seconds_to_frames(self.lead_s(now_s), sample_rate)
    }

    /// Near-playhead repatch lead, seconds: `interval_ema * gain + margin`, with no floor
    /// and no stall bump (the targeting keeps it out of the ring's guard).
    pub fn repatch_lead_s(&self) -> f64 {
        self.interval_ema * self.config.gain + self.config.margin_s
    }

    /// Repatch lead in frames at `sample_rate` (rounded).
    pub fn repatch_lead_frames(&self, sample_rate: u32) -> u64 {
        seconds_to_frames(self.repatch_lead_s(), sample_rate)
    }

    /// Seconds added to the frontier lead after the clamp (for example while the
    /// transport settles); 0 to clear.
    pub fn set_transport_extra(&mut self, extra_s: f64) -> Result<(), LeadError> {
        self.transport_extra_s = non_negative("transport_extra_s", extra_s)?;
        Ok(())
    }

    /// The transport extra in force, seconds.
    pub fn transport_extra_s(&self) -> f64 {
        self.transport_extra_s
    }

    /// Inbound activity (a control action) happened at `now_s`.
    pub fn note_activity(&mut self, now_s: f64) {
        if now_s.is_finite() {
            self.last_activity_s = Some(self.last_activity_s.map_or(now_s, |t| t.max(now_s)));
        }
    }

    /// Whether near-playhead repatches are on at all (`repatch` in the settings).
    pub fn repatches(&self) -> bool {
        self.config.repatch
    }

    /// Should a fresh generation at `now_s` also be repatched near the playhead? Only with
    /// repatch on and within the activity window of the latest inbound activity.
    pub fn repatch_due(&self, now_s: f64) -> bool {
        self.config.repatch
            && self
                .last_activity_s
                .is_some_and(|t| now_s - t <= self.config.repatch_window_s)
    }
}

#[cfg(test)]
mod tests;
