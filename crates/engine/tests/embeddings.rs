//! The embedding engine on the real all-MiniLM-L6-v2 weights, against
//! sentence-transformers' own output (tests/fixtures/minilm_embeddings.json,
//! made by scripts/make-embedding-fixture.py).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic

#[allow(dead_code)] // each test binary uses part of it
mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use serde::Deserialize;
use switchyard_engine::embed::{EmbedError, EmbedOptions, EmbeddingModel, Pooling};

#[derive(Deserialize)]
struct Fixture {
    normalized: bool,
    max_seq_length: usize,
    dims: usize,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    tokens: usize,
    token_ids: Vec<u32>,
    embedding: Vec<f32>,
}

fn fixture() -> Fixture {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/minilm_embeddings.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Loaded once for the tests that use the folder's defaults.
fn model() -> &'static EmbeddingModel {
    static MODEL: OnceLock<EmbeddingModel> = OnceLock::new();
    MODEL.get_or_init(|| EmbeddingModel::load(&common::minilm_dir(), EmbedOptions::default()).unwrap())
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn matches_sentence_transformers() {
    let fx = fixture();
    let m = model();
    assert!(fx.cases.len() >= 20);
    assert_eq!(m.dims(), fx.dims);
    assert_eq!(m.max_tokens(), fx.max_seq_length);
    assert_eq!(m.normalizes(), fx.normalized);
    assert_eq!(m.pooling(), Pooling::Mean);
    let mut worst = (f64::INFINITY, String::new());
    let mut worst_diff = 0f32;
    for case in &fx.cases {
        let ids = m.tokenize(&case.text).unwrap();
        assert_eq!(ids.len(), case.tokens, "token count of {:?}", case.text);
        assert_eq!(ids, case.token_ids, "token ids of {:?}", case.text);
        let got = m.embed_tokens(std::slice::from_ref(&ids)).unwrap().remove(0);
        assert_eq!(got.len(), fx.dims);
        let norm = got.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm} for {:?}", case.text);
        let cos = cosine(&got, &case.embedding);
        assert!(cos >= 0.9999, "cosine {cos} for {:?}", case.text);
        worst_diff = worst_diff.max(max_abs_diff(&got, &case.embedding));
        if cos < worst.0 {
            worst = (cos, case.text.chars().take(40).collect());
        }
    }
    // Cosine hides small errors (1 - cos grows with their square), so the
    // largest element difference is printed too.
    println!(
        "minimum cosine vs sentence-transformers: {:.12} (1 - cos = {:.2e}, {:?}); largest element difference {:.2e}",
        worst.0,
        1.0 - worst.0,
        worst.1,
        worst_diff
    );
}

#[test]
fn same_vector_alone_or_padded_in_a_batch() {
    let fx = fixture();
    let m = model();
    // Every fixture text in one batch: lengths from 2 to 256 tokens, so most
    // inputs are padded, several by more than 250 positions.
    let tokens: Vec<Vec<u32>> = fx.cases.iter().map(|c| m.tokenize(&c.text).unwrap()).collect();
    let batched = m.embed_tokens(&tokens).unwrap();
    // A mixed batch in another order, with a short text in several places.
    let short = m.tokenize("A man is eating food.").unwrap();
    let long = tokens.iter().find(|t| t.len() == 256).unwrap().clone();
    let medium = tokens.iter().find(|t| (30..100).contains(&t.len())).unwrap().clone();
    let mixed = vec![short.clone(), long, short.clone(), medium, short.clone()];
    let mixed_out = m.embed_tokens(&mixed).unwrap();
    let mut worst = 0f32;
    for (ids, together) in tokens.iter().zip(&batched) {
        let alone = m.embed_tokens(std::slice::from_ref(ids)).unwrap().remove(0);
        worst = worst.max(max_abs_diff(&alone, together));
    }
    for (ids, together) in mixed.iter().zip(&mixed_out) {
        let alone = m.embed_tokens(std::slice::from_ref(ids)).unwrap().remove(0);
        worst = worst.max(max_abs_diff(&alone, together));
    }
    println!("largest alone-vs-batched difference: {worst:e}");
    assert!(worst <= 1e-6, "alone and batched differ by {worst}");
    assert!(m.embed_tokens(&[]).unwrap().is_empty());
    // Alone is deterministic: the same call twice gives the same bits.
    assert_eq!(
        m.embed(&["A man is eating food."]).unwrap(),
        m.embed_tokens(&[short]).unwrap()
    );
}

#[test]
fn over_long_input_truncates_or_is_refused() {
    let long = "word ".repeat(400);
    assert_eq!(model().tokenize(&long).unwrap().len(), 256);

    let opts = EmbedOptions {
        reject_over_length: true,
        ..EmbedOptions::default()
    };
    let strict = EmbeddingModel::load(&common::minilm_dir(), opts).unwrap();
    match strict.tokenize(&long) {
        Err(
            err @ EmbedError::InputTooLong {
                tokens: 402,
                limit: 256,
            },
        ) => {
            assert!(
                err.to_string().contains("402") && err.to_string().contains("256"),
                "{err}"
            );
        }
        other => panic!("expected InputTooLong, got {other:?}"),
    }
    assert!(matches!(
        strict.check_tokens(&[101; 300]),
        Err(EmbedError::InputTooLong {
            tokens: 300,
            limit: 256
        })
    ));
    assert_eq!(strict.tokenize("short enough").unwrap().len(), 4);
}

