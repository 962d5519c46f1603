//! Token counting: one message (short and long); the buffer's total kept
//! incrementally (memeval) against recounting the buffer after every message
//! (the reference design); and tokenizing every message of a 10,000-message
//! conversation once, the floor a full replay is compared with.
//!
//! Run: `cargo bench --bench tokens`.

// The memeval binary's allocator, so that these figures are the binary's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use memeval::config;
use memeval::memory::{Entry, Transcript};
use memeval::scenario::{Role, generate};
use memeval::text::{Analysis, fold};

fn messages(n: u32) -> Vec<String> {
    let s = generate::scenario(&generate::GenerateOptions {
        name: "bench".into(),
        messages: n,
        facts: 8,
        sessions: 3,
        every: 100,
        seed: 1,
        tools: false,
    })
    .expect("valid options");
    s.messages
        .iter()
        .filter_map(|m| m.content.as_deref().map(String::from))
        .collect()
}

fn tokens(c: &mut Criterion) {
    let tok = config::load(None, &[])
        .expect("config")
        .tokenizer()
        .expect("tokenizer");
    let mut group = c.benchmark_group("tokens");
    let short = "Can you remind me which region the staging cluster runs in?";
    let long = short.repeat(40);
    group.bench_function("count/short message", |b| b.iter(|| tok.count(short)));
    group.bench_function("count/long message", |b| b.iter(|| tok.count(&long)));

    let all = messages(10_000);
    group.throughput(Throughput::Elements(all.len() as u64));
    group.sample_size(10);
    group.bench_function("tokenize every message once/10000", |b| {
        b.iter(|| all.iter().map(|m| u64::from(tok.count(m))).sum::<u64>())
    });
    // What the offline models and recall matching read of each message,
    // once: its analysis (content words, sentences) and its folded form.
    group.bench_function("read every message once/10000", |b| {
        b.iter(|| {
            all.iter()
                .map(|m| Analysis::new(m).words.len() + fold(m).len())
                .sum::<usize>()
        })
    });

    // The buffer's total after a new message, for buffers of 20 and 200.
    group.throughput(Throughput::Elements(1));
    group.sample_size(50);
    for size in [20usize, 200] {
        let mut t = Transcript::new();
        for (i, m) in all.iter().take(size).enumerate() {
            t.push(Entry::new(
                i as u32 + 1,
                Role::User,
                m.as_str().into(),
                tok.count(m),
                Arc::from("bench"),
                None,
            ));
        }
        group.bench_with_input(
            BenchmarkId::new("buffer total/incremental", size),
            &size,
            |b, _| b.iter(|| t.suffix_tokens(0)),
        );
        let buffer: Vec<&String> = all.iter().take(size).collect();
        group.bench_with_input(
            BenchmarkId::new("buffer total/recount", size),
            &size,
            |b, _| {
                b.iter(|| {
                    buffer
                        .iter()
                        .map(|m| u64::from(tok.count_message(m)))
                        .sum::<u64>()
                        + 3
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, tokens);
criterion_main!(benches);
