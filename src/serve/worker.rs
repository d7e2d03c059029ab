//! The engine thread: one OS thread that owns every running generation and
//! interleaves them at token granularity.
//!
//! Owns: taking requests out of the admission queue (up to `max_concurrent`
//! at a time), starting them (`Engine::prepare_chat`), choosing which one
//! steps next ([`admission::pick_next`]), streaming their text, stopping
//! those past their deadline, answering queued requests that expired or
//! that shutdown leaves behind, and handing requests to the escalation seam.
//! Every request taken out of the queue leaves here with exactly one final
//! reply (or handed to the escalation task, which owes it).
//! Does not own: intake and validation, publishing (it sends [`Outgoing`]
//! into a bounded channel), the cascade (`serve::escalate`).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::admission::{pick_next, Admission, Policy, Running, Waiting};
use super::escalate::EscalateReason;
use super::reply::{Reply, ReplyTo, StreamState};
use super::status::Load;
use crate::chat::{api_error, ChatJob, ChatPolicy};
use crate::engine::{Engine, EngineError, Step};
use crate::experts::ExpertError;
use crate::openai::{ApiError, ChatCompletion, ErrorCode, ValidRequest};

/// A request accepted into the queue.
#[derive(Debug)]
pub(crate) struct Pending {
    pub request: ValidRequest,
    pub reply: ReplyTo,
    /// The `chatcmpl-...` id of the reply.
    pub id: String,
}

/// One message for the publisher.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub to: ReplyTo,
    pub reply: Reply,
}

/// A request handed to the cascade seam.
pub(crate) struct Escalation {
    pub request: ValidRequest,
    pub reason: EscalateReason,
    pub device_reply: Option<ChatCompletion>,
    pub to: ReplyTo,
    pub id: String,
    /// For a streamed request: what was sent already.
    pub stream: Option<StreamState>,
    pub deadline: Option<Instant>,
}

/// State shared by intake (tokio) and the engine thread.
pub(crate) struct Shared {
    pub queue: Mutex<Queue>,
    pub wake: Condvar,
    pub load: watch::Sender<Load>,
}

pub(crate) struct Queue {
    pub admission: Admission<Pending>,
    /// Set at shutdown: running generations still going then are failed.
    pub drain_deadline: Option<Instant>,
    pub active: usize,
}

impl Shared {
    pub fn new(admission: Admission<Pending>) -> Shared {
        Shared {
            queue: Mutex::new(Queue {
                admission,
                drain_deadline: None,
                active: 0,
            }),
            wake: Condvar::new(),
            load: watch::channel(Load {
                queue_depth: 0,
                active: 0,
                accepting: true,
            })
            .0,
        }
    }

    /// Publishes the queue's figures to the status task (if they changed).
    pub fn update_load(&self, q: &Queue) {
        let new = Load {
            queue_depth: q.admission.len(),
            active: q.active,
            accepting: !q.admission.is_draining(),
        };
        self.load.send_if_modified(|l| {
            let changed = *l != new;
            *l = new;
            changed
        });
    }

    /// Stop accepting; running requests get until `grace` from now.
    pub fn start_draining(&self, grace: Duration) {
        let mut q = self.queue.lock().unwrap();
        q.admission.start_draining();
        q.drain_deadline = Some(Instant::now() + grace);
        self.update_load(&q);
        drop(q);
        self.wake.notify_all();
    }
}

struct Active {
    job: ChatJob,
    to: ReplyTo,
    stream: Option<StreamState>,
    deadline: Option<Instant>,
    deadline_ms: Option<u64>,
    last_step: Instant,
    /// Bytes of model text received as deltas (to find the unsent tail).
    raw_len: usize,
}

impl Active {
    /// Hands this running request to the cascade.
    fn escalation(
        self,
        reason: EscalateReason,
        device_reply: Option<ChatCompletion>,
    ) -> Escalation {
        Escalation {
            id: self.job.id,
            request: self.job.request,
            reason,
            device_reply,
            to: self.to,
            stream: self.stream,
            deadline: self.deadline,
        }
    }
}

