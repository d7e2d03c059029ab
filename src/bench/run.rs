//! `moe-edge bench` as one call: the benchmark modes and their options, the
//! set-up each needs (engine load, all experts resident where a figure
//! assumes it), and the report: a table for people and JSON for files.
//! The measurements themselves live in the sibling modules.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::BenchError;
use crate::bundle::Verify;
use crate::config::Board;
use crate::engine::Engine;

/// The benchmark modes (`moe-edge bench MODE`); `Engine` without one.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Mode {
    /// Local engine: prefill/decode tokens/s, TTFT, expert hit rate, peak RSS (the default).
    Engine {
        #[arg(long, default_value_t = 32)]
        prompt_tokens: usize,
        #[arg(long, default_value_t = 64)]
        gen_tokens: usize,
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// The daemon as apps see it: a third-party client (paho-mqtt, MQTT 5 and
    /// 3.1.1) against the daemon on the embedded broker and on Mosquitto, p50/p99
    /// app-side latency beside the daemon's own timings; then N concurrent
    /// clients of ours and 10x as many: requests/s, p50/p99, RSS.
    Serve(super::serve::ServeBenchOptions),
    /// Constrained decoding: mask time per token against the decode step (test-split prompts).
    Constrain {
        #[arg(long, default_value = "models/assist-moe/data/test.jsonl")]
        data: PathBuf,
        /// The tool catalogue the constraint uses (tool_choice auto).
        #[arg(long, default_value = "models/assist-moe/tools.json")]
        tools: PathBuf,
        /// The first N prompts.
        #[arg(long, default_value_t = 100)]
        prompts: usize,
        /// Mark the catalogue's free-text strings `x-grounded` (copied from each prompt).
        #[arg(long)]
        grounded: bool,
    },
    /// Expert cache policies replayed on a recorded routing trace against Belady's optimum.
    Cache {
        /// Requests whose routing statistics make the plan (for plan-pinned).
        #[arg(long, default_value = "models/assist-moe/data/calib.jsonl")]
        calib: PathBuf,
        /// Requests whose routing trace is replayed.
        #[arg(long, default_value = "models/assist-moe/data/test.jsonl")]
        trace: PathBuf,
        /// Only the first N trace requests.
        #[arg(long, default_value_t = 300)]
        limit: usize,
        #[arg(long, value_delimiter = ',', default_values_t = [0.125, 0.25, 0.5, 0.75])]
        fractions: Vec<f64>,
        /// Also write the replayed trace to FILE, one JSON event per line
        /// (`{"access":[layer,expert]}` or `{"predict":{"current":…,"next":…}}`).
        #[arg(long)]
        trace_out: Option<PathBuf>,
    },
    /// Scale bundle: `--make DIR` writes a seeded synthetic Qwen3-MoE in a real shape and
    /// imports it (DIR/bundle, DIR/bundle-f16); otherwise decode tok/s on --bundle against
    /// the memory-bandwidth roofline measured in the same run.
    Scale {
        /// Write the checkpoint to DIR/hf and import it into DIR/bundle (and DIR/bundle-f16).
        #[arg(long)]
        make: Option<PathBuf>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Bundle dtypes to import with --make (f32, f16).
        #[arg(long, value_delimiter = ',', default_values_t = [String::from("f32")])]
        dtype: Vec<String>,
        #[arg(long, default_value_t = 16)]
        prompt_tokens: usize,
        #[arg(long, default_value_t = 32)]
        gen_tokens: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Buffer for the bandwidth measurement, MiB.
        #[arg(long, default_value_t = 1024)]
        bandwidth_mib: usize,
        /// Quantised experts: `int8` (activations quantised, integer dot
        /// products; the default) or `f32` (weights dequantised into f32 FMAs).
        #[arg(long, default_value = "int8")]
        quant_dot: String,
    },
    /// Side by side with llama.cpp's llama-bench on a GGUF of the same checkpoint:
    /// decode and prefill at each thread count on both sides, the read bandwidth
    /// at each, every figure's roofline share and the best-against-best ratios.
    Llama {
        /// Path of llama.cpp's `llama-bench` binary (see docs/llama-cpp.md).
        #[arg(long)]
        llama_bench: PathBuf,
        /// GGUF of the checkpoint the bundle was imported from.
        #[arg(long)]
        gguf: PathBuf,
        #[arg(long, default_value_t = 64)]
        gen_tokens: usize,
        /// Prompt of the prefill measurement (0: decode only).
        #[arg(long, default_value_t = 512)]
        prompt_tokens: usize,
        /// Thread counts, each run on both sides.
        #[arg(long, value_delimiter = ',', default_values_t = [1, 2])]
        threads: Vec<usize>,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Buffer for the bandwidth measurement, MiB.
        #[arg(long, default_value_t = 1024)]
        bandwidth_mib: usize,
    },
    /// Prefix cache: time to first token of voice commands behind a long
    /// shared prefix (system prompt and tools rendered by a real chat
    /// template), cold against warm, and whether warm replies are exact.
    Prefix {
        /// Keep the first N tokens of the rendered system prompt and tools.
        #[arg(long, default_value_t = 1500)]
        prefix_tokens: usize,
        /// The chat template that renders the tools (default: the bundle's
        /// own when it renders tools, else Qwen3's).
        #[arg(long)]
        template: Option<PathBuf>,
        #[arg(long, default_value = "models/assist-moe/tools.json")]
        tools: PathBuf,
        /// Commands after the first (which fills the cache), 2..=8.
        #[arg(long, default_value_t = 8)]
        commands: usize,
        #[arg(long, default_value_t = 4)]
        gen_tokens: usize,
    },
    /// A model larger than the board: `--make DIR` writes a seeded checkpoint in
    /// OLMoE-1B-7B's geometry (DIR/hf, bf16 shards) and imports it at q4
    /// (DIR/bundle-q4); otherwise decode under a memory cgroup, side by side.
    Larger(Box<LargerArgs>),
    /// One expert host serving many devices: N device clients decoding
    /// against one expert server, with and without batching requests that
    /// arrive together; expert pairs per second per host core, round trips.
    Fleet {
        #[arg(long, value_delimiter = ',', default_values_t = [1, 4, 16])]
        devices: Vec<usize>,
        /// The host's compute threads (its cores).
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Most requests one pass serves.
        #[arg(long, default_value_t = 16)]
        max_batch: usize,
        /// Seconds per row.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
    /// Remote experts: round trip vs raw MQTT of the same size, and decode tokens/s with
    /// part of the experts on the device and the rest on an expert server (with added delay).
    Offload {
        /// External broker (default: the embedded broker on a free port).
        #[arg(long)]
        broker: Option<String>,
        #[arg(long, value_delimiter = ',', default_values_t = [1.0, 0.75, 0.5, 0.25])]
        fractions: Vec<f64>,
        /// Per-reply delays added on the expert server, ms.
        #[arg(long, value_delimiter = ',', default_values_t = [0, 2])]
        delay_ms: Vec<u64>,
        #[arg(long, default_value_t = 4)]
        prompts: usize,
        #[arg(long, default_value_t = 32)]
        gen_tokens: usize,
        #[arg(long, default_value_t = 500)]
        rtt_calls: usize,
        /// Deadline of each remote call, ms.
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
        /// Threshold of the skip-below row (0 = no such row).
        #[arg(long, default_value_t = 0.3)]
        skip_below: f32,
        #[arg(long, default_value = "models/assist-moe/data/calib.jsonl")]
        calib: PathBuf,
    },
}

impl Default for Mode {
    fn default() -> Self {
        Mode::Engine {
            prompt_tokens: 32,
            gen_tokens: 64,
            runs: 5,
        }
    }
}

/// `bench larger`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct LargerArgs {
    /// Write the checkpoint to DIR/hf and import it into DIR/bundle-q4.
    #[arg(long)]
    make: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Fewer layers than the geometry's 16 (only when disk or time forces it).
    #[arg(long, default_value_t = 16)]
    layers: usize,
    /// Compute threads of every row (both sides).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Text whose tokens are decoded one by one (the test split's commands).
    #[arg(long, default_value = "models/assist-moe/data/test.jsonl")]
    text: PathBuf,
    #[arg(long, default_value_t = 16)]
    prompt_tokens: usize,
    /// Decode steps before the measured ones (other tokens).
    #[arg(long, default_value_t = 16)]
    warmup_tokens: usize,
    #[arg(long, default_value_t = 64)]
    decode_tokens: usize,
    /// The device's memory limit, MB (default: half the bundle).
    #[arg(long)]
    limit_mb: Option<u64>,
    /// The device's experts budget, MB (default: the limit less the dense
    /// weights and 400 MB).
    #[arg(long)]
    experts_mb: Option<u64>,
    /// llama.cpp's `llama-bench` (docs/llama-cpp.md); with --gguf, the llama.cpp row.
    #[arg(long)]
    llama_bench: Option<PathBuf>,
    /// The Q4_0 GGUF of the same checkpoint.
    #[arg(long)]
    gguf: Option<PathBuf>,
    /// Also measure the time to ready of these bundles (e.g. the scale bundle).
    #[arg(long, value_delimiter = ',')]
    ready: Vec<PathBuf>,
    /// Leave out the time-to-ready rows.
    #[arg(long)]
    no_ready: bool,
    /// Internal: one measured run in this process (the parent starts it).
    #[arg(long, hide = true)]
    child: bool,
    #[arg(long, hide = true)]
    all_resident: bool,
    #[arg(long, hide = true, default_value = "auto")]
    prefetch: String,
    #[arg(long, hide = true)]
    hash_all: bool,
    /// Internal: the child's remote sends no hints.
    #[arg(long, hide = true)]
    no_hints: bool,
    /// A device bundle with part of the experts (`moe-edge plan
    /// --device-bundle`): rows with the rest on a `moe-edge host` process
    /// over loopback MQTT.
    #[arg(long)]
    device_bundle: Option<PathBuf>,
    /// Per-reply delays of the host rows, ms.
    #[arg(long, value_delimiter = ',', default_values_t = [0, 1, 2])]
    host_delay_ms: Vec<u64>,
    /// Internal: the broker of a child's remote experts.
    #[arg(long, hide = true)]
    remote: Option<String>,
}

