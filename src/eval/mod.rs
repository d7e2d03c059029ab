//! Accuracy of a bundle on a labelled split (`models/assist-moe/data/*.jsonl`):
//! exact match of tool name + arguments (numbers as numbers, strings
//! trimmed), fallback precision/recall, per language and per tool. The same
//! rules as `models/forge/evaluate.py`, so the two can be compared.
//! `golden` replays reference vectors through the model.
//! Does not own: running the model (`engine`), chat preparation (`chat`).

pub mod golden;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::constrain::request::spec_for;
use crate::constrain::{ConstrainError, Spec};
use crate::engine::generate::{Engine, GenParams};
use crate::engine::EngineError;
use crate::openai::{ChatRequest, Message, Tool, ToolChoice};

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
    /// Every example, for the confidence gate.
    #[serde(skip)]
    pub scored: Vec<Scored>,
}

/// One example as the confidence gate sees it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Scored {
    pub correct: bool,
    /// The model answered with a call (what the gate may hand up).
    pub call: bool,
    /// The right answer was the fallback marker.
    pub expected_fallback: bool,
    /// The lowest probability the model gave a token it wrote.
    pub min_token_p: f32,
}

/// What a confidence gate at `floor` (`cascade.min_confidence`) would have
/// done on a split: calls below it go up the cascade.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GatePoint {
    pub floor: f32,
    /// Calls handed up, and how many of them were right / should have been the fallback.
    pub handed_up: usize,
    pub handed_up_right: usize,
    pub handed_up_out_of_domain: usize,
    /// Calls the device still makes, and how many of them are wrong.
    pub calls_kept: usize,
    pub calls_kept_wrong: usize,
    /// Exact match on the device when a handed-up call counts as the
    /// fallback marker (right for out-of-domain requests, wrong otherwise).
    pub device_exact_match: f64,
}

/// The gate's effect at each floor (floor 0: no gate).
pub fn gate_points(scored: &[Scored], floors: &[f32]) -> Vec<GatePoint> {
    floors
        .iter()
        .map(|&floor| {
            let up = |s: &&Scored| s.call && s.min_token_p < floor;
            let handed: Vec<&Scored> = scored.iter().filter(up).collect();
            let kept: Vec<&Scored> = scored.iter().filter(|s| s.call && !up(s)).collect();
            let right = Tally {
                correct: scored.iter().filter(|s| !up(s) && s.correct).count()
                    + handed.iter().filter(|s| s.expected_fallback).count(),
                total: scored.len(),
            };
            GatePoint {
                floor,
                handed_up: handed.len(),
                handed_up_right: handed.iter().filter(|s| s.correct).count(),
                handed_up_out_of_domain: handed.iter().filter(|s| s.expected_fallback).count(),
                calls_kept: kept.len(),
                calls_kept_wrong: kept.iter().filter(|s| !s.correct).count(),
                device_exact_match: right.pct(),
            }
        })
        .collect()
}

/// The floors `moe-edge eval` reports.
pub const GATE_FLOORS: [f32; 6] = [0.0, 0.3, 0.4, 0.5, 0.6, 0.7];

/// The gate table in Markdown.
pub fn gate_markdown(points: &[GatePoint]) -> String {
    let mut s = String::from(
        "| min_confidence | calls handed up (of them right / out-of-domain) | calls kept | wrong among kept | device exact match (handed up = fallback) |\n|---|---|---|---|---|\n",
    );
    for p in points {
        s += &format!(
            "| {} | {} ({} / {}) | {} | {:.1} % ({}) | {:.2} % |\n",
            p.floor,
            p.handed_up,
            p.handed_up_right,
            p.handed_up_out_of_domain,
            p.calls_kept,
            Tally {
                correct: p.calls_kept_wrong,
                total: p.calls_kept,
            }
            .pct(),
            p.calls_kept_wrong,
            p.device_exact_match
        );
    }
    s
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

    pub fn record(&mut self, i: usize, ex: &Example, text: &str, min_token_p: f32) {
        let answer = classify(text);
        let ok = is_correct(&ex.expected, &answer);
        self.scored.push(Scored {
            correct: ok,
            call: matches!(answer, Answer::Call(_)),
            expected_fallback: ex.expected.is_none(),
            min_token_p,
        });
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
        self.scored.extend(o.scored);
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
        s += "\nConfidence gate (`cascade.min_confidence`): calls whose least likely token is below the floor go up the cascade.\n\n";
        s += &gate_markdown(&gate_points(&self.scored, &GATE_FLOORS));
        s
    }
}