pub(crate) struct Worker {
    pub engine: Arc<Engine>,
    pub shared: Arc<Shared>,
    pub out: mpsc::Sender<Outgoing>,
    pub escalations: Option<mpsc::Sender<Escalation>>,
    pub policy: Policy,
    pub max_concurrent: usize,
    /// The board's token cap and confidence gate.
    pub chat: ChatPolicy,
    pub device: String,
}

/// Longest the engine thread sleeps with nothing to do (it also wakes on
/// every push and at the next queued deadline).
const IDLE_WAIT: Duration = Duration::from_millis(200);

impl Worker {
    fn send(&self, to: ReplyTo, reply: Reply) {
        // The publisher outlives the engine thread; a closed channel means
        // the runtime is gone and nobody can be answered any more.
        if self.out.blocking_send(Outgoing { to, reply }).is_err() {
            log::error!("serve publisher gone, reply dropped device={}", self.device);
        }
    }

    fn fail(&self, to: ReplyTo, id: &str, e: ApiError) {
        log::warn!(
            "serve request failed device={} id={id} code={} message={:?}",
            self.device,
            e.code,
            crate::transport::truncate_text(&e.message, 200)
        );
        self.send(to, Reply::Error(e));
    }

    /// Runs until shutdown has drained everything.
    pub fn run(self) {
        let mut active: Vec<Active> = Vec::new();
        log::info!(
            "serve engine thread started device={} max_concurrent={}",
            self.device,
            self.max_concurrent
        );
        loop {
            let now = Instant::now();
            let (expired, leftover, starting, drain_deadline) = {
                let mut q = self.shared.queue.lock().unwrap();
                let expired = q.admission.take_expired(now);
                let leftover = if q.admission.is_draining() {
                    q.admission.take_all()
                } else {
                    Vec::new()
                };
                let mut starting = Vec::new();
                while active.len() + starting.len() < self.max_concurrent {
                    match q.admission.pop(now) {
                        Some(w) => starting.push(w),
                        None => break,
                    }
                }
                if active.is_empty()
                    && starting.is_empty()
                    && expired.is_empty()
                    && leftover.is_empty()
                {
                    q.active = 0;
                    self.shared.update_load(&q);
                    if q.admission.is_draining() {
                        break;
                    }
                    let wait = q
                        .admission
                        .next_deadline()
                        .map(|d| d.saturating_duration_since(now))
                        .unwrap_or(IDLE_WAIT)
                        .min(IDLE_WAIT);
                    let _unused = self.shared.wake.wait_timeout(q, wait).unwrap();
                    continue;
                }
                q.active = active.len() + starting.len();
                self.shared.update_load(&q);
                (expired, leftover, starting, q.drain_deadline)
            };
            for w in expired {
                let waited = now.saturating_duration_since(w.arrived).as_millis();
                let ms = w.item.request.deadline_ms.unwrap_or(0);
                self.fail(
                    w.item.reply,
                    &w.item.id,
                    ApiError::new(
                        ErrorCode::DeadlineExceeded,
                        format!("deadline of {ms} ms passed while queued ({waited} ms); not run"),
                    )
                    .with_param("x-deadline-ms"),
                );
            }
            for w in leftover {
                self.fail(
                    w.item.reply,
                    &w.item.id,
                    ApiError::new(
                        ErrorCode::ShuttingDown,
                        "the daemon is shutting down; the request was queued and not run",
                    ),
                );
            }
            for w in starting {
                self.start(w, &mut active);
            }
            self.enforce_deadlines(&mut active, drain_deadline);
            if active.is_empty() {
                continue;
            }
            let running: Vec<Running> = active
                .iter()
                .map(|a| Running {
                    priority: a.job.request.priority,
                    last_step: a.last_step,
                })
                .collect();
            if let Some(i) = pick_next(&running, Instant::now(), &self.policy) {
                self.step(i, &mut active);
            }
        }
        log::info!("serve engine thread stopped device={}", self.device);
    }

