//! JSON schema → a compiled grammar: a table of nodes the byte matcher
//! (`matcher`) walks. Literal alternatives (enums, `const`, booleans, tool
//! names, object keys, small enumerable number ranges) become byte tries;
//! strings, numbers, objects and arrays keep their bounds. The JSON is spelled
//! the way Python's `json.dumps(..., ensure_ascii=False)` spells it (`": "`
//! after a key, `", "` between members), which is how the demo model was
//! trained; every string, number and array has a length bound so the
//! automaton is finite. A string schema with `"x-grounded": true` must be
//! copied from the request: the grammar carries that text
//! ([`Grammar::grounding`], the request's user and tool messages), so a grammar with
//! grounded strings belongs to one request.

use serde_json::{Map, Value};

use super::pattern::Nfa;
use super::substr::SubstringIndex;
use super::ConstrainError;
use crate::schema::{Pattern, PatternError};

/// Longest string (in characters) when a schema gives no `maxLength`.
pub const DEFAULT_MAX_STRING: u32 = 256;
/// Most items of an array when a schema gives no `maxItems`.
pub const DEFAULT_MAX_ITEMS: u32 = 16;
/// Most integer digits and fraction digits of a number.
pub const MAX_INT_DIGITS: u8 = 15;
pub const MAX_FRAC_DIGITS: u8 = 6;
/// A bounded integer / multipleOf range up to this many values becomes a literal trie.
pub const MAX_ENUMERATED: usize = 2048;
/// Nesting of free-form JSON (`{}` schemas, objects without properties).
pub const MAX_FREE_DEPTH: u32 = 3;
/// Most properties of one object (a bit each in the matcher state).
pub const MAX_PROPERTIES: usize = 64;
/// Longest reference text for grounded strings (its last bytes are kept).
pub const MAX_REFERENCE: usize = 8192;

pub type NodeId = u16;

/// A trie over byte strings; `value` at a terminal names which string ended there.
#[derive(Debug, Clone, Default)]
pub struct LitTrie {
    pub nodes: Vec<TrieNode>,
}

#[derive(Debug, Clone, Default)]
pub struct TrieNode {
    pub children: Vec<(u8, u32)>,
    /// Index of the string that ends here.
    pub value: Option<u32>,
    /// Bit i set when string i (i < 64) ends at or below this node.
    pub below: u64,
}

impl LitTrie {
    pub fn new(words: &[Vec<u8>]) -> LitTrie {
        let mut t = LitTrie {
            nodes: vec![TrieNode::default()],
        };
        for (i, w) in words.iter().enumerate() {
            let bit = if i < 64 { 1u64 << i } else { 0 };
            let mut at = 0usize;
            t.nodes[0].below |= bit;
            for &b in w {
                at = match t.nodes[at].children.iter().find(|(x, _)| *x == b) {
                    Some(&(_, n)) => n as usize,
                    None => {
                        t.nodes.push(TrieNode::default());
                        let n = t.nodes.len() - 1;
                        t.nodes[at].children.push((b, n as u32));
                        n
                    }
                };
                t.nodes[at].below |= bit;
            }
            t.nodes[at].value.get_or_insert(i as u32);
        }
        t
    }
    pub fn child(&self, node: u32, b: u8) -> Option<u32> {
        self.nodes[node as usize]
            .children
            .iter()
            .find(|(x, _)| *x == b)
            .map(|&(_, n)| n)
    }
}

#[derive(Debug, Clone)]
pub struct Prop {
    pub name: String,
    pub value: NodeId,
    pub required: bool,
}

#[derive(Debug, Clone)]
pub enum Node {
    /// One of the trie's byte strings (enum, const, true/false/null, enumerated numbers).
    Literal {
        trie: u32,
    },
    String {
        min: u32,
        max: u32,
        pattern: Option<u32>,
        /// `x-grounded: true`: the value is copied from the grammar's
        /// [`Grammar::grounding`] (a substring of it, byte for byte).
        grounded: bool,
    },
    Number {
        integer: bool,
        min: f64,
        max: f64,
        excl_min: bool,
        excl_max: bool,
        multiple: Option<f64>,
    },
    /// Known properties only (keys from `keys`, values `props[i]`); `free`:
    /// no properties declared, any string key with `free` values.
    Object {
        props: Vec<Prop>,
        keys: u32,
        required: u64,
        free: Option<NodeId>,
    },
    Array {
        item: NodeId,
        min: u32,
        max: u32,
    },
    /// Alternatives told apart by their first byte (index: [`first_class`]).
    Union {
        alts: [Option<NodeId>; 6],
    },
}

