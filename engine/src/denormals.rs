//! Flush-to-zero (FTZ) and denormals-are-zero (DAZ) around realtime DSP.
//!
//! A subnormal float (below about 1.2e-38 for `f32`) costs up to a hundred times a normal
//! one on x86, and decaying audio (a fade's tail, a filter ringing out) produces them.
//! [`flush_denormals`] runs a closure with the CPU flushing them to zero, then restores the
//! flags as it found them: on x86 and x86_64 the FTZ and DAZ bits of MXCSR, on aarch64 the
//! FZ bit of FPCR (with FZ16 where the CPU has half precision). The crate `no_denormals`
//! does the register work; on other architectures the closure just runs.
//!
//! Who calls it: the audio callback wrapper (`latentd::audio`), once per period, because
//! the audio server owns that thread and must get it back as it was; and
//! [`EngineCore::tick`](crate::runner::engine_core::EngineCore::tick), once per tick, so
//! the engine's DSP runs the same way on the engine thread and in the simulated harness
//! (the same inputs give the same bits wherever a tick runs).
//!
//! Cost: two register reads and two writes, no allocation, lock or syscall; realtime-safe.
//!
//! Threading: the flags belong to the calling thread; nothing is shared.

/// Runs `f` with subnormal floats flushed to zero (inputs and results), then restores the
/// calling thread's floating-point flags. See the module doc.
#[inline]
pub fn flush_denormals<T>(f: impl FnOnce() -> T) -> T {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64"))]
    {
        // SAFETY: Rust documents changing the FP environment as undefined behaviour because
        // code compiled for the default environment may have been constant-folded under it:
        // a subnormal that the compiler folded survives where the CPU would have flushed it.
        // The code run here is plain `f32` / `f64` arithmetic on audio, for which a result
        // flushed or not flushed are both acceptable; nothing in it relies on subnormals,
        // on the rounding mode (left unchanged) or on FP exceptions (masks unchanged), and
        // the previous flags are restored before returning (also on unwind), so callers
        // outside `f` see the environment they had. The compiler does not order register-only
        // arithmetic against the flag writes; the work in `f` loads from and stores to
        // memory it cannot see through (the ring, the ports, the model's buffers), which
        // the flag writes are ordered against, so that work happens inside.
        unsafe { no_denormals::no_denormals(f) }
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
    {
        f()
    }
}

/// Whether the calling thread flushes subnormals now, read from the control register
/// (x86: MXCSR's FTZ and DAZ bits both set; aarch64: FPCR's FZ bit); `false` elsewhere.
/// For tests and diagnostics; realtime-safe.
///
/// (Asking the arithmetic instead, e.g. whether half the smallest normal is zero, does not
/// work: the compiler rewrites such comparisons assuming the default environment.)
#[inline]
pub fn flushing() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);
        let mut mxcsr: u32 = 0;
        // SAFETY: `stmxcsr` only stores MXCSR into the 4 bytes `mxcsr` provides.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut mxcsr, options(nostack, preserves_flags));
        }
        mxcsr & FTZ_DAZ == FTZ_DAZ
    }
    #[cfg(target_arch = "aarch64")]
    {
        const FZ: u64 = 1 << 24;
        let fpcr: u64;
        // SAFETY: reading FPCR has no side effect.
        unsafe {
            std::arch::asm!(
                "mrs {}, fpcr",
                out(reg) fpcr,
                options(nomem, nostack, preserves_flags)
            );
        }
        fpcr & FZ == FZ
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnormals_are_flushed_inside_and_the_flags_restored_after() {
        assert!(!flushing(), "the default environment does not flush");
        #[cfg(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64"))]
        {
            assert!(flush_denormals(flushing));
            assert!(!flushing(), "flags restored");
            // Nested use restores the outer state, not the default.
            assert!(flush_denormals(|| {
                flush_denormals(|| ());
                flushing()
            }));
            // A panic inside still restores the flags.
            let caught = std::panic::catch_unwind(|| flush_denormals(|| panic!("in the DSP")));
            assert!(caught.is_err());
            assert!(!flushing(), "flags restored after a panic");
            // And the arithmetic follows: a subnormal product written to a buffer the
            // compiler cannot see through (as the callback's ports are) is zero.
            let mut samples = [f32::MIN_POSITIVE; 4];
            flush_denormals(|| {
                let gain = std::hint::black_box(0.25f32);
                for s in std::hint::black_box(&mut samples).iter_mut() {
                    *s *= gain;
                }
            });
            assert_eq!(std::hint::black_box(samples).map(f32::to_bits), [0; 4]);
        }
    }
}
