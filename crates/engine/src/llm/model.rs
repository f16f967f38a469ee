//! The llama forward pass over quantized weights.
//!
//! Every step runs in the arithmetic order of llama.cpp's x86 CPU backend
//! (see [`super::ggml_order`]): weight matmuls quantize activations to 8-bit
//! blocks, attention runs over an f16 KV cache. Greedy outputs then agree
//! with llama.cpp's token for token (tests/parity.rs).
//!
//! The cache is owned by the caller (one per sequence) so a scheduler can keep
//! many sequences at different positions against one set of weights.

use candle_core::Device;

use super::attention::{attention, Heads};
use super::ggml_order::{self, rope_cache, rope_pairs};
use super::gguf::{LlamaConfig, LoadedGguf};
use super::kv::{KvCache, LayerKv};
use super::quant::{quantize_rows, QWeight};
use super::LlmError;
use crate::simd::widest;
use rayon::prelude::*;

struct Layer {
    attn_norm: Vec<f32>,
    wq: QWeight,
    wk: QWeight,
    wv: QWeight,
    wo: QWeight,
    ffn_norm: Vec<f32>,
    w_gate: QWeight,
    w_up: QWeight,
    w_down: QWeight,
}

pub struct LlamaModel {
    config: LlamaConfig,
    embeddings: QWeight,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    /// None when the model ties its output layer to the embeddings.
    output: Option<QWeight>,
}

/// Receives named intermediate tensors (llama.cpp's names, e.g. `ffn_inp-3`)
/// for comparing a forward pass against another implementation's.
pub type Tracer<'a> = &'a mut dyn FnMut(&str, usize, &[f32]);