    fn start(&self, w: Waiting<Pending>, active: &mut Vec<Active>) {
        let Waiting {
            item,
            arrived,
            deadline,
            ..
        } = w;
        let Pending { request, reply, id } = item;
        if request.non_text {
            match &self.escalations {
                Some(tx) => self.escalate(
                    tx,
                    Escalation {
                        request,
                        reason: EscalateReason::NonText,
                        device_reply: None,
                        to: reply,
                        id,
                        stream: None,
                        deadline,
                    },
                ),
                None => self.fail(reply, &id, no_route(&EscalateReason::NonText)),
            }
            return;
        }
        let stream = request.stream;
        let include_usage = request.include_usage;
        let deadline_ms = request.deadline_ms;
        let prepared = catch_unwind(AssertUnwindSafe(|| {
            self.engine.prepare_chat(request, id.clone(), self.chat)
        }))
        .unwrap_or_else(|_| {
            Err(ApiError::internal(
                "the engine panicked preparing the request",
            ))
        });
        match prepared {
            Err(e) => self.fail(reply, &id, e),
            Ok(mut job) => {
                job.accepted = arrived;
                let stream = stream.then(|| {
                    StreamState::new(&job.id, self.engine.model_id(), job.created, include_usage)
                });
                log::debug!(
                    "serve started device={} id={} priority={} prompt_tokens={} queued_ms={:.1}",
                    self.device,
                    job.id,
                    job.request.priority.0,
                    job.gen.prompt_tokens(),
                    (job.started - job.accepted).as_secs_f64() * 1e3
                );
                active.push(Active {
                    job,
                    to: reply,
                    stream,
                    deadline,
                    deadline_ms,
                    last_step: Instant::now(),
                    raw_len: 0,
                });
            }
        }
    }

    fn enforce_deadlines(&self, active: &mut Vec<Active>, drain_deadline: Option<Instant>) {
        let now = Instant::now();
        let mut i = 0;
        while i < active.len() {
            let a = &active[i];
            let err = if a.deadline.is_some_and(|d| d <= now) {
                Some(
                    ApiError::new(
                        ErrorCode::DeadlineExceeded,
                        format!(
                            "deadline of {} ms passed after {} generated tokens; stopped",
                            a.deadline_ms.unwrap_or(0),
                            a.job.gen.generated_tokens().len()
                        ),
                    )
                    .with_param("x-deadline-ms"),
                )
            } else if drain_deadline.is_some_and(|d| d <= now) {
                Some(ApiError::new(
                    ErrorCode::ShuttingDown,
                    "the daemon is shutting down and the request did not finish in time",
                ))
            } else {
                None
            };
            match err {
                Some(e) => {
                    let a = active.swap_remove(i);
                    self.fail(a.to, &a.job.id, e);
                }
                None => i += 1,
            }
        }
    }

