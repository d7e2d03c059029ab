//! Chat prompt rendering.
//!
//! Owns: turning a conversation ([`TextMessage`]s) into the prompt text the
//! model continues — the bundle's Jinja chat template when it has one
//! (minijinja, with the Python-isms HF templates use: `tojson` as
//! `json.dumps`, string methods, `raise_exception`), else the demo model's
//! fixed format ([`render_builtin`]):
//! `<|im_start|>{role}\n{content}<|im_end|>\n` per message, then
//! `<|im_start|>assistant\n`; an assistant turn's calls as
//! `<tool_call>{json}</tool_call>` right after its content.
//! Does not own: tokenisation, reading tokenizer_config.json (`bundle`),
//! parsing what the model answers (`chat::toolcall`).

use minijinja::value::{Kwargs, Value as JValue, ValueKind};
use minijinja::{Environment, Error as JError, ErrorKind};
use serde_json::Value;

use crate::openai::{Role, TextMessage, Tool, ToolCall};

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("chat template does not compile: {0}")]
    Syntax(String),
    #[error("chat template failed to render: {0}")]
    Render(String),
}

pub const IM_START: &str = "<|im_start|>";
pub const IM_END: &str = "<|im_end|>";

/// Renders a conversation with the bundle's template if given, else the built-in format.
pub fn render_chat(
    messages: &[TextMessage],
    chat_template: Option<&str>,
) -> Result<String, TemplateError> {
    render_chat_with_tools(messages, &[], chat_template)
}

/// As [`render_chat`]; `tools` are passed to a Jinja template as `tools`
/// (when not empty). The built-in format never renders them: the demo model
/// knows its catalogue.
pub fn render_chat_with_tools(
    messages: &[TextMessage],
    tools: &[Tool],
    chat_template: Option<&str>,
) -> Result<String, TemplateError> {
    match chat_template {
        Some(t) if !t.trim().is_empty() => render_jinja(t, messages, tools),
        _ => Ok(render_builtin(messages)),
    }
}

/// The role name as rendered (`developer` is rendered as `system`).
fn role_name(role: &Role) -> &str {
    match role {
        Role::Developer => "system",
        other => other.as_str(),
    }
}

/// The demo model's fixed format.
pub fn render_builtin(messages: &[TextMessage]) -> String {
    let mut out = String::new();
    for m in messages {
        out.push_str(IM_START);
        out.push_str(role_name(&m.role));
        out.push('\n');
        out.push_str(&content_with_calls(m));
        out.push_str(IM_END);
        out.push('\n');
    }
    out.push_str(IM_START);
    out.push_str("assistant\n");
    out
}

/// The message's content followed by its tool calls in the model's format.
fn content_with_calls(m: &TextMessage) -> String {
    let mut s = m.content.clone();
    for c in &m.tool_calls {
        s.push_str(&render_tool_call(c));
    }
    s
}

/// `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, JSON spaced as
/// Python's `json.dumps` (the training corpus format).
pub fn render_tool_call(call: &ToolCall) -> String {
    let args = call.function.arguments.trim();
    let args = if args.is_empty() {
        "{}".to_string()
    } else if serde_json::from_str::<Value>(args).is_ok() {
        python_json(args)
    } else {
        // Not JSON: keep it as a JSON string rather than break the prompt.
        python_json(&Value::String(args.to_string()).to_string())
    };
    format!(
        "<tool_call>{{\"name\": {}, \"arguments\": {}}}</tool_call>",
        Value::String(call.function.name.clone()),
        args
    )
}

