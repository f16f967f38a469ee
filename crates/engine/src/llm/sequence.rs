//! One request's generation state inside the engine's batch: its KV cache,
//! sampler, stop matching and the tokens it feeds to the next step.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::model::KvCache;
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
    /// Tokens for the next step: the prompt first, then the last sampled one.
    pub next: Vec<u32>,
    sampler: Sampler,
    utf8: Utf8Stream,
    stops: StopMatcher,
    usage: Usage,
    started: Instant,
    pub state: State,
}

impl Sequence {
    pub fn new(mut req: GenerateRequest) -> Self {
        let next = std::mem::take(&mut req.prompt_tokens);
        Self {
            sampler: Sampler::new(req.sampling.clone()),
            stops: StopMatcher::new(std::mem::take(&mut req.stop)),
            usage: Usage {
                prompt_tokens: next.len() as u32,
                completion_tokens: 0,
            },
            req,
            cache: KvCache::default(),
            next,
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
    pub fn advance(&mut self, mut logits: Vec<f32>, tok: &GgufTokenizer, ctx: usize, stats: &EngineStats) {
        if Instant::now() >= self.req.deadline {
            self.send(GenerationEvent::TimedOut { usage: self.usage });
            self.state = State::Finished;
            return;
        }
        let id = self.sampler.sample(&mut logits);
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
        self.next = vec![id];
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
