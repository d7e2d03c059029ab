//! The routed experts of one layer step: where each (token, expert) pair
//! runs (resident or paged in under the residency cache, its low-precision
//! copy, a host, or substitutes), the reads ahead of the next layer's
//! predicted experts and what a layer does when one is late, and the hints
//! to the host. Owns none of the state (`Model` does) and no kernels
//! (`experts::batch`); the step runner in `model` calls [`Model::moe`] and
//! [`Model::fetch_ahead`] once per layer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use super::{ExpertCounts, Model, StepTimes};
use crate::config::{OnLate, OnMiss};
use crate::engine::predict::PredictStats;
use crate::engine::EngineError;
use crate::experts::batch::{self, Work};
use crate::experts::dispatch::{self, Pairs};
use crate::experts::prefetch::{Found, Prefetcher};
use crate::experts::Access;

/// The predictor's I/O threads and how well it guesses.
pub(super) struct Ahead {
    pub(super) prefetch: Prefetcher,
    pub(super) stats: Mutex<PredictStats>,
    /// Per layer: reads issued ahead, and those a use found (ready or late).
    pub(super) issued: Vec<AtomicU64>,
    pub(super) useful: Vec<AtomicU64>,
    /// Layer steps seen (a layer whose reads were judged useless still
    /// reads ahead on every `RETRY_EVERY`-th step, to notice a change).
    pub(super) steps: AtomicU64,
}

/// Reads ahead a layer's usefulness is judged on before it may be turned off.
const JUDGE_AFTER: u64 = 32;
/// A layer fewer of whose reads ahead than this share are used is not read
/// ahead: a wrong guess costs a disk read and page cache that the device's
/// other experts need, and when the disk is the bottleneck it delays the
/// reads that are needed.
const MIN_USEFUL: f64 = 0.5;
const RETRY_EVERY: u64 = 16;

impl Ahead {
    fn worth_it(&self, layer: usize) -> bool {
        let n = self.issued[layer].load(Ordering::Relaxed);
        let u = self.useful[layer].load(Ordering::Relaxed);
        n < JUDGE_AFTER
            || u as f64 >= MIN_USEFUL * n as f64
            || self.steps.load(Ordering::Relaxed) % RETRY_EVERY == 0
    }
}

