//! `memeval judge-check` against judges whose error rates are known: the
//! fake OpenAI server (a real HTTP server on 127.0.0.1) as a judge that
//! accepts everything (false-accept rate 1.0) and as an oracle (0.0), and
//! the offline judge; then the gate's use of the result.

mod common;

use std::path::Path;

use common::memeval;
use common::openai_server::{JudgeMode, Options, Server};
use serde_json::Value;

const SCENARIOS: [&str; 3] = [
    "knowledge-updates.json",
    "travel-multihop.json",
    "dbt-fanout-support.json",
];

fn scenario_paths() -> Vec<String> {
    SCENARIOS
        .iter()
        .map(|s| format!("{}/scenarios/{s}", env!("CARGO_MANIFEST_DIR")))
        .collect()
}

/// Runs judge-check with the openai backend at `server`; its JSON.
fn judge_check(dir: &Path, server: &Server, out: &str) -> Value {
    let cfg = dir.join("judge.toml");
    std::fs::write(
        &cfg,
        format!(
            "backend = \"openai\"\n[model]\nname = \"gpt-4o-mini\"\n[openai]\nbase_url = \"{}\"\nrequire_key = false\ncache_path = \"{}\"\nretry_backoff_ms = 1\n",
            server.url,
            dir.join(format!("{out}.sqlite")).display()
        ),
    )
    .unwrap();
    let files = scenario_paths();
    let mut args: Vec<&str> = vec!["judge-check"];
    args.extend(files.iter().map(String::as_str));
    args.extend(["--max-probes", "0", "--quiet", "--out", out, "--config"]);
    let cfg = cfg.display().to_string();
    args.push(&cfg);
    let o = memeval(&args, dir);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_str(&std::fs::read_to_string(dir.join(out).join("judge-check.json")).unwrap())
        .unwrap()
}

fn rate(v: &Value, key: &str) -> f64 {
    v[key]["rate"]
        .as_f64()
        .unwrap_or_else(|| panic!("{key}: {v:#}"))
}

