//! `memeval run` end to end through the real binary, on the shipped
//! scenarios: the acceptance criteria of the product, determinism, golden
//! outputs, and where outputs go.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::{memeval, output_files as files};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run_ok(args: &[&str], cwd: &Path) -> Output {
    let out = memeval(args, cwd);
    assert!(
        out.status.success(),
        "memeval {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn scenarios() -> String {
    root().join("scenarios").display().to_string()
}

fn results(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap()
}

/// (scenario, strategy) -> result object.
fn by_job(v: &Value) -> BTreeMap<(String, String), Value> {
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                (
                    r["scenario"].as_str().unwrap().to_string(),
                    r["strategy"].as_str().unwrap().to_string(),
                ),
                r.clone(),
            )
        })
        .collect()
}

#[test]
fn shipped_scenarios_meet_the_acceptance_criteria() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = run_ok(
        &[
            "run",
            &scenarios(),
            "--out",
            out.to_str().unwrap(),
            "--no-timings",
        ],
        tmp.path(),
    );
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("TOTAL") && table.contains("dbt-fanout-support"),
        "{table}"
    );

    let v = results(&out);
    let jobs = by_job(&v);
    assert_eq!(jobs.len(), 13 * 5, "13 scenarios x 5 strategies");
    for ((scenario, strategy), r) in &jobs {
        assert_eq!(r["leaked"], 0, "{scenario}/{strategy} leaked");
        // No built-in strategy cuts a tool call from its results.
        assert_eq!(r["malformed_calls"], 0, "{scenario}/{strategy} malformed");
        if strategy == "buffer" && r["over_window_turns"] == 0 {
            assert_eq!(r["mean_recall"], 1.0, "{scenario}: buffer recall");
            assert_eq!(r["final_recall"], 1.0, "{scenario}: buffer final recall");
        }
        if strategy == "vector" || strategy == "hybrid" {
            assert_eq!(r["duplicated"], 0, "{scenario}/{strategy} duplicated");
        }
    }
    // The summary strategy keeps its context bounded however long the
    // conversation: 3,000 messages cost no more per call than 1,000.
    let max = |s: &str, k: &str| {
        jobs[&(s.to_string(), k.to_string())]["max_context_tokens"]
            .as_u64()
            .unwrap()
    };
    for k in ["summary", "hybrid", "window", "vector"] {
        assert!(
            max("generated-3000", k) <= 8000,
            "{k} exceeds max_context_tokens"
        );
        assert!(
            max("generated-3000", k) as f64 <= max("generated-1000", k) as f64 * 1.1,
            "{k} grows with the conversation"
        );
    }
    assert!(max("generated-3000", "buffer") > 3 * max("generated-1000", "buffer"));
    // Summaries are written and scored on long conversations.
    let g3k = &jobs[&("generated-3000".into(), "summary".into())];
    assert!(g3k["summaries"].as_u64().unwrap() > 10);
    let q = g3k["mean_quality"].as_f64().unwrap();
    assert!(q > 0.0 && q <= 1.0);
    // Stale facts are counted on the update scenario.
    assert!(
        jobs[&("knowledge-updates".into(), "vector".into())]["stale"]
            .as_u64()
            .unwrap()
            > 0
    );
    // The window forgets the needle; retrieval brings it back.
    let needle = |k: &str| {
        jobs[&("needle-cabin-wifi".into(), k.into())]["final_recall"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(needle("window"), 0.0);
    assert_eq!(needle("vector"), 1.0);

    // Totals per strategy, and the run's metadata with file hashes.
    assert_eq!(v["totals"].as_array().unwrap().len(), 5);
    let meta = &v["meta"];
    assert_eq!(meta["format_version"], 1);
    assert_eq!(meta["seed"], 42);
    assert_eq!(meta["encoding"], "o200k_base");
    assert_eq!(meta["scenarios"].as_array().unwrap().len(), 13);
    assert_eq!(meta["scenarios"][0]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(meta["config"]["summary"]["trigger_tokens"], 4000);
    assert!(out.join("metadata.json").is_file());

    // Every column of OUTPUTS.md is there.
    let header = |f: &str| {
        std::fs::read_to_string(out.join(f))
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_string()
    };
    for (file, cols) in [
        (
            "turns.csv",
            "scenario user strategy session turn role tokens_system tokens_summary tokens_retrieved tokens_buffer context_tokens summarizer_tokens embedding_tokens cumulative_tokens cost_usd over_budget over_window build_us",
        ),
        (
            "probes.csv",
            "scenario user strategy probe_id kind turn expected recalled recall stale leaked duplicated fact_position context_tokens answer answer_correct judge_reason",
        ),
        (
            "summaries.csv",
            "scenario strategy summary_index turn covered_messages summary_tokens quality sampled missing fact_retention",
        ),
    ] {
        let h = header(file);
        let have: Vec<&str> = h.split(',').collect();
        for c in cols.split(' ') {
            assert!(have.contains(&c), "{file} lacks {c}");
        }
    }
    for key in [
        "scenario",
        "strategy",
        "messages",
        "probes",
        "mean_recall",
        "final_recall",
        "recall_auc",
        "stale",
        "leaked",
        "duplicated",
        "total_tokens",
        "mean_context_tokens",
        "p95_context_tokens",
        "max_context_tokens",
        "summaries",
        "mean_quality",
        "cost_usd",
        "over_window_turns",
        "build_p50_us",
        "build_p95_us",
        "build_p99_us",
    ] {
        assert!(
            v["results"][0].get(key).is_some(),
            "results.json lacks {key}"
        );
    }
}

#[test]
fn the_same_command_twice_gives_byte_identical_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for dir in [&a, &b] {
        run_ok(
            &[
                "run",
                &scenarios(),
                "--out",
                dir.to_str().unwrap(),
                "--no-timings",
                "-q",
            ],
            tmp.path(),
        );
    }
    let (fa, fb) = (files(&a), files(&b));
    for name in [
        "metadata.json",
        "probes.csv",
        "results.json",
        "summaries.csv",
        "turns.csv",
        "report.html",
        "charts/overview-recall.png",
        "charts/needle-cabin-wifi/budget.svg",
    ] {
        assert!(fa.contains_key(name), "{name} missing: {:?}", fa.keys());
    }
    // Charts and the report are deterministic too, pixel for pixel.
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (name, bytes) in &fa {
        assert!(bytes == &fb[name], "{name} differs between two runs");
    }
    // With timings on, only the timing columns may differ, and one worker
    // gives the same outputs as many.
    let c = tmp.path().join("c");
    run_ok(
        &[
            "run",
            &scenarios(),
            "--out",
            c.to_str().unwrap(),
            "-q",
            "--jobs",
            "1",
        ],
        tmp.path(),
    );
    let strip_csv = |bytes: &[u8]| -> String {
        let text = String::from_utf8_lossy(bytes).into_owned();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let keep: Vec<bool> = header.iter().map(|h| !h.ends_with("_us")).collect();
        let mut rd = csv::Reader::from_reader(text.as_bytes());
        rd.records()
            .map(|r| {
                r.unwrap()
                    .iter()
                    .zip(&keep)
                    .filter(|(_, k)| **k)
                    .map(|(f, _)| f.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let fc = files(&c);
    for name in ["turns.csv", "probes.csv", "summaries.csv"] {
        assert_eq!(strip_csv(&fa[name]), strip_csv(&fc[name]), "{name}");
    }
    let strip_json = |bytes: &[u8]| -> Value {
        let mut v: Value = serde_json::from_slice(bytes).unwrap();
        v["meta"]["timings"] = Value::Null;
        for section in ["results", "totals"] {
            for r in v[section].as_array_mut().unwrap() {
                for k in ["build_p50_us", "build_p95_us", "build_p99_us"] {
                    r[k] = Value::Null;
                }
                // Latencies per stage are timings too.
                r.as_object_mut().unwrap().remove("stages");
            }
        }
        v
    };
    assert_eq!(
        strip_json(&fa["results.json"]),
        strip_json(&fc["results.json"])
    );
}

/// Golden files: a change in any output column shows up in review.
/// Regenerate with `MEMEVAL_BLESS=1 cargo test --test run golden`.
#[test]
fn golden_outputs_of_a_small_run() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let scenario = root().join("scenarios/knowledge-updates.json");
    // Small budgets so that this short scenario summarizes and slides.
    run_ok(
        &[
            "run",
            "scenarios/knowledge-updates.json",
            "scenarios/cold-start-billing.json",
            "--out",
            out.to_str().unwrap(),
            "--no-timings",
            "-q",
            "--set",
            "summary.trigger_tokens=700",
            "--set",
            "summary.max_summary_tokens=200",
            "--set",
            "window.max_tokens=600",
            "--set",
            "vector.keyword_fallback=true",
        ],
        &root(),
    );
    assert!(scenario.is_file());
    // The store is whole in its one file: no write-ahead log or its index
    // left beside it (report.html's inspector reads it last).
    assert!(out.join("report.html").is_file());
    for leftover in ["memory.sqlite-wal", "memory.sqlite-shm"] {
        assert!(
            !out.join(leftover).exists(),
            "{leftover} left in the run's folder"
        );
    }
    let golden = root().join("tests/golden");
    let bless = std::env::var_os("MEMEVAL_BLESS").is_some();
    for name in ["turns.csv", "probes.csv", "summaries.csv", "results.json"] {
        let got = std::fs::read_to_string(out.join(name)).unwrap();
        let path = golden.join(name);
        if bless {
            std::fs::create_dir_all(&golden).unwrap();
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("{} missing: run with MEMEVAL_BLESS=1", path.display()));
        if got != want {
            let (g, w): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
            let at = g
                .iter()
                .zip(&w)
                .position(|(a, b)| a != b)
                .unwrap_or(g.len().min(w.len()));
            panic!(
                "{name} differs from the golden file at line {}:\n  got:  {}\n  want: {}\n(MEMEVAL_BLESS=1 regenerates it)",
                at + 1,
                g.get(at).unwrap_or(&"<end>"),
                w.get(at).unwrap_or(&"<end>")
            );
        }
    }
}

#[test]
fn outputs_go_to_a_fresh_folder_and_are_never_overwritten_silently() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = root().join("scenarios/travel-multihop.json");
    let s = scenario.to_str().unwrap();
    // Default: reports/<timestamp>, with reports/latest pointing at it.
    run_ok(&["run", s, "-q"], tmp.path());
    run_ok(&["run", s, "-q"], tmp.path());
    let reports = tmp.path().join("reports");
    let runs: Vec<String> = std::fs::read_dir(&reports)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "latest")
        .collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(reports.join("latest/results.json").is_file());
    // An explicit --out that holds files needs --force.
    let out = tmp.path().join("mine");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "keep me").unwrap();
    let o = memeval(&["run", s, "--out", "mine", "-q"], tmp.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
    assert!(out.join("notes.txt").is_file());
    // --force replaces only what memeval wrote: not someone's notes.
    let o = memeval(&["run", s, "--out", "mine", "-q", "--force"], tmp.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("memeval did not write it"));
    assert_eq!(std::fs::read(out.join("notes.txt")).unwrap(), b"keep me");
    std::fs::remove_file(out.join("notes.txt")).unwrap();
    run_ok(&["run", s, "--out", "mine", "-q"], tmp.path());
    run_ok(&["run", s, "--out", "mine", "-q", "--force"], tmp.path());
    assert!(out.join("turns.csv").is_file() && out.join(".memeval-output").is_file());
    // No staging folders are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("partial")
        })
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn strategies_and_parameters_from_flags_config_and_set() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("memeval.toml"),
        "seed = 7\nstrategies = [\"window\", \"summary\"]\n[window]\nmax_tokens = 300\n",
    )
    .unwrap();
    let s = root().join("scenarios/dbt-fanout-support.json");
    run_ok(
        &[
            "run",
            s.to_str().unwrap(),
            "--out",
            "o",
            "-q",
            "--set",
            "window.max_tokens=250",
        ],
        tmp.path(),
    );
    let v = results(&tmp.path().join("o"));
    assert_eq!(v["meta"]["seed"], 7);
    assert_eq!(v["meta"]["config"]["window"]["max_tokens"], 250);
    let strategies: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["strategy"].as_str().unwrap())
        .collect();
    assert_eq!(strategies, ["window", "summary"]);
    // A 250-token window really forgets what the unsummarized buffer keeps.
    let recall = |i: usize| v["results"][i]["mean_recall"].as_f64().unwrap();
    assert!(
        recall(0) < 0.6 && recall(1) == 1.0,
        "{} {}",
        recall(0),
        recall(1)
    );
    // Flags win over the file.
    run_ok(
        &[
            "run",
            s.to_str().unwrap(),
            "--out",
            "p",
            "-q",
            "--seed",
            "9",
            "--strategies",
            "buffer",
        ],
        tmp.path(),
    );
    let v = results(&tmp.path().join("p"));
    assert_eq!(v["meta"]["seed"], 9);
    assert_eq!(v["results"].as_array().unwrap().len(), 1);
    assert_eq!(v["results"][0]["strategy"], "buffer");
}

