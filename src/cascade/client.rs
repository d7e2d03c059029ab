//! An OpenAI chat-completions client for one upstream hop (a `moe-edge host`
//! or a cloud such as Qwen3-Max on Alibaba Model Studio): HTTPS through
//! rustls (ring), non-streaming and streaming (SSE read incrementally into
//! [`ChatCompletionChunk`]s as they arrive), timeouts on every wait, and
//! retries only where they are safe.
//!
//! Safe retries: a connection that could not be made, or a 429/503 "try
//! again" answered before any byte of a reply; each with exponential backoff
//! (`Retry-After` honoured up to the cap) and never past the call's deadline.
//! Never after a stream started, never after a timeout (the upstream may be
//! working on it).
//! Timeouts: connect (reqwest), the whole call for a plain request, the
//! response head and every gap between stream reads for a stream, and the
//! caller's deadline over everything.
//! The API key is read once from the environment variable the board names; it
//! is sent as a sensitive header and never formatted (`ApiKey`'s `Debug` is
//! redacted). Not here: which hop to try, breakers, who served what
//! (`cascade::hops`, `cascade::policy`).

use std::collections::VecDeque;
use std::sync::Once;
use std::time::Duration;

use tokio::time::Instant;

use super::CascadeError;
use crate::openai::{
    ApiError, ChatCompletion, ChatCompletionChunk, ChatRequest, ErrorBody, ErrorCode, SseParser,
    DONE,
};

/// Largest non-streamed reply (or error body) read from an upstream.
const MAX_BODY: usize = 8 << 20;

/// Installs rustls' ring provider once per process (reqwest is built without one).
pub fn install_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err only when another provider is already installed: fine either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A secret that never shows up in logs or `Debug` output.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }

    /// Reads the variable `name`; `Ok(None)` when it is unset or empty.
    pub fn from_env(name: &str) -> Option<ApiKey> {
        std::env::var(name)
            .ok()
            .filter(|k| !k.trim().is_empty())
            .map(|k| ApiKey(k.trim().to_string()))
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Retries of one call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First backoff; doubles each retry.
    pub backoff: Duration,
    /// Longest single backoff (also caps `Retry-After`).
    pub backoff_cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 2,
            backoff: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based), `Retry-After` taking precedence up to the cap.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self.backoff.saturating_mul(1u32 << retry.min(16));
        retry_after.unwrap_or(exp).min(self.backoff_cap)
    }
}

/// Everything a client needs.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// For logs and `tried` entries: `host`, `cloud`.
    pub name: String,
    /// The OpenAI base URL (`https://dashscope-intl.aliyuncs.com/compatible-mode/v1`);
    /// a URL with no path (`http://moe-host.local:8080`) gets `/v1`.
    pub base_url: String,
    /// Sent as `model`; `None` keeps the request's own.
    pub model: Option<String>,
    pub api_key: Option<ApiKey>,
    pub connect_timeout: Duration,
    /// A whole plain call; the response head and each gap between reads of a stream.
    pub timeout: Duration,
    /// A whole stream, when the caller gives no deadline.
    pub stream_timeout: Duration,
    pub retry: RetryPolicy,
}

impl ClientConfig {
    pub fn new(name: impl Into<String>, base_url: impl Into<String>) -> Self {
        ClientConfig {
            name: name.into(),
            base_url: base_url.into(),
            model: None,
            api_key: None,
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
            stream_timeout: Duration::from_secs(300),
            retry: RetryPolicy::default(),
        }
    }
}

/// `{base}/chat/completions`, `{base}/v1/...` when the base has no path.
pub fn endpoint(base_url: &str, path: &str) -> String {
    let base = base_url.trim_end_matches('/');
    let after_scheme = base.split_once("://").map(|(_, r)| r).unwrap_or(base);
    if after_scheme.contains('/') {
        format!("{base}/{path}")
    } else {
        format!("{base}/v1/{path}")
    }
}

/// A client for one upstream.
#[derive(Debug, Clone)]
pub struct Client {
    cfg: ClientConfig,
    url: String,
    http: reqwest::Client,
}

/// Which kind of call a request body is made for.
fn upstream_body(req: &ChatRequest, model: Option<&str>, stream: bool) -> ChatRequest {
    let mut r = match model.or(req.model.as_deref()) {
        Some(m) => req.to_upstream(m),
        None => {
            let mut r = req.to_upstream("");
            r.model = None;
            r
        }
    };
    if stream {
        r.stream = Some(true);
    } else {
        r.stream = None;
        r.stream_options = None;
    }
    r
}

