//! A model this server runs itself, as a deployment of a route: the same
//! [`Backend`] an upstream provider is, so a route can alias a native model,
//! fall back from an upstream to it, or from it to an upstream.
//!
//! The body is parsed strictly, as the native handlers parse it, with its
//! `model` set to the native model's id. An error that is the caller's
//! (a 4xx other than 429) is the answer, passed back in OpenAI's shape; one
//! that says the model cannot serve now (it failed to load, its queue is
//! full, the server is busy: 429 and 5xx) is [`GatewayError::Refused`], and
//! the route tries its next deployment. Usage goes back in the answer (a
//! whole body) or the stream's summary, like an upstream's, so the request's
//! usage record is written once, by the route.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use futures::future::BoxFuture;
use futures::StreamExt;
use switchyard_api::chat::ChatCompletionRequest;
use switchyard_api::common::Usage;
use switchyard_api::completions::CompletionRequest;
use switchyard_api::embeddings::EmbeddingRequest;
use switchyard_gateway::{Backend, Chunks, GatewayError, UpstreamBody, UpstreamRequest, UpstreamResponse};

use crate::error::ApiError;
use crate::extract;
use crate::routes::{embeddings, openai};
use crate::state::AppState;

pub struct NativeBackend {
    id: String,
    /// The server's state without its routes (so a route cannot reach
    /// itself) and with an unbounded request gate: the route's caller holds
    /// the request's permit already.
    state: AppState,
}

impl std::fmt::Debug for NativeBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeBackend").field("id", &self.id).finish()
    }
}

impl NativeBackend {
    pub fn new(id: impl Into<String>, state: AppState) -> Self {
        Self { id: id.into(), state }
    }

    async fn answer(&self, req: &UpstreamRequest) -> Result<(UpstreamBody, &'static str), ApiError> {
        if req.path == "/embeddings" {
            let mut r: EmbeddingRequest = extract::parse(&req.body)?;
            r.model.clone_from(&self.id);
            // `run` counts the outcome in the model's stats itself.
            let (answer, tokens) = embeddings::run(&self.state, r).await?;
            let bytes = serde_json::to_vec(&answer).map_err(|e| ApiError::internal(e.to_string()))?;
            return Ok((full(bytes.into(), Some(Usage::new(tokens, 0))), "application/json"));
        }
        let result = self.generate(req).await;
        self.state.models.note_error(&self.id, &result);
        result
    }

    async fn generate(&self, req: &UpstreamRequest) -> Result<(UpstreamBody, &'static str), ApiError> {
        let state = &self.state;
        let started = match req.path.as_str() {
            "/chat/completions" => {
                let mut r: ChatCompletionRequest = extract::parse(&req.body)?;
                r.model.clone_from(&self.id);
                openai::start_chat(state, r, None).await?
            }
            "/completions" => {
                let mut r: CompletionRequest = extract::parse(&req.body)?;
                r.model.clone_from(&self.id);
                openai::start_completion(state, r, None).await?
            }
            other => return Err(ApiError::internal(format!("no native handler for {other}"))),
        };
        let (gen, shape, echo) = (started.gen, started.shape, started.echo);
        if started.stream {
            let (tx, summary) = switchyard_gateway::summary_channel();
            let frames = crate::respond::frames(gen, shape, started.include_usage, echo, Some(tx));
            let chunks = Chunks::new(frames.map(Ok));
            return Ok((UpstreamBody::Stream { chunks, summary }, "text/event-stream"));
        }
        let (bytes, usage) = crate::respond::collect_body(gen, shape, echo).await?;
        Ok((full(bytes, Some(usage)), "application/json"))
    }

    fn response(
        &self,
        status: StatusCode,
        body: UpstreamBody,
        content_type: &'static str,
        attempts: u32,
    ) -> UpstreamResponse {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        UpstreamResponse {
            deployment: self.id.clone(),
            attempts,
            status,
            headers,
            body,
        }
    }
}

fn full(bytes: Bytes, usage: Option<Usage>) -> UpstreamBody {
    UpstreamBody::Full { bytes, usage }
}

impl Backend for NativeBackend {
    fn name(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "native"
    }

    fn model(&self) -> &str {
        &self.id
    }

    fn call<'a>(
        &'a self,
        req: &'a UpstreamRequest,
        attempts: &'a mut u32,
    ) -> BoxFuture<'a, Result<UpstreamResponse, GatewayError>> {
        Box::pin(async move {
            *attempts += 1;
            let error = match self.answer(req).await {
                Ok((body, ct)) => return Ok(self.response(StatusCode::OK, body, ct, *attempts)),
                Err(e) => e,
            };
            let status = error.status();
            if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS {
                let bytes = serde_json::to_vec(&error.body()).unwrap_or_default();
                return Ok(self.response(status, full(bytes.into(), None), "application/json", *attempts));
            }
            tracing::info!(deployment = %self.id, status = status.as_u16(), error = %error.message, "native deployment refused");
            Err(GatewayError::Refused {
                deployment: self.id.clone(),
                status,
                kind: error.kind.type_name(),
                code: error.code.unwrap_or("native_unavailable"),
                message: error.message,
                retry_after: error.retry_after.map(std::time::Duration::from_secs),
            })
        })
    }
}

/// The state a native backend runs with: the server's, without routes and
/// with a request gate that never refuses (see [`NativeBackend`]).
pub fn backend_state(state: &AppState) -> AppState {
    AppState {
        upstreams: Arc::default(),
        limiter: Arc::new(tokio::sync::Semaphore::new(tokio::sync::Semaphore::MAX_PERMITS)),
        ..state.clone()
    }
}
