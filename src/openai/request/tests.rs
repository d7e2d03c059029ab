//! Parsing and validation of chat requests.

use super::*;
use serde_json::json;

fn parse(v: Value) -> Result<ChatRequest, ApiError> {
    ChatRequest::parse(v.to_string().as_bytes(), 1 << 20)
}

fn valid(v: Value) -> Result<ValidRequest, ApiError> {
    parse(v)?.validate(&RequestLimits::default())
}

fn err(v: Value) -> ApiError {
    valid(v).expect_err("should fail")
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
}

fn full_request() -> Value {
    json!({
        "model": "assist-moe",
        "messages": [
            {"role": "system", "content": "You are a car."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?", "cache_control": {"type": "ephemeral"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
                {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}},
                {"type": "file", "file": {"file_id": "f1"}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Kyoto\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "user", "content": "thanks", "name": "alice"}
        ],
        "tools": [weather_tool()],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": false,
        "stream": true,
        "stream_options": {"include_usage": true},
        "max_tokens": 64,
        "max_completion_tokens": 32,
        "temperature": 0.7,
        "top_p": 0.9,
        "stop": ["\n\n", "END"],
        "seed": 42,
        "n": 1,
        "response_format": {"type": "text"},
        "user": "u1",
        "x-priority": "safety",
        "x-deadline-ms": 1500,
        "x-min-confidence": 0.6,
        "logprobs": true,
        "top_logprobs": 3,
        "reply_topic": "apps/hud/replies",
        "id": "req-7",
        "enable_thinking": false,
        "metadata": {"a": [1, 2, {"b": null}]}
    })
}

/// Null and absent are the same: drop nulls for comparison.
fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

#[test]
fn grounding_text_is_the_user_and_tool_messages() {
    let req = parse(json!({"model": "m", "messages": [
        {"role": "system", "content": "You are the in-car assistant."},
        {"role": "user", "content": "Text Anna"},
        {"role": "assistant", "content": "What should I say?"},
        {"role": "tool", "tool_call_id": "c1", "content": "Anna Kim"},
        {"role": "user", "content": [{"type": "text", "text": "that I'm late"}]}
    ]}))
    .unwrap();
    assert_eq!(req.grounding_text(), "Text Anna\0Anna Kim\0that I'm late");
    let none = parse(json!({"model": "m", "messages": [
        {"role": "system", "content": "hi"}]}))
    .unwrap();
    assert_eq!(none.grounding_text(), "");
}

#[test]
fn round_trip_keeps_everything() {
    let original = full_request();
    let req = parse(original.clone()).unwrap();
    let back = serde_json::to_value(&req).unwrap();
    // metadata contains a null inside an unknown field: kept verbatim.
    assert_eq!(back["metadata"], original["metadata"]);
    assert_eq!(strip_nulls(&back), strip_nulls(&original));
    let again: ChatRequest = serde_json::from_value(back).unwrap();
    assert_eq!(again, req);
}

#[test]
fn typed_fields_are_read() {
    let req = parse(full_request()).unwrap();
    assert_eq!(req.max_tokens(), Some(32));
    assert_eq!(req.stop_sequences(), vec!["\n\n", "END"]);
    assert_eq!(req.priority(), Priority::SAFETY);
    assert!(req.has_non_text_content());
    assert_eq!(
        req.tool_choice,
        Some(ToolChoice::Function("get_weather".into()))
    );
    assert_eq!(req.extra["enable_thinking"], json!(false));
    let Some(Content::Parts(parts)) = &req.messages[1].content else {
        panic!()
    };
    assert_eq!(parts[0].as_text(), Some("What is this?"));
    assert_eq!(parts[1].part_type(), Some("image_url"));
    assert_eq!(parts[2].part_type(), Some("input_audio"));
    assert_eq!(parts[3].part_type(), Some("file"));
    let text = req.text_messages();
    assert_eq!(text[1].content, "What is this?");
    assert_eq!(text[2].tool_calls[0].function.name, "get_weather");
    assert_eq!(text[3].tool_call_id.as_deref(), Some("call_1"));
    let v = req.validate(&RequestLimits::default()).unwrap();
    assert!(v.stream && v.include_usage && v.non_text);
    assert_eq!(v.deadline_ms, Some(1500));
    assert_eq!(v.min_confidence, Some(0.6));
    assert_eq!(v.logprobs, Some(3));
    assert_eq!(v.priority, Priority(9));
    assert_eq!(v.max_tokens, Some(32));
}

