//! The `tenancy:` section of the configuration: tiers, the limiter, prices
//! and the usage writer. Every field has a default, unknown keys are
//! rejected, and [`TenancyConfig::validate`] names the field it refuses.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenancyConfig {
    pub auth: AuthMode,
    /// Replaces the whole default table when given.
    pub tiers: BTreeMap<String, TierConfig>,
    /// The tier of tenants created without one (and of a tenant whose tier
    /// has left the table).
    pub default_tier: String,
    pub limiter: LimiterConfig,
    /// Per model name; `*` prices every model not listed.
    pub prices: BTreeMap<String, Price>,
    pub usage: UsageConfig,
    /// How long a verified key is trusted without asking the database; a
    /// revocation on another replica takes effect within this time.
    pub key_cache_secs: u64,
    /// How long a tenant's month-to-date usage is trusted before it is read
    /// again (other replicas' usage shows up within this time).
    pub quota_cache_secs: u64,
}

impl Default for TenancyConfig {
    fn default() -> Self {
        let tier = |rph| TierConfig {
            requests_per_hour: rph,
            ..TierConfig::default()
        };
        Self {
            auth: AuthMode::Enabled,
            tiers: BTreeMap::from([
                ("starter".to_string(), tier(Some(100))),
                ("professional".to_string(), tier(Some(1_000))),
                ("business".to_string(), tier(Some(10_000))),
                ("enterprise".to_string(), tier(None)),
            ]),
            default_tier: "starter".into(),
            limiter: LimiterConfig::Local,
            prices: BTreeMap::new(),
            usage: UsageConfig::default(),
            key_cache_secs: 30,
            quota_cache_secs: 10,
        }
    }
}

/// Authentication is on unless the configuration turns it off explicitly
/// (local use only; the server must say so loudly at start).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    #[default]
    Enabled,
    Disabled,
}

/// Limits of a tier; absent means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TierConfig {
    pub requests_per_minute: Option<u64>,
    pub requests_per_hour: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    /// Models this tier may use; empty: all.
    pub models: Vec<String>,
}

#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum LimiterConfig {
    /// Counters in this process: right for one replica.
    #[default]
    Local,
    /// Counters in Redis, shared by every replica.
    Redis {
        /// `redis://[:password@]host:port[/db]`.
        url: String,
        /// Prefix of every key this limiter writes.
        #[serde(default = "default_redis_prefix")]
        prefix: String,
    },
}

fn default_redis_prefix() -> String {
    "switchyard:rl".into()
}

impl std::fmt::Debug for LimiterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local => f.write_str("Local"),
            Self::Redis { url, prefix } => f
                .debug_struct("Redis")
                .field("url", &switchyard_db::redact(url))
                .field("prefix", prefix)
                .finish(),
        }
    }
}

/// Price per 1 000 tokens in micro-units of the currency (1 000 000 = 1.00).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Price {
    pub prompt_per_1k_micros: u64,
    pub completion_per_1k_micros: u64,
}

