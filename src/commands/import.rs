//! `memeval import`: a public benchmark's files as scenario files, all
//! checked by the scenario loader before any is written.

use std::path::PathBuf;

use clap::Args;
use serde_json::Value;

use super::{Failure, expand_inputs};
use crate::import::{Dataset, locomo, longmemeval};

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Which benchmark the files come from
    #[arg(value_enum)]
    pub dataset: Dataset,
    /// The benchmark's JSON files, or folders of *.json files
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Folder to write the scenarios into (created; replaced with --force)
    #[arg(long)]
    pub out: PathBuf,
    /// Replace --out if it already holds files
    #[arg(long)]
    pub force: bool,
    /// LoCoMo: also ask each question right after the session that holds
    /// its last evidence, not only after the last session
    #[arg(long)]
    pub probe_after_evidence: bool,
}

/// The import command: reads every file, builds every scenario, checks each
/// one with the scenario loader, then writes them all (or nothing).
pub fn cmd_import(args: &ImportArgs) -> Result<(), Failure> {
    let files = expand_inputs(&args.files)?;
    let mut scenarios: Vec<(String, Value)> = Vec::new();
    for file in &files {
        let text = crate::files::read_text_capped(file, crate::files::cap::DATASET, "dataset file")
            .map_err(|e| Failure::Input(format!("error: {e}")))?;
        let root: Value = serde_json::from_str(&text).map_err(|e| {
            Failure::Input(format!(
                "error: {}:{}:{}: not JSON: {e}",
                file.display(),
                e.line(),
                e.column()
            ))
        })?;
        let built = match args.dataset {
            Dataset::Locomo => locomo::import(file, &root, args.probe_after_evidence),
            Dataset::Longmemeval => longmemeval::import(file, &root),
        }
        .map_err(|e| Failure::Input(e.to_string()))?;
        scenarios.extend(built);
    }
    let mut names: Vec<&str> = scenarios.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(Failure::Input(format!(
            "error: two imported scenarios are both named {:?}: import the files into different folders",
            w[0]
        )));
    }
    let claim = crate::outdir::claim(&args.out, args.force, &files)?;
    let count = scenarios.len();
    claim.publish_staged(|dir| {
        let mut written = Vec::new();
        for (name, value) in &scenarios {
            let path = dir.join(format!("{name}.json"));
            let mut text = serde_json::to_string_pretty(value).map_err(anyhow::Error::from)?;
            text.push('\n');
            std::fs::write(&path, text)
                .map_err(|e| Failure::Run(anyhow::anyhow!("{}: {e}", path.display())))?;
            written.push(path);
        }
        // The importer's own output must pass the format's every rule.
        crate::scenario::load_all(&written).map_err(|e| {
            Failure::Run(anyhow::anyhow!(
                "an imported scenario breaks the format (a memeval bug):\n{e}"
            ))
        })?;
        Ok::<_, Failure>(())
    })?;
    crate::outln!("imported {count} scenario(s) into {}", args.out.display());
    Ok(())
}
