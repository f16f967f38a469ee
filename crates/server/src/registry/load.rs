//! Loading a slot's model, and draining it on unload.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use switchyard_engine::embed::batcher::Batcher;
use switchyard_engine::embed::EmbeddingModel;
use switchyard_engine::llm::{EngineConfig, GenerateRequest, GenerationEvent, LlmEngine, SamplingParams};

use super::{failed, store, Embedder, Engine, Lifecycle, ModelSlot, ModelSpec};
use crate::config::{ModelKind, RegistryConfig};
use crate::error::ApiError;

/// Alive while a model's engine still holds its weights.
#[derive(Clone)]
pub enum Liveness {
    Chat(Weak<()>),
    Embedding(Weak<EmbeddingModel>),
}

impl Liveness {
    fn of(engine: &Engine) -> Self {
        match engine {
            Engine::Chat(e) => Liveness::Chat(e.liveness()),
            Engine::Embedding(e) => Liveness::Embedding(e.batcher.liveness()),
        }
    }

    pub fn gone(&self) -> bool {
        match self {
            Liveness::Chat(w) => w.strong_count() == 0,
            Liveness::Embedding(w) => w.strong_count() == 0,
        }
    }
}

/// Weight bytes a model will hold, from its files: the GGUF file, or the
/// weight files of a model folder.
pub fn estimate_bytes(path: &Path) -> u64 {
    if path.is_file() {
        return std::fs::metadata(path).map_or(0, |m| m.len());
    }
    let Ok(dir) = std::fs::read_dir(path) else { return 0 };
    dir.filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.ends_with(".safetensors") || name.ends_with(".onnx") || name.ends_with(".gguf")
        })
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Brings the model's files into place: from its store when it has a
/// source, checking configured sums either way.
async fn fetch(slot: &ModelSlot, store_options: &BTreeMap<String, String>) -> Result<(), String> {
    let model = &slot.config;
    let Some(source) = &model.source else {
        return store::verify_local(&model.folder, &model.sha256).await;
    };
    slot.lock().lifecycle = Lifecycle::Downloading;
    let started = Instant::now();
    let report = store::fetch(
        source,
        &model.folder,
        &model.sha256,
        store::store_options(store_options),
        &slot.progress,
    )
    .await?;
    slot.downloads.fetch_add(report.downloaded as u64, Ordering::Relaxed);
    tracing::info!(
        model = %model.id, downloaded = report.downloaded, reused = report.reused, bytes = report.bytes,
        seconds = started.elapsed().as_secs_f64(), "model files in place"
    );
    Ok(())
}

/// Loads the slot's model on a blocking thread; the caller holds its gate.
pub async fn load(slot: &Arc<ModelSlot>, chat: &EngineConfig, cfg: &RegistryConfig) -> Result<Engine, ApiError> {
    let id = slot.config.id.clone();
    slot.lock().failure = None;
    slot.loads.fetch_add(1, Ordering::Relaxed);
    metrics::counter!(crate::telemetry::MODEL_LOADS, "model" => id.clone()).increment(1);
    let started = Instant::now();
    let result = match fetch(slot, &cfg.store_options).await {
        Err(why) => Err(why),
        Ok(()) => {
            {
                let mut s = slot.lock();
                s.lifecycle = Lifecycle::Loading;
                s.resident_bytes = estimate_bytes(&slot.config.path);
            }
            let (config, chat, warm) = (slot.config.clone(), chat.clone(), cfg.warmup);
            tokio::task::spawn_blocking(move || build(&config, &chat).and_then(|e| warm_up(e, warm)))
                .await
                .unwrap_or_else(|e| Err(format!("load task failed: {e}")))
        }
    };
    let secs = started.elapsed().as_secs_f64();
    *slot.last_load_secs.lock().unwrap_or_else(|p| p.into_inner()) = Some(secs);
    let mut s = slot.lock();
    match result {
        Ok(engine) => {
            tracing::info!(model = %id, seconds = secs, "model ready");
            s.lifecycle = Lifecycle::Ready;
            s.engine = Some(engine.clone());
            s.last_used = Some(Instant::now());
            Ok(engine)
        }
        Err(why) => {
            tracing::error!(model = %id, error = %why, "model failed to load");
            s.lifecycle = Lifecycle::Failed;
            s.resident_bytes = 0;
            s.failure = Some(why.clone());
            Err(failed(&id, &why))
        }
    }
}

