//! Choosing the resident experts under a budget from routing statistics.
//! Pure: statistics and a slot count in, a ranked selection out.

use serde::Serialize;

use super::stats::RoutingStats;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Selection {
    /// (layer, expert) in priority order.
    pub ranked: Vec<(u16, u16)>,
    /// Per layer, the kept experts (sorted).
    pub per_layer: Vec<Vec<u16>>,
}

/// Keep `slots` experts: first `min_per_layer` best of every layer (so a
/// substitute always exists where the router points), then the best
/// remaining by score across layers. Ties break by frequency, then id.
pub fn select(stats: &RoutingStats, slots: usize, min_per_layer: usize) -> Selection {
    let (nl, ne) = (stats.num_layers, stats.num_experts);
    let slots = slots.min(nl * ne);
    let key = |l: usize, e: usize| (stats.score(l, e), stats.freq[l][e]);
    let mut ranked_per_layer: Vec<Vec<usize>> = (0..nl)
        .map(|l| {
            let mut v: Vec<usize> = (0..ne).collect();
            v.sort_by(|&a, &b| {
                let (ka, kb) = (key(l, a), key(l, b));
                kb.0.total_cmp(&ka.0).then(kb.1.cmp(&ka.1)).then(a.cmp(&b))
            });
            v
        })
        .collect();
    let mut ranked: Vec<(u16, u16)> = Vec::with_capacity(slots);
    let floor = min_per_layer.min(ne).min(slots / nl.max(1));
    for (l, order) in ranked_per_layer.iter_mut().enumerate() {
        for &e in order.iter().take(floor) {
            ranked.push((l as u16, e as u16));
        }
    }
    let mut rest: Vec<(usize, usize)> = ranked_per_layer
        .iter()
        .enumerate()
        .flat_map(|(l, order)| order.iter().skip(floor).map(move |&e| (l, e)))
        .collect();
    rest.sort_by(|&(la, ea), &(lb, eb)| {
        let (ka, kb) = (key(la, ea), key(lb, eb));
        kb.0.total_cmp(&ka.0)
            .then(kb.1.cmp(&ka.1))
            .then((la, ea).cmp(&(lb, eb)))
    });
    for (l, e) in rest {
        if ranked.len() >= slots {
            break;
        }
        ranked.push((l as u16, e as u16));
    }
    ranked.truncate(slots);
    let mut per_layer = vec![Vec::new(); nl];
    for &(l, e) in &ranked {
        per_layer[l as usize].push(e);
    }
    for v in &mut per_layer {
        v.sort_unstable();
    }
    Selection { ranked, per_layer }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_then_global_best() {
        let mut s = RoutingStats::new(2, 4);
        s.saliency[0] = vec![9.0, 8.0, 7.0, 6.0];
        s.saliency[1] = vec![0.1, 0.2, 0.3, 0.4];
        s.freq = vec![vec![1; 4]; 2];
        let sel = select(&s, 4, 1);
        // one per layer (0.0 and 1.3), then the best remaining: 0.1, 0.2
        assert_eq!(sel.ranked, vec![(0, 0), (1, 3), (0, 1), (0, 2)]);
        assert_eq!(sel.per_layer, vec![vec![0, 1, 2], vec![3]]);
        assert_eq!(select(&s, 100, 1).ranked.len(), 8);
    }
}
