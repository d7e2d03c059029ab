//! Guessing the next layer's experts before it runs: layer l+1's router
//! (its post-attention RMSNorm and gate matrix) applied to layer l's
//! residual stream after attention, the input of layer l's experts. The
//! residual changes little from one layer to the next, so the guess is
//! known a whole expert pass ahead of the real routing (pre-gating). Plain
//! arithmetic and counters; paging and the cache are the model's.

use crate::bundle::names::Names;
use crate::bundle::Architecture;
use crate::runtime::native::weights::DenseWeights;
use crate::runtime::RuntimeError;

/// The routers of layers 1.. with their norms, in f32.
pub struct Predictor {
    hidden: usize,
    experts: usize,
    top_k: usize,
    eps: f32,
    /// [layer] -> (post-attention norm weight [H], router [E, H]); layer 0 empty.
    next: Vec<(Vec<f32>, Vec<f32>)>,
}

/// Prediction quality per layer: of the experts the layer really routed to,
/// how many were predicted.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct PredictStats {
    /// Per layer (layer 0 is never predicted): routed pairs, and how many of
    /// them were in the prediction.
    pub routed: Vec<u64>,
    pub predicted: Vec<u64>,
    /// Experts named by predictions (per token, deduplicated per step).
    pub guesses: u64,
}

impl PredictStats {
    pub fn new(layers: usize) -> PredictStats {
        PredictStats {
            routed: vec![0; layers],
            predicted: vec![0; layers],
            guesses: 0,
        }
    }
    /// Share of routed experts that were predicted, per layer (`None` for layer 0).
    pub fn accuracy(&self) -> Vec<Option<f64>> {
        self.routed
            .iter()
            .zip(&self.predicted)
            .map(|(&r, &p)| (r > 0).then(|| p as f64 / r as f64))
            .collect()
    }
    /// Over all predicted layers.
    pub fn overall(&self) -> f64 {
        let r: u64 = self.routed.iter().sum();
        let p: u64 = self.predicted.iter().sum();
        if r == 0 {
            0.0
        } else {
            p as f64 / r as f64
        }
    }
    pub fn add(&mut self, o: &PredictStats) {
        if self.routed.len() < o.routed.len() {
            self.routed.resize(o.routed.len(), 0);
            self.predicted.resize(o.routed.len(), 0);
        }
        for (i, (&r, &p)) in o.routed.iter().zip(&o.predicted).enumerate() {
            self.routed[i] += r;
            self.predicted[i] += p;
        }
        self.guesses += o.guesses;
    }
}

impl Predictor {
    /// Reads the routers from the bundle's `dense.safetensors`.
    pub fn load(a: &Architecture, dense: &DenseWeights) -> Result<Predictor, RuntimeError> {
        let (h, e) = (a.hidden_size, a.num_experts);
        let mut next = vec![(Vec::new(), Vec::new())];
        for l in 1..a.num_layers {
            let norm = dense.vector(&Names::layer(l, "post_attention_layernorm.weight"), h)?;
            let m = dense.mat(&Names::router(a.kind, l), e, h)?;
            let mut w = vec![0f32; e * h];
            m.rows().widen(crate::experts::kernels::kernels(), &mut w);
            next.push((norm, w));
        }
        Ok(Predictor {
            hidden: h,
            experts: e,
            top_k: a.top_k,
            eps: a.rms_norm_eps as f32,
            next,
        })
    }

    /// From a router given directly (tests).
    pub fn from_parts(
        hidden: usize,
        experts: usize,
        top_k: usize,
        eps: f32,
        next: Vec<(Vec<f32>, Vec<f32>)>,
    ) -> Predictor {
        Predictor {
            hidden,
            experts,
            top_k,
            eps,
            next,
        }
    }

    pub fn layers(&self) -> usize {
        self.next.len()
    }

    /// The experts layer `l + 1` is predicted to route the rows of `resid`
    /// ([T, H], layer l's residual after attention) to: the union over
    /// tokens of each token's top-k, in order of first appearance.
    pub fn predict(&self, l: usize, resid: &[f32]) -> Vec<u16> {
        let Some((norm, w)) = self.next.get(l + 1) else {
            return Vec::new();
        };
        let (h, e) = (self.hidden, self.experts);
        let mut x = vec![0f32; h];
        let mut logits = vec![0f32; e];
        let mut out: Vec<u16> = Vec::new();
        for row in resid.chunks_exact(h) {
            let ms = row.iter().map(|v| v * v).sum::<f32>() / h as f32;
            let r = 1.0 / (ms + self.eps).sqrt();
            for ((xi, v), g) in x.iter_mut().zip(row).zip(norm) {
                *xi = v * r * g;
            }
            for (lg, wr) in logits.iter_mut().zip(w.chunks_exact(h)) {
                *lg = wr.iter().zip(&x).map(|(a, b)| a * b).sum();
            }
            // Softmax is monotonic: the top-k of the logits is the top-k of the probabilities.
            let mut idx: Vec<u16> = (0..e as u16).collect();
            idx.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
            for &i in &idx[..self.top_k.min(e)] {
                if !out.contains(&i) {
                    out.push(i);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicts_the_top_k_of_the_next_router() {
        // H = 2, E = 3: expert i's router row picks out a direction.
        let w = vec![1.0, 0.0, 0.0, 1.0, -1.0, -1.0];
        let p = Predictor::from_parts(2, 3, 1, 1e-6, vec![(vec![], vec![]), (vec![1.0, 1.0], w)]);
        assert_eq!(p.predict(0, &[3.0, 0.1]), vec![0]);
        assert_eq!(p.predict(0, &[0.1, 3.0, -2.0, -2.0]), vec![1, 2]);
        // The last layer has no next router.
        assert!(p.predict(1, &[1.0, 1.0]).is_empty());
    }

    #[test]
    fn accuracy_per_layer() {
        let mut s = PredictStats::new(3);
        s.routed[1] = 8;
        s.predicted[1] = 6;
        s.routed[2] = 8;
        s.predicted[2] = 8;
        assert_eq!(s.accuracy(), vec![None, Some(0.75), Some(1.0)]);
        assert!((s.overall() - 14.0 / 16.0).abs() < 1e-12);
    }
}
