//! The model registry: every configured model, its lifecycle, and which
//! models are resident.
//!
//! A model moves `registered → loading → ready → draining → stopped`, or to
//! `failed` with the reason. It is loaded at start-up (`preload`) or on its
//! first request; concurrent first requests share one load. Loading a model
//! past `max_resident_models` or the memory budget first evicts the least
//! recently used ready model that is not pinned. Unloading (eviction or the
//! admin API) drains: the registry lets go of the engine, requests already
//! inside it run to their end, and the engine's thread then exits and frees
//! the weights; the model is `stopped` once that has happened.

mod catalog;
mod load;
pub mod manifest;
pub mod spec;
pub mod store;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use switchyard_api::ErrorKind;
use switchyard_engine::embed::batcher::Batcher;
use switchyard_engine::llm::{EngineConfig, LlmEngine};

use crate::config::{ModelKind, RegistryConfig, WhileDraining};
use crate::error::ApiError;

pub use load::Liveness;
pub use spec::{ModelSpec, Origin};

/// A loaded model of either kind.
#[derive(Clone)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Registered,
    Downloading,
    Loading,
    Ready,
    Draining,
    Stopped,
    Failed,
}

impl Lifecycle {
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Registered => "registered",
            Lifecycle::Downloading => "downloading",
            Lifecycle::Loading => "loading",
            Lifecycle::Ready => "ready",
            Lifecycle::Draining => "draining",
            Lifecycle::Stopped => "stopped",
            Lifecycle::Failed => "failed",
        }
    }
}

/// What can change about a slot, under one lock.
struct State {
    lifecycle: Lifecycle,
    engine: Option<Engine>,
    failure: Option<String>,
    last_used: Option<Instant>,
    /// Estimated weight bytes while loading, ready or draining.
    resident_bytes: u64,
    /// While draining: tells when the engine has let go of its memory.
    draining: Option<Liveness>,
}

/// A registered model version and where it stands.
pub struct ModelSlot {
    pub config: ModelSpec,
    state: Mutex<State>,
    /// Held while loading: concurrent first requests wait here for one load.
    gate: tokio::sync::Mutex<()>,
    /// Loads started, files downloaded from the store, and requests handed
    /// an engine.
    pub loads: AtomicU64,
    pub downloads: AtomicU64,
    pub requests: AtomicU64,
    pub progress: store::Progress,
    pub served: Served,
    pub last_load_secs: Mutex<Option<f64>>,
}

/// What a model has served, for `/admin/stats`.
#[derive(Default)]
pub struct Served {
    /// Requests answered in full, and their summed latency (request start to
    /// the last token or vector).
    pub completed: AtomicU64,
    pub latency_us: AtomicU64,
    /// Requests that ended in an error (refused, failed or timed out).
    pub errors: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
}

impl Served {
    pub fn done(&self, prompt_tokens: u32, completion_tokens: u32, started: Instant) {
        self.completed.fetch_add(1, Ordering::Relaxed);
        self.latency_us
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        self.prompt_tokens.fetch_add(prompt_tokens as u64, Ordering::Relaxed);
        self.completion_tokens
            .fetch_add(completion_tokens as u64, Ordering::Relaxed);
    }

    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// A point-in-time view of a slot, for listings.
pub struct Snapshot {
    pub lifecycle: Lifecycle,
    pub engine: Option<Engine>,
    pub failure: Option<String>,
    pub idle_secs: Option<f64>,
    pub resident_bytes: u64,
}

impl ModelSlot {
    fn new(config: ModelSpec) -> Self {
        ModelSlot {
            config,
            state: Mutex::new(State {
                lifecycle: Lifecycle::Registered,
                engine: None,
                failure: None,
                last_used: None,
                resident_bytes: 0,
                draining: None,
            }),
            gate: tokio::sync::Mutex::new(()),
            loads: AtomicU64::new(0),
            downloads: AtomicU64::new(0),
            progress: store::Progress::default(),
            served: Served::default(),
            requests: AtomicU64::new(0),
            last_load_secs: Mutex::new(None),
        }
    }

