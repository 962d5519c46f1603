//! The command line: argument parsing and the commands' top-level flow.
//! Exit codes: 0 success, 2 bad input or usage (nothing written), 3 a run
//! that failed for another reason (storage, I/O). 1 is reserved for gate
//! and regression failures.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::backend::offline;
use crate::config::{self, Config};
use crate::memory::Params;
use crate::report::{self, Metadata, ScenarioMeta};
use crate::runner::{self, Runtime};
use crate::scenario::{self, generate};

#[derive(Parser, Debug)]
#[command(
    name = "memeval",
    version,
    about = "Evaluate conversational memory strategies for LLM chatbots",
    long_about = "Replays scripted conversations through memory strategies (buffer, window, \
summary, vector, hybrid), records what each puts in front of the model and what it costs \
in tokens, and measures whether the facts a user stated are still recalled when needed.\n\n\
Exit codes: 0 success; 1 a gate or regression failure; 2 bad input or usage (nothing is \
written); 3 a run that failed for another reason (storage, I/O)."
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
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Scenario files, or folders of *.json files
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Output folder [default: reports/<timestamp>, with reports/latest pointing at it]
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace --out if it already holds files
    #[arg(long)]
    pub force: bool,
    /// Configuration file [default: ./memeval.toml when present]
    #[arg(long, env = "MEMEVAL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Override a configuration value, e.g. --set summary.trigger_tokens=2000 (repeatable)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Seed of every random choice [config: seed; default: 42]
    #[arg(long, env = "MEMEVAL_SEED")]
    pub seed: Option<u64>,
    /// Chat model whose tokenizer and context window apply [config: model.name; default: gpt-4o]
    #[arg(long, env = "MEMEVAL_MODEL")]
    pub model: Option<String>,
    /// Strategies to run, comma-separated [config: strategies; default: all five]
    #[arg(long, value_delimiter = ',', env = "MEMEVAL_STRATEGIES")]
    pub strategies: Option<Vec<String>>,
    /// Worker threads [default: the number of cores]
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Write 0 in every timing column, so that two runs are byte-identical
    #[arg(long)]
    pub no_timings: bool,
    /// Print nothing but errors
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Number of messages (user and assistant, alternating)
    #[arg(long, default_value_t = 1000)]
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
    /// Output file [default: standard output]
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

/// A failure, with the exit code it maps to.
#[derive(Debug)]
pub enum Failure {
    /// Bad input or usage: exit 2.
    Input(String),
    /// Anything else: exit 3.
    Run(anyhow::Error),
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Input(msg)) => {
            eprintln!("{msg}");
            ExitCode::from(2)
        }
        Err(Failure::Run(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(3)
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
        println!(
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
    let opts = generate::GenerateOptions {
        name: args
            .name
            .clone()
            .unwrap_or_else(|| format!("generated-{}", args.messages)),
        messages: args.messages,
        facts: args.facts,
        sessions: args.sessions,
        every: args.every,
        seed: args.seed,
    };
    let value = generate::generate(&opts).map_err(|e| Failure::Input(format!("error: {e}")))?;
    let mut text = serde_json::to_string_pretty(&value).map_err(anyhow::Error::from)?;
    text.push('\n');
    match &args.out {
        None => std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(anyhow::Error::from)?,
        Some(path) => write_atomically(path, text.as_bytes())?,
    }
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let tmp = path.with_extension("json.partial");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| Failure::Run(anyhow::anyhow!("{}: {e}", path.display())))
}

/// Resolves the configuration: file, then --set, then flags.
pub fn resolve_config(args: &RunArgs) -> Result<Config, Failure> {
    let default_file = PathBuf::from("memeval.toml");
    let file = args
        .config
        .clone()
        .or_else(|| default_file.is_file().then_some(default_file));
    let mut overrides = args.set.clone();
    if let Some(seed) = args.seed {
        overrides.push(format!("seed={seed}"));
    }
    if let Some(model) = &args.model {
        overrides.push(format!("model.name={}", toml::Value::String(model.clone())));
    }
    if let Some(list) = &args.strategies {
        let quoted: Vec<String> = list
            .iter()
            .map(|s| toml::Value::String(s.trim().to_string()).to_string())
            .collect();
        overrides.push(format!("strategies=[{}]", quoted.join(",")));
    }
    config::load(file.as_deref(), &overrides).map_err(|e| Failure::Input(format!("error: {e}")))
}

/// Where the outputs go, and whether `reports/latest` should point there.
fn output_dir(args: &RunArgs) -> Result<(PathBuf, bool), Failure> {
    match &args.out {
        Some(dir) => {
            let busy =
                dir.is_file() || std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some());
            if busy && !args.force {
                return Err(Failure::Input(format!(
                    "error: {} already exists and is not empty; pass --force to replace it",
                    dir.display()
                )));
            }
            Ok((dir.clone(), false))
        }
        None => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let stamp = crate::clock::folder_stamp(now);
            let mut dir = PathBuf::from("reports").join(&stamp);
            let mut n = 2;
            while dir.exists() {
                dir = PathBuf::from("reports").join(format!("{stamp}-{n}"));
                n += 1;
            }
            Ok((dir, true))
        }
    }
}

