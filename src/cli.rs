//! The command line: argument parsing and the commands' top-level flow.
//! Exit codes: 0 success, 1 a gate or regression failure, 2 bad input or
//! usage (nothing written), 3 a run that failed for another reason
//! (storage, I/O), 4 a run completed with failed API calls, 130 stopped by
//! Ctrl-C.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::backend;
use crate::config::{self, Config};
use crate::files;
use crate::gate;
use crate::memory::Params;
use crate::outdir::{self, OutError};
use crate::report::{self};
use crate::results::JobKey;
use crate::results::{Metadata, ScenarioMeta};
use crate::runner::{self, Runtime};
use crate::scenario::{self, generate};
use crate::store::Journal;
use std::collections::BTreeMap;

#[derive(Parser, Debug)]
#[command(
    name = "memeval",
    version,
    about = "Evaluate conversational memory strategies for LLM chatbots",
    long_about = "Replays scripted conversations through memory strategies (buffer, window, \
summary, vector, hybrid), records what each puts in front of the model and what it costs \
in tokens, and measures whether the facts a user stated are still recalled when needed.\n\n\
Exit codes: 0 success; 1 a gate or regression failure; 2 bad input or usage (nothing is \
written); 3 a run that failed for another reason (storage, I/O); 4 a run that completed with \
API calls that failed after their retries (outputs written, see calls.csv); 130 stopped by \
Ctrl-C (continue with `memeval run --resume DIR`)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Replay scenarios through memory strategies and write the outputs
    Run(RunArgs),
    /// Check scenario files and report every error of every file
    Validate {
        /// Scenario files or folders of *.json files
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Write a long synthetic scenario
    Generate(GenerateArgs),
    /// Compare a run with a baseline under thresholds; exit 1 on a regression
    Gate(GateArgs),
    /// Write a baseline file from a finished run, for `gate --baseline`
    Baseline {
        /// A run's output folder (or its results.json)
        run: PathBuf,
        /// Baseline file to write (- for standard output)
        #[arg(long, short, default_value = "memeval-baseline.json")]
        out: PathBuf,
    },
    /// Run a grid of parameter values and find the recall/cost frontier
    Sweep(SweepArgs),
    /// Turn a public benchmark (LoCoMo, LongMemEval) into scenario files
    Import(crate::import::ImportArgs),
    /// Show where the tokens of one call go: system, summary, retrieved, buffer
    Budget(crate::budget::BudgetArgs),
    /// Combine the output folders of `run --shard` into one run
    Merge {
        /// The shards' output folders
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Output folder of the merged run
        #[arg(long)]
        out: PathBuf,
        /// Replace --out if it already holds files
        #[arg(long)]
        force: bool,
    },
    /// Write the charts and report.html of a finished run again, from its files
    Report {
        /// A run's output folder
        run: PathBuf,
    },
}

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

#[derive(Args, Debug)]
pub struct SweepArgs {
    /// Scenario files, or folders of *.json files
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The strategy to tune
    #[arg(long)]
    pub strategy: String,
    /// A parameter and its values, e.g. --param summary.trigger_tokens=1000,2000,4000 (repeatable; the grid is every combination)
    #[arg(long = "param", value_name = "KEY=V1,V2,...", required = true)]
    pub params: Vec<String>,
    /// Recommend the best recall within this many total tokens [default: the knee of the frontier]
    #[arg(long)]
    pub max_tokens: Option<u64>,
    /// Output folder [default: reports/sweep-<timestamp>]
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace --out if it already holds files
    #[arg(long)]
    pub force: bool,
    /// Worker threads, 1 to 1024 [default: the number of cores]
    #[arg(long, value_parser = parse_jobs)]
    pub jobs: Option<usize>,
    /// Print nothing but errors and the recommendation
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub cfg: ConfigArgs,
}

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
    #[arg(long, value_name = "DIR", conflicts_with_all = ["files", "out", "set", "repeat", "shard", "no_timings"])]
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

/// A number of worker threads: 1 to 1024.
fn parse_jobs(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n @ 1..=1024) => Ok(n),
        _ => Err(format!(
            "{s:?}: expected a number of threads from 1 to 1024"
        )),
    }
}

