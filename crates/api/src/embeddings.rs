//! `POST /v1/embeddings` request and response bodies.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingRequest {
    pub model: String,
    pub input: EmbeddingInput,
    #[serde(default)]
    pub encoding_format: Option<EncodingFormat>,
    /// Parsed so that validation can refuse it by name for models that
    /// cannot shorten their vectors.
    #[serde(default)]
    pub dimensions: Option<u32>,
    #[serde(default)]
    pub user: Option<String>,
}

/// `input`: a string, a list of strings, a list of token ids, or a list of
/// token-id lists.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum EmbeddingInput {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

/// How vectors are written: JSON numbers, or the little-endian `f32` bytes
/// in base64 (smaller and faster; the official SDKs ask for it by default).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    #[default]
    Float,
    Base64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EmbeddingResponse {
    pub object: String,
    pub data: Vec<Embedding>,
    pub model: String,
    pub usage: EmbeddingUsage,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Embedding {
    pub object: String,
    pub index: u32,
    pub embedding: EmbeddingVector,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum EmbeddingVector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct EmbeddingUsage {
    pub prompt_tokens: u32,
    pub total_tokens: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> Option<EmbeddingRequest> {
        serde_json::from_value(v).ok()
    }

    #[test]
    fn input_takes_all_four_shapes_and_nothing_else() {
        let input = |v| parse(serde_json::json!({"model": "m", "input": v})).map(|r| r.input);
        assert_eq!(input(serde_json::json!("a")), Some(EmbeddingInput::Text("a".into())));
        assert_eq!(
            input(serde_json::json!(["a", "b"])),
            Some(EmbeddingInput::Texts(vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            input(serde_json::json!([1, 2])),
            Some(EmbeddingInput::Tokens(vec![1, 2]))
        );
        assert_eq!(
            input(serde_json::json!([[1], [2, 3]])),
            Some(EmbeddingInput::TokenLists(vec![vec![1], vec![2, 3]]))
        );
        for bad in [
            serde_json::json!(5),
            serde_json::json!(["a", 1]),
            serde_json::json!([-1]),
            serde_json::json!([1.5]),
            serde_json::json!(null),
        ] {
            assert_eq!(input(bad.clone()), None, "{bad}");
        }
        let r = parse(serde_json::json!({"model": "m", "input": "a", "encoding_format": "base64", "user": "u"}));
        assert_eq!(r.and_then(|r| r.encoding_format), Some(EncodingFormat::Base64));
        assert!(parse(serde_json::json!({"model": "m", "input": "a", "encoding_format": "hex"})).is_none());
        assert!(parse(serde_json::json!({"model": "m", "input": "a", "colour": 1})).is_none());
    }

    #[test]
    fn vectors_serialise_as_numbers_or_a_string() {
        let v = serde_json::to_value(EmbeddingVector::Float(vec![0.5, -1.0])).unwrap_or_default();
        assert_eq!(v, serde_json::json!([0.5, -1.0]));
        let v = serde_json::to_value(EmbeddingVector::Base64("AAA=".into())).unwrap_or_default();
        assert_eq!(v, serde_json::json!("AAA="));
    }
}
