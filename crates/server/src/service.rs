//! Transport-neutral generation: admission, tokenization, context checks and
//! submission to the engine. Handlers (and later the CLI) call this.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use switchyard_api::ErrorKind;
use switchyard_engine::llm::{GenerateRequest, GenerationEvent, LlmEngine, SubmitError, TemplateMessage};
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use crate::error::ApiError;
use crate::state::{AppState, ModelSlot};
use crate::telemetry;
use crate::validate::Knobs;

pub enum PromptSource {
    Chat(Vec<TemplateMessage>),
    Text(String),
    Tokens(Vec<u32>),
}

/// A generation under way: its events, and the permit that keeps it counted
/// against the concurrency limit until the response is finished.
pub struct Generation {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub prompt_tokens: u32,
    pub events: mpsc::UnboundedReceiver<GenerationEvent>,
    pub started: Instant,
    pub deadline: Instant,
    pub prompt_text: Option<String>,
    /// Where the outcome is counted for `/admin/stats`.
    pub slot: Option<Arc<ModelSlot>>,
    /// Where the tenant's usage record gets its token counts.
    pub ticket: Option<crate::auth::UsageTicket>,
    _permit: OwnedSemaphorePermit,
}

impl Generation {
    /// Records a finished generation: metrics and the model's stats.
    pub fn record_done(&self, prompt_tokens: u32, completion_tokens: u32) {
        record_done(&self.model, prompt_tokens, completion_tokens, self.started);
        if let Some(t) = &self.ticket {
            t.tokens(prompt_tokens as u64, completion_tokens as u64);
        }
        if let Some(slot) = &self.slot {
            slot.served.done(prompt_tokens, completion_tokens, self.started);
        }
    }

    /// Records a generation that failed or timed out after it started.
    pub fn record_error(&self) {
        if let Some(slot) = &self.slot {
            slot.served.error();
        }
    }
}

/// Takes a slot at the door: when all are taken, 503 now, not a queue later.
pub fn admit(state: &AppState) -> Result<OwnedSemaphorePermit, ApiError> {
    state.limiter.clone().try_acquire_owned().map_err(|_| {
        metrics::counter!(telemetry::REJECTED, "reason" => "concurrency").increment(1);
        ApiError::overloaded("The server is at its concurrent request limit; retry shortly.", 1)
    })
}

pub async fn start(
    state: &AppState,
    (engine, slot): (Arc<LlmEngine>, Arc<ModelSlot>),
    model: &str,
    prompt: PromptSource,
    knobs: Knobs,
    id_prefix: &str,
) -> Result<Generation, ApiError> {
    let permit = admit(state)?;
    let keep_text = matches!(prompt, PromptSource::Text(_));
    let (tokens, prompt_text) = tokenize(engine.clone(), prompt, keep_text).await?;
    let ctx = engine
        .config()
        .context_length
        .min(slot.config.context_length.unwrap_or(usize::MAX));
    let n = tokens.len();
    if n >= ctx {
        return Err(ApiError::invalid(
            "messages",
            format!("This model's maximum context length is {ctx} tokens. However, your prompt is {n} tokens long, leaving no room for a completion."),
        )
        .code("context_length_exceeded"));
    }
    let room = (ctx - n) as u32;
    let max_tokens = match knobs.max_tokens {
        Some(m) if m > room => {
            return Err(ApiError::invalid(
                "max_tokens",
                format!("This model's maximum context length is {ctx} tokens. However, you requested {} tokens ({n} in the prompt, {m} for the completion).", n as u64 + m as u64),
            )
            .code("context_length_exceeded"))
        }
        Some(m) => m,
        None => slot.config.generation(&state.config.generation).max_tokens.min(room),
    };
    let now = Instant::now();
    let deadline = now + Duration::from_secs(state.config.server.request_timeout_secs);
    let (tx, rx) = mpsc::unbounded_channel();
    let req = GenerateRequest {
        prompt_tokens: tokens,
        max_tokens,
        sampling: knobs.sampling,
        stop: knobs.stop,
        deadline,
        events: tx,
        span: tracing::Span::current(),
    };
    engine.submit(req).map_err(|e| match e {
        SubmitError::QueueFull => {
            metrics::counter!(telemetry::REJECTED, "reason" => "queue_full").increment(1);
            ApiError::overloaded(format!("The queue for model `{model}` is full; retry shortly."), 1)
        }
        SubmitError::Stopped => ApiError::internal(format!("The engine for model `{model}` has stopped.")),
    })?;
    metrics::gauge!(telemetry::QUEUE_DEPTH, "model" => model.to_string()).set(engine.queue_depth() as f64);
    Ok(Generation {
        id: format!("{id_prefix}-{}", uuid::Uuid::new_v4().simple()),
        created: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        model: model.to_string(),
        prompt_tokens: n as u32,
        events: rx,
        started: now,
        deadline,
        prompt_text,
        slot: Some(slot),
        ticket: None,
        _permit: permit,
    })
}

/// Renders and tokenizes off the async threads: a large prompt takes a while.
async fn tokenize(
    engine: Arc<LlmEngine>,
    prompt: PromptSource,
    keep_text: bool,
) -> Result<(Vec<u32>, Option<String>), ApiError> {
    let vocab = engine.tokenizer().vocab_size();
    tokio::task::spawn_blocking(move || {
        let text = match prompt {
            PromptSource::Tokens(t) => {
                return if t.iter().all(|&id| (id as usize) < vocab) {
                    Ok((t, None))
                } else {
                    Err(ApiError::invalid("prompt", "token id outside the vocabulary"))
                }
            }
            PromptSource::Text(t) => t,
            PromptSource::Chat(messages) => {
                let template = engine.template().ok_or_else(|| {
                    ApiError::invalid(
                        "model",
                        "This model has no chat template; use /v1/completions or configure `chat_template`.",
                    )
                })?;
                template
                    .render(&messages)
                    .map_err(|e| ApiError::invalid("messages", e.to_string()))?
            }
        };
        let tokens = engine
            .tokenizer()
            .encode(&text)
            .map_err(|e| ApiError::invalid("prompt", e.to_string()))?;
        if tokens.is_empty() {
            return Err(ApiError::invalid("prompt", "The prompt is empty after tokenization."));
        }
        Ok((tokens, keep_text.then_some(text)))
    })
    .await
    .map_err(|e| ApiError::new(ErrorKind::Internal, format!("tokenizer task failed: {e}")))?
}

/// Records the per-model token and latency metrics of a finished generation.
fn record_done(model: &str, prompt_tokens: u32, completion_tokens: u32, started: Instant) {
    metrics::counter!(telemetry::PROMPT_TOKENS, "model" => model.to_string()).increment(prompt_tokens as u64);
    metrics::counter!(telemetry::GENERATED_TOKENS, "model" => model.to_string()).increment(completion_tokens as u64);
    metrics::histogram!(telemetry::GENERATION_DURATION, "model" => model.to_string())
        .record(started.elapsed().as_secs_f64());
}

pub fn record_first_token(model: &str, started: Instant) {
    metrics::histogram!(telemetry::TTFT, "model" => model.to_string()).record(started.elapsed().as_secs_f64());
}
