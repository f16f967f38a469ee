//! Quantized weights and the matmul against 8-bit-quantized activations, done
//! the way llama.cpp's CPU backend does it so greedy outputs agree with it.
//!
//! Written here rather than taken from candle because candle's Q8_1 activation
//! blocks differ from ggml's in two details that move logits by ~0.1: its sum
//! term is computed in f16 arithmetic (ggml: `f16(d * sum)` with `d` in f32)
//! and it rounds half away from zero with `1/d` (ggml's x86 path: `127/amax`,
//! round half to even). This is the scalar reference; SIMD paths are compared
//! against it.

use candle_core::quantized::{GgmlDType, QTensor};
use half::f16;
use rayon::prelude::*;

use super::ggml_order::{hsum8, round_f16};
use super::LlmError;
use crate::simd::widest;

pub(crate) const QK: usize = 32;

/// Block dot products below which a matmul does not use the thread pool: at
/// about 1.5 ns each, 8 Ki blocks are ~12 µs. The engine's loop runs on one
/// of its pool's workers, so a split starts at once on this thread and the
/// other workers join: 2-thread single-stream decode measured 140 tok/s
/// with a 64 Ki threshold (only the output layer split), 166 with 16 Ki and
/// 176 with 8 Ki (everything but a decode step's K and V).
const PARALLEL_MIN_BLOCKS: usize = 8 * 1024;

