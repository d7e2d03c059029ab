//! `moe-edge bench larger`: a model larger than the board. Makes a seeded
//! checkpoint in OLMoE-1B-7B's geometry (`checkpoint`) and its q4 bundle,
//! then measures decode with the device inside a real memory limit
//! (`cgroup`): llama.cpp on mmap, moe-edge paging experts without and with
//! prediction, moe-edge with misses on a host, and the unlimited ceiling.
//! Owns the orchestration of those runs; the engine, host and cgroup
//! mechanics are their modules'.

pub mod cgroup;
pub mod checkpoint;

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::BenchError;

fn err(msg: impl Into<String>) -> BenchError {
    BenchError::Other(msg.into())
}

/// Where the tokenizer of the larger checkpoint comes from (OLMoE fixture,
/// 497 tokens; the vocabulary is padded to the geometry's 50 304).
pub const FIXTURE_DIR: &str = "tests/fixtures/olmoe";

#[derive(Debug, Clone, Serialize)]
pub struct Made {
    pub hf: PathBuf,
    pub parameters: u64,
    pub checkpoint_bytes: u64,
    pub bundle: PathBuf,
    pub bundle_bytes: u64,
    pub experts_bytes: u64,
    pub seconds_checkpoint: f64,
    pub seconds_import: f64,
}

/// `DIR/hf` (bf16 shards, written unless an index is already there) and
/// `DIR/bundle-q4` (graphs f16, experts and dense weights q4).
#[cfg(feature = "tract")]
pub fn make(dir: &Path, seed: u64, layers: usize) -> Result<Made, BenchError> {
    use crate::bundle::import::{import, ImportOptions};
    use crate::bundle::manifest::{Dtype, ExpertDtype};
    let a = checkpoint::with_layers(checkpoint::olmoe_1b_7b(), layers);
    let hf = dir.join("hf");
    std::fs::create_dir_all(&hf).map_err(|e| err(format!("{}: {e}", hf.display())))?;
    let io = |p: &Path, e: std::io::Error| err(format!("{}: {e}", p.display()));
    let clock = std::time::Instant::now();
    let index = hf.join("model.safetensors.index.json");
    let cfg = hf.join("config.json");
    let want = serde_json::to_string_pretty(&checkpoint::config_json(&a))
        .map_err(|e| err(e.to_string()))?;
    let same = std::fs::read_to_string(&cfg).is_ok_and(|t| t == want);
    let checkpoint_bytes = if same && index.exists() {
        log::info!("larger checkpoint kept dir={}", hf.display());
        let t = std::fs::read_to_string(&index).map_err(|e| io(&index, e))?;
        let v: serde_json::Value = serde_json::from_str(&t).map_err(|e| err(e.to_string()))?;
        v["metadata"]["total_size"].as_u64().unwrap_or(0)
    } else {
        let _ = std::fs::remove_file(&index);
        for f in [
            "tokenizer.json",
            "tokenizer_config.json",
            "generation_config.json",
        ] {
            let src = Path::new(FIXTURE_DIR).join(f);
            if src.exists() {
                std::fs::copy(&src, hf.join(f)).map_err(|e| io(&src, e))?;
            }
        }
        let b = checkpoint::write_shards(&hf, &a, seed, 4 << 30)?;
        std::fs::write(&cfg, &want).map_err(|e| io(&cfg, e))?;
        b
    };
    let seconds_checkpoint = clock.elapsed().as_secs_f64();
    let clock = std::time::Instant::now();
    let out = dir.join("bundle-q4");
    let mut o = ImportOptions::new(&hf, &out);
    o.dtype = Dtype::F16;
    o.experts_dtype = Some(ExpertDtype::Q4);
    o.model_id = Some(format!("larger-olmoe-1b-7b-l{layers}-s{seed}"));
    o.force = true;
    let r = import(&o).map_err(|e| err(format!("import {}: {e}", out.display())))?;
    Ok(Made {
        hf,
        parameters: checkpoint::parameters(&a),
        checkpoint_bytes,
        bundle: out,
        bundle_bytes: r.total_bytes,
        experts_bytes: r.experts_bytes,
        seconds_checkpoint,
        seconds_import: clock.elapsed().as_secs_f64(),
    })
}
