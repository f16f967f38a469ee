//! From an `Authorization` header to a [`Principal`].
//!
//! A key is parsed first (a malformed one never reaches the store), then
//! looked up by its public id and its secret's hash compared in constant
//! time. Verified lookups are kept in memory for `key_cache_secs` (30 s by
//! default) so the hot path does not query the database on every request:
//! a key revoked on another replica keeps working there for at most that
//! long; on the replica that revoked it, [`Authenticator::forget`] makes it
//! take effect at once. Revocation and expiry are checked on every call,
//! cached or not.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use switchyard_db::{Db, KeyLookup};

use crate::config::TenancyConfig;
use crate::error::{AccessError, AuthError};
use crate::key::{self, Scope};
use crate::limiter::Limits;
use crate::quota::Budgets;

/// Cached keys above this many are cleared of stale ones, then of all.
const CACHE_MAX: usize = 50_000;

/// Who is calling, with everything the request path needs to decide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    pub tenant_id: String,
    pub tenant_name: String,
    /// The tier the limits came from (the default tier when the tenant's
    /// has left the configuration).
    pub tier: String,
    /// The public key id: safe to log, the subject of rate limits.
    pub key_id: String,
    pub scopes: Vec<Scope>,
    pub limits: Limits,
    /// Allowed models; empty: all.
    pub models: Vec<String>,
    pub budgets: Budgets,
}

impl Principal {
    /// What a request is when authentication is disabled by configuration.
    pub fn unauthenticated() -> Self {
        Self {
            tenant_id: "local".into(),
            tenant_name: "local".into(),
            tier: "none".into(),
            key_id: "none".into(),
            scopes: vec![Scope::Inference, Scope::Admin],
            limits: Limits::default(),
            models: Vec::new(),
            budgets: Budgets::default(),
        }
    }

    pub fn can(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    pub fn require(&self, scope: Scope) -> Result<(), AccessError> {
        if self.can(scope) {
            Ok(())
        } else {
            Err(AccessError::MissingScope(scope))
        }
    }

    pub fn may_use(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|m| m == model)
    }

    pub fn require_model(&self, model: &str) -> Result<(), AccessError> {
        if self.may_use(model) {
            Ok(())
        } else {
            Err(AccessError::ModelNotAllowed(model.to_string()))
        }
    }

    /// Admin keys read every tenant; other keys only their own.
    pub fn may_read_tenant(&self, tenant_id: &str) -> Result<(), AccessError> {
        if self.can(Scope::Admin) || self.tenant_id == tenant_id {
            Ok(())
        } else {
            Err(AccessError::OtherTenant)
        }
    }
}

/// A key as the cache keeps it: what is checked on every request, and the
/// principal built once (a request takes a reference count, not a copy).
#[derive(Debug, Clone)]
struct Cached {
    lookup: Arc<KeyLookup>,
    principal: Arc<Principal>,
    fetched: Instant,
}

#[derive(Debug)]
pub struct Authenticator {
    db: Db,
    config: Arc<TenancyConfig>,
    ttl: Duration,
    cache: Mutex<HashMap<String, Cached>>,
}

impl Authenticator {
    pub fn new(db: Db, config: Arc<TenancyConfig>) -> Self {
        Self {
            db,
            ttl: Duration::from_secs(config.key_cache_secs),
            config,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// `header_value` is the `Authorization` header (`Bearer <key>`), or a
    /// bare key (e.g. from `x-api-key`).
    pub async fn authenticate(&self, header_value: Option<&str>) -> Result<Arc<Principal>, AuthError> {
        self.authenticate_at(header_value, switchyard_db::now_unix()).await
    }

    pub async fn authenticate_at(&self, header_value: Option<&str>, now: i64) -> Result<Arc<Principal>, AuthError> {
        let value = header_value
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or(AuthError::Missing)?;
        let token = match value.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
            Some(_) => return Err(AuthError::Malformed),
            None => value,
        };
        let parsed = key::parse(token).ok_or(AuthError::Malformed)?;
        let Cached { lookup, principal, .. } = match self.cached(&parsed.id) {
            Some(c) => c,
            None => {
                let Some(l) = self.db.api_key_lookup(&parsed.id).await? else {
                    return Err(AuthError::Unknown);
                };
                self.remember(&parsed.id, l)
            }
        };
        // The hash first: a wrong secret says nothing about the key's state.
        if !key::verify(&parsed, &lookup.secret_sha256) {
            return Err(AuthError::Unknown);
        }
        if lookup.key.revoked_at.is_some_and(|t| t <= now) {
            return Err(AuthError::Revoked);
        }
        if lookup.key.expires_at.is_some_and(|t| t <= now) {
            return Err(AuthError::Expired);
        }
        Ok(principal)
    }

    /// Drops a key from the cache (after revoking it here).
    pub fn forget(&self, key_id: &str) {
        self.lock().remove(key_id);
    }

    fn principal(&self, l: &KeyLookup) -> Principal {
        let (tier_name, tier) = self.config.tier(&l.tenant.tier);
        if tier_name != l.tenant.tier {
            tracing::warn!(tenant = %l.tenant.id, tier = %l.tenant.tier, "tenant's tier is not configured; using the default tier");
        }
        let tier_limits = tier.map(Limits::of_tier).unwrap_or_default();
        let positive = |v: Option<i64>| v.filter(|v| *v > 0).map(|v| v as u64);
        let overrides = Limits {
            requests_per_minute: positive(l.key.requests_per_minute),
            requests_per_hour: positive(l.key.requests_per_hour),
            tokens_per_minute: positive(l.key.tokens_per_minute),
        };
        let models = if l.tenant.models.is_empty() {
            tier.map(|t| t.models.clone()).unwrap_or_default()
        } else {
            l.tenant.models.clone()
        };
        Principal {
            tenant_id: l.tenant.id.clone(),
            tenant_name: l.tenant.name.clone(),
            tier: tier_name.to_string(),
            key_id: l.key.id.clone(),
            scopes: key::scopes_from_str(&l.key.scopes),
            limits: tier_limits.overridden_by(overrides),
            models,
            budgets: Budgets {
                monthly_tokens: positive(l.tenant.monthly_token_budget),
                monthly_cost_micros: positive(l.tenant.monthly_cost_budget_micros),
            },
        }
    }

    fn cached(&self, key_id: &str) -> Option<Cached> {
        let cache = self.lock();
        cache.get(key_id).filter(|c| c.fetched.elapsed() < self.ttl).cloned()
    }

    /// Builds the cache entry (and keeps it, unless caching is off).
    fn remember(&self, key_id: &str, lookup: KeyLookup) -> Cached {
        let entry = Cached {
            principal: Arc::new(self.principal(&lookup)),
            lookup: Arc::new(lookup),
            fetched: Instant::now(),
        };
        if self.ttl.is_zero() {
            return entry;
        }
        let mut cache = self.lock();
        if cache.len() >= CACHE_MAX {
            let ttl = self.ttl;
            cache.retain(|_, c| c.fetched.elapsed() < ttl);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(key_id.to_string(), entry.clone());
        entry
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}
