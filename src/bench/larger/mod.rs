//! `moe-edge bench larger`: a model larger than the board. Makes a seeded
//! checkpoint in OLMoE-1B-7B's geometry (`checkpoint`) and its q4 bundle,
//! then measures decode with the device inside a real memory limit
//! (`cgroup`): llama.cpp on mmap, moe-edge paging experts without and with
//! prediction, moe-edge with misses on a host (with and without prediction
//! and hints), and the unlimited ceiling.
//! Owns the orchestration of those runs; the engine, host and cgroup
//! mechanics are their modules'.

pub mod cgroup;
pub mod checkpoint;
pub mod rows;

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

/// What `bench larger` (without `--make`) measures.
#[derive(Debug, Clone)]
pub struct LargerOptions {
    pub bundle: PathBuf,
    /// The board file or name the device rows start from.
    pub board: String,
    pub threads: usize,
    pub text: PathBuf,
    pub prompt_tokens: usize,
    pub warmup_tokens: usize,
    pub decode_tokens: usize,
    /// Memory limit of the device (MB); `None`: half of the bundle.
    pub limit_mb: Option<u64>,
    /// Experts budget of the device rows (MB); `None`: the limit less the
    /// dense weights and 400 MB for the KV cache, activations and runtime.
    pub experts_mb: Option<u64>,
    pub llama_bench: Option<PathBuf>,
    pub gguf: Option<PathBuf>,
    /// Bundles whose time to ready is measured as well (cold and warm).
    pub ready: Vec<PathBuf>,
    pub no_ready: bool,
    /// A device bundle with part of the experts: rows with the rest on a host.
    pub device_bundle: Option<PathBuf>,
    pub host_delays_ms: Vec<u64>,
}

