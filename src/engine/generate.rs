//! The generation loop as a state machine: `Engine::begin` tokenises a
//! prompt, takes what the prefix cache holds of it and checks the context;
//! each `Engine::step` runs one prefill chunk or one decode step and returns
//! the new text. The caller decides the order of steps across requests
//! (token-level interleaving in `serve`).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokenizers::Tokenizer;

use super::kv::KvCache;
use super::model::{ExpertCounts, Model, StepTimes};
use super::prefix::{PrefixCache, PrefixStats};
use super::sampler::{logprobs, token_stat, Sampler, TokenStat};
use super::EngineError;
use crate::bundle::{Bundle, SpecialTokens, Verify};
use crate::config::Board;
use crate::constrain::{ConstrainError, Constraint, MaskStats, Spec, Vocab};

/// Decoding parameters of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct GenParams {
    pub max_tokens: usize,
    /// 0 = greedy (the default: tool calls want the most likely answer).
    pub temperature: f32,
    pub top_p: f32,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    /// Constrained decoding (tool schemas, tool_choice, response_format); `None`: free.
    pub constraint: Option<Spec>,
    /// Record each generated token's log probability and this many alternatives.
    pub logprobs: Option<usize>,
}

impl Default for GenParams {
    fn default() -> Self {
        GenParams {
            max_tokens: 128,
            temperature: 0.0,
            top_p: 1.0,
            seed: None,
            stop: Vec::new(),
            constraint: None,
            logprobs: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// End of turn or a stop sequence.
    Stop,
    /// `max_tokens` or the context limit reached.
    Length,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Timings {
    pub prefill_ms: f64,
    pub decode_ms: f64,
    /// Time to first token, from `begin`.
    pub ttft_ms: f64,
    pub graphs_ms: f64,
    pub experts_ms: f64,
    pub remote_wait_ms: f64,
    /// Time spent computing constraint masks (0 when unconstrained).
    pub mask_ms: f64,
    /// Masks computed (one per generated token when constrained).
    pub masks: u64,
}

/// One generated token's log probability (log-softmax over the tokens the
/// constraint allowed, temperature 1) and the most likely alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub token: u32,
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

/// The end of a generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub text: String,
    /// The lowest probability the model gave a token it wrote (softmax over
    /// the tokens the constraint allowed, temperature 1); 1.0 when nothing
    /// was generated. The cascade's confidence gate reads it.
    pub min_token_p: f32,
    /// Each generated token's log probability, when asked (`GenParams::logprobs`).
    pub logprobs: Option<Vec<TokenLogprob>>,
    /// Every generated token (the end-of-turn one too) and what the model
    /// thought of it, for the reply's confidence.
    pub token_stats: Vec<TokenStat>,
    pub finish_reason: FinishReason,
    pub prompt_tokens: usize,
    /// Prompt tokens whose KV came from the prefix cache.
    pub cached_prompt_tokens: usize,
    pub completion_tokens: usize,
    pub experts: ExpertCounts,
    pub timings: Timings,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// New text (may be empty while a multi-byte character or a possible stop sequence is held back).
    Delta(String),
    Done(Finished),
}

#[derive(Debug)]
enum Phase {
    Prefill,
    Decode,
    Done,
}

/// One request in flight.
#[derive(Debug)]
pub struct Generation {
    kv: KvCache,
    prompt: Vec<u32>,
    /// Leading prompt tokens taken from the prefix cache.
    reused: usize,
    generated: Vec<u32>,
    min_p: f32,
    logprobs: Vec<TokenLogprob>,
    stats: Vec<TokenStat>,
    next: Option<u32>,
    sampler: Sampler,
    constraint: Option<Constraint>,
    params: GenParams,
    phase: Phase,
    emitted: usize,
    counts: ExpertCounts,
    times: StepTimes,
    started: Instant,
    prefill: Duration,
    decode: Duration,
    ttft: Option<Duration>,
}

impl Generation {
    pub fn prompt_tokens(&self) -> usize {
        self.prompt.len()
    }
    /// Leading prompt tokens whose KV came from the prefix cache.
    pub fn cached_prompt_tokens(&self) -> usize {
        self.reused
    }
    /// The most new tokens this generation may write (its request's
    /// `max_tokens` under the board's cap).
    pub fn max_new_tokens(&self) -> usize {
        self.params.max_tokens
    }
    pub fn generated_tokens(&self) -> &[u32] {
        &self.generated
    }
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }
    /// Mask work so far (zero when unconstrained).
    pub fn mask_stats(&self) -> MaskStats {
        self.constraint
            .as_ref()
            .map(|c| c.stats)
            .unwrap_or_default()
    }
}

pub struct Engine {
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub special: SpecialTokens,
    pub bundle: Bundle,
    /// KV of prompt prefixes shared between requests; its block size is the
    /// prefill chunk.
    prefix: std::sync::Mutex<PrefixCache>,
    /// The tokenizer as bytes for constrained decoding, built on first use.
    vocab: std::sync::OnceLock<Result<Arc<Vocab>, ConstrainError>>,
    /// The bundle's confidence calibration (`calibration.json`), if any.
    pub calibration: Option<crate::chat::confidence::Calibration>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("model", &self.model)
            .finish()
    }
}

