//! Model versions through the admin API: registration from a bare folder or
//! a manifest, `name` (newest ready) versus `name:version`, per-model
//! defaults from `model.yaml`, delete, and a restart that restores what was
//! registered — on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic

mod common;

use std::path::Path;

use serde_json::{json, Value};
use switchyard_db::testing::TestDb;
use switchyard_server::config::{Config, ModelConfig, ModelKind};

/// A folder holding only a link to the default GGUF (and what `extra` writes).
fn gguf_folder(extra: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(common::model_path(), dir.path().join("smol.gguf")).unwrap();
    for (name, text) in extra {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// A sentence-transformers folder made of links to the default MiniLM files.
fn minilm_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(common::minilm_dir()).unwrap() {
        let e = e.unwrap();
        std::os::unix::fs::symlink(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    dir
}

fn setup(c: &mut Config, data: &Path, db: Option<&str>) {
    c.admin.enabled = true;
    c.storage.data_dir = data.to_path_buf();
    c.storage.url = db.map(str::to_string);
    c.models.retain(|m| m.kind == Some(ModelKind::Chat));
    c.models[0].version = Some("1".into());
}

async fn register(srv: &common::TestServer, body: Value) -> (u16, Value) {
    srv.post("/admin/models", body).await
}

async fn requests(srv: &common::TestServer, id: &str) -> u64 {
    srv.admin_entry("/admin/stats", id).await["requests"].as_u64().unwrap()
}

async fn chat(srv: &common::TestServer, model: &str) -> Value {
    let (code, body) = srv
        .post(
            "/v1/chat/completions",
            json!({"model": model, "messages": [{"role": "user", "content": "Name a colour."}], "temperature": 0}),
        )
        .await;
    assert_eq!(code, 200, "{model}: {body}");
    body
}

/// The scenario, on the database at `db` (None: SQLite in `data`).
async fn versions_survive_a_restart(db: Option<&str>) {
    let data = tempfile::tempdir().unwrap();
    let v2 = gguf_folder(&[(
        "model.yaml",
        "version: '2'\ndefaults: {max_tokens: 3, temperature: 0}\nlabels: {stage: canary}\n",
    )]);
    let embed = minilm_folder();
    let srv = common::start(|c| setup(c, data.path(), db)).await;
    let name = common::MODEL;

    // Registered from its manifest (version and defaults), not loaded yet.
    let (code, body) = register(&srv, json!({"id": name, "path": v2.path(), "preload": false})).await;
    assert_eq!(code, 201, "{body}");
    let v2_id = format!("{name}:2");
    assert_eq!(body["id"], v2_id.as_str());
    assert_eq!(body["kind"], "chat");
    assert_eq!(body["format"], "gguf");
    assert_eq!(body["labels"]["stage"], "canary");
    assert_eq!(body["status"], "registered");
    let (code, body) = register(&srv, json!({"id": name, "path": v2.path()})).await;
    assert_eq!(code, 409, "{body}");
    common::assert_error_shape(&body, "twice");

    // A bare name goes to the newest *ready* version: still version 1.
    chat(&srv, name).await;
    assert_eq!(
        (requests(&srv, &format!("{name}:1")).await, requests(&srv, &v2_id).await),
        (1, 0)
    );
    // Asked by version, version 2 loads, and its manifest's defaults apply.
    let answer = chat(&srv, &v2_id).await;
    assert_eq!(answer["usage"]["completion_tokens"], 3, "{answer}");
    assert_eq!(answer["model"], v2_id.as_str());
    chat(&srv, name).await;
    assert_eq!(
        requests(&srv, &v2_id).await,
        2,
        "the bare name now resolves to version 2"
    );
    let (code, listed) = srv.get(&format!("/v1/models/{name}")).await;
    assert_eq!(code, 200);
    assert_eq!(serde_json::from_str::<Value>(&listed).unwrap()["version"], "2");

    // A bare sentence-transformers folder is told to be an embedding model.
    let (code, body) = register(&srv, json!({"id": "minilm", "version": "a", "path": embed.path()})).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["kind"], "embedding");
    let (code, body) = srv
        .post("/v1/embeddings", json!({"model": "minilm", "input": "hi"}))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["data"][0]["embedding"].as_array().unwrap().len(), 384);
    let (code, body) = srv.post("/admin/unload/minilm:a?wait=true", json!({})).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("stopped")), "{body}");
    drop(srv);

    // Restarted on the same database: both versions are back; version 2 was
    // ready, so it loads again; the stopped embedding model waits for a request.
    let srv = common::start(|c| setup(c, data.path(), db)).await;
    let e = srv.admin_entry("/admin/models", &v2_id).await;
    assert_eq!(
        (e["status"].as_str(), e["origin"].as_str()),
        (Some("ready"), Some("admin")),
        "{e}"
    );
    assert_eq!(e["labels"]["stage"], "canary");
    assert_eq!(
        srv.admin_entry("/admin/models", "minilm:a").await["status"],
        "registered"
    );
    assert_eq!(chat(&srv, &v2_id).await["usage"]["completion_tokens"], 3);

    // Delete: the config's version cannot be; an admin one drains and goes.
    let resp = srv
        .client
        .delete(format!("{}/admin/models/{name}:1", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 409);
    let resp = srv
        .client
        .delete(format!("{}/admin/models/{v2_id}", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let (code, _) = srv.get(&format!("/v1/models/{v2_id}")).await;
    assert_eq!(code, 404);
    chat(&srv, name).await;
    assert_eq!(
        requests(&srv, &format!("{name}:1")).await,
        1,
        "the bare name falls back to version 1"
    );
    drop(srv);
    let srv = common::start(|c| setup(c, data.path(), db)).await;
    let (_, listing) = srv.get("/admin/models").await;
    assert!(!listing.contains(&v2_id), "deleted versions stay deleted: {listing}");
    assert!(listing.contains("minilm:a"), "{listing}");
}

#[tokio::test]
async fn versions_survive_a_restart_on_sqlite() {
    versions_survive_a_restart(None).await;
}

#[tokio::test]
async fn versions_survive_a_restart_on_postgres() {
    let db = TestDb::postgres().await.expect("PostgreSQL for the tests");
    versions_survive_a_restart(Some(&db.url)).await;
    db.drop_db().await.unwrap();
}

#[tokio::test]
async fn registrations_that_cannot_be_served_are_refused_by_name() {
    let srv = common::start(|c| {
        c.admin.enabled = true;
        c.models.retain(|m| m.kind == Some(ModelKind::Chat));
    })
    .await;
    let empty = tempfile::tempdir().unwrap();
    let two = gguf_folder(&[]);
    std::os::unix::fs::symlink(common::model_path(), two.path().join("other.gguf")).unwrap();
    let bad_manifest = gguf_folder(&[("model.yaml", "kind: chat\ndefaults: {temprature: 1}\n")]);
    for (body, want) in [
        (
            json!({"id": "x", "version": "1", "path": empty.path()}),
            "cannot tell what model",
        ),
        (json!({"id": "x", "version": "1", "path": two.path()}), "several .gguf"),
        (
            json!({"id": "x", "version": "1", "path": bad_manifest.path()}),
            "defaults",
        ),
        (json!({"id": "x:1", "path": two.path()}), "model.id"),
        (
            json!({"id": "x", "version": "1", "path": "/nonexistent/folder"}),
            "does not exist",
        ),
        (
            json!({"id": "x", "version": "1", "path": two.path(), "kind": "chat", "embedding": {}}),
            "embedding",
        ),
        (json!({"id": "x", "version": "1", "pth": "a"}), "pth"),
    ] {
        let (code, err) = register(&srv, body.clone()).await;
        assert_eq!(code, 400, "{body}: {err}");
        common::assert_error_shape(&err, want);
        let msg = err["error"]["message"].as_str().unwrap();
        assert!(msg.contains(want), "{body}: {msg}");
    }
    // A folder with one GGUF and no manifest needs nothing else.
    let one = gguf_folder(&[]);
    let config = ModelConfig {
        kind: None,
        version: Some("3".into()),
        preload: false,
        ..ModelConfig::new("bare", ModelKind::Chat, one.path())
    };
    let (code, body) = register(&srv, serde_json::to_value(&config).unwrap()).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["kind"], "chat");
    assert!(body["path"].as_str().unwrap().ends_with("smol.gguf"), "{body}");
    chat(&srv, "bare").await;
}
