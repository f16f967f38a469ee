//! `tenants`, `api_keys` and `usage_records`: the rows and their queries.
//! The tenancy crate owns what they mean (scopes, tiers, prices); here
//! they are plain values, so this is the only file with tenancy SQL.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{Db, DbError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRow {
    pub id: String,
    pub name: String,
    pub tier: String,
    pub monthly_token_budget: Option<i64>,
    pub monthly_cost_budget_micros: Option<i64>,
    /// Empty: the tier's allow-list applies.
    pub models: Vec<String>,
    pub created_at: i64,
}

/// A key as listed: everything but the hash of its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRow {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    /// Comma-separated scope names.
    pub scopes: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub requests_per_minute: Option<i64>,
    pub requests_per_hour: Option<i64>,
    pub tokens_per_minute: Option<i64>,
}

/// What authentication needs: the key, its tenant and the stored hash.
#[derive(Debug, Clone)]
pub struct KeyLookup {
    pub key: ApiKeyRow,
    pub tenant: TenantRow,
    pub secret_sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    pub request_id: String,
    pub tenant_id: String,
    pub key_id: String,
    pub model: String,
    pub deployment: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub latency_ms: i64,
    pub status_code: i64,
    pub cost_micros: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageGroupBy {
    Model,
    /// UTC days; the group is the day number since 1970-01-01.
    Day,
}

/// One group of a usage query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageGroupRow {
    /// The model, or the day number (as text) when grouped by day.
    pub group: String,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost_micros: i64,
}

const TENANT_COLUMNS: &str = "id, name, tier, monthly_token_budget, monthly_cost_budget_micros, models, created_at";
const KEY_COLUMNS: &str = "id, tenant_id, name, scopes, created_at, expires_at, revoked_at, \
     requests_per_minute, requests_per_hour, tokens_per_minute";
const USAGE_COLUMNS: usize = 11;
/// Rows per INSERT statement: 11 parameters each stays far below the
/// parameter limits of both engines.
const USAGE_ROWS_PER_STATEMENT: usize = 500;
/// SQLite's rows per statement: large enough that the per-statement cost
/// is spread thin, small enough that binding stays cheap.
const SQLITE_USAGE_ROWS_PER_STATEMENT: usize = 50;

/// The statement for `rows` rows; the full-chunk one is built once per
/// backend (building it took ~1.5 % of a proxied request's instructions).
fn usage_insert_sql_cached(backend: crate::Backend, rows: usize, full: usize) -> std::borrow::Cow<'static, str> {
    use std::sync::OnceLock;
    static SQLITE: OnceLock<String> = OnceLock::new();
    static POSTGRES: OnceLock<String> = OnceLock::new();
    if rows != full {
        return usage_insert_sql(backend, rows).into();
    }
    let cell = match backend {
        crate::Backend::Sqlite => &SQLITE,
        crate::Backend::Postgres => &POSTGRES,
    };
    cell.get_or_init(|| usage_insert_sql(backend, rows)).as_str().into()
}

/// `INSERT ... VALUES (...), ...` for `rows` usage rows. SQLite gets bare
/// `?` placeholders: it looks a numbered one up by name, one linear scan
/// per parameter, which showed in the writer's profile at 550 parameters.
fn usage_insert_sql(backend: crate::Backend, rows: usize) -> String {
    use std::fmt::Write as _;
    let mut sql = String::from(
        "INSERT INTO usage_records (request_id, tenant_id, key_id, model, deployment, prompt_tokens, \
         completion_tokens, latency_ms, status_code, cost_micros, created_at) VALUES ",
    );
    for i in 0..rows {
        sql.push_str(if i > 0 { ", (" } else { "(" });
        for c in 0..USAGE_COLUMNS {
            let sep = if c > 0 { ", " } else { "" };
            let _ = match backend {
                crate::Backend::Sqlite => write!(sql, "{sep}?"),
                crate::Backend::Postgres => write!(sql, "{sep}${}", i * USAGE_COLUMNS + c + 1),
            };
        }
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT (request_id) DO NOTHING");
    sql
}

fn tenant(r: &AnyRow) -> Result<TenantRow, DbError> {
    let models: String = r.try_get("models")?;
    Ok(TenantRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        tier: r.try_get("tier")?,
        monthly_token_budget: r.try_get("monthly_token_budget")?,
        monthly_cost_budget_micros: r.try_get("monthly_cost_budget_micros")?,
        models: models
            .split(',')
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .collect(),
        created_at: r.try_get("created_at")?,
    })
}

