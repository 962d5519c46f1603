//! `memeval import` through the real binary, on small files written for
//! these tests in the benchmarks' published formats. The real LoCoMo sample
//! (its authors' license forbids copying it here) is read from the path in
//! MEMEVAL_LOCOMO_SAMPLE when set; `.ci/run` sets it from ../shared.

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::memeval;

use serde_json::{Value, json};

fn data(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
        .display()
        .to_string()
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn read(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn results_by(dir: &Path) -> Vec<Value> {
    read(&dir.join("results.json"))["results"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn a_locomo_conversation_becomes_one_scenario() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(&memeval(
        &[
            "import",
            "locomo",
            &data("locomo-excerpt.json"),
            "--out",
            "sc",
            "--probe-after-evidence",
        ],
        d,
    ));
    let s = read(&d.join("sc/locomo-conv-test.json"));
    // Speakers: a is the user, b the assistant, named in each message.
    let sessions = s["sessions"].as_array().unwrap();
    // session_3 has a date but no messages: it is not a session.
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0]["id"], "session_1");
    assert_eq!(sessions[0]["start"], "2024-03-03T09:15:00Z");
    assert_eq!(sessions[1]["start"], "2024-03-17T18:40:00Z");
    let t0 = &sessions[0]["turns"][0];
    assert_eq!(t0["role"], "user");
    assert!(
        t0["content"]
            .as_str()
            .unwrap()
            .starts_with("Priya: Morning Tomas!")
    );
    assert_eq!(t0["plants"], json!(["D1:1"]));
    assert_eq!(sessions[0]["turns"][1]["role"], "assistant");
    // The image is kept as its caption.
    assert!(
        sessions[0]["turns"][2]["content"]
            .as_str()
            .unwrap()
            .ends_with("[shares a photo: a photo of a dog lying on a blue sofa]")
    );
    // Facts are the cited dia_ids, recalled by the message's presence.
    let facts: Vec<&str> = s["facts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(facts, ["D1:1", "D1:3", "D2:2", "D2:4"]);
    assert!(s["facts"][0].get("expect").is_none());
    // QA: probes after the last session, answers and kinds as documented;
    // "D2:2; D1:1" is two evidence ids; the numeric answer is text.
    let last = sessions[1]["turns"].as_array().unwrap();
    let probes: Vec<&Value> = last.iter().filter(|t| t.get("probe").is_some()).collect();
    assert_eq!(probes.len(), 5);
    assert_eq!(probes[0]["id"], "q1");
    assert_eq!(probes[0]["kind"], "single-hop");
    assert_eq!(probes[0]["answer"], "Biscuit");
    assert_eq!(probes[1]["kind"], "temporal");
    assert_eq!(probes[2]["kind"], "multi-hop");
    assert_eq!(probes[2]["expects"], json!(["D2:2", "D1:1"]));
    assert_eq!(probes[3]["kind"], "open-domain");
    assert_eq!(probes[3]["answer"], "1");
    assert_eq!(probes[4]["kind"], "adversarial");
    assert_eq!(probes[4]["answer"], "Not mentioned in the conversation.");
    // --probe-after-evidence: questions whose evidence is all in session 1
    // are asked at its end too.
    let early: Vec<&str> = sessions[0]["turns"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(early, ["q1-early", "q2-early", "q5-early"]);

    // All five strategies run; the buffer holds every piece of evidence.
    let out = ok(&memeval(&["run", "sc", "--out", "run", "--no-timings"], d));
    for r in results_by(&d.join("run")) {
        if r["strategy"] == "buffer" {
            assert_eq!(r["mean_recall"], 1.0, "{r}");
        }
        assert!(
            r["by_kind"]["adversarial"]["probes"].as_u64() == Some(2),
            "{r}"
        );
    }
    assert!(out.contains("recall by probe kind"), "{out}");
    assert!(out.contains("multi-hop"), "{out}");
    let html = std::fs::read_to_string(d.join("run/report.html")).unwrap();
    assert!(html.contains("id=\"kinds\""));
    assert!(html.contains("<td class=\"t\">open-domain</td>"));
}

#[test]
fn a_longmemeval_question_becomes_one_scenario() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let said = ok(&memeval(
        &[
            "import",
            "longmemeval",
            &data("longmemeval-excerpt.json"),
            "--out",
            "sc",
        ],
        d,
    ));
    assert!(said.contains("imported 3 scenario(s)"), "{said}");
    let s = read(&d.join("sc/longmemeval-t-0001.json"));
    // Sessions in date order; the empty message is skipped and counted.
    let sessions = s["sessions"].as_array().unwrap();
    assert_eq!(sessions[0]["id"], "sess-a");
    assert_eq!(sessions[1]["id"], "sess-b");
    assert_eq!(sessions[0]["turns"].as_array().unwrap().len(), 2);
    assert!(
        s["description"]
            .as_str()
            .unwrap()
            .contains("1 empty message skipped")
    );
    let probe = sessions[1]["turns"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        probe,
        json!({"id": "t-0001", "probe": "Which city did I say my brother moved to?",
               "expects": ["sess-b#1"], "answer": "Porto", "kind": "single-session-user",
               "at": "2023-06-02T10:00:00Z"})
    );
    // An abstention question expects nothing.
    let abs = read(&d.join("sc/longmemeval-t-0002_abs.json"));
    let last = abs["sessions"][0]["turns"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["kind"], "abstention");
    assert_eq!(last["expects"], json!([]));
    assert!(abs["facts"].as_array().unwrap().is_empty());
    // No marked turn: each answer session is one fact, planted by all of it.
    let multi = read(&d.join("sc/longmemeval-t-0003.json"));
    let ids: Vec<&str> = multi["facts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["g1", "g2"]);
    assert_eq!(multi["sessions"][1]["turns"][1]["plants"], json!(["g2"]));
    assert_eq!(multi["sessions"][1]["turns"][2]["answer"], "3");

    let out = ok(&memeval(&["run", "sc", "--out", "run", "--no-timings"], d));
    assert!(out.contains("single-session-user"), "{out}");
    for r in results_by(&d.join("run")) {
        if r["strategy"] == "buffer" && r["scenario"] != "longmemeval-t-0002_abs" {
            assert_eq!(r["mean_recall"], 1.0, "{r}");
        }
    }
}

#[test]
fn import_errors_name_the_conversation_and_the_question() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let base: Value = read(Path::new(&data("locomo-excerpt.json")));
    let cases: Vec<(Value, &str)> = vec![
        (
            {
                let mut v = base.clone();
                v["qa"][1]["evidence"] = json!(["D9:9"]);
                v
            },
            "conversation conv-test: qa[1] (\"When did Priya adopt her dog?\"): evidence \"D9:9\" is not a message of this conversation",
        ),
        (
            {
                let mut v = base.clone();
                v["conversation"]
                    .as_object_mut()
                    .unwrap()
                    .remove("speaker_b");
                v
            },
            "conversation conv-test: speaker_b: missing required field \"speaker_b\"",
        ),
        (
            {
                let mut v = base.clone();
                v["conversation"]["session_2"][1]
                    .as_object_mut()
                    .unwrap()
                    .remove("dia_id");
                v
            },
            "conversation conv-test: session_2[1]: missing required field \"dia_id\"",
        ),
        (
            {
                let mut v = base.clone();
                v["qa"][0]["category"] = json!(9);
                v
            },
            "qa[0] (\"What is the name of Priya's dog?\"): \"category\" must be 1 to 5",
        ),
        (
            {
                let mut v = base.clone();
                v["conversation"]["session_2_date_time"] = json!("sometime in spring");
                v
            },
            "session_2_date_time: \"sometime in spring\" is not a date",
        ),
    ];
    for (i, (value, expected)) in cases.into_iter().enumerate() {
        let file = d.join(format!("bad-{i}.json"));
        std::fs::write(&file, serde_json::to_string_pretty(&value).unwrap()).unwrap();
        // A dangling evidence id is repaired unless --strict.
        let o = memeval(
            &[
                "import",
                "locomo",
                file.to_str().unwrap(),
                "--out",
                "never",
                "--strict",
            ],
            d,
        );
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(&format!("bad-{i}.json: ")), "{stderr}");
        assert!(stderr.contains(expected), "case {i}: {stderr}");
        assert!(!d.join("never").exists());
    }
    // LongMemEval: a missing field names the question.
    let mut lme: Value = read(Path::new(&data("longmemeval-excerpt.json")));
    lme[2].as_object_mut().unwrap().remove("haystack_dates");
    let file = d.join("lme-bad.json");
    std::fs::write(&file, lme.to_string()).unwrap();
    let o = memeval(
        &[
            "import",
            "longmemeval",
            file.to_str().unwrap(),
            "--out",
            "never",
        ],
        d,
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "[2] (question t-0003): haystack_dates: missing required field \"haystack_dates\""
        ),
        "{stderr}"
    );
    // Not JSON: the position.
    std::fs::write(d.join("broken.json"), "[{\"question_id\": }").unwrap();
    let o = memeval(
        &["import", "longmemeval", "broken.json", "--out", "never"],
        d,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("broken.json:1:"));
    assert!(!d.join("never").exists());
}

