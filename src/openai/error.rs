//! Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
//!
//! [`ErrorCode`] is the closed list of stable codes moe-edge answers with; apps
//! match on the `code` string, so a code is never renamed. [`ApiError`] carries
//! one code, a human message and the offending request field (`param`), and
//! knows its HTTP status. [`ErrorBody`] is the wire form, also used to read an
//! upstream (cloud) error, whose `code` may be any string.

use serde::{Deserialize, Deserializer, Serialize};

/// Stable error codes (the `error.code` string on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not JSON (syntax error, truncated).
    InvalidJson,
    /// The body is not UTF-8.
    InvalidUtf8,
    /// The body is larger than the configured limit.
    PayloadTooLarge,
    /// The JSON is well-formed but the request is not valid.
    InvalidRequest,
    /// The `model` names nothing this daemon or its cascade can serve.
    ModelNotFound,
    /// The prompt (plus `max_tokens`) does not fit the context.
    ContextLengthExceeded,
    /// `tools` / `tool_choice` are invalid (bad schema, unknown tool named).
    InvalidTools,
    /// An MQTT 3.1.1 request without `reply_topic` (and no MQTT 5 response topic).
    MissingReplyTopic,
    /// The admission queue is full; nothing was accepted, try again.
    Overloaded,
    /// The request's deadline passed (or cannot be met).
    DeadlineExceeded,
    /// The client sends too many requests.
    RateLimited,
    /// Every hop of the cascade failed; the message lists what was tried.
    NoRoute,
    /// The upstream (host or cloud) answered with an error.
    UpstreamError,
    /// The daemon is stopping and takes no new work.
    ShuttingDown,
    /// A bug or an unexpected failure inside moe-edge.
    InternalError,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: [ErrorCode; 15] = [
        ErrorCode::InvalidJson,
        ErrorCode::InvalidUtf8,
        ErrorCode::PayloadTooLarge,
        ErrorCode::InvalidRequest,
        ErrorCode::ModelNotFound,
        ErrorCode::ContextLengthExceeded,
        ErrorCode::InvalidTools,
        ErrorCode::MissingReplyTopic,
        ErrorCode::Overloaded,
        ErrorCode::DeadlineExceeded,
        ErrorCode::RateLimited,
        ErrorCode::NoRoute,
        ErrorCode::UpstreamError,
        ErrorCode::ShuttingDown,
        ErrorCode::InternalError,
    ];

    /// The wire string (`"invalid_json"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidUtf8 => "invalid_utf8",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::ModelNotFound => "model_not_found",
            ErrorCode::ContextLengthExceeded => "context_length_exceeded",
            ErrorCode::InvalidTools => "invalid_tools",
            ErrorCode::MissingReplyTopic => "missing_reply_topic",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::DeadlineExceeded => "deadline_exceeded",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::NoRoute => "no_route",
            ErrorCode::UpstreamError => "upstream_error",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::InternalError => "internal_error",
        }
    }

    /// Parses a wire string; `None` for codes moe-edge does not issue.
    pub fn from_str_opt(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The HTTP status an endpoint answers with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidJson
            | ErrorCode::InvalidUtf8
            | ErrorCode::InvalidRequest
            | ErrorCode::ContextLengthExceeded
            | ErrorCode::InvalidTools
            | ErrorCode::MissingReplyTopic => 400,
            ErrorCode::ModelNotFound => 404,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::InternalError => 500,
            ErrorCode::UpstreamError => 502,
            ErrorCode::Overloaded | ErrorCode::NoRoute | ErrorCode::ShuttingDown => 503,
            ErrorCode::DeadlineExceeded => 504,
        }
    }

    /// OpenAI's `error.type` for this code.
    pub fn error_type(self) -> &'static str {
        match self.http_status() {
            400 | 404 | 413 => "invalid_request_error",
            429 => "rate_limit_error",
            504 => "timeout_error",
            _ => "server_error",
        }
    }

    /// Whether retrying the same request later may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::Overloaded
                | ErrorCode::RateLimited
                | ErrorCode::NoRoute
                | ErrorCode::UpstreamError
                | ErrorCode::ShuttingDown
                | ErrorCode::DeadlineExceeded
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error answered to an app: a stable code, a message, the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}{}", param.as_ref().map(|p| format!(" (param {p})")).unwrap_or_default())]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// The request field at fault, as a path: `messages[2].content`, `tools[0].function.name`.
    pub param: Option<String>,
    /// `no_route`: the hops tried, each with why it could not answer
    /// (`"device: fallback marker"`); sent as `x_moe_edge.tried`.
    pub tried: Vec<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            param: None,
            tried: Vec::new(),
        }
    }

    /// Sets the offending field.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// `invalid_request` naming the offending field.
    pub fn invalid_request(message: impl Into<String>, param: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::InvalidRequest, message).with_param(param)
    }

    /// `invalid_tools` naming the offending field.
    pub fn invalid_tools(message: impl Into<String>, param: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::InvalidTools, message).with_param(param)
    }

    /// `no_route`: every hop failed; `tried` lists each hop and why (e.g. `"device: fallback marker"`).
    pub fn no_route<S: AsRef<str>>(tried: &[S]) -> Self {
        let list: Vec<&str> = tried.iter().map(|s| s.as_ref()).collect();
        let message = if list.is_empty() {
            "no route can serve this request (nothing was tried)".to_string()
        } else {
            format!(
                "no route can serve this request; tried: {}",
                list.join("; ")
            )
        };
        ApiError {
            tried: list.iter().map(|s| s.to_string()).collect(),
            ..ApiError::new(ErrorCode::NoRoute, message)
        }
    }

    /// `internal_error` with a message.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::InternalError, message)
    }

    pub fn http_status(&self) -> u16 {
        self.code.http_status()
    }

    /// The wire body.
    pub fn to_body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorObject {
                message: self.message.clone(),
                kind: self.code.error_type().to_string(),
                param: self.param.clone(),
                code: Some(self.code.as_str().to_string()),
            },
            x_moe_edge: (!self.tried.is_empty()).then(|| ErrorEdgeInfo {
                tried: self.tried.clone(),
            }),
        }
    }

    /// The wire body as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.to_body()).expect("error body serialises")
    }

    /// The wire body as a JSON value.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self.to_body()).expect("error body serialises")
    }
}

