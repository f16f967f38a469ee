//! Decides what each forward step runs: which sequences, how many of their
//! tokens, and whose KV memory it takes.
//!
//! - Running sequences keep their place; waiting ones are admitted first come
//!   first served while `max_num_seqs` and the KV budget allow.
//! - Every decoding sequence gets its one token each step. Prompts are fed
//!   in chunks out of what is left of `max_batch_tokens`, so a long prompt
//!   shares steps with the decodes instead of stalling them.
//! - KV memory is counted in blocks of [`BLOCK_TOKENS`]; the prefix cache's
//!   blocks come out of the same budget and are evicted first. When a running
//!   sequence cannot grow, the most recently admitted one is preempted: its
//!   cache is dropped and it waits at the head of the queue to be recomputed.
//!
//! Chunks are never a single token unless the whole prompt is one token, and
//! a prefix-cache hit always leaves at least two prompt tokens to compute.
//! Attention over two or more query rows uses one arithmetic order for every
//! row (see `attention.rs`), so how a prompt is chunked or restored never
//! changes a bit of the result. Recomputing after preemption feeds generated
//! tokens as a prompt, which may change low bits of what follows.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::kv::{blocks_for, BLOCK_TOKENS};
use super::prefix_cache::{KvShape, PrefixCache};
use super::sequence::{Sequence, State};
use super::EngineStats;

#[derive(Debug, Clone, Copy)]
pub struct SchedulerConfig {
    pub max_num_seqs: usize,
    /// Tokens one step may feed (decodes and prompt chunks together).
    pub max_batch_tokens: usize,
    /// The KV budget, in blocks of [`BLOCK_TOKENS`] tokens.
    pub kv_blocks: usize,
    pub prefix_cache: bool,
}

pub struct Scheduler {
    cfg: SchedulerConfig,
    kv: KvBudget,
    pub waiting: VecDeque<Sequence>,
    /// In admission order: preemption takes from the back.
    pub running: Vec<Sequence>,
}

/// The KV block budget, shared by running sequences and the prefix cache.
struct KvBudget {
    blocks: usize,
    shape: KvShape,
    prefix: PrefixCache,
    /// Blocks reserved by sequences.
    held: usize,
}

impl KvBudget {
    fn free(&self) -> usize {
        self.blocks.saturating_sub(self.held + self.prefix.blocks())
    }

    fn used(&self) -> usize {
        self.held + self.prefix.blocks()
    }

    /// Frees `need` blocks if the prefix cache can give them up.
    fn make_room(&mut self, need: usize) -> bool {
        while self.free() < need {
            if !self.prefix.evict_one() {
                return false;
            }
        }
        true
    }

    /// Reserves blocks for `seq` to hold `tokens` tokens; false when the
    /// budget cannot, even after emptying the prefix cache.
    fn grow(&mut self, seq: &mut Sequence, tokens: usize) -> bool {
        let need = blocks_for(tokens).saturating_sub(seq.blocks);
        if need == 0 {
            return true;
        }
        if !self.make_room(need) {
            return false;
        }
        seq.blocks += need;
        self.held += need;
        let s = self.shape;
        seq.cache
            .reserve(seq.blocks * BLOCK_TOKENS, s.n_layer, s.heads, s.head_dim);
        true
    }

    /// Takes back a sequence's blocks and drops its cache.
    fn release(&mut self, seq: &mut Sequence) {
        self.held -= seq.blocks;
        seq.blocks = 0;
        seq.cache = Default::default();
    }
}

/// One step's work: `(index into running, tokens to feed)`.
pub type Plan = Vec<(usize, usize)>;

/// How many of `pending` prompt tokens to feed with `budget` left: never
/// leave exactly one behind, never feed a lone token of a longer prompt.
fn chunk(pending: usize, budget: usize) -> usize {
    if pending <= 1 {
        return pending;
    }
    let mut take = pending.min(budget);
    if pending - take == 1 {
        take -= 1;
    }
    if take < 2 {
        0
    } else {
        take
    }
}

