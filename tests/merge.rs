//! `run --shard K/N` and `memeval merge` through the real binary: four
//! shards merged give the same files, byte for byte, as one run of every
//! scenario; incomplete or mismatched shards are refused.

use std::path::Path;

mod common;
use common::{memeval, output_files as tree, shipped};

const SCENARIOS: [&str; 6] = [
    "cold-start-billing",
    "dbt-fanout-support",
    "knowledge-updates",
    "pronoun-followups",
    "returning-renovation",
    "travel-multihop",
];

fn run(dir: &Path, out: &str, extra: &[&str]) -> std::process::Output {
    let files: Vec<String> = SCENARIOS.iter().map(|s| shipped(s)).collect();
    let mut args: Vec<&str> = vec!["run"];
    args.extend(files.iter().map(String::as_str));
    args.extend(["--out", out, "--no-timings", "-q"]);
    args.extend(extra);
    memeval(&args, dir)
}

fn ok(o: std::process::Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Every stored message and summary, in key order.
fn store_rows(path: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut rows = Vec::new();
    for sql in [
        "SELECT ns || '|' || number || '|' || owner || '|' || role || '|' || content || '|' || tokens || '|' || hex(embedding) FROM messages ORDER BY ns, number",
        "SELECT ns || '|' || idx || '|' || content || '|' || covered_to FROM summaries ORDER BY ns, idx",
    ] {
        let mut stmt = conn.prepare(sql).unwrap();
        rows.extend(
            stmt.query_map([], |r| r.get::<_, String>(0))
                .unwrap()
                .map(|r| r.unwrap()),
        );
    }
    rows
}

#[test]
fn four_shards_merged_equal_one_run() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(run(d, "whole", &[]));
    for k in 1..=4 {
        ok(run(
            d,
            &format!("shard{k}"),
            &["--shard", &format!("{k}/4")],
        ));
    }
    // Each shard ran its share only: every 4th scenario by name.
    let shard1: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("shard1/metadata.json")).unwrap()).unwrap();
    let names: Vec<&str> = shard1["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cold-start-billing", "returning-renovation"]);
    assert_eq!(shard1["shard"], "1/4");

    // Merged in any order.
    let o = memeval(
        &[
            "merge", "shard3", "shard1", "shard4", "shard2", "--out", "merged",
        ],
        d,
    );
    ok(o);
    let (whole, merged) = (tree(&d.join("whole")), tree(&d.join("merged")));
    assert_eq!(
        whole.keys().collect::<Vec<_>>(),
        merged.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &whole {
        assert!(
            bytes == &merged[name],
            "{name} differs between the merged and the whole run"
        );
    }
    assert_eq!(
        store_rows(&d.join("whole/memory.sqlite")),
        store_rows(&d.join("merged/memory.sqlite"))
    );
    // The merged run gates like the whole one.
    let o = memeval(&["gate", "--baseline", "whole", "--current", "merged"], d);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

/// `run` with the shard taken from `vars` (and no other shard variable
/// of the environment the tests run in).
fn run_env(dir: &Path, out: &str, vars: &[(&str, &str)]) -> std::process::Output {
    let files: Vec<String> = SCENARIOS.iter().map(|s| shipped(s)).collect();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_memeval"));
    cmd.arg("run")
        .args(&files)
        .args(["--out", out, "--no-timings", "-q", "--shard-from-env"])
        .current_dir(dir);
    for var in [
        "MEMEVAL_SHARD",
        "MEMEVAL_SHARD_INDEX",
        "MEMEVAL_SHARD_COUNT",
        "JOB_COMPLETION_INDEX",
        "CLOUD_RUN_TASK_INDEX",
        "CLOUD_RUN_TASK_COUNT",
        "AWS_BATCH_JOB_ARRAY_INDEX",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(vars.iter().copied());
    cmd.output().expect("run memeval")
}

/// The layout a GitHub Actions matrix leaves: each shard's run folder
/// uploaded as an artifact, all downloaded into one folder (a folder per
/// artifact); the shards pick their share from the environment as a
/// workflow (strategy.job-index) or a Kubernetes Indexed Job
/// (JOB_COMPLETION_INDEX) sets it. `merge` of the folder equals one run.
#[test]
fn shards_from_the_environment_merge_from_an_artifact_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(run(d, "whole", &[]));
    ok(run_env(
        d,
        "artifacts/memeval-shard-0",
        &[("MEMEVAL_SHARD_INDEX", "0"), ("MEMEVAL_SHARD_COUNT", "3")],
    ));
    ok(run_env(
        d,
        "artifacts/memeval-shard-1",
        &[("JOB_COMPLETION_INDEX", "1"), ("MEMEVAL_SHARD_COUNT", "3")],
    ));
    ok(run_env(
        d,
        "artifacts/memeval-shard-2",
        &[("MEMEVAL_SHARD", "3/3")],
    ));
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(d.join("artifacts/memeval-shard-1/metadata.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["shard"], "2/3");
    ok(memeval(&["merge", "artifacts", "--out", "merged"], d));
    let (whole, merged) = (tree(&d.join("whole")), tree(&d.join("merged")));
    assert_eq!(
        whole.keys().collect::<Vec<_>>(),
        merged.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &whole {
        assert!(bytes == &merged[name], "{name} differs");
    }
    // A stray entry in the folder is refused, not skipped.
    std::fs::create_dir(d.join("artifacts/logs")).unwrap();
    let o = memeval(&["merge", "artifacts", "--out", "never"], d);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("logs: not a memeval run folder"),
        "{stderr}"
    );
    assert!(!d.join("never").exists());
    // No shard in the environment: refused before anything is written.
    let o = run_env(d, "never", &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("JOB_COMPLETION_INDEX"), "{stderr}");
    let o = run_env(
        d,
        "never",
        &[("JOB_COMPLETION_INDEX", "3"), ("MEMEVAL_SHARD_COUNT", "3")],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(!d.join("never").exists());
}

#[test]
fn incomplete_or_mismatched_shards_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for k in 1..=2 {
        ok(run(d, &format!("s{k}"), &["--shard", &format!("{k}/2")]));
    }
    ok(run(d, "other-seed", &["--shard", "2/2", "--seed", "7"]));
    let cases: [(&[&str], &str); 4] = [
        (&["s1"], "missing: 2/2"),
        (&["s1", "other-seed"], "\"seed\""),
        (&["s1", "s1"], "the shards are 1/2, 1/2"),
        (&["s1", "nowhere"], "not a memeval run folder"),
    ];
    for (runs, said) in cases {
        let mut args = vec!["merge"];
        args.extend(runs);
        args.extend(["--out", "never"]);
        let o = memeval(&args, d);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{runs:?}: {stderr}");
        assert!(stderr.contains(said), "{runs:?}: {stderr}");
        assert!(!d.join("never").exists());
    }
    // A shard's table damaged after the run: found while merging (the
    // rows are read one replay at a time), refused the same way.
    std::fs::create_dir(d.join("damaged")).unwrap();
    for entry in std::fs::read_dir(d.join("s2")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), d.join("damaged").join(entry.file_name())).unwrap();
        }
    }
    let turns = std::fs::read_to_string(d.join("damaged/turns.csv")).unwrap();
    let mut lines: Vec<&str> = turns.lines().collect();
    let last = lines.len() - 1;
    lines[last] = "not,a,turn";
    std::fs::write(d.join("damaged/turns.csv"), lines.join("\n")).unwrap();
    let o = memeval(&["merge", "s1", "damaged", "--out", "never"], d);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("turns.csv:{}: not a memeval output", last + 1)),
        "{stderr}"
    );
    assert!(!d.join("never").exists());
    for bad in ["0/2", "3/2", "x"] {
        let o = run(d, "never", &["--shard", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
    }
    let o = run(d, "never", &["--shard", "7/7"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no scenario falls in this shard"));
}
