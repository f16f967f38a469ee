//! The `registry` and `admin` sections: which models stay resident, how
//! loads and unloads behave, and whether the admin API is served.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Models loaded at once; loading another evicts the least recently
    /// used one that is not pinned. 0: no limit.
    pub max_resident_models: usize,
    /// Weight memory of the loaded models, in MiB (estimated from the model
    /// files); 0: no limit.
    pub max_resident_mib: u64,
    /// How long a request waits for its model to load.
    pub load_timeout_secs: u64,
    /// How long an eviction waits for the evicted model's in-flight requests
    /// before loading the next one anyway.
    pub drain_timeout_secs: u64,
    /// Requests for a model that is being unloaded: `wait` (until it has
    /// stopped, then load it again) or `reject` (503 with Retry-After).
    pub while_draining: WhileDraining,
    /// Run one tiny request through each model as it loads, before it is
    /// marked ready (first real requests then meet warm caches and pages).
    pub warmup: bool,
    /// Options for the model store client (`object_store` keys such as
    /// `aws_endpoint`, `aws_region`, `allow_http`), after the `AWS_*`,
    /// `GOOGLE_*` and `AZURE_*` environment variables.
    pub store_options: std::collections::BTreeMap<String, String>,
    /// Where a model with a `source` and no `path` is copied to, as
    /// `cache_dir/NAME/VERSION`.
    pub cache_dir: std::path::PathBuf,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WhileDraining {
    Wait,
    Reject,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            max_resident_models: 0,
            max_resident_mib: 0,
            load_timeout_secs: 120,
            drain_timeout_secs: 60,
            while_draining: WhileDraining::Wait,
            warmup: false,
            store_options: Default::default(),
            cache_dir: "models".into(),
        }
    }
}

impl RegistryConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.load_timeout_secs == 0 {
            return Err(invalid("registry.load_timeout_secs", "must be at least 1"));
        }
        Ok(())
    }
}

/// The admin API (`/admin/...`): on by default, open only to keys with the
/// `admin` scope (to everyone when `tenancy.auth` is disabled).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub enabled: bool,
    /// Where the first admin key comes from when the database has none
    /// (`env:NAME` or `file:PATH`); when that is unset or missing, a key is
    /// made and shown once at start.
    pub bootstrap_key: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bootstrap_key: "env:SWITCHYARD_ADMIN_KEY".into(),
        }
    }
}

impl AdminConfig {
    /// The bootstrap key's value, if its source has one.
    pub fn bootstrap_key(&self) -> anyhow::Result<Option<String>> {
        let source = switchyard_gateway::SecretRef::parse(&self.bootstrap_key)
            .map_err(|e| anyhow::anyhow!("admin.bootstrap_key: {e}"))?;
        Ok(source.resolve().ok().map(|s| s.expose().to_string()))
    }
}
