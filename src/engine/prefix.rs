//! The prefix cache: KV of prompt prefixes shared between requests (system
//! prompt, tools, earlier turns), kept within a byte budget, keyed by token
//! sequence. Plain synchronous state; the engine holds it behind a mutex.
//!
//! A prompt is cut into blocks of `block` tokens at absolute positions
//! 0, B, 2B, … The engine prefills in chunks on the same boundaries, so the
//! KV of a block depends only on the tokens up to its end: a warm request
//! reuses whole blocks and then runs exactly the arithmetic a cold one would
//! (same chunk shapes, same kernels), and its logits and tokens are identical.
//!
//! The blocks form a tree (a radix tree with one block per edge): a node is
//! keyed by its parent and its block's tokens. Only leaves are evicted, so
//! every cached node's ancestors are cached too. Eviction order: leaves never
//! reused first (a request's own tail), then least recently used.
//!
//! Owns: the tree, the budget, the hit figures. Does not own: computing KV
//! (`model`), the per-request cache (`kv`), when to look up or insert
//! (`generate`).

use std::collections::HashMap;
use std::sync::Arc;

use super::kv::KvCache;

/// The KV of one block: per layer, keys then values, each [block, row].
#[derive(Debug)]
pub struct BlockKv {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl BlockKv {
    fn bytes(&self) -> u64 {
        let n: usize = self.k.iter().chain(&self.v).map(Vec::len).sum();
        (n * 4) as u64
    }
}

/// Hit figures since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PrefixStats {
    /// Prompts looked up.
    pub lookups: u64,
    /// Prompts that reused at least one block.
    pub hits: u64,
    /// Prompt tokens looked up.
    pub prompt_tokens: u64,
    /// Prompt tokens whose KV came from the cache.
    pub reused_tokens: u64,
    pub inserted_blocks: u64,
    pub evicted_blocks: u64,
    /// Blocks and bytes held now.
    pub blocks: u64,
    pub bytes: u64,
    pub budget_bytes: u64,
    pub block_tokens: u64,
}

impl PrefixStats {
    /// Share of looked-up prompt tokens that were reused.
    pub fn token_hit_rate(&self) -> f64 {
        if self.prompt_tokens == 0 {
            0.0
        } else {
            self.reused_tokens as f64 / self.prompt_tokens as f64
        }
    }
}

const ROOT: usize = usize::MAX;

#[derive(Debug)]
struct Node {
    parent: usize,
    tokens: Box<[u32]>,
    kv: Arc<BlockKv>,
    children: usize,
    last_use: u64,
    reuses: u64,
}

#[derive(Debug)]
pub struct PrefixCache {
    block: usize,
    budget: u64,
    nodes: Vec<Option<Node>>,
    free: Vec<usize>,
    index: HashMap<(usize, Box<[u32]>), usize>,
    clock: u64,
    stats: PrefixStats,
}

impl PrefixCache {
    /// A cache of blocks of `block` tokens within `budget` bytes (0: off).
    pub fn new(block: usize, budget: u64) -> PrefixCache {
        PrefixCache {
            block: block.max(1),
            budget,
            nodes: Vec::new(),
            free: Vec::new(),
            index: HashMap::new(),
            clock: 0,
            stats: PrefixStats {
                budget_bytes: budget,
                block_tokens: block.max(1) as u64,
                ..PrefixStats::default()
            },
        }
    }

    pub fn block(&self) -> usize {
        self.block
    }

    pub fn enabled(&self) -> bool {
        self.budget > 0
    }

    pub fn stats(&self) -> PrefixStats {
        self.stats
    }

    fn child(&self, parent: usize, tokens: &[u32]) -> Option<usize> {
        self.index.get(&(parent, Box::from(tokens))).copied()
    }

