//! Helpers of the embeddings tests: the sentence-transformers fixture,
//! decoding responses, and extra embedding models in a test's config.

use std::path::PathBuf;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;
use switchyard_server::config::{Config, EmbeddingConfig, ModelConfig, ModelKind};

pub const PATH: &str = "/v1/embeddings";

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
pub struct Case {
    pub text: String,
    pub tokens: usize,
    pub token_ids: Vec<u32>,
    pub embedding: Vec<f32>,
}

/// sentence-transformers' vectors (tests/fixtures/minilm_embeddings.json),
/// without the empty text, which the API refuses as OpenAI's does.
pub fn fixture() -> Vec<Case> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/minilm_embeddings.json");
    let fx: Fixture = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    fx.cases.into_iter().filter(|c| !c.text.is_empty()).collect()
}

pub fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("a float array")
        .iter()
        .map(|x| x.as_f64().expect("a number") as f32)
        .collect()
}

/// The vectors of a 200 response, in `index` order, decoding base64.
pub fn vectors(body: &Value) -> Vec<Vec<f32>> {
    assert_eq!(body["object"], "list", "{body}");
    let data = body["data"].as_array().expect("data");
    data.iter()
        .enumerate()
        .map(|(i, d)| {
            assert_eq!(d["object"], "embedding");
            assert_eq!(d["index"], i);
            match &d["embedding"] {
                Value::String(b64) => base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                other => floats(other),
            }
        })
        .collect()
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Another embedding model on the default folder, under its own id so its
/// metrics are one test's alone.
pub fn extra_model(cfg: &mut Config, id: &str, embedding: EmbeddingConfig) {
    cfg.models.push(ModelConfig {
        embedding: Some(embedding),
        ..ModelConfig::new(id, ModelKind::Embedding, super::minilm_dir())
    });
}
