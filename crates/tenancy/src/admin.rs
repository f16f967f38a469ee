//! Tenant and key administration, and usage reports: the service the admin
//! API and the CLI both call.

use std::sync::Arc;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use switchyard_db::{now_unix, ApiKeyRow, Db, TenantRow, UsageGroupBy};

use crate::config::TenancyConfig;
use crate::error::AdminError;
use crate::key::{self, ApiKeySecret, Scope};
use crate::limiter::Limits;
use crate::period::day_label;
use crate::quota::{Budgets, MonthToDate};

/// The tenant the bootstrap admin key belongs to.
pub const ADMIN_TENANT: &str = "admin";

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    pub name: String,
    /// The default tier when absent.
    #[serde(default)]
    pub tier: Option<String>,
    #[serde(default)]
    pub budgets: Budgets,
    /// Allowed models; empty: the tier's.
    #[serde(default)]
    pub models: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub tier: String,
    pub budgets: Budgets,
    pub models: Vec<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// Tenant id or name.
    pub tenant: String,
    pub name: String,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<Scope>,
    /// Unix seconds.
    #[serde(default)]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub overrides: Limits,
}

fn default_scopes() -> Vec<Scope> {
    vec![Scope::Inference]
}

/// A key as listed: never its secret nor its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub overrides: Limits,
}

