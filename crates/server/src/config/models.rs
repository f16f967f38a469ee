//! The `models` entries: what each served model is, and the options of its
//! kind. Chat models are GGUF files; embedding models are sentence-transformers
//! folders with a dynamic batcher in front.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchyard_engine::embed::batcher::BatcherConfig;
use switchyard_engine::embed::EmbedOptions;

use super::{invalid, ConfigError};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The model's name, as clients call it (`name` or `name:version`).
    pub id: String,
    /// Unset: the one unversioned entry of this name (or the manifest's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Unset: from the folder's `model.yaml`, else told by its files (a
    /// `.gguf` is chat, a sentence-transformers folder is embedding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ModelKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<ModelFormat>,
    /// A GGUF file, or a model folder (with a `model.yaml`, one `.gguf`, or
    /// a sentence-transformers layout). Empty: `registry.cache_dir/NAME/VERSION`.
    #[serde(default)]
    pub path: PathBuf,
    /// Replaces the chat template found in the model file (chat only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<String>,
    /// Options of an embedding model; the defaults when left out (embedding only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<EmbeddingConfig>,
    /// Never evicted to make room for another model.
    #[serde(default)]
    pub pinned: bool,
    /// Loaded at start-up (as room allows); otherwise on its first request.
    #[serde(default = "yes")]
    pub preload: bool,
    /// A folder URL (`file://`, `s3://`, `gs://`, `az://`, `https://`) whose
    /// files are copied into the model's folder before loading; files
    /// already there with the right size (and checksum) are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// SHA-256 (hex) of files, by name in the model's folder: checked after
    /// a download, or at every load of a local model.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sha256: BTreeMap<String, String>,
    /// Caps the context window below the model file's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_length: Option<usize>,
    /// Sampling defaults for requests that set none (chat only).
    #[serde(default, skip_serializing_if = "SamplingDefaults::is_empty")]
    pub defaults: SamplingDefaults,
    /// Free-form labels, shown in the admin API.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Per-model sampling defaults; each unset one falls back to `generation`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SamplingDefaults {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
}

impl SamplingDefaults {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// `self` where set, else `other`.
    pub fn or(&self, other: &Self) -> Self {
        Self {
            temperature: self.temperature.or(other.temperature),
            top_p: self.top_p.or(other.top_p),
            max_tokens: self.max_tokens.or(other.max_tokens),
        }
    }

    pub(crate) fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if self.temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
            return Err(invalid(&format!("{at}.temperature"), "must be between 0 and 2"));
        }
        if self.top_p.is_some_and(|p| !(p > 0.0 && p <= 1.0)) {
            return Err(invalid(&format!("{at}.top_p"), "must be in (0, 1]"));
        }
        if self.max_tokens == Some(0) {
            return Err(invalid(&format!("{at}.max_tokens"), "must be at least 1"));
        }
        Ok(())
    }
}

/// How a model's weights are stored.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ModelFormat {
    Gguf,
    /// A sentence-transformers / Hugging Face folder of `.safetensors`.
    Safetensors,
    Onnx,
}

impl ModelFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelFormat::Gguf => "gguf",
            ModelFormat::Safetensors => "safetensors",
            ModelFormat::Onnx => "onnx",
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Chat,
    Embedding,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Chat => "chat",
            ModelKind::Embedding => "embedding",
        }
    }
}

/// Per embedding model: how inputs are treated and how requests are batched.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddingConfig {
    /// Refuse inputs longer than the model's limit (a 400) instead of
    /// truncating them as sentence-transformers does.
    pub reject_over_length: bool,
    /// L2-normalise vectors or not; unset follows the model folder.
    pub normalize: Option<bool>,
    /// Tokens one batch takes from the queue, and the most one forward
    /// pass packs together.
    pub max_batch_tokens: usize,
    /// Requests merged into one batch at most.
    pub max_batch_requests: usize,
    /// How long a request may wait for others to join its batch.
    pub max_wait_ms: u64,
    /// Requests waiting for the batcher; beyond: 503 with Retry-After.
    pub queue_capacity: usize,
    /// Tokens (after truncation) one request may hold across its inputs.
    pub max_request_tokens: usize,
}

impl Default for EmbeddingConfig {
    fn default() -> Self {
        let batcher = BatcherConfig::default();
        Self {
            reject_over_length: false,
            normalize: None,
            max_batch_tokens: batcher.max_batch_tokens,
            max_batch_requests: batcher.max_batch_requests,
            max_wait_ms: batcher.max_wait.as_millis() as u64,
            queue_capacity: batcher.queue_capacity,
            // OpenAI's own per-request limit, so clients that split their
            // work for OpenAI need no change here.
            max_request_tokens: 300_000,
        }
    }
}

impl EmbeddingConfig {
    pub fn embed_options(&self) -> EmbedOptions {
        EmbedOptions {
            normalize: self.normalize,
            reject_over_length: self.reject_over_length,
        }
    }

    pub fn batcher(&self) -> BatcherConfig {
        BatcherConfig {
            max_batch_tokens: self.max_batch_tokens,
            max_batch_requests: self.max_batch_requests,
            max_wait: Duration::from_millis(self.max_wait_ms),
            queue_capacity: self.queue_capacity,
        }
    }

    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        let field = |name: &str| format!("{at}.{name}");
        for (name, value) in [
            ("max_batch_tokens", self.max_batch_tokens),
            ("max_batch_requests", self.max_batch_requests),
            ("queue_capacity", self.queue_capacity),
            ("max_request_tokens", self.max_request_tokens),
        ] {
            if value == 0 {
                return Err(invalid(&field(name), "must be at least 1"));
            }
        }
        if self.max_wait_ms > 10_000 {
            return Err(invalid(&field("max_wait_ms"), "must be at most 10000"));
        }
        Ok(())
    }
}

