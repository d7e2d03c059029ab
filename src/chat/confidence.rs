//! How sure the device is of a tool call: what the model thought of each
//! decision in it, and a calibrated probability that the call is right.
//!
//! A reply's tokens are sorted by the part of the call they wrote: the
//! marker that opens it (a call rather than the fallback marker or text), the
//! tool's name, argument keys, enum values, numbers, free text (with the
//! quote that ends it: where a copy stops). [`Signals`] holds the least
//! probability of each part, and the least the model gave any token when
//! the constraint is taken away (where it wanted something the schema or the
//! request did not allow). A [`Calibration`] (logistic, fitted on a
//! validation split by `moe-edge eval --calibrate`, kept in the bundle as
//! `calibration.json`) turns them into one probability.
//!
//! Plain code, no I/O but reading the calibration file. Does not own: the
//! decoding that produced the statistics (`engine`), the gate's decision
//! (`chat`), the cascade (`cascade`).

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::sampler::TokenStat;
use crate::openai::Tool;

/// The calibration file of a bundle.
pub const CALIBRATION_FILE: &str = "calibration.json";

#[derive(Debug, thiserror::Error)]
pub enum ConfidenceError {
    #[error("{file}: {msg}")]
    File { file: String, msg: String },
}

/// What part of a call a byte belongs to, most telling first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Part {
    Name,
    Enum,
    Text,
    Number,
    Key,
    Marker,
    Other,
}

/// The least probability the model gave each part of its calls (1.0 where
/// a part is absent). Probabilities over the tokens the constraint allowed,
/// except `free`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Signals {
    /// The token opening the first call.
    pub marker: f32,
    pub name: f32,
    pub key: f32,
    #[serde(rename = "enum")]
    pub enum_: f32,
    pub number: f32,
    pub text: f32,
    /// The least probability of any token of the reply.
    pub min: f32,
    /// The least probability of any token over the whole vocabulary: where
    /// the model, unconstrained, would have written something else.
    pub free: f32,
    /// The least margin between a token and the best other allowed one.
    pub margin: f32,
}

impl Signals {
    /// Names in the order of [`Signals::values`].
    pub const NAMES: [&'static str; 9] = [
        "marker", "name", "key", "enum", "number", "text", "min", "free", "margin",
    ];

    pub fn values(&self) -> [f32; 9] {
        [
            self.marker,
            self.name,
            self.key,
            self.enum_,
            self.number,
            self.text,
            self.min,
            self.free,
            self.margin,
        ]
    }

    /// The signals of a reply that holds tool calls; `None` when it holds
    /// none. `stats` are the generated tokens in order, `bytes` a token's
    /// bytes, `tools` the request's tools (which strings are enums).
    pub fn of<'a>(
        stats: &[TokenStat],
        bytes: impl Fn(u32) -> &'a [u8],
        tools: &[Tool],
    ) -> Option<Signals> {
        let mut text = Vec::new();
        let mut spans = Vec::with_capacity(stats.len());
        for s in stats {
            let start = text.len();
            text.extend_from_slice(bytes(s.token));
            spans.push(start..text.len());
        }
        let parts = parts_of(&text, tools)?;
        let mut sig = Signals {
            marker: 1.0,
            name: 1.0,
            key: 1.0,
            enum_: 1.0,
            number: 1.0,
            text: 1.0,
            min: 1.0,
            free: 1.0,
            margin: 1.0,
        };
        let mut marker_seen = false;
        for (s, span) in stats.iter().zip(spans) {
            sig.min = sig.min.min(s.p);
            sig.free = sig.free.min(s.p_free);
            sig.margin = sig.margin.min((s.p - s.p_alt).max(0.0));
            let part = parts[span].iter().copied().min().unwrap_or(Part::Other);
            let slot = match part {
                Part::Marker if !marker_seen => {
                    marker_seen = true;
                    &mut sig.marker
                }
                Part::Name => &mut sig.name,
                Part::Key => &mut sig.key,
                Part::Enum => &mut sig.enum_,
                Part::Number => &mut sig.number,
                Part::Text => &mut sig.text,
                _ => continue,
            };
            *slot = slot.min(s.p);
        }
        Some(sig)
    }
}

