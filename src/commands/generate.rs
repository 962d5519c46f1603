//! `memeval generate`: a long synthetic scenario, or a population of them.

use std::path::{Path, PathBuf};

use clap::Args;

use super::Failure;
use crate::files;
use crate::outdir;
use crate::scenario::{self, generate};

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
    /// Let about a third of the exchanges call tools (scenario format 1.1):
    /// order lookups, flight searches, two forecasts in one reply; one
    /// lookup's result plants a fact that a recurring probe asks about
    #[arg(long)]
    pub tools: bool,
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

pub fn cmd_generate(args: &GenerateArgs) -> Result<(), Failure> {
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
            tools: args.tools,
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
