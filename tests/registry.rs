//! Many users through the memory registry, through the real binary: users
//! interleaved through 1 or 3 live memories give exactly the outputs of
//! users replayed alone, and no context ever holds another user's message,
//! even where users share vocabulary and fact types.

use std::path::Path;

mod common;
use common::{memeval, shipped};

use serde_json::Value;

fn ok(o: std::process::Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Seven shipped scenarios (one with tool calls) and three generated users
/// who talk alike.
fn population(d: &Path) -> Vec<String> {
    let mut files: Vec<String> = [
        "cold-start-billing",
        "dbt-fanout-support",
        "knowledge-updates",
        "pronoun-followups",
        "returning-renovation",
        "support-orders",
        "travel-multihop",
    ]
    .iter()
    .map(|s| shipped(s))
    .collect();
    for seed in 1..=3 {
        let file = d.join(format!("user-{seed}.json"));
        ok(memeval(
            &[
                "generate",
                "--messages",
                "240",
                "--facts",
                "6",
                "--every",
                "40",
                "--seed",
                &seed.to_string(),
                "--name",
                &format!("user-{seed}"),
                "-o",
                file.to_str().unwrap(),
            ],
            d,
        ));
        files.push(file.display().to_string());
    }
    files
}

fn run(d: &Path, files: &[String], out: &str, registry: u32, cache_mb: u32) -> String {
    let mut args: Vec<String> = vec!["run".into()];
    args.extend(files.iter().cloned());
    args.extend(
        [
            "--out",
            out,
            "--no-timings",
            "--set",
            &format!("registry.max_active_users={registry}"),
            "--set",
            &format!("registry.scenario_cache_mb={cache_mb}"),
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(memeval(&args, d))
}

fn results_without_registry_size(path: &Path) -> Value {
    let mut v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["meta"]["config"]["registry"] = Value::Null;
    v
}

#[test]
fn interleaved_users_through_a_small_registry_lose_nothing_and_leak_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let files = population(d);
    // Scenarios kept loaded for the whole run (they fit in 64 MB), or none:
    // each replay's scenario read back from the run's spool, and every
    // evicted user's dropped and read back when it is taken in again.
    run(d, &files, "alone", 0, 0);
    let said = run(d, &files, "one", 1, 64);
    run(d, &files, "three", 3, 0);
    assert!(
        said.contains("registry: 10 users through 1 live memories"),
        "{said}"
    );
    assert!(!d.join("alone/registry.json").exists());
    assert!(!d.join("alone/scenarios.spool").exists());
    for dir in ["one", "three"] {
        for f in ["turns.csv", "probes.csv", "summaries.csv"] {
            assert!(
                std::fs::read(d.join("alone").join(f)).unwrap()
                    == std::fs::read(d.join(dir).join(f)).unwrap(),
                "{f} differs with a registry of {dir}"
            );
        }
        assert_eq!(
            results_without_registry_size(&d.join("alone/results.json")),
            results_without_registry_size(&d.join(dir).join("results.json")),
            "results.json differs with a registry of {dir}"
        );
        assert!(!d.join(dir).join("scenarios.spool").exists());
        let reg: Value =
            serde_json::from_slice(&std::fs::read(d.join(dir).join("registry.json")).unwrap())
                .unwrap();
        assert!(reg["evictions"].as_u64().unwrap() > 100, "{reg}");
        assert!(reg["reloads"].as_u64().unwrap() > 100, "{reg}");
    }
    // Isolation: no probe's context held another user's message.
    let mut rd = csv::Reader::from_path(d.join("one/probes.csv")).unwrap();
    let leaked = rd
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "leaked")
        .unwrap();
    let mut probes = 0;
    for row in rd.records() {
        assert_eq!(&row.unwrap()[leaked], "0");
        probes += 1;
    }
    assert!(probes > 500, "{probes} probes");
}

#[test]
fn latencies_per_stage_with_timings() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let files: Vec<String> = [
        "travel-multihop",
        "returning-renovation",
        "needle-cabin-wifi",
    ]
    .iter()
    .map(|s| shipped(s))
    .collect();
    let mut args: Vec<&str> = vec!["run"];
    args.extend(files.iter().map(String::as_str));
    args.extend([
        "--out",
        "t",
        "--set",
        "registry.max_active_users=1",
        "--strategies",
        "hybrid",
    ]);
    let o = memeval(&args, d);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("latency per stage, p50 / p95 / p99 in µs"),
        "{stdout}"
    );
    let v: Value =
        serde_json::from_slice(&std::fs::read(d.join("t/results.json")).unwrap()).unwrap();
    let stages = &v["totals"][0]["stages"];
    for stage in [
        "tokenize",
        "embed",
        "index_insert",
        "search",
        "build",
        "persist",
        "summarize",
        // These users' sittings are days apart: replayed by time, each is
        // evicted once the next one starts, and none comes back.
        "evict",
    ] {
        assert!(
            stages[stage]["count"].as_u64().unwrap_or(0) > 0,
            "{stage}: {stages}"
        );
        let (p50, p99) = (
            stages[stage]["p50_us"].as_u64().unwrap(),
            stages[stage]["p99_us"].as_u64().unwrap(),
        );
        assert!(p50 <= p99, "{stage}: {stages}");
    }
}

/// A population larger than the report draws: every scenario is in the
/// tables and results.json, the report's sections, charts and the terminal
/// table hold the first 24 by name, and the fact-position chart still
/// counts every probe; the journal the rows were written through is gone.
#[test]
fn a_population_is_summarized_whole_and_drawn_in_part() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(memeval(
        &[
            "generate",
            "--users",
            "30",
            "--messages",
            "40",
            "--every",
            "10",
            "--out",
            "pop",
        ],
        d,
    ));
    let o = memeval(
        &[
            "run",
            "pop",
            "--out",
            "out",
            "--no-timings",
            "--strategies",
            "window,vector",
            "--set",
            "registry.max_active_users=4",
        ],
        d,
    );
    ok(o.clone());
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("the first 24 of 30 scenarios are listed"),
        "{stdout}"
    );
    let out = d.join("out");
    let v: Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(v["results"].as_array().unwrap().len(), 60);
    let probes: u64 = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["strategy"] == "vector")
        .map(|r| r["probes"].as_u64().unwrap())
        .sum();
    assert_eq!(v["totals"][1]["probes"].as_u64().unwrap(), probes);
    let turns = csv::Reader::from_path(out.join("turns.csv"))
        .unwrap()
        .records()
        .count();
    assert_eq!(turns, 30 * 40 * 2);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_eq!(html.matches("<details id=\"scenario-").count() + 1, 24);
    assert!(html.contains("for the first 24 of 30 scenarios"));
    let drawn = std::fs::read_dir(out.join("charts"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_dir())
        .count();
    assert_eq!(drawn, 24);
    assert!(out.join("charts/overview-position.svg").is_file());
    assert!(!d.join(".out.partial").exists());
    assert!(!out.join("journal.sqlite").exists());
}
