//! `memeval inspect`: a finished run's contexts rebuilt from its
//! memory.sqlite equal what the run recorded, at every message and every
//! probe ask, in every built-in strategy (under budgets tight enough that
//! every strategy cuts, summarizes and retrieves).

use std::collections::BTreeMap;
use std::path::Path;

mod common;
use common::{memeval, rows, shipped};

use memeval::runner::inspect::{Ask, Run};

/// Budgets that make every strategy cut, summarize and retrieve in a
/// short scenario.
const TIGHT: [&str; 10] = [
    "--set",
    "window.max_tokens=300",
    "--set",
    "summary.trigger_tokens=400",
    "--set",
    "summary.max_summary_tokens=120",
    "--set",
    "vector.buffer_message_limit=4",
    "--set",
    "vector.top_k=3",
];

fn tight_run(dir: &Path, scenarios: &[&str]) {
    let out = dir.join("run");
    let mut args = vec!["run".to_string()];
    args.extend(scenarios.iter().map(|s| shipped(s)));
    args.extend(["--out".into(), out.display().to_string()]);
    args.extend(TIGHT.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = memeval(&args, dir);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The columns of a context's size, in turns.csv and probes.csv alike.
const SECTIONS: [&str; 5] = [
    "tokens_system",
    "tokens_summary",
    "tokens_retrieved",
    "tokens_buffer",
    "context_tokens",
];

fn sections(c: &memeval::memory::Context) -> [u32; 5] {
    [
        c.tokens_system,
        c.tokens_summary,
        c.tokens_retrieved,
        c.tokens_buffer,
        c.total(),
    ]
}

fn num(row: &BTreeMap<String, String>, k: &str) -> u32 {
    row[k]
        .parse()
        .unwrap_or_else(|_| panic!("{k}: {:?}", row[k]))
}

#[test]
fn every_context_rebuilt_equals_what_the_run_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let scenarios = ["support-orders", "travel-multihop", "knowledge-updates"];
    tight_run(tmp.path(), &scenarios);
    let dir = tmp.path().join("run");
    let run = Run::open(&dir).unwrap();
    let turns = rows(&dir.join("turns.csv"));
    let (mut summarized, mut retrieved) = (0, 0);
    for row in &turns {
        let ask = Ask {
            scenario: &row["scenario"],
            strategy: &row["strategy"],
            turn: num(row, "turn"),
            repeat: 1,
            probe: None,
        };
        let c = run.context(&ask).unwrap().context;
        let at = format!("{}/{} turn {}", ask.scenario, ask.strategy, ask.turn);
        let mut got = sections(&c).to_vec();
        got.extend([c.buffer_messages, c.retrieved.len() as u32]);
        let mut want = SECTIONS.map(|k| num(row, k)).to_vec();
        want.extend(["buffer_messages", "retrieved_messages"].map(|k| num(row, k)));
        assert_eq!(got, want, "{at}");
        summarized += usize::from(c.tokens_summary > 0);
        retrieved += usize::from(!c.retrieved.is_empty());
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("metadata.json")).unwrap()).unwrap();
    let messages: u64 = meta["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["messages"].as_u64().unwrap())
        .sum();
    assert_eq!(turns.len() as u64, 5 * messages);
    assert!(
        summarized > 20 && retrieved >= 10,
        "{summarized} {retrieved}"
    );
    let probes = rows(&dir.join("probes.csv"));
    assert!(probes.len() > 50);
    for p in &probes {
        let ask = Ask {
            scenario: &p["scenario"],
            strategy: &p["strategy"],
            turn: num(p, "turn"),
            repeat: 1,
            probe: Some(&p["probe_id"]),
        };
        let c = run.context(&ask).unwrap().context;
        let at = format!("{}/{} probe {}", ask.scenario, ask.strategy, p["probe_id"]);
        let numbers: Vec<String> = c.retrieved.iter().map(|i| i.number.to_string()).collect();
        assert_eq!(numbers.join(";"), p["context_retrieved"], "{at}");
        let buffer = match (c.buffer.first(), c.buffer.last()) {
            (Some(a), Some(b)) => format!("{}-{}", a.number, b.number),
            _ => String::new(),
        };
        assert_eq!(buffer, p["context_buffer"], "{at}");
        let summary = c.summary.as_ref().map(|s| s.index.to_string());
        assert_eq!(summary.unwrap_or_default(), p["context_summary"], "{at}");
        let (got, want) = (sections(&c), SECTIONS.map(|k| num(p, k)));
        assert_eq!(got, want, "{at}");
    }
}

#[test]
fn the_command_prints_sections_and_json_and_refuses_what_is_not_in_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    tight_run(tmp.path(), &["support-orders"]);
    let dir = tmp.path().join("run");
    let dir_s = dir.display().to_string();
    let o = memeval(
        &[
            "inspect",
            &dir_s,
            "--scenario",
            "support-orders",
            "--turn",
            "20",
            "--strategy",
            "hybrid",
            "--json",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let row = rows(&dir.join("turns.csv"))
        .into_iter()
        .find(|r| r["strategy"] == "hybrid" && r["turn"] == "20")
        .unwrap();
    assert_eq!(v[0]["tokens"]["total"], num(&row, "context_tokens"));
    assert_eq!(v[0]["tokens"]["summary"], num(&row, "tokens_summary"));
    // Every strategy, in the terminal: each section named with its tokens.
    let o = memeval(
        &[
            "inspect",
            &dir_s,
            "--scenario",
            "support-orders",
            "--turn",
            "20",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    for s in ["buffer", "window", "summary", "vector", "hybrid"] {
        assert!(
            text.contains(&format!("support-orders / {s} (replay 1): message 20")),
            "{text}"
        );
    }
    assert!(
        text.contains("[system]") && text.contains("[buffer]"),
        "{text}"
    );
    for (args, says) in [
        (
            vec!["--scenario", "support-order", "--turn", "3"],
            "did you mean \"support-orders\"",
        ),
        (
            vec!["--scenario", "support-orders", "--turn", "99"],
            "has messages 1 to 33",
        ),
        (
            vec![
                "--scenario",
                "support-orders",
                "--turn",
                "3",
                "--strategy",
                "plugin:x",
            ],
            "not in the run",
        ),
        (
            vec!["--scenario", "support-orders", "--probe", "nope"],
            "not a probe of support-orders",
        ),
    ] {
        let mut a = vec!["inspect", &dir_s];
        a.extend(args);
        let o = memeval(&a, tmp.path());
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{a:?}: {err}");
        assert!(err.contains(says), "{a:?}: {err}");
    }
}
