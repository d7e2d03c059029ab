//! `moe-edge chat`: the model in-process, no broker. Requests are validated
//! and completed as the daemon would (the board's token cap and confidence
//! gate apply); replies print as text or JSON.
//!
//! Owns: numbering local completions, batch lines, the text rendering of a
//! reply shared with `moe-edge ask`. Does not own validation (`openai`) or
//! completion (the parent module).

use std::path::Path;

use serde_json::Value;

use super::ChatPolicy;
use crate::bundle::Verify;
use crate::config::Board;
use crate::engine::{Engine, EngineError};
use crate::openai::{ApiError, ChatCompletion, ChatRequest, RequestLimits};

/// An engine answering requests in this process.
pub struct LocalChat {
    engine: Engine,
    policy: ChatPolicy,
    limits: RequestLimits,
    n: u64,
}

impl LocalChat {
    pub fn load(bundle: &Path, board: &Board) -> Result<LocalChat, EngineError> {
        let engine = Engine::load(bundle, board, Verify::Full).map_err(|e| {
            EngineError::Invalid(format!("loading bundle {}: {e}", bundle.display()))
        })?;
        Ok(LocalChat {
            engine,
            policy: ChatPolicy::of(board),
            limits: RequestLimits::default(),
            n: 0,
        })
    }

    /// Validates and completes one request.
    pub fn complete(&mut self, req: ChatRequest) -> Result<ChatCompletion, ApiError> {
        self.n += 1;
        let id = format!("chatcmpl-local-{}", self.n);
        let valid = req.validate(&self.limits)?;
        Ok(self
            .engine
            .complete_chat(valid, id, self.policy)?
            .completion)
    }

    /// One JSONL line of `--batch`: the chat.completion or the error, as JSON.
    pub fn batch_line(&mut self, line: &str) -> Value {
        let out = ChatRequest::parse(line.as_bytes(), self.limits.max_body_bytes)
            .and_then(|req| self.complete(req));
        match out {
            Ok(c) => serde_json::to_value(&c).expect("a completion serialises"),
            Err(e) => e.to_value(),
        }
    }
}

/// A reply for people: what `chat` and `ask` print.
pub struct Rendered {
    /// One `tool_call name(arguments)` line per call.
    pub calls: String,
    /// The text, if any, with a newline.
    pub content: String,
    /// `served_by=... fallback=... experts=... timings_ms=...`.
    pub info: String,
}

pub fn render_text(c: &ChatCompletion) -> Rendered {
    let mut r = Rendered {
        calls: String::new(),
        content: String::new(),
        info: String::new(),
    };
    if let Some(m) = c.message() {
        for call in m.tool_calls() {
            r.calls += &format!(
                "tool_call {}({})\n",
                call.function.name, call.function.arguments
            );
        }
        if let Some(t) = m.content.as_deref().filter(|t| !t.is_empty()) {
            r.content = format!("{t}\n");
        }
    }
    if let Some(x) = &c.x_moe_edge {
        r.info = format!(
            "served_by={} fallback={} experts={} timings_ms={} tokens_per_second={:.1}{}{}",
            x.served_by.as_str(),
            x.fallback_reason.as_deref().unwrap_or("-"),
            j(&x.experts),
            j(&x.timings_ms),
            x.tokens_per_second,
            x.confidence
                .map(|p| format!(" confidence={p:.3}"))
                .unwrap_or_default(),
            if x.tried.is_empty() {
                String::new()
            } else {
                format!(" tried={}", x.tried.join(","))
            }
        );
    }
    r
}

fn j<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}
