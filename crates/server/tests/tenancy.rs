//! Tenancy through the HTTP API: every way a key is refused (401), scopes
//! (403), tenant isolation and model allow-lists (403), rate limits with
//! OpenAI's headers (429), monthly budgets (429), and usage read back.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic

mod common;

use serde_json::{json, Value};
use switchyard_tenancy::AuthMode;

/// A well-formed key the server adopts as its first admin key.
const ADMIN: &str = "sy-00000000000000ad.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

async fn start() -> common::TestServer {
    let srv = common::start(|c| {
        c.tenancy.auth = AuthMode::Enabled;
        c.admin.bootstrap_key = "env:SWITCHYARD_TEST_ADMIN_KEY_UNSET".into();
    })
    .await;
    // Adopt the admin key the way the environment would give it.
    srv.state.tenancy.admin.ensure_admin_key(Some(ADMIN)).await.unwrap();
    srv
}

async fn call(srv: &common::TestServer, key: Option<&str>, method: &str, path: &str, body: Value) -> reqwest::Response {
    let url = format!("{}{path}", srv.base);
    let mut req = match method {
        "GET" => srv.client.get(url),
        _ => srv.client.post(url).json(&body),
    };
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send().await.unwrap()
}

async fn status_and_body(resp: reqwest::Response) -> (u16, Value) {
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

/// Makes a tenant and one key for it; returns the key.
async fn tenant_key(srv: &common::TestServer, tenant: Value, key: Value) -> String {
    let (code, t) = status_and_body(call(srv, Some(ADMIN), "POST", "/admin/tenants", tenant).await).await;
    assert_eq!(code, 201, "{t}");
    let mut key = key;
    key["tenant"] = t["name"].clone();
    let (code, k) = status_and_body(call(srv, Some(ADMIN), "POST", "/admin/keys", key).await).await;
    assert_eq!(code, 201, "{k}");
    k["key"].as_str().unwrap().to_string()
}

fn ask(model: &str) -> Value {
    json!({"model": model, "prompt": "Hi", "max_tokens": 2, "temperature": 0})
}

#[tokio::test]
async fn keys_are_refused_by_reason_and_scopes_are_enforced() {
    let srv = start().await;
    let key = tenant_key(&srv, json!({"name": "a", "tier": "enterprise"}), json!({"name": "k"})).await;
    let expired = tenant_key(
        &srv,
        json!({"name": "b", "tier": "enterprise"}),
        json!({"name": "old", "expires_at": 1}),
    )
    .await;
    let revoked = tenant_key(
        &srv,
        json!({"name": "c", "tier": "enterprise"}),
        json!({"name": "gone"}),
    )
    .await;
    let id = revoked.trim_start_matches("sy-").split('.').next().unwrap().to_string();
    let (code, _) = status_and_body(
        call(
            &srv,
            Some(ADMIN),
            "POST",
            &format!("/admin/keys/{id}/revoke"),
            json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(code, 200);
    let unknown = key.replace(&key[key.len() - 4..], "AAAA");
    for (what, k) in [
        ("missing", None),
        ("malformed", Some("sk-not-ours")),
        ("unknown", Some(unknown.as_str())),
        ("revoked", Some(revoked.as_str())),
        ("expired", Some(expired.as_str())),
    ] {
        let (code, body) = status_and_body(call(&srv, k, "POST", "/v1/completions", ask(common::MODEL)).await).await;
        assert_eq!(code, 401, "{what}: {body}");
        common::assert_error_shape(&body, what);
        assert_eq!(body["error"]["type"], "authentication_error");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(what),
            "{what}: {body}"
        );
        if let Some(k) = k {
            assert!(!body.to_string().contains(k), "the key is echoed");
        }
    }
    let (code, body) =
        status_and_body(call(&srv, Some(&key), "POST", "/v1/completions", ask(common::MODEL)).await).await;
    assert_eq!(code, 200, "{body}");
    // An inference key on an admin route: 403; the admin key may.
    let (code, body) = status_and_body(call(&srv, Some(&key), "GET", "/admin/models", json!({})).await).await;
    assert_eq!(code, 403, "{body}");
    common::assert_error_shape(&body, "scope");
    let (code, _) = status_and_body(call(&srv, Some(ADMIN), "GET", "/admin/models", json!({})).await).await;
    assert_eq!(code, 200);
    // Health and metrics stay open.
    let (code, _) = srv.get("/health").await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn tenants_see_only_their_usage_and_their_models() {
    let srv = start().await;
    let a = tenant_key(
        &srv,
        json!({"name": "ta", "tier": "enterprise", "models": [common::MODEL]}),
        json!({"name": "a"}),
    )
    .await;
    let b = tenant_key(&srv, json!({"name": "tb", "tier": "enterprise"}), json!({"name": "b"})).await;
    let (code, _) = status_and_body(call(&srv, Some(&a), "POST", "/v1/completions", ask(common::MODEL)).await).await;
    assert_eq!(code, 200);
    let (code, body) = status_and_body(
        call(
            &srv,
            Some(&a),
            "POST",
            "/v1/embeddings",
            json!({"model": common::EMBED_MODEL, "input": "x"}),
        )
        .await,
    )
    .await;
    assert_eq!(code, 403, "outside the allow-list: {body}");
    assert_eq!(body["error"]["param"], "model");
    let (code, _) = status_and_body(
        call(
            &srv,
            Some(&b),
            "POST",
            "/v1/embeddings",
            json!({"model": common::EMBED_MODEL, "input": "x"}),
        )
        .await,
    )
    .await;
    assert_eq!(code, 200, "tenant b has no allow-list");

    // Usage is written in the background; wait for a's record.
    let tenants: Value = call(&srv, Some(ADMIN), "GET", "/admin/tenants", json!({}))
        .await
        .json()
        .await
        .unwrap();
    let id_of = |name: &str| {
        tenants["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (ta, tb) = (id_of("ta"), id_of("tb"));
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let own = loop {
        let (code, body) = status_and_body(call(&srv, Some(&a), "GET", "/v1/usage", json!({})).await).await;
        assert_eq!(code, 200, "{body}");
        if body["data"].as_array().is_some_and(|d| d.len() == 2) {
            break body;
        }
        assert!(std::time::Instant::now() < until, "a's usage never arrived");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let rows = own["data"].as_array().unwrap();
    let group = |m: &str| rows.iter().find(|r| r["group"] == m).cloned().unwrap_or_default();
    assert_eq!(rows.len(), 2, "the answered and the refused request: {own}");
    assert_eq!(group(common::MODEL)["requests"], 1);
    assert_eq!(group(common::MODEL)["completion_tokens"], 2);
    assert_eq!(group(common::EMBED_MODEL)["total_tokens"], 0, "refused: {own}");
    // a cannot read b's usage; the admin can, as CSV too.
    let (code, body) =
        status_and_body(call(&srv, Some(&a), "GET", &format!("/v1/usage?tenant={tb}"), json!({})).await).await;
    assert_eq!(code, 403, "{body}");
    let (code, _) =
        status_and_body(call(&srv, Some(&a), "GET", &format!("/v1/usage?tenant={ta}"), json!({})).await).await;
    assert_eq!(code, 200);
    let csv = call(
        &srv,
        Some(ADMIN),
        "GET",
        &format!("/admin/usage?tenant={ta}&format=csv"),
        json!({}),
    )
    .await;
    assert_eq!(csv.status().as_u16(), 200);
    let text = csv.text().await.unwrap();
    assert!(
        text.starts_with("model,requests,") && text.lines().count() == 3,
        "{text}"
    );
    assert!(text.contains(&format!("{},1,1,2,3,0", common::MODEL)), "{text}");
}

#[tokio::test]
async fn a_key_past_its_limit_gets_429_with_openai_headers() {
    let srv = start().await;
    let key = tenant_key(
        &srv,
        json!({"name": "limited", "tier": "starter"}),
        json!({"name": "k", "overrides": {"requests_per_minute": 3}}),
    )
    .await;
    for left in (0..3).rev() {
        let resp = call(&srv, Some(&key), "GET", "/v1/usage", json!({})).await;
        assert_eq!(resp.status().as_u16(), 200);
        let h = resp.headers();
        assert_eq!(h["x-ratelimit-limit-requests"], "3");
        assert_eq!(h["x-ratelimit-remaining-requests"], left.to_string().as_str());
        assert!(h["x-ratelimit-reset-requests"].to_str().unwrap().ends_with('s'));
    }
    let resp = call(&srv, Some(&key), "GET", "/v1/usage", json!({})).await;
    assert_eq!(resp.status().as_u16(), 429);
    let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    assert_eq!(resp.headers()["x-ratelimit-remaining-requests"], "0");
    let body: Value = resp.json().await.unwrap();
    common::assert_error_shape(&body, "429");
    assert_eq!(body["error"]["type"], "rate_limit_error");
}

#[tokio::test]
async fn an_exhausted_monthly_budget_says_which() {
    let srv = start().await;
    let key = tenant_key(
        &srv,
        json!({"name": "thrifty", "tier": "enterprise", "budgets": {"monthly_tokens": 3}}),
        json!({"name": "k"}),
    )
    .await;
    let (code, body) =
        status_and_body(call(&srv, Some(&key), "POST", "/v1/completions", ask(common::MODEL)).await).await;
    assert_eq!(code, 200, "{body}");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (code, body) =
            status_and_body(call(&srv, Some(&key), "POST", "/v1/completions", ask(common::MODEL)).await).await;
        if code == 429 {
            let msg = body["error"]["message"].as_str().unwrap();
            assert!(msg.contains("monthly token budget"), "{msg}");
            assert_eq!(body["error"]["code"], "quota_exceeded");
            break;
        }
        assert_eq!(code, 200, "{body}");
        assert!(std::time::Instant::now() < until, "the budget never ran out");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
