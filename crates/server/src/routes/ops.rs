//! Operational routes: `/`, `/health`, `/ready`, `/metrics`, `/v1/models`.

use std::sync::atomic::Ordering::Relaxed;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use switchyard_api::models::{Model, ModelList};
use switchyard_api::ErrorKind;

use crate::error::ApiError;
use crate::state::{AppState, Engine, Lifecycle, ModelSlot};
use crate::telemetry;

fn status_word(slot: &ModelSlot) -> &'static str {
    slot.lifecycle().as_str()
}

pub async fn root(State(state): State<AppState>) -> Json<serde_json::Value> {
    let models: Vec<_> = state
        .models
        .served()
        .iter()
        .map(|s| json!({"id": s.config.name, "version": s.config.version, "kind": s.config.kind.as_str(), "status": status_word(s)}))
        .collect();
    Json(json!({
        "name": "switchyard",
        "version": env!("CARGO_PKG_VERSION"),
        "models": models,
        "uptime_seconds": state.started.elapsed().as_secs(),
    }))
}

pub async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready once the start-up preload has run and the default model has not
/// failed (a model not resident loads on its first request).
pub async fn ready(State(state): State<AppState>) -> Response {
    let default = &state.config.default_model;
    let word = state.models.get(default).map(|s| status_word(&s));
    let native = !state.config.models.is_empty();
    let ok = state.models.preloaded() && (!native || word.is_some_and(|w| w != "failed"));
    if ok {
        return Json(json!({"status": "ready"})).into_response();
    }
    let status = if state.models.preloaded() {
        word.unwrap_or("missing")
    } else {
        "loading"
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": status, "model": default})),
    )
        .into_response()
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    state.upstreams.publish_metrics();
    for slot in state.models.slots().iter() {
        let snap = slot.snapshot();
        let id = slot.config.id.clone();
        metrics::gauge!(telemetry::MODEL_RESIDENT_BYTES, "model" => id.clone()).set(snap.resident_bytes as f64);
        for l in [
            Lifecycle::Registered,
            Lifecycle::Downloading,
            Lifecycle::Loading,
            Lifecycle::Ready,
            Lifecycle::Draining,
            Lifecycle::Stopped,
            Lifecycle::Failed,
        ] {
            let on = if l == snap.lifecycle { 1.0 } else { 0.0 };
            metrics::gauge!(telemetry::MODEL_STATE, "model" => id.clone(), "state" => l.as_str()).set(on);
        }
        if let Some(Engine::Embedding(e)) = &snap.engine {
            metrics::gauge!(telemetry::QUEUE_DEPTH, "model" => id.clone()).set(e.batcher.queue_depth() as f64);
        }
        if let Some(Engine::Chat(engine)) = &snap.engine {
            let id = slot.config.id.clone();
            let stats = engine.stats();
            metrics::gauge!(telemetry::QUEUE_DEPTH, "model" => id.clone()).set(engine.queue_depth() as f64);
            metrics::counter!(telemetry::ENGINE_TOKENS, "model" => id.clone())
                .absolute(stats.generated_tokens.load(Relaxed));
            metrics::counter!(telemetry::ENGINE_CANCELLED, "model" => id.clone())
                .absolute(stats.cancelled.load(Relaxed));
            metrics::counter!(telemetry::ENGINE_FINISHED, "model" => id.clone()).absolute(stats.finished.load(Relaxed));
            metrics::counter!(telemetry::ENGINE_STEPS, "model" => id.clone()).absolute(stats.steps.load(Relaxed));
            metrics::counter!(telemetry::ENGINE_STEP_SEQUENCES, "model" => id.clone())
                .absolute(stats.step_sequences.load(Relaxed));
            metrics::gauge!(telemetry::ENGINE_PEAK_BATCH, "model" => id.clone())
                .set(stats.peak_batch.load(Relaxed) as f64);
            for (name, value) in [
                (telemetry::ENGINE_RUNNING, &stats.running),
                (telemetry::ENGINE_WAITING, &stats.waiting),
                (telemetry::KV_BLOCKS_USED, &stats.kv_blocks_used),
                (telemetry::KV_BLOCKS_TOTAL, &stats.kv_blocks_total),
                (telemetry::PREFIX_CACHE_BLOCKS, &stats.prefix_cache_blocks),
            ] {
                metrics::gauge!(name, "model" => id.clone()).set(value.load(Relaxed) as f64);
            }
            for (name, value) in [
                (telemetry::ENGINE_PREEMPTED, &stats.preempted),
                (telemetry::PREFIX_QUERIED, &stats.prefix_queried_tokens),
                (telemetry::PREFIX_HIT, &stats.prefix_hit_tokens),
            ] {
                metrics::counter!(name, "model" => id.clone()).absolute(value.load(Relaxed));
            }
        }
    }
    match &state.metrics {
        Some(h) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], h.render()).into_response(),
        None => ApiError::internal("metrics recorder unavailable").into_response(),
    }
}

fn model_entry(state: &AppState, slot: &ModelSlot) -> Model {
    let cap = slot.config.context_length.unwrap_or(usize::MAX);
    let (context_length, dimensions) = match slot.snapshot().engine {
        Some(Engine::Chat(e)) => (Some(e.config().context_length.min(cap) as u32), None),
        Some(Engine::Embedding(e)) => {
            let m = e.batcher.model();
            (Some(m.max_tokens() as u32), Some(m.dims() as u32))
        }
        _ => (None, None),
    };
    Model {
        id: slot.config.name.clone(),
        version: slot.config.version.clone(),
        object: "model".into(),
        created: state.started_unix,
        owned_by: "switchyard".into(),
        kind: slot.config.kind.as_str().into(),
        context_length,
        dimensions,
    }
}

pub async fn list_models(State(state): State<AppState>) -> Json<ModelList> {
    let mut data: Vec<Model> = state.models.served().iter().map(|s| model_entry(&state, s)).collect();
    let mut routes: Vec<Model> = state
        .upstreams
        .routes()
        .map(|r| upstream_entry(&state, r.name()))
        .collect();
    routes.sort_by(|a, b| a.id.cmp(&b.id));
    data.extend(routes);
    Json(ModelList {
        object: "list".into(),
        data,
    })
}

/// An upstream route as a model: what it does is the upstream's business.
fn upstream_entry(state: &AppState, id: &str) -> Model {
    Model {
        id: id.to_string(),
        object: "model".into(),
        created: state.started_unix,
        owned_by: "upstream".into(),
        kind: "upstream".into(),
        version: None,
        context_length: None,
        dimensions: None,
    }
}

pub async fn get_model(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Model>, ApiError> {
    if state.upstreams.routes().any(|r| r.name() == id) {
        return Ok(Json(upstream_entry(&state, &id)));
    }
    let slot = state.models.get(&id).ok_or_else(|| ApiError::model_not_found(&id))?;
    let mut model = model_entry(&state, &slot);
    model.id = id; // as asked: `name` or `name:version`
    Ok(Json(model))
}

pub async fn not_found() -> ApiError {
    ApiError::new(ErrorKind::NotFound, "Unknown route.").code("unknown_url")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorKind::MethodNotAllowed, "This route does not accept that method.").code("method_not_allowed")
}
