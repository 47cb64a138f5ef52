//! [`Meters`]: the output's levels, measured by the realtime callback on what it just played.
//!
//! Per period and per output channel the callback computes the peak (largest magnitude) and
//! the RMS, and publishes them; it also adds each channel's sum of squares and its count of
//! samples at or above the clip threshold to running totals, so that a reader can compute the
//! exact RMS, and count every clipped sample, over any span it likes ([`MeterTotals`]):
//! a meter push at 10 Hz, the silence alarm over seconds, without missing a period.
//!
//! Threading: one writer, the realtime callback ([`Meters::record_period`]: arithmetic and
//! relaxed atomic stores, no allocation, lock, syscall or panic path); any number of readers
//! on other threads. Floats travel as their bits in `AtomicU32` / `AtomicU64`. A reader may
//! see one channel's figures from a period and the next channel's from the next one: levels
//! are for people and alarms, not sample-exact.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use latentd_osc_schema::reply::{Level, METER_CHANNELS};

/// One channel's atomics.
#[derive(Debug, Default)]
struct ChannelMeter {
    /// Last period's peak magnitude, `f32` bits.
    peak: AtomicU32,
    /// Last period's RMS, `f32` bits.
    rms: AtomicU32,
    /// Sum of squares of every sample metered since start, `f64` bits (one writer: a load
    /// and a store, no read-modify-write).
    energy: AtomicU64,
    /// Samples at or above the clip threshold since start.
    clipped: AtomicU64,
}

/// The output's meters (see the module doc); shared as `Arc<Meters>`.
#[derive(Debug)]
pub struct Meters {
    channels: [ChannelMeter; METER_CHANNELS],
    /// Frames metered since start (per channel: every channel meters every frame).
    frames: AtomicU64,
    /// Periods metered since start.
    periods: AtomicU64,
    /// Magnitude at or above which a sample counts as clipped, `f32` bits.
    clip_threshold: AtomicU32,
}

impl Default for Meters {
    /// Meters at zero, counting samples at or above full scale (1.0) as clipped.
    fn default() -> Meters {
        Meters {
            channels: Default::default(),
            frames: AtomicU64::new(0),
            periods: AtomicU64::new(0),
            clip_threshold: AtomicU32::new(1.0f32.to_bits()),
        }
    }
}

/// Running totals at one moment; the difference of two is the span between them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MeterTotals {
    /// Frames metered since start.
    pub frames: u64,
    /// Periods metered since start.
    pub periods: u64,
    /// Per channel: sum of squares since start.
    pub energy: [f64; METER_CHANNELS],
    /// Per channel: samples at or above the clip threshold since start.
    pub clipped: [u64; METER_CHANNELS],
}

impl MeterTotals {
    /// Per channel, the RMS over the frames between `earlier` and `self`; `None` when no
    /// frame was metered in between (the output did not play).
    pub fn rms_since(&self, earlier: &MeterTotals) -> Option<[f64; METER_CHANNELS]> {
        let frames = self.frames.checked_sub(earlier.frames).filter(|&f| f > 0)?;
        let mut rms = [0.0; METER_CHANNELS];
        for (k, r) in rms.iter_mut().enumerate() {
            let energy = (self.energy[k] - earlier.energy[k]).max(0.0);
            *r = (energy / frames as f64).sqrt();
        }
        Some(rms)
    }

    /// Samples (all channels) at or above the clip threshold between `earlier` and `self`.
    pub fn clipped_since(&self, earlier: &MeterTotals) -> u64 {
        self.clipped
            .iter()
            .zip(&earlier.clipped)
            .map(|(now, then)| now.saturating_sub(*then))
            .sum()
    }
}

impl Meters {
    /// Count samples of magnitude `linear` and above as clipped from the next period on.
    pub fn set_clip_threshold(&self, linear: f32) {
        self.clip_threshold
            .store(linear.to_bits(), Ordering::Relaxed);
    }

