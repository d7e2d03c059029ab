//! The `moe-edge` binary: parse the command line, set up logging, load the
//! board, run one subcommand. Everything else lives in the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use moe_edge::bundle::{Verify, DEFAULT_BUNDLE};
use moe_edge::config::Board;
use moe_edge::engine::Engine;

#[derive(Parser)]
#[command(
    name = "moe-edge",
    version,
    about = "Mixture-of-Experts LLM daemon for edge boards"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the model in-process (no broker): print the reply, who served it and timings.
    Chat(ChatArgs),
    /// Accuracy of a bundle on a labelled split (exact match, fallback precision/recall).
    Eval(EvalArgs),
    /// Benchmarks: prints a table, writes JSON with --json.
    Bench(BenchArgs),
    /// Pick the experts a board keeps from routing statistics of calibration requests.
    Plan(PlanArgs),
    /// The daemon: OpenAI chat completions over MQTT 5 (embedded broker unless --broker).
    Serve(ServeArgs),
    /// Send one chat request to a running daemon and print the reply.
    Ask(AskArgs),
    /// The host side: the full model (all experts) behind an OpenAI-compatible
    /// HTTP endpoint (--http); falls back to the board's cloud, if any.
    Host(HostArgs),
    /// Convert a Hugging Face MoE checkpoint (config.json, *.safetensors, tokenizer.json) to a bundle.
    Import(ImportArgs),
    /// Print the resolved plan of a board (and a bundle): backend, providers, threads,
    /// memory split, how many experts fit, limits. Every built-in board without --board.
    Boards(BoardsArgs),
    /// Replay golden vectors (golden.safetensors) through a bundle: greedy tokens and
    /// max |Δlogit| per prompt as JSON; exit status 1 on a mismatch.
    #[command(hide = true)]
    Golden(GoldenArgs),
}

#[derive(clap::Args)]
struct ImportArgs {
    /// The Hugging Face checkpoint directory.
    #[arg(long)]
    hf: PathBuf,
    /// The bundle directory to write.
    #[arg(long, default_value = DEFAULT_BUNDLE)]
    out: PathBuf,
    /// Dtype of the stored weights: f32 or f16 (computation is f32).
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Storage of the routed experts: f32, f16, q8 (Q8_0: int8, one f16 scale
    /// per group of 32 along the hidden dimension) or q4 (Q4_0: 4-bit, group 32).
    /// Default: the same as --dtype.
    #[arg(long)]
    experts_dtype: Option<String>,
    /// Model id for the manifest (default: the checkpoint directory's name).
    #[arg(long)]
    model_id: Option<String>,
    /// Replace an existing non-empty --out.
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args)]
struct ChatArgs {
    /// The user message.
    text: Option<String>,
    #[arg(long, default_value = DEFAULT_BUNDLE)]
    bundle: PathBuf,
    #[arg(long, default_value = "host-cpu")]
    board: String,
    /// Print the OpenAI chat.completion JSON instead of text.
    #[arg(long)]
    json: bool,
    /// A JSONL file of chat-completions requests: one chat.completion (or error) JSON per line on stdout.
    #[arg(long, conflicts_with = "text")]
    batch: Option<PathBuf>,
    /// Tools offered with a plain-text message (OpenAI `tools` array, or a catalogue with a `tools` key).
    #[arg(long, default_value = "models/assist-moe/tools.json")]
    tools: PathBuf,
    #[arg(long)]
    max_tokens: Option<u64>,
    /// A system message to put before the text.
    #[arg(long)]
    system: Option<String>,
}

#[derive(clap::Args)]
struct BenchArgs {
    #[command(subcommand)]
    mode: Option<BenchMode>,
    #[arg(long, default_value = DEFAULT_BUNDLE, global = true)]
    bundle: PathBuf,
    #[arg(long, default_value = "host-cpu", global = true)]
    board: String,
    /// Write the report as JSON here.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
}

