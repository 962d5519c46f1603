//! The commands, one module each: a thin flow over the layers below
//! (scenarios and configuration in, the replay engine, results out). What
//! they share is here: how a failure maps to an exit code, where the
//! configuration comes from, and how inputs are named.

pub mod baseline;
pub mod budget;
pub mod gate;
pub mod generate;
pub mod import;
pub mod inspect;
pub mod judge_check;
pub mod merge;
pub mod report;
pub mod resume;
pub mod run;
pub mod sweep;
pub mod validate;

use std::path::PathBuf;

use clap::Args;

use crate::config::{self, Config};
use crate::outdir::OutError;
use crate::scenario;

/// Where the configuration comes from.
#[derive(Args, Debug, Clone, Default)]
pub struct ConfigArgs {
    /// Configuration file [default: ./memeval.toml when present]
    #[arg(long, env = "MEMEVAL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Override a configuration value, e.g. --set summary.trigger_tokens=2000 (repeatable)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// A failure, with the exit code it maps to.
#[derive(Debug)]
pub enum Failure {
    /// A gate found a regression: exit 1.
    Regression(String),
    /// Bad input or usage: exit 2.
    Input(String),
    /// Anything else: exit 3.
    Run(anyhow::Error),
    /// Stopped by Ctrl-C, what was finished kept for `--resume`: exit 130.
    Interrupted(String),
    /// The run completed, but some API calls failed after their retries:
    /// exit 4 (the outputs are written, the affected metrics incomplete).
    Incomplete(String),
}

impl From<OutError> for Failure {
    fn from(e: OutError) -> Self {
        match e {
            OutError::Refused(m) => Failure::Input(m),
            OutError::Io(m) => Failure::Run(anyhow::anyhow!(m)),
        }
    }
}

/// A run's files that cannot be read or relied on are bad input.
impl From<crate::results::ResultsError> for Failure {
    fn from(e: crate::results::ResultsError) -> Self {
        Failure::Input(format!("error: {e}"))
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Run(e)
    }
}

/// Expands folders to their *.json files (sorted); keeps files as given.
pub fn expand_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, Failure> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| Failure::Input(format!("error: {}: {e}", p.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "json") && f.is_file())
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(Failure::Input(format!(
                    "error: {}: no *.json scenario files in this folder",
                    p.display()
                )));
            }
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

pub fn load_scenarios(inputs: &[PathBuf]) -> Result<Vec<scenario::Scenario>, Failure> {
    let files = expand_inputs(inputs)?;
    scenario::load_all(&files).map_err(input_errors)
}

fn input_errors(e: scenario::InputErrors) -> Failure {
    Failure::Input(format!(
        "{e}\n{} error(s); nothing was run. The format is described in docs/SCENARIO_FORMAT.md.",
        e.0.len()
    ))
}

/// Resolves the configuration: the file, then --set, then `flags` (which
/// win), all as `key=value` overrides.
pub fn resolve_config(cfg: &ConfigArgs, flags: Vec<String>) -> Result<Config, Failure> {
    let file = config_file(cfg);
    let mut overrides = cfg.set.clone();
    overrides.extend(flags);
    config::load(file.as_deref(), &overrides).map_err(|e| Failure::Input(format!("error: {e}")))
}

/// The configuration file a command reads, if any: `--config`, else
/// `./memeval.toml` where it exists.
pub fn config_file(cfg: &ConfigArgs) -> Option<PathBuf> {
    let default_file = PathBuf::from("memeval.toml");
    cfg.config
        .clone()
        .or_else(|| default_file.is_file().then_some(default_file))
}

/// The folder of the configuration file (as named), where plugin
/// commands start: the working folder without one.
pub fn config_dir(cfg: &ConfigArgs) -> PathBuf {
    config_file(cfg)
        .and_then(|f| f.parent().map(std::path::Path::to_path_buf))
        .unwrap_or_default()
}

/// Starts the plugins that `config`'s strategies name, their logs and
/// storage under `dir`, their commands started in `command_dir`.
pub fn start_plugins(
    config: &Config,
    backend: &crate::backend::Backend,
    dir: &std::path::Path,
    command_dir: &std::path::Path,
) -> Result<crate::plugin::Plugins, Failure> {
    crate::plugin::Plugins::start(&crate::plugin::Setup {
        config,
        backend,
        run_dir: dir,
        command_dir,
    })
    .map_err(|e| Failure::Run(anyhow::anyhow!(e)))
}

/// Worker threads where `--jobs` is not given: one per core.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// A number of worker threads: 1 to 1024.
pub fn parse_jobs(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n @ 1..=1024) => Ok(n),
        _ => Err(format!(
            "{s:?}: expected a number of threads from 1 to 1024"
        )),
    }
}

/// The scenarios of a run, validated from its files (on `jobs` threads),
/// listed and sharded; the first `keep_mb` megabytes of them kept loaded
/// (see `registry.scenario_cache_mb`).
pub fn run_scenarios(
    files: &[PathBuf],
    shard: Option<(u32, u32)>,
    jobs: usize,
    keep_mb: u32,
) -> Result<Vec<scenario::Listed>, Failure> {
    let keep = u64::from(keep_mb) << 20;
    let mut scenarios = scenario::list_all(files, jobs, keep).map_err(input_errors)?;
    if let Some((k, n)) = shard {
        let total = scenarios.len();
        scenarios = shard_of(scenarios, k, n);
        if scenarios.is_empty() {
            return Err(Failure::Input(format!(
                "error: --shard {k}/{n}: no scenario falls in this shard ({total} scenario(s) in all); use at most {total} shards"
            )));
        }
    }
    Ok(scenarios)
}

/// Shard `k` of `n`: the scenarios sorted by name, every `n`th from the `k`th.
pub fn shard_of(mut scenarios: Vec<scenario::Listed>, k: u32, n: u32) -> Vec<scenario::Listed> {
    scenarios.sort_by(|a, b| a.name.cmp(&b.name));
    scenarios
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i as u32 % n == k - 1)
        .map(|(_, s)| s)
        .collect()
}
