//! Configuration: compiled defaults, then the YAML file, then environment
//! variables (`SWITCHYARD_SERVER__PORT=9000`), then typed validation. Unknown
//! keys are errors, and every error names the field.

mod models;
mod registry;
mod storage;
mod upstreams;

use std::path::Path;

use figment::providers::{Env, Format, Serialized, Yaml};
use figment::Figment;
use serde::{Deserialize, Serialize};

pub use models::{EmbeddingConfig, ModelConfig, ModelFormat, ModelKind, SamplingDefaults};
pub use registry::{AdminConfig, RegistryConfig, WhileDraining};
pub use storage::StorageConfig;
pub use upstreams::{upstream_ids, DeploymentConfig, RouteConfig};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub generation: GenerationDefaults,
    pub engine: EngineDefaults,
    pub registry: RegistryConfig,
    pub admin: AdminConfig,
    pub storage: StorageConfig,
    /// API keys, tenants, tiers, rate limits, quotas, usage metering.
    pub tenancy: switchyard_tenancy::TenancyConfig,
    /// The model answering requests that name no known model is never
    /// guessed: this is only what `--model` and `/ready` refer to.
    pub default_model: String,
    pub models: Vec<ModelConfig>,
    /// Upstream OpenAI-compatible providers (the gateway).
    pub upstreams: Vec<DeploymentConfig>,
    /// Model ids that name fallback chains of upstreams and native models.
    pub routes: Vec<RouteConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    /// Requests served at once (all routes); past it, 503 with Retry-After.
    pub max_concurrent_requests: usize,
    pub request_timeout_secs: u64,
    pub max_body_bytes: usize,
    /// Seconds to let in-flight requests finish after a shutdown signal.
    pub shutdown_grace_secs: u64,
    pub log_format: LogFormat,
    /// Threads serving HTTP (and upstream calls), each with the connections
    /// it was handed and its own upstream pools; 0: one per CPU core.
    /// Engines compute on threads of their own.
    pub io_threads: usize,
    /// Microseconds an I/O thread out of work keeps polling before it
    /// sleeps, while its connections' reads and writes come closer together
    /// than that (a wake-up from sleep costs more than the wait); 0 never.
    pub io_spin_us: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Plain,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GenerationDefaults {
    pub max_tokens: u32,
    pub temperature: f32,
    pub top_p: f32,
    pub max_stop_sequences: usize,
    /// Longest accepted stop string, in bytes.
    pub max_stop_bytes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EngineDefaults {
    /// Compute threads per engine. One is the safe default on a busy machine:
    /// spinning thread pools collapse when cores are shared.
    pub threads: usize,
    /// Requests waiting per model before new ones are refused.
    pub queue_capacity: usize,
    /// Sequences one chat model generates at once (continuous batching);
    /// more wait in its queue.
    pub max_num_seqs: usize,
    /// Tokens one forward step feeds: a decode token per running sequence,
    /// and prompt chunks out of the rest (chunked prefill). Smaller keeps
    /// decodes flowing while long prompts arrive; larger prefills faster.
    pub max_batch_tokens: usize,
    /// KV cache memory per chat model, in MiB, shared by running sequences
    /// and the prefix cache. When it runs short the newest sequence is
    /// preempted and recomputed later.
    pub kv_cache_mib: u64,
    /// Reuse the KV of prompt prefixes seen before (a shared system prompt).
    pub prefix_cache: bool,
}

pub const DEFAULT_MODEL_ID: &str = "smollm2-135m-instruct";
pub const DEFAULT_MODEL_PATH: &str = "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
pub const DEFAULT_EMBEDDING_MODEL_ID: &str = "all-minilm-l6-v2";
pub const DEFAULT_EMBEDDING_MODEL_PATH: &str = "models/all-minilm-l6-v2";

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            generation: GenerationDefaults::default(),
            engine: EngineDefaults::default(),
            registry: RegistryConfig::default(),
            admin: AdminConfig::default(),
            default_model: DEFAULT_MODEL_ID.into(),
            storage: StorageConfig::default(),
            tenancy: switchyard_tenancy::TenancyConfig::default(),
            upstreams: Vec::new(),
            routes: Vec::new(),
            models: vec![
                ModelConfig::new(DEFAULT_MODEL_ID, ModelKind::Chat, DEFAULT_MODEL_PATH),
                ModelConfig {
                    embedding: Some(EmbeddingConfig::default()),
                    ..ModelConfig::new(
                        DEFAULT_EMBEDDING_MODEL_ID,
                        ModelKind::Embedding,
                        DEFAULT_EMBEDDING_MODEL_PATH,
                    )
                },
            ],
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 8080,
            max_concurrent_requests: 50,
            request_timeout_secs: 300,
            max_body_bytes: 4 * 1024 * 1024,
            shutdown_grace_secs: 30,
            log_format: LogFormat::Json,
            io_threads: 0,
            io_spin_us: 200,
        }
    }
}

