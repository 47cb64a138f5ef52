//! [`RateConverter`]: plays a ring that runs at one rate (the model's) through an output
//! that runs at another (the server's), converting in the realtime callback.
//!
//! Each period the converter reads from the ring exactly the frames its resampler needs and
//! produces exactly the output frames asked for. The resampler is rubato's sinc resampler
//! with a fixed output size ([`FixedAsync::Output`]) and a fixed ratio: a short filter
//! ([`SINC_LEN`] taps, linear interpolation between [`OVERSAMPLING`] precomputed sincs,
//! cutoff chosen by rubato for the filter length), good to well above 18 kHz at 44.1 kHz.
//! Its delay is half the filter: [`RateConverter::latency_frames`] output frames (29 at
//! 48 → 44.1 kHz, 0.66 ms).
//!
//! Variable periods: everything is allocated in [`RateConverter::new`] for periods up to
//! `max(max_period, `[`PREALLOCATED_PERIOD`]`)` output frames (8192 is the largest buffer
//! size JACK accepts, so a JACK `bufsize` change never outgrows it). A period that differs
//! from the last one only resizes the resampler's chunk (arithmetic, no allocation); a
//! longer one than was preallocated (possible with a PipeWire quantum above 8192) is
//! converted in several consecutive chunks within the callback.
//!
//! Threading: built on the main thread, then owned by the [`PeriodProcessor`](super::PeriodProcessor)
//! (crate::audio::PeriodProcessor) and only used from the realtime callback:
//! [`RateConverter::convert`] does no allocation, lock, syscall or logging.

use latentd_engine::RingReader;
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{
    Async, FixedAsync, Resampler, Resizable, SincInterpolationParameters, SincInterpolationType,
    WindowFunction,
};

use super::AudioError;

/// Sinc filter length in taps (input frames).
pub const SINC_LEN: usize = 64;
/// Precomputed sinc phases between two input frames.
pub const OVERSAMPLING: usize = 256;
/// Periods up to this many output frames are converted in one chunk whatever the output
/// asked for at start: JACK's largest buffer size.
pub const PREALLOCATED_PERIOD: usize = 8192;

/// A ring rate and an output rate: how many ring frames an output period consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    /// The ring's (and the engine's) frames per second.
    pub ring: u32,
    /// The output's frames per second.
    pub output: u32,
}

impl Rates {
    /// True when the two rates differ, so the callback converts.
    pub fn converts(&self) -> bool {
        self.ring != self.output
    }

    /// The most ring frames one output period of `output_frames` reads: the same count
    /// without conversion; with it, the period scaled by the ratio plus two frames of
    /// rounding (the resampler's fractional position carries from period to period).
    pub fn ring_frames_per_period(&self, output_frames: usize) -> usize {
        if !self.converts() {
            return output_frames;
        }
        (output_frames as u64 * u64::from(self.ring)).div_ceil(u64::from(self.output.max(1)))
            as usize
            + 2
    }
}

/// The preallocated ring-rate to output-rate conversion of one [`PeriodProcessor`](super::PeriodProcessor)
/// (crate::audio::PeriodProcessor). See the module doc.
pub struct RateConverter {
    resampler: Async<f32>,
    rates: Rates,
    /// Ring channels: the ring is read and converted with all of them.
    channels: usize,
    /// Ring frames, interleaved, as the resampler's input.
    input: Vec<f32>,
    /// Converted frames, interleaved.
    output: Vec<f32>,
    /// Output frames per chunk the resampler is set to now.
    chunk: usize,
    /// Output frames per chunk at most.
    max_chunk: usize,
}

impl std::fmt::Debug for RateConverter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateConverter")
            .field("rates", &self.rates)
            .field("channels", &self.channels)
            .field("max_chunk", &self.max_chunk)
            .finish_non_exhaustive()
    }
}

