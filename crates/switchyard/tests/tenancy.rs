//! Tenancy across real processes: two servers sharing Redis enforce one
//! combined rate limit, and usage survives a SIGTERM in the middle of
//! traffic — one record per answered request, on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic

mod common;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, spawn_server, TEST_KEY};
use serde_json::{json, Value};
use switchyard_db::testing::TestDb;

fn config(extra: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        f,
        "models:\n  - {{id: smollm2-135m-instruct, path: models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf}}\n{extra}"
    )
    .unwrap();
    f
}

fn serve(cfg: &tempfile::NamedTempFile) -> (Child, String) {
    let (child, base) = spawn_server(
        bin()
            .args(["serve", "--host", "127.0.0.1", "--port", "0", "--config"])
            .arg(cfg.path())
            .stderr(Stdio::null()),
    )
    .unwrap();
    (child, base)
}

async fn ready(client: &reqwest::Client, base: &str) {
    let until = Instant::now() + Duration::from_secs(60);
    while !client
        .get(format!("{base}/ready"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < until, "{base} never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn post(client: &reqwest::Client, base: &str, key: &str, path: &str, body: Value) -> (u16, Value) {
    let resp = client
        .post(format!("{base}{path}"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

fn stop(child: &mut Child) {
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
}

#[tokio::test]
async fn two_servers_sharing_redis_enforce_one_limit() {
    let db = TestDb::sqlite().unwrap();
    let prefix = format!("switchyard-test-{}", uuid::Uuid::new_v4().simple());
    let redis = std::env::var("SWITCHYARD_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let cfg = config(&format!(
        "storage: {{url: '{}'}}\ntenancy: {{limiter: {{kind: redis, url: '{redis}', prefix: {prefix}}}}}",
        db.url
    ));
    let (mut a, base_a) = serve(&cfg);
    let (mut b, base_b) = serve(&cfg);
    let client = reqwest::Client::new();
    ready(&client, &base_a).await;
    ready(&client, &base_b).await;
    let (code, _) = post(
        &client,
        &base_a,
        TEST_KEY,
        "/admin/tenants",
        json!({"name": "shared", "tier": "starter"}),
    )
    .await;
    assert_eq!(code, 201);
    let (code, k) = post(
        &client,
        &base_a,
        TEST_KEY,
        "/admin/keys",
        json!({"tenant": "shared", "name": "k", "overrides": {"requests_per_minute": 10}}),
    )
    .await;
    assert_eq!(code, 201, "{k}");
    let key = k["key"].as_str().unwrap().to_string();
    let mut allowed = 0;
    for i in 0..30 {
        let base = if i % 2 == 0 { &base_a } else { &base_b };
        let resp = client
            .get(format!("{base}/v1/models"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        match resp.status().as_u16() {
            200 => allowed += 1,
            429 => assert!(resp.headers().contains_key("retry-after")),
            other => panic!("status {other}"),
        }
    }
    assert_eq!(allowed, 10, "one limit across both replicas");
    stop(&mut a);
    stop(&mut b);
    a.wait().unwrap();
    b.wait().unwrap();
}

/// N requests in flight, SIGTERM, then the database holds exactly one
/// record per answered request with its tokens.
async fn usage_survives_sigterm(db: &TestDb) {
    let cfg = config(&format!("storage: {{url: '{}'}}\nengine: {{max_num_seqs: 2}}", db.url));
    let (mut child, base) = serve(&cfg);
    let client = reqwest::Client::new();
    ready(&client, &base).await;
    let n = 16;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (client, base) = (client.clone(), base.clone());
            tokio::spawn(async move {
                let body = json!({"model": "smollm2-135m-instruct", "prompt": format!("Count to {i}:"), "max_tokens": 24, "temperature": 0});
                let answer = post(&client, &base, TEST_KEY, "/v1/completions", body).await;
                (answer, Instant::now())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop(&mut child);
    let killed = Instant::now();
    let (mut answered, mut prompt, mut completion, mut after) = (0, 0, 0, 0);
    for t in tasks {
        let ((code, body), at) = t.await.unwrap();
        after += usize::from(at > killed);
        assert_eq!(code, 200, "{body}");
        answered += 1;
        prompt += body["usage"]["prompt_tokens"].as_i64().unwrap();
        completion += body["usage"]["completion_tokens"].as_i64().unwrap();
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(answered, n, "requests in flight at SIGTERM are finished");
    assert!(after > 0, "SIGTERM came after the traffic, not during it");
    let store = switchyard_db::Db::open(&db.url, 1).await.unwrap();
    let groups = store
        .usage_grouped(None, 0, i64::MAX, switchyard_db::tenancy::UsageGroupBy::Model)
        .await
        .unwrap();
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0].requests, n as i64, "one record per request");
    assert_eq!(
        (groups[0].prompt_tokens, groups[0].completion_tokens),
        (prompt, completion)
    );
    store.close().await;
}

#[tokio::test]
async fn usage_survives_sigterm_on_sqlite() {
    usage_survives_sigterm(&TestDb::sqlite().unwrap()).await;
}

#[tokio::test]
async fn usage_survives_sigterm_on_postgres() {
    let db = TestDb::postgres().await.expect("PostgreSQL for the tests");
    usage_survives_sigterm(&db).await;
    db.drop_db().await.unwrap();
}

#[tokio::test]
async fn tenants_and_keys_from_the_command_line() {
    let cfg = config("");
    let (mut child, base) = serve(&cfg);
    let client = reqwest::Client::new();
    ready(&client, &base).await;
    let cli = |args: &[&str]| {
        let out = bin().args(args).args(["--url", &base]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    assert!(cli(&["tenants", "create", "acme", "--tier", "business"]).contains("acme (business)"));
    assert!(cli(&["tenants", "list"]).contains("acme"));
    let key = cli(&["keys", "create", "acme", "--name", "ci"]).trim().to_string();
    assert!(key.starts_with("sy-"), "{key}");
    let models = |key: String| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            client
                .get(format!("{base}/v1/models"))
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(models(key.clone()).await, 200);
    let id = key.trim_start_matches("sy-").split('.').next().unwrap().to_string();
    let listed = cli(&["keys", "list", "--tenant", "acme"]);
    assert!(
        listed.contains(&id) && listed.contains("live") && !listed.contains(&key),
        "{listed}"
    );
    assert!(cli(&["keys", "revoke", &id]).contains("revoked"));
    assert_eq!(models(key).await, 401);
    assert!(cli(&["usage", "--csv"]).starts_with("model,requests"));
    stop(&mut child);
    child.wait().unwrap();
}
