//! `memeval gate`: a run compared with a baseline under the configured
//! thresholds; a regression is exit 1.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::Args;

use super::{ConfigArgs, Failure, resolve_config};
use crate::config;
use crate::files;
use crate::gate;
use crate::results::ProbeRow;

#[derive(Args, Debug)]
pub struct GateArgs {
    /// Baseline file (from `memeval baseline` or `run --save-baseline`), or a run folder
    #[arg(long)]
    pub baseline: PathBuf,
    /// The run to check: its output folder or results.json
    #[arg(long)]
    pub current: PathBuf,
    /// Also write the checks as JUnit XML
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Compare even when scenario files or models differ from the baseline's
    #[arg(long)]
    pub allow_mismatch: bool,
    /// `memeval judge-check`'s output for the run's judge (its folder or
    /// judge-check.json), required by gate.max_judge_false_accept
    #[arg(long, value_name = "DIR")]
    pub judge_check: Option<PathBuf>,
    /// For each failed check, the probe asks whose verdict changed, with
    /// both contexts side by side (needs both runs' folders)
    #[arg(long)]
    pub explain: bool,
    /// Thresholds: the [gate] section of the configuration
    #[command(flatten)]
    pub cfg: ConfigArgs,
}

pub fn cmd_gate(args: &GateArgs) -> Result<(), Failure> {
    let config = resolve_config(&args.cfg, Vec::new())?;
    if let Some(junit) = &args.junit {
        files::check_writable(junit).map_err(|e| Failure::Input(format!("error: {e}")))?;
    }
    if args.explain {
        for (path, role) in [(&args.baseline, "--baseline"), (&args.current, "--current")] {
            if !path.join("probes.csv").is_file() {
                return Err(Failure::Input(format!(
                    "error: --explain compares probe asks: {role} {} must be a run's output folder (with probes.csv); a baseline file holds only aggregates",
                    path.display()
                )));
            }
        }
    }
    let baseline = load_gate_input(&args.baseline, "baseline")?;
    let current = load_gate_input(&args.current, "current")?;
    let judge = match &args.judge_check {
        Some(p) => Some(judge_check(p, &current.meta, &config.gate)?),
        None => None,
    };
    run_gate(
        &baseline,
        &current,
        &config.gate,
        args.junit.as_deref(),
        args.allow_mismatch,
        judge,
        if args.explain {
            Explain::Print(&args.baseline, &args.current)
        } else {
            Explain::No
        },
    )
}

/// Where the probe asks behind the failed checks are shown.
pub enum Explain<'a> {
    No,
    /// After the table (`gate --explain`): both runs' folders.
    Print(&'a Path, &'a Path),
    /// As a section of the current run's report.html (`run --baseline`),
    /// with the checks: the baseline as given, the run's folder. The asks
    /// are compared where the baseline is a run folder.
    Report(&'a Path, &'a Path),
}

/// The check of the run's judge against `gate.max_judge_false_accept`,
/// from judge-check.json: it must be of the run's judge.
fn judge_check(
    path: &Path,
    current: &crate::results::Metadata,
    thresholds: &config::GateConfig,
) -> Result<gate::Check, Failure> {
    let file = if path.is_dir() {
        path.join("judge-check.json")
    } else {
        path.to_path_buf()
    };
    let bad = |m: String| Failure::Input(format!("error: {}: {m}", file.display()));
    let text = files::read_text_capped(&file, files::cap::RESULTS, "judge-check.json")
        .map_err(|e| Failure::Input(format!("error: {e}")))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let judge = v["judge"]
        .as_str()
        .ok_or_else(|| bad("no judge: not memeval judge-check's output".into()))?;
    let run_judge = current.models.get("judge").map_or("", |m| m.as_str());
    if judge != run_judge {
        return Err(bad(format!(
            "it checked the judge {judge:?}, but the current run's judge is {run_judge:?}"
        )));
    }
    let rate = v["false_accept"]["rate"]
        .as_f64()
        .ok_or_else(|| bad("no false_accept rate: the check judged no wrong answer".into()))?;
    let n = v["false_accept"]["n"].as_u64().unwrap_or(0);
    let limit = thresholds.max_judge_false_accept.unwrap_or(1.0);
    let pass = rate <= limit;
    Ok(gate::Check {
        scenario: "(judge-check)".into(),
        strategy: judge.to_string(),
        metric: "judge_false_accept",
        baseline: "-".into(),
        current: format!("{rate:.3}"),
        delta: "-".into(),
        threshold: format!("<= {limit}"),
        pass,
        note: if pass {
            format!("{n} wrong answers judged")
        } else {
            format!("the judge accepted {rate:.3} of {n} wrong answers (allowed {limit})")
        },
    })
}

