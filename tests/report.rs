//! Charts, report.html and `memeval report`, through the real binary; and
//! the page checked in a real headless browser (Chromium) when one is
//! installed. `.ci/run` installs it and sets MEMEVAL_REQUIRE_BROWSER=1, so
//! that in CI a missing browser fails the test instead of skipping it.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{asks_total, inspector_data, memeval, output_files as tree, shipped as scenario};

/// A run of three shipped scenarios (and `more` arguments) into `dir/out`.
fn run_with(dir: &Path, more: &[&str]) -> PathBuf {
    let out = dir.join("out");
    let (a, b, c) = (
        scenario("needle-cabin-wifi"),
        scenario("knowledge-updates"),
        scenario("cold-start-billing"),
    );
    let mut args = vec![
        "run",
        &a,
        &b,
        &c,
        "--out",
        out.to_str().unwrap(),
        "--no-timings",
        "-q",
    ];
    args.extend(more);
    let o = memeval(&args, dir);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

fn run(dir: &Path) -> PathBuf {
    run_with(dir, &[])
}

#[test]
fn a_run_writes_every_chart_and_a_self_contained_report() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(tmp.path());
    let charts = tree(&out.join("charts"));
    let mut expected = vec![
        "overview-position".to_string(),
        "overview-recall".into(),
        "overview-tokens".into(),
    ];
    for sc in [
        "needle-cabin-wifi",
        "knowledge-updates",
        "cold-start-billing",
    ] {
        for chart in ["context", "cumulative", "recall", "budget"] {
            expected.push(format!("{sc}/{chart}"));
        }
    }
    // Only the scenarios that write summaries have a quality chart.
    expected.push("needle-cabin-wifi/quality".into());
    for stem in &expected {
        for ext in ["svg", "png"] {
            let name = format!("{stem}.{ext}");
            let bytes = charts
                .get(&name)
                .unwrap_or_else(|| panic!("{name} missing"));
            assert!(bytes.len() > 2000, "{name} is nearly empty");
        }
        assert_eq!(&charts[&format!("{stem}.png")][..4], b"\x89PNG");
    }
    assert!(!charts.contains_key("cold-start-billing/quality.svg"));
    assert_eq!(charts.len(), expected.len() * 2);

    // Legible on their own: titles, axis labels with units, legends.
    let svg = String::from_utf8_lossy(&charts["needle-cabin-wifi/context.svg"]).into_owned();
    for text in [
        "needle-cabin-wifi: context tokens per call",
        "message number",
        "tokens in the prompt",
        "max_context_tokens (8,000)",
        "hybrid",
    ] {
        assert!(svg.contains(text), "context chart lacks {text:?}");
    }
    let budget = String::from_utf8_lossy(&charts["needle-cabin-wifi/budget.svg"]).into_owned();
    for text in ["system", "summary", "retrieved", "buffer", "by section"] {
        assert!(budget.contains(text), "budget chart lacks {text:?}");
    }

    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    // Self-contained: no external script, style, image or font.
    for needle in ["<script src", "<link", "<img", "url(", "@import"] {
        assert!(
            !html.contains(needle),
            "report.html refers outside: {needle}"
        );
    }
    let external: Vec<&str> = html
        .match_indices("http")
        .map(|(i, _)| &html[i..(i + 30).min(html.len())])
        .filter(|s| !s.starts_with("http://www.w3.org/"))
        .collect();
    assert!(external.is_empty(), "{external:?}");
    // Every chart is inline.
    assert_eq!(html.matches("<figure").count(), expected.len());
    assert_eq!(html.matches("><svg width=").count(), expected.len());
    // Each scenario's charts over its messages say where their x axis lies
    // (what the page maps a click back to): pixels within the picture's
    // 1,100, from the first message to the last.
    for sc in [
        "needle-cabin-wifi",
        "knowledge-updates",
        "cold-start-billing",
    ] {
        for chart in ["context", "recall"] {
            let head =
                format!("<figure data-scenario=\"{sc}\" data-chart=\"{chart}\" data-axis=\"");
            let at = html.find(&head).unwrap_or_else(|| panic!("{head}")) + head.len();
            let axis: Vec<f64> = html[at..at + html[at..].find('"').unwrap()]
                .split(' ')
                .map(|v| v.parse().unwrap())
                .collect();
            assert!(
                axis[0] > 50.0 && axis[0] < axis[1] && axis[1] < 1100.0,
                "{sc} {chart}: {axis:?}"
            );
            assert!(
                axis[2] >= 1.0 && axis[2] < axis[3],
                "{sc} {chart}: {axis:?}"
            );
        }
    }
    // The results table, and the drill-down of a known miss: the window
    // forgets the cabin wifi password stated early in the conversation.
    assert!(html.contains("<table class=\"sortable\" id=\"totals\">"));
    assert!(html.contains("<table class=\"sortable\" id=\"results\">"));
    let drill = &html[html.find("id=\"scenario-needle-cabin-wifi\"").unwrap()..];
    let drill = &drill[..drill.find("</details>").unwrap()];
    assert!(drill.contains("stated at message"), "{drill}");
    assert!(drill.contains("the context held"), "{drill}");
    assert!(drill.contains("<td class=\"t\">window</td>"), "{drill}");
    assert!(drill.contains("buffer "), "{drill}");
}