/// Which alternative of a `Union` a value's first byte starts: string,
/// number, object, array, true/false, null.
pub fn first_class(b: u8) -> Option<usize> {
    Some(match b {
        b'"' => 0,
        b'-' | b'0'..=b'9' => 1,
        b'{' => 2,
        b'[' => 3,
        b't' | b'f' => 4,
        b'n' => 5,
        _ => return None,
    })
}

/// What a constrained generation produces.
#[derive(Debug, Clone)]
pub enum Top {
    /// `{"name": "<one of names>", "arguments": <args[i]>}` inside `<tool_call>`.
    Tools {
        /// `name"` spelled as JSON string contents plus the closing quote.
        names: u32,
        tool_names: Vec<String>,
        args: Vec<NodeId>,
    },
    /// A bare JSON value (`response_format`).
    Json { root: NodeId },
}

#[derive(Debug)]
pub struct Grammar {
    pub nodes: Vec<Node>,
    pub tries: Vec<LitTrie>,
    pub patterns: Vec<Nfa>,
    pub top: Top,
    /// What grounded strings are copied from, with its suffix automaton (the
    /// request's user and tool messages joined by NUL; their last
    /// [`MAX_REFERENCE`] bytes). Empty: a grounded string can only be `""`.
    pub grounding: SubstringIndex,
    /// Byte-token masks by (vocabulary, matcher state), shared by every
    /// generation using this grammar (bounded: emptied when full).
    pub masks: std::sync::Mutex<
        std::collections::HashMap<(usize, super::matcher::Matcher), super::vocab::Mask>,
    >,
}

/// The JSON spelling of a string (json.dumps with ensure_ascii=False escapes
/// only `"`, `\` and control characters, as serde_json does).
pub fn json_string(s: &str) -> Vec<u8> {
    serde_json::to_string(s)
        .expect("string serialises")
        .into_bytes()
}

struct Compiler {
    nodes: Vec<Node>,
    tries: Vec<LitTrie>,
    patterns: Vec<Nfa>,
}

impl Compiler {
    fn add(&mut self, n: Node) -> Result<NodeId, ConstrainError> {
        if self.nodes.len() >= u16::MAX as usize {
            return Err(ConstrainError::Schema("schema too large".into()));
        }
        self.nodes.push(n);
        Ok((self.nodes.len() - 1) as NodeId)
    }

    fn trie(&mut self, words: &[Vec<u8>]) -> u32 {
        self.tries.push(LitTrie::new(words));
        (self.tries.len() - 1) as u32
    }

    fn literal(&mut self, values: &[Value]) -> Result<NodeId, ConstrainError> {
        if values.is_empty() {
            return Err(ConstrainError::Schema(
                "an empty enum allows no value".into(),
            ));
        }
        let words: Vec<Vec<u8>> = values.iter().map(spell).collect();
        let trie = self.trie(&words);
        self.add(Node::Literal { trie })
    }

    fn compile(&mut self, schema: &Value, depth: u32) -> Result<NodeId, ConstrainError> {
        let s = match schema {
            Value::Bool(true) => return self.free(depth),
            Value::Bool(false) => {
                return Err(ConstrainError::Schema(
                    "a `false` schema allows no value".into(),
                ))
            }
            Value::Object(s) => s,
            _ => return self.free(depth),
        };
        if let Some(c) = s.get("const") {
            return self.literal(std::slice::from_ref(c));
        }
        if let Some(Value::Array(options)) = s.get("enum") {
            // keep only the options the rest of the schema allows
            let ok: Vec<Value> = options
                .iter()
                .filter(|o| crate::schema::validate(schema, o, "enum").is_ok())
                .cloned()
                .collect();
            return self.literal(&ok);
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(Value::Array(alts)) = s.get(key) {
                return self.union_of(alts, s, depth);
            }
        }
        if let Some(Value::Array(all)) = s.get("allOf") {
            if all.len() == 1 {
                return self.compile(&all[0], depth);
            }
        }
        match s.get("type") {
            Some(Value::String(t)) => self.typed(t, s, depth),
            Some(Value::Array(ts)) => {
                let alts: Vec<Value> = ts
                    .iter()
                    .map(|t| {
                        let mut sub = s.clone();
                        sub.insert("type".into(), t.clone());
                        Value::Object(sub)
                    })
                    .collect();
                self.union_of(&alts, &Map::new(), depth)
            }
            _ if s.contains_key("properties") => self.typed("object", s, depth),
            _ if s.contains_key("items") => self.typed("array", s, depth),
            _ => self.free(depth),
        }
    }