#[test]
fn generate_writes_a_valid_seeded_scenario() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["a.json", "b.json"] {
        run_ok(
            &[
                "generate",
                "--messages",
                "300",
                "--facts",
                "5",
                "--seed",
                "3",
                "-o",
                name,
            ],
            tmp.path(),
        );
    }
    let a = std::fs::read(tmp.path().join("a.json")).unwrap();
    assert_eq!(a, std::fs::read(tmp.path().join("b.json")).unwrap());
    let o = run_ok(&["validate", "a.json"], tmp.path());
    assert!(String::from_utf8_lossy(&o.stdout).contains("300 messages"));
    let o = memeval(&["generate", "--messages", "5"], tmp.path());
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn help_teaches_and_shows_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run_ok(&["run", "--help"], tmp.path());
    let help = String::from_utf8_lossy(&o.stdout);
    for want in [
        "--set",
        "summary.trigger_tokens=2000",
        "default: 42",
        "reports/<timestamp>",
        "--no-timings",
    ] {
        assert!(help.contains(want), "{want} missing from run --help");
    }
    let o = run_ok(&["--help"], tmp.path());
    assert!(String::from_utf8_lossy(&o.stdout).contains("Exit codes"));
}

/// Dropping and restoring every memory at session boundaries changes
/// nothing: the same conversation as one session gives the same outputs.
#[test]
fn session_boundaries_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    for name in [
        "returning-renovation",
        "dbt-fanout-support",
        "needle-cabin-wifi",
    ] {
        let text = std::fs::read_to_string(root().join(format!("scenarios/{name}.json"))).unwrap();
        let mut v: Value = serde_json::from_str(&text).unwrap();
        let sessions = v.as_object_mut().unwrap().remove("sessions").unwrap();
        let turns: Vec<Value> = sessions
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["turns"].as_array().unwrap().clone())
            .collect();
        v["turns"] = Value::Array(turns);
        let (a, b) = (
            tmp.path().join(format!("{name}-a")),
            tmp.path().join(format!("{name}-b")),
        );
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(a.join("s.json"), &text).unwrap();
        std::fs::write(b.join("s.json"), serde_json::to_string(&v).unwrap()).unwrap();
        for dir in [&a, &b] {
            run_ok(
                &["run", "s.json", "--out", "out", "--no-timings", "-q"],
                dir,
            );
        }
        let read = |d: &Path, f: &str| std::fs::read_to_string(d.join("out").join(f)).unwrap();
        // Retrieval scored by session differs by construction; nothing else may.
        let by_turn = |d: &Path| -> Vec<Vec<String>> {
            let mut r = csv::Reader::from_path(d.join("out/probes.csv")).unwrap();
            let keep: Vec<bool> = r
                .headers()
                .unwrap()
                .iter()
                .map(|h| !h.contains("_session_"))
                .collect();
            r.records()
                .map(|row| {
                    row.unwrap()
                        .iter()
                        .zip(&keep)
                        .filter(|(_, k)| **k)
                        .map(|(c, _)| c.to_string())
                        .collect()
                })
                .collect()
        };
        assert_eq!(by_turn(&a), by_turn(&b), "{name}");
        assert_eq!(
            read(&a, "summaries.csv"),
            read(&b, "summaries.csv"),
            "{name}"
        );
        // turns.csv differs only in the session column.
        let without_session = |t: String| -> Vec<String> {
            t.lines()
                .map(|l| {
                    let mut f: Vec<&str> = l.split(',').collect();
                    f.remove(4); // the session column
                    f.join(",")
                })
                .collect()
        };
        assert_eq!(
            without_session(read(&a, "turns.csv")),
            without_session(read(&b, "turns.csv")),
            "{name}"
        );
    }
}