/// Re-spaces compact or pretty JSON text as Python's `json.dumps` with
/// `ensure_ascii=False` does (`", "` and `": "`), keeping key order.
/// The input must be valid JSON.
pub fn python_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + json.len() / 4);
    let mut in_str = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                out.push(c);
            }
            ',' => out.push_str(", "),
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// `tojson` as HF's templates expect (`json.dumps`, no HTML escaping);
/// honours `indent=N`.
fn tojson(value: JValue, kwargs: Kwargs) -> Result<JValue, JError> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    let _: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    // Serialised straight from the template's value, so objects keep their
    // order (`sort_keys` is not honoured: objects from requests come sorted).
    let json = &value;
    let text = match indent {
        None => python_json(
            &serde_json::to_string(json)
                .map_err(|e| JError::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?,
        ),
        Some(n) => {
            let indent = " ".repeat(n);
            let mut buf = Vec::new();
            let fmt = serde_json::ser::PrettyFormatter::with_indent(indent.as_bytes());
            let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
            serde::Serialize::serialize(json, &mut ser)
                .map_err(|e| JError::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
            String::from_utf8(buf).expect("serde_json writes UTF-8")
        }
    };
    Ok(JValue::from_safe_string(text))
}

fn str_arg(args: &[JValue], i: usize) -> Option<String> {
    args.get(i)
        .filter(|v| !v.is_none() && !v.is_undefined())
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())
        })
}

/// Python string and dict methods HF templates call.
fn py_method(value: &JValue, method: &str, args: &[JValue]) -> Result<JValue, JError> {
    if let Some(s) = value.as_str() {
        let chars = |i| str_arg(args, i);
        let trim_set = |s: &str, set: Option<String>, left: bool, right: bool| -> String {
            let pred = |c: char| match &set {
                Some(set) => set.contains(c),
                None => c.is_whitespace(),
            };
            match (left, right) {
                (true, true) => s.trim_matches(pred).to_string(),
                (true, false) => s.trim_start_matches(pred).to_string(),
                _ => s.trim_end_matches(pred).to_string(),
            }
        };
        let out: JValue = match method {
            "strip" => trim_set(s, chars(0), true, true).into(),
            "lstrip" => trim_set(s, chars(0), true, false).into(),
            "rstrip" => trim_set(s, chars(0), false, true).into(),
            "startswith" => s.starts_with(chars(0).unwrap_or_default().as_str()).into(),
            "endswith" => s.ends_with(chars(0).unwrap_or_default().as_str()).into(),
            "upper" => s.to_uppercase().into(),
            "lower" => s.to_lowercase().into(),
            "replace" => s
                .replace(
                    chars(0).unwrap_or_default().as_str(),
                    chars(1).unwrap_or_default().as_str(),
                )
                .into(),
            "split" => {
                let parts: Vec<JValue> = match chars(0) {
                    Some(sep) if !sep.is_empty() => {
                        s.split(sep.as_str()).map(JValue::from).collect()
                    }
                    _ => s.split_whitespace().map(JValue::from).collect(),
                };
                JValue::from(parts)
            }
            "find" => s
                .find(chars(0).unwrap_or_default().as_str())
                .map(|i| s[..i].chars().count() as i64)
                .unwrap_or(-1)
                .into(),
            "count" => (s.matches(chars(0).unwrap_or_default().as_str()).count() as i64).into(),
            _ => return Err(JError::from(ErrorKind::UnknownMethod)),
        };
        return Ok(out);
    }
    if value.kind() == ValueKind::Map {
        match method {
            "items" => {
                let pairs: Vec<JValue> = value
                    .try_iter()?
                    .map(|k| {
                        let v = value.get_item(&k).unwrap_or_default();
                        JValue::from(vec![k, v])
                    })
                    .collect();
                return Ok(JValue::from(pairs));
            }
            "keys" => return Ok(JValue::from(value.try_iter()?.collect::<Vec<_>>())),
            "values" => {
                let vals: Vec<JValue> = value
                    .try_iter()?
                    .map(|k| value.get_item(&k).unwrap_or_default())
                    .collect();
                return Ok(JValue::from(vals));
            }
            "get" => {
                let key = args.first().cloned().unwrap_or_default();
                let v = value.get_item(&key)?;
                return Ok(if v.is_undefined() {
                    args.get(1).cloned().unwrap_or(JValue::from(()))
                } else {
                    v
                });
            }
            _ => {}
        }
    }
    Err(JError::from(ErrorKind::UnknownMethod))
}

