//! Retries against a real upstream: what is retried, how often, how long.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic

mod common;

use std::time::{Duration, Instant};

use common::*;
use switchyard_gateway::StatusCode;
use switchyard_gateway::{Deployment, GatewayError, TimeoutPhase};

#[tokio::test]
async fn retries_a_500_then_succeeds_with_usage_once() {
    let up = Upstream::start(vec![status(500), ok()]).await;
    let d = Deployment::new(config("a", &up.url)).unwrap();
    let r = within(5, d.call(&chat(false))).await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!((r.attempts, up.calls()), (2, 2));
    assert_eq!(r.deployment, "a");
    let usage = r.usage().unwrap();
    assert_eq!(
        (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens),
        (5, 7, 12)
    );
    // The model is mapped on every attempt; the rest of the body is intact.
    for body in up.bodies() {
        assert_eq!(body["model"], "a-upstream");
        assert_eq!(body["messages"][0]["content"], "hi");
    }
}

#[tokio::test]
async fn a_429_waits_for_retry_after() {
    let limited = Step::Json {
        status: 429,
        body: r#"{"error":{"message":"slow down"}}"#.into(),
        headers: vec![("retry-after", "1".into())],
        delay_ms: 0,
    };
    let up = Upstream::start(vec![limited, ok()]).await;
    let mut cfg = config("a", &up.url);
    cfg.retries.backoff_max_ms = 2_000;
    let d = Deployment::new(cfg).unwrap();
    let started = Instant::now();
    let r = within(5, d.call(&chat(false))).await.unwrap();
    // The computed backoff would be 10 ms; Retry-After asked for a second.
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    assert_eq!((r.status, r.attempts, up.calls()), (StatusCode::OK, 2, 2));
}

#[tokio::test]
async fn retry_after_is_capped_by_backoff_max() {
    let limited = Step::Json {
        status: 429,
        body: "{}".into(),
        headers: vec![("retry-after", "30".into())],
        delay_ms: 0,
    };
    let up = Upstream::start(vec![limited, ok()]).await;
    let d = Deployment::new(config("a", &up.url)).unwrap();
    // backoff_max_ms is 50: the call cannot wait 30 s.
    let r = within(3, d.call(&chat(false))).await.unwrap();
    assert_eq!(r.attempts, 2);
}

#[tokio::test]
async fn a_hang_times_out_before_the_first_byte_on_every_attempt() {
    let up = Upstream::start(vec![Step::Hang, Step::Hang, Step::Hang]).await;
    let d = Deployment::new(config("a", &up.url)).unwrap();
    let err = within(5, d.call(&chat(false))).await.unwrap_err();
    assert!(
        matches!(
            err,
            GatewayError::Timeout {
                phase: TimeoutPhase::FirstByte,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.info().status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(err.info().code, "upstream_timeout");
    assert_eq!(up.calls(), 3, "one attempt and max_retries = 2 retries");
}

#[tokio::test]
async fn a_slow_answer_within_the_deadline_is_not_retried() {
    let up = Upstream::start(vec![slow_ok(150)]).await;
    let d = Deployment::new(config("a", &up.url)).unwrap();
    let r = within(5, d.call(&chat(false))).await.unwrap();
    assert_eq!((r.attempts, up.calls()), (1, 1));
}

#[tokio::test]
async fn a_400_is_passed_back_unchanged_without_retry() {
    let up = Upstream::start(vec![status(400)]).await;
    let d = Deployment::new(config("a", &up.url)).unwrap();
    let r = within(5, d.call(&chat(false))).await.unwrap();
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(&full(&r)[..], br#"{"error":{"message":"status 400"}}"#);
    assert_eq!((r.attempts, up.calls()), (1, 1));
    assert!(r.usage().is_none());
}

#[tokio::test]
async fn persistent_500s_end_in_the_upstream_status() {
    let up = Upstream::start(vec![status(503), status(503), status(503)]).await;
    let d = Deployment::new(config("a", &up.url)).unwrap();
    let err = within(5, d.call(&chat(false))).await.unwrap_err();
    match &err {
        GatewayError::UpstreamStatus { status, body, .. } => {
            assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(!body.is_empty(), "the upstream's error body is kept");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.info().status, StatusCode::BAD_GATEWAY);
    assert_eq!(up.calls(), 3);
}

#[tokio::test]
async fn connection_refused_is_a_connect_error_after_retries() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    drop(listener);
    let d = Deployment::new(config("a", &url)).unwrap();
    let err = within(5, d.call(&chat(false))).await.unwrap_err();
    assert!(matches!(err, GatewayError::Connect { .. }), "{err:?}");
    assert_eq!(err.info().status, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_refused_before_the_network() {
    let up = Upstream::start(vec![]).await;
    let d = Deployment::new(config("a", &up.url)).unwrap();
    let req = switchyard_gateway::UpstreamRequest::new("/embeddings", "not json", false);
    let err = d.call(&req).await.unwrap_err();
    assert_eq!(err.info().status, StatusCode::BAD_REQUEST);
    assert_eq!(up.calls(), 0);
}

#[tokio::test]
async fn the_key_and_extra_headers_are_sent_and_the_key_never_printed() {
    let up = Upstream::start(vec![]).await;
    let key_file = std::env::temp_dir().join(format!("sy-gw-key-{}", std::process::id()));
    std::fs::write(&key_file, "sk-test-123\n").unwrap();
    let mut cfg = config("a", &up.url);
    cfg.api_key = Some(switchyard_gateway::SecretRef::File(key_file.clone()));
    cfg.headers.insert("OpenAI-Organization".into(), "org-1".into());
    let d = Deployment::new(cfg).unwrap();
    std::fs::remove_file(&key_file).unwrap();
    assert!(!format!("{d:?}").contains("sk-test-123"));
    let mut req = chat(false);
    req.headers.insert("x-request-id", "req-9".parse().unwrap());
    within(5, d.call(&req)).await.unwrap();
    let h = &up.headers()[0];
    assert_eq!(h["authorization"], "Bearer sk-test-123");
    assert_eq!(h["openai-organization"], "org-1");
    assert_eq!(h["x-request-id"], "req-9");
    assert_eq!(h["content-type"], "application/json");
}

#[tokio::test]
async fn a_redirect_is_passed_back_not_followed() {
    let moved = Step::Json {
        status: 307,
        body: String::new(),
        headers: vec![("location", "http://127.0.0.1:1/elsewhere".into())],
        delay_ms: 0,
    };
    let up = Upstream::start(vec![moved]).await;
    let d = Deployment::new(config("a", &up.url)).unwrap();
    let r = within(5, d.call(&chat(false))).await.unwrap();
    assert_eq!((r.status.as_u16(), up.calls()), (307, 1));
}