#[test]
fn report_regenerates_charts_and_html_from_the_files() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(tmp.path());
    let before = tree(&out);
    std::fs::remove_dir_all(out.join("charts")).unwrap();
    std::fs::remove_file(out.join("report.html")).unwrap();
    // A stale chart is removed, not kept beside the new ones.
    std::fs::create_dir_all(out.join("charts/gone")).unwrap();
    std::fs::write(out.join("charts/gone/old.svg"), "<svg/>").unwrap();
    let o = memeval(&["report", out.to_str().unwrap()], tmp.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("report.html"));
    let after = tree(&out);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &before {
        assert!(
            bytes == &after[name],
            "{name} differs after `memeval report`"
        );
    }

    // Not a run folder, or a broken file: exit 2, naming the file.
    let o = memeval(&["report", tmp.path().to_str().unwrap()], tmp.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a memeval run folder"));
    let probes = out.join("probes.csv");
    let text = std::fs::read_to_string(&probes).unwrap();
    std::fs::write(&probes, text.replacen(",1,", ",one,", 1)).unwrap();
    let o = memeval(&["report", out.to_str().unwrap()], tmp.path());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("probes.csv:2"), "{stderr}");
}

/// Chromium on PATH; without it, a test skips, saying so, except where
/// MEMEVAL_REQUIRE_BROWSER is set (CI), where it fails.
fn browser() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH")?
                .to_str()?
                .split(':')
                .map(|d| Path::new(d).join(name))
                .find(|p| p.is_file())
        });
    if found.is_none() {
        assert!(
            std::env::var_os("MEMEVAL_REQUIRE_BROWSER").is_none(),
            "MEMEVAL_REQUIRE_BROWSER is set but no Chromium is installed"
        );
        eprintln!("SKIPPED: no Chromium on PATH (apt-get install chromium); .ci/run installs it");
    }
    found
}

