//! The `openai` backend against a real HTTP server on 127.0.0.1 speaking
//! the OpenAI API: requests go through async-openai and reqwest for real.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::openai_server::{Fault, Options, Server};
use common::{output_files, rows, shipped};
use serde_json::Value;

const KEY: &str = "sk-test-Zq8vX2mN4pL7rT1w";

/// Writes a config for `server` into `dir` (cache inside `dir`); `extra`
/// lines (`key = value`) override or extend its `[openai]` section.
fn config(dir: &Path, server: &Server, extra: &str) -> PathBuf {
    let path = dir.join("memeval.toml");
    let mut text = format!(
        r#"backend = "openai"
strategies = ["window", "summary", "hybrid"]
[model]
name = "gpt-4o-mini"
[summary]
trigger_tokens = 300
max_summary_tokens = 120
[openai]
base_url = "{}"
api_key_env = "MEMEVAL_TEST_KEY"
cache_path = "{}"
retry_backoff_ms = 1
max_concurrency = 4
timeout_secs = 5
"#,
        server.url,
        dir.join("cache.sqlite").display()
    );
    for line in extra.lines() {
        let key = line.split('=').next().unwrap().trim();
        text = text
            .lines()
            .filter(|l| l.split('=').next().unwrap().trim() != key)
            .map(|l| format!("{l}\n"))
            .collect();
        text.push_str(line);
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn run(dir: &Path, cfg: &Path, out: &str, more: &[&str]) -> Output {
    let mut args = vec![
        "run".to_string(),
        shipped("travel-multihop"),
        shipped("cold-start-billing"),
        "--config".into(),
        cfg.display().to_string(),
        "--out".into(),
        dir.join(out).display().to_string(),
        "--no-timings".into(),
    ];
    args.extend(more.iter().map(|s| s.to_string()));
    Command::new(env!("CARGO_BIN_EXE_memeval"))
        .args(&args)
        .current_dir(dir)
        .env("MEMEVAL_TEST_KEY", KEY)
        .output()
        .expect("run memeval")
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Asserts that the outputs that must not depend on how calls were served
/// are identical in two runs: the tables byte for byte, results.json but
/// for its metadata (which names each run's server and cache).
fn same_results(a: &Path, b: &Path) {
    let results = |d: &Path| {
        let mut v: Value =
            serde_json::from_slice(&std::fs::read(d.join("results.json")).unwrap()).unwrap();
        v.as_object_mut().unwrap().remove("meta");
        v
    };
    assert_eq!(results(a), results(b), "results.json differs");
    for f in ["turns.csv", "probes.csv", "summaries.csv"] {
        let (x, y) = (
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
        );
        if x != y {
            let (x, y) = (String::from_utf8_lossy(&x), String::from_utf8_lossy(&y));
            let first = x.lines().zip(y.lines()).find(|(p, q)| p != q);
            panic!("{f} differs: {first:?}");
        }
    }
}

#[test]
fn a_run_is_judged_and_its_rerun_sends_nothing() {
    let server = Server::start(Options::default());
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &server, "");
    let first = run(dir.path(), &cfg, "a", &[]);
    ok(&first);
    let sent = server.requests();
    assert!(sent > 20, "{sent} requests");
    assert_eq!(
        server.stats.auth.lock().unwrap()[0],
        format!("Bearer {KEY}"),
        "the key is sent where it belongs"
    );

    let out = dir.path().join("a");
    // Summaries scored by the judge model.
    let summaries = rows(&out.join("summaries.csv"));
    assert!(!summaries.is_empty());
    for s in &summaries {
        assert_eq!(s["quality"], "0.75", "{s:?}");
        assert_eq!(s["missing"], "a detail");
        assert_eq!(s["accurate"], "1");
        assert_eq!(s["judge_reason"], "");
    }
    // Probes answered by the chat model, then judged.
    let probes = rows(&out.join("probes.csv"));
    assert!(probes.iter().all(|p| p["answer"].starts_with("You said: ")));
    assert!(probes.iter().all(|p| p["judge_reason"] == "fake judge"));
    assert!(probes.iter().any(|p| p["answer_correct"] == "1"));
    // Generated replies came from the chat model.
    let turns = rows(&out.join("turns.csv"));
    assert!(turns.iter().any(|t| t["generated"] == "1"));
    // Usage: the API's figures beside the local ones, and a cost.
    let calls = rows(&out.join("calls.csv"));
    let kinds: std::collections::BTreeSet<&str> =
        calls.iter().map(|c| c["kind"].as_str()).collect();
    for k in [
        "summarize",
        "embed",
        "reply",
        "answer",
        "judge_summary",
        "judge_answer",
    ] {
        assert!(kinds.contains(k), "no {k} call in {kinds:?}");
    }
    assert!(
        calls
            .iter()
            .all(|c| !c["api_input_tokens"].is_empty() && c["error"].is_empty())
    );
    let results: Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    let usage: Value =
        serde_json::from_slice(&std::fs::read(out.join("usage.json")).unwrap()).unwrap();
    let usage = &usage["summarize"];
    assert!(usage["api_input_tokens"].as_u64().unwrap() > 0);
    assert!(usage["input_diff_pct"].is_number());
    assert!(results["totals"][0]["cost_usd"].as_f64().unwrap() > 0.0);
    assert!(results["totals"][0]["eval_cost_usd"].as_f64().unwrap() > 0.0);
    assert_eq!(results["totals"][0]["failed_calls"], 0);
    assert_eq!(results["meta"]["answers"], "model", "a chat model answered");

    // The rerun: nothing sent, the same results.
    let second = run(dir.path(), &cfg, "b", &[]);
    ok(&second);
    assert_eq!(server.requests(), sent, "a rerun sent requests");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("0 HTTP request(s) sent"), "{stderr}");
    same_results(&out, &dir.path().join("b"));
    assert!(
        rows(&dir.path().join("b/calls.csv"))
            .iter()
            .all(|c| c["cached"] == "1")
    );

    // --no-cache sends again.
    ok(&run(dir.path(), &cfg, "c", &["--no-cache"]));
    assert!(server.requests() > sent);

    // The key is in no file the runs wrote, nor in the cache (and the
    // memories' SQLite files, which output_files leaves out).
    let mut files = output_files(dir.path());
    for run in ["a", "b", "c"] {
        let store = dir.path().join(run).join("memory.sqlite");
        files.insert(store.display().to_string(), std::fs::read(&store).unwrap());
    }
    assert!(files.keys().any(|k| k.ends_with("cache.sqlite")));
    for (name, bytes) in files {
        assert!(
            !bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
            "the key leaked into {name}"
        );
    }
    for o in [&first, &second] {
        assert!(!String::from_utf8_lossy(&o.stderr).contains(KEY));
        assert!(!String::from_utf8_lossy(&o.stdout).contains(KEY));
    }
}

#[test]
fn faults_are_retried_and_change_nothing() {
    let clean = Server::start(Options::default());
    let dir = tempfile::tempdir().unwrap();
    let clean_cfg = config(dir.path(), &clean, "");
    ok(&run(dir.path(), &clean_cfg, "clean", &[]));

    // Half the requests rate-limited at first (Retry-After: 0), some with
    // Retry-After as an HTTP date already past, some a 400 that the server
    // says to retry (x-should-retry); a third of the retries a 500, some a
    // 503 with retry-after-ms; and the seventh request hanging past the
    // timeout.
    let sent = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let seen = sent.clone();
    let faulty = Server::start(Options {
        faults: Some(Box::new(move |n, times, body| {
            let h = body
                .to_string()
                .bytes()
                .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
            let header = |k, v: &str| vec![(k, v.to_string())];
            let fault = match (n, times) {
                (7, _) => Some(Fault::Hang(Duration::from_millis(1500))),
                (_, 1) if h % 2 == 0 => Some(Fault::Status(429, Some(0))),
                (_, 1) if h % 5 == 1 => Some(Fault::Error(
                    429,
                    "rate_limit_exceeded",
                    header("Retry-After", "Sun, 06 Nov 1994 08:49:37 GMT"),
                )),
                (_, 1) if h % 5 == 3 => Some(Fault::Error(
                    400,
                    "overloaded",
                    header("x-should-retry", "true"),
                )),
                (_, 2) if h % 3 == 0 => Some(Fault::Status(500, None)),
                (_, 2) if h % 3 == 1 => Some(Fault::Error(
                    503,
                    "server_error",
                    header("retry-after-ms", "1"),
                )),
                _ => None,
            };
            if let Some(Fault::Error(status, _, headers)) = &fault {
                seen.lock().unwrap().insert((*status, headers[0].0));
            }
            fault
        })),
        ..Options::default()
    });
    let other = tempfile::tempdir().unwrap();
    let cfg = config(other.path(), &faulty, "timeout_secs = 0.5");
    let o = run(other.path(), &cfg, "faulty", &[]);
    ok(&o);
    let calls = rows(&other.path().join("faulty/calls.csv"));
    let retried = calls
        .iter()
        .filter(|c| c["attempts"].parse::<u32>().unwrap() > 1)
        .count();
    assert!(retried > 5, "{retried} calls retried");
    assert_eq!(
        sent.lock().unwrap().len(),
        3,
        "every kind of fault was sent: {sent:?}"
    );
    assert!(calls.iter().all(|c| c["error"].is_empty()));
    same_results(&dir.path().join("clean"), &other.path().join("faulty"));
}

/// A fault plan under which every summarization fails with a 503.
fn summaries_fail() -> common::openai_server::FaultPlan {
    Box::new(|_, _, body| {
        let prompt = body["messages"][0]["content"].as_str().unwrap_or("");
        prompt
            .contains("Please summarize")
            .then_some(Fault::Status(503, None))
    })
}

#[test]
fn calls_that_keep_failing_are_recorded_and_the_run_completes() {
    // Every summarization fails; the rest works.
    let server = Server::start(Options {
        faults: Some(summaries_fail()),
        error_echo: Some(KEY.into()),
        ..Options::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &server, "max_retries = 2");
    let o = run(dir.path(), &cfg, "out", &[]);
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("completed with"), "{stderr}");
    assert!(
        stderr.contains("FAILED summarize call travel-multihop"),
        "{stderr}"
    );
    let out = dir.path().join("out");
    let calls = rows(&out.join("calls.csv"));
    let failed: Vec<_> = calls.iter().filter(|c| !c["error"].is_empty()).collect();
    assert!(!failed.is_empty());
    for c in &failed {
        assert_eq!(c["kind"], "summarize");
        assert_eq!(c["attempts"], "3", "one try and two retries");
        assert!(c["error"].contains("503"), "{c:?}");
        assert!(c["turn"].parse::<u32>().unwrap() > 0);
        assert!(!c["error"].contains(KEY), "the key reached calls.csv");
        assert!(c["error"].contains("[redacted]"), "{c:?}");
    }
    // The rows of the messages whose summary failed say so.
    let turns = rows(&out.join("turns.csv"));
    let marked: u32 = turns
        .iter()
        .map(|t| t["failed_calls"].parse::<u32>().unwrap())
        .sum();
    assert_eq!(marked as usize, failed.len());
    // No summary was written, every output is complete otherwise, and the
    // failures are counted where a gate reads them.
    assert!(rows(&out.join("summaries.csv")).is_empty());
    assert!(!rows(&out.join("probes.csv")).is_empty());
    let results: Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    let failed_total: u64 = results["totals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["failed_calls"].as_u64().unwrap())
        .sum();
    assert_eq!(failed_total, failed.len() as u64);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains("<strong>Incomplete:</strong> "),
        "no warning in the report"
    );
}

#[test]
fn a_spent_quota_and_a_reply_marked_final_are_not_retried() {
    // Every summary: a 429 for an exhausted quota. Every judgement of a
    // probe answer: a 503 that the server says not to retry.
    let server = Server::start(Options {
        faults: Some(Box::new(|_, _, body| {
            let prompt = body["messages"][0]["content"].as_str().unwrap_or("");
            if prompt.contains("Please summarize") {
                Some(Fault::Error(429, "insufficient_quota", vec![]))
            } else if body["response_format"]["type"] == "json_object" {
                Some(Fault::Error(
                    503,
                    "server_error",
                    vec![("x-should-retry", "false".into())],
                ))
            } else {
                None
            }
        })),
        ..Options::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &server, "max_retries = 4");
    let o = run(dir.path(), &cfg, "out", &["--strategies", "summary"]);
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let calls = rows(&dir.path().join("out/calls.csv"));
    let failed: Vec<_> = calls.iter().filter(|c| !c["error"].is_empty()).collect();
    let kinds = |k: &str| failed.iter().filter(|c| c["kind"] == k).count();
    assert!(
        kinds("summarize") > 0 && kinds("judge_answer") > 0,
        "{failed:?}"
    );
    for c in &failed {
        assert_eq!(c["attempts"], "1", "retried: {c:?}");
    }
    assert!(
        failed
            .iter()
            .any(|c| c["kind"] == "summarize" && c["error"].contains("insufficient_quota")),
        "{failed:?}"
    );
}

#[test]
fn a_judge_reply_that_is_not_usable_is_retried_once_then_left_unjudged() {
    // First summary: bad JSON, then a good verdict. Second: a score out of
    // range twice. Then normal verdicts.
    let server = Server::start(Options {
        judge_replies: vec![
            "this is not json".into(),
            r#"{"score": 0.5, "missing": [], "accurate": false}"#.into(),
            r#"{"score": 7, "missing": [], "accurate": true}"#.into(),
            r#"{"score": "high"}"#.into(),
        ],
        ..Options::default()
    });
    let dir = tempfile::tempdir().unwrap();
    // One strategy and no probe answers, so the judge's calls come in order.
    // A local server that needs no key.
    let cfg = config(
        dir.path(),
        &server,
        "answer_probes = false\nmax_concurrency = 1\nrequire_key = false",
    );
    let o = Command::new(env!("CARGO_BIN_EXE_memeval"))
        .args([
            "run",
            &shipped("travel-multihop"),
            "--config",
            &cfg.display().to_string(),
            "--out",
            &dir.path().join("out").display().to_string(),
            "--strategies",
            "summary",
            "--set",
            "summary.trigger_tokens=200",
            "--no-timings",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    ok(&o);
    let s = rows(&dir.path().join("out/summaries.csv"));
    assert!(s.len() >= 3, "{s:?}");
    assert_eq!(s[0]["quality"], "0.5");
    assert_eq!(s[0]["accurate"], "0");
    assert_eq!(s[1]["quality"], "", "{:?}", s[1]);
    assert!(
        s[1]["judge_reason"].starts_with("unjudged: twice an unusable reply (score 7 is outside 0..1; then score is \"high\", not a number)"),
        "{:?}",
        s[1]
    );
    assert_eq!(s[2]["quality"], "0.75");
    let results: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out/results.json")).unwrap())
            .unwrap();
    assert_eq!(results["totals"][0]["unjudged_summaries"], 1);
    let probes = rows(&dir.path().join("out/probes.csv"));
    assert!(
        probes
            .iter()
            .all(|p| p["answer"].is_empty() && p["judge_reason"] == "probe answers are off")
    );
}

#[test]
fn embeddings_are_batched_and_concurrency_is_bounded_and_filled() {
    let server = Server::start(Options {
        latency: Duration::from_millis(40),
        ..Options::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &server, "embed_batch = 8\nmax_concurrency = 3");
    ok(&run(
        dir.path(),
        &cfg,
        "out",
        &["--strategies", "hybrid,vector"],
    ));
    let sizes = server.stats.batch_sizes.lock().unwrap().clone();
    assert!(sizes.iter().all(|&n| n <= 8), "{sizes:?}");
    assert!(sizes.iter().filter(|&&n| n == 8).count() >= 4, "{sizes:?}");
    assert_eq!(
        server.stats.max_in_flight.load(Ordering::SeqCst),
        3,
        "the concurrency limit is reached, never passed"
    );
}

#[test]
fn a_custom_summary_prompt_and_a_key_from_a_file() {
    let server = Server::start(Options::default());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("prompt.txt"),
        "Condense this support chat for a colleague.\n{prior_summary}{conversation}\nCondensed:",
    )
    .unwrap();
    std::fs::write(dir.path().join("key.txt"), "sk-from-a-file-0042\n").unwrap();
    let cfg = config(
        dir.path(),
        &server,
        "summary_prompt_file = \"prompt.txt\"\napi_key_env = \"MEMEVAL_UNSET_VARIABLE\"\napi_key_file = \"key.txt\"",
    );
    ok(&run(dir.path(), &cfg, "out", &["--strategies", "summary"]));
    let prompts = server.stats.prompts.lock().unwrap().clone();
    let summaries: Vec<&String> = prompts
        .iter()
        .filter(|p| p.starts_with("Condense this support chat"))
        .collect();
    assert!(summaries.len() >= 2, "{prompts:?}");
    assert!(
        summaries[1].contains("Prior summary:\n"),
        "{}",
        summaries[1]
    );
    assert!(summaries[0].contains("USER: "), "{}", summaries[0]);
    assert!(!prompts.iter().any(|p| p.contains("Please summarize")));
    assert!(
        server
            .stats
            .auth
            .lock()
            .unwrap()
            .iter()
            .all(|a| a == "Bearer sk-from-a-file-0042")
    );

    // A template that never places the conversation is refused up front.
    std::fs::write(dir.path().join("prompt.txt"), "Summarize.").unwrap();
    let o = run(dir.path(), &cfg, "bad", &[]);
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("prompt.txt") && stderr.contains("{conversation}"),
        "{stderr}"
    );
    assert!(!dir.path().join("bad").exists(), "nothing is written");
}

#[test]
fn the_key_never_reaches_an_output_in_any_case_cut_or_in_the_url() {
    // The server echoes the key upper-cased, lower-cased and cut to 12
    // characters in every error body; every summarization fails.
    let server = Server::start(Options {
        faults: Some(summaries_fail()),
        error_echo: Some(format!(
            "{} / {} / {}",
            KEY.to_uppercase(),
            KEY.to_lowercase(),
            &KEY[..12]
        )),
        ..Options::default()
    });
    let dir = tempfile::tempdir().unwrap();
    // The key also stands in the URL's credentials.
    let with_credentials = server
        .url
        .replace("http://", &format!("http://user:{KEY}@"));
    let cfg = config(
        dir.path(),
        &server,
        &format!("max_retries = 0\nbase_url = \"{with_credentials}\""),
    );
    let o = run(dir.path(), &cfg, "out", &[]);
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let lower = KEY.to_lowercase();
    let leaks = |text: &str| text.to_lowercase().contains(&lower[..8]);
    assert!(!leaks(&String::from_utf8_lossy(&o.stderr)));
    assert!(!leaks(&String::from_utf8_lossy(&o.stdout)));
    let files = output_files(&dir.path().join("out"));
    for (name, bytes) in &files {
        assert!(
            !leaks(&String::from_utf8_lossy(bytes)),
            "the key reached {name}"
        );
    }
    let calls = rows(&dir.path().join("out/calls.csv"));
    assert!(
        calls
            .iter()
            .any(|c| c["error"].contains("[redacted] / [redacted] / [redacted]"))
    );
    // The requests still carried it, as the bearer.
    assert!(
        server
            .stats
            .auth
            .lock()
            .unwrap()
            .iter()
            .all(|a| a == &format!("Bearer {KEY}"))
    );
}

#[test]
fn a_missing_key_is_refused_before_anything_runs() {
    let server = Server::start(Options::default());
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &server,
        "api_key_env = \"MEMEVAL_UNSET_VARIABLE\"",
    );
    let o = run(dir.path(), &cfg, "out", &[]);
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("no API key") && stderr.contains("MEMEVAL_UNSET_VARIABLE"),
        "{stderr}"
    );
    assert_eq!(server.requests(), 0);
    // Nothing was left behind: the corrected run starts clean.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!left.iter().any(|n| n.contains("out")), "{left:?}");
    // A missing key file likewise.
    let cfg = config(
        dir.path(),
        &server,
        "api_key_env = \"MEMEVAL_UNSET_VARIABLE\"\napi_key_file = \"nowhere.key\"",
    );
    let o = run(dir.path(), &cfg, "out", &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nowhere.key"));
    assert!(!dir.path().join(".out.partial").exists() && !dir.path().join("out").exists());
    // A server that needs no key is allowed when said so.
    let cfg = config(
        dir.path(),
        &server,
        "api_key_env = \"MEMEVAL_UNSET_VARIABLE\"\nrequire_key = false",
    );
    ok(&run(dir.path(), &cfg, "out", &["--strategies", "window"]));
}

#[test]
fn a_question_asked_at_a_date_is_told_the_date() {
    let server = Server::start(Options::default());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lme = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/longmemeval-excerpt.json");
    let o = Command::new(env!("CARGO_BIN_EXE_memeval"))
        .args([
            "import",
            "longmemeval",
            lme.to_str().unwrap(),
            "--out",
            "sc",
        ])
        .current_dir(d)
        .output()
        .unwrap();
    ok(&o);
    let cfg = config(d, &server, "");
    let o = Command::new(env!("CARGO_BIN_EXE_memeval"))
        .args([
            "run",
            "sc",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            "out",
            "--strategies",
            "window",
        ])
        .current_dir(d)
        .env("MEMEVAL_TEST_KEY", KEY)
        .output()
        .unwrap();
    ok(&o);
    let asked = server.stats.last_prompts.lock().unwrap().clone();
    // LongMemEval's question_date "2023/06/02 (Fri) 10:00", in the answering call.
    assert!(
        asked.iter().any(|p| p
            == "Current date: 2023-06-02 (Friday) 10:00\nWhich city did I say my brother moved to?"),
        "{asked:?}"
    );
}

#[test]
fn imported_benchmarks_are_judged_by_their_own_rules() {
    let server = Server::start(Options::default());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    for (dataset, file, out) in [
        ("longmemeval", "longmemeval-excerpt.json", "lme"),
        ("locomo", "locomo-excerpt.json", "loc"),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_memeval"))
            .args([
                "import",
                dataset,
                data.join(file).to_str().unwrap(),
                "--out",
                out,
            ])
            .current_dir(d)
            .output()
            .unwrap();
        ok(&o);
    }
    let cfg = config(d, &server, "");
    for out in ["lme", "loc"] {
        let o = Command::new(env!("CARGO_BIN_EXE_memeval"))
            .args([
                "run",
                out,
                "--config",
                cfg.to_str().unwrap(),
                "--out",
                &format!("{out}-run"),
                "--strategies",
                "buffer",
            ])
            .current_dir(d)
            .env("MEMEVAL_TEST_KEY", KEY)
            .output()
            .unwrap();
        ok(&o);
    }
    let prompts = server.stats.prompts.lock().unwrap().clone();
    let judged = |needle: &str| prompts.iter().any(|p| p.contains(needle));
    // LongMemEval: its rule per question type, with the reference as its
    // kind names it.
    assert!(judged("Correct answer: Porto"), "{prompts:?}");
    assert!(judged("it recognizes that the question cannot be answered"));
    assert!(judged("Explanation: "));
    // LoCoMo: the J question, generous about wording and dates.
    assert!(judged("Gold answer: Biscuit"));
    assert!(judged("whatever the format"));
    // Every answer with a reference got a verdict (the label parsed).
    let probes = rows(&d.join("loc-run/probes.csv"));
    assert!(!probes.is_empty());
    for p in &probes {
        assert!(!p["answer_correct"].is_empty(), "{p:?}");
    }
    // The task-averaged accuracy beside the overall one.
    let results: Value =
        serde_json::from_slice(&std::fs::read(d.join("lme-run/results.json")).unwrap()).unwrap();
    let buffer = &results["totals"][0];
    assert!(
        buffer["published"]["task_averaged_accuracy"].is_number(),
        "{buffer}"
    );
}

#[test]
fn tool_calls_and_results_are_sent_in_the_chat_format() {
    let server = Server::start(Options::default());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A reply generated after a tool's result, and probes answered from
    // contexts that hold calls and results.
    std::fs::write(
        d.join("tools.json"),
        r#"{"format": 1.1, "name": "tools", "facts": [{"id": "eta", "expect": ["14 March"]}], "turns": [
            {"role": "user", "content": "Where is my order A-1042?"},
            {"role": "assistant", "tool_calls": [{"id": "call_1", "name": "lookup_order", "arguments": "{\"order\": \"A-1042\"}"}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"eta\": \"14 March\"}", "plants": ["eta"]},
            {"role": "assistant"},
            {"probe": "When does my order arrive?", "expects": ["eta"]}]}"#,
    )
    .unwrap();
    let cfg = config(d, &server, "");
    let o = Command::new(env!("CARGO_BIN_EXE_memeval"))
        .args([
            "run",
            "tools.json",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            "out",
        ])
        .args(["--strategies", "window,hybrid", "--no-timings"])
        .current_dir(d)
        .env("MEMEVAL_TEST_KEY", KEY)
        .output()
        .unwrap();
    ok(&o);
    let chats = server.stats.chats.lock().unwrap().clone();
    let with_tools: Vec<&Vec<Value>> = chats
        .iter()
        .filter(|c| c.iter().any(|m| m["role"] == "tool"))
        .collect();
    // The generated reply and the probe's answer (the other strategy's
    // same requests come from the cache).
    assert!(with_tools.len() >= 2, "{chats:#?}");
    assert!(
        with_tools
            .iter()
            .any(|c| c.last().unwrap()["content"] == "When does my order arrive?"),
        "{chats:#?}"
    );
    for chat in with_tools {
        let at = chat.iter().position(|m| m["role"] == "tool").unwrap();
        let (call, result) = (&chat[at - 1], &chat[at]);
        assert_eq!(call["role"], "assistant", "{chat:#?}");
        // No text: no content field, as the API asks.
        assert!(call.get("content").is_none_or(Value::is_null), "{call}");
        let c = &call["tool_calls"][0];
        assert_eq!(c["id"], "call_1");
        assert_eq!(c["type"], "function");
        assert_eq!(c["function"]["name"], "lookup_order");
        assert_eq!(c["function"]["arguments"], r#"{"order": "A-1042"}"#);
        assert_eq!(result["tool_call_id"], "call_1");
        assert_eq!(result["content"], r#"{"eta": "14 March"}"#);
    }
    // The call after the result is a model call, and well formed.
    let turns = common::rows(&d.join("out/turns.csv"));
    let third: Vec<_> = turns.iter().filter(|r| r["turn"] == "3").collect();
    assert!(
        third
            .iter()
            .all(|r| r["call"] == "1" && r["malformed"] == "0"),
        "{third:?}"
    );
    assert!(
        turns
            .iter()
            .any(|r| r["turn"] == "4" && r["generated"] == "1")
    );
}
