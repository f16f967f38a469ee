//! The middleware: key → principal, scope, rate limit, budget; then the
//! response goes out with OpenAI's `x-ratelimit-*` headers, and one usage
//! record is written when its body has been sent (or the client left).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use switchyard_api::ErrorKind;
use switchyard_tenancy::{AccessError, AuthError, Decision, Principal, QuotaError, Scope, UsageRecord};

use super::ticket::Facts;
use super::UsageTicket;
use crate::error::ApiError;
use crate::state::AppState;

pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    match admit(
        &state,
        &parts.method,
        parts.uri.path(),
        &parts.headers,
        &mut parts.extensions,
    )
    .await
    {
        Ok(admitted) => admitted.finish(next.run(Request::from_parts(parts, body)).await),
        Err(refused) => refused,
    }
}

/// A request the door let through, and what its response still needs.
pub(crate) struct Admitted {
    decision: Option<Decision>,
    /// Set for a metered request: its usage record, less the status.
    meter: Option<Finish>,
}

/// Authenticates, scopes, rate-limits and budget-checks a request by its
/// method, path and headers, and leaves the principal and the usage ticket
/// in `extensions`; a refusal is the response to send.
pub(crate) async fn admit(
    state: &AppState,
    method: &axum::http::Method,
    path: &str,
    headers: &HeaderMap,
    extensions: &mut axum::http::Extensions,
) -> Result<Admitted, Response> {
    let scope = if path.starts_with("/admin/") {
        Scope::Admin
    } else if path.starts_with("/v1/") {
        Scope::Inference
    } else {
        return Ok(Admitted {
            decision: None,
            meter: None,
        });
    };
    let t = &state.tenancy;
    let principal = if t.enabled() {
        let header = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        match t.auth.authenticate(header).await {
            Ok(p) => p,
            Err(e) => return Err(auth_error(&e).into_response()),
        }
    } else {
        std::sync::Arc::new(Principal::unauthenticated())
    };
    if let Err(e) = principal.require(scope) {
        return Err(access_error(&e).into_response());
    }
    let mut decision = None;
    if scope == Scope::Inference {
        match t
            .limiter
            .acquire(&principal.key_id, &principal.limits)
            .await
            .map(Decision::check)
        {
            Ok(Ok(d)) => decision = Some(d),
            Ok(Err(limited)) => {
                let secs = limited.retry_after.as_secs_f64().ceil().max(1.0) as u64;
                let err = ApiError {
                    retry_after: Some(secs),
                    ..ApiError::new(
                        ErrorKind::RateLimited,
                        format!("Rate limit reached for {}; retry in {secs} s.", limited.what),
                    )
                    .code("rate_limit_exceeded")
                };
                let mut resp = err.into_response();
                rate_headers(resp.headers_mut(), &limited.decision);
                return Err(resp);
            }
            Err(e) => return Err(ApiError::overloaded(format!("rate limiter unavailable: {e}"), 1).into_response()),
        }
        if let Err(e) = t.quotas.check(&principal.tenant_id, &principal.budgets, 0).await {
            return Err(quota_error(&e).into_response());
        }
    }
    if scope == Scope::Inference && t.behind() {
        return Err(ApiError::overloaded("Usage recording is behind; retry shortly.", 1)
            .code("usage_backlog")
            .into_response());
    }
    let ticket = UsageTicket::default();
    extensions.insert(principal.clone());
    extensions.insert(ticket.clone());
    // Inference requests are metered; reads (models, usage) are not.
    let meter = (scope == Scope::Inference && method == axum::http::Method::POST).then(|| Finish {
        state: state.clone(),
        principal,
        ticket,
        request_id: headers
            .get(crate::front::REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        status: 0,
        started: Instant::now(),
    });
    Ok(Admitted { decision, meter })
}

impl Admitted {
    /// The response with its rate-limit headers, and (metered) a body that
    /// queues the usage record once it has been sent or dropped.
    pub(crate) fn finish(self, mut resp: Response) -> Response {
        if let Some(d) = &self.decision {
            rate_headers(resp.headers_mut(), d);
        }
        let Some(mut finish) = self.meter else {
            return resp;
        };
        finish.status = resp.status().as_u16();
        resp.map(|body| {
            Body::new(Metered {
                inner: body,
                finish: Some(finish),
            })
        })
    }
}

/// Everything needed to write the request's usage record.
struct Finish {
    state: AppState,
    principal: std::sync::Arc<Principal>,
    ticket: UsageTicket,
    request_id: String,
    status: u16,
    started: Instant,
}

impl Finish {
    /// Queues the record. The common case (usage known, token window in
    /// this process or none, room in the queue) needs no task; otherwise a
    /// tracked task finishes the job, counted in the backlog the door checks.
    fn record(self) {
        let t = self.state.tenancy.clone();
        let Some(facts) = self.ticket.ready() else {
            t.clone().in_background(async move {
                let facts = self.ticket.settled(Duration::from_secs(10)).await;
                self.charge_then_record(facts).await;
            });
            return;
        };
        let tokens = facts.prompt_tokens + facts.completion_tokens;
        let charged = tokens == 0
            || self.principal.limits.tokens_per_minute.is_none()
            || t.limiter
                .charge_tokens_now(&self.principal.key_id, &self.principal.limits, tokens);
        if !charged {
            t.clone().in_background(self.charge_then_record(facts));
            return;
        }
        match t.recorder.try_record(self.usage(facts)) {
            Ok(None) => {}
            Ok(Some(pending)) => t.in_background(async move {
                if let Err(e) = pending.send().await {
                    tracing::error!(error = %e, "usage record lost");
                }
            }),
            Err(e) => tracing::error!(error = %e, "usage record lost"),
        }
    }

    /// The slow path: tokens charged to a shared window, then the record
    /// queued (waiting for room if need be).
    async fn charge_then_record(self, facts: Facts) {
        let t = self.state.tenancy.clone();
        let total = facts.prompt_tokens + facts.completion_tokens;
        if total > 0 && self.principal.limits.tokens_per_minute.is_some() {
            if let Err(e) = t
                .limiter
                .charge_tokens(&self.principal.key_id, &self.principal.limits, total)
                .await
            {
                tracing::warn!(error = %e, "could not charge tokens to the rate limiter");
            }
        }
        if let Err(e) = t.recorder.record(self.usage(facts)).await {
            tracing::error!(error = %e, "usage record lost");
        }
    }

    /// The record, moving what this request owns into it.
    fn usage(self, facts: Facts) -> UsageRecord {
        UsageRecord {
            latency_ms: self.started.elapsed().as_millis() as u64,
            request_id: self.request_id,
            tenant_id: self.principal.tenant_id.clone(),
            key_id: self.principal.key_id.clone(),
            model: facts.model,
            deployment: facts.deployment,
            prompt_tokens: facts.prompt_tokens,
            completion_tokens: facts.completion_tokens,
            status_code: self.status,
            created_at: switchyard_db::now_unix(),
        }
    }
}

/// A response body that reports once it is finished or dropped.
struct Metered {
    inner: Body,
    finish: Option<Finish>,
}

impl http_body::Body for Metered {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            if let Some(f) = self.finish.take() {
                f.record();
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        if let Some(f) = self.finish.take() {
            f.record();
        }
    }
}

/// OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, for
/// the windows the key has.
/// (Header names as constants: a `&str` name is parsed on every insert.)
fn rate_headers(h: &mut HeaderMap, d: &Decision) {
    const fn name(s: &'static str) -> HeaderName {
        HeaderName::from_static(s)
    }
    const REQUESTS: [HeaderName; 3] = [
        name("x-ratelimit-limit-requests"),
        name("x-ratelimit-remaining-requests"),
        name("x-ratelimit-reset-requests"),
    ];
    const TOKENS: [HeaderName; 3] = [
        name("x-ratelimit-limit-tokens"),
        name("x-ratelimit-remaining-tokens"),
        name("x-ratelimit-reset-tokens"),
    ];
    let windows = [(&d.requests, REQUESTS), (&d.tokens, TOKENS)];
    for (window, [limit, remaining, reset]) in windows {
        let Some(w) = window else { continue };
        h.insert(limit, HeaderValue::from(w.limit));
        h.insert(remaining, HeaderValue::from(w.remaining));
        let secs = format!("{}s", w.reset.as_secs_f64().ceil() as u64);
        if let Ok(v) = HeaderValue::from_str(&secs) {
            h.insert(reset, v);
        }
    }
}

fn auth_error(e: &AuthError) -> ApiError {
    tracing::info!(reason = e.kind(), "request refused: not authenticated");
    match e {
        AuthError::Store(_) => ApiError::overloaded("The key store is unavailable; retry shortly.", 1),
        other => ApiError::new(
            ErrorKind::Authentication,
            format!(
                "Invalid authentication: {other}. Send `Authorization: Bearer <key>` with a live Switchyard API key."
            ),
        )
        .code("invalid_api_key"),
    }
}

pub(crate) fn access_error(e: &AccessError) -> ApiError {
    let code = match e {
        AccessError::MissingScope(_) => "insufficient_scope",
        AccessError::ModelNotAllowed(_) => "model_not_allowed",
        AccessError::OtherTenant => "other_tenant",
    };
    ApiError::new(ErrorKind::PermissionDenied, format!("{e}.")).code(code)
}

fn quota_error(e: &QuotaError) -> ApiError {
    match e {
        QuotaError::Exhausted { .. } => ApiError {
            retry_after: Some(3600),
            ..ApiError::new(ErrorKind::RateLimited, format!("{e}.")).code("quota_exceeded")
        },
        QuotaError::Store(_) => ApiError::overloaded("The usage store is unavailable; retry shortly.", 1),
    }
}