    /// A slot that is `failed` from the start (its spec did not resolve, or
    /// it failed before a restart).
    fn failed(config: ModelSpec, why: String) -> Self {
        let slot = Self::new(config);
        {
            let mut s = slot.lock();
            s.lifecycle = Lifecycle::Failed;
            s.failure = Some(why);
        }
        slot
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state half-written
        // (every write is one assignment), so a poisoned lock is still usable.
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        // A drain nobody waits for any more still ends: seen here.
        if s.lifecycle == Lifecycle::Draining && s.draining.as_ref().is_none_or(Liveness::gone) {
            s.lifecycle = Lifecycle::Stopped;
            s.draining = None;
            s.resident_bytes = 0;
        }
        s
    }

    pub fn snapshot(&self) -> Snapshot {
        let s = self.lock();
        Snapshot {
            lifecycle: s.lifecycle,
            engine: s.engine.clone(),
            failure: s.failure.clone(),
            idle_secs: s.last_used.map(|t| t.elapsed().as_secs_f64()),
            resident_bytes: s.resident_bytes,
        }
    }

    pub fn lifecycle(&self) -> Lifecycle {
        self.lock().lifecycle
    }
}

pub struct Registry {
    /// Set once the start-up preload has run.
    preloaded: std::sync::atomic::AtomicBool,
    /// Every version in registration order. Swapped whole on register and
    /// delete, so a request sees one consistent list.
    slots: RwLock<Arc<Vec<Arc<ModelSlot>>>>,
    /// Serializes registrations and deletions.
    changes: tokio::sync::Mutex<()>,
    cfg: RegistryConfig,
    chat: EngineConfig,
    db: switchyard_db::Db,
}

impl Registry {
    /// The slot `id` names: `name:version` exactly, or for a bare `name`
    /// its newest ready version (else its newest that has not failed, which
    /// then loads; else its newest).
    pub fn get(&self, id: &str) -> Option<Arc<ModelSlot>> {
        let slots = self.slots();
        if id.contains(':') {
            return slots.iter().find(|s| s.config.id == id).cloned();
        }
        let mut versions: Vec<&Arc<ModelSlot>> = slots.iter().filter(|s| s.config.name == id).collect();
        versions.sort_by(|a, b| version_order(a.config.version.as_deref(), b.config.version.as_deref()));
        let newest = |pred: &dyn Fn(Lifecycle) -> bool| versions.iter().rev().find(|s| pred(s.lifecycle())).copied();
        newest(&|l| l == Lifecycle::Ready)
            .or_else(|| newest(&|l| l != Lifecycle::Failed))
            .or_else(|| versions.last().copied())
            .cloned()
    }

