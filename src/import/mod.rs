//! `memeval import`: public long-term memory benchmarks as scenario files,
//! so that their conversations run through any strategy with per-turn cost
//! and recall. Each importer builds scenarios as JSON, every one is checked
//! by the scenario loader, and only then is anything written.

pub mod locomo;
pub mod longmemeval;

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use crate::cli::{Failure, expand_inputs};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Dataset {
    /// LoCoMo (Maharana et al., ACL 2024): one scenario per conversation
    Locomo,
    /// LongMemEval (Wu et al., ICLR 2025): one scenario per question
    Longmemeval,
}

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

/// An import error: the file, then where in it, then what.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportError {
    pub file: PathBuf,
    pub place: String,
    pub message: String,
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "error: {}: {}: {}",
            self.file.display(),
            self.place,
            self.message
        )
    }
}

/// Builds one error; importers return the first they meet.
pub fn error(file: &Path, place: impl Into<String>, message: impl Into<String>) -> ImportError {
    ImportError {
        file: file.to_path_buf(),
        place: place.into(),
        message: message.into(),
    }
}

/// A scenario name from free text: `[A-Za-z0-9._-]`, at most 128 characters.
pub fn scenario_name(prefix: &str, id: &str) -> String {
    let clean: String = id
        .chars()
        .map(|c| {
            if c.is_ascii() && crate::scenario::is_name_byte(c as u8) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut name = format!("{prefix}-{clean}");
    name.truncate(128);
    name
}

/// A field that must be a string (numbers are written as text: LoCoMo has
/// numeric answers).
pub fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A probe as the scenario format writes it.
pub fn probe(
    id: &str,
    question: &str,
    expects: &[String],
    answer: Option<&str>,
    kind: &str,
) -> Value {
    let mut p = json!({ "id": id, "probe": question, "expects": expects, "kind": kind });
    if let Some(a) = answer {
        p["answer"] = json!(a);
    }
    p
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_valid() {
        assert_eq!(scenario_name("lme", "e47becba_abs"), "lme-e47becba_abs");
        assert_eq!(scenario_name("locomo", "conv 26/x"), "locomo-conv-26-x");
        assert_eq!(scenario_name("x", &"a".repeat(300)).len(), 128);
    }
}
