//! The local model as a [`ChatBackend`]: an [`Engine`] on a dedicated thread
//! (it is synchronous and CPU-bound; the tokio runtime never waits on it),
//! fed one request at a time from a bounded queue, streaming text back as it
//! is generated; requests it should not answer go up the [`Cascade`].
//!
//! Used by `moe-edge host --http` (tier `host`: the full model; escalates
//! only to a cloud when the board names one) and usable on a device (tier
//! `device`: escalates to host, then cloud). A caller that goes away stops
//! its generation at the next token. Not here: HTTP (`http`), the policy's
//! decisions (`cascade::policy`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

use super::http::ChatBackend;
use super::HostError;
use crate::bundle::Verify;
use crate::cascade::policy::{deadline_miss, may_stream_text_early};
use crate::cascade::{Cascade, ChunkSink, Escalation};
use crate::chat::toolcall::StreamSplitter;
use crate::chat::{api_error, ChatOutcome, ChatPolicy};
use crate::config::Board;
use crate::engine::{Engine, Step};
use crate::openai::{
    ApiError, ChatCompletion, ChatCompletionChunk, Delta, ErrorCode, ServedBy, ValidRequest,
};

/// What the engine thread reports about one job.
enum Event {
    Delta(String),
    Finished(Box<ChatOutcome>),
    Failed(ApiError),
    Escalate(Escalation),
}

struct Job {
    request: ValidRequest,
    id: String,
    deadline: Option<Instant>,
    events: mpsc::Sender<Event>,
}

/// Measured speed, for the deadline policy (exponentially averaged).
#[derive(Debug, Default, Clone, Copy)]
struct Rates {
    prefill_ms_per_token: Option<f64>,
    decode_ms_per_token: Option<f64>,
}

impl Rates {
    fn update(&mut self, prompt: usize, prefill_ms: f64, generated: usize, decode_ms: f64) {
        let ewma = |old: Option<f64>, new: f64| Some(old.map_or(new, |o| 0.8 * o + 0.2 * new));
        if prompt > 0 {
            self.prefill_ms_per_token = ewma(self.prefill_ms_per_token, prefill_ms / prompt as f64);
        }
        if generated > 1 {
            self.decode_ms_per_token =
                ewma(self.decode_ms_per_token, decode_ms / (generated - 1) as f64);
        }
    }
}

/// A model running in this process.
pub struct LocalModel {
    jobs: mpsc::Sender<Job>,
    model_id: String,
    tier: ServedBy,
    cascade: Option<Cascade>,
    next_id: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for LocalModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalModel")
            .field("model_id", &self.model_id)
            .field("tier", &self.tier)
            .finish()
    }
}