fn key(r: &AnyRow) -> Result<ApiKeyRow, DbError> {
    Ok(ApiKeyRow {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        name: r.try_get("name")?,
        scopes: r.try_get("scopes")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        revoked_at: r.try_get("revoked_at")?,
        requests_per_minute: r.try_get("requests_per_minute")?,
        requests_per_hour: r.try_get("requests_per_hour")?,
        tokens_per_minute: r.try_get("tokens_per_minute")?,
    })
}

impl Db {
    /// False when the id or the name is taken.
    pub async fn insert_tenant(&self, t: &TenantRow) -> Result<bool, DbError> {
        let done = sqlx::query(&format!(
            "INSERT INTO tenants ({TENANT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING"
        ))
        .bind(&t.id)
        .bind(&t.name)
        .bind(&t.tier)
        .bind(t.monthly_token_budget)
        .bind(t.monthly_cost_budget_micros)
        .bind(t.models.join(","))
        .bind(t.created_at)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every tenant, by name.
    pub async fn tenants(&self) -> Result<Vec<TenantRow>, DbError> {
        let rows = sqlx::query(&format!("SELECT {TENANT_COLUMNS} FROM tenants ORDER BY name"))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(tenant).collect()
    }

    /// A tenant by id or, failing that, by name.
    pub async fn tenant(&self, id_or_name: &str) -> Result<Option<TenantRow>, DbError> {
        let row = sqlx::query(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1 OR name = $1 ORDER BY id = $1 DESC LIMIT 1"
        ))
        .bind(id_or_name)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(tenant).transpose()
    }

    /// False when the id is taken.
    pub async fn insert_api_key(&self, k: &ApiKeyRow, secret_sha256: &str) -> Result<bool, DbError> {
        let done = sqlx::query(&format!(
            "INSERT INTO api_keys ({KEY_COLUMNS}, secret_sha256) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING"
        ))
        .bind(&k.id)
        .bind(&k.tenant_id)
        .bind(&k.name)
        .bind(&k.scopes)
        .bind(k.created_at)
        .bind(k.expires_at)
        .bind(k.revoked_at)
        .bind(k.requests_per_minute)
        .bind(k.requests_per_hour)
        .bind(k.tokens_per_minute)
        .bind(secret_sha256)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Keys, oldest first; of one tenant when given.
    pub async fn api_keys(&self, tenant_id: Option<&str>) -> Result<Vec<ApiKeyRow>, DbError> {
        let rows = match tenant_id {
            Some(t) => {
                sqlx::query(&format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id"
                ))
                .bind(t)
                .fetch_all(self.pool())
                .await?
            }
            None => {
                sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"))
                    .fetch_all(self.pool())
                    .await?
            }
        };
        rows.iter().map(key).collect()
    }

