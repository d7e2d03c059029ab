//! Side by side with llama.cpp, best configuration against best: runs
//! llama.cpp's `llama-bench` on a GGUF of the same checkpoint
//! (`-p PROMPT -n GEN -t THREADS -r RUNS -o json`: prefill and decode) and our
//! engine on the bundle at each thread count, in one process, and measures
//! the read bandwidth at each thread count in the same run, so every figure
//! comes with its share of the memory roofline. llama.cpp is not vendored:
//! docs/llama-cpp.md says how to build `llama-bench` and make the GGUF.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use super::bandwidth::Bandwidth;
use super::BenchError;

/// One `llama-bench` invocation at one thread count.
#[derive(Debug, Clone, Serialize)]
pub struct LlamaRun {
    pub threads: usize,
    /// Mean decode tokens/s (`avg_ts` of the `n_gen` record) and its deviation.
    pub decode_tok_s: f64,
    pub decode_sd: Option<f64>,
    /// Mean prefill tokens/s (`avg_ts` of the `n_prompt` record), when run.
    pub prefill_tok_s: Option<f64>,
    pub prefill_sd: Option<f64>,
    pub model_type: Option<String>,
    pub build_commit: Option<String>,
}

/// One record of `llama-bench -o json`: tokens/s and its deviation.
pub type Record = (f64, Option<f64>);

/// The decode record (`n_gen > 0`, `n_prompt == 0`) and the prefill record
/// (`n_prompt > 0`, `n_gen == 0`) of `llama-bench -o json` output, with the
/// model type and build commit.
#[allow(clippy::type_complexity)]
pub fn parse_runs(
    json: &str,
) -> Result<(Record, Option<Record>, Option<String>, Option<String>), BenchError> {
    let v: serde_json::Value = serde_json::from_str(json.trim())
        .map_err(|e| BenchError::Other(format!("llama-bench output is not JSON: {e}")))?;
    let recs = v
        .as_array()
        .ok_or_else(|| BenchError::Other("llama-bench JSON is not an array of runs".into()))?;
    let n = |r: &serde_json::Value, k: &str| r[k].as_u64().unwrap_or(0);
    let rec = |r: &serde_json::Value| -> Result<Record, BenchError> {
        let avg = r["avg_ts"]
            .as_f64()
            .ok_or_else(|| BenchError::Other("llama-bench run has no numeric `avg_ts`".into()))?;
        Ok((avg, r["stddev_ts"].as_f64()))
    };
    let decode = recs
        .iter()
        .find(|r| n(r, "n_gen") > 0 && n(r, "n_prompt") == 0)
        .ok_or_else(|| {
            BenchError::Other("llama-bench JSON has no decode run (n_gen > 0, n_prompt 0)".into())
        })?;
    let prefill = recs
        .iter()
        .find(|r| n(r, "n_prompt") > 0 && n(r, "n_gen") == 0)
        .map(rec)
        .transpose()?;
    let s = |k: &str| decode[k].as_str().map(str::to_string);
    Ok((rec(decode)?, prefill, s("model_type"), s("build_commit")))
}

/// Run `llama_bench` on `gguf` at `threads` threads: a `prompt`-token prefill
/// (0: none) and a `gen`-token decode, `reps` repetitions each.
pub fn run(
    llama_bench: &Path,
    gguf: &Path,
    prompt: usize,
    gen: usize,
    threads: usize,
    reps: usize,
) -> Result<LlamaRun, BenchError> {
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
    cmd.args(args(gguf, prompt, gen, threads, reps));
    run_command(cmd, llama_bench, threads)
}

/// The arguments of one `llama-bench` run.
pub fn args(gguf: &Path, prompt: usize, gen: usize, threads: usize, reps: usize) -> Vec<String> {
    let mut v = vec!["-m".to_string(), gguf.display().to_string()];
    for (flag, n) in [
        ("-p", prompt),
        ("-n", gen),
        ("-t", threads),
        ("-r", reps.max(1)),
    ] {
        v.push(flag.into());
        v.push(n.to_string());
    }
    v.extend(["-o".into(), "json".into()]);
    v
}

