//! Circuit breakers, fallback chains and replica balancing over real HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use switchyard_gateway::StatusCode;
use switchyard_gateway::{Backend, BreakerState, Deployment, GatewayError, Route};

fn backend(cfg: switchyard_gateway::DeploymentConfig) -> Arc<dyn Backend> {
    Arc::new(Deployment::new(cfg).unwrap())
}

#[tokio::test]
async fn breaker_opens_refuses_without_the_network_then_a_probe_closes_it() {
    let up = Upstream::start(vec![status(500), status(500), status(500)]).await;
    let mut cfg = config("a", &up.url);
    cfg.retries.max_retries = 0;
    let d = Deployment::new(cfg).unwrap();
    for _ in 0..3 {
        let err = within(5, d.call(&chat(false))).await.unwrap_err();
        assert!(matches!(err, GatewayError::UpstreamStatus { .. }), "{err:?}");
    }
    assert_eq!(d.endpoints()[0].breaker.state, BreakerState::Open);

    let err = within(5, d.call(&chat(false))).await.unwrap_err();
    assert!(matches!(err, GatewayError::BreakerOpen { .. }), "{err:?}");
    assert_eq!(err.info().status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(up.calls(), 3, "an open breaker does not touch the network");

    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(d.endpoints()[0].breaker.state, BreakerState::HalfOpen);
    let r = within(5, d.call(&chat(false))).await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(up.calls(), 4);
    let snap = d.endpoints()[0].breaker;
    assert_eq!(snap.state, BreakerState::Closed);
    assert_eq!(snap.state.as_str(), "closed");
    assert_eq!((snap.opened_total, snap.rejected_total), (1, 1));
}

#[tokio::test]
async fn a_route_falls_back_when_the_first_deployment_fails() {
    let a = Upstream::start(vec![status(500), status(500), status(500)]).await;
    let b = Upstream::start(vec![]).await;
    let route = Route::new("chat", vec![backend(config("a", &a.url)), backend(config("b", &b.url))]).unwrap();
    let r = within(5, route.call(&chat(false))).await.unwrap();
    assert_eq!(r.deployment, "b");
    assert_eq!(r.attempts, 4, "three on a, one on b");
    assert_eq!((a.calls(), b.calls()), (3, 1));
    assert_eq!(b.bodies()[0]["model"], "b-upstream");
    assert_eq!(r.usage().unwrap().total_tokens, 12);
}

#[tokio::test]
async fn a_route_skips_a_deployment_whose_breaker_is_open() {
    let a = Upstream::start(vec![status(500)]).await;
    let b = Upstream::start(vec![]).await;
    let mut cfg = config("a", &a.url);
    cfg.retries.max_retries = 0;
    cfg.breaker.failure_threshold = 1;
    cfg.breaker.open_ms = 60_000;
    let first = Arc::new(Deployment::new(cfg).unwrap());
    assert!(within(5, first.call(&chat(false))).await.is_err());
    let route = Route::new("chat", vec![first as Arc<dyn Backend>, backend(config("b", &b.url))]).unwrap();
    let r = within(5, route.call(&chat(false))).await.unwrap();
    assert_eq!((r.deployment.as_str(), r.attempts), ("b", 1));
    assert_eq!(a.calls(), 1, "the open breaker kept the call off a");
}

#[tokio::test]
async fn when_every_deployment_fails_the_last_error_decides() {
    let a = Upstream::start(vec![status(500); 3]).await;
    let b = Upstream::start(vec![Step::Hang, Step::Hang, Step::Hang]).await;
    let route = Route::new("chat", vec![backend(config("a", &a.url)), backend(config("b", &b.url))]).unwrap();
    let err = within(5, route.call(&chat(false))).await.unwrap_err();
    let GatewayError::AllFailed { tried, attempts, last } = &err else {
        panic!("{err:?}");
    };
    assert_eq!((*tried, *attempts), (2, 6));
    assert!(matches!(**last, GatewayError::Timeout { .. }));
    assert_eq!(err.info().status, StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test]
async fn a_client_error_does_not_fall_back() {
    let a = Upstream::start(vec![status(422)]).await;
    let b = Upstream::start(vec![]).await;
    let route = Route::new("chat", vec![backend(config("a", &a.url)), backend(config("b", &b.url))]).unwrap();
    let r = within(5, route.call(&chat(false))).await.unwrap();
    assert_eq!((r.status.as_u16(), r.deployment.as_str()), (422, "a"));
    assert_eq!(b.calls(), 0);
}

#[tokio::test]
async fn concurrent_calls_spread_over_two_replicas() {
    let a = Upstream::start(vec![slow_ok(100); 20]).await;
    let b = Upstream::start(vec![slow_ok(100); 20]).await;
    let mut cfg = config("a", &a.url);
    cfg.replicas = vec![b.url.clone()];
    let d = Arc::new(Deployment::new(cfg).unwrap());
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let d = Arc::clone(&d);
            tokio::spawn(async move { d.call(&chat(false)).await })
        })
        .collect();
    for call in calls {
        within(5, call).await.unwrap().unwrap();
    }
    assert_eq!(a.calls() + b.calls(), 20);
    assert!(a.calls() >= 5 && b.calls() >= 5, "a={} b={}", a.calls(), b.calls());
    assert!(d.endpoints().iter().all(|e| e.outstanding == 0));
}

#[test]
fn an_empty_route_is_refused() {
    let err = Route::new("chat", vec![]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "route `chat`: deployments: must list at least one deployment"
    );
}

#[tokio::test]
async fn balancing_avoids_a_replica_whose_breaker_is_open() {
    let good = Upstream::start(vec![]).await;
    let bad = Upstream::start(vec![status(500); 50]).await;
    let mut cfg = config("a", &good.url);
    cfg.replicas = vec![bad.url.clone()];
    cfg.breaker.open_ms = 60_000;
    let d = Deployment::new(cfg).unwrap();
    for _ in 0..12 {
        // A failure on the bad replica is retried on the other one.
        let r = within(5, d.call(&chat(false))).await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
    }
    assert_eq!(bad.calls(), 3, "opened after failure_threshold = 3, then skipped");
    assert_eq!(good.calls(), 12);
    let states: Vec<_> = d.endpoints().iter().map(|e| e.breaker.state).collect();
    assert_eq!(states, [BreakerState::Closed, BreakerState::Open]);
}