impl Model {
    /// Scores the prediction made for layer `l` (`before`) against its
    /// routing, then queues the page-in of the experts predicted for layer
    /// `l + 1` (`next`) that are carried but not resident, and hints the
    /// remote of those it does not carry.
    pub(super) fn fetch_ahead(
        &self,
        ahead: &Ahead,
        l: usize,
        routes: &[Vec<(u16, f32)>],
        before: &[u16],
        next: &[u16],
    ) {
        // Give up this layer's wrong guesses that did not become resident.
        {
            let c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            for &e in before {
                let used = routes.iter().flatten().any(|&(x, _)| x == e);
                if !used && !c.is_resident((l as u16, e)) && ahead.prefetch.forget(l, e as usize) {
                    self.store.release(l, e as usize);
                }
            }
        }
        {
            let mut st = ahead.stats.lock().unwrap_or_else(|p| p.into_inner());
            if l > 0 {
                for r in routes {
                    st.routed[l] += r.len() as u64;
                    st.predicted[l] += r.iter().filter(|(e, _)| before.contains(e)).count() as u64;
                }
            }
            st.guesses += next.len() as u64;
        }
        let nl = l + 1;
        // The host reads in what it will be asked for.
        if let Some(remote) = &self.remote {
            let away: Vec<u16> = next
                .iter()
                .copied()
                .filter(|&e| !self.store.has(nl, e as usize))
                .collect();
            remote.hint(nl, &away);
        }
        ahead.steps.fetch_add(1, Ordering::Relaxed);
        if next.is_empty() || !ahead.worth_it(nl) {
            return;
        }
        let mut queue = Vec::new();
        {
            let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            // Spare this layer's experts and the next one's while making room.
            let mut keep: Vec<(u16, u16)> = routes
                .iter()
                .flatten()
                .map(|&(e, _)| (l as u16, e))
                .collect();
            keep.extend(next.iter().map(|&e| (nl as u16, e)));
            c.set_protected(keep);
            // Read ahead what is not resident. The residency set itself only
            // changes on use: a wrong guess costs a read, never a resident
            // expert.
            for &e in next {
                if self.store.has(nl, e as usize) && !c.is_resident((nl as u16, e)) {
                    queue.push(e);
                }
            }
        }
        for e in queue {
            if ahead.prefetch.request(nl, e as usize) {
                ahead.issued[nl].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The routed experts of one layer, accumulated into `out` [T, H].
    #[allow(clippy::too_many_arguments)]
    pub(super) fn moe(
        &self,
        l: usize,
        x: &[f32],
        probs: &[f32],
        routes: &[Vec<(u16, f32)>],
        out: &mut [f32],
        counts: &mut ExpertCounts,
        times: &mut StepTimes,
    ) -> Result<(), EngineError> {
        let a = &self.manifest.architecture;
        let (h, e_n) = (a.hidden_size, a.num_experts);
        let t = routes.len();
        // Local work per expert: (token, weight).
        let mut local: Vec<Vec<(usize, f32)>> = vec![Vec::new(); e_n];
        // The same from the low-precision copy (mixed-precision bundles).
        let mut lowp: Vec<Vec<(usize, f32)>> = vec![Vec::new(); e_n];
        let has_lowp = |e: usize| self.lowp.as_ref().is_some_and(|s| s.has(l, e));
        // A miss goes to the host for full precision when the policy says it matters.
        let wants_full =
            |w: f32| self.remote.is_some() && self.full_precision_above.is_some_and(|t| w >= t);
        // Carried experts whose read ahead is still on its way, when the
        // board does not wait for them.
        let late = self.late_experts(l, routes, &has_lowp);
        // Missing pairs per token, and which tokens have any.
        let mut missing: Vec<(usize, Vec<(u16, f32)>)> = Vec::new();
        let mut late_pairs: Vec<(usize, u16, f32)> = Vec::new();
        for (ti, r) in routes.iter().enumerate() {
            let mut miss = Vec::new();
            for &(e, w) in r {
                if late.contains(&e) {
                    counts.late += 1;
                    if self.on_late == OnLate::LowPrecision {
                        lowp[e as usize].push((ti, w));
                    } else {
                        late_pairs.push((ti, e, w));
                    }
                } else if self.store.has(l, e as usize) {
                    local[e as usize].push((ti, w));
                } else if has_lowp(e as usize) && !wants_full(w) {
                    lowp[e as usize].push((ti, w));
                } else {
                    miss.push((e, w));
                }
            }
            if !miss.is_empty() {
                missing.push((ti, miss));
            }
        }
        if !late_pairs.is_empty() {
            self.substitute_late(l, probs, routes, &late_pairs, &mut local, &mut lowp, counts);
        }
        // Remote first, so the host works while we compute locally.
        let mut pending = None;
        if !missing.is_empty() {
            if let Some(remote) = &self.remote {
                let pairs: Pairs = missing.iter().map(|(_, m)| m.clone()).collect();
                let mut states = Vec::with_capacity(missing.len() * h);
                for (ti, _) in &missing {
                    states.extend_from_slice(&x[ti * h..(ti + 1) * h]);
                }
                match remote.submit(l, &pairs, &states, h) {
                    Ok(p) => pending = Some(p),
                    Err(err) => log::debug!("remote submit failed layer={l} err={err}"),
                }
            }
        }
        let mut remote_done = false;
        if let Some(p) = pending {
            // Compute local experts before waiting.
            self.run_local(l, x, &mut local, out, counts)?;
            self.run_lowp(l, x, &mut lowp, out, counts)?;
            let clock = Instant::now();
            let res = p();
            times.remote_wait_us += clock.elapsed().as_micros() as u64;
            match res {
                Ok(sums) if sums.len() == missing.len() * h => {
                    for (k, (ti, m)) in missing.iter().enumerate() {
                        for (o, s) in out[ti * h..(ti + 1) * h]
                            .iter_mut()
                            .zip(&sums[k * h..(k + 1) * h])
                        {
                            *o += s;
                        }
                        counts.remote += m.len() as u64;
                    }
                    remote_done = true;
                }
                Ok(sums) => log::warn!(
                    "remote reply has wrong size layer={l} got={} want={}",
                    sums.len(),
                    missing.len() * h
                ),
                Err(err) => log::debug!("remote experts failed layer={l} err={err}"),
            }
            if remote_done {
                return Ok(());
            }
        }
        // A low-precision copy beats escalating or substituting.
        for (ti, m) in &mut missing {
            m.retain(|&(e, w)| {
                let keep = !has_lowp(e as usize);
                if !keep {
                    lowp[e as usize].push((*ti, w));
                }
                keep
            });
        }
        missing.retain(|(_, m)| !m.is_empty());
        if !missing.is_empty() && self.on_miss == OnMiss::Escalate {
            let mut experts: Vec<u32> = missing
                .iter()
                .flat_map(|(_, m)| m.iter().map(|p| p.0 as u32))
                .collect();
            experts.sort_unstable();
            experts.dedup();
            return Err(EngineError::Experts(
                crate::experts::ExpertError::Unreachable { layer: l, experts },
            ));
        }
        for (ti, m) in &missing {
            let subs = dispatch::substitute(&probs[ti * e_n..(ti + 1) * e_n], &routes[*ti], |e| {
                self.store.has(l, e) || has_lowp(e)
            });
            counts.substituted += m.len() as u64;
            for (e, w) in subs {
                if self.store.has(l, e as usize) {
                    local[e as usize].push((*ti, w));
                } else {
                    lowp[e as usize].push((*ti, w));
                }
            }
        }
        let _ = t;
        self.run_local(l, x, &mut local, out, counts)?;
        self.run_lowp(l, x, &mut lowp, out, counts)
    }

    /// The carried experts `routes` use whose read ahead has not finished
    /// and which the board does not wait for (`on_late`; low_precision only
    /// those with a copy). Each counts as a late use of a right prediction,
    /// and its read is given up (a later use reads it again).
    fn late_experts(
        &self,
        l: usize,
        routes: &[Vec<(u16, f32)>],
        has_lowp: &dyn Fn(usize) -> bool,
    ) -> Vec<u16> {
        let Some(ahead) = &self.ahead else {
            return Vec::new();
        };
        if self.on_late == OnLate::Wait {
            return Vec::new();
        }
        let mut used: Vec<u16> = routes.iter().flatten().map(|&(e, _)| e).collect();
        used.sort_unstable();
        used.dedup();
        let c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        used.retain(|&e| {
            let e_ = e as usize;
            self.store.has(l, e_)
                && !c.is_resident((l as u16, e))
                && ahead.prefetch.is_late(l, e_)
                && (self.on_late == OnLate::Substitute || has_lowp(e_))
        });
        drop(c);
        for &e in &used {
            ahead.prefetch.used(l, e as usize);
        }
        ahead.useful[l].fetch_add(used.len() as u64, Ordering::Relaxed);
        used
    }

    /// Gives each token's late experts' weight to the best experts that are
    /// resident (or have a low-precision copy), as `on_miss = substitute`
    /// does for experts the device lacks; a token with no such expert waits
    /// for its late ones.
    #[allow(clippy::too_many_arguments)]
    fn substitute_late(
        &self,
        l: usize,
        probs: &[f32],
        routes: &[Vec<(u16, f32)>],
        late_pairs: &[(usize, u16, f32)],
        local: &mut [Vec<(usize, f32)>],
        lowp: &mut [Vec<(usize, f32)>],
        counts: &mut ExpertCounts,
    ) {
        let e_n = self.manifest.architecture.num_experts;
        let has_lowp = |e: usize| self.lowp.as_ref().is_some_and(|s| s.has(l, e));
        let c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let mut at = 0;
        while at < late_pairs.len() {
            let ti = late_pairs[at].0;
            let mut end = at;
            while end < late_pairs.len() && late_pairs[end].0 == ti {
                end += 1;
            }
            let mine = &late_pairs[at..end];
            let is_late = |e: usize| mine.iter().any(|&(_, x, _)| x as usize == e);
            let chosen = &routes[ti];
            let subs = dispatch::substitute(&probs[ti * e_n..(ti + 1) * e_n], chosen, |e| {
                if chosen.iter().any(|&(x, _)| x as usize == e) {
                    !is_late(e)
                } else {
                    c.is_resident((l as u16, e as u16)) || has_lowp(e)
                }
            });
            if subs.is_empty() {
                for &(_, e, w) in mine {
                    local[e as usize].push((ti, w));
                }
                at = end;
                continue;
            }
            counts.substituted += mine.len() as u64;
            for (e, w) in subs {
                if c.is_resident((l as u16, e)) {
                    local[e as usize].push((ti, w));
                } else {
                    lowp[e as usize].push((ti, w));
                }
            }
            at = end;
        }
    }

    /// Experts from the low-precision copy: always resident, no cache accounting.
    fn run_lowp(
        &self,
        l: usize,
        x: &[f32],
        work: &mut [Vec<(usize, f32)>],
        out: &mut [f32],
        counts: &mut ExpertCounts,
    ) -> Result<(), EngineError> {
        let Some(store) = &self.lowp else {
            return Ok(());
        };
        let h = self.manifest.architecture.hidden_size;
        let mut items = Vec::new();
        for (e, work) in work.iter().enumerate() {
            if work.is_empty() {
                continue;
            }
            counts.low_precision += work.len() as u64;
            let w = store.checked(l, e)?;
            items.push(Work { w, tokens: work });
        }
        batch::run(&self.pool, h, x, &items, out);
        drop(items);
        work.iter_mut().for_each(Vec::clear);
        Ok(())
    }

    fn run_local(
        &self,
        l: usize,
        x: &[f32],
        local: &mut [Vec<(usize, f32)>],
        out: &mut [f32],
        counts: &mut ExpertCounts,
    ) -> Result<(), EngineError> {
        let h = self.manifest.architecture.hidden_size;
        let mut items = Vec::new();
        let mut transient = Vec::new();
        for (e, work) in local.iter().enumerate() {
            if work.is_empty() {
                continue;
            }
            let access = {
                let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                c.access((l as u16, e as u16))
            };
            if let (Some(ahead), Access::Miss { .. } | Access::Transient) = (&self.ahead, &access) {
                let found = ahead.prefetch.used(l, e);
                match found {
                    Found::Ready => counts.prefetched += work.len() as u64,
                    Found::Late => counts.late += work.len() as u64,
                    Found::NotPrefetched => {}
                }
                if found != Found::NotPrefetched {
                    ahead.useful[l].fetch_add(1, Ordering::Relaxed);
                }
            }
            match &access {
                Access::Hit => counts.resident += work.len() as u64,
                Access::Miss { evicted } => {
                    counts.paged += work.len() as u64;
                    for &(vl, ve) in evicted {
                        if let Some(ahead) = &self.ahead {
                            ahead.prefetch.forget(vl as usize, ve as usize);
                        }
                        self.store.release(vl as usize, ve as usize);
                    }
                }
                Access::Transient => {
                    counts.paged += work.len() as u64;
                    transient.push(e);
                }
            }
            let w = self.store.checked(l, e)?;
            items.push(Work { w, tokens: work });
        }
        batch::run(&self.pool, h, x, &items, out);
        drop(items);
        for e in transient {
            self.store.release(l, e);
        }
        local.iter_mut().for_each(Vec::clear);
        Ok(())
    }
}
