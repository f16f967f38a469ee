//! Choosing the next token: logit bias, OpenAI's presence and frequency
//! penalties, then greedy argmax or temperature / top-k / top-p sampling.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::request::SamplingParams;

pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    /// How often each token was generated so far (for the penalties).
    counts: HashMap<u32, u32>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let rng = match params.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Self {
            params,
            rng,
            counts: HashMap::new(),
        }
    }

    /// Picks a token from `logits` (modified in place) and records it.
    pub fn sample(&mut self, logits: &mut [f32]) -> u32 {
        for &(id, bias) in &self.params.logit_bias {
            if let Some(l) = logits.get_mut(id as usize) {
                *l += bias;
            }
        }
        let (pp, fp) = (self.params.presence_penalty, self.params.frequency_penalty);
        if pp != 0.0 || fp != 0.0 {
            for (&id, &n) in &self.counts {
                if let Some(l) = logits.get_mut(id as usize) {
                    *l -= n as f32 * fp + pp;
                }
            }
        }
        let id = if self.params.temperature <= 0.0 {
            argmax(logits)
        } else {
            self.sample_random(logits)
        };
        *self.counts.entry(id).or_default() += 1;
        id
    }

    fn sample_random(&mut self, logits: &[f32]) -> u32 {
        let mut cands: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
        cands.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        if self.params.top_k > 0 {
            cands.truncate(self.params.top_k.max(1));
        }
        let max = cands.first().map_or(0.0, |c| c.1);
        let inv_t = 1.0 / self.params.temperature;
        let mut probs: Vec<f32> = cands.iter().map(|c| ((c.1 - max) * inv_t).exp()).collect();
        let total: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        if self.params.top_p < 1.0 {
            let mut acc = 0.0;
            let keep = probs
                .iter()
                .position(|p| {
                    acc += p;
                    acc >= self.params.top_p
                })
                .map_or(probs.len(), |i| i + 1);
            probs.truncate(keep);
        }
        let total: f32 = probs.iter().sum();
        let mut r = self.rng.random::<f32>() * total;
        for (i, p) in probs.iter().enumerate() {
            r -= p;
            if r <= 0.0 {
                return cands[i].0;
            }
        }
        cands[probs.len().saturating_sub(1)].0
    }
}

/// Index of the largest logit; the first one wins a tie, as in llama.cpp.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32) -> SamplingParams {
        SamplingParams {
            temperature,
            ..Default::default()
        }
    }

    #[test]
    fn greedy_takes_first_max() {
        let mut s = Sampler::new(params(0.0));
        assert_eq!(s.sample(&mut [0.0, 3.0, 3.0, 1.0]), 1);
    }

    #[test]
    fn penalties_and_bias_move_the_choice() {
        let mut s = Sampler::new(SamplingParams {
            frequency_penalty: 2.0,
            ..params(0.0)
        });
        assert_eq!(s.sample(&mut [1.0, 2.0]), 1);
        // token 1 was generated once: 2.0 - 2.0 < 1.0
        assert_eq!(s.sample(&mut [1.0, 2.0]), 0);
        let mut s = Sampler::new(SamplingParams {
            logit_bias: vec![(0, 5.0)],
            ..params(0.0)
        });
        assert_eq!(s.sample(&mut [1.0, 2.0]), 0);
    }

    #[test]
    fn seeded_sampling_repeats_and_respects_top_k() {
        let logits = [0.5f32, 0.4, 0.3, 0.2, 0.1];
        let p = SamplingParams {
            seed: Some(7),
            top_k: 2,
            ..params(1.0)
        };
        let (mut a, mut b) = (Sampler::new(p.clone()), Sampler::new(p));
        for _ in 0..50 {
            let x = a.sample(&mut logits.clone());
            assert_eq!(x, b.sample(&mut logits.clone()));
            assert!(x < 2);
        }
    }

    #[test]
    fn tiny_top_p_is_greedy() {
        let mut s = Sampler::new(SamplingParams {
            top_p: 0.01,
            seed: Some(1),
            ..params(1.0)
        });
        for _ in 0..20 {
            assert_eq!(s.sample(&mut [0.1, 2.0, 0.3]), 1);
        }
    }
}
