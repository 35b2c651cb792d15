//! Element-wise and reduction helpers of the forward passes, written as
//! straight-line loops the compiler vectorises. They are `#[inline(always)]`
//! so that, called inside [`crate::quant::Isa::run`], they use that ISA's
//! registers.

/// `Σ a·b`, in 16 lanes so that it vectorises.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `x += y`, element by element.
#[inline(always)]
pub(crate) fn add(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(x, y)| *x += y);
}

/// `Σ a`, in eight lanes so that it vectorises.
#[inline(always)]
pub(crate) fn sum(a: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = a.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for x in chunks {
        for i in 0..8 {
            lanes[i] += x[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `x = e^x / Σ e^x`, shifted by the maximum so that nothing overflows.
#[inline(always)]
pub(crate) fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    x.iter_mut().for_each(|v| *v = exp(*v - max));
    let total = sum(x);
    x.iter_mut().for_each(|v| *v /= total);
}

/// `e^x` to about 2 ulp, in straight-line arithmetic that vectorises:
/// `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`, `e^r` by its Taylor polynomial
/// to degree 6, `2^n` built in the exponent bits.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let rounded = x * std::f32::consts::LOG2_E + ROUND;
    let n = rounded - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // The low bits of `rounded` hold n (-126..=127) as an integer: adding
    // the exponent bias and shifting gives the bits of 2^n (a float-to-int
    // conversion would not vectorise).
    p * f32::from_bits(rounded.to_bits().wrapping_add(127) << 23)
}

/// Gaussian error function: Abramowitz and Stegun 7.1.26 (absolute error
/// below 1.5·10⁻⁷), and near zero, where that form loses digits to
/// cancellation, the Taylor series to x⁹. Both are computed and one chosen,
/// which keeps the loop free of branches.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152 + t * 1.061_405_4))));
    let far = (1.0 - poly * exp(-a * a)).copysign(x);
    let x2 = x * x;
    let near = std::f32::consts::FRAC_2_SQRT_PI
        * x
        * (1.0 + x2 * (-1.0 / 3.0 + x2 * (0.1 + x2 * (-1.0 / 42.0 + x2 * (1.0 / 216.0)))));
    if a < 0.35 {
        near
    } else {
        far
    }
}

/// GELU with the exact (erf) form, as BERT's `gelu`.
#[inline(always)]
pub(crate) fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    fn tensor(xs: &[f32]) -> Tensor {
        Tensor::from_slice(xs, xs.len(), &Device::Cpu).unwrap()
    }

    #[test]
    fn exp_erf_and_gelu_match_candle() {
        let xs: Vec<f32> = (-4000..=4000).map(|i| i as f32 / 400.0).collect();
        let want_exp = tensor(&xs).exp().unwrap().to_vec1::<f32>().unwrap();
        let want_erf = tensor(&xs).erf().unwrap().to_vec1::<f32>().unwrap();
        let want_gelu = tensor(&xs).gelu_erf().unwrap().to_vec1::<f32>().unwrap();
        for (i, &x) in xs.iter().enumerate() {
            let e = exp(x);
            assert!(
                (e - want_exp[i]).abs() <= 3e-7 * want_exp[i],
                "exp({x}) = {e}"
            );
            assert!(
                (erf(x) - want_erf[i]).abs() <= 3e-7,
                "erf({x}) = {}",
                erf(x)
            );
            assert!((gelu(x) - want_gelu[i]).abs() <= 5e-6, "gelu({x})");
        }
        assert_eq!(exp(-1000.0), exp(-87.0));
        assert!(exp(1000.0).is_finite());
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let mut x = vec![1.0, 3.0, -2.0, 3.0, 80.0];
        softmax(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(x[4] > 0.99 && x[1] == x[3] && x[1] > x[0] && x[0] > x[2]);
    }
}
