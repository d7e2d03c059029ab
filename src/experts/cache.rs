//! Which experts are held in memory, under a byte budget. Plain state, no
//! I/O: `access` says hit or miss and which experts to evict; the caller
//! pages them in or out (`ExpertStore::populate`/`release`). The accounted
//! bytes never exceed the budget. The model can name experts to spare
//! (`set_protected`: the layer in flight and the next layer's predicted
//! ones) while another resident can go. LFU admits by frequency (as
//! TinyLFU does): a newcomer used no more often than the expert it would
//! evict is served once and not kept, so a burst of rare experts (a long
//! prefill) cannot flush the frequent ones.

use std::collections::HashMap;

use crate::config::ExpertPolicy;

/// (layer, expert)
pub type ExpertId = (u16, u16);

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Bytes brought in by misses (resident or transient).
    pub bytes_in: u64,
    pub evictions: u64,
    /// Misses served without making the expert resident (pinned policy, a
    /// budget below one expert, or an LFU newcomer refused admission).
    pub transient: u64,
}

impl CacheStats {
    pub fn hit_rate(&self) -> f64 {
        let n = self.hits + self.misses;
        if n == 0 {
            0.0
        } else {
            self.hits as f64 / n as f64
        }
    }
}

/// One event of a recorded routing trace (cache replays).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A layer step is about to use `current`; `next` is what the next
    /// layer is predicted to use.
    Predict {
        current: Vec<ExpertId>,
        next: Vec<ExpertId>,
    },
    Access(ExpertId),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Hit,
    /// Now resident; `evicted` made room for it.
    Miss {
        evicted: Vec<ExpertId>,
    },
    /// Used once and not kept.
    Transient,
}

#[derive(Debug, Clone)]
struct Entry {
    last_use: u64,
}

/// Decay per access of the predictive policy's usage estimate.
const EMA_DECAY: f64 = 0.98;

#[derive(Debug, Clone)]
pub struct ResidencyCache {
    policy: ExpertPolicy,
    expert_bytes: u64,
    slots: usize,
    resident: HashMap<ExpertId, Entry>,
    /// Access counts over the cache's lifetime (LFU keeps history across evictions).
    freq: HashMap<ExpertId, u64>,
    /// Predictive policy: exponentially decayed use count, stored as
    /// (value, clock of last update) and decayed lazily.
    ema: HashMap<ExpertId, (f64, u64)>,
    clock: u64,
    stats: CacheStats,
    /// Not evicted while another resident can go: the experts the current
    /// layer uses and the ones predicted for the next.
    protected: Vec<ExpertId>,
    /// A miss evicts only for a newcomer used more often than its victim
    /// (LFU by default).
    admit_by_frequency: bool,
}

impl ResidencyCache {
    pub fn new(policy: ExpertPolicy, budget_bytes: u64, expert_bytes: u64) -> ResidencyCache {
        let slots = budget_bytes.checked_div(expert_bytes).unwrap_or(0) as usize;
        ResidencyCache {
            policy,
            expert_bytes,
            slots,
            resident: HashMap::with_capacity(slots.min(1 << 16)),
            freq: HashMap::new(),
            ema: HashMap::new(),
            clock: 0,
            stats: CacheStats::default(),
            protected: Vec::new(),
            admit_by_frequency: policy == ExpertPolicy::Lfu,
        }
    }

    /// Every miss becomes resident, evicting the policy's victim (LFU
    /// without its admission test; for comparisons).
    pub fn admit_always(mut self) -> ResidencyCache {
        self.admit_by_frequency = false;
        self
    }

    /// Prior use counts (e.g. a calibration plan's), added to LFU's history.
    pub fn prior(&mut self, counts: impl IntoIterator<Item = (ExpertId, u64)>) {
        for (id, n) in counts {
            *self.freq.entry(id).or_default() += n;
        }
    }

    /// The experts eviction should spare for now (replaces the previous set).
    pub fn set_protected(&mut self, ids: Vec<ExpertId>) {
        self.protected = ids;
    }

