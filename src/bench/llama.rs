//! Side by side with llama.cpp: runs its `llama-bench` on a GGUF of the same
//! checkpoint (`-m FILE -p 0 -n 64 -t 2 -o json`, decode only), parses the
//! JSON (`avg_ts`, tokens/s), and compares with our decode on the bundle.
//! llama.cpp is not vendored: docs/llama-cpp.md says how to build
//! `llama-bench` and make the GGUF.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use super::BenchError;

#[derive(Debug, Clone, Serialize)]
pub struct LlamaBench {
    pub llama_bench: PathBuf,
    pub gguf: PathBuf,
    pub gen_tokens: usize,
    pub threads: usize,
    /// Mean decode tokens/s (`avg_ts`).
    pub avg_ts: f64,
    /// Its standard deviation (`stddev_ts`) when reported.
    pub stddev_ts: Option<f64>,
    pub model_type: Option<String>,
    pub build_commit: Option<String>,
    /// `OMP_WAIT_POLICY` as llama-bench saw it (inherited from our environment).
    /// On a loaded machine the OpenMP default (active spinning) made a
    /// 2-thread llama-bench 3-30x slower here; `passive` avoids it.
    pub omp_wait_policy: Option<String>,
}

/// Decode tokens/s, its standard deviation, the model type and the build commit.
pub type LlamaRecord = (f64, Option<f64>, Option<String>, Option<String>);

/// The decode (`n_gen > 0`, `n_prompt == 0`) record of `llama-bench -o json` output.
pub fn parse(json: &str) -> Result<LlamaRecord, BenchError> {
    let v: serde_json::Value = serde_json::from_str(json.trim())
        .map_err(|e| BenchError::Other(format!("llama-bench output is not JSON: {e}")))?;
    let recs = v
        .as_array()
        .ok_or_else(|| BenchError::Other("llama-bench JSON is not an array of runs".into()))?;
    let rec = recs
        .iter()
        .find(|r| r["n_gen"].as_u64().unwrap_or(0) > 0 && r["n_prompt"].as_u64().unwrap_or(0) == 0)
        .or_else(|| recs.first())
        .ok_or_else(|| BenchError::Other("llama-bench JSON has no runs".into()))?;
    let avg = rec["avg_ts"]
        .as_f64()
        .ok_or_else(|| BenchError::Other("llama-bench run has no numeric `avg_ts`".into()))?;
    let s = |k: &str| rec[k].as_str().map(str::to_string);
    Ok((
        avg,
        rec["stddev_ts"].as_f64(),
        s("model_type"),
        s("build_commit"),
    ))
}

