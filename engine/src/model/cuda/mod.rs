//! The CUDA backend of the built-in model: the same math as [`super::builtin`], with latents,
//! the conditioning target and curves on the device, the batched denoise step and the decoder
//! as NVRTC-compiled kernels on one stream.
//!
//! - [`KERNEL_SOURCE`] (`kernels.cuh`) holds every kernel. It compiles as CUDA C (NVRTC, at
//!   model construction) and as plain C99: the parity test (`c_parity`) builds it with the
//!   system C compiler and runs it on the CPU against the Rust built-in model, so the kernel
//!   math is checked on every CI run without a GPU (the launch configuration is not).
//! - Noise: the device computes the same counter-based ChaCha8 draws as [`crate::rng`] (the
//!   generator is ported, not pre-generated on the host: a tick uploads no noise, and the
//!   draws are the CPU's words exactly; only the Box–Muller `logf`/`sinf`/`cosf` may differ
//!   by an ulp on the GPU).
//! - [`DecoderTables`]: the decoder's lookup tables, computed on the host once, uploaded once.
//! - [`SlotStepRecord`]: one slot's per-tick values, as the denoise kernel reads them.
//! - `device` (feature `cuda`): `CudaModel`.
//! - `host_sync`: the counts of driver calls that may block the host, by the phase (tick,
//!   decode, other) they are made in (plain Rust, tested without a device).
//! - [`failover`]: a model that runs a device backend and falls back to the built-in CPU
//!   model when the device fails, and the named mock device that tests it.
//!
//! Threading: as [`super::Model`]: `Send + Sync`; the device state sits behind uncontended
//! mutexes (the engine thread is their only user; the encoder thread runs on the CPU).

#[cfg(feature = "cuda")]
mod device;
pub mod failover;
#[cfg(any(feature = "cuda", test))]
mod host_sync;

#[cfg(test)]
mod c_parity;
#[cfg(all(test, feature = "cuda"))]
mod gpu_tests;

#[cfg(feature = "cuda")]
pub use device::{CudaCurve, CudaLatents, CudaModel, cuda_available};
#[cfg(feature = "cuda")]
pub use host_sync::HostSyncCounts;

use super::builtin::layout::band_of;

/// The kernels (CUDA C that also compiles as C99; see the module doc).
pub const KERNEL_SOURCE: &str = include_str!("kernels.cuh");

/// Kernel entry points, in the order the backend loads them.
pub const KERNEL_NAMES: [&str; 7] = [
    "ld_gaussian_fill",
    "ld_start_slot",
    "ld_denoise_batch",
    "ld_envelope_spectrum",
    "ld_envelope_grains",
    "ld_voice_phases",
    "ld_mix_window",
];

/// One slot's step as the denoise kernel reads it (`ld_slot_step` in `kernels.cuh`, 56 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SlotStepRecord {
    /// Device address of the slot's latent.
    pub x: u64,
    /// Device address of the conditioning target for the slot's seed.
    pub target: u64,
    /// Current noise level.
    pub t_curr: f32,
    /// Noise level after the step.
    pub t_next: f32,
    /// The slot's schedule start.
    pub t_start: f32,
    /// Source-lock weight (0 without a source).
    pub x0_lock: f32,
    /// 1 for SDE, 0 for Euler.
    pub sde: u32,
    /// Noise key: seed.
    pub seed: u32,
    /// Noise key: walk window.
    pub window: u32,
    /// Noise key: step.
    pub step: u32,
    /// 0 when the slot is left alone (`t_curr <= 0`).
    pub active: u32,
    /// Padding to 56 bytes.
    pub pad: u32,
}

/// The decoder's lookup tables (host side; the same values the CPU decoder uses).
pub struct DecoderTables {
    /// Grain length (2 hops).
    pub n: usize,
    /// Band of each bin `0..=n/2` (255 outside 40 Hz .. 20 kHz).
    pub bin_band: Vec<u8>,
    /// `sin(2 pi i / 1024)`.
    pub phase_sin: Vec<f32>,
    /// `cos(2 pi i / 1024)`.
    pub phase_cos: Vec<f32>,
    /// `cos(2 pi m / n)`, `m < n` (computed in f64).
    pub twiddle_cos: Vec<f32>,
    /// `sin(2 pi m / n)`, `m < n` (computed in f64).
    pub twiddle_sin: Vec<f32>,
    /// The sqrt-Hann grain window.
    pub window: Vec<f32>,
}

impl DecoderTables {
    /// Tables for `sample_rate` and `frame_rate` (grain = two hops).
    pub fn new(sample_rate: u32, frame_rate: u32) -> Self {
        let hop = (sample_rate / frame_rate) as usize;
        let n = 2 * hop;
        let bin_hz = sample_rate as f32 / n as f32;
        let phases = 1024usize;
        let (phase_sin, phase_cos) = (0..phases)
            .map(|i| (std::f32::consts::TAU * i as f32 / phases as f32).sin_cos())
            .unzip();
        let (twiddle_sin, twiddle_cos) = (0..n)
            .map(|m| {
                let (s, c) = (std::f64::consts::TAU * m as f64 / n as f64).sin_cos();
                (s as f32, c as f32)
            })
            .unzip();
        Self {
            n,
            bin_band: (0..=n / 2)
                .map(|k| band_of(k as f32 * bin_hz).map_or(u8::MAX, |b| b as u8))
                .collect(),
            phase_sin,
            phase_cos,
            twiddle_cos,
            twiddle_sin,
            window: (0..n)
                .map(|i| (std::f32::consts::PI * (i as f32 + 0.5) / n as f32).sin())
                .collect(),
        }
    }
}
