//! `memeval run`, and `run --resume`: scenarios replayed through the
//! strategies into a staging folder, journaled replay by replay, published
//! when complete; then the table, the baseline and the gate.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;

use super::baseline::write_baseline;
use super::gate::{load_gate_input, run_gate};
use super::resume::{JOURNAL, RunSpec, finished_unpublished, new_journal, resumed_run};
use super::{
    ConfigArgs, Failure, config_file, expand_inputs, parse_jobs, resolve_config, run_scenarios,
};
use crate::backend;
use crate::config::{self, Config};
use crate::files;
use crate::memory::Params;
use crate::outdir;
use crate::report;
use crate::results::{JobKey, Metadata, ScenarioMeta};
use crate::runner::{self, Runtime};
use crate::scenario;
use crate::store::Journal;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Scenario files, or folders of *.json files
    #[arg(required_unless_present = "resume")]
    pub files: Vec<PathBuf>,
    /// Output folder [default: reports/<timestamp>, with reports/latest pointing at it]
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the interrupted run whose output folder is DIR (Ctrl-C, a
    /// kill, a crash): the replays it finished are kept, the others run, and
    /// the outputs are those of an uninterrupted run. Scenario files,
    /// configuration, --repeat, --shard and --no-timings come from the run
    /// (settings from MEMEVAL_* variables are ignored).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["files", "out", "set", "repeat", "shard", "shard_from_env", "no_timings"])]
    pub resume: Option<PathBuf>,
    /// Replace --out if it already holds files
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub cfg: ConfigArgs,
    /// Seed of every random choice [config: seed; default: 42]
    #[arg(long, env = "MEMEVAL_SEED")]
    pub seed: Option<u64>,
    /// Chat model whose tokenizer and context window apply [config: model.name; default: gpt-4o]
    #[arg(long, env = "MEMEVAL_MODEL")]
    pub model: Option<String>,
    /// Strategies to run, comma-separated [config: strategies; default: all five]
    #[arg(long, value_delimiter = ',', env = "MEMEVAL_STRATEGIES")]
    pub strategies: Option<Vec<String>>,
    /// Worker threads, 1 to 1024 [default: the number of cores]
    #[arg(long, value_parser = parse_jobs)]
    pub jobs: Option<usize>,
    /// Write 0 in every timing column, so that two runs are byte-identical
    #[arg(long)]
    pub no_timings: bool,
    /// Replay each scenario N times, with seeds seed, seed+1, ...; results
    /// hold the means and per-replay samples (for the gate's noise rule)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub repeat: u32,
    /// Gate the run against this baseline file: exit 1 on a regression
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// With --baseline: also write the checks as JUnit XML
    #[arg(long, requires = "baseline")]
    pub junit: Option<PathBuf>,
    /// With --baseline: compare even when scenario files or models differ
    #[arg(long, requires = "baseline")]
    pub allow_mismatch: bool,
    /// Also write a baseline file of this run
    #[arg(long)]
    pub save_baseline: Option<PathBuf>,
    /// Run only shard K of N: every Nth scenario by name, from the Kth; merge
    /// the shards' folders with `memeval merge`
    #[arg(long, value_name = "K/N", value_parser = parse_shard)]
    pub shard: Option<(u32, u32)>,
    /// Take the shard from the environment a batch engine sets: MEMEVAL_SHARD
    /// (K/N), or a 0-based index from MEMEVAL_SHARD_INDEX,
    /// JOB_COMPLETION_INDEX (a Kubernetes Indexed Job), CLOUD_RUN_TASK_INDEX
    /// or AWS_BATCH_JOB_ARRAY_INDEX, with the count from MEMEVAL_SHARD_COUNT
    /// or CLOUD_RUN_TASK_COUNT
    #[arg(long, conflicts_with = "shard")]
    pub shard_from_env: bool,
    /// Print nothing but errors
    #[arg(long, short)]
    pub quiet: bool,
    /// offline (the default: embedded, free, exact) or openai (any
    /// OpenAI-compatible endpoint, configured under [openai])
    #[arg(long, env = "MEMEVAL_BACKEND")]
    pub backend: Option<String>,
    /// Send every request, even those the response cache holds (openai)
    #[arg(long)]
    pub no_cache: bool,
    /// The response cache's SQLite file (openai; default .memeval/cache.sqlite)
    #[arg(long, value_name = "PATH", env = "MEMEVAL_CACHE")]
    pub cache: Option<PathBuf>,
}

