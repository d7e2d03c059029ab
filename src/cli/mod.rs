//! The command line: one argument struct per subcommand and one small
//! function each that turns flags into the library's options and makes the
//! library call. Binary only; no business logic here.
//!
//! `model.rs`: subcommands that run the model in this process (chat, eval,
//! bench, plan, import, boards, golden). `mqtt.rs`: the ones that talk over
//! a broker (serve, host, ask).

mod model;
mod mqtt;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "moe-edge",
    version,
    about = "Mixture-of-Experts LLM daemon for edge boards"
)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the model in-process (no broker): print the reply, who served it and timings.
    Chat(model::ChatArgs),
    /// Accuracy of a bundle on a labelled split (exact match, fallback precision/recall).
    Eval(model::EvalArgs),
    /// Benchmarks: prints a table, writes JSON with --json.
    Bench(model::BenchArgs),
    /// Pick the experts a board keeps from routing statistics of calibration requests.
    Plan(model::PlanArgs),
    /// The daemon: OpenAI chat completions over MQTT 5 (embedded broker unless --broker).
    Serve(mqtt::ServeArgs),
    /// Send one chat request to a running daemon and print the reply.
    Ask(mqtt::AskArgs),
    /// The host side: the full model (all experts) behind an OpenAI-compatible
    /// HTTP endpoint (--http); falls back to the board's cloud, if any.
    Host(mqtt::HostArgs),
    /// Convert a Hugging Face MoE checkpoint (config.json, *.safetensors, tokenizer.json) to a bundle.
    Import(model::ImportArgs),
    /// Print the resolved plan of a board (and a bundle): backend, providers, threads,
    /// memory split, how many experts fit, limits. Every built-in board without --board.
    Boards(model::BoardsArgs),
    /// Replay golden vectors (golden.safetensors) through a bundle: greedy tokens and
    /// max |Δlogit| per prompt as JSON; exit status 1 on a mismatch.
    #[command(hide = true)]
    Golden(model::GoldenArgs),
}

/// Runs the subcommand.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Chat(a) => model::chat(a),
        Cmd::Eval(a) => model::eval(a),
        Cmd::Bench(a) => model::bench(a),
        Cmd::Plan(a) => model::plan(a),
        Cmd::Import(a) => model::import(a),
        Cmd::Boards(a) => model::boards(a),
        Cmd::Golden(a) => model::golden(a),
        Cmd::Serve(a) => mqtt::serve(a),
        Cmd::Ask(a) => mqtt::ask(a),
        Cmd::Host(a) => mqtt::host(a),
    }
}

use moe_edge::openai::{ChatRequest, Message, Tool};

/// A chat request of one user message (after an optional system message).
fn request(
    system: Option<String>,
    text: String,
    tools: Vec<Tool>,
    max_tokens: Option<u64>,
) -> ChatRequest {
    let mut messages: Vec<Message> = system.into_iter().map(Message::system).collect();
    messages.push(Message::user(text));
    ChatRequest {
        messages,
        tools: (!tools.is_empty()).then_some(tools),
        max_completion_tokens: max_tokens,
        ..ChatRequest::default()
    }
}

/// Writes `value` as pretty JSON to `path`, if given.
fn write_json(path: Option<&std::path::Path>, value: &impl serde::Serialize) -> anyhow::Result<()> {
    if let Some(p) = path {
        std::fs::write(p, serde_json::to_string_pretty(value)?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
    }
    Ok(())
}
