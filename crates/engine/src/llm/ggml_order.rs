//! Float kernels computed in the same order as llama.cpp's x86 CPU backend
//! (AVX2 + FMA build), so that our results are bit-identical to its results.
//!
//! Why by hand: a 135M model turns a one-ulp difference before an 8-bit
//! activation quantization into a different rounding, and that into ~0.1
//! logit. Matching llama.cpp greedy output token for token therefore needs the
//! same reduction trees, the same fused multiply-adds and the same `exp`
//! approximation. No crate reproduces ggml's arithmetic, so it is spelled out
//! here: each function names the ggml routine it mirrors. These are scalar
//! reference versions; SIMD versions must give the same bits.

/// `x` rounded to the nearest f16 (ties to even, as F16C does) and widened
/// back: what storing into ggml's f16 tensors does to a value. Spelled out
/// in integer and float steps rather than calling `half`, so that loops over
/// it vectorise (a test compares it with `half` over a million values).
#[inline(always)]
pub fn round_f16(x: f32) -> f32 {
    let bits = x.to_bits();
    let b = bits & 0x7fff_ffff;
    let a = f32::from_bits(b);
    // Normal f16 range: keep 10 mantissa bits, rounding to nearest, ties to even.
    let normal = f32::from_bits((b + 0x0fff + ((b >> 13) & 1)) & !0x1fff);
    // Below 2^-14 f16 is subnormal, a multiple of 2^-24, and so is every
    // float near 0.5: adding 0.5 rounds to that grid, subtracting is exact.
    let subnormal = (a + 0.5) - 0.5;
    let r = if a < 6.103_515_6e-5 {
        subnormal
    } else if a >= 65_520.0 {
        f32::INFINITY
    } else {
        normal
    };
    if a.is_nan() {
        x
    } else {
        f32::from_bits(r.to_bits() | (bits & 0x8000_0000))
    }
}

/// ggml's 8-lane horizontal sum (`hsum_float_8`, tinyBLAS `hsum`, the softmax
/// chunk sum): fold the high half onto the low half, then pairs `(0+2)+(1+3)`.
#[inline]
pub fn hsum8(l: &[f32; 8]) -> f32 {
    let r = [l[4] + l[0], l[5] + l[1], l[6] + l[2], l[7] + l[3]];
    (r[0] + r[2]) + (r[1] + r[3])
}

/// Reduction of `ggml_vec_dot_f16`'s four 8-lane accumulators
/// (`GGML_F32x8_REDUCE`): `x0+x2`, `x1+x3`, then together, then two `hadd`s.
#[inline]
pub fn reduce_f32x8x4(acc: &[[f32; 8]; 4]) -> f32 {
    let mut x = [0f32; 8];
    for (k, v) in x.iter_mut().enumerate() {
        *v = (acc[0][k] + acc[2][k]) + (acc[1][k] + acc[3][k]);
    }
    let t = [x[0] + x[4], x[1] + x[5], x[2] + x[6], x[3] + x[7]];
    (t[0] + t[1]) + (t[2] + t[3])
}

/// `ggml_compute_forward_rms_norm_f32` followed by the weight multiply:
/// the sum of squares in f64 of f32 products, `scale = 1/sqrtf(mean + eps)`,
/// `y = (x * scale) * w`.
#[inline(always)]
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let sum: f64 = x.iter().map(|v| (v * v) as f64).sum();
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0f32 / (mean + eps).sqrt();
    for ((o, v), w) in out.iter_mut().zip(x).zip(w) {
        *o = (v * scale) * w;
    }
}

/// One lane of the AVX2 `ggml_v_expf` (after ARM's optimized routines;
/// max error ~1.5 ulp), including its handling of large magnitudes. Every
/// case is computed and one selected, as ggml's blends do, so it vectorises.
#[inline(always)]
pub fn expf(x: f32) -> f32 {
    let r = f32::from_bits(0x4b40_0000); // 0x1.8p23
    let z = x.mul_add(f32::from_bits(0x3fb8_aa3b), r); // log2(e)
    let n = z - r;
    let b = (-n).mul_add(
        f32::from_bits(0x35bf_be8e),                  // 0x1.7f7d1cp-20
        (-n).mul_add(f32::from_bits(0x3f31_7200), x), // 0x1.62e4p-1
    );
    let e = z.to_bits().wrapping_shl(23);
    let k = f32::from_bits(e.wrapping_add(1.0f32.to_bits()));
    let u = b * b;
    let j = f32::from_bits(0x3c07_2010)
        .mul_add(b, f32::from_bits(0x3d2b_9f17))
        .mul_add(u, f32::from_bits(0x3e2a_af33).mul_add(b, f32::from_bits(0x3eff_fedb)))
        .mul_add(u, f32::from_bits(0x3f7f_fff6) * b);
    let usual = j.mul_add(k, k);
    let g: u32 = if n <= 0.0 { 0x8200_0000 } else { 0 };
    let s1 = f32::from_bits(g.wrapping_add(0x7f00_0000));
    let s2 = f32::from_bits(e.wrapping_sub(g));
    let huge = s1 * s1;
    let large = s2.mul_add(j, s2) * s1;
    let m = n.abs();
    if m <= 126.0 {
        usual
    } else if m > 192.0 {
        huge
    } else {
        large
    }
}

