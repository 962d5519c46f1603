//! `memeval gate`, `memeval baseline` and the gate flags of `memeval run`,
//! through the real binary on the shipped scenarios: a baseline passes
//! against itself, a worse configuration fails naming metric and scenario
//! (in the table and in JUnit), runs of other scenario files are refused,
//! and `--repeat` feeds the noise rule.

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::memeval;

fn scenarios() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .display()
        .to_string()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A run of the shipped scenarios (the long generated ones aside, to keep
/// the suite quick) into `dir`, with extra arguments.
fn run(dir: &Path, out: &str, extra: &[&str]) -> Output {
    let root = PathBuf::from(scenarios());
    let mut args: Vec<String> = vec!["run".into()];
    for f in [
        "dbt-fanout-support",
        "knowledge-updates",
        "needle-cabin-wifi",
        "returning-renovation",
    ] {
        args.push(root.join(format!("{f}.json")).display().to_string());
    }
    args.extend(["--out".into(), out.into(), "--no-timings".into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    memeval(&args, dir)
}

#[test]
fn a_baseline_passes_against_itself_and_a_worse_configuration_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let o = run(d, "base", &["--save-baseline", "baseline.json", "--quiet"]);
    assert_eq!(code(&o), 0, "{}", text(&o).1);
    let baseline: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("baseline.json")).unwrap()).unwrap();
    assert_eq!(baseline["memeval_baseline"], 1);
    assert_eq!(baseline["results"].as_array().unwrap().len(), 4 * 5);
    assert!(baseline["meta"]["scenarios"][0]["sha256"].is_string());

    // The same run gates clean, both from the baseline and from the folder.
    for base in ["baseline.json", "base"] {
        let o = memeval(
            &[
                "gate",
                "--baseline",
                base,
                "--current",
                "base",
                "--junit",
                "same.xml",
            ],
            d,
        );
        let (stdout, stderr) = text(&o);
        assert_eq!(code(&o), 0, "{stdout}{stderr}");
        assert!(stdout.contains("gate: PASS"), "{stdout}");
        assert!(!stdout.contains("FAIL"), "{stdout}");
        let xml = std::fs::read_to_string(d.join("same.xml")).unwrap();
        assert!(xml.contains("failures=\"0\""), "{xml}");
    }

    // `memeval baseline DIR` writes the same file as --save-baseline.
    let o = memeval(&["baseline", "base", "--out", "again.json"], d);
    assert_eq!(code(&o), 0, "{}", text(&o).1);
    assert_eq!(
        std::fs::read(d.join("again.json")).unwrap(),
        std::fs::read(d.join("baseline.json")).unwrap()
    );

    // A much smaller window and a summary budget that drops facts, gated in
    // one step with `run --baseline`.
    let o = run(
        d,
        "worse",
        &[
            "--set",
            "window.max_tokens=600",
            "--set",
            "summary.max_summary_tokens=40",
            "--baseline",
            "baseline.json",
            "--junit",
            "worse.xml",
            "--quiet",
        ],
    );
    let (stdout, stderr) = text(&o);
    assert_eq!(code(&o), 1, "{stdout}{stderr}");
    assert!(stdout.contains("gate: FAIL"), "{stdout}");
    assert!(
        stderr.contains("regression(s) against the baseline"),
        "{stderr}"
    );
    let fails: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL ")).collect();
    assert!(
        fails.iter().any(|l| l
            .starts_with("FAIL needle-cabin-wifi / window: mean_recall: mean_recall dropped by")),
        "{stdout}"
    );
    assert!(
        fails.iter().any(|l| l.contains("/ summary: ")),
        "the summary budget must show: {stdout}"
    );
    // Buffer and vector are untouched by these parameters: they pass.
    assert!(
        !fails
            .iter()
            .any(|l| l.contains("/ buffer:") || l.contains("/ vector:")),
        "{stdout}"
    );
    // JUnit says the same: one failure per FAIL line, naming them.
    let xml = std::fs::read_to_string(d.join("worse.xml")).unwrap();
    assert_eq!(xml.matches("<failure ").count(), fails.len(), "{xml}");
    assert!(
        xml.contains(&format!("failures=\"{}\"", fails.len())),
        "{xml}"
    );
    assert!(
        xml.contains("<testcase classname=\"needle-cabin-wifi.window\" name=\"mean_recall\">"),
        "{xml}"
    );
    // The worse run's outputs are kept: the gate judges, it does not delete.
    assert!(d.join("worse/results.json").is_file());

    // The gate reads the same verdict from the folders afterwards.
    let o = memeval(&["gate", "--baseline", "base", "--current", "worse"], d);
    assert_eq!(code(&o), 1);
    assert_eq!(
        text(&o)
            .0
            .lines()
            .filter(|l| l.starts_with("FAIL "))
            .count(),
        fails.len()
    );

    // --explain: behind each failed check, the probe asks that changed
    // verdict, with both contexts and what left them; checked against
    // the two runs' probes.csv.
    let o = memeval(
        &[
            "gate",
            "--baseline",
            "base",
            "--current",
            "worse",
            "--explain",
        ],
        d,
    );
    let (stdout, stderr) = text(&o);
    assert_eq!(code(&o), 1, "{stdout}{stderr}");
    let rows = |run: &str| common::rows(&d.join(run).join("probes.csv"));
    let (before, after) = (rows("base"), rows("worse"));
    let changed: Vec<_> = after
        .iter()
        .filter(|c| c["scenario"] == "needle-cabin-wifi" && c["strategy"] == "window")
        .filter(|c| {
            let b = before
                .iter()
                .find(|b| {
                    ["scenario", "strategy", "probe_id", "turn"]
                        .iter()
                        .all(|k| b[*k] == c[*k])
                })
                .unwrap();
            b["recall"] != c["recall"]
        })
        .collect();
    assert!(!changed.is_empty());
    let header = "needle-cabin-wifi / window, mean_recall (";
    let section = stdout
        .split("\n\n")
        .find(|s| s.starts_with(header))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        section.contains(&format!("{} probe ask(s) changed verdict", changed.len())),
        "{section}"
    );
    for c in changed.iter().take(10) {
        assert!(
            section.contains(&format!(
                "probe {:?} after message {} (replay 1)",
                c["probe_id"], c["turn"]
            )),
            "{section}"
        );
    }
    assert!(section.contains("messages left: "), "{section}");
    // `run --baseline` puts the gate into the run's report.html: with a
    // baseline file, the checks and why the asks are not compared; with
    // the baseline's run folder, the same changed asks, linked to the
    // inspector.
    let page = std::fs::read_to_string(d.join("worse/report.html")).unwrap();
    assert!(
        page.contains(&format!(
            "<h2 id=\"gate\">Gate: failed, {} of ",
            fails.len()
        )),
        "{page:.3000}"
    );
    assert!(page.contains("holds only aggregates"));
    assert!(!page.contains("<!--memeval:gate-->"));
    let o = run(
        d,
        "worse-against-folder",
        &[
            "--set",
            "window.max_tokens=600",
            "--set",
            "summary.max_summary_tokens=40",
            "--baseline",
            "base",
            "--quiet",
        ],
    );
    assert_eq!(code(&o), 1, "{}", text(&o).1);
    assert!(
        text(&o).0.contains(
            "the probe asks behind the failed checks: worse-against-folder/report.html#gate"
        ),
        "{}",
        text(&o).0
    );
    let page = std::fs::read_to_string(d.join("worse-against-folder/report.html")).unwrap();
    assert!(
        page.contains(&format!(
            "{header}{}",
            section.lines().next().unwrap()[header.len()..].replace("->", "-&gt;")
        )),
        "{page:.3000}"
    );
    for c in changed.iter().take(10) {
        assert!(
            page.contains(&format!(
                "<a href=\"#inspect=needle-cabin-wifi/{}/{}\">{} after message {}</a>",
                c["turn"], c["probe_id"], c["probe_id"], c["turn"]
            )),
            "{}",
            c["probe_id"]
        );
    }
    // A baseline file has no probe asks to compare.
    let o = memeval(
        &[
            "gate",
            "--baseline",
            "baseline.json",
            "--current",
            "worse",
            "--explain",
        ],
        d,
    );
    assert_eq!(code(&o), 2);
    assert!(text(&o).1.contains("a baseline file holds only aggregates"));
}

