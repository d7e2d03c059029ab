//! Cache policies replayed on a recorded routing trace: LRU, LFU,
//! plan-pinned and predictive (the `experts::cache` implementations, the
//! same code the engine runs) against Belady's optimum (evict the expert
//! whose next use is farthest), at several budgets. Pure replay, no model.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::config::ExpertPolicy;
use crate::experts::cache::Event;
use crate::experts::{ExpertId, ResidencyCache};

#[derive(Debug, Clone, Serialize)]
pub struct PolicyRow {
    pub slots: usize,
    pub fraction: f64,
    pub lru: f64,
    pub lfu: f64,
    pub pinned: f64,
    pub predictive: f64,
    /// LFU whose counts start from the calibration plan's.
    pub lfu_plan: f64,
    /// The same, sparing the current layer's experts and the next layer's
    /// predicted ones from eviction, as the engine does (what it reads
    /// ahead into the page cache is not counted here).
    pub lfu_plan_prediction: Option<f64>,
    pub belady: f64,
}

/// Hit rate of a `ResidencyCache` policy over `trace`.
pub fn replay(policy: ExpertPolicy, slots: usize, trace: &[ExpertId], plan: &[ExpertId]) -> f64 {
    let mut c = ResidencyCache::new(policy, slots as u64, 1);
    if policy == ExpertPolicy::Pinned {
        c.pin(plan.iter().copied());
    }
    for &id in trace {
        c.access(id);
    }
    c.stats().hit_rate()
}

/// Hit rate of LFU seeded with `prior` counts and, with `predict`, sparing
/// the current and predicted experts from eviction.
pub fn replay_events(
    slots: usize,
    events: &[Event],
    prior: &[(ExpertId, u64)],
    predict: bool,
) -> f64 {
    let mut c = ResidencyCache::new(ExpertPolicy::Lfu, slots as u64, 1);
    c.prior(prior.iter().copied());
    for ev in events {
        match ev {
            Event::Predict { current, next } if predict => {
                let mut keep = current.clone();
                keep.extend(next.iter().copied());
                c.set_protected(keep);
            }
            Event::Predict { .. } => {}
            Event::Access(id) => {
                c.access(*id);
            }
        }
    }
    let s = c.stats();
    s.hits as f64 / (s.hits + s.misses).max(1) as f64
}

/// Belady's MIN: the best hit rate any policy could reach with `slots`.
pub fn belady(slots: usize, trace: &[ExpertId]) -> f64 {
    if trace.is_empty() {
        return 0.0;
    }
    // next[i] = index of the next access to trace[i]'s expert after i
    let mut next = vec![usize::MAX; trace.len()];
    let mut last: HashMap<ExpertId, usize> = HashMap::new();
    for (i, id) in trace.iter().enumerate().rev() {
        next[i] = last.get(id).copied().unwrap_or(usize::MAX);
        last.insert(*id, i);
    }
    let mut resident: HashMap<ExpertId, usize> = HashMap::new(); // id -> its next use
    let mut hits = 0u64;
    for (i, id) in trace.iter().enumerate() {
        if resident.contains_key(id) {
            hits += 1;
            resident.insert(*id, next[i]);
            continue;
        }
        if slots == 0 {
            continue;
        }
        if resident.len() >= slots {
            let (victim, far) = resident
                .iter()
                .max_by_key(|(_, &n)| n)
                .map(|(v, &n)| (*v, n))
                .expect("non-empty");
            if next[i] >= far {
                continue; // the newcomer is needed last: do not cache it
            }
            resident.remove(&victim);
        }
        resident.insert(*id, next[i]);
    }
    hits as f64 / trace.len() as f64
}

