//! Counter-based random numbers for the sampler: every draw is a pure function of
//! (seed, window, step, draw index), so a run can be replayed bit for bit whatever the order in
//! which slots are ticked, and a slot run alone draws exactly what it drew in the stream.
//!
//! Construction: ChaCha8 (the `chacha20` crate's `ChaCha8Rng`, RustCrypto) with
//! - key = the 32-bit seed, little endian, in bytes 0..4, then the ASCII tag `latentd-noise`
//!   in bytes 4..17, zeros after (a domain separator, fixed forever);
//! - stream (64-bit nonce) = `window << 32 | step`;
//! - word position = `2 * (draw_index / 2)`, i.e. draws come in Box–Muller pairs.
//!
//! `window` is the walk window the slot generates (0 when the loop is one window, chunk `k`
//! or the band window otherwise, see [`crate::runner::walk`]). It is not the slot's serial:
//! every slot of one window and seed starts from the same noise, so slots that run with the
//! same values agree, and the stretches of the loop they each write join into one take
//! instead of a patchwork of independent samples. `step` is [`INIT_STEP`] for the starting
//! noise of a slot and `k + 1` for the noise injected by the step that moves the slot from
//! schedule point `k` to `k + 1`.
//!
//! Gaussian transform (fixed, documented, in `f32`): words `w0, w1` at positions `2j, 2j+1`
//! give `u1 = (w0 >> 8) as f32 * 2^-24 + 2^-25` (in (0, 1), never 0), `u2 = (w1 >> 8) as f32 *
//! 2^-24`, `r = sqrt(-2 ln u1)`, `theta = 2 pi u2`; draw `2j` is `r cos theta`, draw `2j+1` is
//! `r sin theta`. Draw index `i` of a latent is its element index in frame-major order
//! (`frame * channels + channel`).
//!
//! Threading: [`NoiseKey`] is plain data; [`fill_gaussian`] is pure and allocation-free.

use chacha20::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

/// The `step` value used for the noise a slot starts from.
pub const INIT_STEP: u32 = 0;

/// Which noise stream a draw comes from: (seed, walk window, step).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NoiseKey {
    /// The stream seed (the `seed` knob when the slot started).
    pub seed: u32,
    /// The walk window the slot generates (0 for a loop of one window).
    pub window: u32,
    /// [`INIT_STEP`] for the start noise, `k + 1` for step `k`'s injected noise.
    pub step: u32,
}

impl NoiseKey {
    /// The key for step `step` of the same slot.
    pub fn at_step(self, step: u32) -> Self {
        Self { step, ..self }
    }

    fn generator(self) -> ChaCha8Rng {
        const TAG: &[u8] = b"latentd-noise";
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(&self.seed.to_le_bytes());
        key[4..4 + TAG.len()].copy_from_slice(TAG);
        let mut rng = ChaCha8Rng::from_seed(key);
        rng.set_stream((u64::from(self.window) << 32) | u64::from(self.step));
        rng
    }
}

#[inline]
fn box_muller(w0: u32, w1: u32) -> (f32, f32) {
    const SCALE: f32 = 1.0 / (1u32 << 24) as f32;
    let u1 = (w0 >> 8) as f32 * SCALE + SCALE * 0.5;
    let u2 = (w1 >> 8) as f32 * SCALE;
    let r = (-2.0 * u1.ln()).sqrt();
    let (s, c) = (std::f32::consts::TAU * u2).sin_cos();
    (r * c, r * s)
}

/// Fills `out[i]` with Gaussian draw `first_draw + i` of the stream `key`.
///
/// `first_draw` must be even (draws come in pairs); the result for a given draw index does not
/// depend on how the range is split into calls.
pub fn fill_gaussian(key: NoiseKey, first_draw: u64, out: &mut [f32]) {
    assert!(first_draw.is_multiple_of(2), "first_draw must be even");
    let mut rng = key.generator();
    rng.set_word_pos(u128::from(first_draw));
    let mut pairs = out.chunks_exact_mut(2);
    for pair in &mut pairs {
        let (a, b) = box_muller(rng.next_u32(), rng.next_u32());
        pair[0] = a;
        pair[1] = b;
    }
    if let [last] = pairs.into_remainder() {
        *last = box_muller(rng.next_u32(), rng.next_u32()).0;
    }
}

/// Gaussian draw `index` of the stream `key` on its own (slow: for tests and spot checks).
pub fn gaussian_at(key: NoiseKey, index: u64) -> f32 {
    let mut pair = [0.0f32; 2];
    fill_gaussian(key, index & !1, &mut pair);
    pair[(index & 1) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: NoiseKey = NoiseKey {
        seed: 7,
        window: 3,
        step: 2,
    };

    #[test]
    fn draws_are_a_function_of_the_counter_not_the_call_split() {
        let mut whole = vec![0.0f32; 1000];
        fill_gaussian(KEY, 0, &mut whole);
        let mut parts = vec![0.0f32; 1000];
        fill_gaussian(KEY, 0, &mut parts[..250]);
        fill_gaussian(KEY, 250, &mut []); // an empty range is allowed
        fill_gaussian(KEY, 250 & !1, &mut parts[250..]);
        assert_eq!(whole, parts);
        assert_eq!(gaussian_at(KEY, 777).to_bits(), whole[777].to_bits());
    }

    #[test]
    fn every_key_component_changes_the_stream() {
        let base = gaussian_at(KEY, 10);
        for other in [
            NoiseKey { seed: 8, ..KEY },
            NoiseKey { window: 4, ..KEY },
            KEY.at_step(3),
        ] {
            assert_ne!(
                gaussian_at(other, 10).to_bits(),
                base.to_bits(),
                "{other:?}"
            );
        }
    }

    #[test]
    fn draws_look_standard_normal() {
        let mut v = vec![0.0f32; 200_000];
        fill_gaussian(KEY, 0, &mut v);
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = v
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "variance {var}");
        assert!(v.iter().all(|x| x.is_finite()));
    }
}
