//! Causal grouped-query attention over an f16 KV cache, in the arithmetic
//! order of llama.cpp's CPU path with flash attention off: queries, keys,
//! values and probabilities rounded to f16; `K·q` and `V·p` as f16 dot
//! products (tinyBLAS when several tokens run at once, `ggml_vec_dot_f16` for
//! one); softmax as in [`super::ggml_order::softmax`].

use super::ggml_order::{hsum8, reduce_f32x8x4, round_f16, softmax};
use super::kv::LayerKv;
use crate::simd::widest;
use rayon::prelude::*;

/// Which ggml kernel an f16 matmul goes through, which fixes how the terms
/// of each dot product are spread over accumulator lanes and summed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DotOrder {
    /// tinyBLAS (two or more query tokens): 8 lanes, term `e` in lane `e % 8`.
    Tiled,
    /// `ggml_vec_dot_f16` (one query token): 4×8 lanes, term `e` in `e % 32`.
    Vector,
}

impl DotOrder {
    fn width(self) -> usize {
        match self {
            DotOrder::Tiled => 8,
            DotOrder::Vector => 32,
        }
    }

    #[inline(always)]
    fn reduce(self, acc: &[f32; 32]) -> f32 {
        match self {
            DotOrder::Tiled => {
                let mut l = [0f32; 8];
                l.copy_from_slice(&acc[..8]);
                hsum8(&l)
            }
            DotOrder::Vector => {
                let mut a = [[0f32; 8]; 4];
                for (i, lanes) in a.iter_mut().enumerate() {
                    lanes.copy_from_slice(&acc[i * 8..i * 8 + 8]);
                }
                reduce_f32x8x4(&a)
            }
        }
    }

    #[inline(always)]
    fn dot(self, x: &[f32], y: &[f32]) -> f32 {
        let mut acc = [0f32; 32];
        match self {
            DotOrder::Tiled => lanes::<8>(x, y, &mut acc),
            DotOrder::Vector => lanes::<32>(x, y, &mut acc),
        }
        self.reduce(&acc)
    }
}

/// `acc[e % W] = x[e]·y[e] + acc[e % W]` (fused), terms in order: one
/// W-wide vector FMA per chunk once compiled by [`widest!`].
#[inline(always)]
fn lanes<const W: usize>(x: &[f32], y: &[f32], acc: &mut [f32; 32]) {
    let (xc, yc) = (x.chunks_exact(W), y.chunks_exact(W));
    let (xr, yr) = (xc.remainder(), yc.remainder());
    for (a, b) in xc.zip(yc) {
        for l in 0..W {
            acc[l] = a[l].mul_add(b[l], acc[l]);
        }
    }
    for (l, (a, b)) in xr.iter().zip(yr).enumerate() {
        acc[l] = a.mul_add(*b, acc[l]);
    }
}

/// Shape of the attention: `n_head` query heads sharing `n_head_kv` KV heads.
#[derive(Clone, Copy)]
pub struct Heads {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
}

widest!(pub fn attention(q: &[f32], kv: &LayerKv, pos: usize, heads: Heads, out: &mut [f32]) => attention_generic(q, kv, pos, heads, out));

/// `q` is `[t, n_head * head_dim]` for positions `pos..pos + t`, whose keys
/// and values are already in `kv`. Writes `[t, n_head * head_dim]` to `out`.
/// Tokens of a prompt are shared out over rayon's pool; each output row is
/// computed whole by one thread, so the thread count never changes a result.
#[inline(always)]
fn attention_generic(q: &[f32], kv: &LayerKv, pos: usize, heads: Heads, out: &mut [f32]) {
    let width = heads.n_head * heads.head_dim;
    let t = q.len() / width;
    let order = if t >= 2 { DotOrder::Tiled } else { DotOrder::Vector };
    let scratch = || Scratch::new(pos + t, order.width() * heads.head_dim);
    let out = &mut out[..t * width];
    if t > 1 && rayon::current_num_threads() > 1 {
        out.par_chunks_mut(width)
            .enumerate()
            .for_each_init(scratch, |s, (i, o)| token(q, kv, pos + i, i, heads, order, s, o));
    } else {
        let mut s = scratch();
        for (i, o) in out.chunks_mut(width).enumerate() {
            token(q, kv, pos + i, i, heads, order, &mut s, o);
        }
    }
}

/// Buffers of one thread's share of an attention call.
struct Scratch {
    qh: Vec<f32>,
    probs: Vec<f32>,
    /// Lane-major accumulators, `acc[lane * head_dim + d]`: adding one value
    /// row touches one contiguous run, which vectorises.
    acc: Vec<f32>,
}

