//! Streaming passthrough against a real SSE upstream.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic

mod common;

use std::time::Instant;

use common::*;
use futures::StreamExt;
use switchyard_gateway::{Deployment, GatewayError, StreamOutcome, UpstreamBody};

#[tokio::test]
async fn chunks_pass_through_unchanged_and_usage_is_captured() {
    let chunks = vec![sse_chunk("Hel"), sse_chunk("lo"), sse_usage(), SSE_DONE.to_owned()];
    let expected: String = chunks.concat();
    let up = Upstream::start(vec![Step::Sse {
        chunks: chunks.into_iter().map(|c| (10, c)).collect(),
        abort: false,
    }])
    .await;
    let d = Deployment::new(config("a", &up.url)).unwrap();
    let r = within(5, d.call(&chat(true))).await.unwrap();
    assert_eq!(r.attempts, 1);
    let (got, error, summary) = within(5, drain(r)).await;
    assert!(error.is_none());
    assert_eq!(text(&got), expected, "bytes are forwarded as sent");
    assert_eq!(summary.outcome, StreamOutcome::Completed);
    assert!(summary.done);
    assert_eq!(summary.events, 4);
    assert_eq!(summary.bytes, expected.len() as u64);
    assert_eq!(summary.usage.unwrap().total_tokens, 12);
}

#[tokio::test]
async fn a_stream_cut_midway_yields_an_error_after_its_chunks_and_is_not_retried() {
    let up = Upstream::start(vec![Step::Sse {
        chunks: vec![(0, sse_chunk("one")), (20, sse_chunk("two"))],
        abort: true,
    }])
    .await;
    let d = Deployment::new(config("a", &up.url)).unwrap();
    let r = within(5, d.call(&chat(true))).await.unwrap();
    let (got, error, summary) = within(5, drain(r)).await;
    assert_eq!(text(&got), sse_chunk("one") + &sse_chunk("two"));
    assert!(matches!(error, Some(GatewayError::Stream { .. })), "{error:?}");
    assert_eq!(summary.outcome, StreamOutcome::Failed);
    assert!(!summary.done);
    assert_eq!(up.calls(), 1, "bytes went out: no retry");
}

#[tokio::test]
async fn the_first_chunk_reaches_the_caller_before_the_second_is_sent() {
    let up = Upstream::start(vec![Step::Sse {
        chunks: vec![
            (0, sse_chunk("first")),
            (500, sse_chunk("second")),
            (0, SSE_DONE.to_owned()),
        ],
        abort: false,
    }])
    .await;
    let mut cfg = config("a", &up.url);
    cfg.timeouts.first_byte_ms = 2_000;
    let d = Deployment::new(cfg).unwrap();
    let r = within(5, d.call(&chat(true))).await.unwrap();
    let UpstreamBody::Stream { mut chunks, summary } = r.body else {
        panic!("expected a stream");
    };
    let first = within(5, chunks.next()).await.unwrap().unwrap();
    let first_at = Instant::now();
    assert_eq!(first, sse_chunk("first"));
    let mut rest = Vec::new();
    while let Some(item) = within(5, chunks.next()).await {
        rest.push(item.unwrap());
    }
    drop(chunks);
    let sent = up.sent();
    assert_eq!(sent.len(), 3);
    assert!(
        first_at < sent[1],
        "the first chunk arrived before the second was even sent"
    );
    assert_eq!(text(&rest), sse_chunk("second") + SSE_DONE);
    assert!(summary.wait().await.done);
}