/// `{"error": {...}}`, with `x_moe_edge.tried` on `no_route`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorObject,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_moe_edge: Option<ErrorEdgeInfo>,
}

/// The extension of an error body: the hops tried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEdgeInfo {
    #[serde(default)]
    pub tried: Vec<String>,
}

/// The inner error object. Read leniently: upstream servers send codes and
/// params as strings, numbers or null.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorObject {
    #[serde(default)]
    pub message: String,
    #[serde(rename = "type", default, deserialize_with = "lenient_string")]
    pub kind: String,
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub param: Option<String>,
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub code: Option<String>,
}

impl ErrorBody {
    /// Parses an error body; `None` if `bytes` is not one.
    pub fn parse(bytes: &[u8]) -> Option<ErrorBody> {
        serde_json::from_slice(bytes).ok()
    }

    /// Turns an error read from an upstream into ours: a known moe-edge code is
    /// kept (a host running moe-edge), anything else becomes `upstream_error`.
    pub fn into_api_error(self) -> ApiError {
        let code = self
            .error
            .code
            .as_deref()
            .and_then(ErrorCode::from_str_opt)
            .unwrap_or(ErrorCode::UpstreamError);
        let message = if code == ErrorCode::UpstreamError {
            match &self.error.code {
                Some(c) => format!("upstream error ({c}): {}", self.error.message),
                None => format!("upstream error: {}", self.error.message),
            }
        } else {
            self.error.message
        };
        ApiError {
            code,
            message,
            param: self.error.param,
            tried: self.x_moe_edge.map(|x| x.tried).unwrap_or_default(),
        }
    }
}

fn lenient_opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s),
        other => Some(other.to_string()),
    })
}

fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(lenient_opt_string(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_as_snake_case() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(ErrorCode::from_str_opt(code.as_str()), Some(code));
            assert!(code.http_status() >= 400);
        }
    }

    #[test]
    fn body_has_openai_shape() {
        let e = ApiError::invalid_request("temperature must be in 0..=2", "temperature");
        let v = e.to_value();
        assert_eq!(v["error"]["code"], "invalid_request");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], "temperature");
        assert_eq!(v["error"]["message"], "temperature must be in 0..=2");
        assert_eq!(e.http_status(), 400);
        let no_param = ApiError::new(ErrorCode::Overloaded, "busy").to_value();
        assert!(no_param["error"]["param"].is_null());
        assert_eq!(no_param["error"]["type"], "server_error");
    }

    #[test]
    fn no_route_lists_what_was_tried() {
        let e = ApiError::no_route(&["device: fallback marker", "cloud: timeout after 8000 ms"]);
        assert_eq!(e.code, ErrorCode::NoRoute);
        assert!(e.message.contains("device: fallback marker"));
        assert!(e.message.contains("cloud: timeout"));
        assert_eq!(e.http_status(), 503);
    }

    #[test]
    fn upstream_bodies_are_read_leniently() {
        let b = ErrorBody::parse(
            br#"{"error":{"message":"bad key","type":"auth","param":null,"code":401}}"#,
        )
        .unwrap();
        assert_eq!(b.error.code.as_deref(), Some("401"));
        let e = b.into_api_error();
        assert_eq!(e.code, ErrorCode::UpstreamError);
        assert!(e.message.contains("bad key"));
        let ours = ErrorBody::parse(
            ApiError::new(ErrorCode::Overloaded, "busy")
                .to_json()
                .as_bytes(),
        )
        .unwrap()
        .into_api_error();
        assert_eq!(ours, ApiError::new(ErrorCode::Overloaded, "busy"));
        assert!(ErrorBody::parse(b"{}").is_none());
    }

    #[test]
    fn display_names_code_and_param() {
        let e = ApiError::invalid_tools("no name", "tools[0].function.name");
        assert_eq!(
            e.to_string(),
            "invalid_tools: no name (param tools[0].function.name)"
        );
    }
}
