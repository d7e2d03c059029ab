//! Accuracy of a bundle on a labelled split (`models/assist-moe/data/*.jsonl`):
//! exact match of tool name + arguments (numbers as numbers, strings
//! trimmed), fallback precision/recall, per language and per tool. The same
//! rules as `models/forge/evaluate.py`, so the two can be compared.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::generate::{Engine, GenParams};
use super::EngineError;
use crate::constrain::Spec;
use crate::openai::{ChatRequest, Message};

/// One labelled example.
#[derive(Debug, Clone, Deserialize)]
pub struct Example {
    pub messages: Vec<Message>,
    /// `None`: the right answer is `<|fallback|>`.
    pub expected: Option<Value>,
    pub lang: String,
    pub scenario: String,
}

pub fn read_examples(path: &Path) -> Result<Vec<Example>, EngineError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| EngineError::Invalid(format!("{}: {e}", path.display())))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| EngineError::Invalid(format!("{}:{}: {e}", path.display(), i + 1)))
        })
        .collect()
}

/// How the model answered, by the evaluation's rules.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Fallback,
    Call(Value),
    Invalid(String),
}

/// The whole output must be one call, or the fallback marker.
pub fn classify(text: &str) -> Answer {
    let t = text.replace("<|im_end|>", "");
    let t = t.trim();
    if t.starts_with("<|fallback|>") {
        return Answer::Fallback;
    }
    if let Some(body) = t
        .strip_prefix("<tool_call>")
        .and_then(|r| r.strip_suffix("</tool_call>"))
    {
        if let Ok(v) = serde_json::from_str::<Value>(body) {
            if v.get("name").is_some_and(Value::is_string)
                && v.get("arguments").is_some_and(Value::is_object)
            {
                return Answer::Call(v);
            }
        }
    }
    Answer::Invalid(t.to_string())
}

fn norm(v: &Value) -> Value {
    match v {
        Value::Number(n) => n
            .as_f64()
            .map(|f| serde_json::json!(f))
            .unwrap_or(v.clone()),
        Value::String(s) => Value::String(s.trim().to_string()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, x)| (k.clone(), norm(x))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(norm).collect()),
        _ => v.clone(),
    }
}

