//! The CI gate: a run compared with a baseline, per scenario and strategy,
//! under thresholds; any regression fails it.
//!
//! Noise rule. With one replay per side (the offline backend is exact) a
//! change fails as soon as it passes its threshold. With `--repeat N`, each
//! metric is compared on its mean, and a change fails only when it passes
//! its threshold *and* the 95% confidence interval of the difference of
//! means (Welch's t) lies entirely on the worse side of zero, so run-to-run
//! noise of model-backed runs does not fail a build.

pub mod explain;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::config::GateConfig;
use crate::results::{Aggregate, Metadata};
use crate::stats::mean;

/// What makes two runs comparable: the same scenario files (by hash), the
/// same backend and models. Parameters may differ: that is what a change tests.
pub fn mismatches(baseline: &Metadata, current: &Metadata) -> Vec<String> {
    let mut out = Vec::new();
    use serde_json::json;
    for (key, b, c) in [
        ("backend", json!(baseline.backend), json!(current.backend)),
        (
            "chat_model",
            json!(baseline.chat_model),
            json!(current.chat_model),
        ),
        (
            "encoding",
            json!(baseline.encoding),
            json!(current.encoding),
        ),
    ] {
        if b != c {
            out.push(format!("{key}: baseline {b} but current {c}"));
        }
    }
    // Per role, so that another embedder (the local model, or its weights
    // changed) reads as such.
    let roles: std::collections::BTreeSet<_> = baseline
        .models
        .keys()
        .chain(current.models.keys())
        .collect();
    for role in roles {
        let (b, c) = (baseline.models.get(role), current.models.get(role));
        if b != c {
            out.push(format!(
                "models.{role}: baseline {} but current {}",
                json!(b),
                json!(c)
            ));
        }
    }
    let files = |m: &Metadata| -> BTreeMap<String, String> {
        m.scenarios
            .iter()
            .map(|s| (s.name.clone(), s.sha256.clone()))
            .collect()
    };
    let (b, c) = (files(baseline), files(current));
    for (name, hash) in &b {
        match c.get(name) {
            Some(h) if h != hash => out.push(format!(
                "scenario {name}: the file changed (sha256 differs)"
            )),
            _ => {}
        }
    }
    out
}

/// One comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub scenario: String,
    pub strategy: String,
    pub metric: &'static str,
    pub baseline: String,
    pub current: String,
    pub delta: String,
    pub threshold: String,
    pub pass: bool,
    /// Why it failed, or what the noise rule decided.
    pub note: String,
}

fn values_opt(
    a: &Aggregate,
    f: fn(&Aggregate) -> Option<f64>,
    s: fn(&crate::results::Samples) -> &Vec<Option<f64>>,
) -> Vec<f64> {
    match &a.samples {
        Some(smp) => s(smp).iter().flatten().copied().collect(),
        None => f(a).into_iter().collect(),
    }
}

fn fmt3(x: f64) -> String {
    format!("{x:.3}")
}

/// Compares `current` with `baseline` under `cfg`.
pub fn compare(baseline: &[Aggregate], current: &[Aggregate], cfg: &GateConfig) -> Vec<Check> {
    let mut checks = Vec::new();
    for b in baseline {
        let found = current
            .iter()
            .find(|c| c.scenario == b.scenario && c.strategy == b.strategy);
        let Some(c) = found else {
            checks.push(checker(b)(
                "present",
                "yes".into(),
                "no".into(),
                String::new(),
                "must be run".into(),
                false,
                "the current run lacks this scenario and strategy".into(),
            ));
            continue;
        };
        recall_checks(b, c, cfg, &mut checks);
        checks.extend(token_check(b, c, cfg));
        other_checks(b, c, cfg, &mut checks);
    }
    checks
}

