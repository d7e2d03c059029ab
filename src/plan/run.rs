//! `moe-edge plan` as one call: how many experts the board's budget holds
//! (less a low-precision copy, with mixed precision), routing statistics of
//! the calibration requests on the whole model, the selection, the plan file
//! and optionally the pruned device bundle.
//!
//! Owns the budget arithmetic and the reading of calibration files. Does not
//! own statistics (`stats`), selection (`select`) or file formats (`file`,
//! `device_bundle`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::file::PlanFile;
use super::PlanError;
use crate::bundle::{Bundle, Verify};
use crate::config::Board;
use crate::engine::Engine;
use crate::openai::ChatRequest;

/// What `moe-edge plan` was asked to do.
pub struct PlanOptions {
    pub bundle: PathBuf,
    pub board: Board,
    /// Calibration requests (JSONL: a chat request or labelled example per line).
    pub calib: Vec<PathBuf>,
    /// Keep this fraction of all experts instead of what the budget holds.
    pub fraction: Option<f64>,
    /// A q8/q4 bundle of the same checkpoint kept whole beside the full-precision set.
    pub lowp: Option<PathBuf>,
    /// Greedy tokens generated per calibration request.
    pub gen_tokens: usize,
    /// Where to write the plan (default: BUNDLE/plans/BOARD.json).
    pub out: Option<PathBuf>,
    /// Also write the pruned bundle the board carries.
    pub device_bundle: Option<PathBuf>,
    pub force: bool,
}

/// What was planned and written, as lines for people.
pub struct PlanReport {
    pub text: String,
    pub plan: PlanFile,
    pub out: PathBuf,
}

impl std::fmt::Display for PlanReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

fn file_err(path: &Path, msg: impl std::fmt::Display) -> PlanError {
    PlanError::File {
        path: path.display().to_string(),
        msg: msg.to_string(),
    }
}

/// The rendered prompts of calibration files: each line's `messages`
/// through the bundle's chat template.
pub fn calib_prompts(engine: &Engine, files: &[PathBuf]) -> Result<Vec<String>, PlanError> {
    let mut prompts = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| file_err(f, e))?;
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let at = |msg: String| file_err(f, format!("line {}: {msg}", i + 1));
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| at(format!("not JSON: {e}")))?;
            let messages = v
                .get("messages")
                .cloned()
                .ok_or_else(|| at("no `messages`".into()))?;
            let req = ChatRequest::from_value(serde_json::json!({ "messages": messages }))
                .map_err(|e| at(e.message))?;
            prompts.push(
                crate::chat::template::render_chat(
                    &req.text_messages(),
                    engine.bundle.manifest.chat_template.as_deref(),
                )
                .map_err(|e| at(e.to_string()))?,
            );
        }
    }
    Ok(prompts)
}

/// Plans, writes the plan file (and the device bundle), reports.
pub fn run(o: &PlanOptions) -> Result<PlanReport, PlanError> {
    let board = &o.board;
    let mut text = String::new();
    // Statistics come from the whole model with no eviction in the way.
    let engine = Engine::load(&o.bundle, &board.all_resident(), Verify::Full)?;
    let arch = engine.model.manifest.architecture.clone();
    let total = arch.num_layers * arch.num_experts;
    let ebytes = engine.model.store().expert_bytes() as u64;
    let lowp = match &o.lowp {
        Some(dir) => Some(Bundle::open(dir, Verify::Full)?),
        None => None,
    };
    // Bytes of the low-precision copy (all its experts), off the budget first.
    let lowp_bytes: u64 = lowp.as_ref().map_or(0, |b| {
        let x = &b.manifest.experts;
        let n: usize = (0..arch.num_layers)
            .map(|l| match &x.present {
                Some(p) => p[l].len(),
                None => arch.num_experts,
            })
            .sum();
        n as u64 * x.expert_bytes as u64
    });
    let mb = |b: u64| b as f64 / 1048576.0;
    let slots = match o.fraction {
        Some(f) if (0.0..=1.0).contains(&f) => (f * total as f64).round() as usize,
        Some(f) => return Err(PlanError::Invalid(format!("--fraction {f} is not in 0..=1"))),
        None => {
            if lowp_bytes > board.memory.experts_bytes {
                return Err(PlanError::Invalid(format!(
                    "board {}: memory.experts_mb ({:.1} MB) cannot hold the low-precision copy ({:.1} MB)",
                    board.name,
                    mb(board.memory.experts_bytes),
                    mb(lowp_bytes)
                )));
            }
            ((board.memory.experts_bytes - lowp_bytes) / ebytes) as usize
        }
    }
    .min(total);
    if lowp.is_some() {
        let _ = writeln!(
            text,
            "mixed precision: low-precision copy {:.1} MB, {slots} experts at full precision",
            mb(lowp_bytes)
        );
    }
    let prompts = calib_prompts(&engine, &o.calib)?;
    let t = std::time::Instant::now();
    let stats = super::collect(&engine, &prompts, o.gen_tokens)?;
    let sel = super::select(&stats, slots, arch.top_k);
    let covered: u64 = sel
        .ranked
        .iter()
        .map(|&(l, e)| stats.freq[l as usize][e as usize])
        .sum();
    let routed: u64 = stats.freq.iter().flatten().sum();
    let _ = writeln!(
        text,
        "calibration: {} requests, {} tokens in {:.1} s; keeping {slots} of {total} experts ({:.0} %, {:.1} MB), covering {:.1} % of routed slots",
        prompts.len(),
        stats.tokens,
        t.elapsed().as_secs_f64(),
        100.0 * slots as f64 / total as f64,
        mb(slots as u64 * ebytes),
        100.0 * covered as f64 / routed.max(1) as f64
    );
    for (l, kept) in sel.per_layer.iter().enumerate() {
        let _ = writeln!(text, "layer {l}: {kept:?}");
    }
    let plan = PlanFile {
        format: 1,
        model_id: engine.model_id().to_string(),
        board: board.name.clone(),
        budget_bytes: slots as u64 * ebytes + lowp_bytes,
        experts: sel.ranked.clone(),
        per_layer: sel.per_layer.clone(),
    };
    let out = o
        .out
        .clone()
        .unwrap_or_else(|| o.bundle.join("plans").join(format!("{}.json", board.name)));
    if let Some(d) = out.parent() {
        std::fs::create_dir_all(d).map_err(|e| file_err(d, e))?;
    }
    let json = serde_json::to_string_pretty(&plan).expect("a plan serialises");
    std::fs::write(&out, json).map_err(|e| file_err(&out, e))?;
    let _ = writeln!(text, "plan written to {}", out.display());
    if let Some(dev) = &o.device_bundle {
        let size = super::device_bundle::write_device_bundle(
            &engine.bundle,
            &sel.per_layer,
            lowp.as_ref(),
            dev,
            o.force,
        )?;
        let _ = writeln!(
            text,
            "device bundle written to {} (experts file {:.1} MB)",
            dev.display(),
            mb(size)
        );
    }
    Ok(PlanReport { text, plan, out })
}
