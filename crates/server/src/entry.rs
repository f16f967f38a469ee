//! What every connection is served by. A POST to one of the OpenAI
//! endpoints an upstream route can answer takes a short path of its own:
//! the door (request id, span, metrics, access line), tenancy, the body,
//! then the route's backends. Everything else, and a body whose `model`
//! names no route (a native model), goes through axum's router.
//!
//! Why not only the router: at concurrency 1 every layer a request passes
//! runs with cold caches, and the router's layers (matching, the boxed and
//! cloned middleware services, extractors, response conversions) cost a
//! proxied request as much as its auth, limits and usage record together.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::ServiceExt;
use tracing::Instrument;

use crate::auth::Caller;
use crate::front::Door;
use crate::state::AppState;

/// Set on a request that came through [`proxy`]'s door and goes on to the
/// router: the router's own door lets it straight through.
#[derive(Clone, Copy)]
pub(crate) struct Entered;

/// The service of every connection.
#[derive(Clone)]
pub struct Entry {
    state: AppState,
    router: Router,
}

impl Entry {
    pub fn new(state: AppState) -> Self {
        Self {
            router: crate::router(state.clone()),
            state,
        }
    }
}

impl tower::Service<Request> for Entry {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        match proxied(&req, &self.state) {
            Some(endpoint) => {
                let (state, router) = (self.state.clone(), self.router.clone());
                Box::pin(async move { Ok(proxy(state, router, endpoint, req).await) })
            }
            None => Box::pin(self.router.clone().oneshot(req)),
        }
    }
}

/// One of the endpoints a route can serve: its path here, and upstream.
#[derive(Clone, Copy)]
struct Endpoint {
    path: &'static str,
    upstream: &'static str,
}

const ENDPOINTS: [Endpoint; 3] = [
    Endpoint {
        path: "/v1/chat/completions",
        upstream: "/chat/completions",
    },
    Endpoint {
        path: "/v1/completions",
        upstream: "/completions",
    },
    Endpoint {
        path: "/v1/embeddings",
        upstream: "/embeddings",
    },
];

fn proxied(req: &Request, state: &AppState) -> Option<Endpoint> {
    if req.method() != Method::POST || state.upstreams.is_empty() {
        return None;
    }
    let path = req.uri().path();
    ENDPOINTS.into_iter().find(|e| e.path == path)
}

/// The proxied path: the door, tenancy and the body, then the route the
/// body's `model` names, or the router when it names none.
async fn proxy(state: AppState, router: Router, endpoint: Endpoint, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    let door = Door::enter(&parts.method, &parts.uri, &mut parts.headers);
    let served = async {
        let admitted = match crate::auth::admit(
            &state,
            &parts.method,
            endpoint.path,
            &parts.headers,
            &mut parts.extensions,
        )
        .await
        {
            Ok(admitted) => admitted,
            Err(refused) => return refused,
        };
        let body = match crate::extract::read_body(body, state.config.server.max_body_bytes).await {
            Ok(body) => body,
            Err(e) => return admitted.finish(e.into_response()),
        };
        let Some((route, stream)) = state.upstreams.route_for(&body) else {
            // A native model (or a body the handler will refuse, precisely).
            parts.extensions.insert(Entered);
            let native = router.oneshot(Request::from_parts(parts, Body::from(body)));
            return admitted.finish(native.await.unwrap_or_else(|never| match never {}));
        };
        let caller = Caller::of(&parts.extensions);
        let answer = match caller.may_use(route.name()) {
            Ok(()) => {
                crate::upstream::forward(
                    &state,
                    route,
                    endpoint.upstream,
                    body,
                    stream,
                    &parts.headers,
                    &caller.ticket,
                )
                .await
            }
            Err(e) => Err(e),
        };
        admitted.finish(answer.into_response())
    };
    let mut resp = served.instrument(door.span.clone()).await;
    door.leave(endpoint.path, &mut resp);
    resp
}