impl RateConverter {
    /// A converter from `rates.ring` to `rates.output` for `channels` ring channels,
    /// preallocated for periods up to `max(max_period, PREALLOCATED_PERIOD)` output frames.
    pub fn new(rates: Rates, channels: usize, max_period: usize) -> Result<Self, AudioError> {
        let unsupported = |what: String| AudioError::Unsupported {
            backend: "convert",
            what,
        };
        if rates.ring == 0 || rates.output == 0 {
            return Err(unsupported(format!(
                "converting {} Hz to {} Hz: a rate of 0",
                rates.ring, rates.output
            )));
        }
        if channels == 0 {
            return Err(unsupported("converting a ring of 0 channels".into()));
        }
        let max_chunk = max_period.max(PREALLOCATED_PERIOD);
        let parameters = SincInterpolationParameters {
            sinc_len: SINC_LEN,
            f_cutoff: None,
            oversampling_factor: OVERSAMPLING,
            interpolation: SincInterpolationType::Linear,
            window: WindowFunction::BlackmanHarris2,
        };
        let ratio = f64::from(rates.output) / f64::from(rates.ring);
        let resampler = Async::<f32>::new_sinc(
            ratio,
            1.0,
            &parameters,
            max_chunk,
            channels,
            FixedAsync::Output,
        )
        .map_err(|e| {
            unsupported(format!(
                "converting {} Hz to {} Hz: {e}",
                rates.ring, rates.output
            ))
        })?;
        let input = vec![0.0; resampler.input_frames_max() * channels];
        let output = vec![0.0; max_chunk * channels];
        Ok(Self {
            resampler,
            rates,
            channels,
            input,
            output,
            chunk: max_chunk,
            max_chunk,
        })
    }

    /// The two rates.
    pub fn rates(&self) -> Rates {
        self.rates
    }

    /// Ring channels per converted frame.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Delay the conversion adds, in output frames.
    pub fn latency_frames(&self) -> usize {
        self.resampler.output_delay()
    }

