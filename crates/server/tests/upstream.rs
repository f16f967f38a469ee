//! The gateway through the server: a real upstream on 127.0.0.1 that each
//! test scripts (500s, 429s, hangs, cut streams, slow streams), reached
//! through `/v1/chat/completions` like any model.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic

mod common;

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use switchyard_gateway::testing::{self as up, Step, Upstream};
use switchyard_server::config::Config;

/// Upstreams and routes only, no native models.
fn gateway(c: &mut Config, upstreams: &[(&str, &Upstream)], routes: &[(&str, &[&str])]) {
    common::routes(c, upstreams, routes);
    c.models.clear();
}

fn body(model: &str, stream: bool) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Hi"}], "stream": stream})
}

async fn prompt_tokens(srv: &common::TestServer, route: &str) -> f64 {
    let (_, text) = srv.get("/metrics").await;
    common::metric(&text, "switchyard_prompt_tokens_total", route)
}

#[tokio::test]
async fn retries_then_answers_and_counts_usage_once() {
    let a = Upstream::start(vec![up::status(500), up::status(503)]).await;
    let srv = common::start(|c| gateway(c, &[("a", &a)], &[("retried", &["a"])])).await;
    let resp = srv
        .client
        .post(format!("{}/v1/chat/completions", srv.base))
        .json(&body("retried", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["x-switchyard-attempts"], "3");
    assert_eq!(resp.headers()["x-switchyard-deployment"], "a");
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["usage"]["prompt_tokens"], 5);
    assert_eq!(a.calls(), 3);
    // Every attempt carried the upstream's model name, the rest unchanged.
    for b in a.bodies() {
        assert_eq!(b["model"], "a-upstream");
        assert_eq!(b["messages"][0]["content"], "Hi");
    }
    assert_eq!(prompt_tokens(&srv, "retried").await, 5.0, "usage of the answer, once");
}

