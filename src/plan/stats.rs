//! Routing statistics: for every (layer, expert), how often the router picks
//! it (`freq`), the router weight it gets (`weight`), and a REAP-style
//! saliency: the mean over routed tokens of router weight × ‖expert output‖₂
//! (`reap`), which ranks experts by how much they change the residual stream.

use serde::Serialize;

use crate::engine::model::{ExpertCounts, StepTimes};
use crate::engine::{Engine, EngineError, Observer};
use crate::experts::kernels::expert_ffn;

#[derive(Debug, Clone, Serialize)]
pub struct RoutingStats {
    pub num_layers: usize,
    pub num_experts: usize,
    pub tokens: u64,
    /// [layer][expert] times routed (top-k slot taken).
    pub freq: Vec<Vec<u64>>,
    /// [layer][expert] sum of router weights.
    pub weight: Vec<Vec<f64>>,
    /// [layer][expert] sum of router weight × ‖f_e(x)‖₂.
    pub saliency: Vec<Vec<f64>>,
    /// Routing trace in engine order, for cache replays: per step, the (layer, expert) accessed.
    #[serde(skip)]
    pub trace: Vec<Vec<(u16, u16)>>,
    /// The same trace with the predictions in it, for replays of policies
    /// that prefetch (empty for bundles without dense weights).
    #[serde(skip)]
    pub events: Vec<crate::experts::cache::Event>,
}

impl RoutingStats {
    pub fn new(num_layers: usize, num_experts: usize) -> RoutingStats {
        RoutingStats {
            num_layers,
            num_experts,
            tokens: 0,
            freq: vec![vec![0; num_experts]; num_layers],
            weight: vec![vec![0.0; num_experts]; num_layers],
            saliency: vec![vec![0.0; num_experts]; num_layers],
            trace: Vec::new(),
            events: Vec::new(),
        }
    }

    /// REAP score: mean router-weighted output norm over the tokens routed to the expert.
    pub fn reap(&self, l: usize, e: usize) -> f64 {
        if self.freq[l][e] == 0 {
            0.0
        } else {
            self.saliency[l][e] / self.freq[l][e] as f64
        }
    }

    /// The score the planner ranks by: total saliency (REAP mean × frequency),
    /// i.e. the expected contribution per calibration token.
    pub fn score(&self, l: usize, e: usize) -> f64 {
        self.saliency[l][e]
    }

    /// Share of routed slots per expert of a layer, for reports.
    pub fn share(&self, l: usize) -> Vec<f64> {
        let total: u64 = self.freq[l].iter().sum();
        self.freq[l]
            .iter()
            .map(|&f| {
                if total == 0 {
                    0.0
                } else {
                    f as f64 / total as f64
                }
            })
            .collect()
    }
}

struct Collector<'a> {
    engine: &'a Engine,
    stats: &'a mut RoutingStats,
    step: Vec<(u16, u16)>,
    /// The prediction for the next layer, made before this layer's experts ran.
    next: Option<Vec<(u16, u16)>>,
    act: Vec<f32>,
    out: Vec<f32>,
}

impl Observer for Collector<'_> {
    fn predicted(&mut self, layer: usize, next: &[u16]) {
        self.next = Some(next.iter().map(|&e| (layer as u16 + 1, e)).collect());
    }

    fn layer(
        &mut self,
        layer: usize,
        x: &[f32],
        _hidden: &[f32],
        _probs: &[f32],
        routes: &[Vec<(u16, f32)>],
    ) {
        let a = &self.engine.model.manifest.architecture;
        let h = a.hidden_size;
        self.act.resize(a.expert_intermediate_size, 0.0);
        let mut used: Vec<u16> = Vec::new();
        for (t, r) in routes.iter().enumerate() {
            for &(e, w) in r {
                let eu = e as usize;
                self.stats.freq[layer][eu] += 1;
                self.stats.weight[layer][eu] += w as f64;
                if let Ok(weights) = self.engine.model.store().checked(layer, eu) {
                    self.out.clear();
                    self.out.resize(h, 0.0);
                    expert_ffn(
                        weights,
                        h,
                        &x[t * h..(t + 1) * h],
                        1.0,
                        &mut self.act,
                        &mut self.out,
                    );
                    let norm = self
                        .out
                        .iter()
                        .map(|v| (*v as f64) * (*v as f64))
                        .sum::<f64>()
                        .sqrt();
                    self.stats.saliency[layer][eu] += w as f64 * norm;
                }
                used.push(e);
            }
        }
        used.sort_unstable();
        used.dedup();
        let current: Vec<(u16, u16)> = used.into_iter().map(|e| (layer as u16, e)).collect();
        use crate::experts::cache::Event;
        if let Some(next) = self.next.take() {
            self.stats.events.push(Event::Predict {
                current: current.clone(),
                next,
            });
        }
        self.stats
            .events
            .extend(current.iter().map(|&id| Event::Access(id)));
        self.step.extend(current);
    }
}

/// Run every prompt (prefill, then greedy decode up to `gen_tokens`) and
/// collect routing statistics over all tokens.
pub fn collect(
    engine: &Engine,
    prompts: &[String],
    gen_tokens: usize,
) -> Result<RoutingStats, EngineError> {
    let a = &engine.model.manifest.architecture;
    let mut stats = RoutingStats::new(a.num_layers, a.num_experts);
    for p in prompts {
        let ids = engine.encode(p)?;
        if ids.is_empty() || ids.len() >= engine.model.max_context() {
            continue;
        }
        let mut kv = engine.model.new_kv();
        let (mut c, mut t) = (ExpertCounts::default(), StepTimes::default());
        let mut next = ids.clone();
        for step in 0..=gen_tokens {
            let mut col = Collector {
                engine,
                stats: &mut stats,
                step: Vec::new(),
                next: None,
                act: Vec::new(),
                out: Vec::new(),
            };
            let logits =
                engine
                    .model
                    .forward(&mut kv, &next, false, &mut c, &mut t, Some(&mut col))?;
            let trace = std::mem::take(&mut col.step);
            stats.trace.push(trace);
            stats.tokens += next.len() as u64;
            let tok = crate::engine::sampler::argmax(logits.as_f32().unwrap_or(&[]));
            if engine.special.eos.contains(&tok) || step == gen_tokens || kv.remaining() == 0 {
                break;
            }
            next = vec![tok];
        }
    }
    Ok(stats)
}