#[test]
fn token_id_inputs_are_validated() {
    let m = model();
    assert_eq!(m.vocab_size(), 30522);
    match m.check_tokens(&[101, 7592, 30522, 102]) {
        Err(
            err @ EmbedError::TokenOutOfRange {
                position: 2,
                id: 30522,
                vocab_size: 30522,
            },
        ) => {
            assert!(err.to_string().contains("30522"), "{err}");
        }
        other => panic!("expected TokenOutOfRange, got {other:?}"),
    }
    assert!(matches!(m.check_tokens(&[]), Err(EmbedError::EmptyInput)));
    // Over-long id arrays are cut to the limit unless the model refuses them.
    assert_eq!(m.check_tokens(&[1037; 300]).unwrap().len(), 256);
    // embed_tokens re-checks, naming the input in the batch.
    match m.embed_tokens(&[vec![101, 102], vec![101, u32::MAX, 102]]) {
        Err(EmbedError::BatchInput { index: 1, source }) => {
            assert!(matches!(*source, EmbedError::TokenOutOfRange { position: 1, .. }))
        }
        other => panic!("expected BatchInput, got {other:?}"),
    }
    assert!(matches!(
        m.embed_tokens(&[vec![]]),
        Err(EmbedError::BatchInput { index: 0, .. })
    ));
    // Ids are used verbatim: the tokenizer's ids give the text's vector.
    let ids = m.check_tokens(&m.tokenize("Hello, world!").unwrap()).unwrap();
    assert_eq!(m.embed_tokens(&[ids]).unwrap(), m.embed(&["Hello, world!"]).unwrap());
}

#[test]
fn normalisation_can_be_switched_off() {
    let opts = EmbedOptions {
        normalize: Some(false),
        ..EmbedOptions::default()
    };
    let raw = EmbeddingModel::load(&common::minilm_dir(), opts).unwrap();
    assert!(!raw.normalizes());
    let text = "The quick brown fox jumps over the lazy dog.";
    let unnormalised = raw.embed(&[text]).unwrap().remove(0);
    let norm = unnormalised.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!(
        (norm - 1.0).abs() > 0.01,
        "mean-pooled MiniLM vectors are not unit length ({norm})"
    );
    let normalised = model().embed(&[text]).unwrap().remove(0);
    assert!(cosine(&unnormalised, &normalised) > 0.999_999);
}

#[test]
fn model_can_be_shared_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<EmbeddingModel>();
}

#[test]
fn missing_folder_is_a_clear_error() {
    match EmbeddingModel::load(&PathBuf::from("/nonexistent/model"), EmbedOptions::default()) {
        Err(err @ EmbedError::Io { .. }) => assert!(err.to_string().contains("config.json"), "{err}"),
        Err(other) => panic!("expected Io, got {other:?}"),
        Ok(_) => panic!("loaded a model from nowhere"),
    }
}

/// A copy of the MiniLM folder (weights linked, not copied) with another
/// pooling config and without the sentence-transformers module files.
#[cfg(unix)]
fn folder_with_pooling(name: &str, pooling_json: &str) -> PathBuf {
    let src = common::minilm_dir();
    let dir = std::env::temp_dir().join(format!("switchyard-embed-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::os::unix::fs::symlink(src.join(file), dir.join(file)).unwrap();
    }
    std::fs::write(dir.join("1_Pooling/config.json"), pooling_json).unwrap();
    dir
}

#[cfg(unix)]
#[test]
fn pooling_and_limits_follow_the_folder() {
    let texts = ["A man is eating food.", &"The river rose slowly. ".repeat(30), "Hi"];
    for (name, json, mode) in [
        ("cls", r#"{"pooling_mode_cls_token": true}"#, Pooling::Cls),
        ("max", r#"{"pooling_mode_max_tokens": true}"#, Pooling::Max),
    ] {
        let dir = folder_with_pooling(name, json);
        let m = EmbeddingModel::load(&dir, EmbedOptions::default()).unwrap();
        assert_eq!(m.pooling(), mode);
        // No modules.json: no Normalize module. No sentence_bert_config.json:
        // the limit is the position table's.
        assert!(!m.normalizes());
        assert_eq!(m.max_tokens(), 512);
        let batched = m.embed(&texts).unwrap();
        for (text, together) in texts.iter().zip(&batched) {
            let alone = m.embed(&[text]).unwrap().remove(0);
            // Unnormalised vectors are larger, so the bound scales with them.
            let scale = alone.iter().fold(1f32, |m, x| m.max(x.abs()));
            let diff = max_abs_diff(&alone, together) / scale;
            assert!(
                diff <= 1e-6,
                "{name}: alone and batched differ by {diff} relative to {scale}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
