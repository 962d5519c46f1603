use super::*;
use crate::backend::offline;
use crate::config;
use crate::store::Store;
use rand::{RngExt, SeedableRng};

struct Fixture {
    backend: Backend,
    params: Params,
    tok: Tokenizer,
}

const SYSTEM: &str = "You are a helpful assistant.";

impl Fixture {
    fn new(overrides: &[&str]) -> Fixture {
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        let c = config::load(None, &overrides).unwrap();
        let backend = offline::backend(c.offline.embedding_dim as usize);
        Fixture {
            params: Params::from_config(&c, &backend),
            tok: c.tokenizer().unwrap(),
            backend,
        }
    }

    fn env(&self) -> Env<'_> {
        Env {
            tok: self.tok,
            backend: &self.backend,
            params: &self.params,
            system_prompt: SYSTEM.into(),
            system_prompt_tokens: self.tok.count(SYSTEM),
            retrieved_header_tokens: self.tok.count(RETRIEVED_HEADER),
            list_buffer: true,
            usage: Usage::default(),
            summaries: Vec::new(),
            times: Default::default(),
            calls: Vec::new(),
        }
    }

    fn entry(&self, env: &mut Env<'_>, number: u32, text: &str, embed: bool) -> Entry {
        let tokens = self.tok.count(text);
        let role = if number % 2 == 1 {
            Role::User
        } else {
            Role::Assistant
        };
        let mut e = Entry::new(number, role, text.into(), tokens, "u".into(), None);
        e.embedding = embed.then(|| env.embed(text, Some(e.read.analysis()), tokens));
        e
    }
}

/// A varied conversation: facts with rare words among repeated small talk.
fn message(rng: &mut rand_chacha::ChaCha8Rng, i: u32) -> String {
    const TOPICS: &[&str] = &[
        "the garden",
        "our deploy pipeline",
        "a trip to Porto",
        "sourdough",
        "the quarterly report",
    ];
    let t = TOPICS[rng.random_range(0..TOPICS.len())];
    let filler = " We talked it through again and agreed to revisit it next week."
        .repeat(rng.random_range(0..6));
    format!(
        "Message {i} is about {t}; the code word is W{}.{filler}",
        rng.random_range(0..50)
    )
}

const STRATEGIES: &[&str] = &["buffer", "window", "summary", "vector", "hybrid"];