const OPEN: &[u8] = super::toolcall::TOOL_CALL_OPEN.as_bytes();
const CLOSE: &[u8] = super::toolcall::TOOL_CALL_CLOSE.as_bytes();

/// The part of every byte of `text`, or `None` when it holds no call.
fn parts_of(text: &[u8], tools: &[Tool]) -> Option<Vec<Part>> {
    let mut parts = vec![Part::Other; text.len()];
    let mut at = 0;
    let mut calls = 0;
    while let Some(off) = find(&text[at..], OPEN) {
        let open = at + off;
        parts[open..open + OPEN.len()].fill(Part::Marker);
        let body = open + OPEN.len();
        let end = find(&text[body..], CLOSE).map_or(text.len(), |e| body + e);
        let mut sc = Scanner {
            b: &text[..end],
            parts: &mut parts,
            tools,
            tool: None,
        };
        sc.value(body, &mut Vec::new());
        calls += 1;
        at = end;
        if at < text.len() {
            parts[at..at + CLOSE.len()].fill(Part::Marker);
            at += CLOSE.len();
        }
    }
    (calls > 0).then_some(parts)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A forgiving JSON walk that labels bytes; it stops quietly at the first
/// thing that is not JSON (a cut-off reply is labelled as far as it goes).
struct Scanner<'a, 'b> {
    b: &'a [u8],
    parts: &'b mut [Part],
    tools: &'a [Tool],
    /// The schema of the called tool's parameters, once its name is read.
    tool: Option<&'a Value>,
}

impl Scanner<'_, '_> {
    fn ws(&self, mut i: usize) -> usize {
        while i < self.b.len() && self.b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    }

    /// The end of the string whose opening quote is at `i` (after its closing quote).
    fn string_end(&self, i: usize) -> usize {
        let mut j = i + 1;
        while j < self.b.len() {
            match self.b[j] {
                b'\\' => j += 2,
                b'"' => return j + 1,
                _ => j += 1,
            }
        }
        self.b.len()
    }

    /// What a string or a literal at `path` is.
    fn part_at(&self, path: &[String], string: bool) -> Part {
        match path.first().map(String::as_str) {
            Some("name") if path.len() == 1 => Part::Name,
            Some("arguments") => {
                let schema = self.tool.and_then(|s| schema_at(s, &path[1..]));
                let closed =
                    schema.is_some_and(|s| s.get("enum").is_some() || s.get("const").is_some());
                match (string, closed) {
                    (_, true) => Part::Enum,
                    (true, false) => Part::Text,
                    (false, false) => Part::Number,
                }
            }
            _ => Part::Other,
        }
    }

    fn value(&mut self, i: usize, path: &mut Vec<String>) -> usize {
        let i = self.ws(i);
        let Some(&c) = self.b.get(i) else { return i };
        match c {
            b'{' => {
                let mut j = self.ws(i + 1);
                while j < self.b.len() && self.b[j] == b'"' {
                    let end = self.string_end(j);
                    let key_end = end.saturating_sub(1).max(j + 1);
                    self.parts[j + 1..key_end].fill(Part::Key);
                    let key = String::from_utf8_lossy(&self.b[j + 1..key_end]).into_owned();
                    j = self.ws(end);
                    if self.b.get(j) != Some(&b':') {
                        return j;
                    }
                    path.push(key);
                    j = self.value(j + 1, path);
                    path.pop();
                    j = self.ws(j);
                    if self.b.get(j) == Some(&b',') {
                        j = self.ws(j + 1);
                    }
                }
                if self.b.get(j) == Some(&b'}') {
                    j + 1
                } else {
                    j
                }
            }
            b'[' => {
                let mut j = i + 1;
                path.push("[]".into());
                loop {
                    j = self.ws(j);
                    match self.b.get(j) {
                        None => break,
                        Some(b']') => {
                            j += 1;
                            break;
                        }
                        Some(b',') => j += 1,
                        Some(_) => {
                            let next = self.value(j, path);
                            if next == j {
                                break;
                            }
                            j = next;
                        }
                    }
                }
                path.pop();
                j
            }
            b'"' => {
                let end = self.string_end(i);
                let part = self.part_at(path, true);
                // the content and the closing quote: where the value stops is a decision
                self.parts[i + 1..end].fill(part);
                if part == Part::Name {
                    let name = String::from_utf8_lossy(&self.b[i + 1..end.saturating_sub(1)]);
                    self.tool = self
                        .tools
                        .iter()
                        .find(|t| t.function.name == name)
                        .and_then(|t| t.function.parameters.as_ref());
                }
                end
            }
            _ => {
                let mut j = i;
                while j < self.b.len() && !b",}] \n\r\t".contains(&self.b[j]) {
                    j += 1;
                }
                let literal = matches!(c, b't' | b'f' | b'n');
                let part = match self.part_at(path, false) {
                    Part::Number if literal => Part::Enum,
                    p => p,
                };
                self.parts[i..j].fill(part);
                j
            }
        }
    }
}

/// The schema of the value at `path` (object keys, `[]` for array items).
fn schema_at<'a>(schema: &'a Value, path: &[String]) -> Option<&'a Value> {
    let Some((first, rest)) = path.split_first() else {
        return Some(schema);
    };
    let next = if first == "[]" {
        schema.get("items")
    } else {
        schema.get("properties").and_then(|p| p.get(first))
    };
    schema_at(next?, rest)
}

