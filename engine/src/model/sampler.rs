//! The flow-matching sampler on the host, written once for every backend that only predicts
//! velocity (the ONNX bundles): slot start ([`start_slot`]), classifier-free guidance
//! ([`combine_cfg`]) and the Euler / SDE update with source lock ([`flow_update`]).
//!
//! The formulas are the ones documented on [`crate::model`] and [`SlotStart`], with the same
//! expression order as the built-in model so that a backend moved onto this seam keeps its
//! rounding: with `x0_pred = x_t - t * v` blended toward the source by `x0_lock`,
//! - ODE: `x = r * x + (1 - r) * x0_pred`, `r = t_next / t_curr` (the Euler step
//!   `x += (t_next - t_curr) * v` written with the locked `x0_pred`);
//! - SDE: `n` = draw `i` of the step's [`NoiseKey`] (element `i` in frame-major order),
//!   `x_full = t_next * n + (1 - t_next) * x0_pred`; with a source,
//!   `x_src = t_next * n + (1 - t_next) * source` and `x = sdc * x_full + (1 - sdc) * x_src`,
//!   `sdc` the SDE curve at the element's frame (0 with no curve); without one, `x = x_full`.
//!
//! A step with `t_curr <= 0` leaves `x` unchanged. A source or feedback latent whose length
//! differs from the slot's is ignored, as in the built-in model.
//!
//! Threading: pure functions over caller-owned slices; nothing allocates (the SDE noise goes
//! into a scratch slice the caller preallocates).

use super::{SlotStart, SlotStep};
use crate::rng::{NoiseKey, fill_gaussian};

/// One slot's step, without its latent: the scalars of a [`SlotStep`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FlowStep {
    /// Current noise level.
    pub t_curr: f32,
    /// Noise level after the step.
    pub t_next: f32,
    /// SDE (true) or ODE Euler (false).
    pub sde: bool,
    /// Source-lock weight (applies only where there is a source).
    pub x0_lock: f32,
    /// The noise stream of the step's SDE draws.
    pub noise: NoiseKey,
}

impl FlowStep {
    /// The scalars of `step`.
    pub fn of<L>(step: &SlotStep<'_, L>) -> Self {
        Self {
            t_curr: step.t_curr,
            t_next: step.t_next,
            sde: step.sde,
            x0_lock: step.x0_lock,
            noise: step.noise,
        }
    }
}

/// Makes a slot's starting latent into `out` (its length is the slot's `frames * channels`)
/// by the [`SlotStart`] rule: noise from `noise` (draw `i` = element `i`), moved toward
/// `base` = `source + w * (feedback - source)` (the feedback latent alone without a source)
/// as `x = t_start * noise + (1 - t_start) * base` when there is a base and `t_start < 1`.
pub fn start_slot(
    out: &mut [f32],
    source: Option<&[f32]>,
    feedback: Option<(&[f32], f32)>,
    t_start: f32,
    noise: NoiseKey,
) {
    fill_gaussian(noise, 0, out);
    let n = out.len();
    let source = source.filter(|s| s.len() == n);
    let feedback = feedback.filter(|(p, _)| p.len() == n);
    if t_start >= 1.0 {
        return;
    }
    let t = t_start;
    match (source, feedback) {
        (Some(s), Some((p, w))) => {
            for ((x, s), p) in out.iter_mut().zip(s).zip(p) {
                let b = s + w * (p - s);
                *x = t * *x + (1.0 - t) * b;
            }
        }
        (Some(b), None) | (None, Some((b, _))) => {
            for (x, b) in out.iter_mut().zip(b) {
                *x = t * *x + (1.0 - t) * b;
            }
        }
        (None, None) => {}
    }
}

/// Combines a conditional and an unconditional velocity into `cond` (in place):
/// `v = v_uncond + g * (v_cond - v_uncond)`; then, with `rescale = phi > 0`, the guidance
/// norm rescale: `v = phi * v * (std(v_cond) / std(v)) + (1 - phi) * v`, the standard
/// deviations taken over the slot's whole latent (so a slot's result does not depend on its
/// batch). `guidance = 1` and `rescale = 0` leave `cond` as it is.
pub fn combine_cfg(cond: &mut [f32], uncond: &[f32], guidance: f32, rescale: f32) {
    debug_assert_eq!(cond.len(), uncond.len());
    if guidance == 1.0 {
        return; // v_cfg = v_cond exactly, and the rescale of v_cond by itself is 1.
    }
    let std_cond = if rescale > 0.0 { std_dev(cond) } else { 0.0 };
    for (c, u) in cond.iter_mut().zip(uncond) {
        *c = u + guidance * (*c - u);
    }
    if rescale > 0.0 {
        let std_cfg = std_dev(cond);
        if std_cfg > 0.0 {
            let k = (std_cond / std_cfg) as f32;
            for c in cond.iter_mut() {
                *c = rescale * (*c * k) + (1.0 - rescale) * *c;
            }
        }
    }
}

/// Population standard deviation, accumulated in `f64`.
fn std_dev(v: &[f32]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let var = v
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / n;
    var.sqrt()
}

