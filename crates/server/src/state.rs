//! What every handler shares: config, the loaded models, the concurrency gate.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use metrics_exporter_prometheus::PrometheusHandle;
use switchyard_engine::llm::{EngineConfig, LlmEngine};
use tokio::sync::Semaphore;

use crate::config::{Config, ModelConfig};
use crate::error::ApiError;

/// A configured model and, once its load finishes, the engine or the reason
/// it failed. Loading happens in the background at start-up.
pub struct ModelSlot {
    pub config: ModelConfig,
    loaded: OnceLock<Result<Arc<LlmEngine>, String>>,
}

pub enum SlotStatus<'a> {
    Loading,
    Ready(&'a Arc<LlmEngine>),
    Failed(&'a str),
}

impl ModelSlot {
    pub fn status(&self) -> SlotStatus<'_> {
        match self.loaded.get() {
            None => SlotStatus::Loading,
            Some(Ok(e)) => SlotStatus::Ready(e),
            Some(Err(e)) => SlotStatus::Failed(e),
        }
    }
}

pub struct ModelSet {
    slots: HashMap<String, Arc<ModelSlot>>,
    order: Vec<String>,
}

impl ModelSet {
    pub fn new(models: &[ModelConfig]) -> Self {
        let slots = models
            .iter()
            .map(|m| {
                (
                    m.id.clone(),
                    Arc::new(ModelSlot {
                        config: m.clone(),
                        loaded: OnceLock::new(),
                    }),
                )
            })
            .collect();
        Self {
            slots,
            order: models.iter().map(|m| m.id.clone()).collect(),
        }
    }

    pub fn get(&self, id: &str) -> Option<&Arc<ModelSlot>> {
        self.slots.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<ModelSlot>> {
        self.order.iter().filter_map(|id| self.slots.get(id))
    }

    /// The engine for `id`: 404 when unknown, 503 while loading or failed.
    pub fn engine(&self, id: &str) -> Result<Arc<LlmEngine>, ApiError> {
        let slot = self.get(id).ok_or_else(|| ApiError::model_not_found(id))?;
        match slot.status() {
            SlotStatus::Ready(e) => Ok(e.clone()),
            SlotStatus::Loading => Err(ApiError::overloaded(format!("The model `{id}` is still loading."), 5)),
            SlotStatus::Failed(why) => Err(
                ApiError::overloaded(format!("The model `{id}` failed to load: {why}"), 60).code("model_unavailable"),
            ),
        }
    }

    /// Loads every model on blocking threads; returns when all are done.
    pub async fn load_all(&self, engine: EngineConfig) {
        let mut tasks = Vec::new();
        for slot in self.iter() {
            let slot = slot.clone();
            let mut cfg = engine.clone();
            cfg.chat_template = slot.config.chat_template.clone();
            tasks.push(tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let result = LlmEngine::load(&slot.config.path, &cfg).map(Arc::new).map_err(|e| e.to_string());
                match &result {
                    Ok(_) => tracing::info!(model = %slot.config.id, seconds = started.elapsed().as_secs_f64(), "model ready"),
                    Err(e) => tracing::error!(model = %slot.config.id, error = %e, "model failed to load"),
                }
                let _ = slot.loaded.set(result);
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub models: Arc<ModelSet>,
    /// One permit per request in flight; none left means 503 at the door.
    pub limiter: Arc<Semaphore>,
    pub started: Instant,
    /// Unix seconds at start-up: the `created` time of the served models.
    pub started_unix: u64,
    pub metrics: Option<PrometheusHandle>,
}

impl AppState {
    pub fn new(config: Config) -> Self {
        let models = Arc::new(ModelSet::new(&config.models));
        let limiter = Arc::new(Semaphore::new(config.server.max_concurrent_requests));
        let started_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self {
            config: Arc::new(config),
            models,
            limiter,
            started: Instant::now(),
            started_unix,
            metrics: crate::telemetry::prometheus(),
        }
    }
}