impl Client {
    pub fn new(cfg: ClientConfig) -> Result<Client, CascadeError> {
        install_crypto();
        let url = endpoint(&cfg.base_url, "chat/completions");
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(CascadeError::Config(format!(
                "{}: `{}` is not an http(s) URL",
                cfg.name, cfg.base_url
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("moe-edge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CascadeError::Config(format!("{}: {e}", cfg.name)))?;
        Ok(Client { cfg, url, http })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// The chat-completions URL called.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A plain (non-streamed) call. `deadline` bounds everything, retries included.
    pub async fn complete(
        &self,
        req: &ChatRequest,
        deadline: Option<Instant>,
    ) -> Result<ChatCompletion, CascadeError> {
        let deadline = self.call_deadline(deadline, self.cfg.timeout);
        let body = upstream_body(req, self.cfg.model.as_deref(), false);
        let resp = self.send(&body, deadline).await?;
        let bytes = read_body(resp, deadline, self.ms_until(deadline)).await?;
        serde_json::from_slice::<ChatCompletion>(&bytes).map_err(|e| {
            CascadeError::Protocol(format!(
                "reply is not a chat.completion: {e} (starts {:?})",
                preview(&bytes)
            ))
        })
    }

    /// A streamed call: returns once the upstream answered 200 with an event
    /// stream; chunks are read as the caller asks for them.
    pub async fn stream(
        &self,
        req: &ChatRequest,
        deadline: Option<Instant>,
    ) -> Result<ChunkStream, CascadeError> {
        let head_deadline = self.call_deadline(deadline, self.cfg.timeout);
        let total = self.call_deadline(deadline, self.cfg.stream_timeout);
        let body = upstream_body(req, self.cfg.model.as_deref(), true);
        let resp = self.send(&body, head_deadline).await?;
        let is_json = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let mut s = ChunkStream {
            resp: Some(resp),
            parser: SseParser::new(),
            pending: VecDeque::new(),
            ready: VecDeque::new(),
            idle: self.cfg.timeout,
            deadline: total,
            chunks: 0,
            finished: false,
            done: false,
        };
        if is_json {
            // An upstream that ignored `stream: true`: its whole reply, as chunks.
            let resp = s.resp.take().expect("response");
            let bytes = read_body(resp, head_deadline, self.ms_until(head_deadline)).await?;
            let c: ChatCompletion = serde_json::from_slice(&bytes).map_err(|e| {
                CascadeError::Protocol(format!("reply is not a chat.completion: {e}"))
            })?;
            s.ready.extend(c.to_chunks(true));
            s.finished = true;
        }
        Ok(s)
    }

    fn call_deadline(&self, deadline: Option<Instant>, budget: Duration) -> Instant {
        let own = Instant::now() + budget;
        deadline.map_or(own, |d| d.min(own))
    }

    fn ms_until(&self, deadline: Instant) -> u64 {
        deadline
            .saturating_duration_since(Instant::now())
            .as_millis() as u64
    }

    /// Sends with safe retries; returns a 2xx response whose body is unread.
    async fn send(
        &self,
        body: &ChatRequest,
        deadline: Instant,
    ) -> Result<reqwest::Response, CascadeError> {
        let started = Instant::now();
        let json = serde_json::to_vec(body)
            .map_err(|e| CascadeError::Protocol(format!("request does not serialise: {e}")))?;
        let mut retry = 0u32;
        loop {
            let mut rb = self
                .http
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(
                    reqwest::header::ACCEPT,
                    if body.stream == Some(true) {
                        "text/event-stream"
                    } else {
                        "application/json"
                    },
                )
                .body(json.clone());
            if let Some(key) = &self.cfg.api_key {
                let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", key.0))
                    .map_err(|_| {
                        CascadeError::Config(format!(
                            "{}: the API key is not a valid header value",
                            self.cfg.name
                        ))
                    })?;
                v.set_sensitive(true);
                rb = rb.header(reqwest::header::AUTHORIZATION, v);
            }
            let waited = started.elapsed().as_millis() as u64;
            let sent = tokio::time::timeout_at(deadline, rb.send()).await;
            let (err, retry_after) = match sent {
                Err(_) => {
                    return Err(CascadeError::Timeout {
                        ms: started.elapsed().as_millis() as u64,
                        phase: "waiting for the response",
                    })
                }
                Ok(Ok(resp)) if resp.status().is_success() => return Ok(resp),
                Ok(Ok(resp)) => {
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let ms = self.ms_until(deadline);
                    let bytes = read_body(resp, deadline, ms).await.unwrap_or_default();
                    let error = upstream_error(status, &bytes);
                    (CascadeError::Status { status, error }, retry_after)
                }
                Ok(Err(e)) if e.is_connect() || peer_went_away(&e) => {
                    (CascadeError::Connect(error_chain(&e)), None)
                }
                Ok(Err(e)) if e.is_timeout() => {
                    return Err(CascadeError::Timeout {
                        ms: started.elapsed().as_millis() as u64,
                        phase: "connecting",
                    })
                }
                Ok(Err(e)) => return Err(CascadeError::Protocol(error_chain(&e))),
            };
            if !err.is_retryable() || retry >= self.cfg.retry.max_retries {
                return Err(err);
            }
            let delay = self.cfg.retry.delay(retry, retry_after);
            if Instant::now() + delay >= deadline {
                return Err(err);
            }
            log::debug!(
                "upstream retry hop={} attempt={} delay_ms={} waited_ms={} error=\"{}\"",
                self.cfg.name,
                retry + 1,
                delay.as_millis(),
                waited,
                err
            );
            tokio::time::sleep(delay).await;
            retry += 1;
        }
    }
}

/// Reads a whole body (bounded in size and time).
async fn read_body(
    mut resp: reqwest::Response,
    deadline: Instant,
    ms: u64,
) -> Result<Vec<u8>, CascadeError> {
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, resp.chunk()).await {
            Err(_) => {
                return Err(CascadeError::Timeout {
                    ms,
                    phase: "reading the reply",
                })
            }
            Ok(Err(e)) => {
                return Err(CascadeError::Protocol(format!(
                    "reading the reply: {}",
                    error_chain(&e)
                )))
            }
            Ok(Ok(None)) => return Ok(out),
            Ok(Ok(Some(b))) => {
                if out.len() + b.len() > MAX_BODY {
                    return Err(CascadeError::Protocol(format!(
                        "reply larger than {MAX_BODY} bytes"
                    )));
                }
                out.extend_from_slice(&b);
            }
        }
    }
}

/// An upstream's error reply as ours: its OpenAI error body when it has one.
fn upstream_error(status: u16, body: &[u8]) -> ApiError {
    match ErrorBody::parse(body) {
        Some(b) => b.into_api_error(),
        None => ApiError::new(
            ErrorCode::UpstreamError,
            format!("upstream answered HTTP {status}: {:?}", preview(body)),
        ),
    }
}

/// The first bytes of a body, for messages.
fn preview(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(120)]);
    s.replace(['\n', '\r'], " ")
}

/// An error with its sources (`error sending request: ...: Connection refused`).
/// The connection closed or was reset before a response came (the peer
/// died, or a pooled connection to it was dead): as unreachable as a
/// refused connect, not a bad reply.
fn peer_went_away(e: &reqwest::Error) -> bool {
    use std::io::ErrorKind;
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() {
                return true;
            }
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
            );
        }
        src = s.source();
    }
    false
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        src = s.source();
    }
    out
}