/// Decoding constrained to a catalogue's tools (tool_choice auto), as a
/// request offering them would be. With `x-grounded` strings each example
/// gets its own grammar (grounded on its user messages); otherwise all
/// share one, and its mask cache.
#[derive(Debug)]
pub struct CatalogueConstraint {
    tools: Vec<Tool>,
    shared: Option<Spec>,
}

/// The tools as a request offering them with tool_choice auto, grounded on `said`.
fn catalogue_spec(tools: &[Tool], said: Option<&str>) -> Result<Spec, ConstrainError> {
    spec_for(tools, &ToolChoice::Auto, None, None, said)?
        .ok_or_else(|| ConstrainError::Schema("no tools in the catalogue".into()))
}

impl CatalogueConstraint {
    pub fn new(tools: Vec<Tool>) -> Result<CatalogueConstraint, ConstrainError> {
        let spec = catalogue_spec(&tools, None)?;
        let shared = match &spec {
            Spec::Tools { grammar, .. } if grammar.has_grounded() => None,
            _ => Some(spec),
        };
        Ok(CatalogueConstraint { tools, shared })
    }

    /// Some string is copied from the request (`x-grounded`).
    pub fn is_grounded(&self) -> bool {
        self.shared.is_none()
    }

    /// The spec for one request's messages.
    pub fn spec(&self, req: &ChatRequest) -> Result<Spec, EngineError> {
        if let Some(s) = &self.shared {
            return Ok(s.clone());
        }
        catalogue_spec(&self.tools, Some(&req.grounding_text()))
            .map_err(|e| EngineError::Invalid(e.to_string()))
    }
}

/// At most this many new tokens per example: well above the longest reference
/// answer of the demo splits (73 tokens: a message text of 50 characters), so a
/// right answer is never cut short (evaluate.py's teacher-forced check has no cap).
pub const EVAL_MAX_TOKENS: usize = 128;

