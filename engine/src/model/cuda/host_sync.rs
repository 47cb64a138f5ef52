//! Counting the driver calls that may block the host, by the phase of the model's work they
//! happen in: the tick (the batched denoise, slot starts, curve and target uploads), the
//! decode of a window, or anything else (construction, encodes, host copies of latents).
//!
//! The CUDA backend makes every call that may block (synchronizes, waits on events, pinned
//! host allocations and frees, device allocations and frees that are not stream-ordered,
//! copies from or to pageable memory, module loads) through [`HostSyncs::blocking`] or
//! [`HostSyncs::blocking_if`], and the tick's and the decode's entry points say where they
//! are with a [`PhaseGuard`]; any other call is charged to the phase its caller is in. So a
//! blocking call that finds its way into the tick shows up in [`HostSyncCounts::tick`],
//! which the GPU test holds still across ticks after warm-up. Nothing here touches the
//! driver: the attribution is tested without a device.
//!
//! # Threading
//!
//! The counts are atomics, shared by every thread that uses the model (relaxed: they are
//! statistics). The phase is per thread (a thread-local set by [`PhaseGuard`]), so the
//! encoder thread's upload is charged to `other` even while the engine thread is in a tick.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

/// Calls that may block the host, by where they happen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostSyncCounts {
    /// In the tick (`denoise_batch`, `start_slot`, curve and target uploads): staging
    /// buffers that had to wait for their previous copy, and any allocation, free or copy
    /// that blocks (none once the tick's buffers exist, on a device with stream-ordered
    /// allocation).
    pub tick: u64,
    /// In decodes: the one wait for the window's audio, per window (and the first
    /// allocation of its buffers).
    pub decode: u64,
    /// Outside a tick or a decode (construction, encodes, host copies of latents).
    pub other: u64,
}

/// What a blocking call is charged to (see [`HostSyncCounts`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// The tick: `denoise_batch`, `start_slot`, `upload_curve`.
    Tick,
    /// A window's decode.
    Decode,
    /// Everything else (the default of every thread).
    Other,
}

thread_local! {
    /// This thread's phase ([`PhaseGuard`] sets it).
    static PHASE: Cell<Phase> = const { Cell::new(Phase::Other) };
}

/// This thread is in `phase` until the guard drops; then it is back in the phase it was in
/// before (guards nest: a tick that decodes charges the decode's calls to `Decode`).
#[must_use = "the phase ends when the guard drops"]
pub(crate) struct PhaseGuard {
    previous: Phase,
    /// The phase is this thread's: the guard stays on it.
    _not_send: PhantomData<*const ()>,
}

impl PhaseGuard {
    /// Enters `phase` on this thread.
    pub(crate) fn enter(phase: Phase) -> Self {
        Self {
            previous: PHASE.with(|p| p.replace(phase)),
            _not_send: PhantomData,
        }
    }
}

impl Drop for PhaseGuard {
    fn drop(&mut self) {
        PHASE.with(|p| p.set(self.previous));
    }
}

/// Counts of blocking calls, by phase; the one way the backend makes such a call.
#[derive(Debug, Default)]
pub(crate) struct HostSyncs {
    tick: AtomicU64,
    decode: AtomicU64,
    other: AtomicU64,
}

impl HostSyncs {
    /// Makes `call`, a driver call that may block the host, and charges it to this thread's
    /// phase (charged even when the call fails).
    #[inline]
    pub(crate) fn blocking<R>(&self, call: impl FnOnce() -> R) -> R {
        let counter = match PHASE.with(Cell::get) {
            Phase::Tick => &self.tick,
            Phase::Decode => &self.decode,
            Phase::Other => &self.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        call()
    }

    /// Makes `call`, charged as [`HostSyncs::blocking`] when `blocks` (a call that blocks only
    /// on some devices: allocations and frees where the device has no stream-ordered
    /// allocator), plainly otherwise.
    #[inline]
    pub(crate) fn blocking_if<R>(&self, blocks: bool, call: impl FnOnce() -> R) -> R {
        if blocks { self.blocking(call) } else { call() }
    }

    /// The counts so far.
    pub(crate) fn counts(&self) -> HostSyncCounts {
        HostSyncCounts {
            tick: self.tick.load(Ordering::Relaxed),
            decode: self.decode.load(Ordering::Relaxed),
            other: self.other.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn counts(tick: u64, decode: u64, other: u64) -> HostSyncCounts {
        HostSyncCounts {
            tick,
            decode,
            other,
        }
    }

    #[test]
    fn a_call_is_charged_to_the_phase_it_is_made_in() {
        let syncs = HostSyncs::default();
        syncs.blocking(|| ());
        {
            let _tick = PhaseGuard::enter(Phase::Tick);
            assert_eq!(syncs.blocking(|| 7), 7);
            {
                let _decode = PhaseGuard::enter(Phase::Decode);
                syncs.blocking(|| ());
            }
            // Back in the tick once the inner guard drops.
            syncs.blocking(|| ());
        }
        syncs.blocking(|| ());
        assert_eq!(syncs.counts(), counts(2, 1, 2));
    }

    #[test]
    fn a_call_that_does_not_block_here_is_not_charged() {
        let syncs = HostSyncs::default();
        let _tick = PhaseGuard::enter(Phase::Tick);
        syncs.blocking_if(false, || ());
        assert_eq!(syncs.counts(), HostSyncCounts::default());
        syncs.blocking_if(true, || ());
        assert_eq!(syncs.counts(), counts(1, 0, 0));
    }

    #[test]
    fn the_phase_is_the_calling_threads() {
        let syncs = Arc::new(HostSyncs::default());
        let _tick = PhaseGuard::enter(Phase::Tick);
        // Another thread (the encoder's upload) is in its own phase: `other`.
        let other = Arc::clone(&syncs);
        std::thread::spawn(move || other.blocking(|| ()))
            .join()
            .unwrap();
        syncs.blocking(|| ());
        assert_eq!(syncs.counts(), counts(1, 0, 1));
    }

    #[test]
    fn a_phase_ends_when_its_work_unwinds() {
        let syncs = HostSyncs::default();
        let caught = std::panic::catch_unwind(|| {
            let _decode = PhaseGuard::enter(Phase::Decode);
            panic!("decode failed");
        });
        assert!(caught.is_err());
        syncs.blocking(|| ());
        assert_eq!(syncs.counts(), counts(0, 0, 1));
    }
}
