//! Rate limits per key: requests per minute and per hour, tokens per
//! minute. [`Limiter::acquire`] takes one request from each request window
//! (all or nothing) and checks that the token window has a token left;
//! [`Limiter::charge_tokens`] records the real count once the answer is
//! known. Local counters serve one replica; Redis counters (one atomic Lua
//! script per call) make the limits hold across replicas.

mod gcra;
mod local;
mod redis;

use std::time::Duration;

pub use self::local::{LocalLimiter, LocalTable};
pub use self::redis::RedisLimiter;

use crate::config::{LimiterConfig, TierConfig};
use crate::error::{LimiterError, RateLimited};
use gcra::{Applied, Mode, Op};

const MINUTE_US: f64 = 60e6;
const HOUR_US: f64 = 3600e6;

/// The limits that apply to one key: its tier's, with the key's overrides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub requests_per_minute: Option<u64>,
    pub requests_per_hour: Option<u64>,
    pub tokens_per_minute: Option<u64>,
}

impl Limits {
    pub fn of_tier(tier: &TierConfig) -> Self {
        Self {
            requests_per_minute: tier.requests_per_minute,
            requests_per_hour: tier.requests_per_hour,
            tokens_per_minute: tier.tokens_per_minute,
        }
    }

    /// `self` with every limit `over` sets replaced.
    pub fn overridden_by(self, over: Limits) -> Self {
        Self {
            requests_per_minute: over.requests_per_minute.or(self.requests_per_minute),
            requests_per_hour: over.requests_per_hour.or(self.requests_per_hour),
            tokens_per_minute: over.tokens_per_minute.or(self.tokens_per_minute),
        }
    }
}

/// One window as the OpenAI-style headers show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowState {
    pub limit: u64,
    pub remaining: u64,
    /// Until the window is full again.
    pub reset: Duration,
}

/// The answer to [`Limiter::acquire`]: `x-ratelimit-{limit,remaining,reset}-requests`
/// come from `requests` (the tighter of the minute and hour windows),
/// the `-tokens` ones from `tokens`; `None` where no limit applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub requests: Option<WindowState>,
    pub tokens: Option<WindowState>,
    /// Set when refused: the `Retry-After`.
    pub retry_after: Option<Duration>,
}

impl Decision {
    /// `Ok` when allowed, else the 429 to answer with.
    pub fn check(self) -> Result<Decision, RateLimited> {
        if self.allowed {
            return Ok(self);
        }
        let requests_out = self.requests.is_some_and(|w| w.remaining == 0);
        Err(RateLimited {
            what: if requests_out { "requests" } else { "tokens" },
            retry_after: self.retry_after.unwrap_or(Duration::from_secs(1)),
            decision: self,
        })
    }
}

/// Which window an op of a request is about, to read the answer back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Window {
    Rpm,
    Rph,
    Tpm,
}

impl Window {
    fn suffix(self) -> &'static str {
        match self {
            Self::Rpm => "rpm",
            Self::Rph => "rph",
            Self::Tpm => "tpm",
        }
    }
}

/// The windows a request touches and what it does to each.
fn request_ops(limits: &Limits) -> Vec<(Window, Op)> {
    let mut ops = Vec::with_capacity(3);
    let op = |period_us, limit, mode| Op {
        period_us,
        limit,
        cost: 1.0,
        mode,
    };
    if let Some(l) = limits.requests_per_minute {
        ops.push((Window::Rpm, op(MINUTE_US, l, Mode::Take)));
    }
    if let Some(l) = limits.requests_per_hour {
        ops.push((Window::Rph, op(HOUR_US, l, Mode::Take)));
    }
    if let Some(l) = limits.tokens_per_minute {
        ops.push((Window::Tpm, op(MINUTE_US, l, Mode::Peek)));
    }
    ops
}

fn charge_op(limits: &Limits, tokens: u64) -> Option<(Window, Op)> {
    let limit = limits.tokens_per_minute?;
    (tokens > 0).then_some((
        Window::Tpm,
        Op {
            period_us: MINUTE_US,
            limit,
            cost: tokens as f64,
            mode: Mode::Force,
        },
    ))
}

fn decision(ops: &[(Window, Op)], applied: &Applied) -> Decision {
    let mut requests: Option<WindowState> = None;
    let mut tokens = None;
    for ((window, op), after) in ops.iter().zip(&applied.windows) {
        let state = WindowState {
            limit: op.limit,
            remaining: after.remaining,
            reset: Duration::from_micros(after.reset_us.ceil() as u64),
        };
        match window {
            Window::Tpm => tokens = Some(state),
            // The tighter request window: fewer left, or the sooner reset.
            _ if requests.is_none_or(|r| state.remaining < r.remaining) => requests = Some(state),
            _ => {}
        }
    }
    Decision {
        allowed: applied.allowed,
        requests,
        tokens,
        retry_after: (!applied.allowed).then(|| Duration::from_micros(applied.retry_us.ceil() as u64)),
    }
}

/// The limiter the configuration chose.
#[derive(Debug)]
pub enum Limiter {
    Local(LocalLimiter),
    Redis(RedisLimiter),
}

impl Limiter {
    pub async fn from_config(config: &LimiterConfig) -> Result<Self, LimiterError> {
        Ok(match config {
            LimiterConfig::Local => Self::Local(LocalLimiter::new()),
            LimiterConfig::Redis { url, prefix } => Self::Redis(RedisLimiter::connect(url, prefix).await?),
        })
    }

    /// Takes one request of `subject` (a key id) and checks its tokens.
    pub async fn acquire(&self, subject: &str, limits: &Limits) -> Result<Decision, LimiterError> {
        let ops = request_ops(limits);
        if ops.is_empty() {
            return Ok(Decision {
                allowed: true,
                requests: None,
                tokens: None,
                retry_after: None,
            });
        }
        let applied = match self {
            Self::Local(l) => l.apply(subject, &ops),
            Self::Redis(r) => r.apply(subject, &ops).await?,
        };
        Ok(decision(&ops, &applied))
    }

    /// Records the tokens an answer used at once when the limiter is in
    /// this process; `false` (nothing charged) when it is remote and
    /// [`Self::charge_tokens`] must be awaited instead.
    pub fn charge_tokens_now(&self, subject: &str, limits: &Limits, tokens: u64) -> bool {
        match self {
            Self::Local(l) => {
                if let Some(op) = charge_op(limits, tokens) {
                    l.apply(subject, &[op]);
                }
                true
            }
            Self::Redis(_) => false,
        }
    }

    /// Records the tokens an answer used (prompt + completion).
    pub async fn charge_tokens(&self, subject: &str, limits: &Limits, tokens: u64) -> Result<(), LimiterError> {
        if let (Self::Redis(r), Some(op)) = (self, charge_op(limits, tokens)) {
            r.apply(subject, &[op]).await?;
        } else {
            self.charge_tokens_now(subject, limits, tokens);
        }
        Ok(())
    }
}
