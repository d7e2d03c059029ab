//! OpenAI chat-completions on top of the generation loop: a validated
//! request becomes a rendered prompt and decoding parameters (`ChatJob`);
//! the finished text becomes a `chat.completion` with tool calls parsed and
//! validated, the `x_moe_edge` extension filled, and a fallback reason when
//! the device should not answer. Scheduling and transport are the caller's.
//!
//! Owns: chat preparation and completion (here), prompt templates
//! (`template`), tool-call parsing and checking (`toolcall`), the in-process
//! `moe-edge chat` (`local`).
//! Does not own: the generation loop (`engine`), the wire types (`openai`),
//! schema validation (`schema`).

pub mod confidence;
pub mod local;
pub mod template;
pub mod toolcall;

use std::time::Instant;

use self::toolcall::{parse_and_check, FallbackReason, StreamSplitter};
use crate::config::Board;
use crate::constrain::request::spec_for;
use crate::constrain::Spec;
use crate::engine::generate::{
    Engine, FinishReason as GenFinish, Finished, GenParams, Generation, TokenLogprob,
};
use crate::engine::EngineError;
use crate::openai::{
    ApiError, ChatCompletion, EdgeInfo, ErrorCode, ExpertStats, FinishReason, ServedBy, Timings,
    Usage, ValidRequest,
};

/// One chat request being generated.
#[derive(Debug)]
pub struct ChatJob {
    pub id: String,
    pub created: u64,
    pub request: ValidRequest,
    pub gen: Generation,
    /// For streaming: releases content text, holds back call markup.
    pub splitter: StreamSplitter,
    pub accepted: Instant,
    pub started: Instant,
    /// The board's rules this request was started under.
    pub policy: ChatPolicy,
}

/// What the board decides for every chat request, given when the request is
/// started so that no caller can forget part of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChatPolicy {
    /// `limits.max_tokens`: a request's `max_tokens` is capped to it.
    pub max_tokens_cap: usize,
    /// `cascade.min_confidence` (0: off); a request's `x-min-confidence`
    /// replaces it.
    pub min_confidence: f32,
    /// `tools.ground_free_strings`: free-text string arguments are copied
    /// from the request unless the schema says `"x-grounded": false`.
    pub ground_free_strings: bool,
}

impl ChatPolicy {
    /// The policy of `board`.
    pub fn of(board: &Board) -> Self {
        ChatPolicy {
            max_tokens_cap: board.limits.max_tokens,
            min_confidence: board.cascade.min_confidence,
            ground_free_strings: board.tools.ground_free_strings,
        }
    }

    /// A `moe-edge host` answering for devices: the board's cap, and neither
    /// the device's gate nor its grounding (a request that reaches the host
    /// is decoded as the app sent it; `x-min-confidence` still applies).
    pub fn for_host(board: &Board) -> Self {
        ChatPolicy::capped(board.limits.max_tokens)
    }

    /// A cap on new tokens, no confidence gate, no default grounding.
    pub fn capped(max_tokens_cap: usize) -> Self {
        ChatPolicy {
            max_tokens_cap,
            min_confidence: 0.0,
            ground_free_strings: false,
        }
    }
}

/// A reply's confidence, and whether it comes from the bundle's calibration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Confidence {
    pub value: f32,
    pub calibrated: bool,
}

/// The device's answer, and whether it should go up the cascade instead.
#[derive(Debug, Clone)]
pub struct ChatOutcome {
    pub completion: ChatCompletion,
    pub fallback: Option<FallbackReason>,
}

/// Maps an engine failure to the OpenAI error an app sees.
pub fn api_error(e: &EngineError) -> ApiError {
    match e {
        EngineError::ContextLength { .. } => {
            ApiError::new(ErrorCode::ContextLengthExceeded, e.to_string()).with_param("messages")
        }
        EngineError::Experts(crate::experts::ExpertError::Unreachable { .. }) => {
            ApiError::new(ErrorCode::NoRoute, e.to_string())
        }
        EngineError::Invalid(_) => ApiError::new(ErrorCode::InvalidRequest, e.to_string()),
        _ => ApiError::internal(e.to_string()),
    }
}