    fn union_of(
        &mut self,
        alts: &[Value],
        outer: &Map<String, Value>,
        depth: u32,
    ) -> Result<NodeId, ConstrainError> {
        let mut slots: [Option<NodeId>; 6] = [None; 6];
        for a in alts {
            // merge sibling keywords (e.g. a description) into each alternative
            let mut sub = outer.clone();
            sub.remove("anyOf");
            sub.remove("oneOf");
            if let Value::Object(m) = a {
                sub.extend(m.clone());
            }
            let sub = Value::Object(sub);
            let classes = classes_of(&sub);
            let id = self.compile(&sub, depth)?;
            for c in classes {
                if slots[c].is_some() {
                    return Err(ConstrainError::Schema(
                        "anyOf/oneOf alternatives of the same JSON type are not supported".into(),
                    ));
                }
                slots[c] = Some(id);
            }
        }
        self.add(Node::Union { alts: slots })
    }

    fn typed(
        &mut self,
        t: &str,
        s: &Map<String, Value>,
        depth: u32,
    ) -> Result<NodeId, ConstrainError> {
        let num = |k: &str| s.get(k).and_then(Value::as_f64);
        match t {
            "string" => {
                let min = s.get("minLength").and_then(Value::as_u64).unwrap_or(0) as u32;
                let max = s
                    .get("maxLength")
                    .and_then(Value::as_u64)
                    .map_or(DEFAULT_MAX_STRING, |m| m.min(u16::MAX as u64 - 1) as u32);
                if min > max {
                    return Err(ConstrainError::Schema("minLength above maxLength".into()));
                }
                let pattern = match s.get("pattern").and_then(Value::as_str) {
                    None => None,
                    Some(p) => match Pattern::new(p) {
                        Ok(pat) => match Nfa::compile(&pat) {
                            Some(n) => {
                                self.patterns.push(n);
                                Some((self.patterns.len() - 1) as u32)
                            }
                            None => {
                                log::debug!(
                                    "pattern={p:?} too large to constrain; left to validation"
                                );
                                None
                            }
                        },
                        Err(PatternError::Unsupported(_)) => None,
                        Err(PatternError::Invalid(why)) => {
                            return Err(ConstrainError::Schema(format!(
                                "pattern {p:?} is invalid: {why}"
                            )))
                        }
                    },
                };
                let grounded = match s.get("x-grounded") {
                    None => false,
                    Some(Value::Bool(b)) => *b,
                    Some(other) => {
                        return Err(ConstrainError::Schema(format!(
                            "x-grounded must be true or false, not {other}"
                        )))
                    }
                };
                if grounded && s.contains_key("pattern") {
                    return Err(ConstrainError::Schema(
                        "x-grounded cannot be combined with pattern".into(),
                    ));
                }
                self.add(Node::String {
                    min,
                    max,
                    pattern,
                    grounded,
                })
            }
            "integer" | "number" => {
                let integer = t == "integer";
                let mut min = num("minimum").unwrap_or(f64::NEG_INFINITY);
                let mut max = num("maximum").unwrap_or(f64::INFINITY);
                let mut excl_min = false;
                let mut excl_max = false;
                if let Some(x) = num("exclusiveMinimum") {
                    if x >= min {
                        min = x;
                        excl_min = true;
                    }
                }
                if let Some(x) = num("exclusiveMaximum") {
                    if x <= max {
                        max = x;
                        excl_max = true;
                    }
                }
                let multiple = num("multipleOf").filter(|m| *m > 0.0);
                // an integer multiple makes the number an integer
                let integer = integer || multiple.is_some_and(|m| m.fract() == 0.0);
                if let Some(values) = enumerate(integer, min, max, excl_min, excl_max, multiple) {
                    if values.is_empty() {
                        return Err(ConstrainError::Schema(
                            "no number satisfies minimum/maximum/multipleOf".into(),
                        ));
                    }
                    let trie = self.trie(&values);
                    return self.add(Node::Literal { trie });
                }
                self.add(Node::Number {
                    integer,
                    min,
                    max,
                    excl_min,
                    excl_max,
                    multiple,
                })
            }
            "boolean" => self.literal(&[Value::Bool(true), Value::Bool(false)]),
            "null" => self.literal(&[Value::Null]),
            "object" => self.object(s, depth),
            "array" => {
                if depth >= MAX_FREE_DEPTH + 4 {
                    return Err(ConstrainError::Schema("schema nested too deep".into()));
                }
                let item = match s.get("items") {
                    Some(sub @ (Value::Object(_) | Value::Bool(true))) => {
                        self.compile(sub, depth + 1)?
                    }
                    _ => self.free(depth + 1)?,
                };
                let min = s.get("minItems").and_then(Value::as_u64).unwrap_or(0) as u32;
                let max = s
                    .get("maxItems")
                    .and_then(Value::as_u64)
                    .map_or(DEFAULT_MAX_ITEMS.max(min), |m| m.min(255) as u32);
                if min > max {
                    return Err(ConstrainError::Schema("minItems above maxItems".into()));
                }
                self.add(Node::Array { item, min, max })
            }
            other => Err(ConstrainError::Schema(format!("unknown type {other:?}"))),
        }
    }

