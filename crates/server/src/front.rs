//! The door every request comes through, as one middleware: its request id
//! (the client's `x-request-id`, or a new one), a span carrying that id
//! around everything logged while it is served, the HTTP metrics, one
//! access-log line ([`crate::access`], written once the response is sent),
//! and then the tenancy guard.
//!
//! One layer rather than tower-http's request-id and trace layers plus two
//! `from_fn` layers: every layer is cloned and boxed per request, and in
//! the gateway's profile the stack cost more than the proxying it wrapped.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::state::AppState;
use crate::telemetry::{with_handles, LocalHandles, HTTP_DURATION, HTTP_IN_FLIGHT, HTTP_REQUESTS};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

type HttpHandles = (metrics::Counter, metrics::Histogram);

thread_local! {
    static BY_ROUTE: LocalHandles<(String, u16), HttpHandles> = LocalHandles::default();
}

/// `(route, status)` looked up in [`BY_ROUTE`] without building the key;
/// hashes as the tuple of its owned form does.
#[derive(Hash)]
struct RouteStatus<'a>(&'a str, u16);

impl hashbrown::Equivalent<(String, u16)> for RouteStatus<'_> {
    fn equivalent(&self, key: &(String, u16)) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

pub async fn front(state: State<AppState>, req: Request, next: Next) -> Response {
    if req.extensions().get::<crate::entry::Entered>().is_some() {
        // Its door and tenancy were passed on the proxied path.
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let door = Door::enter(&parts.method, &parts.uri, &mut parts.headers);
    let req = Request::from_parts(parts, body);
    let route = req.extensions().get::<MatchedPath>().cloned();
    let span = door.span.clone();
    let mut resp = crate::auth::guard(state, req, next).instrument(span).await;
    door.leave(route.as_ref().map_or("unmatched", |p| p.as_str()), &mut resp);
    resp
}

/// A request between the door and its response: its id, span and clock.
pub(crate) struct Door {
    started: Instant,
    id: HeaderValue,
    method: axum::http::Method,
    uri: axum::http::Uri,
    pub(crate) span: tracing::Span,
}

static IN_FLIGHT: OnceLock<metrics::Gauge> = OnceLock::new();

impl Door {
    /// Takes the request's id (or gives it one) and opens its span.
    pub(crate) fn enter(
        method: &axum::http::Method,
        uri: &axum::http::Uri,
        headers: &mut axum::http::HeaderMap,
    ) -> Self {
        let started = Instant::now();
        let id = match headers.get(&REQUEST_ID) {
            Some(id) => id.clone(),
            None => {
                let id = new_request_id();
                headers.insert(REQUEST_ID, id.clone());
                id
            }
        };
        // The span carries only the id: every field of it is formatted when it
        // is made; method and path are on the access line.
        let span = tracing::info_span!("request", request_id = %id.to_str().unwrap_or(""));
        IN_FLIGHT.get_or_init(|| metrics::gauge!(HTTP_IN_FLIGHT)).increment(1.0);
        Self {
            started,
            id,
            method: method.clone(),
            uri: uri.clone(),
            span,
        }
    }

    /// Counts the response under `route` and its status, gives it the
    /// request id, and leaves the access line to a task.
    pub(crate) fn leave(self, route: &str, resp: &mut Response) {
        IN_FLIGHT.get_or_init(|| metrics::gauge!(HTTP_IN_FLIGHT)).decrement(1.0);
        resp.headers_mut().insert(REQUEST_ID, self.id.clone());
        let status = resp.status().as_u16();
        let elapsed = self.started.elapsed();
        with_handles(
            &BY_ROUTE,
            &RouteStatus(route, status),
            |k| {
                let handles = (
                    metrics::counter!(HTTP_REQUESTS, "route" => k.0.to_string(), "status" => k.1.to_string()),
                    metrics::histogram!(HTTP_DURATION, "route" => k.0.to_string()),
                );
                ((k.0.to_string(), k.1), handles)
            },
            |(count, time)| {
                count.increment(1);
                time.record(elapsed.as_secs_f64());
            },
        );
        // The access line is written by a task of its own, which this thread
        // runs once it has sent the response: formatting it first cost the
        // client ~10 µs at concurrency 1.
        let access = crate::access::Access {
            request_id: self.id,
            method: self.method,
            uri: self.uri,
            status,
            elapsed,
        };
        let span = self.span;
        tokio::spawn(async move { access.log(&span) });
    }
}

/// A request id for a request that brings none: UUIDv7, whose leading
/// timestamp keeps ids in creation order, so the usage table's key index
/// grows at its end instead of at random pages (a random v4 id made the
/// SQLite writer read and rewrite a page per record), and logs sort by id.
fn new_request_id() -> HeaderValue {
    let mut buf = uuid::Uuid::encode_buffer();
    let id = uuid::Uuid::now_v7().hyphenated().encode_lower(&mut buf);
    // A hyphenated UUID is always a valid header value.
    HeaderValue::from_str(id).unwrap_or(HeaderValue::from_static("-"))
}
