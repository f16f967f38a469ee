//! Tenancy at the door: every `/v1/*` and `/admin/*` request is
//! authenticated (API key → tenant), scoped (`inference` or `admin`), rate
//! limited and checked against its tenant's monthly budget before a
//! handler runs; its usage is recorded once its response has been sent.
//! The rules live in `crates/tenancy`; this module maps them to HTTP.

mod metered;
mod ticket;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard_db::Db;
use switchyard_tenancy::{
    Admin, ApiKeySecret, AuthMode, Authenticator, Limiter, Quotas, TenancyConfig, UsageMeter, UsageRecorder,
};
use tokio_util::task::TaskTracker;

use crate::config::Config;

pub(crate) use metered::admit;
pub use metered::guard;
pub use ticket::UsageTicket;

/// Keys, limits, quotas and the usage meter, shared by every request.
pub struct Tenancy {
    pub config: Arc<TenancyConfig>,
    pub auth: Authenticator,
    pub limiter: Limiter,
    pub quotas: Arc<Quotas>,
    pub admin: Admin,
    pub recorder: UsageRecorder,
    meter: Mutex<Option<UsageMeter>>,
    tracker: TaskTracker,
    /// The tasks that turn finished responses into usage records; shutdown
    /// waits for them before the meter's last flush.
    records: TaskTracker,
    /// Those tasks now: past `max_backlog` new inference requests get a 503,
    /// so a writer that falls behind pushes back instead of growing memory.
    backlog: std::sync::atomic::AtomicUsize,
    max_backlog: usize,
}

impl Tenancy {
    /// Builds it all; returns the bootstrap admin key when one was just
    /// created (to be shown once, never logged).
    pub async fn open(config: &Config, db: &Db) -> anyhow::Result<(Self, Option<ApiKeySecret>)> {
        let cfg = Arc::new(config.tenancy.clone());
        let limiter = Limiter::from_config(&cfg.limiter)
            .await
            .map_err(|e| anyhow::anyhow!("rate limiter: {e}"))?;
        let quotas = Arc::new(Quotas::new(db.clone(), Duration::from_secs(cfg.quota_cache_secs)));
        let tracker = TaskTracker::new();
        let meter = UsageMeter::start(db.clone(), cfg.clone(), Some(quotas.clone()), &tracker);
        let admin = Admin::new(db.clone(), cfg.clone());
        let mut bootstrap = None;
        if cfg.auth == AuthMode::Enabled {
            let given = config.admin.bootstrap_key()?;
            bootstrap = admin
                .ensure_admin_key(given.as_deref())
                .await
                .map_err(|e| anyhow::anyhow!("bootstrap admin key: {e}"))?;
        } else {
            tracing::warn!("AUTHENTICATION IS DISABLED (tenancy.auth: disabled): every request is served without an API key and the admin API is open to anyone who can reach the port; use this on a private machine only");
        }
        Ok((
            Self {
                auth: Authenticator::new(db.clone(), cfg.clone()),
                recorder: meter.recorder(),
                meter: Mutex::new(Some(meter)),
                config: cfg,
                limiter,
                quotas,
                admin,
                tracker,
                records: TaskTracker::new(),
                backlog: std::sync::atomic::AtomicUsize::new(0),
                max_backlog: config.tenancy.usage.queue.max(1),
            },
            bootstrap,
        ))
    }

    /// Runs a usage task, tracked for shutdown and counted in the backlog.
    pub(crate) fn in_background(self: Arc<Self>, work: impl std::future::Future<Output = ()> + Send + 'static) {
        use std::sync::atomic::Ordering;
        self.backlog.fetch_add(1, Ordering::Relaxed);
        let me = self.clone();
        self.records.spawn(async move {
            work.await;
            me.backlog.fetch_sub(1, Ordering::Relaxed);
        });
    }

    /// Whether usage recording is too far behind to take more requests.
    pub fn behind(&self) -> bool {
        self.backlog.load(std::sync::atomic::Ordering::Relaxed) >= self.max_backlog
    }

    pub fn enabled(&self) -> bool {
        self.config.auth == AuthMode::Enabled
    }

    /// Writes every queued usage record (after in-flight requests ended);
    /// returns how many the meter wrote in all.
    pub async fn shutdown(&self) -> u64 {
        self.records.close();
        self.records.wait().await;
        let meter = self.meter.lock().unwrap_or_else(|p| p.into_inner()).take();
        let written = match meter {
            Some(m) => match m.shutdown().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = %e, "usage records could not all be written");
                    0
                }
            },
            None => 0,
        };
        self.tracker.close();
        self.tracker.wait().await;
        tracing::info!(records = written, "usage flushed");
        written
    }
}

/// Who is calling and where their usage goes, as the auth layer left them
/// in the request (a request that did not pass it is the local user).
pub struct Caller {
    pub principal: Arc<switchyard_tenancy::Principal>,
    pub ticket: UsageTicket,
}

impl Caller {
    /// 403 unless the caller's tenant may use `model`.
    pub fn may_use(&self, model: &str) -> Result<(), crate::error::ApiError> {
        self.ticket.serve(model, "");
        self.principal
            .require_model(model)
            .map_err(|e| metered::access_error(&e).param("model"))
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::of(&parts.extensions))
    }
}

impl Caller {
    /// The caller the auth layer left in `extensions`.
    pub(crate) fn of(extensions: &axum::http::Extensions) -> Self {
        Self {
            principal: extensions
                .get::<Arc<switchyard_tenancy::Principal>>()
                .cloned()
                .unwrap_or_else(|| Arc::new(switchyard_tenancy::Principal::unauthenticated())),
            ticket: extensions.get::<UsageTicket>().cloned().unwrap_or_default(),
        }
    }
}