#[tokio::test]
async fn failures_before_the_first_chunk_are_retried_and_usage_counts_once() {
    let up = Upstream::start(vec![
        status(502),
        // Head sent, but no chunk within first_byte_ms (300): retried too.
        Step::Sse {
            chunks: vec![(1_000, sse_usage())],
            abort: false,
        },
        Step::Sse {
            chunks: vec![(0, sse_chunk("ok")), (0, sse_usage()), (0, SSE_DONE.into())],
            abort: false,
        },
    ])
    .await;
    let d = Deployment::new(config("a", &up.url)).unwrap();
    let r = within(5, d.call(&chat(true))).await.unwrap();
    assert_eq!((r.attempts, up.calls()), (3, 3));
    let (got, error, summary) = within(5, drain(r)).await;
    assert!(error.is_none());
    assert!(text(&got).starts_with(&sse_chunk("ok")));
    assert_eq!(summary.usage.unwrap().total_tokens, 12);
}

#[tokio::test]
async fn a_4xx_to_a_stream_request_comes_back_whole() {
    let up = Upstream::start(vec![status(404)]).await;
    let d = Deployment::new(config("a", &up.url)).unwrap();
    let r = within(5, d.call(&chat(true))).await.unwrap();
    assert_eq!(r.status.as_u16(), 404);
    assert!(full(&r).starts_with(b"{\"error\""));
}

#[tokio::test]
async fn dropping_the_stream_reports_cancelled() {
    let up = Upstream::start(vec![Step::Sse {
        chunks: vec![(0, sse_chunk("a")), (2_000, sse_chunk("b"))],
        abort: false,
    }])
    .await;
    let d = Deployment::new(config("a", &up.url)).unwrap();
    let r = within(5, d.call(&chat(true))).await.unwrap();
    let UpstreamBody::Stream { mut chunks, summary } = r.body else {
        panic!("expected a stream");
    };
    within(5, chunks.next()).await.unwrap().unwrap();
    drop(chunks);
    let summary = within(5, summary.wait()).await;
    assert_eq!(summary.outcome, StreamOutcome::Cancelled);
    assert_eq!(d.endpoints()[0].outstanding, 0);
}

#[tokio::test]
async fn the_total_deadline_ends_a_stalled_stream_with_a_timeout_item() {
    let up = Upstream::start(vec![Step::Sse {
        chunks: vec![(0, sse_chunk("a")), (3_000, sse_chunk("never"))],
        abort: false,
    }])
    .await;
    let mut cfg = config("a", &up.url);
    cfg.timeouts.total_ms = 400;
    let d = Deployment::new(cfg).unwrap();
    let r = within(5, d.call(&chat(true))).await.unwrap();
    let (got, error, summary) = within(5, drain(r)).await;
    assert_eq!(text(&got), sse_chunk("a"));
    assert!(
        matches!(
            error,
            Some(GatewayError::Timeout {
                phase: switchyard_gateway::TimeoutPhase::Total,
                ..
            })
        ),
        "{error:?}"
    );
    assert_eq!(summary.outcome, StreamOutcome::Failed);
    assert_eq!(up.calls(), 1);
}

#[tokio::test]
async fn a_stream_silent_past_stream_idle_ends_with_a_timeout_item() {
    let up = Upstream::start(vec![Step::Sse {
        chunks: vec![(0, sse_chunk("a")), (50, sse_chunk("b")), (3_000, sse_chunk("never"))],
        abort: false,
    }])
    .await;
    let mut cfg = config("a", &up.url);
    cfg.timeouts.stream_idle_ms = 300;
    let d = Deployment::new(cfg).unwrap();
    let r = within(5, d.call(&chat(true))).await.unwrap();
    let (got, error, _) = within(5, drain(r)).await;
    assert_eq!(text(&got), sse_chunk("a") + &sse_chunk("b"));
    let phase = match error {
        Some(GatewayError::Timeout { phase, .. }) => phase,
        other => panic!("{other:?}"),
    };
    assert_eq!(phase.as_str(), "stream_idle");
}

#[tokio::test]
async fn a_json_answer_to_a_stream_request_is_read_whole_with_usage() {
    let up = Upstream::start(vec![ok()]).await;
    let d = Deployment::new(config("a", &up.url)).unwrap();
    let r = within(5, d.call(&chat(true))).await.unwrap();
    assert_eq!(r.usage().unwrap().total_tokens, 12);
}