pub fn is_correct(expected: &Option<Value>, answer: &Answer) -> bool {
    match (expected, answer) {
        (None, Answer::Fallback) => true,
        (Some(e), Answer::Call(c)) => {
            e.get("name") == c.get("name")
                && e.get("arguments").map(norm) == c.get("arguments").map(norm)
        }
        _ => false,
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    pub correct: usize,
    pub total: usize,
}

impl Tally {
    fn add(&mut self, ok: bool) {
        self.total += 1;
        self.correct += ok as usize;
    }
    pub fn pct(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            100.0 * self.correct as f64 / self.total as f64
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct EvalReport {
    pub overall: Tally,
    pub by_lang: BTreeMap<String, Tally>,
    pub by_tool: BTreeMap<String, Tally>,
    pub by_scenario: BTreeMap<String, Tally>,
    pub invalid: usize,
    pub fallback_tp: usize,
    pub fallback_fp: usize,
    pub fallback_fn: usize,
    pub generated_tokens: usize,
    pub decode_ms: f64,
    /// Time computing constraint masks, and how many (0 unconstrained).
    pub mask_ms: f64,
    pub masks: u64,
    /// (index, expected, output) of the first failures.
    pub failures: Vec<(usize, Option<Value>, String)>,
}

impl EvalReport {
    pub fn fallback_precision(&self) -> f64 {
        let d = self.fallback_tp + self.fallback_fp;
        if d == 0 {
            100.0
        } else {
            100.0 * self.fallback_tp as f64 / d as f64
        }
    }
    pub fn fallback_recall(&self) -> f64 {
        let d = self.fallback_tp + self.fallback_fn;
        if d == 0 {
            100.0
        } else {
            100.0 * self.fallback_tp as f64 / d as f64
        }
    }

    pub fn record(&mut self, i: usize, ex: &Example, text: &str) {
        let answer = classify(text);
        let ok = is_correct(&ex.expected, &answer);
        let tool = ex
            .expected
            .as_ref()
            .and_then(|e| e.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("(fallback)")
            .to_string();
        self.overall.add(ok);
        self.by_lang.entry(ex.lang.clone()).or_default().add(ok);
        self.by_tool.entry(tool).or_default().add(ok);
        self.by_scenario
            .entry(ex.scenario.clone())
            .or_default()
            .add(ok);
        if matches!(answer, Answer::Invalid(_)) {
            self.invalid += 1;
        }
        match (ex.expected.is_none(), answer == Answer::Fallback) {
            (true, true) => self.fallback_tp += 1,
            (false, true) => self.fallback_fp += 1,
            (true, false) => self.fallback_fn += 1,
            _ => {}
        }
        if !ok && self.failures.len() < 50 {
            self.failures
                .push((i, ex.expected.clone(), text.to_string()));
        }
    }

    pub fn merge(&mut self, o: EvalReport) {
        let m = |a: &mut Tally, b: &Tally| {
            a.correct += b.correct;
            a.total += b.total;
        };
        m(&mut self.overall, &o.overall);
        for (k, v) in &o.by_lang {
            m(self.by_lang.entry(k.clone()).or_default(), v);
        }
        for (k, v) in &o.by_tool {
            m(self.by_tool.entry(k.clone()).or_default(), v);
        }
        for (k, v) in &o.by_scenario {
            m(self.by_scenario.entry(k.clone()).or_default(), v);
        }
        self.invalid += o.invalid;
        self.fallback_tp += o.fallback_tp;
        self.fallback_fp += o.fallback_fp;
        self.fallback_fn += o.fallback_fn;
        self.generated_tokens += o.generated_tokens;
        self.decode_ms += o.decode_ms;
        self.mask_ms += o.mask_ms;
        self.masks += o.masks;
        self.failures.extend(o.failures);
        self.failures.truncate(50);
    }

    /// A Markdown table for people.
    pub fn to_markdown(&self) -> String {
        let mut s = format!(
            "| split | exact match | n |\n|---|---|---|\n| all | {:.2} % | {} |\n",
            self.overall.pct(),
            self.overall.total
        );
        for (k, v) in &self.by_lang {
            s += &format!("| lang {k} | {:.2} % | {} |\n", v.pct(), v.total);
        }
        for (k, v) in &self.by_scenario {
            s += &format!("| scenario {k} | {:.2} % | {} |\n", v.pct(), v.total);
        }
        s += &format!(
            "\nfallback precision {:.2} %, recall {:.2} %; invalid outputs {}\n\n| tool | exact match | n |\n|---|---|---|\n",
            self.fallback_precision(),
            self.fallback_recall(),
            self.invalid
        );
        for (k, v) in &self.by_tool {
            s += &format!("| {k} | {:.2} % | {} |\n", v.pct(), v.total);
        }
        s
    }
}

/// Greedy-decode every example (max 64 new tokens) and score it; with
/// `constraint`, decoding is constrained (e.g. to the catalogue's tools, auto).
pub fn evaluate(
    engine: &Engine,
    examples: &[(usize, Example)],
    constraint: Option<&Spec>,
) -> Result<EvalReport, EngineError> {
    let mut report = EvalReport::default();
    for (i, ex) in examples {
        let req = ChatRequest {
            messages: ex.messages.clone(),
            ..ChatRequest::default()
        };
        let prompt = super::template::render_chat(
            &req.text_messages(),
            engine.bundle.manifest.chat_template.as_deref(),
        )
        .map_err(|e| EngineError::Invalid(e.to_string()))?;
        let mut g = engine.begin(
            &prompt,
            GenParams {
                max_tokens: 64,
                constraint: constraint.cloned(),
                ..GenParams::default()
            },
        )?;
        let f = engine.run(&mut g, |_| {})?;
        report.generated_tokens += f.completion_tokens;
        report.decode_ms += f.timings.decode_ms + f.timings.prefill_ms;
        report.mask_ms += f.timings.mask_ms;
        report.masks += f.timings.masks;
        report.record(*i, ex, &f.text);
    }
    Ok(report)
}

/// Per tool (and overall): exact match and invalid outputs without and with
/// the constraint, as a Markdown table.
pub fn comparison_markdown(free: &EvalReport, constrained: &EvalReport) -> String {
    let mut s = String::from(
        "| tool | n | exact match, free | exact match, constrained |\n|---|---|---|---|\n",
    );
    let row = |name: &str, a: &Tally, b: &Tally| {
        format!(
            "| {name} | {} | {:.1} % ({}) | {:.1} % ({}) |\n",
            a.total,
            a.pct(),
            a.correct,
            b.pct(),
            b.correct
        )
    };
    for (k, a) in &free.by_tool {
        let b = constrained.by_tool.get(k).cloned().unwrap_or_default();
        s += &row(k, a, &b);
    }
    for (k, a) in &free.by_lang {
        let b = constrained.by_lang.get(k).cloned().unwrap_or_default();
        s += &row(&format!("**lang {k}**"), a, &b);
    }
    s += &row("**all**", &free.overall, &constrained.overall);
    s += &format!(
        "\ninvalid outputs (neither one call nor the fallback marker): free {}, constrained {}; \
         fallback precision/recall: free {:.1} %/{:.1} %, constrained {:.1} %/{:.1} %\n",
        free.invalid,
        constrained.invalid,
        free.fallback_precision(),
        free.fallback_recall(),
        constrained.fallback_precision(),
        constrained.fallback_recall()
    );
    if constrained.masks > 0 {
        s += &format!(
            "mask cost: {:.1} us per token ({} masks, {:.0} ms of {:.0} ms decoding)\n",
            constrained.mask_ms * 1e3 / constrained.masks as f64,
            constrained.masks,
            constrained.mask_ms,
            constrained.decode_ms
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rules_match_the_python_evaluation() {
        let exp = Some(json!({"name": "set_fan_speed", "arguments": {"level": 3}}));
        let out =
            "<tool_call>{\"name\": \"set_fan_speed\", \"arguments\": {\"level\": 3.0}}</tool_call>";
        assert!(is_correct(&exp, &classify(out)));
        assert!(!is_correct(&exp, &classify("<|fallback|>")));
        assert!(is_correct(&None, &classify(" <|fallback|><|im_end|>")));
        assert!(matches!(classify("hello"), Answer::Invalid(_)));
        let exp = Some(json!({"name": "call_contact", "arguments": {"name": "Ann"}}));
        assert!(is_correct(&exp, &classify("<tool_call>{\"name\": \"call_contact\", \"arguments\": {\"name\": \" Ann \"}}</tool_call>")));
    }
}
