//! AVX2 + FMA versions of the block dot products in `quant.rs`, as register
//! tiles: a tile of R weight rows × T activation rows loads each weight block
//! once for all T tokens and each activation block once for all R rows. Every
//! (row, token) pair still gets ggml's AVX2 arithmetic exactly — its own
//! 8-lane accumulator, one fused multiply-add per block in block order, the
//! same `hsum8` at the end — so tiles return the bits of the scalar reference
//! (unit tests compare them on random blocks and odd shapes).
//!
//! The only `unsafe` in the engine besides the dispatch in `simd.rs`: SIMD
//! intrinsics need it. [`rows_into`] checks every bound the loads rely on
//! before the first one.
#![allow(unsafe_code)]

use std::arch::x86_64::*;
use std::ops::Range;

use super::quant::{Q8Block, WeightType, QK};

/// A weight matrix as the kernels read it: `rows × nb` blocks of GGUF bytes.
/// Scales stay f16 inside the blocks and are widened by F16C as they are
/// read: a separate f32 copy would add 40% to the bytes a decode step
/// streams from memory, and decode is bound by those bytes.
#[derive(Clone, Copy)]
pub struct Weights<'a> {
    pub data: &'a [u8],
    pub nb: usize,
}

/// How bytes multiply: AVX2's two-step multiply-add, or AVX-512 VNNI's
/// single `vpdpbusd`. Both give each i32 lane the exact sum of its four
/// products: no pair sum of these formats reaches `vpmaddubsw`'s i16
/// saturation (at most 2·128·127), so the integers and then the floats agree.
trait Dot {
    unsafe fn us8(ax: __m256i, sy: __m256i) -> __m256;
}

struct Avx2;
struct Vnni;

impl Dot for Avx2 {
    #[inline(always)]
    unsafe fn us8(ax: __m256i, sy: __m256i) -> __m256 {
        mul_sum_us8(ax, sy)
    }
}

impl Dot for Vnni {
    #[inline(always)]
    unsafe fn us8(ax: __m256i, sy: __m256i) -> __m256 {
        _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), ax, sy))
    }
}

/// One block format: where its quants sit and how they multiply.
trait Format {
    const BYTES: usize;
    /// Q4_1's `m · s` term; its f16 `m` follows the f16 `d`.
    const HAS_MIN: bool;
    /// The block's 32 weights as bytes (unsigned for Q4_1, signed otherwise).
    unsafe fn load(block: *const u8) -> __m256i;
    /// The 8 integer lanes of the block's products with `y`, as f32.
    unsafe fn products<D: Dot>(w: __m256i, y: __m256i) -> __m256;
}

struct Q4_0;
struct Q4_1;
struct Q8_0;

impl Format for Q4_0 {
    const BYTES: usize = 2 + QK / 2;
    const HAS_MIN: bool = false;
    #[inline(always)]
    unsafe fn load(block: *const u8) -> __m256i {
        _mm256_sub_epi8(bytes_from_nibbles(block.add(2)), _mm256_set1_epi8(8))
    }
    #[inline(always)]
    unsafe fn products<D: Dot>(w: __m256i, y: __m256i) -> __m256 {
        // Signed × signed: the sign moves onto `y`.
        D::us8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(y, w))
    }
}

impl Format for Q4_1 {
    const BYTES: usize = 4 + QK / 2;
    const HAS_MIN: bool = true;
    #[inline(always)]
    unsafe fn load(block: *const u8) -> __m256i {
        bytes_from_nibbles(block.add(4))
    }
    #[inline(always)]
    unsafe fn products<D: Dot>(w: __m256i, y: __m256i) -> __m256 {
        D::us8(w, y)
    }
}

impl Format for Q8_0 {
    const BYTES: usize = 2 + QK;
    const HAS_MIN: bool = false;
    #[inline(always)]
    unsafe fn load(block: *const u8) -> __m256i {
        _mm256_loadu_si256(block.add(2) as *const __m256i)
    }
    #[inline(always)]
    unsafe fn products<D: Dot>(w: __m256i, y: __m256i) -> __m256 {
        // Signed × signed: the sign moves onto `y`.
        D::us8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(y, w))
    }
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

/// The block's f16 scale `d` and, for Q4_1, its minimum `m`, widened.
#[inline(always)]
unsafe fn scales<F: Format>(block: *const u8) -> (f32, f32) {
    let bits = if F::HAS_MIN {
        (block as *const i32).read_unaligned()
    } else {
        (block as *const u16).read_unaligned() as i32
    };
    let v = _mm_cvtph_ps(_mm_cvtsi32_si128(bits));
    (_mm_cvtss_f32(v), _mm_cvtss_f32(_mm_shuffle_ps(v, v, 1)))
}

