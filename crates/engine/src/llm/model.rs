//! The llama forward pass over quantized weights.
//!
//! Weight matmuls go through candle's `QWeight`, which quantizes activations to
//! 8-bit blocks as llama.cpp does; that is what keeps greedy outputs in step
//! with llama.cpp. Attention rounds queries, keys, values and probabilities
//! through f16 the way llama.cpp's default f16 KV cache does.
//!
//! The cache is owned by the caller (one per sequence) so a scheduler can keep
//! many sequences at different positions against one set of weights.

use candle_core::{DType, Device, Tensor};

use super::gguf::{LlamaConfig, LoadedGguf};
use super::quant::QWeight;
use super::LlmError;

struct Layer {
    attn_norm: Tensor,
    wq: QWeight,
    wk: QWeight,
    wv: QWeight,
    wo: QWeight,
    ffn_norm: Tensor,
    w_gate: QWeight,
    w_up: QWeight,
    w_down: QWeight,
}

pub struct LlamaModel {
    config: LlamaConfig,
    embeddings: QWeight,
    layers: Vec<Layer>,
    norm: Tensor,
    /// None when the model ties its output layer to the embeddings.
    output: Option<QWeight>,
    cos: Tensor,
    sin: Tensor,
}

/// Keys and values of one sequence, per layer: `[n_head_kv, len, head_dim]`.
#[derive(Default)]
pub struct KvCache {
    layers: Vec<(Tensor, Tensor)>,
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
}

fn round_f16(t: &Tensor) -> candle_core::Result<Tensor> {
    t.to_dtype(DType::F16)?.to_dtype(DType::F32)
}

impl LlamaModel {
    pub fn load(gguf: &mut LoadedGguf) -> Result<Self, LlmError> {
        let config = gguf.llama_config()?;
        let dev = Device::Cpu;
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
                attn_norm: Tensor::zeros(1, DType::F32, &dev)?,
                ffn_norm: Tensor::zeros(1, DType::F32, &dev)?,
            });
        }
        for (i, layer) in layers.iter_mut().enumerate() {
            layer.attn_norm = gguf.tensor(&format!("blk.{i}.attn_norm.weight"))?.dequantize(&dev)?;
            layer.ffn_norm = gguf.tensor(&format!("blk.{i}.ffn_norm.weight"))?.dequantize(&dev)?;
        }
        let embeddings = QWeight::from_qtensor(&gguf.tensor("token_embd.weight")?)?;
        let output = if gguf.has_tensor("output.weight") {
            Some(QWeight::from_qtensor(&gguf.tensor("output.weight")?)?)
        } else {
            None
        };
        let norm = gguf.tensor("output_norm.weight")?.dequantize(&dev)?;
        let (cos, sin) = rope_tables(&config, &dev)?;
        Ok(Self {
            config,
            embeddings,
            layers,
            norm,
            output,
            cos,
            sin,
        })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Runs `tokens` (at positions `cache.len()..`) through the model, appends
    /// their keys and values to `cache`, and returns the logits of the last one.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>, LlmError> {
        self.forward_traced(tokens, cache, &mut |_, _| {})
    }

    pub fn forward_traced(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        tr: &mut dyn FnMut(String, &Tensor),
    ) -> Result<Vec<f32>, LlmError> {
        let c = &self.config;
        let t = tokens.len();
        let pos = cache.len;
        if t == 0 || pos + t > c.context_length {
            return Err(LlmError::Format(format!(
                "cannot run {t} tokens at position {pos}: context window is {}",
                c.context_length
            )));
        }
        let dev = Device::Cpu;
        let mut rows = Vec::with_capacity(t * c.n_embd);
        for &id in tokens {
            if id as usize >= self.embeddings.rows() {
                return Err(LlmError::Format(format!("token id {id} is outside the vocabulary")));
            }
            self.embeddings.dequantize_row(id as usize, &mut rows);
        }
        let mut x = Tensor::from_vec(rows, (t, c.n_embd), &dev)?;
        let cos = self.cos.narrow(0, pos, t)?;
        let sin = self.sin.narrow(0, pos, t)?;
        let mask = causal_mask(t, pos, c.n_head / c.n_head_kv, &dev)?;
        let first = cache.layers.is_empty();
        for (i, layer) in self.layers.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, c.rms_eps)?;
            tr(format!("attn_norm-{i}"), &h);
            let q = linear(&layer.wq, &h)?;
            let k = linear(&layer.wk, &h)?;
            let v = linear(&layer.wv, &h)?;
            let q = heads(&q, c.n_head, c.head_dim)?;
            let k = heads(&k, c.n_head_kv, c.head_dim)?;
            let v = heads(&v, c.n_head_kv, c.head_dim)?;
            let q = candle_nn::rotary_emb::rope_i(&q.unsqueeze(0)?, &cos, &sin)?.squeeze(0)?;
            let k = candle_nn::rotary_emb::rope_i(&k.unsqueeze(0)?, &cos, &sin)?.squeeze(0)?;
            tr(format!("Qcur-{i}"), &q.transpose(0, 1)?.contiguous()?);
            tr(format!("Kcur-{i}"), &k.transpose(0, 1)?.contiguous()?);
            tr(format!("Vcur-{i}"), &v.transpose(0, 1)?.contiguous()?);
            let (k, v) = (round_f16(&k)?, round_f16(&v)?);
            let (k, v) = if first {
                (k, v)
            } else {
                let (pk, pv) = &cache.layers[i];
                (Tensor::cat(&[pk, &k], 1)?, Tensor::cat(&[pv, &v], 1)?)
            };
            let attn = self.attention(&round_f16(&q)?, &k, &v, &mask, t)?;
            if first {
                cache.layers.push((k, v));
            } else {
                cache.layers[i] = (k, v);
            }
            tr(format!("kqv_out-{i}"), &attn);
            let x_attn = linear(&layer.wo, &attn)?;
            tr(format!("attn_out-{i}"), &x_attn);
            x = (x + x_attn)?;
            tr(format!("ffn_inp-{i}"), &x);
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, c.rms_eps)?;
            tr(format!("ffn_norm-{i}"), &h);
            let g0 = linear(&layer.w_gate, &h)?;
            tr(format!("ffn_gate-{i}"), &g0);
            let gate = candle_nn::ops::silu(&g0)?;
            let up = linear(&layer.w_up, &h)?;
            tr(format!("ffn_up-{i}"), &up);
            let sw = (gate * up)?;
            tr(format!("ffn_swiglu-{i}"), &sw);
            let down = linear(&layer.w_down, &sw)?;
            tr(format!("ffn_out-{i}"), &down);
            x = (x + down)?;
            tr(format!("l_out-{i}"), &x);
        }
        cache.len += t;
        let last = x.narrow(0, t - 1, 1)?;
        let last = candle_nn::ops::rms_norm(&last, &self.norm, c.rms_eps)?;
        tr("result_norm".into(), &last);
        let output = self.output.as_ref().unwrap_or(&self.embeddings);
        Ok(output.matmul(&last.flatten_all()?.to_vec1::<f32>()?, 1))
    }

    /// Grouped-query attention without copying keys per head: the query heads
    /// that share a key head are stacked as extra rows of one matmul.
    fn attention(&self, q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, t: usize) -> candle_core::Result<Tensor> {
        let c = &self.config;
        let group = c.n_head / c.n_head_kv;
        // q: [n_head, t, d] -> [n_head_kv, group * t, d]
        let q = q.reshape((c.n_head_kv, group * t, c.head_dim))?;
        let scale = 1.0 / (c.head_dim as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?;
        let scores = scores.broadcast_add(mask)?;
        let probs = round_f16(&candle_nn::ops::softmax_last_dim(&scores)?)?;
        let out = probs.matmul(v)?; // [n_head_kv, group * t, d]
        out.reshape((c.n_head, t, c.head_dim))?
            .transpose(0, 1)?
            .reshape((t, c.n_head * c.head_dim))
    }
}

