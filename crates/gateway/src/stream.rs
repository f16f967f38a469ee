//! Streaming passthrough: upstream chunks are forwarded as they arrive.
//!
//! [`UpstreamStream`] yields the upstream's bytes unchanged (no buffering, no
//! re-serialisation) while an [`SseScanner`] watches them for `usage` and
//! `[DONE]`. A break mid-way yields one error item and ends the stream; bytes
//! already went out, so it is never retried. When the stream ends (completed,
//! failed or dropped by the caller) the endpoint gets its breaker verdict and
//! a [`StreamSummary`] is sent, exactly once.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use switchyard_api::common::Usage;
use tokio::sync::oneshot;
use tokio::time::Sleep;

use crate::endpoint::Attempt;
use crate::error::{GatewayError, TimeoutPhase};
use crate::sse::SseScanner;

/// How a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOutcome {
    /// The upstream closed the body normally.
    Completed,
    /// The connection broke or the total deadline passed.
    Failed,
    /// The caller dropped the stream before its end.
    Cancelled,
}

/// What a finished stream carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSummary {
    pub outcome: StreamOutcome,
    /// The last `usage` object seen in a chunk.
    pub usage: Option<Usage>,
    /// Whether `data: [DONE]` arrived.
    pub done: bool,
    /// Bytes forwarded to the caller.
    pub bytes: u64,
    /// `data:` events seen.
    pub events: u64,
}

/// Resolves once with the stream's [`StreamSummary`].
#[derive(Debug)]
pub struct StreamSummaryReceiver(oneshot::Receiver<StreamSummary>);

impl StreamSummaryReceiver {
    pub async fn wait(self) -> StreamSummary {
        // The stream sends on every path, Drop included; a lost sender can
        // only mean the stream was leaked, which reads as cancelled.
        self.0.await.unwrap_or(StreamSummary {
            outcome: StreamOutcome::Cancelled,
            usage: None,
            done: false,
            bytes: 0,
            events: 0,
        })
    }
}

/// A streamed answer's bytes, from whichever backend: each item goes to the
/// caller as it is; an error item is the last.
pub struct Chunks(BoxStream<'static, Result<Bytes, GatewayError>>);

impl Chunks {
    pub fn new(stream: impl Stream<Item = Result<Bytes, GatewayError>> + Send + 'static) -> Self {
        Self(stream.boxed())
    }
}

impl Stream for Chunks {
    type Item = Result<Bytes, GatewayError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_next_unpin(cx)
    }
}

impl fmt::Debug for Chunks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Chunks")
    }
}

/// The sending half of a [`StreamSummaryReceiver`], for backends that make
/// their own streams (the native engines). Dropped unsent, it reports the
/// stream as cancelled, so a receiver always gets one summary.
#[derive(Debug)]
pub struct StreamSummarySender(Option<oneshot::Sender<StreamSummary>>);

/// A summary sender and its receiver.
pub fn summary_channel() -> (StreamSummarySender, StreamSummaryReceiver) {
    let (tx, rx) = oneshot::channel();
    (StreamSummarySender(Some(tx)), StreamSummaryReceiver(rx))
}

impl StreamSummarySender {
    /// Sends the summary; later calls (and the drop) do nothing.
    pub fn send(&mut self, summary: StreamSummary) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(summary);
        }
    }
}

impl Drop for StreamSummarySender {
    fn drop(&mut self) {
        self.send(StreamSummary {
            outcome: StreamOutcome::Cancelled,
            usage: None,
            done: false,
            bytes: 0,
            events: 0,
        });
    }
}

/// The upstream's body as a stream of chunks. `Send + Unpin`, ready to hand
/// to an HTTP body.
pub struct UpstreamStream {
    deployment: String,
    first: Option<Bytes>,
    inner: Option<BoxStream<'static, Result<Bytes, hyper::Error>>>,
    deadline: Pin<Box<Sleep>>,
    idle_limit: Duration,
    idle: Pin<Box<Sleep>>,
    scanner: SseScanner,
    bytes: u64,
    attempt: Option<Attempt>,
    summary: Option<oneshot::Sender<StreamSummary>>,
}

