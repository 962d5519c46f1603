//! Charts, report.html and `memeval report`, through the real binary; and
//! the page checked in a real headless browser (Chromium) when one is
//! installed. `.ci/run` installs it and sets MEMEVAL_REQUIRE_BROWSER=1, so
//! that in CI a missing browser fails the test instead of skipping it.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{memeval, output_files as tree, shipped as scenario};

/// A run of three shipped scenarios into `dir/out`.
fn run(dir: &Path) -> PathBuf {
    let out = dir.join("out");
    let o = memeval(
        &[
            "run",
            &scenario("needle-cabin-wifi"),
            &scenario("knowledge-updates"),
            &scenario("cold-start-billing"),
            "--out",
            out.to_str().unwrap(),
            "--no-timings",
            "-q",
        ],
        dir,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
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
    for sc in ["needle-cabin-wifi", "knowledge-updates", "cold-start-billing"] {
        for chart in ["context", "recall"] {
            let head = format!("<figure data-scenario=\"{sc}\" data-chart=\"{chart}\" data-axis=\"");
            let at = html.find(&head).unwrap_or_else(|| panic!("{head}")) + head.len();
            let axis: Vec<f64> = html[at..at + html[at..].find('"').unwrap()]
                .split(' ')
                .map(|v| v.parse().unwrap())
                .collect();
            assert!(
                axis[0] > 50.0 && axis[0] < axis[1] && axis[1] < 1100.0,
                "{sc} {chart}: {axis:?}"
            );
            assert!(axis[2] >= 1.0 && axis[2] < axis[3], "{sc} {chart}: {axis:?}");
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

fn browser() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH")?
                .to_str()?
                .split(':')
                .map(|d| Path::new(d).join(name))
                .find(|p| p.is_file())
        })
}

#[test]
fn the_report_renders_in_a_headless_browser_without_errors() {
    let Some(chromium) = browser() else {
        assert!(
            std::env::var_os("MEMEVAL_REQUIRE_BROWSER").is_none(),
            "MEMEVAL_REQUIRE_BROWSER is set but no Chromium is installed"
        );
        eprintln!("SKIPPED: no Chromium on PATH (apt-get install chromium); .ci/run installs it");
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
