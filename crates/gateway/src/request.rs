//! What a call takes and what it gives back.

use bytes::Bytes;
use http::header::HeaderMap;
use http::StatusCode;
use switchyard_api::common::Usage;

use crate::stream::{Chunks, StreamSummaryReceiver};

/// One OpenAI-compatible request to send upstream.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    /// Appended to the deployment's base URL: `/chat/completions`,
    /// `/completions`, `/embeddings`.
    pub path: String,
    /// The caller's JSON body; only its `model` is rewritten.
    pub body: Bytes,
    /// The body asks for `stream: true`: a 2xx answer is passed through as
    /// a stream of chunks instead of being read whole.
    pub stream: bool,
    /// Per-request headers to send along (e.g. a request id), on top of the
    /// deployment's own; empty by default.
    pub headers: HeaderMap,
    /// The body's `model`, when the caller has read it already: a deployment
    /// whose upstream model is the same then sends the body without parsing it.
    pub model: Option<String>,
}

impl UpstreamRequest {
    pub fn new(path: impl Into<String>, body: impl Into<Bytes>, stream: bool) -> Self {
        Self {
            path: path.into(),
            body: body.into(),
            stream,
            headers: HeaderMap::new(),
            model: None,
        }
    }
}

/// The answer that reached the caller.
#[derive(Debug)]
pub struct UpstreamResponse {
    /// The deployment that answered.
    pub deployment: String,
    /// Network attempts made for this call, over every deployment tried.
    pub attempts: u32,
    /// The upstream's status: 2xx, or a 4xx (other than 429) passed through.
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: UpstreamBody,
}

#[derive(Debug)]
pub enum UpstreamBody {
    /// A whole body, with the `usage` it reported (2xx only).
    Full { bytes: Bytes, usage: Option<Usage> },
    /// Streamed chunks as the backend sent them; `summary` resolves once,
    /// when the stream ends, with the usage the stream carried.
    Stream {
        chunks: Chunks,
        summary: StreamSummaryReceiver,
    },
}

impl UpstreamResponse {
    /// The usage of a whole-body answer (streams report theirs in the summary).
    pub fn usage(&self) -> Option<Usage> {
        match &self.body {
            UpstreamBody::Full { usage, .. } => *usage,
            UpstreamBody::Stream { .. } => None,
        }
    }
}
