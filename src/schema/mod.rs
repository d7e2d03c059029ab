//! JSON-schema validation for the subset tool schemas use.
//!
//! Owns: [`validate`] (an instance against a schema, errors naming the JSON
//! path) and [`check_schema`] (is a schema usable: keywords of the right
//! types, patterns that compile). Keywords: `type` (names and arrays),
//! `enum`, `const`, `minimum`, `maximum`, `exclusiveMinimum`,
//! `exclusiveMaximum`, `multipleOf` (float tolerant), `minLength`,
//! `maxLength`, `pattern`, `required`, `properties`, `additionalProperties`,
//! `items`, `minItems`, `maxItems`, `anyOf`, `allOf`, `oneOf`, `not`.
//! Other keywords (`$ref`, `format`, `description`, ...) are accepted and
//! ignored. `pattern` uses a small backtracking matcher ([`Pattern`]) for
//! ECMA-style patterns without look-around or back-references; a pattern
//! using those is accepted and not checked.
//! Does not own: which tools exist or how calls are parsed (`chat::toolcall`),
//! nor turning a schema into token masks (`constrain`).
//!
//! A leaf: `openai`, `constrain` and `chat` depend on it; it depends on no
//! other module of the crate.

pub mod pattern;

use serde_json::{Map, Value};

pub use pattern::{Pattern, PatternError};

/// An instance does not match its schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SchemaError {
    /// e.g. `arguments.celsius`, `arguments.items[2]`.
    pub path: String,
    pub message: String,
}

const TYPES: [&str; 7] = [
    "string", "integer", "number", "boolean", "object", "array", "null",
];

/// Validates `instance` against `schema`; `root` names the instance in
/// errors (e.g. `"arguments"`).
pub fn validate(schema: &Value, instance: &Value, root: &str) -> Result<(), SchemaError> {
    validate_at(schema, instance, root)
}

fn fail(path: &str, message: String) -> Result<(), SchemaError> {
    Err(SchemaError {
        path: path.to_string(),
        message,
    })
}

/// Short rendering of a value for messages.
fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        let cut: String = s.chars().take(57).collect();
        format!("{cut}...")
    } else {
        s
    }
}

pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A number with no fractional part (22.0 counts).
fn is_integer(v: &Value) -> bool {
    match v {
        Value::Number(n) => {
            n.is_i64()
                || n.is_u64()
                || n.as_f64()
                    .is_some_and(|f| f.is_finite() && f.fract() == 0.0)
        }
        _ => false,
    }
}

fn has_type(v: &Value, t: &str) -> bool {
    match t {
        "integer" => is_integer(v),
        "number" => v.is_number(),
        other => json_type(v) == other,
    }
}

/// JSON equality where numbers compare by value (1 == 1.0).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// `x` is a multiple of `m`, tolerating float error (22.5 of 0.5, 0.3 of 0.1).
fn is_multiple_of(x: f64, m: f64) -> bool {
    if m <= 0.0 || !x.is_finite() {
        return false;
    }
    let q = x / m;
    let r = q.round();
    (q - r).abs() <= 1e-9 * r.abs().max(1.0)
}

