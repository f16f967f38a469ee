//! Single-stream speed in llama-bench's terms: `pp` = prompt tokens processed
//! per second in one forward pass, `tg` = tokens generated per second one at a
//! time. The same numbers llama-bench prints, so the two compare directly.

use std::time::Instant;

use super::kv::KvCache;
use super::model::{LlamaModel, SeqStep};
use super::sampler::argmax;
use super::LlmError;

#[derive(Debug, Clone, Copy)]
pub struct BenchResult {
    pub prompt_tokens: usize,
    pub prefill_tokens_per_s: f64,
    pub gen_tokens: usize,
    pub decode_tokens_per_s: f64,
}

/// One repetition: a prompt of `pp` tokens (fixed, non-special ids), then `tg`
/// greedy decode steps on a fresh cache.
pub fn run(model: &LlamaModel, pp: usize, tg: usize) -> Result<BenchResult, LlmError> {
    let vocab = model.config().vocab_size as u32;
    let prompt: Vec<u32> = (0..pp as u32).map(|i| 100 + (i * 7919) % (vocab - 200)).collect();
    let mut cache = KvCache::default();
    let t0 = Instant::now();
    model.forward(&prompt, &mut cache)?;
    let prefill = t0.elapsed().as_secs_f64();

    let mut cache = KvCache::default();
    let mut logits = model.forward(&prompt[..1], &mut cache)?;
    let t1 = Instant::now();
    for _ in 0..tg {
        let next = argmax(&logits);
        logits = model.forward(&[next], &mut cache)?;
    }
    let decode = t1.elapsed().as_secs_f64();
    Ok(BenchResult {
        prompt_tokens: pp,
        prefill_tokens_per_s: pp as f64 / prefill,
        gen_tokens: tg,
        decode_tokens_per_s: tg as f64 / decode,
    })
}

/// Aggregate decode tokens/s of `seqs` sequences stepping together through
/// [`LlamaModel::forward_batch`] (each after a 16-token prompt), `tg` steps:
/// what one weight pass per step buys once a scheduler batches sequences.
pub fn run_batched(model: &LlamaModel, seqs: usize, tg: usize) -> Result<f64, LlmError> {
    let vocab = model.config().vocab_size as u32;
    let mut caches: Vec<KvCache> = (0..seqs).map(|_| KvCache::default()).collect();
    let mut next: Vec<Vec<u32>> = (0..seqs as u32)
        .map(|s| {
            (0..16u32)
                .map(|i| 100 + (i * 7919 + s * 104_729) % (vocab - 200))
                .collect()
        })
        .collect();
    let step = |next: &mut Vec<Vec<u32>>, caches: &mut Vec<KvCache>| -> Result<(), LlmError> {
        let mut batch: Vec<SeqStep> = caches
            .iter_mut()
            .zip(next.iter())
            .map(|(cache, tokens)| SeqStep { tokens, cache })
            .collect();
        let logits = model.forward_batch(&mut batch)?;
        for (n, l) in next.iter_mut().zip(&logits) {
            *n = vec![argmax(l)];
        }
        Ok(())
    };
    step(&mut next, &mut caches)?;
    let t = Instant::now();
    for _ in 0..tg {
        step(&mut next, &mut caches)?;
    }
    Ok((seqs * tg) as f64 / t.elapsed().as_secs_f64())
}