#[derive(Subcommand)]
enum BenchMode {
    /// Local engine: prefill/decode tokens/s, TTFT, expert hit rate, peak RSS (the default).
    Engine {
        #[arg(long, default_value_t = 32)]
        prompt_tokens: usize,
        #[arg(long, default_value_t = 64)]
        gen_tokens: usize,
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// N concurrent MQTT clients against an in-process daemon on the embedded
    /// broker, then 10x as many: requests/s, p50/p99 latency, RSS.
    Serve {
        #[arg(long, default_value_t = 4)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        requests: usize,
        #[arg(long, default_value_t = 16)]
        max_tokens: u64,
    },
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
    /// Side by side with llama.cpp's llama-bench on a GGUF of the same checkpoint.
    Llama {
        /// Path of llama.cpp's `llama-bench` binary (see docs/llama-cpp.md).
        #[arg(long)]
        llama_bench: PathBuf,
        /// GGUF of the checkpoint the bundle was imported from.
        #[arg(long)]
        gguf: PathBuf,
        #[arg(long, default_value_t = 64)]
        gen_tokens: usize,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Remote experts: round trip vs raw MQTT of the same size, and decode tokens/s with
    /// part of the experts on the device and the rest on an expert server (with added delay).
    Offload {
        /// External broker (default: the embedded rumqttd on a free port).
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

#[derive(clap::Args)]
struct PlanArgs {
    #[arg(long, default_value = DEFAULT_BUNDLE)]
    bundle: PathBuf,
    #[arg(long, default_value = "host-cpu")]
    board: String,
    /// Calibration requests (JSONL, one chat-completions request or labelled example per line).
    #[arg(long, num_args = 1.., default_values = ["models/assist-moe/data/calib.jsonl"])]
    calib: Vec<PathBuf>,
    /// Keep this fraction of all experts instead of what the board's budget holds
    /// (with --lowp: the fraction kept at full precision).
    #[arg(long)]
    fraction: Option<f64>,
    /// Mixed-precision residency: a q8/q4 bundle of the same checkpoint
    /// (`import --experts-dtype q4`). The device bundle then carries all of its
    /// experts plus the hottest experts at full precision in what is left of
    /// the board's budget; a miss on the full-precision set runs the low-precision copy.
    #[arg(long)]
    lowp: Option<PathBuf>,
    /// Greedy tokens generated per calibration request (their routing counts too).
    #[arg(long, default_value_t = 24)]
    gen_tokens: usize,
    /// Where to write the plan (default: BUNDLE/plans/BOARD.json).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write the pruned bundle the board carries (only its experts).
    #[arg(long)]
    device_bundle: Option<PathBuf>,
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args)]
struct EvalArgs {
    /// Labelled JSONL split (messages, expected, lang, scenario).
    #[arg(long, default_value = "models/assist-moe/data/test.jsonl")]
    data: PathBuf,
    #[arg(long, default_value = DEFAULT_BUNDLE)]
    bundle: PathBuf,
    #[arg(long, default_value = "host-cpu")]
    board: String,
    /// Only the first N examples.
    #[arg(long)]
    limit: Option<usize>,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Constrain decoding to the tool catalogue's schemas (tool_choice auto).
    #[arg(long)]
    constrain: bool,
    /// Run free and constrained, print the per-tool comparison table.
    #[arg(long, conflicts_with = "constrain")]
    compare: bool,
    /// The tool catalogue the constraint uses.
    #[arg(long, default_value = "models/assist-moe/tools.json")]
    tools: PathBuf,
    /// With --constrain/--compare: mark the catalogue's free-text strings
    /// `x-grounded` (copied from the request), as an app would.
    #[arg(long)]
    grounded: bool,
}

fn main() -> anyhow::Result<()> {
    let default_filter = format!("info,{}", moe_edge::transport::broker::QUIET_LOG_FILTER);
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_filter))
        .init();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Chat(a) => chat(a),
        Cmd::Eval(a) => eval(a),
        Cmd::Serve(a) => serve(a),
        Cmd::Ask(a) => ask(a),
        Cmd::Host(a) => host(a),
        Cmd::Bench(a) => bench(a),
        Cmd::Plan(a) => plan(a),
        Cmd::Import(a) => import(a),
        Cmd::Boards(a) => boards(a),
        Cmd::Golden(a) => golden(a),
    }
}

fn import(a: ImportArgs) -> anyhow::Result<()> {
    use moe_edge::bundle::import::{import, parse_dtype, parse_experts_dtype, ImportOptions};
    let opts = ImportOptions {
        hf_dir: a.hf,
        out_dir: a.out,
        dtype: parse_dtype(&a.dtype)?,
        experts_dtype: a
            .experts_dtype
            .as_deref()
            .map(parse_experts_dtype)
            .transpose()?,
        model_id: a.model_id,
        force: a.force,
    };
    let report = import(&opts)?;
    println!("{report}");
    Ok(())
}

fn load_tools(path: &std::path::Path) -> anyhow::Result<Vec<moe_edge::openai::Tool>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path)?)
        .with_context(|| format!("{}: not JSON", path.display()))?;
    let arr = v.get("tools").cloned().unwrap_or(v);
    serde_json::from_value(arr)
        .with_context(|| format!("{}: not an OpenAI tools array", path.display()))
}

fn chat(a: ChatArgs) -> anyhow::Result<()> {
    use moe_edge::engine::chat::ChatPolicy;
    use moe_edge::openai::{ChatRequest, Message, RequestLimits};
    let board = Board::load(&a.board)?;
    let engine = Engine::load(&a.bundle, &board, Verify::Full)
        .with_context(|| format!("loading bundle {}", a.bundle.display()))?;
    let limits = RequestLimits::default();
    let policy = ChatPolicy::of(&board);
    let mut n = 0u64;
    let mut run = |req: ChatRequest| -> serde_json::Value {
        n += 1;
        let id = format!("chatcmpl-local-{n}");
        match req
            .validate(&limits)
            .and_then(|v| engine.complete_chat(v, id, policy))
        {
            Ok(out) => serde_json::to_value(&out.completion).expect("completion serialises"),
            Err(e) => e.to_value(),
        }
    };
    if let Some(batch) = &a.batch {
        let text = std::fs::read_to_string(batch)
            .with_context(|| format!("reading {}", batch.display()))?;
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let out = match ChatRequest::parse(line.as_bytes(), limits.max_body_bytes) {
                Ok(req) => run(req),
                Err(e) => {
                    log::warn!("batch line={} error={}", i + 1, e.message);
                    e.to_value()
                }
            };
            println!("{out}");
        }
        return Ok(());
    }
    let text = a
        .text
        .context("give the message to send, e.g. moe-edge chat \"turn on the lights\"")?;
    let mut messages = Vec::new();
    if let Some(s) = a.system {
        messages.push(Message::system(s));
    }
    messages.push(Message::user(text));
    let tools = load_tools(&a.tools)?;
    let req = ChatRequest {
        messages,
        tools: (!tools.is_empty()).then_some(tools),
        max_completion_tokens: a.max_tokens,
        ..ChatRequest::default()
    };
    let out = run(req);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    if let Some(err) = out.get("error") {
        anyhow::bail!(
            "{}",
            err.get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("error")
        );
    }
    let msg = &out["choices"][0]["message"];
    if let Some(calls) = msg.get("tool_calls").and_then(|c| c.as_array()) {
        for c in calls {
            println!(
                "tool_call {}({})",
                c["function"]["name"].as_str().unwrap_or(""),
                c["function"]["arguments"].as_str().unwrap_or("")
            );
        }
    }
    if let Some(t) = msg.get("content").and_then(|c| c.as_str()) {
        if !t.is_empty() {
            println!("{t}");
        }
    }
    let x = &out["x_moe_edge"];
    println!(
        "served_by={} fallback={} experts={} timings_ms={} tokens_per_second={:.1}{}",
        x["served_by"].as_str().unwrap_or("?"),
        x["fallback_reason"],
        x["experts"],
        x["timings_ms"],
        x["tokens_per_second"].as_f64().unwrap_or(0.0),
        x["confidence"]
            .as_f64()
            .map(|p| format!(" confidence={p:.3}"))
            .unwrap_or_default()
    );
    Ok(())
}

