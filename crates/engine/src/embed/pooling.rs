//! From token vectors to one vector per input, as sentence-transformers'
//! Pooling and Normalize modules do it.

use super::config::Pooling;

/// `tokens`: one input's token vectors, `len × dims` row-major (no padding:
/// the encoder packs inputs). Returns the pooled vector.
pub(crate) fn pool(tokens: &[f32], dims: usize, mode: Pooling) -> Vec<f32> {
    let mut rows = tokens.chunks_exact(dims);
    let Some(first) = rows.next() else {
        return vec![0.0; dims];
    };
    let mut out = first.to_vec();
    match mode {
        Pooling::Cls => {}
        Pooling::Mean => {
            let mut count = 1f32;
            for row in rows {
                out.iter_mut().zip(row).for_each(|(o, x)| *o += x);
                count += 1.0;
            }
            out.iter_mut().for_each(|o| *o /= count);
        }
        Pooling::Max => {
            for row in rows {
                out.iter_mut().zip(row).for_each(|(o, x)| *o = o.max(*x));
            }
        }
    }
    out
}

/// L2 normalisation in place, with torch's `F.normalize` floor on the norm so
/// an all-zero vector stays zero instead of becoming NaN.
pub(crate) fn l2_normalize(x: &mut [f32]) {
    let norm = x.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
    x.iter_mut().for_each(|v| *v /= norm);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_modes() {
        let tokens = [1f32, -2.0, 3.0, 4.0, -1.0, 1.0];
        assert_eq!(pool(&tokens, 2, Pooling::Mean), vec![1.0, 1.0]);
        assert_eq!(pool(&tokens, 2, Pooling::Max), vec![3.0, 4.0]);
        assert_eq!(pool(&tokens, 2, Pooling::Cls), vec![1.0, -2.0]);
    }

    #[test]
    fn normalize_gives_unit_rows_and_keeps_zero() {
        let mut x = [3f32, 4.0];
        l2_normalize(&mut x);
        assert_eq!(x, [0.6, 0.8]);
        let mut z = [0f32, 0.0];
        l2_normalize(&mut z);
        assert_eq!(z, [0.0, 0.0]);
    }
}
