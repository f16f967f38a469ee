//! A bounds-checked front for the `gemm` crate's f32 matrix product.
//!
//! `gemm` (the crate candle's CPU matmul runs on) takes raw pointers and
//! strides; this wrapper takes slices plus a [`Layout`] each, checks that every
//! element the layout reaches lies inside its slice, and only then calls it.
//! Strided layouts let the encoder multiply views in place — one head's
//! columns of the packed Q/K/V buffer, K read as Kᵀ — with no copies.

use gemm::Parallelism;

/// Where a `rows × cols` matrix lives in a slice: element `(r, c)` is at
/// `r * row_stride + c * col_stride`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl Layout {
    /// A dense row-major matrix whose rows are `row_stride` apart.
    pub fn rows(rows: usize, cols: usize, row_stride: usize) -> Self {
        Self {
            rows,
            cols,
            row_stride,
            col_stride: 1,
        }
    }

    /// The transpose of `self`, as a view of the same elements.
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    /// One past the furthest element the layout reaches (0 when empty).
    fn span(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            return 0;
        }
        (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride + 1
    }
}

/// `dst = (accumulate ? dst : 0) + scale · lhs · rhs`, on `threads` of rayon's
/// pool (1 = the calling thread only).
///
/// # Panics
/// When the shapes disagree, a layout reaches past its slice, or `dst`'s
/// layout could name one element twice (it must be row-major with rows at
/// least `cols` apart). These are programming errors in the caller, never
/// caused by input data: every shape here comes from the model's config.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    dst: &mut [f32],
    d: Layout,
    accumulate: bool,
    lhs: &[f32],
    l: Layout,
    rhs: &[f32],
    r: Layout,
    scale: f32,
    threads: usize,
) {
    assert_eq!((l.rows, r.cols), (d.rows, d.cols), "matmul output shape");
    assert_eq!(l.cols, r.rows, "matmul inner dimension");
    assert!(
        d.col_stride == 1 && (d.rows <= 1 || d.row_stride >= d.cols),
        "dst overlaps itself"
    );
    assert!(
        d.span() <= dst.len() && l.span() <= lhs.len() && r.span() <= rhs.len(),
        "matmul out of bounds"
    );
    if d.rows == 0 || d.cols == 0 {
        return;
    }
    if l.cols == 0 {
        if !accumulate {
            for row in dst.chunks_mut(d.row_stride.max(1)).take(d.rows) {
                row[..d.cols].fill(0.0);
            }
        }
        return;
    }
    let parallelism = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    let stride = |s: usize| s as isize;
    // SAFETY: the asserts above prove every element each layout names lies
    // inside its slice, and that `dst`'s elements are distinct. `dst` is a
    // unique borrow, so it cannot alias `lhs` or `rhs`, which gemm only reads.
    // Strides fit in isize because they index within a slice.
    #[allow(unsafe_code)]
    unsafe {
        gemm::gemm(
            d.rows,
            d.cols,
            l.cols,
            dst.as_mut_ptr(),
            stride(d.col_stride),
            stride(d.row_stride),
            accumulate,
            lhs.as_ptr(),
            stride(l.col_stride),
            stride(l.row_stride),
            rhs.as_ptr(),
            stride(r.col_stride),
            stride(r.row_stride),
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], l: Layout, b: &[f32], r: Layout) -> Vec<f64> {
        let mut out = vec![0f64; l.rows * r.cols];
        for i in 0..l.rows {
            for j in 0..r.cols {
                out[i * r.cols + j] = (0..l.cols)
                    .map(|k| {
                        a[i * l.row_stride + k * l.col_stride] as f64 * b[k * r.row_stride + j * r.col_stride] as f64
                    })
                    .sum();
            }
        }
        out
    }

    #[test]
    fn strided_views_multiply_like_the_naive_loop() {
        // lhs: a 5×3 window of a 5×7 buffer; rhs: the transpose of a 4×3 window.
        let a: Vec<f32> = (0..35).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..4 * 9).map(|i| (i as f32 * 0.11).cos()).collect();
        let l = Layout::rows(5, 3, 7);
        let r = Layout::rows(4, 3, 9).t();
        let want = naive(&a[2..], l, &b[1..], r);
        for threads in [1, 2] {
            let mut dst = vec![1f32; 5 * 6];
            matmul(
                &mut dst,
                Layout::rows(5, 4, 6),
                false,
                &a[2..],
                l,
                &b[1..],
                r,
                0.5,
                threads,
            );
            for i in 0..5 {
                for j in 0..4 {
                    assert!((dst[i * 6 + j] as f64 - 0.5 * want[i * 4 + j]).abs() < 1e-5);
                }
                assert_eq!(
                    &dst[i * 6 + 4..i * 6 + 6],
                    &[1.0, 1.0],
                    "columns outside the view are untouched"
                );
            }
            let mut acc = vec![2f32; 20];
            matmul(
                &mut acc,
                Layout::rows(5, 4, 4),
                true,
                &a[2..],
                l,
                &b[1..],
                r,
                1.0,
                threads,
            );
            for (got, want) in acc.iter().zip(&want) {
                assert!((*got as f64 - (2.0 + want)).abs() < 1e-5);
            }
        }
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn a_layout_past_its_slice_is_refused() {
        let a = vec![0f32; 5];
        let mut dst = vec![0f32; 4];
        matmul(
            &mut dst,
            Layout::rows(2, 2, 2),
            false,
            &a,
            Layout::rows(2, 3, 3),
            &a,
            Layout::rows(3, 2, 2),
            1.0,
            1,
        );
    }
}
