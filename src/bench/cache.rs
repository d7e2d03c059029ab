//! Cache policies replayed on a recorded routing trace: LRU, LFU,
//! plan-pinned and predictive (the `experts::cache` implementations, the
//! same code the engine runs) against Belady's optimum (evict the expert
//! whose next use is farthest), at several budgets. Pure replay, no model.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::config::ExpertPolicy;
use crate::experts::cache::{Access, Event};
use crate::experts::{ExpertId, ResidencyCache};

#[derive(Debug, Clone, Serialize)]
pub struct PolicyRow {
    pub slots: usize,
    pub fraction: f64,
    pub lru: f64,
    /// LFU as the engine runs it: a newcomer is kept only if used more
    /// often than its victim.
    pub lfu: f64,
    /// LFU keeping every miss (no admission test).
    pub lfu_admit_always: f64,
    pub pinned: f64,
    pub predictive: f64,
    /// LFU whose counts start from the calibration plan's.
    pub lfu_plan: f64,
    /// The same, sparing the current layer's experts and the next layer's
    /// predicted ones from eviction, as the engine does, and reading the
    /// predicted ones ahead (None: the trace has no predictions).
    pub lfu_plan_prediction: Option<Replayed>,
    /// The best fixed set in hindsight (the trace's most used experts): what
    /// a frequency policy converges to when routing has no order to exploit.
    pub best_fixed: f64,
    pub belady: f64,
}

/// One replay of LFU + plan (+ prediction).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Replayed {
    /// Accesses that found the expert resident.
    pub hits: f64,
    /// Accesses that found it resident or read ahead for them by the
    /// prediction made at the layer before: the accesses that do not wait
    /// for a read (the replay assumes every read ahead lands in time; the
    /// engine counts the ones that do not as `late`).
    pub no_wait: f64,
    /// Experts read per access: read ahead plus read on demand.
    pub reads: f64,
}

/// Hit rate of a `ResidencyCache` policy over `trace`.
pub fn replay(policy: ExpertPolicy, slots: usize, trace: &[ExpertId], plan: &[ExpertId]) -> f64 {
    replay_cache(ResidencyCache::new(policy, slots as u64, 1), trace, plan)
}

fn replay_cache(mut c: ResidencyCache, trace: &[ExpertId], plan: &[ExpertId]) -> f64 {
    if c.policy() == ExpertPolicy::Pinned {
        c.pin(plan.iter().copied());
    }
    for &id in trace {
        c.access(id);
    }
    c.stats().hit_rate()
}

/// LFU seeded with `prior` counts and, with `predict`, sparing the current
/// and predicted experts from eviction and reading the predicted ones that
/// are not resident ahead of their layer (as `engine::model` does: a read
/// ahead does not change the residency set).
pub fn replay_events(
    slots: usize,
    events: &[Event],
    prior: &[(ExpertId, u64)],
    predict: bool,
) -> Replayed {
    let mut c = ResidencyCache::new(ExpertPolicy::Lfu, slots as u64, 1);
    c.prior(prior.iter().copied());
    // Per layer: the experts read ahead for it at the layer before.
    let mut ahead: HashMap<u16, Vec<ExpertId>> = HashMap::new();
    let (mut accesses, mut hits, mut ready, mut reads) = (0u64, 0u64, 0u64, 0u64);
    for ev in events {
        match ev {
            Event::Predict { current, next } if predict => {
                let mut keep = current.clone();
                keep.extend(next.iter().copied());
                c.set_protected(keep);
                if let Some(&(layer, _)) = next.first() {
                    let read: Vec<ExpertId> = next
                        .iter()
                        .copied()
                        .filter(|&id| !c.is_resident(id))
                        .collect();
                    reads += read.len() as u64;
                    ahead.insert(layer, read);
                }
            }
            Event::Predict { .. } => {}
            Event::Access(id) => {
                accesses += 1;
                if c.access(*id) == Access::Hit {
                    hits += 1;
                } else if ahead.get(&id.0).is_some_and(|r| r.contains(id)) {
                    ready += 1;
                } else {
                    reads += 1;
                }
            }
        }
    }
    let n = accesses.max(1) as f64;
    Replayed {
        hits: hits as f64 / n,
        no_wait: (hits + ready) as f64 / n,
        reads: reads as f64 / n,
    }
}