/// `K/N` with 1 <= K <= N.
fn parse_shard(s: &str) -> Result<(u32, u32), String> {
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

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Number of messages (user and assistant, alternating), 20 to 300,000
    /// (a scenario file holds at most 64 MiB)
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(20..=300_000))]
    pub messages: u32,
    /// Number of facts to plant (at most 12)
    #[arg(long, default_value_t = 8)]
    pub facts: u32,
    /// Number of sessions (sittings days apart)
    #[arg(long, default_value_t = 3)]
    pub sessions: u32,
    /// Ask each fact's recurring probe every N messages
    #[arg(long, default_value_t = 50)]
    pub every: u32,
    /// Seed of every random choice
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Scenario name [default: generated-<messages>]
    #[arg(long)]
    pub name: Option<String>,
    /// A population: this many users, each a scenario `<name>-user-NNNN` with
    /// seed `seed + N`, written as files into the folder --out
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub users: u32,
    /// Output file, or - for standard output (a folder with --users) [default: standard output]
    #[arg(long, short)]
    pub out: Option<PathBuf>,
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

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Run(e)
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => cmd_run(&args),
        Command::Validate { files } => cmd_validate(&files),
        Command::Generate(args) => cmd_generate(&args),
        Command::Gate(args) => cmd_gate(&args),
        Command::Baseline { run, out } => cmd_baseline(&run, &out),
        Command::Sweep(args) => crate::sweep::cmd_sweep(&args),
        Command::Report { run } => cmd_report(&run),
        Command::Merge { runs, out, force } => crate::merge::cmd_merge(&runs, &out, force),
        Command::Budget(args) => crate::budget::cmd_budget(&args),
        Command::Import(args) => crate::import::cmd_import(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Regression(msg)) => {
            crate::errln!("{msg}");
            ExitCode::from(1)
        }
        Err(Failure::Input(msg)) => {
            crate::errln!("{msg}");
            ExitCode::from(2)
        }
        Err(Failure::Run(e)) => {
            crate::errln!("error: {e:#}");
            ExitCode::from(3)
        }
        Err(Failure::Incomplete(msg)) => {
            crate::errln!("{msg}");
            ExitCode::from(4)
        }
        Err(Failure::Interrupted(msg)) => {
            crate::errln!("{msg}");
            ExitCode::from(130)
        }
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

fn load_scenarios(inputs: &[PathBuf]) -> Result<Vec<scenario::Scenario>, Failure> {
    let files = expand_inputs(inputs)?;
    scenario::load_all(&files).map_err(|e| {
        Failure::Input(format!(
            "{e}\n{} error(s); nothing was run. The format is described in docs/SCENARIO_FORMAT.md.",
            e.0.len()
        ))
    })
}

fn cmd_validate(files: &[PathBuf]) -> Result<(), Failure> {
    let scenarios = load_scenarios(files)?;
    for s in &scenarios {
        crate::outln!(
            "ok: {} ({}: {} messages in {} session(s), {} facts, {} probe asks)",
            s.file.display(),
            s.name,
            s.messages.len(),
            s.sessions.len(),
            s.facts.len(),
            s.probe_asks()
        );
    }
    Ok(())
}

