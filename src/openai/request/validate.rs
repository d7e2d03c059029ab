//! [`ChatRequest::validate`]: limits and semantics (roles in order, tool
//! definitions and schemas, tool choice, sampling knobs) into a
//! [`ValidRequest`], errors naming the offending field.

use serde_json::Value;

use super::*;

impl ChatRequest {
    /// Checks everything the daemon relies on; the first problem found is returned.
    pub fn validate(&self, limits: &RequestLimits) -> Result<ValidRequest, ApiError> {
        self.validate_messages(limits)?;
        if let Some(n) = self.n {
            if n != 1 {
                return Err(ApiError::invalid_request(
                    format!("n = {n} is not supported; only n = 1"),
                    "n",
                ));
            }
        }
        if let Some(t) = self.temperature {
            if !(t.is_finite() && (0.0..=2.0).contains(&t)) {
                return Err(ApiError::invalid_request(
                    format!("temperature {t} is out of range 0..=2"),
                    "temperature",
                ));
            }
        }
        if let Some(p) = self.top_p {
            if !(p.is_finite() && (0.0..=1.0).contains(&p)) {
                return Err(ApiError::invalid_request(
                    format!("top_p {p} is out of range 0..=1"),
                    "top_p",
                ));
            }
        }
        for (field, v) in [
            ("max_tokens", self.max_tokens),
            ("max_completion_tokens", self.max_completion_tokens),
        ] {
            if let Some(v) = v {
                if v == 0 || v > limits.max_completion_tokens {
                    return Err(ApiError::invalid_request(
                        format!(
                            "{field} = {v} is out of range 1..={}",
                            limits.max_completion_tokens
                        ),
                        field,
                    ));
                }
            }
        }
        let stop = self.stop_sequences();
        if stop.len() > limits.max_stop {
            return Err(ApiError::invalid_request(
                format!("at most {} stop sequences", limits.max_stop),
                "stop",
            ));
        }
        if let Some(i) = stop.iter().position(String::is_empty) {
            let param = match self.stop {
                Some(Stop::Many(_)) => format!("stop[{i}]"),
                _ => "stop".to_string(),
            };
            return Err(ApiError::invalid_request(
                "stop sequences must not be empty",
                param,
            ));
        }
        let priority = match &self.x_priority {
            None => Priority::default(),
            Some(f) => Priority::from_field(f).ok_or_else(|| {
                ApiError::invalid_request(
                    "x-priority must be an integer 0..=9 or one of safety, high, normal, low",
                    "x-priority",
                )
            })?,
        };
        if self.x_deadline_ms == Some(0) {
            return Err(ApiError::invalid_request(
                "x-deadline-ms must be at least 1",
                "x-deadline-ms",
            ));
        }
        if let Some(n) = self.top_logprobs {
            if n > 20 {
                return Err(ApiError::invalid_request(
                    "top_logprobs must be at most 20",
                    "top_logprobs",
                ));
            }
            if self.logprobs != Some(true) {
                return Err(ApiError::invalid_request(
                    "top_logprobs needs logprobs: true",
                    "top_logprobs",
                ));
            }
        }
        if let Some(p) = self.x_min_confidence {
            if !(0.0..1.0).contains(&p) {
                return Err(ApiError::invalid_request(
                    "x-min-confidence must be a probability in 0..1 (0: no gate)",
                    "x-min-confidence",
                ));
            }
        }
        if let Some(t) = &self.reply_topic {
            if t.is_empty() || t.contains(['+', '#', '\0']) {
                return Err(ApiError::invalid_request(
                    "reply_topic must be a non-empty topic name without wildcards",
                    "reply_topic",
                ));
            }
        }
        if let Some(rf) = &self.response_format {
            match rf.get("type").and_then(Value::as_str) {
                Some("text" | "json_object" | "json_schema") => {}
                _ => {
                    return Err(ApiError::invalid_request(
                        "response_format.type must be text, json_object or json_schema",
                        "response_format.type",
                    ))
                }
            }
        }
        let tool_choice = self.validate_tools(limits)?;
        Ok(ValidRequest {
            request: self.clone(),
            priority,
            deadline_ms: self.x_deadline_ms,
            min_confidence: self.x_min_confidence.map(|p| p as f32),
            logprobs: (self.logprobs == Some(true))
                .then(|| self.top_logprobs.unwrap_or(0) as usize),
            max_tokens: self.max_tokens(),
            stop,
            stream: self.is_stream(),
            include_usage: self
                .stream_options
                .as_ref()
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
            tool_choice,
            non_text: self.has_non_text_content(),
        })
    }

