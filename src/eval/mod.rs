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

use crate::chat::confidence::Signals;
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
    /// The confidence is the bundle's calibrated one.
    pub calibrated: bool,
    /// The board's `cascade.min_confidence`.
    pub gate_floor: f32,
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
    /// What the gate reads: the calibrated probability that the call is
    /// right when the bundle has a calibration, else `min_token_p`.
    pub confidence: f32,
    /// What the model thought of each part of its call (calls only).
    pub signals: Option<Signals>,
}

/// What a confidence gate at `floor` (`cascade.min_confidence`) does on a
/// split: calls below it go up the cascade, and so does every answer that
/// is not a call (the fallback marker, text).
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
    /// Share of the calls the device makes that are right (%).
    pub precision: f64,
    /// Share of all requests the device answers with a call itself (%).
    pub coverage: f64,
    /// Exact match on the device when a handed-up call counts as the
    /// fallback marker (right for out-of-domain requests, wrong otherwise).
    pub device_exact_match: f64,
}

/// The gate's effect at each floor (floor 0: no gate).
pub fn gate_points(scored: &[Scored], floors: &[f32]) -> Vec<GatePoint> {
    floors
        .iter()
        .map(|&floor| {
            let up = |s: &&Scored| s.call && s.confidence < floor;
            let handed: Vec<&Scored> = scored.iter().filter(up).collect();
            let kept: Vec<&Scored> = scored.iter().filter(|s| s.call && !up(s)).collect();
            let right = Tally {
                correct: scored.iter().filter(|s| !up(s) && s.correct).count()
                    + handed.iter().filter(|s| s.expected_fallback).count(),
                total: scored.len(),
            };
            let kept_right = kept.iter().filter(|s| s.correct).count();
            GatePoint {
                floor,
                handed_up: handed.len(),
                handed_up_right: handed.iter().filter(|s| s.correct).count(),
                handed_up_out_of_domain: handed.iter().filter(|s| s.expected_fallback).count(),
                calls_kept: kept.len(),
                calls_kept_wrong: kept.len() - kept_right,
                precision: Tally {
                    correct: kept_right,
                    total: kept.len(),
                }
                .pct(),
                coverage: Tally {
                    correct: kept.len(),
                    total: scored.len(),
                }
                .pct(),
                device_exact_match: right.pct(),
            }
        })
        .collect()
}

/// The floors `moe-edge eval` reports.
pub const GATE_FLOORS: [f32; 10] = [0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99];

/// The gate table in Markdown.
pub fn gate_markdown(points: &[GatePoint]) -> String {
    let mut s = String::from(
        "| min_confidence | coverage (device calls) | precision of device calls | calls handed up (of them right / out-of-domain) | device exact match (handed up = fallback) |\n|---|---|---|---|---|\n",
    );
    for p in points {
        s += &format!(
            "| {} | {:.1} % ({}) | {:.1} % ({} wrong) | {} ({} / {}) | {:.2} % |\n",
            p.floor,
            p.coverage,
            p.calls_kept,
            p.precision,
            p.calls_kept_wrong,
            p.handed_up,
            p.handed_up_right,
            p.handed_up_out_of_domain,
            p.device_exact_match
        );
    }
    s
}

/// The precision–coverage curve: the device's calls ranked by confidence,
/// and for each share of the requests answered, the precision of those
/// calls and the floor that keeps them. One row per `step` % of coverage,
/// and the last (every call kept).
pub fn curve_markdown(scored: &[Scored], step: usize) -> String {
    let mut s = String::from(
        "| coverage | precision of device calls | floor (min_confidence) |\n|---|---|---|\n",
    );
    let n = scored.len().max(1);
    let step = step.max(1);
    let cuts = ranked_cuts(scored);
    let mut next = step;
    for (i, &(kept, right, floor)) in cuts.iter().enumerate() {
        if 100 * kept >= next * n || i + 1 == cuts.len() {
            s += &format!(
                "| {:.1} % ({kept}) | {:.1} % ({right}) | {floor:.3} |\n",
                100.0 * kept as f64 / n as f64,
                100.0 * right as f64 / kept as f64,
            );
            while 100 * kept >= next * n {
                next += step;
            }
        }
    }
    s
}

/// The device's calls ranked by confidence, cut after each run of equal
/// confidence: (calls kept, of them right, the floor that keeps them).
fn ranked_cuts(scored: &[Scored]) -> Vec<(usize, usize, f32)> {
    let mut calls: Vec<&Scored> = scored.iter().filter(|s| s.call).collect();
    calls.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    let mut right = 0;
    let mut cuts = Vec::new();
    for (k, c) in calls.iter().enumerate() {
        right += c.correct as usize;
        if calls
            .get(k + 1)
            .is_none_or(|d| d.confidence != c.confidence)
        {
            cuts.push((k + 1, right, c.confidence));
        }
    }
    cuts
}