/// A weight matrix `[rows, cols]` in one of the supported block formats,
/// kept as the raw GGUF bytes.
pub struct QWeight {
    dtype: WeightType,
    rows: usize,
    cols: usize,
    data: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightType {
    Q4_0,
    Q4_1,
    Q8_0,
}

impl WeightType {
    fn block_bytes(self) -> usize {
        match self {
            WeightType::Q4_0 => 2 + QK / 2,
            WeightType::Q4_1 => 4 + QK / 2,
            WeightType::Q8_0 => 2 + QK,
        }
    }
}

/// One block of 32 activations quantized to i8: `x ≈ d * q`, with `s = d * Σq`
/// (used by Q4_1's offset term). Scales are held as the f32 value of their f16.
#[derive(Clone, Copy)]
pub struct Q8Block {
    pub d: f32,
    pub s: f32,
    pub q: [i8; QK],
}

fn read_f16(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

widest!(pub fn quantize_row(x: &[f32], out: &mut Vec<Q8Block>) => quantize_row_generic(x, out));

/// Quantizes a row of activations (length a multiple of 32) like ggml's x86
/// `quantize_row_q8_0` / `quantize_row_q8_1`.
#[inline(always)]
fn quantize_row_generic(x: &[f32], out: &mut Vec<Q8Block>) {
    out.clear();
    for chunk in x.chunks_exact(QK) {
        let mut amax = 0f32;
        for v in chunk {
            amax = amax.max(v.abs());
        }
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let mut q = [0i8; QK];
        let mut sum = 0i32;
        for (qi, &v) in q.iter_mut().zip(chunk) {
            *qi = (v * id).round_ties_even() as i8;
            sum += *qi as i32;
        }
        out.push(Q8Block {
            d: round_f16(d),
            s: round_f16(d * sum as f32),
            q,
        });
    }
}

/// Quantizes the `t` rows of `x` (`[t, cols]`) to 8-bit blocks, rows in
/// parallel when there are many (each row alone, so the bits never depend
/// on the split).
pub fn quantize_rows(x: &[f32], cols: usize, t: usize) -> Vec<Q8Block> {
    let zero = Q8Block {
        d: 0.0,
        s: 0.0,
        q: [0; QK],
    };
    let nb = cols / QK;
    let mut qx = vec![zero; t * nb];
    let x = &x[..t * cols];
    let one = |(row, out): (&[f32], &mut [Q8Block])| {
        let mut blocks = Vec::with_capacity(nb);
        quantize_row(row, &mut blocks);
        out.copy_from_slice(&blocks);
    };
    if t >= 32 && rayon::current_num_threads() > 1 {
        x.par_chunks_exact(cols).zip(qx.par_chunks_exact_mut(nb)).for_each(one);
    } else {
        x.chunks_exact(cols).zip(qx.chunks_exact_mut(nb)).for_each(one);
    }
    qx
}

impl QWeight {
    pub fn from_qtensor(t: &QTensor) -> Result<Self, LlmError> {
        let dtype = match t.dtype() {
            GgmlDType::Q4_0 => WeightType::Q4_0,
            GgmlDType::Q4_1 => WeightType::Q4_1,
            GgmlDType::Q8_0 => WeightType::Q8_0,
            other => return Err(LlmError::Format(format!("weight type {other:?} is not supported yet"))),
        };
        let (rows, cols) = t.shape().dims2()?;
        if cols % QK != 0 {
            return Err(LlmError::Format(format!("row width {cols} is not a multiple of {QK}")));
        }
        let data = t.data()?.into_owned();
        if data.len() != rows * cols / QK * dtype.block_bytes() {
            return Err(LlmError::Format(format!(
                "weight of {} bytes does not fit {rows}x{cols} {dtype:?}",
                data.len()
            )));
        }
        Ok(Self {
            dtype,
            rows,
            cols,
            data,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    fn row_bytes(&self) -> usize {
        self.cols / QK * self.dtype.block_bytes()
    }

    fn row(&self, r: usize) -> &[u8] {
        let rb = self.row_bytes();
        &self.data[r * rb..(r + 1) * rb]
    }

    /// `out[(r - rows.start) * t + i]` = weight row `r` · activation row `i`,
    /// through the best kernel this CPU has ([`Kernel`]).
    fn rows_into(&self, rows: std::ops::Range<usize>, x: &[Q8Block], t: usize, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        #[allow(unsafe_code)]
        {
            use super::quant_avx2 as simd;
            let w = simd::Weights {
                data: &self.data,
                nb: self.cols / QK,
            };
            // SAFETY: `kernel()` names only kernels whose CPU features were
            // detected; shapes are checked inside.
            match kernel() {
                Kernel::Vnni => return unsafe { simd::rows_into_vnni(self.dtype, w, rows, x, t, out) },
                Kernel::Avx2 => return unsafe { simd::rows_into(self.dtype, w, rows, x, t, out) },
                Kernel::Scalar => {}
            }
        }
        let nb = self.cols / QK;
        for (k, r) in rows.enumerate() {
            let row = self.row(r);
            for (i, xrow) in x.chunks_exact(nb).take(t).enumerate() {
                out[k * t + i] = match self.dtype {
                    WeightType::Q4_0 => dot_q4_0(row, xrow),
                    WeightType::Q4_1 => dot_q4_1(row, xrow),
                    WeightType::Q8_0 => dot_q8_0(row, xrow),
                };
            }
        }
    }

    /// `x` is `[t, cols]` row-major; returns `[t, rows]`. Each weight row is
    /// read once and applied to every activation row.
    pub fn matmul(&self, x: &[f32], t: usize) -> Vec<f32> {
        self.matmul_quantized(&quantize_rows(x, self.cols, t), t)
    }

    /// [`Self::matmul`] on activations already quantized by
    /// [`quantize_rows`] (one quantization serves every matrix that reads
    /// the same input: Q, K and V; gate and up).
    pub fn matmul_quantized(&self, qx: &[Q8Block], t: usize) -> Vec<f32> {
        // Weight rows are shared out over rayon's pool (sized by the engine's
        // `threads`); each output is computed whole by one thread, so the
        // thread count never changes a result. `by_row` is `[rows, t]`.
        let mut by_row = vec![0f32; self.rows * t];
        let threads = rayon::current_num_threads();
        let tasks = threads * 4;
        let rows_per_task = self.rows.div_ceil(tasks).max(16);
        let work = |(c, chunk): (usize, &mut [f32])| {
            let start = c * rows_per_task;
            self.rows_into(start..start + chunk.len() / t, qx, t, chunk);
        };
        // Small products (a decode step's K and V) run on the calling thread:
        // waking the pool would cost more than the product.
        let parallel = threads > 1 && self.rows * t * (self.cols / QK) >= PARALLEL_MIN_BLOCKS;
        if parallel {
            by_row.par_chunks_mut(rows_per_task * t).enumerate().for_each(work);
        } else {
            by_row.chunks_mut(rows_per_task * t).enumerate().for_each(work);
        }
        if t == 1 {
            return by_row;
        }
        let mut out = vec![0f32; t * self.rows];
        let gather = |(i, row): (usize, &mut [f32])| {
            for (r, o) in row.iter_mut().enumerate() {
                *o = by_row[r * t + i];
            }
        };
        if parallel {
            out.par_chunks_mut(self.rows).enumerate().for_each(gather);
        } else {
            out.chunks_mut(self.rows).enumerate().for_each(gather);
        }
        out
    }

    /// Row `r` as f32 (for embedding lookups).
    pub fn dequantize_row(&self, r: usize, out: &mut Vec<f32>) {
        let row = self.row(r);
        for w in row.chunks_exact(self.dtype.block_bytes()) {
            let d = read_f16(w, 0);
            match self.dtype {
                WeightType::Q4_0 => {
                    let qs = &w[2..];
                    out.extend(qs.iter().map(|q| ((q & 0x0f) as i32 - 8) as f32 * d));
                    out.extend(qs.iter().map(|q| ((q >> 4) as i32 - 8) as f32 * d));
                }
                WeightType::Q4_1 => {
                    let (m, qs) = (read_f16(w, 2), &w[4..]);
                    out.extend(qs.iter().map(|q| (q & 0x0f) as f32 * d + m));
                    out.extend(qs.iter().map(|q| (q >> 4) as f32 * d + m));
                }
                WeightType::Q8_0 => out.extend(w[2..].iter().map(|&q| (q as i8) as f32 * d)),
            }
        }
    }
}

/// The quantized matmul kernels, slowest first. Each gives the same bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// Portable Rust, the reference the others are tested against.
    Scalar,
    /// AVX2 + FMA register tiles (ggml's AVX2 instruction sequence).
    Avx2,
    /// The same tiles with AVX-512 VNNI byte dot products.
    Vnni,
}

impl Kernel {
    /// Every kernel this CPU can run.
    pub(crate) fn available() -> Vec<Kernel> {
        let mut all = vec![Kernel::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            if crate::simd::level() != crate::simd::Level::Baseline {
                all.push(Kernel::Avx2);
            }
            if super::quant_avx2::vnni_available() {
                all.push(Kernel::Vnni);
            }
        }
        all
    }
}

thread_local! {
    static FORCED: std::cell::Cell<Option<Kernel>> = const { std::cell::Cell::new(None) };
}

/// The kernel matmuls use: the best available (`SWITCHYARD_SIMD=avx2` or
/// `baseline` caps it), or the one a test forced on this thread.
fn kernel() -> Kernel {
    use std::sync::OnceLock;
    static BEST: OnceLock<Kernel> = OnceLock::new();
    FORCED
        .with(|f| f.get())
        .unwrap_or_else(|| *BEST.get_or_init(|| Kernel::available().into_iter().last().unwrap_or(Kernel::Scalar)))
}

/// Runs `f` with `kernel` for this thread's matmuls (which must be one of
/// [`Kernel::available`]), so tests can compare kernels on one CPU.
#[cfg(test)]
fn with_kernel<R>(kernel: Kernel, f: impl FnOnce() -> R) -> R {
    FORCED.with(|c| c.set(Some(kernel)));
    let r = f();
    FORCED.with(|c| c.set(None));
    r
}

// The dot products follow ggml's AVX2 `ggml_vec_dot_*_q8_*`: the 32 products
// of a block are summed exactly in groups of four (eight integer lanes), each
// lane is scaled by `d_w * d_x` into its own f32 accumulator with a fused
// multiply-add, and the eight accumulators are folded by `hsum8` at the end.

/// The 8 integer lanes of one block: lane `j` sums products `4j..4j+4`.
/// Plain loops over fixed-size arrays so that the compiler vectorises them.
#[inline(always)]
fn lanes(w: &[i8; QK], x: &[i8; QK]) -> [f32; 8] {
    let mut p = [0i32; QK];
    for e in 0..QK {
        p[e] = w[e] as i32 * x[e] as i32;
    }
    let mut out = [0f32; 8];
    for (j, o) in out.iter_mut().enumerate() {
        *o = (p[4 * j] + p[4 * j + 1] + p[4 * j + 2] + p[4 * j + 3]) as f32;
    }
    out
}

/// A 4-bit block's 32 weights as bytes minus `offset`: low nibbles first,
/// then high ones (ggml's `bytes_from_nibbles_32`).
#[inline(always)]
fn nibbles(qs: &[u8], offset: i8) -> [i8; QK] {
    let mut w = [0i8; QK];
    for i in 0..QK / 2 {
        w[i] = (qs[i] & 0x0f) as i8 - offset;
        w[i + QK / 2] = (qs[i] >> 4) as i8 - offset;
    }
    w
}

#[inline(always)]
fn accumulate(acc: &mut [f32; 8], d: f32, l: &[f32; 8]) {
    for (a, v) in acc.iter_mut().zip(l) {
        *a = d.mul_add(*v, *a);
    }
}

fn dot_q4_0(row: &[u8], x: &[Q8Block]) -> f32 {
    let mut acc = [0f32; 8];
    for (w, a) in row.chunks_exact(2 + QK / 2).zip(x) {
        accumulate(&mut acc, read_f16(w, 0) * a.d, &lanes(&nibbles(&w[2..], 8), &a.q));
    }
    hsum8(&acc)
}

fn dot_q4_1(row: &[u8], x: &[Q8Block]) -> f32 {
    let mut acc = [0f32; 8];
    let mut summs = 0f32;
    for (w, a) in row.chunks_exact(4 + QK / 2).zip(x) {
        // m * s is exact in f32 (two f16 values), so fused or not is the same.
        summs += read_f16(w, 2) * a.s;
        accumulate(&mut acc, read_f16(w, 0) * a.d, &lanes(&nibbles(&w[4..], 0), &a.q));
    }
    hsum8(&acc) + summs
}

fn dot_q8_0(row: &[u8], x: &[Q8Block]) -> f32 {
    let mut acc = [0f32; 8];
    for (w, a) in row.chunks_exact(2 + QK).zip(x) {
        let mut q = [0i8; QK];
        for (d, s) in q.iter_mut().zip(&w[2..]) {
            *d = *s as i8;
        }
        accumulate(&mut acc, read_f16(w, 0) * a.d, &lanes(&q, &a.q));
    }
    hsum8(&acc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    fn weights(dtype: GgmlDType, rows: usize, cols: usize) -> Result<(QWeight, Vec<f32>), LlmError> {
        let vals: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.3)
            .collect();
        let t = Tensor::from_vec(vals, (rows, cols), &Device::Cpu)?;
        let q = QTensor::quantize(&t, dtype)?;
        let deq = q.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
        Ok((QWeight::from_qtensor(&q)?, deq))
    }

    #[test]
    fn matmul_is_close_to_float_matmul_on_dequantized_weights() -> Result<(), LlmError> {
        for dtype in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let (rows, cols, t) = (5, 96, 3);
            let (w, deq) = weights(dtype, rows, cols)?;
            let x: Vec<f32> = (0..t * cols).map(|i| ((i * 31 % 17) as f32 - 8.0) / 8.0).collect();
            let y = w.matmul(&x, t);
            for i in 0..t {
                for r in 0..rows {
                    let want: f32 = (0..cols).map(|k| deq[r * cols + k] * x[i * cols + k]).sum();
                    let got = y[i * rows + r];
                    assert!(
                        (got - want).abs() < 0.02 * (1.0 + want.abs()),
                        "{dtype:?} [{i},{r}]: {got} vs {want}"
                    );
                }
            }
            let mut row = Vec::new();
            w.dequantize_row(2, &mut row);
            assert_eq!(row, deq[2 * cols..3 * cols]);
        }
        Ok(())
    }

    #[test]
    fn activation_quantization_follows_ggml() {
        let mut x = [0f32; QK];
        // amax 127 makes the scale exactly 1, so the rounding rule shows.
        x[..4].copy_from_slice(&[127.0, -63.5, 1.25, 2.5]);
        let mut out = Vec::new();
        quantize_row(&x, &mut out);
        let b = out[0];
        // Ties go to even (-64, 2), not away from zero (-64, 3).
        assert_eq!(&b.q[..4], &[127, -64, 1, 2]);
        assert_eq!(b.d, 1.0);
        assert_eq!(b.s, (127 - 64 + 1 + 2) as f32);
        let mut tiny = [0f32; QK];
        tiny[0] = 1e-3;
        quantize_row(&tiny, &mut out);
        assert_eq!(out[0].s, round_f16(1e-3 / 127.0 * 127.0));
    }

    #[test]
    fn simd_tiles_give_the_scalar_bits() -> Result<(), LlmError> {
        eprintln!("kernels on this CPU: {:?}", Kernel::available());
        // Odd shapes: 7 rows (a 4-row tile and 3 single rows), 1 to 5 tokens
        // (pairs and a single), 3 and 8 blocks per row.
        for dtype in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0] {
            for cols in [96, 256] {
                let (w, _) = weights(dtype, 7, cols)?;
                for t in 1..=5usize {
                    let x: Vec<f32> = (0..t * cols)
                        .map(|i| (((i + t * 131) * 2654435761usize % 10007) as f32 / 5003.0 - 1.0) * (1 + t) as f32)
                        .collect();
                    let mut qx = Vec::new();
                    for row in x.chunks_exact(cols) {
                        let mut q = Vec::new();
                        quantize_row(row, &mut q);
                        qx.extend(q);
                    }
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    let mut slow = vec![0f32; 7 * t];
                    with_kernel(Kernel::Scalar, || w.rows_into(0..7, &qx, t, &mut slow));
                    for kernel in Kernel::available() {
                        let mut fast = vec![0f32; 7 * t];
                        with_kernel(kernel, || w.rows_into(0..7, &qx, t, &mut fast));
                        assert_eq!(bits(&fast), bits(&slow), "{kernel:?} {dtype:?} cols {cols} t {t}");
                        // A sub-range writes from the start of its output.
                        let mut part = vec![0f32; 2 * t];
                        with_kernel(kernel, || w.rows_into(5..7, &qx, t, &mut part));
                        assert_eq!(bits(&part), bits(&slow[5 * t..]), "{kernel:?}");
                    }
                }
            }
        }
        Ok(())
    }
}
