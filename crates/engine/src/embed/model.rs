//! The embedding model: a model folder loaded once, then shared by every
//! request (it is `Send + Sync` and holds no per-call state).

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use super::bert::Bert;
use super::config::{FolderConfig, Pooling};
use super::pooling::{l2_normalize, pool};
use super::tokenizer::EmbedTokenizer;
use super::{EmbedError, EmbedOptions};

/// A BERT-family sentence-transformers model, on the CPU in f32.
pub struct EmbeddingModel {
    bert: Bert,
    tokenizer: EmbedTokenizer,
    pooling: Pooling,
    normalize: bool,
    reject_over_length: bool,
    max_tokens: usize,
    vocab_size: usize,
    dims: usize,
}

impl EmbeddingModel {
    /// Loads a folder holding `config.json`, `model.safetensors` and
    /// `tokenizer.json`, plus the optional sentence-transformers files
    /// (`modules.json`, `1_Pooling/config.json`, `sentence_bert_config.json`)
    /// that decide pooling, normalisation and the length limit.
    pub fn load(dir: &Path, opts: EmbedOptions) -> Result<Self, EmbedError> {
        let cfg = FolderConfig::read(dir)?;
        let device = Device::Cpu;
        let weights = dir.join("model.safetensors");
        std::fs::metadata(&weights).map_err(|source| EmbedError::Io {
            path: weights.clone(),
            source,
        })?;
        // A missing or misshapen tensor is a broken folder, not a failed inference.
        let bad_weights = |e: candle_core::Error| EmbedError::Config {
            path: weights.clone(),
            message: e.to_string(),
        };
        let tensors = candle_core::safetensors::load(&weights, &device).map_err(bad_weights)?;
        let bert =
            Bert::load(&cfg.bert, VarBuilder::from_tensors(tensors, DType::F32, &device)).map_err(bad_weights)?;
        let tokenizer = EmbedTokenizer::load(&dir.join("tokenizer.json"), cfg.max_tokens, opts.reject_over_length)?;
        Ok(Self {
            bert,
            tokenizer,
            pooling: cfg.pooling,
            normalize: opts.normalize.unwrap_or(cfg.normalize),
            reject_over_length: opts.reject_over_length,
            max_tokens: cfg.max_tokens,
            vocab_size: cfg.bert.vocab_size,
            dims: cfg.bert.hidden_size,
        })
    }

    /// Length of every vector this model returns.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Longest input in tokens, special tokens included (256 for MiniLM).
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Number of token ids the model knows; valid ids are below it.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// Whether vectors come out with unit length.
    pub fn normalizes(&self) -> bool {
        self.normalize
    }

    /// Tokens for one text input, with `[CLS]`/`[SEP]`, truncated to
    /// [`Self::max_tokens`] or refused when the model rejects over-long input.
    /// The length of the result is what usage should count.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, EmbedError> {
        self.tokenizer.encode(text)
    }

    /// Validates a token-id input (OpenAI lets `input` be arrays of ids) and
    /// applies the same length rule as [`Self::tokenize`]. The ids are used
    /// verbatim: no special tokens are added, so callers who want
    /// sentence-transformers' result send `[CLS] … [SEP]` themselves.
    pub fn check_tokens(&self, ids: &[u32]) -> Result<Vec<u32>, EmbedError> {
        if ids.is_empty() {
            return Err(EmbedError::EmptyInput);
        }
        self.check_vocab(ids)?;
        if ids.len() > self.max_tokens {
            if self.reject_over_length {
                return Err(EmbedError::InputTooLong {
                    tokens: ids.len(),
                    limit: self.max_tokens,
                });
            }
            return Ok(ids[..self.max_tokens].to_vec());
        }
        Ok(ids.to_vec())
    }

    /// Embeds already tokenized inputs in one forward pass. The encoder
    /// packs them without padding, so each gets the vector it gets alone
    /// (up to the rounding of the shared matrix products). Inputs are
    /// re-checked (non-empty, within the limit, ids in the vocabulary)
    /// because a bad id would otherwise index past the embedding table.
    /// Errors about one input come wrapped in [`EmbedError::BatchInput`].
    pub fn embed_tokens(&self, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, EmbedError> {
        for (index, ids) in batch.iter().enumerate() {
            self.check_input(ids).map_err(|e| EmbedError::BatchInput {
                index,
                source: Box::new(e),
            })?;
        }
        let mut out = Vec::with_capacity(batch.len());
        self.bert.forward(batch, |_, tokens| {
            let mut v = pool(tokens, self.dims, self.pooling);
            if self.normalize {
                l2_normalize(&mut v);
            }
            out.push(v);
        })?;
        Ok(out)
    }

    /// Tokenizes and embeds texts in one batch: the simple path for callers
    /// without a batcher (tests, benchmarks, the CLI).
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let tokens = texts.iter().map(|t| self.tokenize(t)).collect::<Result<Vec<_>, _>>()?;
        self.embed_tokens(&tokens)
    }

    fn check_input(&self, ids: &[u32]) -> Result<(), EmbedError> {
        if ids.is_empty() {
            return Err(EmbedError::EmptyInput);
        }
        if ids.len() > self.max_tokens {
            return Err(EmbedError::InputTooLong {
                tokens: ids.len(),
                limit: self.max_tokens,
            });
        }
        self.check_vocab(ids)
    }

    fn check_vocab(&self, ids: &[u32]) -> Result<(), EmbedError> {
        match ids.iter().position(|&id| id as usize >= self.vocab_size) {
            Some(position) => Err(EmbedError::TokenOutOfRange {
                position,
                id: ids[position],
                vocab_size: self.vocab_size,
            }),
            None => Ok(()),
        }
    }
}
