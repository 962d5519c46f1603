//! report.html: one self-contained page (inline CSS, SVG and script; no
//! network, no other file) with the run's metadata, the results tables
//! (sortable), every chart, and a per-probe drill-down of what each
//! strategy missed and what its context held instead.

use std::fmt::Write as _;

use super::{METRICS, ReportError, best_values};
use crate::chart::run::Written;
use crate::chart::thousands;
use crate::results::Aggregate;
use crate::results::ProbeRow as Probe;
use crate::results::read::RunData;

/// Escapes text for HTML content and attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The link to a probe ask in the page's inspector (`#inspect=s/t/p`),
/// ready for an attribute (what it percent-encodes needs no escaping).
pub fn inspect_href(scenario: &str, turn: u32, probe: &str) -> String {
    format!("#inspect={}/{turn}/{}", uri(scenario), uri(probe))
}

/// Percent-encodes text for a URL's fragment, as `encodeURIComponent` does.
fn uri(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn fmt_metric(name: &str, v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if matches!(name, "recall" | "final" | "quality") => format!("{v:.3}"),
        Some(v) => thousands(v),
    }
}

const STYLE: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0 auto;max-width:1240px;padding:0 20px 60px;color:#222;line-height:1.45}
h1{margin:24px 0 4px}h2{margin-top:36px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666;margin:0 0 16px}
.warn{background:#fff4e0;border-left:4px solid #e69f00;padding:8px 12px}
table{border-collapse:collapse;margin:10px 0;font-size:14px}
th,td{padding:4px 10px;border-bottom:1px solid #e6e6e6;text-align:right;white-space:nowrap}
th:first-child,td:first-child,th.t,td.t{text-align:left}
th{background:#f4f4f4;cursor:pointer;user-select:none;position:sticky;top:0}
th.sorted-asc::after{content:" \25B2"}th.sorted-desc::after{content:" \25BC"}
td.best{font-weight:700;background:#e7f4ea}
td.wrap{white-space:normal;text-align:left;max-width:420px}
tr.total td:first-child{color:#666}
.scroll{overflow-x:auto}
figure{margin:18px 0}figcaption{color:#555;font-size:14px}
figure svg{max-width:100%;height:auto;border:1px solid #eee}
details{margin:10px 0}summary{cursor:pointer;font-weight:600;font-size:18px;padding:6px 0}
.meta td,.meta th{text-align:left}
code{background:#f4f4f4;padding:1px 4px;border-radius:3px}
.miss{color:#b00020}
#inspector{width:calc(100vw - 60px);max-width:2400px;margin-left:calc(50% - 50vw + 30px)}
.ins-bar{position:sticky;top:0;background:#fff;padding:6px 0;z-index:2;border-bottom:1px solid #eee}
.ins-bar select{max-width:44%}#ins-turn{width:6em}
.ask{margin:10px 0}.note{color:#8a5a00}
.cols{display:flex;gap:10px;overflow-x:auto;align-items:flex-start}
.col{flex:1 0 240px;min-width:240px;border:1px solid #ddd;border-radius:4px;padding:6px 8px;font-size:13px}
.col h4{margin:2px 0 4px;font-size:15px}.col.missed{border-top:4px solid #b00020}.col.full{border-top:4px solid #1a7f37}
.verdict{color:#444;margin-bottom:6px}
.sec{margin:6px 0;border-top:1px solid #eee;padding-top:4px}.sh{font-weight:600;color:#333}.tk{color:#777;font-weight:400}
.buf{max-height:420px;overflow-y:auto;position:relative}
.msg{margin:4px 0;padding:3px 5px;background:#fafafa;border-left:3px solid #ddd}
.msg.planting{border-left-color:#1a7f37}.msg.absent{border-left-color:#b00020;background:#fff0f0}
.mh{color:#777;font-size:12px}.mt{white-space:pre-wrap;word-break:break-word}
.lost .fact{color:#b00020}
mark.fact{background:#c9f0d0}mark.old{background:#ffd8a8}
.ok{color:#1a7f37}.bad{color:#b00020}
kbd{border:1px solid #ccc;border-radius:3px;padding:0 4px;font-size:12px}
figure[data-axis] svg{cursor:pointer}
"#;

const SCRIPT: &str = r#"
(function(){
  var errors=[];
  window.addEventListener('error',function(e){errors.push(String(e.message));document.body.setAttribute('data-errors',errors.join(' | '));});
  function key(td){var v=td.getAttribute('data-v');if(v===null)return td.textContent.trim().toLowerCase();return v===''?-Infinity:parseFloat(v);}
  document.querySelectorAll('table.sortable').forEach(function(table){
    table.querySelectorAll('th').forEach(function(th,col){
      th.addEventListener('click',function(){
        var body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows);
        var asc=!th.classList.contains('sorted-asc');
        table.querySelectorAll('th').forEach(function(h){h.classList.remove('sorted-asc','sorted-desc');});
        th.classList.add(asc?'sorted-asc':'sorted-desc');
        rows.sort(function(a,b){var x=key(a.cells[col]),y=key(b.cells[col]);return (x<y?-1:x>y?1:0)*(asc?1:-1);});
        rows.forEach(function(r){body.appendChild(r);});
      });
    });
  });
  var shown=0;document.querySelectorAll('figure svg').forEach(function(s){var r=s.getBoundingClientRect();if(r.width>0&&r.height>0)shown++;});
  document.body.setAttribute('data-charts',String(document.querySelectorAll('figure svg').length));
  document.body.setAttribute('data-visible-charts',String(shown));
  document.body.setAttribute('data-errors',errors.join(' | '));
})();
"#;

/// Gives a plotters SVG a viewBox, so that it scales with the page.
fn scalable(svg: &str) -> String {
    let body = svg.trim_start_matches(|c| c != '<');
    let body = body
        .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
        .unwrap_or(body)
        .trim_start();
    let (Some(w), Some(h)) = (attr(body, "width"), attr(body, "height")) else {
        return body.to_string();
    };
    if body.contains("viewBox") {
        return body.to_string();
    }
    body.replacen("<svg ", &format!("<svg viewBox=\"0 0 {w} {h}\" "), 1)
}

fn attr<'a>(svg: &'a str, name: &str) -> Option<&'a str> {
    let head = &svg[..svg.find('>')?];
    let start = head.find(&format!(" {name}=\""))? + name.len() + 3;
    let len = head[start..].find('"')?;
    Some(&head[start..start + len])
}

fn figure(out: &mut String, data: &RunData, w: &Written) -> Result<(), ReportError> {
    let path = data.dir.join(format!("{}.svg", w.stem));
    let svg = std::fs::read_to_string(&path).map_err(|source| ReportError::Read {
        path: path.clone(),
        source,
    })?;
    // A chart over a scenario's messages opens the inspector where clicked.
    let linked = match (&w.scenario, &w.axis) {
        (Some(sc), Some(a)) => format!(
            " data-scenario=\"{}\" data-chart=\"{}\" data-axis=\"{} {} {} {}\"",
            esc(sc),
            esc(w.stem.rsplit('/').next().unwrap_or_default()),
            a.pixels.0,
            a.pixels.1,
            a.values.0,
            a.values.1
        ),
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "<figure{linked}>{}<figcaption>{} <a href=\"{s}.png\">PNG</a> · <a href=\"{s}.svg\">SVG</a></figcaption></figure>",
        scalable(&svg),
        esc(&w.caption),
        s = esc(&w.stem)
    );
    Ok(())
}

/// A sortable results table: per strategy over all scenarios (`totals`), or
/// one row per scenario and strategy, the best value of each group marked.
/// Every pair of strategies: the paired differences with their intervals.
fn comparisons_table(
    out: &mut String,
    comparisons: &[crate::results::compare::Comparison],
    extractive: bool,
) {
    let Some(first) = comparisons.first() else {
        return;
    };
    let _ = writeln!(
        out,
        "<p>Paired differences, first minus second over the same probe asks, with 95% intervals (paired bootstrap over {}, seeded) and McNemar's exact p for answers{}:</p>\n<div class=\"scroll\"><table id=\"comparisons\"><thead><tr><th class=\"t\">pair</th><th>recall</th><th>{}</th><th>McNemar p</th><th>context tokens</th></tr></thead><tbody>",
        esc(&first.resampled),
        if extractive {
            " (the offline extractive baseline's, not a model's)"
        } else {
            ""
        },
        super::answers_label(extractive)
    );
    let cell = |d: Option<&crate::results::compare::Difference>, digits: usize| match d {
        Some(d) => format!(
            "{:+.digits$} [{:.digits$}, {:.digits$}]",
            d.diff, d.ci_low, d.ci_high
        ),
        None => "–".to_string(),
    };
    for c in comparisons {
        let answers = c.answer_accuracy.as_ref();
        let _ = writeln!(
            out,
            "<tr><td class=\"t\">{} vs {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&c.first),
            esc(&c.second),
            cell(c.recall.as_ref(), 3),
            cell(answers.map(|a| &a.difference), 3),
            answers.map_or("–".to_string(), |a| format!("{:.3}", a.mcnemar_p)),
            cell(c.context_tokens.as_ref(), 0),
        );
    }
    out.push_str("</tbody></table></div>\n");
}

fn results_table(out: &mut String, data: &RunData, totals: bool) {
    let _ = write!(
        out,
        "<div class=\"scroll\"><table class=\"sortable\" id=\"{}\"><thead><tr><th class=\"t\">scenario</th><th class=\"t\">strategy</th>",
        if totals { "totals" } else { "results" }
    );
    for (name, _, _) in METRICS {
        let _ = write!(out, "<th>{name}</th>");
    }
    out.push_str("<th>mean ctx</th><th>p95 ctx</th><th>summaries</th><th>fact retention</th><th>build p95 µs</th></tr></thead><tbody>\n");
    let row = |out: &mut String, a: &Aggregate, best: &[Option<f64>], total: bool| {
        let _ = write!(
            out,
            "<tr{}><td class=\"t\">{}</td><td class=\"t\">{}</td>",
            if total { " class=\"total\"" } else { "" },
            if total {
                "all".into()
            } else {
                esc(&a.scenario)
            },
            esc(&a.strategy)
        );
        for ((name, get, _), b) in METRICS.iter().zip(best) {
            let v = get(a);
            let is_best = v.is_some() && v == *b;
            let _ = write!(
                out,
                "<td data-v=\"{}\"{}>{}</td>",
                v.map(|x| x.to_string()).unwrap_or_default(),
                if is_best { " class=\"best\"" } else { "" },
                fmt_metric(name, v)
            );
        }
        let _ = writeln!(
            out,
            "<td data-v=\"{m}\">{}</td><td data-v=\"{p}\">{}</td><td data-v=\"{s}\">{s}</td><td data-v=\"{}\">{}</td><td data-v=\"{b}\">{}</td></tr>",
            thousands(a.mean_context_tokens),
            thousands(a.p95_context_tokens as f64),
            a.mean_fact_retention
                .map(|x| x.to_string())
                .unwrap_or_default(),
            fmt_metric("recall", a.mean_fact_retention),
            thousands(a.build_p95_us as f64),
            m = a.mean_context_tokens,
            p = a.p95_context_tokens,
            s = a.summaries,
            b = a.build_p95_us,
        );
    };
    if totals {
        let rows: Vec<&Aggregate> = data.totals.iter().collect();
        let best = best_values(&rows);
        for a in rows {
            row(out, a, &best, true);
        }
    } else {
        // Results come by scenario (results.json's order): one pass.
        for rows in data.results.chunk_by(|a, b| a.scenario == b.scenario) {
            let rows: Vec<&Aggregate> = rows.iter().collect();
            let best = best_values(&rows);
            for a in rows {
                row(out, a, &best, false);
            }
        }
    }
    out.push_str("</tbody></table></div>\n");
}

fn context_held(p: &Probe) -> String {
    let mut parts = Vec::new();
    if let Some(s) = p.context_summary {
        parts.push(format!("summary #{s}"));
    }
    if !p.context_retrieved.is_empty() {
        parts.push(format!(
            "retrieved messages {}",
            p.context_retrieved.replace(';', ", ")
        ));
    }
    if !p.context_buffer.is_empty() {
        parts.push(format!("buffer {}", p.context_buffer.replace('-', "–")));
    }
    if parts.is_empty() {
        parts.push("nothing but the system prompt".into());
    }
    format!(
        "{} ({} tokens)",
        parts.join("; "),
        thousands(f64::from(p.context_tokens))
    )
}

fn missed(p: &Probe) -> String {
    let recalled: Vec<&str> = p.recalled.split(';').filter(|s| !s.is_empty()).collect();
    let planted: Vec<&str> = p.planted_at.split(';').collect();
    p.expected
        .split(';')
        .filter(|s| !s.is_empty())
        .enumerate()
        .filter(|(_, f)| !recalled.contains(f))
        .map(
            |(i, f)| match planted.get(i).filter(|m| !m.is_empty() && **m != "0") {
                Some(m) => format!(
                    "{} <span class=\"sub\">(stated at message {m})</span>",
                    esc(f)
                ),
                None => esc(f),
            },
        )
        .collect::<Vec<_>>()
        .join(", ")
}

fn drill_down(out: &mut String, data: &RunData, sc: &str) {
    let misses: Vec<&Probe> = data
        .in_scenario(&data.probes, sc)
        .iter()
        .filter(|p| p.recall.is_some_and(|r| r < 1.0))
        .collect();
    if misses.is_empty() {
        out.push_str("<p>Every strategy recalled every expected fact at every probe.</p>\n");
        return;
    }
    let _ = writeln!(
        out,
        "<p>{} probe answer(s) missed at least one fact. Each row: what was missed, and what the context held instead.</p>",
        misses.len()
    );
    out.push_str("<table class=\"sortable\"><thead><tr><th class=\"t\">strategy</th><th>turn</th><th class=\"t\">probe</th><th class=\"t\">question</th><th>recall</th><th class=\"t\">missed</th><th>stale</th><th class=\"t\">the context held</th></tr></thead><tbody>\n");
    for p in misses {
        let _ = writeln!(
            out,
            "<tr><td class=\"t\">{}</td><td data-v=\"{t}\"><a href=\"{}\">{t}</a></td><td class=\"t\">{} <span class=\"sub\">{}</span></td><td class=\"wrap\">{}</td><td data-v=\"{r}\">{r:.3}</td><td class=\"wrap miss\">{}</td><td data-v=\"{st}\">{st}</td><td class=\"wrap\">{}{}</td></tr>",
            esc(&p.strategy),
            inspect_href(sc, p.turn, &p.probe_id),
            esc(&p.probe_id),
            esc(&p.kind),
            esc(&p.question),
            missed(p),
            esc(&context_held(p)),
            if p.over_window == 1 {
                " — over the model's window: the call would fail"
            } else {
                ""
            },
            t = p.turn,
            r = p.recall.unwrap_or(0.0),
            st = p.stale,
        );
    }
    out.push_str("</tbody></table>\n");
}

fn metadata(out: &mut String, data: &RunData) {
    let m = &data.meta;
    let _ = writeln!(
        out,
        "<table class=\"meta\"><tr><th>memeval</th><td>{}</td></tr><tr><th>backend</th><td>{}</td></tr><tr><th>chat model</th><td>{} (<code>{}</code>, context window {})</td></tr><tr><th>seed</th><td>{}</td></tr><tr><th>replays</th><td>{}</td></tr><tr><th>context budget</th><td>{} tokens</td></tr></table>",
        esc(&m.memeval_version),
        esc(&m.backend),
        esc(&m.chat_model),
        esc(&m.encoding),
        thousands(f64::from(m.context_window)),
        m.seed,
        m.repeats,
        thousands(data.budget as f64),
    );
    out.push_str("<table class=\"sortable\"><thead><tr><th class=\"t\">scenario</th><th>messages</th><th>probe asks</th><th class=\"t\">file</th><th class=\"t\">sha256</th></tr></thead><tbody>\n");
    for sc in &m.scenarios {
        let _ = writeln!(
            out,
            "<tr><td class=\"t\">{}</td><td data-v=\"{m}\">{m}</td><td data-v=\"{p}\">{p}</td><td class=\"t\"><code>{}</code></td><td class=\"t\"><code>{}</code></td></tr>",
            esc(&sc.name),
            esc(&sc.file),
            esc(&sc.sha256.chars().take(16).collect::<String>()),
            m = sc.messages,
            p = sc.probes,
        );
    }
    out.push_str("</tbody></table>\n");
    let config = serde_json::to_string_pretty(&m.recorded_config()).unwrap_or_default();
    let _ = writeln!(
        out,
        "<details><summary>Configuration</summary><pre>{}</pre></details>",
        esc(&config)
    );
}

/// The whole page.
pub fn render(data: &RunData, charts: &[Written]) -> Result<String, ReportError> {
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>memeval report</title><style>");
    out.push_str(STYLE);
    out.push_str("</style></head><body>\n<h1>memeval report</h1>\n");
    let _ = writeln!(
        out,
        "<p class=\"sub\">{} scenario(s) × {} strateg{}: {}. Click a column to sort; the best value per scenario is highlighted.</p>",
        data.scenarios.len(),
        data.strategies.len(),
        if data.strategies.len() == 1 {
            "y"
        } else {
            "ies"
        },
        esc(&data.strategies.join(", "))
    );
    // What makes these numbers incomplete, said before any of them.
    if data.meta.partial {
        out.push_str("<p class=\"warn\"><strong>Partial run:</strong> it was interrupted; only the replays that had finished are here. <code>memeval run --resume</code> completes it.</p>\n");
    }
    if !data.meta.failed.is_empty() {
        let _ = writeln!(
            out,
            "<p class=\"warn\"><strong>Failed replays:</strong> {} replay(s) could not finish and are left out of every figure:</p>\n<ul>",
            data.meta.failed.len()
        );
        for f in &data.meta.failed {
            let _ = writeln!(
                out,
                "<li><code>{}/{}/{}</code>: <pre>{}</pre></li>",
                esc(&f.scenario),
                esc(&f.strategy),
                f.repeat,
                esc(&f.error)
            );
        }
        out.push_str("</ul>\n");
    }
    let failed: u64 = data.results.iter().map(|a| a.failed_calls).sum();
    if failed > 0 {
        let _ = writeln!(
            out,
            "<p class=\"warn\"><strong>Incomplete:</strong> {failed} API call(s) failed after their retries (listed in calls.csv); the figures they feed are incomplete.</p>"
        );
    }
    out.push_str(GATE_MARK);
    out.push_str("<h2>Results</h2>\n<p>Per strategy, over every scenario:</p>\n");
    results_table(&mut out, data, true);
    let kinds = super::kind_table(&data.totals);
    if !kinds.is_empty() {
        let note = super::kinds_note(data.meta.extractive_answers());
        let _ = write!(
            out,
            "<p>Recall by probe kind, over every scenario ({}):</p>\n<div class=\"scroll\"><table class=\"sortable\" id=\"kinds\"><thead><tr>",
            esc(note)
        );
        for (i, h) in kinds[0].iter().enumerate() {
            let class = if i == 0 { " class=\"t\"" } else { "" };
            let _ = write!(out, "<th{class}>{}</th>", esc(h));
        }
        out.push_str("</tr></thead><tbody>\n");
        for row in &kinds[1..] {
            out.push_str("<tr>");
            for (i, cell) in row.iter().enumerate() {
                if i == 0 {
                    let _ = write!(out, "<td class=\"t\">{}</td>", esc(cell));
                } else {
                    let v = cell.split(' ').next().unwrap_or("");
                    let _ = write!(out, "<td data-v=\"{}\">{}</td>", esc(v), esc(cell));
                }
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody></table></div>\n");
    }
    comparisons_table(&mut out, &data.comparisons, data.meta.extractive_answers());
    out.push_str("<details><summary>Per scenario and strategy</summary>\n");
    results_table(&mut out, data, false);
    out.push_str("</details>\n");
    out.push_str("<h2>Across scenarios</h2>\n");
    for w in charts.iter().filter(|w| w.scenario.is_none()) {
        figure(&mut out, data, w)?;
    }
    out.push_str("<h2>Per scenario</h2>\n");
    if data.drawn.len() < data.scenarios.len() {
        let _ = writeln!(
            out,
            "<p class=\"sub\">Missed facts and charts for the first {} of {} scenarios (by name); the tables above hold every scenario, probes.csv every probe.</p>",
            data.drawn.len(),
            data.scenarios.len()
        );
    }
    for (i, sc) in data.drawn.iter().enumerate() {
        let _ = writeln!(
            out,
            "<details{} id=\"scenario-{}\"><summary>{}</summary>\n<h3>Missed facts</h3>",
            if i == 0 { " open" } else { "" },
            esc(sc),
            esc(sc)
        );
        drill_down(&mut out, data, sc);
        for w in charts.iter().filter(|w| w.scenario.as_deref() == Some(sc)) {
            figure(&mut out, data, w)?;
        }
        out.push_str("</details>\n");
    }
    super::inspector::section(&mut out, data);
    out.push_str("<h2>Run</h2>\n");
    metadata(&mut out, data);
    out.push_str("<script>");
    out.push_str(SCRIPT);
    // Its own script element: an error in it is reported by the one above.
    out.push_str("</script>\n<script>");
    out.push_str(super::inspector::SCRIPT);
    out.push_str("</script>\n<script>document.body.setAttribute('data-ready','1');</script>\n</body></html>\n");
    Ok(out)
}

/// Where a gated run's section goes in report.html (escaped text never
/// holds a comment).
const GATE_MARK: &str = "<!--memeval:gate-->\n";

/// Puts `section` (the gate's, of a gated run) into the report.html of the
/// run in `dir`, where the page keeps its place; the file is replaced
/// whole, never half-written.
pub fn add_section(dir: &std::path::Path, section: &str) -> Result<(), ReportError> {
    let path = dir.join("report.html");
    let page = std::fs::read_to_string(&path).map_err(|source| ReportError::Read {
        path: path.clone(),
        source,
    })?;
    let page = page.replacen(GATE_MARK, section, 1);
    crate::files::write_atomically(&path, page.as_bytes()).map_err(|e| ReportError::Write {
        path: path.clone(),
        source: std::io::Error::other(e.to_string()),
    })
}

/// Charts and report.html for the run in `data.dir`.
pub fn write_report(data: &RunData) -> Result<std::path::PathBuf, ReportError> {
    let charts = crate::chart::run::write_all(data, &data.dir)?;
    let html = render(data, &charts)?;
    let path = data.dir.join("report.html");
    std::fs::write(&path, html).map_err(|source| ReportError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_viewbox() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let svg = "<svg width=\"100\" height=\"50\" xmlns=\"http://www.w3.org/2000/svg\">\n</svg>";
        assert!(scalable(svg).starts_with("<svg viewBox=\"0 0 100 50\" width=\"100\""));
    }
}
