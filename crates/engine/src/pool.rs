//! A persistent thread pool of exactly the requested number of workers (the caller is worker 0).
//!
//! Why not rayon: a forward pass issues a handful of parallel jobs per layer, each only tens of
//! microseconds long in decode. Waking sleeping threads through the OS for every one of them costs
//! more than the job, so workers spin on an epoch counter between jobs (llama.cpp and
//! ik_llama.cpp do the same, see ../shared/PERF-NOTES.md) and only park after a long idle spin,
//! so an idle server does not burn its cores.

use std::cell::UnsafeCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle, Thread};
use std::time::Duration;

type Job = dyn Fn(usize, usize) + Sync;

struct Shared {
    /// The current job, valid while `epoch` is odd-numbered relative to a worker's last seen value.
    job: UnsafeCell<*const Job>,
    epoch: AtomicUsize,
    done: AtomicUsize,
    panicked: AtomicBool,
    stop: AtomicBool,
    sleepers: AtomicUsize,
}

// SAFETY: `job` is written only by the owner thread in `run` before the epoch is published
// (Release) and read by workers after they observe the new epoch (Acquire); `run` does not
// return (so the closure stays alive) until every worker has reported done.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<(JoinHandle<()>, Thread)>,
    n_threads: usize,
}

/// Busy-wait iterations before a waiting thread starts yielding its core: enough to cover the
/// gap between jobs of one forward pass (microseconds) without burning a timeslice when the
/// machine is oversubscribed (a spinning waiter would then delay the very thread it waits for).
const SPINS_BEFORE_YIELD: u32 = 20_000;
/// Yields before a worker parks (about a millisecond or more): covers the gap between decode
/// steps; after it an idle pool sleeps.
const YIELDS_BEFORE_PARK: u32 = 2_000;

impl Pool {
    pub fn new(n_threads: usize) -> Self {
        let n_threads = n_threads.max(1);
        let shared = Arc::new(Shared {
            job: UnsafeCell::new(std::ptr::null::<fn(usize, usize)>() as *const Job),
            epoch: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
        });
        let workers = (1..n_threads)
            .map(|id| {
                let s = shared.clone();
                let h = thread::Builder::new()
                    .name(format!("hearth-worker-{id}"))
                    .spawn(move || worker(s, id, n_threads))
                    .expect("spawn worker thread");
                let t = h.thread().clone();
                (h, t)
            })
            .collect();
        Pool {
            shared,
            workers,
            n_threads,
        }
    }

    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// Run `f(thread_index, n_threads)` on every thread of the pool and return when all are done.
    pub fn run<F: Fn(usize, usize) + Sync>(&self, f: F) {
        if self.n_threads == 1 {
            f(0, 1);
            return;
        }
        let s = &*self.shared;
        let job: &(dyn Fn(usize, usize) + Sync + '_) = &f;
        // SAFETY: erase the lifetime; we wait for all workers below before `f` is dropped.
        let job: *const Job = unsafe {
            std::mem::transmute::<&(dyn Fn(usize, usize) + Sync + '_), &'static Job>(job)
        };
        unsafe { *s.job.get() = job };
        s.done.store(0, Ordering::Relaxed);
        s.epoch.fetch_add(1, Ordering::Release);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            for (_, t) in &self.workers {
                t.unpark();
            }
        }
        let r = catch_unwind(AssertUnwindSafe(|| f(0, self.n_threads)));
        let need = self.n_threads - 1;
        let mut spins = 0u32;
        while s.done.load(Ordering::Acquire) < need {
            spins += 1;
            if spins < SPINS_BEFORE_YIELD {
                std::hint::spin_loop();
            } else {
                thread::yield_now();
            }
        }
        if let Err(p) = r {
            std::panic::resume_unwind(p);
        }
        if s.panicked.swap(false, Ordering::Relaxed) {
            panic!("a worker thread panicked inside a parallel job");
        }
    }

    /// Split `0..n` into contiguous chunks, one per thread, boundaries multiples of `align`.
    pub fn chunk(n: usize, align: usize, ith: usize, nth: usize) -> std::ops::Range<usize> {
        let align = align.max(1);
        let units = n.div_ceil(align);
        let per = units / nth;
        let extra = units % nth;
        let start = ith * per + ith.min(extra);
        let len = per + (ith < extra) as usize;
        (start * align).min(n)..((start + len) * align).min(n)
    }
}

fn worker(s: Arc<Shared>, id: usize, n: usize) {
    let mut seen = 0usize;
    loop {
        let mut spins = 0u32;
        loop {
            let e = s.epoch.load(Ordering::Acquire);
            if e != seen {
                seen = e;
                break;
            }
            if s.stop.load(Ordering::Relaxed) {
                return;
            }
            spins += 1;
            if spins < SPINS_BEFORE_YIELD {
                std::hint::spin_loop();
            } else if spins < SPINS_BEFORE_YIELD + YIELDS_BEFORE_PARK {
                thread::yield_now();
            } else {
                s.sleepers.fetch_add(1, Ordering::SeqCst);
                if s.epoch.load(Ordering::SeqCst) == seen && !s.stop.load(Ordering::SeqCst) {
                    thread::park_timeout(Duration::from_millis(5));
                }
                s.sleepers.fetch_sub(1, Ordering::SeqCst);
            }
        }
        if s.stop.load(Ordering::Relaxed) {
            return;
        }
        // SAFETY: published before the epoch bump; alive until we report done.
        let job = unsafe { &**s.job.get() };
        if catch_unwind(AssertUnwindSafe(|| job(id, n))).is_err() {
            s.panicked.store(true, Ordering::Relaxed);
        }
        s.done.fetch_add(1, Ordering::Release);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for (h, t) in self.workers.drain(..) {
            t.unpark();
            let _ = h.join();
        }
    }
}

/// A raw pointer that may be shared with pool workers writing disjoint parts of one buffer.
#[derive(Clone, Copy)]
pub struct SyncPtr<T>(pub *mut T);
unsafe impl<T> Send for SyncPtr<T> {}
unsafe impl<T> Sync for SyncPtr<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_thread_runs_each_job() {
        let pool = Pool::new(3);
        for round in 0..1000 {
            let hits = AtomicUsize::new(0);
            pool.run(|i, n| {
                assert_eq!(n, 3);
                hits.fetch_add(1 << (i * 8), Ordering::Relaxed);
            });
            assert_eq!(hits.load(Ordering::Relaxed), 0x010101, "round {round}");
        }
    }

    #[test]
    fn chunks_cover_exactly() {
        for n in 0..100 {
            for nth in 1..5 {
                for align in [1, 4, 8] {
                    let mut next = 0;
                    for i in 0..nth {
                        let r = Pool::chunk(n, align, i, nth);
                        assert_eq!(r.start, next);
                        next = r.end;
                    }
                    assert_eq!(next, n);
                }
            }
        }
    }

    #[test]
    fn survives_idle_parking() {
        let pool = Pool::new(2);
        std::thread::sleep(Duration::from_millis(50));
        let c = AtomicUsize::new(0);
        pool.run(|_, _| {
            c.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(c.load(Ordering::Relaxed), 2);
    }
}
