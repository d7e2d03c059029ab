//! The OpenAI-compatible HTTP endpoint: `POST /v1/chat/completions`
//! (plain JSON, or SSE when `stream: true`), `GET /v1/models`, `GET /healthz`.
//! `moe-edge host --http` serves its full model through it; `moe-edge serve
//! --http` offers the device's (whose fallbacks go up the cascade) for local
//! tools. Both build it with [`router`] over a [`ChatBackend`].
//!
//! Errors are OpenAI error bodies with the code's HTTP status; an error that
//! happens before the first chunk of a stream is still a plain HTTP error
//! (the backend's first chunk is awaited before the 200 is sent), one after
//! it is an SSE error event. Bounded: request bodies (size and read time) and
//! requests in flight (a full house answers 503 `overloaded` at once).
//! Not here: running the model (`local`), the cascade (`cascade`).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::future::BoxFuture;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::HostError;
use crate::cascade::ChunkSink;
use crate::openai::{
    sse_chunk, sse_error, ApiError, ChatCompletion, ChatCompletionChunk, ChatRequest, ErrorCode,
    RequestLimits, ValidRequest, SSE_DONE,
};

/// Whatever answers chat requests behind the endpoint (the host's model, the device daemon).
pub trait ChatBackend: Send + Sync + 'static {
    /// The id listed by `/v1/models`.
    fn model_id(&self) -> String;

    /// Answers one request. With a sink, the reply is streamed into it as
    /// `chat.completion.chunk`s (role first, `x_moe_edge` on the last) and
    /// also returned whole; a backend may also ignore the sink and only
    /// return the reply (the endpoint then streams it in one go). An error
    /// returned before any chunk was sent becomes a plain HTTP error.
    fn chat(
        self: Arc<Self>,
        request: ValidRequest,
        sink: Option<ChunkSink>,
    ) -> BoxFuture<'static, Result<ChatCompletion, ApiError>>;
}

/// The endpoint's state.
pub struct HttpState {
    backend: Arc<dyn ChatBackend>,
    limits: RequestLimits,
    in_flight: Arc<Semaphore>,
    body_timeout: Duration,
}

impl HttpState {
    /// `max_in_flight` requests at once (further ones get 503 `overloaded`);
    /// bodies up to `limits.max_body_bytes`.
    pub fn new(backend: Arc<dyn ChatBackend>, limits: RequestLimits, max_in_flight: usize) -> Self {
        HttpState {
            backend,
            limits,
            in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
            body_timeout: Duration::from_secs(10),
        }
    }

    /// From a board: its payload limit and `max_concurrent + queue_depth` in flight.
    pub fn for_board(backend: Arc<dyn ChatBackend>, board: &crate::config::Board) -> Self {
        let limits = RequestLimits {
            max_body_bytes: board.limits.max_payload_bytes,
            ..RequestLimits::default()
        };
        HttpState::new(
            backend,
            limits,
            board.limits.max_concurrent + board.limits.queue_depth,
        )
    }
}

/// The endpoint's routes.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(not_found)
        .with_state(Arc::new(state))
}

/// Binds `addr` and serves until `shutdown` completes.
pub async fn serve_http(
    addr: SocketAddr,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HostError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| HostError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    serve_listener(listener, state, shutdown).await
}

/// Serves on a bound listener (for callers that print or test the port) until `shutdown` completes.
pub async fn serve_listener(
    listener: TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HostError> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    log::info!(
        "http listening addr={addr} model={}",
        state.backend.model_id()
    );
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(HostError::Serve)?;
    log::info!("http stopped addr={addr}");
    Ok(())
}