    /// The key with this public id, its tenant and its stored hash.
    pub async fn api_key_lookup(&self, key_id: &str) -> Result<Option<KeyLookup>, DbError> {
        let row = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS}, secret_sha256 FROM api_keys WHERE id = $1"
        ))
        .bind(key_id)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let key = key(&row)?;
        let Some(tenant) = self.tenant(&key.tenant_id).await? else {
            return Ok(None);
        };
        Ok(Some(KeyLookup {
            key,
            tenant,
            secret_sha256: row.try_get("secret_sha256")?,
        }))
    }

    /// Marks a key revoked; false when there is no such key or it already was.
    pub async fn revoke_api_key(&self, key_id: &str, now: i64) -> Result<bool, DbError> {
        let done = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(key_id)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Keys carrying the `admin` scope that still work at `now`.
    pub async fn count_live_admin_keys(&self, now: i64) -> Result<i64, DbError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM api_keys WHERE revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $1) AND (',' || scopes || ',') LIKE '%,admin,%'",
        )
        .bind(now)
        .fetch_one(self.pool())
        .await?;
        Ok(row.try_get("n")?)
    }

    /// Writes usage records in one transaction; a request id already there
    /// is skipped. Returns how many rows were new.
    pub async fn insert_usage(&self, rows: &[UsageRow]) -> Result<u64, DbError> {
        let mut tx = self.pool().begin().await?;
        let mut written = 0;
        // Many rows per statement: sqlx hands each statement to SQLite's
        // worker thread, or sends it to PostgreSQL, so fewer statements
        // cost less. sqlx caches each prepared size; a batch has at most
        // two (full chunks and the rest).
        let per_statement = match self.backend() {
            crate::Backend::Sqlite => SQLITE_USAGE_ROWS_PER_STATEMENT,
            crate::Backend::Postgres => USAGE_ROWS_PER_STATEMENT,
        };
        for chunk in rows.chunks(per_statement) {
            let sql = usage_insert_sql_cached(self.backend(), chunk.len(), per_statement);
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
                    .bind(&r.request_id)
                    .bind(&r.tenant_id)
                    .bind(&r.key_id)
                    .bind(&r.model)
                    .bind(&r.deployment)
                    .bind(r.prompt_tokens)
                    .bind(r.completion_tokens)
                    .bind(r.latency_ms)
                    .bind(r.status_code)
                    .bind(r.cost_micros)
                    .bind(r.created_at);
            }
            written += q.execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(written)
    }

    /// Usage in `[from, to)` (unix seconds), of one tenant or of all,
    /// grouped by model or by UTC day, in group order.
    pub async fn usage_grouped(
        &self,
        tenant_id: Option<&str>,
        from: i64,
        to: i64,
        by: UsageGroupBy,
    ) -> Result<Vec<UsageGroupRow>, DbError> {
        let group = match by {
            UsageGroupBy::Model => "model",
            UsageGroupBy::Day => "CAST(created_at / 86400 AS TEXT)",
        };
        let order = match by {
            UsageGroupBy::Model => "model",
            UsageGroupBy::Day => "MIN(created_at)",
        };
        let sql = format!(
            "SELECT {group} AS grp, COUNT(*) AS requests, \
             CAST(SUM(prompt_tokens) AS BIGINT) AS prompt_tokens, \
             CAST(SUM(completion_tokens) AS BIGINT) AS completion_tokens, \
             CAST(SUM(cost_micros) AS BIGINT) AS cost_micros \
             FROM usage_records WHERE created_at >= $1 AND created_at < $2 AND ($3 = '' OR tenant_id = $3) \
             GROUP BY {group} ORDER BY {order}"
        );
        let rows = sqlx::query(&sql)
            .bind(from)
            .bind(to)
            .bind(tenant_id.unwrap_or(""))
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(UsageGroupRow {
                    group: r.try_get("grp")?,
                    requests: r.try_get("requests")?,
                    prompt_tokens: r.try_get("prompt_tokens")?,
                    completion_tokens: r.try_get("completion_tokens")?,
                    cost_micros: r.try_get("cost_micros")?,
                })
            })
            .collect()
    }

    /// A tenant's total tokens (prompt + completion) and cost since `from`.
    pub async fn usage_totals(&self, tenant_id: &str, from: i64) -> Result<(i64, i64), DbError> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(prompt_tokens + completion_tokens), 0) AS BIGINT) AS tokens, \
             CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT) AS cost \
             FROM usage_records WHERE tenant_id = $1 AND created_at >= $2",
        )
        .bind(tenant_id)
        .bind(from)
        .fetch_one(self.pool())
        .await?;
        Ok((row.try_get("tokens")?, row.try_get("cost")?))
    }
}
