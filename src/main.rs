//! The `moe-edge` binary: parse the command line, set up logging, load the
//! board, run one subcommand. Everything else lives in the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use moe_edge::bundle::{Verify, DEFAULT_BUNDLE};
use moe_edge::config::Board;
use moe_edge::engine::{Engine, GenParams};

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
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
}

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Chat(a) => chat(a),
    }
}

fn chat(a: ChatArgs) -> anyhow::Result<()> {
    let board = Board::load(&a.board)?;
    let engine = Engine::load(&a.bundle, &board, Verify::Full)
        .with_context(|| format!("loading bundle {}", a.bundle.display()))?;
    let text = a
        .text
        .context("give the message to send, e.g. moe-edge chat \"turn on the lights\"")?;
    let prompt = format!("<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n");
    let mut g = engine.begin(
        &prompt,
        GenParams {
            max_tokens: a.max_tokens,
            ..GenParams::default()
        },
    )?;
    let f = engine.run(&mut g, |_| {})?;
    println!("{}", f.text);
    eprintln!(
        "served_by=device prompt_tokens={} completion_tokens={} prefill_ms={:.2} decode_ms={:.2} experts={:?} json={}",
        f.prompt_tokens, f.completion_tokens, f.timings.prefill_ms, f.timings.decode_ms, f.experts, a.json
    );
    Ok(())
}