/// One configuration's line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub what: String,
    pub limit_mb: Option<u64>,
    pub decode_tok_s: f64,
    pub of_ceiling: f64,
    /// Peak of the cgroup (RSS and page cache), MB.
    pub cgroup_peak_mb: Option<f64>,
    /// Times the cgroup hit its limit, and OOM kills.
    pub limit_hits: Option<u64>,
    pub oom_kills: Option<u64>,
    /// Decode steps whose argmax equals the ceiling's, of all steps.
    pub exact: Option<(usize, usize)>,
    /// The largest top-2 margin (in the ceiling's logits) among the steps
    /// whose argmax differs: how close to a tie those steps were.
    pub differing_margin: Option<f32>,
    pub run: Option<rows::DecodeRun>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReadyRow {
    pub bundle: PathBuf,
    pub bundle_bytes: u64,
    pub page_cache: &'static str,
    pub check: &'static str,
    /// Process start to engine loaded (bundle opened and checked, graphs
    /// and weights mapped), ms.
    pub ready_ms: f64,
    /// Then the first token's forward (its experts paged in and checked), ms.
    pub first_token_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LargerReport {
    pub bundle: PathBuf,
    pub model_id: String,
    pub bundle_bytes: u64,
    pub experts_bytes: u64,
    pub cgroup: String,
    pub limit_mb: u64,
    pub experts_mb: u64,
    pub threads: usize,
    pub rows: Vec<Row>,
    pub ready: Vec<ReadyRow>,
}

fn bundle_bytes(dir: &Path) -> Result<(u64, u64, u64, String), BenchError> {
    let b = crate::bundle::Bundle::open(dir, crate::bundle::Verify::Sizes)
        .map_err(|e| err(e.to_string()))?;
    let m = &b.manifest;
    let size = |f: &str| m.files.iter().find(|x| x.path == f).map_or(0, |x| x.size);
    let total = m.files.iter().map(|f| f.size).sum();
    let dense = m.dense.as_ref().map_or(0, |d| size(&d.file));
    Ok((total, size(&m.experts.file), dense, m.model_id.clone()))
}

/// A child run of this binary: `bench --bundle B --board X larger --child …`.
fn child_args(o: &LargerOptions, bundle: &Path, extra: &[&str], json: &Path) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "bench".into(),
        "--bundle".into(),
        bundle.display().to_string(),
        "--board".into(),
        o.board.clone(),
        "--json".into(),
        json.display().to_string(),
        "larger".into(),
        "--child".into(),
        "--threads".into(),
        o.threads.to_string(),
        "--text".into(),
        o.text.display().to_string(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn run_child(mut cmd: std::process::Command, json: &Path) -> Result<rows::DecodeRun, BenchError> {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| err(format!("starting a child run: {e}")))?;
    if !out.status.success() {
        let tail: Vec<String> = String::from_utf8_lossy(&out.stderr)
            .lines()
            .rev()
            .take(4)
            .map(str::to_string)
            .collect();
        return Err(err(format!(
            "child run exited with {}: {}",
            out.status,
            tail.join(" | ")
        )));
    }
    let text =
        std::fs::read_to_string(json).map_err(|e| err(format!("{}: {e}", json.display())))?;
    serde_json::from_str(&text).map_err(|e| err(format!("{}: {e}", json.display())))
}

/// The side-by-side run (see the module doc).
pub fn run(o: &LargerOptions) -> Result<LargerReport, BenchError> {
    let (total, experts, dense, model_id) = bundle_bytes(&o.bundle)?;
    let limit_mb = o.limit_mb.unwrap_or(total / 2 / 1_000_000);
    let experts_mb = o
        .experts_mb
        .unwrap_or((limit_mb * 1_000_000).saturating_sub(dense + 400_000_000) / 1_000_000);
    let exe = std::env::current_exe().map_err(|e| err(format!("own binary: {e}")))?;
    let g = cgroup::MemoryCgroup::create(
        &format!("moe-edge-bench-{}", std::process::id()),
        limit_mb * 1_000_000,
    )
    .map_err(|e| {
        err(format!(
            "{e}; bench larger stops (it needs a real memory limit)"
        ))
    })?;
    let tmp = tempfile::tempdir().map_err(|e| err(e.to_string()))?;
    let dir = tmp.path();
    let d = o.decode_tokens.to_string();
    let p = o.prompt_tokens.to_string();
    let w = o.warmup_tokens.to_string();
    let xmb = experts_mb.to_string();
    let mut rows = Vec::new();
    let limited =
        |extra: &[&str], name: &str| -> Result<(rows::DecodeRun, f64, (u64, u64)), BenchError> {
            let json = dir.join(format!("{name}.json"));
            cgroup::drop_page_cache().map_err(|e| err(e.to_string()))?;
            g.reset_peak();
            let before = g.pressure();
            let r = run_child(
                g.command(&exe, &child_args(o, &o.bundle, extra, &json)),
                &json,
            )?;
            let after = g.pressure();
            let peak = g.peak_bytes().unwrap_or(0) as f64 / 1e6;
            Ok((r, peak, (after.0 - before.0, after.1 - before.1)))
        };
    // The ceiling: every expert resident, no limit, page cache warm.
    let json = dir.join("ceiling.json");
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(child_args(
        o,
        &o.bundle,
        &[
            "--all-resident",
            "--prefetch",
            "off",
            "--prompt-tokens",
            &p,
            "--warmup-tokens",
            &w,
            "--decode-tokens",
            &d,
        ],
        &json,
    ));
    log::info!("bench larger row=ceiling");
    let ceiling = run_child(cmd, &json)?;
    let top = ceiling.decode_tok_s;
    let same = |r: &rows::DecodeRun| agreement(r, &ceiling);
    rows.push(Row {
        what: "moe-edge, all experts resident, no limit (ceiling)".into(),
        limit_mb: None,
        decode_tok_s: top,
        of_ceiling: 1.0,
        cgroup_peak_mb: None,
        limit_hits: None,
        oom_kills: None,
        exact: Some((ceiling.argmax.len(), ceiling.argmax.len())),
        differing_margin: None,
        run: Some(ceiling.clone()),
    });
    if let (Some(lb), Some(gguf)) = (&o.llama_bench, &o.gguf) {
        log::info!("bench larger row=llama.cpp unlimited");
        let args = super::llama::args(gguf, 0, o.decode_tokens, o.threads, 1);
        let mut cmd = std::process::Command::new(lb);
        cmd.args(&args);
        let r = super::llama::run_command(cmd, lb, o.threads)?;
        rows.push(Row {
            what: "llama.cpp llama-bench, defaults, no limit".into(),
            limit_mb: None,
            decode_tok_s: r.decode_tok_s,
            of_ceiling: r.decode_tok_s / top,
            cgroup_peak_mb: None,
            limit_hits: None,
            oom_kills: None,
            exact: None,
            differing_margin: None,
            run: None,
        });
        // llama.cpp's defaults repack Q4_0 weights into anonymous memory (a
        // copy of the model); with `--repack 0` it runs from the mmap.
        for (extra, what) in [
            (
                &[][..],
                "llama.cpp llama-bench, defaults (mmap, weights repacked)",
            ),
            (
                &["--repack", "0", "-lm", "mmap"][..],
                "llama.cpp llama-bench, mmap, --repack 0",
            ),
        ] {
            log::info!("bench larger row=llama.cpp extra={extra:?}");
            cgroup::drop_page_cache().map_err(|e| err(e.to_string()))?;
            g.reset_peak();
            let before = g.pressure();
            let mut args = super::llama::args(gguf, 0, o.decode_tokens, o.threads, 1);
            args.extend(extra.iter().map(|s| s.to_string()));
            let r = super::llama::run_command(g.command(lb, &args), lb, o.threads);
            let after = g.pressure();
            let ooms = after.1 - before.1;
            let tok_s = match r {
                Ok(r) => r.decode_tok_s,
                Err(e) if ooms > 0 => {
                    log::info!("llama-bench killed in the limit ooms={ooms} err={e}");
                    0.0
                }
                Err(e) => return Err(e),
            };
            rows.push(Row {
                what: if ooms > 0 && tok_s == 0.0 {
                    format!("{what}: killed by the OOM killer")
                } else {
                    what.into()
                },
                limit_mb: Some(limit_mb),
                decode_tok_s: tok_s,
                of_ceiling: tok_s / top,
                cgroup_peak_mb: g.peak_bytes().map(|b| b as f64 / 1e6),
                limit_hits: Some(after.0 - before.0),
                oom_kills: Some(ooms),
                exact: None,
                differing_margin: None,
                run: None,
            });
        }
    }
    for (pf, what) in [
        ("off", "moe-edge paging from the bundle, no prediction"),
        (
            "router",
            "moe-edge paging from the bundle, prediction (next router)",
        ),
    ] {
        log::info!("bench larger row=paging prefetch={pf}");
        let (r, peak, (hits, ooms)) = limited(
            &[
                "--experts-mb",
                &xmb,
                "--prefetch",
                pf,
                "--prompt-tokens",
                &p,
                "--warmup-tokens",
                &w,
                "--decode-tokens",
                &d,
            ],
            &format!("paging-{pf}"),
        )?;
        rows.push(Row {
            what: what.into(),
            limit_mb: Some(limit_mb),
            decode_tok_s: r.decode_tok_s,
            of_ceiling: r.decode_tok_s / top,
            cgroup_peak_mb: Some(peak),
            limit_hits: Some(hits),
            oom_kills: Some(ooms),
            exact: Some(same(&r).0),
            differing_margin: same(&r).1,
            run: Some(r),
        });
    }
    if let Some(dev) = &o.device_bundle {
        rows.extend(host_rows(
            o, dev, &exe, &g, dir, limit_mb, &xmb, top, &ceiling,
        )?);
    }
    let mut ready = Vec::new();
    let mut bundles = if o.no_ready {
        Vec::new()
    } else {
        vec![o.bundle.clone()]
    };
    if !o.no_ready {
        bundles.extend(o.ready.iter().cloned());
    }
    for b in &bundles {
        let (bytes, ..) = bundle_bytes(b)?;
        for (check, flag) in [
            ("per expert, on first use", None),
            ("whole experts file at start", Some("--hash-all")),
        ] {
            for cold in [true, false] {
                let json = dir.join("ready.json");
                if cold {
                    cgroup::drop_page_cache().map_err(|e| err(e.to_string()))?;
                }
                let mut extra = vec![
                    "--prompt-tokens",
                    "1",
                    "--warmup-tokens",
                    "0",
                    "--decode-tokens",
                    "0",
                ];
                extra.extend(flag);
                let mut cmd = std::process::Command::new(&exe);
                cmd.args(child_args(o, b, &extra, &json));
                let r = run_child(cmd, &json)?;
                ready.push(ReadyRow {
                    bundle: b.clone(),
                    bundle_bytes: bytes,
                    page_cache: if cold { "cold" } else { "warm" },
                    check,
                    ready_ms: r.load_ms,
                    first_token_ms: r.first_token_ms,
                });
            }
        }
    }
    Ok(LargerReport {
        bundle: o.bundle.clone(),
        model_id,
        bundle_bytes: total,
        experts_bytes: experts,
        cgroup: format!("{} ({:?})", g.path().display(), g.version()),
        limit_mb,
        experts_mb,
        threads: o.threads,
        rows,
        ready,
    })
}

/// Steps whose argmax equals the ceiling's (of all), and the largest
/// ceiling top-2 margin among the others.
fn agreement(r: &rows::DecodeRun, ceiling: &rows::DecodeRun) -> ((usize, usize), Option<f32>) {
    let mut same = 0;
    let mut worst: Option<f32> = None;
    for (i, (a, b)) in r.argmax.iter().zip(&ceiling.argmax).enumerate() {
        if a == b {
            same += 1;
        } else {
            let m = ceiling.margin.get(i).copied().unwrap_or(f32::NAN);
            worst = Some(worst.map_or(m, |w| w.max(m)));
        }
    }
    ((same, ceiling.argmax.len()), worst)
}

/// The device bundle in the cgroup, its misses on a `moe-edge host`
/// process (the full bundle, a fresh one per row) over the embedded broker
/// on loopback, for each added delay: without prediction, with it but no
/// hints to the host, and with both.
#[allow(clippy::too_many_arguments)]
fn host_rows(
    o: &LargerOptions,
    dev: &Path,
    exe: &Path,
    g: &cgroup::MemoryCgroup,
    dir: &Path,
    limit_mb: u64,
    xmb: &str,
    top: f64,
    ceiling: &rows::DecodeRun,
) -> Result<Vec<Row>, BenchError> {
    let rt = crate::process::runtime(1).map_err(|e| err(e.to_string()))?;
    let broker = {
        let _g = rt.enter();
        crate::transport::Broker::start(crate::transport::BrokerConfig::new(
            "127.0.0.1:0".parse().expect("address"),
        ))
        .map_err(|e| err(e.to_string()))?
    };
    let url = broker.url();
    let carried = {
        let b = crate::bundle::Bundle::open(dev, crate::bundle::Verify::Sizes)
            .map_err(|e| err(e.to_string()))?;
        let a = &b.manifest.architecture;
        let n: usize = (0..a.num_layers)
            .map(|l| b.manifest.experts.carried(l, a.num_experts).len())
            .sum();
        n as f64 / (a.num_layers * a.num_experts) as f64
    };
    let (d, p, w) = (
        o.decode_tokens.to_string(),
        o.prompt_tokens.to_string(),
        o.warmup_tokens.to_string(),
    );
    let mut rows = Vec::new();
    for &delay in &o.host_delays_ms {
        // Without prediction; with it but no hints to the host; with both.
        // Each row starts its own host after the page cache is dropped, so
        // no row finds experts a row before it read in.
        for (pf, hints) in [("off", false), ("router", false), ("router", true)] {
            log::info!("bench larger row=host delay_ms={delay} prefetch={pf} hints={hints}");
            let json = dir.join(format!("host-{delay}-{pf}-{hints}.json"));
            cgroup::drop_page_cache().map_err(|e| err(e.to_string()))?;
            let mut host = std::process::Command::new(exe)
                .args(["host", "--broker", &url, "--bundle"])
                .arg(&o.bundle)
                .args(["--delay-ms", &delay.to_string(), "--host-id"])
                .arg(format!("bench-larger-host-{delay}-{pf}-{hints}"))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .map_err(|e| err(format!("starting moe-edge host: {e}")))?;
            let result = (|| -> Result<(), BenchError> {
                g.reset_peak();
                let before = g.pressure();
                let mut extra = vec![
                    "--remote",
                    &url,
                    "--experts-mb",
                    xmb,
                    "--prefetch",
                    pf,
                    "--prompt-tokens",
                    &p,
                    "--warmup-tokens",
                    &w,
                    "--decode-tokens",
                    &d,
                ];
                if !hints {
                    extra.push("--no-hints");
                }
                let args = child_args(o, dev, &extra, &json);
                let r = run_child(g.command(exe, &args), &json)?;
                let after = g.pressure();
                rows.push(Row {
                    what: format!(
                        "moe-edge, {:.0} % of experts on the device, rest on a host +{delay} ms{}",
                        carried * 100.0,
                        match (pf, hints) {
                            ("off", _) => "",
                            (_, false) => ", prediction, no hints",
                            _ => ", prediction and hints",
                        }
                    ),
                    limit_mb: Some(limit_mb),
                    decode_tok_s: r.decode_tok_s,
                    of_ceiling: r.decode_tok_s / top,
                    cgroup_peak_mb: g.peak_bytes().map(|b| b as f64 / 1e6),
                    limit_hits: Some(after.0 - before.0),
                    oom_kills: Some(after.1 - before.1),
                    exact: Some(agreement(&r, ceiling).0),
                    differing_margin: agreement(&r, ceiling).1,
                    run: Some(r),
                });
                Ok(())
            })();
            let _ = host.kill();
            let _ = host.wait();
            result?;
        }
    }
    drop(broker);
    Ok(rows)
}

impl LargerReport {
    pub fn table(&self) -> String {
        let mut s = format!(
            "bundle {} ({}): {:.2} GB, experts {:.2} GB; device limit {} MB in {}, experts budget {} MB, {} threads\n\n",
            self.bundle.display(),
            self.model_id,
            self.bundle_bytes as f64 / 1e9,
            self.experts_bytes as f64 / 1e9,
            self.limit_mb,
            self.cgroup,
            self.experts_mb,
            self.threads
        );
        s += "| configuration | limit MB | decode tok/s | of ceiling | cgroup peak MB | limit hits | exact | hit rate | prefetched / late | prediction accuracy | remote calls / token | remote wait ms / token |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n";
        for r in &self.rows {
            let opt = |v: Option<String>| v.unwrap_or_else(|| "–".into());
            let (calls, wait) = match &r.run {
                Some(x) if x.remote_calls_per_token > 0.0 => (
                    format!("{:.2}", x.remote_calls_per_token),
                    format!("{:.1}", x.remote_wait_ms_per_token),
                ),
                _ => ("–".into(), "–".into()),
            };
            let (hit, pf, acc) = match &r.run {
                Some(x) => (
                    format!("{:.1} %", x.hit_rate * 100.0),
                    x.prefetch
                        .map(|_| format!("{} / {}", x.counts.prefetched, x.counts.late))
                        .unwrap_or_else(|| "–".into()),
                    x.predict_overall
                        .map(|a| format!("{:.1} %", a * 100.0))
                        .unwrap_or_else(|| "–".into()),
                ),
                None => ("–".into(), "–".into(), "–".into()),
            };
            s += &format!(
                "| {} | {} | {:.2} | {:.2}× | {} | {} | {} | {hit} | {pf} | {acc} | {calls} | {wait} |\n",
                r.what,
                opt(r.limit_mb.map(|v| v.to_string())),
                r.decode_tok_s,
                r.of_ceiling,
                opt(r.cgroup_peak_mb.map(|v| format!("{v:.0}"))),
                opt(r.limit_hits.map(|v| v.to_string())),
                opt(r.exact.map(|(a, n)| match r.differing_margin {
                    None => format!("{a}/{n}"),
                    Some(m) => format!("{a}/{n} (others: top-2 margin ≤ {m:.1e})"),
                })),
            );
        }
        if let Some(acc) = self
            .rows
            .iter()
            .find_map(|r| r.run.as_ref().and_then(|x| x.predict_accuracy.clone()))
        {
            s += "\nprediction accuracy per layer (share of routed experts predicted): ";
            s += &acc
                .iter()
                .enumerate()
                .filter_map(|(l, a)| a.map(|a| format!("L{l} {:.0} %", a * 100.0)))
                .collect::<Vec<_>>()
                .join(", ");
            s += "\n";
        }
        if !self.ready.is_empty() {
            s += "\n| bundle | GB | page cache | check | ready ms | first token ms |\n|---|---|---|---|---|---|\n";
            for r in &self.ready {
                s += &format!(
                    "| {} | {:.2} | {} | {} | {:.0} | {:.0} |\n",
                    r.bundle.display(),
                    r.bundle_bytes as f64 / 1e9,
                    r.page_cache,
                    r.check,
                    r.ready_ms,
                    r.first_token_ms
                );
            }
        }
        s
    }
}
