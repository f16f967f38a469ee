//! Shared by the engine's model tests: where the fetched default model is.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic

use std::path::PathBuf;
use std::time::{Duration, Instant};

use switchyard_engine::llm::{FinishReason, GenerateRequest, GenerationEvent, LlmEngine, SamplingParams};
use tokio::sync::mpsc;

/// The default chat model, fetched by `scripts/fetch-models.sh`. Tests fail
/// (never skip) when it is missing, saying how to get it.
pub fn smollm2_path() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = root.join("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-models.sh",
        path.display()
    );
    path
}

/// The default embedding model folder (all-MiniLM-L6-v2), fetched by
/// `scripts/fetch-models.sh`. Fails, never skips, when it is missing.
#[allow(dead_code)] // not every test binary embeds
pub fn minilm_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = root.join("models/all-minilm-l6-v2");
    assert!(
        dir.join("model.safetensors").exists(),
        "{} is missing: run scripts/fetch-models.sh",
        dir.display()
    );
    dir
}

/// Submits a generation (deadline in five minutes); returns its events.
#[allow(dead_code)] // not every test binary generates
pub fn submit(
    engine: &LlmEngine,
    prompt: Vec<u32>,
    max_tokens: u32,
    sampling: SamplingParams,
    stop: Vec<String>,
) -> mpsc::UnboundedReceiver<GenerationEvent> {
    let (tx, rx) = mpsc::unbounded_channel();
    let req = GenerateRequest {
        prompt_tokens: prompt,
        max_tokens,
        sampling,
        stop,
        deadline: Instant::now() + Duration::from_secs(300),
        events: tx,
        span: tracing::Span::none(),
    };
    engine.submit(req).unwrap();
    rx
}

/// Waits for the end of a generation: its text, finish reason and length.
#[allow(dead_code)]
pub fn finish(mut rx: mpsc::UnboundedReceiver<GenerationEvent>) -> (String, FinishReason, u32) {
    let mut text = String::new();
    while let Some(ev) = rx.blocking_recv() {
        match ev {
            GenerationEvent::Text(t) => text.push_str(&t),
            GenerationEvent::Done { finish_reason, usage } => return (text, finish_reason, usage.completion_tokens),
            GenerationEvent::FirstToken => {}
            other => panic!("unexpected event {other:?}"),
        }
    }
    panic!("engine hung up without Done");
}
