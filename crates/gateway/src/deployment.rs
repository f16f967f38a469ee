//! One upstream deployment: a shared HTTP client, its endpoints, and the
//! retry loop around single attempts.
//!
//! An attempt is retried (on another replica when there is one) after a
//! connect error, a timeout before the first byte, a 5xx or a 429, and only
//! while nothing has reached the caller: a whole body is read before it is
//! returned, and a stream is returned only once its first chunk arrived.
//! Every other status is the answer and is passed back unchanged.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::StatusCode;
use http_body_util::{BodyDataStream, BodyExt};
use tokio::time::timeout_at;

use crate::backoff;
use crate::body::{parse_usage, rewrite_model};
use crate::client::HttpClient;
use crate::config::{ConfigError, DeploymentConfig, RetryConfig, TimeoutConfig};
use crate::endpoint::{self, Attempt, Endpoint, EndpointSnapshot};
use crate::error::{GatewayError, TimeoutPhase};
use crate::request::{UpstreamBody, UpstreamRequest, UpstreamResponse};
use crate::stream::UpstreamStream;

/// How long to wait for the body of a retryable error status.
const ERROR_BODY_WAIT: Duration = Duration::from_secs(1);

/// An upstream OpenAI-compatible provider with one or more replicas.
#[derive(Debug)]
pub struct Deployment {
    name: String,
    model: String,
    client: HttpClient,
    endpoints: Vec<Arc<Endpoint>>,
    timeouts: TimeoutConfig,
    retries: RetryConfig,
}

/// A failed attempt that may be retried.
struct Retry {
    error: GatewayError,
    retry_after: Option<Duration>,
}

/// The result of one attempt: the answer, or a reason to retry.
type Outcome = Result<UpstreamResponse, Retry>;

