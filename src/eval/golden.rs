//! Golden checks: the reference vectors written next to a checkpoint
//! (`golden.safetensors`: per prompt `p{i}.input_ids`, `p{i}.logits` [T, V],
//! `p{i}.greedy`) replayed through `Model::forward`: the prefill's logits of
//! every position and the greedy continuation through the KV cache. Used by
//! the hidden `moe-edge golden` subcommand and the tests that compare
//! backends and builds. Owns reading the file and the comparison; not how the
//! model runs.

use std::path::Path;

use safetensors::SafeTensors;

use crate::engine::model::{ExpertCounts, Model, StepTimes};
use crate::engine::EngineError;

/// One prompt of a golden file.
#[derive(Debug, Clone, PartialEq)]
pub struct GoldenPrompt {
    pub input_ids: Vec<u32>,
    /// Reference logits of every prompt position, [T, V] row-major.
    pub logits: Vec<f32>,
    /// Reference greedy continuation (may end early on an end-of-turn token).
    pub greedy: Vec<u32>,
}

/// What our model did with one golden prompt.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PromptResult {
    pub prompt: usize,
    pub prompt_tokens: usize,
    /// Our greedy continuation, as long as the reference's.
    pub tokens: Vec<u32>,
    pub expected: Vec<u32>,
    pub tokens_match: bool,
    /// max |our logit - reference logit| over the prompt's [T, V] logits.
    pub max_abs_dlogit: f32,
    /// Our prefill logits [T, V], when asked for (to compare two runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logits: Option<Vec<f32>>,
}

impl PromptResult {
    pub fn passes(&self, tol: f32) -> bool {
        self.tokens_match && self.max_abs_dlogit <= tol
    }
}

fn bad(path: &Path, msg: impl std::fmt::Display) -> EngineError {
    EngineError::Invalid(format!("{}: {msg}", path.display()))
}

/// Read every `p{i}.*` prompt of a golden file (at least one).
pub fn read_golden(path: &Path) -> Result<Vec<GoldenPrompt>, EngineError> {
    let bytes = std::fs::read(path).map_err(|e| bad(path, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(path, e))?;
    let raw = |name: &str, dtype: safetensors::Dtype| -> Result<Option<Vec<u8>>, EngineError> {
        match st.tensor(name) {
            Ok(t) if t.dtype() == dtype => Ok(Some(t.data().to_vec())),
            Ok(t) => Err(bad(
                path,
                format!("tensor {name} is {:?}, expected {dtype:?}", t.dtype()),
            )),
            Err(_) => Ok(None),
        }
    };
    let ids = |name: &str| -> Result<Option<Vec<u32>>, EngineError> {
        raw(name, safetensors::Dtype::I64)?
            .map(|b| {
                b.chunks_exact(8)
                    .map(|c| {
                        let v = i64::from_le_bytes(c.try_into().expect("8 bytes"));
                        u32::try_from(v).map_err(|_| {
                            bad(path, format!("tensor {name}: token id {v} out of range"))
                        })
                    })
                    .collect()
            })
            .transpose()
    };
    let mut prompts = Vec::new();
    for i in 0.. {
        let Some(input_ids) = ids(&format!("p{i}.input_ids"))? else {
            break;
        };
        let logits = raw(&format!("p{i}.logits"), safetensors::Dtype::F32)?
            .ok_or_else(|| bad(path, format!("no tensor p{i}.logits")))?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        let greedy = ids(&format!("p{i}.greedy"))?.unwrap_or_default();
        prompts.push(GoldenPrompt {
            input_ids,
            logits,
            greedy,
        });
    }
    if prompts.is_empty() {
        return Err(bad(
            path,
            "no golden prompts (tensors p0.input_ids, p0.logits, p0.greedy)",
        ));
    }
    Ok(prompts)
}

/// Index of the largest value (the first on a tie, like torch's argmax).
pub fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best as u32
}

