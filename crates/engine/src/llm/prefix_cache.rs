//! Prefix cache: KV of prompt blocks that earlier sequences computed, keyed
//! by the whole token prefix up to the block's end, so a new prompt that
//! starts the same way (every chat shares its system prompt) copies that KV
//! instead of recomputing it.
//!
//! A hit copies blocks into the sequence's own cache rather than sharing
//! them: the attention kernels read one contiguous run per head, and a copy
//! costs ~0.1 ms a block against ~50 ms to recompute it. Entries are evicted
//! least recently used; a lookup touches a chain leaf-first so that parents
//! are always more recent than their children and go last.
//!
//! Hand-written rather than `moka`/`lru`: entries are charged to the engine's
//! KV block budget, which this cache shares with running sequences, and
//! eviction must happen exactly when the scheduler needs a block.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use super::kv::{KvCache, BLOCK_TOKENS};

/// Shape of one model's KV, to copy blocks in and out of caches.
#[derive(Debug, Clone, Copy)]
pub struct KvShape {
    pub n_layer: usize,
    pub heads: usize,
    pub head_dim: usize,
}

struct Entry {
    parent: u64,
    tokens: Vec<u32>,
    kv: Vec<f32>,
    last_used: u64,
}

#[derive(Default)]
pub struct PrefixCache {
    entries: HashMap<u64, Entry>,
    tick: u64,
}

/// Key of the block that ends a prefix, from its parent's key and its tokens.
fn chain(parent: u64, block: &[u32]) -> u64 {
    let mut h = DefaultHasher::new();
    parent.hash(&mut h);
    block.hash(&mut h);
    h.finish()
}

impl PrefixCache {
    /// Blocks held.
    pub fn blocks(&self) -> usize {
        self.entries.len()
    }

    /// Keys of the cached blocks that start `tokens`, at most `max_blocks`.
    fn matched(&self, tokens: &[u32], max_blocks: usize) -> Vec<u64> {
        let mut keys = Vec::new();
        let mut parent = 0;
        for block in tokens.chunks_exact(BLOCK_TOKENS).take(max_blocks) {
            let key = chain(parent, block);
            match self.entries.get(&key) {
                Some(e) if e.parent == parent && e.tokens == block => keys.push(key),
                _ => break,
            }
            parent = key;
        }
        keys
    }

    /// Marks a chain as just used, leaf first, so parents stay newer.
    fn touch(&mut self, keys: &[u64]) {
        for key in keys.iter().rev() {
            self.tick += 1;
            if let Some(e) = self.entries.get_mut(key) {
                e.last_used = self.tick;
            }
        }
    }

    /// Copies the longest cached prefix of `tokens`, up to `max_blocks`
    /// blocks, into the empty `cache`. Returns the tokens restored.
    pub fn restore(&mut self, tokens: &[u32], max_blocks: usize, cache: &mut KvCache, shape: KvShape) -> usize {
        let keys = self.matched(tokens, max_blocks);
        self.touch(&keys);
        for key in &keys {
            if let Some(e) = self.entries.get(key) {
                cache.import(&e.kv, BLOCK_TOKENS, shape.n_layer, shape.heads, shape.head_dim);
            }
        }
        keys.len() * BLOCK_TOKENS
    }

    /// Blocks of the first `n_blocks` blocks of `tokens` (computed in
    /// `cache`) that are not cached yet.
    pub fn missing(&self, tokens: &[u32], n_blocks: usize) -> usize {
        n_blocks.saturating_sub(self.matched(tokens, n_blocks).len())
    }

    /// Caches the first `n_blocks` blocks of `tokens`, whose KV is in
    /// `cache`, adding only those not already held.
    pub fn insert(&mut self, tokens: &[u32], n_blocks: usize, cache: &KvCache, shape: KvShape) {
        let mut parent = 0;
        let mut keys = Vec::new();
        for (i, block) in tokens.chunks_exact(BLOCK_TOKENS).take(n_blocks).enumerate() {
            let key = chain(parent, block);
            let fresh = match self.entries.get(&key) {
                Some(e) => e.parent != parent || e.tokens != block,
                None => true,
            };
            if fresh {
                // A hash collision replaces the older entry: never serve
                // KV for tokens other than the ones asked for.
                let kv = cache.export(i * BLOCK_TOKENS, BLOCK_TOKENS, shape.head_dim);
                self.entries.insert(
                    key,
                    Entry {
                        parent,
                        tokens: block.to_vec(),
                        kv,
                        last_used: 0,
                    },
                );
            }
            keys.push(key);
            parent = key;
        }
        self.touch(&keys);
    }

    /// Drops the least recently used block. False when empty.
    pub fn evict_one(&mut self) -> bool {
        let oldest = self.entries.iter().min_by_key(|(_, e)| e.last_used).map(|(k, _)| *k);
        oldest.is_some_and(|k| self.entries.remove(&k).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: KvShape = KvShape {
        n_layer: 1,
        heads: 1,
        head_dim: 2,
    };

    /// A cache whose token `t` holds keys `[t, t]` and values `[-t, -t]`.
    fn cache_of(n: usize) -> KvCache {
        let mut data = Vec::new();
        for t in 0..n {
            data.extend([t as f32, t as f32]);
        }
        let values: Vec<f32> = data.iter().map(|x| -x).collect();
        data.extend(values);
        let mut c = KvCache::default();
        c.import(&data, n, 1, 1, 2);
        c
    }

    #[test]
    fn restores_the_longest_cached_prefix_and_evicts_leaves_first() {
        let tokens: Vec<u32> = (0..3 * BLOCK_TOKENS as u32).collect();
        let source = cache_of(tokens.len());
        let mut pc = PrefixCache::default();
        assert_eq!(pc.missing(&tokens, 2), 2);
        pc.insert(&tokens, 2, &source, SHAPE);
        assert_eq!((pc.blocks(), pc.missing(&tokens, 3)), (2, 1));

        let mut c = KvCache::default();
        assert_eq!(pc.restore(&tokens, 3, &mut c, SHAPE), 2 * BLOCK_TOKENS);
        assert_eq!(c.export(0, 2 * BLOCK_TOKENS, 2), source.export(0, 2 * BLOCK_TOKENS, 2));
        // A prompt that differs in its second block matches only the first.
        let mut other = tokens.clone();
        other[BLOCK_TOKENS + 3] = 999;
        assert_eq!(pc.restore(&other, 3, &mut KvCache::default(), SHAPE), BLOCK_TOKENS);
        // max_blocks caps the hit.
        assert_eq!(pc.restore(&tokens, 1, &mut KvCache::default(), SHAPE), BLOCK_TOKENS);

        // The leaf goes first, so what is left is still a usable prefix.
        assert!(pc.evict_one());
        assert_eq!(pc.restore(&tokens, 3, &mut KvCache::default(), SHAPE), BLOCK_TOKENS);
        assert!(pc.evict_one());
        assert!(!pc.evict_one());
        assert_eq!(pc.restore(&tokens, 3, &mut KvCache::default(), SHAPE), 0);
    }
}