impl Deployment {
    /// Validates `cfg`, reads its API key and builds its client.
    pub fn new(cfg: DeploymentConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let err = |field: &str, message: String| ConfigError {
            scope: format!("deployment `{}`", cfg.name),
            field: field.to_owned(),
            message,
        };
        let mut headers = HeaderMap::new();
        for (name, value) in &cfg.headers {
            let field = format!("headers.{name}");
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| err(&field, e.to_string()))?;
            let value = HeaderValue::from_str(value).map_err(|e| err(&field, e.to_string()))?;
            headers.insert(name, value);
        }
        if let Some(key) = &cfg.api_key {
            let secret = key.resolve().map_err(|m| err("api_key", m))?;
            let mut value = HeaderValue::from_str(&format!("Bearer {}", secret.expose()))
                .map_err(|_| err("api_key", "is not a valid header value".into()))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("switchyard/", env!("CARGO_PKG_VERSION"))),
        );
        // One client per deployment: its pool keeps connections alive across
        // calls. An API answer is never a redirect to follow: a 3xx is passed
        // back as it came.
        let client = HttpClient::new(headers, cfg.timeouts.connect(), Duration::from_secs(90))
            .map_err(|m| err("base_url", m))?;
        let now = Instant::now();
        let endpoints = std::iter::once(&cfg.base_url)
            .chain(&cfg.replicas)
            .map(|url| Arc::new(Endpoint::new(url, cfg.breaker.clone(), now)))
            .collect();
        Ok(Self {
            model: cfg.upstream_model().to_owned(),
            name: cfg.name,
            client,
            endpoints,
            timeouts: cfg.timeouts,
            retries: cfg.retries,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The model name sent upstream.
    pub fn upstream_model(&self) -> &str {
        &self.model
    }

    /// Each endpoint's load, latency and breaker, for metrics and admin.
    pub fn endpoints(&self) -> Vec<EndpointSnapshot> {
        let now = Instant::now();
        self.endpoints.iter().map(|e| e.snapshot(now)).collect()
    }

    /// Sends `req` with retries; see the module docs for what is retried.
    pub async fn call(&self, req: &UpstreamRequest) -> Result<UpstreamResponse, GatewayError> {
        let mut attempts = 0;
        self.call_counting(req, &mut attempts).await
    }

    /// [`Self::call`], adding the attempts it makes to `attempts`.
    pub(crate) async fn call_counting(
        &self,
        req: &UpstreamRequest,
        attempts: &mut u32,
    ) -> Result<UpstreamResponse, GatewayError> {
        let body = if req.model.as_deref() == Some(self.model.as_str()) {
            req.body.clone()
        } else {
            rewrite_model(&req.body, &self.model)?
        };
        let deadline = Instant::now() + self.timeouts.total();
        let mut avoid = None;
        let mut retries = 0;
        let mut last: Option<GatewayError> = None;
        loop {
            let slot = match endpoint::acquire(&self.endpoints, avoid, Instant::now()) {
                Ok(slot) => slot,
                Err(retry_after) => {
                    return Err(last.unwrap_or(GatewayError::BreakerOpen {
                        deployment: self.name.clone(),
                        retry_after,
                    }))
                }
            };
            *attempts += 1;
            avoid = Some(slot.index());
            let (error, retry_after) = match self.attempt(slot, req, body.clone(), deadline).await {
                Ok(mut response) => {
                    response.attempts = *attempts;
                    return Ok(response);
                }
                Err(Retry { error, retry_after }) => (error, retry_after),
            };
            retries += 1;
            if retries > self.retries.max_retries {
                return Err(error);
            }
            let pause = backoff::delay(&self.retries, retries, retry_after);
            if Instant::now() + pause >= deadline {
                return Err(error);
            }
            tracing::debug!(deployment = %self.name, retry = retries, ?pause, %error, "retrying upstream");
            tokio::time::sleep(pause).await;
            last = Some(error);
        }
    }

    async fn attempt(&self, mut slot: Attempt, req: &UpstreamRequest, body: Bytes, deadline: Instant) -> Outcome {
        let start = Instant::now();
        let remaining = deadline.saturating_duration_since(start);
        let (first_byte_at, phase) = if self.timeouts.first_byte() < remaining {
            (start + self.timeouts.first_byte(), TimeoutPhase::FirstByte)
        } else {
            (deadline, TimeoutPhase::Total)
        };
        let uri = match slot.endpoint().uri(&req.path) {
            Ok(uri) => uri,
            Err(message) => {
                return Err(Retry {
                    error: GatewayError::InvalidRequest { message },
                    retry_after: None,
                })
            }
        };
        let send = self.client.post(uri, &req.headers, body);
        let response = match timeout_at(first_byte_at.into(), send).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => return self.retry(slot, self.transport_error(&e), None),
            Err(_) => return self.retry(slot, self.timeout(phase), None),
        };
        let (parts, body) = response.into_parts();
        let (status, headers) = (parts.status, parts.headers);
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            let retry_after = backoff::retry_after(&headers);
            let wait = (Instant::now() + ERROR_BODY_WAIT).min(deadline);
            let body = match timeout_at(wait.into(), body.collect()).await {
                Ok(Ok(body)) => body.to_bytes(),
                _ => Bytes::new(),
            };
            let error = GatewayError::UpstreamStatus {
                deployment: self.name.clone(),
                status,
                body,
                retry_after,
            };
            return self.retry(slot, error, retry_after);
        }
        // A stream request answered with plain JSON (an upstream that ignores
        // `stream`) is read whole, so its usage is still seen.
        let json = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if req.stream && status.is_success() && !json {
            let mut chunks = BodyDataStream::new(body).boxed();
            let first = match timeout_at(first_byte_at.into(), chunks.next()).await {
                Ok(Some(Ok(first))) => first,
                Ok(Some(Err(e))) => return self.retry(slot, self.stream_error(&e), None),
                Ok(None) => {
                    let error = GatewayError::Stream {
                        deployment: self.name.clone(),
                        message: "stream ended before its first byte".into(),
                    };
                    return self.retry(slot, error, None);
                }
                Err(_) => return self.retry(slot, self.timeout(phase), None),
            };
            slot.first_byte();
            let (chunks, summary) = UpstreamStream::new(
                self.name.clone(),
                first,
                chunks,
                (deadline, self.timeouts.stream_idle()),
                slot,
            );
            let chunks = crate::stream::Chunks::new(chunks);
            return Ok(self.answer(status, headers, UpstreamBody::Stream { chunks, summary }));
        }
        slot.first_byte();
        let bytes = match timeout_at(deadline.into(), body.collect()).await {
            Ok(Ok(bytes)) => bytes.to_bytes(),
            Ok(Err(e)) => return self.retry(slot, self.stream_error(&e), None),
            Err(_) => return self.retry(slot, self.timeout(TimeoutPhase::Total), None),
        };
        // A 4xx is the caller's problem, not the upstream's: a breaker success.
        slot.settle(true);
        let usage = if status.is_success() { parse_usage(&bytes) } else { None };
        Ok(self.answer(status, headers, UpstreamBody::Full { bytes, usage }))
    }

    fn answer(&self, status: StatusCode, headers: HeaderMap, body: UpstreamBody) -> UpstreamResponse {
        UpstreamResponse {
            deployment: self.name.clone(),
            attempts: 0,
            status,
            headers,
            body,
        }
    }

    fn retry(&self, mut slot: Attempt, error: GatewayError, retry_after: Option<Duration>) -> Outcome {
        slot.settle(false);
        Err(Retry { error, retry_after })
    }

    fn timeout(&self, phase: TimeoutPhase) -> GatewayError {
        GatewayError::Timeout {
            deployment: self.name.clone(),
            phase,
        }
    }

    fn transport_error(&self, e: &hyper_util::client::legacy::Error) -> GatewayError {
        if e.is_connect() && timed_out(e) {
            // The only timeout the client itself enforces is the connect timeout.
            return self.timeout(TimeoutPhase::Connect);
        }
        GatewayError::Connect {
            deployment: self.name.clone(),
            message: error_chain(e),
        }
    }

    fn stream_error(&self, e: &hyper::Error) -> GatewayError {
        GatewayError::Stream {
            deployment: self.name.clone(),
            message: error_chain(e),
        }
    }
}

/// Whether an I/O timeout is among `e`'s sources.
fn timed_out(e: &(dyn StdError + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// An error with its sources, `outer: inner: root`.
pub(crate) fn error_chain(e: &dyn StdError) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
