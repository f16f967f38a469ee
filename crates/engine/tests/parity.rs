//! Greedy parity with llama.cpp on the same GGUF (fixture made by
//! scripts/make-parity-fixture.py with llama.cpp's AVX2 + FMA build, whose
//! arithmetic order the engine follows bit for bit). For each case the prompt must render and
//! tokenize exactly as llama.cpp did; then llama.cpp's tokens are replayed
//! through our model. At least 90% of cases must agree on every token; where
//! one does not, llama.cpp's token must be within 0.1 logit of our top token
//! at the first differing step (a near-tie from arithmetic order, not a bug).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic

mod common;

use serde::Deserialize;
use std::sync::Arc;

use switchyard_engine::llm::{
    argmax, ChatTemplate, EngineConfig, GgufTokenizer, KvCache, LlamaModel, LlmEngine, LoadedGguf, SamplingParams,
    TemplateMessage,
};

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    kind: String,
    #[serde(default)]
    messages: Vec<TemplateMessageIn>,
    prompt: String,
    prompt_tokens: Vec<u32>,
    output_tokens: Vec<u32>,
}

#[derive(Deserialize)]
struct TemplateMessageIn {
    role: String,
    content: String,
}

const NEAR_TIE: f32 = 0.1;

fn fixture() -> anyhow::Result<Fixture> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/llama_cpp_greedy.json");
    Ok(serde_json::from_str(&std::fs::read_to_string(path)?)?)
}

#[test]
fn greedy_outputs_match_llama_cpp() -> anyhow::Result<()> {
    let fixture = fixture()?;
    let mut gguf = LoadedGguf::open(&common::smollm2_path())?;
    let tok = GgufTokenizer::from_gguf(&gguf)?;
    let template = ChatTemplate::new(gguf.string("tokenizer.chat_template")?, "<|im_start|>", "<|im_end|>")?;
    let model = LlamaModel::load(&mut gguf)?;
    assert!(fixture.cases.iter().filter(|c| c.kind == "chat").count() >= 8);
    assert!(fixture.cases.iter().filter(|c| c.kind == "completion").count() >= 4);

    let mut exact = 0;
    let mut report = Vec::new();
    let mut wide = Vec::new();
    for case in &fixture.cases {
        let prompt = if case.kind == "chat" {
            let msgs: Vec<TemplateMessage> = case
                .messages
                .iter()
                .map(|m| TemplateMessage {
                    role: m.role.clone(),
                    content: m.content.clone(),
                })
                .collect();
            template.render(&msgs)?
        } else {
            case.prompt.clone()
        };
        assert_eq!(
            prompt, case.prompt,
            "{}: rendered prompt differs from llama.cpp's",
            case.name
        );
        assert_eq!(
            tok.encode(&prompt)?,
            case.prompt_tokens,
            "{}: prompt tokens differ",
            case.name
        );

        let mut cache = KvCache::default();
        let mut logits = model.forward(&case.prompt_tokens, &mut cache)?;
        let mut diverged = None;
        for (step, &want) in case.output_tokens.iter().enumerate() {
            let ours = argmax(&logits);
            if ours != want {
                diverged = Some((step, ours, want, logits[ours as usize] - logits[want as usize]));
                break;
            }
            if step + 1 < case.output_tokens.len() {
                logits = model.forward(&[want], &mut cache)?;
            }
        }
        match diverged {
            None => exact += 1,
            Some((step, ours, want, gap)) => {
                report.push(format!(
                    "{}: step {step}: ours {ours}, llama.cpp {want}, gap {gap:.4}",
                    case.name
                ));
                if gap > NEAR_TIE {
                    wide.push(case.name.clone());
                }
            }
        }
    }
    let total = fixture.cases.len();
    eprintln!("exact {exact}/{total}; near-ties: {report:#?}");
    assert!(
        wide.is_empty(),
        "llama.cpp's token is more than {NEAR_TIE} logits below ours: {wide:?}; {report:#?}"
    );
    assert!(
        exact * 10 >= total * 9,
        "only {exact} of {total} cases match token for token: {report:#?}"
    );
    Ok(())
}

/// Sends every case's prompt to the engine and collects each text.
fn generate_all(engine: &LlmEngine, cases: &[Case]) -> Vec<String> {
    let rxs: Vec<_> = cases
        .iter()
        .map(|c| {
            let n = c.output_tokens.len() as u32;
            common::submit(engine, c.prompt_tokens.clone(), n, SamplingParams::default(), vec![])
        })
        .collect();
    rxs.into_iter().map(|rx| common::finish(rx).0).collect()
}

/// All cases in flight at once, prompts chunked and the prefix cache on:
/// the engine's text is llama.cpp's wherever one request alone gets it.
#[test]
fn parity_holds_under_concurrency() -> anyhow::Result<()> {
    let fixture = fixture()?;
    let path = common::smollm2_path();
    let solo_engine = LlmEngine::load(
        &path,
        &EngineConfig {
            max_num_seqs: 1,
            prefix_cache: false,
            ..EngineConfig::default()
        },
        Arc::new(()),
    )?;
    let busy_engine = LlmEngine::load(
        &path,
        &EngineConfig {
            max_num_seqs: 16,
            max_batch_tokens: 48,
            ..EngineConfig::default()
        },
        Arc::new(()),
    )?;
    let tok = solo_engine.tokenizer();
    let eos = tok.eos();
    let llama: Vec<String> = fixture
        .cases
        .iter()
        .map(|c| {
            let ids: Vec<u32> = c.output_tokens.iter().copied().filter(|&t| t != eos).collect();
            tok.decode(&ids)
        })
        .collect();
    let solo: Vec<String> = fixture
        .cases
        .iter()
        .map(|c| generate_all(&solo_engine, std::slice::from_ref(c)).remove(0))
        .collect();
    let busy = generate_all(&busy_engine, &fixture.cases);
    let peak = busy_engine
        .stats()
        .peak_batch
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(peak >= 8, "the cases never ran together (peak batch {peak})");
    for ((case, s), b) in fixture.cases.iter().zip(&solo).zip(&busy) {
        assert_eq!(s, b, "{}: text changed under concurrency", case.name);
    }
    let same = solo.iter().zip(&llama).filter(|(a, b)| a == b).count();
    let total = fixture.cases.len();
    assert!(same * 10 >= total * 9, "only {same} of {total} texts are llama.cpp's");
    Ok(())
}
