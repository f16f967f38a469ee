//! Turning a generation's events into an OpenAI response: one JSON body, or a
//! stream of server-sent events ending in `data: [DONE]`. The bodies are
//! bytes, so the same answer goes to a client directly or through a route
//! (`upstream::native`), where the stream's summary carries its usage.

use std::convert::Infallible;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream, StreamExt};
use serde::Serialize;
use switchyard_api::chat::{
    AssistantMessage, ChatChoice, ChatCompletion, ChatCompletionChunk, ChunkChoice, Delta, Role,
};
use switchyard_api::common::{FinishReason as WireFinish, Usage as WireUsage};
use switchyard_api::completions::{Completion, CompletionChoice};
use switchyard_api::ErrorKind;
use switchyard_engine::llm::{FinishReason, GenerationEvent, Usage};
use switchyard_gateway::{StreamOutcome, StreamSummary, StreamSummarySender};

use crate::error::ApiError;
use crate::service::{self, Generation};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Chat,
    Completion,
}

fn wire_finish(f: FinishReason) -> WireFinish {
    match f {
        FinishReason::Stop => WireFinish::Stop,
        FinishReason::Length => WireFinish::Length,
    }
}

fn wire_usage(u: Usage) -> WireUsage {
    WireUsage::new(u.prompt_tokens, u.completion_tokens)
}

fn timeout_error() -> ApiError {
    ApiError::new(ErrorKind::Timeout, "The request ran past the server's time limit.").code("timeout")
}

/// Waits for the whole answer.
pub async fn collect(gen: Generation, shape: Shape, echo: bool) -> Result<Response, ApiError> {
    let (body, _) = collect_body(gen, shape, echo).await?;
    let json = HeaderValue::from_static("application/json");
    Ok(([(header::CONTENT_TYPE, json)], body).into_response())
}

/// The whole answer as JSON bytes, with its usage.
pub async fn collect_body(mut gen: Generation, shape: Shape, echo: bool) -> Result<(Bytes, WireUsage), ApiError> {
    let mut text = if echo {
        gen.prompt_text.take().unwrap_or_default()
    } else {
        String::new()
    };
    let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(
        gen.deadline + std::time::Duration::from_secs(1),
    ));
    tokio::pin!(sleep);
    let (finish, usage) = loop {
        let ev = tokio::select! {
            ev = gen.events.recv() => ev,
            _ = &mut sleep => return Err(timeout_error()),
        };
        match ev {
            Some(GenerationEvent::FirstToken) => service::record_first_token(&gen.model, gen.started),
            Some(GenerationEvent::Text(t)) => text.push_str(&t),
            Some(GenerationEvent::Done { finish_reason, usage }) => break (finish_reason, usage),
            Some(GenerationEvent::TimedOut { .. }) => return Err(timeout_error()),
            Some(GenerationEvent::Failed(e)) => return Err(ApiError::internal(format!("Generation failed: {e}"))),
            None => return Err(ApiError::internal("The engine ended the generation without an answer.")),
        }
    };
    gen.record_done(usage.prompt_tokens, usage.completion_tokens);
    let body = match shape {
        Shape::Chat => serde_json::to_vec(&ChatCompletion {
            id: gen.id,
            object: "chat.completion".into(),
            created: gen.created,
            model: gen.model,
            choices: vec![ChatChoice {
                index: 0,
                message: AssistantMessage {
                    role: Role::Assistant,
                    content: text,
                    refusal: None,
                },
                finish_reason: wire_finish(finish),
                logprobs: None,
            }],
            usage: wire_usage(usage),
            system_fingerprint: None,
        }),
        Shape::Completion => serde_json::to_vec(&Completion {
            id: gen.id,
            object: "text_completion".into(),
            created: gen.created,
            model: gen.model,
            choices: vec![CompletionChoice {
                index: 0,
                text,
                finish_reason: Some(wire_finish(finish)),
                logprobs: None,
            }],
            usage: Some(wire_usage(usage)),
            system_fingerprint: None,
        }),
    }
    .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((Bytes::from(body), wire_usage(usage)))
}

/// Where a stream stands between events.
struct StreamState {
    gen: Generation,
    shape: Shape,
    include_usage: bool,
    /// Events to send before reading more from the engine.
    pending: std::collections::VecDeque<Bytes>,
    finished: bool,
    started: Instant,
    /// Told how the stream ended (set when a route asked for the stream).
    summary: Option<StreamSummarySender>,
    /// Events and bytes sent so far, for the summary.
    events: u64,
    bytes: u64,
}

/// One server-sent event: `data: <payload>` and a blank line.
fn event(payload: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(payload.len() + 8);
    frame.extend_from_slice(b"data: ");
    frame.extend_from_slice(payload);
    frame.extend_from_slice(b"\n\n");
    Bytes::from(frame)
}

