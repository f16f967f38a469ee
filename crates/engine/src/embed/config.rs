//! What a sentence-transformers model folder says about itself.
//!
//! The folder is the source of truth: `config.json` gives the encoder's shape,
//! `modules.json` says which stages follow it (pooling, normalisation) and
//! `sentence_bert_config.json` the length the model was trained to see. We read
//! them the way sentence-transformers does, so a folder that works there works
//! here, and refuse what we cannot reproduce instead of guessing.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::EmbedError;

/// How the token vectors of one input become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Average of the real (unpadded) tokens: sentence-transformers' default.
    Mean,
    /// The first token's vector (`[CLS]`).
    Cls,
    /// Element-wise maximum over the real tokens.
    Max,
}

/// The encoder's non-linearity, named as in Hugging Face's `hidden_act`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    /// `gelu`: the exact form with erf, which BERT checkpoints were trained with.
    Gelu,
    /// `gelu_new` / `gelu_pytorch_tanh`: the tanh approximation.
    GeluTanh,
    Relu,
}

/// The subset of a BERT `config.json` the forward pass needs.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
    #[serde(default)]
    pub model_type: Option<String>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}

impl BertConfig {
    /// The activation, or an error for one we would silently get wrong.
    pub fn activation(&self) -> Result<Activation, EmbedError> {
        match self.hidden_act.as_str() {
            "gelu" => Ok(Activation::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" => Ok(Activation::GeluTanh),
            "relu" => Ok(Activation::Relu),
            other => Err(EmbedError::Unsupported(format!("hidden_act {other:?}"))),
        }
    }

    /// Refuse architectures whose weights would load but compute something
    /// else (`RoBERTa` offsets positions, relative position embeddings differ).
    fn check(&self) -> Result<(), EmbedError> {
        if let Some(kind) = self.model_type.as_deref() {
            if kind != "bert" {
                return Err(EmbedError::Unsupported(format!("model_type {kind:?} (only \"bert\")")));
            }
        }
        if let Some(kind) = self.position_embedding_type.as_deref() {
            if kind != "absolute" {
                return Err(EmbedError::Unsupported(format!("position_embedding_type {kind:?}")));
            }
        }
        if self.num_attention_heads == 0 || !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(EmbedError::Unsupported(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        if self.type_vocab_size == 0 || self.vocab_size == 0 || self.max_position_embeddings < 2 {
            return Err(EmbedError::Unsupported("empty vocabulary or position table".into()));
        }
        self.activation().map(|_| ())
    }
}

/// `1_Pooling/config.json`: one boolean per mode, as sentence-transformers
/// writes it. Several modes at once (concatenated there) are refused.
#[derive(Debug, Default, Deserialize)]
struct PoolingFile {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

impl PoolingFile {
    fn mode(&self) -> Result<Pooling, EmbedError> {
        if self.pooling_mode_mean_sqrt_len_tokens
            || self.pooling_mode_weightedmean_tokens
            || self.pooling_mode_lasttoken
        {
            return Err(EmbedError::Unsupported(
                "pooling modes other than mean, cls and max".into(),
            ));
        }
        match (
            self.pooling_mode_mean_tokens,
            self.pooling_mode_cls_token,
            self.pooling_mode_max_tokens,
        ) {
            (_, false, false) => Ok(Pooling::Mean), // none set: sentence-transformers' default
            (false, true, false) => Ok(Pooling::Cls),
            (false, false, true) => Ok(Pooling::Max),
            _ => Err(EmbedError::Unsupported("several pooling modes at once".into())),
        }
    }
}

/// One entry of `modules.json`.
#[derive(Debug, Deserialize)]
struct Module {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: String,
}

#[derive(Debug, Deserialize)]
struct SentenceBertFile {
    max_seq_length: Option<usize>,
}

/// Everything read from a model folder, validated.
#[derive(Debug, Clone)]
pub(crate) struct FolderConfig {
    pub bert: BertConfig,
    pub pooling: Pooling,
    /// Whether `modules.json` ends in a Normalize module.
    pub normalize: bool,
    /// Longest input in tokens, special tokens included.
    pub max_tokens: usize,
}

impl FolderConfig {
    pub fn read(dir: &Path) -> Result<Self, EmbedError> {
        let bert: BertConfig = read_json(&dir.join("config.json"))?;
        bert.check()?;

        let modules: Vec<Module> = read_optional_json(&dir.join("modules.json"))?.unwrap_or_default();
        let normalize = modules.iter().any(|m| m.kind.ends_with(".Normalize"));
        // The pooling folder is wherever modules.json puts it; folders without
        // modules.json conventionally use 1_Pooling.
        let pooling_dir = modules
            .iter()
            .find(|m| m.kind.ends_with(".Pooling"))
            .map_or_else(|| PathBuf::from("1_Pooling"), |m| PathBuf::from(&m.path));
        let pooling = read_optional_json::<PoolingFile>(&dir.join(pooling_dir).join("config.json"))?
            .unwrap_or_default()
            .mode()?;

        let sbert: Option<SentenceBertFile> = read_optional_json(&dir.join("sentence_bert_config.json"))?;
        // Positions beyond the table do not exist, whatever the file says.
        let max_tokens = sbert
            .and_then(|s| s.max_seq_length)
            .unwrap_or(bert.max_position_embeddings)
            .min(bert.max_position_embeddings);
        if max_tokens < 2 {
            return Err(EmbedError::Unsupported(format!("max_seq_length {max_tokens}")));
        }
        Ok(Self {
            bert,
            pooling,
            normalize,
            max_tokens,
        })
    }
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, EmbedError> {
    let text = std::fs::read_to_string(path).map_err(|source| EmbedError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| EmbedError::Config {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn read_optional_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, EmbedError> {
    if path.exists() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pooling(json: &str) -> Result<Pooling, EmbedError> {
        serde_json::from_str::<PoolingFile>(json)
            .map_err(|e| EmbedError::Unsupported(e.to_string()))?
            .mode()
    }

    #[test]
    fn pooling_modes_from_sentence_transformers_files() {
        assert_eq!(pooling("{}").ok(), Some(Pooling::Mean));
        assert_eq!(
            pooling(r#"{"pooling_mode_mean_tokens": true}"#).ok(),
            Some(Pooling::Mean)
        );
        assert_eq!(pooling(r#"{"pooling_mode_cls_token": true}"#).ok(), Some(Pooling::Cls));
        assert_eq!(pooling(r#"{"pooling_mode_max_tokens": true}"#).ok(), Some(Pooling::Max));
        assert!(pooling(r#"{"pooling_mode_cls_token": true, "pooling_mode_max_tokens": true}"#).is_err());
        assert!(pooling(r#"{"pooling_mode_lasttoken": true}"#).is_err());
    }

    #[test]
    fn refuses_architectures_it_would_get_wrong() {
        let parse = |key: &str, value: serde_json::Value| {
            let mut json = serde_json::json!({"vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
                "num_attention_heads": 2, "intermediate_size": 16, "max_position_embeddings": 16});
            json[key] = value;
            serde_json::from_value::<BertConfig>(json).unwrap()
        };
        assert!(parse("model_type", "bert".into()).check().is_ok());
        assert!(parse("model_type", "roberta".into()).check().is_err());
        assert!(parse("position_embedding_type", "relative_key".into()).check().is_err());
        assert!(parse("hidden_act", "swish".into()).check().is_err());
        assert!(parse("num_attention_heads", 3.into()).check().is_err());
    }
}
