//! The encoder's element-wise work on plain f32 rows: layer norm, GELU,
//! softmax.
//!
//! Written as straight-line loops the compiler vectorises (fixed-width lane
//! accumulators for the sums, branch-free exp and erf). The exp and erf here
//! are our own because libm's are scalar calls: in the encoder they ran
//! millions of times per batch and took a sixth of the time. Both are
//! accurate to a few units in the last place of f32 (tests below compare
//! them with f64), far inside the 1e-4 cosine budget against PyTorch.

use super::config::Activation;
use crate::simd::widest;

const LANES: usize = 16;

/// Sum of `f(x)` over a row with `LANES` independent accumulators, so it
/// vectorises (a single running sum would pin the order of the additions).
#[inline(always)]
fn sum_of(xs: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().map(|&x| f(x)).sum();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += f(x);
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn sum(xs: &[f32]) -> f32 {
    sum_of(xs, |x| x)
}

#[inline(always)]
fn max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder().iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = a.max(x);
        }
    }
    acc.iter().fold(tail, |m, &x| m.max(x))
}

/// `e^x` for x in f32's range; 0 below -87.3 would be subnormal, we return
/// e^-87 instead (1.6e-38), which is 0 for every use here.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so n·LN2_HI is exact for |n| < 2^9 (Cody–Waite).
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding 1.5·2^23 rounds to an integer, which then sits in the low
    // mantissa bits: round-to-nearest and float-to-int without a branch.
    const SHIFT: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + SHIFT;
    let n = t - SHIFT;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Taylor series to r^7: |r| <= ln2/2, so the rest is below 6e-9 relative.
    let p = 1.0
        + r * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    let k = (t.to_bits() as i32).wrapping_sub(SHIFT.to_bits() as i32);
    // k is in [-126, 127] thanks to the clamp, so 2^k is a normal float.
    p * f32::from_bits(((k + 127) as u32) << 23)
}