/// `K/N` with 1 <= K <= N.
pub(crate) fn parse_shard(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("{s:?}: expected K/N with 1 <= K <= N, e.g. 2/4");
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    let (k, n): (u32, u32) = (
        k.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if k == 0 || k > n {
        return Err(bad());
    }
    Ok((k, n))
}

/// Variables that hold a shard's 0-based index, in the order they are
/// read: memeval's own, then those of the batch engines that set one.
const SHARD_INDEX_VARS: &[&str] = &[
    "MEMEVAL_SHARD_INDEX",
    "JOB_COMPLETION_INDEX",
    "CLOUD_RUN_TASK_INDEX",
    "AWS_BATCH_JOB_ARRAY_INDEX",
];
/// Variables that hold the number of shards.
const SHARD_COUNT_VARS: &[&str] = &["MEMEVAL_SHARD_COUNT", "CLOUD_RUN_TASK_COUNT"];

/// The shard (K/N, 1-based) that `var` (the environment) names; see
/// `--shard-from-env`.
pub(crate) fn shard_from_env(var: impl Fn(&str) -> Option<String>) -> Result<(u32, u32), String> {
    let first = |names: &[&'static str]| {
        names
            .iter()
            .find_map(|&n| var(n).filter(|v| !v.trim().is_empty()).map(|v| (n, v)))
    };
    if let Some(v) = var("MEMEVAL_SHARD").filter(|v| !v.trim().is_empty()) {
        return parse_shard(&v).map_err(|e| format!("MEMEVAL_SHARD={e}"));
    }
    let Some((index_var, index)) = first(SHARD_INDEX_VARS) else {
        return Err(format!(
            "--shard-from-env: no shard in the environment: set MEMEVAL_SHARD=K/N, or a 0-based index in one of {} and the count in one of {}",
            SHARD_INDEX_VARS.join(", "),
            SHARD_COUNT_VARS.join(", ")
        ));
    };
    let Some((count_var, count)) = first(SHARD_COUNT_VARS) else {
        return Err(format!(
            "--shard-from-env: {index_var}={index} gives the shard's index but nothing gives the number of shards: set MEMEVAL_SHARD_COUNT"
        ));
    };
    let index: u32 = index.trim().parse().map_err(|_| {
        format!("--shard-from-env: {index_var}={index:?} is not a shard index (0, 1, 2, ...)")
    })?;
    let count: u32 = count
        .trim()
        .parse()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            format!("--shard-from-env: {count_var}={count:?} is not a number of shards (1, 2, ...)")
        })?;
    if index >= count {
        return Err(format!(
            "--shard-from-env: {index_var}={index} is not an index of {count_var}={count} shards (0 to {})",
            count - 1
        ));
    }
    Ok((index + 1, count))
}

/// The shard a new run replays: `--shard`, or the environment's.
fn shard_of_args(args: &RunArgs) -> Result<Option<(u32, u32)>, Failure> {
    if args.shard_from_env {
        return shard_from_env(|n| std::env::var(n).ok())
            .map(Some)
            .map_err(|e| Failure::Input(format!("error: {e}")));
    }
    Ok(args.shard)
}

/// The run flags as configuration overrides.
pub(crate) fn run_flags(args: &RunArgs) -> Vec<String> {
    let mut flags = Vec::new();
    if let Some(seed) = args.seed {
        flags.push(format!("seed={seed}"));
    }
    if let Some(model) = &args.model {
        flags.push(format!("model.name={}", toml::Value::String(model.clone())));
    }
    if let Some(b) = &args.backend {
        flags.push(format!("backend={}", toml::Value::String(b.clone())));
    }
    if args.no_cache {
        flags.push("openai.cache=false".into());
    }
    if let Some(p) = &args.cache {
        let p = toml::Value::String(p.display().to_string());
        flags.push(format!("openai.cache_path={p}"));
    }
    if let Some(list) = &args.strategies {
        let quoted: Vec<String> = list
            .iter()
            .map(|s| toml::Value::String(s.trim().to_string()).to_string())
            .collect();
        flags.push(format!("strategies=[{}]", quoted.join(",")));
    }
    flags
}