impl ModelConfig {
    /// The embedding options in force: the configured ones or the defaults.
    pub fn embedding_config(&self) -> EmbeddingConfig {
        self.embedding.clone().unwrap_or_default()
    }

    /// A model of `kind` at `path`, every other field at its default.
    pub fn new(id: &str, kind: ModelKind, path: impl Into<PathBuf>) -> Self {
        Self {
            id: id.into(),
            version: None,
            kind: Some(kind),
            format: None,
            path: path.into(),
            chat_template: None,
            embedding: None,
            pinned: false,
            preload: true,
            source: None,
            sha256: BTreeMap::new(),
            context_length: None,
            defaults: SamplingDefaults::default(),
            labels: BTreeMap::new(),
        }
    }

    /// How clients address this entry: `name`, or `name:version`.
    pub fn key(&self) -> String {
        match &self.version {
            Some(v) => format!("{}:{v}", self.id),
            None => self.id.clone(),
        }
    }

    /// Checks names and that the options match the kind; `at` is `models[i]`.
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if !valid_name(&self.id, 128) {
            return Err(invalid(
                &format!("{at}.id"),
                "must be 1 to 128 characters of letters, digits, `.`, `_`, `-` or `/`",
            ));
        }
        if self
            .version
            .as_deref()
            .is_some_and(|v| !valid_name(v, 64) || v.contains('/'))
        {
            return Err(invalid(
                &format!("{at}.version"),
                "must be 1 to 64 characters of letters, digits, `.`, `_` or `-`",
            ));
        }
        if self.context_length == Some(0) {
            return Err(invalid(&format!("{at}.context_length"), "must be at least 1"));
        }
        self.defaults.validate(&format!("{at}.defaults"))?;
        self.check_kind_options(at)?;
        self.embedding_config().validate(&format!("{at}.embedding"))
    }

    /// Options of one kind on a model of the other are errors; a model whose
    /// kind is not known yet is checked again once it is.
    pub fn check_kind_options(&self, at: &str) -> Result<(), ConfigError> {
        match self.kind {
            Some(ModelKind::Chat) if self.embedding.is_some() => Err(invalid(
                &format!("{at}.embedding"),
                "only embedding models (`kind: embedding`) take embedding options",
            )),
            Some(ModelKind::Embedding) if self.chat_template.is_some() || !self.defaults.is_empty() => Err(invalid(
                &format!(
                    "{at}.{}",
                    if self.chat_template.is_some() {
                        "chat_template"
                    } else {
                        "defaults"
                    }
                ),
                "embedding models have no chat template or sampling defaults",
            )),
            _ => Ok(()),
        }
    }
}

/// Names and versions go into URLs and `name:version` ids: no `:` or spaces.
fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
        && !s.starts_with(['.', '/'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(kind: ModelKind) -> ModelConfig {
        ModelConfig::new("m", kind, "x")
    }

    fn error(m: &ModelConfig) -> String {
        m.validate("models[3]").err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn options_must_match_the_kind() {
        assert!(model(ModelKind::Chat).validate("models[0]").is_ok());
        assert!(model(ModelKind::Embedding).validate("models[0]").is_ok());
        let mut chat = model(ModelKind::Chat);
        chat.embedding = Some(EmbeddingConfig::default());
        assert!(error(&chat).contains("models[3].embedding"));
        let mut embed = model(ModelKind::Embedding);
        embed.chat_template = Some("{{ x }}".into());
        assert!(error(&embed).contains("models[3].chat_template"));
    }

    #[test]
    fn embedding_limits_are_checked_by_name() {
        let mut m = model(ModelKind::Embedding);
        m.embedding = Some(EmbeddingConfig {
            queue_capacity: 0,
            ..EmbeddingConfig::default()
        });
        assert!(error(&m).contains("models[3].embedding.queue_capacity"));
        m.embedding = Some(EmbeddingConfig {
            max_wait_ms: 60_000,
            ..EmbeddingConfig::default()
        });
        assert!(error(&m).contains("models[3].embedding.max_wait_ms"));
    }

    #[test]
    fn names_versions_and_defaults_are_checked() {
        let mut m = model(ModelKind::Chat);
        m.id = "a:b".into();
        assert!(error(&m).contains("models[3].id"));
        m.id = "org/llama-3.1".into();
        m.version = Some("2 b".into());
        assert!(error(&m).contains("models[3].version"));
        m.version = Some("2026-01".into());
        assert_eq!(m.key(), "org/llama-3.1:2026-01");
        m.defaults.top_p = Some(0.0);
        assert!(error(&m).contains("models[3].defaults.top_p"));
    }

    #[test]
    fn defaults_become_engine_settings() {
        let c = EmbeddingConfig::default();
        assert_eq!(c.batcher().max_wait, Duration::from_millis(c.max_wait_ms));
        assert_eq!(c.batcher().max_batch_tokens, c.max_batch_tokens);
        assert!(!c.embed_options().reject_over_length);
        assert_eq!(c.embed_options().normalize, None);
    }
}
