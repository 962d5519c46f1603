//! Persistence per message: one SQLite transaction per message (what the
//! reference design does) against batches of 100 (what a replay does
//! between session boundaries), on a real file.
//!
//! Run: `cargo bench --bench persist`.

// The memeval binary's allocator, so that these figures are the binary's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use memeval::memory::Entry;
use memeval::scenario::Role;
use memeval::store::Store;

fn entries(n: u32, from: u32) -> Vec<Entry> {
    (from..from + n)
        .map(|i| {
            let content = format!(
                "Message {i}: the staging cluster runs in eu-west-{}.",
                i % 3
            );
            let role = if i % 2 == 1 {
                Role::User
            } else {
                Role::Assistant
            };
            let mut e = Entry::new(i, role, content.into(), 14, Arc::from("bench"), None);
            e.embedding = Some(vec![0.0625f32; 256].into());
            e
        })
        .collect()
}

fn persist(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut group = c.benchmark_group("persist");
    group.sample_size(10);
    for batch in [1u32, 100] {
        let mut store = Store::create(&dir.path().join(format!("b{batch}.sqlite"))).expect("store");
        let mut next = 1;
        group.throughput(Throughput::Elements(100));
        group.bench_with_input(
            BenchmarkId::new("100 messages in batches of", batch),
            &batch,
            |b, &batch| {
                b.iter(|| {
                    for _ in 0..100 / batch {
                        store
                            .save("bench", &entries(batch, next), &[])
                            .expect("save");
                        next += batch;
                    }
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, persist);
criterion_main!(benches);
