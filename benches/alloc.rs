//! Allocations per message, by strategy, at 1,000 and 10,000 messages: a
//! replay whose allocations per message grow with the conversation holds
//! work (or memory) that grows with the history. Counted by a global
//! allocator, so the figures are exact and do not depend on the machine's
//! load.
//!
//! Run: `cargo bench --bench alloc` (a table; not criterion: counts, not times).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use memeval::backend::offline;
use memeval::config;
use memeval::runner::{self, Runtime};
use memeval::scenario::{Scenario, generate};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
static LIVE: AtomicU64 = AtomicU64::new(0);
static PEAK: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator, counting on the way.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        let live = LIVE.fetch_add(layout.size() as u64, Ordering::Relaxed) + layout.size() as u64;
        PEAK.fetch_max(live, Ordering::Relaxed);
        // SAFETY: same layout, handed to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: allocated by `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn scenario(messages: u32) -> Scenario {
    generate::scenario(&generate::GenerateOptions {
        name: format!("alloc-{messages}"),
        messages,
        facts: 8,
        sessions: 1,
        every: 250,
        seed: 1,
        tools: false,
    })
    .expect("valid options")
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    println!(
        "{:<8} {:>9} {:>14} {:>14} {:>10} {:>10}",
        "strategy", "messages", "allocs/msg", "bytes/msg", "growth", "peak MiB"
    );
    let lengths = [1_000u32, 10_000];
    let scenarios: Vec<Scenario> = lengths.iter().map(|&n| scenario(n)).collect();
    for strategy in ["window", "summary", "vector", "hybrid", "buffer"] {
        let cfg = config::load(None, &[format!("strategies=[\"{strategy}\"]")]).expect("config");
        let backend = offline::backend(cfg.offline.embedding_dim as usize);
        let mut first = 0.0;
        for (s, &n) in scenarios.iter().zip(&lengths) {
            let store = dir.path().join(format!("{strategy}-{n}.sqlite"));
            let rt = Runtime::plain(&cfg, &backend, &store).expect("runtime");
            let (a0, b0) = (ALLOCS.load(Ordering::SeqCst), BYTES.load(Ordering::SeqCst));
            PEAK.store(LIVE.load(Ordering::SeqCst), Ordering::SeqCst);
            let base = LIVE.load(Ordering::SeqCst);
            let out = runner::run(std::slice::from_ref(s), &rt).expect("replay");
            let peak = PEAK.load(Ordering::SeqCst) - base;
            drop(out);
            let allocs = (ALLOCS.load(Ordering::SeqCst) - a0) as f64 / f64::from(n);
            let bytes = (BYTES.load(Ordering::SeqCst) - b0) as f64 / f64::from(n);
            if n == lengths[0] {
                first = allocs;
            }
            println!(
                "{strategy:<8} {n:>9} {allocs:>14.1} {bytes:>14.0} {:>10} {:>10.1}",
                if n == lengths[0] {
                    "-".to_string()
                } else {
                    format!("{:.2}x", allocs / first)
                },
                peak as f64 / (1 << 20) as f64
            );
        }
    }
}
