//! One request's generation state inside the engine's batch: its tokens and
//! KV cache, sampler and stop matching.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::kv::KvCache;
use super::request::{FinishReason, GenerateRequest, GenerationEvent, Usage};
use super::sampler::Sampler;
use super::stop::{StopMatcher, Utf8Stream};
use super::tokenizer::GgufTokenizer;
use super::EngineStats;

/// Where a sequence stands after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Wants another step with [`Sequence::next`].
    Running,
    /// Sent its last event (done, timed out or failed).
    Finished,
    /// The client went away; nothing more to send.
    Cancelled,
}

pub struct Sequence {
    req: GenerateRequest,
    pub cache: KvCache,
    /// The prompt, then every sampled token. The cache holds the first
    /// `cache.len()`; the rest are fed by the next steps.
    pub tokens: Vec<u32>,
    /// Tokens of the prompt (the start of `tokens`).
    pub prompt_len: usize,
    /// KV blocks the scheduler has reserved for this sequence.
    pub blocks: usize,
    /// When the last token was sampled, for inter-token latency.
    last_token: Option<Instant>,
    sampler: Sampler,
    utf8: Utf8Stream,
    stops: StopMatcher,
    usage: Usage,
    started: Instant,
    pub state: State,
}

impl Sequence {
    pub fn new(mut req: GenerateRequest) -> Self {
        let tokens = std::mem::take(&mut req.prompt_tokens);
        Self {
            sampler: Sampler::new(req.sampling.clone()),
            stops: StopMatcher::new(std::mem::take(&mut req.stop)),
            usage: Usage {
                prompt_tokens: tokens.len() as u32,
                completion_tokens: 0,
            },
            req,
            cache: KvCache::default(),
            prompt_len: tokens.len(),
            tokens,
            blocks: 0,
            last_token: None,
            utf8: Utf8Stream::default(),
            started: Instant::now(),
            state: State::Running,
        }
    }

    pub fn span(&self) -> &tracing::Span {
        &self.req.span
    }

    /// Whether the client is gone (its event receiver dropped).
    pub fn abandoned(&self) -> bool {
        self.req.events.is_closed()
    }

    /// Tokens not yet in the cache: the prompt (or what is left of it), then
    /// the last sampled token.
    pub fn pending(&self) -> &[u32] {
        &self.tokens[self.cache.len()..]
    }

    /// Whether the deadline has passed; if so, tells the client and ends.
    pub fn expire(&mut self, now: Instant) -> bool {
        if now < self.req.deadline {
            return false;
        }
        self.send(GenerationEvent::TimedOut { usage: self.usage });
        self.state = State::Finished;
        true
    }

    /// Ends the sequence early as if it had reached its length limit (the
    /// engine's KV budget cannot hold more of it).
    pub fn cut_short(&mut self) {
        self.done(FinishReason::Length, false);
    }

    fn send(&self, ev: GenerationEvent) -> bool {
        self.req.events.send(ev).is_ok()
    }

    /// Ends the sequence with an error message to its client.
    pub fn fail(&mut self, message: String) {
        self.send(GenerationEvent::Failed(message));
        self.state = State::Finished;
    }

    /// Takes the logits of this sequence's last step: samples, streams the
    /// text that is safe to show, and decides whether to go on.
    /// Returns the time since the previous token, from the second on.
    pub fn advance(
        &mut self,
        mut logits: Vec<f32>,
        tok: &GgufTokenizer,
        ctx: usize,
        stats: &EngineStats,
    ) -> Option<Duration> {
        let now = Instant::now();
        if self.expire(now) {
            return None;
        }
        let gap = self.last_token.replace(now).map(|t| now - t);
        self.step(&mut logits, tok, ctx, stats);
        gap
    }

    fn step(&mut self, logits: &mut [f32], tok: &GgufTokenizer, ctx: usize, stats: &EngineStats) {
        let id = self.sampler.sample(logits);
        self.usage.completion_tokens += 1;
        stats.generated_tokens.fetch_add(1, Ordering::Relaxed);
        if self.usage.completion_tokens == 1 && !self.send(GenerationEvent::FirstToken) {
            self.state = State::Cancelled;
            return;
        }
        // Like llama.cpp, the eos token counts as a completion token.
        if id == tok.eos() {
            return self.done(FinishReason::Stop, false);
        }
        let out = self.stops.push(&self.utf8.push(tok.piece(id)));
        if !out.emit.is_empty() && !self.send(GenerationEvent::Text(out.emit)) {
            self.state = State::Cancelled;
            return;
        }
        if out.stopped {
            return self.done(FinishReason::Stop, true);
        }
        if self.usage.completion_tokens >= self.req.max_tokens || self.cache.len() >= ctx {
            return self.done(FinishReason::Length, false);
        }
        self.tokens.push(id);
    }

    fn done(&mut self, finish: FinishReason, stopped_by_string: bool) {
        if !stopped_by_string {
            let tail = self.stops.push(&self.utf8.finish());
            let rest = tail.emit + &self.stops.finish();
            if !rest.is_empty() {
                self.send(GenerationEvent::Text(rest));
            }
        }
        tracing::debug!(
            prompt_tokens = self.usage.prompt_tokens,
            completion_tokens = self.usage.completion_tokens,
            seconds = self.started.elapsed().as_secs_f64(),
            "generation done"
        );
        self.send(GenerationEvent::Done {
            finish_reason: finish,
            usage: self.usage,
        });
        self.state = State::Finished;
    }
}
