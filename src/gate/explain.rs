//! The probe asks behind a failed check (`memeval gate --explain`): those
//! whose verdict changed between the baseline and the current run, each
//! with both contexts side by side and the messages that entered or left.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::Check;
use crate::results::ProbeRow;

/// How many changed probe asks are shown for one check.
pub const SHOWN: usize = 10;

/// A probe ask: (probe, turn, replay).
type AskKey = (String, u32, u32);

/// The messages a probe's context held: retrieved and buffered.
fn held(p: &ProbeRow) -> BTreeSet<u32> {
    let mut out: BTreeSet<u32> = p
        .context_retrieved
        .split(';')
        .filter_map(|n| n.parse().ok())
        .collect();
    if let Some((a, b)) = p.context_buffer.split_once('-')
        && let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>())
    {
        out.extend(a..=b);
    }
    out
}

/// Message numbers as ranges: `3-7, 9`.
fn ranges(set: &BTreeSet<u32>) -> String {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for &n in set {
        match runs.last_mut() {
            Some((_, b)) if n == *b + 1 => *b = n,
            _ => runs.push((n, n)),
        }
    }
    if runs.is_empty() {
        return "-".into();
    }
    runs.iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn context(p: &ProbeRow) -> String {
    let mut parts = Vec::new();
    if let Some(s) = p.context_summary {
        parts.push(format!("summary #{s} ({} tokens)", p.tokens_summary));
    }
    if !p.context_retrieved.is_empty() {
        parts.push(format!(
            "retrieved {} ({} tokens)",
            p.context_retrieved.replace(';', ", "),
            p.tokens_retrieved
        ));
    }
    if !p.context_buffer.is_empty() {
        parts.push(format!(
            "buffer {} ({} tokens)",
            p.context_buffer, p.tokens_buffer
        ));
    }
    if parts.is_empty() {
        parts.push("the system prompt alone".into());
    }
    format!("{}; {} tokens", parts.join(", "), p.context_tokens)
}

fn verdict(p: &ProbeRow, answers: &str) -> String {
    let recall = p.recall.map_or("-".into(), |r| format!("{r:.3}"));
    let recalled = if p.recalled.is_empty() {
        "nothing".to_string()
    } else {
        p.recalled.replace(';', ", ")
    };
    let answer = match p.answer_correct {
        Some(1) => format!(", {answers} right"),
        Some(_) => format!(", {answers} wrong"),
        None => String::new(),
    };
    format!("recall {recall} (recalled {recalled}{answer})")
}

/// The asks of `current` whose verdict (recall, or the answer's) differs
/// from the same ask's in `baseline`: (baseline's row, current's row).
fn changed<'a>(
    baseline: &'a [ProbeRow],
    current: &'a [ProbeRow],
) -> Vec<(&'a ProbeRow, &'a ProbeRow)> {
    let key = |p: &ProbeRow| -> AskKey { (p.probe_id.clone(), p.turn, p.repeat) };
    let before: BTreeMap<AskKey, &ProbeRow> = baseline.iter().map(|p| (key(p), p)).collect();
    current
        .iter()
        .filter_map(|c| before.get(&key(c)).map(|b| (*b, c)))
        .filter(|(b, c)| b.recall != c.recall || b.answer_correct != c.answer_correct)
        .collect()
}

/// "scenario / strategy, recall (1.000 -> 0.500): 3 probe ask(s) changed
/// verdict"; None without a check.
fn header(checks: &[&Check], changed: usize) -> Option<String> {
    let first = checks.first()?;
    let failed: Vec<String> = checks
        .iter()
        .map(|c| format!("{} ({} -> {})", c.metric, c.baseline, c.current))
        .collect();
    Some(format!(
        "{} / {}, {}: {changed} probe ask(s) changed verdict",
        first.scenario,
        first.strategy,
        failed.join(", "),
    ))
}

