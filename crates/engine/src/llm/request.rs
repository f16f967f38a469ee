//! The validated generation request the engine accepts, and what it sends back.

use std::time::Instant;

use tokio::sync::mpsc;

/// Sampling settings, already range-checked by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy (argmax).
    pub temperature: f32,
    /// 1.0 disables nucleus filtering.
    pub top_p: f32,
    /// 0 disables top-k filtering.
    pub top_k: usize,
    pub seed: Option<u64>,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// Added to the logit of the given token ids before sampling.
    pub logit_bias: Vec<(u32, f32)>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: None,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: Vec::new(),
        }
    }
}

/// A request the engine can run as is: tokenized, bounded and checked against
/// the context window ("parse, don't validate").
#[derive(Debug)]
pub struct GenerateRequest {
    pub prompt_tokens: Vec<u32>,
    pub max_tokens: u32,
    pub sampling: SamplingParams,
    /// Up to a handful of user stop strings; eos always stops.
    pub stop: Vec<String>,
    /// Past this instant the engine stops and reports a timeout.
    pub deadline: Instant,
    /// Where tokens go. Dropping the receiver cancels the generation.
    pub events: mpsc::UnboundedSender<GenerationEvent>,
    /// The caller's span, so engine logs carry the request id.
    pub span: tracing::Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// eos or a stop string.
    Stop,
    /// max_tokens or the context window.
    Length,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum GenerationEvent {
    /// The first token was computed (sent once, before its text, which a
    /// stop-string check may still be holding back).
    FirstToken,
    /// Text to show the user, already cleaned of stop strings.
    Text(String),
    Done {
        finish_reason: FinishReason,
        usage: Usage,
    },
    /// The deadline passed before generation ended.
    TimedOut {
        usage: Usage,
    },
    Failed(String),
}