impl Scratch {
    fn new(keys: usize, acc: usize) -> Self {
        Self {
            qh: Vec::new(),
            probs: Vec::with_capacity(keys),
            acc: vec![0f32; acc],
        }
    }
}

/// Every head of query row `i` (at position `at`) into `out`, `[n_head * hd]`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn token(
    q: &[f32],
    kv: &LayerKv,
    at: usize,
    i: usize,
    heads: Heads,
    order: DotOrder,
    s: &mut Scratch,
    out: &mut [f32],
) {
    let Heads {
        n_head,
        n_head_kv,
        head_dim: hd,
    } = heads;
    let w = order.width();
    let group = n_head / n_head_kv;
    let scale = 1.0 / (hd as f32).sqrt();
    let n = at + 1; // keys this token may see
    for h in 0..n_head {
        let (keys, values) = (kv.keys(h / group), kv.values(h / group));
        let row = (i * n_head + h) * hd;
        // Plain loops, not iterator adaptors with closures: a generic adaptor
        // is compiled without this function's CPU features and could not
        // inline the closure, costing a call per element.
        s.qh.clear();
        for &x in &q[row..row + hd] {
            s.qh.push(round_f16(x));
        }
        s.probs.clear();
        for k in keys.chunks_exact(hd).take(n) {
            s.probs.push(order.dot(k, &s.qh) * scale);
        }
        softmax(&mut s.probs);
        // out[d] = Σ_j v[j][d] p[j], term j in lane j % w, walked j-major.
        s.acc.fill(0.0);
        for (j, (vrow, p)) in values.chunks_exact(hd).zip(&s.probs).enumerate() {
            let p = round_f16(*p);
            let lane = &mut s.acc[(j % w) * hd..][..hd];
            for (a, v) in lane.iter_mut().zip(vrow) {
                *a = v.mul_add(p, *a);
            }
        }
        for (d, o) in out[h * hd..(h + 1) * hd].iter_mut().enumerate() {
            let mut lanes = [0f32; 32];
            for (l, x) in lanes.iter_mut().enumerate().take(w) {
                *x = s.acc[l * hd + d];
            }
            *o = order.reduce(&lanes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain f64 attention over the same f16-rounded inputs.
    fn reference(q: &[f32], kv: &LayerKv, pos: usize, heads: Heads) -> Vec<f32> {
        let hd = heads.head_dim;
        let t = q.len() / (heads.n_head * hd);
        let mut out = vec![0f32; q.len()];
        for i in 0..t {
            for h in 0..heads.n_head {
                let kvh = h / (heads.n_head / heads.n_head_kv);
                let qrow = &q[(i * heads.n_head + h) * hd..][..hd];
                let s: Vec<f64> = (0..=pos + i)
                    .map(|j| {
                        let k = &kv.keys(kvh)[j * hd..][..hd];
                        k.iter().zip(qrow).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() / (hd as f64).sqrt()
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::MIN, f64::max);
                let z: f64 = s.iter().map(|v| (v - m).exp()).sum();
                for d in 0..hd {
                    let o: f64 = s
                        .iter()
                        .enumerate()
                        .map(|(j, v)| (v - m).exp() / z * kv.values(kvh)[j * hd + d] as f64)
                        .sum();
                    out[(i * heads.n_head + h) * hd + d] = o as f32;
                }
            }
        }
        out
    }

    #[test]
    fn matches_float_attention_for_prefill_and_decode() {
        let heads = Heads {
            n_head: 4,
            n_head_kv: 2,
            head_dim: 8,
        };
        let val = |i: usize| round_f16(((i * 7919 % 201) as f32 - 100.0) / 50.0);
        let mut kv = LayerKv::default();
        let width = heads.n_head_kv * heads.head_dim;
        for p in 0..5 {
            let k: Vec<f32> = (0..width).map(|i| val(p * 100 + i)).collect();
            let v: Vec<f32> = (0..width).map(|i| val(p * 37 + i + 11)).collect();
            kv.push(&k, &v, heads.head_dim);
        }
        let qw = heads.n_head * heads.head_dim;
        for (pos, t) in [(0, 5), (4, 1), (2, 3)] {
            let q: Vec<f32> = (0..t * qw).map(|i| val(i * 3 + 5)).collect();
            let mut out = vec![0f32; q.len()];
            attention(&q, &kv, pos, heads, &mut out);
            let want = reference(&q, &kv, pos, heads);
            for (g, w) in out.iter().zip(&want) {
                // probabilities are rounded to f16: 1e-3 relative
                assert!((g - w).abs() < 2e-3 * (1.0 + w.abs()), "pos {pos} t {t}: {g} vs {w}");
            }
        }
    }
}
