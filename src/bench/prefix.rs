//! Prefix-cache benchmark: time to first token of voice commands that share
//! a long prompt prefix (an app's system prompt and its tools rendered by a
//! real chat template), cold (nothing cached) against warm (the prefix
//! cached by the app's previous command), and whether the warm replies are
//! exactly the cold ones.

use serde::Serialize;

use super::{percentile, BenchError};
use crate::chat::template::render_chat_with_tools;
use crate::engine::{Engine, Finished, GenParams};
use crate::openai::{Role, TextMessage, Tool};

/// What apps say after the shared prefix.
pub const COMMANDS: [&str; 8] = [
    "set the driver side to 22 degrees",
    "navigate to the airport",
    "call mom",
    "turn the fan up to 4",
    "play some jazz",
    "text Alice that I'm running ten minutes late",
    "open the sunroof halfway",
    "what's the weather in Kyoto tomorrow",
];

pub const SYSTEM: &str =
    "You are the in-car assistant. Answer with one tool call when a tool fits, else briefly.";

#[derive(Debug, Clone)]
pub struct PrefixBenchOptions {
    /// Keep the first N tokens of the rendered system prompt and tools.
    pub prefix_tokens: usize,
    pub commands: usize,
    pub gen_tokens: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct PrefixBenchReport {
    pub model_id: String,
    pub board: String,
    pub backend: String,
    pub template: String,
    pub tools: usize,
    /// Tokens of the shared prefix (system prompt and tools).
    pub prefix_tokens: usize,
    pub block_tokens: usize,
    /// Prompt tokens of each command (prefix included), p50.
    pub prompt_tokens_p50: f64,
    pub reused_tokens_p50: f64,
    pub cold_ttft_ms_p50: f64,
    pub warm_ttft_ms_p50: f64,
    pub cold_ttft_ms: Vec<f64>,
    pub warm_ttft_ms: Vec<f64>,
    /// Cold over warm, p50 over p50.
    pub speedup: f64,
    /// Every warm reply equal to its cold one (text and every log probability).
    pub exact: bool,
}

fn bench_err(e: impl std::fmt::Display) -> BenchError {
    BenchError::Other(e.to_string())
}

/// The prompt of one command: the first `prefix_tokens` tokens of the
/// rendered system prompt and tools, then the rest of the rendering (the
/// user turn and the assistant's opening).
fn prompt(
    engine: &Engine,
    template: &str,
    tools: &[Tool],
    command: &str,
    prefix_tokens: usize,
) -> Result<(Vec<u32>, usize), BenchError> {
    const MARK: &str = "\u{1}USER\u{1}";
    let msgs = [
        TextMessage::new(Role::System, SYSTEM),
        TextMessage::new(Role::User, MARK),
    ];
    let text = render_chat_with_tools(&msgs, tools, Some(template)).map_err(bench_err)?;
    let at = text
        .find(MARK)
        .ok_or_else(|| bench_err("the template dropped the user message"))?;
    // the user turn starts at the last role marker before the message
    let turn = text[..at].rfind("<|im_start|>").unwrap_or(at);
    let mut ids = engine.encode(&text[..turn]).map_err(bench_err)?;
    ids.truncate(prefix_tokens);
    let prefix = ids.len();
    let rest = text[turn..].replace(MARK, command);
    ids.extend(engine.encode(&rest).map_err(bench_err)?);
    Ok((ids, prefix))
}

fn run_one(engine: &Engine, ids: &[u32], gen_tokens: usize) -> Result<Finished, BenchError> {
    let params = GenParams {
        max_tokens: gen_tokens,
        logprobs: Some(3),
        ..GenParams::default()
    };
    let mut g = engine
        .begin_tokens(ids.to_vec(), params)
        .map_err(bench_err)?;
    engine.run(&mut g, |_| {}).map_err(bench_err)
}

pub fn run(
    engine: &Engine,
    board: &str,
    template_name: &str,
    text: &str,
    tools: &[Tool],
    o: &PrefixBenchOptions,
) -> Result<PrefixBenchReport, BenchError> {
    let n = o.commands.clamp(2, COMMANDS.len());
    let mut prompts = Vec::new();
    let mut prefix = 0;
    for c in &COMMANDS[..n] {
        let (ids, p) = prompt(engine, text, tools, c, o.prefix_tokens)?;
        prefix = p;
        prompts.push(ids);
    }
    // warm: the app's first command fills the cache, each later one reuses it
    engine.clear_prefix_cache();
    run_one(engine, &prompts[0], o.gen_tokens)?;
    let mut warm = Vec::new();
    for ids in &prompts[1..] {
        warm.push(run_one(engine, ids, o.gen_tokens)?);
    }
    // cold: nothing cached before each command
    let mut cold = Vec::new();
    for ids in &prompts[1..] {
        engine.clear_prefix_cache();
        cold.push(run_one(engine, ids, o.gen_tokens)?);
    }
    let exact = cold
        .iter()
        .zip(&warm)
        .all(|(c, w)| c.text == w.text && c.logprobs == w.logprobs);
    let ttft = |v: &[Finished]| v.iter().map(|f| f.timings.ttft_ms).collect::<Vec<_>>();
    let (cold_ttft, warm_ttft) = (ttft(&cold), ttft(&warm));
    let p50 = |v: &[f64]| percentile(v, 50.0);
    let as_f64 = |v: Vec<usize>| v.into_iter().map(|x| x as f64).collect::<Vec<_>>();
    let report = PrefixBenchReport {
        model_id: engine.model_id().to_string(),
        board: board.to_string(),
        backend: engine.model.backend_name().to_string(),
        template: template_name.to_string(),
        tools: tools.len(),
        prefix_tokens: prefix,
        block_tokens: engine.prefix_stats().block_tokens as usize,
        prompt_tokens_p50: p50(&as_f64(prompts[1..].iter().map(Vec::len).collect())),
        reused_tokens_p50: p50(&as_f64(
            warm.iter().map(|f| f.cached_prompt_tokens).collect(),
        )),
        cold_ttft_ms_p50: p50(&cold_ttft),
        warm_ttft_ms_p50: p50(&warm_ttft),
        speedup: p50(&cold_ttft) / p50(&warm_ttft).max(1e-9),
        cold_ttft_ms: cold_ttft,
        warm_ttft_ms: warm_ttft,
        exact,
    };
    Ok(report)
}

impl PrefixBenchReport {
    pub fn table(&self) -> String {
        format!(
            "| model | board | backend | prefix tokens (tools) | prompt tokens p50 | reused p50 | block | cold TTFT ms p50 | warm TTFT ms p50 | cold / warm | warm replies exact |\n\
             |---|---|---|---|---|---|---|---|---|---|---|\n\
             | {} | {} | {} | {} ({}) | {:.0} | {:.0} | {} | {:.1} | {:.1} | {:.1}× | {} |",
            self.model_id,
            self.board,
            self.backend,
            self.prefix_tokens,
            self.tools,
            self.prompt_tokens_p50,
            self.reused_tokens_p50,
            self.block_tokens,
            self.cold_ttft_ms_p50,
            self.warm_ttft_ms_p50,
            self.speedup,
            if self.exact { "yes" } else { "NO" },
        )
    }
}
