//! The gateway's one error type, grouped by meaning, and its mapping to an
//! HTTP status and an OpenAI-style error `type`/`code`.
//!
//! The server renders [`ErrorInfo`]; this crate never builds a response.
//! Upstream error bodies are kept (for logs and passthrough) but never put in
//! the message, which may reach other tenants' dashboards.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

/// Which deadline ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    /// Setting up the TCP/TLS connection.
    Connect,
    /// Waiting for the response head (and, for streams, the first chunk).
    FirstByte,
    /// The call's whole budget (`total_ms`), including a streamed body.
    Total,
    /// A stream went silent for `stream_idle_ms` after its first chunk.
    StreamIdle,
}

impl TimeoutPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::FirstByte => "first_byte",
            Self::Total => "total",
            Self::StreamIdle => "stream_idle",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The caller's body cannot be sent (not a JSON object). Never retried.
    #[error("invalid request body: {message}")]
    InvalidRequest { message: String },

    #[error("deployment `{deployment}` timed out ({})", phase.as_str())]
    Timeout { deployment: String, phase: TimeoutPhase },

    /// The connection could not be made or broke before an answer.
    #[error("deployment `{deployment}` unreachable: {message}")]
    Connect { deployment: String, message: String },

    /// A retryable status (5xx, 429) that was still there after the retries.
    #[error("deployment `{deployment}` answered {status}")]
    UpstreamStatus {
        deployment: String,
        status: StatusCode,
        body: Bytes,
        retry_after: Option<Duration>,
    },

    /// Every endpoint's breaker is open; the network was not touched.
    #[error("deployment `{deployment}` is unavailable (circuit open)")]
    BreakerOpen { deployment: String, retry_after: Duration },

    /// A streamed body broke after bytes reached the caller, or its head was
    /// not a readable body. Never retried once bytes went out.
    #[error("deployment `{deployment}` stream failed: {message}")]
    Stream { deployment: String, message: String },

    /// A native backend cannot take the call now (its model failed to load,
    /// its queue is full, the server is busy): worth trying the next
    /// deployment. `kind` and `code` are the native error's own.
    #[error("deployment `{deployment}` refused: {message}")]
    Refused {
        deployment: String,
        status: StatusCode,
        kind: &'static str,
        code: &'static str,
        message: String,
        retry_after: Option<Duration>,
    },

    /// Every deployment of a route failed; `last` is the final failure.
    #[error("all {tried} deployment(s) failed after {attempts} attempt(s); last: {last}")]
    AllFailed {
        tried: usize,
        attempts: u32,
        last: Box<GatewayError>,
    },
}

/// What the HTTP side needs to render an OpenAI-style error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorInfo {
    pub status: StatusCode,
    /// OpenAI `error.type`.
    pub kind: &'static str,
    /// OpenAI `error.code`; also a bounded label for metrics.
    pub code: &'static str,
    pub message: String,
    /// For a `Retry-After` header.
    pub retry_after: Option<Duration>,
}

impl GatewayError {
    /// The error that decided the outcome (unwraps [`Self::AllFailed`]).
    pub fn root(&self) -> &GatewayError {
        match self {
            Self::AllFailed { last, .. } => last.root(),
            other => other,
        }
    }

    /// Whether another deployment of a route should be tried after this.
    pub fn allows_fallback(&self) -> bool {
        !matches!(self, Self::InvalidRequest { .. })
    }

    /// Status, OpenAI type and code, message and `Retry-After`.
    pub fn info(&self) -> ErrorInfo {
        let message = self.to_string();
        let (status, kind, code, retry_after) = match self.root() {
            Self::InvalidRequest { .. } => (StatusCode::BAD_REQUEST, "invalid_request_error", "invalid_body", None),
            Self::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "upstream_error", "upstream_timeout", None),
            Self::Connect { .. } => (StatusCode::BAD_GATEWAY, "upstream_error", "upstream_unreachable", None),
            Self::UpstreamStatus {
                status, retry_after, ..
            } if *status == StatusCode::TOO_MANY_REQUESTS => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "upstream_rate_limited",
                Some(retry_after.unwrap_or(Duration::from_secs(1))),
            ),
            Self::UpstreamStatus { .. } => (StatusCode::BAD_GATEWAY, "upstream_error", "upstream_status", None),
            Self::BreakerOpen { retry_after, .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream_error",
                "circuit_open",
                Some((*retry_after).max(Duration::from_secs(1))),
            ),
            Self::Stream { .. } => (StatusCode::BAD_GATEWAY, "upstream_error", "upstream_stream_error", None),
            Self::Refused {
                status,
                kind,
                code,
                retry_after,
                ..
            } => (*status, *kind, *code, *retry_after),
            Self::AllFailed { .. } => (StatusCode::BAD_GATEWAY, "upstream_error", "all_failed", None),
        };
        ErrorInfo {
            status,
            kind,
            code,
            message,
            retry_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_follows_the_root_cause() {
        let timeout = GatewayError::Timeout {
            deployment: "a".into(),
            phase: TimeoutPhase::FirstByte,
        };
        assert_eq!(timeout.info().status, StatusCode::GATEWAY_TIMEOUT);
        let all = GatewayError::AllFailed {
            tried: 2,
            attempts: 4,
            last: Box::new(GatewayError::BreakerOpen {
                deployment: "b".into(),
                retry_after: Duration::from_millis(10),
            }),
        };
        let info = all.info();
        assert_eq!(info.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(info.code, "circuit_open");
        assert_eq!(info.retry_after, Some(Duration::from_secs(1)));
        assert!(info.message.contains("after 4 attempt(s)"));
        let limited = GatewayError::UpstreamStatus {
            deployment: "a".into(),
            status: StatusCode::TOO_MANY_REQUESTS,
            body: Bytes::from_static(b"secret detail"),
            retry_after: Some(Duration::from_secs(3)),
        };
        let info = limited.info();
        assert_eq!(info.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(info.retry_after, Some(Duration::from_secs(3)));
        assert!(!info.message.contains("secret"));
        let refused = GatewayError::AllFailed {
            tried: 1,
            attempts: 1,
            last: Box::new(GatewayError::Refused {
                deployment: "local".into(),
                status: StatusCode::SERVICE_UNAVAILABLE,
                kind: "overloaded_error",
                code: "queue_full",
                message: "The queue is full.".into(),
                retry_after: Some(Duration::from_secs(1)),
            }),
        };
        assert!(refused.allows_fallback());
        let info = refused.info();
        assert_eq!(
            (info.status, info.code),
            (StatusCode::SERVICE_UNAVAILABLE, "queue_full")
        );
        assert_eq!(info.retry_after, Some(Duration::from_secs(1)));
    }
}
