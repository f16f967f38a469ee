//! A BERT encoder over packed token rows.
//!
//! The inputs of a batch are laid end to end, one row per token, with no
//! padding: every dense layer is then one matrix product over all the batch's
//! tokens, and only attention looks at sequence boundaries (one product per
//! sequence and head, on strided views of the packed Q/K/V buffer). So an
//! input's vector does not depend on what else is in its batch beyond the
//! rounding of the shared products, and no work is spent on padding.
//!
//! Written here rather than taken from candle-transformers: that crate pads
//! batches, compiles every model family (minutes on a small machine), and
//! its tensors allocate a buffer per op. Weights are read with candle's
//! safetensors loader and kept as plain f32 rows; products go through the
//! `gemm` crate ([`super::gemm`]). Weight names follow Hugging Face's
//! `BertModel`, with or without a `bert.` prefix.

use std::sync::Mutex;

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use super::config::{Activation, BertConfig};
use super::gemm::{matmul, Layout};
use super::ops::{activate, layer_norm, softmax};

/// A linear layer. The weight is kept transposed, `(in, out)` row-major:
/// with output columns contiguous, `gemm` streams it straight from memory
/// instead of repacking the whole matrix on every call, which cost a fifth
/// of the time when batches are small.
struct Dense {
    weight_t: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

impl Dense {
    fn load(vb: VarBuilder, inputs: usize, outputs: usize) -> Result<Self> {
        Ok(Self {
            weight_t: flat(vb.get((outputs, inputs), "weight")?.t()?)?,
            bias: flat(vb.get(outputs, "bias")?)?,
            inputs,
            outputs,
        })
    }

    /// Q, K and V stacked into one `(3·hidden, hidden)` layer.
    fn stack(parts: [Dense; 3]) -> Self {
        let [q, k, v] = parts;
        Self {
            inputs: q.inputs,
            outputs: q.outputs + k.outputs + v.outputs,
            weight_t: interleave_columns(&[&q.weight_t, &k.weight_t, &v.weight_t], q.inputs),
            bias: [q.bias, k.bias, v.bias].concat(),
        }
    }

    /// `out = x·Wᵀ + b (+ residual)` for `rows` rows.
    fn forward(&self, x: &[f32], rows: usize, out: &mut [f32], residual: Option<&[f32]>, threads: usize) {
        let n = self.outputs;
        let out = &mut out[..rows * n];
        match residual {
            Some(res) => {
                for (o, r) in out.chunks_exact_mut(n).zip(res.chunks_exact(n)) {
                    for ((o, r), b) in o.iter_mut().zip(r).zip(&self.bias) {
                        *o = r + b;
                    }
                }
            }
            None => out.chunks_exact_mut(n).for_each(|o| o.copy_from_slice(&self.bias)),
        }
        matmul(
            out,
            Layout::rows(rows, n, n),
            true,
            x,
            Layout::rows(rows, self.inputs, self.inputs),
            &self.weight_t,
            Layout::rows(self.inputs, n, n),
            1.0,
            threads,
        );
    }
}

struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

impl Norm {
    fn load(vb: VarBuilder, size: usize) -> Result<Self> {
        Ok(Self {
            gamma: flat(vb.get(size, "weight")?)?,
            beta: flat(vb.get(size, "bias")?)?,
        })
    }
}

struct Layer {
    qkv: Dense,
    attn_out: Dense,
    attn_norm: Norm,
    up: Dense,
    down: Dense,
    out_norm: Norm,
}

impl Layer {
    fn load(cfg: &BertConfig, vb: VarBuilder) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let att = vb.pp("attention");
        let proj = |name: &str| Dense::load(att.pp("self").pp(name), h, h);
        Ok(Self {
            qkv: Dense::stack([proj("query")?, proj("key")?, proj("value")?]),
            attn_out: Dense::load(att.pp("output").pp("dense"), h, h)?,
            attn_norm: Norm::load(att.pp("output").pp("LayerNorm"), h)?,
            up: Dense::load(vb.pp("intermediate").pp("dense"), h, i)?,
            down: Dense::load(vb.pp("output").pp("dense"), i, h)?,
            out_norm: Norm::load(vb.pp("output").pp("LayerNorm"), h)?,
        })
    }
}