/// Run one golden prompt: prefill with all logits, then the greedy
/// continuation through the KV cache.
pub fn run_prompt(
    model: &Model,
    index: usize,
    g: &GoldenPrompt,
    keep_logits: bool,
) -> Result<PromptResult, EngineError> {
    let v = model.manifest.architecture.vocab_size;
    let t = g.input_ids.len();
    if t == 0 || g.logits.len() != t * v {
        return Err(EngineError::Invalid(format!(
            "golden prompt {index}: {} logits for {t} tokens of a {v}-token vocabulary",
            g.logits.len()
        )));
    }
    let mut kv = model.new_kv();
    let (mut counts, mut times) = (ExpertCounts::default(), StepTimes::default());
    let logits = model
        .forward(&mut kv, &g.input_ids, true, &mut counts, &mut times, None)?
        .into_f32()
        .ok_or_else(|| EngineError::Bundle("head: logits are not f32".into()))?;
    if logits.len() != t * v {
        return Err(EngineError::Bundle(format!(
            "head: {} logits for {t} positions of a {v}-token vocabulary",
            logits.len()
        )));
    }
    let max_abs_dlogit = logits
        .iter()
        .zip(&g.logits)
        .map(|(a, b)| (a - b).abs())
        .fold(
            0f32,
            |m, d| if d.is_nan() { f32::INFINITY } else { m.max(d) },
        );
    let mut tokens = Vec::with_capacity(g.greedy.len());
    let mut next = argmax(&logits[(t - 1) * v..]);
    for step in 0..g.greedy.len() {
        tokens.push(next);
        if step + 1 == g.greedy.len() {
            break;
        }
        let l = model
            .forward(&mut kv, &[next], false, &mut counts, &mut times, None)?
            .into_f32()
            .ok_or_else(|| EngineError::Bundle("head: logits are not f32".into()))?;
        next = argmax(&l);
    }
    Ok(PromptResult {
        prompt: index,
        prompt_tokens: t,
        tokens_match: tokens == g.greedy,
        tokens,
        expected: g.greedy.clone(),
        max_abs_dlogit,
        logits: keep_logits.then_some(logits),
    })
}

/// Every prompt of `golden` through `model`.
pub fn run_all(
    model: &Model,
    golden: &[GoldenPrompt],
    keep_logits: bool,
) -> Result<Vec<PromptResult>, EngineError> {
    golden
        .iter()
        .enumerate()
        .map(|(i, g)| run_prompt(model, i, g, keep_logits))
        .collect()
}

/// `moe-edge golden`: replays `golden` through the bundle on `board`; the
/// result as JSON and whether every prompt is within `tol`.
pub fn check_bundle(
    bundle_dir: &Path,
    golden: &Path,
    board: &crate::config::Board,
    tol: f32,
    with_logits: bool,
) -> Result<(serde_json::Value, bool), EngineError> {
    let bundle =
        crate::bundle::Bundle::open(bundle_dir, crate::bundle::Verify::Full).map_err(|e| {
            EngineError::Invalid(format!("opening bundle {}: {e}", bundle_dir.display()))
        })?;
    let model = Model::load(&bundle, board)?;
    let prompts = read_golden(golden)?;
    let results = run_all(&model, &prompts, with_logits)?;
    let ok = results.iter().all(|r| r.passes(tol));
    let out = serde_json::json!({
        "bundle": bundle_dir.display().to_string(),
        "model_id": bundle.manifest.model_id,
        "board": board.name,
        "backend": board.backend.kind.to_string(),
        "arch": std::env::consts::ARCH,
        "tol": tol,
        "ok": ok,
        "prompts": results,
    });
    Ok((out, ok))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_first_of_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
        assert_eq!(argmax(&[f32::NEG_INFINITY]), 0);
    }

    #[test]
    fn reads_fixture_golden() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/qwen3_moe/golden.safetensors");
        if !p.exists() {
            return;
        }
        let g = read_golden(&p).unwrap();
        assert!(!g.is_empty());
        for x in &g {
            assert!(!x.input_ids.is_empty());
            assert_eq!(x.logits.len() % x.input_ids.len(), 0);
        }
    }

    #[test]
    fn missing_file_named() {
        let e = read_golden(Path::new("/nonexistent/golden.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/golden.safetensors"), "{e}");
    }
}
