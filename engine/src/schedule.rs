//! The flow-matching time schedule: which noise levels `t` a request visits, from `t_start`
//! down to 0, and a small bounded cache of them.
//!
//! Semantics (see `docs/engine.md`):
//! - `denoise <= DENOISE_EPSILON`: the schedule is `[0, 0]` (one step that changes nothing);
//! - `denoise >= 1`: `t_start = 1`;
//! - otherwise `full = floor(steps / denoise)` and `t_start = steps / full` (about `denoise`);
//! - `t = linspace(t_start, 0, steps + 1)`, then the shift warp
//!   `t' = shift * t / (1 + (shift - 1) * t)`.
//!
//! Computed in `f64`, stored as `f32`. A swept knob makes many distinct values, so the cache
//! is bounded ([`ScheduleCache::CAPACITY`] entries, least recently used evicted).
//!
//! Threading: a [`ScheduleCache`] belongs to one thread (the engine's); [`Schedule`]s are
//! shared as `Arc` and immutable.

use std::collections::HashMap;
use std::sync::Arc;

/// Denoise values at or below this mean "no denoising at all".
pub const DENOISE_EPSILON: f32 = 1e-4;

/// The noise levels a request visits: `t[0] = t_start`, ..., `t[len-1] = 0`.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    t: Box<[f32]>,
}

impl Schedule {
    /// Computes the schedule for `steps` (>= 1), `denoise` in [0, 1] and `shift` (> 0).
    pub fn compute(steps: u32, denoise: f32, shift: f32) -> Self {
        let steps = steps.max(1);
        if denoise <= DENOISE_EPSILON {
            return Self {
                t: vec![0.0, 0.0].into_boxed_slice(),
            };
        }
        let t_start = if denoise >= 1.0 {
            1.0
        } else {
            let full = (f64::from(steps) / f64::from(denoise)).floor();
            f64::from(steps) / full
        };
        let shift = f64::from(shift);
        let t = (0..=steps)
            .map(|i| {
                let lin = t_start * (1.0 - f64::from(i) / f64::from(steps));
                (shift * lin / (1.0 + (shift - 1.0) * lin)) as f32
            })
            .collect();
        Self { t }
    }

    /// The schedule points, `steps + 1` of them.
    pub fn points(&self) -> &[f32] {
        &self.t
    }

    /// How many steps the schedule takes (`points().len() - 1`).
    pub fn steps(&self) -> usize {
        self.t.len() - 1
    }

    /// The noise level a request starts from.
    pub fn t_start(&self) -> f32 {
        self.t[0]
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct ScheduleKey {
    steps: u32,
    denoise_bits: u32,
    shift_bits: u32,
}

/// A bounded least-recently-used cache of schedules keyed by (steps, denoise, shift) bits.
#[derive(Debug, Default)]
pub struct ScheduleCache {
    entries: HashMap<ScheduleKey, (Arc<Schedule>, u64)>,
    clock: u64,
}

impl ScheduleCache {
    /// The most schedules kept.
    pub const CAPACITY: usize = 256;

    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The schedule for these parameters, computed on first use.
    pub fn get(&mut self, steps: u32, denoise: f32, shift: f32) -> Arc<Schedule> {
        self.clock += 1;
        let key = ScheduleKey {
            steps,
            denoise_bits: denoise.to_bits(),
            shift_bits: shift.to_bits(),
        };
        if let Some((schedule, used)) = self.entries.get_mut(&key) {
            *used = self.clock;
            return Arc::clone(schedule);
        }
        if self.entries.len() >= Self::CAPACITY {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        let schedule = Arc::new(Schedule::compute(steps, denoise, shift));
        self.entries
            .insert(key, (Arc::clone(&schedule), self.clock));
        schedule
    }

    /// How many schedules are cached.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_close(got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((f64::from(*g) - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn tiny_denoise_is_the_empty_schedule() {
        assert_eq!(Schedule::compute(8, 0.0, 3.5).points(), &[0.0, 0.0]);
        assert_eq!(Schedule::compute(8, 5e-5, 3.5).steps(), 1);
    }

    #[test]
    fn full_denoise_without_shift_is_linspace() {
        let s = Schedule::compute(4, 1.0, 1.0);
        assert_close(s.points(), &[1.0, 0.75, 0.5, 0.25, 0.0]);
    }

    #[test]
    fn shift_warps_by_hand_computed_values() {
        // t' = 3.5 t / (1 + 2.5 t): t = 1, 0.75, 0.5, 0.25, 0.
        let s = Schedule::compute(4, 1.0, 3.5);
        assert_close(
            s.points(),
            &[1.0, 2.625 / 2.875, 1.75 / 2.25, 0.875 / 1.625, 0.0],
        );
    }

    #[test]
    fn partial_denoise_starts_at_steps_over_full() {
        // steps 8, denoise 0.3: full = floor(26.67) = 26, t_start = 8/26; shift 1 keeps it.
        let s = Schedule::compute(8, 0.3, 1.0);
        assert!((f64::from(s.t_start()) - 8.0 / 26.0).abs() < 1e-7);
        assert_eq!(s.steps(), 8);
        assert!((f64::from(s.points()[4]) - 4.0 / 26.0).abs() < 1e-7);
        // steps 8, denoise 0.5: full = 16, t_start = 0.5 exactly; warped by 3 -> 1.5/2.
        let s = Schedule::compute(8, 0.5, 3.0);
        assert_eq!(s.t_start(), 0.75);
        assert_eq!(*s.points().last().unwrap(), 0.0);
    }

    #[test]
    fn cache_returns_the_same_schedule_and_stays_bounded() {
        let mut cache = ScheduleCache::new();
        let a = cache.get(8, 0.5, 3.5);
        let b = cache.get(8, 0.5, 3.5);
        assert!(Arc::ptr_eq(&a, &b));
        for i in 0..1000 {
            cache.get(8, i as f32 / 1000.0, 3.5);
        }
        assert_eq!(cache.len(), ScheduleCache::CAPACITY);
        // The most recently used entries survive.
        let recent = cache.get(8, 999.0 / 1000.0, 3.5);
        assert_eq!(cache.len(), ScheduleCache::CAPACITY);
        assert_eq!(*recent, Schedule::compute(8, 0.999, 3.5));
    }
}