impl Default for GenerationDefaults {
    fn default() -> Self {
        Self {
            max_tokens: 512,
            temperature: 0.7,
            top_p: 1.0,
            max_stop_sequences: 4,
            max_stop_bytes: 256,
        }
    }
}

impl EngineDefaults {
    /// The settings every chat engine starts with (its chat template comes
    /// from the model's own config).
    pub fn chat_engine(&self) -> switchyard_engine::llm::EngineConfig {
        switchyard_engine::llm::EngineConfig {
            queue_capacity: self.queue_capacity,
            chat_template: None,
            max_num_seqs: self.max_num_seqs,
            max_batch_tokens: self.max_batch_tokens,
            kv_cache_bytes: self.kv_cache_mib << 20,
            prefix_cache: self.prefix_cache,
            threads: self.threads,
        }
    }
}

impl Default for EngineDefaults {
    fn default() -> Self {
        Self {
            threads: 1,
            queue_capacity: 64,
            max_num_seqs: 8,
            max_batch_tokens: 256,
            kv_cache_mib: 1024,
            prefix_cache: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Parse(String),
    #[error("invalid value for `{field}`: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

impl Config {
    /// Defaults, then `file` (if given), then `SWITCHYARD_*` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Parse(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            fig = fig.merge(Yaml::file_exact(path));
        }
        // Only nested keys (`SWITCHYARD_SERVER__PORT`) and the top-level
        // `SWITCHYARD_DEFAULT_MODEL` are config; other SWITCHYARD_* variables
        // (`SWITCHYARD_CONFIG`, a script's own) are not ours to reject.
        let env = Env::prefixed("SWITCHYARD_").filter(|k| k.as_str().contains("__") || k.as_str() == "default_model");
        fig = fig.merge(env.split("__"));
        let cfg: Config = fig.extract().map_err(|e| ConfigError::Parse(figment_message(e)))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.registry.validate()?;
        self.storage.validate()?;
        self.tenancy
            .validate()
            .map_err(|e| invalid(&e.field, e.reason.clone()))?;
        let s = &self.server;
        if s.max_concurrent_requests == 0 {
            return Err(invalid("server.max_concurrent_requests", "must be at least 1"));
        }
        if s.request_timeout_secs == 0 {
            return Err(invalid("server.request_timeout_secs", "must be at least 1"));
        }
        if s.max_body_bytes < 1024 {
            return Err(invalid("server.max_body_bytes", "must be at least 1024"));
        }
        if s.io_spin_us > 10_000 {
            return Err(invalid("server.io_spin_us", "must be at most 10000 (10 ms)"));
        }
        let g = &self.generation;
        if g.max_tokens == 0 {
            return Err(invalid("generation.max_tokens", "must be at least 1"));
        }
        if !(0.0..=2.0).contains(&g.temperature) {
            return Err(invalid("generation.temperature", "must be between 0 and 2"));
        }
        if !(g.top_p > 0.0 && g.top_p <= 1.0) {
            return Err(invalid("generation.top_p", "must be in (0, 1]"));
        }
        if self.engine.max_num_seqs == 0 {
            return Err(invalid("engine.max_num_seqs", "must be at least 1"));
        }
        if self.engine.max_batch_tokens < 2 {
            return Err(invalid("engine.max_batch_tokens", "must be at least 2"));
        }
        if self.engine.kv_cache_mib == 0 {
            return Err(invalid("engine.kv_cache_mib", "must be at least 1"));
        }
        if self.engine.threads == 0 {
            return Err(invalid("engine.threads", "must be at least 1"));
        }
        if self.engine.queue_capacity == 0 {
            return Err(invalid("engine.queue_capacity", "must be at least 1"));
        }
        if self.models.is_empty() && self.upstreams.is_empty() {
            return Err(invalid("models", "at least one model (or upstream) is needed"));
        }
        upstreams::validate(self)?;
        for (i, m) in self.models.iter().enumerate() {
            m.validate(&format!("models[{i}]"))?;
            if self.models[..i].iter().any(|o| o.key() == m.key()) {
                return Err(invalid(
                    &format!("models[{i}].id"),
                    format!("{:?} is listed twice", m.key()),
                ));
            }
        }
        let known = self
            .models
            .iter()
            .any(|m| m.id == self.default_model || m.key() == self.default_model);
        // A gateway alone has no native models, and no default among them.
        if !self.models.is_empty() && !known {
            return Err(invalid(
                "default_model",
                format!("{:?} is not among `models`", self.default_model),
            ));
        }
        Ok(())
    }
}

/// figment's error already says which key and which source; keep all of it.
fn figment_message(e: figment::Error) -> String {
    e.into_iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let mut f = tempfile::NamedTempFile::new().map_err(|e| ConfigError::Parse(e.to_string()))?;
        f.write_all(text.as_bytes())
            .map_err(|e| ConfigError::Parse(e.to_string()))?;
        Config::load(Some(f.path()))
    }

