//! What every handler shares: config, the model registry, the concurrency gate.

use std::sync::Arc;
use std::time::Instant;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::Semaphore;

use crate::config::Config;
pub use crate::registry::{Embedder, Engine, Lifecycle, ModelSlot, Origin, Registry};

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub models: Arc<Registry>,
    pub db: switchyard_db::Db,
    /// Keys, limits, quotas and usage (crates/tenancy).
    pub tenancy: Arc<crate::auth::Tenancy>,
    /// The admin key made at this start, until it has been shown once.
    pub bootstrap_key: Arc<std::sync::Mutex<Option<switchyard_tenancy::ApiKeySecret>>>,
    /// Upstream routes by model id (the gateway).
    pub upstreams: Arc<crate::upstream::Upstreams>,
    /// One permit per request in flight; none left means 503 at the door.
    pub limiter: Arc<Semaphore>,
    pub started: Instant,
    /// Unix seconds at start-up: the `created` time of the served models.
    pub started_unix: u64,
    pub metrics: Option<PrometheusHandle>,
}

impl AppState {
    /// Opens the database (migrating it) and the registry.
    pub async fn open(config: Config) -> anyhow::Result<Self> {
        let url = config.storage.database_url();
        let db = switchyard_db::Db::open(&url, config.storage.max_connections)
            .await
            .map_err(|e| anyhow::anyhow!("storage ({}): {e}", switchyard_db::redact(&url)))?;
        let models = Arc::new(
            Registry::open(&config, db.clone())
                .await
                .map_err(|e| anyhow::anyhow!("model registry: {}", e.message))?,
        );
        let limiter = Arc::new(Semaphore::new(config.server.max_concurrent_requests));
        let started_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let (tenancy, bootstrap) = crate::auth::Tenancy::open(&config, &db).await?;
        let mut state = Self {
            upstreams: Arc::default(),
            tenancy: Arc::new(tenancy),
            bootstrap_key: Arc::new(std::sync::Mutex::new(bootstrap)),
            config: Arc::new(config),
            models,
            db,
            limiter,
            started: Instant::now(),
            started_unix,
            metrics: crate::telemetry::prometheus(),
        };
        // Routes may name native models, which run with this state.
        state.upstreams = Arc::new(crate::upstream::Upstreams::new(&state.config, &state)?);
        Ok(state)
    }
}
