//! A real model end to end: SmolLM2-135M served by llama.cpp's
//! OpenAI-compatible server (see the README's local model recipe; `.ci/run`
//! installs and starts it). Chat, summaries and judging go to the model;
//! embeddings come from the offline embedder, since that server cannot pool
//! them.
//!
//! Skipped unless `MEMEVAL_LOCAL_MODEL_URL` is set; a failure instead of a
//! skip with `MEMEVAL_REQUIRE_LOCAL_MODEL=1`.

mod common;

use std::process::Command;

use common::{rows, shipped};
use serde_json::Value;

#[test]
fn a_real_model_answers_summarizes_and_judges() {
    let Ok(url) = std::env::var("MEMEVAL_LOCAL_MODEL_URL") else {
        assert!(
            std::env::var("MEMEVAL_REQUIRE_LOCAL_MODEL").as_deref() != Ok("1"),
            "MEMEVAL_REQUIRE_LOCAL_MODEL=1 but MEMEVAL_LOCAL_MODEL_URL is not set"
        );
        eprintln!("skipped: set MEMEVAL_LOCAL_MODEL_URL to a llama.cpp server (see the README)");
        return;
    };
    let key = std::env::var("MEMEVAL_LOCAL_MODEL_KEY").unwrap_or_default();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("local.toml");
    // r50k_base (GPT-2's BPE) is the tiktoken encoding closest to SmolLM2's
    // own tokenizer; llama.cpp's chat template adds more per message than
    // OpenAI's format, so the API counts a little more than memeval does.
    std::fs::write(
        &cfg,
        format!(
            r#"backend = "openai"
strategies = ["summary", "hybrid"]
[model]
name = "smollm2-135m"
encoding = "r50k_base"
context_window = 8192
[summary]
trigger_tokens = 300
max_summary_tokens = 120
[openai]
base_url = "{url}"
api_key_env = "MEMEVAL_LOCAL_MODEL_KEY"
embeddings = "offline"
reply_max_tokens = 60
max_concurrency = 2
timeout_secs = 120
cache_path = "{}"
"#,
            dir.path().join("cache.sqlite").display()
        ),
    )
    .unwrap();
    let run = |out: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_memeval"))
            .args([
                "run",
                &shipped("travel-multihop"),
                "--config",
                &cfg.display().to_string(),
                "--out",
                &dir.path().join(out).display().to_string(),
                "--no-timings",
            ])
            .env("MEMEVAL_LOCAL_MODEL_KEY", &key)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "exit {:?}\n{stderr}", o.status.code());
        stderr
    };
    let first = run("a");
    let out = dir.path().join("a");

    // Complete: every call answered, summaries scored, answers judged.
    let calls = rows(&out.join("calls.csv"));
    assert!(calls.iter().all(|c| c["error"].is_empty()), "{first}");
    let summaries = rows(&out.join("summaries.csv"));
    assert!(!summaries.is_empty());
    assert!(summaries.iter().all(|s| !s["summary_tokens"].is_empty()));
    assert!(
        summaries.iter().any(|s| !s["quality"].is_empty()),
        "no summary judged: {summaries:?}"
    );
    let probes = rows(&out.join("probes.csv"));
    assert!(probes.iter().all(|p| !p["answer"].is_empty()), "{probes:?}");
    assert!(
        probes.iter().any(|p| !p["answer_correct"].is_empty()),
        "no answer judged: {probes:?}"
    );

    // Usage as the server reports it, beside memeval's own count.
    let usage: Value =
        serde_json::from_slice(&std::fs::read(out.join("usage.json")).unwrap()).unwrap();
    for kind in ["summarize", "answer", "judge_summary", "judge_answer"] {
        let u = &usage[kind];
        assert!(u["api_input_tokens"].as_u64().unwrap() > 0, "{kind}: {u}");
        let diff = u["input_diff_pct"].as_f64().unwrap();
        assert!(diff.abs() < 30.0, "{kind}: input counts differ by {diff}%");
    }

    // The rerun sends nothing and gives the same results.
    let second = run("b");
    assert!(second.contains("0 HTTP request(s) sent"), "{second}");
    for f in ["turns.csv", "probes.csv", "summaries.csv"] {
        assert_eq!(
            std::fs::read(out.join(f)).unwrap(),
            std::fs::read(dir.path().join("b").join(f)).unwrap(),
            "{f}"
        );
    }
    // The key reached no file.
    if key.len() >= 8 {
        for (name, bytes) in common::output_files(dir.path()) {
            assert!(
                !String::from_utf8_lossy(&bytes).contains(&key),
                "the key leaked into {name}"
            );
        }
    }
}