/// The message as a template sees it (HF conventions: tool call arguments
/// as objects; `developer` as `system`). A template that never mentions
/// `tool_calls` gets the calls inlined into the content in the model's format.
/// Objects keep the key order transformers' callers use (`name` before
/// `arguments`): a template that writes `function|tojson` then renders as
/// it does under transformers.
fn jinja_message(m: &TextMessage, template_handles_calls: bool) -> JValue {
    let mut obj: Vec<(&str, JValue)> = Vec::new();
    obj.push(("role", JValue::from(role_name(&m.role))));
    let content = if template_handles_calls {
        m.content.clone()
    } else {
        content_with_calls(m)
    };
    obj.push(("content", JValue::from(content)));
    if let Some(n) = &m.name {
        obj.push(("name", JValue::from(n.as_str())));
    }
    if let Some(id) = &m.tool_call_id {
        obj.push(("tool_call_id", JValue::from(id.as_str())));
    }
    if !m.tool_calls.is_empty() && template_handles_calls {
        let calls: Vec<JValue> = m
            .tool_calls
            .iter()
            .map(|c| {
                let args = serde_json::from_str::<Value>(&c.function.arguments)
                    .unwrap_or_else(|_| Value::String(c.function.arguments.clone()));
                let function = JValue::from_iter([
                    ("name", JValue::from(c.function.name.as_str())),
                    ("arguments", JValue::from_serialize(&args)),
                ]);
                JValue::from_iter([
                    ("id", JValue::from(c.id.as_str())),
                    ("type", JValue::from(c.kind.as_str())),
                    ("function", function),
                ])
            })
            .collect();
        obj.push(("tool_calls", JValue::from(calls)));
    }
    JValue::from_iter(obj)
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.add_filter("tojson", tojson);
    env.add_function("raise_exception", |msg: String| -> Result<JValue, JError> {
        Err(JError::new(ErrorKind::InvalidOperation, msg))
    });
    env.set_unknown_method_callback(|_state, value, method, args| py_method(value, method, args));
    env
}

