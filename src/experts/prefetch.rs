//! Experts read in ahead of use on I/O threads. The model names the experts
//! it expects the next layer to need; each is queued (bounded: a full queue
//! drops the request and counts it), and an I/O thread checks it against
//! its manifest hash on first use or else has the kernel read and map it
//! (`MADV_POPULATE_READ`). A guess that is not used is given up (`forget`)
//! and its mapping dropped by the model, so at most the guesses of the
//! layers in flight are held beyond the residency budget. The per-expert state says whether a later use found it ready,
//! still on its way (late) or not asked for. Knows nothing of routing or
//! budgets; the residency cache decides what may stay.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::store::ExpertStore;

const IDLE: u8 = 0;
const QUEUED: u8 = 1;
const READY: u8 = 2;
/// Given up while queued: the I/O thread drops what it read.
const DROPPED: u8 = 3;

/// What a use of an expert found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Not brought in by a prediction (resident before, or not predicted).
    NotPrefetched,
    /// Brought in ahead and ready.
    Ready,
    /// Predicted and queued, but not yet read in: the layer waits for it.
    Late,
}

#[derive(Debug, Default)]
struct Counters {
    requested: AtomicU64,
    dropped: AtomicU64,
    loaded: AtomicU64,
    bytes: AtomicU64,
    ready: AtomicU64,
    late: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PrefetchStats {
    /// Experts queued for page-in.
    pub requested: u64,
    /// Requests dropped because the queue was full.
    pub dropped: u64,
    /// Page-ins finished by the I/O threads.
    pub loaded: u64,
    pub bytes: u64,
    /// Uses that found a prefetched expert ready.
    pub ready: u64,
    /// Uses that found it still on its way.
    pub late: u64,
}

pub struct Prefetcher {
    tx: Option<SyncSender<(u16, u16)>>,
    state: Arc<Vec<AtomicU8>>,
    experts: usize,
    counters: Arc<Counters>,
    threads: Vec<JoinHandle<()>>,
    /// While true the I/O threads take requests and read nothing: every
    /// read ahead stays on its way until it is used or given up.
    held: Arc<AtomicBool>,
}

impl std::fmt::Debug for Prefetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefetcher")
            .field("threads", &self.threads.len())
            .finish()
    }
}