/// Compares, prints the table, writes JUnit; a regression is exit 1.
pub fn run_gate(
    baseline: &crate::results::RunResults,
    current: &crate::results::RunResults,
    thresholds: &config::GateConfig,
    junit: Option<&Path>,
    allow_mismatch: bool,
    judge: Option<gate::Check>,
    explain: Explain<'_>,
) -> Result<(), Failure> {
    let differences = gate::mismatches(&baseline.meta, &current.meta);
    if !differences.is_empty() && !allow_mismatch {
        return Err(Failure::Input(format!(
            "error: the runs are not comparable:\n  {}\npass --allow-mismatch to compare them anyway",
            differences.join("\n  ")
        )));
    }
    if crate::results::common_scenarios(&baseline.results, &current.results) == 0 {
        return Err(Failure::Input(
            "error: the baseline and the current run have no scenario in common: there is nothing to compare"
                .into(),
        ));
    }
    if thresholds.max_judge_false_accept.is_some() && judge.is_none() {
        return Err(Failure::Input(
            "error: gate.max_judge_false_accept is set: pass --judge-check DIR, memeval \
             judge-check's output for the run's judge"
                .into(),
        ));
    }
    let mut checks = gate::compare(&baseline.results, &current.results, thresholds);
    checks.extend(judge);
    crate::term::out(&gate::render(&checks));
    let answers = if current.meta.extractive_answers() {
        "extractive baseline"
    } else {
        "answer"
    };
    let failed = failed_by_pair(&checks);
    let keys: BTreeSet<(String, String)> = failed.keys().cloned().collect();
    // Each failed pair's changed asks, written by `f` (as text or HTML).
    type Describe = fn(&[&gate::Check], &[ProbeRow], &[ProbeRow], &str) -> String;
    let per_pair = |b: &Path, c: &Path, f: Describe| -> Result<Vec<String>, Failure> {
        let (before, after) = (probe_rows(b, &keys)?, probe_rows(c, &keys)?);
        let none = Vec::new();
        Ok(failed
            .iter()
            .map(|(k, checks)| {
                let (b, c) = (before.get(k), after.get(k));
                f(checks, b.unwrap_or(&none), c.unwrap_or(&none), answers)
            })
            .collect())
    };
    match explain {
        Explain::No => {}
        Explain::Print(b, c) => {
            for text in per_pair(b, c, gate::explain::explain)? {
                crate::term::out(&format!("\n{text}"));
            }
        }
        Explain::Report(b, c) => {
            let explained = if b.join("probes.csv").is_file() {
                Ok(per_pair(b, c, gate::explain::html)?)
            } else {
                Err(format!(
                    "the baseline {} holds only aggregates: with its run folder as the baseline, this section shows the probe asks behind each failed check (or: memeval gate --baseline <its folder> --current {} --explain)",
                    b.display(),
                    c.display()
                ))
            };
            let section = gate::explain::section(&checks, &b.display().to_string(), explained);
            crate::report::html::add_section(c, &section).map_err(|e| {
                Failure::Run(anyhow::anyhow!("writing the gate into the report: {e}"))
            })?;
            if !failed.is_empty() {
                crate::term::out(&format!(
                    "the probe asks behind the failed checks: {}#gate\n",
                    c.join("report.html").display()
                ));
            }
        }
    }
    if let Some(path) = junit {
        files::write_atomically(path, gate::junit(&checks).as_bytes())
            .map_err(|e| Failure::Run(anyhow::anyhow!(e)))?;
    }
    let failed = checks.iter().filter(|c| !c.pass).count();
    if failed > 0 {
        return Err(Failure::Regression(format!(
            "gate failed: {failed} regression(s) against the baseline"
        )));
    }
    Ok(())
}

/// The failed checks, by scenario and strategy.
fn failed_by_pair(checks: &[gate::Check]) -> BTreeMap<(String, String), Vec<&gate::Check>> {
    let mut out: BTreeMap<(String, String), Vec<&gate::Check>> = BTreeMap::new();
    for c in checks
        .iter()
        .filter(|c| !c.pass && c.scenario != "(judge-check)")
    {
        out.entry((c.scenario.clone(), c.strategy.clone()))
            .or_default()
            .push(c);
    }
    out
}

/// The probes.csv rows of a run folder, of the given (scenario, strategy)
/// pairs only.
fn probe_rows(
    dir: &Path,
    keep: &BTreeSet<(String, String)>,
) -> Result<BTreeMap<(String, String), Vec<ProbeRow>>, Failure> {
    let mut out: BTreeMap<(String, String), Vec<ProbeRow>> = BTreeMap::new();
    crate::results::read::for_each_row(&dir.join("probes.csv"), |row: ProbeRow| {
        let k = (row.scenario.clone(), row.strategy.clone());
        if keep.contains(&k) {
            out.entry(k).or_default().push(row);
        }
    })
    .map_err(|e| Failure::Input(format!("error: {e}")))?;
    Ok(out)
}

/// Results that the gate (or a baseline) may rest on, read from a run
/// folder, a results.json or a baseline file: complete (not an interrupted
/// run's), of a known format, with at least one result.
pub fn load_gate_input(path: &Path, role: &str) -> Result<crate::results::RunResults, Failure> {
    let results =
        crate::results::load_results(path).map_err(|e| Failure::Input(format!("error: {e}")))?;
    crate::results::check_usable(&results)
        .map_err(|e| Failure::Input(format!("error: {} ({role}): {e}", path.display())))?;
    Ok(results)
}