impl Engine {
    /// Decoding parameters for a request under the board's `max_tokens` cap.
    pub fn gen_params(&self, req: &ValidRequest, cap: usize) -> GenParams {
        GenParams {
            max_tokens: req
                .max_tokens
                .map(|m| m as usize)
                .unwrap_or(cap)
                .min(cap)
                .max(1),
            temperature: req.temperature.unwrap_or(0.0) as f32,
            top_p: req.top_p.unwrap_or(1.0) as f32,
            seed: req.seed.map(|s| s as u64),
            stop: req.stop.clone(),
            constraint: None,
            logprobs: req.logprobs,
        }
    }

    /// The decoding constraint of a request: its tools' schemas and
    /// tool_choice, or its JSON `response_format` (`None`: unconstrained).
    /// With `ground_free_strings`, the tools' free-text strings are copied
    /// from the request unless their schema says `"x-grounded": false`.
    pub fn constraint_spec(
        &self,
        req: &ValidRequest,
        ground_free_strings: bool,
    ) -> Result<Option<Spec>, ApiError> {
        let grounding = req.grounding_text();
        let mut grounded;
        let tools = if ground_free_strings && !req.tools().is_empty() {
            grounded = req.tools().to_vec();
            crate::constrain::request::ground_free_strings(&mut grounded);
            grounded.as_slice()
        } else {
            req.tools()
        };
        spec_for(
            tools,
            &req.tool_choice,
            req.parallel_tool_calls,
            req.response_format.as_ref(),
            Some(&grounding),
        )
        .map_err(|e| {
            let param = if req.tools().is_empty() {
                "response_format"
            } else {
                "tools"
            };
            ApiError::new(ErrorCode::InvalidRequest, e.to_string()).with_param(param)
        })
    }

    /// What the model thought of each part of the calls in a finished
    /// reply (`None` when it holds none, or the tokenizer has no call markers).
    pub fn call_signals(
        &self,
        f: &Finished,
        tools: &[crate::openai::Tool],
    ) -> Option<confidence::Signals> {
        let vocab = self.constrain_vocab().ok()?;
        confidence::Signals::of(&f.token_stats, |t| vocab.token_bytes(t), tools)
    }

    /// How sure the device is of a finished reply: with a call's signals and
    /// a calibrated bundle, the probability that the call is right; else the
    /// least probability of a token it wrote.
    pub fn confidence(&self, f: &Finished, signals: Option<&confidence::Signals>) -> Confidence {
        match (&self.calibration, signals) {
            (Some(cal), Some(s)) => Confidence {
                value: cal.score(s) as f32,
                calibrated: true,
            },
            _ => Confidence {
                value: f.min_token_p,
                calibrated: false,
            },
        }
    }