/// Runs a prepared `llama-bench` command (e.g. inside a memory cgroup) and
/// reads its JSON.
pub fn run_command(
    mut cmd: Command,
    llama_bench: &Path,
    threads: usize,
) -> Result<LlamaRun, BenchError> {
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
    let ((decode, decode_sd), prefill, model_type, build_commit) =
        parse_runs(&String::from_utf8_lossy(&out.stdout))?;
    Ok(LlamaRun {
        threads,
        decode_tok_s: decode,
        decode_sd,
        prefill_tok_s: prefill.map(|p| p.0),
        prefill_sd: prefill.and_then(|p| p.1),
        model_type,
        build_commit,
    })
}

/// Our engine at one thread count.
#[derive(Debug, Clone, Serialize)]
pub struct OurRun {
    pub threads: usize,
    pub decode_tok_s: f64,
    pub prefill_tok_s: f64,
    pub decode: super::engine::EngineBenchReport,
    pub prefill: super::engine::EngineBenchReport,
}

#[derive(Debug, Clone, Serialize)]
pub struct LlamaComparison {
    pub llama_bench: PathBuf,
    pub gguf: PathBuf,
    pub bundle: PathBuf,
    pub backend: String,
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
    /// `OMP_WAIT_POLICY` as llama-bench saw it (inherited from our environment).
    pub omp_wait_policy: Option<String>,
    /// Read bandwidth at each thread count, measured in this run.
    pub bandwidth: Vec<Bandwidth>,
    /// Weight bytes a decode step reads (dense, one embedding row, top-k
    /// experts per layer) from the bundle; used for both sides' roofline.
    pub active_bytes_per_token: u64,
    pub llama: Vec<LlamaRun>,
    pub ours: Vec<OurRun>,
    /// Our best decode tokens/s over llama.cpp's best.
    pub decode_ratio: f64,
    /// The same for prefill (when llama-bench ran one).
    pub prefill_ratio: Option<f64>,
}

fn best<T>(v: &[T], f: impl Fn(&T) -> f64) -> f64 {
    v.iter().map(f).fold(0.0, f64::max)
}

