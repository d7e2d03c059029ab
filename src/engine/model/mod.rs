//! One forward step of the model over a sequence: dense graphs through the
//! runtime trait, routing, and per layer the routed experts ([`experts`]:
//! from the memmapped store under the residency cache, read ahead on a
//! prediction, through the remote, or by substitution). Owns the model's
//! state, the RoPE tables and the causal mask; not tokenisation or sampling.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

mod experts;

use experts::Ahead;

use super::kv::KvCache;
use super::predict::{PredictStats, Predictor};
use super::router;
use super::EngineError;
use crate::bundle::{Bundle, Manifest};
use crate::config::{Board, OnLate, OnMiss, Prefetch};
use crate::experts::dispatch::RemoteExperts;
use crate::experts::prefetch::{PrefetchStats, Prefetcher};
use crate::experts::{CacheStats, ExpertStore, ResidencyCache};
use crate::runtime::{self, Graph, OutInto, Part, Pool, Tensor, TensorView};

/// Where the experts of one request ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExpertCounts {
    /// Computed locally, expert already resident.
    pub resident: u64,
    /// Computed locally after paging the expert in.
    pub paged: u64,
    /// Computed by a host.
    pub remote: u64,
    /// Replaced by resident experts: the device lacks it, or its read ahead
    /// was late and the board's `on_late` is `substitute`.
    pub substituted: u64,
    /// Of `paged`: read in ahead of use on a prediction, ready when used.
    pub prefetched: u64,
    /// Predicted and queued, still on its way when used: with
    /// `on_late = wait` also in `paged` (the layer read the rest itself),
    /// otherwise also in `substituted` or `low_precision`.
    pub late: u64,
    /// Mixed-precision residency: not in the full-precision set, computed
    /// locally from the low-precision (q8/q4) copy.
    pub low_precision: u64,
}

impl ExpertCounts {
    pub fn add(&mut self, o: &ExpertCounts) {
        self.resident += o.resident;
        self.paged += o.paged;
        self.remote += o.remote;
        self.substituted += o.substituted;
        self.low_precision += o.low_precision;
        self.prefetched += o.prefetched;
        self.late += o.late;
    }
}

/// Sees what happens inside a step (golden tests, routing statistics for `plan`).
pub trait Observer {
    /// Called per layer with the experts' input (post-attention norm) [T, H],
    /// the layer's output hidden states [T, H], the router probabilities
    /// [T, E] and the routed pairs per token (before substitution).
    fn layer(
        &mut self,
        layer: usize,
        x: &[f32],
        hidden: &[f32],
        probs: &[f32],
        routes: &[Vec<(u16, f32)>],
    );

    /// Called before `layer(l, …)` with the experts predicted for layer
    /// `l + 1` from layer l's residual (bundles with dense weights).
    fn predicted(&mut self, _layer: usize, _next: &[u16]) {}
}

/// Timings of the parts of a step, accumulated.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepTimes {
    /// Dense work: embedding, attention, norms, router, shared expert, LM head.
    pub graphs_us: u64,
    /// The part of `graphs_us` spent in the final norm and LM head.
    pub head_us: u64,
    pub experts_us: u64,
    pub remote_wait_us: u64,
}

struct LayerGraph {
    graph: Box<dyn Graph>,
    // output positions: resid, moe_in, router_logits, k, v, shared_out
    out: [usize; 5],
    shared: Option<usize>,
}

pub struct Model {
    pub manifest: Manifest,
    embed: Box<dyn Graph>,
    layers: Vec<LayerGraph>,
    head: Box<dyn Graph>,
    store: Arc<ExpertStore>,
    /// The next layer's router on the residual (bundles with dense weights).
    predictor: Option<Predictor>,
    /// Pages the next layer's predicted experts in ahead of use.
    ahead: Option<Ahead>,
    /// The low-precision copy of a mixed-precision bundle (always resident:
    /// its bytes are taken off the cache budget).
    lowp: Option<ExpertStore>,
    cache: Mutex<ResidencyCache>,
    remote: Option<Arc<dyn RemoteExperts>>,
    on_miss: OnMiss,
    /// What a layer does with an expert whose read ahead is on its way.
    on_late: OnLate,
    /// A miss whose router weight is at least this goes to the remote (when
    /// there is one) rather than to `lowp`.
    full_precision_above: Option<f32>,
    cos: Vec<f32>,
    sin: Vec<f32>,
    max_context: usize,
    /// Compute threads (the board's `threads`), shared with the native backend.
    pool: Arc<Pool>,
    backend_name: &'static str,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("model_id", &self.manifest.model_id)
            .field("store", &self.store)
            .finish()
    }
}