    /// The cached blocks that start `prompt`, leaving at least one token to
    /// run (its logits start the reply). Counts the lookup.
    pub fn lookup(&mut self, prompt: &[u32]) -> Vec<Arc<BlockKv>> {
        let mut out = Vec::new();
        if !self.enabled() {
            return out;
        }
        self.clock += 1;
        self.stats.lookups += 1;
        self.stats.prompt_tokens += prompt.len() as u64;
        let most = prompt.len().saturating_sub(1) / self.block;
        let mut parent = ROOT;
        for b in 0..most {
            let Some(id) = self.child(parent, &prompt[b * self.block..(b + 1) * self.block]) else {
                break;
            };
            let clock = self.clock;
            let n = self.nodes[id].as_mut().expect("live node");
            n.last_use = clock;
            n.reuses += 1;
            out.push(n.kv.clone());
            parent = id;
        }
        if !out.is_empty() {
            self.stats.hits += 1;
            self.stats.reused_tokens += (out.len() * self.block) as u64;
        }
        out
    }

    /// Keep the KV of every whole block of `prompt` that `kv` holds (the
    /// blocks a prefill computed), evicting to stay in the budget.
    pub fn insert(&mut self, prompt: &[u32], kv: &KvCache) {
        if !self.enabled() {
            return;
        }
        self.clock += 1;
        let blocks = prompt.len().min(kv.len()) / self.block;
        let mut parent = ROOT;
        for b in 0..blocks {
            let tokens = &prompt[b * self.block..(b + 1) * self.block];
            if let Some(id) = self.child(parent, tokens) {
                let clock = self.clock;
                self.nodes[id].as_mut().expect("live node").last_use = clock;
                parent = id;
                continue;
            }
            let block = kv.block(b * self.block, self.block);
            let bytes = block.bytes();
            if !self.make_room(bytes, parent) {
                return;
            }
            let node = Node {
                parent,
                tokens: Box::from(tokens),
                kv: Arc::new(block),
                children: 0,
                last_use: self.clock,
                reuses: 0,
            };
            let id = match self.free.pop() {
                Some(id) => {
                    self.nodes[id] = Some(node);
                    id
                }
                None => {
                    self.nodes.push(Some(node));
                    self.nodes.len() - 1
                }
            };
            if parent != ROOT {
                self.nodes[parent].as_mut().expect("live node").children += 1;
            }
            self.index.insert((parent, Box::from(tokens)), id);
            self.stats.inserted_blocks += 1;
            self.stats.blocks += 1;
            self.stats.bytes += bytes;
            parent = id;
        }
    }

    /// Evict leaves (never `keep`) until `bytes` more fit; false if they cannot.
    fn make_room(&mut self, bytes: u64, keep: usize) -> bool {
        if bytes > self.budget {
            return false;
        }
        while self.stats.bytes + bytes > self.budget {
            let victim = self
                .nodes
                .iter()
                .enumerate()
                .filter_map(|(i, n)| n.as_ref().map(|n| (i, n)))
                .filter(|(i, n)| n.children == 0 && *i != keep)
                .min_by_key(|(_, n)| (n.reuses > 0, n.last_use))
                .map(|(i, _)| i);
            let Some(id) = victim else { return false };
            self.evict(id);
        }
        true
    }

    fn evict(&mut self, id: usize) {
        let n = self.nodes[id].take().expect("live node");
        self.index.remove(&(n.parent, n.tokens));
        if n.parent != ROOT {
            self.nodes[n.parent].as_mut().expect("live node").children -= 1;
        }
        self.free.push(id);
        self.stats.evicted_blocks += 1;
        self.stats.blocks -= 1;
        self.stats.bytes -= n.kv.bytes();
    }

    /// Drop everything (e.g. when the weights behind the KV change).
    pub fn clear(&mut self) {
        self.nodes.clear();
        self.free.clear();
        self.index.clear();
        self.stats.blocks = 0;
        self.stats.bytes = 0;
    }
}

impl KvCache {
    /// Copy `n` committed positions from `start`.
    pub fn block(&self, start: usize, n: usize) -> BlockKv {
        let layers = self.layers();
        let (mut k, mut v) = (Vec::with_capacity(layers), Vec::with_capacity(layers));
        for l in 0..layers {
            let (pk, pv) = self.past(l);
            let r = self.row();
            k.push(pk[start * r..(start + n) * r].to_vec());
            v.push(pv[start * r..(start + n) * r].to_vec());
        }
        BlockKv { k, v }
    }