impl LlamaComparison {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        llama_bench: &Path,
        gguf: &Path,
        bundle: &Path,
        backend: &str,
        prompt_tokens: usize,
        gen_tokens: usize,
        bandwidth: Vec<Bandwidth>,
        active_bytes_per_token: u64,
        llama: Vec<LlamaRun>,
        ours: Vec<OurRun>,
    ) -> LlamaComparison {
        let decode_ratio = best(&ours, |r| r.decode_tok_s) / best(&llama, |r| r.decode_tok_s);
        let their_prefill = best(&llama, |r| r.prefill_tok_s.unwrap_or(0.0));
        let prefill_ratio =
            (their_prefill > 0.0).then(|| best(&ours, |r| r.prefill_tok_s) / their_prefill);
        LlamaComparison {
            llama_bench: llama_bench.to_path_buf(),
            gguf: gguf.to_path_buf(),
            bundle: bundle.to_path_buf(),
            backend: backend.to_string(),
            prompt_tokens,
            gen_tokens,
            omp_wait_policy: std::env::var("OMP_WAIT_POLICY").ok(),
            bandwidth,
            active_bytes_per_token,
            llama,
            ours,
            decode_ratio,
            prefill_ratio,
        }
    }

    /// Share of the roofline (bandwidth at `threads` / bytes per token).
    fn roofline_share(&self, threads: usize, tok_s: f64) -> Option<f64> {
        let bw = self.bandwidth.iter().find(|b| b.threads == threads)?;
        Some(tok_s * self.active_bytes_per_token as f64 / (bw.read_gb_s * 1e9))
    }

    pub fn table(&self) -> String {
        let commit = self
            .llama
            .first()
            .and_then(|r| r.build_commit.as_deref())
            .unwrap_or("?");
        let mut t = format!(
            "llama.cpp {commit} on {} (OMP_WAIT_POLICY={}); moe-edge ({}) on {}\n\
             decode: {} tokens; prefill: {}-token prompt; active weights {:.1} MB/token\n\n\
             | engine | threads | decode tok/s | decode % of roofline | prefill tok/s | read GB/s |\n\
             |---|---|---|---|---|---|\n",
            self.gguf.display(),
            self.omp_wait_policy.as_deref().unwrap_or("unset"),
            self.backend,
            self.bundle.display(),
            self.gen_tokens,
            self.prompt_tokens,
            self.active_bytes_per_token as f64 / 1e6,
        );
        let pct = |s: Option<f64>| s.map_or("-".into(), |s| format!("{:.0} %", s * 100.0));
        let gbs = |th: usize| {
            self.bandwidth
                .iter()
                .find(|b| b.threads == th)
                .map_or("-".into(), |b| format!("{:.1}", b.read_gb_s))
        };
        for r in &self.llama {
            t += &format!(
                "| llama.cpp | {} | {:.1} ± {:.1} | {} | {} | {} |
",
                r.threads,
                r.decode_tok_s,
                r.decode_sd.unwrap_or(0.0),
                pct(self.roofline_share(r.threads, r.decode_tok_s)),
                r.prefill_tok_s.map_or("-".into(), |p| format!("{p:.0}")),
                gbs(r.threads)
            );
        }
        for r in &self.ours {
            t += &format!(
                "| moe-edge | {} | {:.1} | {} | {:.0} | {} |
",
                r.threads,
                r.decode_tok_s,
                pct(self.roofline_share(r.threads, r.decode_tok_s)),
                r.prefill_tok_s,
                gbs(r.threads)
            );
        }
        t += &format!(
            "
best against best: decode moe-edge / llama.cpp = {:.2}x",
            self.decode_ratio
        );
        if let Some(p) = self.prefill_ratio {
            t += &format!(", prefill = {p:.2}x");
        }
        t
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_llama_bench_json() {
        let j = r#"[{"build_commit":"abc","model_type":"qwen3moe ?B F32","n_prompt":0,"n_gen":64,"n_threads":2,"avg_ts":68.8,"stddev_ts":0.4,"samples_ts":[68.5,69.1]}]"#;
        let ((avg, sd), prefill, ty, c) = super::parse_runs(j).unwrap();
        assert_eq!(avg, 68.8);
        assert_eq!(sd, Some(0.4));
        assert!(prefill.is_none());
        assert_eq!(ty.as_deref(), Some("qwen3moe ?B F32"));
        assert_eq!(c.as_deref(), Some("abc"));
        assert!(super::parse_runs("not json").is_err());
    }

    /// `llama-bench -m assist-moe-f32.gguf -p 0 -n 64 -t 2 -o json`, verbatim, from
    /// llama.cpp 0c1e570 (vendored by the llama-cpp-python 0.3.36 sdist).
    const REAL_0C1E570: &str = include_str!("testdata/llama-bench-0c1e570.json");

    #[test]
    fn parses_real_llama_bench_0c1e570_output() {
        let ((avg, sd), _, ty, c) = super::parse_runs(REAL_0C1E570).unwrap();
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
        let ((decode, _), prefill, _, _) = super::parse_runs(j).unwrap();
        assert_eq!(decode, 70.5);
        assert_eq!(prefill, Some((900.0, None)));
        assert!(super::parse_runs("[]").is_err());
        assert!(super::parse_runs(r#"[{"n_prompt":0,"n_gen":64}]"#).is_err());
    }

    #[test]
    fn missing_binary_is_a_clear_error() {
        let e = super::run(
            "/nonexistent/llama-bench".as_ref(),
            "x.gguf".as_ref(),
            0,
            64,
            2,
            1,
        )
        .unwrap_err();
        assert!(e.to_string().contains("llama-bench not found"), "{e}");
    }
}
