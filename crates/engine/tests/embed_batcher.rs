//! The dynamic batcher on the real all-MiniLM-L6-v2 weights: merged requests
//! get the vectors they get alone, the queue bound holds, abandoned requests
//! are skipped.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic

#[allow(dead_code)] // each test binary uses part of it
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard_engine::embed::batcher::{BatchObserver, BatchReport, Batcher, BatcherConfig, SubmitError};
use switchyard_engine::embed::{EmbedError, EmbedOptions, EmbeddingModel};

#[derive(Default)]
struct Recorder(Mutex<Vec<BatchReport>>);

impl BatchObserver for Recorder {
    fn batch_done(&self, report: &BatchReport) {
        self.0.lock().unwrap().push(*report);
    }
}

fn start(config: BatcherConfig) -> (Batcher, Arc<Recorder>) {
    let model = EmbeddingModel::load(&common::minilm_dir(), EmbedOptions::default()).unwrap();
    let recorder = Arc::new(Recorder::default());
    (Batcher::start(model, config, recorder.clone()).unwrap(), recorder)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[tokio::test]
async fn merged_requests_match_their_solo_vectors() {
    let (batcher, recorder) = start(BatcherConfig {
        max_batch_tokens: 1024,
        max_batch_requests: 64,
        // Long enough that every request below joins the first round.
        max_wait: Duration::from_millis(300),
        queue_capacity: 64,
    });
    let m = batcher.model();
    // Three clusters of lengths (about 6, 90 and 175 tokens, 1 090 in all),
    // more than one 1 024-token pass holds, so the planner must split.
    let texts: Vec<String> = (0..12)
        .map(|i| format!("Sentence number {i}. ") + &"More words follow here. ".repeat((i % 3) * 17))
        .collect();
    let tokens: Vec<Vec<u32>> = texts.iter().map(|t| m.tokenize(t).unwrap()).collect();
    let solo: Vec<Vec<f32>> = tokens
        .iter()
        .map(|t| m.embed_tokens(std::slice::from_ref(t)).unwrap().remove(0))
        .collect();
    // Requests of one, two and three inputs, submitted together.
    let groups: Vec<Vec<usize>> = vec![
        vec![0],
        vec![5, 1],
        vec![11],
        vec![2, 9, 3],
        vec![4],
        vec![10, 6, 7],
        vec![8],
    ];
    let pending: Vec<_> = groups
        .iter()
        .map(|g| batcher.submit(g.iter().map(|&i| tokens[i].clone()).collect()).unwrap())
        .collect();
    let mut worst = 0f32;
    for (group, rx) in groups.iter().zip(pending) {
        let vectors = rx.await.unwrap().unwrap();
        assert_eq!(vectors.len(), group.len());
        for (&i, v) in group.iter().zip(&vectors) {
            worst = worst.max(max_abs_diff(v, &solo[i]));
        }
    }
    assert!(worst <= 1e-6, "batched and solo differ by {worst}");
    let reports = recorder.0.lock().unwrap().clone();
    let inputs: usize = reports.iter().map(|r| r.inputs).sum();
    assert_eq!(inputs, 12);
    assert!(reports.len() < groups.len(), "requests were not merged: {reports:?}");
    assert!(reports.iter().any(|r| r.requests > 1), "{reports:?}");
    // Passes are packed up to the token budget, never past it (the lone
    // exception being one input longer than the budget).
    for r in &reports {
        assert!(r.tokens <= 1024 || r.inputs == 1, "{r:?}");
    }
    assert_eq!(batcher.queue_depth(), 0);
}

#[tokio::test]
async fn full_queue_refuses_and_bad_input_is_refused_up_front() {
    let (batcher, _) = start(BatcherConfig {
        max_batch_tokens: 8192,
        max_batch_requests: 8,
        // The first request waits this long for company, holding the only place.
        max_wait: Duration::from_millis(500),
        queue_capacity: 1,
    });
    let ids = batcher.model().tokenize("queued").unwrap();
    let first = batcher.submit(vec![ids.clone()]).unwrap();
    assert_eq!(batcher.queue_depth(), 1);
    assert!(matches!(batcher.submit(vec![ids.clone()]), Err(SubmitError::QueueFull)));
    assert_eq!(first.await.unwrap().unwrap().len(), 1);
    assert_eq!(batcher.queue_depth(), 0);
    assert!(batcher.submit(vec![ids.clone()]).is_ok());

    assert!(matches!(
        batcher.submit(vec![]),
        Err(SubmitError::Invalid(EmbedError::EmptyInput))
    ));
    match batcher.submit(vec![ids.clone(), vec![101, 40_000, 102]]) {
        Err(SubmitError::Invalid(EmbedError::BatchInput { index: 1, source })) => {
            assert!(matches!(*source, EmbedError::TokenOutOfRange { position: 1, .. }))
        }
        other => panic!("expected an invalid input, got {:?}", other.err()),
    }
    assert!(matches!(
        batcher.submit(vec![vec![101; 300]]),
        Err(SubmitError::Invalid(EmbedError::BatchInput { index: 0, .. }))
    ));
}

#[tokio::test]
async fn abandoned_requests_are_skipped() {
    let (batcher, recorder) = start(BatcherConfig {
        max_wait: Duration::from_millis(200),
        ..BatcherConfig::default()
    });
    let ids = batcher.model().tokenize("nobody waits for this").unwrap();
    drop(batcher.submit(vec![ids.clone(), ids.clone()]).unwrap());
    let kept = batcher.submit(vec![ids.clone()]).unwrap();
    assert_eq!(kept.await.unwrap().unwrap().len(), 1);
    let reports = recorder.0.lock().unwrap().clone();
    assert_eq!(reports.iter().map(|r| r.inputs).sum::<usize>(), 1, "{reports:?}");
    assert_eq!(batcher.queue_depth(), 0);
}
