//! The admin API (`admin.enabled`): list model versions with their
//! lifecycle and memory, register, load, unload and delete them.

use std::sync::atomic::Ordering::Relaxed;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::ModelConfig;
use crate::error::ApiError;
use crate::extract::OpenAiJson;
use crate::state::{AppState, Engine, ModelSlot};

fn entry(slot: &ModelSlot) -> Value {
    let snap = slot.snapshot();
    let mut v = json!({
        "id": slot.config.id,
        "name": slot.config.name,
        "version": slot.config.version,
        "origin": slot.config.origin.as_str(),
        "kind": slot.config.kind.as_str(),
        "format": slot.config.format.as_str(),
        "path": slot.config.path,
        "labels": slot.config.labels,
        "context_length": slot.config.context_length,
        "status": snap.lifecycle.as_str(),
        "pinned": slot.config.pinned,
        "resident_bytes": snap.resident_bytes,
        "loads": slot.loads.load(Relaxed),
        "downloaded_files": slot.downloads.load(Relaxed),
        "download": {
            "done_bytes": slot.progress.done.load(Relaxed),
            "total_bytes": slot.progress.total.load(Relaxed),
        },
        "source": slot.config.source,
        "requests": slot.requests.load(Relaxed),
        "last_load_seconds": *slot.last_load_secs.lock().unwrap_or_else(|p| p.into_inner()),
        "idle_seconds": snap.idle_secs,
    });
    if let Some(why) = snap.failure {
        v["failure"] = json!(why);
    }
    if let Some(Engine::Chat(e)) = &snap.engine {
        let s = e.stats();
        v["generated_tokens"] = json!(s.generated_tokens.load(Relaxed));
        v["running_sequences"] = json!(s.running.load(Relaxed));
        v["kv_blocks_used"] = json!(s.kv_blocks_used.load(Relaxed));
    }
    v
}

/// `GET /admin/models`
pub async fn models(State(state): State<AppState>) -> Json<Value> {
    let data: Vec<Value> = state.models.slots().iter().map(|s| entry(s)).collect();
    Json(json!({"object": "list", "data": data}))
}

/// `GET /admin/stats`: what each model has served since start.
pub async fn stats(State(state): State<AppState>) -> Json<Value> {
    let data: Vec<Value> = state
        .models
        .slots()
        .iter()
        .map(|slot| {
            let s = &slot.served;
            let (done, lat) = (s.completed.load(Relaxed), s.latency_us.load(Relaxed));
            let snap = slot.snapshot();
            json!({
                "id": slot.config.id,
                "status": snap.lifecycle.as_str(),
                "requests": slot.requests.load(Relaxed),
                "completed": done,
                "errors": s.errors.load(Relaxed),
                "prompt_tokens": s.prompt_tokens.load(Relaxed),
                "completion_tokens": s.completion_tokens.load(Relaxed),
                "mean_latency_ms": (done > 0).then(|| lat as f64 / done as f64 / 1e3),
                "loads": slot.loads.load(Relaxed),
                "last_load_seconds": *slot.last_load_secs.lock().unwrap_or_else(|p| p.into_inner()),
                "resident_bytes": snap.resident_bytes,
            })
        })
        .collect();
    Json(json!({"object": "list", "data": data}))
}

/// `POST /admin/load/{id}`: answers once the model is ready (or failed).
pub async fn load(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    state.models.load_now(&id).await?;
    let slot = state.models.get(&id).ok_or_else(|| ApiError::model_not_found(&id))?;
    Ok(Json(entry(&slot)))
}

#[derive(Deserialize)]
pub struct UnloadQuery {
    /// Answer only once the model has stopped (or the drain timed out).
    #[serde(default)]
    wait: bool,
}

/// `POST /admin/unload/{id}`: starts draining; 202 at once, or 200 when
/// `?wait=true` and the model stopped.
pub async fn unload(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<UnloadQuery>,
) -> Result<Response, ApiError> {
    let drain = state.models.unload(&id)?;
    let slot = state.models.get(&id).ok_or_else(|| ApiError::model_not_found(&id))?;
    if q.wait {
        let stopped = drain.await;
        let code = if stopped { StatusCode::OK } else { StatusCode::ACCEPTED };
        return Ok((code, Json(entry(&slot))).into_response());
    }
    tokio::spawn(drain);
    Ok((StatusCode::ACCEPTED, Json(entry(&slot))).into_response())
}

/// `POST /admin/models`: registers a model version (the body is a `models`
/// entry of the config file); 201 with its entry. Its files are read (or
/// its source listed) now, so a version that cannot be served is a 400.
pub async fn register(
    State(state): State<AppState>,
    OpenAiJson(model): OpenAiJson<ModelConfig>,
) -> Result<Response, ApiError> {
    let slot = state.models.register(model).await?;
    Ok((StatusCode::CREATED, Json(entry(&slot))).into_response())
}

/// `DELETE /admin/models/{id}`: drains and forgets a version registered
/// through this API (`name:version`).
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    state.models.delete(&id).await?;
    Ok(Json(json!({"id": id, "object": "model", "deleted": true})))
}

/// `GET /admin/upstreams`: each upstream deployment, its endpoints and their
/// circuit breakers.
pub async fn upstreams(State(state): State<AppState>) -> Json<Value> {
    Json(state.upstreams.describe())
}
