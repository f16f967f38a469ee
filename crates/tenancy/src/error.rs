//! Errors by area: each enum is one kind of answer the server gives
//! (401, 403, 429, 400/404/409, 500/503), so mapping them is one `match`.
//! No message ever holds a key or a secret.

use std::time::Duration;

use switchyard_db::DbError;

use crate::key::Scope;
use crate::limiter::Decision;

/// The configuration is refused; `field` is its dotted path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

/// Why a request is not authenticated: every variant but `Store` is a 401.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing API key: send `Authorization: Bearer <key>`")]
    Missing,
    #[error("malformed API key")]
    Malformed,
    #[error("unknown API key")]
    Unknown,
    #[error("revoked API key")]
    Revoked,
    #[error("expired API key")]
    Expired,
    /// The key store could not be read: a 503, not the client's fault.
    #[error("key store unavailable: {0}")]
    Store(#[from] DbError),
}

impl AuthError {
    /// A short, stable name for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Unknown => "unknown",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::Store(_) => "store",
        }
    }
}

/// An authenticated key asks for what it may not have: a 403.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("this API key lacks the `{0}` scope")]
    MissingScope(Scope),
    #[error("model `{0}` is not allowed for this tenant")]
    ModelNotAllowed(String),
    #[error("this key may only read its own tenant's data")]
    OtherTenant,
}

/// Over a rate limit: a 429 with `Retry-After` and the headers in the decision.
#[derive(Debug, Clone, thiserror::Error)]
#[error("rate limit reached for {what}; retry after {} s", retry_after.as_secs().max(1))]
pub struct RateLimited {
    /// `requests` or `tokens`.
    pub what: &'static str,
    pub retry_after: Duration,
    pub decision: Decision,
}

/// The limiter itself failed (Redis unreachable): a 503.
#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    #[error("rate limiter unavailable: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("rate limiter answered unexpectedly: {0}")]
    Protocol(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    Tokens,
    Cost,
}

impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Tokens => "token",
            Self::Cost => "cost",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    /// A 429 whose message says which budget and which month.
    #[error("monthly {budget} budget exhausted for {period}: {used} of {limit} used{unit}", unit = match budget { Budget::Tokens => " tokens", Budget::Cost => " micro-units" })]
    Exhausted {
        budget: Budget,
        /// `YYYY-MM` (UTC).
        period: String,
        used: u64,
        limit: u64,
    },
    #[error("usage store unavailable: {0}")]
    Store(#[from] DbError),
}

/// Tenant and key administration (admin API, CLI).
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{field}: {reason}")]
    InvalidInput { field: &'static str, reason: String },
    #[error("no {what} `{id}`")]
    NotFound { what: &'static str, id: String },
    #[error("{what} `{id}` already exists")]
    Conflict { what: &'static str, id: String },
    #[error("database: {0}")]
    Store(#[from] DbError),
}

#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// `record` after `shutdown`: the record is not kept (logged as an error).
    #[error("usage meter is shut down")]
    Closed,
    #[error("usage writer failed; {lost} records not written: {error}")]
    Lost { lost: usize, error: DbError },
    #[error("usage writer task failed: {0}")]
    Task(String),
}