/// What [`explain`] prints, as a section of report.html: a table of the
/// changed asks, the baseline's and the current context side by side, each
/// ask linked to the inspector (which shows the current run's context).
pub fn html(
    checks: &[&Check],
    baseline: &[ProbeRow],
    current: &[ProbeRow],
    answers: &str,
) -> String {
    use crate::report::html::{esc, inspect_href};
    let changed = changed(baseline, current);
    let Some(head) = header(checks, changed.len()) else {
        return String::new();
    };
    let mut out = format!("<h3>{}</h3>\n", esc(&head));
    if changed.is_empty() {
        out.push_str("<p>No probe ask changed verdict: the check is on what every call costs or holds, not on one answer.</p>\n");
        return out;
    }
    out.push_str("<div class=\"scroll\"><table><thead><tr><th class=\"t\">probe ask</th><th class=\"t\">baseline</th><th class=\"t\">current</th><th class=\"t\">messages left</th><th class=\"t\">entered</th></tr></thead><tbody>\n");
    for (b, c) in changed.iter().take(SHOWN) {
        let ask = format!(
            "{} after message {}{}",
            esc(&c.probe_id),
            c.turn,
            if c.repeat == 1 {
                String::new()
            } else {
                format!(" (replay {})", c.repeat)
            }
        );
        let link = if c.repeat == 1 {
            format!(
                "<a href=\"{}\">{ask}</a>",
                inspect_href(&c.scenario, c.turn, &c.probe_id)
            )
        } else {
            ask
        };
        let (hb, hc) = (held(b), held(c));
        let _ = writeln!(
            out,
            "<tr><td class=\"wrap\">{link}<div class=\"sub\">{}</div></td><td class=\"wrap\">{}<div class=\"sub\">{}</div></td><td class=\"wrap\">{}<div class=\"sub\">{}</div></td><td class=\"t\">{}</td><td class=\"t\">{}</td></tr>",
            esc(&c.question),
            esc(&verdict(b, answers)),
            esc(&context(b)),
            esc(&verdict(c, answers)),
            esc(&context(c)),
            ranges(&hb.difference(&hc).copied().collect()),
            ranges(&hc.difference(&hb).copied().collect()),
        );
    }
    out.push_str("</tbody></table></div>\n");
    if changed.len() > SHOWN {
        let _ = writeln!(
            out,
            "<p class=\"sub\">and {} more (probes.csv of both runs has them all)</p>",
            changed.len() - SHOWN
        );
    }
    out
}

/// report.html's section of a gated run (`run --baseline`): the verdict,
/// every check (failed first), then for each failed (scenario, strategy)
/// the probe asks behind it ([`html`]), or why they could not be compared.
pub fn section(checks: &[Check], baseline: &str, explained: Result<Vec<String>, String>) -> String {
    use crate::report::html::esc;
    let failed = checks.iter().filter(|c| !c.pass).count();
    let mut out = format!(
        "<h2 id=\"gate\">Gate: {}</h2>\n<p>Against the baseline <code>{}</code>, under the configured thresholds.</p>\n",
        if failed == 0 {
            format!("passed, {} checks", checks.len())
        } else {
            format!("failed, {failed} of {} checks", checks.len())
        },
        esc(baseline)
    );
    let table = |out: &mut String, id: &str, pass: bool| {
        let _ = writeln!(
            out,
            "<div class=\"scroll\"><table class=\"sortable\" id=\"{id}\"><thead><tr><th class=\"t\">scenario</th><th class=\"t\">strategy</th><th class=\"t\">metric</th><th>baseline</th><th>current</th><th>delta</th><th>threshold</th><th class=\"t\">result</th><th class=\"t\">note</th></tr></thead><tbody>"
        );
        for c in checks.iter().filter(|c| c.pass == pass) {
            let _ = writeln!(
                out,
                "<tr><td class=\"t\">{}</td><td class=\"t\">{}</td><td class=\"t\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"t{}\">{}</td><td class=\"wrap\">{}</td></tr>",
                esc(&c.scenario),
                esc(&c.strategy),
                c.metric,
                esc(&c.baseline),
                esc(&c.current),
                esc(&c.delta),
                esc(&c.threshold),
                if pass { "" } else { " miss" },
                if pass { "PASS" } else { "FAIL" },
                esc(&c.note),
            );
        }
        out.push_str("</tbody></table></div>\n");
    };
    if failed > 0 {
        table(&mut out, "gate-failed", false);
        match explained {
            Ok(parts) => {
                out.push_str("<p>Behind each failed scenario and strategy, the probe asks whose verdict changed, the baseline's context beside the current one; an ask's link opens the current context in the inspector.</p>\n");
                for p in parts {
                    out.push_str(&p);
                }
            }
            Err(why) => {
                let _ = writeln!(out, "<p class=\"warn\">{}</p>", esc(&why));
            }
        }
    }
    let passed = checks.len() - failed;
    if passed > 0 {
        let _ = writeln!(
            out,
            "<details><summary>The {passed} passed check(s)</summary>"
        );
        table(&mut out, "gate-passed", true);
        out.push_str("</details>\n");
    }
    out
}

