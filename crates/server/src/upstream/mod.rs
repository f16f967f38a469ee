//! Routes behind the OpenAI endpoints: the configured upstream deployments
//! (`crates/gateway`) and native models named by routes, looked up by the
//! model a request names. A request for a route is forwarded as it came
//! (only `model` rewritten); a model id that is no route goes straight to
//! the native registry.

mod forward;
mod native;

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use switchyard_gateway::{Backend, Deployment, Route};

use crate::config::Config;

pub use forward::forward;

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::Response;

use crate::error::ApiError;
use crate::state::AppState;

/// Forwards `body` when its `model` names an upstream route; otherwise
/// hands the body back for the native path.
pub async fn try_forward(
    state: &AppState,
    caller: &crate::auth::Caller,
    path: &'static str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Result<Response, ApiError>, Bytes> {
    let Some((route, stream)) = state.upstreams.route_for(&body) else {
        return Err(body);
    };
    if let Err(e) = caller.may_use(route.name()) {
        return Ok(Err(e));
    }
    Ok(forward(state, route, path, body, stream, headers, &caller.ticket).await)
}

/// The routes clients can call, by model id.
#[derive(Default)]
pub struct Upstreams {
    routes: HashMap<String, Arc<Route>>,
    /// Every deployment, for the admin API and metrics.
    deployments: Vec<Arc<Deployment>>,
}

/// What the router needs from a body before deciding where it goes.
#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow)]
    model: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
}

impl Upstreams {
    /// Builds every deployment (reading API keys) and route; a route's
    /// deployment that is no upstream is the native model of that id, run
    /// with `native` (the server's state). The config was validated, so an
    /// error here is a key that cannot be read.
    pub fn new(config: &Config, native: &AppState) -> anyhow::Result<Self> {
        let mut by_name: HashMap<String, Arc<dyn Backend>> = HashMap::new();
        let mut deployments = Vec::new();
        for d in &config.upstreams {
            let built = Arc::new(Deployment::new(d.clone()).map_err(|e| anyhow::anyhow!("{e}"))?);
            by_name.insert(d.name.clone(), built.clone());
            deployments.push(built);
        }
        let native = native::backend_state(native);
        let mut routes = HashMap::new();
        for r in &config.routes {
            let mut chain = Vec::new();
            for name in &r.deployments {
                let backend = by_name
                    .entry(name.clone())
                    .or_insert_with(|| Arc::new(native::NativeBackend::new(name.clone(), native.clone())));
                chain.push(backend.clone());
            }
            let route = Route::new(r.id.clone(), chain).map_err(|e| anyhow::anyhow!("{e}"))?;
            routes.insert(r.id.clone(), Arc::new(route));
        }
        // A deployment no route names is called by its own name.
        for d in &deployments {
            let named = config
                .routes
                .iter()
                .any(|r| r.deployments.iter().any(|n| n == d.name()));
            if !named && !routes.contains_key(d.name()) {
                let only: Arc<dyn Backend> = d.clone();
                let route = Route::new(d.name().to_string(), vec![only]).map_err(|e| anyhow::anyhow!("{e}"))?;
                routes.insert(d.name().to_string(), Arc::new(route));
            }
        }
        Ok(Self { routes, deployments })
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The route a body's `model` names, and whether it streams. Only the
    /// two fields are read; a body that is not JSON goes on to the native
    /// path, whose parser gives the precise 400.
    pub fn route_for(&self, body: &[u8]) -> Option<(Arc<Route>, bool)> {
        if self.routes.is_empty() {
            return None;
        }
        let peek: Peek = serde_json::from_slice(body).ok()?;
        let route = self.routes.get(peek.model?.as_ref())?.clone();
        Some((route, peek.stream.unwrap_or(false)))
    }

    pub fn routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.routes.values()
    }

    pub fn deployments(&self) -> &[Arc<Deployment>] {
        &self.deployments
    }
}

impl Upstreams {
    /// Sets the per-endpoint gauges (called when `/metrics` is scraped).
    pub fn publish_metrics(&self) {
        use crate::telemetry;
        for d in &self.deployments {
            for e in d.endpoints() {
                let labels = [("deployment", d.name().to_string()), ("endpoint", e.base_url.clone())];
                let state = match e.breaker.state {
                    switchyard_gateway::BreakerState::Closed => 0.0,
                    switchyard_gateway::BreakerState::HalfOpen => 1.0,
                    switchyard_gateway::BreakerState::Open => 2.0,
                };
                metrics::gauge!(telemetry::UPSTREAM_BREAKER_STATE, &labels).set(state);
                metrics::gauge!(telemetry::UPSTREAM_OUTSTANDING, &labels).set(e.outstanding as f64);
                metrics::counter!(telemetry::UPSTREAM_BREAKER_OPENED, &labels).absolute(e.breaker.opened_total);
            }
        }
    }

    /// Every upstream deployment with its endpoints and breakers, and every
    /// route with its chain, for `/admin/upstreams`.
    pub fn describe(&self) -> serde_json::Value {
        let data: Vec<serde_json::Value> = self
            .deployments
            .iter()
            .map(|d| {
                let endpoints: Vec<serde_json::Value> = d
                    .endpoints()
                    .into_iter()
                    .map(|e| {
                        serde_json::json!({
                            "base_url": e.base_url,
                            "outstanding": e.outstanding,
                            "ewma_first_byte_ms": e.ewma_first_byte.as_secs_f64() * 1e3,
                            "breaker": {
                                "state": e.breaker.state.as_str(),
                                "consecutive_failures": e.breaker.consecutive_failures,
                                "successes": e.breaker.successes_total,
                                "failures": e.breaker.failures_total,
                                "rejected": e.breaker.rejected_total,
                                "opened": e.breaker.opened_total,
                            },
                        })
                    })
                    .collect();
                let routes: Vec<&str> = self
                    .routes
                    .values()
                    .filter(|r| r.deployments().iter().any(|x| x.name() == d.name()))
                    .map(|r| r.name())
                    .collect();
                serde_json::json!({
                    "name": d.name(),
                    "model": d.upstream_model(),
                    "routes": routes,
                    "endpoints": endpoints,
                })
            })
            .collect();
        let mut routes: Vec<serde_json::Value> = self
            .routes
            .values()
            .map(|r| {
                let chain: Vec<serde_json::Value> = r
                    .deployments()
                    .iter()
                    .map(|d| serde_json::json!({"name": d.name(), "kind": d.kind(), "model": d.model()}))
                    .collect();
                serde_json::json!({"id": r.name(), "deployments": chain})
            })
            .collect();
        routes.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        serde_json::json!({"object": "list", "data": data, "routes": routes})
    }
}