impl StreamState {
    fn chunk<T: Serialize>(&self, body: &T) -> Bytes {
        event(&serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec()))
    }

    fn text_chunk(&self, text: Option<String>, role: Option<Role>, finish: Option<FinishReason>) -> Bytes {
        match self.shape {
            Shape::Chat => self.chunk(&ChatCompletionChunk {
                id: self.gen.id.clone(),
                object: "chat.completion.chunk".into(),
                created: self.gen.created,
                model: self.gen.model.clone(),
                system_fingerprint: None,
                choices: vec![ChunkChoice {
                    index: 0,
                    delta: Delta { role, content: text },
                    finish_reason: finish.map(wire_finish),
                    logprobs: None,
                }],
                usage: None,
            }),
            Shape::Completion => self.chunk(&Completion {
                id: self.gen.id.clone(),
                object: "text_completion".into(),
                created: self.gen.created,
                model: self.gen.model.clone(),
                choices: vec![CompletionChoice {
                    index: 0,
                    text: text.unwrap_or_default(),
                    finish_reason: finish.map(wire_finish),
                    logprobs: None,
                }],
                usage: None,
                system_fingerprint: None,
            }),
        }
    }

    fn usage_chunk(&self, usage: Usage) -> Bytes {
        match self.shape {
            Shape::Chat => self.chunk(&ChatCompletionChunk {
                id: self.gen.id.clone(),
                object: "chat.completion.chunk".into(),
                created: self.gen.created,
                model: self.gen.model.clone(),
                system_fingerprint: None,
                choices: vec![],
                usage: Some(wire_usage(usage)),
            }),
            Shape::Completion => self.chunk(&Completion {
                id: self.gen.id.clone(),
                object: "text_completion".into(),
                created: self.gen.created,
                model: self.gen.model.clone(),
                choices: vec![],
                usage: Some(wire_usage(usage)),
                system_fingerprint: None,
            }),
        }
    }

    fn on_event(&mut self, ev: Option<GenerationEvent>) {
        match ev {
            Some(GenerationEvent::FirstToken) => service::record_first_token(&self.gen.model, self.started),
            Some(GenerationEvent::Text(t)) => {
                let ev = self.text_chunk(Some(t), None, None);
                self.pending.push_back(ev);
            }
            Some(GenerationEvent::Done { finish_reason, usage }) => {
                self.gen.record_done(usage.prompt_tokens, usage.completion_tokens);
                let content = (self.shape == Shape::Completion).then(String::new);
                let ev = self.text_chunk(content, None, Some(finish_reason));
                self.pending.push_back(ev);
                if self.include_usage {
                    let ev = self.usage_chunk(usage);
                    self.pending.push_back(ev);
                }
                self.pending.push_back(event(b"[DONE]"));
                self.finished = true;
                self.summarize(StreamOutcome::Completed, Some(wire_usage(usage)));
            }
            Some(GenerationEvent::TimedOut { .. }) => self.fail(timeout_error()),
            Some(GenerationEvent::Failed(e)) => self.fail(ApiError::internal(format!("Generation failed: {e}"))),
            None => self.fail(ApiError::internal("The engine ended the generation without an answer.")),
        }
    }

    /// Headers are already sent, so an error mid-stream is an error event.
    fn fail(&mut self, err: ApiError) {
        self.gen.record_error();
        let ev = self.chunk(&err.body());
        self.pending.push_back(ev);
        self.finished = true;
        self.summarize(StreamOutcome::Failed, None);
    }

    /// Sends the summary, counting the events still queued as sent (they
    /// are, unless the client leaves this very moment).
    fn summarize(&mut self, outcome: StreamOutcome, usage: Option<WireUsage>) {
        let Some(summary) = self.summary.as_mut() else {
            return;
        };
        let queued = self.pending.iter().map(|b| b.len() as u64).sum::<u64>();
        summary.send(StreamSummary {
            outcome,
            usage,
            done: outcome == StreamOutcome::Completed,
            bytes: self.bytes + queued,
            events: self.events + self.pending.len() as u64,
        });
    }
}

/// Streams the answer. Dropping the stream (the client left) drops the event
/// receiver, which the engine notices and stops generating.
pub fn stream(gen: Generation, shape: Shape, include_usage: bool, echo: bool) -> Response {
    let body = Body::from_stream(frames(gen, shape, include_usage, echo, None).map(Ok::<_, Infallible>));
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    (headers, body).into_response()
}

/// The answer's server-sent events as bytes; `summary`, when given, hears
/// how the stream ended and its usage (dropped early: cancelled).
pub fn frames(
    gen: Generation,
    shape: Shape,
    include_usage: bool,
    echo: bool,
    summary: Option<StreamSummarySender>,
) -> impl Stream<Item = Bytes> + Send + 'static {
    let started = gen.started;
    let mut state = StreamState {
        gen,
        shape,
        include_usage,
        pending: Default::default(),
        finished: false,
        started,
        summary,
        events: 0,
        bytes: 0,
    };
    let opening = match shape {
        Shape::Chat => Some(state.text_chunk(Some(String::new()), Some(Role::Assistant), None)),
        Shape::Completion if echo => state
            .gen
            .prompt_text
            .take()
            .map(|p| state.text_chunk(Some(p), None, None)),
        Shape::Completion => None,
    };
    state.pending.extend(opening);
    stream::unfold(state, |mut st| async move {
        loop {
            if let Some(ev) = st.pending.pop_front() {
                st.events += 1;
                st.bytes += ev.len() as u64;
                return Some((ev, st));
            }
            if st.finished {
                return None;
            }
            let ev = st.gen.events.recv().await;
            st.on_event(ev);
        }
    })
}
