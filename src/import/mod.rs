//! `memeval import`: public long-term memory benchmarks as scenario files,
//! so that their conversations run through any strategy with per-turn cost
//! and recall. Each importer builds scenarios as JSON, every one is checked
//! by the scenario loader, and only then is anything written.

pub mod locomo;
pub mod longmemeval;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::ValueEnum;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Dataset {
    /// LoCoMo (Maharana et al., ACL 2024): one scenario per conversation
    Locomo,
    /// LongMemEval (Wu et al., ICLR 2025): one scenario per question
    Longmemeval,
}

/// How to import: what to repair or refuse, and what to leave out.
#[derive(Debug, Default)]
pub struct Options {
    /// Refuse data with any defect instead of repairing it.
    pub strict: bool,
    /// LoCoMo: also ask each question right after its last evidence.
    pub after_evidence: bool,
    /// LoCoMo: the categories to keep (all when `None`).
    pub categories: Option<BTreeSet<u64>>,
    /// Question ids to leave out (`--exclude`): LoCoMo's
    /// `<sample_id>/q<N>`, LongMemEval's `question_id`.
    pub exclude: BTreeSet<String>,
}

/// What an import did besides converting: repairs and exclusions, for its
/// summary.
#[derive(Debug, Default)]
pub struct Tally {
    /// Each repair, with its file and place.
    pub repairs: Vec<String>,
    /// Ids of `--exclude` found in the data.
    pub excluded: BTreeSet<String>,
    /// Questions left out by `--categories`.
    pub filtered: usize,
}

/// The `source` of an imported scenario.
pub fn source(
    dataset: &str,
    file: &Path,
    id: &str,
    repairs: &[String],
    excluded: &[String],
) -> Value {
    let mut s = json!({ "dataset": dataset, "file": file.display().to_string(), "id": id });
    if !repairs.is_empty() {
        s["repairs"] = json!(repairs);
    }
    if !excluded.is_empty() {
        s["excluded"] = json!(excluded);
    }
    s
}

/// An import error: the file, then where in it, then what.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportError {
    pub file: PathBuf,
    /// A JSON path and the question it is about, or (for JSON that does
    /// not parse) `line:column`.
    pub place: String,
    pub message: String,
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sep = if self.place.starts_with(|c: char| c.is_ascii_digit()) {
            ":"
        } else {
            ": "
        };
        write!(
            f,
            "error: {}{sep}{}: {}",
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