fn build(model: &ModelSpec, chat: &EngineConfig) -> Result<Engine, String> {
    match model.kind {
        ModelKind::Chat => {
            let mut cfg = chat.clone();
            cfg.chat_template = model.chat_template.clone();
            LlmEngine::load(
                &model.path,
                &cfg,
                Arc::new(crate::telemetry::EngineMetrics::new(&model.id)),
            )
            .map(|e| Engine::Chat(Arc::new(e)))
            .map_err(|e| e.to_string())
        }
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

/// Runs one tiny request through a freshly built engine (blocking), so the
/// first real request does not pay for cold pages and caches.
fn warm_up(engine: Engine, on: bool) -> Result<Engine, String> {
    if !on {
        return Ok(engine);
    }
    let started = Instant::now();
    match &engine {
        Engine::Chat(e) => {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let prompt = e.tokenizer().encode("Hello").map_err(|e| format!("warm-up: {e}"))?;
            e.submit(GenerateRequest {
                prompt_tokens: prompt,
                max_tokens: 1,
                sampling: SamplingParams::default(),
                stop: Vec::new(),
                deadline: Instant::now() + Duration::from_secs(60),
                events: tx,
                span: tracing::Span::current(),
            })
            .map_err(|e| format!("warm-up: {e}"))?;
            loop {
                match rx.blocking_recv() {
                    Some(GenerationEvent::Done { .. }) => break,
                    Some(GenerationEvent::Failed(why)) => return Err(format!("warm-up failed: {why}")),
                    Some(GenerationEvent::TimedOut { .. }) | None => return Err("warm-up did not finish".into()),
                    Some(_) => {}
                }
            }
        }
        Engine::Embedding(e) => {
            let ids = e
                .batcher
                .model()
                .tokenize("Hello")
                .map_err(|e| format!("warm-up: {e}"))?;
            let reply = e.batcher.submit(vec![ids]).map_err(|e| format!("warm-up: {e}"))?;
            match reply.blocking_recv() {
                Ok(Ok(_)) => {}
                Ok(Err(why)) => return Err(format!("warm-up failed: {why}")),
                Err(_) => return Err("warm-up did not finish".into()),
            }
        }
    }
    tracing::info!(seconds = started.elapsed().as_secs_f64(), "warmed up");
    Ok(engine)
}

/// Unloads a ready model: new requests no longer get its engine, requests
/// already inside it finish, then its thread frees the weights. Returns
/// whether it stopped within `timeout` (a drain already under way is
/// waited for; a model not loaded is already stopped).
pub async fn drain(slot: &Arc<ModelSlot>, timeout: Duration) -> bool {
    begin_drain(slot);
    wait_stopped(slot, timeout).await
}

/// Lets go of a ready model's engine and marks the slot draining.
pub fn begin_drain(slot: &ModelSlot) {
    let mut s = slot.lock();
    if s.lifecycle == Lifecycle::Ready {
        if let Some(engine) = s.engine.take() {
            s.draining = Some(Liveness::of(&engine));
        }
        s.lifecycle = Lifecycle::Draining;
        tracing::info!(model = %slot.config.id, "draining");
    }
}

/// Waits while the slot drains; marks it stopped once its engine is gone.
pub async fn wait_stopped(slot: &Arc<ModelSlot>, timeout: Duration) -> bool {
    let until = Instant::now() + timeout;
    loop {
        {
            let s = slot.lock();
            if s.lifecycle != Lifecycle::Draining && s.lifecycle != Lifecycle::Stopped {
                return true;
            }
            // `lock` marks a finished drain stopped.
            if s.lifecycle == Lifecycle::Stopped {
                tracing::info!(model = %slot.config.id, "stopped; memory freed");
                return true;
            }
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