#[test]
fn the_report_renders_in_a_headless_browser_without_errors() {
    let Some(chromium) = browser() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = run(tmp.path());
    let url = format!("file://{}", out.join("report.html").display());
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--virtual-time-budget=3000",
    ];
    let dom = Command::new(&chromium)
        .args(common)
        .arg(format!(
            "--user-data-dir={}",
            tmp.path().join("profile-a").display()
        ))
        .args(["--dump-dom", &url])
        .output()
        .expect("run chromium");
    let dom = String::from_utf8_lossy(&dom.stdout);
    let body = dom
        .find("<body")
        .map(|i| &dom[i..i + dom[i..].find('>').unwrap()])
        .unwrap_or_else(|| panic!("no body in the rendered page: {dom:.500}"));
    // The page's own script ran to the end, met no error, and found the
    // charts laid out with a size (those of the open sections).
    assert!(body.contains("data-ready=\"1\""), "{body}");
    assert!(body.contains("data-errors=\"\""), "{body}");
    let count = |attr: &str| -> usize {
        let key = format!("{attr}=\"");
        let at = body.find(&key).unwrap_or_else(|| panic!("{attr}: {body}")) + key.len();
        body[at..at + body[at..].find('"').unwrap()]
            .parse()
            .unwrap()
    };
    assert_eq!(count("data-charts"), 3 + 4 * 3 + 1, "{body}");
    assert!(count("data-visible-charts") >= 3 + 4, "{body}");

    // A screenshot: the page is not blank and shows the charts' colours.
    let shot = tmp.path().join("report.png");
    let o = Command::new(&chromium)
        .args(common)
        .arg(format!(
            "--user-data-dir={}",
            tmp.path().join("profile-b").display()
        ))
        .args(["--window-size=1280,2400"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .expect("run chromium");
    assert!(shot.is_file(), "{}", String::from_utf8_lossy(&o.stderr));
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(channels).collect();
    // The summary strategy's blue (0, 114, 178), as the bars and lines draw it.
    let blue = pixels
        .iter()
        .filter(|p| p[0] < 30 && (100..130).contains(&p[1]) && (160..195).contains(&p[2]))
        .count();
    let white = pixels
        .iter()
        .filter(|p| p[..3].iter().all(|&c| c > 245))
        .count();
    assert!(
        blue > 500,
        "only {blue} pixels of the summary colour: charts not drawn"
    );
    assert!(white < pixels.len() * 97 / 100, "the page is nearly blank");
}

/// A scenario whose marks are known: a phrase across a line break and in
/// another case, after a character of two UTF-16 units; a replaced fact.
const CRAFTED: &str = r#"{
  "format": 1,
  "name": "crafted-marks",
  "user": "u",
  "system_prompt": "You help.",
  "facts": [
    {"id": "code", "statement": "The door code is pelican 42.", "expect": ["pelican 42"]},
    {"id": "city", "expect": ["Lyon"]},
    {"id": "city-now", "expect": ["Rotterdam"], "supersedes": "city"}
  ],
  "turns": [
    {"role": "user", "content": "🙂 Note: the door code is PELICAN\n  42, twice: pelican 42.", "plants": ["code"]},
    {"role": "assistant", "content": "Noted."},
    {"role": "user", "content": "I live in Lyon.", "plants": ["city"]},
    {"role": "assistant", "content": "Lovely."},
    {"role": "user", "content": "I moved to Rotterdam, far from Lyon.", "plants": ["city-now"]},
    {"role": "assistant", "content": "Good luck."},
    {"probe": "What is the door code?", "id": "door", "expects": ["code"]},
    {"probe": "Where do I live?", "id": "where", "expects": ["city-now"]}
  ]
}"#;

/// `text[a..b]` in UTF-16 units, as the page's script slices it.
fn utf16(text: &str, a: u64, b: u64) -> String {
    let units: Vec<u16> = text.encode_utf16().collect();
    String::from_utf16(&units[a as usize..b as usize]).unwrap()
}

fn fold(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// A run with budgets small enough that strategies miss facts: shipped
/// scenarios (one with tool calls, one with generated replies, one with
/// knowledge updates) and the crafted one.
fn tight_run(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("crafted.json"), CRAFTED).unwrap();
    let orders = scenario("support-orders");
    run_with(
        dir,
        &[
            &orders,
            "crafted.json",
            "--set",
            "window.max_tokens=300",
            "--set",
            "summary.trigger_tokens=400",
            "--set",
            "summary.max_summary_tokens=60",
            "--set",
            "vector.buffer_message_limit=4",
            "--set",
            "vector.top_k=3",
        ],
    )
}

