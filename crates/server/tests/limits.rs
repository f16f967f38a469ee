//! Back-pressure, time limits, cancellation and metrics, on the real model.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic

mod common;

use std::time::Duration;

use common::{chat, metric};
use serde_json::json;

#[tokio::test]
async fn metrics_parse_and_move_with_traffic() {
    let srv = common::start(|_| {}).await;
    let before = srv.get("/metrics").await.1;
    let (status, _) = srv
        .post("/v1/chat/completions", chat("Hello", json!({"max_tokens": 5})))
        .await;
    assert_eq!(status, 200);
    let (status, _) = srv
        .post("/v1/chat/completions", json!({"model": "nope", "messages": []}))
        .await;
    assert_eq!(status, 404);
    let (code, after) = srv.get("/metrics").await;
    assert_eq!(code, 200);
    let reqs = |t: &str| metric(t, "switchyard_http_requests_total", "/v1/chat/completions");
    assert!(reqs(&after) >= reqs(&before) + 2.0, "{after}");
    let gen = |t: &str| metric(t, "switchyard_generated_tokens_total", common::MODEL);
    assert!(gen(&after) >= gen(&before) + 5.0);
    // Continuous batching's step counters move too (5 tokens: at least 5 steps).
    let steps = |t: &str| metric(t, "switchyard_engine_steps_total", common::MODEL);
    assert!(steps(&after) >= steps(&before) + 5.0, "{after}");
    assert!(metric(&after, "switchyard_engine_peak_batch_sequences", common::MODEL) >= 1.0);
    // Scheduler gauges, KV budget and prefix cache, per-step histograms.
    assert!(
        metric(&after, "switchyard_kv_cache_blocks_total", common::MODEL) > 0.0,
        "{after}"
    );
    // The gauges are published after the step that finished the request,
    // which may be just after its response: poll briefly.
    let mut idle = false;
    for _ in 0..100 {
        let now = srv.get("/metrics").await.1;
        let running = metric(&now, "switchyard_engine_running_sequences", common::MODEL);
        let waiting = metric(&now, "switchyard_engine_waiting_sequences", common::MODEL);
        if running == 0.0 && waiting == 0.0 {
            idle = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(idle, "the engine gauges never showed it idle");
    let queried = |t: &str| metric(t, "switchyard_prefix_cache_queried_tokens_total", common::MODEL);
    assert!(queried(&after) > queried(&before));
    for name in [
        "switchyard_engine_step_batch_sequences_bucket",
        "switchyard_engine_step_duration_seconds_bucket",
        "switchyard_inter_token_latency_seconds_bucket",
        "switchyard_prefix_cache_hit_tokens_total",
        "switchyard_engine_preemptions_total",
        "switchyard_model_loads_total",
        "switchyard_model_resident_bytes",
    ] {
        assert!(after.contains(name), "{name} missing: {after}");
    }
    assert!(after.contains("switchyard_time_to_first_token_seconds_bucket"));
    assert!(after.contains("switchyard_http_request_duration_seconds_bucket"));
    assert!(after.contains("switchyard_http_requests_in_flight"));
    assert!(after.contains("status=\"404\""));
}

#[tokio::test]
async fn full_server_answers_503_with_retry_after() {
    let srv = common::start(|c| c.server.max_concurrent_requests = 1).await;
    // Hold the only slot with a long streaming answer.
    let long = srv
        .client
        .post(format!("{}/v1/chat/completions", srv.base))
        .json(&chat("Write a long story.", json!({"max_tokens": 400, "stream": true})))
        .send()
        .await
        .expect("sent");
    assert_eq!(long.status().as_u16(), 200);
    let resp = srv
        .client
        .post(format!("{}/v1/chat/completions", srv.base))
        .json(&chat("hi", json!({})))
        .send()
        .await
        .expect("sent");
    common::assert_busy(resp, "overloaded").await;
    // Leaving frees the slot: the engine sees the client gone and stops.
    drop(long);
    let mut ok = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (status, _) = srv
            .post("/v1/chat/completions", chat("hi", json!({"max_tokens": 2})))
            .await;
        if status == 200 {
            ok = true;
            break;
        }
    }
    assert!(ok, "the slot was not freed after the client disconnected");
}

#[tokio::test]
async fn request_time_limit_gives_504() {
    let srv = common::start(|c| c.server.request_timeout_secs = 1).await;
    let (status, body) = srv
        .post(
            "/v1/completions",
            json!({"model": common::MODEL, "prompt": "Count: 1, 2, 3,", "max_tokens": 5000, "temperature": 0}),
        )
        .await;
    assert_eq!(status, 504, "{body}");
    common::assert_error_shape(&body, "timeout");
}

#[tokio::test]
async fn full_engine_queue_answers_503() {
    // One seat: the second request cannot leave the queue, whatever the timing.
    let srv = common::start(|c| {
        c.engine.queue_capacity = 1;
        c.engine.max_num_seqs = 1;
    })
    .await;
    let open = |prompt: &'static str| {
        let req = srv.client.post(format!("{}/v1/completions", srv.base)).json(
            &json!({"model": common::MODEL, "prompt": prompt, "max_tokens": 300, "temperature": 0, "stream": true}),
        );
        async move { req.send().await.expect("sent") }
    };
    // One request runs, one waits in the queue of one; the next has no room.
    let running = open("Count: 1, 2, 3,").await;
    let mut running = running;
    assert!(running.chunk().await.expect("chunk").is_some());
    let waiting = open("Once upon a time").await;
    assert_eq!(waiting.status().as_u16(), 200);
    let (status, body) = srv
        .post(
            "/v1/completions",
            json!({"model": common::MODEL, "prompt": "x", "max_tokens": 1}),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "overloaded");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("queue"));
}