/// erfc(z) for z >= 0, from the Chebyshev fit in Numerical Recipes (§6.2):
/// fractional error below 1.2e-7 everywhere. `z2` is z², passed in so the
/// caller can compute it with one rounding.
#[inline(always)]
#[allow(clippy::excessive_precision)] // the coefficients as published
fn erfc_nonneg(z: f32, z2: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.265_512_2
        + t * (1.000_023_7
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    t * exp(poly - z2)
}

/// GELU as BERT defines it, x·Φ(x) = x/2 · erfc(-x/√2), without
/// cancellation for negative x.
#[inline(always)]
fn gelu_erf(x: f32) -> f32 {
    let z = -x * std::f32::consts::FRAC_1_SQRT_2;
    // z² = x²/2 with a single rounding: in the exponent of erfc's tail its
    // error is magnified by z², so rounding z first would cost ~10 ulp.
    let e = erfc_nonneg(z.abs(), x * x * 0.5);
    let erfc = if z >= 0.0 { e } else { 2.0 - e };
    0.5 * x * erfc
}

/// The tanh form of GELU (`gelu_new`), with tanh(u) = 1 - 2/(e^{2u} + 1).
#[inline(always)]
fn gelu_tanh(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // √(2/π)
    let u = C * (x + 0.044_715 * x * x * x);
    0.5 * x * (2.0 - 2.0 / (exp(2.0 * u) + 1.0))
}

widest!(pub(crate) fn activate(xs: &mut [f32], act: Activation) => activate_generic(xs, act));
widest!(pub(crate) fn softmax(row: &mut [f32]) => softmax_generic(row));
widest!(pub(crate) fn layer_norm(x: &[f32], out: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) => layer_norm_generic(x, out, gamma, beta, eps));

/// Applies the activation to every element in place.
#[inline(always)]
fn activate_generic(xs: &mut [f32], act: Activation) {
    match act {
        Activation::Gelu => xs.iter_mut().for_each(|x| *x = gelu_erf(*x)),
        Activation::GeluTanh => xs.iter_mut().for_each(|x| *x = gelu_tanh(*x)),
        Activation::Relu => xs.iter_mut().for_each(|x| *x = x.max(0.0)),
    }
}

/// Softmax of one row in place.
#[inline(always)]
fn softmax_generic(row: &mut [f32]) {
    let m = max(row);
    row.iter_mut().for_each(|x| *x = exp(*x - m));
    let inv = 1.0 / sum(row);
    row.iter_mut().for_each(|x| *x *= inv);
}

/// Layer norm of `x` (rows of `gamma.len()`) into `out`, as torch computes it:
/// biased variance, `eps` inside the square root.
#[inline(always)]
fn layer_norm_generic(x: &[f32], out: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let h = gamma.len();
    for (row, dst) in x.chunks_exact(h).zip(out.chunks_exact_mut(h)) {
        let mean = sum(row) / h as f32;
        for (d, &v) in dst.iter_mut().zip(row) {
            *d = v - mean;
        }
        let var = sum_of(dst, |d| d * d) / h as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((d, g), b) in dst.iter_mut().zip(gamma).zip(beta) {
            *d = *d * inv * g + b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf by its Taylor series in f64: exact to ~1e-9 for |x| <= 4, where
    /// the alternating terms stay below e^16.
    fn erf64(x: f64) -> f64 {
        assert!(x.abs() <= 4.0);
        let mut term = x;
        let mut total = x;
        for n in 1..400 {
            term *= -x * x / n as f64;
            total += term / (2 * n + 1) as f64;
        }
        total * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn exp_is_within_a_few_ulp() {
        let mut worst = 0f64;
        for i in 0..=200_000 {
            let x = -87.0 + 175.0 * i as f64 / 200_000.0;
            let got = exp(x as f32) as f64;
            let want = (x as f32 as f64).exp();
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 4.0 * f32::EPSILON as f64, "relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) < 1e-37 && exp(-1000.0) >= 0.0);
    }

    #[test]
    fn gelu_matches_an_f64_reference() {
        let mut worst = 0f64;
        for i in 0..=40_000 {
            let x = -5.5 + 11.0 * i as f64 / 40_000.0;
            let xf = x as f32 as f64;
            let want = 0.5 * xf * (1.0 + erf64(xf / std::f64::consts::SQRT_2));
            let got = gelu_erf(xf as f32) as f64;
            worst = worst.max((got - want).abs() / want.abs().max(1e-3));
        }
        assert!(worst < 1e-6, "error {worst}");
        // Beyond the reference's range GELU is 0 on the left, x on the right.
        for x in [-6.0f32, -9.0, -40.0, -1e30] {
            assert!(gelu_erf(x).abs() < 1e-7 && gelu_erf(x) <= 0.0, "{x}");
        }
        for x in [6.0f32, 9.0, 40.0, 1e30] {
            assert_eq!(gelu_erf(x), x);
        }
    }

    #[test]
    fn gelu_tanh_matches_its_formula() {
        for i in 0..=2_000 {
            let x = -8.0 + 16.0 * i as f64 / 2_000.0;
            let c = (2.0 / std::f64::consts::PI).sqrt();
            let want = 0.5 * x * (1.0 + (c * (x + 0.044715 * x.powi(3))).tanh());
            let got = gelu_tanh(x as f32) as f64;
            assert!((got - want).abs() < 1e-5 * want.abs().max(1.0), "{x}: {got} vs {want}");
        }
    }

    #[test]
    fn softmax_and_layer_norm_match_f64() {
        let row: Vec<f32> = (0..37).map(|i| (i as f32 * 0.7).sin() * 9.0).collect();
        let mut s = row.clone();
        softmax(&mut s);
        let m = row.iter().fold(f64::MIN, |m, &x| m.max(x as f64));
        let z: f64 = row.iter().map(|&x| (x as f64 - m).exp()).sum();
        for (got, &x) in s.iter().zip(&row) {
            assert!((*got as f64 - (x as f64 - m).exp() / z).abs() < 1e-7);
        }
        let gamma: Vec<f32> = (0..37).map(|i| 1.0 + i as f32 * 0.01).collect();
        let beta: Vec<f32> = (0..37).map(|i| i as f32 * -0.02).collect();
        let mut out = vec![0f32; 37];
        layer_norm(&row, &mut out, &gamma, &beta, 1e-12);
        let mean = row.iter().map(|&x| x as f64).sum::<f64>() / 37.0;
        let var = row.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / 37.0;
        for i in 0..37 {
            let want = (row[i] as f64 - mean) / var.sqrt() * gamma[i] as f64 + beta[i] as f64;
            assert!((out[i] as f64 - want).abs() < 1e-5, "{i}");
        }
    }
}
