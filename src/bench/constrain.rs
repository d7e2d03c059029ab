//! Cost of constrained decoding: test-split prompts are generated greedily
//! with the tool constraint (catalogue, tool_choice auto); reports the model's
//! decode step time, the mask time per token as served (with the per-generation
//! mask cache), and the uncached mask time per token (the same outputs
//! replayed through a fresh constraint with no cache), each as a ratio of the
//! step. With `x-grounded` strings (`--grounded`) every prompt has its own
//! grammar, so its masks are cached for that prompt only.

use std::time::Instant;

use serde::Serialize;

use super::{percentile, BenchError};
use crate::constrain::Constraint;
use crate::engine::{Engine, GenParams};
use crate::eval::{CatalogueConstraint, Example};
use crate::openai::ChatRequest;

#[derive(Debug, Clone, Serialize)]
pub struct ConstrainBenchReport {
    pub model_id: String,
    /// The catalogue's free-text strings were `x-grounded`.
    pub grounded: bool,
    pub prompts: usize,
    pub tokens: u64,
    pub decode_ms_per_token: f64,
    pub mask_us_per_token: f64,
    pub mask_cache_hit_rate: f64,
    pub uncached_mask_us_p50: f64,
    pub uncached_mask_us_p99: f64,
    pub uncached_mask_us_max: f64,
    /// Served mask time / decode step time.
    pub ratio: f64,
    /// Uncached p99 mask time / decode step time.
    pub ratio_uncached_p99: f64,
}

pub fn run(
    engine: &Engine,
    constraint: &CatalogueConstraint,
    examples: &[Example],
) -> Result<ConstrainBenchReport, BenchError> {
    let vocab = engine
        .constrain_vocab()
        .map_err(|e| BenchError::Other(e.to_string()))?;
    let (mut decode_ms, mut decode_steps) = (0.0, 0u64);
    let (mut mask_ns, mut masks, mut hits) = (0u64, 0u64, 0u64);
    let mut uncached = Vec::new();
    for (i, ex) in examples.iter().enumerate() {
        let req = ChatRequest {
            messages: ex.messages.clone(),
            ..ChatRequest::default()
        };
        let prompt = crate::chat::template::render_chat(
            &req.text_messages(),
            engine.bundle.manifest.chat_template.as_deref(),
        )
        .map_err(|e| BenchError::Other(e.to_string()))?;
        let spec = constraint.spec(&req)?;
        let mut g = engine.begin(
            &prompt,
            GenParams {
                max_tokens: 64,
                constraint: Some(spec.clone()),
                ..GenParams::default()
            },
        )?;
        let f = engine.run(&mut g, |_| {})?;
        let st = g.mask_stats();
        if i > 0 {
            // the first example warms up tract plans and pages experts in
            decode_ms += f.timings.decode_ms;
            decode_steps += f.completion_tokens.saturating_sub(1) as u64;
            mask_ns += st.nanos;
            masks += st.masks;
            hits += st.cache_hits;
        }
        // replay the same tokens uncached
        let mut c = Constraint::new(spec.clone(), vocab.clone());
        c.set_cache(false);
        let mut toks: Vec<u32> = g.generated_tokens().to_vec();
        if f.finish_reason == crate::engine::FinishReason::Stop {
            toks.push(engine.special.eos.first().copied().unwrap_or(0));
        }
        for t in toks {
            let clock = Instant::now();
            let allowed = c.mask().get(t);
            uncached.push(clock.elapsed().as_secs_f64() * 1e6);
            if !allowed || c.advance(t).is_err() {
                break;
            }
        }
    }
    let step_ms = decode_ms / decode_steps.max(1) as f64;
    let mask_us = mask_ns as f64 / 1e3 / masks.max(1) as f64;
    let p99 = percentile(&uncached, 99.0);
    Ok(ConstrainBenchReport {
        model_id: engine.model_id().to_string(),
        grounded: constraint.is_grounded(),
        prompts: examples.len(),
        tokens: masks,
        decode_ms_per_token: step_ms,
        mask_us_per_token: mask_us,
        mask_cache_hit_rate: hits as f64 / masks.max(1) as f64,
        uncached_mask_us_p50: percentile(&uncached, 50.0),
        uncached_mask_us_p99: p99,
        uncached_mask_us_max: uncached.iter().copied().fold(0.0, f64::max),
        ratio: mask_us / 1e3 / step_ms,
        ratio_uncached_p99: p99 / 1e3 / step_ms,
    })
}

impl ConstrainBenchReport {
    pub fn table(&self) -> String {
        format!(
            "| model | strings | prompts | tokens | decode ms/token | mask us/token (served, cache hit rate) | mask/step | uncached mask us p50 / p99 / max | uncached p99 / step |\n\
             |---|---|---|---|---|---|---|---|---|\n\
             | {} | {} | {} | {} | {:.3} | {:.1} ({:.0} %) | {:.1} % | {:.1} / {:.1} / {:.1} | {:.1} % |",
            self.model_id,
            if self.grounded { "grounded" } else { "free" },
            self.prompts,
            self.tokens,
            self.decode_ms_per_token,
            self.mask_us_per_token,
            self.mask_cache_hit_rate * 100.0,
            self.ratio * 100.0,
            self.uncached_mask_us_p50,
            self.uncached_mask_us_p99,
            self.uncached_mask_us_max,
            self.ratio_uncached_p99 * 100.0
        )
    }
}