impl LlamaModel {
    pub fn load(gguf: &mut LoadedGguf) -> Result<Self, LlmError> {
        let config = gguf.llama_config()?;
        let mut qmm = |name: &str| -> Result<QWeight, LlmError> { QWeight::from_qtensor(&gguf.tensor(name)?) };
        let mut layers = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let p = format!("blk.{i}");
            layers.push(Layer {
                wq: qmm(&format!("{p}.attn_q.weight"))?,
                wk: qmm(&format!("{p}.attn_k.weight"))?,
                wv: qmm(&format!("{p}.attn_v.weight"))?,
                wo: qmm(&format!("{p}.attn_output.weight"))?,
                w_gate: qmm(&format!("{p}.ffn_gate.weight"))?,
                w_up: qmm(&format!("{p}.ffn_up.weight"))?,
                w_down: qmm(&format!("{p}.ffn_down.weight"))?,
                attn_norm: Vec::new(),
                ffn_norm: Vec::new(),
            });
        }
        let mut vector = |name: &str| -> Result<Vec<f32>, LlmError> {
            Ok(gguf
                .tensor(name)?
                .dequantize(&Device::Cpu)?
                .flatten_all()?
                .to_vec1::<f32>()?)
        };
        for (i, layer) in layers.iter_mut().enumerate() {
            layer.attn_norm = vector(&format!("blk.{i}.attn_norm.weight"))?;
            layer.ffn_norm = vector(&format!("blk.{i}.ffn_norm.weight"))?;
        }
        let norm = vector("output_norm.weight")?;
        let embeddings = QWeight::from_qtensor(&gguf.tensor("token_embd.weight")?)?;
        let output = if gguf.has_tensor("output.weight") {
            Some(QWeight::from_qtensor(&gguf.tensor("output.weight")?)?)
        } else {
            None
        };
        Ok(Self {
            config,
            embeddings,
            layers,
            norm,
            output,
        })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Runs `tokens` (at positions `cache.len()..`) through the model, appends
    /// their keys and values to `cache`, and returns the logits of the last one.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>, LlmError> {
        self.forward_traced(tokens, cache, &mut |_, _, _| {})
    }

    /// [`Self::forward`], handing each intermediate tensor to `trace`.
    pub fn forward_traced(&self, tokens: &[u32], cache: &mut KvCache, trace: Tracer) -> Result<Vec<f32>, LlmError> {
        let mut seqs = [SeqStep { tokens, cache }];
        let logits = self.forward_batch_traced(&mut seqs, trace)?;
        logits
            .into_iter()
            .next()
            .ok_or_else(|| LlmError::Format("no logits".into()))
    }

    /// One forward pass over several sequences at their own positions: each
    /// weight matrix is applied once to the rows of all of them, attention
    /// runs per sequence over its own cache. Returns each sequence's logits
    /// for its last token. Every sequence gets exactly the bits it would get
    /// alone: matmul rows are independent, and attention's order depends only
    /// on the sequence's own token count.
    pub fn forward_batch(&self, seqs: &mut [SeqStep<'_>]) -> Result<Vec<Vec<f32>>, LlmError> {
        self.forward_batch_traced(seqs, &mut |_, _, _| {})
    }

    /// [`Self::forward_batch`], handing each intermediate tensor (all rows of
    /// the step) to `trace`.
    pub fn forward_batch_traced(&self, seqs: &mut [SeqStep<'_>], trace: Tracer) -> Result<Vec<Vec<f32>>, LlmError> {
        let c = &self.config;
        let d = c.n_embd;
        let mut x = Vec::new();
        // (first row, tokens, position) of each sequence in the step.
        let mut spans = Vec::with_capacity(seqs.len());
        for s in seqs.iter() {
            let (t, pos) = (s.tokens.len(), s.cache.len());
            if t == 0 || pos + t > c.context_length {
                return Err(LlmError::Format(format!(
                    "cannot run {t} tokens at position {pos}: context window is {}",
                    c.context_length
                )));
            }
            spans.push((x.len() / d, t, pos));
            for &id in s.tokens {
                if id as usize >= self.embeddings.rows() {
                    return Err(LlmError::Format(format!("token id {id} is outside the vocabulary")));
                }
                self.embeddings.dequantize_row(id as usize, &mut x);
            }
        }
        let total = x.len() / d;
        if total == 0 {
            return Ok(Vec::new());
        }
        let heads = Heads {
            n_head: c.n_head,
            n_head_kv: c.n_head_kv,
            head_dim: c.head_dim,
        };
        let half = c.head_dim / 2;
        let (mut cos, mut sin) = (vec![0f32; total * half], vec![0f32; total * half]);
        for &(start, t, pos) in &spans {
            for i in 0..t {
                let r = (start + i) * half..(start + i + 1) * half;
                rope_cache(pos + i, c.head_dim, c.rope_base, &mut cos[r.clone()], &mut sin[r]);
            }
        }
        let rope = |v: &mut [f32]| rope_rows(v, c.head_dim, &cos, &sin);
        for s in seqs.iter_mut() {
            s.cache.ensure_layers(c.n_layer);
        }
        let (qw, kw) = (c.n_head * c.head_dim, c.n_head_kv * c.head_dim);
        let mut h = vec![0f32; total * d];
        let mut attn = vec![0f32; total * qw];
        for (i, layer) in self.layers.iter().enumerate() {
            norm_rows(&x, &layer.attn_norm, c.rms_eps, &mut h);
            trace("attn_norm", i, &h);
            let hq = quantize_rows(&h, d, total);
            let mut q = layer.wq.matmul_quantized(&hq, total);
            let mut k = layer.wk.matmul_quantized(&hq, total);
            let v = layer.wv.matmul_quantized(&hq, total);
            rope(&mut q);
            rope(&mut k);
            trace("Qcur", i, &q);
            trace("Kcur", i, &k);
            trace("Vcur", i, &v);
            // Each sequence's attention reads only its own cache and writes
            // only its own rows: sequences of a batch run in parallel.
            let mut jobs = Vec::with_capacity(seqs.len());
            let mut rest = &mut attn[..];
            for (s, &(start, t, pos)) in seqs.iter_mut().zip(&spans) {
                let kv = s.cache.layer_mut(i);
                let rows = start * kw..(start + t) * kw;
                for (kr, vr) in k[rows.clone()].chunks_exact(kw).zip(v[rows].chunks_exact(kw)) {
                    kv.push(kr, vr, c.head_dim);
                }
                let (out, tail) = std::mem::take(&mut rest).split_at_mut(t * qw);
                rest = tail;
                jobs.push((&q[start * qw..(start + t) * qw], &*kv, pos, out));
            }
            let run = |(q, kv, pos, out): (&[f32], &LayerKv, usize, &mut [f32])| attention(q, kv, pos, heads, out);
            if jobs.len() > 1 && rayon::current_num_threads() > 1 {
                jobs.into_par_iter().for_each(run);
            } else {
                jobs.into_iter().for_each(run);
            }
            trace("kqv_out", i, &attn);
            let mut o = layer.wo.matmul(&attn, total);
            trace("attn_out", i, &o);
            // Only each sequence's last token gives logits, so after the last
            // layer's attention the other rows are dropped (as llama.cpp does).
            let rows = if i + 1 == self.layers.len() {
                x = last_rows(&x, d, &spans);
                o = last_rows(&o, d, &spans);
                h.truncate(spans.len() * d);
                spans.len()
            } else {
                total
            };
            add(&mut x, &o);
            trace("ffn_inp", i, &x);
            norm_rows(&x, &layer.ffn_norm, c.rms_eps, &mut h);
            trace("ffn_norm", i, &h);
            let hq = quantize_rows(&h, d, rows);
            let gate = layer.w_gate.matmul_quantized(&hq, rows);
            let up = layer.w_up.matmul_quantized(&hq, rows);
            trace("ffn_gate", i, &gate);
            trace("ffn_up", i, &up);
            let mut act = vec![0f32; gate.len()];
            swiglu(&gate, &up, &mut act);
            trace("ffn_swiglu", i, &act);
            let down = layer.w_down.matmul(&act, rows);
            trace("ffn_out", i, &down);
            add(&mut x, &down);
            trace("l_out", i, &x);
        }
        for (s, &(_, t, _)) in seqs.iter_mut().zip(&spans) {
            s.cache.advance(t);
        }
        let mut last = vec![0f32; x.len()];
        norm_rows(&x, &self.norm, c.rms_eps, &mut last);
        trace("result_norm", 0, &last);
        let output = self.output.as_ref().unwrap_or(&self.embeddings);
        let logits = output.matmul(&last, spans.len());
        Ok(logits.chunks_exact(output.rows()).map(<[f32]>::to_vec).collect())
    }
}

/// One sequence's part of [`LlamaModel::forward_batch`]: its new tokens and
/// the cache they extend (at position `cache.len()`).
pub struct SeqStep<'a> {
    pub tokens: &'a [u32],
    pub cache: &'a mut KvCache,
}