    /// Append a cached block after the positions held.
    pub fn push_block(&mut self, b: &BlockKv) {
        let n = b.k.first().map_or(0, |k| k.len() / self.row().max(1));
        for l in 0..self.layers() {
            self.append(l, &b.k[l], &b.v[l]);
        }
        self.commit(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache of `len` positions, each position's values its index plus `salt`.
    fn kv_of(len: usize, salt: f32) -> KvCache {
        let mut kv = KvCache::new(2, 3, 64);
        let k: Vec<f32> = (0..len * 3).map(|i| (i / 3) as f32 + salt).collect();
        for l in 0..2 {
            kv.append(l, &k, &k);
        }
        kv.commit(len);
        kv
    }

    fn block_bytes(b: usize) -> u64 {
        (2 * 2 * b * 3 * 4) as u64
    }

    #[test]
    fn reuses_whole_blocks_and_leaves_a_token_to_run() {
        let mut c = PrefixCache::new(4, 1 << 20);
        let p: Vec<u32> = (0..10).collect();
        assert!(c.lookup(&p).is_empty());
        c.insert(&p, &kv_of(10, 0.0));
        assert_eq!(c.stats().blocks, 2);
        // same prompt: 2 blocks (8 tokens) of 10
        let got = c.lookup(&p);
        assert_eq!(got.len(), 2);
        let mut kv = KvCache::new(2, 3, 64);
        for b in &got {
            kv.push_block(b);
        }
        assert_eq!(kv.len(), 8);
        assert_eq!(kv.past(1).0, kv_of(8, 0.0).past(1).0);
        // exactly 8 tokens: only one block, so one token is left to run
        assert_eq!(c.lookup(&p[..8]).len(), 1);
        // a prompt that differs in the second block reuses the first
        let mut q = p.clone();
        q[5] = 99;
        assert_eq!(c.lookup(&q).len(), 1);
        let s = c.stats();
        assert_eq!((s.lookups, s.hits, s.reused_tokens), (4, 3, 8 + 4 + 4));
    }

    #[test]
    fn eviction_keeps_the_budget_and_what_is_reused() {
        // room for four blocks of 4 tokens
        let mut c = PrefixCache::new(4, 4 * block_bytes(4));
        let shared: Vec<u32> = (0..9).collect(); // two blocks + 1
        c.insert(&shared, &kv_of(9, 0.0));
        assert_eq!(c.lookup(&shared).len(), 2); // reused once
                                                // a one-off prompt with its own first block
        let other: Vec<u32> = (100..109).collect();
        c.insert(&other, &kv_of(9, 1.0));
        assert_eq!(c.stats().blocks, 4);
        // a third prompt evicts the one-off blocks, not the older reused ones
        // (plain LRU would take the shared prefix's leaf first)
        let third: Vec<u32> = (200..209).collect();
        c.insert(&third, &kv_of(9, 2.0));
        assert_eq!(c.stats().evicted_blocks, 2);
        assert!(c.stats().bytes <= 4 * block_bytes(4));
        assert_eq!(
            c.lookup(&shared).len(),
            2,
            "a reused prefix outlives one-off prompts"
        );
        assert!(c.lookup(&other).is_empty());
        assert_eq!(c.lookup(&third).len(), 2);
        // leaves go first: a cached node's ancestors are always cached
        for n in c.nodes.iter().flatten() {
            assert!(n.parent == ROOT || c.nodes[n.parent].is_some());
        }
    }

    #[test]
    fn too_small_or_off() {
        let mut c = PrefixCache::new(4, block_bytes(4) - 1);
        let p: Vec<u32> = (0..9).collect();
        c.insert(&p, &kv_of(9, 0.0));
        assert_eq!(c.stats().blocks, 0);
        let mut off = PrefixCache::new(4, 0);
        off.insert(&p, &kv_of(9, 0.0));
        assert!(off.lookup(&p).is_empty());
        assert_eq!(off.stats().lookups, 0);
    }

    #[test]
    fn only_blocks_the_kv_holds() {
        let mut c = PrefixCache::new(4, 1 << 20);
        let p: Vec<u32> = (0..12).collect();
        c.insert(&p, &kv_of(5, 0.0));
        assert_eq!(c.stats().blocks, 1);
        c.clear();
        assert_eq!(c.stats().blocks, 0);
        assert!(c.lookup(&p).is_empty());
    }
}