fn eval(a: EvalArgs) -> anyhow::Result<()> {
    use moe_edge::engine::eval::{comparison_markdown, evaluate, read_examples};
    let board = Board::load(&a.board)?;
    let engine = Engine::load(&a.bundle, &board, Verify::Full)
        .with_context(|| format!("loading bundle {}", a.bundle.display()))?;
    let mut ex: Vec<_> = read_examples(&a.data)?.into_iter().enumerate().collect();
    if let Some(n) = a.limit {
        ex.truncate(n);
    }
    if a.grounded && !(a.constrain || a.compare) {
        anyhow::bail!("--grounded needs --constrain or --compare");
    }
    let spec = if a.constrain || a.compare {
        Some(catalogue_constraint(&a.tools, a.grounded)?)
    } else {
        None
    };
    let t = std::time::Instant::now();
    let report = evaluate(&engine, &ex, if a.compare { None } else { spec.as_ref() })?;
    println!("{}", report.to_markdown());
    println!(
        "{} examples in {:.1} s, {} generated tokens",
        ex.len(),
        t.elapsed().as_secs_f64(),
        report.generated_tokens
    );
    if a.compare {
        let t = std::time::Instant::now();
        let constrained = evaluate(&engine, &ex, spec.as_ref())?;
        println!(
            "constrained: {} examples in {:.1} s\n",
            ex.len(),
            t.elapsed().as_secs_f64()
        );
        println!("{}", comparison_markdown(&report, &constrained));
        if let Some(p) = &a.json {
            let both = serde_json::json!({"free": report, "constrained": constrained});
            std::fs::write(p, serde_json::to_string_pretty(&both)?)?;
        }
        return Ok(());
    }
    if let Some(p) = a.json {
        std::fs::write(&p, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}

/// Tool-call constraint (tool_choice auto) for a catalogue file; with
/// `grounded`, its free-text strings are marked `x-grounded`.
fn catalogue_constraint(
    path: &std::path::Path,
    grounded: bool,
) -> anyhow::Result<moe_edge::engine::eval::CatalogueConstraint> {
    let mut tools = load_tools(path)?;
    anyhow::ensure!(
        !tools.is_empty(),
        "{}: no tools (the file is missing or its list is empty)",
        path.display()
    );
    if grounded {
        let n = moe_edge::constrain::request::ground_free_strings(&mut tools);
        println!(
            "{n} free-text strings of {} marked x-grounded",
            path.display()
        );
    }
    moe_edge::engine::eval::CatalogueConstraint::new(tools)
        .with_context(|| format!("{}: tools", path.display()))
}

fn bench(a: BenchArgs) -> anyhow::Result<()> {
    use moe_edge::bench;
    let board = Board::load(&a.board)?;
    let mode = a.mode.unwrap_or(BenchMode::Engine {
        prompt_tokens: 32,
        gen_tokens: 64,
        runs: 5,
    });
    match mode {
        BenchMode::Offload {
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
            let opts = bench::offload::OffloadBenchOptions {
                bundle: a.bundle.clone(),
                broker,
                fractions,
                delays_ms: delay_ms,
                prompts,
                gen_tokens,
                rtt_calls,
                timeout: std::time::Duration::from_millis(timeout_ms),
                skip_below,
                calib,
            };
            let r = bench::offload::run(&board, &opts)?;
            println!("{}", r.table());
            if let Some(p) = &a.json {
                std::fs::write(p, serde_json::to_string_pretty(&r)?)?;
            }
        }
        BenchMode::Engine {
            prompt_tokens,
            gen_tokens,
            runs,
        } => {
            let engine = Engine::load(&a.bundle, &board, Verify::Sizes)
                .with_context(|| format!("loading bundle {}", a.bundle.display()))?;
            let opts = bench::engine::EngineBenchOptions {
                prompt_tokens,
                gen_tokens,
                runs,
            };
            let r = bench::engine::run(&engine, &board.name, &opts)?;
            println!("{}", r.table());
            if let Some(p) = &a.json {
                std::fs::write(p, serde_json::to_string_pretty(&r)?)?;
            }
        }
        BenchMode::Constrain {
            data,
            tools,
            prompts,
            grounded,
        } => {
            let engine = Engine::load(&a.bundle, &board, Verify::Sizes)
                .with_context(|| format!("loading bundle {}", a.bundle.display()))?;
            let constraint = catalogue_constraint(&tools, grounded)?;
            let mut ex = moe_edge::engine::eval::read_examples(&data)?;
            ex.truncate(prompts);
            let r = bench::constrain::run(&engine, &constraint, &ex)?;
            println!("{}", r.table());
            if let Some(p) = &a.json {
                std::fs::write(p, serde_json::to_string_pretty(&r)?)?;
            }
        }
        BenchMode::Serve {
            clients,
            requests,
            max_tokens,
        } => {
            let opts = bench::serve::ServeBenchOptions {
                clients,
                requests,
                max_tokens,
            };
            let r = bench::serve::run(&a.bundle, &board, &opts)?;
            println!("{}", r.table());
            if let Some(p) = &a.json {
                std::fs::write(p, serde_json::to_string_pretty(&r)?)?;
            }
        }
        BenchMode::Cache {
            calib,
            trace,
            limit,
            fractions,
        } => {
            let mut all = board.clone();
            all.memory.experts_bytes = u64::MAX / 2;
            let engine = Engine::load(&a.bundle, &all, Verify::Sizes)?;
            let arch = engine.model.manifest.architecture.clone();
            let total = arch.num_layers * arch.num_experts;
            let calib_stats =
                moe_edge::plan::collect(&engine, &calib_prompts(&engine, &[calib])?, 24)?;
            let mut prompts = calib_prompts(&engine, &[trace])?;
            prompts.truncate(limit);
            let trace_stats = moe_edge::plan::collect(&engine, &prompts, 24)?;
            let accesses: Vec<_> = trace_stats.trace.iter().flatten().copied().collect();
            let mut rows = Vec::new();
            for &f in &fractions {
                let slots = ((f * total as f64).round() as usize).max(1);
                let plan = moe_edge::plan::select(&calib_stats, slots, arch.top_k).ranked;
                rows.extend(bench::cache::compare(&accesses, &plan, total, &[f]));
            }
            println!(
                "routing trace: {} requests, {} tokens, {} expert accesses over {} experts",
                prompts.len(),
                trace_stats.tokens,
                accesses.len(),
                total
            );
            println!("{}", bench::cache::table(&rows));
            if let Some(p) = &a.json {
                std::fs::write(p, serde_json::to_string_pretty(&rows)?)?;
            }
        }
        BenchMode::Scale {
            make,
            seed,
            dtype,
            prompt_tokens,
            gen_tokens,
            runs,
            bandwidth_mib,
            quant_dot,
        } => {
            use moe_edge::experts::kernels::{set_quant_dot, QuantDot};
            match quant_dot.as_str() {
                "int8" => set_quant_dot(QuantDot::Int8),
                "f32" => set_quant_dot(QuantDot::F32),
                other => anyhow::bail!("--quant-dot `{other}`: expected int8 or f32"),
            }
            if let Some(dir) = make {
                let dtypes = dtype
                    .iter()
                    .map(|d| moe_edge::bundle::import::parse_dtype(d))
                    .collect::<Result<Vec<_>, _>>()?;
                let made = bench::scale::make(&dir, seed, &dtypes)?;
                for m in &made {
                    println!(
                        "made {} bundle {}: {:.1} MiB (experts {:.1} MiB, graphs {:.1} MiB)",
                        m.dtype,
                        m.dir.display(),
                        m.total_bytes as f64 / (1 << 20) as f64,
                        m.experts_bytes as f64 / (1 << 20) as f64,
                        m.graph_bytes as f64 / (1 << 20) as f64
                    );
                }
                if let Some(p) = &a.json {
                    std::fs::write(p, serde_json::to_string_pretty(&made)?)?;
                }
                return Ok(());
            }
            // every expert resident: the roofline assumes weights are read from DRAM
            let mut all = board.clone();
            all.memory.experts_bytes = u64::MAX / 2;
            let engine = Engine::load(&a.bundle, &all, Verify::Sizes)
                .with_context(|| format!("loading bundle {}", a.bundle.display()))?;
            let opts = bench::engine::EngineBenchOptions {
                prompt_tokens,
                gen_tokens,
                runs,
            };
            let r = bench::scale::run(&engine, &a.bundle, &board.name, &opts, bandwidth_mib << 20)?;
            println!("{}", r.table());
            if let Some(p) = &a.json {
                std::fs::write(p, serde_json::to_string_pretty(&r)?)?;
            }
        }
        BenchMode::Llama {
            llama_bench,
            gguf,
            gen_tokens,
            threads,
            runs,
        } => {
            let llama = bench::llama::run(&llama_bench, &gguf, gen_tokens, threads)?;
            let mut all = board.clone();
            all.memory.experts_bytes = u64::MAX / 2;
            let engine = Engine::load(&a.bundle, &all, Verify::Sizes)
                .with_context(|| format!("loading bundle {}", a.bundle.display()))?;
            let opts = bench::engine::EngineBenchOptions {
                prompt_tokens: 16,
                gen_tokens: gen_tokens + 1,
                runs,
            };
            let ours = bench::engine::run(&engine, &board.name, &opts)?;
            let c = bench::llama::LlamaComparison::new(llama, ours, board.backend.threads);
            println!("{}", c.table());
            if let Some(p) = &a.json {
                std::fs::write(p, serde_json::to_string_pretty(&c)?)?;
            }
        }
    }
    Ok(())
}

// ------------------------------------------------------------ serve and ask

/// How to authenticate to an MQTT broker: TLS files and credentials (serve,
/// host and ask take the same flags).
#[derive(clap::Args)]
struct BrokerAuthArgs {
    /// PEM CA certificates for mqtts:// (default: the webpki roots).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// PEM client certificate chain (mutual TLS), with --key.
    #[arg(long)]
    cert: Option<PathBuf>,
    #[arg(long)]
    key: Option<PathBuf>,
    #[arg(long)]
    username: Option<String>,
    #[arg(long, env = "MOE_EDGE_MQTT_PASSWORD", hide_env_values = true)]
    password: Option<String>,
}

impl BrokerAuthArgs {
    fn config(&self, url: &str) -> anyhow::Result<moe_edge::transport::MqttConfig> {
        Ok(moe_edge::serve::broker_config(
            url,
            self.ca.as_deref(),
            self.cert.as_deref(),
            self.key.as_deref(),
            self.username.as_deref(),
            self.password.as_deref(),
        )?)
    }
}

#[derive(clap::Args)]
struct BrokerArgs {
    /// MQTT broker: mqtt://[user[:pass]@]host[:port] or mqtts://...
    #[arg(long)]
    broker: Option<String>,
    #[command(flatten)]
    auth: BrokerAuthArgs,
    /// Persistent MQTT session: the broker keeps subscriptions and queued QoS 1 requests this
    /// many seconds across a disconnect or broker restart (0 = a clean session each connect).
    #[arg(long, default_value_t = 0)]
    session_expiry_s: u64,
}

impl BrokerArgs {
    fn config(&self, url: &str) -> anyhow::Result<moe_edge::transport::MqttConfig> {
        let mut c = self.auth.config(url)?;
        if self.session_expiry_s > 0 {
            c.clean_start = false;
            c.session_expiry = std::time::Duration::from_secs(self.session_expiry_s);
        }
        Ok(c)
    }
}

#[derive(clap::Args)]
struct ServeArgs {
    #[arg(long, default_value = DEFAULT_BUNDLE)]
    bundle: PathBuf,
    #[arg(long, default_value = "host-cpu")]
    board: String,
    /// Topic id of this device (default: the host name, sanitised).
    #[arg(long)]
    device_id: Option<String>,
    /// The embedded broker's MQTT 5 listener (MQTT 3.1.1 on port + 1).
    #[arg(long, default_value = moe_edge::serve::DEFAULT_LISTEN, conflicts_with = "broker")]
    listen: std::net::SocketAddr,
    #[command(flatten)]
    mqtt: BrokerArgs,
    /// Print the resolved board/bundle plan and exit.
    #[arg(long)]
    dry_run: bool,
    /// How long running requests may take to finish at shutdown.
    #[arg(long, default_value_t = 10_000)]
    drain_timeout_ms: u64,
    /// Also offer the OpenAI HTTP endpoint (/v1/chat/completions, /v1/models) here, for
    /// local tools; requests go through the daemon (admission, cascade) like an app's.
    #[arg(long)]
    http: Option<std::net::SocketAddr>,
    /// Send the experts this device lacks to `moe-edge host --broker` on the daemon's broker
    /// (also on when the board says `offload.enabled`).
    #[arg(long)]
    offload: bool,
    /// Skip the remote round trip when every token's missing router weight is below this
    /// (substitute instead; 0 = always ask the host; only with on_miss = substitute).
    #[arg(long, default_value_t = 0.0)]
    offload_skip_below: f32,
}

#[derive(clap::Args)]
struct AskArgs {
    /// The user message.
    text: String,
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    broker: String,
    #[command(flatten)]
    auth: BrokerAuthArgs,
    /// The daemon's device id (default: this host's name, sanitised).
    #[arg(long)]
    device_id: Option<String>,
    /// Ask for a streamed reply and print text as it arrives.
    #[arg(long)]
    stream: bool,
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
    /// Tools offered (OpenAI `tools` array, or a catalogue with a `tools` key).
    #[arg(long, default_value = "models/assist-moe/tools.json")]
    tools: PathBuf,
    /// Send no tools.
    #[arg(long)]
    no_tools: bool,
    #[arg(long)]
    system: Option<String>,
    #[arg(long)]
    max_tokens: Option<u64>,
    /// x-priority: 0..=9 or safety|high|normal|low.
    #[arg(long)]
    priority: Option<String>,
    /// x-deadline-ms.
    #[arg(long)]
    deadline_ms: Option<u64>,
    /// Print the whole chat.completion JSON.
    #[arg(long)]
    json: bool,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Resolves on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => log::info!("ctrl-c received"),
        _ = term => log::info!("SIGTERM received"),
    }
}

fn device_id(given: Option<String>) -> anyhow::Result<moe_edge::wire::DeviceId> {
    Ok(match given {
        Some(id) => moe_edge::wire::DeviceId::new(id)?,
        None => moe_edge::serve::default_device_id(),
    })
}

fn serve(a: ServeArgs) -> anyhow::Result<()> {
    use moe_edge::serve::{self, BrokerChoice, ServeConfig};
    let board = Board::load(&a.board)?;
    let device = device_id(a.device_id)?;
    let broker = match &a.mqtt.broker {
        Some(url) => BrokerChoice::External(Box::new(a.mqtt.config(url)?)),
        None => BrokerChoice::Embedded(a.listen),
    };
    let broker_desc = match &a.mqtt.broker {
        Some(url) => url.clone(),
        None => format!("embedded mqtt5={} mqtt311=port+1", a.listen),
    };
    if a.dry_run {
        print!(
            "{}",
            serve::describe_plan(&board, &a.bundle, &device, &broker_desc)
        );
        return Ok(());
    }
    let mut engine = Engine::load(&a.bundle, &board, Verify::Full)
        .with_context(|| format!("loading bundle {}", a.bundle.display()))?;
    // [offload] remote experts through the daemon's broker (owner: offload).
    if board.offload.enabled || a.offload {
        let url = a
            .mqtt
            .broker
            .clone()
            .unwrap_or_else(|| embedded_url(a.listen));
        let remote = offload_remote(
            &engine,
            &board,
            &device,
            a.mqtt.config(&url)?,
            a.offload_skip_below,
        )?;
        engine.model.set_remote(Some(remote));
    }
    let model_id = engine.model_id().to_string();
    // The cascade (host, then cloud, from the board's [cascade]); with no hop
    // configured the device answers everything itself.
    let cascade =
        moe_edge::cascade::Cascade::from_config(&board.cascade, moe_edge::cascade::Tier::Device)?;
    let http_mqtt = match (&a.http, &a.mqtt.broker) {
        (Some(_), Some(url)) => Some(a.mqtt.config(url)?),
        _ => None,
    };
    let http_board = board.clone();
    let http_device = device.clone();
    let mut config = ServeConfig::new(std::sync::Arc::new(engine), board, device, broker);
    config.drain_timeout = std::time::Duration::from_millis(a.drain_timeout_ms);
    if !cascade.is_empty() {
        config.escalate = Some(std::sync::Arc::new(cascade));
    }
    let ready = a.http.map(|_| {
        let (tx, rx) = tokio::sync::oneshot::channel();
        config.on_ready = Some(tx);
        rx
    });
    runtime()?.block_on(async move {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let http = match (a.http, ready) {
            (Some(addr), Some(ready)) => {
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?;
                println!(
                    "moe-edge serve: http listening on http://{}",
                    l.local_addr()?
                );
                Some((l, ready))
            }
            _ => None,
        };
        let http_task = {
            let stop = stopped(stop_rx.clone());
            async move {
                let Some((l, ready)) = http else {
                    return anyhow::Ok(());
                };
                let Ok(ready) = ready.await else {
                    return anyhow::Ok(());
                };
                let mqtt = match http_mqtt {
                    Some(m) => m,
                    None => moe_edge::transport::MqttConfig::from_url(
                        &ready.broker_url,
                        "moe-edge-http",
                    )?,
                };
                moe_edge::host::device::serve_http_over_daemon(
                    l,
                    &mqtt,
                    &http_device,
                    model_id,
                    &http_board,
                    stop,
                )
                .await?;
                anyhow::Ok(())
            }
        };
        let (daemon, http) = tokio::join!(serve::run(config, stopped(stop_rx)), http_task);
        daemon?;
        http
    })
}

#[derive(clap::Args)]
struct HostArgs {
    #[arg(long, default_value = DEFAULT_BUNDLE)]
    bundle: PathBuf,
    #[arg(long, default_value = "host-cpu")]
    board: String,
    /// Serve /v1/chat/completions and /v1/models here (e.g. 0.0.0.0:8080; port 0 picks one).
    #[arg(long)]
    http: Option<std::net::SocketAddr>,
    /// Run the expert server (remote expert compute for devices) on the MQTT broker given by
    /// --broker (with --ca/--cert/--key/--username/--password as for serve).
    #[command(flatten)]
    mqtt: BrokerArgs,
    /// Shared-subscription group of the expert server (hosts in one group split the load).
    #[arg(long, default_value = moe_edge::wire::topics::HOST_GROUP)]
    group: String,
    /// Expert compute threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Expert requests waiting for a thread; one more is answered `busy`.
    #[arg(long, default_value_t = 32)]
    queue: usize,
    /// Hold every expert reply back this long (simulated network delay, for benches and tests).
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// MQTT client id of the expert server (default: moe-edge-host-{pid}).
    #[arg(long)]
    host_id: Option<String>,
}

fn host(a: HostArgs) -> anyhow::Result<()> {
    use moe_edge::host::{self, HostOptions};
    let board = Board::load(&a.board)?;
    anyhow::ensure!(
        a.http.is_some() || a.mqtt.broker.is_some(),
        "give --http ADDR (the OpenAI endpoint) and/or --broker URL (the expert server)"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let http = match a.http {
            Some(addr) => {
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?;
                // The first line on stdout: scripts and tests read the bound address here.
                println!("moe-edge host: listening on http://{}", l.local_addr()?);
                Some(l)
            }
            None => None,
        };
        // The expert server (--broker): all experts of the bundle over MQTT.
        let experts = match &a.mqtt.broker {
            Some(url) => {
                let id = a
                    .host_id
                    .clone()
                    .unwrap_or_else(|| format!("moe-edge-host-{}", std::process::id()));
                let mut mqtt = a.mqtt.config(url)?;
                mqtt.client_id = id;
                let mut cfg = host::experts::ExpertServerConfig::new(a.bundle.clone(), mqtt);
                cfg.verify = Verify::Full;
                cfg.group = a.group.clone();
                cfg.workers = a.workers;
                cfg.queue = a.queue;
                cfg.delay = std::time::Duration::from_millis(a.delay_ms);
                Some(cfg)
            }
            None => None,
        };
        let opts = HostOptions {
            bundle: a.bundle,
            board,
            http,
            experts,
            verify: Verify::Full,
        };
        let stop = async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
            log::info!("host stopping");
        };
        host::run(opts, stop).await?;
        anyhow::Ok(())
    })
}

