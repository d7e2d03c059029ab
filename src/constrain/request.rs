//! From an OpenAI request to a constraint [`Spec`]: `tools` + `tool_choice`
//! (auto, required, a named function, none) and `response_format`
//! (`json_schema`, `json_object`), as OpenAI and llama-server read them.

use std::sync::Arc;

use serde_json::{json, Value};

use super::constraint::Spec;
use super::grammar::Grammar;
use super::ConstrainError;
use crate::openai::{Tool, ToolChoice};

/// The spec of a request's tools; `None` when nothing is to be constrained
/// (no tools and no JSON response format). `reference` is what `x-grounded`
/// strings are copied from (`ChatRequest::grounding_text`: the request's user and
/// tool messages).
pub fn spec_for(
    tools: &[Tool],
    choice: &ToolChoice,
    parallel_tool_calls: Option<bool>,
    response_format: Option<&Value>,
    reference: Option<&str>,
) -> Result<Option<Spec>, ConstrainError> {
    let ground = |g: Grammar| {
        if g.has_grounded() {
            g.with_reference(reference.unwrap_or(""))
        } else {
            g
        }
    };
    let parallel = parallel_tool_calls.unwrap_or(true);
    let offered = |only: Option<&str>| -> Vec<(String, Option<Value>)> {
        tools
            .iter()
            .filter(|t| only.is_none_or(|n| t.function.name == n))
            .map(|t| (t.function.name.clone(), t.function.parameters.clone()))
            .collect()
    };
    if !tools.is_empty() {
        match choice {
            ToolChoice::Auto | ToolChoice::Required => {
                let g = ground(Grammar::for_tools(&offered(None))?);
                return Ok(Some(Spec::Tools {
                    grammar: Arc::new(g),
                    must_call: *choice == ToolChoice::Required,
                    parallel,
                }));
            }
            ToolChoice::Function(name) => {
                let list = offered(Some(name));
                if list.is_empty() {
                    return Err(ConstrainError::Schema(format!(
                        "tool_choice names {name:?}, which is not among the tools"
                    )));
                }
                let g = ground(Grammar::for_tools(&list)?);
                return Ok(Some(Spec::Tools {
                    grammar: Arc::new(g),
                    must_call: true,
                    parallel,
                }));
            }
            ToolChoice::None | ToolChoice::Invalid(_) => {}
        }
    }
    if let Some(schema) = json_format_schema(response_format)? {
        return Ok(Some(Spec::Json {
            grammar: Arc::new(ground(Grammar::for_json(&schema)?)),
        }));
    }
    if !tools.is_empty() {
        return Ok(Some(Spec::NoCalls));
    }
    Ok(None)
}

/// The schema a `response_format` asks for: `json_schema.schema`, or any
/// object for `json_object`; `None` for `text` or no format.
pub fn json_format_schema(rf: Option<&Value>) -> Result<Option<Value>, ConstrainError> {
    let Some(rf) = rf else { return Ok(None) };
    match rf.get("type").and_then(Value::as_str) {
        Some("json_object") => Ok(Some(json!({"type": "object"}))),
        Some("json_schema") => {
            let js = rf.get("json_schema").ok_or_else(|| {
                ConstrainError::Schema("response_format.json_schema is missing".into())
            })?;
            // OpenAI nests it as json_schema.schema; llama-server also takes json_schema itself.
            let schema = js.get("schema").cloned().unwrap_or_else(|| js.clone());
            if !schema.is_object() && !schema.is_boolean() {
                return Err(ConstrainError::Schema(
                    "response_format.json_schema.schema must be a JSON schema object".into(),
                ));
            }
            Ok(Some(schema))
        }
        _ => Ok(None),
    }
}

/// Marks every free-text string of the tools' parameters `x-grounded` (a
/// `type: string` with no `enum`, `const`, `pattern` or `format`, at any
/// depth of `properties`), unless the schema already says. Returns how many.
/// For catalogues whose free strings are all copied from the request, as the
/// demo model's are (`moe-edge eval --grounded`).
pub fn ground_free_strings(tools: &mut [Tool]) -> usize {
    fn walk(schema: &mut Value) -> usize {
        let Some(obj) = schema.as_object_mut() else {
            return 0;
        };
        let mut n = 0;
        if let Some(props) = obj.get_mut("properties").and_then(Value::as_object_mut) {
            for p in props.values_mut() {
                n += walk(p);
            }
        }
        if let Some(items) = obj.get_mut("items") {
            n += walk(items);
        }
        let free = obj.get("type").and_then(Value::as_str) == Some("string")
            && !["enum", "const", "pattern", "format", "x-grounded"]
                .iter()
                .any(|k| obj.contains_key(*k));
        if free {
            obj.insert("x-grounded".into(), Value::Bool(true));
            n += 1;
        }
        n
    }
    tools
        .iter_mut()
        .filter_map(|t| t.function.parameters.as_mut())
        .map(walk)
        .sum()
}