    /// Every version, in registration order (config first).
    pub fn slots(&self) -> Arc<Vec<Arc<ModelSlot>>> {
        self.slots.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The names clients can call, each once, with the version it resolves
    /// to now.
    pub fn served(&self) -> Vec<Arc<ModelSlot>> {
        let mut names: Vec<&str> = Vec::new();
        let slots = self.slots();
        for s in slots.iter() {
            if !names.contains(&s.config.name.as_str()) {
                names.push(&s.config.name);
            }
        }
        names.iter().filter_map(|n| self.get(n)).collect()
    }

    /// Counts an error answer for `id`, when that names a model.
    pub fn note_error<T>(&self, id: &str, result: &Result<T, ApiError>) {
        if let (Err(_), Some(slot)) = (result, self.get(id)) {
            slot.served.error();
        }
    }

    /// Loads the models marked `preload`, in config order, while they fit.
    pub async fn load_all(&self) {
        for slot in self.slots().iter().filter(|s| s.config.preload) {
            if slot.lifecycle() != Lifecycle::Registered {
                continue;
            }
            if !self.fits_without_eviction(slot) {
                tracing::info!(model = %slot.config.id, "not preloaded: no room (loads on first request)");
                continue;
            }
            if let Err(e) = self.ensure_loaded(slot).await {
                tracing::warn!(model = %slot.config.id, error = %e.message, "preload failed");
            }
        }
        self.preloaded.store(true, Ordering::Release);
    }

    pub fn preloaded(&self) -> bool {
        self.preloaded.load(Ordering::Acquire)
    }

    /// Loads `id` now (admin API), retrying a model that failed before.
    pub async fn load_now(&self, id: &str) -> Result<Engine, ApiError> {
        let mut slot = self.get(id).ok_or_else(|| ApiError::model_not_found(id))?;
        if slot.lifecycle() == Lifecycle::Failed {
            // Resolve it again: the files or the store may have been fixed.
            slot = self.retry(&slot).await?;
        }
        self.ensure_loaded(&slot).await
    }

    /// The engine of `id`, loading it first if needed. It must be of `kind`
    /// (a 400 naming `model` otherwise); 404 when unknown; 503 when it failed
    /// to load, cannot be made room for, or is draining under `reject`.
    pub async fn acquire(&self, id: &str, kind: ModelKind) -> Result<(Engine, Arc<ModelSlot>), ApiError> {
        let slot = self.get(id).ok_or_else(|| ApiError::model_not_found(id))?;
        check_kind(&slot, kind)?;
        let engine = self.ensure_loaded(&slot).await?;
        slot.requests.fetch_add(1, Ordering::Relaxed);
        Ok((engine, slot))
    }

    /// The chat engine for `id`, and the version that serves it.
    pub async fn engine(&self, id: &str) -> Result<(Arc<LlmEngine>, Arc<ModelSlot>), ApiError> {
        match self.acquire(id, ModelKind::Chat).await? {
            (Engine::Chat(e), slot) => Ok((e, slot)),
            (Engine::Embedding(_), _) => Err(ApiError::internal(format!("`{id}` loaded as the wrong kind"))),
        }
    }

    /// The embedding model and batcher for `id`.
    pub async fn embedder(&self, id: &str) -> Result<Arc<Embedder>, ApiError> {
        match self.acquire(id, ModelKind::Embedding).await? {
            (Engine::Embedding(b), _) => Ok(b),
            (Engine::Chat(_), _) => Err(ApiError::internal(format!("`{id}` loaded as the wrong kind"))),
        }
    }

    fn ready_engine(slot: &ModelSlot) -> Option<Engine> {
        let mut s = slot.lock();
        if s.lifecycle != Lifecycle::Ready {
            return None;
        }
        s.last_used = Some(Instant::now());
        s.engine.clone()
    }

    /// Returns the slot's engine, loading it (once, however many callers
    /// wait) if it is not ready.
    pub async fn ensure_loaded(&self, slot: &Arc<ModelSlot>) -> Result<Engine, ApiError> {
        if let Some(e) = Self::ready_engine(slot) {
            return Ok(e);
        }
        let id = &slot.config.id;
        {
            let s = slot.lock();
            if s.lifecycle == Lifecycle::Failed {
                return Err(failed(id, s.failure.as_deref().unwrap_or("unknown error")));
            }
            if s.lifecycle == Lifecycle::Draining && self.cfg.while_draining == WhileDraining::Reject {
                return Err(
                    ApiError::overloaded(format!("The model `{id}` is being unloaded."), 5).code("model_unavailable")
                );
            }
        }
        let wait = Duration::from_secs(self.cfg.load_timeout_secs);
        let _gate = tokio::time::timeout(wait, slot.gate.lock())
            .await
            .map_err(|_| ApiError::overloaded(format!("The model `{id}` is still loading."), 5))?;
        // Whoever held the gate may have loaded it, or failed.
        if let Some(e) = Self::ready_engine(slot) {
            return Ok(e);
        }
        if let Some(why) = slot.lock().failure.clone() {
            return Err(failed(id, &why));
        }
        // A drain in progress finishes first: its memory is not free yet.
        load::wait_stopped(slot, wait).await;
        self.make_room(slot).await?;
        self.persist(slot, Lifecycle::Loading).await;
        let result = load::load(slot, &self.chat, &self.cfg).await;
        self.persist(slot, slot.lifecycle()).await;
        result
    }

    fn resident(&self) -> Vec<Arc<ModelSlot>> {
        self.slots()
            .iter()
            .filter(|s| {
                matches!(
                    s.lifecycle(),
                    Lifecycle::Downloading | Lifecycle::Loading | Lifecycle::Ready | Lifecycle::Draining
                )
            })
            .cloned()
            .collect()
    }

    fn fits_without_eviction(&self, slot: &ModelSlot) -> bool {
        let resident = self.resident();
        let count = resident.len();
        let bytes: u64 = resident.iter().map(|s| s.lock().resident_bytes).sum();
        let max_bytes = self.cfg.max_resident_mib << 20;
        (self.cfg.max_resident_models == 0 || count < self.cfg.max_resident_models)
            && (max_bytes == 0 || bytes + load::estimate_bytes(&slot.config.path) <= max_bytes)
    }

    /// Evicts least recently used, unpinned ready models until `slot` fits.
    async fn make_room(&self, slot: &Arc<ModelSlot>) -> Result<(), ApiError> {
        while !self.fits_without_eviction(slot) {
            let victim = self
                .slots()
                .iter()
                .filter(|s| !Arc::ptr_eq(s, slot) && !s.config.pinned)
                .filter_map(|s| {
                    let st = s.lock();
                    (st.lifecycle == Lifecycle::Ready).then(|| (st.last_used, s.clone()))
                })
                .min_by_key(|(used, _)| *used)
                .map(|(_, s)| s);
            let Some(victim) = victim else {
                return Err(ApiError::overloaded(
                    format!(
                        "No room to load `{}`: the resident models are pinned or still loading.",
                        slot.config.id
                    ),
                    10,
                )
                .code("model_unavailable"));
            };
            tracing::info!(evicted = %victim.config.id, for_model = %slot.config.id, "evicting least recently used model");
            let drained = load::drain(&victim, Duration::from_secs(self.cfg.drain_timeout_secs)).await;
            self.persist(&victim, victim.lifecycle()).await;
            if !drained {
                tracing::warn!(model = %victim.config.id, "drain timed out; loading the next model anyway");
                break;
            }
        }
        Ok(())
    }

    /// Starts unloading `id` (admin API); the returned future resolves once
    /// it has stopped or the drain timed out.
    pub fn unload(&self, id: &str) -> Result<impl std::future::Future<Output = bool> + Send + 'static, ApiError> {
        let slot = self.get(id).ok_or_else(|| ApiError::model_not_found(id))?;
        let timeout = Duration::from_secs(self.cfg.drain_timeout_secs);
        load::begin_drain(&slot);
        let db = self.db.clone();
        Ok(async move {
            let stopped = load::wait_stopped(&slot, timeout).await;
            catalog::record(&db, &slot, slot.lifecycle()).await;
            stopped
        })
    }

