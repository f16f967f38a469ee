//! Models pulled from a model store: a local folder (`file://`) and a real
//! S3-compatible server on 127.0.0.1 (moto's server mode, installed by
//! scripts/test.sh), checksums, and a restart that downloads nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use object_store::ObjectStore;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use switchyard_server::config::{Config, ModelConfig, ModelKind};

const GGUF: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn stored(id: &str, source: String, cache: &Path, sha256: BTreeMap<String, String>) -> ModelConfig {
    ModelConfig {
        preload: false,
        source: Some(source),
        sha256,
        ..ModelConfig::new(id, ModelKind::Chat, cache.join(GGUF))
    }
}

fn sum(path: &Path) -> String {
    format!("{:x}", Sha256::digest(std::fs::read(path).unwrap()))
}

async fn entry(srv: &common::TestServer, id: &str) -> Value {
    srv.admin_entry("/admin/models", id).await
}

async fn ask(srv: &common::TestServer, model: &str) -> (u16, Value) {
    srv.post(
        "/v1/chat/completions",
        json!({"model": model, "messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 6, "temperature": 0}),
    )
    .await
}

async fn start(models: Vec<ModelConfig>, tweak: impl FnOnce(&mut Config)) -> common::TestServer {
    common::start(move |c| {
        c.admin.enabled = true;
        c.models.retain(|m| m.kind == Some(ModelKind::Chat));
        c.models.extend(models);
        tweak(c);
    })
    .await
}

#[tokio::test]
async fn local_folder_store_downloads_once_and_checks_sums() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store/smollm2");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::copy(common::model_path(), store.join(GGUF)).unwrap();
    let url = format!("file://{}/", store.display());
    let good = BTreeMap::from([(GGUF.to_string(), sum(&common::model_path()))]);
    let cache = tmp.path().join("cache/smollm2");
    let model = stored("from-store", url.clone(), &cache, good);

    let srv = start(vec![model.clone()], |_| {}).await;
    let (code, want) = ask(&srv, common::MODEL).await;
    assert_eq!(code, 200);
    let (code, got) = ask(&srv, "from-store").await;
    assert_eq!(code, 200, "{got}");
    assert_eq!(got["choices"][0]["message"], want["choices"][0]["message"]);
    let e = entry(&srv, "from-store").await;
    assert_eq!(
        (e["status"].as_str(), e["downloaded_files"].as_u64()),
        (Some("ready"), Some(1)),
        "{e}"
    );
    assert_eq!(sum(&cache.join(GGUF)), sum(&common::model_path()));
    assert!(!cache.join(format!("{GGUF}.partial")).exists());
    drop(srv);

    // A restart finds the files in the cache: nothing is downloaded again.
    let again = start(vec![model], |_| {}).await;
    assert_eq!(ask(&again, "from-store").await.0, 200);
    let e = entry(&again, "from-store").await;
    assert_eq!(e["downloaded_files"], 0, "{e}");

    // A wrong checksum fails that model, with the reason, and nothing else.
    let bad = BTreeMap::from([(GGUF.to_string(), "00".repeat(32))]);
    let wrong = stored("wrong-sum", url, &tmp.path().join("cache/wrong"), bad);
    let srv = start(vec![wrong], |_| {}).await;
    let (code, body) = ask(&srv, "wrong-sum").await;
    assert_eq!(code, 503, "{body}");
    common::assert_error_shape(&body, "bad checksum");
    let e = entry(&srv, "wrong-sum").await;
    assert_eq!(e["status"], "failed");
    assert!(e["failure"].as_str().unwrap().contains("checksum mismatch"), "{e}");
    assert!(!tmp.path().join("cache/wrong").join(GGUF).exists());
    assert_eq!(ask(&srv, common::MODEL).await.0, 200);
    drop(srv);

    // An interrupted download resumes from its partial file: the kept bytes
    // are not fetched again. Shown twice: a good partial completes to the
    // right file; a partial whose kept bytes were damaged fails the
    // checksum (had it started over, the file would have been right).
    let bytes = std::fs::read(common::model_path()).unwrap();
    let half = bytes.len() / 2;
    let good = BTreeMap::from([(GGUF.to_string(), sum(&common::model_path()))]);
    for (name, damage) in [("resumed", false), ("damaged", true)] {
        let cache = tmp.path().join("cache").join(name);
        std::fs::create_dir_all(&cache).unwrap();
        let mut head = bytes[..half].to_vec();
        if damage {
            head[1000..2000].fill(0);
        }
        std::fs::write(cache.join(format!("{GGUF}.partial")), head).unwrap();
        let store_url = format!("file://{}/", store.display());
        let srv = start(vec![stored(name, store_url, &cache, good.clone())], |_| {}).await;
        let (code, body) = ask(&srv, name).await;
        let e = entry(&srv, name).await;
        if damage {
            assert_eq!(code, 503, "{body}");
            assert!(e["failure"].as_str().unwrap().contains("checksum mismatch"), "{e}");
        } else {
            assert_eq!(code, 200, "{body}");
            assert_eq!(sum(&cache.join(GGUF)), sum(&common::model_path()));
        }
    }
}

/// moto's S3 server on a free port, stopped when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_bin() -> PathBuf {
    let path = std::env::var_os("MOTO_SERVER").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
        home.join(".cache/switchyard/venv-moto/bin/moto_server")
    });
    assert!(
        path.exists(),
        "{} is missing: scripts/test.sh installs moto (or set MOTO_SERVER)",
        path.display()
    );
    path
}