/// Advances one slot's latent `x` (`[frames, channels]`, frame-major) by one step from its
/// predicted velocity `v` (same layout), by the rule in the module doc. `noise` is scratch of
/// at least `x.len()` values, written only by SDE steps. `sde_curve` holds one value per
/// frame (frames past its end use its last value).
pub fn flow_update(
    x: &mut [f32],
    v: &[f32],
    channels: usize,
    step: &FlowStep,
    source: Option<&[f32]>,
    sde_curve: Option<&[f32]>,
    noise: &mut [f32],
) {
    debug_assert_eq!(x.len(), v.len());
    let (t, tn) = (step.t_curr, step.t_next);
    if t <= 0.0 {
        return;
    }
    let source = source.filter(|s| s.len() == x.len());
    let lock = if source.is_some() { step.x0_lock } else { 0.0 };
    let channels = channels.max(1);
    if step.sde {
        let noise = &mut noise[..x.len()];
        fill_gaussian(step.noise, 0, noise);
        let curve = sde_curve.filter(|c| !c.is_empty());
        for (i, ((x, v), n)) in x.iter_mut().zip(v).zip(noise.iter()).enumerate() {
            let mut x0 = *x - t * v;
            *x = match source {
                Some(src) => {
                    x0 += lock * (src[i] - x0);
                    let full = tn * n + (1.0 - tn) * x0;
                    let sdc = curve.map_or(0.0, |c| c[(i / channels).min(c.len() - 1)]);
                    let from_src = tn * n + (1.0 - tn) * src[i];
                    sdc * full + (1.0 - sdc) * from_src
                }
                None => tn * n + (1.0 - tn) * x0,
            };
        }
    } else {
        let r = tn / t;
        for (i, (x, v)) in x.iter_mut().zip(v).enumerate() {
            let mut x0 = *x - t * v;
            if let Some(src) = source {
                x0 += lock * (src[i] - x0);
            }
            *x = r * *x + (1.0 - r) * x0;
        }
    }
}