#[test]
fn minimal_request_defaults() {
    let v = valid(json!({"messages": [{"role": "user", "content": "hi"}]})).unwrap();
    assert_eq!(v.priority, Priority::NORMAL);
    assert_eq!(v.tool_choice, ToolChoice::None);
    assert!(!v.stream && !v.non_text);
    assert_eq!(v.max_tokens, None);
    assert!(v.stop.is_empty());
    let v = valid(json!({"messages": [{"role": "user", "content": "hi"}], "tools": [weather_tool()], "stop": "x", "max_tokens": 5})).unwrap();
    assert_eq!(v.tool_choice, ToolChoice::Auto);
    assert_eq!(v.stop, vec!["x"]);
    assert_eq!(v.max_tokens, Some(5));
    assert_eq!(v.tools()[0].name(), "get_weather");
}

#[test]
fn parse_errors_have_their_codes() {
    let e = ChatRequest::parse(b"{\"messages\": [", 100).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidJson);
    let e = ChatRequest::parse(b"{\"a\": \"\xff\"}", 100).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidUtf8);
    let e = ChatRequest::parse(&[b' '; 101], 100).unwrap_err();
    assert_eq!(e.code, ErrorCode::PayloadTooLarge);
    let e = ChatRequest::parse(b"[1]", 100).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidRequest);
}

