//! JSON-type checks of every field the typed request structs read, run before
//! serde so that a type error names its field (`messages[2].content must be a
//! string or an array of content parts, not number`).

use serde_json::Value;

use super::super::error::{ApiError, ErrorCode};
use crate::schema::json_type as type_name;

#[derive(Clone, Copy)]
enum Want {
    Str,
    Bool,
    Num,
    /// Non-negative integer.
    Count,
    Int,
    Obj,
    Arr,
    /// String or array of strings.
    StrOrStrs,
    /// String, array or null (message content).
    Content,
    /// Integer or string.
    IntOrStr,
}

fn check(v: Option<&Value>, path: &str, want: Want) -> Result<(), ApiError> {
    let Some(v) = v else { return Ok(()) };
    if v.is_null() {
        return Ok(());
    }
    let ok = match want {
        Want::Str => v.is_string(),
        Want::Bool => v.is_boolean(),
        Want::Num => v.is_number(),
        Want::Count => v.is_u64(),
        Want::Int => v.is_i64() || v.is_u64(),
        Want::Obj => v.is_object(),
        Want::Arr => v.is_array(),
        Want::StrOrStrs => {
            v.is_string() || v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
        }
        Want::Content => v.is_string() || v.is_array(),
        Want::IntOrStr => v.is_string() || v.is_i64(),
    };
    if ok {
        return Ok(());
    }
    let expected = match want {
        Want::Str => "a string",
        Want::Bool => "a boolean",
        Want::Num => "a number",
        Want::Count => "a non-negative integer",
        Want::Int => "an integer",
        Want::Obj => "an object",
        Want::Arr => "an array",
        Want::StrOrStrs => "a string or an array of strings",
        Want::Content => "a string or an array of content parts",
        Want::IntOrStr => "an integer or a string",
    };
    Err(ApiError::invalid_request(
        format!("{path} must be {expected}, not {}", type_name(v)),
        path,
    ))
}

/// Checks the JSON types of every field the typed structs read, so a type
/// error names its field instead of surfacing as a serde message.
pub(super) fn check_shape(v: &Value) -> Result<(), ApiError> {
    let Some(obj) = v.as_object() else {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("request must be a JSON object, not {}", type_name(v)),
        ));
    };
    let g = |k: &str| obj.get(k);
    check(g("model"), "model", Want::Str)?;
    check(g("messages"), "messages", Want::Arr)?;
    check(g("tools"), "tools", Want::Arr)?;
    check(g("parallel_tool_calls"), "parallel_tool_calls", Want::Bool)?;
    check(g("stream"), "stream", Want::Bool)?;
    check(g("stream_options"), "stream_options", Want::Obj)?;
    if let Some(o) = g("stream_options") {
        check(
            o.get("include_usage"),
            "stream_options.include_usage",
            Want::Bool,
        )?;
    }
    check(g("max_tokens"), "max_tokens", Want::Count)?;
    check(
        g("max_completion_tokens"),
        "max_completion_tokens",
        Want::Count,
    )?;
    check(g("temperature"), "temperature", Want::Num)?;
    check(g("top_p"), "top_p", Want::Num)?;
    check(g("stop"), "stop", Want::StrOrStrs)?;
    check(g("seed"), "seed", Want::Int)?;
    check(g("logprobs"), "logprobs", Want::Bool)?;
    check(g("top_logprobs"), "top_logprobs", Want::Count)?;
    check(g("n"), "n", Want::Count)?;
    check(g("response_format"), "response_format", Want::Obj)?;
    check(g("user"), "user", Want::Str)?;
    check(g("x-priority"), "x-priority", Want::IntOrStr)?;
    check(g("x-deadline-ms"), "x-deadline-ms", Want::Count)?;
    check(g("x-min-confidence"), "x-min-confidence", Want::Num)?;
    check(g("reply_topic"), "reply_topic", Want::Str)?;
    check(g("id"), "id", Want::Str)?;
    if let Some(Value::Array(msgs)) = g("messages") {
        for (i, m) in msgs.iter().enumerate() {
            let at = format!("messages[{i}]");
            if !m.is_object() {
                return Err(ApiError::invalid_request(
                    format!("{at} must be an object, not {}", type_name(m)),
                    at,
                ));
            }
            check(m.get("role"), &format!("{at}.role"), Want::Str)?;
            check(m.get("content"), &format!("{at}.content"), Want::Content)?;
            check(m.get("name"), &format!("{at}.name"), Want::Str)?;
            check(
                m.get("tool_call_id"),
                &format!("{at}.tool_call_id"),
                Want::Str,
            )?;
            check(m.get("tool_calls"), &format!("{at}.tool_calls"), Want::Arr)?;
            if let Some(Value::Array(calls)) = m.get("tool_calls") {
                for (j, c) in calls.iter().enumerate() {
                    let cat = format!("{at}.tool_calls[{j}]");
                    check(Some(c), &cat, Want::Obj)?;
                    check(c.get("id"), &format!("{cat}.id"), Want::Str)?;
                    check(c.get("type"), &format!("{cat}.type"), Want::Str)?;
                    let f = c.get("function");
                    if f.is_none_or(Value::is_null) || c.get("id").is_none_or(Value::is_null) {
                        return Err(ApiError::invalid_request(
                            "tool call needs id and function",
                            cat,
                        ));
                    }
                    check(f, &format!("{cat}.function"), Want::Obj)?;
                    let f = f.expect("checked");
                    check(f.get("name"), &format!("{cat}.function.name"), Want::Str)?;
                    check(
                        f.get("arguments"),
                        &format!("{cat}.function.arguments"),
                        Want::Str,
                    )?;
                    if f.get("name").is_none_or(Value::is_null) {
                        return Err(ApiError::invalid_request(
                            "tool call needs a function name",
                            format!("{cat}.function.name"),
                        ));
                    }
                }
            }
        }
    }
    if let Some(Value::Array(tools)) = g("tools") {
        for (i, t) in tools.iter().enumerate() {
            let at = format!("tools[{i}]");
            if !t.is_object() {
                return Err(ApiError::invalid_tools(
                    format!("{at} must be an object, not {}", type_name(t)),
                    at,
                ));
            }
            let wrap = |e: ApiError| ApiError {
                code: ErrorCode::InvalidTools,
                ..e
            };
            check(t.get("type"), &format!("{at}.type"), Want::Str).map_err(wrap)?;
            check(t.get("function"), &format!("{at}.function"), Want::Obj).map_err(wrap)?;
            if let Some(f) = t.get("function") {
                check(f.get("name"), &format!("{at}.function.name"), Want::Str).map_err(wrap)?;
                check(
                    f.get("description"),
                    &format!("{at}.function.description"),
                    Want::Str,
                )
                .map_err(wrap)?;
                check(
                    f.get("strict"),
                    &format!("{at}.function.strict"),
                    Want::Bool,
                )
                .map_err(wrap)?;
            }
        }
    }
    Ok(())
}