    fn object(&mut self, s: &Map<String, Value>, depth: u32) -> Result<NodeId, ConstrainError> {
        if depth >= MAX_FREE_DEPTH + 4 {
            return Err(ConstrainError::Schema("schema nested too deep".into()));
        }
        let required: Vec<&str> = s
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let declared = s.get("properties").and_then(Value::as_object);
        let Some(declared) = declared.filter(|p| !p.is_empty()) else {
            if !required.is_empty() {
                return Err(ConstrainError::Schema(
                    "required properties without `properties`".into(),
                ));
            }
            let free = match s.get("additionalProperties") {
                Some(Value::Bool(false)) => None,
                Some(sub @ Value::Object(_)) => Some(self.compile(sub, depth + 1)?),
                _ if depth < MAX_FREE_DEPTH => Some(self.free(depth + 1)?),
                _ => None,
            };
            let keys = self.trie(&[]);
            return self.add(Node::Object {
                props: Vec::new(),
                keys,
                required: 0,
                free,
            });
        };
        if declared.len() > MAX_PROPERTIES {
            return Err(ConstrainError::Schema(format!(
                "more than {MAX_PROPERTIES} properties"
            )));
        }
        for r in &required {
            if !declared.contains_key(*r) {
                return Err(ConstrainError::Schema(format!(
                    "required property {r:?} is not declared"
                )));
            }
        }
        let mut props = Vec::new();
        let mut mask = 0u64;
        for (i, (k, sub)) in declared.iter().enumerate() {
            let value = self.compile(sub, depth + 1)?;
            let req = required.contains(&k.as_str());
            if req {
                mask |= 1 << i;
            }
            props.push(Prop {
                name: k.clone(),
                value,
                required: req,
            });
        }
        let words: Vec<Vec<u8>> = props.iter().map(|p| json_string(&p.name)).collect();
        let keys = self.trie(&words);
        self.add(Node::Object {
            props,
            keys,
            required: mask,
            free: None,
        })
    }

