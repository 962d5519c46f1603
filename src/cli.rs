//! The command line: the arguments of every subcommand, dispatch to its
//! module under [`crate::commands`], and the exit codes. Exit codes: 0
//! success, 1 a gate or regression failure, 2 bad input or usage (nothing
//! written), 3 a run that failed for another reason (storage, I/O), 4 a run
//! completed with failed API calls, 130 stopped by Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands::{
    Failure, baseline, budget, gate, generate, import, inspect, judge_check, merge, report, run,
    sweep, validate,
};

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
    Run(run::RunArgs),
    /// Check scenario files and report every error of every file
    Validate {
        /// Scenario files or folders of *.json files
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Write a long synthetic scenario
    Generate(generate::GenerateArgs),
    /// Compare a run with a baseline under thresholds; exit 1 on a regression
    Gate(gate::GateArgs),
    /// Write a baseline file from a finished run, for `gate --baseline`
    Baseline {
        /// A run's output folder (or its results.json)
        run: PathBuf,
        /// Baseline file to write (- for standard output)
        #[arg(long, short, default_value = "memeval-baseline.json")]
        out: PathBuf,
    },
    /// Run a grid of parameter values and find the recall/cost frontier
    Sweep(sweep::SweepArgs),
    /// Turn a public benchmark (LoCoMo, LongMemEval) into scenario files
    Import(import::ImportArgs),
    /// Show where the tokens of one call go: system, summary, retrieved, buffer
    Budget(budget::BudgetArgs),
    /// Show the context of any call of a finished run, rebuilt from its memory.sqlite
    Inspect(inspect::InspectArgs),
    /// Measure the configured judge: false accepts and false rejects on a labelled set
    JudgeCheck(judge_check::JudgeCheckArgs),
    /// Combine the output folders of `run --shard` into one run
    Merge {
        /// The shards' output folders, or folders of them (one per shard, as a
        /// CI workflow's artifacts download)
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

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::cmd_run(&args),
        Command::Validate { files } => validate::cmd_validate(&files),
        Command::Generate(args) => generate::cmd_generate(&args),
        Command::Gate(args) => gate::cmd_gate(&args),
        Command::Baseline { run, out } => baseline::cmd_baseline(&run, &out),
        Command::Sweep(args) => sweep::cmd_sweep(&args),
        Command::Report { run } => report::cmd_report(&run),
        Command::Merge { runs, out, force } => merge::cmd_merge(&runs, &out, force),
        Command::Budget(args) => budget::cmd_budget(&args),
        Command::Inspect(args) => inspect::cmd_inspect(&args),
        Command::JudgeCheck(args) => judge_check::cmd_judge_check(&args),
        Command::Import(args) => import::cmd_import(&args),
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
