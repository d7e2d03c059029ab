//! Subcommands that run the model in this process: chat, eval, bench, plan,
//! import, boards, golden.

use std::path::PathBuf;

use anyhow::Context;

use moe_edge::bundle::DEFAULT_BUNDLE;
use moe_edge::config::Board;

#[derive(clap::Args)]
pub struct ImportArgs {
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

pub fn import(a: ImportArgs) -> anyhow::Result<()> {
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
    println!("{}", import(&opts)?);
    Ok(())
}

#[derive(clap::Args)]
pub struct ChatArgs {
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

pub fn chat(a: ChatArgs) -> anyhow::Result<()> {
    use moe_edge::chat::local::{render_text, LocalChat};
    let mut local = LocalChat::load(&a.bundle, &Board::load(&a.board)?)?;
    if let Some(batch) = &a.batch {
        let text = std::fs::read_to_string(batch)
            .with_context(|| format!("reading {}", batch.display()))?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            println!("{}", local.batch_line(line));
        }
        return Ok(());
    }
    let text = a
        .text
        .context("give the message to send, e.g. moe-edge chat \"turn on the lights\"")?;
    let tools = moe_edge::eval::load_tools(&a.tools)?;
    let req = super::request(a.system, text, tools, a.max_tokens);
    let out = local.complete(req);
    if a.json {
        let v = match &out {
            Ok(c) => serde_json::to_value(c)?,
            Err(e) => e.to_value(),
        };
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let r = render_text(&out.map_err(|e| anyhow::anyhow!("{}", e.message))?);
    print!("{}{}", r.calls, r.content);
    println!("{}", r.info);
    Ok(())
}

#[derive(clap::Args)]
pub struct EvalArgs {
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
    /// `x-grounded` (copied from the request); by default as the board's
    /// `tools.ground_free_strings` says.
    #[arg(long, conflicts_with = "ungrounded")]
    grounded: bool,
    /// Never mark free-text strings `x-grounded`, whatever the board says.
    #[arg(long)]
    ungrounded: bool,
    /// Fit the confidence calibration on this split (the validation split:
    /// never the one you report on) and write it into the bundle as
    /// calibration.json. Needs --constrain or --compare.
    #[arg(long)]
    calibrate: bool,
    /// Write every example's correctness and confidence signals here (JSONL;
    /// with --compare, of the constrained run).
    #[arg(long)]
    scores: Option<PathBuf>,
}

pub fn eval(a: EvalArgs) -> anyhow::Result<()> {
    let opts = moe_edge::eval::SplitOptions {
        board: Board::load(&a.board)?,
        bundle: a.bundle,
        data: a.data,
        limit: a.limit,
        constrain: a.constrain,
        compare: a.compare,
        tools: a.tools,
        grounded: match (a.grounded, a.ungrounded) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        calibrate: a.calibrate,
        scores: a.scores,
    };
    let (text, json) = moe_edge::eval::run_split(&opts)?;
    print!("{text}");
    super::write_json(a.json.as_deref(), &json)
}

#[derive(clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    mode: Option<moe_edge::bench::Mode>,
    #[arg(long, default_value = DEFAULT_BUNDLE, global = true)]
    bundle: PathBuf,
    #[arg(long, default_value = "host-cpu", global = true)]
    board: String,
    /// Write the report as JSON here.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
}

pub fn bench(a: BenchArgs) -> anyhow::Result<()> {
    let board = Board::load(&a.board)?;
    let r = moe_edge::bench::run(a.mode.unwrap_or_default(), &a.bundle, &board)?;
    println!("{}", r.text);
    super::write_json(a.json.as_deref(), &r.json)
}

#[derive(clap::Args)]
pub struct PlanArgs {
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

pub fn plan(a: PlanArgs) -> anyhow::Result<()> {
    let opts = moe_edge::plan::PlanOptions {
        board: Board::load(&a.board)?,
        bundle: a.bundle,
        calib: a.calib,
        fraction: a.fraction,
        lowp: a.lowp,
        gen_tokens: a.gen_tokens,
        out: a.out,
        device_bundle: a.device_bundle,
        force: a.force,
    };
    print!("{}", moe_edge::plan::run::run(&opts)?);
    Ok(())
}

#[derive(clap::Args)]
pub struct BoardsArgs {
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

pub fn boards(a: BoardsArgs) -> anyhow::Result<()> {
    let plans =
        moe_edge::config::describe::describe_boards(a.board.as_deref(), a.bundle.as_deref())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&plans)?);
    } else {
        let text: Vec<String> = plans.iter().map(|p| p.to_string()).collect();
        print!("{}", text.join("\n"));
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct GoldenArgs {
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

pub fn golden(a: GoldenArgs) -> anyhow::Result<()> {
    let board = Board::load(&a.board)?;
    let (out, ok) =
        moe_edge::eval::golden::check_bundle(&a.bundle, &a.golden, &board, a.tol, a.logits)?;
    println!("{out}");
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