    #[test]
    fn defaults_validate_and_match_the_documented_values() {
        let c = Config::default();
        assert!(c.validate().is_ok());
        assert_eq!(c.server.port, 8080);
        assert_eq!(c.generation.max_tokens, 512);
        assert_eq!(c.generation.temperature, 0.7);
        assert_eq!(c.server.request_timeout_secs, 300);
        assert_eq!(c.server.max_concurrent_requests, 50);
        let kinds: Vec<_> = c
            .models
            .iter()
            .map(|m| (m.id.as_str(), m.kind.unwrap_or(ModelKind::Chat)))
            .collect();
        assert_eq!(
            kinds,
            [
                (DEFAULT_MODEL_ID, ModelKind::Chat),
                (DEFAULT_EMBEDDING_MODEL_ID, ModelKind::Embedding)
            ]
        );
        assert_eq!(c.models[1].embedding_config().max_request_tokens, 300_000);
    }

    #[test]
    fn chat_only_and_embedding_files_load() {
        let chat_only = "models:\n  - id: smollm2-135m-instruct\n    path: a.gguf\n";
        let c = from_yaml(chat_only).map_err(|e| e.to_string());
        let models = c.map(|c| c.models).unwrap_or_default();
        assert_eq!(models.len(), 1);
        assert_eq!(models[0].kind, None, "told by the file once registered");
        let with_embedding = "models:\n  - id: smollm2-135m-instruct\n    path: a.gguf\n  - id: e\n    kind: embedding\n    path: dir\n    embedding:\n      max_wait_ms: 0\n      reject_over_length: true\n";
        let c = from_yaml(with_embedding).map_err(|e| e.to_string());
        let e = c.map(|c| c.models[1].embedding_config()).unwrap_or_default();
        assert_eq!(e.max_wait_ms, 0);
        assert!(e.reject_over_length);
        assert_eq!(e.max_batch_tokens, EmbeddingConfig::default().max_batch_tokens);
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = from_yaml("").map_err(|e| e.to_string());
        assert_eq!(c.ok(), Some(Config::default()));
    }

    #[test]
    fn errors_name_the_field() {
        let e = from_yaml("server:\n  port: lots\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("server.port") || e.contains("port"), "{e}");
        let e = from_yaml("server:\n  prot: 1\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("prot"), "{e}");
        let e = from_yaml("generation:\n  temperature: 9\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("generation.temperature"), "{e}");
        let e = from_yaml("default_model: nope\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("default_model"), "{e}");
        let e = from_yaml("models:\n  - id: e\n    kind: embedding\n    path: d\n    embedding:\n      max_batch_tokens: 0\ndefault_model: e\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("models[0].embedding.max_batch_tokens"), "{e}");
        let e = from_yaml(
            "models:\n  - id: e\n    kind: embedding\n    path: d\n    embedding:\n      batch: 3\ndefault_model: e\n",
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(e.contains("batch"), "{e}");
    }
}
