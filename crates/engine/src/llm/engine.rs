//! One engine per resident model: a thread that owns the weights and serves
//! generation requests from a bounded queue with continuous batching: every
//! step runs all active sequences through one batched forward pass (each
//! weight block read once per step), new requests join between steps and
//! finished or abandoned ones leave, freeing their KV cache at once.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::gguf::{LlamaConfig, LoadedGguf};
use super::model::{LlamaModel, SeqStep};
use super::request::GenerateRequest;
use super::sequence::{Sequence, State};
use super::template::ChatTemplate;
use super::tokenizer::GgufTokenizer;
use super::LlmError;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Requests waiting for the engine; past this, `submit` refuses.
    pub queue_capacity: usize,
    /// A Jinja chat template that replaces the one in the GGUF file.
    pub chat_template: Option<String>,
    /// Sequences generating at once; more wait in the queue.
    pub max_num_seqs: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 64,
            chat_template: None,
            max_num_seqs: 8,
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
    /// Forward steps run, and sequences summed over them (mean batch size =
    /// `step_sequences / steps`).
    pub steps: AtomicU64,
    pub step_sequences: AtomicU64,
    /// Most sequences one step has carried.
    pub peak_batch: AtomicU64,
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
            .spawn({
                let max_seqs = cfg.max_num_seqs.max(1);
                move || run(model, tok, rx, thread_stats, max_seqs)
            })
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
    max_seqs: usize,
) {
    let ctx = model.config().context_length;
    let mut active: Vec<Sequence> = Vec::new();
    loop {
        // Idle: block for work. Busy: take what is waiting, up to the limit.
        if active.is_empty() {
            match rx.blocking_recv() {
                Some(req) => admit(req, &mut active, ctx, &stats),
                None => return,
            }
        }
        while active.len() < max_seqs {
            match rx.try_recv() {
                Ok(req) => admit(req, &mut active, ctx, &stats),
                Err(_) => break,
            }
        }
        // A client that left costs no more compute, and its cache goes now.
        for seq in active.iter_mut().filter(|s| s.abandoned()) {
            let _enter = seq.span().clone().entered();
            tracing::debug!("client left, generation cancelled");
            seq.state = State::Cancelled;
        }
        retire(&mut active, &stats);
        if active.is_empty() {
            continue;
        }
        let mut steps: Vec<SeqStep> = active
            .iter_mut()
            .map(|s| SeqStep {
                tokens: &s.next,
                cache: &mut s.cache,
            })
            .collect();
        let n = steps.len() as u64;
        stats.steps.fetch_add(1, Ordering::Relaxed);
        stats.step_sequences.fetch_add(n, Ordering::Relaxed);
        stats.peak_batch.fetch_max(n, Ordering::Relaxed);
        match model.forward_batch(&mut steps) {
            Ok(logits) => {
                for (seq, l) in active.iter_mut().zip(logits) {
                    let span = seq.span().clone();
                    let _enter = span.enter();
                    seq.advance(l, &tokenizer, ctx, &stats);
                }
            }
            Err(e) => {
                // Admission checks lengths, so this is our bug: fail the step's
                // requests rather than loop on it.
                tracing::error!(error = %e, sequences = active.len(), "generation step failed");
                active.iter_mut().for_each(|s| s.fail(e.to_string()));
            }
        }
        retire(&mut active, &stats);
    }
}

/// Starts a request, or ends it at once when it cannot run.
fn admit(req: GenerateRequest, active: &mut Vec<Sequence>, ctx: usize, stats: &EngineStats) {
    let mut seq = Sequence::new(req);
    let _enter = seq.span().clone().entered();
    if seq.abandoned() {
        tracing::debug!("client left before generation started");
        stats.cancelled.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if seq.next.is_empty() || seq.next.len() > ctx {
        let n = seq.next.len();
        seq.fail(format!("prompt of {n} tokens does not fit the context window of {ctx}"));
        return;
    }
    active.push(seq);
}

/// Drops sequences that are done, counting them.
fn retire(active: &mut Vec<Sequence>, stats: &EngineStats) {
    active.retain(|s| match s.state {
        State::Running => true,
        State::Finished => {
            stats.finished.fetch_add(1, Ordering::Relaxed);
            false
        }
        State::Cancelled => {
            stats.cancelled.fetch_add(1, Ordering::Relaxed);
            false
        }
    });
}