#[inline(always)]
unsafe fn finish(acc: __m256) -> f32 {
    let mut l = [0f32; 8];
    _mm256_storeu_ps(l.as_mut_ptr(), acc);
    super::ggml_order::hsum8(&l)
}

/// `out[(r - rows.start) * t + i]` = weight row `r` · activation row `i`, for
/// every `r` in `rows` and `i < t`; `x` holds `t` rows of `w.nb` blocks.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C (`simd::level()` above Baseline).
///
/// # Panics
/// When a slice is shorter than the shapes say (a caller bug).
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn rows_into(kind: WeightType, w: Weights, rows: Range<usize>, x: &[Q8Block], t: usize, out: &mut [f32]) {
    match kind {
        WeightType::Q4_0 => run::<Q4_0, Avx2>(w, rows, x, t, out),
        WeightType::Q4_1 => run::<Q4_1, Avx2>(w, rows, x, t, out),
        WeightType::Q8_0 => run::<Q8_0, Avx2>(w, rows, x, t, out),
    }
}

/// [`rows_into`] with AVX-512 VNNI's byte dot products (on 256-bit vectors,
/// so the 8-lane accumulators and their order stay those of ggml's AVX2).
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C, AVX-512F/VL and AVX-512 VNNI
/// ([`vnni_available`]).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub unsafe fn rows_into_vnni(
    kind: WeightType,
    w: Weights,
    rows: Range<usize>,
    x: &[Q8Block],
    t: usize,
    out: &mut [f32],
) {
    match kind {
        WeightType::Q4_0 => run::<Q4_0, Vnni>(w, rows, x, t, out),
        WeightType::Q4_1 => run::<Q4_1, Vnni>(w, rows, x, t, out),
        WeightType::Q8_0 => run::<Q8_0, Vnni>(w, rows, x, t, out),
    }
}

/// Whether [`rows_into_vnni`] can run here.
pub fn vnni_available() -> bool {
    crate::simd::level() == crate::simd::Level::Avx512 && is_x86_feature_detected!("avx512vnni")
}

#[inline(always)]
unsafe fn run<F: Format, D: Dot>(w: Weights, rows: Range<usize>, x: &[Q8Block], t: usize, out: &mut [f32]) {
    let blocks = rows.end * w.nb;
    // Every index and load below stays inside these bounds.
    assert!(w.data.len() >= blocks * F::BYTES, "weights shorter than their shape");
    assert!(
        x.len() >= t * w.nb && out.len() >= rows.len() * t,
        "activations or output too short"
    );
    let mut r = rows.start;
    while r < rows.end {
        let tall = rows.end - r >= 4 && t >= 2;
        let mut i = 0;
        while i < t {
            let pair = t - i >= 2;
            match (tall, pair) {
                (true, true) => tile::<F, D, 4, 2>(w, r, x, i, t, out, rows.start),
                (true, false) => tile::<F, D, 4, 1>(w, r, x, i, t, out, rows.start),
                (false, true) => tile::<F, D, 1, 2>(w, r, x, i, t, out, rows.start),
                (false, false) => tile::<F, D, 1, 1>(w, r, x, i, t, out, rows.start),
            }
            i += if pair { 2 } else { 1 };
        }
        r += if tall { 4 } else { 1 };
    }
}

/// Rows `r..r + R` against tokens `i..i + T`: R·T dot products in registers.
#[inline(always)]
unsafe fn tile<F: Format, D: Dot, const R: usize, const T: usize>(
    w: Weights,
    r: usize,
    x: &[Q8Block],
    i: usize,
    t: usize,
    out: &mut [f32],
    base: usize,
) {
    let nb = w.nb;
    let data = w.data.as_ptr();
    let mut acc = [[_mm256_setzero_ps(); T]; R];
    let mut summs = [[0f32; T]; R];
    for b in 0..nb {
        let mut q = [_mm256_setzero_si256(); R];
        let mut dm = [(0f32, 0f32); R];
        for k in 0..R {
            let block = data.add(((r + k) * nb + b) * F::BYTES);
            q[k] = F::load(block);
            dm[k] = scales::<F>(block);
        }
        for j in 0..T {
            let a = x.get_unchecked((i + j) * nb + b);
            let y = _mm256_loadu_si256(a.q.as_ptr() as *const __m256i);
            for k in 0..R {
                let (dw, mw) = dm[k];
                if F::HAS_MIN {
                    // m · s is exact in f32 (two f16 values): fused or not alike.
                    summs[k][j] += mw * a.s;
                }
                let d = _mm256_set1_ps(dw * a.d);
                acc[k][j] = _mm256_fmadd_ps(d, F::products::<D>(q[k], y), acc[k][j]);
            }
        }
    }
    for k in 0..R {
        for j in 0..T {
            let v = finish(acc[k][j]);
            out[(r + k - base) * t + i + j] = if F::HAS_MIN { v + summs[k][j] } else { v };
        }
    }
}
