//! GGUF language models: loading, tokenizer, chat template, forward pass,
//! sampling and the per-model engine thread that serves generation requests.

mod attention;
pub mod bench;
mod engine;
mod ggml_order;
mod gguf;
mod kv;
mod model;
mod prefix_cache;
mod quant;
#[cfg(target_arch = "x86_64")]
mod quant_avx2;
mod request;
mod sampler;
mod scheduler;
mod sequence;
mod stop;
mod template;
mod tokenizer;

pub use engine::{EngineConfig, EngineStats, LlmEngine, StepObserver, StepReport, SubmitError};
pub use gguf::{LlamaConfig, LoadedGguf};
pub use kv::{KvCache, BLOCK_TOKENS};
pub use model::{LlamaModel, SeqStep, Tracer};
pub use quant::{quantize_row, Q8Block, QWeight, WeightType};
pub use request::{FinishReason, GenerateRequest, GenerationEvent, SamplingParams, Usage};
pub use sampler::{argmax, Sampler};
pub use stop::{StopMatcher, Utf8Stream};
pub use template::{ChatTemplate, TemplateMessage};
pub use tokenizer::GgufTokenizer;

/// Anything that can go wrong while loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("cannot read model file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("invalid GGUF model: {0}")]
    Format(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    Template(String),
    #[error("inference failed: {0}")]
    Candle(#[from] candle_core::Error),
}