#[test]
fn the_inspector_holds_every_probe_ask_and_marks_what_recall_found() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tight_run(tmp.path());
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let data = inspector_data(&html);
    let fields: Vec<&str> = data["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    let field = |v: &serde_json::Value, name: &str| -> serde_json::Value {
        v[fields.iter().position(|f| *f == name).unwrap()].clone()
    };
    let scenarios = data["scenarios"].as_array().unwrap();
    let by_name = |name: &str| scenarios.iter().find(|s| s["name"] == name).unwrap();
    let db = rusqlite::Connection::open(out.join("memory.sqlite")).unwrap();

    // Every probe ask of probes.csv, every strategy, with its references.
    let probes = common::rows(&out.join("probes.csv"));
    let mut asks = std::collections::BTreeSet::new();
    let (mut missed, mut summarized, mut recalled_facts) = (0, 0, 0);
    for p in &probes {
        let sc = by_name(&p["scenario"]);
        asks.insert((
            p["scenario"].clone(),
            p["turn"].clone(),
            p["probe_id"].clone(),
        ));
        let ask = sc["asks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| {
                a["turn"] == p["turn"].parse::<u64>().unwrap()
                    && a["probe"] == p["probe_id"].as_str()
            })
            .unwrap_or_else(|| panic!("{p:?}: not in the inspector"));
        assert_eq!(ask["question"], p["question"].as_str());
        let v = &ask["by"][&p["strategy"]];
        let text = |name: &str| match field(v, name) {
            serde_json::Value::Null => String::new(),
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        for name in [
            "retrieved",
            "scores",
            "buffer",
            "tokens_system",
            "tokens_summary",
            "tokens_retrieved",
            "tokens_buffer",
            "context_tokens",
            "recalled",
            "stale",
            "answer",
        ] {
            let column = match name {
                "retrieved" => "context_retrieved",
                "scores" => "retrieved_scores",
                "buffer" => "context_buffer",
                n => n,
            };
            assert_eq!(text(name), p[column], "{name} of {p:?}");
        }
        assert_eq!(text("summary"), p["context_summary"], "{p:?}");
        let recall: Option<f64> = p["recall"].parse().ok();
        assert_eq!(field(v, "recall").as_f64(), recall, "{p:?}");
        if recall.is_some_and(|r| r < 1.0) {
            missed += 1;
        }

        // The marks are what recall found: a fact with phrases is recalled
        // exactly where a phrase of it is marked in the context's texts.
        let strategy = &p["strategy"];
        let mut pieces: Vec<(String, Vec<serde_json::Value>)> = Vec::new();
        if let Ok(idx) = p["context_summary"].parse::<u32>() {
            let s = &sc["sums"][strategy][idx.to_string()];
            pieces.push((
                s[3].as_str().unwrap().into(),
                s[4].as_array().unwrap().clone(),
            ));
            summarized += 1;
        }
        let mut numbers: Vec<u64> = p["context_retrieved"]
            .split(';')
            .filter_map(|n| n.parse().ok())
            .collect();
        if let Some((a, b)) = p["context_buffer"].split_once('-') {
            numbers.extend(a.parse::<u64>().unwrap()..=b.parse().unwrap());
        }
        for n in numbers {
            let m = sc["own"][strategy]
                .get(n.to_string())
                .unwrap_or(&sc["msgs"][n as usize - 1]);
            pieces.push((
                m[1].as_str().unwrap().into(),
                m[2].as_array().unwrap().clone(),
            ));
        }
        if p["over_window"] == "1" {
            continue;
        }
        let recalled: Vec<&str> = p["recalled"].split(';').collect();
        for fact in p["expected"].split(';').filter(|f| !f.is_empty()) {
            let phrases = sc["facts"][fact][0].as_array().unwrap();
            if phrases.is_empty() {
                continue;
            }
            let marked = pieces
                .iter()
                .any(|(_, spans)| spans.iter().any(|s| phrases.contains(&s[2])));
            assert_eq!(marked, recalled.contains(&fact), "{fact} at {p:?}");
            recalled_facts += usize::from(marked);
        }
    }
    assert_eq!(asks_total(&data), asks.len());
    // The budgets cut: strategies missed facts, summaries were in contexts.
    assert!(
        missed >= 10 && summarized >= 10 && recalled_facts >= 50,
        "{missed} {summarized} {recalled_facts}"
    );

    // Each message's text is its strategy's, as memory.sqlite holds it
    // (generated replies differ by strategy), and every span marks a
    // phrase of the scenario, folded as recall folds.
    let mut own = 0;
    for sc in scenarios {
        let name = sc["name"].as_str().unwrap();
        let file: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(if name == "crafted-marks" {
                tmp.path().join("crafted.json")
            } else {
                PathBuf::from(scenario(name))
            })
            .unwrap(),
        )
        .unwrap();
        let phrases: Vec<String> = file["facts"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|f| f["expect"].as_array().cloned().unwrap_or_default())
            .map(|p| fold(p.as_str().unwrap()))
            .collect();
        for strategy in data["strategies"].as_array().unwrap() {
            let strategy = strategy.as_str().unwrap();
            let mut stmt = db
                .prepare("SELECT number, content FROM messages WHERE ns = ?1 ORDER BY number")
                .unwrap();
            let stored: Vec<(i64, String)> = stmt
                .query_map([format!("{name}/{strategy}/1")], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert_eq!(stored.len(), sc["msgs"].as_array().unwrap().len());
            for (n, content) in stored {
                let n = n as u64;
                let m = match sc["own"][strategy].get(n.to_string()) {
                    Some(m) => {
                        own += 1;
                        m
                    }
                    None => &sc["msgs"][n as usize - 1],
                };
                let text = m[1].as_str().unwrap();
                assert!(text.starts_with(&content), "{name}/{strategy} #{n}");
                for s in m[2].as_array().unwrap() {
                    let marked = utf16(text, s[0].as_u64().unwrap(), s[1].as_u64().unwrap());
                    assert!(phrases.contains(&fold(&marked)), "{marked:?}");
                }
            }
        }
    }
    assert!(
        own > 0,
        "cold-start-billing's generated replies differ by strategy"
    );

    // The crafted case, mark by mark.
    let sc = by_name("crafted-marks");
    let first = &sc["msgs"][0];
    let text = first[1].as_str().unwrap();
    let marks: Vec<String> = first[2]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| utf16(text, s[0].as_u64().unwrap(), s[1].as_u64().unwrap()))
        .collect();
    assert_eq!(marks, ["PELICAN\n  42", "pelican 42"]);
    let moved = &sc["msgs"][4];
    let marks: Vec<String> = moved[2]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            utf16(
                moved[1].as_str().unwrap(),
                s[0].as_u64().unwrap(),
                s[1].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(marks, ["Rotterdam", "Lyon"]);
    assert_eq!(sc["facts"]["city-now"][1], "city");
}