/// A logistic model over the log-odds of the [`Signals`]: the probability
/// that a call with these signals is right, as measured on a validation
/// split. Log-odds rather than logarithms: they tell 0.999 from 0.99999,
/// where the wrong calls of a confident model hide.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// The split it was fitted on, and how many calls it held.
    pub fitted_on: String,
    pub calls: usize,
    pub bias: f64,
    /// One weight per signal, by name (a signal not listed weighs 0).
    pub weights: std::collections::BTreeMap<String, f64>,
}

/// Probabilities are clamped to this range (the log-odds stay finite).
const FLOOR_P: f64 = 1e-4;
const CEIL_P: f64 = 1.0 - 1e-6;

impl Calibration {
    /// The features the model is fitted on: the log-odds of each signal.
    pub fn features(s: &Signals) -> [f64; 9] {
        s.values().map(|v| {
            let p = f64::from(v).clamp(FLOOR_P, CEIL_P);
            (p / (1.0 - p)).ln()
        })
    }

    /// The probability that a call with these signals is right.
    pub fn score(&self, s: &Signals) -> f64 {
        let f = Self::features(s);
        let z = Signals::NAMES
            .iter()
            .zip(f)
            .map(|(n, x)| self.weights.get(*n).copied().unwrap_or(0.0) * x)
            .sum::<f64>()
            + self.bias;
        1.0 / (1.0 + (-z).exp())
    }