#[test]
fn a_judge_that_accepts_everything_has_a_false_accept_rate_of_one() {
    let server = Server::start(Options {
        judge: JudgeMode::AlwaysAccept,
        ..Options::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let r = judge_check(dir.path(), &server, "accepts");
    assert_eq!(rate(&r, "false_accept"), 1.0);
    assert_eq!(rate(&r, "false_reject"), 0.0);
    assert_eq!(
        rate(&r, "summary_misorder"),
        1.0,
        "equal scores are misordered"
    );
    let kinds: Vec<&str> = r["by_kind"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["gold", "paraphrase", "superseded", "other_fact", "vague"],
        "every kind of answer is in the set"
    );
    let n = r["false_accept"]["n"].as_u64().unwrap();
    assert!(n >= 30, "{n} wrong answers judged");
    // A Wilson interval at 1.0 does not collapse to a point.
    assert!(r["false_accept"]["low"].as_f64().unwrap() < 1.0);
    assert_eq!(r["failed_calls"], 0);
}

#[test]
fn an_oracle_judge_has_no_false_accepts_or_rejects_and_reruns_from_the_cache() {
    // The oracle knows the labelled set: memeval's own, built the same way.
    let files: Vec<std::path::PathBuf> = scenario_paths().into_iter().map(Into::into).collect();
    let scenarios = memeval::scenario::load_all(&files).unwrap();
    let items = memeval::calibration::labelled_set(&scenarios, 0, 42);
    let right: Vec<String> = items
        .iter()
        .filter(|i| i.kind.correct())
        .map(|i| {
            let fact = &scenarios[i.scenario_index].facts[i.facts[0]];
            let stated = fact
                .statement
                .clone()
                .expect("the shipped facts have statements");
            format!("{}\u{1f}{stated}\u{1f}{}", i.question, i.answer)
        })
        .collect();
    let server = Server::start(Options {
        judge: JudgeMode::AlwaysRight(right),
        ..Options::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let r = judge_check(dir.path(), &server, "oracle");
    assert_eq!(rate(&r, "false_accept"), 0.0, "{:#}", r["by_kind"]);
    assert_eq!(rate(&r, "false_reject"), 0.0, "{:#}", r["by_kind"]);
    assert_eq!(rate(&r, "summary_misorder"), 0.0);
    assert_eq!(
        r["items"].as_array().unwrap().len(),
        items.len(),
        "every item judged"
    );
    // The same again: every verdict from the cache, the same file.
    let asked = server.requests();
    std::fs::copy(
        dir.path().join("oracle.sqlite"),
        dir.path().join("again.sqlite"),
    )
    .unwrap();
    let again = judge_check(dir.path(), &server, "again");
    assert_eq!(server.requests(), asked, "a rerun asked the judge again");
    assert_eq!(again, r);
}

#[test]
fn the_offline_judge_and_the_gate_that_requires_a_checked_judge() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let files = scenario_paths();
    let mut args: Vec<&str> = vec!["judge-check"];
    args.extend(files.iter().map(String::as_str));
    args.extend(["--out", "check", "--quiet"]);
    let o = memeval(&args, d);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("judge offline-overlap: false accepts 0 of"),
        "{stdout}"
    );
    // Bad input: exit 2, the file named once, nothing written.
    let o = memeval(&["judge-check", "missing.json", "--out", "bad"], d);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("error: missing.json: cannot read"),
        "{stderr}"
    );
    assert!(!d.join("bad").exists());
    let csv = std::fs::read_to_string(d.join("check/judge-check.csv")).unwrap();
    assert!(csv.starts_with("scenario,probe_id,kind,expected,accepted,question,answer,reason\n"));

    // A run, gated on itself with a ceiling on the judge's false accepts.
    let run = [
        &["run"][..],
        &files.iter().map(String::as_str).collect::<Vec<_>>(),
        &["--out", "run", "--quiet", "--no-timings"],
    ]
    .concat();
    assert!(memeval(&run, d).status.success());
    let gate = |more: &[&str]| {
        let args = [
            &[
                "gate",
                "--baseline",
                "run",
                "--current",
                "run",
                "--set",
                "gate.max_judge_false_accept=0.1",
            ][..],
            more,
        ]
        .concat();
        memeval(&args, d)
    };
    let o = gate(&[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--judge-check"), "{stderr}");
    let o = gate(&["--judge-check", "check"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("judge_false_accept"), "{stdout}");

    // A judge-check whose rate is over the ceiling fails the gate.
    let path = d.join("check/judge-check.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["false_accept"]["rate"] = serde_json::json!(0.4);
    std::fs::write(&path, v.to_string()).unwrap();
    let o = gate(&["--judge-check", "check"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // One of another judge is refused.
    v["judge"] = serde_json::json!("gpt-4o");
    std::fs::write(&path, v.to_string()).unwrap();
    let o = gate(&["--judge-check", "check"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("judge"), "{stderr}");
}

/// Answers judged by two models: both verdicts in probes.csv, their
/// agreement and Cohen's kappa in results.json and the terminal, as
/// computed here by hand from the rows.
#[test]
fn extra_judges_give_their_verdicts_and_kappa() {
    let server = Server::start(Options::default());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("two.toml"),
        format!(
            "backend = \"openai\"\nstrategies = [\"window\", \"hybrid\"]\n[model]\nname = \"gpt-4o-mini\"\n[openai]\nbase_url = \"{}\"\nrequire_key = false\ncache_path = \"{}\"\njudge_model = \"parity\"\nextra_judges = [\"always-yes\"]\n",
            server.url,
            d.join("cache.sqlite").display()
        ),
    )
    .unwrap();
    let files = scenario_paths();
    let mut args: Vec<&str> = vec!["run"];
    args.extend(files.iter().map(String::as_str));
    args.extend(["--config", "two.toml", "--out", "out", "--no-timings"]);
    let o = memeval(&args, d);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = common::rows(&d.join("out/probes.csv"));
    let mut t = [[0u64; 2]; 2];
    for r in &rows {
        if r["answer_correct"].is_empty() {
            continue;
        }
        assert_eq!(r["extra_verdicts"], "always-yes=1", "{r:?}");
        t[r["answer_correct"].parse::<usize>().unwrap()][1] += 1;
    }
    let n = (t[0][1] + t[1][1]) as f64;
    assert!(
        t[0][1] > 0 && t[1][1] > 0,
        "both verdicts of the first judge occur: {t:?}"
    );
    let results: Value =
        serde_json::from_slice(&std::fs::read(d.join("out/results.json")).unwrap()).unwrap();
    let a = &results["judge_agreement"][0];
    assert_eq!(
        (a["first"].as_str(), a["second"].as_str()),
        (Some("parity"), Some("always-yes"))
    );
    assert_eq!(a["answers"].as_f64(), Some(n));
    // One judge always says yes: agreement is the other's rate of yes, and
    // so is chance agreement: kappa 0.
    assert!((a["agreement"].as_f64().unwrap() - t[1][1] as f64 / n).abs() < 1e-6);
    assert!(a["kappa"].as_f64().unwrap().abs() < 1e-9, "{a}");
    assert_eq!(a["only_second"].as_u64(), Some(t[0][1]));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("parity vs always-yes: Cohen's kappa 0.000"),
        "{stdout}"
    );
}
