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
    for bad in ["0/2", "3/2", "x"] {
        let o = run(d, "never", &["--shard", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
    }
    let o = run(d, "never", &["--shard", "7/7"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no scenario falls in this shard"));
}
