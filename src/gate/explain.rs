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
    let mut out: Vec<String> = Vec::new();
    let mut run: Option<(u32, u32)> = None;
    for &n in set {
        run = match run {
            Some((a, b)) if n == b + 1 => Some((a, n)),
            Some((a, b)) => {
                out.push(if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                });
                Some((n, n))
            }
            None => Some((n, n)),
        };
    }
    if let Some((a, b)) = run {
        out.push(if a == b {
            a.to_string()
        } else {
            format!("{a}-{b}")
        });
    }
    if out.is_empty() {
        "-".into()
    } else {
        out.join(", ")
    }
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
    let key = |p: &ProbeRow| -> AskKey { (p.probe_id.clone(), p.turn, p.repeat) };
    let before: BTreeMap<AskKey, &ProbeRow> = baseline.iter().map(|p| (key(p), p)).collect();
    let changed: Vec<(&ProbeRow, &ProbeRow)> = current
        .iter()
        .filter_map(|c| before.get(&key(c)).map(|b| (*b, c)))
        .filter(|(b, c)| b.recall != c.recall || b.answer_correct != c.answer_correct)
        .collect();
    let mut out = String::new();
    let Some(first) = checks.first() else {
        return out;
    };
    let failed: Vec<String> = checks
        .iter()
        .map(|c| format!("{} ({} -> {})", c.metric, c.baseline, c.current))
        .collect();
    let _ = writeln!(
        out,
        "{} / {}, {}: {} probe ask(s) changed verdict",
        first.scenario,
        first.strategy,
        failed.join(", "),
        changed.len()
    );
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
        let left: BTreeSet<u32> = hb.difference(&hc).copied().collect();
        let entered: BTreeSet<u32> = hc.difference(&hb).copied().collect();
        let _ = write!(
            out,
            "    messages left: {}; entered: {}",
            ranges(&left),
            ranges(&entered)
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
