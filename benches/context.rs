//! Building the context of one call, per strategy, after 100, 1,000 and
//! 10,000 messages: the bounded strategies must cost the same at any
//! length (`buffer` copies the whole history by definition, and is shown
//! for scale).
//!
//! Run: `cargo bench --bench context`.

// The memeval binary's allocator, so that these figures are the binary's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use memeval::backend::offline;
use memeval::config;
use memeval::memory::{Entry, Env, Params, Query, Transcript, Usage, create};
use memeval::scenario::Role;

const SYSTEM: &str = "You are a helpful assistant.";

fn text(i: u32) -> String {
    // Varied messages: small talk with a rare word and a number now and then.
    let topics = [
        "deploy", "invoice", "garden", "router", "recipe", "budget", "flight",
    ];
    format!(
        "Message {i}: about the {} again, we changed plan {} and the Zephyr{} code is {}.",
        topics[(i % 7) as usize],
        i % 13,
        i % 97,
        i * 7919 % 10_000
    )
}

fn contexts(c: &mut Criterion) {
    let cfg = config::load(None, &[]).expect("config");
    let backend = offline::backend(cfg.offline.embedding_dim as usize);
    let params = Params::from_config(&cfg, &backend);
    let tok = cfg.tokenizer().expect("tokenizer");
    let mut group = c.benchmark_group("context");
    group.sample_size(30);
    for n in [100u32, 1_000, 10_000] {
        for strategy in ["buffer", "window", "summary", "vector", "hybrid"] {
            let mut env = Env {
                tok,
                backend: &backend,
                params: &params,
                system_prompt: SYSTEM.into(),
                system_prompt_tokens: tok.count(SYSTEM),
                retrieved_header_tokens: tok.count(memeval::memory::RETRIEVED_HEADER),
                list_buffer: true,
                usage: Usage::default(),
                summaries: Vec::new(),
                times: Default::default(),
                calls: Vec::new(),
            };
            let mut t = Transcript::new();
            let mut s = create(&strategy.parse().expect("a strategy"), &params, &t, None);
            for i in 1..=n {
                let content = text(i);
                let tokens = tok.count(&content);
                let role = if i % 2 == 1 {
                    Role::User
                } else {
                    Role::Assistant
                };
                let mut e = Entry::new(i, role, content.into(), tokens, Arc::from("bench"), None);
                if s.needs_embeddings() {
                    e.embedding = Some(env.embed(e.content(), Some(e.read.analysis()), tokens));
                }
                t.push(e);
                s.observe(&t, &mut env);
            }
            let question = "What was the Zephyr42 code again?";
            let q = Query {
                probe: None,
                text: question,
                embedding: s
                    .needs_embeddings()
                    .then(|| env.embed(question, None, tok.count(question))),
            };
            group.bench_with_input(BenchmarkId::new(strategy, n), &n, |b, _| {
                b.iter(|| s.build(&t, Some(&q), &mut env));
            });
        }
    }
    group.finish();
}

criterion_group!(benches, contexts);
criterion_main!(benches);
