//! [`ProcessorSlot`]: the one [`PeriodProcessor`] of a playing daemon, kept where every
//! incarnation of an output can reach it, so that losing an output (its server went away)
//! never loses the processor, its ring reader, record tap or counters.
//!
//! Threading: the slot is shared (`Arc`) by the thread that starts and restarts outputs and
//! by whichever realtime callback runs now. The callback borrows the processor for one
//! period through a [`TryCell`] (one atomic compare-exchange, one store; it never waits;
//! loom checks the protocol in the engine crate): if the processor is busy, which only
//! happens when a dying output's callback overlaps the next output's, the period is played
//! as silence (an input period, see [`ProcessorSlot::queue_input_interleaved`], is lost and
//! counted). Nothing else touches the processor; the other threads only read the shared
//! handles (stats, fade, ring, callback thread) taken at creation.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use latentd_engine::{PlayheadRing, RingHandle, TryCell};

use super::{CallbackThread, FadeOut, Meters, OutputStats, PeriodProcessor, Rates};

/// A [`PeriodProcessor`] that outlives the outputs playing it.
pub struct ProcessorSlot {
    /// Borrowed by one callback at a time, through [`ProcessorSlot::with`].
    processor: TryCell<PeriodProcessor>,
    stats: Arc<OutputStats>,
    meters: Arc<Meters>,
    fade: Arc<FadeOut>,
    thread: Arc<CallbackThread>,
    ring: RingHandle,
    rates: Rates,
    input: Option<Arc<super::input::InputShared>>,
}

impl ProcessorSlot {
    /// Put `processor` in a new shared slot.
    pub fn new(processor: PeriodProcessor) -> Arc<Self> {
        Arc::new(Self {
            stats: processor.stats(),
            meters: processor.meters(),
            fade: processor.fade(),
            thread: processor.callback_thread(),
            ring: processor.ring_handle(),
            rates: processor.rates(),
            input: processor.input_shared(),
            processor: TryCell::new(processor),
        })
    }

    /// Run `f` on the processor unless another callback holds it (then `None`).
    /// Realtime-safe: never waits.
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(&mut PeriodProcessor) -> R) -> Option<R> {
        self.processor.with(f)
    }

    /// One period into planar outputs, or silence if the processor is busy. Realtime-safe.
    #[inline]
    pub fn process_planar(&self, outputs: &mut [&mut [f32]]) {
        if self.with(|p| p.process_planar(outputs)).is_none() {
            outputs.iter_mut().for_each(|o| o.fill(0.0));
        }
    }

    /// One period from input ports into planar outputs ([`PeriodProcessor::process_duplex`]),
    /// or silence (and no input queued) if the processor is busy. Realtime-safe.
    #[inline]
    pub fn process_duplex(&self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) {
        if self.with(|p| p.process_duplex(inputs, outputs)).is_none() {
            outputs.iter_mut().for_each(|o| o.fill(0.0));
        }
    }

    /// One period into an interleaved buffer, or silence if the processor is busy.
    /// Realtime-safe.
    #[inline]
    pub fn process_interleaved(&self, out: &mut [f32], channels: usize) {
        if self
            .with(|p| p.process_interleaved(out, channels))
            .is_none()
        {
            out.fill(0.0);
        }
    }

    /// One period of an input stream's interleaved samples into the processor's input
    /// tap, if it has one ([`PeriodProcessor::queue_input_interleaved`]); for a backend
    /// whose input has a callback of its own (PipeWire). If the processor is busy the
    /// period is lost, counted as an overrun while a capture is armed. Realtime-safe.
    #[inline]
    pub fn queue_input_interleaved(&self, samples: &[f32], channels: usize) {
        if self
            .with(|p| p.queue_input_interleaved(samples, channels))
            .is_none()
            && let Some(input) = &self.input
            && input.armed.load(Ordering::Relaxed)
        {
            let frames = samples.len() / channels.max(1);
            input.overruns.fetch_add(frames as u64, Ordering::Relaxed);
        }
    }

    /// The processor's counters.
    pub fn stats(&self) -> Arc<OutputStats> {
        Arc::clone(&self.stats)
    }

    /// The processor's meters.
    pub fn meters(&self) -> Arc<Meters> {
        Arc::clone(&self.meters)
    }

    /// The processor's fade-out control.
    pub fn fade(&self) -> Arc<FadeOut> {
        Arc::clone(&self.fade)
    }

    /// Where the processor's callback leaves its thread for the realtime check.
    pub fn callback_thread(&self) -> Arc<CallbackThread> {
        Arc::clone(&self.thread)
    }

    /// A handle on the ring the processor plays.
    pub fn ring_handle(&self) -> RingHandle {
        self.ring.clone()
    }

    /// The ring's rate and the output rate the processor plays at (fixed at creation: an
    /// output at another rate cannot play this slot).
    pub fn rates(&self) -> Rates {
        self.rates
    }

    /// The live input's shared state (latencies, port count, overruns), when the processor
    /// has an input tap.
    pub fn input(&self) -> Option<Arc<super::input::InputShared>> {
        self.input.clone()
    }

    /// The guard the ring needs behind an output period of `output_frames` (counted in the
    /// ring frames that period reads).
    pub fn guard_for_output_period(&self, output_frames: usize) -> usize {
        PlayheadRing::guard_for_period(self.rates.ring_frames_per_period(output_frames))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_slot_plays_silence_and_a_free_one_the_ring() {
        let ring = PlayheadRing::from_interleaved(vec![0.5; 2 * 4096], 2, 48_000, 64).unwrap();
        let (_w, reader) = ring.split();
        let slot = ProcessorSlot::new(PeriodProcessor::new(reader, None));
        let mut out = vec![1.0f32; 2 * 64];
        // A callback that holds the processor while another one runs.
        slot.with(|_| slot.process_interleaved(&mut out, 2))
            .unwrap();
        assert!(out.iter().all(|&v| v == 0.0), "a busy slot must be silent");
        assert_eq!(slot.stats().snapshot().callbacks, 0);
        slot.process_interleaved(&mut out, 2);
        assert!(out.iter().all(|&v| v == 0.5));
        assert_eq!(slot.stats().snapshot().callbacks, 1);
        assert_eq!(slot.ring_handle().counters().frames_played, 64);
    }
}
