//! A real server on 127.0.0.1:0 with the real default model, for tests.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic
#![allow(dead_code)]

pub mod embed;

use std::path::PathBuf;

use serde_json::Value;
use switchyard_server::config::{
    Config, DEFAULT_EMBEDDING_MODEL_ID, DEFAULT_EMBEDDING_MODEL_PATH, DEFAULT_MODEL_ID, DEFAULT_MODEL_PATH,
};
use switchyard_server::state::AppState;

pub const MODEL: &str = DEFAULT_MODEL_ID;
pub const EMBED_MODEL: &str = DEFAULT_EMBEDDING_MODEL_ID;

pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    pub state: AppState,
    task: tokio::task::JoinHandle<()>,
    _data: Option<tempfile::TempDir>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn model_path() -> PathBuf {
    let p = repo_root().join(DEFAULT_MODEL_PATH);
    assert!(p.exists(), "{} is missing: run scripts/fetch-models.sh", p.display());
    p
}

/// The default embedding model's folder (all-MiniLM-L6-v2).
pub fn minilm_dir() -> PathBuf {
    let p = repo_root().join(DEFAULT_EMBEDDING_MODEL_PATH);
    assert!(
        p.join("model.safetensors").exists(),
        "{} is missing: run scripts/fetch-models.sh",
        p.display()
    );
    p
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Starts the router on a free port with the default models loaded (the
/// chat model and the embedding model). Relative model paths, the defaults'
/// and any a tweak adds, are taken from the repository root.
pub async fn start(tweak: impl FnOnce(&mut Config)) -> TestServer {
    let mut cfg = Config::default();
    model_path();
    minilm_dir();
    // Each server its own database, unless the tweak names one.
    let data = tempfile::tempdir().expect("temporary data folder");
    cfg.storage.data_dir = data.path().to_path_buf();
    // Tests of other things call without keys; tests/tenancy.rs turns it on.
    cfg.tenancy.auth = switchyard_tenancy::AuthMode::Disabled;
    tweak(&mut cfg);
    for m in &mut cfg.models {
        if m.path.is_relative() && !m.path.as_os_str().is_empty() {
            m.path = repo_root().join(&m.path);
        }
    }
    let state = AppState::open(cfg).await.expect("server state");
    state.models.load_all().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    // The connection service the binary serves: the proxied path and the router.
    let app = axum::ServiceExt::into_make_service(switchyard_server::Entry::new(state.clone()));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    TestServer {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        state,
        task,
        _data: Some(data),
    }
}

impl TestServer {
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.post_raw(path, serde_json::to_vec(&body).unwrap_or_default()).await
    }

    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> (u16, Value) {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request sent");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// The entry for model `id` in an admin listing (`/admin/models`,
    /// `/admin/stats`).
    pub async fn admin_entry(&self, path: &str, id: &str) -> Value {
        let (code, body) = self.get(path).await;
        assert_eq!(code, 200, "{body}");
        let v: Value = serde_json::from_str(&body).expect("admin JSON");
        let data = v["data"].as_array().cloned().unwrap_or_default();
        data.into_iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("no {id} in {body}"))
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request sent");
        (resp.status().as_u16(), resp.text().await.unwrap_or_default())
    }

    /// Sends a streaming request; returns the parsed `data:` payloads (the
    /// final `[DONE]` as a JSON string).
    pub async fn stream(&self, path: &str, body: Value) -> Vec<Value> {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("request sent");
        assert_eq!(resp.status().as_u16(), 200);
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        let text = resp.text().await.unwrap_or_default();
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap_or(Value::String(d.to_string())))
            .collect()
    }
}

/// Upstreams on 127.0.0.1 (`switchyard_gateway::testing`) and routes over
/// them, with the admin API on; the configured models stay.
pub fn routes(
    c: &mut Config,
    upstreams: &[(&str, &switchyard_gateway::testing::Upstream)],
    routes: &[(&str, &[&str])],
) {
    use switchyard_gateway::testing as up;
    c.admin.enabled = true;
    c.upstreams = upstreams.iter().map(|(name, u)| up::config(name, &u.url)).collect();
    c.routes = routes
        .iter()
        .map(|(id, ds)| switchyard_server::config::RouteConfig {
            id: id.to_string(),
            deployments: ds.iter().map(|d| d.to_string()).collect(),
        })
        .collect();
}

/// Asserts OpenAI's error shape.
pub fn assert_error_shape(body: &Value, what: &str) {
    let e = &body["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: no message in {body}"
    );
    assert!(e["type"].as_str().is_some(), "{what}: no type in {body}");
    let obj = e.as_object().expect("error object");
    assert!(
        obj.contains_key("param") && obj.contains_key("code"),
        "{what}: param/code missing in {body}"
    );
}

/// Asserts a 503 that asks to retry after one second, in OpenAI's error
/// shape; returns the body.
pub async fn assert_busy(resp: reqwest::Response, what: &str) -> Value {
    assert_eq!(resp.status().as_u16(), 503, "{what}");
    assert_eq!(
        resp.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1"),
        "{what}"
    );
    let body: Value = resp.json().await.unwrap_or_default();
    assert_error_shape(&body, what);
    body
}

pub fn chat(content: &str, extra: Value) -> Value {
    let mut body =
        serde_json::json!({"model": MODEL, "messages": [{"role": "user", "content": content}], "temperature": 0});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    body
}

/// Sum of a metric's samples, optionally only those with a label value.
pub fn metric(text: &str, name: &str, label: &str) -> f64 {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("metrics parse as Prometheus text");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && (label.is_empty() || s.labels.values().any(|v| v == label)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}
