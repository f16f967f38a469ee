//! Tenancy: who may call, how often, how much, and what they used.
//!
//! - **Keys** ([`key`]): `sy-<key id>.<secret>`; the id is public and is
//!   what the store looks up; only the SHA-256 of the 256-bit random secret
//!   is stored, compared in constant time. Keys carry scopes (`inference`,
//!   `admin`), may expire and be revoked.
//! - **Authentication** ([`Authenticator`]): header → [`Principal`]
//!   (tenant, key id, scopes, limits, allowed models, budgets), with a
//!   short in-memory cache so the hot path rarely reaches the database.
//! - **Rate limits** ([`Limiter`]): GCRA per key on requests per minute and
//!   per hour and tokens per minute, from the tier with per-key overrides;
//!   local counters for one replica, or one atomic Lua script in Redis
//!   when replicas share the limits. Decisions carry what the OpenAI-style
//!   `x-ratelimit-*` headers and `Retry-After` need.
//! - **Quotas** ([`Quotas`]): monthly token and cost budgets per tenant,
//!   checked before dispatch against month-to-date usage.
//! - **Usage** ([`UsageMeter`]): one record per request, queued without
//!   blocking and written in batches by a tracked background task, keyed
//!   by request id so nothing counts twice; `shutdown` flushes it all.
//! - **Administration** ([`Admin`]): tenants, keys, the bootstrap admin
//!   key, usage reports and their CSV, for the admin API and the CLI alike.
//!
//! Storage is the `switchyard-db` pool (SQLite or PostgreSQL); all tenancy
//! SQL is in `switchyard_db::tenancy`. This crate knows no HTTP: the
//! server maps [`AuthError`] to 401, [`AccessError`] to 403,
//! [`RateLimited`] and [`QuotaError::Exhausted`] to 429, and store or
//! limiter failures to 503. Money is integer micro-units throughout.

pub mod admin;
pub mod auth;
pub mod config;
pub mod error;
pub mod key;
pub mod limiter;
pub mod period;
pub mod quota;
pub mod usage;

pub use admin::{usage_csv, Admin, CreatedKey, GroupBy, KeyInfo, NewKey, NewTenant, Tenant, UsageGroup, UsageQuery};
pub use auth::{Authenticator, Principal};
pub use config::{AuthMode, LimiterConfig, Price, TenancyConfig, TierConfig, UsageConfig};
pub use error::{
    AccessError, AdminError, AuthError, Budget, ConfigError, LimiterError, QuotaError, RateLimited, UsageError,
};
pub use key::{ApiKeySecret, Scope};
pub use limiter::{Decision, Limiter, Limits, WindowState};
pub use quota::{Budgets, MonthToDate, Quotas};
pub use usage::{PendingRecord, UsageMeter, UsageRecord, UsageRecorder};
