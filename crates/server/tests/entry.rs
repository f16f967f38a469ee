//! The proxied path (`entry.rs`) with tenancy on. A POST to an OpenAI
//! endpoint whose `model` names an upstream route skips the router, so this
//! checks it passes the same door as every other request: keys, allow-lists,
//! rate-limit headers, the request id, one HTTP metric and one usage record
//! per request; and that a body naming a native model (or no route, or no
//! JSON at all) still reaches the native handlers, counted once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic

mod common;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchyard_gateway::testing::Upstream;
use switchyard_tenancy::AuthMode;

/// A well-formed key the server adopts as its first admin key.
const ADMIN: &str = "sy-00000000000000ad.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// Tenancy on, one upstream `up` behind the route `gw`, the native models too.
async fn start(up: &Upstream) -> common::TestServer {
    let srv = common::start(|c| {
        c.tenancy.auth = AuthMode::Enabled;
        c.admin.bootstrap_key = "env:SWITCHYARD_TEST_ADMIN_KEY_UNSET".into();
        c.server.max_body_bytes = 8 * 1024;
        common::routes(c, &[("up", up)], &[("gw", &["up"])]);
    })
    .await;
    srv.state.tenancy.admin.ensure_admin_key(Some(ADMIN)).await.unwrap();
    srv
}

/// Each request its own id (a usage record is keyed by it).
static NEXT_ID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

async fn post(srv: &common::TestServer, key: Option<&str>, path: &str, body: Vec<u8>) -> reqwest::Response {
    let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut req = srv
        .client
        .post(format!("{}{path}", srv.base))
        .header("content-type", "application/json")
        .header("x-request-id", format!("entry-test-{id}"))
        .body(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send().await.unwrap()
}

fn json_body(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

/// Makes a tenant and a key for it, as the admin; returns the key.
async fn tenant_key(srv: &common::TestServer, tenant: Value, key: Value) -> String {
    let admin = |path: &str, body: &Value| {
        srv.client
            .post(format!("{}{path}", srv.base))
            .bearer_auth(ADMIN)
            .json(body)
            .send()
    };
    let t: Value = admin("/admin/tenants", &tenant).await.unwrap().json().await.unwrap();
    let mut key = key;
    key["tenant"] = t["name"].clone();
    let k: Value = admin("/admin/keys", &key).await.unwrap().json().await.unwrap();
    k["key"].as_str().expect("a key").to_string()
}

/// The key's usage grouped by model, once `requests` requests are in it.
async fn usage_once(srv: &common::TestServer, key: &str, requests: u64) -> Vec<Value> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let body: Value = srv
            .client
            .get(format!("{}/v1/usage", srv.base))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rows = body["data"].as_array().cloned().unwrap_or_default();
        let seen: u64 = rows.iter().map(|r| r["requests"].as_u64().unwrap_or(0)).sum();
        if seen >= requests {
            assert_eq!(seen, requests, "a request recorded twice: {body}");
            return rows;
        }
        assert!(Instant::now() < until, "usage never arrived: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn door_count(srv: &common::TestServer, path: &str) -> f64 {
    let (_, text) = srv.get("/metrics").await;
    common::metric(&text, "switchyard_http_requests_total", path)
}

#[tokio::test]
async fn a_proxied_request_passes_the_door_once() {
    let up = Upstream::start(vec![]).await;
    let srv = start(&up).await;
    let path = "/v1/chat/completions";
    let ask = json_body(json!({"model": "gw", "messages": [{"role": "user", "content": "Hi"}]}));
    let before = door_count(&srv, path).await;

    // No key: refused at the door, in OpenAI's shape, and the upstream is not called.
    let resp = post(&srv, None, path, ask.clone()).await;
    assert_eq!(resp.status().as_u16(), 401);
    assert!(resp.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .starts_with("entry-test-"));
    let body: Value = resp.json().await.unwrap();
    common::assert_error_shape(&body, "401");
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert_eq!(up.calls(), 0);

    // A key with a request limit: answered, with the limit's headers and the id.
    let key = tenant_key(
        &srv,
        json!({"name": "t", "tier": "enterprise"}),
        json!({"name": "k", "overrides": {"requests_per_minute": 50}}),
    )
    .await;
    let resp = post(&srv, Some(&key), path, ask).await;
    assert_eq!(resp.status().as_u16(), 200);
    let h = resp.headers().clone();
    let id = h["x-request-id"].to_str().unwrap().to_string();
    assert!(id.starts_with("entry-test-"), "{id}");
    assert_eq!(h["x-switchyard-deployment"], "up");
    assert_eq!(h["x-ratelimit-limit-requests"], "50");
    assert_eq!(h["x-ratelimit-remaining-requests"], "49");
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["usage"]["prompt_tokens"], 5);
    assert_eq!(up.calls(), 1);
    assert_eq!(up.headers()[0]["x-request-id"], id.as_str(), "the id goes upstream");

    // Each request counted once under its route, the refused one too.
    assert_eq!(door_count(&srv, path).await - before, 2.0);
    // One usage record, under the route, with the upstream's token counts.
    let rows = usage_once(&srv, &key, 1).await;
    assert_eq!(rows[0]["group"], "gw");
    assert_eq!(rows[0]["prompt_tokens"], 5);
    assert_eq!(rows[0]["completion_tokens"], 7);
}

#[tokio::test]
async fn allow_lists_bodies_and_native_models_on_the_proxied_endpoints() {
    let up = Upstream::start(vec![]).await;
    let srv = start(&up).await;
    let key = tenant_key(
        &srv,
        json!({"name": "t", "tier": "enterprise", "models": [common::MODEL]}),
        json!({"name": "k"}),
    )
    .await;
    let path = "/v1/completions";
    let before = door_count(&srv, path).await;

    // A route outside the tenant's allow-list: 403, no upstream call.
    let resp = post(
        &srv,
        Some(&key),
        path,
        json_body(json!({"model": "gw", "prompt": "Hi"})),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 403);
    let body: Value = resp.json().await.unwrap();
    common::assert_error_shape(&body, "403");
    assert_eq!(body["error"]["param"], "model");
    assert_eq!(up.calls(), 0);

    // Too large a body: 413 before anything is parsed.
    let resp = post(&srv, Some(&key), path, vec![b' '; 9 * 1024]).await;
    assert_eq!(resp.status().as_u16(), 413);
    let body: Value = resp.json().await.unwrap();
    common::assert_error_shape(&body, "413");
    assert_eq!(body["error"]["code"], "request_too_large");

    // Not JSON: the native handler's precise 400.
    let resp = post(&srv, Some(&key), path, b"{\"model\": ".to_vec()).await;
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.unwrap();
    common::assert_error_shape(&body, "400");
    assert_eq!(body["error"]["code"], "invalid_json");

    // A native model on the same endpoint: served by the engine.
    let ask = json!({"model": common::MODEL, "prompt": "Hi", "max_tokens": 2, "temperature": 0});
    let resp = post(&srv, Some(&key), path, json_body(ask)).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .starts_with("entry-test-"));
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["usage"]["completion_tokens"], 2);
    assert_eq!(up.calls(), 0);

    // Four requests, each through one door.
    assert_eq!(door_count(&srv, path).await - before, 4.0);
    // Metered once each: the refused ones with no tokens, the answer with its own.
    let rows = usage_once(&srv, &key, 4).await;
    let native = rows
        .iter()
        .find(|r| r["group"] == common::MODEL)
        .expect("the native row");
    assert_eq!(native["completion_tokens"], 2, "{rows:?}");
}