#[test]
fn wrong_types_name_the_field() {
    let cases = [
        (json!({"messages": "hi"}), "messages"),
        (json!({"messages": [], "temperature": "hot"}), "temperature"),
        (json!({"messages": [], "max_tokens": -1}), "max_tokens"),
        (json!({"messages": [], "max_tokens": 1.5}), "max_tokens"),
        (json!({"messages": [], "stream": "yes"}), "stream"),
        (json!({"messages": [], "stop": [1]}), "stop"),
        (json!({"messages": [], "x-priority": 1.5}), "x-priority"),
        (
            json!({"messages": [], "x-deadline-ms": "soon"}),
            "x-deadline-ms",
        ),
        (json!({"messages": [], "reply_topic": 5}), "reply_topic"),
        (json!({"messages": [], "logprobs": "yes"}), "logprobs"),
        (json!({"messages": [], "top_logprobs": -1}), "top_logprobs"),
        (json!({"messages": [3]}), "messages[0]"),
        (
            json!({"messages": [{"role": 1, "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"messages": [{"role": "user", "content": 5}]}),
            "messages[0].content",
        ),
        (
            json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": {}}}]}]}),
            "messages[0].tool_calls[0].function.arguments",
        ),
    ];
    for (body, param) in cases {
        let e = parse(body.clone()).expect_err(&body.to_string());
        assert_eq!(e.code, ErrorCode::InvalidRequest, "{body}");
        assert_eq!(e.param.as_deref(), Some(param), "{body}");
    }
    let e =
        parse(json!({"messages": [], "tools": [{"type": "function", "function": {"name": 3}}]}))
            .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidTools);
    assert_eq!(e.param.as_deref(), Some("tools[0].function.name"));
}

#[test]
fn validation_errors_name_the_field() {
    let user = json!({"role": "user", "content": "hi"});
    let cases: Vec<(Value, ErrorCode, &str)> = vec![
        (
            json!({"messages": []}),
            ErrorCode::InvalidRequest,
            "messages",
        ),
        (json!({}), ErrorCode::InvalidRequest, "messages"),
        (
            json!({"messages": [{"role": "robot", "content": "x"}]}),
            ErrorCode::InvalidRequest,
            "messages[0].role",
        ),
        (
            json!({"messages": [{"content": "x"}]}),
            ErrorCode::InvalidRequest,
            "messages[0].role",
        ),
        (
            json!({"messages": [{"role": "user", "content": ""}]}),
            ErrorCode::InvalidRequest,
            "messages[0].content",
        ),
        (
            json!({"messages": [{"role": "user", "content": []}]}),
            ErrorCode::InvalidRequest,
            "messages[0].content",
        ),
        (
            json!({"messages": [{"role": "user"}]}),
            ErrorCode::InvalidRequest,
            "messages[0].content",
        ),
        (
            json!({"messages": [user, {"role": "assistant", "content": null}]}),
            ErrorCode::InvalidRequest,
            "messages[1].content",
        ),
        (
            json!({"messages": [{"role": "tool", "content": "x"}]}),
            ErrorCode::InvalidRequest,
            "messages[0].tool_call_id",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"text": "x"}]}]}),
            ErrorCode::InvalidRequest,
            "messages[0].content[0].type",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]}),
            ErrorCode::InvalidRequest,
            "messages[0].content[0].text",
        ),
        (
            json!({"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
            ErrorCode::InvalidRequest,
            "messages[0].content[0].type",
        ),
        (
            json!({"messages": [user], "n": 2}),
            ErrorCode::InvalidRequest,
            "n",
        ),
        (
            json!({"messages": [user], "temperature": 2.5}),
            ErrorCode::InvalidRequest,
            "temperature",
        ),
        (
            json!({"messages": [user], "temperature": -0.1}),
            ErrorCode::InvalidRequest,
            "temperature",
        ),
        (
            json!({"messages": [user], "top_p": 1.5}),
            ErrorCode::InvalidRequest,
            "top_p",
        ),
        (
            json!({"messages": [user], "max_tokens": 0}),
            ErrorCode::InvalidRequest,
            "max_tokens",
        ),
        (
            json!({"messages": [user], "stop": ["a", "b", "c", "d", "e"]}),
            ErrorCode::InvalidRequest,
            "stop",
        ),
        (
            json!({"messages": [user], "stop": ["a", ""]}),
            ErrorCode::InvalidRequest,
            "stop[1]",
        ),
        (
            json!({"messages": [user], "x-priority": 10}),
            ErrorCode::InvalidRequest,
            "x-priority",
        ),
        (
            json!({"messages": [user], "x-priority": "urgent"}),
            ErrorCode::InvalidRequest,
            "x-priority",
        ),
        (
            json!({"messages": [user], "x-deadline-ms": 0}),
            ErrorCode::InvalidRequest,
            "x-deadline-ms",
        ),
        (
            json!({"messages": [user], "top_logprobs": 21, "logprobs": true}),
            ErrorCode::InvalidRequest,
            "top_logprobs",
        ),
        (
            json!({"messages": [user], "top_logprobs": 2}),
            ErrorCode::InvalidRequest,
            "top_logprobs",
        ),
        (
            json!({"messages": [user], "x-min-confidence": 1.0}),
            ErrorCode::InvalidRequest,
            "x-min-confidence",
        ),
        (
            json!({"messages": [user], "x-min-confidence": "high"}),
            ErrorCode::InvalidRequest,
            "x-min-confidence",
        ),
        (
            json!({"messages": [user], "reply_topic": "a/+/b"}),
            ErrorCode::InvalidRequest,
            "reply_topic",
        ),
        (
            json!({"messages": [user], "response_format": {"type": "xml"}}),
            ErrorCode::InvalidRequest,
            "response_format.type",
        ),
        (
            json!({"messages": [user], "tools": [{"type": "function", "function": {"description": "no name"}}]}),
            ErrorCode::InvalidTools,
            "tools[0].function.name",
        ),
        (
            json!({"messages": [user], "tools": [{"type": "function", "function": {"name": "bad name"}}]}),
            ErrorCode::InvalidTools,
            "tools[0].function.name",
        ),
        (
            json!({"messages": [user], "tools": [{"type": "retrieval", "function": {"name": "f"}}]}),
            ErrorCode::InvalidTools,
            "tools[0].type",
        ),
        (
            json!({"messages": [user], "tools": [weather_tool(), weather_tool()]}),
            ErrorCode::InvalidTools,
            "tools[1].function.name",
        ),
        (
            json!({"messages": [user], "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]}),
            ErrorCode::InvalidTools,
            "tools[0].function.parameters",
        ),
        (
            json!({"messages": [user], "tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]}),
            ErrorCode::InvalidTools,
            "tools[0].function.parameters",
        ),
        (
            json!({"messages": [user], "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "strin"}}}}}]}),
            ErrorCode::InvalidTools,
            "tools[0].function.parameters",
        ),
        (
            json!({"messages": [user], "tools": [weather_tool()], "tool_choice": {"type": "function", "function": {"name": "nope"}}}),
            ErrorCode::InvalidTools,
            "tool_choice.function.name",
        ),
        (
            json!({"messages": [user], "tool_choice": "required"}),
            ErrorCode::InvalidTools,
            "tool_choice",
        ),
        (
            json!({"messages": [user], "tool_choice": "sometimes"}),
            ErrorCode::InvalidTools,
            "tool_choice",
        ),
    ];
    for (body, code, param) in cases {
        let e = err(body.clone());
        assert_eq!(
            (e.code, e.param.as_deref()),
            (code, Some(param)),
            "{body}: {e}"
        );
    }
}

#[test]
fn accepted_edge_cases() {
    let user = json!({"role": "user", "content": "hi"});
    for body in [
        json!({"messages": [user], "tools": [{"type": "function", "function": {"name": "noargs"}}]}),
        json!({"messages": [user], "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}),
        json!({"messages": [user], "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "x-ui": 1, "$defs": {}, "format": "x"}}}]}),
        json!({"messages": [{"role": "developer", "content": "be brief"}, user], "x-priority": 0, "temperature": 0, "top_p": 1}),
        json!({"messages": [user], "tools": [weather_tool()], "tool_choice": "none"}),
        json!({"messages": [user, {"role": "assistant", "content": "ok"}, {"role": "tool", "tool_call_id": "c", "content": ""}]}),
    ] {
        valid(body.clone()).unwrap_or_else(|e| panic!("{body}: {e}"));
    }
    let limits = RequestLimits {
        max_messages: 1,
        ..RequestLimits::default()
    };
    let req = parse(json!({"messages": [user, user]})).unwrap();
    assert_eq!(
        req.validate(&limits).unwrap_err().param.as_deref(),
        Some("messages")
    );
}

#[test]
fn priority_names_and_levels() {
    for (f, p) in [
        (json!(0), 0),
        (json!(9), 9),
        (json!("low"), 2),
        (json!("normal"), 4),
        (json!("high"), 7),
        (json!("safety"), 9),
    ] {
        let field: PriorityField = serde_json::from_value(f).unwrap();
        assert_eq!(Priority::from_field(&field), Some(Priority(p)));
    }
    assert!(Priority::SAFETY > Priority::HIGH && Priority::HIGH > Priority::NORMAL);
}

#[test]
fn upstream_copy_drops_only_our_fields() {
    let req = parse(full_request()).unwrap();
    let up = req.to_upstream("qwen3-max").to_value();
    assert_eq!(up["model"], "qwen3-max");
    assert_eq!(up["max_completion_tokens"], 32);
    for gone in [
        "x-priority",
        "x-deadline-ms",
        "x-min-confidence",
        "reply_topic",
        "id",
        "max_tokens",
    ] {
        assert!(up.get(gone).is_none(), "{gone}");
    }
    let orig = full_request();
    assert_eq!(up["messages"][1], orig["messages"][1]);
    assert_eq!(up["metadata"], orig["metadata"]);
    assert_eq!(up["enable_thinking"], false);
}

#[test]
fn builders_serialise_like_openai() {
    let m = Message::assistant_tool_calls(vec![ToolCall::new("call_1", "f", "{}")]);
    assert_eq!(
        serde_json::to_value(&m).unwrap(),
        json!({"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]})
    );
    assert_eq!(
        serde_json::to_value(Message::tool("call_1", "22")).unwrap(),
        json!({"role": "tool", "content": "22", "tool_call_id": "call_1"})
    );
    assert_eq!(
        serde_json::to_value(ToolChoice::Required).unwrap(),
        json!("required")
    );
}
