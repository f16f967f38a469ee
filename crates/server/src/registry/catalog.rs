//! Which versions the registry holds: those of the config file, then those
//! registered through the admin API, which are stored in the database with
//! their last state so a restart restores them.

use std::sync::Arc;
use std::time::Duration;

use switchyard_db::{Db, ModelVersionRow};

use super::spec::{self, ModelSpec, Origin};
use super::{load, Lifecycle, ModelSlot, Registry};
use crate::config::{Config, ModelConfig};
use crate::error::ApiError;
use switchyard_api::ErrorKind;

impl Registry {
    /// The config's versions, then the stored ones. A stored version that was
    /// ready (or loading) when the process stopped is loaded again by
    /// `load_all`; one that had failed stays failed with its reason.
    pub async fn open(config: &Config, db: Db) -> Result<Self, ApiError> {
        let cfg = config.registry.clone();
        let mut slots = Vec::new();
        for entry in &config.models {
            slots.push(Arc::new(build(entry, Origin::Config, &cfg).await));
        }
        let rows = db
            .model_versions()
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        for row in rows {
            if slots.iter().any(|s: &Arc<ModelSlot>| s.config.id == row.id) {
                tracing::warn!(model = %row.id, "a stored model version is also in the config file; the config's is used");
                continue;
            }
            slots.push(Arc::new(restore(&row, &cfg).await));
        }
        Ok(Self {
            preloaded: std::sync::atomic::AtomicBool::new(false),
            slots: std::sync::RwLock::new(Arc::new(slots)),
            changes: tokio::sync::Mutex::new(()),
            cfg,
            chat: config.engine.chat_engine(),
            db,
        })
    }

    /// Registers a new version (admin API): resolved (a 400 when its files
    /// cannot tell what it is), stored, then listed; loaded at once when
    /// `preload` asks for it.
    pub async fn register(self: &Arc<Self>, entry: ModelConfig) -> Result<Arc<ModelSlot>, ApiError> {
        entry
            .validate("model")
            .map_err(|e| ApiError::new(ErrorKind::InvalidRequest, e.to_string()).param("model"))?;
        let _change = self.changes.lock().await;
        let spec = spec::resolve(&entry, Origin::Admin, &self.cfg)
            .await
            .map_err(|why| ApiError::new(ErrorKind::InvalidRequest, why).code("model_unresolved"))?;
        if self.slots().iter().any(|s| s.config.id == spec.id) {
            return Err(ApiError::new(
                ErrorKind::Conflict,
                format!("The model `{}` is already registered.", spec.id),
            )
            .code("model_exists"));
        }
        let row = row_of(&spec, Lifecycle::Registered, None)?;
        let fresh = self
            .db
            .insert_model_version(&row)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        if !fresh {
            return Err(ApiError::new(
                ErrorKind::Conflict,
                format!("The model `{}` is already registered.", spec.id),
            )
            .code("model_exists"));
        }
        let slot = Arc::new(ModelSlot::new(spec));
        self.swap(|slots| slots.push(slot.clone()));
        tracing::info!(model = %slot.config.id, "model version registered");
        if slot.config.preload {
            let (registry, s) = (self.clone(), slot.clone());
            tokio::spawn(async move {
                if let Err(e) = registry.ensure_loaded(&s).await {
                    tracing::warn!(model = %s.config.id, error = %e.message, "load after registration failed");
                }
            });
        }
        Ok(slot)
    }

    /// Deletes a version registered through the admin API: drains it, then
    /// forgets it (and the files it downloaded into the cache folder).
    pub async fn delete(&self, id: &str) -> Result<(), ApiError> {
        let _change = self.changes.lock().await;
        let slot = self
            .slots()
            .iter()
            .find(|s| s.config.id == id)
            .cloned()
            .ok_or_else(|| ApiError::model_not_found(id))?;
        if slot.config.origin == Origin::Config {
            return Err(ApiError::new(
                ErrorKind::Conflict,
                format!("The model `{id}` is defined in the config file; remove it there."),
            )
            .code("model_in_config"));
        }
        let timeout = Duration::from_secs(self.cfg.drain_timeout_secs);
        if !load::drain(&slot, timeout).await {
            return Err(ApiError::overloaded(
                format!("The model `{id}` is still finishing requests; retry the delete shortly."),
                5,
            ));
        }
        self.db
            .delete_model_version(id)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        self.swap(|slots| slots.retain(|s| !Arc::ptr_eq(s, &slot)));
        let cached = slot.config.entry.path.as_os_str().is_empty() && slot.config.source.is_some();
        if cached {
            if let Err(e) = tokio::fs::remove_dir_all(&slot.config.folder).await {
                tracing::warn!(model = %id, error = %e, "cannot remove the cached files");
            }
        }
        tracing::info!(model = %id, "model version deleted");
        Ok(())
    }

