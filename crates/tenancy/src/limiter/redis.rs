//! The shared limiter: the GCRA of `gcra.rs`, written again as one Lua
//! script that Redis runs atomically (EVALSHA, loaded on first use), so
//! every replica sees and updates the same windows. The script reads the
//! time from Redis itself, so replicas' clocks need not agree.
//!
//! Keys are `<prefix>:{<subject>}:<window>`; the braces keep one subject's
//! windows in one Redis Cluster slot. Each expires once its window is full
//! again, so idle keys cost nothing.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;

use super::gcra::{After, Applied, Op};
use super::Window;
use crate::error::LimiterError;

/// Times in the script count from 2025-01-01 (unix seconds), which keeps
/// them small enough for microsecond precision in Lua's doubles.
const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = (tonumber(t[1]) - 1735689600) * 1000000 + tonumber(t[2])
local n = #KEYS
local tats, nexts = {}, {}
local allowed, retry = 1, 0
for i = 1, n do
  local period, limit = tonumber(ARGV[4*i-3]), tonumber(ARGV[4*i-2])
  local cost, mode = tonumber(ARGV[4*i-1]), tonumber(ARGV[4*i])
  local interval = period / limit
  local tol = math.min(interval / 2, 1000)
  local tat = tonumber(redis.call('GET', KEYS[i])) or 0
  tats[i] = tat
  nexts[i] = math.max(tat, now) + cost * interval
  local over = nexts[i] - now - (period + tol)
  if mode ~= 2 and over > 0 then
    allowed = 0
    if over > retry then retry = over end
  end
end
local out = {allowed, math.ceil(retry)}
for i = 1, n do
  local period, limit = tonumber(ARGV[4*i-3]), tonumber(ARGV[4*i-2])
  local mode = tonumber(ARGV[4*i])
  local tat = tats[i]
  if mode == 2 or (mode == 1 and allowed == 1) then
    tat = nexts[i]
    redis.call('SET', KEYS[i], string.format('%.3f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
  end
  local interval = period / limit
  local tol = math.min(interval / 2, 1000)
  local ahead = math.max(tat - now, 0)
  local free = math.floor((period + tol - ahead) / interval)
  if free < 0 then free = 0 end
  if free > limit then free = limit end
  out[#out + 1] = free
  out[#out + 1] = math.ceil(ahead)
end
return out
"#;

pub struct RedisLimiter {
    conn: ConnectionManager,
    script: Script,
    prefix: String,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisLimiter {
    /// Connects (the manager reconnects by itself after a failure).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, LimiterError> {
        let client = redis::Client::open(url)?;
        // A slow Redis must not hold requests: a decision that takes longer
        // than this fails (the server answers 503) instead of waiting.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(1))
            // Retries wait about 1 s then 2 s: the manager's delays are
            // `1 s · factor^n` (the crate's default factor of 100 makes the
            // second wait 100 s), capped at 2 s.
            .set_factor(2)
            .set_max_delay(2_000)
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_with_config(client, config).await?;
        Ok(Self {
            conn,
            script: Script::new(SCRIPT),
            prefix: prefix.to_string(),
        })
    }

    pub(crate) async fn apply(&self, subject: &str, ops: &[(Window, Op)]) -> Result<Applied, LimiterError> {
        let mut call = self.script.prepare_invoke();
        for (window, op) in ops {
            call.key(format!("{}:{{{subject}}}:{}", self.prefix, window.suffix()))
                .arg(op.period_us as u64)
                .arg(op.limit)
                .arg(op.cost as u64)
                .arg(op.mode.code());
        }
        let mut conn = self.conn.clone();
        let out: Vec<i64> = call.invoke_async(&mut conn).await?;
        if out.len() != 2 + 2 * ops.len() {
            return Err(LimiterError::Protocol(format!(
                "{} values for {} windows",
                out.len(),
                ops.len()
            )));
        }
        let windows = out[2..]
            .chunks(2)
            .map(|w| After {
                remaining: w[0].max(0) as u64,
                reset_us: w[1].max(0) as f64,
            })
            .collect();
        Ok(Applied {
            allowed: out[0] == 1,
            retry_us: out[1].max(0) as f64,
            windows,
        })
    }
}
