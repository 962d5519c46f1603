//! Vector search over dense embeddings: HNSW (hnsw_rs) against exact search,
//! at 1,000, 10,000 and 50,000 vectors of 256 dimensions, clustered as real
//! embeddings are (50 topics); before timing, each size prints HNSW's
//! recall@5 against exact search, on these and on uniformly random vectors
//! (the worst case). The test suite asserts recall@5 >= 0.95.
//!
//! Run: `cargo bench --bench search`.

// The memeval binary's allocator, so that these figures are the binary's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use memeval::index::{Embedding, VectorIndex};
use rand::{RngExt, SeedableRng};

/// Unit vectors around 50 topic centres (`clustered`), or uniformly random.
fn unit_vectors(n: usize, dim: usize, seed: u64, clustered: bool) -> Vec<Vec<f32>> {
    let mut topics = rand_chacha::ChaCha8Rng::seed_from_u64(99);
    let centres: Vec<Vec<f32>> = (0..50)
        .map(|_| {
            (0..dim)
                .map(|_| topics.random_range(-1.0f32..1.0))
                .collect()
        })
        .collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let c = &centres[rng.random_range(0..centres.len())];
            let v: Vec<f32> = (0..dim)
                .map(|i| {
                    let noise = rng.random_range(-1.0f32..1.0);
                    if clustered { c[i] + 0.6 * noise } else { noise }
                })
                .collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / norm).collect()
        })
        .collect()
}

fn search(c: &mut Criterion) {
    let dim = 256;
    let mut group = c.benchmark_group("search");
    group.sample_size(20);
    let mut idx = VectorIndex::dense(dim, 0, 64);
    let mut queries = Vec::new();
    for n in [1_000usize, 10_000, 50_000] {
        for clustered in [false, true] {
            // Threshold 0: HNSW from the first vector; `exact` is the flat scan.
            idx = VectorIndex::dense(dim, 0, 64);
            let started = std::time::Instant::now();
            for v in unit_vectors(n, dim, 1, clustered) {
                idx.add(&v.into());
            }
            let built = started.elapsed();
            queries = unit_vectors(100, dim, 2, clustered)
                .into_iter()
                .map(Embedding::from)
                .collect();
            let found: usize = queries
                .iter()
                .map(|q| {
                    let exact: Vec<u32> = idx.exact(q, 5).iter().map(|h| h.pos).collect();
                    idx.search(q, 5)
                        .iter()
                        .filter(|h| exact.contains(&h.pos))
                        .count()
                })
                .sum();
            eprintln!(
                "search/{n} ({}): HNSW recall@5 against exact search = {:.3}; {:.0} µs per insert",
                if clustered { "clustered" } else { "uniform" },
                found as f64 / (5.0 * queries.len() as f64),
                built.as_secs_f64() * 1e6 / n as f64
            );
        }
        // Timed on the clustered index, as real embeddings are.
        let mut i = 0;
        group.bench_with_input(BenchmarkId::new("hnsw", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) % queries.len();
                idx.search(&queries[i], 5)
            });
        });
        group.bench_with_input(BenchmarkId::new("exact", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) % queries.len();
                idx.exact(&queries[i], 5)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, search);
criterion_main!(benches);
