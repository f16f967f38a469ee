//! Single-stream speed in llama-bench's terms: `pp` = prompt tokens processed
//! per second in one forward pass, `tg` = tokens generated per second one at a
//! time. The same numbers llama-bench prints, so the two compare directly.

use std::time::Instant;

use super::model::{KvCache, LlamaModel};
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