/// Replay all policies at each budget (fractions of `total` experts).
pub fn compare(
    trace: &[ExpertId],
    plan: &[ExpertId],
    prior: &[(ExpertId, u64)],
    events: &[Event],
    total: usize,
    fractions: &[f64],
) -> Vec<PolicyRow> {
    let distinct: HashSet<_> = trace.iter().collect();
    log::info!(
        "cache replay accesses={} distinct={}",
        trace.len(),
        distinct.len()
    );
    fractions
        .iter()
        .map(|&f| {
            let slots = ((f * total as f64).round() as usize).max(1);
            PolicyRow {
                slots,
                fraction: f,
                lru: replay(ExpertPolicy::Lru, slots, trace, plan),
                lfu: replay(ExpertPolicy::Lfu, slots, trace, plan),
                pinned: replay(ExpertPolicy::Pinned, slots, trace, plan),
                predictive: replay(ExpertPolicy::Predictive, slots, trace, plan),
                lfu_plan: replay_events(slots, events, prior, false),
                lfu_plan_prediction: events
                    .iter()
                    .any(|e| matches!(e, Event::Predict { .. }))
                    .then(|| replay_events(slots, events, prior, true)),
                belady: belady(slots, trace),
            }
        })
        .collect()
}

pub fn table(rows: &[PolicyRow]) -> String {
    let mut s = String::from(
        "| budget (experts) | LRU | LFU | plan-pinned | predictive | LFU + plan | LFU + plan + prediction | Belady (optimum, demand) | best online / Belady |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let pred = r.lfu_plan_prediction;
        let best = [
            r.lru,
            r.lfu,
            r.pinned,
            r.predictive,
            r.lfu_plan,
            pred.unwrap_or(0.0),
        ]
        .into_iter()
        .fold(0.0, f64::max);
        s += &format!(
            "| {} ({:.0} %) | {:.1} % | {:.1} % | {:.1} % | {:.1} % | {:.1} % | {} | {:.1} % | {:.2} |\n",
            r.slots,
            r.fraction * 100.0,
            r.lru * 100.0,
            r.lfu * 100.0,
            r.pinned * 100.0,
            r.predictive * 100.0,
            r.lfu_plan * 100.0,
            pred.map_or("–".into(), |p| format!("{:.1} %", p * 100.0)),
            r.belady * 100.0,
            best / r.belady.max(1e-9)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn belady_by_hand_and_bounds_the_others() {
        let t: Vec<ExpertId> = [1, 2, 3, 1, 2, 4, 1, 2].iter().map(|&e| (0, e)).collect();
        // slots 2: 1m 2m 3m (never used again: bypassed) 1h 2h 4m (bypassed) 1h 2h = 4 hits
        assert!((belady(2, &t) - 4.0 / 8.0).abs() < 1e-9);
        // slots 1: 1m 2m(2@4 vs 1@3: bypass) 3m 1h 2m 4m 1h 2m = 2 hits
        assert!((belady(1, &t) - 2.0 / 8.0).abs() < 1e-9);
        for p in [
            ExpertPolicy::Lru,
            ExpertPolicy::Lfu,
            ExpertPolicy::Predictive,
        ] {
            assert!(replay(p, 2, &t, &[]) <= belady(2, &t) + 1e-9);
        }
        assert_eq!(belady(0, &t), 0.0);
        // Events without predictions replay as plain LFU; sparing the
        // expert predicted next keeps it for its use.
        let ev: Vec<Event> = t.iter().map(|&id| Event::Access(id)).collect();
        assert_eq!(
            replay_events(2, &ev, &[], false),
            replay(ExpertPolicy::Lfu, 2, &t, &[])
        );
        // slots 1 after 1, 2: LFU keeps 1 (count 2) over 2; predicted 2 is spared.
        let tr: Vec<Event> = [(0, 1), (0, 1), (0, 2)]
            .iter()
            .map(|&id| Event::Access(id))
            .chain([
                Event::Predict {
                    current: vec![(0, 3)],
                    next: vec![(0, 2)],
                },
                Event::Access((0, 3)),
                Event::Access((0, 2)),
            ])
            .collect();
        assert!(replay_events(2, &tr, &[], true) > replay_events(2, &tr, &[], false));
        assert!((belady(4, &t) - 4.0 / 8.0).abs() < 1e-9);
    }
}
