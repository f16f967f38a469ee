//! Monthly budgets per tenant: tokens and cost (integer micro-units).
//!
//! Month-to-date usage comes from the store and is kept in memory for
//! `quota_cache_secs`; usage recorded here bumps it at once, so this
//! replica sees its own traffic before the writer has flushed it. When the
//! cached value is read again, the larger of the store's and the local
//! count wins (the store may not yet hold this replica's last records).
//! Other replicas' usage shows up within the cache time: a budget may be
//! overshot by what all replicas serve in that time, never more.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use switchyard_db::Db;

use crate::error::{Budget, QuotaError};
use crate::period::month_of;

/// A tenant's monthly budgets; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Budgets {
    pub monthly_tokens: Option<u64>,
    pub monthly_cost_micros: Option<u64>,
}

/// Month-to-date usage of one tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MonthToDate {
    pub tokens: u64,
    pub cost_micros: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    month_start: i64,
    used: MonthToDate,
    fetched: Instant,
}

#[derive(Debug)]
pub struct Quotas {
    db: Db,
    ttl: Duration,
    cache: Mutex<HashMap<String, Entry>>,
}

impl Quotas {
    pub fn new(db: Db, ttl: Duration) -> Self {
        Self {
            db,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Refuses when a budget is spent, or when `reserve_tokens` (the
    /// prompt plus `max_tokens`, when the caller knows them) would
    /// overrun the token budget.
    pub async fn check(&self, tenant_id: &str, budgets: &Budgets, reserve_tokens: u64) -> Result<(), QuotaError> {
        self.check_at(tenant_id, budgets, reserve_tokens, switchyard_db::now_unix())
            .await
    }

    pub async fn check_at(
        &self,
        tenant_id: &str,
        budgets: &Budgets,
        reserve_tokens: u64,
        now: i64,
    ) -> Result<(), QuotaError> {
        if budgets.monthly_tokens.is_none() && budgets.monthly_cost_micros.is_none() {
            return Ok(());
        }
        let used = self.month_to_date_at(tenant_id, now).await?;
        let exhausted = |budget, used: u64, limit: u64| QuotaError::Exhausted {
            budget,
            period: month_of(now).label,
            used,
            limit,
        };
        if let Some(limit) = budgets.monthly_tokens {
            if used.tokens >= limit || used.tokens.saturating_add(reserve_tokens) > limit {
                return Err(exhausted(Budget::Tokens, used.tokens, limit));
            }
        }
        if let Some(limit) = budgets.monthly_cost_micros {
            if used.cost_micros >= limit {
                return Err(exhausted(Budget::Cost, used.cost_micros, limit));
            }
        }
        Ok(())
    }

    /// This month's usage of a tenant, cached.
    pub async fn month_to_date_at(&self, tenant_id: &str, now: i64) -> Result<MonthToDate, QuotaError> {
        let month = month_of(now);
        let cached = self.lock().get(tenant_id).copied();
        if let Some(e) = cached {
            if e.month_start == month.start && e.fetched.elapsed() < self.ttl {
                return Ok(e.used);
            }
        }
        let (tokens, cost) = self.db.usage_totals(tenant_id, month.start).await?;
        let mut used = MonthToDate {
            tokens: tokens.max(0) as u64,
            cost_micros: cost.max(0) as u64,
        };
        let mut cache = self.lock();
        if let Some(e) = cache.get(tenant_id).filter(|e| e.month_start == month.start) {
            used.tokens = used.tokens.max(e.used.tokens);
            used.cost_micros = used.cost_micros.max(e.used.cost_micros);
        }
        cache.insert(
            tenant_id.to_string(),
            Entry {
                month_start: month.start,
                used,
                fetched: Instant::now(),
            },
        );
        Ok(used)
    }

    /// Counts usage recorded on this replica at `at` (unix seconds).
    pub fn add(&self, tenant_id: &str, tokens: u64, cost_micros: u64, at: i64) {
        let month = month_of(at);
        let mut cache = self.lock();
        if let Some(e) = cache.get_mut(tenant_id) {
            if e.month_start == month.start {
                e.used.tokens = e.used.tokens.saturating_add(tokens);
                e.used.cost_micros = e.used.cost_micros.saturating_add(cost_micros);
            }
        }
        // Not cached: the next check reads the store, which will have it
        // or will be overtaken by it within one flush.
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}