/// Run `llama_bench` on `gguf`: decode `gen_tokens` tokens with `threads` threads.
pub fn run(
    llama_bench: &Path,
    gguf: &Path,
    gen_tokens: usize,
    threads: usize,
) -> Result<LlamaBench, BenchError> {
    if !llama_bench.is_file() {
        return Err(BenchError::Other(format!(
            "llama-bench not found at {} (llama.cpp is not vendored; build it as docs/llama-cpp.md says and pass its path with --llama-bench)",
            llama_bench.display()
        )));
    }
    if !gguf.is_file() {
        return Err(BenchError::Other(format!(
            "GGUF not found at {} (make it with llama.cpp's convert_hf_to_gguf.py, see docs/llama-cpp.md)",
            gguf.display()
        )));
    }
    let mut cmd = Command::new(llama_bench);
    cmd.arg("-m").arg(gguf).args([
        "-p",
        "0",
        "-n",
        &gen_tokens.to_string(),
        "-t",
        &threads.to_string(),
        "-o",
        "json",
    ]);
    log::info!("llama-bench cmd={cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| BenchError::Other(format!("running {}: {e}", llama_bench.display())))?;
    if !out.status.success() {
        return Err(BenchError::Other(format!(
            "{} exited with {}: {}",
            llama_bench.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .join(" | ")
        )));
    }
    let (avg_ts, stddev_ts, model_type, build_commit) =
        parse(&String::from_utf8_lossy(&out.stdout))?;
    Ok(LlamaBench {
        llama_bench: llama_bench.to_path_buf(),
        gguf: gguf.to_path_buf(),
        gen_tokens,
        threads,
        avg_ts,
        stddev_ts,
        model_type,
        build_commit,
        omp_wait_policy: std::env::var("OMP_WAIT_POLICY").ok(),
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct LlamaComparison {
    pub llama: LlamaBench,
    pub ours: super::engine::EngineBenchReport,
    /// The board's `runtime.threads` (tract runs the dense graphs on one
    /// thread; large experts run on two).
    pub our_threads: usize,
    /// Our decode tokens/s over llama.cpp's.
    pub ratio: f64,
}

impl LlamaComparison {
    pub fn new(
        llama: LlamaBench,
        ours: super::engine::EngineBenchReport,
        our_threads: usize,
    ) -> LlamaComparison {
        let ratio = ours.decode_tok_s / llama.avg_ts;
        LlamaComparison {
            llama,
            ours,
            our_threads,
            ratio,
        }
    }

    pub fn table(&self) -> String {
        format!(
            "| engine | model | threads | decode tok/s |\n|---|---|---|---|\n\
             | llama.cpp llama-bench {} (OMP_WAIT_POLICY={}) | {} | {} | {:.1} ± {:.1} |\n\
             | moe-edge ({}) | {} | {} | {:.1} |\n\n\
             moe-edge / llama.cpp = {:.2}x",
            self.llama.build_commit.as_deref().unwrap_or("?"),
            self.llama.omp_wait_policy.as_deref().unwrap_or("unset"),
            self.llama.gguf.display(),
            self.llama.threads,
            self.llama.avg_ts,
            self.llama.stddev_ts.unwrap_or(0.0),
            self.ours.kernels,
            self.ours.model_id,
            self.our_threads,
            self.ours.decode_tok_s,
            self.ratio
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_llama_bench_json() {
        let j = r#"[{"build_commit":"abc","model_type":"qwen3moe ?B F32","n_prompt":0,"n_gen":64,"n_threads":2,"avg_ts":68.8,"stddev_ts":0.4,"samples_ts":[68.5,69.1]}]"#;
        let (avg, sd, ty, c) = super::parse(j).unwrap();
        assert_eq!(avg, 68.8);
        assert_eq!(sd, Some(0.4));
        assert_eq!(ty.as_deref(), Some("qwen3moe ?B F32"));
        assert_eq!(c.as_deref(), Some("abc"));
        assert!(super::parse("not json").is_err());
    }

    /// `llama-bench -m assist-moe-f32.gguf -p 0 -n 64 -t 2 -o json`, verbatim, from
    /// llama.cpp 0c1e570 (vendored by the llama-cpp-python 0.3.36 sdist).
    const REAL_0C1E570: &str = include_str!("testdata/llama-bench-0c1e570.json");

    #[test]
    fn parses_real_llama_bench_0c1e570_output() {
        let (avg, sd, ty, c) = super::parse(REAL_0C1E570).unwrap();
        assert_eq!(avg, 180.381621);
        assert_eq!(sd, Some(70.469007));
        assert_eq!(ty.as_deref(), Some("qwen3moe ?B all F32"));
        assert_eq!(c.as_deref(), Some("0c1e570"));
    }

    #[test]
    fn picks_the_decode_record_among_prompt_and_decode_runs() {
        // `-p 16 -n 64` prints a prompt record (n_gen 0) before the decode one
        let j =
            r#"[{"n_prompt":16,"n_gen":0,"avg_ts":900.0},{"n_prompt":0,"n_gen":64,"avg_ts":70.5}]"#;
        assert_eq!(super::parse(j).unwrap().0, 70.5);
        assert!(super::parse("[]").is_err());
        assert!(super::parse(r#"[{"n_prompt":0,"n_gen":64}]"#).is_err());
    }

    #[test]
    fn missing_binary_is_a_clear_error() {
        let e = super::run(
            "/nonexistent/llama-bench".as_ref(),
            "x.gguf".as_ref(),
            64,
            2,
        )
        .unwrap_err();
        assert!(e.to_string().contains("llama-bench not found"), "{e}");
    }
}