impl Prefetcher {
    /// `threads` I/O threads over a queue of `queue` experts.
    pub fn new(
        store: Arc<ExpertStore>,
        layers: usize,
        experts: usize,
        threads: usize,
        queue: usize,
    ) -> Prefetcher {
        let (tx, rx) = sync_channel::<(u16, u16)>(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let state: Arc<Vec<AtomicU8>> =
            Arc::new((0..layers * experts).map(|_| AtomicU8::new(IDLE)).collect());
        let counters = Arc::new(Counters::default());
        let held = Arc::new(AtomicBool::new(false));
        let threads = (0..threads.max(1))
            .map(|i| {
                let (rx, store, state, counters, held) = (
                    rx.clone(),
                    store.clone(),
                    state.clone(),
                    counters.clone(),
                    held.clone(),
                );
                std::thread::Builder::new()
                    .name(format!("moe-edge-io-{i}"))
                    .spawn(move || worker(&rx, &store, &state, experts, &counters, &held))
                    .expect("spawn an I/O thread")
            })
            .collect();
        Prefetcher {
            tx: Some(tx),
            state,
            experts,
            counters,
            threads,
            held,
        }
    }

    /// Holds the I/O threads (true) or lets them go on (false): while held
    /// they read nothing, so every read ahead requested meanwhile stays on
    /// its way until used or given up, as behind a disk too slow for the
    /// model (tests of the late-read policy).
    pub fn hold(&self, on: bool) {
        self.held.store(on, Ordering::Release);
    }

    /// Whether the expert's read ahead is queued and not finished.
    pub fn is_late(&self, l: usize, e: usize) -> bool {
        self.slot(l, e).load(Ordering::Acquire) == QUEUED
    }

    fn slot(&self, l: usize, e: usize) -> &AtomicU8 {
        &self.state[l * self.experts + e]
    }

    /// Queue a page-in; false when it was already queued or the queue is full.
    pub fn request(&self, l: usize, e: usize) -> bool {
        let s = self.slot(l, e);
        // Queued, or read in and held until used or given up: nothing to do.
        let prev = s.load(Ordering::Acquire);
        if matches!(prev, QUEUED | READY)
            || s.compare_exchange(prev, QUEUED, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return false;
        }
        let Some(tx) = &self.tx else { return false };
        match tx.try_send((l as u16, e as u16)) {
            Ok(()) => {
                self.counters.requested.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                s.store(IDLE, Ordering::Release);
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// A use of the expert: what it found (and it is no longer "prefetched").
    pub fn used(&self, l: usize, e: usize) -> Found {
        match self.slot(l, e).swap(IDLE, Ordering::AcqRel) {
            READY => {
                self.counters.ready.fetch_add(1, Ordering::Relaxed);
                Found::Ready
            }
            QUEUED => {
                self.counters.late.fetch_add(1, Ordering::Relaxed);
                Found::Late
            }
            _ => Found::NotPrefetched,
        }
    }

    /// Whether a read of the expert is queued or held (tests).
    pub fn pending(&self, l: usize, e: usize) -> bool {
        matches!(self.slot(l, e).load(Ordering::Acquire), QUEUED | READY)
    }

    /// A guess that was not used: true when it had been read in (the
    /// caller drops the mapping); a read still on its way is dropped by the
    /// I/O thread when it finishes.
    pub fn forget(&self, l: usize, e: usize) -> bool {
        let s = self.slot(l, e);
        match s.load(Ordering::Acquire) {
            READY => s
                .compare_exchange(READY, IDLE, Ordering::AcqRel, Ordering::Acquire)
                .is_ok(),
            QUEUED => {
                let _ = s.compare_exchange(QUEUED, DROPPED, Ordering::AcqRel, Ordering::Acquire);
                false
            }
            _ => false,
        }
    }

    pub fn stats(&self) -> PrefetchStats {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PrefetchStats {
            requested: g(&c.requested),
            dropped: g(&c.dropped),
            loaded: g(&c.loaded),
            bytes: g(&c.bytes),
            ready: g(&c.ready),
            late: g(&c.late),
        }
    }
}

fn worker(
    rx: &Mutex<Receiver<(u16, u16)>>,
    store: &ExpertStore,
    state: &[AtomicU8],
    experts: usize,
    counters: &Counters,
    held: &AtomicBool,
) {
    loop {
        let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok((l, e)) = next else { return };
        let (l, e) = (l as usize, e as usize);
        let slot = &state[l * experts + e];
        if held.load(Ordering::Acquire) {
            continue;
        }
        if slot.load(Ordering::Acquire) != QUEUED {
            // Used or given up meanwhile.
            let _ = slot.compare_exchange(DROPPED, IDLE, Ordering::AcqRel, Ordering::Acquire);
            continue;
        }
        // The first use hashes every byte (which reads it in and maps it);
        // later ones only read and map it. A corrupted expert is left for
        // the use to report. The mapping stays (active pages the kernel will
        // not reclaim first) until the expert is used or given up.
        if store.is_checked(l, e) {
            store.populate(l, e);
        } else if store.checked(l, e).is_err() {
            let _ = slot.compare_exchange(QUEUED, IDLE, Ordering::AcqRel, Ordering::Acquire);
            continue;
        }
        counters.loaded.fetch_add(1, Ordering::Relaxed);
        counters
            .bytes
            .fetch_add(store.expert_bytes() as u64, Ordering::Relaxed);
        if slot
            .compare_exchange(QUEUED, READY, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
            && slot
                .compare_exchange(DROPPED, IDLE, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            store.release(l, e);
        }
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.tx = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