    fn step(&self, i: usize, active: &mut Vec<Active>) {
        let a = &mut active[i];
        a.last_step = Instant::now();
        let stepped = catch_unwind(AssertUnwindSafe(|| self.engine.step(&mut a.job.gen)))
            .unwrap_or_else(|_| Err(EngineError::Invalid("the engine panicked".into())));
        match stepped {
            Ok(Step::Delta(d)) => {
                a.raw_len += d.len();
                if let Some(s) = &mut a.stream {
                    let safe = a.job.splitter.push(&d);
                    if !safe.is_empty() || !s.started() {
                        for c in s.content(&safe) {
                            self.send(a.to.clone(), Reply::Chunk(Box::new(c)));
                        }
                    }
                }
            }
            Ok(Step::Done(f)) => {
                let mut a = active.swap_remove(i);
                if let Some(s) = &mut a.stream {
                    let mut safe = a.job.splitter.push(f.text.get(a.raw_len..).unwrap_or(""));
                    safe.push_str(&a.job.splitter.finish());
                    if !safe.is_empty() {
                        for c in s.content(&safe) {
                            self.send(a.to.clone(), Reply::Chunk(Box::new(c)));
                        }
                    }
                }
                let outcome = self.engine.chat_outcome(&a.job, &f);
                let completion = outcome.completion;
                match (outcome.fallback, &self.escalations) {
                    (Some(reason), Some(tx)) => {
                        let e = a.escalation(EscalateReason::Fallback(reason), Some(completion));
                        self.escalate(tx, e);
                    }
                    (Some(reason), None) if !reason.has_answer() => {
                        // The device has nothing to say and nothing is above
                        // it: say so, never an empty "stop".
                        let reason = EscalateReason::Fallback(reason);
                        self.fail(a.to, &a.job.id, no_route(&reason));
                    }
                    (fallback, _) => {
                        // A valid call the device is unsure of, with no hop
                        // above it: the call goes out, marked.
                        if let Some(r) = &fallback {
                            log::info!(
                                "serve unsure call answered by device device={} id={} reason={r}",
                                self.device,
                                a.job.id
                            );
                        }
                        log::debug!(
                            "serve done device={} id={} completion_tokens={} total_ms={:.1}",
                            self.device,
                            a.job.id,
                            f.completion_tokens,
                            a.job.accepted.elapsed().as_secs_f64() * 1e3
                        );
                        self.finish(a.to, a.stream, completion);
                    }
                }
            }
            Err(e) => {
                let a = active.swap_remove(i);
                match (&e, &self.escalations) {
                    (EngineError::Experts(ExpertError::Unreachable { .. }), Some(tx)) => {
                        let why = EscalateReason::ExpertsUnreachable(e.to_string());
                        self.escalate(tx, a.escalation(why, None));
                    }
                    _ => {
                        let mut err = api_error(&e);
                        if err.code == ErrorCode::NoRoute {
                            err = ApiError::no_route(&[format!("device: {e}")]);
                        }
                        log::error!(
                            "serve engine error device={} id={} error={e}",
                            self.device,
                            a.job.id
                        );
                        self.fail(a.to, &a.job.id, err);
                    }
                }
            }
        }
    }

    /// The final message(s) of a finished request.
    fn finish(&self, to: ReplyTo, stream: Option<StreamState>, completion: ChatCompletion) {
        match stream {
            None => self.send(to, Reply::Completion(Box::new(completion))),
            Some(mut s) => {
                for c in s.finish(&completion) {
                    self.send(to.clone(), Reply::Chunk(Box::new(c)));
                }
                self.send(to, s.done());
            }
        }
    }

    fn escalate(&self, tx: &mpsc::Sender<Escalation>, e: Escalation) {
        log::info!(
            "serve escalating device={} id={} reason={:?}",
            self.device,
            e.id,
            e.reason.to_string()
        );
        if let Err(mpsc::error::SendError(e)) = tx.blocking_send(e) {
            self.fail(
                e.to,
                &e.id,
                ApiError::no_route(&["escalation: the cascade task has stopped"]),
            );
        }
    }
}

/// Sends a finished reply (from the device or the cascade) as one message
/// or, for a stream, as its remaining chunks and the terminator.
pub(crate) fn final_messages(
    stream: Option<StreamState>,
    completion: ChatCompletion,
) -> Vec<Reply> {
    match stream {
        None => vec![Reply::Completion(Box::new(completion))],
        Some(mut s) => {
            let mut out: Vec<Reply> = s
                .finish(&completion)
                .into_iter()
                .map(|c| Reply::Chunk(Box::new(c)))
                .collect();
            out.push(s.done());
            out
        }
    }
}

/// The error for a request the device should not answer when no host or
/// cloud is configured (with one configured, the cascade answers instead).
fn no_route(reason: &EscalateReason) -> ApiError {
    let mut e = ApiError::no_route(&[format!("device: {reason}")]);
    e.message.push_str(
        ". No host or cloud is configured: set [cascade] host_url and/or cloud_url \
         in the board file (boards/NAME.toml) to hand such requests up",
    );
    e
}
