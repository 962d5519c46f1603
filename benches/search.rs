//! Vector search over dense embeddings: HNSW (hnsw_rs) against exact search,
//! at 1,000, 10,000 and 50,000 vectors of 256 dimensions; before timing,
//! each size prints HNSW's recall@5 against exact search (the test suite
//! asserts it stays at or above 0.95).
//!
//! Run: `cargo bench --bench search`.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use memeval::index::VectorIndex;
use rand::{RngExt, SeedableRng};

fn unit_vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let v: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / norm).collect()
        })
        .collect()
}

fn search(c: &mut Criterion) {
    let dim = 256;
    let queries = unit_vectors(100, dim, 2);
    let mut group = c.benchmark_group("search");
    group.sample_size(20);
    for n in [1_000usize, 10_000, 50_000] {
        // Threshold 0: HNSW from the first vector; `exact` is the flat scan.
        let mut idx = VectorIndex::dense(dim, 0, 64);
        for v in unit_vectors(n, dim, 1) {
            idx.add(&v);
        }
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
            "search/{n}: HNSW recall@5 against exact search = {:.3}",
            found as f64 / (5.0 * queries.len() as f64)
        );
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