fn cmd_generate(args: &GenerateArgs) -> Result<(), Failure> {
    let input = |m: String| Failure::Input(format!("error: {m}"));
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("generated-{}", args.messages));
    // The names it writes pass the rule every scenario's name must pass.
    let user = |i: u32| format!("{name}-user-{i:04}");
    let last = if args.users > 1 {
        user(args.users)
    } else {
        name.clone()
    };
    scenario::check_name(&last)
        .and_then(|()| scenario::check_name(&name))
        .map_err(|e| input(format!("--name: {e}")))?;
    let one = |name: String, seed: u64| -> Result<Vec<u8>, Failure> {
        let opts = generate::GenerateOptions {
            name,
            messages: args.messages,
            facts: args.facts,
            sessions: args.sessions,
            every: args.every,
            seed,
        };
        let value = generate::generate(&opts).map_err(|e| input(e.to_string()))?;
        let mut text = serde_json::to_string_pretty(&value).map_err(anyhow::Error::from)?;
        text.push('\n');
        if text.len() as u64 > scenario::MAX_FILE_BYTES {
            return Err(input(format!(
                "--messages {}: the scenario would be {} MiB, past the {} MiB that scenario files may hold; generate fewer messages",
                args.messages,
                text.len() >> 20,
                scenario::MAX_FILE_BYTES >> 20
            )));
        }
        Ok(text.into_bytes())
    };
    if args.users > 1 {
        let Some(dir) = &args.out else {
            return Err(input(
                "--users writes one file per user: name a folder with --out".into(),
            ));
        };
        let claim = outdir::claim(dir, false, &[])?;
        return claim.publish_staged(|staging| {
            for i in 1..=args.users {
                let bytes = one(user(i), args.seed.wrapping_add(u64::from(i)))?;
                let path = staging.join(format!("{}.json", user(i)));
                std::fs::write(&path, bytes)
                    .map_err(|e| Failure::Run(anyhow::anyhow!("{}: {e}", path.display())))?;
            }
            Ok(())
        });
    }
    let target = files::Target::parse(args.out.as_deref().unwrap_or(Path::new("-")));
    target.check().map_err(|e| input(e.to_string()))?;
    let bytes = one(name, args.seed)?;
    target
        .write(&bytes)
        .map_err(|e| Failure::Run(anyhow::anyhow!(e)))
}

/// Resolves the configuration: the file, then --set, then `flags` (which
/// win), all as `key=value` overrides.
pub fn resolve_config(cfg: &ConfigArgs, flags: Vec<String>) -> Result<Config, Failure> {
    let file = config_file(cfg);
    let mut overrides = cfg.set.clone();
    overrides.extend(flags);
    config::load(file.as_deref(), &overrides).map_err(|e| Failure::Input(format!("error: {e}")))
}

