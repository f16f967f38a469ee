//! AVX2 + FMA versions of the block dot products in `quant.rs`. They are the
//! same instruction sequences as ggml's x86 kernels, so they return the same
//! bits as the scalar reference (a unit test checks this on random blocks).
//! Selected at run time; the scalar code runs on any other CPU.
//!
//! The only `unsafe` in the engine: SIMD intrinsics need it. Every load reads
//! within a block whose length `chunks_exact` guarantees.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::quant::{Q8Block, QK};

/// Whether this CPU can run the kernels below (checked once).
pub fn available() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

/// The f16 at `p` (unaligned), widened.
#[inline(always)]
unsafe fn f16_at(p: *const u8) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([*p, *p.add(1)])).to_f32()
}

/// 32 nibbles as bytes: low nibbles of the 16 bytes, then the high ones.
#[inline(always)]
unsafe fn bytes_from_nibbles(qs: *const u8) -> __m256i {
    let tmp = _mm_loadu_si128(qs as *const __m128i);
    let both = _mm256_insertf128_si256(_mm256_castsi128_si256(tmp), _mm_srli_epi16(tmp, 4), 1);
    _mm256_and_si256(_mm256_set1_epi8(0x0f), both)
}

/// Unsigned bytes times signed bytes, summed in groups of four into eight
/// i32 lanes, as f32.
#[inline(always)]
unsafe fn mul_sum_us8(ax: __m256i, sy: __m256i) -> __m256 {
    let pairs = _mm256_maddubs_epi16(ax, sy);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_set1_epi16(1), pairs))
}

/// Signed bytes times signed bytes (sign moved onto `y`).
#[inline(always)]
unsafe fn mul_sum_i8(x: __m256i, y: __m256i) -> __m256 {
    mul_sum_us8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
}

#[inline(always)]
unsafe fn load_q(a: &Q8Block) -> __m256i {
    _mm256_loadu_si256(a.q.as_ptr() as *const __m256i)
}

#[inline(always)]
unsafe fn finish(acc: __m256) -> f32 {
    let mut l = [0f32; 8];
    _mm256_storeu_ps(l.as_mut_ptr(), acc);
    super::ggml_order::hsum8(&l)
}

/// Walks `row` (blocks of `bytes`) and `x` together: `f(block pointer, activations)`.
#[inline(always)]
unsafe fn blocks(row: &[u8], bytes: usize, x: &[Q8Block], mut f: impl FnMut(*const u8, &Q8Block)) {
    let n = (row.len() / bytes).min(x.len());
    let p = row.as_ptr();
    for (i, a) in x[..n].iter().enumerate() {
        f(p.add(i * bytes), a);
    }
}

/// # Safety
/// The CPU must support AVX2 and FMA ([`available`]).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot_q4_0(row: &[u8], x: &[Q8Block]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    blocks(row, 2 + QK / 2, x, |w, a| {
        let d = _mm256_set1_ps(f16_at(w) * a.d);
        let qx = _mm256_sub_epi8(bytes_from_nibbles(w.add(2)), _mm256_set1_epi8(8));
        acc = _mm256_fmadd_ps(d, mul_sum_i8(qx, load_q(a)), acc);
    });
    finish(acc)
}

/// # Safety
/// The CPU must support AVX2 and FMA ([`available`]).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot_q4_1(row: &[u8], x: &[Q8Block]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut summs = 0f32;
    blocks(row, 4 + QK / 2, x, |w, a| {
        summs += f16_at(w.add(2)) * a.s;
        let d = _mm256_set1_ps(f16_at(w) * a.d);
        acc = _mm256_fmadd_ps(d, mul_sum_us8(bytes_from_nibbles(w.add(4)), load_q(a)), acc);
    });
    finish(acc) + summs
}

/// # Safety
/// The CPU must support AVX2 and FMA ([`available`]).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot_q8_0(row: &[u8], x: &[Q8Block]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    blocks(row, 2 + QK, x, |w, a| {
        let d = _mm256_set1_ps(f16_at(w) * a.d);
        let qx = _mm256_loadu_si256(w.add(2) as *const __m256i);
        acc = _mm256_fmadd_ps(d, mul_sum_i8(qx, load_q(a)), acc);
    });
    finish(acc)
}
