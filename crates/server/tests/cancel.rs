//! A client that leaves mid-stream cancels its generation. In a file of its
//! own: the metrics recorder is per process, and no other test may cancel.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic

mod common;

use std::time::Duration;

use common::{chat, metric};
use serde_json::json;

#[tokio::test]
async fn disconnect_cancels_generation() {
    let srv = common::start(|_| {}).await;
    let resp = srv
        .client
        .post(format!("{}/v1/completions", srv.base))
        .json(&json!({"model": common::MODEL, "prompt": "Count: 1, 2, 3,", "max_tokens": 2000, "temperature": 0, "stream": true}))
        .send()
        .await
        .expect("sent");
    let mut resp = resp;
    let first = resp.chunk().await.expect("first chunk");
    assert!(first.is_some());
    drop(resp);
    // The engine notices the closed stream and stops: the generation is
    // counted as cancelled, far short of its 2000 tokens.
    let mut cancelled = 0.0;
    let mut text = String::new();
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        text = srv.get("/metrics").await.1;
        cancelled = metric(&text, "switchyard_engine_generations_cancelled_total", common::MODEL);
        if cancelled >= 1.0 {
            break;
        }
    }
    assert_eq!(cancelled, 1.0, "{text}");
    let tokens = metric(&text, "switchyard_engine_generated_tokens_total", common::MODEL);
    assert!(tokens < 2000.0, "{tokens} tokens generated after the client left");
    let (status, _) = srv
        .post("/v1/chat/completions", chat("hi", json!({"max_tokens": 2})))
        .await;
    assert_eq!(status, 200);
}