fn error_response(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        e.to_json(),
    )
        .into_response();
    if matches!(e.code, ErrorCode::Overloaded | ErrorCode::RateLimited) {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

async fn not_found(req: Request) -> Response {
    let e = ApiError::new(
        ErrorCode::InvalidRequest,
        format!(
            "no route {} {}; this server offers POST /v1/chat/completions and GET /v1/models",
            req.method(),
            req.uri().path()
        ),
    );
    let mut r = error_response(&e);
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

async fn models(State(s): State<Arc<HttpState>>) -> Response {
    let body = serde_json::json!({
        "object": "list",
        "data": [{"id": s.backend.model_id(), "object": "model", "created": 0, "owned_by": "moe-edge"}],
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn read_body(s: &HttpState, req: Request) -> Result<Bytes, ApiError> {
    let limit = s.limits.max_body_bytes;
    let too_large = |n: Option<usize>| {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            match n {
                Some(n) => format!("request body is {n} bytes; the limit is {limit}"),
                None => format!("request body exceeds the limit of {limit} bytes"),
            },
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(n) = declared.filter(|&n| n > limit) {
        return Err(too_large(Some(n)));
    }
    match tokio::time::timeout(s.body_timeout, axum::body::to_bytes(req.into_body(), limit)).await {
        Err(_) => Err(ApiError::invalid_request(
            format!(
                "request body not received within {} s",
                s.body_timeout.as_secs()
            ),
            "body",
        )),
        Ok(Err(_)) => Err(too_large(None)),
        Ok(Ok(b)) => Ok(b),
    }
}

async fn chat(State(s): State<Arc<HttpState>>, req: Request) -> Response {
    let Ok(permit) = s.in_flight.clone().try_acquire_owned() else {
        return error_response(&ApiError::new(
            ErrorCode::Overloaded,
            "too many requests in flight; try again",
        ));
    };
    let valid = match read_body(&s, req)
        .await
        .and_then(|b| ChatRequest::parse(&b, s.limits.max_body_bytes))
        .and_then(|r| r.validate(&s.limits))
    {
        Ok(v) => v,
        Err(e) => return error_response(&e),
    };
    let backend = s.backend.clone();
    if !valid.stream {
        let r = backend.chat(valid, None).await;
        drop(permit);
        return match r {
            Ok(c) => (
                [(header::CONTENT_TYPE, "application/json")],
                serde_json::to_string(&c).expect("completion serialises"),
            )
                .into_response(),
            Err(e) => error_response(&e),
        };
    }
    let include_usage = valid.include_usage;
    let (tx, mut rx) = mpsc::channel::<ChatCompletionChunk>(64);
    let (done_tx, done_rx) = oneshot::channel();
    tokio::spawn(async move {
        let r = backend.chat(valid, Some(tx)).await;
        let _ = done_tx.send(r);
        drop(permit);
    });
    // The first chunk decides between a 200 stream and a plain error.
    let first = match rx.recv().await {
        Some(c) => vec![c],
        None => match done_rx.await {
            Ok(Err(e)) => return error_response(&e),
            Ok(Ok(c)) => {
                // The backend did not stream: send its reply as chunks.
                let mut out = String::new();
                for ch in c.to_chunks(include_usage) {
                    out.push_str(&sse_chunk(&ch));
                }
                out.push_str(SSE_DONE);
                return sse_response(Body::from(out));
            }
            Err(_) => return error_response(&ApiError::internal("the request's task stopped")),
        },
    };
    let (body_tx, body_rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        for c in first {
            if body_tx.send(Bytes::from(sse_chunk(&c))).await.is_err() {
                return;
            }
        }
        while let Some(c) = rx.recv().await {
            if body_tx.send(Bytes::from(sse_chunk(&c))).await.is_err() {
                // The client went away: dropping `rx` stops the backend.
                return;
            }
        }
        if let Ok(Err(e)) = done_rx.await {
            log::warn!(
                "http stream_error code={} message=\"{}\"",
                e.code,
                e.message
            );
            let _ = body_tx.send(Bytes::from(sse_error(&e))).await;
        }
        let _ = body_tx.send(Bytes::from_static(SSE_DONE.as_bytes())).await;
    });
    let stream = futures_util::stream::unfold(body_rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    sse_response(Body::from_stream(stream))
}

fn sse_response(body: Body) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
        .expect("static response parts")
}