#[test]
fn strategies_are_compared_pairwise_with_seeded_intervals() {
    let tmp = tempfile::tempdir().unwrap();
    let scenarios = ["travel-multihop", "knowledge-updates", "dbt-fanout-support"].map(|s| {
        root()
            .join(format!("scenarios/{s}.json"))
            .display()
            .to_string()
    });
    let run = |out: &str| {
        let mut args = vec!["run".to_string()];
        args.extend(scenarios.iter().cloned());
        args.extend(
            [
                "--out",
                out,
                "--no-timings",
                "--strategies",
                "window,summary,hybrid",
            ]
            .map(String::from),
        );
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_memeval"))
            .args(&args)
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let results: Value = serde_json::from_slice(
            &std::fs::read(tmp.path().join(out).join("results.json")).unwrap(),
        )
        .unwrap();
        (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            results["comparisons"].clone(),
        )
    };
    let (stdout, a) = run("a");
    let (_, b) = run("b");
    let pairs = a.as_array().unwrap();
    assert_eq!(pairs.len(), 3, "{a}");
    assert_eq!(
        (pairs[0]["first"].as_str(), pairs[0]["second"].as_str()),
        (Some("window"), Some("summary"))
    );
    assert_eq!(pairs[0]["resampled"], "scenarios");
    let r = &pairs[2]["recall"];
    assert!(
        r["ci_low"].as_f64() <= r["diff"].as_f64() && r["diff"].as_f64() <= r["ci_high"].as_f64()
    );
    // The same run, the same intervals.
    assert_eq!(a, b);
    assert!(stdout.contains("paired differences"), "{stdout}");
    assert!(stdout.contains("summary vs hybrid: recall "), "{stdout}");
    let report = std::fs::read_to_string(tmp.path().join("a/report.html")).unwrap();
    assert!(report.contains("Paired differences") && report.contains("window vs summary"));
    // The offline backend's answers are labelled as its extractive
    // baseline everywhere they appear, never as answer accuracy.
    assert!(
        stdout.contains("summary vs hybrid: recall ")
            && stdout.contains("; extractive baseline ")
            && !stdout.contains("; answers "),
        "{stdout}"
    );
    assert!(
        stdout.contains("(in brackets, the offline extractive baseline:"),
        "{stdout}"
    );
    assert!(report.contains("<th>extractive baseline</th>"));
    assert!(report.contains("in brackets, the offline extractive baseline"));
    let meta: Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("a/metadata.json")).unwrap())
            .unwrap();
    assert_eq!(meta["answers"], "extractive-baseline");
}