/// Hit rate of the `slots` most used experts of `trace`, held throughout.
pub fn best_fixed(slots: usize, trace: &[ExpertId]) -> f64 {
    let mut count: HashMap<ExpertId, u64> = HashMap::new();
    for &id in trace {
        *count.entry(id).or_default() += 1;
    }
    let mut n: Vec<u64> = count.into_values().collect();
    n.sort_unstable_by(|a, b| b.cmp(a));
    n.iter().take(slots).sum::<u64>() as f64 / trace.len().max(1) as f64
}

/// Write a trace as JSON lines: the events (predictions and accesses)
/// when the trace has predictions, else the bare accesses.
pub fn write_trace(
    path: &std::path::Path,
    events: &[Event],
    accesses: &[ExpertId],
) -> std::io::Result<()> {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    let bare: Vec<Event>;
    let events = if events.is_empty() {
        bare = accesses.iter().map(|&id| Event::Access(id)).collect();
        &bare
    } else {
        events
    };
    for ev in events {
        serde_json::to_writer(&mut w, ev)?;
        w.write_all(b"\n")?;
    }
    w.flush()
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
                lfu_admit_always: replay_cache(
                    ResidencyCache::new(ExpertPolicy::Lfu, slots as u64, 1).admit_always(),
                    trace,
                    plan,
                ),
                pinned: replay(ExpertPolicy::Pinned, slots, trace, plan),
                predictive: replay(ExpertPolicy::Predictive, slots, trace, plan),
                lfu_plan: replay_events(slots, events, prior, false).hits,
                lfu_plan_prediction: events
                    .iter()
                    .any(|e| matches!(e, Event::Predict { .. }))
                    .then(|| replay_events(slots, events, prior, true)),
                best_fixed: best_fixed(slots, trace),
                belady: belady(slots, trace),
            }
        })
        .collect()
}

pub fn table(rows: &[PolicyRow]) -> String {
    let pct = |x: f64| format!("{:.1} %", x * 100.0);
    let mut s = String::from(
        "| budget (experts) | LRU | LFU, keeping every miss | LFU | plan-pinned | predictive | LFU + plan | LFU + plan + prediction: hits / no wait | reads per access: prediction / Belady | best fixed set | Belady (optimum, demand) | best hits / Belady | no wait / Belady |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let pred = r.lfu_plan_prediction;
        let best = [
            r.lru,
            r.lfu,
            r.lfu_admit_always,
            r.pinned,
            r.predictive,
            r.lfu_plan,
            pred.map_or(0.0, |p| p.hits),
        ]
        .into_iter()
        .fold(0.0, f64::max);
        let belady = r.belady.max(1e-9);
        s += &format!(
            "| {} ({:.0} %) | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {} |\n",
            r.slots,
            r.fraction * 100.0,
            pct(r.lru),
            pct(r.lfu_admit_always),
            pct(r.lfu),
            pct(r.pinned),
            pct(r.predictive),
            pct(r.lfu_plan),
            pred.map_or("–".into(), |p| format!(
                "{} / {}",
                pct(p.hits),
                pct(p.no_wait)
            )),
            pred.map_or("–".into(), |p| format!(
                "{:.2} / {:.2}",
                p.reads,
                1.0 - r.belady
            )),
            pct(r.best_fixed),
            pct(r.belady),
            best / belady,
            pred.map_or("–".into(), |p| format!("{:.2}", p.no_wait / belady)),
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
        let plain = replay_events(2, &ev, &[], false);
        assert_eq!(plain.hits, replay(ExpertPolicy::Lfu, 2, &t, &[]));
        assert_eq!(plain.no_wait, plain.hits);
        assert!((plain.reads - (1.0 - plain.hits)).abs() < 1e-9);
        // One slot, (0,1) used before: the predicted (1,5) is refused a
        // slot (used less often) but read ahead, so its access does not wait.
        let tr: Vec<Event> = vec![
            Event::Access((0, 1)),
            Event::Access((0, 1)),
            Event::Predict {
                current: vec![(0, 1)],
                next: vec![(1, 5)],
            },
            Event::Access((0, 1)),
            Event::Access((1, 5)),
        ];
        let with = replay_events(1, &tr, &[], true);
        let without = replay_events(1, &tr, &[], false);
        assert_eq!((with.hits, with.no_wait, with.reads), (0.5, 0.75, 0.5));
        assert_eq!(
            (without.hits, without.no_wait, without.reads),
            (0.5, 0.5, 0.5)
        );
        assert!((best_fixed(1, &t) - 3.0 / 8.0).abs() < 1e-9);
        assert!((belady(4, &t) - 4.0 / 8.0).abs() < 1e-9);
    }
}