    /// Evicts until a slot is free, starting with `first` (the victim
    /// already chosen) when given.
    fn make_room(&mut self, mut first: Option<ExpertId>) -> Vec<ExpertId> {
        let mut evicted = Vec::new();
        while self.resident.len() >= self.slots {
            let victim = first.take().unwrap_or_else(|| self.victim());
            self.resident.remove(&victim);
            self.stats.evictions += 1;
            evicted.push(victim);
        }
        evicted
    }

    /// Make the plan's experts resident (pinned policy: the only residents),
    /// up to the budget, in the plan's order. Returns how many were pinned.
    pub fn pin(&mut self, plan: impl IntoIterator<Item = ExpertId>) -> usize {
        let mut n = 0;
        for id in plan {
            if self.resident.len() >= self.slots {
                break;
            }
            if self.resident.insert(id, Entry { last_use: 0 }).is_none() {
                n += 1;
            }
        }
        n
    }

    pub fn policy(&self) -> ExpertPolicy {
        self.policy
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    pub fn resident_count(&self) -> usize {
        self.resident.len()
    }

    pub fn resident_bytes(&self) -> u64 {
        self.resident.len() as u64 * self.expert_bytes
    }

    pub fn budget_bytes(&self) -> u64 {
        self.slots as u64 * self.expert_bytes
    }

    pub fn is_resident(&self, id: ExpertId) -> bool {
        self.resident.contains_key(&id)
    }

    pub fn residents(&self) -> Vec<ExpertId> {
        let mut v: Vec<_> = self.resident.keys().copied().collect();
        v.sort_unstable();
        v
    }

    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    pub fn access(&mut self, id: ExpertId) -> Access {
        self.clock += 1;
        *self.freq.entry(id).or_default() += 1;
        if self.policy == ExpertPolicy::Predictive {
            let now = self.clock;
            let e = self.ema.entry(id).or_insert((0.0, now));
            e.0 = e.0 * EMA_DECAY.powi((now - e.1) as i32) + 1.0;
            e.1 = now;
        }
        if let Some(e) = self.resident.get_mut(&id) {
            e.last_use = self.clock;
            self.stats.hits += 1;
            return Access::Hit;
        }
        self.stats.misses += 1;
        self.stats.bytes_in += self.expert_bytes;
        let full = self.slots > 0 && self.resident.len() >= self.slots;
        let victim = (full && self.policy != ExpertPolicy::Pinned).then(|| self.victim());
        if self.policy == ExpertPolicy::Pinned
            || self.slots == 0
            || victim.is_some_and(|v| !self.admits(id, v))
        {
            self.stats.transient += 1;
            return Access::Transient;
        }
        let evicted = self.make_room(victim);
        self.resident.insert(
            id,
            Entry {
                last_use: self.clock,
            },
        );
        debug_assert!(self.resident_bytes() <= self.budget_bytes());
        Access::Miss { evicted }
    }

    /// Whether a missed `id` may take `victim`'s slot: always, except under
    /// frequency admission, where it must be used more often.
    fn admits(&self, id: ExpertId, victim: ExpertId) -> bool {
        let count = |x: &ExpertId| self.freq.get(x).copied().unwrap_or(0);
        !self.admit_by_frequency || count(&id) > count(&victim)
    }

    /// The predictive policy's estimate of how soon `id` is used again (higher: sooner).
    fn predicted(&self, id: &ExpertId) -> f64 {
        self.ema
            .get(id)
            .map(|&(v, t)| v * EMA_DECAY.powi((self.clock - t) as i32))
            .unwrap_or(0.0)
    }

    fn victim(&self) -> ExpertId {
        let spare = !self.protected.is_empty()
            && self.resident.keys().any(|id| !self.protected.contains(id));
        let candidates = self
            .resident
            .iter()
            .filter(|(id, _)| !spare || !self.protected.contains(id));
        if self.policy == ExpertPolicy::Predictive {
            return *candidates
                .min_by(|a, b| {
                    self.predicted(a.0)
                        .total_cmp(&self.predicted(b.0))
                        .then(a.1.last_use.cmp(&b.1.last_use))
                })
                .map(|(id, _)| id)
                .expect("victim asked of an empty cache");
        }
        let key = |(id, e): (&ExpertId, &Entry)| match self.policy {
            ExpertPolicy::Lfu => (self.freq.get(id).copied().unwrap_or(0), e.last_use, *id),
            _ => (0, e.last_use, *id),
        };
        *candidates
            .min_by_key(|&(id, e)| key((id, e)))
            .map(|(id, _)| id)
            .expect("victim asked of an empty cache")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_trace_by_hand() {
        // 2 slots of 100 bytes.
        let mut c = ResidencyCache::new(ExpertPolicy::Lru, 250, 100);
        assert_eq!(c.slots(), 2);
        let a = (0, 1);
        let b = (0, 2);
        let d = (0, 3);
        assert_eq!(c.access(a), Access::Miss { evicted: vec![] });
        assert_eq!(c.access(b), Access::Miss { evicted: vec![] });
        assert_eq!(c.access(a), Access::Hit);
        assert_eq!(c.access(d), Access::Miss { evicted: vec![b] });
        assert_eq!(c.access(a), Access::Hit);
        assert_eq!(c.access(b), Access::Miss { evicted: vec![d] });
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.evictions, s.bytes_in), (2, 4, 2, 400));
        assert!(c.resident_bytes() <= 250);
    }