#[test]
fn a_restored_memory_builds_exactly_the_same_contexts() {
    // Small budgets so that windows slide, summaries fold and HNSW kicks in.
    let mut fx = Fixture::new(&[
        "summary.trigger_tokens=600",
        "summary.max_summary_tokens=150",
        "window.max_tokens=500",
        "vector.keyword_fallback=true",
        "vector.hnsw_threshold=60",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::create(&dir.path().join("m.sqlite")).unwrap();
    // Both index layouts: sparse (exact) and dense (HNSW past 60 messages).
    for (sparse, &name) in [true, false]
        .into_iter()
        .flat_map(|sp| STRATEGIES.iter().map(move |n| (sp, n)))
    {
        fx.params.sparse_vectors = sparse;
        let ns = format!("{name}-{sparse}");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut live_env = fx.env();
        let mut live_t = Transcript::new();
        let mut live = create(&name.parse().unwrap(), &fx.params, &live_t, None);
        let mut env = fx.env();
        let mut t = Transcript::new();
        let mut restored = create(&name.parse().unwrap(), &fx.params, &t, None);
        let (mut saved_to, mut summaries) = (0usize, Vec::new());
        for i in 1..=160u32 {
            let text = message(&mut rng, i);
            let e = fx.entry(&mut live_env, i, &text, live.needs_embeddings());
            live_t.push(e.clone());
            live.observe(&live_t, &mut live_env);
            t.push(e);
            restored.observe(&t, &mut env);
            summaries.append(&mut env.summaries);
            if i % 23 == 0 {
                // Persist, drop everything, and come back from the file.
                store
                    .save(&ns, &t.entries()[saved_to..], &summaries)
                    .unwrap();
                summaries.clear();
                drop(restored);
                let (loaded, latest) = store.load(&ns).unwrap();
                saved_to = loaded.len();
                restored = create(&name.parse().unwrap(), &fx.params, &loaded, latest);
                t = loaded;
            }
            for q in [
                "What is the code word about the garden?",
                "Porto trip",
                "W17",
            ] {
                let query = Query {
                    probe: None,
                    text: q,
                    embedding: None,
                };
                let a = live.build(&live_t, Some(&query), &mut live_env);
                let b = restored.build(&t, Some(&query), &mut env);
                assert_eq!(a, b, "{name}: contexts differ after message {i} for {q:?}");
            }
        }
        let summarizes = matches!(name, "summary" | "hybrid");
        assert_eq!(live.summary().is_some(), summarizes, "{name}");
    }
}

#[test]
fn cold_start_builds_an_empty_context() {
    let fx = Fixture::new(&[]);
    for &name in STRATEGIES {
        let mut env = fx.env();
        let t = Transcript::new();
        let mut s = create(&name.parse().unwrap(), &fx.params, &t, None);
        let q = Query {
            probe: None,
            text: "Who am I?",
            embedding: None,
        };
        let ctx = s.build(&t, Some(&q), &mut env);
        assert!(ctx.buffer.is_empty() && ctx.retrieved.is_empty() && ctx.summary.is_none());
        assert_eq!(
            ctx.total(),
            fx.tok.count(SYSTEM) + MESSAGE_OVERHEAD + REPLY_PRIMING
        );
    }
}

#[test]
fn invariants_hold_on_random_conversations() {
    for seed in 0..6u64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let budget = rng.random_range(100..900u32);
        let trigger = rng.random_range(300..1500u32);
        let fx = Fixture::new(&[
            &format!("window.max_tokens={budget}"),
            &format!("summary.trigger_tokens={trigger}"),
            &format!("summary.max_summary_tokens={}", trigger / 4),
            "vector.buffer_message_limit=8",
        ]);
        for &name in STRATEGIES {
            let mut env = fx.env();
            let mut t = Transcript::new();
            let mut s = create(&name.parse().unwrap(), &fx.params, &t, None);
            let mut longest = 0;
            for i in 1..=120u32 {
                let text = message(&mut rng, i);
                let e = fx.entry(&mut env, i, &text, s.needs_embeddings());
                longest = longest.max(e.tokens + MESSAGE_OVERHEAD);
                t.push(e);
                s.observe(&t, &mut env);
                let q = Query {
                    probe: None,
                    text: "code word W3",
                    embedding: None,
                };
                let ctx = s.build(&t, Some(&q), &mut env);
                // Sections add up to the exact count of the call as sent.
                let call = ctx.call_messages(SYSTEM);
                let exact: u32 = call
                    .iter()
                    .map(|m| fx.tok.count_message(m.content()))
                    .sum::<u32>()
                    + REPLY_PRIMING;
                assert_eq!(ctx.total(), exact, "{name} seed {seed} message {i}");
                // The buffer is a suffix ending at the newest message.
                assert_eq!(ctx.buffer.last().map(|b| b.number), Some(i));
                // Never a message twice, never a retrieved one from the buffer.
                let first_buffered = ctx.buffer[0].number;
                assert!(
                    ctx.retrieved.iter().all(|r| r.number < first_buffered),
                    "{name}"
                );
                match name {
                    "window" => assert!(
                        ctx.tokens_buffer <= budget.max(longest),
                        "{name} {}",
                        ctx.tokens_buffer
                    ),
                    "summary" | "hybrid" => {
                        assert!(
                            ctx.tokens_buffer + REPLY_PRIMING <= trigger + longest,
                            "{name}"
                        );
                        if let Some(sum) = &ctx.summary {
                            assert!(sum.tokens <= trigger / 4);
                        }
                    }
                    "vector" => assert!(ctx.buffer.len() <= 8 && ctx.retrieved.len() <= 3),
                    _ => assert_eq!(ctx.buffer.len() as u32, i),
                }
            }
        }
    }
}

#[test]
fn fitting_suffix_matches_the_sliding_rule() {
    let mut t = Transcript::new();
    for (i, tokens) in [5u32, 40, 7, 100, 3, 3, 60].into_iter().enumerate() {
        t.push(Entry::new(
            i as u32 + 1,
            Role::User,
            "x".into(),
            tokens,
            "u".into(),
            None,
        ));
    }
    assert_eq!(t.suffix_tokens(4), 6 + 6 + 63);
    assert_eq!(t.fitting_suffix(75), 4);
    assert_eq!(t.fitting_suffix(74), 5);
    assert_eq!(t.fitting_suffix(10), 6);
    assert_eq!(t.fitting_suffix(10_000), 0);
}

#[test]
fn a_fold_keeps_the_newest_keep_ratio_of_the_buffer_raw() {
    for (ratio, seed) in [(0.25, 1u64), (0.5, 2), (0.8, 3)] {
        let fx = Fixture::new(&[
            "summary.trigger_tokens=600",
            "summary.max_summary_tokens=100",
            &format!("summary.keep_ratio={ratio}"),
        ]);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut env = fx.env();
        let mut t = Transcript::new();
        let mut s = create(&crate::config::StrategyName::Summary, &fx.params, &t, None);
        let mut folds = 0;
        for i in 1..=80u32 {
            let raw_before = t.len() - s.summary().map_or(0, |x| x.covered_to as usize);
            let before = s.summary().map(|x| x.index);
            t.push(fx.entry(&mut env, i, &message(&mut rng, i), false));
            s.observe(&t, &mut env);
            let after = s.summary().cloned();
            if after.as_ref().map(|x| x.index) != before {
                let n = raw_before + 1;
                let kept = t.len() - after.unwrap().covered_to as usize;
                assert_eq!(kept, (n as f64 * ratio).ceil() as usize, "ratio {ratio}");
                folds += 1;
            }
        }
        assert!(folds >= 2, "ratio {ratio}: {folds} folds");
    }
}

#[test]
fn a_lagging_index_cannot_retrieve_the_newest_messages() {
    // A buffer of 2 messages, so that retrieval reaches everything older.
    for lag in [0usize, 3] {
        let fx = Fixture::new(&[
            "vector.buffer_message_limit=2",
            &format!("vector.embed_lag={lag}"),
        ]);
        let mut env = fx.env();
        let mut t = Transcript::new();
        let mut v = create(&crate::config::StrategyName::Vector, &fx.params, &t, None);
        let texts = [
            "Small talk about the weather today.",
            "More small talk about lunch plans.",
            "Chatting about a film we saw.",
            "My locker code is Zanzibar 4471.",
            "Talking about the weekend again.",
            "And about the weather once more.",
        ];
        let mut found = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            let e = fx.entry(&mut env, i as u32 + 1, text, true);
            t.push(e);
            v.observe(&t, &mut env);
            let q = Query {
                probe: None,
                text: "What is my locker code Zanzibar?",
                embedding: None,
            };
            let ctx = v.build(&t, Some(&q), &mut env);
            found.push(ctx.retrieved.iter().any(|r| r.number == 4));
        }
        // Message 4 leaves the buffer after message 6 arrives; with a lag
        // of 3 it is not indexed until message 7.
        assert_eq!(found[5], lag == 0, "lag {lag}: {found:?}");
        // A restart indexes everything stored: the queue has drained.
        let mut restored = create(&crate::config::StrategyName::Vector, &fx.params, &t, None);
        let q = Query {
            probe: None,
            text: "What is my locker code Zanzibar?",
            embedding: None,
        };
        let ctx = restored.build(&t, Some(&q), &mut env);
        assert!(ctx.retrieved.iter().any(|r| r.number == 4), "lag {lag}");
    }
}

