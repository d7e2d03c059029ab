//! A persistent pool of compute threads for the CPU kernels: one parallel
//! region at a time, its work cut into chunks that threads claim one by one.
//! Owns thread start-up, waking, sleeping and shutdown; knows nothing of what
//! the chunks compute.
//!
//! Design, for a machine other processes share:
//! - The caller is one of the threads: it claims chunks like the workers, so
//!   a region finishes even when every worker is descheduled.
//! - Chunks are claimed dynamically (no static split): a worker that loses its
//!   core holds back only the chunk it is on, never a fixed share of the work.
//! - Workers spin briefly after a region (the next one of a step comes within
//!   microseconds), then sleep on a condition variable; an idle daemon costs no CPU.
//! - A region started while another runs (two requests stepping at once) runs
//!   on its caller alone instead of waiting.
//!
//! The claim state is one `AtomicU64` (generation, chunk count, next chunk), so
//! a worker late from an old region can never claim a chunk of a new one.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const GEN_BITS: u32 = 24;
const CHUNK_BITS: u32 = 20;
/// Most chunks one region may have.
pub const MAX_CHUNKS: usize = (1 << CHUNK_BITS) - 1;
/// How long an idle worker spins before it sleeps.
const SPIN: Duration = Duration::from_micros(200);

fn pack(gen: u64, chunks: usize, next: usize) -> u64 {
    (gen << (2 * CHUNK_BITS)) | ((chunks as u64) << CHUNK_BITS) | next as u64
}

fn unpack(s: u64) -> (u64, usize, usize) {
    let mask = (1u64 << CHUNK_BITS) - 1;
    (
        s >> (2 * CHUNK_BITS),
        ((s >> CHUNK_BITS) & mask) as usize,
        (s & mask) as usize,
    )
}

type Job = dyn Fn(usize, usize) + Sync;

struct Shared {
    /// (generation, chunks, next chunk to claim).
    state: AtomicU64,
    /// Chunks finished in the current region.
    done: AtomicUsize,
    /// The current region's work, valid while a chunk of it is unfinished.
    /// Points at the caller's `&Job` (a thin pointer to the fat one).
    job: std::sync::atomic::AtomicPtr<()>,
    sleeping: AtomicUsize,
    lock: Mutex<bool>,
    wake: Condvar,
}

// SAFETY: the job pointers are only dereferenced while the region they belong
// to is running, and the closure behind them is `Sync`.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

/// The pool. Dropping it stops and joins the workers.
pub struct Pool {
    shared: Arc<Shared>,
    threads: usize,
    /// Held by the region that uses the workers.
    busy: Mutex<()>,
    workers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("threads", &self.threads)
            .finish()
    }
}

impl Pool {
    /// A pool of `threads` compute threads in all (the caller counts as one).
    pub fn new(threads: usize) -> Pool {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            state: AtomicU64::new(pack(0, 0, 0)),
            done: AtomicUsize::new(0),
            job: std::sync::atomic::AtomicPtr::new(std::ptr::null_mut()),
            sleeping: AtomicUsize::new(0),
            lock: Mutex::new(false),
            wake: Condvar::new(),
        });
        let workers = (1..threads)
            .map(|slot| {
                let s = shared.clone();
                std::thread::Builder::new()
                    .name(format!("moe-edge-compute-{slot}"))
                    .spawn(move || worker(&s, slot))
                    .expect("spawn compute thread")
            })
            .collect();
        Pool {
            shared,
            threads,
            busy: Mutex::new(()),
            workers,
        }
    }

    /// Compute threads, the caller included.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Run `f(chunk, slot)` for every chunk in `0..chunks`, spread over the
    /// threads; `slot` (below `threads()`) names the thread running it, for
    /// per-thread scratch. Returns when every chunk has run.
    pub fn run(&self, chunks: usize, f: &(dyn Fn(usize, usize) + Sync)) {
        if chunks == 0 {
            return;
        }
        let guard = if self.threads > 1 && chunks > 1 {
            self.busy.try_lock().ok()
        } else {
            None
        };
        let Some(_guard) = guard else {
            (0..chunks).for_each(|c| f(c, 0));
            return;
        };
        assert!(chunks <= MAX_CHUNKS, "too many chunks in one region");
        let s = &*self.shared;
        // SAFETY: the pointer is cleared before this function returns, and no
        // worker dereferences it unless it claimed a chunk of this region,
        // which this function waits for.
        let fref: *const &(dyn Fn(usize, usize) + Sync) = &f;
        s.job.store(fref as *mut (), Relaxed);
        s.done.store(0, Relaxed);
        let (gen, _, _) = unpack(s.state.load(Relaxed));
        let gen = (gen + 1) & ((1 << GEN_BITS) - 1);
        s.state.store(pack(gen, chunks, 0), SeqCst);
        if s.sleeping.load(SeqCst) > 0 {
            let _l = s.lock.lock().unwrap_or_else(|p| p.into_inner());
            s.wake.notify_all();
        }
        while let Some(c) = claim(s, gen) {
            f(c, 0);
            s.done.fetch_add(1, Release);
        }
        let mut spins = 0u32;
        while s.done.load(Acquire) < chunks {
            spins += 1;
            if spins < 1 << 12 {
                std::hint::spin_loop();
            } else {
                // A worker holding a chunk lost its core: let it have ours.
                std::thread::yield_now();
            }
        }
        s.job.store(std::ptr::null_mut(), Relaxed);
    }
}