/// The highest coverage whose calls are right at least `precision` % of
/// the time, and the floor that gives it; `None` when no floor reaches it.
pub fn floor_for(scored: &[Scored], precision: f64) -> Option<(f32, f64)> {
    ranked_cuts(scored)
        .into_iter()
        .rfind(|&(kept, right, _)| 100.0 * right as f64 >= precision * kept as f64)
        .map(|(kept, _, floor)| (floor, 100.0 * kept as f64 / scored.len() as f64))
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

    /// The gate at several floors and at the board's, and the
    /// precision–coverage curve, in Markdown.
    pub fn gate_report(&self, board_floor: f32) -> String {
        let mut floors = GATE_FLOORS.to_vec();
        if !floors.contains(&board_floor) {
            floors.push(board_floor);
            floors.sort_by(f32::total_cmp);
        }
        let pts = gate_points(&self.scored, &floors);
        let at = |f: f32| pts.iter().find(|p| p.floor == f).copied();
        let mut s = format!(
            "\nConfidence gate (`cascade.min_confidence`): calls whose confidence ({}) is below the floor go up the cascade.\n\n",
            if self.calibrated {
                "the bundle's calibrated probability that the call is right"
            } else {
                "the least probability of a token: the bundle has no calibration"
            }
        );
        if let (Some(off), Some(on)) = (at(0.0), at(board_floor)) {
            s += &format!(
                "At the board's gate ({board_floor}): the device answers {:.1} % of the requests ({} calls) with precision {:.1} %; without a gate {:.1} % ({}) with precision {:.1} %.\n\n",
                on.coverage, on.calls_kept, on.precision, off.coverage, off.calls_kept, off.precision
            );
        }
        s += &gate_markdown(&pts);
        s += "\nPrecision–coverage curve (the device's calls ranked by confidence):\n\n";
        s += &curve_markdown(&self.scored, 10);
        // the least token probability as the confidence, for comparison
        let by_min: Vec<Scored> = self
            .scored
            .iter()
            .map(|x| Scored {
                confidence: x.min_token_p,
                ..*x
            })
            .collect();
        let reach = |scored: &[Scored], target: f64| match floor_for(scored, target) {
            Some((f, cov)) => format!("coverage {cov:.1} % (floor {f:.4})"),
            None => "not reached".to_string(),
        };
        s += "\n| precision of device calls | best coverage, this confidence | best coverage, least token probability |\n|---|---|---|\n";
        for target in [90.0, 95.0, 98.0, 99.0] {
            s += &format!(
                "| >= {target} % | {} | {} |\n",
                reach(&self.scored, target),
                reach(&by_min, target)
            );
        }
        s
    }

    pub fn record(
        &mut self,
        i: usize,
        ex: &Example,
        text: &str,
        min_token_p: f32,
        confidence: f32,
        signals: Option<Signals>,
    ) {
        let answer = classify(text);
        let ok = is_correct(&ex.expected, &answer);
        self.scored.push(Scored {
            correct: ok,
            call: matches!(answer, Answer::Call(_)),
            expected_fallback: ex.expected.is_none(),
            min_token_p,
            confidence,
            signals,
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
        self.calibrated |= o.calibrated;
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
        s += &self.gate_report(self.gate_floor);
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
    tools: &[Tool],
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
        let signals = engine.call_signals(&f, tools);
        let confidence = engine.confidence(&f, signals.as_ref());
        report.calibrated |= confidence.calibrated;
        report.record(*i, ex, &f.text, f.min_token_p, confidence.value, signals);
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
    s += "\nOn the constrained run:\n";
    s += &constrained.gate_report(constrained.gate_floor);
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
    /// Mark the catalogue's free-text strings `x-grounded`: `None` as the
    /// board says (`tools.ground_free_strings`), or always / never.
    pub grounded: Option<bool>,
    /// Fit the confidence calibration on this split's constrained run and
    /// write it into the bundle (`calibration.json`).
    pub calibrate: bool,
    /// Write each example's [`Scored`] here as JSONL.
    pub scores: Option<std::path::PathBuf>,
}

/// Each example's [`Scored`] as JSONL.
fn write_scores(path: &Path, scored: &[Scored]) -> Result<(), EngineError> {
    let mut out = String::new();
    for s in scored {
        out += &serde_json::to_string(s).expect("scores serialise");
        out.push('\n');
    }
    std::fs::write(path, out).map_err(|e| EngineError::Invalid(format!("{}: {e}", path.display())))
}

/// Evaluates a bundle on a split: the report as text (markdown tables and
/// timings) and as JSON.
pub fn run_split(o: &SplitOptions) -> Result<(String, Value), EngineError> {
    use std::fmt::Write as _;
    let constrained_run = o.constrain || o.compare;
    if o.grounded == Some(true) && !constrained_run {
        return Err(EngineError::Invalid(
            "--grounded needs --constrain or --compare".into(),
        ));
    }
    if o.calibrate && !constrained_run {
        return Err(EngineError::Invalid(
            "--calibrate needs --constrain or --compare (the daemon decodes tool calls constrained)".into(),
        ));
    }
    let grounded = o.grounded.unwrap_or(o.board.tools.ground_free_strings);
    let engine = Engine::load(&o.bundle, &o.board, crate::bundle::Verify::Full)
        .map_err(|e| EngineError::Invalid(format!("loading bundle {}: {e}", o.bundle.display())))?;
    let mut ex: Vec<_> = read_examples(&o.data)?.into_iter().enumerate().collect();
    if let Some(n) = o.limit {
        ex.truncate(n);
    }
    let mut text = String::new();
    let spec = if constrained_run {
        let (c, n) = catalogue_constraint(&o.tools, grounded)?;
        if grounded {
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
    let tools = load_tools(&o.tools)?;
    let floor = o.board.cascade.min_confidence;
    let mut report = evaluate(
        &engine,
        &ex,
        if o.compare { None } else { spec.as_ref() },
        &tools,
    )?;
    report.gate_floor = floor;
    let mut constrained = if o.compare {
        let t = std::time::Instant::now();
        let mut c = evaluate(&engine, &ex, spec.as_ref(), &tools)?;
        c.gate_floor = floor;
        let _ = writeln!(
            text,
            "constrained: {} examples in {:.1} s\n",
            ex.len(),
            t.elapsed().as_secs_f64()
        );
        Some(c)
    } else {
        None
    };
    if o.calibrate {
        let fitted = constrained.as_mut().unwrap_or(&mut report);
        let cal = calibrate(fitted, &o.data, &o.bundle)?;
        let _ = writeln!(
            text,
            "calibration fitted on {} calls of {}, written to {}: bias {:.3}, weights {}\n",
            cal.calls,
            o.data.display(),
            o.bundle
                .join(crate::chat::confidence::CALIBRATION_FILE)
                .display(),
            cal.bias,
            cal.weights
                .iter()
                .map(|(k, v)| format!("{k} {v:.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let _ = writeln!(text, "{}", report.to_markdown());
    let _ = writeln!(
        text,
        "{} examples in {:.1} s, {} generated tokens",
        ex.len(),
        t.elapsed().as_secs_f64(),
        report.generated_tokens
    );
    let json = |r: &EvalReport| serde_json::to_value(r).expect("a report serialises");
    if let Some(constrained) = constrained {
        let _ = writeln!(text, "{}", comparison_markdown(&report, &constrained));
        if let Some(p) = &o.scores {
            write_scores(p, &constrained.scored)?;
        }
        let both = serde_json::json!({"free": json(&report), "constrained": json(&constrained)});
        return Ok((text, both));
    }
    if let Some(p) = &o.scores {
        write_scores(p, &report.scored)?;
    }
    Ok((text, json(&report)))
}

/// Fits the confidence calibration on a run's calls, writes it into the
/// bundle, and rescores the run with it.
fn calibrate(
    run: &mut EvalReport,
    data: &Path,
    bundle: &Path,
) -> Result<crate::chat::confidence::Calibration, EngineError> {
    use crate::chat::confidence::{Calibration, CALIBRATION_FILE};
    let calls: Vec<(Signals, bool)> = run
        .scored
        .iter()
        .filter_map(|s| s.signals.map(|g| (g, s.correct)))
        .collect();
    if calls.len() < 50 || calls.iter().all(|c| c.1) || calls.iter().all(|c| !c.1) {
        return Err(EngineError::Invalid(format!(
            "{}: {} calls, right and wrong ones both needed (50 at least) to calibrate",
            data.display(),
            calls.len()
        )));
    }
    let name = data.file_name().map_or_else(
        || data.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let cal = Calibration::fit(&name, &calls);
    let path = bundle.join(CALIBRATION_FILE);
    let json = serde_json::to_string_pretty(&cal).expect("a calibration serialises") + "\n";
    std::fs::write(&path, json)
        .map_err(|e| EngineError::Invalid(format!("{}: {e}", path.display())))?;
    crate::bundle::files::add_to_manifest(bundle, CALIBRATION_FILE)
        .map_err(|e| EngineError::Invalid(e.to_string()))?;
    for s in &mut run.scored {
        if let Some(g) = &s.signals {
            s.confidence = cal.score(g) as f32;
        }
    }
    run.calibrated = true;
    Ok(cal)
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
            confidence: min_token_p,
            signals: None,
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
        assert!((p[1].precision - 50.0).abs() < 1e-9 && (p[1].coverage - 100.0 / 3.0).abs() < 1e-9);
        assert!(
            gate_markdown(&p)
                .contains("| 0.5 | 33.3 % (2) | 50.0 % (1 wrong) | 3 (1 / 1) | 50.00 % |"),
            "{}",
            gate_markdown(&p)
        );
        // ranked by confidence: 0.95 wrong, 0.9 right, 0.4 right, 0.3 ood, 0.2 wrong
        let c = curve_markdown(&scored, 25);
        assert!(c.contains("| 50.0 % (3) | 66.7 % (2) | 0.400 |"), "{c}");
        assert!(c.contains("| 33.3 % (2) | 50.0 % (1) | 0.900 |"), "{c}");
        assert!(c.contains("| 83.3 % (5) | 40.0 % (2) | 0.200 |"), "{c}");
        let (f, cov) = floor_for(&scored, 50.0).unwrap();
        assert_eq!(f, 0.3);
        assert!((cov - 400.0 / 6.0).abs() < 1e-9);
        assert_eq!(floor_for(&scored, 90.0), None);
    }
}
