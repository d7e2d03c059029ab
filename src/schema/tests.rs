//! Schema validation on the demo catalogue and on each keyword.

use super::*;
use serde_json::json;

fn err(schema: Value, v: Value) -> String {
    validate(&schema, &v, "arguments").unwrap_err().to_string()
}

fn ok(schema: Value, v: Value) {
    validate(&schema, &v, "arguments").unwrap_or_else(|e| panic!("{v}: {e}"));
}

fn temperature() -> Value {
    json!({"type": "object", "properties": {
        "zone": {"type": "string", "enum": ["driver", "passenger", "rear", "all"]},
        "celsius": {"type": "number", "minimum": 16, "maximum": 30, "multipleOf": 0.5}},
        "required": ["zone", "celsius"], "additionalProperties": false})
}

fn catalogue() -> Vec<(String, Value)> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/assist-moe/tools.json"
    ))
    .expect("models/assist-moe/tools.json");
    let v: Value = serde_json::from_str(&text).unwrap();
    v["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["function"]["name"].as_str().unwrap().to_string(),
                t["function"]["parameters"].clone(),
            )
        })
        .collect()
}

/// A value that satisfies `s` (enough for the catalogue's schemas).
fn example(s: &Value) -> Value {
    if let Some(e) = s.get("enum") {
        return e[0].clone();
    }
    match s["type"].as_str().unwrap() {
        "string" if s.get("pattern").is_some() => json!("07:30"),
        "string" => json!("東京"),
        "integer" | "number" => json!(s.get("minimum").and_then(Value::as_i64).unwrap_or(0)),
        "boolean" => json!(true),
        "object" => Value::Object(
            s["properties"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, sub)| (k.clone(), example(sub)))
                .collect(),
        ),
        other => panic!("no example for {other}"),
    }
}

#[test]
fn every_catalogue_tool() {
    let tools = catalogue();
    assert_eq!(tools.len(), 20);
    for (name, params) in &tools {
        check_schema(params).unwrap_or_else(|e| panic!("{name}: {e}"));
        let good = example(params);
        validate(params, &good, "arguments").unwrap_or_else(|e| panic!("{name}: {e}"));
        let props = params["properties"].as_object().unwrap();
        for (k, sub) in props {
            // Wrong type for each property: the error names it.
            let mut bad = good.clone();
            bad[k] = if sub["type"] == "string" {
                json!(5)
            } else {
                json!("x")
            };
            let e = validate(params, &bad, "arguments").unwrap_err();
            assert_eq!(e.path, format!("arguments.{k}"), "{name}");
            // Out of range / not in enum / pattern mismatch.
            let mut out = good.clone();
            if sub.get("enum").is_some() {
                out[k] = json!("nope");
            } else if let Some(max) = sub.get("maximum").and_then(Value::as_i64) {
                out[k] = json!(max + 1);
            } else if sub.get("pattern").is_some() {
                out[k] = json!("24:00");
            } else {
                continue;
            }
            let e = validate(params, &out, "arguments").unwrap_err();
            assert_eq!(e.path, format!("arguments.{k}"), "{name}: {e}");
        }
        for req in params["required"].as_array().unwrap() {
            let mut missing = good.clone();
            missing
                .as_object_mut()
                .unwrap()
                .remove(req.as_str().unwrap());
            let e = validate(params, &missing, "arguments").unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("arguments.{}: is required", req.as_str().unwrap())
            );
        }
        let mut extra = good.clone();
        extra["bogus"] = json!(1);
        assert_eq!(
            validate(params, &extra, "arguments").unwrap_err().path,
            "arguments.bogus"
        );
    }
}

/// Every expected call of the held-out corpus split satisfies its tool's schema.
#[test]
fn corpus_answers_satisfy_their_schemas() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/assist-moe/data/valid.jsonl"
    );
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let tools: std::collections::HashMap<String, Value> = catalogue().into_iter().collect();
    let mut n = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let row: Value = serde_json::from_str(line).unwrap();
        let Some(expected) = row.get("expected").filter(|e| !e.is_null()) else {
            continue;
        };
        let params = &tools[expected["name"].as_str().unwrap()];
        validate(params, &expected["arguments"], "arguments")
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        n += 1;
    }
    assert!(n > 0);
}

#[test]
fn numbers_and_paths() {
    ok(temperature(), json!({"zone": "driver", "celsius": 22}));
    ok(temperature(), json!({"zone": "all", "celsius": 22.5}));
    assert_eq!(
        err(temperature(), json!({"zone": "driver", "celsius": 35})),
        "arguments.celsius: 35 is above maximum 30"
    );
    assert_eq!(
        err(temperature(), json!({"zone": "driver", "celsius": 15.5})),
        "arguments.celsius: 15.5 is below minimum 16"
    );
    assert_eq!(
        err(temperature(), json!({"zone": "driver", "celsius": 22.3})),
        "arguments.celsius: 22.3 is not a multiple of 0.5"
    );
    assert_eq!(
        err(temperature(), json!({"zone": "roof", "celsius": 22})),
        "arguments.zone: \"roof\" is not one of \"driver\", \"passenger\", \"rear\", \"all\""
    );
    assert_eq!(
        err(temperature(), json!({"zone": "driver"})),
        "arguments.celsius: is required"
    );
    assert!(err(
        temperature(),
        json!({"zone": "driver", "celsius": 22, "fan": 1})
    )
    .starts_with("arguments.fan: unknown property"));
    assert_eq!(
        err(temperature(), json!({"zone": "driver", "celsius": "22"})),
        "arguments.celsius: \"22\" is a string, expected number"
    );
    assert_eq!(
        err(temperature(), json!([1])),
        "arguments: [1] is a array, expected object"
    );
}