/// Buffers of one forward pass, kept between calls so a steady stream of
/// batches does not fault fresh pages in for every one.
#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    qkv: Vec<f32>,
    heads: Vec<f32>,
    ctx: Vec<f32>,
    tmp: Vec<f32>,
    inner: Vec<f32>,
}

fn sized(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    v.resize(len, 0.0);
    &mut v[..len]
}

/// The encoder: token ids in, one vector per token out.
pub(crate) struct Bert {
    word: Vec<f32>,
    position: Vec<f32>,
    /// Row 0 of the token-type table: one-sentence inputs are all type 0.
    token_type: Vec<f32>,
    embed_norm: Norm,
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
    intermediate: usize,
    max_positions: usize,
    eps: f32,
    act: Activation,
    scratch: Mutex<Scratch>,
}

impl Bert {
    pub fn load(cfg: &BertConfig, vb: VarBuilder) -> Result<Self> {
        // Checkpoints saved from BertFor* heads prefix every name with `bert.`.
        let vb = if vb.contains_tensor("embeddings.word_embeddings.weight") {
            vb
        } else {
            vb.pp("bert")
        };
        let h = cfg.hidden_size;
        if cfg.num_attention_heads == 0 || !h.is_multiple_of(cfg.num_attention_heads) {
            candle_core::bail!("hidden_size {h} is not a multiple of num_attention_heads");
        }
        let emb = vb.pp("embeddings");
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::load(cfg, vb.pp(format!("encoder.layer.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            word: flat(emb.get((cfg.vocab_size, h), "word_embeddings.weight")?)?,
            position: flat(emb.get((cfg.max_position_embeddings, h), "position_embeddings.weight")?)?,
            token_type: flat(
                emb.get((cfg.type_vocab_size, h), "token_type_embeddings.weight")?
                    .get(0)?,
            )?,
            embed_norm: Norm::load(emb.pp("LayerNorm"), h)?,
            layers,
            hidden: h,
            heads: cfg.num_attention_heads,
            intermediate: cfg.intermediate_size,
            max_positions: cfg.max_position_embeddings,
            eps: cfg.layer_norm_eps as f32,
            act: cfg.activation().map_err(|e| candle_core::Error::Msg(e.to_string()))?,
            scratch: Mutex::new(Scratch::default()),
        })
    }

    /// Runs the encoder over `inputs` (token ids already checked against the
    /// vocabulary and the position table) and hands each input's token
    /// vectors, `len × hidden` row-major, to `each`.
    pub fn forward(&self, inputs: &[Vec<u32>], mut each: impl FnMut(usize, &[f32])) -> Result<()> {
        if let Some(long) = inputs.iter().find(|ids| ids.len() > self.max_positions) {
            candle_core::bail!(
                "input of {} tokens exceeds {} positions",
                long.len(),
                self.max_positions
            );
        }
        let h = self.hidden;
        let tokens: usize = inputs.iter().map(Vec::len).sum();
        if tokens == 0 {
            // Only empty inputs (the caller refuses those) or no inputs at all.
            inputs.iter().enumerate().for_each(|(i, _)| each(i, &[]));
            return Ok(());
        }
        let threads = rayon::current_num_threads();
        // A second caller at the same moment gets its own buffers.
        let mut own = Scratch::default();
        let mut shared = self.scratch.try_lock();
        let s: &mut Scratch = match shared.as_deref_mut() {
            Ok(s) => s,
            Err(_) => &mut own,
        };
        let x = sized(&mut s.x, tokens * h);
        let qkv = sized(&mut s.qkv, tokens * 3 * h);
        let heads = sized(&mut s.heads, tokens * h);
        let ctx = sized(&mut s.ctx, tokens * h);
        let tmp = sized(&mut s.tmp, tokens * h);
        let inner = sized(&mut s.inner, tokens * self.intermediate);

        self.embed(inputs, tmp);
        layer_norm(tmp, x, &self.embed_norm.gamma, &self.embed_norm.beta, self.eps);
        for layer in &self.layers {
            layer.qkv.forward(x, tokens, qkv, None, threads);
            self.attention(inputs, qkv, heads, ctx);
            layer.attn_out.forward(ctx, tokens, tmp, Some(x), threads);
            layer_norm(tmp, x, &layer.attn_norm.gamma, &layer.attn_norm.beta, self.eps);
            layer.up.forward(x, tokens, inner, None, threads);
            activate(inner, self.act);
            layer.down.forward(inner, tokens, tmp, Some(x), threads);
            layer_norm(tmp, x, &layer.out_norm.gamma, &layer.out_norm.beta, self.eps);
        }
        let mut start = 0;
        for (i, ids) in inputs.iter().enumerate() {
            each(i, &x[start * h..(start + ids.len()) * h]);
            start += ids.len();
        }
        Ok(())
    }

    /// Word + token-type, then + position (Hugging Face's order of additions).
    fn embed(&self, inputs: &[Vec<u32>], out: &mut [f32]) {
        let h = self.hidden;
        let mut rows = out.chunks_exact_mut(h);
        for ids in inputs {
            for (pos, (&id, row)) in ids.iter().zip(rows.by_ref()).enumerate() {
                let word = &self.word[id as usize * h..][..h];
                let position = &self.position[pos * h..][..h];
                for (((o, w), t), p) in row.iter_mut().zip(word).zip(&self.token_type).zip(position) {
                    *o = (w + t) + p;
                }
            }
        }
    }

    /// Self-attention of every input with itself: `qkv` holds each token's
    /// Q, K and V side by side; the context vectors land in `ctx`, the
    /// layout the output projection reads. Heads run in parallel, each
    /// writing its own `tokens × head_dim` block of `heads`, gathered after.
    fn attention(&self, inputs: &[Vec<u32>], qkv: &[f32], heads: &mut [f32], ctx: &mut [f32]) {
        let h = self.hidden;
        let d = h / self.heads;
        let tokens = ctx.len() / h;
        let longest = inputs.iter().map(Vec::len).max().unwrap_or(0);
        let scale = 1.0 / (d as f32).sqrt();
        heads.par_chunks_mut(tokens * d).enumerate().for_each(|(head, out)| {
            let mut scores = vec![0f32; longest * longest];
            let mut start = 0;
            for ids in inputs {
                let len = ids.len();
                let at = start * 3 * h + head * d;
                let q = Layout::rows(len, d, 3 * h);
                let scores = &mut scores[..len * len];
                let square = Layout::rows(len, len, len);
                matmul(scores, square, false, &qkv[at..], q, &qkv[at + h..], q.t(), scale, 1);
                scores.chunks_exact_mut(len).for_each(softmax);
                let dst = &mut out[start * d..(start + len) * d];
                matmul(
                    dst,
                    Layout::rows(len, d, d),
                    false,
                    scores,
                    square,
                    &qkv[at + 2 * h..],
                    q,
                    1.0,
                    1,
                );
                start += len;
            }
        });
        for (t, row) in ctx.chunks_exact_mut(h).enumerate() {
            for (head, part) in row.chunks_exact_mut(d).enumerate() {
                part.copy_from_slice(&heads[(head * tokens + t) * d..][..d]);
            }
        }
    }
}

/// Places `(rows, cᵢ)` matrices side by side into one `(rows, Σcᵢ)` matrix.
fn interleave_columns(parts: &[&Vec<f32>], rows: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for r in 0..rows {
        for p in parts {
            let cols = p.len() / rows;
            out.extend_from_slice(&p[r * cols..(r + 1) * cols]);
        }
    }
    out
}

fn flat(t: Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}