    /// Read from `reader` what `frames` output frames need, convert, and hand the result to
    /// `sink` in order: `sink(first_frame, samples)` with `samples` interleaved, the ring's
    /// channels per frame, as many calls as chunks (one unless `frames` exceeds the
    /// preallocated period). Frames the resampler could not produce are silence.
    /// Realtime-safe.
    #[inline]
    pub fn convert(
        &mut self,
        reader: &mut RingReader,
        frames: usize,
        mut sink: impl FnMut(usize, &[f32]),
    ) {
        let ch = self.channels;
        let mut done = 0;
        while done < frames {
            let chunk = (frames - done).min(self.max_chunk);
            if chunk != self.chunk {
                // Within 1..=max_chunk, so this cannot fail; if it did, the sizes below
                // still come from the resampler itself.
                let _ = self.resampler.set_chunk_size(chunk);
                self.chunk = chunk;
            }
            let needed = self
                .resampler
                .input_frames_next()
                .min(self.input.len() / ch);
            let input = &mut self.input[..needed * ch];
            reader.read_interleaved(input, ch);
            let produced = match (
                InterleavedSlice::new(&self.input[..], ch, needed),
                InterleavedSlice::new_mut(&mut self.output[..], ch, chunk),
            ) {
                (Ok(input), Ok(mut output)) => self
                    .resampler
                    .process_into_buffer(&input, &mut output, None)
                    .map_or(0, |(_, written)| written.min(chunk)),
                _ => 0,
            };
            self.output[produced * ch..chunk * ch].fill(0.0);
            sink(done, &self.output[..chunk * ch]);
            done += chunk;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::PeriodProcessor;
    use latentd_engine::{PlayheadRing, RingHandle};
    use std::f64::consts::TAU;

    use latentd_tests::fit_sine;

    const RING_RATE: u32 = 48_000;
    /// Odd, changing periods, one longer than the preallocated chunk.
    const PERIODS: [usize; 7] = [127, 333, 1, 1021, 64, 9001, 255];

    /// A processor over a one-second ring at 48 kHz holding `signal(frame)` on both
    /// channels, converting to `output_rate`.
    fn processor(output_rate: u32, signal: impl Fn(usize) -> f32) -> (PeriodProcessor, RingHandle) {
        let frames = RING_RATE as usize;
        let samples = (0..frames).flat_map(|i| [signal(i), signal(i)]).collect();
        let guard = PlayheadRing::guard_for_period(10_000);
        let ring = PlayheadRing::from_interleaved(samples, 2, RING_RATE, guard).unwrap();
        let handle = ring.handle();
        let (_writer, reader) = ring.split();
        let p = PeriodProcessor::new(reader, None)
            .converting_to(output_rate, 256)
            .unwrap();
        (p, handle)
    }

    /// Play `periods` (cycled) until `total` frames, interleaved stereo; every call runs
    /// under `assert_no_alloc` (an allocation aborts the test binary).
    fn play_interleaved(p: &mut PeriodProcessor, total: usize) -> Vec<f32> {
        let mut played = Vec::with_capacity(2 * total);
        let mut buffer = vec![0.0f32; 2 * PERIODS.iter().max().unwrap()];
        for &n in PERIODS.iter().cycle() {
            if played.len() >= 2 * total {
                break;
            }
            let out = &mut buffer[..2 * n];
            out.fill(f32::NAN);
            assert_no_alloc::assert_no_alloc(|| p.process_interleaved(out, 2));
            played.extend_from_slice(out);
        }
        played
    }

    /// Frequency from the rising zero crossings (linearly interpolated) of `x`.
    fn crossing_frequency(x: &[f32], rate: f64) -> f64 {
        let rising: Vec<f64> = x
            .windows(2)
            .enumerate()
            .filter(|(_, w)| w[0] < 0.0 && w[1] >= 0.0)
            .map(|(i, w)| i as f64 + f64::from(w[0] / (w[0] - w[1])))
            .collect();
        let cycles = (rising.len() - 1) as f64;
        cycles * rate / (rising[rising.len() - 1] - rising[0])
    }

    fn sine_keeps_frequency_and_level(output_rate: u32) {
        let (freq, level) = (997.0, 0.5);
        let w = TAU * freq / f64::from(RING_RATE);
        let (mut p, ring) = processor(output_rate, |i| (level * (w * i as f64).sin()) as f32);
        // 997 Hz is not periodic over the 1 s loop; stay within its first lap.
        let total = output_rate as usize * 9 / 10;
        let played = play_interleaved(&mut p, total);
        assert!(
            played.iter().all(|v| v.is_finite()),
            "a frame was left unwritten"
        );
        let left: Vec<f32> = played.iter().step_by(2).copied().collect();
        let right: Vec<f32> = played.iter().skip(1).step_by(2).copied().collect();
        assert_eq!(left, right);
        // Past the filter's start-up, within the first lap.
        let steady = &left[p.conversion_latency_frames() + 64..total];
        let rate = f64::from(output_rate);
        let measured = crossing_frequency(steady, rate);
        assert!(
            (measured - freq).abs() < 0.05,
            "{measured} Hz at {output_rate} Hz"
        );
        let (amplitude, residual) = fit_sine(steady, rate, freq);
        eprintln!(
            "{output_rate} Hz: {measured:.4} Hz, amplitude {amplitude:.5}, residual {residual:.2e}"
        );
        assert!((amplitude - level).abs() < 0.005, "amplitude {amplitude}");
        // Noise and distortion at least 70 dB below the tone.
        assert!(
            residual < level * 10f64.powf(-70.0 / 20.0),
            "residual {residual}"
        );
        // The meters, kept in the same (allocation-free) calls, heard the tone: the last
        // period's peak near the level on both channels, the RMS over every period since
        // the start near level/√2.
        let meters = p.meters();
        for (peak, _) in meters.linear() {
            assert!((f64::from(peak) - level).abs() < 0.02, "peak {peak}");
        }
        let rms = meters
            .totals()
            .rms_since(&Default::default())
            .expect("frames were metered");
        for r in rms {
            assert!((r - level / 2f64.sqrt()).abs() < 0.01, "rms {r}");
        }
        // Exactly the frames asked for, and the ring frames their duration spans.
        let stats = p.stats().snapshot();
        assert_eq!(stats.frames as usize * 2, played.len());
        let ring_frames = ring.counters().frames_played as f64;
        let expected = stats.frames as f64 * f64::from(RING_RATE) / rate;
        assert!(
            (ring_frames - expected).abs() <= 2.0 * SINC_LEN as f64,
            "{ring_frames} vs {expected}"
        );
    }

    #[test]
    fn a_sine_at_48_khz_keeps_its_frequency_and_level_at_44_1_khz() {
        sine_keeps_frequency_and_level(44_100);
    }

    #[test]
    fn a_sine_at_48_khz_keeps_its_frequency_and_level_at_96_khz() {
        sine_keeps_frequency_and_level(96_000);
    }

    #[test]
    fn odd_periods_get_exactly_their_frames_planar_as_interleaved() {
        let signal = |i: usize| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5;
        let (mut a, _) = processor(44_100, signal);
        let (mut b, _) = processor(44_100, signal);
        let mut left = vec![0.0f32; 9001];
        let mut right = vec![0.0f32; 9001];
        let mut inter = vec![0.0f32; 2 * 9001];
        let (mut total, mut longest) = (0u64, 0u64);
        for &n in PERIODS.iter().chain(&PERIODS) {
            left[..n].fill(f32::NAN);
            right[..n].fill(f32::NAN);
            let (l, r) = (&mut left[..n], &mut right[..n]);
            assert_no_alloc::assert_no_alloc(|| a.process_planar(&mut [l, r]));
            b.process_interleaved(&mut inter[..2 * n], 2);
            for i in 0..n {
                assert!(
                    left[i].is_finite() && right[i].is_finite(),
                    "frame {i} of {n}"
                );
                assert_eq!((left[i], right[i]), (inter[2 * i], inter[2 * i + 1]));
            }
            // Planar (metered under assert_no_alloc) and interleaved meter the same.
            assert_eq!(a.meters().linear(), b.meters().linear());
            total += n as u64;
            longest = longest.max(n as u64);
            assert_eq!(a.stats().snapshot().frames, total);
            assert_eq!(a.stats().snapshot().max_period_frames, longest);
        }
    }

    #[test]
    fn a_click_comes_out_where_the_ratio_and_the_reported_latency_say() {
        let at = 4_800;
        let (mut p, _) = processor(44_100, |i| if i == at { 1.0 } else { 0.0 });
        let latency = p.conversion_latency_frames();
        assert!(latency > 0 && latency < SINC_LEN, "latency {latency}");
        let played = play_interleaved(&mut p, 8_000);
        let peak = played
            .iter()
            .step_by(2)
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        let expected = at * 44_100 / 48_000 + latency;
        assert!(
            peak.abs_diff(expected) <= 1,
            "peak at {peak}, expected {expected}"
        );
    }

    #[test]
    fn equal_rates_play_the_ring_untouched_and_ring_periods_follow_the_ratio() {
        let (p, _) = processor(RING_RATE, |i| i as f32);
        assert!(!p.rates().converts());
        assert_eq!(p.conversion_latency_frames(), 0);
        let rates = Rates {
            ring: 48_000,
            output: 44_100,
        };
        assert_eq!(rates.ring_frames_per_period(441), 482);
        assert_eq!(rates.ring_frames_per_period(1), 4);
        let same = Rates {
            ring: 48_000,
            output: 48_000,
        };
        assert_eq!(same.ring_frames_per_period(256), 256);
        assert!(
            RateConverter::new(
                Rates {
                    ring: 48_000,
                    output: 0
                },
                2,
                64
            )
            .is_err()
        );
    }
}
