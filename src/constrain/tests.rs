//! The automaton against the demo tokenizer and the tool catalogue: random
//! and adversarial token choices among the allowed ones always end in output
//! that parses and validates (`chat::toolcall`, `schema`), and
//! wrong enums, out-of-range numbers and extra keys are refused.

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::grammar::Grammar;
use super::matcher::Matcher;
use super::request::spec_for;
use super::*;
use crate::chat::toolcall::{parse_and_check, parse_output};
use crate::openai::{Tool, ToolChoice};
use crate::schema;

fn repo(p: &str) -> String {
    format!("{}/{p}", env!("CARGO_MANIFEST_DIR"))
}

fn catalogue() -> Vec<Tool> {
    let text = std::fs::read_to_string(repo("models/assist-moe/tools.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    serde_json::from_value(v["tools"].clone()).unwrap()
}

fn vocab() -> Arc<Vocab> {
    let tok =
        tokenizers::Tokenizer::from_file(repo("models/assist-moe/bundle/tokenizer.json")).unwrap();
    Arc::new(Vocab::from_tokenizer(&tok, &[2]).unwrap())
}

/// Drives a constraint with random choices among the allowed tokens; `bias`
/// is the chance of preferring a token that closes something (a quote, a
/// brace, a special token) so walks end. Returns the text and whether the
/// turn ended.
fn walk(
    c: &mut Constraint,
    v: &Vocab,
    rng: &mut StdRng,
    bias: f64,
    steps: usize,
) -> (String, bool) {
    let mut out: Vec<u8> = Vec::new();
    for _ in 0..steps {
        let allowed: Vec<u32> = c.mask().ids().collect();
        assert!(
            !allowed.is_empty(),
            "dead end after {:?}",
            String::from_utf8_lossy(&out)
        );
        let closing: Vec<u32> = allowed
            .iter()
            .copied()
            .filter(|&t| v.is_special(t) || v.token_bytes(t).iter().any(|b| b"\"}]".contains(b)))
            .collect();
        let pool = if !closing.is_empty() && rng.gen_bool(bias) {
            &closing
        } else {
            &allowed
        };
        let t = pool[rng.gen_range(0..pool.len())];
        c.advance(t)
            .unwrap_or_else(|e| panic!("mask allowed {t} but advance refused: {e}"));
        if v.specials.eos.contains(&t) {
            return (String::from_utf8_lossy(&out).into_owned(), true);
        }
        out.extend_from_slice(v.token_bytes(t));
    }
    (String::from_utf8_lossy(&out).into_owned(), false)
}

fn tools_spec(tools: &[Tool], choice: &ToolChoice) -> Spec {
    spec_for(tools, choice, None, None, None).unwrap().unwrap()
}

#[test]
fn every_tool_random_walks_validate() {
    let v = vocab();
    let tools = catalogue();
    let mut rng = StdRng::seed_from_u64(7);
    for tool in &tools {
        let choice = ToolChoice::Function(tool.function.name.clone());
        let spec = tools_spec(&tools, &choice);
        let (mut ended, mut validated) = (0, 0);
        for _ in 0..25 {
            let mut c = Constraint::new(spec.clone(), v.clone());
            let (text, done) = walk(&mut c, &v, &mut rng, 0.6, 600);
            if !done {
                continue;
            }
            ended += 1;
            let p = parse_and_check(&text, &tools, &choice);
            if p.fallback {
                continue;
            }
            assert!(
                p.malformed.is_none() && p.invalid.is_none(),
                "{text}\n{p:?}"
            );
            assert!(!p.calls.is_empty(), "{text}");
            assert!(p.calls.iter().all(|c| c.name == tool.function.name));
            validated += 1;
        }
        assert!(
            ended >= 20,
            "{}: only {ended} walks ended",
            tool.function.name
        );
        assert!(
            validated >= 5,
            "{}: only {validated} calls",
            tool.function.name
        );
    }
}

#[test]
fn auto_walks_are_text_fallback_or_valid_calls() {
    let v = vocab();
    let tools = catalogue();
    let spec = tools_spec(&tools, &ToolChoice::Auto);
    let mut rng = StdRng::seed_from_u64(11);
    let (mut calls, mut texts) = (0, 0);
    for _ in 0..200 {
        let mut c = Constraint::new(spec.clone(), v.clone());
        let (text, done) = walk(&mut c, &v, &mut rng, 0.5, 400);
        if !done {
            continue;
        }
        let p = parse_and_check(&text, &tools, &ToolChoice::Auto);
        assert!(
            p.malformed.is_none() && p.invalid.is_none(),
            "{text}\n{p:?}"
        );
        calls += p.calls.len();
        texts += p.content.is_some() as usize;
    }
    assert!(calls > 0 && texts > 0, "calls {calls} texts {texts}");
}

#[test]
fn tool_choice_outlines() {
    let v = vocab();
    let sp = v.specials.clone();
    let tools = catalogue();
    // auto: text, a call or the fallback marker; not the end of turn at once
    let mut c = Constraint::new(tools_spec(&tools, &ToolChoice::Auto), v.clone());
    let m = c.mask().clone();
    assert!(m.get(sp.call_open) && m.get(sp.fallback.unwrap()));
    assert!(!sp.eos.iter().any(|&e| m.get(e)));
    assert!(m.count() > 1000, "text allowed: {}", m.count());
    // required: only a call (or the fallback marker)
    let mut c = Constraint::new(tools_spec(&tools, &ToolChoice::Required), v.clone());
    let ids: Vec<u32> = c.mask().ids().collect();
    assert_eq!(ids, vec![sp.call_open, sp.fallback.unwrap()]);
    // none: never a call, and text may not spell one
    let mut c = Constraint::new(tools_spec(&tools, &ToolChoice::None), v.clone());
    assert!(!c.mask().get(sp.call_open));
    // ... and a model that wants to call gets the fallback marker instead
    let mut logits = vec![0.0f32; v.len()];
    logits[sp.call_open as usize] = 5.0;
    assert_eq!(c.divert(&logits), sp.fallback);
    logits[sp.call_open as usize] = -5.0;
    assert_eq!(
        c.divert(&logits),
        None,
        "text the model prefers is left to the mask"
    );
    let auto = Constraint::new(tools_spec(&tools, &ToolChoice::Auto), v.clone());
    logits[sp.call_open as usize] = 5.0;
    assert_eq!(
        auto.divert(&logits),
        None,
        "calls allowed: nothing to divert"
    );
    let mut rng = StdRng::seed_from_u64(3);
    for _ in 0..50 {
        let mut c = Constraint::new(Spec::NoCalls, v.clone());
        let (text, _) = walk(&mut c, &v, &mut rng, 0.1, 60);
        assert!(parse_output(&text).calls.is_empty() && !text.contains("<tool_call>"));
    }
    // spelling "<tool_call>" byte by byte is refused in text
    let mut m = Matcher::text();
    let g = Grammar::for_json(&json!({})).unwrap();
    let spelled = b"ok <tool_call";
    assert!(spelled.iter().all(|&b| m.feed(&g, b)));
    let mut probe = m;
    assert!(!probe.feed(&g, b'>'));
    // named: the name is fixed
    let choice = ToolChoice::Function("set_fan_speed".into());
    let mut c = Constraint::new(tools_spec(&tools, &choice), v.clone());
    c.advance(sp.call_open).unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    let (text, _) = walk(&mut c, &v, &mut rng, 0.5, 100);
    assert!(
        text.starts_with("{\"name\": \"set_fan_speed\", \"arguments\": {\"level\": "),
        "{text}"
    );
    // parallel_tool_calls false: after one call only the end of turn
    let spec = spec_for(&tools, &ToolChoice::Required, Some(false), None, None)
        .unwrap()
        .unwrap();
    let mut c = Constraint::new(spec, v.clone());
    c.advance(sp.call_open).unwrap();
    let call = "{\"name\": \"set_fan_speed\", \"arguments\": {\"level\": 3}}";
    let tok =
        tokenizers::Tokenizer::from_file(repo("models/assist-moe/bundle/tokenizer.json")).unwrap();
    for id in tok.encode(call, false).unwrap().get_ids() {
        c.advance(*id).unwrap();
    }
    c.advance(sp.call_close).unwrap();
    let ids: Vec<u32> = c.mask().ids().collect();
    let mut eos = sp.eos.clone();
    eos.sort_unstable();
    assert_eq!(ids, eos);
}

/// Feeds `text` to a fresh tool-call matcher; how far it got.
fn accepted_prefix(g: &Grammar, text: &str) -> usize {
    let mut m = Matcher::start(g);
    for (i, &b) in text.as_bytes().iter().enumerate() {
        if !m.feed(g, b) {
            return i;
        }
    }
    text.len()
}

#[test]
fn adversarial_values_are_refused() {
    let tools = catalogue();
    let list: Vec<(String, Option<Value>)> = tools
        .iter()
        .map(|t| (t.function.name.clone(), t.function.parameters.clone()))
        .collect();
    let g = Grammar::for_tools(&list).unwrap();
    let ok = r#"{"name": "set_temperature", "arguments": {"zone": "driver", "celsius": 22.5}}"#;
    assert_eq!(accepted_prefix(&g, ok), ok.len());
    let mut m = Matcher::start(&g);
    assert!(ok.bytes().all(|b| m.feed(&g, b)) && m.is_done());
    let head = r#"{"name": "set_temperature", "arguments": {"zone": "#;
    for (bad, stop_at) in [
        // wrong enum value
        (format!("{head}\"drivr\""), head.len() + 5),
        // out of range: 35 > 30, 15 < 16, 22.3 not a multiple of 0.5
        (
            format!("{head}\"driver\", \"celsius\": 35"),
            head.len() + 22,
        ),
        (
            format!("{head}\"driver\", \"celsius\": 15"),
            head.len() + 22,
        ),
        (
            format!("{head}\"driver\", \"celsius\": 22.3"),
            head.len() + 24,
        ),
        // extra key, repeated key, missing required key
        (format!("{head}\"driver\", \"fan\": 2"), head.len() + 11),
        (format!("{head}\"driver\", \"zone\""), head.len() + 11),
        (format!("{head}\"driver\"}}"), head.len() + 8),
        // unknown tool
        (r#"{"name": "launch_rocket""#.to_string(), 10),
        // not the trained spacing
        (r#"{"name":"set_fan_speed""#.to_string(), 8),
    ] {
        assert_eq!(accepted_prefix(&g, &bad), stop_at, "{bad}");
    }
    // the reminder's time pattern ^([01][0-9]|2[0-3]):[0-5][0-9]$
    let head = r#"{"name": "set_reminder", "arguments": {"text": "x", "time": ""#;
    assert_eq!(
        accepted_prefix(&g, &format!("{head}23:59\"}}}}")),
        head.len() + 8
    );
    assert_eq!(accepted_prefix(&g, &format!("{head}24")), head.len() + 1);
    assert_eq!(accepted_prefix(&g, &format!("{head}9:30")), head.len());
    assert_eq!(
        accepted_prefix(&g, &format!("{head}12:3\"")),
        head.len() + 4
    );
}

#[test]
fn digit_matcher_respects_ranges() {
    let schema = json!({"type": "object", "properties": {
        "a": {"type": "integer", "minimum": -50, "maximum": 1000000},
        "b": {"type": "number", "exclusiveMinimum": 0, "maximum": 2.5},
        "c": {"type": "number"},
        "d": {"type": "integer", "minimum": 10, "multipleOf": 5}
    }, "required": ["a", "b", "c", "d"], "additionalProperties": false});
    let g = Arc::new(Grammar::for_tools(&[("f".into(), Some(schema.clone()))]).unwrap());
    let v = vocab();
    let spec = Spec::Tools {
        grammar: g.clone(),
        must_call: true,
        parallel: false,
    };
    let mut rng = StdRng::seed_from_u64(21);
    let mut ended = 0;
    for _ in 0..150 {
        let mut c = Constraint::new(spec.clone(), v.clone());
        let (text, done) = walk(&mut c, &v, &mut rng, 0.5, 200);
        if !done {
            continue;
        }
        let p = parse_output(&text);
        if p.fallback {
            continue;
        }
        ended += 1;
        assert!(p.malformed.is_none(), "{text}");
        schema::validate(&schema, &p.calls[0].arguments, "arguments")
            .unwrap_or_else(|e| panic!("{text}: {e}"));
    }
    assert!(ended > 50, "{ended}");
    let head = r#"{"name": "f", "arguments": {"a": "#;
    assert_eq!(accepted_prefix(&g, &format!("{head}-51")), head.len() + 2);
    assert_eq!(
        accepted_prefix(&g, &format!("{head}1000001")),
        head.len() + 6
    );
    assert_eq!(accepted_prefix(&g, &format!("{head}007")), head.len() + 1);
    let head = r#"{"name": "f", "arguments": {"b": "#;
    assert_eq!(accepted_prefix(&g, &format!("{head}0, ")), head.len() + 1);
    assert_eq!(accepted_prefix(&g, &format!("{head}2.6")), head.len() + 2);
    assert_eq!(accepted_prefix(&g, &format!("{head}2.50,")), head.len() + 5);
}

#[test]
fn response_format_json_schema_walks_validate() {
    let v = vocab();
    let schema = json!({"type": "object", "properties": {
        "answer": {"type": "string", "maxLength": 12},
        "score": {"type": "integer", "minimum": 1, "maximum": 5},
        "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}, "maxItems": 3},
        "ok": {"type": "boolean"},
        "extra": {"type": ["string", "null"]},
        "meta": {}
    }, "required": ["answer", "score"], "additionalProperties": false});
    let rf = json!({"type": "json_schema", "json_schema": {"name": "r", "schema": schema.clone()}});
    let spec = spec_for(&[], &ToolChoice::None, None, Some(&rf), None)
        .unwrap()
        .unwrap();
    let mut rng = StdRng::seed_from_u64(9);
    let mut ended = 0;
    for _ in 0..150 {
        let mut c = Constraint::new(spec.clone(), v.clone());
        let (text, done) = walk(&mut c, &v, &mut rng, 0.5, 300);
        if !done {
            continue;
        }
        ended += 1;
        let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        schema::validate(&schema, &value, "answer").unwrap_or_else(|e| panic!("{text}: {e}"));
    }
    assert!(ended > 50, "{ended}");
    // json_object: any object
    let rf = json!({"type": "json_object"});
    let spec = spec_for(&[], &ToolChoice::None, None, Some(&rf), None)
        .unwrap()
        .unwrap();
    for _ in 0..50 {
        let mut c = Constraint::new(spec.clone(), v.clone());
        let (text, done) = walk(&mut c, &v, &mut rng, 0.5, 300);
        if done {
            let value: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert!(value.is_object());
        }
    }
}

#[test]
fn mask_agrees_with_advance() {
    let v = vocab();
    let tools = catalogue();
    let spec = tools_spec(&tools, &ToolChoice::Auto);
    let mut rng = StdRng::seed_from_u64(1);
    for _ in 0..10 {
        let mut c = Constraint::new(spec.clone(), v.clone());
        c.advance(v.specials.call_open).unwrap();
        for _ in 0..30 {
            let m = c.mask().clone();
            if m.ids().all(|t| v.specials.eos.contains(&t)) {
                break;
            }
            // every token: allowed by the mask iff a fresh advance accepts it
            for t in (0..v.len() as u32).step_by(7) {
                let mut probe = Constraint::new(spec.clone(), v.clone());
                probe.phase_from(&c);
                assert_eq!(probe.advance(t).is_ok(), m.get(t), "token {t}");
            }
            let ids: Vec<u32> = m.ids().collect();
            c.advance(ids[rng.gen_range(0..ids.len())]).unwrap();
        }
    }
}

#[test]
fn bad_schemas_are_named() {
    let e = Grammar::for_tools(&[(
        "f".into(),
        Some(json!({"type": "object", "properties": {"a": {"type": "strin"}}})),
    )])
    .unwrap_err();
    assert!(
        e.to_string().contains("tool \"f\"") && e.to_string().contains("strin"),
        "{e}"
    );
    let e = Grammar::for_json(&json!({"type": "string", "pattern": "(a"})).unwrap_err();
    assert!(e.to_string().contains("pattern"), "{e}");
    let e = spec_for(
        &catalogue(),
        &ToolChoice::Function("nope".into()),
        None,
        None,
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
}

/// Feeds `text` to a fresh matcher of `g`; the bytes it took before refusing.
fn feed_all(g: &Grammar, text: &[u8]) -> usize {
    let mut m = Matcher::start(g);
    text.iter().take_while(|&&b| m.feed(g, b)).count()
}

#[test]
fn grounded_strings_are_substrings_of_the_reference() {
    let schema = json!({"type": "string", "x-grounded": true});
    let g = Grammar::for_json(&schema)
        .unwrap()
        .with_reference("Send \"hi\\there\" to 森本: 今駅");
    let whole = |s: &str| feed_all(&g, s.as_bytes()) == s.len();
    assert!(whole(r#""森本""#));
    assert!(whole(r#""今駅""#));
    assert!(whole(r#""Send \"hi""#), "an escaped quote matches a quote");
    assert!(whole(r#""hi\\there""#), "an escaped backslash matches one");
    assert!(whole(r#""""#), "the empty string is in every text");
    assert!(!whole(r#""森駅""#));
    assert!(!whole(r#""send""#), "byte for byte: case counts");
    assert!(
        !whole(r#""\u0053end""#),
        "no \\u escapes in grounded strings"
    );
    // refused at the first byte that leaves the reference, even inside a
    // character: 陽 (E9 99 BD) shares only its lead byte with 駅 (E9 A7 85)
    assert_eq!(feed_all(&g, "\"今陽".as_bytes()), 1 + 3 + 1);
    assert_eq!(feed_all(&g, "\"今日".as_bytes()), 1 + 3);
    // a backslash only when an escapable character follows in the reference
    assert_eq!(feed_all(&g, br#""to\"#), 3);
    // without a reference only "" is left
    let empty = Grammar::for_json(&schema).unwrap();
    assert_eq!(feed_all(&empty, br#""""#), 2);
    assert_eq!(feed_all(&empty, br#""a""#), 1);
    // a long reference keeps its end, cut at a character boundary
    let long = format!("{}駅", "x".repeat(grammar::MAX_REFERENCE));
    let g = Grammar::for_json(&schema).unwrap().with_reference(&long);
    assert!(g.grounding.text().len() <= grammar::MAX_REFERENCE);
    assert!(std::str::from_utf8(g.grounding.text())
        .unwrap()
        .ends_with("x駅"));
}

#[test]
fn grounded_keyword_is_checked() {
    let e = Grammar::for_json(&json!({"type": "string", "x-grounded": "yes"})).unwrap_err();
    assert!(e.to_string().contains("x-grounded"), "{e}");
    let e = Grammar::for_json(&json!({"type": "string", "x-grounded": true, "pattern": "^a$"}))
        .unwrap_err();
    assert!(e.to_string().contains("pattern"), "{e}");
    let g = Grammar::for_json(&json!({"type": "string", "x-grounded": false})).unwrap();
    assert!(!g.has_grounded());
}

#[test]
fn ground_free_strings_marks_only_free_text() {
    let mut tools = catalogue();
    // destination, query, name, contact, text (message), location, text
    // (reminder), text (translate), app; not the enums nor the time pattern
    assert_eq!(request::ground_free_strings(&mut tools), 9);
    let send = tools
        .iter()
        .find(|t| t.function.name == "send_message")
        .unwrap();
    let p = send.function.parameters.as_ref().unwrap();
    assert_eq!(p["properties"]["contact"]["x-grounded"], json!(true));
    let rem = tools
        .iter()
        .find(|t| t.function.name == "set_reminder")
        .unwrap();
    let p = rem.function.parameters.as_ref().unwrap();
    assert!(p["properties"]["time"].get("x-grounded").is_none());
    // idempotent: already marked strings are left alone
    assert_eq!(request::ground_free_strings(&mut tools), 0);
}

#[test]
fn grounded_random_walks_copy_from_the_request() {
    let v = vocab();
    let mut tools = catalogue();
    request::ground_free_strings(&mut tools);
    let said = "Send \"the door code is 4512\" to 森本さん, then navigate to Kyoto Station";
    let mut rng = StdRng::seed_from_u64(11);
    let mut checked = 0;
    for name in [
        "send_message",
        "navigate_to",
        "translate",
        "read_notifications",
    ] {
        let choice = ToolChoice::Function(name.into());
        let spec = spec_for(&tools, &choice, None, None, Some(said))
            .unwrap()
            .unwrap();
        for _ in 0..20 {
            let mut c = Constraint::new(spec.clone(), v.clone());
            let (text, done) = walk(&mut c, &v, &mut rng, 0.5, 400);
            if !done {
                continue;
            }
            let p = parse_and_check(&text, &tools, &choice);
            assert!(
                p.malformed.is_none() && p.invalid.is_none(),
                "{text}\n{p:?}"
            );
            for call in &p.calls {
                for (k, val) in call.arguments.as_object().unwrap() {
                    if let Some(s) = val.as_str() {
                        let grounded = !(k == "mode" || k == "target_language");
                        assert!(
                            !grounded || said.contains(s),
                            "{name}.{k} = {s:?} is not in the request"
                        );
                        checked += grounded as usize;
                    }
                }
            }
        }
    }
    assert!(checked >= 20, "only {checked} grounded values checked");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
    /// Any reference text (quotes, backslashes, newlines, multi-byte
    /// characters): random token walks under the mask never reach a dead end,
    /// and the value they end with is a substring of the reference.
    #[test]
    fn grounded_walks_never_dead_end_and_stay_in_the_reference(
        picks in proptest::collection::vec(0usize..12, 0..40),
        seed in proptest::prelude::any::<u64>(),
    ) {
        const ALPHABET: [&str; 12] = ["a", "b", "ab", " ", "\"", "\\", "\n", "/", "é", "駅", "🙂", "x y"];
        let reference: String = picks.iter().map(|&i| ALPHABET[i]).collect();
        let rf = json!({"type": "json_schema", "json_schema": {"schema": {
            "type": "object",
            "properties": {"s": {"type": "string", "x-grounded": true, "maxLength": 12}},
            "required": ["s"], "additionalProperties": false}}});
        let spec = spec_for(&[], &ToolChoice::None, None, Some(&rf), Some(&reference))
            .unwrap()
            .unwrap();
        let v = vocab();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut c = Constraint::new(spec, v.clone());
        // at most 12 characters: every walk ends well within 300 tokens
        let (text, done) = walk(&mut c, &v, &mut rng, 0.3, 300);
        proptest::prop_assert!(done, "no end after 300 tokens: {text:?}");
        let got: Value = serde_json::from_str(&text).unwrap();
        let s = got["s"].as_str().unwrap();
        proptest::prop_assert!(reference.contains(s), "{s:?} not in {reference:?}");
    }
}
