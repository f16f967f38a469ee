//! A BERT encoder on candle-nn.
//!
//! Written here rather than taken from candle-transformers because that crate
//! compiles every model family (minutes on a small machine) for ~150 lines we
//! need, and because owning the forward pass lets us fuse Q/K/V into one
//! matmul and skip the attention mask when a batch has no padding. Weight names
//! follow Hugging Face's `BertModel`, with or without a `bert.` prefix.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, Linear, VarBuilder};

use super::config::{Activation, BertConfig};

/// Word + position + token-type embeddings, then a layer norm.
struct Embeddings {
    word: Embedding,
    /// `(max_position_embeddings, hidden)`; the first `seq_len` rows are used.
    position: Tensor,
    /// Row 0 of the token-type table: one-sentence inputs are all type 0.
    token_type: Tensor,
    norm: LayerNorm,
}

impl Embeddings {
    fn load(cfg: &BertConfig, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        let position = vb.get((cfg.max_position_embeddings, h), "position_embeddings.weight")?;
        let token_type = vb
            .get((cfg.type_vocab_size, h), "token_type_embeddings.weight")?
            .get(0)?;
        Ok(Self {
            word: embedding(cfg.vocab_size, h, vb.pp("word_embeddings"))?,
            position,
            token_type,
            norm: layer_norm(h, cfg.layer_norm_eps, vb.pp("LayerNorm"))?,
        })
    }

    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let seq_len = ids.dim(1)?;
        // Same order of additions as Hugging Face (word + type, then position),
        // so rounding matches the reference as closely as it can.
        let x = self.word.forward(ids)?.broadcast_add(&self.token_type)?;
        let x = x.broadcast_add(&self.position.narrow(0, 0, seq_len)?)?;
        self.norm.forward(&x)
    }
}

/// One transformer block: self-attention and feed-forward, each with a
/// residual connection and a post layer norm.
struct Layer {
    /// Q, K and V projections stacked into one `(3·hidden, hidden)` matmul.
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    out_norm: LayerNorm,
    heads: usize,
    head_dim: usize,
    act: Activation,
}

impl Layer {
    fn load(cfg: &BertConfig, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        let att = vb.pp("attention");
        let proj = |name: &str| linear(h, h, att.pp("self").pp(name));
        let (q, k, v) = (proj("query")?, proj("key")?, proj("value")?);
        let bias = |l: &Linear| {
            l.bias()
                .cloned()
                .ok_or_else(|| candle_core::Error::Msg("missing bias".into()))
        };
        let weight = Tensor::cat(&[q.weight(), k.weight(), v.weight()], 0)?;
        let qkv_bias = Tensor::cat(&[bias(&q)?, bias(&k)?, bias(&v)?], 0)?;
        Ok(Self {
            qkv: Linear::new(weight, Some(qkv_bias)),
            attn_out: linear(h, h, att.pp("output").pp("dense"))?,
            attn_norm: layer_norm(h, cfg.layer_norm_eps, att.pp("output").pp("LayerNorm"))?,
            intermediate: linear(h, cfg.intermediate_size, vb.pp("intermediate").pp("dense"))?,
            output: linear(cfg.intermediate_size, h, vb.pp("output").pp("dense"))?,
            out_norm: layer_norm(h, cfg.layer_norm_eps, vb.pp("output").pp("LayerNorm"))?,
            heads: cfg.num_attention_heads,
            head_dim: h / cfg.num_attention_heads,
            act: cfg.activation().map_err(|e| candle_core::Error::Msg(e.to_string()))?,
        })
    }

    /// `x`: `(batch, seq, hidden)`; `bias`: `(batch, 1, 1, seq)` added to the
    /// attention scores, very negative on padding so it gets zero weight.
    fn forward(&self, x: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let (b, s, h) = x.dims3()?;
        let qkv = self.qkv.forward(x)?;
        let split = |i: usize| {
            qkv.narrow(D::Minus1, i * h, h)?
                .reshape((b, s, self.heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        // Scaling q (seq × head_dim values) is cheaper than scaling the scores.
        let q = (split(0)? * (1.0 / (self.head_dim as f64).sqrt()))?;
        let (k, v) = (split(1)?, split(2)?);
        let scores = q.matmul(&k.t()?)?;
        let scores = match bias {
            Some(bias) => scores.broadcast_add(bias)?,
            None => scores,
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, s, h))?;
        let x = self.attn_norm.forward(&(self.attn_out.forward(&ctx)? + x)?)?;

        let inner = self.intermediate.forward(&x)?;
        let inner = match self.act {
            Activation::Gelu => inner.gelu_erf()?,
            Activation::GeluTanh => inner.gelu()?,
            Activation::Relu => inner.relu()?,
        };
        self.out_norm.forward(&(self.output.forward(&inner)? + x)?)
    }
}

/// The encoder: token ids in, one vector per token out.
pub(crate) struct Bert {
    embeddings: Embeddings,
    layers: Vec<Layer>,
}

impl Bert {
    pub fn load(cfg: &BertConfig, vb: VarBuilder) -> Result<Self> {
        // Checkpoints saved from BertFor* heads prefix every name with `bert.`.
        let vb = if vb.contains_tensor("embeddings.word_embeddings.weight") {
            vb
        } else {
            vb.pp("bert")
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::load(cfg, vb.pp(format!("encoder.layer.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embeddings: Embeddings::load(cfg, vb.pp("embeddings"))?,
            layers,
        })
    }

    /// `ids`: `(batch, seq)` u32; `mask`: `(batch, seq)` f32, 1 for real tokens
    /// and 0 for padding, or `None` when nothing is padded. Returns
    /// `(batch, seq, hidden)`; rows at padded positions are meaningless.
    pub fn forward(&self, ids: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let bias = match mask {
            // (1 - mask) · f32::MIN: 0 on real tokens, exp() underflows to
            // exactly 0 on padding, so a padded input attends exactly as alone.
            Some(mask) => Some(
                mask.affine(-1.0, 1.0)?
                    .affine(f32::MIN as f64, 0.0)?
                    .unsqueeze(1)?
                    .unsqueeze(1)?,
            ),
            None => None,
        };
        let mut x = self.embeddings.forward(ids)?;
        for layer in &self.layers {
            x = layer.forward(&x, bias.as_ref())?;
        }
        Ok(x)
    }
}
