//! Experts this device does not carry: the remote interface (implemented by
//! the MQTT offload client) and substitution (pure). The engine asks the
//! remote first; on a miss, a timeout or no host, the board's `on_miss`
//! decides between substitution and escalation.

use super::ExpertError;

/// Per token, the (expert, weight) pairs to compute elsewhere.
pub type Pairs = Vec<Vec<(u16, f32)>>;

/// A submitted remote call; waiting on it resolves within the call's deadline.
pub type Pending = Box<dyn FnOnce() -> Result<Vec<f32>, ExpertError> + Send>;

/// Computes the weighted sum of missing experts somewhere else (a host).
pub trait RemoteExperts: Send + Sync {
    /// Start one call for a layer step: `states` is [pairs.len(), hidden].
    /// The result is [pairs.len(), hidden], each row the weighted sum of its pairs.
    fn submit(
        &self,
        layer: usize,
        pairs: &Pairs,
        states: &[f32],
        hidden: usize,
    ) -> Result<Pending, ExpertError>;

    /// Tells the remote which experts of `layer` the device expects to ask
    /// for next (its prediction), so it can read them in first. Best effort:
    /// never waits, never fails the step. Default: nothing to tell.
    fn hint(&self, _layer: usize, _experts: &[u16]) {}
}

/// Replace the missing experts of one token by the best available ones.
/// `probs` are the router's softmax probabilities over all experts, `chosen`
/// the token's routed (expert, weight) pairs, `available(e)` whether the device
/// can compute expert `e`. The missing weight mass is given to as many
/// substitutes (not already chosen), in proportion to their probabilities.
/// Returns the substitute pairs (empty when nothing is available).
pub fn substitute(
    probs: &[f32],
    chosen: &[(u16, f32)],
    available: impl Fn(usize) -> bool,
) -> Vec<(u16, f32)> {
    let missing: Vec<_> = chosen
        .iter()
        .filter(|(e, _)| !available(*e as usize))
        .collect();
    if missing.is_empty() {
        return Vec::new();
    }
    let mass: f32 = missing.iter().map(|(_, w)| w).sum();
    let mut cands: Vec<usize> = (0..probs.len())
        .filter(|&e| available(e) && !chosen.iter().any(|(c, _)| *c as usize == e))
        .collect();
    cands.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    cands.truncate(missing.len());
    let total: f32 = cands.iter().map(|&e| probs[e]).sum();
    if cands.is_empty() || total <= 0.0 {
        return Vec::new();
    }
    cands
        .into_iter()
        .map(|e| (e as u16, mass * probs[e] / total))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_mass_goes_to_best_available() {
        let probs = [0.5, 0.2, 0.2, 0.1];
        // chose 0 and 1; expert 1 missing; 2 and 3 available
        let subs = substitute(&probs, &[(0, 0.7), (1, 0.3)], |e| e != 1);
        assert_eq!(subs.len(), 1);
        assert_eq!(subs[0].0, 2);
        assert!((subs[0].1 - 0.3).abs() < 1e-6);
        // two missing, mass split in proportion
        let subs = substitute(&probs, &[(0, 0.7), (1, 0.3)], |e| e >= 2);
        assert_eq!(subs.iter().map(|s| s.0).collect::<Vec<_>>(), vec![2, 3]);
        let total: f32 = subs.iter().map(|s| s.1).sum();
        assert!((total - 1.0).abs() < 1e-6);
        assert!((subs[0].1 - 2.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn nothing_available_gives_nothing() {
        assert!(substitute(&[0.5, 0.5], &[(0, 1.0)], |_| false).is_empty());
        assert!(substitute(&[0.5, 0.5], &[(0, 1.0)], |_| true).is_empty());
    }
}