impl Scheduler {
    pub fn new(cfg: SchedulerConfig, shape: KvShape) -> Self {
        Self {
            cfg,
            kv: KvBudget {
                blocks: cfg.kv_blocks,
                shape,
                prefix: PrefixCache::default(),
                held: 0,
            },
            waiting: VecDeque::new(),
            running: Vec::new(),
        }
    }

    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.running.is_empty()
    }

    /// Whether another request may be taken from the engine's queue.
    pub fn wants_more(&self) -> bool {
        self.waiting.len() + self.running.len() < self.cfg.max_num_seqs
    }

    /// Drops sequences whose client left or whose deadline passed, freeing
    /// their KV at once; returns how many clients left.
    pub fn sweep(&mut self, now: Instant, stats: &EngineStats) -> usize {
        let mut gone = 0;
        let mut keep = Vec::with_capacity(self.running.len());
        for mut seq in std::mem::take(&mut self.running) {
            if seq.abandoned() {
                gone += 1;
            } else if !seq.expire(now) {
                keep.push(seq);
                continue;
            }
            self.kv.release(&mut seq);
        }
        self.running = keep;
        self.waiting.retain_mut(|seq| {
            if seq.abandoned() {
                gone += 1;
                return false;
            }
            !seq.expire(now)
        });
        stats.cancelled.fetch_add(gone as u64, Ordering::Relaxed);
        gone
    }

    /// Chooses the next step's work, admitting and preempting as needed.
    pub fn plan(&mut self, stats: &EngineStats) -> Plan {
        let decoding = self.running.iter().filter(|s| s.pending().len() == 1).count();
        let mut budget = self.cfg.max_batch_tokens.saturating_sub(decoding);
        let mut plan = Plan::new();
        let mut i = 0;
        while i < self.running.len() {
            let pending = self.running[i].pending().len();
            let n = if pending == 1 { 1 } else { chunk(pending, budget) };
            if n == 0 {
                i += 1;
                continue;
            }
            let target = self.running[i].cache.len() + n;
            if self.reserve(i, target, stats) {
                if pending > 1 {
                    budget -= n;
                }
                plan.push((i, n));
                i += 1;
            }
            // Otherwise a sequence at or after `i` was preempted: retry `i`
            // (if it was `i` itself, the loop now ends or sees the next).
        }
        self.admit(&mut budget, &mut plan, stats);
        plan
    }

    /// Grows running[i] to `target` tokens, preempting from the back until
    /// it fits. False when running[i] or a later one had to go.
    fn reserve(&mut self, i: usize, target: usize, stats: &EngineStats) -> bool {
        loop {
            if self.kv.grow(&mut self.running[i], target) {
                return true;
            }
            let last = self.running.len() - 1;
            if last == 0 {
                // Alone and still too big: the budget is what ends it.
                let mut seq = self.running.remove(0);
                tracing::warn!(tokens = target, "KV budget exhausted by one sequence; ending it");
                seq.cut_short();
                self.kv.release(&mut seq);
                stats.finished.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            let mut victim = self.running.remove(last);
            self.kv.release(&mut victim);
            stats.preempted.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(tokens = victim.tokens.len(), "preempted for KV memory; will recompute");
            self.waiting.push_front(victim);
            if last == i {
                return false;
            }
        }
    }

    /// Admits waiting sequences in order while seats, budget and KV allow.
    fn admit(&mut self, budget: &mut usize, plan: &mut Plan, stats: &EngineStats) {
        while self.running.len() < self.cfg.max_num_seqs {
            let Some(mut seq) = self.waiting.pop_front() else { break };
            let most = self.kv.blocks * BLOCK_TOKENS;
            if seq.cache.is_empty() && seq.tokens.len() + 1 > most {
                let n = seq.tokens.len();
                seq.fail(format!(
                    "prompt of {n} tokens does not fit the engine's KV cache budget of {most} tokens"
                ));
                continue;
            }
            if seq.cache.is_empty() && self.cfg.prefix_cache && seq.prompt_len >= 2 {
                // Leave two prompt tokens to compute (see the module note).
                let max = (seq.prompt_len - 2) / BLOCK_TOKENS;
                let hit = self.kv.prefix.restore(&seq.tokens, max, &mut seq.cache, self.kv.shape);
                stats
                    .prefix_queried_tokens
                    .fetch_add(seq.prompt_len as u64, Ordering::Relaxed);
                stats.prefix_hit_tokens.fetch_add(hit as u64, Ordering::Relaxed);
                seq.blocks = blocks_for(hit);
                self.kv.held += seq.blocks;
            }
            let pending = seq.pending().len();
            let n = chunk(pending, *budget);
            let target = seq.cache.len() + n;
            let fits = n > 0 && self.kv.grow(&mut seq, target);
            if !fits {
                // First come, first served: nobody overtakes the head. A
                // restored prefix goes back (the cache keeps its copy).
                self.kv.release(&mut seq);
                self.waiting.push_front(seq);
                break;
            }
            if pending > 1 {
                *budget -= n;
            }
            plan.push((self.running.len(), n));
            self.running.push(seq);
        }
    }

    /// After a step: caches the prompt blocks of sequences whose prompt just
    /// finished, and drops the sequences that are done.
    pub fn after_step(&mut self, plan: &Plan, stats: &EngineStats) {
        if self.cfg.prefix_cache {
            for &(i, n) in plan {
                let seq = &self.running[i];
                let len = seq.cache.len();
                if seq.prompt_len >= 2 && len >= seq.prompt_len && len - n < seq.prompt_len {
                    let blocks = seq.prompt_len / BLOCK_TOKENS;
                    let missing = self.kv.prefix.missing(&seq.tokens, blocks);
                    if missing > 0 && self.kv.make_room(missing) {
                        let seq = &self.running[i];
                        self.kv.prefix.insert(&seq.tokens, blocks, &seq.cache, self.kv.shape);
                    }
                }
            }
        }
        let mut keep = Vec::with_capacity(self.running.len());
        for mut seq in std::mem::take(&mut self.running) {
            match seq.state {
                State::Running => {
                    keep.push(seq);
                    continue;
                }
                State::Finished => stats.finished.fetch_add(1, Ordering::Relaxed),
                State::Cancelled => stats.cancelled.fetch_add(1, Ordering::Relaxed),
            };
            self.kv.release(&mut seq);
        }
        self.running = keep;
        self.publish(stats);
    }

    /// Copies the gauges into the shared stats.
    pub fn publish(&self, stats: &EngineStats) {
        stats.running.store(self.running.len() as u64, Ordering::Relaxed);
        stats.waiting.store(self.waiting.len() as u64, Ordering::Relaxed);
        stats.kv_blocks_used.store(self.kv.used() as u64, Ordering::Relaxed);
        stats.kv_blocks_total.store(self.kv.blocks as u64, Ordering::Relaxed);
        stats
            .prefix_cache_blocks
            .store(self.kv.prefix.blocks() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::chunk;

    #[test]
    fn chunks_never_leave_or_take_a_lone_token() {
        assert_eq!(chunk(1, 0), 1);
        assert_eq!(chunk(10, 100), 10);
        assert_eq!(chunk(10, 9), 8);
        assert_eq!(chunk(10, 4), 4);
        assert_eq!(chunk(3, 2), 0);
        assert_eq!(chunk(5, 1), 0);
        assert_eq!(chunk(2, 2), 2);
    }
}
