//! The engine on the real SmolLM2 weights: tokenizer, template, generation.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic

mod common;

use switchyard_engine::llm::{
    argmax, EngineConfig, FinishReason, GgufTokenizer, KvCache, LlamaModel, LlmEngine, LoadedGguf, SamplingParams,
    TemplateMessage,
};

#[test]
fn tokenizer_matches_llama_cpp() -> anyhow::Result<()> {
    let gguf = LoadedGguf::open(&common::smollm2_path())?;
    let tok = GgufTokenizer::from_gguf(&gguf)?;
    assert_eq!(
        tok.encode("What is the capital of France?")?,
        vec![1780, 314, 260, 3575, 282, 4649, 47]
    );
    // Digits split one by one; special tokens written in text are recognised.
    let ids = tok.encode("<|im_start|>user\n2024<|im_end|>")?;
    assert_eq!(ids[0], 1);
    assert_eq!(*ids.last().unwrap_or(&0), 2);
    assert_eq!(ids.len(), 1 + 2 + 4 + 1, "{ids:?}");
    assert_eq!(
        tok.decode(&tok.encode("héllo wörld 😀 code()")?),
        "héllo wörld 😀 code()"
    );
    Ok(())
}

fn run(engine: &LlmEngine, prompt: Vec<u32>, max_tokens: u32, stop: Vec<String>) -> (String, FinishReason, u32) {
    common::finish(common::submit(
        engine,
        prompt,
        max_tokens,
        SamplingParams::default(),
        stop,
    ))
}

#[test]
fn greedy_chat_answers_and_stops() -> anyhow::Result<()> {
    let engine = LlmEngine::load(
        &common::smollm2_path(),
        &EngineConfig::default(),
        std::sync::Arc::new(()),
    )?;
    let template = engine.template().ok_or_else(|| anyhow::anyhow!("no chat template"))?;
    let prompt = template.render(&[TemplateMessage {
        role: "user".into(),
        content: "Name three colours.".into(),
    }])?;
    assert!(prompt.starts_with("<|im_start|>system\n"), "{prompt}");
    let ids = engine.tokenizer().encode(&prompt)?;
    let (text, finish, n) = run(&engine, ids.clone(), 24, vec![]);
    assert!(!text.is_empty());
    assert!(finish == FinishReason::Length || n < 24);
    let (short, finish, n) = run(&engine, ids.clone(), 3, vec![]);
    assert_eq!((finish, n), (FinishReason::Length, 3));
    assert!(text.starts_with(&short));

    // A stop string made of the end of one token and the start of the next
    // stops generation at that point and is not part of the output.
    let mut gguf = LoadedGguf::open(&common::smollm2_path())?;
    let model = LlamaModel::load(&mut gguf)?;
    let tok = engine.tokenizer();
    let mut cache = KvCache::default();
    let mut logits = model.forward(&ids, &mut cache)?;
    let mut pieces = Vec::new();
    for _ in 0..24 {
        let id = argmax(&logits);
        pieces.push(String::from_utf8_lossy(tok.piece(id)).into_owned());
        logits = model.forward(&[id], &mut cache)?;
    }
    let k = (2..pieces.len() - 1)
        .find(|&k| pieces[k].len() >= 2 && pieces[k + 1].len() >= 2 && pieces[k].is_ascii() && pieces[k + 1].is_ascii())
        .ok_or_else(|| anyhow::anyhow!("no two ascii tokens in {pieces:?}"))?;
    let before: String = pieces[..k].concat() + &pieces[k][..pieces[k].len() - 1];
    let stop = format!("{}{}", &pieces[k][pieces[k].len() - 1..], &pieces[k + 1][..1]);
    assert!(!before.contains(&stop), "pick a later boundary: {pieces:?}");
    let (stopped, finish, _) = run(&engine, ids, 24, vec![stop.clone()]);
    assert_eq!(finish, FinishReason::Stop);
    assert_eq!(stopped, before, "stop {stop:?} in {pieces:?}");
    Ok(())
}

#[test]
fn concurrent_requests_get_their_solo_text() -> anyhow::Result<()> {
    let engine = LlmEngine::load(
        &common::smollm2_path(),
        &EngineConfig::default(),
        std::sync::Arc::new(()),
    )?;
    let template = engine.template().ok_or_else(|| anyhow::anyhow!("no chat template"))?;
    let questions = [
        "Hi!",
        "What is the capital of France?",
        "Name three colours.",
        "Write a haiku about trains and the sea at night, please.",
        "2+2=",
        "Tell me a short story about a robot who learns to paint, in two sentences.",
        "Why is the sky blue?",
        "List the days of the week.",
    ];
    let prompts: Vec<Vec<u32>> = questions
        .iter()
        .map(|q| {
            let text = template.render(&[TemplateMessage {
                role: "user".into(),
                content: (*q).into(),
            }])?;
            Ok(engine.tokenizer().encode(&text)?)
        })
        .collect::<anyhow::Result<_>>()?;
    // One at a time, then all eight at once (different prompt lengths, so the
    // batch mixes prefill and decode steps): greedy text must not change.
    let solo: Vec<_> = prompts.iter().map(|p| run(&engine, p.clone(), 24, vec![])).collect();
    let together: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = prompts
            .iter()
            .map(|p| s.spawn(|| run(&engine, p.clone(), 24, vec![])))
            .collect();
        handles.into_iter().map(|h| h.join().expect("request thread")).collect()
    });
    assert_eq!(solo, together);
    let peak = engine.stats().peak_batch.load(std::sync::atomic::Ordering::Relaxed);
    assert!(peak > 1, "requests never shared a step (peak batch {peak})");
    Ok(())
}
