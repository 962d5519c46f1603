//! Work spread over threads: the replays of a run, the charts of its
//! scenarios.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Runs `items` through `f` on `jobs` threads, in order of `cost` (largest
/// first, so the long jobs do not finish last), returning results by index.
/// Stops early on the first error.
pub fn par_map<T: Sync, R: Send, E: Send>(
    items: &[T],
    jobs: usize,
    cost: impl Fn(&T) -> u64,
    f: impl Fn(&T) -> Result<R, E> + Sync,
) -> Result<Vec<R>, E> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(cost(&items[i])), i));
    let workers = jobs.clamp(1, items.len().max(1));
    if workers == 1 {
        // On this thread: no thread to start, and the tokenizer's regex
        // keeps the fast path of the thread that owns its scratch space (a
        // new thread per replay would take its slow, locked one).
        let mut out: Vec<Option<R>> = items.iter().map(|_| None).collect();
        for i in order {
            out[i] = Some(f(&items[i])?);
        }
        return Ok(out
            .into_iter()
            .map(|r| r.expect("every item ran"))
            .collect());
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let slots: Vec<Mutex<Option<Result<R, E>>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = order.get(k) else { break };
                    let r = f(&items[i]);
                    if r.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    *slots[i].lock().expect("no panics hold this lock") = Some(r);
                }
            });
        }
    });
    let mut out = Vec::with_capacity(items.len());
    let mut first_err = None;
    for slot in slots {
        match slot.into_inner().expect("lock") {
            Some(Ok(r)) => out.push(r),
            Some(Err(e)) => {
                first_err.get_or_insert(e);
            }
            None => {}
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}