async fn moto() -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(moto_bin())
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let endpoint = format!("http://127.0.0.1:{port}");
    let moto = Moto { child, endpoint };
    let until = Instant::now() + Duration::from_secs(60);
    while reqwest::get(&moto.endpoint).await.is_err() {
        assert!(Instant::now() < until, "moto did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    moto
}

#[tokio::test]
async fn s3_store_on_localhost_serves_a_model() {
    let moto = moto().await;
    let client = reqwest::Client::new();
    let code = client
        .put(format!("{}/models", moto.endpoint))
        .send()
        .await
        .unwrap()
        .status();
    assert!(code.is_success(), "create bucket: {code}");
    let options = BTreeMap::from([
        ("aws_endpoint".to_string(), moto.endpoint.clone()),
        ("allow_http".to_string(), "true".to_string()),
        ("aws_access_key_id".to_string(), "test".to_string()),
        ("aws_secret_access_key".to_string(), "test".to_string()),
        ("aws_region".to_string(), "us-east-1".to_string()),
    ]);
    let bucket = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name("models")
        .with_endpoint(&moto.endpoint)
        .with_allow_http(true)
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .with_region("us-east-1")
        .build()
        .unwrap();
    let bytes = std::fs::read(common::model_path()).unwrap();
    let key = object_store::path::Path::from(format!("smollm2/v1/{GGUF}"));
    bucket.put(&key, bytes.into()).await.unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("smollm2");
    let sums = BTreeMap::from([(GGUF.to_string(), sum(&common::model_path()))]);
    let model = stored("from-s3", "s3://models/smollm2/v1/".into(), &cache, sums);
    let srv = start(vec![model], move |c| c.registry.store_options = options).await;
    let (code, want) = ask(&srv, common::MODEL).await;
    assert_eq!(code, 200);
    let (code, got) = ask(&srv, "from-s3").await;
    assert_eq!(code, 200, "{got}");
    assert_eq!(got["choices"][0]["message"], want["choices"][0]["message"]);
    let e = entry(&srv, "from-s3").await;
    assert_eq!(e["downloaded_files"], 1, "{e}");
    assert_eq!(sum(&cache.join(GGUF)), sum(&common::model_path()));
}
