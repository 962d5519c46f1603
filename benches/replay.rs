//! Full offline replay, per strategy, at two conversation lengths: the time
//! per message must not grow with the length of the conversation for the
//! bounded strategies (window, summary, vector, hybrid). `buffer` is left
//! out: its context is the whole history by definition.
//!
//! A second group replays the hybrid strategy (persistence included) over
//! 100, 2,000 and 10,000 exchanges of one session without probes, as the
//! reference design (benches/reference/run.sh) runs: the per-exchange
//! comparison in the README.
//!
//! Run: `cargo bench --bench replay`; criterion prints time per replay and
//! messages (or exchanges) per second ("thrpt").

// The memeval binary's allocator, so that these figures are the binary's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use memeval::backend::offline;
use memeval::config;
use memeval::runner::{self, Runtime};
use memeval::scenario::{Scenario, Step, generate};

fn scenario(messages: u32, sessions: u32, every: u32) -> Scenario {
    generate::scenario(&generate::GenerateOptions {
        name: format!("bench-{messages}"),
        messages,
        facts: 8,
        sessions,
        every,
        seed: 1,
        tools: false,
    })
    .expect("valid options")
}

fn replay_one(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    dir: &Path,
    s: &[Scenario],
    strategy: &str,
    n: u32,
) {
    let cfg = config::load(None, &[format!("strategies=[\"{strategy}\"]")]).expect("config");
    let backend = offline::backend(cfg.offline.embedding_dim as usize);
    let mut round = 0;
    group.bench_with_input(BenchmarkId::new(strategy, n), &n, |b, _| {
        b.iter(|| {
            // A fresh store per replay, as in a real run.
            round += 1;
            let store = dir.join(format!("{strategy}-{n}-{round}.sqlite"));
            let rt = Runtime::plain(&cfg, &backend, &store).expect("runtime");
            let out = runner::run(s, &rt).expect("replay");
            let _ = std::fs::remove_file(&store);
            out
        });
    });
}

fn replay(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut group = c.benchmark_group("replay");
    group.sample_size(10);
    for n in [1_000u32, 10_000] {
        let s = [scenario(n, 3, 100)];
        group.throughput(Throughput::Elements(u64::from(n)));
        for strategy in ["window", "summary", "vector", "hybrid"] {
            replay_one(&mut group, dir.path(), &s, strategy, n);
        }
    }
    group.finish();
    let mut group = c.benchmark_group("exchanges");
    group.sample_size(10);
    for exchanges in [100u32, 2_000, 10_000] {
        // As the reference design runs it: the chatbot's work (a context
        // built for every call, summaries, retrieval, persistence) and no
        // probes, which the reference does not have (asking and answering
        // them is measurement, not memory).
        let mut s = scenario(exchanges * 2, 1, exchanges * 2);
        s.probes.clear();
        s.steps.retain(|step| !matches!(step, Step::Probe { .. }));
        let s = [s];
        group.throughput(Throughput::Elements(u64::from(exchanges)));
        replay_one(&mut group, dir.path(), &s, "hybrid", exchanges);
    }
    group.finish();
}

criterion_group!(benches, replay);
criterion_main!(benches);
