//! From token vectors to one vector per input, as sentence-transformers'
//! Pooling and Normalize modules do it.
//!
//! Every reduction here weights tokens by the attention mask, so padding added
//! to fit an input into a batch never changes its vector.

use candle_core::{Result, Tensor, D};

use super::config::Pooling;

/// `hidden`: `(batch, seq, dim)`; `mask`: `(batch, seq)` f32 of 1/0.
/// Returns `(batch, dim)`.
pub(crate) fn pool(hidden: &Tensor, mask: &Tensor, mode: Pooling) -> Result<Tensor> {
    match mode {
        Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1),
        Pooling::Mean => {
            let mask = mask.unsqueeze(D::Minus1)?;
            let sum = hidden.broadcast_mul(&mask)?.sum(1)?;
            // The clamp mirrors sentence-transformers; inputs are never empty.
            let count = mask.sum(1)?.maximum(1e-9)?;
            sum.broadcast_div(&count)
        }
        Pooling::Max => {
            // Padding becomes -1e9 (sentence-transformers' fill value) so it
            // never wins the maximum.
            let keep = mask.unsqueeze(D::Minus1)?.broadcast_as(hidden.shape())?.ne(0f32)?;
            let fill = Tensor::full(-1e9f32, hidden.shape(), hidden.device())?;
            keep.where_cond(hidden, &fill)?.max(1)
        }
    }
}

/// L2 normalisation of each row, with torch's `F.normalize` floor on the
/// norm so an all-zero vector stays zero instead of becoming NaN.
pub(crate) fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.maximum(1e-12)?;
    x.broadcast_div(&norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn rows(t: &Tensor) -> Vec<Vec<f32>> {
        t.to_vec2().unwrap()
    }

    #[test]
    fn pooling_ignores_padding() {
        let dev = Device::Cpu;
        // One input: 2 real tokens then 1 pad with huge values that must not leak.
        let hidden = Tensor::new(&[[[1f32, -2.0], [3.0, 4.0], [100.0, 100.0]]], &dev).unwrap();
        let mask = Tensor::new(&[[1f32, 1.0, 0.0]], &dev).unwrap();
        assert_eq!(
            rows(&pool(&hidden, &mask, Pooling::Mean).unwrap()),
            vec![vec![2.0, 1.0]]
        );
        assert_eq!(rows(&pool(&hidden, &mask, Pooling::Max).unwrap()), vec![vec![3.0, 4.0]]);
        assert_eq!(
            rows(&pool(&hidden, &mask, Pooling::Cls).unwrap()),
            vec![vec![1.0, -2.0]]
        );
    }

    #[test]
    fn normalize_gives_unit_rows_and_keeps_zero() {
        let x = Tensor::new(&[[3f32, 4.0], [0.0, 0.0]], &Device::Cpu).unwrap();
        assert_eq!(rows(&l2_normalize(&x).unwrap()), vec![vec![0.6, 0.8], vec![0.0, 0.0]]);
    }
}
