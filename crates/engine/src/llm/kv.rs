//! A sequence's KV cache: per layer and KV head, the f16-rounded keys and
//! values of every token so far, contiguous so attention streams them.
//!
//! Values are f16-rounded but stored as f32 (46 KB a token for SmolLM2):
//! the attention kernels then read them without conversion. Storing u16 and
//! widening in the dot products would halve the memory.
//!
//! The scheduler accounts for caches in blocks of [`BLOCK_TOKENS`] tokens and
//! reserves each cache's memory a block at a time, so the memory held is the
//! memory counted (a growing `Vec` would otherwise double its capacity).

/// Tokens per accounting block (and per prefix-cache entry).
pub const BLOCK_TOKENS: usize = 16;

/// Blocks needed to hold `tokens` tokens.
pub fn blocks_for(tokens: usize) -> usize {
    tokens.div_ceil(BLOCK_TOKENS)
}

/// Keys and values of one layer, per KV head: `len * head_dim` each.
#[derive(Default)]
pub struct LayerKv {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl LayerKv {
    /// Appends one token's keys and values (`[n_head_kv * head_dim]` each),
    /// rounded to f16 as llama.cpp's cache stores them.
    pub fn push(&mut self, k: &[f32], v: &[f32], head_dim: usize) {
        use super::ggml_order::round_f16;
        let heads = k.len() / head_dim;
        self.k.resize_with(heads, Vec::new);
        self.v.resize_with(heads, Vec::new);
        for h in 0..heads {
            let r = h * head_dim..(h + 1) * head_dim;
            self.k[h].extend(k[r.clone()].iter().map(|&x| round_f16(x)));
            self.v[h].extend(v[r].iter().map(|&x| round_f16(x)));
        }
    }

    pub fn keys(&self, head: usize) -> &[f32] {
        &self.k[head]
    }

    pub fn values(&self, head: usize) -> &[f32] {
        &self.v[head]
    }
}

/// Keys and values of one sequence, per layer.
#[derive(Default)]
pub struct KvCache {
    layers: Vec<LayerKv>,
    len: usize,
}

impl KvCache {
    /// Tokens already in the cache (the position of the next token).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(super) fn ensure_layers(&mut self, n_layer: usize) {
        self.layers.resize_with(n_layer, LayerKv::default);
    }

    pub(super) fn layer_mut(&mut self, i: usize) -> &mut LayerKv {
        &mut self.layers[i]
    }

    /// Records that the last forward pass appended `t` tokens to every layer.
    pub(super) fn advance(&mut self, t: usize) {
        self.len += t;
    }

    /// Makes room for `tokens` tokens in all, of `heads` KV heads of
    /// `head_dim`, in `n_layer` layers, without over-allocating.
    pub fn reserve(&mut self, tokens: usize, n_layer: usize, heads: usize, head_dim: usize) {
        self.ensure_layers(n_layer);
        let want = tokens * head_dim;
        for l in &mut self.layers {
            l.k.resize_with(heads, Vec::new);
            l.v.resize_with(heads, Vec::new);
            for x in l.k.iter_mut().chain(l.v.iter_mut()) {
                if x.capacity() < want {
                    x.reserve_exact(want - x.len());
                }
            }
        }
    }

    /// Copies out tokens `start..start + n` of every layer and head (keys then
    /// values per head, layer after layer), for [`Self::import`].
    pub fn export(&self, start: usize, n: usize, head_dim: usize) -> Vec<f32> {
        let hd = head_dim;
        let mut out = Vec::new();
        for l in &self.layers {
            for (k, v) in l.k.iter().zip(&l.v) {
                out.extend_from_slice(&k[start * hd..(start + n) * hd]);
                out.extend_from_slice(&v[start * hd..(start + n) * hd]);
            }
        }
        out
    }

    /// Appends `n` tokens exported by [`Self::export`] from a cache of the
    /// same model. The caller makes sure they continue this cache's tokens.
    pub fn import(&mut self, data: &[f32], n: usize, n_layer: usize, heads: usize, head_dim: usize) {
        self.ensure_layers(n_layer);
        let run = n * head_dim;
        let mut chunks = data.chunks_exact(run);
        for l in &mut self.layers {
            l.k.resize_with(heads, Vec::new);
            l.v.resize_with(heads, Vec::new);
            for (k, v) in l.k.iter_mut().zip(l.v.iter_mut()) {
                if let (Some(kc), Some(vc)) = (chunks.next(), chunks.next()) {
                    k.extend_from_slice(kc);
                    v.extend_from_slice(vc);
                }
            }
        }
        self.len += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_then_import_rebuilds_the_tokens() {
        let (layers, heads, hd) = (2, 3, 4);
        let mut a = KvCache::default();
        a.ensure_layers(layers);
        for t in 0..5 {
            for l in 0..layers {
                let k: Vec<f32> = (0..heads * hd).map(|i| (t * 100 + l * 10 + i) as f32).collect();
                let v: Vec<f32> = k.iter().map(|x| -x).collect();
                a.layer_mut(l).push(&k, &v, hd);
            }
            a.advance(1);
        }
        let mut b = KvCache::default();
        b.import(&a.export(0, 3, hd), 3, layers, heads, hd);
        b.import(&a.export(3, 2, hd), 2, layers, heads, hd);
        assert_eq!(b.len(), 5);
        for l in 0..layers {
            for h in 0..heads {
                assert_eq!(a.layers[l].keys(h), b.layers[l].keys(h));
                assert_eq!(a.layers[l].values(h), b.layers[l].values(h));
            }
        }
        b.reserve(32, layers, heads, hd);
        assert!(b.layers[0].k[0].capacity() >= 32 * hd);
        assert_eq!(blocks_for(0), 0);
        assert_eq!(blocks_for(17), 2);
    }
}
