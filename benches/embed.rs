//! The local embedder (all-MiniLM-L6-v2, in process) on LoCoMo's messages:
//!
//! - `throughput`: 256 messages of the LoCoMo sample through the encoder,
//!   by batch size (messages a second: "thrpt");
//! - `conversation`: the sample's whole conversation as a run embeds it
//!   (`prefetch`): cold (nothing cached) and from the SQLite cache (a
//!   rerun).
//!
//! Needs the model folder in `MEMEVAL_EMBEDDING_MODEL` (the README's "A real
//! embedding model") and the LoCoMo sample in `MEMEVAL_LOCOMO_SAMPLE`
//! (default: ../shared/datasets/locomo-sample/26.json).
//! Run: `cargo bench --bench embed`. The numpy reference's rate on the
//! same messages, for the same sitting:
//! `python3 tests/embedding/reference.py MODEL --rate 256 SAMPLE`.

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use memeval::backend::Embedder;
use memeval::backend::local::{LocalEmbedder, Model};
use memeval::config::LocalEmbedderConfig;

/// The sample conversation's messages, in order.
fn locomo_messages() -> Vec<String> {
    let path = std::env::var("MEMEVAL_LOCOMO_SAMPLE")
        .unwrap_or_else(|_| "../shared/datasets/locomo-sample/26.json".into());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let v: serde_json::Value = serde_json::from_str(&text).expect("the sample is JSON");
    let sample = v.get("conversation").unwrap_or(&v);
    let mut sessions: Vec<(u32, &Vec<serde_json::Value>)> = sample
        .as_object()
        .expect("an object")
        .iter()
        .filter_map(|(k, v)| {
            let n = k.strip_prefix("session_")?.parse().ok()?;
            Some((n, v.as_array()?))
        })
        .collect();
    sessions.sort_by_key(|s| s.0);
    sessions
        .iter()
        .flat_map(|(_, turns)| turns.iter())
        .filter_map(|t| t["text"].as_str().map(str::to_string))
        .collect()
}

fn model_dir() -> Option<PathBuf> {
    let dir = std::env::var("MEMEVAL_EMBEDDING_MODEL")
        .ok()
        .map(PathBuf::from);
    if dir.is_none() {
        eprintln!("skipped: set MEMEVAL_EMBEDDING_MODEL to the all-MiniLM-L6-v2 folder");
    }
    dir
}

fn throughput(c: &mut Criterion) {
    let Some(dir) = model_dir() else { return };
    let model = Model::load(&dir).expect("the model loads");
    let messages = locomo_messages();
    let texts: Vec<&str> = messages.iter().take(256).map(String::as_str).collect();
    let tokens: usize = model.token_ids(&texts).unwrap().iter().map(Vec::len).sum();
    eprintln!(
        "{} messages, {:.1} tokens each on average ([CLS] and [SEP] included)",
        texts.len(),
        tokens as f64 / texts.len() as f64
    );
    let mut g = c.benchmark_group("embed/throughput");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(texts.len() as u64));
    for batch in [1, 8, 32, 64] {
        g.bench_function(BenchmarkId::new("batch", batch), |b| {
            b.iter(|| model.embed(&texts, batch).unwrap())
        });
    }
    g.finish();
}

fn conversation(c: &mut Criterion) {
    let Some(dir) = model_dir() else { return };
    let messages = locomo_messages();
    let texts: Vec<&str> = messages.iter().map(String::as_str).collect();
    let tmp = tempfile::tempdir().unwrap();
    let config = |cache: bool| LocalEmbedderConfig {
        model: Some(dir.clone()),
        cache,
        cache_path: tmp.path().join("cache.sqlite"),
        ..LocalEmbedderConfig::default()
    };
    let mut g = c.benchmark_group("embed/conversation");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(30))
        .throughput(Throughput::Elements(texts.len() as u64));
    g.bench_function("load", |b| b.iter(|| Model::load(&dir).unwrap()));
    g.bench_function(BenchmarkId::new("cold", texts.len()), |b| {
        b.iter(|| {
            let e = LocalEmbedder::new(&config(false)).unwrap();
            e.prefetch(&texts, &mut Vec::new());
        })
    });
    LocalEmbedder::new(&config(true))
        .unwrap()
        .prefetch(&texts, &mut Vec::new());
    g.bench_function(BenchmarkId::new("cached", texts.len()), |b| {
        b.iter(|| {
            let e = LocalEmbedder::new(&config(true)).unwrap();
            let mut calls = Vec::new();
            e.prefetch(&texts, &mut calls);
            assert!(calls.is_empty(), "the cache missed");
        })
    });
    g.finish();
}

criterion_group!(benches, throughput, conversation);
criterion_main!(benches);
