//! The batched forward pass on the real SmolLM2 weights: sequences at
//! different positions in one step get exactly the logits they get alone.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic

mod common;

use switchyard_engine::llm::{argmax, KvCache, LlamaModel, LoadedGguf, SeqStep};

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

/// Token ids of a prompt of `n` tokens (fixed, non-special).
fn prompt(n: usize, seed: u32) -> Vec<u32> {
    (0..n as u32)
        .map(|i| 100 + (i * 7919 + seed * 104_729) % 40_000)
        .collect()
}

#[test]
fn batched_steps_give_each_sequence_its_solo_logits() {
    let mut gguf = LoadedGguf::open(&common::smollm2_path()).unwrap();
    let model = LlamaModel::load(&mut gguf).unwrap();
    // Prompts of 1, 5, 17 and 40 tokens; the 40-token one arrives late and
    // is prefilled in a step where the others decode (chunked-prefill shape).
    let prompts: Vec<Vec<u32>> = [1, 5, 17, 40].iter().zip(1..).map(|(&n, s)| prompt(n, s)).collect();
    const STEPS: usize = 4;

    // Alone: prefill, then greedy decode, one sequence at a time.
    let solo: Vec<Vec<Vec<f32>>> = prompts
        .iter()
        .map(|p| {
            let mut cache = KvCache::default();
            let mut logits = vec![model.forward(p, &mut cache).unwrap()];
            for _ in 0..STEPS {
                let next = argmax(logits.last().unwrap());
                logits.push(model.forward(&[next], &mut cache).unwrap());
            }
            logits
        })
        .collect();

    // Together: step 0 prefills the first three, step 1 decodes them while
    // the fourth prefills, then everyone decodes in each step.
    let mut caches: Vec<KvCache> = (0..prompts.len()).map(|_| KvCache::default()).collect();
    let mut got: Vec<Vec<Vec<f32>>> = vec![Vec::new(); prompts.len()];
    let mut next: Vec<Vec<u32>> = prompts.clone();
    for step in 0..=STEPS + 1 {
        let active: Vec<usize> = (0..prompts.len())
            .filter(|&s| (s < 3 && step <= STEPS) || (s == 3 && step >= 1))
            .collect();
        let mut seqs: Vec<SeqStep> = Vec::new();
        for (s, cache) in caches.iter_mut().enumerate() {
            if active.contains(&s) {
                seqs.push(SeqStep {
                    tokens: &next[s],
                    cache,
                });
            }
        }
        let logits = model.forward_batch(&mut seqs).unwrap();
        assert_eq!(logits.len(), active.len());
        for (&s, l) in active.iter().zip(logits) {
            next[s] = vec![argmax(&l)];
            got[s].push(l);
        }
    }
    for (s, (want, got)) in solo.iter().zip(&got).enumerate() {
        assert_eq!(got.len(), STEPS + 1, "sequence {s}");
        for (step, (w, g)) in want.iter().zip(got).enumerate() {
            assert_eq!(bits(w), bits(g), "sequence {s} step {step}");
        }
    }
    for (cache, p) in caches.iter().zip(&prompts) {
        assert_eq!(cache.len(), p.len() + STEPS);
    }
    // Nothing to run is no error; a bad sequence fails the whole step.
    assert!(model.forward_batch(&mut []).unwrap().is_empty());
    let mut empty = KvCache::default();
    assert!(model
        .forward_batch(&mut [SeqStep {
            tokens: &[],
            cache: &mut empty,
        }])
        .is_err());
}