/// A stream of chunks being read from an upstream. Chunks come out in the
/// upstream's order as soon as their SSE event is complete.
#[derive(Debug)]
pub struct ChunkStream {
    resp: Option<reqwest::Response>,
    parser: SseParser,
    /// Event payloads parsed but not yet returned.
    pending: VecDeque<String>,
    /// Chunks ready (an upstream that answered JSON).
    ready: VecDeque<ChatCompletionChunk>,
    idle: Duration,
    deadline: Instant,
    chunks: usize,
    /// A finish_reason was seen.
    finished: bool,
    done: bool,
}

impl ChunkStream {
    /// Chunks returned so far.
    pub fn chunks(&self) -> usize {
        self.chunks
    }

    /// The next chunk; `None` at `data: [DONE]` (or a clean end).
    pub async fn next(&mut self) -> Option<Result<ChatCompletionChunk, CascadeError>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(c) = self.ready.pop_front() {
                self.chunks += 1;
                return Some(Ok(c));
            }
            if let Some(payload) = self.pending.pop_front() {
                match self.event(&payload) {
                    Ok(Some(c)) => {
                        self.chunks += 1;
                        return Some(Ok(c));
                    }
                    Ok(None) => continue,
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
            }
            let Some(resp) = self.resp.as_mut() else {
                self.done = true;
                return None;
            };
            let limit = (Instant::now() + self.idle).min(self.deadline);
            match tokio::time::timeout_at(limit, resp.chunk()).await {
                Err(_) => {
                    self.done = true;
                    let (ms, phase) = if limit >= self.deadline {
                        (0, "the whole stream")
                    } else {
                        (self.idle.as_millis() as u64, "between stream chunks")
                    };
                    return Some(Err(CascadeError::Timeout { ms, phase }));
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Some(Err(CascadeError::Stream {
                        chunks: self.chunks,
                        msg: error_chain(&e),
                    }));
                }
                Ok(Ok(Some(bytes))) => self.pending.extend(self.parser.push(&bytes)),
                Ok(Ok(None)) => {
                    self.resp = None;
                    self.pending.extend(self.parser.finish());
                    if self.pending.is_empty() {
                        self.done = true;
                        if self.finished {
                            return None;
                        }
                        return Some(Err(CascadeError::Stream {
                            chunks: self.chunks,
                            msg: "the stream ended before a finish_reason or [DONE]".into(),
                        }));
                    }
                }
            }
        }
    }

    /// One event payload: a chunk, nothing (keep-alive, [DONE]) or an error.
    fn event(&mut self, payload: &str) -> Result<Option<ChatCompletionChunk>, CascadeError> {
        let p = payload.trim();
        if p.is_empty() {
            return Ok(None);
        }
        if p == DONE {
            self.done = true;
            self.resp = None;
            return Ok(None);
        }
        let v: serde_json::Value = serde_json::from_str(p).map_err(|e| {
            CascadeError::Protocol(format!(
                "stream event is not JSON: {e} ({:?})",
                preview(p.as_bytes())
            ))
        })?;
        if v.get("error").is_some() {
            let error = serde_json::from_value::<ErrorBody>(v)
                .map(ErrorBody::into_api_error)
                .unwrap_or_else(|_| {
                    ApiError::new(
                        ErrorCode::UpstreamError,
                        "upstream sent an error in the stream",
                    )
                });
            return Err(CascadeError::Status { status: 200, error });
        }
        let c: ChatCompletionChunk = serde_json::from_value(v).map_err(|e| {
            CascadeError::Protocol(format!("stream event is not a chat.completion.chunk: {e}"))
        })?;
        if c.choices.iter().any(|ch| ch.finish_reason.is_some()) {
            self.finished = true;
        }
        Ok(Some(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::Message;

    #[test]
    fn endpoints() {
        assert_eq!(
            endpoint(
                "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
                "chat/completions"
            ),
            "https://dashscope-intl.aliyuncs.com/compatible-mode/v1/chat/completions"
        );
        assert_eq!(
            endpoint("http://moe-host.local:8080", "chat/completions"),
            "http://moe-host.local:8080/v1/chat/completions"
        );
        assert_eq!(endpoint("http://h:1/", "models"), "http://h:1/v1/models");
        assert_eq!(endpoint("http://h:1/v1/", "models"), "http://h:1/v1/models");
    }

    #[test]
    fn key_is_redacted() {
        let k = ApiKey::new("sk-secret");
        assert!(!format!("{k:?}").contains("secret"));
        let mut cfg = ClientConfig::new("cloud", "https://x/v1");
        cfg.api_key = Some(k);
        assert!(!format!("{cfg:?}").contains("sk-secret"));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(0, None), Duration::from_millis(100));
        assert_eq!(p.delay(1, None), Duration::from_millis(200));
        assert_eq!(p.delay(10, None), Duration::from_secs(2));
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(60))),
            Duration::from_secs(2)
        );
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(1))),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn upstream_body_uses_max_completion_tokens_and_the_hop_model() {
        let req = ChatRequest {
            model: Some("assist-moe".into()),
            messages: vec![Message::user("hi")],
            max_tokens: Some(16),
            stream: Some(true),
            x_deadline_ms: Some(500),
            ..ChatRequest::default()
        };
        let v = upstream_body(&req, Some("qwen3-max"), false).to_value();
        assert_eq!(v["model"], "qwen3-max");
        assert_eq!(v["max_completion_tokens"], 16);
        assert!(
            v.get("max_tokens").is_none()
                && v.get("stream").is_none()
                && v.get("x-deadline-ms").is_none()
        );
        let s = upstream_body(&req, None, true).to_value();
        assert_eq!(s["model"], "assist-moe");
        assert_eq!(s["stream"], true);
    }

    #[test]
    fn upstream_errors_are_read() {
        let e = upstream_error(401, br#"{"error":{"message":"Incorrect API key","type":"invalid_request_error","code":"invalid_api_key"}}"#);
        assert_eq!(e.code, ErrorCode::UpstreamError);
        assert!(e.message.contains("Incorrect API key"));
        let g = upstream_error(502, b"<html>bad gateway</html>");
        assert!(g.message.contains("HTTP 502") && g.message.contains("bad gateway"));
    }
}