    /// Render the prompt and start generating. Errors are the app's (context too long, ...).
    pub fn prepare_chat(
        &self,
        request: ValidRequest,
        id: String,
        policy: ChatPolicy,
    ) -> Result<ChatJob, ApiError> {
        let accepted = Instant::now();
        let prompt = self::template::render_chat_with_tools(
            &request.text_messages(),
            request.tools(),
            self.bundle.manifest.chat_template.as_deref(),
        )
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.to_string()))?;
        let mut params = self.gen_params(&request, policy.max_tokens_cap);
        params.constraint = self.constraint_spec(&request, policy.ground_free_strings)?;
        let gen = self.begin(&prompt, params).map_err(|e| api_error(&e))?;
        Ok(ChatJob {
            id,
            created: crate::openai::response::unix_now(),
            request,
            gen,
            splitter: StreamSplitter::new(),
            accepted,
            started: Instant::now(),
            policy,
        })
    }

    /// Turn finished text into the app's reply.
    pub fn chat_outcome(&self, job: &ChatJob, f: &Finished) -> ChatOutcome {
        let parsed = parse_and_check(&f.text, job.request.tools(), &job.request.tool_choice);
        let floor = job
            .request
            .min_confidence
            .unwrap_or(job.policy.min_confidence);
        // the signals are read only where they are used: calls, and a calibration
        let signals = (self.calibration.is_some() && !parsed.calls.is_empty())
            .then(|| self.call_signals(f, job.request.tools()))
            .flatten();
        let confidence = self.confidence(f, signals.as_ref());
        let fallback = parsed.needs_fallback().or_else(|| {
            // Only calls are gated: the device acts on them, and a long text
            // answer has some unlikely token almost surely.
            (!parsed.calls.is_empty() && confidence.value < floor).then_some(
                FallbackReason::LowConfidence {
                    p: confidence.value,
                    floor,
                    calibrated: confidence.calibrated,
                },
            )
        });
        let (message, mut finish) = parsed.to_message(&job.id);
        if f.finish_reason == GenFinish::Length && finish == FinishReason::Stop {
            finish = FinishReason::Length;
        }
        let usage = Usage::new(f.prompt_tokens as u64, f.completion_tokens as u64)
            .with_cached(f.cached_prompt_tokens as u64);
        let total = job.accepted.elapsed().as_secs_f64() * 1e3;
        let decode_s = f.timings.decode_ms / 1e3;
        let info = EdgeInfo {
            served_by: ServedBy::Device,
            experts: ExpertStats {
                resident: f.experts.resident + f.experts.paged,
                remote: f.experts.remote,
                substituted: f.experts.substituted,
                low_precision: f.experts.low_precision,
            },
            timings_ms: Timings {
                queue: (job.started - job.accepted).as_secs_f64() * 1e3,
                prefill: f.timings.prefill_ms,
                decode: f.timings.decode_ms,
                total,
            },
            tokens_per_second: if decode_s > 0.0 {
                f.completion_tokens.saturating_sub(1) as f64 / decode_s
            } else {
                0.0
            },
            fallback_reason: fallback.as_ref().map(|r| r.to_string()),
            tried: Vec::new(),
            cached_prompt_tokens: Some(f.cached_prompt_tokens as u64),
            confidence: Some(f64::from(confidence.value)),
        };
        let mut completion = ChatCompletion::new(
            job.id.clone(),
            self.model_id().to_string(),
            job.created,
            message,
            finish,
            usage,
        )
        .with_edge(info);
        if let (Some(lp), Some(choice)) = (&f.logprobs, completion.choices.first_mut()) {
            choice
                .extra
                .insert("logprobs".into(), self.logprobs_json(lp));
        }
        ChatOutcome {
            completion,
            fallback,
        }
    }

    /// OpenAI's `choices[].logprobs`: every generated token (tool-call markup
    /// included: the device model writes calls as text) with its log
    /// probability and the alternatives asked for. A token's `bytes` are
    /// exact from the byte-level vocabulary when there is one (a token may
    /// end inside a UTF-8 character; `token` is then lossy), else its decoded text.
    pub fn logprobs_json(&self, lp: &[TokenLogprob]) -> serde_json::Value {
        let vocab = self.constrain_vocab().ok();
        let entry = |id: u32, logprob: f32| {
            let bytes = match &vocab {
                Some(v) if !v.is_special(id) => v.token_bytes(id).to_vec(),
                _ => self
                    .tokenizer
                    .decode(&[id], false)
                    .unwrap_or_default()
                    .into_bytes(),
            };
            let token = String::from_utf8_lossy(&bytes).into_owned();
            serde_json::json!({"token": token, "logprob": logprob, "bytes": bytes})
        };
        let content: Vec<serde_json::Value> = lp
            .iter()
            .map(|t| {
                let mut e = entry(t.token, t.logprob);
                e["top_logprobs"] = t.top.iter().map(|&(id, l)| entry(id, l)).collect();
                e
            })
            .collect();
        serde_json::json!({"content": content, "refusal": null})
    }

    /// Run a request to its end on the calling thread.
    pub fn complete_chat(
        &self,
        request: ValidRequest,
        id: String,
        policy: ChatPolicy,
    ) -> Result<ChatOutcome, ApiError> {
        let mut job = self.prepare_chat(request, id, policy)?;
        let f = self.run(&mut job.gen, |_| {}).map_err(|e| api_error(&e))?;
        Ok(self.chat_outcome(&job, &f))
    }
}