    async fn persist(&self, slot: &ModelSlot, lifecycle: Lifecycle) {
        catalog::record(&self.db, slot, lifecycle).await;
    }
}

/// Versions in order: unversioned first, numbers by value, others by text.
fn version_order(a: Option<&str>, b: Option<&str>) -> std::cmp::Ordering {
    match (a, b) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, Some(_)) => std::cmp::Ordering::Less,
        (Some(_), None) => std::cmp::Ordering::Greater,
        (Some(a), Some(b)) => match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            (Ok(_), Err(_)) => std::cmp::Ordering::Less,
            (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
            (Err(_), Err(_)) => a.cmp(b),
        },
    }
}

fn failed(id: &str, why: &str) -> ApiError {
    ApiError::overloaded(format!("The model `{id}` failed to load: {why}"), 60).code("model_unavailable")
}

fn check_kind(slot: &ModelSlot, kind: ModelKind) -> Result<(), ApiError> {
    // A version whose files could not be read has no known kind: say why.
    if let Some(why) = slot.lock().failure.clone() {
        return Err(failed(&slot.config.id, &why));
    }
    if slot.config.kind == kind {
        return Ok(());
    }
    let id = &slot.config.id;
    let hint = match slot.config.kind {
        ModelKind::Chat => "/v1/chat/completions or /v1/completions",
        ModelKind::Embedding => "/v1/embeddings",
    };
    Err(ApiError::new(
        ErrorKind::InvalidRequest,
        format!(
            "The model `{id}` is a {} model and cannot serve this endpoint; use {hint}.",
            slot.config.kind.as_str()
        ),
    )
    .param("model")
    .code("model_not_supported"))
}

#[cfg(test)]
mod tests {
    use super::version_order;
    use std::cmp::Ordering::*;

    #[test]
    fn versions_sort_by_number_then_text() {
        assert_eq!(version_order(Some("10"), Some("9")), Greater);
        assert_eq!(version_order(None, Some("1")), Less);
        assert_eq!(version_order(Some("2"), Some("beta")), Less);
        assert_eq!(version_order(Some("2026-02"), Some("2026-01")), Greater);
    }
}
