//! The `models` entries: what each served model is, and the options of its
//! kind. Chat models are GGUF files; embedding models are sentence-transformers
//! folders with a dynamic batcher in front.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchyard_engine::embed::batcher::BatcherConfig;
use switchyard_engine::embed::EmbedOptions;

use super::{invalid, ConfigError};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub id: String,
    #[serde(default = "ModelKind::chat")]
    pub kind: ModelKind,
    /// A GGUF file for `chat`, a model folder for `embedding`.
    pub path: PathBuf,
    /// Replaces the chat template found in the model file (chat only).
    #[serde(default)]
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
    /// files are copied into the folder of `path` before loading; files
    /// already there with the right size (and checksum) are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// SHA-256 (hex) of files, by name in the model's folder: checked after
    /// a download, or at every load of a local model.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub sha256: std::collections::BTreeMap<String, String>,
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
    fn chat() -> Self {
        ModelKind::Chat
    }

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

    /// Checks that the options match the kind; `at` is `models[i]`.
    pub(super) fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if self.id.trim().is_empty() || self.id.len() > 128 {
            return Err(invalid(&format!("{at}.id"), "must be 1 to 128 characters"));
        }
        match self.kind {
            ModelKind::Chat if self.embedding.is_some() => Err(invalid(
                &format!("{at}.embedding"),
                "only embedding models (`kind: embedding`) take embedding options",
            )),
            ModelKind::Chat => Ok(()),
            ModelKind::Embedding if self.chat_template.is_some() => Err(invalid(
                &format!("{at}.chat_template"),
                "embedding models have no chat template",
            )),
            ModelKind::Embedding => self.embedding_config().validate(&format!("{at}.embedding")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(kind: ModelKind) -> ModelConfig {
        ModelConfig {
            id: "m".into(),
            kind,
            path: "x".into(),
            chat_template: None,
            embedding: None,
            pinned: false,
            preload: true,
            source: None,
            sha256: Default::default(),
        }
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
    fn defaults_become_engine_settings() {
        let c = EmbeddingConfig::default();
        assert_eq!(c.batcher().max_wait, Duration::from_millis(c.max_wait_ms));
        assert_eq!(c.batcher().max_batch_tokens, c.max_batch_tokens);
        assert!(!c.embed_options().reject_over_length);
        assert_eq!(c.embed_options().normalize, None);
    }
}