fn find(graph: &dyn Graph, name: &str, file: &str) -> Result<usize, EngineError> {
    graph
        .output_names()
        .iter()
        .position(|n| n == name)
        .ok_or_else(|| EngineError::Bundle(format!("{file}: no output named `{name}`")))
}

impl Model {
    pub fn load(bundle: &Bundle, board: &Board) -> Result<Model, EngineError> {
        let m = bundle.manifest.clone();
        let a = &m.architecture;
        let pool = Arc::new(Pool::new(board.backend.threads));
        let backend = runtime::backend_with_pool(&board.backend, pool.clone())?;
        let embed = backend.load_part(bundle, Part::Embed)?;
        let head = backend.load_part(bundle, Part::Head)?;
        let mut layers = Vec::with_capacity(a.num_layers);
        for (l, file) in m.graphs.layers.iter().enumerate() {
            let graph = backend.load_part(bundle, Part::Layer(l))?;
            let g = graph.as_ref();
            let out = [
                find(g, "resid", file)?,
                find(g, "moe_in", file)?,
                find(g, "router_logits", file)?,
                find(g, "k", file)?,
                find(g, "v", file)?,
            ];
            let shared = if a.shared_expert_intermediate_size.is_some() {
                Some(find(g, "shared_out", file)?)
            } else {
                None
            };
            layers.push(LayerGraph { graph, out, shared });
        }
        let store = Arc::new(ExpertStore::of_bundle(bundle)?);
        let lowp = ExpertStore::lowp_of_bundle(bundle)?;
        let lowp_bytes: u64 = lowp.as_ref().map_or(0, |s| {
            let n: usize = (0..a.num_layers).map(|l| s.present(l).len()).sum();
            (n * s.expert_bytes()) as u64
        });
        let budget = board.memory.experts_bytes.saturating_sub(lowp_bytes);
        let ebytes = store.expert_bytes() as u64;
        let carried: usize = (0..a.num_layers).map(|l| store.present(l).len()).sum();
        let fits = budget / ebytes.max(1) >= carried as u64;
        let want = m.dense.is_some()
            && match board.prefetch.mode {
                Prefetch::Off => false,
                Prefetch::Router => true,
                Prefetch::Auto => !fits && board.policy != crate::config::ExpertPolicy::Pinned,
            };
        // Guesses read ahead are held until used or given up, beside the
        // residency budget: at most two layers' worth (2 × top_k experts),
        // which the board's memory headroom covers. Taking them off the
        // budget instead would shrink the resident set, and LRU falls off a
        // cliff when a step's working set just stops fitting.
        let mut cache = ResidencyCache::new(board.policy, budget, ebytes);
        if let Some(plan) = &board.plan {
            let plan = crate::plan::file::read_plan(&bundle.path(plan))?;
            cache.pin(plan);
        }
        let predictor = match &m.dense {
            Some(d) => {
                let dense =
                    crate::runtime::native::weights::DenseWeights::open(&bundle.path(&d.file))?;
                Some(Predictor::load(a, &dense)?)
            }
            None => None,
        };
        let ahead = match (&predictor, want) {
            (Some(_), true) => {
                let io = board.prefetch.io_threads;
                log::info!(
                    "experts prefetch=router io_threads={io} slots={} carried={carried}",
                    cache.slots()
                );
                Some(Ahead {
                    prefetch: Prefetcher::new(
                        store.clone(),
                        a.num_layers,
                        a.num_experts,
                        io,
                        4 * a.top_k * io,
                    ),
                    stats: Mutex::new(PredictStats::new(a.num_layers)),
                    issued: (0..a.num_layers).map(|_| AtomicU64::new(0)).collect(),
                    useful: (0..a.num_layers).map(|_| AtomicU64::new(0)).collect(),
                    steps: AtomicU64::new(0),
                })
            }
            (None, true) => {
                log::info!("experts prefetch=off reason=no_dense_weights (re-import the bundle)");
                None
            }
            _ => None,
        };
        let max_context = a.max_context.min(board.limits.max_context);
        let (cos, sin) = rope_tables(a.head_dim, a.rope_theta, max_context);
        Ok(Model {
            manifest: m,
            embed,
            layers,
            head,
            store,
            predictor,
            ahead,
            lowp,
            cache: Mutex::new(cache),
            remote: None,
            on_miss: board.offload.on_miss,
            full_precision_above: board.offload.full_precision_above,
            on_late: board.prefetch.on_late,
            cos,
            sin,
            max_context,
            pool,
            backend_name: backend.name(),
        })
    }

