//! `memeval gate`: a run compared with a baseline under the configured
//! thresholds; a regression is exit 1.

use std::path::{Path, PathBuf};

use clap::Args;

use super::{ConfigArgs, Failure, resolve_config};
use crate::config;
use crate::files;
use crate::gate;

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
    /// Thresholds: the [gate] section of the configuration
    #[command(flatten)]
    pub cfg: ConfigArgs,
}

pub fn cmd_gate(args: &GateArgs) -> Result<(), Failure> {
    let config = resolve_config(&args.cfg, Vec::new())?;
    if let Some(junit) = &args.junit {
        files::check_writable(junit).map_err(|e| Failure::Input(format!("error: {e}")))?;
    }
    let baseline = load_gate_input(&args.baseline, "baseline")?;
    let current = load_gate_input(&args.current, "current")?;
    run_gate(
        &baseline,
        &current,
        &config.gate,
        args.junit.as_deref(),
        args.allow_mismatch,
    )
}

/// Compares, prints the table, writes JUnit; a regression is exit 1.
pub fn run_gate(
    baseline: &crate::results::RunResults,
    current: &crate::results::RunResults,
    thresholds: &config::GateConfig,
    junit: Option<&Path>,
    allow_mismatch: bool,
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
    let checks = gate::compare(&baseline.results, &current.results, thresholds);
    crate::term::out(&gate::render(&checks));
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