/// `x` `[t, cols]` times the weight's transpose: `[t, rows]`.
fn linear(w: &QWeight, x: &Tensor) -> candle_core::Result<Tensor> {
    let t = x.dim(0)?;
    let y = w.matmul(&x.flatten_all()?.to_vec1::<f32>()?, t);
    Tensor::from_vec(y, (t, w.rows()), x.device())
}

/// `[t, heads * d]` -> `[heads, t, d]`, contiguous for rope.
fn heads(x: &Tensor, n: usize, d: usize) -> candle_core::Result<Tensor> {
    let t = x.dim(0)?;
    x.reshape((t, n, d))?.transpose(0, 1)?.contiguous()
}

/// Additive mask `[group * t, pos + t]`: query row `r` (token `r % t`) sees
/// keys up to its own position.
fn causal_mask(t: usize, pos: usize, group: usize, dev: &Device) -> candle_core::Result<Tensor> {
    let cols = pos + t;
    let mut m = vec![0f32; group * t * cols];
    for g in 0..group {
        for i in 0..t {
            let row = (g * t + i) * cols;
            for j in (pos + i + 1)..cols {
                m[row + j] = f32::NEG_INFINITY;
            }
        }
    }
    Tensor::from_vec(m, (group * t, cols), dev)
}

fn rope_tables(c: &LlamaConfig, dev: &Device) -> candle_core::Result<(Tensor, Tensor)> {
    let half = c.head_dim / 2;
    let inv: Vec<f32> = (0..half)
        .map(|i| 1.0 / c.rope_base.powf(2.0 * i as f32 / c.head_dim as f32))
        .collect();
    let inv = Tensor::from_vec(inv, (1, half), dev)?;
    let positions = Tensor::arange(0u32, c.context_length as u32, dev)?.to_dtype(DType::F32)?;
    let freqs = positions.reshape((c.context_length, 1))?.broadcast_mul(&inv)?;
    Ok((freqs.cos()?, freqs.sin()?))
}
