//! Routes whose deployments are native models (the real default models):
//! a failing upstream falls back to the native model, whole and streamed; a
//! native model that cannot load falls back to an upstream; the caller's
//! error from a native model ends the chain; a route of one native model is
//! an alias, for chat, completions and embeddings. Usage is counted once,
//! under the route.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic

mod common;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchyard_gateway::testing::{self as up, Upstream};
use switchyard_server::config::{Config, ModelConfig, ModelKind, RouteConfig};

use common::routes;

fn ask(model: &str, extra: Value) -> Value {
    let mut body = common::chat("Say hello.", json!({"max_tokens": 6}));
    body["model"] = json!(model);
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

async fn route_prompt_tokens(srv: &common::TestServer, route: &str) -> f64 {
    let (_, text) = srv.get("/metrics").await;
    common::metric(&text, "switchyard_prompt_tokens_total", route)
}

/// Waits for a stream's usage, counted when its summary arrives.
async fn wait_for_tokens(srv: &common::TestServer, route: &str, want: f64) {
    let until = Instant::now() + Duration::from_secs(5);
    while route_prompt_tokens(srv, route).await != want {
        assert!(Instant::now() < until, "usage never reached {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_failing_upstream_falls_back_to_the_native_model_whole_and_streamed() {
    let a = Upstream::start(vec![up::status(500); 3]).await;
    let srv = common::start(|c| {
        routes(c, &[("a", &a)], &[("to-native", &["a", common::MODEL])]);
        // Open long enough that the second request finds it open.
        c.upstreams[0].breaker.open_ms = 60_000;
    })
    .await;
    let resp = srv
        .client
        .post(format!("{}/v1/chat/completions", srv.base))
        .json(&ask("to-native", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["x-switchyard-deployment"], common::MODEL);
    assert_eq!(resp.headers()["x-switchyard-attempts"], "4", "three on a, one native");
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["model"], common::MODEL);
    assert!(!answer["choices"][0]["message"]["content"].as_str().unwrap().is_empty());
    let prompt = answer["usage"]["prompt_tokens"].as_f64().unwrap();
    assert!(prompt > 0.0 && answer["usage"]["completion_tokens"].as_u64().unwrap() <= 6);
    assert_eq!(a.calls(), 3);
    assert_eq!(
        route_prompt_tokens(&srv, "to-native").await,
        prompt,
        "usage of the answer, once"
    );

    // a's breaker is open now: the stream goes to the native model at once.
    let events = srv
        .stream(
            "/v1/chat/completions",
            ask(
                "to-native",
                json!({"stream": true, "stream_options": {"include_usage": true}}),
            ),
        )
        .await;
    assert_eq!(a.calls(), 3, "the open breaker kept the call off a");
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(events.last().unwrap(), "[DONE]");
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(!text.is_empty(), "{events:?}");
    let usage = events.iter().find(|e| e["usage"].is_object()).expect("a usage chunk");
    assert_eq!(usage["model"], common::MODEL);
    let streamed = usage["usage"]["prompt_tokens"].as_f64().unwrap();
    wait_for_tokens(&srv, "to-native", prompt + streamed).await;
    // The route lists its chain, native deployment included.
    let (_, admin) = srv.get("/admin/upstreams").await;
    let admin: Value = serde_json::from_str(&admin).unwrap();
    let chain = &admin["routes"][0]["deployments"];
    assert_eq!(
        (chain[0]["kind"].as_str(), chain[1]["kind"].as_str()),
        (Some("upstream"), Some("native"))
    );
    assert_eq!(chain[1]["name"], common::MODEL);
}

#[tokio::test]
async fn a_native_model_that_cannot_load_falls_back_to_an_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.gguf");
    std::fs::write(&broken, b"not a gguf file").unwrap();
    let b = Upstream::start(vec![]).await;
    let srv = common::start(|c| {
        routes(c, &[("b", &b)], &[("chat", &["broken", "b"]), ("alone", &["broken"])]);
        c.models.push(ModelConfig {
            preload: false,
            ..ModelConfig::new("broken", ModelKind::Chat, broken.clone())
        });
    })
    .await;
    let resp = srv
        .client
        .post(format!("{}/v1/chat/completions", srv.base))
        .json(&ask("chat", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["x-switchyard-deployment"], "b");
    assert_eq!(resp.headers()["x-switchyard-attempts"], "2");
    assert_eq!(b.calls(), 1);
    assert_eq!(b.bodies()[0]["model"], "b-upstream");
    // Alone, the native model's own refusal reaches the client.
    let resp = srv
        .client
        .post(format!("{}/v1/chat/completions", srv.base))
        .json(&ask("alone", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.unwrap();
    common::assert_error_shape(&body, "refused");
    assert_eq!(body["error"]["code"], "model_unavailable", "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("failed to load"),
        "{body}"
    );
}

#[tokio::test]
async fn the_callers_error_ends_the_chain_and_aliases_serve_every_kind() {
    let b = Upstream::start(vec![]).await;
    let srv = common::start(|c| {
        routes(
            c,
            &[("b", &b)],
            &[("strict", &[common::MODEL, "b"]), ("vectors", &[common::EMBED_MODEL])],
        )
    })
    .await;
    // A bad knob is the caller's fault: the native 400 is the answer.
    let (code, body) = srv
        .post("/v1/chat/completions", ask("strict", json!({"temperature": 7})))
        .await;
    assert_eq!(code, 400, "{body}");
    common::assert_error_shape(&body, "bad knob");
    assert_eq!(body["error"]["param"], "temperature", "{body}");
    assert_eq!(b.calls(), 0, "no fallback on the caller's error");

    let (code, done) = srv
        .post(
            "/v1/completions",
            json!({"model": "strict", "prompt": "One, two,", "max_tokens": 3, "temperature": 0}),
        )
        .await;
    assert_eq!(code, 200, "{done}");
    assert_eq!(
        (done["object"].as_str(), done["model"].as_str()),
        (Some("text_completion"), Some(common::MODEL))
    );
    let (code, vectors) = srv
        .post(
            "/v1/embeddings",
            json!({"model": "vectors", "input": ["a route", "to vectors"]}),
        )
        .await;
    assert_eq!(code, 200, "{vectors}");
    assert_eq!(vectors["data"].as_array().unwrap().len(), 2);
    assert_eq!(vectors["data"][1]["embedding"].as_array().unwrap().len(), 384);
    let tokens = vectors["usage"]["prompt_tokens"].as_f64().unwrap();
    assert!(tokens > 0.0);
    assert_eq!(route_prompt_tokens(&srv, "vectors").await, tokens);
    let (_, list) = srv.get("/v1/models").await;
    assert!(list.contains("\"vectors\"") && list.contains("\"strict\""), "{list}");
    assert_eq!(b.calls(), 0);
}

#[test]
fn a_route_names_only_known_deployments_once() {
    let mut c = Config {
        routes: vec![RouteConfig {
            id: "chat".into(),
            deployments: vec![common::MODEL.into(), "nowhere".into()],
        }],
        ..Config::default()
    };
    let err = c.validate().unwrap_err().to_string();
    assert!(
        err.contains("routes[0].deployments") && err.contains("nowhere"),
        "{err}"
    );
    c.routes[0].deployments = vec![common::MODEL.into(), common::MODEL.into()];
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("listed twice"), "{err}");
    c.routes[0].deployments = vec![common::MODEL.into()];
    c.validate().unwrap();
    c.upstreams = vec![up::config(common::MODEL, "http://127.0.0.1:9/v1")];
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("upstreams[0].name"), "{err}");
}
