//! Text embeddings with BERT-family sentence-transformers models
//! (all-MiniLM-L6-v2 and its relatives) on candle.
//!
//! The work is split so a batcher can sit in the middle: [`EmbeddingModel::tokenize`]
//! (or [`EmbeddingModel::check_tokens`] for token-id inputs) turns each request
//! input into a bounded, validated token list on the caller's thread; the
//! batcher groups those lists by length and hands each group to
//! [`EmbeddingModel::embed_tokens`], one forward pass per group. Padding inside
//! a group never changes a vector, so grouping is free to choose. The batcher
//! itself is [`batcher::Batcher`].

pub mod batcher;
mod bert;
mod config;
mod gemm;
mod model;
mod ops;
mod pooling;
mod tokenizer;

use std::path::PathBuf;

pub use config::Pooling;
pub use model::EmbeddingModel;

/// Per-model choices that override what the model folder says.
#[derive(Debug, Clone, Default)]
pub struct EmbedOptions {
    /// L2-normalise the vectors or not; `None` follows the folder
    /// (`modules.json` listing a Normalize module means yes).
    pub normalize: Option<bool>,
    /// Refuse inputs longer than [`EmbeddingModel::max_tokens`] with
    /// [`EmbedError::InputTooLong`] instead of silently truncating them, for
    /// callers who would rather know than embed half a document.
    pub reject_over_length: bool,
}

/// Anything that can go wrong loading an embedding model or embedding with it.
/// The input variants (`InputTooLong`, `TokenOutOfRange`, `EmptyInput`,
/// `BatchInput`) are the caller's fault and map to a 400; the rest are ours.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("invalid {path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("unsupported model: {0}")]
    Unsupported(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("input is {tokens} tokens long, more than this model's limit of {limit}")]
    InputTooLong { tokens: usize, limit: usize },
    #[error("token id {id} at position {position} is outside the vocabulary (ids must be below {vocab_size})")]
    TokenOutOfRange {
        position: usize,
        id: u32,
        vocab_size: usize,
    },
    #[error("input has no tokens")]
    EmptyInput,
    #[error("input {index}: {source}")]
    BatchInput {
        index: usize,
        #[source]
        source: Box<EmbedError>,
    },
    #[error("inference failed: {0}")]
    Candle(#[from] candle_core::Error),
}