#[test]
fn the_real_locomo_sample() {
    let Some(path) = std::env::var_os("MEMEVAL_LOCOMO_SAMPLE") else {
        // In CI (.ci/run sets the variable) this must run, or fail.
        assert!(
            std::env::var_os("CI").is_none(),
            "MEMEVAL_LOCOMO_SAMPLE is not set: CI must read the real LoCoMo sample"
        );
        eprintln!(
            "SKIPPED: set MEMEVAL_LOCOMO_SAMPLE to a LoCoMo file (e.g. ../shared/datasets/locomo-sample/26.json)"
        );
        return;
    };
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "MEMEVAL_LOCOMO_SAMPLE={} is not a file",
        path.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(&memeval(
        &["import", "locomo", path.to_str().unwrap(), "--out", "sc"],
        d,
    ));
    let out = ok(&memeval(&["run", "sc", "--out", "run", "--no-timings"], d));
    let results = results_by(&d.join("run"));
    assert_eq!(results.len(), 5);
    for r in &results {
        assert_eq!(r["probes"], 199, "{r}");
        if r["strategy"] == "buffer" {
            assert_eq!(r["mean_recall"], 1.0, "{r}");
        }
        for kind in [
            "multi-hop",
            "temporal",
            "open-domain",
            "single-hop",
            "adversarial",
        ] {
            assert!(
                r["by_kind"][kind]["probes"].as_u64().unwrap() > 0,
                "{kind}: {r}"
            );
        }
    }
    assert!(out.contains("recall by probe kind"), "{out}");
    let html = std::fs::read_to_string(d.join("run/report.html")).unwrap();
    assert!(html.contains("id=\"kinds\""));
    // The inspector holds every question, each with every strategy's
    // context, in a page that stays small (1.03 MB when measured).
    let data = common::inspector_data(&html);
    assert_eq!(common::asks_total(&data), 199);
    for ask in data["scenarios"][0]["asks"].as_array().unwrap() {
        assert_eq!(ask["by"].as_object().unwrap().len(), 5, "{ask}");
    }
    eprintln!("report.html of the LoCoMo sample: {} bytes", html.len());
    assert!(html.len() < 2_000_000, "{} bytes", html.len());
}