    /// Experts this device lacks go to `remote` first.
    pub fn set_remote(&mut self, remote: Option<Arc<dyn RemoteExperts>>) {
        self.remote = remote;
    }

    /// The backend running the dense parts (`native`, `tract`, `ort`).
    pub fn backend_name(&self) -> &'static str {
        self.backend_name
    }

    pub fn max_context(&self) -> usize {
        self.max_context
    }

    pub fn store(&self) -> &ExpertStore {
        &self.store
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stats()
            .clone()
    }

    /// Prediction accuracy and page-ins ahead, when prefetching is on.
    pub fn prefetch_stats(&self) -> Option<(PredictStats, PrefetchStats)> {
        self.ahead.as_ref().map(|a| {
            (
                a.stats.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                a.prefetch.stats(),
            )
        })
    }

    /// Holds the I/O threads that read ahead (true) or lets them go on:
    /// while held every read ahead is late (tests of `on_late`). False when
    /// nothing reads ahead.
    pub fn hold_reads_ahead(&self, on: bool) -> bool {
        self.ahead.as_ref().map(|a| a.prefetch.hold(on)).is_some()
    }

    pub fn resident_experts(&self) -> usize {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .resident_count()
    }

    pub fn resident_bytes(&self) -> (u64, u64) {
        let c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        (c.resident_bytes(), c.budget_bytes())
    }

    pub fn new_kv(&self) -> KvCache {
        let a = &self.manifest.architecture;
        KvCache::new(a.num_layers, a.num_kv_heads * a.head_dim, self.max_context)
    }

    /// Run `tokens` after the sequence's past; returns logits [T, V] when
    /// `all_logits`, else [1, V] for the last token. Commits the new positions.
    pub fn forward(
        &self,
        kv: &mut KvCache,
        tokens: &[u32],
        all_logits: bool,
        counts: &mut ExpertCounts,
        times: &mut StepTimes,
        observer: Option<&mut dyn Observer>,
    ) -> Result<Tensor, EngineError> {
        let h = self.manifest.architecture.hidden_size;
        let t = tokens.len();
        let hidden = self.hidden(kv, tokens, counts, times, observer)?;
        let clock = Instant::now();
        let rows = if all_logits { t } else { 1 };
        let last = &hidden[(t - rows) * h..];
        let logits = self
            .head
            .run(&[TensorView::f32(vec![rows, h], last)])?
            .swap_remove(0);
        let head_us = clock.elapsed().as_micros() as u64;
        times.graphs_us += head_us;
        times.head_us += head_us;
        Ok(logits)
    }

    /// As [`Model::forward`] without the LM head: a prefill chunk whose
    /// logits nobody reads. Commits the new positions.
    pub fn extend(
        &self,
        kv: &mut KvCache,
        tokens: &[u32],
        counts: &mut ExpertCounts,
        times: &mut StepTimes,
    ) -> Result<(), EngineError> {
        self.hidden(kv, tokens, counts, times, None).map(drop)
    }

    /// The last layer's hidden states [T, H] of `tokens` after the past.
    fn hidden(
        &self,
        kv: &mut KvCache,
        tokens: &[u32],
        counts: &mut ExpertCounts,
        times: &mut StepTimes,
        mut observer: Option<&mut dyn Observer>,
    ) -> Result<Vec<f32>, EngineError> {
        let a = &self.manifest.architecture;
        let (t, p, h, d) = (tokens.len(), kv.len(), a.hidden_size, a.head_dim);
        if t == 0 {
            return Err(EngineError::Invalid("no tokens to run".into()));
        }
        if p + t > self.max_context {
            return Err(EngineError::ContextLength {
                needed: p + t,
                limit: self.max_context,
            });
        }
        let clock = Instant::now();
        let ids: Vec<i64> = tokens.iter().map(|&x| x as i64).collect();
        let mut hidden = self
            .embed
            .run(&[TensorView::i64(vec![t], &ids)])?
            .swap_remove(0)
            .into_f32()
            .ok_or_else(|| EngineError::Bundle("embed: output is not f32".into()))?;
        let cos = &self.cos[p * d..(p + t) * d];
        let sin = &self.sin[p * d..(p + t) * d];
        let s = p + t;
        let mut mask = vec![0f32; t * s];
        for i in 0..t {
            for j in (p + i + 1)..s {
                mask[i * s + j] = f32::NEG_INFINITY;
            }
        }
        let kvh = a.num_kv_heads;
        let mut probs = vec![0f32; t * a.num_experts];
        // The experts predicted for the layer about to run.
        let mut predicted: Vec<u16> = Vec::new();
        times.graphs_us += clock.elapsed().as_micros() as u64;
        for (l, lg) in self.layers.iter().enumerate() {
            let clock = Instant::now();
            // The past is read in place and the step's keys and values are
            // written in place, right after it.
            let (pk, pv, nk, nv) = kv.past_and_next(l, t);
            let mut outs = lg.graph.run_into(
                &[
                    TensorView::f32(vec![t, h], &hidden),
                    TensorView::f32(vec![t, d], cos),
                    TensorView::f32(vec![t, d], sin),
                    TensorView::f32(vec![t, s], &mask),
                    TensorView::f32(vec![p, kvh, d], pk),
                    TensorView::f32(vec![p, kvh, d], pv),
                ],
                &mut [
                    OutInto {
                        index: lg.out[3],
                        shape: vec![t, kvh, d],
                        buf: nk,
                    },
                    OutInto {
                        index: lg.out[4],
                        shape: vec![t, kvh, d],
                        buf: nv,
                    },
                ],
            )?;
            let take = |outs: &mut Vec<Tensor>, i: usize| -> Result<Vec<f32>, EngineError> {
                std::mem::replace(&mut outs[i], Tensor::f32(vec![0], vec![]))
                    .into_f32()
                    .ok_or_else(|| EngineError::Bundle(format!("layer {l}: output {i} is not f32")))
            };
            let mut out = take(&mut outs, lg.out[0])?;
            let moe_in = take(&mut outs, lg.out[1])?;
            let logits = take(&mut outs, lg.out[2])?;
            if let Some(si) = lg.shared {
                for (o, x) in out.iter_mut().zip(outs[si].as_f32().unwrap_or(&[])) {
                    *o += x;
                }
            }
            times.graphs_us += clock.elapsed().as_micros() as u64;
            let clock = Instant::now();
            let e = a.num_experts;
            let mut routes = Vec::with_capacity(t);
            for i in 0..t {
                router::softmax(&logits[i * e..(i + 1) * e], &mut probs[i * e..(i + 1) * e]);
                routes.push(router::top_k(
                    &probs[i * e..(i + 1) * e],
                    a.top_k,
                    a.norm_topk_prob,
                ));
            }
            if let Some(pr) = &self.predictor {
                if self.ahead.is_some() || observer.is_some() {
                    let next = pr.predict(l, &out);
                    if let Some(obs) = observer.as_deref_mut() {
                        obs.predicted(l, &next);
                    }
                    if let Some(ahead) = &self.ahead {
                        self.fetch_ahead(ahead, l, &routes, &predicted, &next);
                    }
                    predicted = next;
                }
            }
            self.moe(l, &moe_in, &probs, &routes, &mut out, counts, times)?;
            times.experts_us += clock.elapsed().as_micros() as u64;
            if let Some(obs) = observer.as_deref_mut() {
                obs.layer(l, &moe_in, &out, &probs, &routes);
            }
            hidden = out;
        }
        kv.commit(t);
        Ok(hidden)
    }
}

/// cos/sin tables [positions, head_dim] in transformers' layout (`cat(freqs, freqs)`).
pub fn rope_tables(head_dim: usize, theta: f64, positions: usize) -> (Vec<f32>, Vec<f32>) {
    let half = head_dim / 2;
    let mut cos = vec![0f32; positions * head_dim];
    let mut sin = vec![0f32; positions * head_dim];
    for p in 0..positions {
        for i in 0..half {
            let inv = 1.0 / theta.powf((2 * i) as f64 / head_dim as f64);
            // transformers computes inv_freq in f32 and the product in f32
            let inv = inv as f32;
            let f = (p as f32) * inv;
            let (s, c) = f.sin_cos();
            cos[p * head_dim + i] = c;
            cos[p * head_dim + half + i] = c;
            sin[p * head_dim + i] = s;
            sin[p * head_dim + half + i] = s;
        }
    }
    (cos, sin)
}