    fn validate_messages(&self, limits: &RequestLimits) -> Result<(), ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::invalid_request(
                "messages must not be empty",
                "messages",
            ));
        }
        if self.messages.len() > limits.max_messages {
            return Err(ApiError::invalid_request(
                format!("at most {} messages", limits.max_messages),
                "messages",
            ));
        }
        for (i, m) in self.messages.iter().enumerate() {
            let at = |field: &str| format!("messages[{i}].{field}");
            if let Role::Other(r) = &m.role {
                let msg = if r.is_empty() {
                    "role is required".to_string()
                } else {
                    format!("unsupported role '{r}'; expected system, developer, user, assistant or tool")
                };
                return Err(ApiError::invalid_request(msg, at("role")));
            }
            if let Some(Content::Parts(parts)) = &m.content {
                for (j, p) in parts.iter().enumerate() {
                    let pat = |f: &str| format!("messages[{i}].content[{j}].{f}");
                    match (p, p.part_type()) {
                        (ContentPart::Text { .. }, _) => {}
                        (_, None) => {
                            return Err(ApiError::invalid_request(
                                "content part needs a string 'type'",
                                pat("type"),
                            ))
                        }
                        (_, Some("text")) => {
                            return Err(ApiError::invalid_request(
                                "text content part needs a string 'text'",
                                pat("text"),
                            ))
                        }
                        (_, Some(t)) if m.role != Role::User => {
                            return Err(ApiError::invalid_request(
                                format!("content part type '{t}' is only allowed in user messages"),
                                pat("type"),
                            ))
                        }
                        _ => {}
                    }
                }
            }
            let empty = m.content.as_ref().is_none_or(Content::is_empty);
            match m.role {
                Role::System | Role::Developer | Role::User => {
                    if empty {
                        return Err(ApiError::invalid_request(
                            format!("{} message content must not be empty", m.role),
                            at("content"),
                        ));
                    }
                    if m.tool_calls.is_some() {
                        return Err(ApiError::invalid_request(
                            "only assistant messages carry tool_calls",
                            at("tool_calls"),
                        ));
                    }
                }
                Role::Assistant => {
                    let calls = m.tool_calls.as_deref().unwrap_or(&[]);
                    if empty && calls.is_empty() {
                        return Err(ApiError::invalid_request(
                            "assistant message needs content or tool_calls",
                            at("content"),
                        ));
                    }
                    for (j, c) in calls.iter().enumerate() {
                        let cat = |f: &str| format!("messages[{i}].tool_calls[{j}].{f}");
                        if c.id.is_empty() {
                            return Err(ApiError::invalid_request(
                                "tool call id must not be empty",
                                cat("id"),
                            ));
                        }
                        if c.kind != "function" {
                            return Err(ApiError::invalid_request(
                                "tool call type must be 'function'",
                                cat("type"),
                            ));
                        }
                        if c.function.name.is_empty() {
                            return Err(ApiError::invalid_request(
                                "tool call function name must not be empty",
                                cat("function.name"),
                            ));
                        }
                    }
                }
                Role::Tool => {
                    if m.tool_call_id.as_deref().is_none_or(str::is_empty) {
                        return Err(ApiError::invalid_request(
                            "tool message needs tool_call_id",
                            at("tool_call_id"),
                        ));
                    }
                    if m.content.is_none() {
                        return Err(ApiError::invalid_request(
                            "tool message needs content",
                            at("content"),
                        ));
                    }
                }
                Role::Other(_) => unreachable!("rejected above"),
            }
        }
        Ok(())
    }

    fn validate_tools(&self, limits: &RequestLimits) -> Result<ToolChoice, ApiError> {
        let tools = self.tools();
        if tools.len() > limits.max_tools {
            return Err(ApiError::invalid_tools(
                format!("at most {} tools", limits.max_tools),
                "tools",
            ));
        }
        for (i, t) in tools.iter().enumerate() {
            let at = |f: &str| format!("tools[{i}].{f}");
            if t.kind != "function" {
                return Err(ApiError::invalid_tools(
                    "tool type must be 'function'",
                    at("type"),
                ));
            }
            let name = &t.function.name;
            if name.is_empty() {
                return Err(ApiError::invalid_tools(
                    "function name is required",
                    at("function.name"),
                ));
            }
            if name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(ApiError::invalid_tools(
                    format!("function name '{name}' must be 1..=64 of a-z, A-Z, 0-9, _ and -"),
                    at("function.name"),
                ));
            }
            if tools[..i].iter().any(|o| o.function.name == *name) {
                return Err(ApiError::invalid_tools(
                    format!("function name '{name}' is declared twice"),
                    at("function.name"),
                ));
            }
            if let Some(p) = &t.function.parameters {
                let is_object_schema = match p.get("type") {
                    None => p.is_object(),
                    Some(Value::String(s)) => s == "object",
                    Some(_) => false,
                };
                if !is_object_schema {
                    return Err(ApiError::invalid_tools(
                        "parameters must be a JSON schema of type 'object'",
                        at("function.parameters"),
                    ));
                }
                crate::schema::check_schema(p).map_err(|e| {
                    ApiError::invalid_tools(
                        format!("invalid parameters schema: {e}"),
                        at("function.parameters"),
                    )
                })?;
            }
        }
        let choice = match &self.tool_choice {
            None if tools.is_empty() => ToolChoice::None,
            None => ToolChoice::Auto,
            Some(ToolChoice::Invalid(_)) => {
                return Err(ApiError::invalid_tools(
                    "tool_choice must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}",
                    "tool_choice",
                ))
            }
            Some(ToolChoice::Required) if tools.is_empty() => {
                return Err(ApiError::invalid_tools(
                    "tool_choice 'required' needs tools",
                    "tool_choice",
                ))
            }
            Some(ToolChoice::Function(name)) if !tools.iter().any(|t| &t.function.name == name) => {
                return Err(ApiError::invalid_tools(
                    format!("tool_choice names '{name}', which is not in tools"),
                    "tool_choice.function.name",
                ))
            }
            Some(c) => c.clone(),
        };
        Ok(choice)
    }
}