/// The bundle's confidence calibration: read only when the manifest lists
/// it (so it was checked with the rest); a stray file is ignored.
fn read_calibration(
    bundle: &Bundle,
) -> Result<Option<crate::chat::confidence::Calibration>, EngineError> {
    use crate::chat::confidence::{Calibration, CALIBRATION_FILE};
    let listed = bundle
        .manifest
        .files
        .iter()
        .any(|f| f.path == CALIBRATION_FILE);
    if !listed {
        if bundle.path(CALIBRATION_FILE).exists() {
            log::warn!(
                "calibration ignored path={} reason=not_in_manifest (write it with moe-edge eval --calibrate)",
                bundle.path(CALIBRATION_FILE).display()
            );
        }
        return Ok(None);
    }
    Calibration::read(&bundle.dir).map_err(|e| EngineError::Bundle(e.to_string()))
}

impl Engine {
    /// Open, verify (sizes, and sha256 when `verify` is Full) and load a bundle for a board.
    pub fn load(dir: &Path, board: &Board, verify: Verify) -> Result<Engine, EngineError> {
        let uses = if board.backend.kind == crate::runtime::BackendKind::Native {
            crate::bundle::Uses::DenseWeights
        } else {
            crate::bundle::Uses::All
        };
        let bundle = Bundle::open_for(dir, verify, uses)?;
        let tokenizer = Tokenizer::from_file(bundle.tokenizer_path()).map_err(|e| {
            EngineError::Bundle(format!("{}: {e}", bundle.tokenizer_path().display()))
        })?;
        let model = Model::load(&bundle, board)?;
        let calibration = read_calibration(&bundle)?;
        Ok(Engine {
            calibration,
            special: bundle.manifest.special_tokens.clone(),
            prefix: std::sync::Mutex::new(PrefixCache::new(
                board.kv.block_tokens,
                board.kv.prefix_cache_bytes,
            )),
            model,
            tokenizer,
            bundle,
            vocab: std::sync::OnceLock::new(),
        })
    }

    /// The vocabulary as bytes with its trie (built once).
    pub fn constrain_vocab(&self) -> Result<Arc<Vocab>, ConstrainError> {
        self.vocab
            .get_or_init(|| Vocab::from_tokenizer(&self.tokenizer, &self.special.eos).map(Arc::new))
            .clone()
    }

    fn prefix_cache(&self) -> std::sync::MutexGuard<'_, PrefixCache> {
        self.prefix.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The prefix cache's figures.
    pub fn prefix_stats(&self) -> PrefixStats {
        self.prefix_cache().stats()
    }

    /// Forget every cached prefix.
    pub fn clear_prefix_cache(&self) {
        self.prefix_cache().clear()
    }