/// Greedy-decode every example (at most [`EVAL_MAX_TOKENS`] new tokens) and
/// score it; with `constraint`, decoding is constrained to the catalogue's tools.
pub fn evaluate(
    engine: &Engine,
    examples: &[(usize, Example)],
    constraint: Option<&CatalogueConstraint>,
) -> Result<EvalReport, EngineError> {
    let mut report = EvalReport::default();
    for (i, ex) in examples {
        let req = ChatRequest {
            messages: ex.messages.clone(),
            ..ChatRequest::default()
        };
        let spec = constraint.map(|c| c.spec(&req)).transpose()?;
        let prompt = crate::chat::template::render_chat(
            &req.text_messages(),
            engine.bundle.manifest.chat_template.as_deref(),
        )
        .map_err(|e| EngineError::Invalid(e.to_string()))?;
        let mut g = engine.begin(
            &prompt,
            GenParams {
                max_tokens: EVAL_MAX_TOKENS,
                constraint: spec,
                ..GenParams::default()
            },
        )?;
        let f = engine.run(&mut g, |_| {})?;
        report.generated_tokens += f.completion_tokens;
        report.decode_ms += f.timings.decode_ms + f.timings.prefill_ms;
        report.mask_ms += f.timings.mask_ms;
        report.masks += f.timings.masks;
        report.record(*i, ex, &f.text, f.min_token_p);
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
    s += "\nConfidence gate on the constrained run:\n\n";
    s += &gate_markdown(&gate_points(&constrained.scored, &GATE_FLOORS));
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

/// What `moe-edge eval` was asked to do.
pub struct SplitOptions {
    pub bundle: std::path::PathBuf,
    pub board: crate::config::Board,
    /// Labelled JSONL split.
    pub data: std::path::PathBuf,
    /// Only the first N examples.
    pub limit: Option<usize>,
    /// Constrain decoding to the catalogue's schemas.
    pub constrain: bool,
    /// Free and constrained, side by side.
    pub compare: bool,
    /// The tool catalogue the constraint uses.
    pub tools: std::path::PathBuf,
    /// Mark the catalogue's free-text strings `x-grounded`.
    pub grounded: bool,
}

/// Evaluates a bundle on a split: the report as text (markdown tables and
/// timings) and as JSON.
pub fn run_split(o: &SplitOptions) -> Result<(String, Value), EngineError> {
    use std::fmt::Write as _;
    if o.grounded && !(o.constrain || o.compare) {
        return Err(EngineError::Invalid(
            "--grounded needs --constrain or --compare".into(),
        ));
    }
    let engine = Engine::load(&o.bundle, &o.board, crate::bundle::Verify::Full)
        .map_err(|e| EngineError::Invalid(format!("loading bundle {}: {e}", o.bundle.display())))?;
    let mut ex: Vec<_> = read_examples(&o.data)?.into_iter().enumerate().collect();
    if let Some(n) = o.limit {
        ex.truncate(n);
    }
    let mut text = String::new();
    let spec = if o.constrain || o.compare {
        let (c, n) = catalogue_constraint(&o.tools, o.grounded)?;
        if o.grounded {
            let _ = writeln!(
                text,
                "{n} free-text strings of {} marked x-grounded",
                o.tools.display()
            );
        }
        Some(c)
    } else {
        None
    };
    let t = std::time::Instant::now();
    let report = evaluate(&engine, &ex, if o.compare { None } else { spec.as_ref() })?;
    let _ = writeln!(text, "{}", report.to_markdown());
    let _ = writeln!(
        text,
        "{} examples in {:.1} s, {} generated tokens",
        ex.len(),
        t.elapsed().as_secs_f64(),
        report.generated_tokens
    );
    let json = |r: &EvalReport| serde_json::to_value(r).expect("a report serialises");
    if o.compare {
        let t = std::time::Instant::now();
        let constrained = evaluate(&engine, &ex, spec.as_ref())?;
        let _ = writeln!(
            text,
            "constrained: {} examples in {:.1} s\n",
            ex.len(),
            t.elapsed().as_secs_f64()
        );
        let _ = writeln!(text, "{}", comparison_markdown(&report, &constrained));
        let both = serde_json::json!({"free": json(&report), "constrained": json(&constrained)});
        return Ok((text, both));
    }
    Ok((text, json(&report)))
}

/// The tools of a file: an OpenAI `tools` array, or a catalogue object with
/// a `tools` key. A missing file is no tools.
pub fn load_tools(path: &Path) -> Result<Vec<Tool>, EngineError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let bad = |m: String| EngineError::Invalid(format!("{}: {m}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    let arr = v.get("tools").cloned().unwrap_or(v);
    serde_json::from_value(arr).map_err(|e| bad(format!("not an OpenAI tools array: {e}")))
}

/// Tool-call constraint (tool_choice auto) for a catalogue file; with
/// `grounded`, its free-text strings are marked `x-grounded` (the count is
/// returned beside it).
pub fn catalogue_constraint(
    path: &Path,
    grounded: bool,
) -> Result<(CatalogueConstraint, usize), EngineError> {
    let mut tools = load_tools(path)?;
    if tools.is_empty() {
        return Err(EngineError::Invalid(format!(
            "{}: no tools (the file is missing or its list is empty)",
            path.display()
        )));
    }
    let n = if grounded {
        crate::constrain::request::ground_free_strings(&mut tools)
    } else {
        0
    };
    let c = CatalogueConstraint::new(tools)
        .map_err(|e| EngineError::Invalid(format!("{}: tools: {e}", path.display())))?;
    Ok((c, n))
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

    #[test]
    fn gate_hands_up_unsure_calls_and_counts_them_as_the_fallback() {
        let s = |correct, call, expected_fallback, min_token_p| Scored {
            correct,
            call,
            expected_fallback,
            min_token_p,
        };
        let scored = [
            s(true, true, false, 0.9),   // right call, sure
            s(true, true, false, 0.4),   // right call, unsure: lost by a gate at 0.5
            s(false, true, false, 0.2),  // wrong call, unsure: handed up
            s(false, true, true, 0.3),   // out-of-domain answered with a call: handed up, now right
            s(true, false, true, 0.1),   // the fallback marker: never gated
            s(false, true, false, 0.95), // wrong call, sure: kept
        ];
        let p = gate_points(&scored, &[0.0, 0.5]);
        assert_eq!(p[0].handed_up, 0);
        assert_eq!(p[0].calls_kept, 5);
        assert_eq!(p[0].calls_kept_wrong, 3);
        assert!((p[0].device_exact_match - 50.0).abs() < 1e-9);
        assert_eq!(
            (
                p[1].handed_up,
                p[1].handed_up_right,
                p[1].handed_up_out_of_domain
            ),
            (3, 1, 1)
        );
        assert_eq!((p[1].calls_kept, p[1].calls_kept_wrong), (2, 1));
        // right: the sure call, the marker, the out-of-domain call handed up
        assert!((p[1].device_exact_match - 50.0).abs() < 1e-9);
        assert!(gate_markdown(&p).contains("| 0.5 | 3 (1 / 1) | 2 | 50.0 % (1) | 50.00 % |"));
    }
}