    /// Any JSON value, nested at most [`MAX_FREE_DEPTH`] deep.
    fn free(&mut self, depth: u32) -> Result<NodeId, ConstrainError> {
        let string = self.add(Node::String {
            min: 0,
            max: DEFAULT_MAX_STRING,
            pattern: None,
            grounded: false,
        })?;
        let number = self.add(Node::Number {
            integer: false,
            min: f64::NEG_INFINITY,
            max: f64::INFINITY,
            excl_min: false,
            excl_max: false,
            multiple: None,
        })?;
        let boolean = self.literal(&[Value::Bool(true), Value::Bool(false)])?;
        let null = self.literal(&[Value::Null])?;
        let (object, array) = if depth < MAX_FREE_DEPTH {
            let inner = self.free(depth + 1)?;
            let keys = self.trie(&[]);
            let o = self.add(Node::Object {
                props: Vec::new(),
                keys,
                required: 0,
                free: Some(inner),
            })?;
            let a = self.add(Node::Array {
                item: inner,
                min: 0,
                max: DEFAULT_MAX_ITEMS,
            })?;
            (Some(o), Some(a))
        } else {
            (None, None)
        };
        self.add(Node::Union {
            alts: [
                Some(string),
                Some(number),
                object,
                array,
                Some(boolean),
                Some(null),
            ],
        })
    }
}

/// The JSON classes (see [`first_class`]) a schema's values can start with.
fn classes_of(schema: &Value) -> Vec<usize> {
    let Value::Object(s) = schema else {
        return (0..6).collect();
    };
    let from_values = |vs: &[Value]| -> Vec<usize> {
        let mut c: Vec<usize> = vs
            .iter()
            .filter_map(|v| spell(v).first().and_then(|&b| first_class(b)))
            .collect();
        c.sort_unstable();
        c.dedup();
        c
    };
    if let Some(c) = s.get("const") {
        return from_values(std::slice::from_ref(c));
    }
    if let Some(Value::Array(e)) = s.get("enum") {
        return from_values(e);
    }
    let of = |t: &str| -> Option<usize> {
        Some(match t {
            "string" => 0,
            "integer" | "number" => 1,
            "object" => 2,
            "array" => 3,
            "boolean" => 4,
            "null" => 5,
            _ => return None,
        })
    };
    match s.get("type") {
        Some(Value::String(t)) => of(t).into_iter().collect(),
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).filter_map(of).collect(),
        _ if s.contains_key("properties") => vec![2],
        _ => (0..6).collect(),
    }
}

/// JSON text of a literal value, json.dumps style (`", "` and `": "`).
pub fn spell(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    spell_into(v, &mut out);
    out
}

fn spell_into(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                spell_into(x, out);
            }
            out.push(b']');
        }
        Value::Object(m) => {
            out.push(b'{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                out.extend(json_string(k));
                out.extend_from_slice(b": ");
                spell_into(x, out);
            }
            out.push(b'}');
        }
        other => out.extend(
            serde_json::to_string(other)
                .expect("value serialises")
                .bytes(),
        ),
    }
}

/// Decimal places of `m` as written (0.5 → 1, 0.25 → 2, 2 → 0).
fn decimals(m: f64) -> usize {
    let s = format!("{m}");
    s.split_once('.').map_or(0, |(_, f)| f.len())
}

/// The spellings of every value of a bounded integer or multipleOf range,
/// or `None` when it is unbounded or too large (the digit matcher handles it).
fn enumerate(
    integer: bool,
    min: f64,
    max: f64,
    excl_min: bool,
    excl_max: bool,
    multiple: Option<f64>,
) -> Option<Vec<Vec<u8>>> {
    if !min.is_finite() || !max.is_finite() {
        return None;
    }
    let step = match (integer, multiple) {
        (_, Some(m)) => m,
        (true, None) => 1.0,
        (false, None) => return None,
    };
    let lo = (min / step).ceil() as i64;
    let hi = (max / step).floor() as i64;
    if hi < lo || (hi - lo) as usize >= MAX_ENUMERATED {
        return if hi < lo { Some(Vec::new()) } else { None };
    }
    let places = decimals(step);
    let mut out = Vec::new();
    for k in lo..=hi {
        let x = k as f64 * step;
        let x = (x * 10f64.powi(places as i32)).round() / 10f64.powi(places as i32);
        if (excl_min && x <= min) || (excl_max && x >= max) || x < min || x > max {
            continue;
        }
        if x.fract() == 0.0 {
            out.push(format!("{}", x as i64).into_bytes());
            if !integer {
                // json.dumps(22.0) == "22.0": a float-typed value the model may write
                out.push(format!("{}.0", x as i64).into_bytes());
            }
        } else {
            let s = format!("{x:.places$}");
            let s = s.trim_end_matches('0').to_string();
            out.push(s.into_bytes());
        }
    }
    Some(out)
}