fn cmd_run(args: &RunArgs) -> Result<(), Failure> {
    // Everything is validated before anything runs or is written.
    let config = resolve_config(args)?;
    let scenarios = load_scenarios(&args.files)?;
    let (out, update_latest) = output_dir(args)?;
    let tok = config.tokenizer().map_err(|e| Failure::Input(e.0))?;
    let context_window = config.context_window().map_err(|e| Failure::Input(e.0))?;
    let backend = offline::backend(config.offline.embedding_dim as usize);

    // Work in a staging folder beside the target; it replaces the target
    // only when complete, so an interrupted run leaves no half-written outputs.
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", parent.display()))?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(anyhow::Error::from)?;
    }
    std::fs::create_dir_all(&staging)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", staging.display()))?;
    let result = run_into(
        args,
        &config,
        &scenarios,
        &staging,
        tok,
        context_window,
        &backend,
    );
    let (per_job, totals) = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    if out.exists() {
        if out.is_dir() {
            std::fs::remove_dir_all(&out)
        } else {
            std::fs::remove_file(&out)
        }
        .map_err(|e| anyhow::anyhow!("cannot replace {}: {e}", out.display()))?;
    }
    std::fs::rename(&staging, &out)
        .map_err(|e| anyhow::anyhow!("cannot move outputs to {}: {e}", out.display()))?;
    if update_latest {
        point_latest(&out);
    }
    if !args.quiet {
        let mut stdout = std::io::stdout().lock();
        report::print_table(&mut stdout, &per_job, &totals).map_err(anyhow::Error::from)?;
        writeln!(stdout, "\noutputs: {}", out.display()).map_err(anyhow::Error::from)?;
    }
    Ok(())
}

type Aggregates = (Vec<report::Aggregate>, Vec<report::Aggregate>);

fn run_into(
    args: &RunArgs,
    config: &Config,
    scenarios: &[scenario::Scenario],
    dir: &Path,
    tok: crate::tokens::Tokenizer,
    context_window: u32,
    backend: &crate::backend::Backend,
) -> Result<Aggregates, Failure> {
    let rt = Runtime {
        config,
        backend,
        tok,
        context_window,
        store: &dir.join("memory.sqlite"),
        jobs: args.jobs.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        }),
        timings: !args.no_timings,
        progress: !args.quiet,
    };
    let jobs = runner::run(scenarios, &rt).map_err(anyhow::Error::from)?;
    let (per_job, totals) = report::aggregates(&jobs, &config.strategies);
    let params = Params::from_config(config, backend);
    let mut resolved = std::collections::BTreeMap::new();
    resolved.insert("vector.min_score", serde_json::json!(params.min_score));
    let mut sorted: Vec<&scenario::Scenario> = scenarios.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let meta = Metadata {
        memeval_version: env!("CARGO_PKG_VERSION"),
        format_version: report::OUTPUT_FORMAT,
        seed: config.seed,
        backend: backend.name.clone(),
        chat_model: config.model.name.clone(),
        encoding: tok.name(),
        context_window,
        models: backend.models.iter().cloned().collect(),
        strategies: config.strategies.clone(),
        config: serde_json::to_value(config).map_err(anyhow::Error::from)?,
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
        timings: rt.timings,
    };
    report::write_outputs(dir, &jobs, &meta, &per_job, &totals)
        .map_err(|e| anyhow::anyhow!("writing outputs: {e}"))?;
    Ok((per_job, totals))
}

/// Points `reports/latest` at the run just written (a symlink where the
/// platform has them, else a text file holding the folder name).
fn point_latest(out: &Path) {
    let Some(parent) = out.parent() else { return };
    let Some(name) = out.file_name() else { return };
    let latest = parent.join("latest");
    let _ = std::fs::remove_file(&latest);
    #[cfg(unix)]
    let ok = std::os::unix::fs::symlink(name, &latest).is_ok();
    #[cfg(not(unix))]
    let ok = false;
    if !ok {
        let _ = std::fs::write(&latest, name.to_string_lossy().as_bytes());
    }
}