/// A check of `b`'s scenario and strategy: (metric, baseline, current,
/// delta, threshold, pass, note).
#[allow(clippy::type_complexity)]
fn checker(
    b: &Aggregate,
) -> impl Fn(&'static str, String, String, String, String, bool, String) -> Check + '_ {
    move |metric, baseline, current, delta, threshold, pass, note| Check {
        scenario: b.scenario.clone(),
        strategy: b.strategy.clone(),
        metric,
        baseline,
        current,
        delta,
        threshold,
        pass,
        note,
    }
}

/// The recall floor, and the drops of recall and quality (higher is
/// better), under the noise rule.
fn recall_checks(b: &Aggregate, c: &Aggregate, cfg: &GateConfig, checks: &mut Vec<Check>) {
    let check = checker(b);
    if let Some(&floor) = cfg.min_recall.get(&b.strategy)
        && let Some(cur) = c.mean_recall
    {
        checks.push(check(
            "min_recall",
            b.mean_recall.map(fmt3).unwrap_or_default(),
            fmt3(cur),
            String::new(),
            format!(">= {floor:.3}"),
            cur >= floor,
            if cur >= floor {
                String::new()
            } else {
                format!("mean recall {cur:.3} is below {floor:.3}")
            },
        ));
    }
    for (metric, limit, get, samples) in [
        (
            "mean_recall",
            cfg.max_recall_drop,
            (|a: &Aggregate| a.mean_recall) as fn(&Aggregate) -> Option<f64>,
            (|s: &crate::results::Samples| &s.mean_recall)
                as fn(&crate::results::Samples) -> &Vec<Option<f64>>,
        ),
        (
            "final_recall",
            cfg.max_final_recall_drop,
            |a| a.final_recall,
            |s| &s.final_recall,
        ),
        (
            "mean_quality",
            cfg.max_quality_drop,
            |a| a.mean_quality,
            |s| &s.mean_quality,
        ),
    ] {
        let (bv, cv) = (values_opt(b, get, samples), values_opt(c, get, samples));
        let (Some(bm), Some(cm)) = (mean(bv.iter().copied()), mean(cv.iter().copied())) else {
            continue;
        };
        let delta = cm - bm;
        let margin = crate::stats::welch_half_width(&bv, &cv);
        let regressed = -delta > limit + 1e-12 && -delta - margin > 0.0;
        let note = if regressed {
            format!("{metric} dropped by {:.3} (allowed {limit:.3})", -delta)
        } else if -delta > limit && margin > 0.0 {
            format!(
                "drop of {:.3} is within run-to-run noise (±{margin:.3})",
                -delta
            )
        } else {
            String::new()
        };
        checks.push(check(
            metric,
            fmt3(bm),
            fmt3(cm),
            format!("{delta:+.3}"),
            format!("drop <= {limit:.3}"),
            !regressed,
            note,
        ));
    }
}

/// Total tokens (lower is better), in percent of the baseline, under the
/// noise rule; none where the baseline spent nothing.
fn token_check(b: &Aggregate, c: &Aggregate, cfg: &GateConfig) -> Option<Check> {
    let check = checker(b);
    let tokens = |a: &Aggregate| -> Vec<f64> {
        match &a.samples {
            Some(s) => s.total_tokens.iter().map(|&t| t as f64).collect(),
            None => vec![a.total_tokens as f64],
        }
    };
    let (bt, ct) = (tokens(b), tokens(c));
    let (bm, cm) = (
        mean(bt.iter().copied()).unwrap_or(0.0),
        mean(ct.iter().copied()).unwrap_or(0.0),
    );
    if bm <= 0.0 {
        return None;
    }
    let pct = (cm - bm) / bm * 100.0;
    let margin_pct = crate::stats::welch_half_width(&bt, &ct) / bm * 100.0;
    let limit = cfg.max_token_increase_pct;
    let regressed = pct > limit + 1e-9 && pct - margin_pct > 0.0;
    Some(check(
        "total_tokens",
        format!("{bm:.0}"),
        format!("{cm:.0}"),
        format!("{pct:+.1}%"),
        format!("increase <= {limit:.1}%"),
        !regressed,
        if regressed {
            format!("total tokens grew by {pct:.1}% (allowed {limit:.1}%)")
        } else {
            String::new()
        },
    ))
}

/// The quality floor, leaks and stale facts.
fn other_checks(b: &Aggregate, c: &Aggregate, cfg: &GateConfig, checks: &mut Vec<Check>) {
    let check = checker(b);
    if let Some(q) = c.mean_quality
        && cfg.min_quality > 0.0
    {
        let pass = q >= cfg.min_quality;
        checks.push(check(
            "min_quality",
            b.mean_quality.map(fmt3).unwrap_or_default(),
            fmt3(q),
            String::new(),
            format!(">= {:.3}", cfg.min_quality),
            pass,
            if pass {
                String::new()
            } else {
                format!(
                    "mean summary quality {q:.3} is below {:.3}",
                    cfg.min_quality
                )
            },
        ));
    }
    let leaked = c
        .samples
        .as_ref()
        .map_or(c.leaked, |s| s.leaked.iter().copied().max().unwrap_or(0));
    checks.push(check(
        "leaked",
        b.leaked.to_string(),
        leaked.to_string(),
        String::new(),
        "= 0".into(),
        leaked == 0,
        if leaked == 0 {
            String::new()
        } else {
            format!("{leaked} context items came from another user")
        },
    ));
    checks.push(check(
        "malformed",
        b.malformed_calls.to_string(),
        c.malformed_calls.to_string(),
        String::new(),
        format!("<= {}", cfg.max_malformed),
        c.malformed_calls <= cfg.max_malformed,
        if c.malformed_calls <= cfg.max_malformed {
            String::new()
        } else {
            format!(
                "{} model calls a provider would reject (a tool result without its call, or a call without its result: see turns.csv's malformed)",
                c.malformed_calls
            )
        },
    ));
    let allowed = b.stale + cfg.max_stale_increase;
    checks.push(check(
        "stale",
        b.stale.to_string(),
        c.stale.to_string(),
        format!("{:+}", c.stale as i64 - b.stale as i64),
        format!("<= {allowed}"),
        c.stale <= allowed,
        if c.stale <= allowed {
            String::new()
        } else {
            format!("{} stale facts (allowed {allowed})", c.stale)
        },
    ));
}

/// The table printed by the gate, failures marked, then a verdict line.
pub fn render(checks: &[Check]) -> String {
    let header = [
        "scenario",
        "strategy",
        "metric",
        "baseline",
        "current",
        "delta",
        "threshold",
        "result",
    ];
    let rows: Vec<[String; 8]> = checks
        .iter()
        .map(|c| {
            [
                c.scenario.clone(),
                c.strategy.clone(),
                c.metric.to_string(),
                c.baseline.clone(),
                c.current.clone(),
                c.delta.clone(),
                c.threshold.clone(),
                if c.pass { "PASS".into() } else { "FAIL".into() },
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            let _ = write!(s, "{cell:<w$}");
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(&header.map(String::from));
    line(&widths.iter().map(|&w| "-".repeat(w)).collect::<Vec<_>>());
    for r in &rows {
        line(r);
    }
    let failed: Vec<&Check> = checks.iter().filter(|c| !c.pass).collect();
    for c in &failed {
        let _ = writeln!(
            out,
            "FAIL {} / {}: {}: {}",
            c.scenario, c.strategy, c.metric, c.note
        );
    }
    for c in checks.iter().filter(|c| c.pass && !c.note.is_empty()) {
        let _ = writeln!(
            out,
            "note {} / {}: {}: {}",
            c.scenario, c.strategy, c.metric, c.note
        );
    }
    let _ = writeln!(
        out,
        "gate: {} ({} checks, {} failed)",
        if failed.is_empty() { "PASS" } else { "FAIL" },
        checks.len(),
        failed.len()
    );
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JUnit XML: one test case per scenario x strategy x metric.
pub fn junit(checks: &[Check]) -> String {
    let failures = checks.iter().filter(|c| !c.pass).count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"memeval gate\" tests=\"{}\" failures=\"{failures}\">",
        checks.len()
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"memeval gate\" tests=\"{}\" failures=\"{failures}\">",
        checks.len()
    );
    for c in checks {
        let _ = write!(
            out,
            "    <testcase classname=\"{}.{}\" name=\"{}\"",
            xml_escape(&c.scenario),
            xml_escape(&c.strategy),
            c.metric
        );
        if c.pass {
            out.push_str("/>\n");
        } else {
            let _ = writeln!(
                out,
                ">\n      <failure message=\"{}\">{} / {}: {}: baseline {}, current {}, threshold {}</failure>\n    </testcase>",
                xml_escape(&c.note),
                xml_escape(&c.scenario),
                xml_escape(&c.strategy),
                c.metric,
                xml_escape(&c.baseline),
                xml_escape(&c.current),
                xml_escape(&c.threshold)
            );
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agg(strategy: &str, recall: f64, tokens: u64) -> Aggregate {
        let mut a: Aggregate = serde_json::from_value(serde_json::json!({
            "scenario": "s", "strategy": strategy, "messages": 10, "probes": 4,
            "mean_recall": recall, "final_recall": recall, "recall_auc": recall,
            "stale": 0, "leaked": 0, "duplicated": 0, "total_tokens": tokens,
            "mean_context_tokens": 100.0, "p95_context_tokens": 120, "max_context_tokens": 130,
            "summaries": 0, "mean_quality": null, "mean_fact_retention": null,
            "answer_accuracy": null, "mean_fact_position": null, "cost_usd": 0.0,
            "over_budget_turns": 0, "over_window_turns": 0, "first_over_window_turn": null,
            "build_p50_us": 1, "build_p95_us": 2, "build_p99_us": 3
        }))
        .unwrap();
        a.repeats = 1;
        a
    }

    fn with_samples(mut a: Aggregate, recalls: &[f64]) -> Aggregate {
        a.repeats = recalls.len() as u32;
        a.mean_recall = mean(recalls.iter().copied());
        a.samples = Some(crate::results::Samples {
            mean_recall: recalls.iter().map(|&r| Some(r)).collect(),
            final_recall: recalls.iter().map(|&r| Some(r)).collect(),
            total_tokens: vec![a.total_tokens; recalls.len()],
            mean_quality: vec![None; recalls.len()],
            stale: vec![0; recalls.len()],
            leaked: vec![0; recalls.len()],
        });
        a
    }

    fn failed(checks: &[Check]) -> Vec<&'static str> {
        checks
            .iter()
            .filter(|c| !c.pass)
            .map(|c| c.metric)
            .collect()
    }

    #[test]
    fn identical_runs_pass_and_regressions_fail() {
        let base = [agg("window", 0.9, 1000)];
        let cfg = GateConfig::default();
        assert!(failed(&compare(&base, &base, &cfg)).is_empty());
        let worse = [agg("window", 0.85, 1000)];
        assert_eq!(
            failed(&compare(&base, &worse, &cfg)),
            ["mean_recall", "final_recall"]
        );
        let costlier = [agg("window", 0.9, 1101)];
        assert_eq!(failed(&compare(&base, &costlier, &cfg)), ["total_tokens"]);
        let within = [agg("window", 0.885, 1099)];
        assert!(failed(&compare(&base, &within, &cfg)).is_empty());
        assert_eq!(failed(&compare(&base, &[], &cfg)), ["present"]);
    }

    #[test]
    fn a_summary_quality_drop_fails_and_a_floor_applies() {
        let mut base = agg("summary", 0.9, 1000);
        base.mean_quality = Some(0.40);
        let mut worse = base.clone();
        worse.mean_quality = Some(0.30);
        let cfg = GateConfig::default();
        assert_eq!(
            failed(&compare(&[base.clone()], &[worse], &cfg)),
            ["mean_quality"]
        );
        let mut slight = base.clone();
        slight.mean_quality = Some(0.37);
        assert!(failed(&compare(&[base.clone()], &[slight], &cfg)).is_empty());
        let floor = GateConfig {
            min_quality: 0.5,
            ..GateConfig::default()
        };
        assert_eq!(
            failed(&compare(&[base.clone()], &[base], &floor)),
            ["min_quality"]
        );
    }

    #[test]
    fn floors_and_leaks() {
        let mut cfg = GateConfig::default();
        cfg.min_recall.insert("window".into(), 0.95);
        let base = [agg("window", 0.9, 1000)];
        assert_eq!(failed(&compare(&base, &base, &cfg)), ["min_recall"]);
        let mut leaky = agg("window", 0.9, 1000);
        leaky.leaked = 2;
        leaky.stale = 1;
        let checks = compare(
            &[agg("window", 0.9, 1000)],
            &[leaky],
            &GateConfig::default(),
        );
        assert_eq!(failed(&checks), ["leaked", "stale"]);
    }

    #[test]
    fn noise_rule_tolerates_drops_within_run_to_run_variation() {
        let cfg = GateConfig::default();
        // Noisy replays: a 0.05 drop of the mean is within the noise.
        let base = [with_samples(
            agg("hybrid", 0.0, 1000),
            &[0.80, 0.95, 0.70, 0.90, 0.85],
        )];
        let cur = [with_samples(
            agg("hybrid", 0.0, 1000),
            &[0.75, 0.90, 0.65, 0.85, 0.80],
        )];
        let checks = compare(&base, &cur, &cfg);
        assert!(failed(&checks).is_empty(), "{checks:?}");
        assert!(
            checks
                .iter()
                .any(|c| c.note.contains("within run-to-run noise"))
        );
        // A consistent drop fails even with replays.
        let tight = [with_samples(
            agg("hybrid", 0.0, 1000),
            &[0.90, 0.91, 0.90, 0.89, 0.90],
        )];
        let dropped = [with_samples(
            agg("hybrid", 0.0, 1000),
            &[0.80, 0.81, 0.80, 0.79, 0.80],
        )];
        assert_eq!(
            failed(&compare(&tight, &dropped, &cfg)),
            ["mean_recall", "final_recall"]
        );
    }

    #[test]
    fn welch_interval() {
        assert_eq!(crate::stats::welch_half_width(&[1.0], &[1.0]), 0.0);
        assert_eq!(
            crate::stats::welch_half_width(&[1.0, 1.0], &[2.0, 2.0]),
            0.0
        );
        // Two samples each, variance 0.5: se = sqrt(0.25 + 0.25), df = 2.
        let h = crate::stats::welch_half_width(&[1.0, 2.0], &[1.0, 2.0]);
        assert!((h - 4.303 * 0.5f64.sqrt()).abs() < 1e-9, "{h}");
    }

    #[test]
    fn junit_names_metric_and_scenario() {
        let base = [agg("window", 0.9, 1000)];
        let worse = [agg("window", 0.5, 1000)];
        let xml = junit(&compare(&base, &worse, &GateConfig::default()));
        assert!(xml.contains("<testcase classname=\"s.window\" name=\"mean_recall\">"));
        assert!(xml.contains("<failure message=\"mean_recall dropped by 0.400 (allowed 0.020)\">"));
        assert!(xml.contains("failures=\"2\""));
    }
}
