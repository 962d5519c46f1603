//! Many users through the memory registry: a generated population replayed
//! interleaved (round-robin, so every step finds its user evicted: the
//! registry's worst case) through `registry.max_active_users` live
//! memories. Reports messages per second and the process's peak RSS.
//!
//! Run: `cargo bench --bench scale` (1,000 users x 200 messages, hybrid,
//! 100 live memories); `MEMEVAL_SCALE=USERS,MESSAGES,CAP,STRATEGY` changes
//! the population, e.g. `MEMEVAL_SCALE=2000,100,100,window`.

use std::time::Instant;

use memeval::backend::offline;
use memeval::config;
use memeval::runner::{self, Runtime};
use memeval::scenario::{Scenario, generate};

/// Peak resident set size of this process so far, in MiB.
fn peak_rss_mib() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage.ru_maxrss as f64 / 1024.0
}

fn main() {
    let spec = std::env::var("MEMEVAL_SCALE").unwrap_or_else(|_| "1000,200,100,hybrid".into());
    let parts: Vec<&str> = spec.split(',').collect();
    let [users, messages, cap, strategy] = parts[..] else {
        panic!("MEMEVAL_SCALE=USERS,MESSAGES,CAP,STRATEGY, not {spec:?}");
    };
    let (users, messages): (u64, u32) = (
        users.parse().expect("users"),
        messages.parse().expect("messages"),
    );
    let population: Vec<Scenario> = (0..users)
        .map(|u| {
            generate::scenario(&generate::GenerateOptions {
                name: format!("user-{u:05}"),
                messages,
                facts: 8,
                sessions: 3,
                every: 50,
                seed: 42 + u,
            })
            .expect("valid options")
        })
        .collect();
    let before = peak_rss_mib();
    let cfg = config::load(
        None,
        &[
            format!("strategies=[\"{strategy}\"]"),
            format!("registry.max_active_users={cap}"),
        ],
    )
    .expect("config");
    let backend = offline::backend(cfg.offline.embedding_dim as usize);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("memory.sqlite");
    let rt = Runtime {
        jobs: std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        timings: true,
        ..Runtime::plain(&cfg, &backend, &store).expect("runtime")
    };
    let start = Instant::now();
    let jobs = runner::run(&population, &rt).expect("replay");
    let secs = start.elapsed().as_secs_f64();
    let total = users * u64::from(messages);
    let leaked: u64 = jobs
        .iter()
        .flat_map(|j| &j.probes)
        .map(|p| u64::from(p.leaked))
        .sum();
    let evictions: usize = jobs
        .iter()
        .map(|j| j.times.of(memeval::memory::Stage::Evict).len())
        .sum();
    println!(
        "{users} users x {messages} messages, {strategy}, {cap} live memories: {secs:.1} s, \
         {:.0} messages/s, {evictions} evictions, leaked {leaked}, peak RSS {:.0} MiB \
         ({:.0} MiB with the population loaded, before the replay)",
        total as f64 / secs,
        peak_rss_mib(),
        before
    );
}
