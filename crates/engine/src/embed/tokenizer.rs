//! The model folder's `tokenizer.json`, with its shipped batching settings
//! replaced by ours.
//!
//! MiniLM's file pads every input to 128 tokens and truncates at 128, which is
//! neither what sentence-transformers does (256, pad to longest) nor what a
//! batcher wants (it pads itself, to the longest input of each batch). So
//! padding is switched off and truncation set to the model's real limit, or
//! switched off too when over-long inputs are to be refused.

use std::path::Path;

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::EmbedError;

pub(crate) struct EmbedTokenizer {
    inner: Tokenizer,
    max_tokens: usize,
}

impl EmbedTokenizer {
    /// `reject_over_length`: leave inputs whole so their length can be
    /// checked (and refused) instead of cut to `max_tokens`.
    pub fn load(path: &Path, max_tokens: usize, reject_over_length: bool) -> Result<Self, EmbedError> {
        let tokenizer_err = |e: tokenizers::Error| EmbedError::Tokenizer(format!("{}: {e}", path.display()));
        std::fs::metadata(path).map_err(|source| EmbedError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut inner = Tokenizer::from_file(path).map_err(tokenizer_err)?;
        inner.with_padding(None);
        let truncation = (!reject_over_length).then_some(TruncationParams {
            max_length: max_tokens,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: TruncationDirection::Right,
        });
        inner.with_truncation(truncation).map_err(tokenizer_err)?;
        Ok(Self { inner, max_tokens })
    }

    /// Token ids of one text, special tokens included, never longer than
    /// `max_tokens`: truncated, or an [`EmbedError::InputTooLong`] when the
    /// tokenizer was loaded to refuse.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, EmbedError> {
        let encoding = self
            .inner
            .encode_fast(text, true)
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        let ids = encoding.get_ids();
        if ids.len() > self.max_tokens {
            return Err(EmbedError::InputTooLong {
                tokens: ids.len(),
                limit: self.max_tokens,
            });
        }
        Ok(ids.to_vec())
    }
}