/// `ggml_v_silu`: `x / (1 + exp(0 - x))`.
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + expf(0.0 - x))
}

/// `ggml_vec_swiglu_f32`: `silu(gate) * up`; lanes past a multiple of 8 use
/// libm's `expf` as ggml's scalar tail does.
#[inline(always)]
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    let n8 = gate.len() & !7;
    for ((o, &x), &u) in out.iter_mut().zip(&gate[..n8]).zip(up) {
        *o = silu(x) * u;
    }
    for ((o, &x), &u) in out.iter_mut().zip(gate).zip(up).skip(n8) {
        *o = x / (1.0 + (-x).exp()) * u;
    }
}

/// `ggml_compute_forward_soft_max_f32` over one row that is already scaled and
/// masked (`-inf` for hidden positions): exp in chunks of 8 summed with
/// [`hsum8`] into an f64, then multiplied by `(float)(1/sum)`.
#[inline(always)]
pub fn softmax(row: &mut [f32]) {
    let mut max = f32::NEG_INFINITY;
    for &v in row.iter() {
        max = max.max(v);
    }
    let mut sum = 0f64;
    for chunk in row.chunks_mut(8) {
        // A short last chunk stands for ggml's zero padding of the KV cache.
        let mut lanes = [0f32; 8];
        for (l, v) in lanes.iter_mut().zip(chunk.iter_mut()) {
            *v = expf(*v - max);
            *l = *v;
        }
        sum += hsum8(&lanes) as f64;
    }
    let inv = (1.0 / sum) as f32;
    for v in row.iter_mut() {
        *v *= inv;
    }
}

/// Rotary tables as `ggml_rope_cache_init` builds them for one position:
/// `theta` starts at the position and is multiplied by
/// `base^(-2/head_dim)` (in f32) for each successive pair.
pub fn rope_cache(pos: usize, head_dim: usize, base: f32, cos: &mut [f32], sin: &mut [f32]) {
    let theta_scale = base.powf(-2.0 / head_dim as f32);
    let mut theta = pos as f32;
    for (c, s) in cos.iter_mut().zip(sin.iter_mut()) {
        *c = theta.cos();
        *s = theta.sin();
        theta *= theta_scale;
    }
}

/// `rotate_pairs` for the llama (adjacent pairs) layout, as gcc compiles it:
/// the first product of each expression is fused into the add.
#[inline(always)]
pub fn rope_pairs(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    for ((pair, &c), &s) in x.chunks_exact_mut(2).zip(cos).zip(sin) {
        let (x0, x1) = (pair[0], pair[1]);
        pair[0] = x0.mul_add(c, -(x1 * s));
        pair[1] = x0.mul_add(s, x1 * c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expf_is_close_to_libm_and_handles_extremes() {
        for i in -2000..=2000 {
            let x = i as f32 * 0.043;
            let (got, want) = (expf(x), x.exp());
            assert!(((got - want) / want).abs() < 4e-7, "{x}: {got} vs {want}");
        }
        assert_eq!(expf(f32::NEG_INFINITY), 0.0);
        assert_eq!(expf(-200.0), 0.0);
        assert_eq!(expf(200.0), f32::INFINITY);
        assert_eq!(expf(0.0), 1.0);
    }

    #[test]
    fn round_f16_is_what_half_does() {
        let check = |x: f32| {
            let want = half::f16::from_f32(x).to_f32();
            let got = round_f16(x);
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "{x:e}: {got:e} vs {want:e}"
            );
        };
        // A million bit patterns spread over every exponent, both signs.
        for i in 0..1_000_000u32 {
            check(f32::from_bits(i.wrapping_mul(4295)));
        }
        for x in [
            0.0,
            -0.0,
            65504.0,
            65519.99,
            65520.0,
            6.1035156e-5,
            6.1e-5,
            2.98e-8,
            2.99e-8,
            1e-9,
            f32::INFINITY,
            f32::MAX,
        ] {
            check(x);
            check(-x);
        }
    }

    #[test]
    fn reductions_add_in_ggml_order() {
        // Values where the order of additions changes the f32 result.
        let big = [1e8f32, 1.0, -1e8, 1.0, 3.0, 1.0, 5.0, 1.0];
        // (1e8+3)+(-1e8+5) = 8, (1+1)+(1+1) = 4
        assert_eq!(hsum8(&big), 12.0);
        // Accumulators 0 and 2 are added first, so 1e8 cancels before the 1
        // and the 3 join: (1e8 + -1e8) + (1 + 0) = 1, then lanes 0 and 4: 1 + 3.
        let mut acc = [[0f32; 8]; 4];
        acc[0][0] = 1e8;
        acc[1][0] = 1.0;
        acc[2][0] = -1e8;
        acc[0][4] = 3.0;
        assert_eq!(reduce_f32x8x4(&acc), 4.0);
    }

    #[test]
    fn softmax_sums_to_one_and_masks() {
        let mut row = [0.5f32, 1.5, f32::NEG_INFINITY, -2.0, 0.0, 3.0, 1.0, 2.0, 0.25, -1.0];
        softmax(&mut row);
        let total: f32 = row.iter().sum();
        assert!((total - 1.0).abs() < 1e-6);
        assert_eq!(row[2], 0.0);
        assert!(row[5] > row[7] && row[7] > row[1]);
    }
}