/// The [`SlotStart`] rule for host latents: [`start_slot`] into a new vector of
/// `start.frames * channels` values (called when a slot starts, not per step).
pub fn start_slot_host<L>(
    start: &SlotStart<'_, L>,
    channels: usize,
    host: impl Fn(&L) -> &[f32],
) -> Vec<f32> {
    let mut out = vec![0.0f32; start.frames * channels];
    start_slot(
        &mut out,
        start.source.map(&host),
        start.feedback.map(|(p, w)| (host(p), w)),
        start.t_start,
        start.noise,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::gaussian_at;

    const KEY: NoiseKey = NoiseKey {
        seed: 11,
        window: 2,
        step: 3,
    };

    fn ode(t: f32, tn: f32, lock: f32) -> FlowStep {
        FlowStep {
            t_curr: t,
            t_next: tn,
            sde: false,
            x0_lock: lock,
            noise: KEY,
        }
    }

    #[test]
    fn ode_step_is_euler_on_the_velocity() {
        // x = 1, v = 2, t 0.5 -> 0.25: x0 = 1 - 0.5*2 = 0; r = 0.5; x = 0.5*1 + 0.5*0 = 0.5,
        // which is x + (tn - t) * v = 1 - 0.25 * 2 = 0.5.
        let mut x = [1.0f32, -2.0];
        let v = [2.0f32, 4.0];
        let mut scratch = [0.0f32; 2];
        flow_update(
            &mut x,
            &v,
            2,
            &ode(0.5, 0.25, 0.0),
            None,
            None,
            &mut scratch,
        );
        assert_eq!(x, [0.5, -3.0]);
        assert_eq!(scratch, [0.0, 0.0], "ODE draws no noise");
    }

    #[test]
    fn source_lock_blends_the_prediction_before_the_update() {
        // x = 1, v = 2, t = 0.5: x0 = 0; lock 0.5 toward source 4 -> x0 = 2;
        // r = 0.5 -> x = 0.5 * 1 + 0.5 * 2 = 1.5.
        let mut x = [1.0f32];
        let mut scratch = [0.0f32];
        let step = ode(0.5, 0.25, 0.5);
        flow_update(&mut x, &[2.0], 1, &step, Some(&[4.0]), None, &mut scratch);
        assert_eq!(x, [1.5]);
        // Without a source the lock does nothing.
        let mut y = [1.0f32];
        flow_update(&mut y, &[2.0], 1, &step, None, None, &mut scratch);
        assert_eq!(y, [0.5]);
    }

    #[test]
    fn sde_step_follows_the_documented_blend_and_noise_rule() {
        let (t, tn) = (0.8f32, 0.4f32);
        let step = FlowStep {
            t_curr: t,
            t_next: tn,
            sde: true,
            x0_lock: 0.25,
            noise: KEY,
        };
        // Two frames of two channels; curve 1 on frame 0 (all generation), 0.5 on frame 1.
        let x_in = [0.3f32, -0.7, 1.1, 0.2];
        let v = [0.5f32, -1.0, 0.25, 2.0];
        let src = [1.0f32, 2.0, -1.0, 0.5];
        let curve = [1.0f32, 0.5];
        let mut x = x_in;
        let mut scratch = [0.0f32; 4];
        flow_update(&mut x, &v, 2, &step, Some(&src), Some(&curve), &mut scratch);
        for i in 0..4 {
            let n = gaussian_at(KEY, i as u64);
            assert_eq!(scratch[i].to_bits(), n.to_bits(), "draw {i} is element {i}");
            let mut x0 = x_in[i] - t * v[i];
            x0 += 0.25 * (src[i] - x0);
            let full = tn * n + (1.0 - tn) * x0;
            let from_src = tn * n + (1.0 - tn) * src[i];
            let sdc = curve[i / 2];
            let want = sdc * full + (1.0 - sdc) * from_src;
            assert_eq!(x[i].to_bits(), want.to_bits(), "element {i}");
        }
        // Frame 0 has sdc = 1: exactly the generation branch.
        let n0 = gaussian_at(KEY, 0);
        let x0 = (0.3 - 0.8 * 0.5) + 0.25 * (1.0 - (0.3 - 0.8 * 0.5));
        assert!((x[0] - (0.4 * n0 + 0.6 * x0)).abs() < 1e-6);
        // No source: x = x_full, the lock ignored.
        let mut y = x_in;
        flow_update(&mut y, &v, 2, &step, None, None, &mut scratch);
        for i in 0..4 {
            let n = gaussian_at(KEY, i as u64);
            let want = tn * n + (1.0 - tn) * (x_in[i] - t * v[i]);
            assert_eq!(y[i].to_bits(), want.to_bits());
        }
    }

    #[test]
    fn a_finished_slot_is_left_alone() {
        let mut x = [1.0f32];
        flow_update(
            &mut x,
            &[5.0],
            1,
            &ode(0.0, 0.0, 0.0),
            None,
            None,
            &mut [0.0],
        );
        assert_eq!(x, [1.0]);
    }

    #[test]
    fn slot_start_follows_the_rule() {
        let key = KEY.at_step(crate::rng::INIT_STEP);
        let n: Vec<f32> = (0..4).map(|i| gaussian_at(key, i)).collect();
        let src = [1.0f32, 2.0, 3.0, 4.0];
        let fb = [0.0f32, 0.0, 1.0, 1.0];
        let mut out = [0.0f32; 4];
        start_slot(&mut out, None, None, 0.5, key);
        assert_eq!(out.to_vec(), n, "no base: pure noise");
        start_slot(&mut out, Some(&src), None, 1.0, key);
        assert_eq!(out.to_vec(), n, "t_start = 1: pure noise");
        start_slot(&mut out, Some(&src), None, 0.25, key);
        for i in 0..4 {
            assert_eq!(out[i], 0.25 * n[i] + 0.75 * src[i]);
        }
        start_slot(&mut out, Some(&src), Some((&fb, 0.5)), 0.25, key);
        for i in 0..4 {
            let b = src[i] + 0.5 * (fb[i] - src[i]);
            assert_eq!(out[i], 0.25 * n[i] + 0.75 * b);
        }
        start_slot(&mut out, None, Some((&fb, 0.5)), 0.25, key);
        for i in 0..4 {
            assert_eq!(
                out[i],
                0.25 * n[i] + 0.75 * fb[i],
                "feedback alone is the base"
            );
        }
        start_slot(&mut out, Some(&src[..2]), None, 0.25, key);
        assert_eq!(out.to_vec(), n, "a source of another length is ignored");
    }

    #[test]
    fn cfg_combines_and_rescales() {
        let uncond = [0.0f32, 1.0, 2.0, 3.0];
        let mut v = [1.0f32, 1.0, 3.0, 3.0];
        combine_cfg(&mut v, &uncond, 1.0, 0.7);
        assert_eq!(
            v,
            [1.0, 1.0, 3.0, 3.0],
            "guidance 1 is the conditional prediction"
        );
        combine_cfg(&mut v, &uncond, 3.0, 0.0);
        // 0 + 3 * (1 - 0) = 3; 1 + 0 = 1; 2 + 3 = 5; 3 + 0 = 3.
        assert_eq!(v, [3.0, 1.0, 5.0, 3.0]);
        // Rescale 1: the guided prediction takes the conditional one's spread.
        let cond = [1.0f32, 1.0, 3.0, 3.0]; // std 1
        let mut w = cond;
        combine_cfg(&mut w, &uncond, 3.0, 1.0);
        // guided = [3, 1, 5, 3]: mean 3, std sqrt(2); k = 1 / sqrt(2).
        let k = 1.0 / 2.0f32.sqrt();
        for (got, g) in w.iter().zip([3.0f32, 1.0, 5.0, 3.0]) {
            assert!((got - g * k).abs() < 1e-6, "{got} vs {}", g * k);
        }
        // Rescale 0.5: halfway between.
        let mut h = cond;
        combine_cfg(&mut h, &uncond, 3.0, 0.5);
        for (got, g) in h.iter().zip([3.0f32, 1.0, 5.0, 3.0]) {
            assert!((got - (0.5 * g * k + 0.5 * g)).abs() < 1e-6);
        }
    }
}
