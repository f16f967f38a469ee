//! What every handler shares: config, the loaded models, the concurrency gate.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use metrics_exporter_prometheus::PrometheusHandle;
use switchyard_api::ErrorKind;
use switchyard_engine::embed::batcher::Batcher;
use switchyard_engine::embed::EmbeddingModel;
use switchyard_engine::llm::{EngineConfig, LlmEngine};
use tokio::sync::Semaphore;

use crate::config::{Config, ModelConfig, ModelKind};
use crate::error::ApiError;

/// A loaded model of either kind.
pub enum Engine {
    Chat(Arc<LlmEngine>),
    Embedding(Arc<Embedder>),
}

/// An embedding model's batcher and the per-request limit it is served with.
pub struct Embedder {
    pub batcher: Batcher,
    /// Tokens one request may hold across its inputs (after truncation).
    pub max_request_tokens: usize,
}

/// A configured model and, once its load finishes, the engine or the reason
/// it failed. Loading happens in the background at start-up.
pub struct ModelSlot {
    pub config: ModelConfig,
    loaded: OnceLock<Result<Engine, String>>,
}

pub enum SlotStatus<'a> {
    Loading,
    Ready(&'a Engine),
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

    /// The loaded engine of `id`, which must be of `kind` (a 400 naming
    /// `model` otherwise): 404 when unknown, 503 while loading or failed.
    fn ready(&self, id: &str, kind: ModelKind) -> Result<&Engine, ApiError> {
        let slot = self.get(id).ok_or_else(|| ApiError::model_not_found(id))?;
        if slot.config.kind != kind {
            let hint = match slot.config.kind {
                ModelKind::Chat => "/v1/chat/completions or /v1/completions",
                ModelKind::Embedding => "/v1/embeddings",
            };
            return Err(ApiError::new(
                ErrorKind::InvalidRequest,
                format!(
                    "The model `{id}` is a {} model and cannot serve this endpoint; use {hint}.",
                    slot.config.kind.as_str()
                ),
            )
            .param("model")
            .code("model_not_supported"));
        }
        match slot.status() {
            SlotStatus::Ready(e) => Ok(e),
            SlotStatus::Loading => Err(ApiError::overloaded(format!("The model `{id}` is still loading."), 5)),
            SlotStatus::Failed(why) => Err(
                ApiError::overloaded(format!("The model `{id}` failed to load: {why}"), 60).code("model_unavailable"),
            ),
        }
    }

    /// The chat engine for `id`.
    pub fn engine(&self, id: &str) -> Result<Arc<LlmEngine>, ApiError> {
        match self.ready(id, ModelKind::Chat)? {
            Engine::Chat(e) => Ok(e.clone()),
            Engine::Embedding(_) => Err(ApiError::internal(format!("`{id}` loaded as the wrong kind"))),
        }
    }

    /// The embedding model and batcher for `id`.
    pub fn embedder(&self, id: &str) -> Result<Arc<Embedder>, ApiError> {
        match self.ready(id, ModelKind::Embedding)? {
            Engine::Embedding(b) => Ok(b.clone()),
            Engine::Chat(_) => Err(ApiError::internal(format!("`{id}` loaded as the wrong kind"))),
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
                let result = load(&slot.config, &cfg);
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

fn load(model: &ModelConfig, chat: &EngineConfig) -> Result<Engine, String> {
    match model.kind {
        ModelKind::Chat => LlmEngine::load(
            &model.path,
            chat,
            Arc::new(crate::telemetry::EngineMetrics::new(&model.id)),
        )
        .map(|e| Engine::Chat(Arc::new(e)))
        .map_err(|e| e.to_string()),
        ModelKind::Embedding => {
            let opts = model.embedding_config();
            let embedder = EmbeddingModel::load(&model.path, opts.embed_options()).map_err(|e| e.to_string())?;
            let observer = Arc::new(crate::telemetry::EmbedMetrics::new(&model.id));
            let batcher = Batcher::start(embedder, opts.batcher(), observer).map_err(|e| e.to_string())?;
            Ok(Engine::Embedding(Arc::new(Embedder {
                batcher,
                max_request_tokens: opts.max_request_tokens,
            })))
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