/// The run flags as configuration overrides.
fn run_flags(args: &RunArgs) -> Vec<String> {
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

/// What a run is, as its journal records it: everything that decides its
/// outputs, so that `--resume` continues exactly the same run.
#[derive(serde::Serialize, serde::Deserialize)]
struct RunSpec {
    /// The working folder the run started in, and the scenario files as
    /// named there.
    cwd: PathBuf,
    files: Vec<PathBuf>,
    /// SHA-256 of each scenario, by name: a file edited since cannot resume.
    sha256: BTreeMap<String, String>,
    config: Config,
    shard: Option<(u32, u32)>,
    repeat: u32,
    timings: bool,
    /// Written to the default folder, so `reports/latest` points at it.
    #[serde(default)]
    latest: bool,
}

/// The journal of a run in progress, inside its staging folder.
const JOURNAL: &str = "journal.sqlite";

/// The scenarios of a run, loaded from its files and sharded.
fn run_scenarios(
    files: &[PathBuf],
    shard: Option<(u32, u32)>,
) -> Result<Vec<scenario::Scenario>, Failure> {
    let mut scenarios = load_scenarios(files)?;
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

/// Reads back the run that `out` was interrupted in.
fn resumed_run(out: &Path) -> Result<(RunSpec, Vec<scenario::Scenario>, Journal), Failure> {
    let staging = outdir::staging_of(out);
    let path = staging.join(JOURNAL);
    if !path.is_file() {
        return Err(Failure::Input(format!(
            "error: --resume {}: no interrupted run to continue (no {})",
            out.display(),
            path.display()
        )));
    }
    let journal = Journal::open(&path).map_err(anyhow::Error::from)?;
    let spec: RunSpec = journal
        .spec()
        .map_err(anyhow::Error::from)?
        .and_then(|t| serde_json::from_str(&t).ok())
        .ok_or_else(|| {
            Failure::Input(format!(
                "error: {}: the run's record is unreadable; start it again with --force",
                path.display()
            ))
        })?;
    // Checked again: a journal written by an older memeval may hold a value
    // that this one's rules refuse.
    spec.config.validate().map_err(|e| {
        Failure::Input(format!(
            "error: {}: the run's configuration: {e}; start it again with --force",
            path.display()
        ))
    })?;
    let absolute: Vec<PathBuf> = spec.files.iter().map(|f| spec.cwd.join(f)).collect();
    let mut scenarios = run_scenarios(&absolute, spec.shard)?;
    for s in &mut scenarios {
        // Named as when the run started, so that its outputs say the same.
        if let Some(f) = spec.files.iter().find(|f| spec.cwd.join(f) == s.file) {
            s.file = f.clone();
        }
        if spec.sha256.get(&s.name) != Some(&s.sha256) {
            return Err(Failure::Input(format!(
                "error: {}: scenario {:?} changed since the run started (SHA-256 differs): \
                 resuming would mix two versions; run it again with --force",
                s.file.display(),
                s.name
            )));
        }
    }
    if scenarios.len() != spec.sha256.len() {
        return Err(Failure::Input(
            "error: the run's scenario files no longer hold the same scenarios; run it again with --force"
                .into(),
        ));
    }
    Ok((spec, scenarios, journal))
}

/// The journal of a new run, in its staging folder. The folder appears
/// with the run's record already in it (made under another name, then
/// renamed), so that a run killed at any moment leaves either nothing or a
/// run that `--resume` can continue.
fn new_journal(staging: &Path, spec: &RunSpec) -> Result<Journal, Failure> {
    let mut fresh = staging.as_os_str().to_owned();
    fresh.push(".new");
    let fresh = PathBuf::from(fresh);
    let made = (|| -> anyhow::Result<()> {
        if fresh.exists() {
            std::fs::remove_dir_all(&fresh)?;
        }
        std::fs::create_dir_all(&fresh)?;
        // Closed before the rename: SQLite reopens its log by path.
        Journal::open(&fresh.join(JOURNAL))?.set_spec(&serde_json::to_string(spec)?)?;
        std::fs::rename(&fresh, staging)?;
        Ok(())
    })();
    made.map_err(|e| anyhow::anyhow!("cannot create {}: {e}", staging.display()))?;
    Ok(Journal::open(&staging.join(JOURNAL)).map_err(anyhow::Error::from)?)
}

/// Stops the run at the next step on the first Ctrl-C (a second one kills
/// it at once).
fn stop_on_ctrl_c() {
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

fn cmd_run(args: &RunArgs) -> Result<(), Failure> {
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
    // The model side, before the output folder is touched: a key, a prompt
    // or a cache that cannot be had refuses the run with nothing written.
    let engine = |config: &Config| -> Result<_, Failure> {
        let tok = config.tokenizer().map_err(|e| Failure::Input(e.0))?;
        let context_window = config.context_window().map_err(|e| Failure::Input(e.0))?;
        let backend =
            backend::from_config(config, tok).map_err(|e| Failure::Input(format!("error: {e}")))?;
        Ok((tok, context_window, backend))
    };
    let (spec, scenarios, claim, journal, discard, engine) = match &args.resume {
        Some(dir) => {
            let claim = outdir::claim_existing(dir)?;
            if finished_unpublished(dir) {
                // Killed while its outputs were being moved into place.
                outdir::publish(&outdir::staging_of(dir), dir)?;
                return finish(args, dir, None, baseline.as_ref());
            }
            let (spec, scenarios, journal) = resumed_run(dir)?;
            let engine = engine(&spec.config)?;
            (spec, scenarios, claim, Some(journal), false, engine)
        }
        None => {
            let config = resolve_config(&args.cfg, run_flags(args))?;
            let files = expand_inputs(&args.files)?;
            let scenarios = run_scenarios(&files, args.shard)?;
            let engine = engine(&config)?;
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
                shard: args.shard,
                repeat: args.repeat,
                timings: !args.no_timings,
                latest,
            };
            (spec, scenarios, claim, None, staging.exists(), engine)
        }
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
        &scenarios,
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
    // Complete: the journal goes, and the outputs move into place. The
    // journal's own file goes last: a staging folder without it holds a
    // finished run, which `--resume` publishes as it is (so `latest`
    // points at it before that).
    drop(journal);
    if spec.latest {
        outdir::point_latest(&out);
    }
    for suffix in ["-wal", "-shm", ""] {
        let _ = std::fs::remove_file(staging.join(format!("{JOURNAL}{suffix}")));
    }
    outdir::publish(&staging, &out)?;
    drop(claim);
    finish(args, &out, Some(&config.gate), baseline.as_ref())
}

/// The configuration file a command reads, if any: `--config`, else
/// `./memeval.toml` where it exists.
fn config_file(cfg: &ConfigArgs) -> Option<PathBuf> {
    let default_file = PathBuf::from("memeval.toml");
    cfg.config
        .clone()
        .or_else(|| default_file.is_file().then_some(default_file))
}

/// Whether `out`'s staging folder holds a run that finished but was not
/// moved into place: its journal is gone, and the outputs are complete.
/// (A new run's staging folder appears with its journal in it.)
fn finished_unpublished(out: &Path) -> bool {
    let staging = outdir::staging_of(out);
    staging.is_dir() && !staging.join(JOURNAL).exists()
}

/// What follows a run's publication: the results table, the baseline, the
/// gate, and the exit status of failed API calls; all read from the
/// published results. `thresholds`, where not given, are the run's own, as
/// its results record them.
fn finish(
    args: &RunArgs,
    out: &Path,
    thresholds: Option<&config::GateConfig>,
    baseline: Option<&crate::results::RunResults>,
) -> Result<(), Failure> {
    let results = crate::results::load_results(out).map_err(|e| anyhow::anyhow!(e))?;
    if !args.quiet {
        let mut table = Vec::new();
        report::print_table(&mut table, &results.results, &results.totals)
            .map_err(anyhow::Error::from)?;
        writeln!(table, "\noutputs: {}", out.display()).map_err(anyhow::Error::from)?;
        crate::term::out(&String::from_utf8_lossy(&table));
    }
    if let Some(path) = &args.save_baseline {
        write_baseline(&results, &files::Target::File(path.clone()))?;
    }
    if let Some(b) = baseline {
        let recorded;
        let thresholds = match thresholds {
            Some(t) => t,
            None => {
                recorded = serde_json::from_value(results.meta["config"]["gate"].clone()).map_err(
                    |e| anyhow::anyhow!("{}: the run's gate settings: {e}", out.display()),
                )?;
                &recorded
            }
        };
        run_gate(
            b,
            &results,
            thresholds,
            args.junit.as_deref(),
            args.allow_mismatch,
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

/// Shard `k` of `n`: the scenarios sorted by name, every `n`th from the `k`th.
pub fn shard_of(mut scenarios: Vec<scenario::Scenario>, k: u32, n: u32) -> Vec<scenario::Scenario> {
    scenarios.sort_by(|a, b| a.name.cmp(&b.name));
    scenarios
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i as u32 % n == k - 1)
        .map(|(_, s)| s)
        .collect()
}

fn write_baseline(
    results: &crate::results::RunResults,
    target: &files::Target,
) -> Result<(), Failure> {
    let mut bytes = serde_json::to_vec_pretty(&crate::results::baseline_of(results))
        .map_err(anyhow::Error::from)?;
    bytes.push(b'\n');
    target
        .write(&bytes)
        .map_err(|e| Failure::Run(anyhow::anyhow!(e)))?;
    if let files::Target::File(path) = target {
        crate::errln!("baseline: {}", path.display());
    }
    Ok(())
}

/// Results that the gate (or a baseline) may rest on, read from a run
/// folder, a results.json or a baseline file: complete (not an interrupted
/// run's), of a known format, with at least one result.
fn load_gate_input(path: &Path, role: &str) -> Result<crate::results::RunResults, Failure> {
    let results =
        crate::results::load_results(path).map_err(|e| Failure::Input(format!("error: {e}")))?;
    crate::results::check_usable(&results)
        .map_err(|e| Failure::Input(format!("error: {} ({role}): {e}", path.display())))?;
    Ok(results)
}

/// Charts and report.html from the files of the run in `dir`.
pub fn write_report(dir: &Path) -> Result<PathBuf, String> {
    report::html::write_report(&crate::results::read::RunData::load(dir)?)
}

fn cmd_report(dir: &Path) -> Result<(), Failure> {
    if !dir.join("results.json").is_file() {
        return Err(Failure::Input(format!(
            "error: {}: not a memeval run folder (no results.json)",
            dir.display()
        )));
    }
    let path = write_report(dir).map_err(|e| Failure::Input(format!("error: {e}")))?;
    crate::outln!("report: {}", path.display());
    Ok(())
}

fn cmd_baseline(run: &Path, out: &Path) -> Result<(), Failure> {
    let target = files::Target::parse(out);
    target
        .check()
        .map_err(|e| Failure::Input(format!("error: {e}")))?;
    let results = load_gate_input(run, "the run")?;
    write_baseline(&results, &target)
}

fn cmd_gate(args: &GateArgs) -> Result<(), Failure> {
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
fn run_gate(
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

#[allow(clippy::too_many_arguments)]
fn run_into(
    args: &RunArgs,
    spec: &RunSpec,
    scenarios: &[scenario::Scenario],
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
        jobs: args.jobs.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        }),
        timings: spec.timings,
        progress: !args.quiet,
        repeats: spec.repeat,
    };
    if backend.name != "offline" && args.jobs.is_none() {
        // One request per user message at a time: enough workers to keep
        // every allowed request in flight.
        rt.jobs = rt.jobs.max(config.openai.max_concurrency as usize);
    }
    let ahead = runner::prefetch_embeddings(scenarios, &rt);
    match runner::run_journaled(scenarios, &rt, journal) {
        Ok(()) => {}
        Err(runner::RunError::Interrupted) => {
            return Err(write_partial(spec, scenarios, dir, journal, &rt, &ahead));
        }
        Err(e) => return Err(anyhow::Error::from(e).into()),
    }
    let meta = run_metadata(spec, scenarios, backend, tok, context_window, false)?;
    let keys = runner::job_keys(scenarios, config, spec.repeat);
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
    write_report(dir).map_err(|e| anyhow::anyhow!("writing the report: {e}"))?;
    Ok(())
}

/// The outputs of the replays `keys` (in output order), read from the
/// journal one at a time.
fn write_from_journal(
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
fn run_metadata(
    spec: &RunSpec,
    scenarios: &[scenario::Scenario],
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
    let mut sorted: Vec<&scenario::Scenario> = scenarios.iter().collect();
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
        strategies: config.strategies.clone(),
        config: {
            let mut v = serde_json::to_value(config).map_err(anyhow::Error::from)?;
            // The settings of a backend not in use are noise in the record.
            if config.backend != "openai"
                && let Some(m) = v.as_object_mut()
            {
                m.remove("openai");
            }
            v
        },
        resolved,
        scenarios: sorted
            .iter()
            .map(|s| ScenarioMeta {
                name: s.name.clone(),
                user: s.user.clone(),
                file: s.file.display().to_string(),
                sha256: s.sha256.clone(),
                messages: s.messages.len(),
                probes: s.probe_asks(),
            })
            .collect(),
        timings: spec.timings,
        repeats: spec.repeat,
        shard: spec.shard.map(|(k, n)| format!("{k}/{n}")),
        partial,
    };
    Ok(meta)
}

/// After a Ctrl-C: the replays finished so far, as outputs marked partial
/// in the staging folder, beside the journal that `--resume` continues.
fn write_partial(
    spec: &RunSpec,
    scenarios: &[scenario::Scenario],
    dir: &Path,
    journal: &Journal,
    rt: &Runtime<'_>,
    ahead: &[crate::results::CallRow],
) -> Failure {
    let strategies = &spec.config.strategies;
    let written = (|| -> Result<(usize, usize), Failure> {
        let done = journal.done().map_err(anyhow::Error::from)?;
        let keys: Vec<JobKey> = runner::job_keys(scenarios, &spec.config, spec.repeat)
            .into_iter()
            .filter(|k| done.contains(k))
            .collect();
        let meta = run_metadata(spec, scenarios, rt.backend, rt.tok, rt.context_window, true)?;
        write_from_journal(dir, journal, &keys, ahead, &meta)?;
        write_report(dir).map_err(|e| anyhow::anyhow!("writing the report: {e}"))?;
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