    /// Reads `dir/calibration.json`; `Ok(None)` when the bundle has none.
    pub fn read(dir: &Path) -> Result<Option<Calibration>, ConfidenceError> {
        let path = dir.join(CALIBRATION_FILE);
        let err = |msg: String| ConfidenceError::File {
            file: path.display().to_string(),
            msg,
        };
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(err(e.to_string())),
        };
        let c: Calibration = serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?;
        if let Some(k) = c
            .weights
            .keys()
            .find(|k| !Signals::NAMES.contains(&k.as_str()))
        {
            return Err(err(format!(
                "weights.{k}: not a signal (one of {})",
                Signals::NAMES.join(", ")
            )));
        }
        if !c.bias.is_finite() || c.weights.values().any(|w| !w.is_finite()) {
            return Err(err("bias and weights must be finite numbers".into()));
        }
        Ok(Some(c))
    }

    /// Fits the model by Newton's method on (signals, right) pairs, with a
    /// small ridge so that a signal constant on the split stays at 0.
    pub fn fit(fitted_on: &str, data: &[(Signals, bool)]) -> Calibration {
        const K: usize = 10; // bias + 9 signals
        const RIDGE: f64 = 1e-2;
        let rows: Vec<[f64; K]> = data
            .iter()
            .map(|(s, _)| {
                let f = Self::features(s);
                let mut r = [1.0; K];
                r[1..].copy_from_slice(&f);
                r
            })
            .collect();
        let y: Vec<f64> = data
            .iter()
            .map(|(_, ok)| f64::from(u8::from(*ok)))
            .collect();
        let mut w = [0.0f64; K];
        for _ in 0..50 {
            let mut grad = [0.0f64; K];
            let mut hess = [[0.0f64; K]; K];
            for (x, &t) in rows.iter().zip(&y) {
                let z: f64 = x.iter().zip(&w).map(|(a, b)| a * b).sum();
                let p = 1.0 / (1.0 + (-z).exp());
                for a in 0..K {
                    grad[a] += (p - t) * x[a];
                    for b in 0..K {
                        hess[a][b] += p * (1.0 - p) * x[a] * x[b];
                    }
                }
            }
            for a in 1..K {
                grad[a] += RIDGE * w[a];
                hess[a][a] += RIDGE;
            }
            hess[0][0] += 1e-9;
            let Some(step) = solve(hess, grad) else { break };
            let mut moved = 0.0f64;
            for a in 0..K {
                w[a] -= step[a];
                moved = moved.max(step[a].abs());
            }
            if moved < 1e-9 {
                break;
            }
        }
        Calibration {
            fitted_on: fitted_on.to_string(),
            calls: data.len(),
            bias: w[0],
            weights: Signals::NAMES
                .iter()
                .zip(&w[1..])
                .map(|(n, &x)| ((*n).to_string(), x))
                .collect(),
        }
    }
}