/// What a benchmark measured: a table for people, JSON for files.
pub struct Report {
    pub text: String,
    pub json: Value,
}

fn report<T: serde::Serialize>(text: String, value: &T) -> Result<Report, BenchError> {
    let json = serde_json::to_value(value).map_err(|e| BenchError::Other(e.to_string()))?;
    Ok(Report { text, json })
}

fn larger(a: &LargerArgs, bundle: &Path, board: &Board) -> Result<Report, BenchError> {
    use super::larger::{self, rows};
    if a.child {
        let clock = std::time::Instant::now();
        let mut b = if a.all_resident {
            board.all_resident()
        } else {
            board.clone()
        };
        b.backend.threads = a.threads;
        if let Some(mb) = a.experts_mb {
            b.memory.experts_bytes = mb * 1_000_000;
        }
        b.prefetch.mode = match a.prefetch.as_str() {
            "auto" => crate::config::Prefetch::Auto,
            "router" => crate::config::Prefetch::Router,
            "off" => crate::config::Prefetch::Off,
            x => {
                return Err(BenchError::Other(format!(
                    "--prefetch `{x}`: auto, router or off"
                )))
            }
        };
        if a.hash_all {
            // What a full check cost before experts were checked one by one.
            let m = crate::bundle::Bundle::open(bundle, Verify::Sizes)
                .map_err(|e| BenchError::Other(e.to_string()))?;
            crate::bundle::files::sha256_file(&bundle.join(&m.manifest.experts.file))
                .map_err(|e| BenchError::Other(e.to_string()))?;
        }
        if a.remote.is_some() {
            // Every miss goes to the host; a failed call fails the run
            // rather than substituting silently.
            b.offload.enabled = true;
            b.offload.timeout = Duration::from_secs(2);
            b.offload.on_miss = crate::config::OnMiss::Escalate;
        }
        let (mut engine, load_ms) = rows::load(bundle, &b, clock)?;
        let remote = match &a.remote {
            Some(url) => Some(rows::connect_remote(
                &mut engine,
                url,
                b.offload.timeout,
                !a.no_hints,
            )?),
            None => None,
        };
        let calls = || remote.as_ref().map_or(0, |r| r.0.stats().calls);
        let r = rows::decode(
            &engine,
            load_ms,
            &a.text,
            a.prompt_tokens,
            a.warmup_tokens,
            a.decode_tokens,
            &calls,
        )?;
        return report(format!("{r:?}"), &r);
    }
    let o = larger::LargerOptions {
        bundle: bundle.to_path_buf(),
        board: board.source.trim_start_matches("builtin:").to_string(),
        threads: a.threads,
        text: a.text.clone(),
        prompt_tokens: a.prompt_tokens,
        warmup_tokens: a.warmup_tokens,
        decode_tokens: a.decode_tokens,
        limit_mb: a.limit_mb,
        experts_mb: a.experts_mb,
        llama_bench: a.llama_bench.clone(),
        gguf: a.gguf.clone(),
        ready: a.ready.clone(),
        no_ready: a.no_ready,
        device_bundle: a.device_bundle.clone(),
        host_delays_ms: a.host_delay_ms.clone(),
    };
    let r = larger::run(&o)?;
    report(r.table(), &r)
}

