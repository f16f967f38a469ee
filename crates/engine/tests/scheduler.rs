//! The engine's scheduler on the real SmolLM2 weights: chunked prefill,
//! cancellation, the prefix cache and the KV budget.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_engine::llm::{EngineConfig, FinishReason, GenerationEvent, LlmEngine, SamplingParams, TemplateMessage};
use tokio::sync::mpsc;

fn engine(cfg: EngineConfig) -> LlmEngine {
    LlmEngine::load(&common::smollm2_path(), &cfg, Arc::new(())).unwrap()
}

/// Greedy, and eos forbidden when `endless` so the length is `max_tokens`.
fn request(
    engine: &LlmEngine,
    prompt: Vec<u32>,
    max_tokens: u32,
    endless: bool,
) -> mpsc::UnboundedReceiver<GenerationEvent> {
    let mut sampling = SamplingParams::default();
    if endless {
        sampling.logit_bias = vec![(engine.tokenizer().eos(), -1000.0)];
    }
    common::submit(engine, prompt, max_tokens, sampling, vec![])
}

use common::finish;

fn chat(engine: &LlmEngine, system: &str, user: &str) -> Vec<u32> {
    let template = engine.template().unwrap();
    let mut messages = Vec::new();
    if !system.is_empty() {
        messages.push(TemplateMessage {
            role: "system".into(),
            content: system.into(),
        });
    }
    messages.push(TemplateMessage {
        role: "user".into(),
        content: user.into(),
    });
    engine.tokenizer().encode(&template.render(&messages).unwrap()).unwrap()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

const LONG: &str = "The history of railways begins with wagonways in mining districts, where horses pulled \
    carts along wooden rails. Steam locomotives arrived in the early nineteenth century and spread across \
    countries within decades, changing trade, travel and the shape of cities. ";

#[test]
fn long_prompt_is_chunked_between_decodes_and_cancelling_frees_kv() {
    let chunked = engine(EngineConfig {
        max_batch_tokens: 32,
        prefix_cache: false,
        ..EngineConfig::default()
    });
    let long = chat(&chunked, "", &LONG.repeat(8));
    assert!(long.len() > 300, "{} tokens", long.len());

    // A decode is running when the long prompt arrives.
    let mut short = request(&chunked, chat(&chunked, "", "Count to one thousand."), 1000, true);
    assert_eq!(short.blocking_recv(), Some(GenerationEvent::FirstToken));
    let mut big = request(&chunked, long.clone(), 8, false);
    let mut during = 0;
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        // The short one's events of a step are sent before the long one's.
        let first = big.try_recv().ok();
        while let Ok(ev) = short.try_recv() {
            during += matches!(ev, GenerationEvent::Text(_)) as usize;
        }
        if let Some(ev) = first {
            assert_eq!(ev, GenerationEvent::FirstToken);
            break;
        }
        assert!(Instant::now() < until, "the long prompt never got its first token");
        std::thread::sleep(Duration::from_millis(2));
    }
    // Unchunked, the short one would get one token during that prefill; in
    // chunks of at most 31 prompt tokens it gets about one per chunk.
    let chunks = long.len() / 31;
    assert!(
        during * 2 >= chunks,
        "{during} tokens decoded while a {}-token prompt was prefilled",
        long.len()
    );
    let used = chunked.stats().kv_blocks_used.load(Relaxed);
    assert!(used > 0);

    // Cancelling both (receivers dropped) returns every block at once.
    drop(short);
    drop(big);
    wait_until("the KV blocks are free", || {
        chunked.stats().kv_blocks_used.load(Relaxed) == 0 && chunked.stats().running.load(Relaxed) == 0
    });
    assert_eq!(chunked.stats().cancelled.load(Relaxed), 2);

    // Chunking never changes the text: the same prompt in one step.
    let (a, ..) = finish(request(&chunked, long.clone(), 12, false));
    let whole = engine(EngineConfig {
        max_batch_tokens: 4096,
        prefix_cache: false,
        ..EngineConfig::default()
    });
    let (b, ..) = finish(request(&whole, long, 12, false));
    assert_eq!(a, b);
}

const SYSTEM: &str = "You are a careful assistant for a railway museum. Answer in one or two short sentences, \
    in plain English, without lists. If you do not know, say so. Visitors are often children, so keep \
    words simple and friendly, and never invent dates or names.";

#[test]
fn prefix_cache_serves_a_repeated_system_prompt_without_changing_text() {
    let questions = ["What is a locomotive?", "Why do trains run on rails?", "Hi!"];
    let run_all = |engine: &LlmEngine| -> Vec<(String, FinishReason, u32)> {
        questions
            .iter()
            .map(|q| finish(request(engine, chat(engine, SYSTEM, q), 16, false)))
            .collect()
    };
    let cached = engine(EngineConfig::default());
    let plain = engine(EngineConfig {
        prefix_cache: false,
        ..EngineConfig::default()
    });
    let prefix = chat(&cached, SYSTEM, "").len() - 8; // the shared part, roughly
    assert!(prefix >= 48, "system prompt of {prefix} tokens is too short to test");

    let with = run_all(&cached);
    let without = run_all(&plain);
    assert_eq!(with, without);
    let s = cached.stats();
    let hit = s.prefix_hit_tokens.load(Relaxed) as usize;
    // The second and third requests each reuse the whole blocks of the prefix.
    assert!(
        hit >= 2 * (prefix / 16) * 16,
        "{hit} tokens from the cache, shared prefix {prefix}"
    );
    assert!(s.prefix_cache_blocks.load(Relaxed) > 0);
    assert_eq!(plain.stats().prefix_hit_tokens.load(Relaxed), 0);

    // Concurrent requests sharing the prefix also get their solo text.
    let together: Vec<_> = std::thread::scope(|sc| {
        let handles: Vec<_> = questions
            .iter()
            .map(|q| {
                let cached = &cached;
                sc.spawn(move || finish(request(cached, chat(cached, SYSTEM, q), 16, false)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(together, without);
}

#[test]
fn a_short_kv_budget_preempts_and_every_request_still_finishes() {
    // 15 blocks of 16 tokens: two of these sequences at most.
    let bytes_per_token = 30 * 3 * 64 * 2 * 4;
    let tight = engine(EngineConfig {
        kv_cache_bytes: 15 * 16 * bytes_per_token,
        prefix_cache: false,
        ..EngineConfig::default()
    });
    assert_eq!(tight.stats().kv_blocks_total.load(Relaxed), 15);
    let prompts: Vec<Vec<u32>> = ["Name a river.", "Name a mountain.", "Name a city.", "Name a sea."]
        .iter()
        .map(|q| chat(&tight, "", q))
        .collect();
    let rxs: Vec<_> = prompts.iter().map(|p| request(&tight, p.clone(), 80, true)).collect();
    for rx in rxs {
        let (text, finish_reason, n) = finish(rx);
        assert_eq!((finish_reason, n), (FinishReason::Length, 80));
        assert!(!text.is_empty());
    }
    let s = tight.stats();
    assert!(s.preempted.load(Relaxed) > 0, "the budget never ran short");
    wait_until("the KV blocks are free", || s.kv_blocks_used.load(Relaxed) == 0);

    // A prompt longer than the whole budget is refused with the reason.
    let mut rx = request(&tight, chat(&tight, "", &LONG.repeat(8)), 4, false);
    match rx.blocking_recv() {
        Some(GenerationEvent::Failed(m)) => assert!(m.contains("KV cache budget"), "{m}"),
        other => panic!("expected a failure, got {other:?}"),
    }
}