#[test]
fn integers_and_multiples() {
    let s = json!({"type": "integer", "minimum": 0, "maximum": 7});
    ok(s.clone(), json!(3));
    ok(s.clone(), json!(3.0));
    assert!(err(s.clone(), json!(3.5)).contains("non-integer"));
    assert!(err(s, json!(8)).contains("above maximum 7"));
    assert!(is_multiple_of(22.5, 0.5));
    assert!(is_multiple_of(0.3, 0.1));
    assert!(is_multiple_of(1e6 + 0.01, 0.01));
    assert!(!is_multiple_of(0.35, 0.1));
    assert!(is_multiple_of(-4.0, 2.0));
    let ex = json!({"exclusiveMinimum": 0, "exclusiveMaximum": 1});
    ok(ex.clone(), json!(0.5));
    assert!(err(ex.clone(), json!(0)).contains("exclusive minimum"));
    assert!(err(ex, json!(1)).contains("exclusive maximum"));
    ok(json!({"type": ["integer", "null"]}), json!(null));
    assert!(
        err(json!({"type": ["integer", "null"]}), json!("x")).contains("expected integer or null")
    );
    ok(json!({"enum": [1, "a"]}), json!(1.0));
    ok(json!({"const": {"a": [1]}}), json!({"a": [1.0]}));
    assert!(err(json!({"const": "x"}), json!("y")).contains("is not \"x\""));
}

#[test]
fn strings_arrays_combinators() {
    let s = json!({"type": "string", "minLength": 2, "maxLength": 3});
    ok(s.clone(), json!("日本"));
    assert!(err(s.clone(), json!("a")).contains("minLength 2"));
    assert!(err(s, json!("abcd")).contains("maxLength 3"));
    let a = json!({"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 2});
    ok(a.clone(), json!([1, 2]));
    assert_eq!(
        err(a.clone(), json!([1, "x"])),
        "arguments[1]: \"x\" is a string, expected integer"
    );
    assert!(err(a.clone(), json!([])).contains("minItems"));
    assert!(err(a, json!([1, 2, 3])).contains("maxItems"));
    let nested = json!({"type": "object", "properties": {"stops": {"type": "array", "items": {
        "type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}}});
    assert_eq!(
        err(nested, json!({"stops": [{"name": "a"}, {}]})),
        "arguments.stops[1].name: is required"
    );
    let any = json!({"anyOf": [{"type": "string"}, {"type": "integer"}]});
    ok(any.clone(), json!(1));
    assert!(err(any, json!(true)).contains("anyOf"));
    assert!(err(
        json!({"oneOf": [{"type": "number"}, {"type": "integer"}]}),
        json!(1)
    )
    .contains("matches 2"));
    assert!(err(json!({"not": {"type": "null"}}), json!(null)).contains("not"));
    ok(
        json!({"additionalProperties": {"type": "integer"}}),
        json!({"a": 1}),
    );
    assert!(err(
        json!({"additionalProperties": {"type": "integer"}}),
        json!({"a": "x"})
    )
    .starts_with("arguments.a:"));
    ok(json!(true), json!({"anything": 1}));
    ok(
        json!({"type": "object", "format": "whatever", "$ref": "#/x"}),
        json!({}),
    );
}

#[test]
fn unsupported_and_failing_patterns() {
    // An unsupported pattern is accepted and not checked.
    check_schema(&json!({"type": "string", "pattern": "(?=a)"})).unwrap();
    ok(json!({"type": "string", "pattern": "(?=a)"}), json!("b"));
    assert!(err(
        json!({"type": "string", "pattern": "^[0-9]+$"}),
        json!("12a")
    )
    .contains("does not match pattern"));
}

#[test]
fn check_schema_rejects_malformed() {
    check_schema(&temperature()).unwrap();
    check_schema(&json!({})).unwrap();
    check_schema(&json!({"type": "object", "properties": {"a": {"type": "string", "description": "x", "x-anything": [1]}}})).unwrap();
    let bad = [
        (json!([]), "schema must be an object"),
        (json!({"type": "strin"}), "type: unknown type"),
        (json!({"type": []}), "type must be"),
        (
            json!({"properties": {"a": {"type": 3}}}),
            "properties.a.type",
        ),
        (json!({"properties": []}), "properties must be an object"),
        (json!({"required": "a"}), "required must be"),
        (json!({"enum": []}), "enum must be"),
        (json!({"minimum": "1"}), "minimum must be a number"),
        (json!({"multipleOf": 0}), "multipleOf must be"),
        (json!({"maxLength": -1}), "maxLength must be"),
        (json!({"pattern": "([0-9]"}), "pattern: invalid pattern"),
        (json!({"items": {"type": "nope"}}), "items.type"),
        (json!({"anyOf": {}}), "anyOf must be"),
        (
            json!({"properties": {"a": {"additionalProperties": 1}}}),
            "properties.a.additionalProperties",
        ),
    ];
    for (s, want) in bad {
        let e = check_schema(&s).unwrap_err();
        assert!(e.contains(want), "{s}: {e}");
    }
}