/// The retrieved block's tokens are the header's plus each line's (what
/// lets a line be counted once), and a summary's system message's the
/// prompt and header's plus the summary's, in every encoding, over the shipped
/// scenarios' messages and contents made to strain a tokenizer's pre-split:
/// lines ending in punctuation, digits, newlines, quotes, other scripts.
#[test]
fn the_retrieved_block_counts_as_the_sum_of_its_lines() {
    let mut contents: Vec<String> = [
        "Done.",
        "ok!!!",
        "line one\nline two",
        "ends with a newline\n",
        "ends with newlines\n\n\r\n",
        " leading space",
        "\tleading tab",
        "1234567",
        "price: $1,299.99",
        "quote: \"it's\"",
        "it's",
        "[user]: nested",
        "日本語のテキスト",
        "emoji 🎉🎉",
        "ALLCAPS",
        "mixedCASEWords",
        "a/b/c",
        "---",
        "'ll",
        "x",
    ]
    .map(String::from)
    .to_vec();
    for f in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios")).unwrap() {
        let path = f.unwrap().path();
        if let Ok(s) = crate::scenario::load_file(&path) {
            contents.extend(
                s.messages
                    .iter()
                    .filter_map(|m| m.content.as_deref().map(String::from))
                    .take(300),
            );
        }
    }
    let roles = [Role::User, Role::Assistant];
    for enc in crate::tokens::ENCODINGS {
        let tok = crate::tokens::Tokenizer::by_encoding(enc).unwrap();
        let apart: Vec<&String> = contents.iter().filter(|c| line_counts_apart(c)).collect();
        assert!(apart.len() > 500, "{}", apart.len());
        // Blocks of 1 to 5 lines, every content in several neighbourhoods.
        for (i, window) in apart.windows(5).enumerate() {
            let lines = &window[..1 + i % 5];
            let mut block = String::from(RETRIEVED_HEADER);
            let mut sum = tok.count(RETRIEVED_HEADER);
            for (j, c) in lines.iter().enumerate() {
                let mut line = String::new();
                retrieved_line(roles[(i + j) % 2], c, &mut line);
                sum += tok.count(&line);
                block.push_str(&line);
            }
            assert_eq!(tok.count(&block), sum, "{enc}: {block:?}");
        }
        // Likewise a summary after the system prompt and its header.
        let head = format!("{SYSTEM}{SUMMARY_HEADER}");
        for c in contents
            .iter()
            .filter(|c| !c.starts_with(char::is_whitespace))
        {
            let whole = tok.count(&format!("{head}{c}"));
            assert_eq!(whole, tok.count(&head) + tok.count(c), "{enc}: {c:?}");
        }
    }
}