/// `mqtt://` URL of the embedded broker listening on `listen`.
fn embedded_url(listen: std::net::SocketAddr) -> String {
    let ip = if listen.ip().is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        listen.ip()
    };
    format!("mqtt://{}", std::net::SocketAddr::new(ip, listen.port()))
}

/// The device's remote experts on their own small runtime (kept for the
/// process's life): one MQTT connection, replies routed by correlation data.
fn offload_remote(
    engine: &Engine,
    board: &Board,
    device: &moe_edge::wire::DeviceId,
    mqtt: moe_edge::transport::MqttConfig,
    skip_below: f32,
) -> anyhow::Result<std::sync::Arc<dyn moe_edge::experts::dispatch::RemoteExperts>> {
    use moe_edge::experts::remote::{MqttRemote, RemoteConfig};
    let mut cfg = RemoteConfig::new(
        &engine.model.manifest,
        device.clone(),
        board.offload.timeout,
    )?;
    if board.offload.on_miss == moe_edge::config::OnMiss::Substitute {
        cfg.skip_below = skip_below;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("offload")
        .enable_all()
        .build()?;
    let remote = rt.block_on(MqttRemote::connect(mqtt, cfg, std::future::pending()))?;
    log::info!(
        "offload on timeout_ms={} on_miss={:?} skip_below={skip_below}",
        board.offload.timeout.as_millis(),
        board.offload.on_miss
    );
    // The runtime drives the connection until the process exits.
    std::mem::forget(rt);
    Ok(std::sync::Arc::new(remote))
}

fn ask(a: AskArgs) -> anyhow::Result<()> {
    use moe_edge::openai::{ChatRequest, Message, PriorityField};
    use moe_edge::serve::ask::{ask, AskOptions};
    use std::io::Write;
    let mqtt = a.auth.config(&a.broker)?;
    let mut messages = Vec::new();
    if let Some(s) = a.system {
        messages.push(Message::system(s));
    }
    messages.push(Message::user(a.text));
    let tools = if a.no_tools {
        Vec::new()
    } else {
        load_tools(&a.tools)?
    };
    let priority = a.priority.map(|p| match p.parse::<i64>() {
        Ok(n) => PriorityField::Level(n),
        Err(_) => PriorityField::Name(p),
    });
    let request = ChatRequest {
        messages,
        tools: (!tools.is_empty()).then_some(tools),
        stream: a.stream.then_some(true),
        max_completion_tokens: a.max_tokens,
        x_priority: priority,
        x_deadline_ms: a.deadline_ms,
        ..ChatRequest::default()
    };
    let opts = AskOptions {
        mqtt,
        device: device_id(a.device_id)?,
        request,
        timeout: std::time::Duration::from_millis(a.timeout_ms),
        client_name: None,
    };
    let streamed = a.stream && !a.json;
    let completion = runtime()?.block_on(ask(opts, |t| {
        if streamed {
            print!("{t}");
            let _ = std::io::stdout().flush();
        }
    }))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&completion)?);
        return Ok(());
    }
    if let Some(m) = completion.message() {
        match (&m.content, streamed) {
            (Some(t), false) if !t.is_empty() => println!("{t}"),
            (Some(t), true) if !t.is_empty() => println!(),
            _ => {}
        }
        for c in m.tool_calls() {
            println!("tool_call {}({})", c.function.name, c.function.arguments);
        }
    }
    if let Some(x) = &completion.x_moe_edge {
        eprintln!(
            "served_by={} fallback={} total_ms={:.1} tokens_per_second={:.1}{}",
            x.served_by.as_str(),
            x.fallback_reason.as_deref().unwrap_or("-"),
            x.timings_ms.total,
            x.tokens_per_second,
            x.confidence
                .map(|p| format!(" confidence={p:.3}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- boards, golden

#[derive(clap::Args)]
struct BoardsArgs {
    /// One board (a name from boards/ or a .toml path); default: every built-in board.
    #[arg(long)]
    board: Option<String>,
    /// A bundle: also show how many of its experts fit and the KV cache per sequence.
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn boards(a: BoardsArgs) -> anyhow::Result<()> {
    use moe_edge::config::describe::{builtin_boards, dry_run};
    let names: Vec<String> = match a.board {
        Some(b) => vec![b],
        None => builtin_boards().into_iter().map(String::from).collect(),
    };
    let mut plans = Vec::new();
    for name in &names {
        let board = Board::load(name)?;
        plans.push(dry_run(&board, a.bundle.as_deref())?);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&plans)?);
    } else {
        let text: Vec<String> = plans.iter().map(|p| p.to_string()).collect();
        print!("{}", text.join("\n"));
    }
    Ok(())
}

#[derive(clap::Args)]
struct GoldenArgs {
    #[arg(long)]
    bundle: PathBuf,
    /// golden.safetensors (p{i}.input_ids, p{i}.logits, p{i}.greedy).
    #[arg(long)]
    golden: PathBuf,
    #[arg(long, default_value = "host-cpu")]
    board: String,
    /// Largest accepted |logit - reference logit|.
    #[arg(long, default_value_t = 1e-3)]
    tol: f32,
    /// Include the prefill logits in the JSON (to compare two runs).
    #[arg(long)]
    logits: bool,
}

fn golden(a: GoldenArgs) -> anyhow::Result<()> {
    use moe_edge::engine::golden::{read_golden, run_all};
    let board = Board::load(&a.board)?;
    let bundle = moe_edge::bundle::Bundle::open(&a.bundle, Verify::Full)
        .with_context(|| format!("opening bundle {}", a.bundle.display()))?;
    let model = moe_edge::engine::Model::load(&bundle, &board)?;
    let prompts = read_golden(&a.golden)?;
    let results = run_all(&model, &prompts, a.logits)?;
    let ok = results.iter().all(|r| r.passes(a.tol));
    let out = serde_json::json!({
        "bundle": a.bundle.display().to_string(),
        "model_id": bundle.manifest.model_id,
        "board": board.name,
        "backend": board.backend.kind.to_string(),
        "arch": std::env::consts::ARCH,
        "tol": a.tol,
        "ok": ok,
        "prompts": results,
    });
    println!("{out}");
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}

fn calib_prompts(engine: &Engine, files: &[PathBuf]) -> anyhow::Result<Vec<String>> {
    use moe_edge::openai::ChatRequest;
    let mut prompts = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let v: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not JSON", f.display(), i + 1))?;
            let messages = v
                .get("messages")
                .cloned()
                .with_context(|| format!("{}:{}: no `messages`", f.display(), i + 1))?;
            let req = ChatRequest::from_value(serde_json::json!({ "messages": messages }))
                .map_err(|e| anyhow::anyhow!("{}:{}: {}", f.display(), i + 1, e.message))?;
            prompts.push(moe_edge::engine::template::render_chat(
                &req.text_messages(),
                engine.bundle.manifest.chat_template.as_deref(),
            )?);
        }
    }
    Ok(prompts)
}

fn plan(a: PlanArgs) -> anyhow::Result<()> {
    use moe_edge::engine::plan_file::PlanFile;
    use moe_edge::plan;
    let board = Board::load(&a.board)?;
    // Statistics come from the whole model with no eviction in the way.
    let mut all = board.clone();
    all.memory.experts_bytes = u64::MAX / 2;
    let engine = Engine::load(&a.bundle, &all, Verify::Full)
        .with_context(|| format!("loading bundle {}", a.bundle.display()))?;
    let arch = engine.model.manifest.architecture.clone();
    let total = arch.num_layers * arch.num_experts;
    let ebytes = engine.model.store().expert_bytes() as u64;
    let lowp = match &a.lowp {
        Some(dir) => Some(
            moe_edge::bundle::Bundle::open(dir, Verify::Full)
                .with_context(|| format!("--lowp {}", dir.display()))?,
        ),
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
    let slots = match a.fraction {
        Some(f) if (0.0..=1.0).contains(&f) => (f * total as f64).round() as usize,
        Some(f) => anyhow::bail!("--fraction {f} is not in 0..=1"),
        None => {
            if lowp_bytes > board.memory.experts_bytes {
                anyhow::bail!(
                    "board {}: memory.experts_mb ({:.1} MB) cannot hold the low-precision copy ({:.1} MB)",
                    board.name,
                    board.memory.experts_bytes as f64 / 1048576.0,
                    lowp_bytes as f64 / 1048576.0
                );
            }
            ((board.memory.experts_bytes - lowp_bytes) / ebytes) as usize
        }
    }
    .min(total);
    if lowp.is_some() {
        println!(
            "mixed precision: low-precision copy {:.1} MB, {slots} experts at full precision",
            lowp_bytes as f64 / 1048576.0
        );
    }
    let prompts = calib_prompts(&engine, &a.calib)?;
    let t = std::time::Instant::now();
    let stats = plan::collect(&engine, &prompts, a.gen_tokens)?;
    let sel = plan::select(&stats, slots, arch.top_k);
    let covered: u64 = sel
        .ranked
        .iter()
        .map(|&(l, e)| stats.freq[l as usize][e as usize])
        .sum();
    let routed: u64 = stats.freq.iter().flatten().sum();
    println!(
        "calibration: {} requests, {} tokens in {:.1} s; keeping {slots} of {total} experts ({:.0} %, {:.1} MB), covering {:.1} % of routed slots",
        prompts.len(),
        stats.tokens,
        t.elapsed().as_secs_f64(),
        100.0 * slots as f64 / total as f64,
        (slots as u64 * ebytes) as f64 / 1048576.0,
        100.0 * covered as f64 / routed.max(1) as f64
    );
    for (l, kept) in sel.per_layer.iter().enumerate() {
        println!("layer {l}: {kept:?}");
    }
    let file = PlanFile {
        format: 1,
        model_id: engine.model_id().to_string(),
        board: board.name.clone(),
        budget_bytes: slots as u64 * ebytes + lowp_bytes,
        experts: sel.ranked.clone(),
        per_layer: sel.per_layer.clone(),
    };
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| a.bundle.join("plans").join(format!("{}.json", board.name)));
    if let Some(d) = out.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&file)?)?;
    println!("plan written to {}", out.display());
    if let Some(dev) = &a.device_bundle {
        let size = plan::device_bundle::write_device_bundle(
            &engine.bundle,
            &sel.per_layer,
            lowp.as_ref(),
            dev,
            a.force,
        )?;
        println!(
            "device bundle written to {} (experts file {:.1} MB)",
            dev.display(),
            size as f64 / 1048576.0
        );
    }
    Ok(())
}