/// The probe asks of the failed checks of one scenario and strategy
/// whose verdict (recall or the answer's) changed, as printed.
/// `baseline` and `current` are that scenario and strategy's probes.csv
/// rows; `answers` names the answers (`answer`, or the offline
/// `extractive baseline`, which is not a model's).
pub fn explain(
    checks: &[&Check],
    baseline: &[ProbeRow],
    current: &[ProbeRow],
    answers: &str,
) -> String {
    let changed = changed(baseline, current);
    let mut out = String::new();
    let Some(head) = header(checks, changed.len()) else {
        return out;
    };
    out.push_str(&head);
    out.push('\n');
    if changed.is_empty() {
        out.push_str("  no probe ask changed verdict: the check is on what every call costs or holds, not on one answer\n");
    }
    for (b, c) in changed.iter().take(SHOWN) {
        let _ = writeln!(
            out,
            "  probe {:?} after message {} (replay {}): {}",
            c.probe_id, c.turn, c.repeat, c.question
        );
        let _ = writeln!(out, "    baseline: {}", verdict(b, answers));
        let _ = writeln!(out, "      held {}", context(b));
        let _ = writeln!(out, "    current:  {}", verdict(c, answers));
        let _ = writeln!(out, "      held {}", context(c));
        let (hb, hc) = (held(b), held(c));
        let _ = write!(
            out,
            "    messages left: {}; entered: {}",
            ranges(&hb.difference(&hc).copied().collect()),
            ranges(&hc.difference(&hb).copied().collect())
        );
        if b.context_summary != c.context_summary {
            let s = |x: Option<u32>| x.map_or("none".into(), |i| format!("#{i}"));
            let _ = write!(
                out,
                "; summary {} -> {}",
                s(b.context_summary),
                s(c.context_summary)
            );
        }
        let planted: Vec<&str> = c.planted_at.split(';').filter(|m| !m.is_empty()).collect();
        if !planted.is_empty() {
            let _ = write!(out, "; facts planted at {}", planted.join(", "));
        }
        out.push('\n');
    }
    if changed.len() > SHOWN {
        let _ = writeln!(
            out,
            "  and {} more (probes.csv of both runs has them all)",
            changed.len() - SHOWN
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(probe: &str, recall: f64, retrieved: &str, buffer: &str) -> ProbeRow {
        ProbeRow {
            scenario: "s".into(),
            strategy: "window".into(),
            repeat: 1,
            probe_id: probe.into(),
            turn: 20,
            recall: Some(recall),
            recalled: if recall > 0.0 {
                "f".into()
            } else {
                String::new()
            },
            context_retrieved: retrieved.into(),
            context_buffer: buffer.into(),
            planted_at: "4".into(),
            question: "where?".into(),
            ..ProbeRow::default()
        }
    }

    #[test]
    fn names_the_changed_asks_and_what_left_the_context() {
        let check = Check {
            scenario: "s".into(),
            strategy: "window".into(),
            metric: "recall",
            baseline: "1.000".into(),
            current: "0.500".into(),
            delta: "-0.500".into(),
            threshold: "-0.05".into(),
            pass: false,
            note: String::new(),
        };
        let base = [row("a", 1.0, "", "2-20"), row("b", 1.0, "4", "15-20")];
        let cur = [row("a", 1.0, "", "10-20"), row("b", 0.0, "7", "15-20")];
        let text = explain(&[&check], &base, &cur, "answer");
        assert!(
            text.starts_with("s / window, recall (1.000 -> 0.500): 1 probe ask(s) changed verdict"),
            "{text}"
        );
        assert!(text.contains("probe \"b\" after message 20"), "{text}");
        assert!(!text.contains("probe \"a\""), "{text}");
        assert!(text.contains("messages left: 4; entered: 7"), "{text}");
        assert!(text.contains("recall 1.000 (recalled f)"), "{text}");
        assert!(text.contains("recall 0.000 (recalled nothing)"), "{text}");
        let mut many = std::collections::BTreeSet::new();
        many.extend([1, 2, 3, 5, 9, 10]);
        assert_eq!(ranges(&many), "1-3, 5, 9-10");
        assert_eq!(ranges(&BTreeSet::new()), "-");
    }
}