impl LocalModel {
    /// Loads the bundle on a new thread and starts serving from it; returns
    /// once the model is loaded (or failed to). `tier` is what replies say
    /// served them (`host` for `moe-edge host`, which applies neither the
    /// board's confidence gate nor its default grounding).
    pub fn start(
        bundle: PathBuf,
        board: Board,
        verify: Verify,
        tier: ServedBy,
        cascade: Option<Cascade>,
    ) -> Result<Arc<LocalModel>, HostError> {
        let (tx, rx) = mpsc::channel::<Job>(board.limits.queue_depth.max(1));
        // a host answers for devices: their gate and grounding are theirs
        let policy = match tier {
            ServedBy::Host => ChatPolicy::for_host(&board),
            _ => ChatPolicy::of(&board),
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<String, String>>();
        std::thread::Builder::new()
            .name("moe-edge-engine".into())
            .spawn(move || {
                let engine = match Engine::load(&bundle, &board, verify) {
                    Ok(e) => e,
                    Err(e) => {
                        let _ =
                            ready_tx.send(Err(format!("loading bundle {}: {e}", bundle.display())));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(engine.model_id().to_string()));
                worker(engine, policy, rx);
            })
            .map_err(|e| HostError::Model(format!("cannot start the engine thread: {e}")))?;
        let model_id = ready_rx
            .recv()
            .map_err(|_| HostError::Model("the engine thread died while loading".into()))?
            .map_err(HostError::Model)?;
        Ok(Arc::new(LocalModel {
            jobs: tx,
            model_id,
            tier,
            cascade,
            next_id: Default::default(),
        }))
    }

    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Answers one request (see [`ChatBackend::chat`]).
    pub async fn answer(
        &self,
        request: ValidRequest,
        sink: Option<ChunkSink>,
    ) -> Result<ChatCompletion, ApiError> {
        let deadline = request
            .deadline_ms
            .map(|ms| Instant::now() + Duration::from_millis(ms));
        if let Some(why) = Escalation::before_local(&request) {
            return self.escalate(&request, why, deadline, sink).await;
        }
        let n = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("chatcmpl-{}-{}-{n}", self.tier.as_str(), std::process::id());
        let (tx, mut rx) = mpsc::channel(64);
        let job = Job {
            request: request.clone(),
            id: id.clone(),
            deadline,
            events: tx,
        };
        self.jobs.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ApiError::new(
                ErrorCode::Overloaded,
                "the model's queue is full; try again",
            ),
            mpsc::error::TrySendError::Closed(_) => {
                ApiError::new(ErrorCode::ShuttingDown, "the model is stopping")
            }
        })?;
        let mut stream = Streamer::new(
            sink.clone(),
            request.include_usage,
            id,
            self.model_id.clone(),
        );
        stream.hold_text = !may_stream_text_early(&request);
        while let Some(ev) = rx.recv().await {
            match ev {
                Event::Delta(d) => stream.text(&d).await?,
                Event::Finished(outcome) => {
                    let ChatOutcome {
                        mut completion,
                        fallback,
                    } = *outcome;
                    if let Some(fb) = fallback {
                        if !stream.started() {
                            return self
                                .escalate(&request, Escalation::from_fallback(&fb), deadline, sink)
                                .await;
                        }
                        log::warn!("local fallback_after_stream=true reason=\"{fb}\" (answered as generated)");
                    }
                    if let Some(info) = completion.x_moe_edge.as_mut() {
                        info.served_by = self.tier;
                    }
                    stream.finish(&completion).await?;
                    return Ok(completion);
                }
                Event::Failed(e) => match Escalation::from_engine_error(&e) {
                    Some(why) if !stream.started() => {
                        return self.escalate(&request, why, deadline, sink).await
                    }
                    _ => return Err(e),
                },
                Event::Escalate(why) => {
                    if stream.started() {
                        return Err(ApiError::new(ErrorCode::DeadlineExceeded, why.to_string()));
                    }
                    return self.escalate(&request, why, deadline, sink).await;
                }
            }
        }
        Err(ApiError::internal("the engine thread stopped"))
    }

    async fn escalate(
        &self,
        request: &ValidRequest,
        why: Escalation,
        deadline: Option<Instant>,
        sink: Option<ChunkSink>,
    ) -> Result<ChatCompletion, ApiError> {
        let reason = why.to_string();
        match &self.cascade {
            Some(c) if !c.is_empty() => {
                c.escalate_from(self.tier, request, &reason, deadline, sink)
                    .await
            }
            _ => {
                log::info!("local escalate=true hops=0 reason=\"{reason}\"");
                Err(ApiError::no_route(&[format!(
                    "{}: {reason}",
                    self.tier.as_str()
                )]))
            }
        }
    }
}

impl ChatBackend for LocalModel {
    fn model_id(&self) -> String {
        self.model_id.clone()
    }

    fn chat(
        self: Arc<Self>,
        request: ValidRequest,
        sink: Option<ChunkSink>,
    ) -> BoxFuture<'static, Result<ChatCompletion, ApiError>> {
        Box::pin(async move { self.answer(request, sink).await })
    }
}

/// Turns local text into chunks: content is released as soon as it cannot be
/// tool-call markup; the role chunk goes out with the first content, so a
/// request that ends up escalated has sent nothing.
struct Streamer {
    sink: Option<ChunkSink>,
    /// Send no text before the end (a tool call is required).
    hold_text: bool,
    include_usage: bool,
    splitter: StreamSplitter,
    released: String,
    id: String,
    model: String,
    created: u64,
}

impl Streamer {
    fn new(sink: Option<ChunkSink>, include_usage: bool, id: String, model: String) -> Self {
        Streamer {
            sink,
            hold_text: false,
            include_usage,
            splitter: StreamSplitter::new(),
            released: String::new(),
            id,
            model,
            created: crate::openai::unix_now(),
        }
    }

    fn started(&self) -> bool {
        !self.released.is_empty()
    }

    async fn send(&self, chunk: ChatCompletionChunk) -> Result<(), ApiError> {
        if let Some(s) = &self.sink {
            s.send(chunk)
                .await
                .map_err(|_| ApiError::internal("the caller went away"))?;
        }
        Ok(())
    }