impl Price {
    /// The cost of one request, rounded to the nearest micro-unit.
    pub fn cost_micros(&self, prompt_tokens: u64, completion_tokens: u64) -> u64 {
        let total = u128::from(prompt_tokens) * u128::from(self.prompt_per_1k_micros)
            + u128::from(completion_tokens) * u128::from(self.completion_per_1k_micros);
        u64::try_from((total + 500) / 1000).unwrap_or(u64::MAX)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsageConfig {
    /// Records per write; a full batch is written at once.
    pub batch_size: usize,
    /// The longest a record waits before it is written.
    pub flush_ms: u64,
    /// Records queued for the writer before `record` has to wait.
    pub queue: usize,
}

impl Default for UsageConfig {
    fn default() -> Self {
        Self {
            batch_size: 200,
            flush_ms: 500,
            queue: 10_000,
        }
    }
}

impl TenancyConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field: String, reason: &str| {
            Err(ConfigError {
                field,
                reason: reason.into(),
            })
        };
        if self.tiers.is_empty() {
            return err("tenancy.tiers".into(), "at least one tier is needed");
        }
        if !self.tiers.contains_key(&self.default_tier) {
            return err("tenancy.default_tier".into(), "names no tier in tenancy.tiers");
        }
        for (name, tier) in &self.tiers {
            if name.is_empty() || name.contains(',') {
                return err(
                    format!("tenancy.tiers.{name}"),
                    "a tier name is non-empty, without commas",
                );
            }
            for (field, value) in [
                ("requests_per_minute", tier.requests_per_minute),
                ("requests_per_hour", tier.requests_per_hour),
                ("tokens_per_minute", tier.tokens_per_minute),
            ] {
                if value == Some(0) {
                    return err(
                        format!("tenancy.tiers.{name}.{field}"),
                        "must be at least 1 (leave it out for no limit)",
                    );
                }
            }
        }
        if let LimiterConfig::Redis { url, prefix } = &self.limiter {
            if !(url.starts_with("redis://") || url.starts_with("unix://")) {
                return err(
                    "tenancy.limiter.url".into(),
                    "must be redis://host:port (TLS is not built in)",
                );
            }
            if prefix.is_empty() {
                return err("tenancy.limiter.prefix".into(), "must not be empty");
            }
        }
        if self.usage.batch_size == 0 {
            return err("tenancy.usage.batch_size".into(), "must be at least 1");
        }
        if self.usage.flush_ms == 0 {
            return err("tenancy.usage.flush_ms".into(), "must be at least 1");
        }
        if self.usage.queue == 0 {
            return err("tenancy.usage.queue".into(), "must be at least 1");
        }
        Ok(())
    }

    /// The tier of this name, or the default tier when it is not in the
    /// table (so removing a tier from the config never unlocks its tenants).
    pub fn tier(&self, name: &str) -> (&str, Option<&TierConfig>) {
        match self.tiers.get_key_value(name) {
            Some((n, t)) => (n, Some(t)),
            None => (&self.default_tier, self.tiers.get(&self.default_tier)),
        }
    }

    /// The price of a model: its own, else `*`, else free.
    pub fn price(&self, model: &str) -> Price {
        self.prices
            .get(model)
            .or_else(|| self.prices.get("*"))
            .copied()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_validate_and_hold_the_seed_tiers() {
        let c = TenancyConfig::default();
        c.validate().unwrap();
        assert_eq!(c.auth, AuthMode::Enabled);
        let rph: Vec<_> = c.tiers.iter().map(|(n, t)| (n.as_str(), t.requests_per_hour)).collect();
        assert_eq!(
            rph,
            [
                ("business", Some(10_000)),
                ("enterprise", None),
                ("professional", Some(1_000)),
                ("starter", Some(100))
            ]
        );
    }

    #[test]
    fn yaml_with_unknown_or_bad_fields_is_refused_by_name() {
        let c: TenancyConfig = serde_yaml::from_str("limiter: {kind: redis, url: 'redis://127.0.0.1:6379'}\n").unwrap();
        c.validate().unwrap();
        assert!(serde_yaml::from_str::<TenancyConfig>("limitr: {}\n").is_err());
        assert!(serde_yaml::from_str::<TenancyConfig>("tiers: {a: {rpm: 3}}\n").is_err());
        let c: TenancyConfig =
            serde_yaml::from_str("tiers: {free: {requests_per_minute: 0}}\ndefault_tier: free\n").unwrap();
        assert_eq!(
            c.validate().unwrap_err().field,
            "tenancy.tiers.free.requests_per_minute"
        );
        let c: TenancyConfig = serde_yaml::from_str("default_tier: gold\n").unwrap();
        assert_eq!(c.validate().unwrap_err().field, "tenancy.default_tier");
        let c: TenancyConfig = serde_yaml::from_str("limiter: {kind: redis, url: 'rediss://x'}\n").unwrap();
        assert_eq!(c.validate().unwrap_err().field, "tenancy.limiter.url");
    }

    #[test]
    fn redis_passwords_stay_out_of_debug() {
        let c = LimiterConfig::Redis {
            url: "redis://u:hunter2@h:6379".into(),
            prefix: "p".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn cost_is_integer_micros_rounded() {
        let p = Price {
            prompt_per_1k_micros: 1_500,
            completion_per_1k_micros: 2_000,
        };
        assert_eq!(p.cost_micros(1000, 1000), 3_500);
        assert_eq!(p.cost_micros(1, 0), 2); // 1.5 rounds up
        assert_eq!(p.cost_micros(0, 0), 0);
    }
}