/// Solves `a x = b` by Gaussian elimination with partial pivoting.
fn solve<const K: usize>(mut a: [[f64; K]; K], mut b: [f64; K]) -> Option<[f64; K]> {
    for c in 0..K {
        let p = (c..K).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))?;
        if a[p][c].abs() < 1e-12 {
            return None;
        }
        a.swap(c, p);
        b.swap(c, p);
        let pivot = a[c];
        for r in c + 1..K {
            let f = a[r][c] / pivot[c];
            for (x, &y) in a[r][c..].iter_mut().zip(&pivot[c..]) {
                *x -= f * y;
            }
            b[r] -= f * b[c];
        }
    }
    let mut x = [0.0; K];
    for r in (0..K).rev() {
        let s: f64 = (r + 1..K).map(|k| a[r][k] * x[k]).sum();
        x[r] = (b[r] - s) / a[r][r];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tools() -> Vec<Tool> {
        serde_json::from_value(json!([{"type": "function", "function": {
            "name": "send_message",
            "parameters": {"type": "object", "properties": {
                "contact": {"type": "string"},
                "text": {"type": "string"},
                "urgent": {"type": "boolean"},
                "mode": {"type": "string", "enum": ["sms", "chat"]},
                "count": {"type": "integer"}
            }}
        }}]))
        .unwrap()
    }

    /// One token per piece, with the given p.
    fn signals(pieces: &[(&str, f32)]) -> Option<Signals> {
        let stats: Vec<TokenStat> = pieces
            .iter()
            .enumerate()
            .map(|(i, &(_, p))| TokenStat {
                token: i as u32,
                p,
                p_free: p / 2.0,
                p_alt: 0.0,
            })
            .collect();
        let owned: Vec<Vec<u8>> = pieces.iter().map(|(s, _)| s.as_bytes().to_vec()).collect();
        Signals::of(&stats, |t| owned[t as usize].as_slice(), &tools())
    }

    #[test]
    fn each_part_of_a_call_gets_its_own_least_probability() {
        let s = signals(&[
            ("<tool_call>", 0.9),
            ("{\"name\": \"", 1.0),
            ("send", 0.8),
            ("_message", 0.99),
            ("\", \"arguments\": {\"", 1.0),
            ("contact", 0.7),
            ("\": \"", 1.0),
            ("Ann", 0.6),
            ("\", \"", 0.5), // the quote ending a copy: free text
            ("mode\": \"", 0.95),
            ("chat", 0.4),
            ("\", \"count\": ", 1.0),
            ("3", 0.3),
            (", \"urgent\": ", 1.0),
            ("true", 0.2),
            ("}}", 1.0),
            ("</tool_call>", 1.0),
        ])
        .unwrap();
        assert_eq!(s.marker, 0.9);
        assert_eq!(s.name, 0.8);
        assert_eq!(s.key, 0.7);
        assert_eq!(s.text, 0.5);
        assert_eq!(s.enum_, 0.2, "enum strings and booleans");
        assert_eq!(s.number, 0.3);
        assert_eq!(s.min, 0.2);
        assert_eq!(s.free, 0.1);
        assert!(signals(&[("hello", 0.5)]).is_none());
        assert!(signals(&[("<|fallback|>", 0.5)]).is_none());
        // a reply cut off inside a call is labelled as far as it goes
        let s = signals(&[("<tool_call>", 0.9), ("{\"name\": \"se", 0.4)]).unwrap();
        assert_eq!(s.name, 0.4);
    }

    #[test]
    fn the_fit_learns_which_signal_tells_right_from_wrong() {
        // right calls have a sure name; the text signal is noise
        let mut data = Vec::new();
        for i in 0..400 {
            let ok = i % 3 != 0;
            let noise = ((i * 37) % 100) as f32 / 100.0 * 0.9 + 0.05;
            let mut s = signals(&[("<tool_call>", 1.0)]).unwrap();
            s.name = if ok { 0.9 } else { 0.3 } + ((i * 13) % 10) as f32 / 100.0;
            s.text = noise;
            data.push((s, ok));
        }
        let c = Calibration::fit("test", &data);
        assert!(c.weights["name"] > 1.0, "{c:?}");
        assert!(c.weights["text"].abs() < 0.5, "{c:?}");
        let (good, bad) = (&data[1].0, &data[0].0);
        assert!(
            c.score(good) > 0.9 && c.score(bad) < 0.1,
            "{} {}",
            c.score(good),
            c.score(bad)
        );
    }

    #[test]
    fn a_calibration_file_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Calibration::read(dir.path()).unwrap().is_none());
        let path = dir.path().join(CALIBRATION_FILE);
        std::fs::write(
            &path,
            r#"{"fitted_on": "v", "calls": 1, "bias": 0.5, "weights": {"nmae": 1.0}}"#,
        )
        .unwrap();
        let e = Calibration::read(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("calibration.json") && e.contains("weights.nmae"),
            "{e}"
        );
        std::fs::write(
            &path,
            r#"{"fitted_on": "v", "calls": 1, "bias": 0.5, "weights": {"name": 2.0}, "x": 1}"#,
        )
        .unwrap();
        let e = Calibration::read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("unknown field"), "{e}");
        std::fs::write(
            &path,
            r#"{"fitted_on": "v", "calls": 1, "bias": 0.5, "weights": {"name": 2.0}}"#,
        )
        .unwrap();
        let c = Calibration::read(dir.path()).unwrap().unwrap();
        let mut s = signals(&[("<tool_call>", 1.0)]).unwrap();
        s.name = 0.5; // log-odds 0: the bias alone
        assert!((c.score(&s) - 1.0 / (1.0 + (-0.5f64).exp())).abs() < 1e-9);
        s.name = 0.2;
        assert!(c.score(&s) < 0.5);
    }
}