fn validate_at(schema: &Value, v: &Value, path: &str) -> Result<(), SchemaError> {
    let s = match schema {
        Value::Bool(true) => return Ok(()),
        Value::Bool(false) => return fail(path, "no value is allowed here".into()),
        Value::Object(s) => s,
        _ => return Ok(()),
    };
    if let Some(t) = s.get("type") {
        let ok = match t {
            Value::String(t) => has_type(v, t),
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).any(|t| has_type(v, t)),
            _ => true,
        };
        if !ok {
            let want = match t {
                Value::Array(ts) => ts
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" or "),
                other => other.as_str().unwrap_or("?").to_string(),
            };
            let got = if v.is_number() && !is_integer(v) {
                "a non-integer number".to_string()
            } else {
                format!("a {}", json_type(v))
            };
            return fail(path, format!("{} is {got}, expected {want}", show(v)));
        }
    }
    if let Some(Value::Array(options)) = s.get("enum") {
        if !options.iter().any(|o| json_eq(o, v)) {
            let list: Vec<String> = options.iter().map(show).collect();
            return fail(
                path,
                format!("{} is not one of {}", show(v), list.join(", ")),
            );
        }
    }
    if let Some(c) = s.get("const") {
        if !json_eq(c, v) {
            return fail(path, format!("{} is not {}", show(v), show(c)));
        }
    }
    match v {
        Value::Number(n) => validate_number(s, n.as_f64().unwrap_or(f64::NAN), v, path)?,
        Value::String(st) => validate_string(s, st, path)?,
        Value::Array(items) => validate_array(s, items, path)?,
        Value::Object(obj) => validate_object(s, obj, path)?,
        _ => {}
    }
    if let Some(Value::Array(all)) = s.get("allOf") {
        for sub in all {
            validate_at(sub, v, path)?;
        }
    }
    if let Some(Value::Array(any)) = s.get("anyOf") {
        let mut first = None;
        for sub in any {
            match validate_at(sub, v, path) {
                Ok(()) => {
                    first = None;
                    break;
                }
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first {
            return fail(
                path,
                format!("{} matches none of anyOf (first: {e})", show(v)),
            );
        }
    }
    if let Some(Value::Array(one)) = s.get("oneOf") {
        let n = one
            .iter()
            .filter(|sub| validate_at(sub, v, path).is_ok())
            .count();
        if n != 1 {
            return fail(
                path,
                format!("{} matches {n} of oneOf, expected exactly 1", show(v)),
            );
        }
    }
    if let Some(not) = s.get("not") {
        if validate_at(not, v, path).is_ok() {
            return fail(path, format!("{} matches a schema under 'not'", show(v)));
        }
    }
    Ok(())
}

fn num(s: &Map<String, Value>, k: &str) -> Option<f64> {
    s.get(k).and_then(Value::as_f64)
}

fn validate_number(
    s: &Map<String, Value>,
    x: f64,
    v: &Value,
    path: &str,
) -> Result<(), SchemaError> {
    let shown = show(v);
    if let Some(m) = num(s, "minimum") {
        if x < m {
            return fail(
                path,
                format!("{shown} is below minimum {}", show(&s["minimum"])),
            );
        }
    }
    if let Some(m) = num(s, "maximum") {
        if x > m {
            return fail(
                path,
                format!("{shown} is above maximum {}", show(&s["maximum"])),
            );
        }
    }
    if let Some(m) = num(s, "exclusiveMinimum") {
        if x <= m {
            return fail(
                path,
                format!(
                    "{shown} is not above exclusive minimum {}",
                    show(&s["exclusiveMinimum"])
                ),
            );
        }
    }
    if let Some(m) = num(s, "exclusiveMaximum") {
        if x >= m {
            return fail(
                path,
                format!(
                    "{shown} is not below exclusive maximum {}",
                    show(&s["exclusiveMaximum"])
                ),
            );
        }
    }
    if let Some(m) = num(s, "multipleOf") {
        if !is_multiple_of(x, m) {
            return fail(
                path,
                format!("{shown} is not a multiple of {}", show(&s["multipleOf"])),
            );
        }
    }
    Ok(())
}

fn validate_string(s: &Map<String, Value>, st: &str, path: &str) -> Result<(), SchemaError> {
    let len = st.chars().count() as u64;
    if let Some(m) = s.get("minLength").and_then(Value::as_u64) {
        if len < m {
            return fail(
                path,
                format!("string of {len} characters is shorter than minLength {m}"),
            );
        }
    }
    if let Some(m) = s.get("maxLength").and_then(Value::as_u64) {
        if len > m {
            return fail(
                path,
                format!("string of {len} characters is longer than maxLength {m}"),
            );
        }
    }
    if let Some(Value::String(p)) = s.get("pattern") {
        match Pattern::new(p) {
            Ok(pat) => {
                if !pat.is_match(st) {
                    return fail(
                        path,
                        format!(
                            "{} does not match pattern {p}",
                            show(&Value::String(st.into()))
                        ),
                    );
                }
            }
            Err(PatternError::Unsupported(why)) => {
                log::debug!("pattern {p:?} not checked: {why}");
            }
            Err(PatternError::Invalid(why)) => {
                return fail(path, format!("schema pattern {p:?} is invalid: {why}"));
            }
        }
    }
    Ok(())
}

fn validate_array(s: &Map<String, Value>, items: &[Value], path: &str) -> Result<(), SchemaError> {
    let n = items.len() as u64;
    if let Some(m) = s.get("minItems").and_then(Value::as_u64) {
        if n < m {
            return fail(
                path,
                format!("array of {n} items is shorter than minItems {m}"),
            );
        }
    }
    if let Some(m) = s.get("maxItems").and_then(Value::as_u64) {
        if n > m {
            return fail(
                path,
                format!("array of {n} items is longer than maxItems {m}"),
            );
        }
    }
    match s.get("items") {
        Some(Value::Array(tuple)) => {
            for (i, (item, sub)) in items.iter().zip(tuple).enumerate() {
                validate_at(sub, item, &format!("{path}[{i}]"))?;
            }
        }
        Some(sub) => {
            for (i, item) in items.iter().enumerate() {
                validate_at(sub, item, &format!("{path}[{i}]"))?;
            }
        }
        None => {}
    }
    if s.get("uniqueItems") == Some(&Value::Bool(true)) {
        for i in 0..items.len() {
            if items[..i].iter().any(|o| json_eq(o, &items[i])) {
                return fail(
                    &format!("{path}[{i}]"),
                    "duplicate item (uniqueItems)".into(),
                );
            }
        }
    }
    Ok(())
}

fn validate_object(
    s: &Map<String, Value>,
    obj: &Map<String, Value>,
    path: &str,
) -> Result<(), SchemaError> {
    if let Some(Value::Array(req)) = s.get("required") {
        for k in req.iter().filter_map(Value::as_str) {
            if !obj.contains_key(k) {
                return fail(&format!("{path}.{k}"), "is required".into());
            }
        }
    }
    let props = s.get("properties").and_then(Value::as_object);
    for (k, val) in obj {
        let at = format!("{path}.{k}");
        match props.and_then(|p| p.get(k)) {
            Some(sub) => validate_at(sub, val, &at)?,
            None => match s.get("additionalProperties") {
                Some(Value::Bool(false)) => {
                    let known: Vec<&str> = props
                        .map(|p| p.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    return fail(
                        &at,
                        format!("unknown property (allowed: {})", known.join(", ")),
                    );
                }
                Some(sub @ Value::Object(_)) => validate_at(sub, val, &at)?,
                _ => {}
            },
        }
    }
    if let Some(n) = s.get("minProperties").and_then(Value::as_u64) {
        if (obj.len() as u64) < n {
            return fail(path, format!("object has fewer than minProperties {n}"));
        }
    }
    if let Some(n) = s.get("maxProperties").and_then(Value::as_u64) {
        if (obj.len() as u64) > n {
            return fail(path, format!("object has more than maxProperties {n}"));
        }
    }
    Ok(())
}

/// Checks that `schema` is a usable schema (the error names the keyword's
/// path inside the schema, e.g. `properties.celsius.minimum`).
pub fn check_schema(schema: &Value) -> Result<(), String> {
    check_at(schema, "")
}

fn join(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

fn check_at(schema: &Value, path: &str) -> Result<(), String> {
    let here = if path.is_empty() { "schema" } else { path };
    let s = match schema {
        Value::Bool(_) => return Ok(()),
        Value::Object(s) => s,
        other => {
            return Err(format!(
                "{here} must be an object or a boolean, not {}",
                json_type(other)
            ))
        }
    };
    let bad = |k: &str, what: &str| Err(format!("{} must be {what}", join(path, k)));
    if let Some(t) = s.get("type") {
        let names: Vec<&Value> = match t {
            Value::Array(ts) if !ts.is_empty() => ts.iter().collect(),
            Value::String(_) => vec![t],
            _ => return bad("type", "a type name or a non-empty array of type names"),
        };
        for n in names {
            match n.as_str() {
                Some(name) if TYPES.contains(&name) => {}
                _ => {
                    return Err(format!(
                        "{}: unknown type {} (expected one of {})",
                        join(path, "type"),
                        show(n),
                        TYPES.join(", ")
                    ))
                }
            }
        }
    }
    if let Some(e) = s.get("enum") {
        if e.as_array().is_none_or(|a| a.is_empty()) {
            return bad("enum", "a non-empty array");
        }
    }
    for k in ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"] {
        if s.get(k).is_some_and(|v| !v.is_number()) {
            return bad(k, "a number");
        }
    }
    if let Some(m) = s.get("multipleOf") {
        if !m.as_f64().is_some_and(|m| m > 0.0) {
            return bad("multipleOf", "a number above 0");
        }
    }
    for k in [
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
    ] {
        if s.get(k).is_some_and(|v| !v.is_u64()) {
            return bad(k, "a non-negative integer");
        }
    }
    if let Some(p) = s.get("pattern") {
        let Some(p) = p.as_str() else {
            return bad("pattern", "a string");
        };
        if let Err(PatternError::Invalid(why)) = Pattern::new(p) {
            return Err(format!(
                "{}: invalid pattern {p:?}: {why}",
                join(path, "pattern")
            ));
        }
    }
    if let Some(r) = s.get("required") {
        if !r.as_array().is_some_and(|a| a.iter().all(Value::is_string)) {
            return bad("required", "an array of strings");
        }
    }
    if let Some(p) = s.get("properties") {
        let Some(p) = p.as_object() else {
            return bad("properties", "an object");
        };
        for (k, sub) in p {
            check_at(sub, &join(&join(path, "properties"), k))?;
        }
    }
    if let Some(a) = s.get("additionalProperties") {
        check_at(a, &join(path, "additionalProperties"))?;
    }
    match s.get("items") {
        Some(Value::Array(tuple)) => {
            for (i, sub) in tuple.iter().enumerate() {
                check_at(sub, &format!("{}[{i}]", join(path, "items")))?;
            }
        }
        Some(sub) => check_at(sub, &join(path, "items"))?,
        None => {}
    }
    for k in ["anyOf", "allOf", "oneOf"] {
        if let Some(list) = s.get(k) {
            let Some(list) = list.as_array().filter(|a| !a.is_empty()) else {
                return bad(k, "a non-empty array of schemas");
            };
            for (i, sub) in list.iter().enumerate() {
                check_at(sub, &format!("{}[{i}]", join(path, k)))?;
            }
        }
    }
    if let Some(n) = s.get("not") {
        check_at(n, &join(path, "not"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