    /// Meter one period of `n` frames over `channels` channels, `sample(frame, channel)`
    /// giving what was played; channels beyond [`METER_CHANNELS`] are not metered.
    /// Realtime-safe: arithmetic and relaxed atomic stores only.
    #[inline]
    pub fn record_period(&self, n: usize, channels: usize, sample: impl Fn(usize, usize) -> f32) {
        if n == 0 {
            return;
        }
        let clip = f32::from_bits(self.clip_threshold.load(Ordering::Relaxed));
        for (k, meter) in self.channels.iter().enumerate().take(channels) {
            let (mut peak, mut squares, mut clipped) = (0.0f32, 0.0f64, 0u64);
            for i in 0..n {
                let v = sample(i, k).abs();
                // `max` ignores a NaN sample; so does the comparison below.
                peak = peak.max(v);
                squares += f64::from(v) * f64::from(v);
                clipped += u64::from(v >= clip);
            }
            let squares = if squares.is_finite() { squares } else { 0.0 };
            let rms = (squares / n as f64).sqrt() as f32;
            meter.peak.store(peak.to_bits(), Ordering::Relaxed);
            meter.rms.store(rms.to_bits(), Ordering::Relaxed);
            let energy = f64::from_bits(meter.energy.load(Ordering::Relaxed)) + squares;
            meter.energy.store(energy.to_bits(), Ordering::Relaxed);
            if clipped > 0 {
                let total = meter.clipped.load(Ordering::Relaxed) + clipped;
                meter.clipped.store(total, Ordering::Relaxed);
            }
        }
        // Channels the output lacks read as silence.
        for meter in self.channels.iter().skip(channels) {
            meter.peak.store(0, Ordering::Relaxed);
            meter.rms.store(0, Ordering::Relaxed);
        }
        let frames = self.frames.load(Ordering::Relaxed) + n as u64;
        self.frames.store(frames, Ordering::Release);
        let periods = self.periods.load(Ordering::Relaxed) + 1;
        self.periods.store(periods, Ordering::Release);
    }

    /// Last period's peak and RMS per channel, linear (1.0 is full scale).
    pub fn linear(&self) -> [(f32, f32); METER_CHANNELS] {
        std::array::from_fn(|k| {
            let m = &self.channels[k];
            (
                f32::from_bits(m.peak.load(Ordering::Relaxed)),
                f32::from_bits(m.rms.load(Ordering::Relaxed)),
            )
        })
    }

    /// Last period's peak and RMS per channel in dBFS, as `/meter` and `/status.reply`
    /// carry them.
    pub fn levels(&self) -> [Level; METER_CHANNELS] {
        self.linear()
            .map(|(peak, rms)| Level::from_linear(f64::from(peak), f64::from(rms)))
    }

    /// The running totals now.
    pub fn totals(&self) -> MeterTotals {
        let periods = self.periods.load(Ordering::Acquire);
        let frames = self.frames.load(Ordering::Acquire);
        MeterTotals {
            frames,
            periods,
            energy: std::array::from_fn(|k| {
                f64::from_bits(self.channels[k].energy.load(Ordering::Relaxed))
            }),
            clipped: std::array::from_fn(|k| self.channels[k].clipped.load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_period_gives_peak_rms_and_clip_counts_per_channel() {
        let meters = Meters::default();
        meters.set_clip_threshold(0.5);
        // Left: a square wave of ±0.25; right: one sample at 0.75, the rest 0.
        let before = meters.totals();
        assert_no_alloc::assert_no_alloc(|| {
            meters.record_period(4, 2, |i, k| match k {
                0 => {
                    if i % 2 == 0 {
                        0.25
                    } else {
                        -0.25
                    }
                }
                _ => {
                    if i == 1 {
                        -0.75
                    } else {
                        0.0
                    }
                }
            })
        });
        let [(lp, lr), (rp, rr)] = meters.linear();
        assert_eq!((lp, lr), (0.25, 0.25));
        assert_eq!(rp, 0.75);
        assert!((rr - 0.375).abs() < 1e-6, "{rr}");
        let after = meters.totals();
        assert_eq!(after.frames - before.frames, 4);
        assert_eq!(after.clipped_since(&before), 1);
        let rms = after.rms_since(&before).unwrap();
        assert!((rms[0] - 0.25).abs() < 1e-9 && (rms[1] - 0.375).abs() < 1e-9);
        assert_eq!(after.rms_since(&after), None);
        let levels = meters.levels();
        assert!((levels[0].peak_dbfs - 20.0 * 0.25f64.log10()).abs() < 1e-6);
    }

    #[test]
    fn a_mono_output_meters_its_missing_channel_as_silence() {
        let meters = Meters::default();
        meters.record_period(8, 2, |_, _| 0.5);
        meters.record_period(8, 1, |_, _| 0.5);
        assert_eq!(meters.linear()[1], (0.0, 0.0));
        assert_eq!(meters.levels()[1].peak_dbfs, Level::FLOOR_DBFS);
    }
}
