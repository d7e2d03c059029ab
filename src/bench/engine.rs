//! Engine benchmark: prefill and decode tokens/s, time to first token,
//! expert hit rate and peak RSS for a bundle on a board. Decode runs a fixed
//! number of greedy steps (end of turn ignored) so runs are comparable.

use std::time::Instant;

use serde::Serialize;

use super::{peak_rss_bytes, percentile, BenchError};
use crate::engine::model::StepTimes;
use crate::engine::sampler::argmax;
use crate::engine::{Engine, ExpertCounts};

#[derive(Debug, Clone)]
pub struct EngineBenchOptions {
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
    pub runs: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct EngineBenchReport {
    pub model_id: String,
    pub board: String,
    /// The backend of the dense work (`native`, `tract`, `ort`).
    pub backend: String,
    pub kernels: String,
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
    pub runs: usize,
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
    pub decode_ms_per_token_p50: f64,
    pub decode_ms_per_token_p99: f64,
    pub ttft_ms: f64,
    /// Dense work (attention, norms, router, embedding, head) of the busy time.
    pub graphs_share: f64,
    /// The LM head's part of it.
    pub head_share: f64,
    pub experts_share: f64,
    pub expert_hit_rate: f64,
    pub expert_bytes_resident: u64,
    pub expert_budget_bytes: u64,
    pub active_expert_bytes_per_token: u64,
    pub peak_rss_mb: f64,
}

/// A prompt of exactly `n` tokens: the chat template around repeated text.
fn prompt_ids(engine: &Engine, n: usize) -> Result<Vec<u32>, BenchError> {
    let mut ids = engine.encode("<|im_start|>user\nset the temperature to 22 degrees on the driver side and then play some jazz please ")?;
    let filler = engine.encode("and also ")?;
    while ids.len() < n {
        ids.extend_from_slice(&filler);
    }
    ids.truncate(n.max(1));
    Ok(ids)
}

pub fn run(
    engine: &Engine,
    board: &str,
    o: &EngineBenchOptions,
) -> Result<EngineBenchReport, BenchError> {
    let m = &engine.model;
    let a = &m.manifest.architecture;
    if o.prompt_tokens + o.gen_tokens > m.max_context() {
        return Err(BenchError::Other(format!(
            "prompt {} + gen {} tokens exceed the context {}",
            o.prompt_tokens,
            o.gen_tokens,
            m.max_context()
        )));
    }
    let ids = prompt_ids(engine, o.prompt_tokens)?;
    let (mut prefill_s, mut decode_s, mut ttft_s) = (0.0, 0.0, 0.0);
    let mut per_token = Vec::new();
    let mut times = StepTimes::default();
    // one warm-up run pages experts in and builds tract plans
    for run in 0..=o.runs {
        let mut kv = m.new_kv();
        let mut c = ExpertCounts::default();
        let mut t = StepTimes::default();
        let clock = Instant::now();
        let l = m.forward(&mut kv, &ids, false, &mut c, &mut t, None)?;
        let mut next = argmax(l.as_f32().unwrap_or(&[]));
        let pf = clock.elapsed().as_secs_f64();
        let dclock = Instant::now();
        for _ in 1..o.gen_tokens {
            let s = Instant::now();
            let l = m.forward(&mut kv, &[next], false, &mut c, &mut t, None)?;
            next = argmax(l.as_f32().unwrap_or(&[]));
            if run > 0 {
                per_token.push(s.elapsed().as_secs_f64() * 1e3);
            }
        }
        if run > 0 {
            prefill_s += pf;
            ttft_s += pf;
            decode_s += dclock.elapsed().as_secs_f64();
            times.graphs_us += t.graphs_us;
            times.head_us += t.head_us;
            times.experts_us += t.experts_us;
        }
    }
    let runs = o.runs.max(1) as f64;
    let decode_steps = (o.gen_tokens.saturating_sub(1)) as f64 * runs;
    let stats = m.cache_stats();
    let (resident, budget) = m.resident_bytes();
    let busy = (times.graphs_us + times.experts_us).max(1) as f64;
    Ok(EngineBenchReport {
        model_id: engine.model_id().to_string(),
        board: board.to_string(),
        backend: m.backend_name().to_string(),
        kernels: kernels_label(engine.model.store().dtype()),
        prompt_tokens: ids.len(),
        gen_tokens: o.gen_tokens,
        runs: o.runs,
        prefill_tok_s: ids.len() as f64 * runs / prefill_s,
        decode_tok_s: decode_steps / decode_s,
        decode_ms_per_token_p50: percentile(&per_token, 50.0),
        decode_ms_per_token_p99: percentile(&per_token, 99.0),
        ttft_ms: ttft_s / runs * 1e3,
        graphs_share: times.graphs_us as f64 / busy,
        head_share: times.head_us as f64 / busy,
        experts_share: times.experts_us as f64 / busy,
        expert_hit_rate: stats.hit_rate(),
        expert_bytes_resident: resident,
        expert_budget_bytes: budget,
        active_expert_bytes_per_token: (a.num_layers * a.top_k * m.store().expert_bytes()) as u64,
        peak_rss_mb: peak_rss_bytes().unwrap_or(0) as f64 / (1 << 20) as f64,
    })
}

impl EngineBenchReport {
    pub fn table(&self) -> String {
        format!(
            "| model | board | kernels | prompt | gen | prefill tok/s | decode tok/s | decode ms/tok p50 / p99 | TTFT ms | backend | dense (of it head) / experts time | expert hit rate | peak RSS MB |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|---|\n\
             | {} | {} | {} | {} | {} | {:.0} | {:.1} | {:.3} / {:.3} | {:.2} | {} | {:.0} % ({:.0} %) / {:.0} % | {:.1} % | {:.1} |",
            self.model_id,
            self.board,
            self.kernels,
            self.prompt_tokens,
            self.gen_tokens,
            self.prefill_tok_s,
            self.decode_tok_s,
            self.decode_ms_per_token_p50,
            self.decode_ms_per_token_p99,
            self.ttft_ms,
            self.backend,
            self.graphs_share * 100.0,
            self.head_share * 100.0,
            self.experts_share * 100.0,
            self.expert_hit_rate * 100.0,
            self.peak_rss_mb
        )
    }
}

/// The kernel set, plus how quantised experts meet the activations.
pub fn kernels_label(dtype: crate::bundle::ExpertDtype) -> String {
    use crate::experts::kernels::{kernels, quant_dot, QuantDot};
    let name = kernels().name;
    match (dtype.is_quantized(), quant_dot()) {
        (false, _) => name.to_string(),
        (true, QuantDot::Int8) => format!("{name}, int8 dot"),
        (true, QuantDot::F32) => format!("{name}, f32 dequant"),
    }
}