impl Grammar {
    /// Some string of the grammar is `x-grounded`.
    pub fn has_grounded(&self) -> bool {
        self.nodes
            .iter()
            .any(|n| matches!(n, Node::String { grounded: true, .. }))
    }

    /// Sets what grounded strings are copied from: `text`, or its last
    /// [`MAX_REFERENCE`] bytes (cut at a character boundary).
    pub fn with_reference(mut self, text: &str) -> Grammar {
        let mut from = text.len().saturating_sub(MAX_REFERENCE);
        while !text.is_char_boundary(from) {
            from += 1;
        }
        self.grounding = SubstringIndex::new(&text.as_bytes()[from..]);
        self
    }

    /// The grammar of tool calls to any of `tools` (name, parameters schema).
    pub fn for_tools(tools: &[(String, Option<Value>)]) -> Result<Grammar, ConstrainError> {
        if tools.is_empty() {
            return Err(ConstrainError::Schema("no tools to call".into()));
        }
        let mut c = Compiler {
            nodes: Vec::new(),
            tries: Vec::new(),
            patterns: Vec::new(),
        };
        let mut args = Vec::new();
        let mut words = Vec::new();
        for (name, params) in tools {
            let schema = params.clone().unwrap_or_else(|| {
                serde_json::json!({"type": "object", "properties": {}, "additionalProperties": false})
            });
            let id = match schema.get("type").and_then(Value::as_str) {
                Some("object") | None => c.object(schema.as_object().unwrap_or(&Map::new()), 0),
                Some(other) => Err(ConstrainError::Schema(format!(
                    "parameters of {name:?} have type {other:?}, not object"
                ))),
            }
            .map_err(|e| ConstrainError::Schema(format!("tool {name:?}: {e}")))?;
            args.push(id);
            let mut w = json_string(name);
            w.remove(0); // the opening quote is part of the fixed prefix
            words.push(w);
        }
        let names = c.trie(&words);
        Ok(Grammar {
            nodes: c.nodes,
            tries: c.tries,
            patterns: c.patterns,
            masks: Default::default(),
            top: Top::Tools {
                names,
                tool_names: tools.iter().map(|(n, _)| n.clone()).collect(),
                args,
            },
            grounding: SubstringIndex::default(),
        })
    }

    /// The grammar of one JSON value matching `schema` (`response_format`).
    pub fn for_json(schema: &Value) -> Result<Grammar, ConstrainError> {
        let mut c = Compiler {
            nodes: Vec::new(),
            tries: Vec::new(),
            patterns: Vec::new(),
        };
        let root = c.compile(schema, 0)?;
        Ok(Grammar {
            nodes: c.nodes,
            tries: c.tries,
            patterns: c.patterns,
            masks: Default::default(),
            top: Top::Json { root },
            grounding: SubstringIndex::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn enumerated_ranges() {
        let v = enumerate(false, 16.0, 30.0, false, false, Some(0.5)).unwrap();
        let s: Vec<String> = v
            .iter()
            .map(|b| String::from_utf8(b.clone()).unwrap())
            .collect();
        assert_eq!(&s[..4], &["16", "16.0", "16.5", "17"]);
        assert_eq!(s.last().unwrap(), "30.0");
        let v = enumerate(true, 0.0, 7.0, false, false, None).unwrap();
        assert_eq!(v.len(), 8);
        assert!(enumerate(true, 0.0, 1e9, false, false, None).is_none());
        assert!(enumerate(false, 0.0, 1.0, false, false, None).is_none());
        let v = enumerate(true, 0.0, 10.0, true, true, None).unwrap();
        assert_eq!(v.len(), 9);
    }

    #[test]
    fn spelling_is_json_dumps() {
        assert_eq!(
            spell(&json!({"a": [1, "x"], "b": null})),
            br#"{"a": [1, "x"], "b": null}"#
        );
        assert_eq!(json_string("京都\"駅"), "\"京都\\\"駅\"".as_bytes());
    }
}