/// Stops the run at the next step on the first Ctrl-C (a second one kills
/// it at once).
pub(crate) fn stop_on_ctrl_c() {
    #[cfg(unix)]
    {
        extern "C" fn on_sigint(_: libc::c_int) {
            runner::STOP.store(true, std::sync::atomic::Ordering::SeqCst);
            // SAFETY: signal() is async-signal-safe; back to the default action.
            unsafe {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
            }
        }
        // SAFETY: the handler only stores an atomic and resets the disposition.
        unsafe {
            libc::signal(
                libc::SIGINT,
                on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
}

/// The model side of a run: its tokenizer, context window and backend.
type Engine = (crate::tokens::Tokenizer, u32, crate::backend::Backend);

/// The model side, built before the output folder is touched: a key, a
/// prompt or a cache that cannot be had refuses the run with nothing
/// written.
fn engine(config: &Config) -> Result<Engine, Failure> {
    let tok = config.tokenizer().map_err(|e| Failure::Input(e.0))?;
    let context_window = config.context_window().map_err(|e| Failure::Input(e.0))?;
    let backend =
        backend::from_config(config, tok).map_err(|e| Failure::Input(format!("error: {e}")))?;
    Ok((tok, context_window, backend))
}

/// A run ready to replay: what it is, its scenarios and model side, its
/// output folder (claimed), and its journal where it resumes; `discard`:
/// an interrupted run's staging folder is to be replaced (`--force`).
struct Ready {
    spec: RunSpec,
    scenarios: Vec<scenario::Listed>,
    claim: outdir::Claim,
    journal: Option<Journal>,
    discard: bool,
    engine: Engine,
}

/// A new run: its configuration, scenarios and model side checked, its
/// output folder claimed; nothing written yet but the folder's lock.
fn new_run(args: &RunArgs) -> Result<Ready, Failure> {
    let config = resolve_config(&args.cfg, run_flags(args))?;
    let files = expand_inputs(&args.files)?;
    let shard = shard_of_args(args)?;
    let scenarios = run_scenarios(
        &files,
        shard,
        args.jobs.unwrap_or_else(super::default_jobs),
        config.registry.scenario_cache_mb,
    )?;
    let engine = engine(&config)?;
    let cwd = std::env::current_dir().map_err(anyhow::Error::from)?;
    crate::plugin::check_commands(&config, &cwd.join(super::config_dir(&args.cfg)))
        .map_err(|e| Failure::Input(format!("error: {e}")))?;
    let latest = args.out.is_none();
    let out = args.out.clone().unwrap_or_else(|| outdir::default_dir(""));
    let mut inputs = files.clone();
    inputs.extend(config_file(&args.cfg));
    inputs.extend(args.baseline.clone());
    let claim = outdir::claim(&out, args.force, &inputs)?;
    let staging = outdir::staging_of(&out);
    if staging.exists() && !args.force {
        return Err(Failure::Input(format!(
            "error: {} holds an interrupted run of {}: continue it with `memeval run --resume {}`, or pass --force to discard it",
            staging.display(),
            out.display(),
            out.display()
        )));
    }
    let spec = RunSpec {
        cwd: std::env::current_dir().map_err(anyhow::Error::from)?,
        files,
        sha256: scenarios
            .iter()
            .map(|s| (s.name.clone(), s.sha256.clone()))
            .collect(),
        config,
        shard,
        repeat: args.repeat,
        timings: !args.no_timings,
        latest,
        config_dir: super::config_dir(&args.cfg),
    };
    Ok(Ready {
        spec,
        scenarios,
        claim,
        journal: None,
        discard: staging.exists(),
        engine,
    })
}

pub fn cmd_run(args: &RunArgs) -> Result<(), Failure> {
    // From the first moment, a Ctrl-C stops the run at its next step, so
    // that nothing is left half-made.
    stop_on_ctrl_c();
    // Everything is validated before anything runs or is written.
    let baseline = args
        .baseline
        .as_deref()
        .map(|p| load_gate_input(p, "baseline"))
        .transpose()?;
    for file in [&args.save_baseline, &args.junit].into_iter().flatten() {
        files::check_writable(file).map_err(|e| Failure::Input(format!("error: {e}")))?;
    }
    let Ready {
        spec,
        mut scenarios,
        claim,
        journal,
        discard,
        engine,
    } = match &args.resume {
        Some(dir) => {
            let claim = outdir::claim_existing(dir)?;
            if finished_unpublished(dir) {
                // Killed while its outputs were being moved into place.
                remove_journal(&outdir::staging_of(dir));
                outdir::publish(&outdir::staging_of(dir), dir)?;
                return finish(args, dir, None, baseline.as_ref());
            }
            let (spec, scenarios, journal) = resumed_run(dir)?;
            let engine = engine(&spec.config)?;
            Ready {
                spec,
                scenarios,
                claim,
                journal: Some(journal),
                discard: false,
                engine,
            }
        }
        None => new_run(args)?,
    };
    let (tok, context_window, backend) = engine;
    let out = claim.path().to_path_buf();
    let staging = outdir::staging_of(&out);
    let config = &spec.config;
    let journal = match journal {
        Some(j) => j,
        None => {
            if runner::STOP.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(Failure::Interrupted(
                    "interrupted before the run started: nothing was written".into(),
                ));
            }
            if discard {
                std::fs::remove_dir_all(&staging)
                    .map_err(|e| anyhow::anyhow!("cannot remove {}: {e}", staging.display()))?;
            }
            new_journal(&staging, &spec)?
        }
    };
    run_into(
        args,
        &spec,
        &mut scenarios,
        &staging,
        &journal,
        tok,
        context_window,
        &backend,
    )
    .map_err(|e| {
        let resume = format!("continue with `memeval run --resume {}`", out.display());
        match e {
            Failure::Run(e) => {
                Failure::Run(e.context(format!("the replays finished so far are kept: {resume}")))
            }
            Failure::Interrupted(m) => Failure::Interrupted(format!("{m}; {resume}")),
            other => other,
        }
    })?;
    // Complete: the journal goes, and the outputs move into place. A
    // staging folder without the journal's own file holds a finished run,
    // which `--resume` publishes as it is (so `latest` points at it
    // before that); its log goes after it, uncopied.
    journal.close_for_removal();
    if spec.latest {
        outdir::point_latest(&out);
    }
    remove_journal(&staging);
    outdir::publish(&staging, &out)?;
    drop(claim);
    finish(args, &out, Some(&config.gate), baseline.as_ref())
}

/// Removes a finished run's journal from its staging folder: its own file
/// first (the run is finished from then on), then its log.
fn remove_journal(staging: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(staging.join(format!("{JOURNAL}{suffix}")));
    }
}

/// What follows a run's publication: the results table, the baseline, the
/// gate, and the exit status of failed API calls; all read from the
/// published results. `thresholds`, where not given, are the run's own, as
/// its results record them.
pub(crate) fn finish(
    args: &RunArgs,
    out: &Path,
    thresholds: Option<&config::GateConfig>,
    baseline: Option<&crate::results::RunResults>,
) -> Result<(), Failure> {
    // What a baseline and the gate compare; the table needs less of each
    // scenario (a population's results are tens of MB).
    let results = if baseline.is_some() || args.save_baseline.is_some() {
        crate::results::load_results(out)
    } else {
        crate::results::load_slim_results(out)
    }
    .map_err(|e| anyhow::anyhow!(e))?;
    if !args.quiet {
        let mut table = Vec::new();
        let extractive = results.meta.extractive_answers();
        report::print_table(&mut table, &results.results, &results.totals, extractive)
            .and_then(|()| report::print_comparisons(&mut table, &results.comparisons, extractive))
            .and_then(|()| report::print_agreement(&mut table, &results.judge_agreement))
            .map_err(anyhow::Error::from)?;
        writeln!(table, "\noutputs: {}", out.display()).map_err(anyhow::Error::from)?;
        crate::term::out(&String::from_utf8_lossy(&table));
    }
    if !results.meta.failed.is_empty() {
        let list: Vec<String> = results
            .meta
            .failed
            .iter()
            .map(|f| format!("  {}/{}/{}: {}", f.scenario, f.strategy, f.repeat, f.error))
            .collect();
        return Err(Failure::Incomplete(format!(
            "completed with {} failed replay(s), left out of every output (listed in {}):\n{}",
            results.meta.failed.len(),
            out.join("metadata.json").display(),
            list.join("\n")
        )));
    }
    if let Some(path) = &args.save_baseline {
        write_baseline(&results, &files::Target::File(path.clone()))?;
    }
    if let (Some(b), Some(b_path)) = (baseline, args.baseline.as_deref()) {
        // Where not given, the run's own, as its results record them.
        let thresholds = thresholds.unwrap_or(&results.meta.config.gate);
        run_gate(
            b,
            &results,
            thresholds,
            args.junit.as_deref(),
            args.allow_mismatch,
            None,
            super::gate::Explain::Report(b_path, out),
        )?;
    }
    let failed: u64 = results.results.iter().map(|a| a.failed_calls).sum();
    if failed > 0 {
        return Err(Failure::Incomplete(format!(
            "completed with {failed} failed API call(s) (listed in {}): the metrics they feed are incomplete",
            out.join("calls.csv").display()
        )));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn run_into(
    args: &RunArgs,
    spec: &RunSpec,
    scenarios: &mut [scenario::Listed],
    dir: &Path,
    journal: &Journal,
    tok: crate::tokens::Tokenizer,
    context_window: u32,
    backend: &crate::backend::Backend,
) -> Result<(), Failure> {
    let config = &spec.config;
    let mut rt = Runtime {
        config,
        backend,
        tok,
        context_window,
        store: &dir.join("memory.sqlite"),
        jobs: args.jobs.unwrap_or_else(super::default_jobs),
        timings: spec.timings,
        progress: !args.quiet,
        repeats: spec.repeat,
        plugins: None,
    };
    let plugins = super::start_plugins(config, backend, dir, &spec.command_dir())?;
    rt.plugins = Some(&plugins);
    if backend.name != "offline" && args.jobs.is_none() {
        // One request per user message at a time: enough workers to keep
        // every allowed request in flight.
        rt.jobs = rt.jobs.max(config.openai.max_concurrency as usize);
    }
    let input = runner::Input::Listed(scenarios);
    let ahead = runner::prefetch_embeddings(input, &rt);
    match runner::run_journaled(input, &rt, journal) {
        Ok(()) => {}
        Err(runner::RunError::Interrupted) => {
            return Err(write_partial(spec, scenarios, dir, journal, &rt, &ahead));
        }
        Err(e) => return Err(anyhow::Error::from(e).into()),
    }
    // The replays are over: the scenarios kept loaded for them are not
    // needed to write the outputs.
    for s in scenarios.iter_mut() {
        s.kept = None;
    }
    let mut meta = run_metadata(spec, scenarios, backend, tok, context_window, false)?;
    meta.plugins = plugins.identities();
    plugins.shutdown();
    meta.failed = failures(journal)?;
    let keys: Vec<JobKey> = runner::job_keys(runner::Input::Listed(scenarios), config, spec.repeat)
        .into_iter()
        .filter(|k| {
            !meta
                .failed
                .iter()
                .any(|f| (&f.scenario, &f.strategy, f.repeat) == (&k.0, &k.1, k.2))
        })
        .collect();
    let written = write_from_journal(dir, journal, &keys, &ahead, &meta)?;
    if !args.quiet {
        let mut calls = Vec::new();
        written
            .calls
            .print(&mut calls)
            .map_err(anyhow::Error::from)?;
        crate::term::err(&String::from_utf8_lossy(&calls));
    }
    let cap = config.registry.max_active_users as usize;
    if cap > 0 && cap < scenarios.len() {
        let registry = written.registry_summary(cap);
        let mut bytes = serde_json::to_vec_pretty(&registry).map_err(anyhow::Error::from)?;
        bytes.push(b'\n');
        std::fs::write(dir.join("registry.json"), bytes).map_err(anyhow::Error::from)?;
        if !args.quiet {
            crate::errln!(
                "registry: {} users through {cap} live memories: {} evictions (p50 {} µs, p95 {} µs, p99 {} µs), {} reloads (p50 {} µs, p95 {} µs, p99 {} µs)",
                scenarios.len(),
                registry["evictions"],
                registry["evict_p50_us"],
                registry["evict_p95_us"],
                registry["evict_p99_us"],
                registry["reloads"],
                registry["reload_p50_us"],
                registry["reload_p95_us"],
                registry["reload_p99_us"],
            );
        }
    }
    report::write_report(dir).map_err(|e| anyhow::anyhow!("writing the report: {e}"))?;
    Ok(())
}

/// The replays the journal records as failed.
fn failures(journal: &Journal) -> Result<Vec<crate::results::FailedReplay>, Failure> {
    Ok(journal
        .failures()
        .map_err(anyhow::Error::from)?
        .into_iter()
        .map(
            |((scenario, strategy, repeat), error)| crate::results::FailedReplay {
                scenario,
                strategy,
                repeat,
                error,
            },
        )
        .collect())
}

/// The outputs of the replays `keys` (in output order), read from the
/// journal one at a time.
pub(crate) fn write_from_journal(
    dir: &Path,
    journal: &Journal,
    keys: &[JobKey],
    ahead: &[crate::results::CallRow],
    meta: &Metadata,
) -> Result<crate::results::Written, Failure> {
    let jobs = keys
        .iter()
        .map(|k| journal.get(k).map_err(std::io::Error::other));
    crate::results::write_outputs(dir, jobs, ahead, meta, &meta.strategies)
        .map_err(|e| anyhow::anyhow!("writing outputs: {e}").into())
}

/// The metadata of a run's outputs.
pub(crate) fn run_metadata(
    spec: &RunSpec,
    scenarios: &[scenario::Listed],
    backend: &crate::backend::Backend,
    tok: crate::tokens::Tokenizer,
    context_window: u32,
    partial: bool,
) -> Result<Metadata, Failure> {
    let config = &spec.config;
    let params = Params::from_config(config, backend);
    let mut resolved = std::collections::BTreeMap::new();
    resolved.insert(
        "vector.min_score".into(),
        serde_json::json!(params.min_score),
    );
    let mut sorted: Vec<&scenario::Listed> = scenarios.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let meta = Metadata {
        memeval_version: env!("CARGO_PKG_VERSION").into(),
        format_version: crate::results::OUTPUT_FORMAT,
        seed: config.seed,
        backend: backend.name.clone(),
        chat_model: config.model.name.clone(),
        encoding: tok.name().into(),
        context_window,
        models: backend
            .models
            .iter()
            .map(|(k, v)| ((*k).into(), v.clone()))
            .collect(),
        embedder: backend.embedder_identity.clone(),
        answers: Some(if backend.name == "offline" {
            crate::results::EXTRACTIVE_BASELINE.into()
        } else {
            "model".into()
        }),
        strategies: config.strategies.iter().map(|s| s.to_string()).collect(),
        config: config.clone(),
        resolved,
        scenarios: sorted
            .iter()
            .map(|s| ScenarioMeta {
                name: s.name.clone(),
                user: s.user.clone(),
                file: s.file.display().to_string(),
                sha256: s.sha256.clone(),
                messages: s.messages,
                probes: s.probe_asks,
                source: s.source.clone(),
            })
            .collect(),
        timings: spec.timings,
        repeats: spec.repeat,
        shard: spec.shard.map(|(k, n)| format!("{k}/{n}")),
        partial,
        plugins: Default::default(),
        failed: Vec::new(),
    };
    Ok(meta)
}

/// After a Ctrl-C: the replays finished so far, as outputs marked partial
/// in the staging folder, beside the journal that `--resume` continues.
pub(crate) fn write_partial(
    spec: &RunSpec,
    scenarios: &[scenario::Listed],
    dir: &Path,
    journal: &Journal,
    rt: &Runtime<'_>,
    ahead: &[crate::results::CallRow],
) -> Failure {
    let strategies = &spec.config.strategies;
    let written = (|| -> Result<(usize, usize), Failure> {
        let done = journal.done().map_err(anyhow::Error::from)?;
        let keys: Vec<JobKey> =
            runner::job_keys(runner::Input::Listed(scenarios), &spec.config, spec.repeat)
                .into_iter()
                .filter(|k| done.contains(k))
                .collect();
        let mut meta = run_metadata(spec, scenarios, rt.backend, rt.tok, rt.context_window, true)?;
        meta.plugins = rt.plugins.map(|p| p.identities()).unwrap_or_default();
        meta.failed = failures(journal)?;
        write_from_journal(dir, journal, &keys, ahead, &meta)?;
        report::write_report(dir).map_err(|e| anyhow::anyhow!("writing the report: {e}"))?;
        Ok((
            keys.len(),
            scenarios.len() * strategies.len() * spec.repeat as usize,
        ))
    })();
    Failure::Interrupted(match written {
        Ok((n, total)) => format!(
            "interrupted: {n} of {total} replays had finished; their outputs, marked partial, are in {}",
            dir.display()
        ),
        Err(e) => format!("interrupted; the partial outputs could not be written: {e:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::shard_from_env;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn shards_from_each_engine() {
        assert_eq!(shard_from_env(env(&[("MEMEVAL_SHARD", "3/8")])), Ok((3, 8)));
        // A Kubernetes Indexed Job: 0-based index, count given by the manifest.
        let k8s = env(&[("JOB_COMPLETION_INDEX", "0"), ("MEMEVAL_SHARD_COUNT", "4")]);
        assert_eq!(shard_from_env(k8s), Ok((1, 4)));
        // GitHub Actions: strategy.job-index and job-total passed through.
        let gha = env(&[("MEMEVAL_SHARD_INDEX", "3"), ("MEMEVAL_SHARD_COUNT", "4")]);
        assert_eq!(shard_from_env(gha), Ok((4, 4)));
        let cloud_run = env(&[
            ("CLOUD_RUN_TASK_INDEX", "9"),
            ("CLOUD_RUN_TASK_COUNT", "10"),
        ]);
        assert_eq!(shard_from_env(cloud_run), Ok((10, 10)));
        // memeval's own variables win over an engine's.
        let both = env(&[
            ("MEMEVAL_SHARD_INDEX", "1"),
            ("JOB_COMPLETION_INDEX", "0"),
            ("MEMEVAL_SHARD_COUNT", "2"),
        ]);
        assert_eq!(shard_from_env(both), Ok((2, 2)));
    }

    #[test]
    fn a_missing_or_bad_shard_is_named() {
        let e = shard_from_env(env(&[])).unwrap_err();
        assert!(
            e.contains("JOB_COMPLETION_INDEX") && e.contains("MEMEVAL_SHARD_COUNT"),
            "{e}"
        );
        let e = shard_from_env(env(&[("JOB_COMPLETION_INDEX", "2")])).unwrap_err();
        assert!(
            e.contains("JOB_COMPLETION_INDEX=2") && e.contains("MEMEVAL_SHARD_COUNT"),
            "{e}"
        );
        let e = shard_from_env(env(&[
            ("JOB_COMPLETION_INDEX", "4"),
            ("MEMEVAL_SHARD_COUNT", "4"),
        ]))
        .unwrap_err();
        assert!(e.contains("0 to 3"), "{e}");
        let e = shard_from_env(env(&[
            ("MEMEVAL_SHARD_INDEX", "x"),
            ("MEMEVAL_SHARD_COUNT", "4"),
        ]))
        .unwrap_err();
        assert!(e.contains("\"x\""), "{e}");
        let e = shard_from_env(env(&[
            ("MEMEVAL_SHARD_INDEX", "0"),
            ("MEMEVAL_SHARD_COUNT", "0"),
        ]))
        .unwrap_err();
        assert!(e.contains("MEMEVAL_SHARD_COUNT=\"0\""), "{e}");
        let e = shard_from_env(env(&[("MEMEVAL_SHARD", "5/4")])).unwrap_err();
        assert!(e.starts_with("MEMEVAL_SHARD="), "{e}");
    }
}
