//! Router: softmax over the router logits, top-k, each architecture's
//! normalisation. Pure functions, no state.

/// Softmax into `probs` (same length as `logits`).
pub fn softmax(logits: &[f32], probs: &mut [f32]) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for (p, &l) in probs.iter_mut().zip(logits) {
        *p = (l - max).exp();
        sum += *p;
    }
    for p in probs.iter_mut() {
        *p /= sum;
    }
}

/// Top-k experts by probability, sorted by weight descending (ties: lower id
/// first), weights renormalised to sum to 1 when `norm_topk_prob`.
pub fn top_k(probs: &[f32], k: usize, norm_topk_prob: bool) -> Vec<(u16, f32)> {
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    let k = k.min(probs.len());
    idx.select_nth_unstable_by(k.saturating_sub(1), |&a, &b| {
        probs[b].total_cmp(&probs[a]).then(a.cmp(&b))
    });
    idx.truncate(k);
    idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    let sum: f32 = idx.iter().map(|&e| probs[e]).sum();
    idx.into_iter()
        .map(|e| {
            let w = if norm_topk_prob {
                probs[e] / sum
            } else {
                probs[e]
            };
            (e as u16, w)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topk_sorted_and_normalised() {
        let mut p = [0.0; 4];
        softmax(&[1.0, 3.0, 2.0, 0.0], &mut p);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let r = top_k(&p, 2, true);
        assert_eq!(r.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 2]);
        assert!((r[0].1 + r[1].1 - 1.0).abs() < 1e-6);
        let r = top_k(&p, 2, false);
        assert!((r[0].1 - p[1]).abs() < 1e-7);
    }
}