impl UpstreamStream {
    /// `first` was already read (it proved the upstream answers); `deadline`
    /// is the call's total deadline, `idle_limit` the longest gap between chunks.
    pub(crate) fn new(
        deployment: String,
        first: Bytes,
        inner: BoxStream<'static, Result<Bytes, hyper::Error>>,
        (deadline, idle_limit): (std::time::Instant, Duration),
        attempt: Attempt,
    ) -> (Self, StreamSummaryReceiver) {
        let (tx, rx) = oneshot::channel();
        let stream = Self {
            deployment,
            first: Some(first),
            inner: Some(inner),
            deadline: Box::pin(tokio::time::sleep_until(deadline.into())),
            idle_limit,
            idle: Box::pin(tokio::time::sleep(idle_limit)),
            scanner: SseScanner::default(),
            bytes: 0,
            attempt: Some(attempt),
            summary: Some(tx),
        };
        (stream, StreamSummaryReceiver(rx))
    }

    fn forward(&mut self, chunk: Bytes) -> Poll<Option<Result<Bytes, GatewayError>>> {
        self.scanner.feed(&chunk);
        let idle_until = tokio::time::Instant::now() + self.idle_limit;
        self.idle.as_mut().reset(idle_until);
        self.bytes += chunk.len() as u64;
        Poll::Ready(Some(Ok(chunk)))
    }

    fn finish(&mut self, outcome: StreamOutcome) {
        self.inner = None;
        if let Some(mut attempt) = self.attempt.take() {
            match outcome {
                StreamOutcome::Completed => attempt.settle(true),
                StreamOutcome::Failed => attempt.settle(false),
                // No verdict: the caller left, the upstream did nothing wrong.
                StreamOutcome::Cancelled => {}
            }
        }
        if let Some(tx) = self.summary.take() {
            let _ = tx.send(StreamSummary {
                outcome,
                usage: self.scanner.usage(),
                done: self.scanner.done(),
                bytes: self.bytes,
                events: self.scanner.events(),
            });
        }
    }

    fn fail(&mut self, error: GatewayError) -> Poll<Option<Result<Bytes, GatewayError>>> {
        tracing::warn!(deployment = %self.deployment, bytes = self.bytes, %error, "upstream stream broke");
        self.finish(StreamOutcome::Failed);
        Poll::Ready(Some(Err(error)))
    }
}

impl Stream for UpstreamStream {
    type Item = Result<Bytes, GatewayError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(first) = this.first.take() {
            return this.forward(first);
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => this.forward(chunk),
            Poll::Ready(Some(Err(e))) => {
                let error = GatewayError::Stream {
                    deployment: this.deployment.clone(),
                    message: crate::deployment::error_chain(&e),
                };
                this.fail(error)
            }
            Poll::Ready(None) => {
                this.finish(StreamOutcome::Completed);
                Poll::Ready(None)
            }
            Poll::Pending => {
                let phase = if this.deadline.as_mut().poll(cx).is_ready() {
                    TimeoutPhase::Total
                } else if this.idle.as_mut().poll(cx).is_ready() {
                    TimeoutPhase::StreamIdle
                } else {
                    return Poll::Pending;
                };
                let error = GatewayError::Timeout {
                    deployment: this.deployment.clone(),
                    phase,
                };
                this.fail(error)
            }
        }
    }
}

impl Drop for UpstreamStream {
    fn drop(&mut self) {
        if self.summary.is_some() {
            self.finish(StreamOutcome::Cancelled);
        }
    }
}

impl fmt::Debug for UpstreamStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamStream")
            .field("deployment", &self.deployment)
            .field("bytes", &self.bytes)
            .field("finished", &self.inner.is_none())
            .finish()
    }
}
