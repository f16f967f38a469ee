//! The real binary: `config check`, environment overrides, JSON logs that
//! carry the request id, and a clean stop on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

mod common;

use common::{bin, spawn_server, TEST_KEY};

#[test]
fn config_check_accepts_good_files_and_names_the_bad_field() -> anyhow::Result<()> {
    let mut good = tempfile::NamedTempFile::new()?;
    writeln!(good, "server:\n  port: 9000\ngeneration:\n  max_tokens: 64")?;
    let out = bin().args(["config", "check"]).arg(good.path()).output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let effective: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(effective["server"]["port"], 9000);
    assert_eq!(effective["generation"]["max_tokens"], 64);
    assert_eq!(effective["generation"]["temperature"], 0.7);

    let mut bad = tempfile::NamedTempFile::new()?;
    writeln!(bad, "server:\n  max_concurrent_requests: 0")?;
    let out = bin().args(["config", "check"]).arg(bad.path()).output()?;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.max_concurrent_requests"));

    // Passwords in database and Redis URLs are masked in the output.
    let mut secret = tempfile::NamedTempFile::new()?;
    writeln!(
        secret,
        "storage:\n  url: postgres://app:pg-s3cret@db:5432/sy\ntenancy:\n  limiter:\n    kind: redis\n    url: redis://:rd-s3cret@cache:6379"
    )?;
    let out = bin().args(["config", "check"]).arg(secret.path()).output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(!shown.contains("s3cret"), "{shown}");
    let effective: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(effective["storage"]["url"], "postgres://app:***@db:5432/sy");
    assert_eq!(effective["tenancy"]["limiter"]["url"], "redis://:***@cache:6379");

    let out = bin()
        .args(["config", "check"])
        .arg(good.path())
        .env("SWITCHYARD_SERVER__PORT", "not-a-port")
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("port"));
    Ok(())
}

#[tokio::test]
async fn serve_honours_env_and_logs_request_ids_as_json() -> anyhow::Result<()> {
    let (child, base) = spawn_server(
        bin()
            .args(["serve", "--host", "127.0.0.1", "--port", "0"])
            .env("SWITCHYARD_GENERATION__MAX_TOKENS", "3")
            .stderr(Stdio::piped()),
    )?;
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if client
            .get(format!("{base}/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let ask = serde_json::json!({"model": "smollm2-135m-instruct", "prompt": "Hi", "max_tokens": 1});
    let refused = client.post(format!("{base}/v1/completions")).json(&ask).send().await?;
    assert_eq!(refused.status(), 401, "no key");
    let wrong = TEST_KEY.replace(".A", ".B");
    let refused = client
        .post(format!("{base}/v1/completions"))
        .bearer_auth(&wrong)
        .json(&ask)
        .send()
        .await?;
    assert_eq!(refused.status(), 401, "unknown key");
    let resp = client
        .post(format!("{base}/v1/completions"))
        .bearer_auth(TEST_KEY)
        .header("x-request-id", "req-7f3a")
        .json(&serde_json::json!({"model": "smollm2-135m-instruct", "prompt": "Count: 1, 2, 3,", "temperature": 0}))
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await?;
    assert_eq!(
        body["usage"]["completion_tokens"], 3,
        "SWITCHYARD_GENERATION__MAX_TOKENS ignored: {body}"
    );

    // SIGTERM: drain and exit cleanly.
    Command::new("kill").arg("-TERM").arg(child.id().to_string()).status()?;
    let out = child.wait_with_output()?;
    assert!(out.status.success());
    let logs = String::from_utf8_lossy(&out.stderr);
    let secret = TEST_KEY.split('.').nth(1).unwrap_or(TEST_KEY);
    assert!(
        !logs.contains(secret) && !logs.contains(&wrong),
        "a key reached the logs"
    );
    let lines: Vec<serde_json::Value> = logs.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    // The access line (written after the response) carries the id and the status.
    assert!(
        lines.iter().any(|l| l["span"]["request_id"] == "req-7f3a"
            && l["fields"]["message"] == "finished processing request"
            && l["fields"]["status"] == 200),
        "no access line with the request id:\n{logs}"
    );
    assert!(lines.iter().any(|l| l["fields"]["message"] == "stopped"));
    Ok(())
}

/// `switchyard models pull` downloads from a `file://` store with a progress
/// line and loads; `list` shows it; `unload --wait` stops it.
#[tokio::test]
async fn models_cli_pulls_lists_and_unloads() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let gguf = "SmolLM2-135M-Instruct.Q4_1.gguf";
    let tmp = tempfile::tempdir()?;
    let store = tmp.path().join("store");
    std::fs::create_dir_all(&store)?;
    std::fs::copy(root.join("models/smollm2-135m-instruct").join(gguf), store.join(gguf))?;
    let mut cfg = tempfile::NamedTempFile::new()?;
    writeln!(
        cfg,
        "admin: {{enabled: true}}\nregistry: {{cache_dir: {}}}\ndefault_model: pulled\nmodels:\n  - {{id: pulled, kind: chat, preload: false, path: {}, source: 'file://{}/'}}",
        tmp.path().join("registered").display(),
        tmp.path().join("cache").join(gguf).display(),
        store.display()
    )?;
    let (mut child, base) = spawn_server(
        bin()
            .args([
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--log-format",
                "plain",
                "--config",
            ])
            .arg(cfg.path())
            .stderr(Stdio::null()),
    )?;
    let models = |args: &[&str]| bin().arg("models").args(args).args(["--url", &base]).output();

    let out = models(&["list"])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("pulled") && text.contains("registered"), "{text}");

    let out = models(&["pull", "pulled"])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "pulled: ready");
    assert!(tmp.path().join("cache").join(gguf).exists());

    let out = models(&["list"])?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("ready") && text.contains("MiB"), "{text}");

    let out = models(&["unload", "pulled", "--wait"])?;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "pulled: stopped");
    let out = models(&["load", "nope"])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));

    // A second version straight from the store, told to be chat by its file.
    let source = format!("file://{}/", store.display());
    let out = models(&["register", "pulled", "--version", "2", "--source", &source, "--lazy"])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "pulled:2: chat gguf (registered)"
    );
    let out = models(&["pull", "pulled:2"])?;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "pulled:2: ready");
    assert!(tmp.path().join("registered/pulled/2").join(gguf).exists());
    let out = models(&["delete", "pulled"])?;
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("409"),
        "config versions stay"
    );
    let out = models(&["delete", "pulled:2"])?;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "pulled:2: deleted");
    assert!(
        !tmp.path().join("registered/pulled/2").exists(),
        "its downloaded files went too"
    );

    child.kill()?;
    child.wait()?;
    Ok(())
}