fn load(bundle: &Path, board: &Board) -> Result<Engine, BenchError> {
    Engine::load(bundle, board, Verify::Sizes)
        .map_err(|e| BenchError::Other(format!("loading bundle {}: {e}", bundle.display())))
}

/// Runs one benchmark mode on `bundle` with `board`.
pub fn run(mode: Mode, bundle: &Path, board: &Board) -> Result<Report, BenchError> {
    use super::{cache, constrain, engine, llama, offload, scale, serve};
    match mode {
        Mode::Engine {
            prompt_tokens,
            gen_tokens,
            runs,
        } => {
            let e = load(bundle, board)?;
            let o = engine::EngineBenchOptions {
                prompt_tokens,
                gen_tokens,
                runs,
            };
            let r = engine::run(&e, &board.name, &o)?;
            report(r.table(), &r)
        }
        Mode::Serve(o) => {
            let r = serve::run(bundle, board, &o)?;
            report(r.table(), &r)
        }
        Mode::Constrain {
            data,
            tools,
            prompts,
            grounded,
        } => {
            let e = load(bundle, board)?;
            let (c, _) = crate::eval::catalogue_constraint(&tools, grounded)?;
            let mut ex = crate::eval::read_examples(&data)?;
            ex.truncate(prompts);
            let r = constrain::run(&e, &c, &ex)?;
            report(r.table(), &r)
        }
        Mode::Cache {
            calib,
            trace,
            limit,
            fractions,
            trace_out,
        } => {
            let e = load(bundle, &board.all_resident())?;
            let arch = e.model.manifest.architecture.clone();
            let total = arch.num_layers * arch.num_experts;
            let other = |x: &dyn std::fmt::Display| BenchError::Other(x.to_string());
            let calib_prompts = crate::plan::calib_prompts(&e, &[calib]).map_err(|x| other(&x))?;
            let calib_stats =
                crate::plan::collect(&e, &calib_prompts, 24).map_err(|x| other(&x))?;
            let mut prompts = crate::plan::calib_prompts(&e, &[trace]).map_err(|x| other(&x))?;
            prompts.truncate(limit);
            let trace_stats = crate::plan::collect(&e, &prompts, 24).map_err(|x| other(&x))?;
            let accesses: Vec<_> = trace_stats.trace.iter().flatten().copied().collect();
            if let Some(path) = &trace_out {
                cache::write_trace(path, &trace_stats.events, &accesses)
                    .map_err(|x| other(&format!("{}: {x}", path.display())))?;
            }
            // The calibration counts, as LFU's starting history.
            let prior: Vec<_> = (0..arch.num_layers)
                .flat_map(|l| {
                    let f = &calib_stats.freq[l];
                    (0..arch.num_experts).map(move |e| ((l as u16, e as u16), f[e]))
                })
                .collect();
            let mut rows = Vec::new();
            for &f in &fractions {
                let slots = ((f * total as f64).round() as usize).max(1);
                let plan = crate::plan::select(&calib_stats, slots, arch.top_k).ranked;
                rows.extend(cache::compare(
                    &accesses,
                    &plan,
                    &prior,
                    &trace_stats.events,
                    total,
                    &[f],
                ));
            }
            let text = format!(
                "routing trace: {} requests, {} tokens, {} expert accesses over {} experts\n{}",
                prompts.len(),
                trace_stats.tokens,
                accesses.len(),
                total,
                cache::table(&rows)
            );
            report(text, &rows)
        }
        Mode::Scale {
            make,
            seed,
            dtype,
            prompt_tokens,
            gen_tokens,
            runs,
            bandwidth_mib,
            quant_dot,
        } => {
            use crate::experts::kernels::{set_quant_dot, QuantDot};
            match quant_dot.as_str() {
                "int8" => set_quant_dot(QuantDot::Int8),
                "f32" => set_quant_dot(QuantDot::F32),
                other => {
                    return Err(BenchError::Other(format!(
                        "--quant-dot `{other}`: expected int8 or f32"
                    )))
                }
            }
            if let Some(dir) = make {
                let dtypes = dtype
                    .iter()
                    .map(|d| crate::bundle::import::parse_dtype(d))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| BenchError::Other(e.to_string()))?;
                let made = scale::make(&dir, seed, &dtypes)?;
                let mib = |b: u64| b as f64 / (1 << 20) as f64;
                let text = made
                    .iter()
                    .map(|m| {
                        format!(
                            "made {} bundle {}: {:.1} MiB (experts {:.1} MiB, graphs {:.1} MiB)",
                            m.dtype,
                            m.dir.display(),
                            mib(m.total_bytes),
                            mib(m.experts_bytes),
                            mib(m.graph_bytes)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                return report(text, &made);
            }
            // every expert resident: the roofline assumes weights are read from DRAM
            let e = load(bundle, &board.all_resident())?;
            let o = engine::EngineBenchOptions {
                prompt_tokens,
                gen_tokens,
                runs,
            };
            let r = scale::run(&e, bundle, &board.name, &o, bandwidth_mib << 20)?;
            report(r.table(), &r)
        }
        Mode::Llama {
            llama_bench,
            gguf,
            gen_tokens,
            prompt_tokens,
            threads,
            runs,
            bandwidth_mib,
        } => {
            let mut bw = Vec::new();
            let mut theirs = Vec::new();
            let mut ours = Vec::new();
            let mut backend = String::new();
            let mut active = 0;
            for &t in &threads {
                bw.push(super::bandwidth::measure(bandwidth_mib << 20, t, 5));
                theirs.push(llama::run(
                    &llama_bench,
                    &gguf,
                    prompt_tokens,
                    gen_tokens,
                    t,
                    runs,
                )?);
                let mut b = board.all_resident();
                b.backend.threads = t;
                b.limits.max_context = b.limits.max_context.max(prompt_tokens + gen_tokens + 1);
                let e = load(bundle, &b)?;
                backend = e.model.backend_name().to_string();
                active = scale::active_bytes(&e.model.manifest, backend == "native").total;
                let decode = engine::run(
                    &e,
                    &board.name,
                    &engine::EngineBenchOptions {
                        prompt_tokens: 16,
                        gen_tokens: gen_tokens + 1,
                        runs,
                    },
                )?;
                let prefill = if prompt_tokens > 0 {
                    engine::run(
                        &e,
                        &board.name,
                        &engine::EngineBenchOptions {
                            prompt_tokens,
                            gen_tokens: 1,
                            runs,
                        },
                    )?
                } else {
                    decode.clone()
                };
                ours.push(llama::OurRun {
                    threads: t,
                    decode_tok_s: decode.decode_tok_s,
                    prefill_tok_s: prefill.prefill_tok_s,
                    decode,
                    prefill,
                });
            }
            let c = llama::LlamaComparison::new(
                &llama_bench,
                &gguf,
                bundle,
                &backend,
                prompt_tokens,
                gen_tokens,
                bw,
                active,
                theirs,
                ours,
            );
            report(c.table(), &c)
        }
        Mode::Prefix {
            prefix_tokens,
            template,
            tools,
            commands,
            gen_tokens,
        } => {
            let mut b = board.all_resident();
            b.limits.max_context = b.limits.max_context.max(prefix_tokens + 256);
            let e = load(bundle, &b)?;
            let own = e
                .bundle
                .manifest
                .chat_template
                .clone()
                .filter(|t| t.contains("tools"));
            let (name, text) = match (template, own) {
                (None, Some(t)) => ("the bundle's".to_string(), t),
                (given, _) => {
                    let p = given.unwrap_or_else(|| "models/templates/qwen3.jinja".into());
                    let text = std::fs::read_to_string(&p)
                        .map_err(|e| BenchError::Other(format!("{}: {e}", p.display())))?;
                    (p.display().to_string(), text)
                }
            };
            let tools =
                crate::eval::load_tools(&tools).map_err(|e| BenchError::Other(e.to_string()))?;
            let o = super::prefix::PrefixBenchOptions {
                prefix_tokens,
                commands: commands + 1,
                gen_tokens,
            };
            let r = super::prefix::run(&e, &b.name, &name, &text, &tools, &o)?;
            report(r.table(), &r)
        }
        Mode::Larger(a) => {
            let Some(dir) = a.make.clone() else {
                return larger(&a, bundle, board);
            };
            let m = super::larger::make(&dir, a.seed, a.layers)?;
            let text = format!(
                "made {}: {} parameters, checkpoint {:.2} GB in {:.0} s; bundle {}: {:.2} GB (experts {:.2} GB) in {:.0} s",
                m.hf.display(),
                m.parameters,
                m.checkpoint_bytes as f64 / 1e9,
                m.seconds_checkpoint,
                m.bundle.display(),
                m.bundle_bytes as f64 / 1e9,
                m.experts_bytes as f64 / 1e9,
                m.seconds_import
            );
            report(text, &m)
        }
        Mode::Fleet {
            devices,
            workers,
            max_batch,
            seconds,
        } => {
            let r = super::fleet::run(&super::fleet::FleetOptions {
                bundle: bundle.to_path_buf(),
                devices,
                workers,
                max_batch,
                seconds,
            })?;
            report(r.table(), &r)
        }
        Mode::Offload {
            broker,
            fractions,
            delay_ms,
            prompts,
            gen_tokens,
            rtt_calls,
            timeout_ms,
            skip_below,
            calib,
        } => {
            let o = offload::OffloadBenchOptions {
                bundle: bundle.to_path_buf(),
                broker,
                fractions,
                delays_ms: delay_ms,
                prompts,
                gen_tokens,
                rtt_calls,
                timeout: Duration::from_millis(timeout_ms),
                skip_below,
                calib,
            };
            let r = offload::run(board, &o)?;
            report(r.table(), &r)
        }
    }
}