/// The page at `url` as a headless Chromium leaves it: its DOM.
fn dump_dom(chromium: &Path, profile: &Path, url: &str) -> String {
    let o = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", url])
        .output()
        .expect("run chromium");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// An attribute of the first element opening with `tag`.
fn attr(dom: &str, tag: &str, name: &str) -> String {
    let el = &dom[dom
        .find(tag)
        .unwrap_or_else(|| panic!("no {tag}: {dom:.400}"))..];
    let el = &el[..el.find('>').unwrap()];
    let key = format!(" {name}=\"");
    let at = el.find(&key).unwrap_or_else(|| panic!("{name}: {el}")) + key.len();
    el[at..at + el[at..].find('"').unwrap()].to_string()
}

#[test]
fn the_inspector_opens_navigates_and_marks_in_a_headless_browser() {
    let Some(chromium) = browser() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tight_run(tmp.path());
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let data = inspector_data(&html);
    let page = format!("file://{}", out.join("report.html").display());
    let mut profiles = 0;
    let mut open = |hash: &str| {
        profiles += 1;
        let dom = dump_dom(
            &chromium,
            &tmp.path().join(format!("profile-{profiles}")),
            &format!("{page}#{hash}"),
        );
        assert_eq!(attr(&dom, "<body", "data-errors"), "", "{hash}");
        assert_eq!(attr(&dom, "<body", "data-ready"), "1", "{hash}");
        dom
    };
    let section = |dom: &str, name: &str| attr(dom, "<section id=\"inspector\"", name);
    let scenarios = data["scenarios"].as_array().unwrap();
    let names: Vec<&str> = scenarios
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    let asks = |i: usize| scenarios[i]["asks"].as_array().unwrap();
    let id = |i: usize, a: &serde_json::Value| {
        format!(
            "{}/{}/{}",
            names[i],
            a["turn"],
            a["probe"].as_str().unwrap()
        )
    };
    let missed = |a: &serde_json::Value| {
        a["by"]
            .as_object()
            .unwrap()
            .values()
            .any(|v| v[9].as_f64().is_some_and(|r| r < 1.0))
    };

    // Opened at an ask: every strategy's column, the phrases marked as
    // recall matched them (across the line break, in capitals).
    let dom = open("inspect=crafted-marks/6/door");
    assert_eq!(section(&dom, "data-inspect"), "crafted-marks/6/door");
    assert_eq!(section(&dom, "data-columns"), "5");
    assert_eq!(section(&dom, "data-asks"), asks_total(&data).to_string());
    assert!(
        dom.contains("<mark class=\"fact\">PELICAN\n  42</mark>"),
        "{dom:.3000}"
    );
    assert!(dom.contains("<mark class=\"fact\">pelican 42</mark>"));
    let dom = open("inspect=crafted-marks/6/where");
    assert!(dom.contains("<mark class=\"fact\">Rotterdam</mark>"));
    assert!(dom.contains("<mark class=\"old\">Lyon</mark>"));

    // An ask a strategy missed: each missed fact's stating message shown,
    // marked absent, in that strategy's column.
    let (sc, ask) = (0..scenarios.len())
        .flat_map(|i| asks(i).iter().map(move |a| (i, a)))
        .find(|(_, a)| missed(a))
        .unwrap();
    let absent: usize = ask["by"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| {
            let recalled: Vec<&str> = v[10].as_str().unwrap().split(';').collect();
            ask["expected"]
                .as_array()
                .unwrap()
                .iter()
                .zip(ask["planted"].as_array().unwrap())
                .filter(|(f, n)| !recalled.contains(&f.as_str().unwrap()) && n.as_u64() > Some(0))
                .count()
        })
        .sum();
    assert!(absent > 0);
    let dom = open(&format!("inspect={}", id(sc, ask)));
    assert_eq!(section(&dom, "data-absent"), absent.to_string());

    // Keys: two asks on, the next scenario, then only the asks a strategy
    // missed (the first of them, unless the current one is).
    let k = names
        .iter()
        .position(|n| *n == "knowledge-updates")
        .unwrap();
    let dom = open(&format!(
        "inspect={}&keys=ArrowRight,ArrowRight",
        id(k, &asks(k)[0])
    ));
    assert_eq!(section(&dom, "data-inspect"), id(k, &asks(k)[2]));
    let dom = open(&format!(
        "inspect={}&keys=ArrowRight,],m",
        id(k, &asks(k)[0])
    ));
    let next = &asks(k + 1);
    let expect = if missed(&next[0]) {
        &next[0]
    } else {
        next.iter().find(|a| missed(a)).unwrap()
    };
    assert_eq!(section(&dom, "data-inspect"), id(k + 1, expect));

    // A message number typed in: the ask nearest it, said to be the nearest.
    let nearest_to = |i: usize, t: u64| {
        asks(i)
            .iter()
            .min_by_key(|a| a["turn"].as_u64().unwrap().abs_diff(t))
            .unwrap()
    };
    let typed = (1..60).find(|t| nearest_to(k, *t)["turn"] != *t).unwrap();
    let dom = open(&format!("inspect={}&turn={typed}", id(k, &asks(k)[0])));
    assert_eq!(section(&dom, "data-inspect"), id(k, nearest_to(k, typed)));
    assert!(dom.contains(&format!(
        "message {typed} was asked for; no probe was asked there"
    )));

    // A click on the first scenario's recall chart, halfway along its x
    // axis: the ask nearest the message drawn there (a pixel either way).
    let head = format!(
        "<figure data-scenario=\"{}\" data-chart=\"recall\" data-axis=\"",
        names[0]
    );
    let at = html.find(&head).unwrap() + head.len();
    let axis: Vec<f64> = html[at..at + html[at..].find('"').unwrap()]
        .split(' ')
        .map(|v| v.parse().unwrap())
        .collect();
    let per_pixel = (axis[3] - axis[2]) / (axis[1] - axis[0]);
    let middle = axis[2] + 0.5 * (axis[3] - axis[2]);
    let nearest = |t: f64| {
        asks(0)
            .iter()
            .min_by(|a, b| {
                let d = |x: &serde_json::Value| (x["turn"].as_f64().unwrap() - t).abs();
                d(a).partial_cmp(&d(b)).unwrap()
            })
            .map(|a| id(0, a))
            .unwrap()
    };
    let candidates: Vec<String> = [-1.0, 0.0, 1.0]
        .iter()
        .map(|d| nearest((middle + d * per_pixel.max(1.0)).round()))
        .collect();
    let dom = open(&format!("&click={}/recall/0.5", names[0]));
    let shown = section(&dom, "data-inspect");
    assert!(candidates.contains(&shown), "{shown} not in {candidates:?}");

    // A run folder copied without its memory.sqlite: `memeval report` still
    // gives every ask and its references, and says why no text is shown.
    std::fs::remove_file(out.join("memory.sqlite")).unwrap();
    let o = memeval(&["report", out.to_str().unwrap()], tmp.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bare = inspector_data(&std::fs::read_to_string(out.join("report.html")).unwrap());
    assert_eq!(asks_total(&bare), asks_total(&data));
    assert!(
        bare["scenarios"][0]["note"]
            .as_str()
            .unwrap()
            .contains("memory.sqlite: not found")
    );
    let dom = open(&format!("inspect={}", id(sc, ask)));
    assert_eq!(section(&dom, "data-columns"), "5");
    assert!(dom.contains("no message or summary text is shown"));
    assert!(dom.contains("not in the run's memory"));
}
