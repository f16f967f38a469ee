//! The model registry through the HTTP API: LRU residency, pinning, one
//! load for many first requests, draining unloads, failed loads.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic

mod common;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchyard_server::config::{Config, ModelConfig, ModelKind, WhileDraining};

/// A second chat model: the default GGUF under another id.
fn twin(id: &str) -> ModelConfig {
    ModelConfig {
        preload: false,
        ..ModelConfig::new(id, ModelKind::Chat, common::model_path())
    }
}

fn admin(c: &mut Config) {
    c.admin.enabled = true;
}

async fn entry(srv: &common::TestServer, id: &str) -> Value {
    srv.admin_entry("/admin/models", id).await
}

async fn ask(srv: &common::TestServer, model: &str) -> String {
    ask_at(srv.client.clone(), srv.base.clone(), model.to_string()).await
}

async fn ask_at(client: reqwest::Client, base: String, model: String) -> String {
    let resp = client
        .post(format!("{base}/v1/chat/completions"))
        .json(
            &json!({"model": model, "messages": [{"role": "user", "content": "What is the capital of France?"}],
                      "max_tokens": 8, "temperature": 0}),
        )
        .send()
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(code, 200, "{model}: {body}");
    body["choices"][0]["message"]["content"].as_str().unwrap().to_string()
}

async fn wait_status(srv: &common::TestServer, id: &str, want: &str) -> Value {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let e = entry(srv, id).await;
        if e["status"] == want {
            return e;
        }
        assert!(Instant::now() < until, "{id} never became {want}: {e}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn one_resident_model_alternates_by_lru_and_pinned_ones_stay() {
    let srv = common::start(|c| {
        admin(c);
        c.registry.max_resident_models = 1;
        c.models.retain(|m| m.kind == Some(ModelKind::Chat));
        c.models.push(twin("twin"));
    })
    .await;
    // Preload filled the one seat with the default model.
    assert_eq!(entry(&srv, common::MODEL).await["status"], "ready");
    assert_eq!(entry(&srv, "twin").await["status"], "registered");

    let first = ask(&srv, common::MODEL).await;
    for round in 0..2 {
        // Each switch evicts the other model, which stops and frees memory.
        assert_eq!(
            ask(&srv, "twin").await,
            first,
            "round {round}: same weights, same answer"
        );
        let gone = wait_status(&srv, common::MODEL, "stopped").await;
        assert_eq!(gone["resident_bytes"], 0);
        assert_eq!(entry(&srv, "twin").await["status"], "ready");
        assert_eq!(ask(&srv, common::MODEL).await, first);
        wait_status(&srv, "twin", "stopped").await;
    }
    assert_eq!(entry(&srv, common::MODEL).await["loads"], 3);
    assert_eq!(entry(&srv, "twin").await["loads"], 2);
    let ready = entry(&srv, common::MODEL).await;
    assert!(ready["resident_bytes"].as_u64().unwrap() > 50_000_000, "{ready}");

    // Pinned: the resident model stays, and the other cannot come in.
    let pinned = common::start(|c| {
        admin(c);
        c.registry.max_resident_models = 1;
        c.models.retain(|m| m.kind == Some(ModelKind::Chat));
        c.models[0].pinned = true;
        c.models.push(twin("twin"));
    })
    .await;
    let (code, body) = pinned
        .post(
            "/v1/chat/completions",
            json!({"model": "twin", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}),
        )
        .await;
    assert_eq!(code, 503, "{body}");
    common::assert_error_shape(&body, "no room");
    assert!(body["error"]["message"].as_str().unwrap().contains("pinned"), "{body}");
    assert_eq!(entry(&pinned, common::MODEL).await["status"], "ready");
    ask(&pinned, common::MODEL).await;
}

#[tokio::test]
async fn twenty_concurrent_first_requests_share_one_load() {
    let srv = common::start(|c| {
        admin(c);
        c.models.push(twin("cold"));
    })
    .await;
    assert_eq!(entry(&srv, "cold").await["status"], "registered");
    let asks: Vec<_> = (0..20)
        .map(|_| tokio::spawn(ask_at(srv.client.clone(), srv.base.clone(), "cold".into())))
        .collect();
    let mut answers = Vec::new();
    for a in asks {
        answers.push(a.await.unwrap());
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]));
    let cold = entry(&srv, "cold").await;
    assert_eq!(cold["loads"], 1, "{cold}");
    assert_eq!(cold["requests"], 20, "{cold}");
}

