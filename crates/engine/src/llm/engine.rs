//! One engine per resident model: a thread that owns the weights and serves
//! generation requests from a bounded queue, one sequence at a time for now
//! (continuous batching builds on the same forward pass).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::gguf::{LlamaConfig, LoadedGguf};
use super::model::{KvCache, LlamaModel};
use super::request::{FinishReason, GenerateRequest, GenerationEvent, Usage};
use super::sampler::Sampler;
use super::stop::{StopMatcher, Utf8Stream};
use super::template::ChatTemplate;
use super::tokenizer::GgufTokenizer;
use super::LlmError;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Requests waiting for the engine; past this, `submit` refuses.
    pub queue_capacity: usize,
    /// A Jinja chat template that replaces the one in the GGUF file.
    pub chat_template: Option<String>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 64,
            chat_template: None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    #[error("the model's queue is full")]
    QueueFull,
    #[error("the model's engine has stopped")]
    Stopped,
}

/// Running totals of one engine, read by the metrics endpoint.
#[derive(Debug, Default)]
pub struct EngineStats {
    pub generated_tokens: AtomicU64,
    pub finished: AtomicU64,
    /// Generations stopped because the client went away.
    pub cancelled: AtomicU64,
}

/// A loaded model, shareable across request handlers.
pub struct LlmEngine {
    tokenizer: Arc<GgufTokenizer>,
    template: Option<ChatTemplate>,
    config: LlamaConfig,
    weight_bytes: u64,
    queue: mpsc::Sender<GenerateRequest>,
    stats: Arc<EngineStats>,
}

impl LlmEngine {
    /// Loads a GGUF file and starts its engine thread. Blocking: call it from
    /// a blocking context.
    pub fn load(path: &Path, cfg: &EngineConfig) -> Result<Self, LlmError> {
        let mut gguf = LoadedGguf::open(path)?;
        let tokenizer = Arc::new(GgufTokenizer::from_gguf(&gguf)?);
        let model = LlamaModel::load(&mut gguf)?;
        let token = |key: &str| {
            gguf.u32(key)
                .ok()
                .and_then(|id| tokenizer.token_text(id))
                .unwrap_or_default()
                .to_string()
        };
        let (bos, eos) = (
            token("tokenizer.ggml.bos_token_id"),
            token("tokenizer.ggml.eos_token_id"),
        );
        let source = match &cfg.chat_template {
            Some(t) => Some(t.clone()),
            None => gguf.string("tokenizer.chat_template").ok().map(str::to_string),
        };
        let template = source.map(|s| ChatTemplate::new(&s, &bos, &eos)).transpose()?;
        let config = model.config().clone();
        let weight_bytes = gguf.weight_bytes();
        let (queue, rx) = mpsc::channel(cfg.queue_capacity.max(1));
        let tok = tokenizer.clone();
        let stats = Arc::new(EngineStats::default());
        let thread_stats = stats.clone();
        std::thread::Builder::new()
            .name("llm-engine".into())
            .spawn(move || run(model, tok, rx, thread_stats))
            .map_err(|source| LlmError::Io {
                path: "engine thread".into(),
                source,
            })?;
        Ok(Self {
            tokenizer,
            template,
            config,
            weight_bytes,
            queue,
            stats,
        })
    }

    pub fn tokenizer(&self) -> &GgufTokenizer {
        &self.tokenizer
    }

    pub fn template(&self) -> Option<&ChatTemplate> {
        self.template.as_ref()
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }

    /// Requests queued and not yet started.
    pub fn queue_depth(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    /// Queues a request without waiting: a full queue is an error now, not
    /// unbounded memory later.
    pub fn submit(&self, req: GenerateRequest) -> Result<(), SubmitError> {
        self.queue.try_send(req).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SubmitError::QueueFull,
            mpsc::error::TrySendError::Closed(_) => SubmitError::Stopped,
        })
    }
}

fn run(
    model: LlamaModel,
    tokenizer: Arc<GgufTokenizer>,
    mut rx: mpsc::Receiver<GenerateRequest>,
    stats: Arc<EngineStats>,
) {
    while let Some(req) = rx.blocking_recv() {
        let span = req.span.clone();
        let _enter = span.enter();
        if req.events.is_closed() {
            tracing::debug!("client left before generation started");
            stats.cancelled.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let events = req.events.clone();
        match generate(&model, &tokenizer, req, &stats) {
            Ok(Outcome::Finished) => stats.finished.fetch_add(1, Ordering::Relaxed),
            Ok(Outcome::Cancelled) => stats.cancelled.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                tracing::error!(error = %e, "generation failed");
                let _ = events.send(GenerationEvent::Failed(e.to_string()));
                0
            }
        };
    }
}

enum Outcome {
    Finished,
    Cancelled,
}

/// Runs one request to its end, sending text as it becomes safe to show.
/// Returns early when the client has gone away.
fn generate(
    model: &LlamaModel,
    tok: &GgufTokenizer,
    req: GenerateRequest,
    stats: &EngineStats,
) -> Result<Outcome, LlmError> {
    let started = Instant::now();
    let mut cache = KvCache::default();
    let mut sampler = Sampler::new(req.sampling);
    let mut utf8 = Utf8Stream::default();
    let mut stops = StopMatcher::new(req.stop);
    let ctx = model.config().context_length;
    let prompt_tokens = req.prompt_tokens.len() as u32;
    let mut logits = model.forward(&req.prompt_tokens, &mut cache)?;
    let mut usage = Usage {
        prompt_tokens,
        completion_tokens: 0,
    };
    let send = |ev| req.events.send(ev).is_ok();
    let mut stopped_by_string = false;
    let finish = loop {
        if Instant::now() >= req.deadline {
            send(GenerationEvent::TimedOut { usage });
            return Ok(Outcome::Finished);
        }
        let id = sampler.sample(&mut logits);
        usage.completion_tokens += 1;
        stats.generated_tokens.fetch_add(1, Ordering::Relaxed);
        if usage.completion_tokens == 1 && !send(GenerationEvent::FirstToken) {
            return Ok(Outcome::Cancelled);
        }
        // Like llama.cpp, the eos token counts as a completion token.
        if id == tok.eos() {
            break FinishReason::Stop;
        }
        let out = stops.push(&utf8.push(tok.piece(id)));
        if !out.emit.is_empty() && !send(GenerationEvent::Text(out.emit)) {
            return Ok(Outcome::Cancelled);
        }
        if out.stopped {
            stopped_by_string = true;
            break FinishReason::Stop;
        }
        if usage.completion_tokens >= req.max_tokens || cache.len() >= ctx {
            break FinishReason::Length;
        }
        if req.events.is_closed() {
            tracing::debug!(tokens = usage.completion_tokens, "client left, generation cancelled");
            return Ok(Outcome::Cancelled);
        }
        logits = model.forward(&[id], &mut cache)?;
    };
    if !stopped_by_string {
        let tail = stops.push(&utf8.finish());
        let rest = tail.emit + &stops.finish();
        if !rest.is_empty() {
            send(GenerationEvent::Text(rest));
        }
    }
    tracing::debug!(
        prompt_tokens = usage.prompt_tokens,
        completion_tokens = usage.completion_tokens,
        seconds = started.elapsed().as_secs_f64(),
        "generation done"
    );
    send(GenerationEvent::Done {
        finish_reason: finish,
        usage,
    });
    Ok(Outcome::Finished)
}