#[test]
fn thresholds_come_from_the_config_file() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    assert_eq!(
        code(&run(
            d,
            "base",
            &["--quiet", "--strategies", "window,hybrid"]
        )),
        0
    );
    // A floor the window cannot meet.
    std::fs::write(
        d.join("strict.toml"),
        "[gate]\nmin_recall = { window = 0.99, hybrid = 0.9 }\n",
    )
    .unwrap();
    let o = memeval(
        &[
            "gate",
            "--baseline",
            "base",
            "--current",
            "base",
            "--config",
            "strict.toml",
        ],
        d,
    );
    let (stdout, _) = text(&o);
    assert_eq!(code(&o), 1, "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("FAIL needle-cabin-wifi / window: min_recall: mean recall")),
        "{stdout}"
    );
    assert!(!stdout.contains("/ hybrid: min_recall"), "{stdout}");
    // An unknown threshold is bad input, with a suggestion.
    std::fs::write(d.join("typo.toml"), "[gate]\nmax_recal_drop = 0.1\n").unwrap();
    let o = memeval(
        &[
            "gate",
            "--baseline",
            "base",
            "--current",
            "base",
            "--config",
            "typo.toml",
        ],
        d,
    );
    assert_eq!(code(&o), 2);
    assert!(
        text(&o).1.contains("did you mean \"max_recall_drop\""),
        "{}",
        text(&o).1
    );
}