/// Claim the next chunk of region `gen`, if any is left.
fn claim(s: &Shared, gen: u64) -> Option<usize> {
    let mut cur = s.state.load(Acquire);
    loop {
        let (g, chunks, next) = unpack(cur);
        if g != gen || next >= chunks {
            return None;
        }
        match s
            .state
            .compare_exchange_weak(cur, pack(g, chunks, next + 1), AcqRel, Acquire)
        {
            Ok(_) => return Some(next),
            Err(now) => cur = now,
        }
    }
}

fn worker(s: &Shared, slot: usize) {
    let mut seen = unpack(s.state.load(Acquire)).0;
    loop {
        // Wait for a new region: spin, then sleep.
        let start = Instant::now();
        let mut spins = 0u32;
        let gen = loop {
            let (g, _, _) = unpack(s.state.load(Acquire));
            if g != seen {
                break g;
            }
            spins += 1;
            if spins % 64 == 0 && start.elapsed() > SPIN {
                let mut stop = s.lock.lock().unwrap_or_else(|p| p.into_inner());
                s.sleeping.fetch_add(1, SeqCst);
                while !*stop && unpack(s.state.load(SeqCst)).0 == seen {
                    stop = s.wake.wait(stop).unwrap_or_else(|p| p.into_inner());
                }
                s.sleeping.fetch_sub(1, SeqCst);
                if *stop {
                    return;
                }
                spins = 0;
                continue;
            }
            std::hint::spin_loop();
        };
        seen = gen;
        while let Some(c) = claim(s, gen) {
            // SAFETY: we hold an unfinished chunk of region `gen`, so its
            // caller is still inside `Pool::run` and the closure is alive.
            let f: &Job = unsafe { *(s.job.load(Relaxed) as *const &Job) };
            f(c, slot);
            s.done.fetch_add(1, Release);
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        {
            let mut stop = self.shared.lock.lock().unwrap_or_else(|p| p.into_inner());
            *stop = true;
            self.shared.wake.notify_all();
        }
        // A spinning worker sees the flag once it falls asleep (within `SPIN`).
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// A raw pointer that chunks share to write disjoint parts of one buffer.
#[derive(Clone, Copy)]
pub struct SharedMut<T>(*mut T, usize);

// SAFETY: users only write disjoint ranges (checked by `slice`'s bounds).
unsafe impl<T: Send> Send for SharedMut<T> {}
unsafe impl<T: Send> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    pub fn new(s: &mut [T]) -> SharedMut<T> {
        SharedMut(s.as_mut_ptr(), s.len())
    }
    /// # Safety
    /// No two live slices from the same `SharedMut` may overlap.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice(&self, range: std::ops::Range<usize>) -> &mut [T] {
        assert!(range.start <= range.end && range.end <= self.1);
        std::slice::from_raw_parts_mut(self.0.add(range.start), range.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chunk_runs_once() {
        for threads in [1, 2, 3] {
            let pool = Pool::new(threads);
            for chunks in [0, 1, 2, 7, 100] {
                let hits: Vec<AtomicUsize> = (0..chunks).map(|_| AtomicUsize::new(0)).collect();
                pool.run(chunks, &|c, slot| {
                    assert!(slot < threads);
                    hits[c].fetch_add(1, Relaxed);
                });
                assert!(hits.iter().all(|h| h.load(Relaxed) == 1));
            }
        }
    }

    #[test]
    fn many_regions_and_sleeping_workers() {
        let pool = Pool::new(2);
        let total = AtomicUsize::new(0);
        for i in 0..2000 {
            pool.run(5, &|c, _| {
                total.fetch_add(c + 1, Relaxed);
            });
            if i % 500 == 0 {
                // long enough for the worker to fall asleep
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        assert_eq!(total.load(Relaxed), 2000 * 15);
    }

    #[test]
    fn concurrent_callers_run_inline() {
        let pool = Arc::new(Pool::new(2));
        let total = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..3)
            .map(|_| {
                let (p, t) = (pool.clone(), total.clone());
                std::thread::spawn(move || {
                    for _ in 0..300 {
                        p.run(4, &|_, _| {
                            t.fetch_add(1, Relaxed);
                        });
                    }
                })
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(total.load(Relaxed), 3 * 300 * 4);
    }

    #[test]
    fn pack_round_trips() {
        assert_eq!(unpack(pack(5, 1000, 17)), (5, 1000, 17));
    }
}