    async fn text(&mut self, piece: &str) -> Result<(), ApiError> {
        if self.sink.is_none() || self.hold_text {
            return Ok(());
        }
        let out = self.splitter.push(piece);
        if out.is_empty() {
            return Ok(());
        }
        if !self.started() {
            let role =
                ChatCompletionChunk::new(&self.id, &self.model, self.created, Delta::role(), None);
            self.send(role).await?;
        }
        self.released.push_str(&out);
        self.send(ChatCompletionChunk::new(
            &self.id,
            &self.model,
            self.created,
            Delta::content(out),
            None,
        ))
        .await
    }

    /// The rest of the reply: what content was held back, tool calls, the finish chunk.
    async fn finish(&mut self, c: &ChatCompletion) -> Result<(), ApiError> {
        if self.sink.is_none() {
            return Ok(());
        }
        let mut chunks = c.to_chunks(self.include_usage);
        if self.started() {
            // Role and the content already sent: only the tail is left.
            chunks.retain(|ch| {
                let d = &ch.choices.first().map(|x| &x.delta);
                !(d.is_some_and(|d| d.role.is_some() || d.content.is_some()))
            });
            let full = c
                .message()
                .and_then(|m| m.content.clone())
                .unwrap_or_default();
            if let Some(tail) = full
                .strip_prefix(self.released.as_str())
                .filter(|t| !t.is_empty())
            {
                chunks.insert(
                    0,
                    ChatCompletionChunk::new(
                        &c.id,
                        &c.model,
                        c.created,
                        Delta::content(tail),
                        None,
                    ),
                );
            }
        }
        for ch in chunks {
            self.send(ch).await?;
        }
        Ok(())
    }
}

/// The engine thread: one job at a time, to its end (or its caller's departure).
fn worker(engine: Engine, policy: ChatPolicy, mut jobs: mpsc::Receiver<Job>) {
    let rates = Mutex::new(Rates::default());
    while let Some(job) = jobs.blocking_recv() {
        if job.events.is_closed() {
            continue;
        }
        let events = job.events.clone();
        let deadline = job.deadline;
        let deadline_ms =
            deadline.map(|d| d.saturating_duration_since(Instant::now()).as_millis() as u64);
        let mut cj = match engine.prepare_chat(job.request, job.id, policy) {
            Ok(cj) => cj,
            Err(e) => {
                let _ = events.blocking_send(Event::Failed(e));
                continue;
            }
        };
        let r = *rates.lock().expect("rates");
        let max_new = cj.gen.max_new_tokens();
        if let Some(why) = deadline_miss(
            deadline_ms,
            cj.gen.prompt_tokens(),
            max_new,
            r.prefill_ms_per_token,
            r.decode_ms_per_token,
        ) {
            let _ = events.blocking_send(Event::Escalate(why));
            continue;
        }
        loop {
            match engine.step(&mut cj.gen) {
                Err(e) => {
                    let _ = events.blocking_send(Event::Failed(api_error(&e)));
                    break;
                }
                Ok(Step::Delta(d)) => {
                    if !d.is_empty() && events.blocking_send(Event::Delta(d)).is_err() {
                        log::debug!("local job={} caller_gone=true", cj.id);
                        break;
                    }
                    if events.is_closed() {
                        break;
                    }
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        let n = cj.gen.generated_tokens().len();
                        let _ = events.blocking_send(Event::Escalate(Escalation::Deadline(
                            format!("passed after {n} generated tokens"),
                        )));
                        break;
                    }
                }
                Ok(Step::Done(f)) => {
                    rates.lock().expect("rates").update(
                        f.prompt_tokens,
                        f.timings.prefill_ms,
                        f.completion_tokens,
                        f.timings.decode_ms,
                    );
                    let outcome = engine.chat_outcome(&cj, &f);
                    log::info!(
                        "local job={} prompt_tokens={} completion_tokens={} fallback={} decode_ms={:.1}",
                        cj.id,
                        f.prompt_tokens,
                        f.completion_tokens,
                        outcome.fallback.as_ref().map(|r| r.to_string()).unwrap_or_else(|| "none".into()),
                        f.timings.decode_ms
                    );
                    let _ = events.blocking_send(Event::Finished(Box::new(outcome)));
                    break;
                }
            }
        }
    }
}