/// A key just made: `secret` is shown once and never again.
#[derive(Debug, Clone)]
pub struct CreatedKey {
    pub info: KeyInfo,
    pub secret: ApiKeySecret,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    Model,
    Day,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UsageQuery {
    /// Tenant id; `None`: every tenant (admin only).
    pub tenant: Option<String>,
    /// `[from, to)` in unix seconds.
    pub from: i64,
    pub to: i64,
    pub group_by: GroupBy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageGroup {
    /// The model, or the UTC day as `YYYY-MM-DD`.
    pub group: String,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub cost_micros: u64,
}

#[derive(Debug, Clone)]
pub struct Admin {
    db: Db,
    config: Arc<TenancyConfig>,
}

fn random_id() -> String {
    let mut b = [0u8; 8];
    rand::rng().fill_bytes(&mut b);
    key::to_hex(&b)
}

fn count(v: u64, field: &'static str) -> Result<Option<i64>, AdminError> {
    match i64::try_from(v) {
        Ok(0) => Err(AdminError::InvalidInput {
            field,
            reason: "must be at least 1 (leave it out for no limit)".into(),
        }),
        Ok(v) => Ok(Some(v)),
        Err(_) => Err(AdminError::InvalidInput {
            field,
            reason: "too large".into(),
        }),
    }
}

fn opt_count(v: Option<u64>, field: &'static str) -> Result<Option<i64>, AdminError> {
    v.map_or(Ok(None), |v| count(v, field))
}

fn u(v: i64) -> u64 {
    v.max(0) as u64
}

fn tenant(r: TenantRow) -> Tenant {
    Tenant {
        budgets: Budgets {
            monthly_tokens: r.monthly_token_budget.map(u),
            monthly_cost_micros: r.monthly_cost_budget_micros.map(u),
        },
        id: r.id,
        name: r.name,
        tier: r.tier,
        models: r.models,
        created_at: r.created_at,
    }
}

fn key_info(r: ApiKeyRow) -> KeyInfo {
    KeyInfo {
        scopes: key::scopes_from_str(&r.scopes),
        overrides: Limits {
            requests_per_minute: r.requests_per_minute.map(u),
            requests_per_hour: r.requests_per_hour.map(u),
            tokens_per_minute: r.tokens_per_minute.map(u),
        },
        id: r.id,
        tenant_id: r.tenant_id,
        name: r.name,
        created_at: r.created_at,
        expires_at: r.expires_at,
        revoked_at: r.revoked_at,
    }
}

impl Admin {
    pub fn new(db: Db, config: Arc<TenancyConfig>) -> Self {
        Self { db, config }
    }

    pub async fn create_tenant(&self, new: &NewTenant) -> Result<Tenant, AdminError> {
        let name = new.name.trim();
        if name.is_empty() || name.len() > 128 {
            return Err(AdminError::InvalidInput {
                field: "name",
                reason: "1 to 128 characters".into(),
            });
        }
        let tier = new.tier.clone().unwrap_or_else(|| self.config.default_tier.clone());
        if !self.config.tiers.contains_key(&tier) {
            return Err(AdminError::InvalidInput {
                field: "tier",
                reason: format!("no tier `{tier}` in the configuration"),
            });
        }
        if new.models.iter().any(|m| m.is_empty() || m.contains(',')) {
            return Err(AdminError::InvalidInput {
                field: "models",
                reason: "model names are non-empty, without commas".into(),
            });
        }
        let row = TenantRow {
            id: random_id(),
            name: name.to_string(),
            tier,
            monthly_token_budget: opt_count(new.budgets.monthly_tokens, "budgets.monthly_tokens")?,
            monthly_cost_budget_micros: opt_count(new.budgets.monthly_cost_micros, "budgets.monthly_cost_micros")?,
            models: new.models.clone(),
            created_at: now_unix(),
        };
        if !self.db.insert_tenant(&row).await? {
            return Err(AdminError::Conflict {
                what: "tenant",
                id: row.name,
            });
        }
        Ok(tenant(row))
    }

    pub async fn tenants(&self) -> Result<Vec<Tenant>, AdminError> {
        Ok(self.db.tenants().await?.into_iter().map(tenant).collect())
    }

    /// By id or name.
    pub async fn tenant(&self, id_or_name: &str) -> Result<Tenant, AdminError> {
        self.db
            .tenant(id_or_name)
            .await?
            .map(tenant)
            .ok_or_else(|| AdminError::NotFound {
                what: "tenant",
                id: id_or_name.to_string(),
            })
    }

    /// Makes a key; its plaintext is in the answer and nowhere else.
    pub async fn create_key(&self, new: &NewKey) -> Result<CreatedKey, AdminError> {
        let (secret, parsed) = key::generate();
        self.store_key(new, secret, parsed).await
    }

    async fn store_key(
        &self,
        new: &NewKey,
        secret: ApiKeySecret,
        parsed: key::ParsedKey,
    ) -> Result<CreatedKey, AdminError> {
        let tenant = self.tenant(&new.tenant).await?;
        if new.scopes.is_empty() {
            return Err(AdminError::InvalidInput {
                field: "scopes",
                reason: "at least one of inference, admin".into(),
            });
        }
        let row = ApiKeyRow {
            id: parsed.id.clone(),
            tenant_id: tenant.id,
            name: new.name.trim().to_string(),
            scopes: key::scopes_to_string(&new.scopes),
            created_at: now_unix(),
            expires_at: new.expires_at,
            revoked_at: None,
            requests_per_minute: opt_count(new.overrides.requests_per_minute, "overrides.requests_per_minute")?,
            requests_per_hour: opt_count(new.overrides.requests_per_hour, "overrides.requests_per_hour")?,
            tokens_per_minute: opt_count(new.overrides.tokens_per_minute, "overrides.tokens_per_minute")?,
        };
        if !self
            .db
            .insert_api_key(&row, &key::to_hex(&parsed.secret_sha256))
            .await?
        {
            return Err(AdminError::Conflict {
                what: "key",
                id: row.id,
            });
        }
        Ok(CreatedKey {
            info: key_info(row),
            secret,
        })
    }

    /// Keys of one tenant (id or name), or of all.
    pub async fn keys(&self, tenant: Option<&str>) -> Result<Vec<KeyInfo>, AdminError> {
        let tenant_id = match tenant {
            Some(t) => Some(self.tenant(t).await?.id),
            None => None,
        };
        let rows = self.db.api_keys(tenant_id.as_deref()).await?;
        Ok(rows.into_iter().map(key_info).collect())
    }

    /// Revokes a key by its public id. Other replicas stop accepting it
    /// within their key cache time; call [`crate::Authenticator::forget`]
    /// for this one.
    pub async fn revoke_key(&self, key_id: &str) -> Result<(), AdminError> {
        if self.db.revoke_api_key(key_id, now_unix()).await? {
            Ok(())
        } else {
            Err(AdminError::NotFound {
                what: "active key",
                id: key_id.to_string(),
            })
        }
    }

    /// On start: when no working admin key exists, makes one and returns
    /// its plaintext to print once. A key given in `env_value` (already in
    /// the operator's hands) is adopted instead, its hash stored, and
    /// `None` returned; it is adopted even beside other admin keys, so the
    /// configured key always works.
    pub async fn ensure_admin_key(&self, env_value: Option<&str>) -> Result<Option<ApiKeySecret>, AdminError> {
        let adopted = match env_value.map(str::trim).filter(|v| !v.is_empty()) {
            Some(v) => Some(key::adopt(v).ok_or(AdminError::InvalidInput {
                field: "admin key",
                reason: "not a Switchyard key (sy-<16 hex>.<43 base64url>)".into(),
            })?),
            None => None,
        };
        if let Some((_, parsed)) = &adopted {
            if let Some(stored) = self.db.api_key_lookup(&parsed.id).await? {
                if key::verify(parsed, &stored.secret_sha256) {
                    return Ok(None);
                }
                return Err(AdminError::Conflict {
                    what: "key with the admin key's id",
                    id: parsed.id.clone(),
                });
            }
        } else if self.db.count_live_admin_keys(now_unix()).await? > 0 {
            return Ok(None);
        }
        let admin_tenant = match self.db.tenant(ADMIN_TENANT).await? {
            Some(t) => t.name,
            None => {
                // The first unlimited tier, else the default one.
                let tier = self
                    .config
                    .tiers
                    .iter()
                    .find(|(_, t)| t.requests_per_minute.is_none() && t.requests_per_hour.is_none())
                    .map_or(self.config.default_tier.clone(), |(n, _)| n.clone());
                match self
                    .create_tenant(&NewTenant {
                        name: ADMIN_TENANT.into(),
                        tier: Some(tier),
                        ..NewTenant::default()
                    })
                    .await
                {
                    Ok(t) => t.name,
                    // Another replica made it at the same moment.
                    Err(AdminError::Conflict { .. }) => ADMIN_TENANT.into(),
                    Err(e) => return Err(e),
                }
            }
        };
        let new = NewKey {
            tenant: admin_tenant,
            name: "bootstrap admin".into(),
            scopes: vec![Scope::Inference, Scope::Admin],
            expires_at: None,
            overrides: Limits::default(),
        };
        let made = adopted.is_none();
        let (secret, parsed) = adopted.unwrap_or_else(key::generate);
        let created = self.store_key(&new, secret, parsed).await?;
        tracing::info!(key_id = %created.info.id, adopted = !made, "bootstrap admin key stored");
        Ok(made.then_some(created.secret))
    }

    /// A tenant's usage this month (UTC), straight from the store.
    pub async fn month_to_date(&self, tenant_id: &str) -> Result<MonthToDate, AdminError> {
        let month = crate::period::month_of(now_unix());
        let (tokens, cost) = self.db.usage_totals(tenant_id, month.start).await?;
        Ok(MonthToDate {
            tokens: u(tokens),
            cost_micros: u(cost),
        })
    }

    /// A usage report. `tenant: None` covers every tenant: the caller
    /// checks [`crate::Principal::may_read_tenant`] (or the admin scope)
    /// first.
    pub async fn usage(&self, q: &UsageQuery) -> Result<Vec<UsageGroup>, AdminError> {
        if q.to <= q.from {
            return Err(AdminError::InvalidInput {
                field: "to",
                reason: "must be after `from`".into(),
            });
        }
        let by = match q.group_by {
            GroupBy::Model => UsageGroupBy::Model,
            GroupBy::Day => UsageGroupBy::Day,
        };
        let rows = self.db.usage_grouped(q.tenant.as_deref(), q.from, q.to, by).await?;
        Ok(rows
            .into_iter()
            .map(|r| UsageGroup {
                group: match q.group_by {
                    GroupBy::Model => r.group,
                    GroupBy::Day => r.group.parse().map_or(r.group, day_label),
                },
                requests: u(r.requests),
                prompt_tokens: u(r.prompt_tokens),
                completion_tokens: u(r.completion_tokens),
                total_tokens: u(r.prompt_tokens) + u(r.completion_tokens),
                cost_micros: u(r.cost_micros),
            })
            .collect())
    }
}

/// A usage report as CSV (RFC 4180 quoting), header first.
pub fn usage_csv(group_by: GroupBy, groups: &[UsageGroup]) -> String {
    let first = match group_by {
        GroupBy::Model => "model",
        GroupBy::Day => "day",
    };
    let mut out = format!("{first},requests,prompt_tokens,completion_tokens,total_tokens,cost_micros\n");
    for g in groups {
        let field = if g.group.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", g.group.replace('"', "\"\""))
        } else {
            g.group.clone()
        };
        out.push_str(&format!(
            "{field},{},{},{},{},{}\n",
            g.requests, g.prompt_tokens, g.completion_tokens, g.total_tokens, g.cost_micros
        ));
    }
    out
}
