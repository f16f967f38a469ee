//! Bad input on `/v1/embeddings` (and embedding models on the chat routes):
//! each gets a 4xx in OpenAI's error shape naming the parameter, and the
//! server stays healthy.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic

mod common;

use common::embed::{extra_model, vectors, PATH};
use common::{assert_error_shape, EMBED_MODEL, MODEL};
use serde_json::{json, Value};
use switchyard_server::config::EmbeddingConfig;

#[tokio::test]
async fn bad_input_gets_openai_shaped_4xx_and_the_server_stays_healthy() {
    let srv = common::start(|c| {
        let strict = EmbeddingConfig {
            reject_over_length: true,
            ..EmbeddingConfig::default()
        };
        extra_model(c, "minilm-strict", strict);
    })
    .await;
    let m = EMBED_MODEL;
    let too_many: Vec<String> = (0..2049).map(|i| format!("text {i}")).collect();
    // 2048 inputs of 256 ids: within the input count, over the token total.
    let huge: Vec<Vec<u32>> = vec![vec![1037; 256]; 2048];
    let cases: Vec<(&str, &str, Value, u16, Option<&str>)> = vec![
        (
            "empty string",
            PATH,
            json!({"model": m, "input": ""}),
            400,
            Some("input"),
        ),
        (
            "empty string in a list",
            PATH,
            json!({"model": m, "input": ["a", ""]}),
            400,
            Some("input"),
        ),
        ("empty list", PATH, json!({"model": m, "input": []}), 400, Some("input")),
        (
            "empty token list",
            PATH,
            json!({"model": m, "input": [[1037], []]}),
            400,
            Some("input"),
        ),
        (
            "2049 inputs",
            PATH,
            json!({"model": m, "input": too_many}),
            400,
            Some("input"),
        ),
        (
            "huge token arrays",
            PATH,
            json!({"model": m, "input": huge}),
            400,
            Some("input"),
        ),
        (
            "input a number",
            PATH,
            json!({"model": m, "input": 5}),
            400,
            Some("input"),
        ),
        (
            "input null",
            PATH,
            json!({"model": m, "input": null}),
            400,
            Some("input"),
        ),
        (
            "input an object",
            PATH,
            json!({"model": m, "input": {"text": "a"}}),
            400,
            Some("input"),
        ),
        (
            "mixed list",
            PATH,
            json!({"model": m, "input": ["a", 1]}),
            400,
            Some("input"),
        ),
        (
            "float ids",
            PATH,
            json!({"model": m, "input": [1.5, 2.5]}),
            400,
            Some("input"),
        ),
        (
            "negative ids",
            PATH,
            json!({"model": m, "input": [-1]}),
            400,
            Some("input"),
        ),
        (
            "id past the vocabulary",
            PATH,
            json!({"model": m, "input": [101, 30522, 102]}),
            400,
            Some("input"),
        ),
        (
            "id past u32",
            PATH,
            json!({"model": m, "input": [[101, 4294967296u64]]}),
            400,
            Some("input"),
        ),
        ("missing input", PATH, json!({"model": m}), 400, None),
        (
            "model a number",
            PATH,
            json!({"model": 7, "input": "a"}),
            400,
            Some("model"),
        ),
        (
            "unknown field",
            PATH,
            json!({"model": m, "input": "a", "colour": "red"}),
            400,
            None,
        ),
        (
            "bad encoding",
            PATH,
            json!({"model": m, "input": "a", "encoding_format": "hex"}),
            400,
            Some("encoding_format"),
        ),
        (
            "dimensions",
            PATH,
            json!({"model": m, "input": "a", "dimensions": 128}),
            400,
            Some("dimensions"),
        ),
        (
            "unknown model",
            PATH,
            json!({"model": "nope", "input": "a"}),
            404,
            Some("model"),
        ),
        (
            "chat model",
            PATH,
            json!({"model": MODEL, "input": "a"}),
            400,
            Some("model"),
        ),
        (
            "embedding model on chat",
            "/v1/chat/completions",
            json!({"model": m, "messages": [{"role": "user", "content": "hi"}]}),
            400,
            Some("model"),
        ),
        (
            "embedding model on completions",
            "/v1/completions",
            json!({"model": m, "prompt": "hi"}),
            400,
            Some("model"),
        ),
        (
            "over-long input on a strict model",
            PATH,
            json!({"model": "minilm-strict", "input": ["short", "word ".repeat(400)]}),
            400,
            Some("input"),
        ),
    ];
    for (what, path, body, want, param) in cases {
        let (status, resp) = srv.post(path, body).await;
        assert_eq!(status, want, "{what}: {resp}");
        assert_error_shape(&resp, what);
        if let Some(p) = param {
            assert!(
                resp["error"]["param"].as_str().is_some_and(|got| got.contains(p)),
                "{what}: param should name {p}: {resp}"
            );
        }
    }
    let (status, resp) = srv
        .post(PATH, json!({"model": m, "input": "x".repeat(5 * 1024 * 1024)}))
        .await;
    assert_eq!(status, 413, "{resp}");
    assert_error_shape(&resp, "oversized body");

    // Still healthy: both models answer, and the strict one embeds short text.
    assert_eq!(srv.get("/health").await.0, 200);
    for model in [m, "minilm-strict"] {
        let (status, body) = srv.post(PATH, json!({"model": model, "input": "still fine"})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(vectors(&body)[0].len(), 384);
    }
    let (status, body) = srv
        .post(
            "/v1/completions",
            json!({"model": MODEL, "prompt": "Hi", "max_tokens": 2}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}
