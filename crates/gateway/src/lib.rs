//! Switchyard's client side for upstream OpenAI-compatible providers.
//!
//! A [`Deployment`] is one provider (`base_url`, key, model mapping, limits)
//! with one or more replicas. A [`Route`] is an ordered fallback chain of
//! deployments. Both answer [`UpstreamRequest`]s with an [`UpstreamResponse`]
//! or a [`GatewayError`]; the crate knows nothing of HTTP serving or SQL.
//!
//! # How a call goes
//!
//! 1. The body's `model` is rewritten to the upstream's name; every other
//!    field is copied as raw JSON (the `body` module explains the cost).
//! 2. An endpoint (replica) is chosen by power of two choices over those whose
//!    circuit breaker admits a call, cost = EWMA first-byte latency ×
//!    (outstanding + 1). If every breaker is open the call fails at once with
//!    [`GatewayError::BreakerOpen`], without touching the network.
//! 3. The attempt runs under the first-byte deadline (the response head, and
//!    for streams also the first chunk) inside the call's total deadline.
//!    Connect errors, first-byte timeouts, 5xx and 429 are retried with
//!    exponential backoff and full jitter (a `Retry-After` in seconds replaces
//!    the backoff, capped by `backoff_max_ms` and the deadline), preferring
//!    another replica. Other statuses (4xx) are the answer, passed back as is.
//! 4. Nothing is retried once bytes may have reached the caller: whole bodies
//!    are read before they are returned, and a stream is returned only after
//!    its first chunk arrived; from then on a break, a silence longer than
//!    `stream_idle_ms` or the total deadline is one error item, then the end.
//!    (A stream request answered with `application/json` is read whole.)
//! 5. Each endpoint's breaker gets one verdict per attempt: failure for every
//!    retryable outcome or a broken stream, success otherwise (a 4xx is the
//!    caller's fault, not the upstream's); a stream's verdict comes at its end.
//!    The latency EWMA learns from answers only: failing replicas are the
//!    breaker's business, not the balancer's.
//!
//! The client is one pooled hyper client per deployment (keep-alive,
//! `TCP_NODELAY`, connect timeout, no redirects followed). HTTP/2 is used
//! where https negotiates it; plain-http upstreams speak HTTP/1.1.
//!
//! # Usage accounting
//!
//! Only the answer that reached the caller carries usage: parsed from the
//! JSON of a whole body ([`UpstreamResponse::usage`]), or watched for in a
//! passing stream by an incremental SSE scanner and delivered once, when the
//! stream ends, through [`StreamSummaryReceiver`]. Failed attempts never
//! report usage, so retries cannot double-count.
//!
//! # State for metrics and admin
//!
//! [`Deployment::endpoints`] snapshots each endpoint: outstanding requests,
//! EWMA latency and its [`BreakerSnapshot`] (state, counters). The breaker
//! itself, [`CircuitBreaker`], is a plain struct that takes `now` as an
//! argument, so it is tested without a clock or a network.

mod backend;
mod backoff;
mod body;
pub mod breaker;
mod client;
pub mod config;
mod deployment;
mod endpoint;
mod error;
mod request;
mod route;
pub mod secret;
mod sse;
mod stream;
#[cfg(feature = "testing")]
pub mod testing;

pub use backend::Backend;
pub use breaker::{BreakerSnapshot, BreakerState, CircuitBreaker};
pub use config::{BreakerConfig, ConfigError, DeploymentConfig, RetryConfig, TimeoutConfig};
pub use deployment::Deployment;
pub use endpoint::EndpointSnapshot;
pub use error::{ErrorInfo, GatewayError, TimeoutPhase};
/// The HTTP types the gateway's API uses (the same `http` crate as axum's).
pub use http::{HeaderMap, StatusCode};
pub use request::{UpstreamBody, UpstreamRequest, UpstreamResponse};
pub use route::Route;
pub use secret::{Secret, SecretRef};
pub use stream::{
    summary_channel, Chunks, StreamOutcome, StreamSummary, StreamSummaryReceiver, StreamSummarySender, UpstreamStream,
};