#[tokio::test]
async fn unloading_lets_a_stream_finish_then_frees_the_model() {
    for policy in [WhileDraining::Reject, WhileDraining::Wait] {
        let srv = common::start(|c| {
            admin(c);
            c.registry.while_draining = policy;
        })
        .await;
        let body = json!({"model": common::MODEL, "prompt": "Count: 1, 2, 3,", "max_tokens": 64,
                          "temperature": 0, "stream": true, "logit_bias": {"2": -100}});
        let streaming = {
            let srv_base = srv.base.clone();
            let client = srv.client.clone();
            tokio::spawn(async move {
                let resp = client
                    .post(format!("{srv_base}/v1/completions"))
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                resp.text().await.unwrap()
            })
        };
        // Unload once the stream is generating.
        let until = Instant::now() + Duration::from_secs(30);
        while entry(&srv, common::MODEL).await["running_sequences"] != 1 {
            assert!(Instant::now() < until, "the stream never started");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (code, _) = srv.post(&format!("/admin/unload/{}", common::MODEL), json!({})).await;
        assert_eq!(code, 202);
        assert_eq!(entry(&srv, common::MODEL).await["status"], "draining");
        let during = srv
            .post(
                "/v1/completions",
                json!({"model": common::MODEL, "prompt": "Hi", "max_tokens": 2}),
            )
            .await;
        let text = streaming.await.unwrap();
        // The stream ran to its end: 64 tokens and [DONE].
        assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
        assert!(text.contains("\"finish_reason\":\"length\""), "{text}");
        match policy {
            WhileDraining::Reject => {
                assert_eq!(during.0, 503, "{:?}", during.1);
                common::assert_error_shape(&during.1, "draining");
                let stopped = wait_status(&srv, common::MODEL, "stopped").await;
                assert_eq!(stopped["resident_bytes"], 0);
                assert_eq!(stopped["loads"], 1);
            }
            WhileDraining::Wait => {
                // Queued behind the drain, then served by a fresh load.
                assert_eq!(during.0, 200, "{:?}", during.1);
                assert_eq!(entry(&srv, common::MODEL).await["loads"], 2);
            }
        }
    }
}

#[tokio::test]
async fn a_truncated_model_fails_with_a_reason_and_others_keep_serving() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.gguf");
    let bytes = std::fs::read(common::model_path()).unwrap();
    std::fs::write(&broken, &bytes[..bytes.len() / 3]).unwrap();
    let srv = common::start(|c| {
        admin(c);
        let mut b = twin("broken");
        b.path = broken.clone();
        b.preload = true;
        c.models.push(b);
    })
    .await;
    let b = entry(&srv, "broken").await;
    assert_eq!(b["status"], "failed", "{b}");
    assert!(!b["failure"].as_str().unwrap().is_empty(), "{b}");
    let (code, body) = srv
        .post(
            "/v1/chat/completions",
            json!({"model": "broken", "messages": [{"role": "user", "content": "Hi"}]}),
        )
        .await;
    assert_eq!(code, 503);
    common::assert_error_shape(&body, "failed model");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("failed to load"),
        "{body}"
    );
    ask(&srv, common::MODEL).await;
    let (code, _) = srv
        .post(
            "/v1/embeddings",
            json!({"model": common::EMBED_MODEL, "input": "still here"}),
        )
        .await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn admin_stats_count_answers_tokens_errors_and_latency() {
    let srv = common::start(admin).await;
    let ask_tokens = |stream: bool| {
        json!({"model": common::MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4,
               "temperature": 0, "stream": stream, "logit_bias": {"2": -100}})
    };
    assert_eq!(srv.post("/v1/chat/completions", ask_tokens(false)).await.0, 200);
    let events = srv.stream("/v1/chat/completions", ask_tokens(true)).await;
    assert!(!events.is_empty());
    let bad = json!({"model": common::MODEL, "messages": [{"role": "user", "content": "Hi"}], "temperature": 9});
    assert_eq!(srv.post("/v1/chat/completions", bad).await.0, 400);
    let (code, _) = srv
        .post(
            "/v1/embeddings",
            json!({"model": common::EMBED_MODEL, "input": ["one two three"]}),
        )
        .await;
    assert_eq!(code, 200);

    let chat = srv.admin_entry("/admin/stats", common::MODEL).await;
    assert_eq!(
        (chat["completed"].as_u64(), chat["errors"].as_u64()),
        (Some(2), Some(1)),
        "{chat}"
    );
    assert_eq!(chat["completion_tokens"], 8, "{chat}");
    assert!(chat["prompt_tokens"].as_u64().unwrap() > 0, "{chat}");
    assert!(chat["mean_latency_ms"].as_f64().unwrap() > 0.0, "{chat}");
    assert!(chat["resident_bytes"].as_u64().unwrap() > 0, "{chat}");
    let embed = srv.admin_entry("/admin/stats", common::EMBED_MODEL).await;
    assert_eq!(
        (embed["completed"].as_u64(), embed["errors"].as_u64()),
        (Some(1), Some(0)),
        "{embed}"
    );
    assert!(embed["prompt_tokens"].as_u64().unwrap() >= 3, "{embed}");
}

#[tokio::test]
async fn warm_up_runs_each_model_once_before_it_is_ready() {
    // Per-engine figures from the admin API: Prometheus counters are shared
    // by every server in this test process.
    let srv = common::start(|c| {
        admin(c);
        c.registry.warmup = true;
    })
    .await;
    let chat = srv.admin_entry("/admin/models", common::MODEL).await;
    assert_eq!(
        chat["generated_tokens"], 1,
        "the chat warm-up generates one token: {chat}"
    );
    for id in [common::MODEL, common::EMBED_MODEL] {
        let e = srv.admin_entry("/admin/stats", id).await;
        assert_eq!(
            (e["status"].as_str(), e["requests"].as_u64()),
            (Some("ready"), Some(0)),
            "{e}"
        );
    }
    // Off (the default): nothing runs before the first request.
    let cold = common::start(admin).await;
    let chat = cold.admin_entry("/admin/models", common::MODEL).await;
    assert_eq!(chat["generated_tokens"], 0, "{chat}");
}
