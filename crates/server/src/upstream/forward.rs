//! Forwarding one request to a route and its answer back: a whole body as
//! it came, or a stream chunk by chunk (no buffering, no re-encoding; a
//! break mid-stream ends it with an OpenAI error event). Usage comes from
//! the answer that reached the client, once.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use switchyard_api::common::Usage;
use switchyard_api::ErrorKind;
use switchyard_gateway::{GatewayError, Route, UpstreamBody, UpstreamRequest};

use crate::auth::UsageTicket;
use crate::error::ApiError;
use crate::service;
use crate::state::AppState;
use crate::telemetry;

/// Headers of the client's request passed on upstream (names as constants:
/// a `&str` name is parsed on every lookup).
const PASSED: [HeaderName; 1] = [crate::front::REQUEST_ID];
const DEPLOYMENT: HeaderName = HeaderName::from_static("x-switchyard-deployment");
const ATTEMPTS: HeaderName = HeaderName::from_static("x-switchyard-attempts");

pub async fn forward(
    state: &AppState,
    route: Arc<Route>,
    path: &'static str,
    body: Bytes,
    stream: bool,
    headers: &HeaderMap,
    ticket: &UsageTicket,
) -> Result<Response, ApiError> {
    let permit = service::admit(state)?;
    let started = Instant::now();
    let mut req = UpstreamRequest::new(path, body, stream);
    // The route was found by the body's `model`: it is the route's name.
    req.model = Some(route.name().to_string());
    for name in PASSED {
        if let Some(v) = headers.get(&name) {
            req.headers.insert(name, v.clone());
        }
    }
    let answer = match route.call(&req).await {
        Ok(a) => a,
        Err(e) => {
            record(route.name(), "-", outcome_of(&e), None, started);
            return Err(api_error(&e));
        }
    };
    let mut resp_headers = HeaderMap::new();
    for name in [header::CONTENT_TYPE, header::CACHE_CONTROL] {
        if let Some(v) = answer.headers.get(&name) {
            resp_headers.insert(name, v.clone());
        }
    }
    if let Ok(v) = HeaderValue::from_str(&answer.deployment) {
        resp_headers.insert(DEPLOYMENT, v);
    }
    resp_headers.insert(ATTEMPTS, HeaderValue::from(answer.attempts));
    let status = StatusCode::from_u16(answer.status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    ticket.serve(route.name(), &answer.deployment);
    match answer.body {
        UpstreamBody::Full { bytes, usage } => {
            let outcome = if status.is_success() { "ok" } else { "client_error" };
            record(route.name(), &answer.deployment, outcome, usage, started);
            if let Some(u) = usage {
                ticket.tokens(u.prompt_tokens as u64, u.completion_tokens as u64);
            }
            drop(permit);
            Ok((status, resp_headers, bytes).into_response())
        }
        UpstreamBody::Stream { chunks, summary } => {
            // Usage and the outcome are known when the stream ends; the
            // permit is held until then, as for a native stream.
            ticket.defer();
            let ticket = ticket.clone();
            let (route_id, deployment) = (route.name().to_string(), answer.deployment);
            tokio::spawn(async move {
                let s = summary.wait().await;
                let (p, c) = s
                    .usage
                    .map_or((0, 0), |u| (u.prompt_tokens as u64, u.completion_tokens as u64));
                ticket.finish(p, c);
                let outcome = match s.outcome {
                    switchyard_gateway::StreamOutcome::Completed => "ok",
                    switchyard_gateway::StreamOutcome::Failed => "stream_error",
                    switchyard_gateway::StreamOutcome::Cancelled => "cancelled",
                };
                record(&route_id, &deployment, outcome, s.usage, started);
                drop(permit);
            });
            let mut failed = false;
            let body = chunks.map(move |item| match item {
                Ok(bytes) => Ok::<Bytes, std::convert::Infallible>(bytes),
                Err(e) if !failed => {
                    failed = true;
                    Ok(error_event(&e))
                }
                Err(_) => Ok(Bytes::new()),
            });
            Ok((status, resp_headers, Body::from_stream(body)).into_response())
        }
    }
}

/// The gateway's error as this server's OpenAI-shaped error.
fn api_error(e: &GatewayError) -> ApiError {
    let info = e.info();
    let kind = match info.status.as_u16() {
        400 => ErrorKind::InvalidRequest,
        429 => ErrorKind::RateLimited,
        503 => ErrorKind::Overloaded,
        504 => ErrorKind::Timeout,
        _ => ErrorKind::Upstream,
    };
    ApiError {
        retry_after: info.retry_after.map(|d| d.as_secs().max(1)),
        ..ApiError::new(kind, info.message).code(info.code)
    }
}

/// An SSE event carrying the error, then the stream ends (as native
/// streams end on a failure).
fn error_event(e: &GatewayError) -> Bytes {
    let body = api_error(e).body();
    let json = serde_json::to_string(&body).unwrap_or_default();
    Bytes::from(format!("data: {json}\n\n"))
}

fn outcome_of(e: &GatewayError) -> &'static str {
    e.info().code
}

/// The handles of one (route, deployment, outcome).
struct RouteHandles {
    requests: metrics::Counter,
    duration: metrics::Histogram,
    prompt: metrics::Counter,
    generated: metrics::Counter,
}

thread_local! {
    static HANDLES: telemetry::LocalHandles<(String, String, &'static str), RouteHandles> =
        telemetry::LocalHandles::default();
}

/// `(route, deployment, outcome)` looked up in [`HANDLES`] without building
/// the key; hashes as the tuple of its owned form does.
#[derive(Hash)]
struct RouteKey<'a>(&'a str, &'a str, &'static str);

impl hashbrown::Equivalent<(String, String, &'static str)> for RouteKey<'_> {
    fn equivalent(&self, key: &(String, String, &'static str)) -> bool {
        self.0 == key.0 && self.1 == key.1 && self.2 == key.2
    }
}

fn record(route: &str, deployment: &str, outcome: &'static str, usage: Option<Usage>, started: Instant) {
    let make = |k: &RouteKey<'_>| {
        let (route, deployment, outcome) = (k.0.to_string(), k.1.to_string(), k.2);
        let h = RouteHandles {
            requests: metrics::counter!(telemetry::UPSTREAM_REQUESTS, "route" => route.clone(), "deployment" => deployment.clone(), "outcome" => outcome),
            duration: metrics::histogram!(telemetry::UPSTREAM_DURATION, "route" => route.clone()),
            prompt: metrics::counter!(telemetry::PROMPT_TOKENS, "model" => route.clone()),
            generated: metrics::counter!(telemetry::GENERATED_TOKENS, "model" => route.clone()),
        };
        ((route, deployment, outcome), h)
    };
    telemetry::with_handles(&HANDLES, &RouteKey(route, deployment, outcome), make, |h| {
        h.requests.increment(1);
        h.duration.record(started.elapsed().as_secs_f64());
        if let Some(u) = usage {
            h.prompt.increment(u.prompt_tokens as u64);
            h.generated.increment(u.completion_tokens as u64);
        }
    });
}
