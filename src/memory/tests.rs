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
        let apart: Vec<&String> = contents
            .iter()
            .filter(|c| line_counts_apart(c, None))
            .collect();
        assert!(apart.len() > 500, "{}", apart.len());
        // Blocks of 1 to 5 lines, every content in several neighbourhoods.
        for (i, window) in apart.windows(5).enumerate() {
            let lines = &window[..1 + i % 5];
            let mut block = String::from(RETRIEVED_HEADER);
            let mut sum = tok.count(RETRIEVED_HEADER);
            for (j, c) in lines.iter().enumerate() {
                let mut line = String::new();
                retrieved_line(roles[(i + j) % 2], c, None, &mut line);
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

/// A tool-calling exchange's messages after message `n`: an assistant
/// message with one or two calls, then one result each.
fn tool_exchange(rng: &mut rand_chacha::ChaCha8Rng, n: u32) -> Vec<(Role, String, Tools)> {
    use crate::scenario::ToolCall;
    let calls: Vec<ToolCall> = (0..rng.random_range(1..=2u32))
        .map(|k| ToolCall {
            id: format!("call_{n}_{k}"),
            name: "lookup_order".into(),
            arguments: format!("{{\"order\": \"A-{}\"}}", n * 10 + k),
        })
        .collect();
    let mut out = vec![(Role::Assistant, String::new(), Tools::Calls(calls.clone()))];
    for c in calls {
        let text = format!(
            "{{\"order\": \"A-{}\", \"status\": \"shipped\", \"note\": \"code word W{}\"}}",
            n,
            n % 7
        );
        out.push((Role::Tool, text, Tools::Result { tool_call_id: c.id }));
    }
    out
}

#[test]
fn tool_calls_stay_with_their_results_in_every_strategy() {
    for seed in 0..4u64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let budget = rng.random_range(150..500u32);
        let trigger = rng.random_range(300..900u32);
        let fx = Fixture::new(&[
            &format!("window.max_tokens={budget}"),
            &format!("summary.trigger_tokens={trigger}"),
            &format!("summary.max_summary_tokens={}", trigger / 4),
            "vector.buffer_message_limit=5",
            "vector.max_retrieved=4",
            "vector.min_score=0.0",
        ]);
        // The conversation: user messages, each answered by a reply or by
        // a tool exchange and then a reply.
        let mut script: Vec<(Role, String, Option<Tools>)> = Vec::new();
        while script.len() < 400 {
            let n = script.len() as u32 + 1;
            script.push((Role::User, message(&mut rng, n), None));
            if rng.random_range(0..2) == 0 {
                let n = script.len() as u32;
                for (role, text, tools) in tool_exchange(&mut rng, n) {
                    script.push((role, text, Some(tools)));
                }
            }
            script.push((Role::Assistant, message(&mut rng, n + 1), None));
        }
        let results = script.iter().filter(|m| m.0 == Role::Tool).count();
        assert!(results >= 50, "{results}");
        for &name in STRATEGIES {
            let mut env = fx.env();
            let mut t = Transcript::new();
            let mut s = create(&name.parse().unwrap(), &fx.params, &t, None);
            let (mut cut, mut retrieved_results) = (false, 0);
            for (i, (role, text, tools)) in script.iter().enumerate() {
                let n = i as u32 + 1;
                let tokens = fx.tok.count(text) + tools.as_ref().map_or(0, |t| t.tokens(&fx.tok));
                let mut e = Entry::new(n, *role, text.as_str().into(), tokens, "u".into(), None)
                    .with_tool(tools.clone().map(Arc::new));
                if s.needs_embeddings() {
                    e.embedding = Some(env.embed(text, Some(e.read.analysis()), tokens));
                }
                t.push(e);
                s.observe(&t, &mut env);
                let q = Query {
                    probe: None,
                    text: "code word W3",
                    embedding: None,
                };
                let ctx = s.build(&t, Some(&q), &mut env);
                let open = script.get(i + 1).is_some_and(|m| m.0 == Role::Tool);
                assert_eq!(
                    ctx.malformed(&t, false),
                    0,
                    "{name} seed {seed} message {n}"
                );
                if !open {
                    // Where a question could follow, it may.
                    assert_eq!(ctx.malformed(&t, true), 0, "{name} seed {seed} message {n}");
                }
                cut |= ctx.buffer.first().is_some_and(|b| b.number > 1);
                // Sections add up to the exact count of the call as sent,
                // the calls' names and arguments included.
                let exact: u32 = ctx
                    .call_messages(SYSTEM)
                    .iter()
                    .map(|m| {
                        fx.tok.count_message(m.content())
                            + m.tool.as_deref().map_or(0, |t| t.tokens(&fx.tok))
                    })
                    .sum::<u32>()
                    + REPLY_PRIMING;
                assert_eq!(ctx.total(), exact, "{name} seed {seed} message {n}");
                // A retrieved result comes just after its call.
                for (k, r) in ctx.retrieved.iter().enumerate() {
                    if r.role == Role::Tool {
                        retrieved_results += 1;
                        let id = r.tool.as_deref().and_then(Tools::answers).unwrap();
                        let call = ctx.retrieved[..k]
                            .iter()
                            .rev()
                            .find(|c| c.role != Role::Tool)
                            .unwrap_or_else(|| {
                                panic!("{name}: result {} without its call", r.number)
                            });
                        assert!(
                            call.tool
                                .as_deref()
                                .unwrap()
                                .calls()
                                .iter()
                                .any(|c| c.id == id),
                            "{name}: result {} after the wrong call",
                            r.number
                        );
                    }
                }
            }
            if name != "buffer" {
                assert!(cut, "{name} seed {seed}: nothing was ever cut");
            }
            if name == "buffer" {
                // A buffer cut anywhere: counted from the transcript where
                // it is not listed, as by the full check where it is.
                for from in 0..t.len() {
                    let listed = env.context(&t, from, None, Vec::new());
                    env.list_buffer = false;
                    let unlisted = env.context(&t, from, None, Vec::new());
                    env.list_buffer = true;
                    assert!(unlisted.buffer.is_empty());
                    let want = t.entries()[from..]
                        .iter()
                        .take_while(|e| e.role == Role::Tool)
                        .count() as u32;
                    assert_eq!(listed.malformed(&t, false), want, "from {from}");
                    assert_eq!(unlisted.malformed(&t, false), want, "from {from}");
                }
            }
            if matches!(name, "vector" | "hybrid") {
                assert!(
                    retrieved_results > 0,
                    "{name} seed {seed}: no result retrieved"
                );
            }
        }
    }
}

/// A call's messages (number, role, tools), the transcript's last message,
/// and what a provider rejects in them.
type Case<'a> = (&'a [(u32, Role, Option<&'a Tools>)], u32, u32);

#[test]
fn malformed_counts_what_a_provider_rejects() {
    let call = |ids: &[&str]| {
        Tools::Calls(
            ids.iter()
                .map(|id| crate::scenario::ToolCall {
                    id: id.to_string(),
                    name: "f".into(),
                    arguments: "{}".into(),
                })
                .collect(),
        )
    };
    let result = |id: &str| Tools::Result {
        tool_call_id: id.into(),
    };
    let (c1, c12) = (call(&["a"]), call(&["a", "b"]));
    let (ra, rb) = (result("a"), result("b"));
    let (u, a, t) = (Role::User, Role::Assistant, Role::Tool);
    let cases: &[Case<'_>] = &[
        // Whole: a call, its results in any order, a reply.
        (
            &[
                (1, u, None),
                (2, a, Some(&c12)),
                (3, t, Some(&rb)),
                (4, t, Some(&ra)),
                (5, a, None),
            ],
            5,
            0,
        ),
        // Opens with a tool result.
        (&[(3, t, Some(&ra)), (4, a, None)], 4, 1),
        // A result cut from its call, mid-group.
        (&[(4, t, Some(&ra)), (5, a, None)], 5, 1),
        // A call whose result was dropped, another message after it.
        (
            &[
                (1, u, None),
                (2, a, Some(&c12)),
                (3, t, Some(&ra)),
                (5, a, None),
            ],
            5,
            1,
        ),
        // A call awaiting its results at the transcript's end: between calls.
        (&[(1, u, None), (2, a, Some(&c12)), (3, t, Some(&ra))], 3, 0),
        // ... but its results exist: the context dropped them.
        (&[(1, u, None), (2, a, Some(&c1))], 3, 1),
        // A result answering another call: it is stray, and the call is
        // left without its result.
        (&[(2, a, Some(&c1)), (3, t, Some(&rb))], 3, 2),
        // The same result twice.
        (
            &[(2, a, Some(&c1)), (3, t, Some(&ra)), (3, t, Some(&ra))],
            3,
            1,
        ),
    ];
    for (i, (messages, last, want)) in cases.iter().enumerate() {
        assert_eq!(
            malformed(messages.iter().copied(), *last),
            *want,
            "case {i}"
        );
    }
    // A question after a call awaiting its results is rejected.
    assert_eq!(malformed([(1, u, None), (2, a, Some(&c1))], u32::MAX), 1);
}

#[test]
fn tool_calls_are_billed_by_name_arguments_and_framing() {
    // o200k_base, counted by hand from its pieces: "lookup" "_order";
    // `{"` `order` `":` ` "` `A` `-` `104` `2` `"}`.
    let tok = crate::tokens::Tokenizer::by_encoding("o200k_base").unwrap();
    assert_eq!(tok.count("lookup_order"), 2);
    assert_eq!(tok.count(r#"{"order": "A-1042"}"#), 9);
    let one = Tools::Calls(vec![crate::scenario::ToolCall {
        id: "call_1".into(),
        name: "lookup_order".into(),
        arguments: r#"{"order": "A-1042"}"#.into(),
    }]);
    // 2 + 9 + 3 for the call; the id is not counted.
    assert_eq!(one.tokens(&tok), 14);
    // A message with that call and no text: 3 for the message, 14.
    let mut t = Transcript::new();
    t.push(
        Entry::new(
            1,
            Role::Assistant,
            "".into(),
            one.tokens(&tok),
            "u".into(),
            None,
        )
        .with_tool(Some(Arc::new(one.clone()))),
    );
    assert_eq!(t.suffix_tokens(0), 17);
    // Two calls cost each their own; a result costs its content only.
    let two = Tools::Calls(vec![
        crate::scenario::ToolCall {
            id: "x".into(),
            name: "get_forecast".into(),
            arguments: r#"{"city": "Oslo"}"#.into(),
        },
        crate::scenario::ToolCall {
            id: "y".into(),
            name: "get_forecast".into(),
            arguments: r#"{"city": "Porto"}"#.into(),
        },
    ]);
    let forecast = tok.count("get_forecast");
    let oslo = tok.count(r#"{"city": "Oslo"}"#);
    let porto = tok.count(r#"{"city": "Porto"}"#);
    // `{"` `city` `":` ` "` `Os` `lo` `"}` (`Port` `o` likewise).
    assert_eq!((forecast, oslo, porto), (3, 7, 7));
    assert_eq!(two.tokens(&tok), 3 + 7 + 3 + 3 + 7 + 3);
    assert_eq!(
        Tools::Result {
            tool_call_id: "x".into()
        }
        .tokens(&tok),
        0
    );
}