    pub fn model_id(&self) -> &str {
        &self.bundle.manifest.model_id
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>, EngineError> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String, EngineError> {
        self.tokenizer
            .decode(ids, false)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))
    }

    /// The fewest leading tokens of `ids` whose text reaches `bytes` bytes.
    fn tokens_covering(&self, ids: &[u32], bytes: usize) -> Result<usize, EngineError> {
        let (mut lo, mut hi) = (0, ids.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.decode(&ids[..mid])?.len() >= bytes {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Ok(lo)
    }

    /// Start a generation for a rendered prompt. Fails at once when the prompt
    /// does not leave room for one generated token.
    pub fn begin(&self, prompt: &str, params: GenParams) -> Result<Generation, EngineError> {
        let ids = self.encode(prompt)?;
        self.begin_tokens(ids, params)
    }

    pub fn begin_tokens(
        &self,
        ids: Vec<u32>,
        params: GenParams,
    ) -> Result<Generation, EngineError> {
        let started = Instant::now();
        let limit = self.model.max_context();
        if ids.is_empty() {
            return Err(EngineError::Invalid("empty prompt".into()));
        }
        if ids.len() >= limit {
            return Err(EngineError::ContextLength {
                needed: ids.len() + 1,
                limit,
            });
        }
        // A tokenizer without the tool-call markers as single tokens (a model
        // not trained for this call format) cannot be constrained: it decodes
        // freely and its output is still parsed and validated as usual.
        let constraint = match (
            &params.constraint,
            params.constraint.as_ref().map(|_| self.constrain_vocab()),
        ) {
            (Some(spec), Some(Ok(vocab))) => Some(Constraint::new(spec.clone(), vocab)),
            (Some(_), Some(Err(e))) => {
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    log::warn!(
                        "constraint unavailable, decoding unconstrained model={} reason=\"{e}\"",
                        self.model_id()
                    )
                });
                None
            }
            _ => None,
        };
        let mut kv = self.model.new_kv();
        for b in self.prefix_cache().lookup(&ids) {
            kv.push_block(&b);
        }
        Ok(Generation {
            constraint,
            reused: kv.len(),
            kv,
            sampler: Sampler::new(params.temperature, params.top_p, params.seed),
            prompt: ids,
            generated: Vec::new(),
            min_p: 1.0,
            logprobs: Vec::new(),
            stats: Vec::new(),
            next: None,
            params,
            phase: Phase::Prefill,
            emitted: 0,
            counts: ExpertCounts::default(),
            times: StepTimes::default(),
            started,
            prefill: Duration::ZERO,
            decode: Duration::ZERO,
            ttft: None,
        })
    }

    /// Run one step: a prefill chunk (until the prompt is in) or one decode step.
    pub fn step(&self, g: &mut Generation) -> Result<Step, EngineError> {
        let clock = Instant::now();
        let logits = match g.phase {
            Phase::Done => return Err(EngineError::Invalid("generation already finished".into())),
            Phase::Prefill => {
                // One chunk per step, on the prefix cache's block boundaries
                // (absolute positions), so a warm prompt runs the same chunks
                // as a cold one and other requests' steps interleave.
                let block = self.prefix_cache().block();
                let (from, len) = (g.kv.len(), g.prompt.len());
                let to = len.min((from / block + 1) * block);
                if to < len {
                    self.model.extend(
                        &mut g.kv,
                        &g.prompt[from..to],
                        &mut g.counts,
                        &mut g.times,
                    )?;
                    g.prefill += clock.elapsed();
                    return Ok(Step::Delta(String::new()));
                }
                let l = self.model.forward(
                    &mut g.kv,
                    &g.prompt[from..],
                    false,
                    &mut g.counts,
                    &mut g.times,
                    None,
                )?;
                // KV computed with substituted experts is not what a prompt
                // gets when the experts are there: not for reuse.
                if g.counts.substituted == 0 {
                    self.prefix_cache().insert(&g.prompt, &g.kv);
                }
                g.prefill += clock.elapsed();
                g.phase = Phase::Decode;
                l
            }
            Phase::Decode => {
                let tok = g.next.take().expect("a sampled token before decode");
                let l = self.model.forward(
                    &mut g.kv,
                    &[tok],
                    false,
                    &mut g.counts,
                    &mut g.times,
                    None,
                )?;
                g.decode += clock.elapsed();
                l
            }
        };
        let logits = logits.as_f32().unwrap_or(&[]);
        // one log-softmax per token: the confidence always, the entry for
        // `logprobs` when asked
        let want = g.params.logprobs;
        let record = |g_min: &mut f32, tok: u32, allowed: Option<&dyn Fn(u32) -> bool>| {
            let stat = token_stat(logits, tok, allowed);
            *g_min = g_min.min(stat.p);
            let lp = want.map(|n| {
                let (logprob, top) = logprobs(logits, tok, allowed, n);
                TokenLogprob {
                    token: tok,
                    logprob,
                    top,
                }
            });
            (stat, lp)
        };
        let mut recorded = None;
        let tok = match g.constraint.as_mut() {
            None => {
                let tok = g.sampler.sample(logits, None);
                recorded = Some(record(&mut g.min_p, tok, None));
                tok
            }
            Some(c) => {
                let tok = if let Some(t) = c.divert(logits) {
                    log::debug!(
                        "constraint: call under tool_choice none diverted to the fallback marker"
                    );
                    t
                } else {
                    let mask = c.mask();
                    if mask.is_empty() {
                        // cannot happen with a compiled grammar; end the turn rather than loop
                        log::warn!("constraint allows no token; ending the generation");
                        self.special.eos.first().copied().unwrap_or(0)
                    } else {
                        let allowed = |t| mask.get(t);
                        let tok = g.sampler.sample(logits, Some(&allowed));
                        recorded = Some(record(&mut g.min_p, tok, Some(&allowed)));
                        tok
                    }
                };
                if let Err(e) = c.advance(tok) {
                    log::warn!("constraint: {e}");
                }
                tok
            }
        };
        if g.ttft.is_none() {
            g.ttft = Some(g.started.elapsed());
        }
        let (stat, lp) = recorded.unzip();
        g.stats.extend(stat);
        if self.special.eos.contains(&tok) {
            return self.finish(g, FinishReason::Stop, None);
        }
        g.generated.push(tok);
        g.logprobs.extend(lp.flatten());
        let text = self.decode(&g.generated)?;
        if let Some(cut) = find_stop(&text, &g.params.stop) {
            // the stop sequence is not part of the reply, nor are the tokens that only spell it
            if g.params.logprobs.is_some() {
                let keep = self.tokens_covering(&g.generated, cut)?;
                g.logprobs.truncate(keep);
            }
            return self.finish(g, FinishReason::Stop, Some(text[..cut].to_string()));
        }
        if g.generated.len() >= g.params.max_tokens || g.kv.remaining() == 0 {
            return self.finish(g, FinishReason::Length, Some(text));
        }
        g.next = Some(tok);
        // Hold back an unfinished UTF-8 character or a possible stop-sequence prefix.
        let mut safe = text.len();
        if text.ends_with('\u{FFFD}') {
            safe = text.rfind('\u{FFFD}').unwrap_or(safe);
        }
        safe = safe.min(stop_prefix_start(&text, &g.params.stop));
        let delta = if safe > g.emitted
            && text.is_char_boundary(safe)
            && text.is_char_boundary(g.emitted)
        {
            let d = text[g.emitted..safe].to_string();
            g.emitted = safe;
            d
        } else {
            String::new()
        };
        Ok(Step::Delta(delta))
    }

    fn finish(
        &self,
        g: &mut Generation,
        reason: FinishReason,
        text: Option<String>,
    ) -> Result<Step, EngineError> {
        g.phase = Phase::Done;
        let text = match text {
            Some(t) => t,
            None => self.decode(&g.generated)?,
        };
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        Ok(Step::Done(Finished {
            text,
            min_token_p: g.min_p,
            logprobs: g.params.logprobs.map(|_| std::mem::take(&mut g.logprobs)),
            token_stats: std::mem::take(&mut g.stats),
            finish_reason: reason,
            prompt_tokens: g.prompt.len(),
            cached_prompt_tokens: g.reused,
            completion_tokens: g.generated.len(),
            experts: g.counts,
            timings: Timings {
                prefill_ms: ms(g.prefill),
                decode_ms: ms(g.decode),
                ttft_ms: g.ttft.map(ms).unwrap_or(0.0),
                graphs_ms: g.times.graphs_us as f64 / 1e3,
                experts_ms: g.times.experts_us as f64 / 1e3,
                remote_wait_ms: g.times.remote_wait_us as f64 / 1e3,
                mask_ms: g.mask_stats().nanos as f64 / 1e6,
                masks: g.mask_stats().masks,
            },
        }))
    }

    /// Run a generation to its end, calling `on_delta` with each piece of text.
    pub fn run(
        &self,
        g: &mut Generation,
        mut on_delta: impl FnMut(&str),
    ) -> Result<Finished, EngineError> {
        loop {
            match self.step(g)? {
                Step::Delta(d) => {
                    if !d.is_empty() {
                        on_delta(&d)
                    }
                }
                Step::Done(f) => {
                    if f.text.len() > g.emitted {
                        if let Some(rest) = f.text.get(g.emitted..) {
                            on_delta(rest);
                        }
                    }
                    return Ok(f);
                }
            }
        }
    }
}

/// Byte offset where the first stop sequence starts.
fn find_stop(text: &str, stops: &[String]) -> Option<usize> {
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
}

/// Where a suffix of `text` that could grow into a stop sequence starts (`text.len()` if none).
fn stop_prefix_start(text: &str, stops: &[String]) -> usize {
    let mut start = text.len();
    for s in stops.iter().filter(|s| !s.is_empty()) {
        for (i, _) in text.char_indices().rev().take(s.chars().count()) {
            if s.starts_with(&text[i..]) {
                start = start.min(i);
            }
        }
    }
    start
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_helpers() {
        let stops = vec!["</end>".to_string()];
        assert_eq!(find_stop("abc</end>x", &stops), Some(3));
        assert_eq!(find_stop("abc", &stops), None);
        assert_eq!(stop_prefix_start("abc</e", &stops), 3);
        assert_eq!(stop_prefix_start("abc", &stops), 3);
        assert_eq!(stop_prefix_start("ab<", &stops), 2);
    }
}
