//! Two Redis limiters (two connections, as two replicas would have)
//! enforce one combined limit against the real Redis.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use switchyard_tenancy::{Limiter, LimiterConfig, Limits};

fn redis_url() -> String {
    std::env::var("SWITCHYARD_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn replica(prefix: &str) -> Limiter {
    Limiter::from_config(&LimiterConfig::Redis {
        url: redis_url(),
        prefix: prefix.into(),
    })
    .await
    .expect("Redis on SWITCHYARD_TEST_REDIS")
}

fn prefix() -> String {
    format!("switchyard-test:{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_share_one_request_limit() {
    let p = prefix();
    let (a, b) = (replica(&p).await, replica(&p).await);
    let limits = Limits {
        requests_per_minute: Some(20),
        requests_per_hour: Some(1000),
        ..Limits::default()
    };
    // 30 attempts on each replica, all at once: exactly 20 pass in all.
    let mut calls = Vec::new();
    let (a, b) = (std::sync::Arc::new(a), std::sync::Arc::new(b));
    for i in 0..60 {
        let l = if i % 2 == 0 { a.clone() } else { b.clone() };
        calls.push(tokio::spawn(async move { l.acquire("key1", &limits).await.unwrap() }));
    }
    let mut allowed = 0;
    let mut refused = Vec::new();
    for c in calls {
        let d = c.await.unwrap();
        if d.allowed {
            allowed += 1;
        } else {
            refused.push(d);
        }
    }
    assert_eq!(allowed, 20);
    let d = &refused[0];
    let w = d.requests.unwrap();
    assert_eq!((w.limit, w.remaining), (20, 0), "the minute window is the tight one");
    let retry = d.retry_after.unwrap();
    assert!(retry.as_millis() > 2_000 && retry.as_millis() <= 3_000, "{retry:?}");
    assert!(d.clone().check().is_err());
    // Another key is untouched; the hour window only lost 20.
    let other = a.acquire("key2", &limits).await.unwrap();
    assert!(other.allowed);
    assert_eq!(other.requests.unwrap().remaining, 19);
}

#[tokio::test]
async fn tokens_charged_on_one_replica_limit_the_other() {
    let p = prefix();
    let (a, b) = (replica(&p).await, replica(&p).await);
    let limits = Limits {
        tokens_per_minute: Some(1_000),
        ..Limits::default()
    };
    let d = a.acquire("k", &limits).await.unwrap();
    assert!(d.allowed);
    assert_eq!(d.tokens.unwrap().remaining, 1_000);
    a.charge_tokens("k", &limits, 600).await.unwrap();
    let d = b.acquire("k", &limits).await.unwrap();
    assert!(d.allowed);
    let w = d.tokens.unwrap();
    assert!((399..=400).contains(&w.remaining), "{w:?}");
    b.charge_tokens("k", &limits, 500).await.unwrap();
    let d = a.acquire("k", &limits).await.unwrap();
    assert!(!d.allowed);
    assert_eq!(d.tokens.unwrap().remaining, 0);
    assert_eq!(d.clone().check().unwrap_err().what, "tokens");
    // 100 tokens over, plus one: about 6.06 s at 1000 per minute.
    let retry = d.retry_after.unwrap().as_millis();
    assert!((5_900..=6_100).contains(&retry), "{retry}");
}

#[tokio::test]
async fn an_unreachable_redis_is_an_error_not_a_pass() {
    let r = Limiter::from_config(&LimiterConfig::Redis {
        url: "redis://127.0.0.1:1".into(),
        prefix: "x".into(),
    })
    .await;
    assert!(r.is_err());
}