/// The last row of each span of `x` (rows of `width`).
fn last_rows(x: &[f32], width: usize, spans: &[(usize, usize, usize)]) -> Vec<f32> {
    let mut out = Vec::with_capacity(spans.len() * width);
    for &(start, t, _) in spans {
        out.extend_from_slice(&x[(start + t - 1) * width..(start + t) * width]);
    }
    out
}

widest!(fn norm_rows(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) => norm_rows_generic(x, w, eps, out));
widest!(fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) => ggml_order::swiglu(gate, up, out));
widest!(fn rope_rows(v: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) => rope_rows_generic(v, head_dim, cos, sin));

/// Rotates every head of each of the `cos.len() / (head_dim / 2)` rows of `v`
/// by its row's angles.
#[inline(always)]
fn rope_rows_generic(v: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
    let half = head_dim / 2;
    let t = cos.len() / half;
    let width = v.len() / t;
    for (i, row) in v.chunks_exact_mut(width).enumerate() {
        let r = i * half..(i + 1) * half;
        for head in row.chunks_exact_mut(head_dim) {
            rope_pairs(head, &cos[r.clone()], &sin[r.clone()]);
        }
    }
}

#[inline(always)]
fn norm_rows_generic(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    for (xr, or) in x.chunks_exact(w.len()).zip(out.chunks_exact_mut(w.len())) {
        ggml_order::rms_norm(xr, w, eps, or);
    }
}

fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