    #[test]
    fn lfu_keeps_the_frequent() {
        let mut c = ResidencyCache::new(ExpertPolicy::Lfu, 200, 100).admit_always();
        for _ in 0..3 {
            c.access((0, 1));
        }
        c.access((0, 2));
        c.access((0, 3)); // evicts (0,2): freq 1 < 3
        assert!(c.is_resident((0, 1)) && c.is_resident((0, 3)) && !c.is_resident((0, 2)));
    }

    #[test]
    fn lfu_admits_only_the_more_frequent() {
        let mut c = ResidencyCache::new(ExpertPolicy::Lfu, 200, 100);
        for _ in 0..3 {
            c.access((0, 1));
        }
        c.access((0, 2));
        // (0,3) is used once, like its victim (0,2): served, not kept.
        assert_eq!(c.access((0, 3)), Access::Transient);
        assert_eq!(c.residents(), vec![(0, 1), (0, 2)]);
        // Used twice it beats (0,2) and takes its slot.
        assert_eq!(
            c.access((0, 3)),
            Access::Miss {
                evicted: vec![(0, 2)]
            }
        );
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.transient, s.evictions), (2, 4, 1, 1));
        assert!(c.resident_bytes() <= c.budget_bytes());
    }

    #[test]
    fn pinned_never_evicts() {
        let mut c = ResidencyCache::new(ExpertPolicy::Pinned, 200, 100);
        assert_eq!(c.pin([(0, 1), (0, 2), (0, 3)]), 2);
        assert_eq!(c.access((0, 3)), Access::Transient);
        assert_eq!(c.access((0, 1)), Access::Hit);
        assert_eq!(c.residents(), vec![(0, 1), (0, 2)]);
    }

    #[test]
    fn predictive_prefers_recent_and_frequent() {
        let mut c = ResidencyCache::new(ExpertPolicy::Predictive, 200, 100);
        for _ in 0..5 {
            c.access((0, 1));
        }
        c.access((0, 2));
        c.access((0, 3)); // evicts (0,2): decayed count 1 < ~4.8
        assert!(c.is_resident((0, 1)) && !c.is_resident((0, 2)));
    }

    #[test]
    fn protected_experts_stay_while_others_can_go() {
        let mut c = ResidencyCache::new(ExpertPolicy::Lru, 300, 100);
        c.access((0, 1));
        c.access((0, 2));
        c.access((0, 3));
        // (0,1) is the LRU victim, unless protected.
        c.set_protected(vec![(0, 1), (1, 5)]);
        assert_eq!(
            c.access((1, 5)),
            Access::Miss {
                evicted: vec![(0, 2)]
            }
        );
        // With everything protected the policy's victim goes.
        c.set_protected(c.residents());
        assert_eq!(
            c.access((2, 0)),
            Access::Miss {
                evicted: vec![(0, 1)]
            }
        );
        assert!(c.resident_bytes() <= c.budget_bytes());
    }

    #[test]
    fn zero_budget_is_all_transient() {
        let mut c = ResidencyCache::new(ExpertPolicy::Lru, 50, 100);
        assert_eq!(c.access((1, 1)), Access::Transient);
        assert_eq!(c.resident_bytes(), 0);
    }
}