#[test]
fn runs_of_different_scenario_files_are_not_compared_unless_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let src = PathBuf::from(scenarios()).join("travel-multihop.json");
    let copy = d.join("travel-multihop.json");
    std::fs::copy(&src, &copy).unwrap();
    let one = |out: &str| {
        let o = memeval(
            &["run", p(&copy), "--out", out, "--quiet", "--no-timings"],
            d,
        );
        assert_eq!(code(&o), 0, "{}", text(&o).1);
    };
    one("before");
    // An edited scenario file (here, only a trailing newline more) is
    // another test: refused, exit 2.
    let mut edited = std::fs::read_to_string(&copy).unwrap();
    edited.push('\n');
    std::fs::write(&copy, edited).unwrap();
    one("after");
    let o = memeval(&["gate", "--baseline", "before", "--current", "after"], d);
    let (_, stderr) = text(&o);
    assert_eq!(code(&o), 2, "{stderr}");
    assert!(
        stderr.contains("scenario travel-multihop: the file changed"),
        "{stderr}"
    );
    assert!(stderr.contains("--allow-mismatch"), "{stderr}");
    let o = memeval(
        &[
            "gate",
            "--baseline",
            "before",
            "--current",
            "after",
            "--allow-mismatch",
        ],
        d,
    );
    assert_eq!(code(&o), 0, "{}", text(&o).0);
}

#[test]
fn bad_gate_input_is_exit_2_with_the_position() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(
        d.join("broken.json"),
        "{\n  \"meta\": {},\n  \"results\": [1,\n",
    )
    .unwrap();
    let o = memeval(
        &[
            "gate",
            "--baseline",
            "broken.json",
            "--current",
            "broken.json",
        ],
        d,
    );
    let (_, stderr) = text(&o);
    assert_eq!(code(&o), 2, "{stderr}");
    assert!(stderr.contains("broken.json:3:"), "{stderr}");
    assert!(stderr.contains("not memeval results"), "{stderr}");
    let o = memeval(&["gate", "--baseline", "missing.json", "--current", "."], d);
    assert_eq!(code(&o), 2);
    assert!(
        text(&o).1.contains("missing.json: cannot read"),
        "{}",
        text(&o).1
    );
    // A run whose baseline is unreadable runs nothing and writes nothing.
    let o = run(d, "never", &["--baseline", "missing.json"]);
    assert_eq!(code(&o), 2);
    assert!(!d.join("never").exists());
}

#[test]
fn repeated_replays_carry_samples_and_gate_on_means() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let o = run(d, "single", &["--quiet", "--strategies", "summary,vector"]);
    assert_eq!(code(&o), 0, "{}", text(&o).1);
    let o = run(
        d,
        "thrice",
        &["--quiet", "--strategies", "summary,vector", "--repeat", "3"],
    );
    assert_eq!(code(&o), 0, "{}", text(&o).1);
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("thrice/results.json")).unwrap()).unwrap();
    assert_eq!(results["meta"]["repeats"], 3);
    for r in results["results"].as_array().unwrap() {
        assert_eq!(r["repeats"], 3, "{r}");
        let samples = &r["samples"];
        for key in [
            "mean_recall",
            "final_recall",
            "total_tokens",
            "stale",
            "leaked",
        ] {
            assert_eq!(samples[key].as_array().unwrap().len(), 3, "{key} in {r}");
        }
    }
    // Each replay is in turns.csv with its repeat number.
    let turns = std::fs::read_to_string(d.join("thrice/turns.csv")).unwrap();
    let header: Vec<&str> = turns.lines().next().unwrap().split(',').collect();
    let col = header
        .iter()
        .position(|h| *h == "repeat")
        .expect("repeat column");
    let repeats: std::collections::BTreeSet<&str> = turns
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(col).unwrap())
        .collect();
    assert_eq!(repeats.into_iter().collect::<Vec<_>>(), ["1", "2", "3"]);
    // The offline backend is exact: the replays agree on recall and tokens,
    // so three replays gate clean against one.
    let o = memeval(&["gate", "--baseline", "single", "--current", "thrice"], d);
    assert_eq!(code(&o), 0, "{}", text(&o).0);
}
