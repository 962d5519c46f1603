//! `memeval judge-check`: the configured judge on a labelled set built
//! from the scenarios (see [`crate::calibration`]): its false-accept and
//! false-reject rates with 95% intervals, per kind of answer, and how often
//! it fails to score a summary with a fact removed below the full one.
//! Writes judge-check.json and judge-check.csv; `memeval gate
//! --judge-check DIR` reads the first.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;

use super::{ConfigArgs, Failure, expand_inputs, resolve_config};
use crate::calibration::{self, Rate, Report};
use crate::outdir;
use crate::scenario;

#[derive(Args, Debug)]
pub struct JudgeCheckArgs {
    /// Scenario files, or folders of *.json files
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Probes in the labelled set, chosen with the seed when there are more (0: all)
    #[arg(long, default_value_t = 50)]
    pub max_probes: usize,
    /// Output folder [default: reports/judge-check-<timestamp>]
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace --out if it already holds files
    #[arg(long)]
    pub force: bool,
    /// Judge calls at once [default: the number of cores; openai.max_concurrency for the openai backend]
    #[arg(long, value_parser = super::parse_jobs)]
    pub jobs: Option<usize>,
    /// Print nothing but errors and the overall rates
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub cfg: ConfigArgs,
}

fn pct(r: &Rate) -> String {
    match (r.rate, r.low, r.high) {
        (Some(p), Some(lo), Some(hi)) => format!("{p:.3} [{lo:.3}, {hi:.3}]"),
        _ => "-".into(),
    }
}

/// The report as printed.
pub fn render(r: &Report, quiet: bool) -> String {
    let mut out = String::new();
    if !quiet {
        let _ = writeln!(
            out,
            "{:<12} {:>6} {:>6} {:<13} {:>6}  rate [95% interval]",
            "answer", "items", "none", "error", "wrong"
        );
        for k in &r.by_kind {
            let _ = writeln!(
                out,
                "{:<12} {:>6} {:>6} {:<13} {:>6}  {}",
                k.kind.name(),
                k.items,
                k.no_verdict,
                k.error,
                k.rate.wrong,
                pct(&k.rate)
            );
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "judge {}: false accepts {} of {}: {}; false rejects {} of {}: {}",
        r.judge,
        r.false_accept.wrong,
        r.false_accept.n,
        pct(&r.false_accept),
        r.false_reject.wrong,
        r.false_reject.n,
        pct(&r.false_reject)
    );
    let _ = writeln!(
        out,
        "summaries: a fact removed did not lower the score in {} of {} pairs: {}",
        r.summary_misorder.wrong,
        r.summary_misorder.n,
        pct(&r.summary_misorder)
    );
    if r.failed_calls > 0 {
        let _ = writeln!(
            out,
            "{} judge call(s) failed after their retries (their items have no verdict)",
            r.failed_calls
        );
    }
    out
}

pub fn cmd_judge_check(args: &JudgeCheckArgs) -> Result<(), Failure> {
    let config = resolve_config(&args.cfg, Vec::new())?;
    let files = expand_inputs(&args.files)?;
    let scenarios = scenario::load_all(&files).map_err(|e| Failure::Input(e.to_string()))?;
    let items = calibration::labelled_set(&scenarios, args.max_probes, config.seed);
    if items.is_empty() {
        return Err(Failure::Input(
            "error: no probe of these scenarios has a fact with a phrase to judge".into(),
        ));
    }
    let tok = config.tokenizer().map_err(|e| Failure::Input(e.0))?;
    let backend = crate::backend::from_config(&config, tok)
        .map_err(|e| Failure::Input(format!("error: {e}")))?;
    let jobs = args.jobs.unwrap_or_else(|| {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        if backend.name == "offline" {
            cores
        } else {
            cores.max(config.openai.max_concurrency as usize)
        }
    });
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| outdir::default_dir("judge-check-"));
    let mut inputs = files.clone();
    inputs.extend(super::config_file(&args.cfg));
    let claim = outdir::claim(&out, args.force, &inputs)?;
    let report = claim.publish_staged(|dir| {
        let report = calibration::check(&scenarios, items, &backend, config.seed, jobs);
        let json = serde_json::to_vec_pretty(&report).map_err(anyhow::Error::from)?;
        std::fs::write(dir.join("judge-check.json"), json).map_err(anyhow::Error::from)?;
        write_csv(&dir.join("judge-check.csv"), &report)
            .map_err(|e| Failure::Run(anyhow::anyhow!("judge-check.csv: {e}")))?;
        Ok::<_, Failure>(report)
    })?;
    crate::term::out(&render(&report, args.quiet));
    crate::outln!("outputs: {}", out.display());
    Ok(())
}

fn write_csv(path: &std::path::Path, r: &Report) -> Result<(), csv::Error> {
    let mut w = csv::Writer::from_path(path)?;
    w.write_record([
        "scenario", "probe_id", "kind", "expected", "accepted", "question", "answer", "reason",
    ])?;
    for j in &r.items {
        let i = &j.item;
        let accepted = match j.accepted {
            Some(true) => "1",
            Some(false) => "0",
            None => "",
        };
        w.write_record([
            crate::cell::guard(&i.scenario).as_ref(),
            crate::cell::guard(&i.probe).as_ref(),
            i.kind.name(),
            if i.kind.correct() { "1" } else { "0" },
            accepted,
            crate::cell::guard(&i.question).as_ref(),
            crate::cell::guard(&i.answer).as_ref(),
            crate::cell::guard(&j.reason).as_ref(),
        ])?;
    }
    w.flush()?;
    Ok(())
}