/// Renders with a Jinja chat template (HF `tokenizer_config.json` `chat_template`).
pub fn render_jinja(
    template: &str,
    messages: &[TextMessage],
    tools: &[Tool],
) -> Result<String, TemplateError> {
    let mut env = environment();
    env.add_template_owned("chat", template.to_string())
        .map_err(|e| TemplateError::Syntax(format!("{e:#}")))?;
    let handles_calls = template.contains("tool_calls");
    let msgs: Vec<JValue> = messages
        .iter()
        .map(|m| jinja_message(m, handles_calls))
        .collect();
    let mut ctx: Vec<(&str, JValue)> = vec![
        ("messages", JValue::from(msgs)),
        ("add_generation_prompt", JValue::from(true)),
        ("bos_token", JValue::from("")),
        ("eos_token", JValue::from(IM_END)),
    ];
    if !tools.is_empty() {
        // sorted keys, as `tojson` writes them (serde_json without preserve_order)
        let tools = serde_json::to_value(tools).expect("tools serialise");
        ctx.push(("tools", JValue::from_serialize(&tools)));
    }
    let tmpl = env
        .get_template("chat")
        .map_err(|e| TemplateError::Syntax(format!("{e:#}")))?;
    tmpl.render(JValue::from_iter(ctx))
        .map_err(|e| TemplateError::Render(format!("{e:#}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The forge's template (models/forge/common.py CHAT_TEMPLATE).
    const FORGE: &str = "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

    /// Qwen2.5/Qwen3-style template (no default system prompt, no thinking).
    const QWEN: &str = r##"{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content | trim + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"##;

    fn conv(items: &[(Role, &str)]) -> Vec<TextMessage> {
        items
            .iter()
            .map(|(r, c)| TextMessage::new(r.clone(), *c))
            .collect()
    }

    fn simple_conversations() -> Vec<Vec<TextMessage>> {
        vec![
            conv(&[(Role::User, "Set the driver side to 22 degrees")]),
            conv(&[
                (Role::System, "You are the in-car assistant."),
                (Role::User, "運転席を22度にして"),
            ]),
            conv(&[
                (Role::System, "You are a smart glasses voice assistant."),
                (Role::User, "hi"),
                (Role::Assistant, "Hello! How can I help?"),
                (Role::User, "what's the weather in Kyoto?"),
            ]),
            conv(&[(Role::Developer, "Be brief."), (Role::User, "hi")]),
        ]
    }

    #[test]
    fn builtin_format() {
        let msgs = conv(&[(Role::System, "S"), (Role::User, "U")]);
        assert_eq!(
            render_chat(&msgs, None).unwrap(),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            render_chat(&conv(&[(Role::User, "U")]), Some("  ")).unwrap(),
            "<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn builtin_renders_calls_and_tool_results() {
        let mut call = TextMessage::new(Role::Assistant, "");
        call.tool_calls = vec![ToolCall::new(
            "call_1",
            "set_temperature",
            r#"{"zone":"driver","celsius":22}"#,
        )];
        let mut result = TextMessage::new(Role::Tool, r#"{"ok": true}"#);
        result.tool_call_id = Some("call_1".into());
        let msgs = vec![TextMessage::new(Role::User, "22 please"), call, result];
        assert_eq!(
            render_builtin(&msgs),
            concat!(
                "<|im_start|>user\n22 please<|im_end|>\n",
                "<|im_start|>assistant\n<tool_call>{\"name\": \"set_temperature\", \"arguments\": {\"zone\": \"driver\", \"celsius\": 22}}</tool_call><|im_end|>\n",
                "<|im_start|>tool\n{\"ok\": true}<|im_end|>\n",
                "<|im_start|>assistant\n"
            )
        );
    }

    #[test]
    fn jinja_templates_match_builtin_on_simple_conversations() {
        for msgs in simple_conversations() {
            let builtin = render_chat(&msgs, None).unwrap();
            assert_eq!(render_chat(&msgs, Some(QWEN)).unwrap(), builtin);
            assert_eq!(render_chat(&msgs, Some(FORGE)).unwrap(), builtin);
        }
    }

    #[test]
    fn forge_template_gets_calls_inlined() {
        let mut call = TextMessage::new(Role::Assistant, "");
        call.tool_calls = vec![ToolCall::new("c", "set_fan_speed", r#"{"level": 3}"#)];
        let msgs = vec![TextMessage::new(Role::User, "fan 3"), call];
        assert_eq!(
            render_chat(&msgs, Some(FORGE)).unwrap(),
            render_builtin(&msgs)
        );
    }

    #[test]
    fn qwen_template_with_tools_and_calls() {
        let tool = Tool::function(
            "set_fan_speed",
            "Set the fan speed.",
            serde_json::json!({"type": "object", "properties": {"level": {"type": "integer"}}}),
        );
        let mut call = TextMessage::new(Role::Assistant, "");
        call.tool_calls = vec![ToolCall::new("c", "set_fan_speed", r#"{"level":3}"#)];
        let mut result = TextMessage::new(Role::Tool, "done");
        result.tool_call_id = Some("c".into());
        let msgs = vec![
            TextMessage::new(Role::System, "Car."),
            TextMessage::new(Role::User, "fan 3 <b>"),
            call,
            result,
        ];
        let out = render_chat_with_tools(&msgs, &[tool], Some(QWEN)).unwrap();
        assert!(
            out.starts_with("<|im_start|>system\nCar.\n\n# Tools"),
            "{out}"
        );
        assert!(out.contains(r#"{"function": {"description": "Set the fan speed.", "name": "set_fan_speed", "parameters": {"properties": {"level": {"type": "integer"}}, "type": "object"}}, "type": "function"}"#), "{out}");
        assert!(out.contains("<|im_start|>user\nfan 3 <b><|im_end|>\n"));
        assert!(out.contains("<|im_start|>assistant\n<tool_call>\n{\"name\": \"set_fan_speed\", \"arguments\": {\"level\": 3}}\n</tool_call><|im_end|>\n"), "{out}");
        assert!(
            out.contains("<|im_start|>user\n<tool_response>\ndone\n</tool_response><|im_end|>\n")
        );
        assert!(out.ends_with("<|im_start|>assistant\n"));
    }

    #[test]
    fn python_isms() {
        let msgs = conv(&[(Role::User, "  Hello World  ")]);
        let t = "{{ messages[0].content.strip().lower() }}|{{ messages[0].content.startswith('  He') }}|{{ messages[0].content.split()|length }}|{{ {'a': 1}.items()|list|length }}|{{ {'a': 1}.get('b', 2) }}|{{ {'k': 'v'}|tojson(indent=2) }}";
        assert_eq!(
            render_jinja(t, &msgs, &[]).unwrap(),
            "hello world|True|2|1|2|{\n  \"k\": \"v\"\n}"
        );
        let e = render_jinja("{{ raise_exception('no tools') }}", &msgs, &[]).unwrap_err();
        assert!(
            matches!(e, TemplateError::Render(ref m) if m.contains("no tools")),
            "{e}"
        );
        assert!(matches!(
            render_jinja("{% for %}", &msgs, &[]),
            Err(TemplateError::Syntax(_))
        ));
    }

    #[test]
    fn python_json_spacing() {
        assert_eq!(
            python_json(r#"{"a":[1,2,{"b":"x, y: z \" ,"}],"c":null}"#),
            r#"{"a": [1, 2, {"b": "x, y: z \" ,"}], "c": null}"#
        );
        assert_eq!(python_json("{\n  \"a\": 1\n}"), r#"{"a": 1}"#);
    }

    /// Real checkpoints' templates as they ship (models/templates/*.jinja)
    /// render exactly as transformers renders them (models/templates/render.py
    /// wrote expected/), the catalogue's tools included.
    #[test]
    fn real_templates_render_as_transformers_does() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/templates");
        let read = |p: &std::path::Path| {
            std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        };
        let catalogue: Value =
            serde_json::from_str(&read(&dir.join("../assist-moe/tools.json"))).unwrap();
        let tools: Vec<Tool> = serde_json::from_value(catalogue["tools"].clone()).unwrap();
        assert_eq!(tools.len(), 20);
        let cases: Vec<Value> = serde_json::from_str(&read(&dir.join("cases.json"))).unwrap();
        for name in ["qwen3", "qwen2.5", "mistral-tools"] {
            let template = read(&dir.join(format!("{name}.jinja")));
            for case in &cases {
                let msgs: Vec<TextMessage> =
                    serde_json::from_value(case["messages"].clone()).unwrap();
                let with = if case["tools"] == true {
                    &tools[..]
                } else {
                    &[]
                };
                let case_name = case["name"].as_str().unwrap();
                let got = render_chat_with_tools(&msgs, with, Some(&template))
                    .unwrap_or_else(|e| panic!("{name} {case_name}: {e}"));
                let want = read(&dir.join(format!("expected/{name}.{case_name}.txt")));
                if got != want {
                    let at = got
                        .char_indices()
                        .zip(want.chars())
                        .find(|((_, a), b)| a != b)
                        .map_or(got.len().min(want.len()), |((i, _), _)| i);
                    panic!(
                        "{name} {case_name}: differs at byte {at}:\n ours: {:?}\nwant: {:?}",
                        &got[at.saturating_sub(40)..(at + 80).min(got.len())],
                        want.get(at.saturating_sub(40)..(at + 80).min(want.len()))
                    );
                }
            }
        }
    }

    #[test]
    fn bundle_template_if_present() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/assist-moe/hf/tokenizer_config.json"
        );
        let Ok(text) = std::fs::read_to_string(path) else {
            return;
        };
        let v: Value = serde_json::from_str(&text).unwrap();
        let Some(t) = v.get("chat_template").and_then(Value::as_str) else {
            return;
        };
        for msgs in simple_conversations() {
            assert_eq!(render_chat(&msgs, Some(t)).unwrap(), render_builtin(&msgs));
        }
    }
}