#[tokio::test]
async fn failures_reach_the_client_in_openai_shape() {
    let retry_after = |s: &str| vec![("retry-after", s.to_string())];
    let limited = Step::Json {
        status: 429,
        body: "{}".into(),
        headers: retry_after("1"),
        delay_ms: 0,
    };
    let a = Upstream::start(vec![
        limited.clone(),
        limited.clone(),
        limited,
        Step::Hang,
        Step::Hang,
        Step::Hang,
    ])
    .await;
    let srv = common::start(|c| {
        gateway(c, &[("a", &a)], &[("failing", &["a"])]);
        c.upstreams[0].breaker.enabled = false;
    })
    .await;
    // 429 three times (Retry-After honoured between): the client gets a 429.
    let started = Instant::now();
    let resp = srv
        .client
        .post(format!("{}/v1/chat/completions", srv.base))
        .json(&body("failing", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    assert!(started.elapsed() >= Duration::from_millis(90), "backoff waited");
    let err: Value = resp.json().await.unwrap();
    common::assert_error_shape(&err, "429");
    assert_eq!(err["error"]["code"], "upstream_rate_limited");
    // Hangs past the first-byte limit: 504.
    let (code, err) = srv.post("/v1/chat/completions", body("failing", false)).await;
    assert_eq!(code, 504, "{err}");
    common::assert_error_shape(&err, "504");
    assert_eq!(a.calls(), 6);
    // A 400 from the upstream is its answer: passed back, not retried.
    a.push(up::status(400));
    let (code, _) = srv.post("/v1/chat/completions", body("failing", false)).await;
    assert_eq!((code, a.calls()), (400, 7));
    assert_eq!(prompt_tokens(&srv, "failing").await, 0.0, "no usage from failures");
}

#[tokio::test]
async fn a_stream_cut_midway_ends_with_an_error_event_and_no_retry() {
    let chunks = vec![(0, up::sse_chunk("Hel")), (0, up::sse_chunk("lo"))];
    let a = Upstream::start(vec![Step::Sse { chunks, abort: true }]).await;
    let srv = common::start(|c| gateway(c, &[("a", &a)], &[("cut", &["a"])])).await;
    let events = srv.stream("/v1/chat/completions", body("cut", true)).await;
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[0]["choices"][0]["delta"]["content"], "Hel");
    assert_eq!(events[1]["choices"][0]["delta"]["content"], "lo");
    common::assert_error_shape(&events[2], "cut");
    assert_eq!(a.calls(), 1);
}

#[tokio::test]
async fn the_first_chunk_arrives_before_the_upstream_sends_the_second() {
    let chunks = vec![
        (0, up::sse_chunk("first")),
        (500, up::sse_chunk("second")),
        (0, up::sse_usage()),
        (0, up::SSE_DONE.to_string()),
    ];
    let a = Upstream::start(vec![Step::Sse { chunks, abort: false }]).await;
    let srv = common::start(|c| gateway(c, &[("a", &a)], &[("slow", &["a"])])).await;
    let resp = srv
        .client
        .post(format!("{}/v1/chat/completions", srv.base))
        .json(&body("slow", true))
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    let got_first = Instant::now();
    assert!(String::from_utf8_lossy(&first).contains("first"));
    let mut rest = Vec::new();
    while let Some(chunk) = stream.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    let sent = a.sent();
    assert!(
        got_first < sent[1],
        "the first chunk was forwarded before the second was sent"
    );
    let rest = String::from_utf8(rest).unwrap();
    assert!(rest.contains("second") && rest.ends_with("data: [DONE]\n\n"), "{rest}");
    // Usage is read from the passing stream once it ends.
    let until = Instant::now() + Duration::from_secs(5);
    while prompt_tokens(&srv, "slow").await != 5.0 {
        assert!(Instant::now() < until, "usage from the stream never counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_breaker_sheds_load_then_recovers_and_routes_fall_back() {
    let a = Upstream::start(vec![up::status(500); 3]).await;
    let b = Upstream::start(vec![]).await;
    let srv = common::start(|c| {
        gateway(
            c,
            &[("a", &a), ("b", &b)],
            &[("chain", &["a", "b"]), ("only-a", &["a"])],
        );
        c.upstreams[0].retries.max_retries = 0;
    })
    .await;
    let breaker = |v: Value| {
        v["data"][0]["endpoints"][0]["breaker"]["state"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // Three failures of `a`, each answered by `b` down the chain.
    for _ in 0..3 {
        let resp = srv
            .client
            .post(format!("{}/v1/chat/completions", srv.base))
            .json(&body("chain", false))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(resp.headers()["x-switchyard-deployment"], "b");
    }
    let (_, admin) = srv.get("/admin/upstreams").await;
    assert_eq!(breaker(serde_json::from_str(&admin).unwrap()), "open");
    // Open: `a` is skipped without a call; its own route sheds with a 503.
    let (code, _) = srv.post("/v1/chat/completions", body("chain", false)).await;
    assert_eq!((code, a.calls()), (200, 3));
    let (code, err) = srv.post("/v1/chat/completions", body("only-a", false)).await;
    assert_eq!(code, 503, "{err}");
    assert_eq!(err["error"]["code"], "circuit_open");
    assert_eq!(a.calls(), 3, "no call while open");
    let (_, text) = srv.get("/metrics").await;
    assert_eq!(common::metric(&text, "switchyard_upstream_breaker_state", "a"), 2.0);
    // After open_ms a half-open probe succeeds and the breaker closes.
    tokio::time::sleep(Duration::from_millis(350)).await;
    let (code, _) = srv.post("/v1/chat/completions", body("only-a", false)).await;
    assert_eq!((code, a.calls()), (200, 4));
    let (_, admin) = srv.get("/admin/upstreams").await;
    assert_eq!(breaker(serde_json::from_str(&admin).unwrap()), "closed");
}

#[tokio::test]
async fn upstream_routes_are_listed_beside_native_models() {
    let a = Upstream::start(vec![]).await;
    let srv = common::start(|c| {
        c.upstreams = vec![up::config("direct", &a.url)];
    })
    .await;
    let (code, list) = srv.get("/v1/models").await;
    assert_eq!(code, 200);
    let list: Value = serde_json::from_str(&list).unwrap();
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"direct") && ids.contains(&common::MODEL), "{ids:?}");
    // A deployment no route names answers under its own name; native models still serve.
    let (code, _) = srv.post("/v1/chat/completions", body("direct", false)).await;
    assert_eq!(code, 200);
    let (code, answer) = srv
        .post("/v1/chat/completions", common::chat("Hi", json!({"max_tokens": 2})))
        .await;
    assert_eq!(code, 200, "{answer}");
}

/// While the usage writer cannot write (a second connection holds SQLite's
/// write lock), records queue up to `tenancy.usage.queue`; past that the
/// door sheds new inference requests with a 503 `usage_backlog` instead of
/// growing memory, and once the lock is gone every answered request's
/// record is written: none is lost.
#[tokio::test]
async fn a_stuck_usage_writer_sheds_load_and_loses_no_record() {
    let a = Upstream::start(vec![]).await;
    let srv = common::start(|c| {
        gateway(c, &[("a", &a)], &[("m", &["a"])]);
        c.tenancy.usage.queue = 1;
        c.tenancy.usage.batch_size = 1;
    })
    .await;
    let pool = srv.state.db.pool().clone();
    let mut lock = pool.acquire().await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *lock).await.unwrap();

    let mut answered = 0;
    let mut shed = None;
    for _ in 0..10 {
        let resp = srv
            .client
            .post(format!("{}/v1/chat/completions", srv.base))
            .json(&body("m", false))
            .send()
            .await
            .unwrap();
        match resp.status().as_u16() {
            200 => answered += 1,
            503 => {
                let retry = resp.headers().get("retry-after").cloned();
                shed = Some((retry, resp.json::<Value>().await.unwrap()));
                break;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    let (retry, err) = shed.expect("a stuck writer must shed load within a few requests");
    assert_eq!(err["error"]["code"], "usage_backlog", "{err}");
    assert!(retry.is_some(), "a 503 says when to retry");
    assert!(answered >= 1);

    sqlx::query("COMMIT").execute(&mut *lock).await.unwrap();
    drop(lock);
    let count = || async {
        let row: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM usage_records")
            .fetch_one(&pool)
            .await
            .unwrap();
        row.0
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while count().await < answered && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        count().await,
        answered,
        "every answered request has its record, the shed one none"
    );
}
