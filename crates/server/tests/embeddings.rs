//! `/v1/embeddings` on the real all-MiniLM-L6-v2 behind the dynamic batcher:
//! the wire formats against sentence-transformers, batching that never
//! changes a vector, back-pressure, and clients that leave.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic

mod common;

use std::time::{Duration, Instant};

use common::embed::{cosine, extra_model, fixture, max_abs_diff, vectors, PATH};
use common::{metric, EMBED_MODEL, MODEL};
use serde_json::{json, Value};
use switchyard_server::config::EmbeddingConfig;

#[tokio::test]
async fn float_and_base64_agree_and_match_sentence_transformers() {
    let srv = common::start(|_| {}).await;
    let cases = fixture();
    let texts: Vec<&str> = cases.iter().map(|c| c.text.as_str()).collect();
    let (status, body) = srv
        .post(PATH, json!({"model": EMBED_MODEL, "input": texts, "user": "tester"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], EMBED_MODEL);
    let tokens: usize = cases.iter().map(|c| c.tokens).sum();
    assert_eq!(body["usage"], json!({"prompt_tokens": tokens, "total_tokens": tokens}));
    let float = vectors(&body);
    assert_eq!(float.len(), cases.len());
    for (v, case) in float.iter().zip(&cases) {
        assert_eq!(v.len(), 384);
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
        let cos = cosine(v, &case.embedding);
        assert!(cos >= 0.9999, "cosine {cos} for {:?}", case.text);
    }

    let (status, body) = srv
        .post(
            PATH,
            json!({"model": EMBED_MODEL, "input": texts, "encoding_format": "base64"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"][0]["embedding"].is_string());
    let b64 = vectors(&body);
    for (f, b) in float.iter().zip(&b64) {
        // JSON floats are written to round-trip, so both carry the same bits.
        assert_eq!(f, b);
    }

    // One string, and token ids (one list, and a list of lists).
    let (status, body) = srv
        .post(
            PATH,
            json!({"model": EMBED_MODEL, "input": cases[0].text, "encoding_format": "float"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Alone rather than in a pass of 29: the same vector up to rounding.
    assert!(max_abs_diff(&vectors(&body)[0], &float[0]) <= 1e-6);
    let (status, body) = srv
        .post(PATH, json!({"model": EMBED_MODEL, "input": cases[1].token_ids}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(max_abs_diff(&vectors(&body)[0], &float[1]) <= 1e-6);
    assert_eq!(body["usage"]["prompt_tokens"], cases[1].tokens);
    let ids: Vec<&Vec<u32>> = cases.iter().take(3).map(|c| &c.token_ids).collect();
    let (status, body) = srv.post(PATH, json!({"model": EMBED_MODEL, "input": ids})).await;
    assert_eq!(status, 200, "{body}");
    for (got, want) in vectors(&body).iter().zip(&float) {
        assert!(max_abs_diff(got, want) <= 1e-6);
    }

    // Both models are listed with their kind.
    let (_, models) = srv.get("/v1/models").await;
    let models: Value = serde_json::from_str(&models).unwrap();
    let entry = |id: &str| {
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(entry(MODEL)["kind"], "chat");
    assert_eq!(entry(EMBED_MODEL)["kind"], "embedding");
    assert_eq!(entry(EMBED_MODEL)["dimensions"], 384);
    assert_eq!(entry(EMBED_MODEL)["context_length"], 256);
    assert_eq!(entry(EMBED_MODEL)["owned_by"], "switchyard");
}

#[tokio::test]
async fn concurrent_mixed_lengths_get_their_solo_vectors() {
    const ID: &str = "minilm-concurrent";
    let srv = common::start(|c| {
        let embedding = EmbeddingConfig {
            // Long enough that requests fired together share batches.
            max_wait_ms: 20,
            ..EmbeddingConfig::default()
        };
        extra_model(c, ID, embedding);
    })
    .await;
    let cases = fixture();
    // 16 requests: mostly one text, some two; lengths from 3 to 256 tokens.
    let requests: Vec<Vec<&str>> = (0..16)
        .map(|i| {
            let a = cases[(i * 7) % cases.len()].text.as_str();
            let b = cases[(i * 11 + 3) % cases.len()].text.as_str();
            if i % 4 == 0 {
                vec![a, b]
            } else {
                vec![a]
            }
        })
        .collect();
    let mut solo = std::collections::HashMap::new();
    for text in requests.iter().flatten() {
        if !solo.contains_key(text) {
            let (status, body) = srv.post(PATH, json!({"model": ID, "input": [text]})).await;
            assert_eq!(status, 200, "{body}");
            solo.insert(*text, vectors(&body).remove(0));
        }
    }
    let scrape = |t: &str, name: &str| metric(t, name, ID);
    let before = srv.get("/metrics").await.1;
    let started = Instant::now();
    let tasks: Vec<_> = requests
        .iter()
        .map(|texts| {
            let req = srv
                .client
                .post(format!("{}{PATH}", srv.base))
                .json(&json!({"model": ID, "input": texts}));
            tokio::spawn(async move {
                let resp = req.send().await.expect("sent");
                (resp.status().as_u16(), resp.json::<Value>().await.unwrap_or_default())
            })
        })
        .collect();
    let mut worst = 0f32;
    for (texts, task) in requests.iter().zip(tasks) {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 200, "{body}");
        let got = vectors(&body);
        assert_eq!(got.len(), texts.len());
        for (text, v) in texts.iter().zip(&got) {
            worst = worst.max(max_abs_diff(v, &solo[text]));
        }
    }
    let wall = started.elapsed();
    assert!(worst <= 1e-6, "batched and solo vectors differ by {worst}");
    let after = srv.get("/metrics").await.1;
    let delta = |name: &str| scrape(&after, name) - scrape(&before, name);
    let passes = delta("switchyard_embedding_batch_size_count");
    let inputs = delta("switchyard_embedding_batch_size_sum");
    let computed = delta("switchyard_embedding_batch_tokens_sum");
    let real = delta("switchyard_embedding_tokens_total");
    println!(
        "16 concurrent requests, {inputs} inputs: {passes} forward passes, {:.1} inputs per pass, {wall:?}; largest difference from solo {worst:e}",
        inputs / passes,
    );
    // Packed passes: the model computes exactly the requests' tokens.
    assert_eq!(computed, real);
    assert_eq!(inputs as usize, requests.iter().map(Vec::len).sum::<usize>());
    assert!(passes < 16.0, "requests were not merged: {passes} passes");
    assert!(delta("switchyard_embedding_duration_seconds_count") >= 16.0);
}

#[tokio::test]
async fn full_queue_answers_503_with_retry_after() {
    const ID: &str = "minilm-tiny-queue";
    let srv = common::start(|c| {
        // The first request waits a second for company, holding the only place.
        let tiny = EmbeddingConfig {
            queue_capacity: 1,
            max_wait_ms: 1000,
            ..EmbeddingConfig::default()
        };
        extra_model(c, ID, tiny);
    })
    .await;
    let first = {
        let req = srv
            .client
            .post(format!("{}{PATH}", srv.base))
            .json(&json!({"model": ID, "input": "first in line"}));
        tokio::spawn(async move { req.send().await.expect("sent").status().as_u16() })
    };
    let depth = |t: &str| metric(t, "switchyard_engine_queue_depth", ID);
    let deadline = Instant::now() + Duration::from_millis(800);
    while depth(&srv.get("/metrics").await.1) < 1.0 {
        assert!(Instant::now() < deadline, "the first request never queued");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let resp = srv
        .client
        .post(format!("{}{PATH}", srv.base))
        .json(&json!({"model": ID, "input": "no room"}))
        .send()
        .await
        .expect("sent");
    let body = common::assert_busy(resp, "queue full").await;
    assert_eq!(body["error"]["code"], "overloaded");
    assert_eq!(first.await.unwrap(), 200);
    let (status, body) = srv.post(PATH, json!({"model": ID, "input": "room again"})).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_client_that_leaves_costs_nothing_and_breaks_nothing() {
    const ID: &str = "minilm-leaver";
    let srv = common::start(|c| {
        let slow_start = EmbeddingConfig {
            max_wait_ms: 300,
            ..EmbeddingConfig::default()
        };
        extra_model(c, ID, slow_start);
    })
    .await;
    let long = "A sentence that goes on. ".repeat(60);
    let leaver = {
        let req = srv
            .client
            .post(format!("{}{PATH}", srv.base))
            // 16 × 256 tokens: under the batch budget, so it waits for company.
            .json(&json!({"model": ID, "input": vec![long; 16]}));
        tokio::spawn(async move { req.send().await })
    };
    // Leave while the request waits for company.
    tokio::time::sleep(Duration::from_millis(100)).await;
    leaver.abort();
    let (status, body) = srv.post(PATH, json!({"model": ID, "input": "hello there"})).await;
    assert_eq!(status, 200, "{body}");
    let tokens = body["usage"]["prompt_tokens"].as_f64().unwrap();
    // The model computed only the request that stayed.
    let computed = metric(&srv.get("/metrics").await.1, "switchyard_embedding_tokens_total", ID);
    assert_eq!(computed, tokens);
    assert_eq!(srv.get("/health").await.0, 200);
}
