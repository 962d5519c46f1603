//! `memeval sweep` through the real binary: a grid of 5 triggers x 2 buffer
//! sizes gives sweep.csv, sweep.json, the frontier chart and a
//! recommendation; bad grids are refused before anything runs; what a
//! killed sweep left behind is cleared.

use std::path::Path;

mod common;
use common::{memeval, shipped as scenario};

fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let mut rows = vec![r.headers().unwrap().iter().map(String::from).collect()];
    for rec in r.records() {
        rows.push(rec.unwrap().iter().map(String::from).collect());
    }
    rows
}

#[test]
fn a_grid_of_triggers_and_buffer_sizes_gives_a_frontier_and_a_recommendation() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // What a killed sweep left (its process gone: above any pid_max), and
    // what a sweep still running beside this one holds.
    let orphan = d.join(".sw.partial-4194999");
    let live = format!(".sw.partial-{}", std::process::id());
    std::fs::create_dir_all(orphan.join("charts")).unwrap();
    std::fs::create_dir(d.join(&live)).unwrap();
    let o = memeval(
        &[
            "sweep",
            &scenario("needle-cabin-wifi"),
            &scenario("rare-keyword-deadline"),
            "--strategy",
            "summary",
            "--param",
            "summary.trigger_tokens=1000,2000,3000,4000,6000",
            "--param",
            "summary.keep_ratio=0.25,0.5",
            "--out",
            "sw",
        ],
        d,
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stdout}{stderr}");
    let out = d.join("sw");
    for f in ["sweep.csv", "sweep.json", "sweep.svg", "sweep.png"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // No store or staging folder is left behind.
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    // The four outputs and the marker that lets --force replace them.
    assert_eq!(names.len(), 5, "{names:?}");
    assert!(out.join(".memeval-output").is_file());
    let partial: Vec<String> = d
        .read_dir()
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert_eq!(partial, [live], "the orphan is cleared, the live one kept");

    let rows = csv_rows(&out.join("sweep.csv"));
    assert_eq!(
        rows[0][..4],
        [
            "summary.trigger_tokens",
            "summary.keep_ratio",
            "mean_recall",
            "final_recall"
        ]
    );
    assert_eq!(rows.len(), 1 + 10);
    let col = |name: &str| rows[0].iter().position(|h| h == name).unwrap();
    let (recall, tokens, pareto, rec) = (
        col("mean_recall"),
        col("total_tokens"),
        col("pareto"),
        col("recommended"),
    );
    assert_eq!(rows[1..].iter().filter(|r| r[rec] == "1").count(), 1);
    let frontier: Vec<&Vec<String>> = rows[1..].iter().filter(|r| r[pareto] == "1").collect();
    assert!(!frontier.is_empty());
    // No combination beats a frontier point on both recall and tokens.
    for f in &frontier {
        let (fr, ft): (f64, u64) = (f[recall].parse().unwrap(), f[tokens].parse().unwrap());
        for r in &rows[1..] {
            let (rr, rt): (f64, u64) = (r[recall].parse().unwrap(), r[tokens].parse().unwrap());
            assert!(
                !(rr >= fr && rt <= ft && (rr > fr || rt < ft)),
                "{r:?} dominates {f:?}"
            );
        }
    }
    // The parameters change the outcome: not one point for all.
    let distinct: std::collections::BTreeSet<&str> =
        rows[1..].iter().map(|r| r[tokens].as_str()).collect();
    assert!(distinct.len() >= 5, "{rows:?}");

    // The recommendation is printed, and the JSON says why.
    let recommended = rows[1..].iter().find(|r| r[rec] == "1").unwrap();
    let label = format!(
        "recommended: trigger_tokens={}, keep_ratio={}",
        recommended[0], recommended[1]
    );
    assert!(stdout.contains(&label), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("sweep.json")).unwrap()).unwrap();
    assert_eq!(json["points"].as_array().unwrap().len(), 10);
    assert!(
        json["recommendation"]["reason"]
            .as_str()
            .unwrap()
            .contains("frontier"),
        "{json}"
    );
    assert_eq!(
        json["recommendation"]["params"]["summary.trigger_tokens"],
        recommended[0].as_str()
    );

    // The chart labels every point and names its axes.
    let svg = std::fs::read_to_string(out.join("sweep.svg")).unwrap();
    assert!(svg.contains("total tokens spent"), "axis label");
    assert!(svg.contains("Pareto frontier"), "legend");
    assert!(
        svg.contains("labelled trigger_tokens / keep_ratio"),
        "label key"
    );
    assert!(svg.contains(" 6000 / 0.25 "), "point label");
    let png = std::fs::read(out.join("sweep.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    // With a token budget, the best recall within it.
    let budget: u64 = rows[1..]
        .iter()
        .map(|r| r[tokens].parse::<u64>().unwrap())
        .min()
        .unwrap();
    let o = memeval(
        &[
            "sweep",
            &scenario("needle-cabin-wifi"),
            "--strategy",
            "summary",
            "--param",
            "summary.trigger_tokens=1000,4000",
            "--max-tokens",
            "1",
            "--out",
            "none",
            "--quiet",
        ],
        d,
    );
    assert!(o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("recommended: none"),
        "{budget}"
    );
}

#[test]
fn a_bad_grid_is_refused_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let cases: [(&[&str], &str); 4] = [
        (
            &["--param", "summary.trigger_tokns=1000"],
            "did you mean \"trigger_tokens\"",
        ),
        (
            &["--param", "summary.trigger_tokens=1000,999999"],
            "in the combination summary.trigger_tokens=999999",
        ),
        (&["--param", "summary.trigger_tokens"], "expected KEY=V1,V2"),
        (
            &["--param", "summary.keep_ratio=1.5"],
            "summary.keep_ratio is the share of the buffer kept raw",
        ),
    ];
    for (extra, expected) in cases {
        let mut args = vec![
            "sweep".to_string(),
            scenario("travel-multihop"),
            "--strategy".into(),
            "summary".into(),
            "--out".into(),
            "out".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = memeval(&args, d);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
        assert!(!d.join("out").exists());
    }
    let o = memeval(
        &[
            "sweep",
            &scenario("travel-multihop"),
            "--strategy",
            "sumary",
            "--param",
            "summary.trigger_tokens=1000",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("did you mean \"summary\""));
}