    /// A failed version resolved and registered again in its place (its
    /// files or its store may have been fixed since).
    pub(super) async fn retry(&self, failed: &Arc<ModelSlot>) -> Result<Arc<ModelSlot>, ApiError> {
        let _change = self.changes.lock().await;
        let old = &failed.config;
        let fresh = match spec::resolve(&old.entry, old.origin, &self.cfg).await {
            // The same files: the slot (and its counters) is tried again.
            Ok(spec) if spec.id == old.id && spec.path == old.path && spec.kind == old.kind => {
                let mut s = failed.lock();
                s.lifecycle = Lifecycle::Registered;
                s.failure = None;
                return Ok(failed.clone());
            }
            Ok(spec) => Arc::new(ModelSlot::new(spec)),
            Err(why) => Arc::new(ModelSlot::failed(old.clone(), why)),
        };
        self.swap(|slots| {
            for s in slots.iter_mut() {
                if Arc::ptr_eq(s, failed) {
                    *s = fresh.clone();
                }
            }
        });
        Ok(fresh)
    }

    fn swap(&self, change: impl FnOnce(&mut Vec<Arc<ModelSlot>>)) {
        let mut guard = self.slots.write().unwrap_or_else(|p| p.into_inner());
        let mut next = guard.as_ref().clone();
        change(&mut next);
        *guard = Arc::new(next);
    }
}

async fn build(entry: &ModelConfig, origin: Origin, cfg: &crate::config::RegistryConfig) -> ModelSlot {
    match spec::resolve(entry, origin, cfg).await {
        Ok(spec) => ModelSlot::new(spec),
        Err(why) => {
            tracing::error!(model = %entry.key(), error = %why, "model cannot be registered");
            ModelSlot::failed(ModelSpec::unresolved(entry, origin, cfg), why)
        }
    }
}

async fn restore(row: &ModelVersionRow, cfg: &crate::config::RegistryConfig) -> ModelSlot {
    let entry: ModelConfig = match serde_json::from_str(&row.spec) {
        Ok(e) => e,
        Err(e) => {
            let entry = ModelConfig::new(&row.name, crate::config::ModelKind::Chat, "");
            let spec = ModelSpec::unresolved(&entry, Origin::Admin, cfg);
            return ModelSlot::failed(spec, format!("stored registration unreadable: {e}"));
        }
    };
    if row.state == Lifecycle::Failed.as_str() {
        let why = row
            .failure
            .clone()
            .unwrap_or_else(|| "failed before the restart".into());
        return ModelSlot::failed(ModelSpec::unresolved(&entry, Origin::Admin, cfg), why);
    }
    let mut slot = build(&entry, Origin::Admin, cfg).await;
    // Loaded again only if it was in memory when the process stopped.
    let was_loaded = [Lifecycle::Ready, Lifecycle::Loading, Lifecycle::Downloading]
        .iter()
        .any(|l| l.as_str() == row.state);
    slot.config.preload = was_loaded;
    slot
}

fn row_of(spec: &ModelSpec, lifecycle: Lifecycle, failure: Option<String>) -> Result<ModelVersionRow, ApiError> {
    let mut entry = spec.entry.clone();
    // Stored as resolved, so a restart addresses it the same way.
    entry.version = spec.version.clone();
    Ok(ModelVersionRow {
        id: spec.id.clone(),
        name: spec.name.clone(),
        version: spec.version.clone().unwrap_or_default(),
        spec: serde_json::to_string(&entry).map_err(|e| ApiError::internal(e.to_string()))?,
        state: lifecycle.as_str().into(),
        failure,
    })
}

/// Stores where an admin-registered version stands (config versions are
/// rebuilt from the file at start and need no record).
pub(super) async fn record(db: &Db, slot: &ModelSlot, lifecycle: Lifecycle) {
    if slot.config.origin != Origin::Admin {
        return;
    }
    let failure = slot.snapshot().failure;
    if let Err(e) = db
        .set_model_state(&slot.config.id, lifecycle.as_str(), failure.as_deref())
        .await
    {
        tracing::warn!(model = %slot.config.id, error = %e, "cannot store the model's state");
    }
}
