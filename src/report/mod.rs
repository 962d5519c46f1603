//! What a person reads of a run: the results table printed at the end (and
//! its stage latencies and recall by probe kind), and report.html with the
//! charts ([`html`]). The files themselves are written by [`crate::results`].

pub mod html;
pub mod inspector;

use std::collections::BTreeMap;
use std::io::Write;

use std::path::{Path, PathBuf};

use crate::results::Aggregate;

/// Why the charts or report.html of a run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The run's files could not be read back.
    #[error(transparent)]
    Results(#[from] crate::results::ResultsError),
    /// A chart could not be drawn or written.
    #[error(transparent)]
    Chart(#[from] crate::chart::ChartError),
    /// A chart's SVG could not be read back into the page.
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// report.html could not be written.
    #[error("{path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

use crate::memory::Stage;

/// Which way is better for a column of the results table.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// The columns compared across strategies: name, how to read it, which
/// way is better.
pub type Metric = (&'static str, fn(&Aggregate) -> Option<f64>, Better);

/// The metrics on which a best strategy is named.
pub const METRICS: [Metric; 8] = [
    ("recall", |a| a.mean_recall, Better::Higher),
    ("final", |a| a.final_recall, Better::Higher),
    ("stale", |a| Some(a.stale as f64), Better::Lower),
    ("tokens", |a| Some(a.total_tokens as f64), Better::Lower),
    (
        "max ctx",
        |a| Some(a.max_context_tokens as f64),
        Better::Lower,
    ),
    (
        "over win",
        |a| Some(a.over_window_turns as f64),
        Better::Lower,
    ),
    (
        "malformed",
        |a| Some(a.malformed_calls as f64),
        Better::Lower,
    ),
    ("quality", |a| a.mean_quality, Better::Higher),
];

/// For each metric, the best value among `rows` (None when no row has one).
pub fn best_values(rows: &[&Aggregate]) -> Vec<Option<f64>> {
    METRICS
        .iter()
        .map(|(_, get, better)| {
            rows.iter()
                .filter_map(|a| get(a))
                .reduce(|x, y| match better {
                    Better::Higher => x.max(y),
                    Better::Lower => x.min(y),
                })
        })
        .collect()
}

/// Recall per probe kind and strategy: a header row (`kind`, `probes`, the
/// strategies), then one row per kind. Empty where no probe has a kind.
pub fn kind_table(totals: &[Aggregate]) -> Vec<Vec<String>> {
    let mut kinds: BTreeMap<&str, u64> = BTreeMap::new();
    for a in totals {
        for (k, v) in &a.by_kind {
            let n = kinds.entry(k).or_default();
            *n = (*n).max(v.probes);
        }
    }
    if kinds.is_empty() {
        return Vec::new();
    }
    let mut rows = vec![
        ["kind".to_string(), "probes".into()]
            .into_iter()
            .chain(totals.iter().map(|a| a.strategy.clone()))
            .collect::<Vec<_>>(),
    ];
    for (k, n) in kinds {
        let mut row = vec![k.to_string(), n.to_string()];
        for a in totals {
            row.push(a.by_kind.get(k).map_or("-".into(), |v| {
                let mut cell = fmt_ratio(v.mean_recall);
                if let Some(acc) = v.answer_accuracy {
                    cell.push_str(&format!(" ({acc:.3})"));
                }
                cell
            }));
        }
        rows.push(row);
    }
    rows
}

fn fmt_ratio(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"))
}

/// What the bracketed figures of the probe-kind table are: answer
/// accuracy, or, when the offline backend answered, its extractive
/// baseline's.
pub fn kinds_note(extractive: bool) -> &'static str {
    if extractive {
        "in brackets, the offline extractive baseline: the share of answers judged right \
         where the answer is the context sentence with the most words of the question; not \
         a model's answer accuracy"
    } else {
        "answer accuracy in brackets where judged"
    }
}

/// The paired comparisons' name for the answers' difference.
pub fn answers_label(extractive: bool) -> &'static str {
    if extractive {
        "extractive baseline"
    } else {
        "answers"
    }
}

/// The table printed at the end of a run: one row per scenario and
/// strategy, then the totals per strategy.
/// The paired comparisons, a line a pair: "hybrid vs summary: recall
/// +0.104 [0.071, 0.139], ...".
pub fn print_comparisons(
    out: &mut impl Write,
    comparisons: &[crate::results::compare::Comparison],
    extractive: bool,
) -> std::io::Result<()> {
    let Some(first) = comparisons.first() else {
        return Ok(());
    };
    writeln!(
        out,
        "\npaired differences, first minus second over the same probe asks (95% interval, bootstrap over {}):",
        first.resampled
    )?;
    let signed = |d: &crate::results::compare::Difference, digits: usize| {
        format!(
            "{:+.digits$} [{:.digits$}, {:.digits$}]",
            d.diff, d.ci_low, d.ci_high
        )
    };
    for c in comparisons {
        let mut parts = Vec::new();
        if let Some(r) = &c.recall {
            parts.push(format!("recall {}", signed(r, 3)));
        }
        if let Some(a) = &c.answer_accuracy {
            parts.push(format!(
                "{} {} (McNemar p {:.3})",
                answers_label(extractive),
                signed(&a.difference, 3),
                a.mcnemar_p
            ));
        }
        if let Some(t) = &c.context_tokens {
            parts.push(format!("context tokens {}", signed(t, 0)));
        }
        writeln!(out, "{} vs {}: {}", c.first, c.second, parts.join("; "))?;
    }
    Ok(())
}

/// The judges' agreement, a line a pair of judges.
pub fn print_agreement(
    out: &mut impl Write,
    agreement: &[crate::results::compare::Agreement],
) -> std::io::Result<()> {
    if agreement.is_empty() {
        return Ok(());
    }
    writeln!(out, "\njudges, over the answers both judged:")?;
    for a in agreement {
        writeln!(
            out,
            "{} vs {}: Cohen's kappa {}, agreement {:.3} over {} answers ({} correct only to the first, {} only to the second)",
            a.first,
            a.second,
            a.kappa.map_or("-".into(), |k| format!("{k:.3}")),
            a.agreement,
            a.answers,
            a.only_first,
            a.only_second
        )?;
    }
    Ok(())
}

pub fn print_table(
    out: &mut impl Write,
    per_job: &[Aggregate],
    totals: &[Aggregate],
    extractive: bool,
) -> std::io::Result<()> {
    let header = [
        "scenario",
        "strategy",
        "recall",
        "final",
        "stale",
        "tokens",
        "max ctx",
        "over win",
        "malformed",
        "summaries",
        "quality",
    ];
    let row = |a: &Aggregate| -> Vec<String> {
        vec![
            a.scenario.clone(),
            a.strategy.clone(),
            fmt_ratio(a.mean_recall),
            fmt_ratio(a.final_recall),
            a.stale.to_string(),
            a.total_tokens.to_string(),
            a.max_context_tokens.to_string(),
            a.over_window_turns.to_string(),
            a.malformed_calls.to_string(),
            a.summaries.to_string(),
            fmt_ratio(a.mean_quality),
        ]
    };
    // The first scenarios by name, one row per strategy: a population of
    // thousands of users is in results.json, not on the terminal.
    let mut scenarios: Vec<&str> = per_job.iter().map(|a| a.scenario.as_str()).collect();
    scenarios.dedup();
    let shown = &scenarios[..scenarios
        .len()
        .min(crate::results::read::MAX_SCENARIO_CHARTS)];
    let mut rows: Vec<Vec<String>> = per_job
        .iter()
        .filter(|a| shown.contains(&a.scenario.as_str()))
        .map(row)
        .collect();
    let split = rows.len();
    // In the totals, the best strategy of each column is starred.
    let best = best_values(&totals.iter().collect::<Vec<_>>());
    rows.extend(totals.iter().map(|a| {
        let mut r = row(a);
        r[0] = "TOTAL".into();
        for ((name, get, _), b) in METRICS.iter().zip(&best) {
            if let Some(col) = header.iter().position(|h| h == name)
                && totals.len() > 1
            {
                let starred = get(a).is_some() && get(a) == *b;
                r[col].push(if starred { '*' } else { ' ' });
            }
        }
        r
    }));
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |out: &mut dyn Write, cells: &[String]| -> std::io::Result<()> {
        let mut s = String::new();
        for (c, cell) in cells.iter().enumerate() {
            if c > 0 {
                s.push_str("  ");
            }
            // Text left, numbers right.
            if c < 2 {
                s.push_str(&format!("{cell:<w$}", w = widths[c]));
            } else {
                s.push_str(&format!("{cell:>w$}", w = widths[c]));
            }
        }
        writeln!(out, "{}", s.trim_end())
    };
    let header: Vec<String> = header.iter().map(|s| s.to_string()).collect();
    line(out, &header)?;
    let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
    line(out, &rule)?;
    for (i, r) in rows.iter().enumerate() {
        if i == split {
            line(out, &rule)?;
        }
        line(out, r)?;
    }
    if shown.len() < scenarios.len() {
        writeln!(
            out,
            "the first {} of {} scenarios are listed; results.json holds them all, and the totals cover them all",
            shown.len(),
            scenarios.len()
        )?;
    }
    if totals.len() > 1 {
        writeln!(out, "* the best strategy of the column, over all scenarios")?;
    }
    stage_table(out, totals)?;
    let kinds = kind_table(totals);
    if !kinds.is_empty() {
        writeln!(
            out,
            "\nrecall by probe kind, over all scenarios ({}):",
            kinds_note(extractive)
        )?;
        write_aligned(out, &kinds)?;
    }
    Ok(())
}

/// The latency per stage, p50 / p95 / p99, per strategy (where timed).
fn stage_table(out: &mut impl Write, totals: &[Aggregate]) -> std::io::Result<()> {
    if totals.iter().all(|a| a.stages.is_empty()) {
        return Ok(());
    }
    writeln!(
        out,
        "\nlatency per stage, p50 / p95 / p99 in µs, over all scenarios:"
    )?;
    let mut rows = vec![
        std::iter::once("stage".to_string())
            .chain(totals.iter().map(|a| a.strategy.clone()))
            .collect::<Vec<_>>(),
    ];
    for stage in Stage::ALL {
        if totals.iter().all(|a| !a.stages.contains_key(stage.name())) {
            continue;
        }
        let mut row = vec![stage.name().to_string()];
        for a in totals {
            row.push(a.stages.get(stage.name()).map_or("-".into(), |l| {
                format!("{} / {} / {}", l.p50_us, l.p95_us, l.p99_us)
            }));
        }
        rows.push(row);
    }
    write_aligned(out, &rows)
}

/// Rows as a table: the first column left-aligned, the others right-aligned.
fn write_aligned(out: &mut impl Write, rows: &[Vec<String>]) -> std::io::Result<()> {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let mut s = String::new();
        for (c, (cell, w)) in r.iter().zip(&widths).enumerate() {
            if c == 0 {
                s.push_str(&format!("{cell:<w$}"));
            } else {
                s.push_str(&format!("  {cell:>w$}"));
            }
        }
        writeln!(out, "{}", s.trim_end())?;
    }
    Ok(())
}

/// Charts and report.html from the files of the run in `dir`.
pub fn write_report(dir: &Path) -> Result<PathBuf, ReportError> {
    html::write_report(&crate::results::read::RunData::load(dir)?)
}