/// The LoCoMo excerpt as the release's array of conversations: the excerpt,
/// and a copy as conversation `conv-two` whose question 2 cites a message
/// that does not exist besides a real one, question 4 only one that
/// does not, and question 3 a space-separated list with a mistyped id (the
/// release's annotation errors).
fn locomo_release(dir: &Path) -> PathBuf {
    let base: Value = read(Path::new(&data("locomo-excerpt.json")));
    let mut two = base.clone();
    two["sample_id"] = json!("conv-two");
    two["qa"][1]["evidence"] = json!(["D1:1", "D10:19"]);
    two["qa"][3]["evidence"] = json!(["D7:3"]);
    // A list written with spaces, one id with a leading zero.
    two["qa"][2]["evidence"] = json!(["D2:02 D1:1"]);
    let file = dir.join("locomo10.json");
    std::fs::write(&file, serde_json::to_string(&json!([base, two])).unwrap()).unwrap();
    file
}

#[test]
fn the_locomo_releases_defects_are_repaired_reported_and_kept_with_the_scenarios() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let file = locomo_release(d);
    let stdout = ok(&memeval(
        &["import", "locomo", file.to_str().unwrap(), "--out", "sc"],
        d,
    ));
    assert!(
        stdout.contains("imported 2 scenario(s) from 1 file(s)"),
        "{stdout}"
    );
    assert!(stdout.contains("repaired 4 defect(s)"), "{stdout}");
    assert!(
        stdout.contains(
            "q3 (qa[2]): evidence \"D2:02\" is not a message of this conversation: read as \"D2:2\""
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "conversation [1] (conv-two): q2 (qa[1]): evidence \"D10:19\" is not a message of this conversation: dropped"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("q4 (qa[3]): no evidence left: judged by its answer alone"),
        "{stdout}"
    );
    // The summary is kept beside the scenarios, and is no scenario.
    let kept = std::fs::read_to_string(d.join("sc/import-summary.txt")).unwrap();
    assert_eq!(kept.trim_end(), stdout.trim_end());
    let s = read(&d.join("sc/locomo-conv-two.json"));
    assert_eq!(s["source"]["dataset"], "locomo");
    assert_eq!(s["source"]["id"], "conv-two");
    assert_eq!(s["source"]["repairs"].as_array().unwrap().len(), 4);
    let untouched = read(&d.join("sc/locomo-conv-test.json"));
    assert!(untouched["source"].get("repairs").is_none());
    let probes: Vec<Value> = s["sessions"].as_array().unwrap().last().unwrap()["turns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t.get("probe").is_some())
        .cloned()
        .collect();
    let by_id = |id: &str| probes.iter().find(|p| p["id"] == id).unwrap().clone();
    assert_eq!(by_id("q2")["expects"], json!(["D1:1"]));
    assert_eq!(by_id("q4")["expects"], json!([]));
    assert_eq!(by_id("q3")["expects"], json!(["D2:2", "D1:1"]));
    // Asked the day after the last session (17 March 2024, 18:40).
    assert_eq!(by_id("q4")["at"], "2024-03-18T18:40:00Z");
    // A run on the folder: the repairs are in its provenance, and the
    // question without evidence has no recall (not 0).
    ok(&memeval(
        &["run", "sc", "--out", "run", "--strategies", "window"],
        d,
    ));
    let meta = read(&d.join("run/metadata.json"));
    let two = meta["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "locomo-conv-two")
        .unwrap();
    assert_eq!(two["source"]["repairs"].as_array().unwrap().len(), 4);
    let mut rdr = csv::Reader::from_path(d.join("run/probes.csv")).unwrap();
    let headers = rdr.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let q4 = rdr
        .records()
        .map(Result::unwrap)
        .find(|r| r[col("scenario")] == *"locomo-conv-two" && r[col("probe_id")] == *"q4")
        .unwrap();
    assert_eq!(&q4[col("recall")], "");
    assert_eq!(&q4[col("expected")], "");
    // --strict refuses the same file, naming the defect, and writes nothing.
    let o = memeval(
        &[
            "import",
            "locomo",
            file.to_str().unwrap(),
            "--out",
            "strict",
            "--strict",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("\"D10:19\" is not a message"));
    assert!(!d.join("strict").exists());
}

#[test]
fn both_locomo_layouts_give_the_same_scenario() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let release = locomo_release(d);
    // One file per conversation: the conversation object alone, named by
    // its file (as in the release's per-conversation folder).
    let base: Value = read(Path::new(&data("locomo-excerpt.json")));
    let mut alone = base["conversation"].clone();
    alone["qa"] = base["qa"].clone();
    std::fs::create_dir(d.join("one")).unwrap();
    std::fs::write(d.join("one/conv-test.json"), alone.to_string()).unwrap();
    ok(&memeval(&["import", "locomo", "one", "--out", "a"], d));
    ok(&memeval(
        &["import", "locomo", release.to_str().unwrap(), "--out", "b"],
        d,
    ));
    let (mut a, mut b) = (
        read(&d.join("a/locomo-conv-test.json")),
        read(&d.join("b/locomo-conv-test.json")),
    );
    // Only the source file differs.
    assert_ne!(a["source"]["file"], b["source"]["file"]);
    a["source"]["file"] = json!("");
    b["source"]["file"] = json!("");
    assert_eq!(a, b);
}

#[test]
fn questions_are_left_out_by_category_and_by_an_errata_list() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let file = locomo_release(d);
    std::fs::write(
        d.join("errata.txt"),
        "# gold answers found wrong\nconv-test/q1\nconv-two/q3  # a comment\n\nconv-nine/q1\n",
    )
    .unwrap();
    let stdout = ok(&memeval(
        &[
            "import",
            "locomo",
            file.to_str().unwrap(),
            "--out",
            "sc",
            "--categories",
            "1,2,3,4",
            "--exclude",
            "errata.txt",
        ],
        d,
    ));
    // Each conversation has one adversarial (category 5) question.
    assert!(
        stdout.contains("left out 2 question(s) of other categories (--categories 1,2,3,4)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("left out 2 question(s) listed in errata.txt"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 of its ids are in none of the files: conv-nine/q1"),
        "{stdout}"
    );
    let s = read(&d.join("sc/locomo-conv-test.json"));
    let ids: Vec<String> = s["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|x| x["turns"].as_array().unwrap().clone())
        .filter_map(|t| t["id"].as_str().map(String::from))
        .collect();
    // Probe ids keep the question's place in the release.
    assert_eq!(ids, ["q2", "q3", "q4"]);
    assert_eq!(s["source"]["excluded"], json!(["q1", "q5"]));
    // A category is LoCoMo's, and one of 1 to 5.
    for (args, says) in [
        (
            vec!["locomo", "x.json", "--categories", "6"],
            "6 is not a LoCoMo category",
        ),
        (
            vec!["longmemeval", "x.json", "--categories", "1"],
            "only LoCoMo",
        ),
    ] {
        let mut all = vec!["import"];
        all.extend(args);
        all.extend(["--out", "never"]);
        let o = memeval(&all, d);
        assert_eq!(o.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&o.stderr).contains(says));
    }
}

#[test]
fn longmemeval_defects_are_repaired_and_its_questions_asked_at_their_date() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let mut lme: Value = read(Path::new(&data("longmemeval-excerpt.json")));
    // No evidence anywhere; a question date before its last session.
    for t in lme[0]["haystack_sessions"].as_array_mut().unwrap() {
        for m in t.as_array_mut().unwrap() {
            m.as_object_mut().unwrap().remove("has_answer");
        }
    }
    lme[0]["answer_session_ids"] = json!(["nowhere"]);
    lme[2]["question_date"] = json!("2023/06/15 (Thu) 09:00");
    // The cleaned release's defect: a filler session sampled twice,
    // identical but for its date; and a different session under a used id.
    let q = lme[1].as_object_mut().unwrap();
    let first = q["haystack_sessions"][0].clone();
    let other = json!([{"role": "user", "content": "Something else entirely."}]);
    q["haystack_sessions"]
        .as_array_mut()
        .unwrap()
        .extend([first, other]);
    let id = q["haystack_session_ids"][0].clone();
    q["haystack_session_ids"]
        .as_array_mut()
        .unwrap()
        .extend([id.clone(), id]);
    q["haystack_dates"].as_array_mut().unwrap().extend([
        json!("2023/05/25 (Thu) 08:00"),
        json!("2023/05/26 (Fri) 08:00"),
    ]);
    std::fs::write(d.join("lme.json"), lme.to_string()).unwrap();
    let stdout = ok(&memeval(
        &["import", "longmemeval", "lme.json", "--out", "sc"],
        d,
    ));
    assert!(stdout.contains("repaired 4 defect(s)"), "{stdout}");
    assert!(
        stdout.contains(
            "is used twice (haystack_sessions[0] and [1], identical): the later copy dropped"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("different): the later one renamed"),
        "{stdout}"
    );
    let abs = read(&d.join("sc/longmemeval-t-0002_abs.json"));
    let ids: Vec<&str> = abs["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["sess-c", "sess-c~2"]);
    assert!(
        stdout.contains("[0] (question t-0001): no evidence"),
        "{stdout}"
    );
    assert!(
        stdout.contains("question_date \"2023/06/15 (Thu) 09:00\" (2023-06-15T09:00:00Z) is before its last session (2023-06-20T12:00:00Z): asked without a date"),
        "{stdout}"
    );
    let last_probe = |name: &str| {
        let s = read(&d.join(format!("sc/{name}.json")));
        s["sessions"].as_array().unwrap().last().unwrap()["turns"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone()
    };
    assert_eq!(last_probe("longmemeval-t-0001")["expects"], json!([]));
    assert!(last_probe("longmemeval-t-0003").get("at").is_none());
    assert_eq!(
        last_probe("longmemeval-t-0002_abs")["at"],
        "2023-06-02T10:00:00Z"
    );
    let o = memeval(
        &[
            "import",
            "longmemeval",
            "lme.json",
            "--out",
            "never",
            "--strict",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("(--strict)"));
    assert!(!d.join("never").exists());
}

/// A LongMemEval-shaped file of `questions` questions, each with
/// `sessions` sessions of 10 turns of about 60 words (the shape of
/// longmemeval_m), written by `benches/longmemeval/generate.py`, the
/// generator of the README's 1 GB figure.
fn longmemeval_like(path: &Path, questions: usize, sessions: usize) {
    let o = std::process::Command::new("python3")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/longmemeval/generate.py"))
        .arg(path)
        .args(["--questions", &questions.to_string(), &sessions.to_string()])
        .output()
        .expect("python3 runs the generator");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Runs memeval in `dir` and returns its peak resident memory in KiB.
// The child is waited for with wait4, which std's Child does not know.
#[allow(clippy::zombie_processes)]
fn peak_kib(args: &[&str], dir: &Path) -> u64 {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_memeval"))
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: wait4 fills the status and the rusage it is given, for our
    // own child.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        assert_eq!(
            libc::wait4(child.id() as i32, &mut status, 0, &mut u),
            child.id() as i32
        );
        u
    };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{args:?}"
    );
    usage.ru_maxrss as u64
}

#[test]
fn a_longmemeval_file_is_imported_in_memory_bounded_by_one_question() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // The same questions (100 sessions, about 0.5 MB each), 4 and 64 of them.
    longmemeval_like(&d.join("small.json"), 4, 100);
    longmemeval_like(&d.join("large.json"), 64, 100);
    let (small, large) = (
        std::fs::metadata(d.join("small.json")).unwrap().len(),
        std::fs::metadata(d.join("large.json")).unwrap().len(),
    );
    let a = peak_kib(&["import", "longmemeval", "small.json", "--out", "a"], d);
    let b = peak_kib(&["import", "longmemeval", "large.json", "--out", "b"], d);
    let scenarios = std::fs::read_dir(d.join("b"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "json")
        })
        .count();
    assert_eq!(scenarios, 64);
    // 60 questions more (about 30 MB of JSON, several times that as parsed
    // values) add next to nothing to the peak: memory holds one question.
    let grown = b.saturating_sub(a) * 1024;
    eprintln!("peak {a} KiB for {small} bytes, {b} KiB for {large} bytes");
    assert!(
        grown < (large - small) / 5,
        "peak {a} KiB for {small} bytes, {b} KiB for {large} bytes"
    );
}
