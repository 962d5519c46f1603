//! `memeval import`: a public benchmark's files as scenario files. Each
//! scenario is checked by the scenario loader as it is written into a
//! staging folder, which becomes `--out` only when every file imported:
//! all or nothing. The data's own defects are repaired and reported (or
//! refused with `--strict`), in a summary printed and kept beside the
//! scenarios.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::Value;

use super::{Failure, expand_inputs};
use crate::import::{Dataset, ImportError, Options, Tally, locomo, longmemeval};

/// The summary's file in `--out`: not a `*.json`, so that `memeval run`
/// on the folder does not take it for a scenario.
pub const SUMMARY_FILE: &str = "import-summary.txt";

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
    /// Refuse data with defects (an evidence id that is no message, a
    /// question without evidence, a bad question date) instead of
    /// repairing them
    #[arg(long)]
    pub strict: bool,
    /// A file of question ids to leave out, one a line (`#` comments):
    /// LoCoMo `<sample_id>/q<N>` (N: the question's place in the
    /// conversation's qa list, from 1), LongMemEval `<question_id>`
    #[arg(long, value_name = "FILE")]
    pub exclude: Option<PathBuf>,
    /// LoCoMo: the categories to keep, e.g. `1,2,3,4` (1 multi-hop, 2
    /// temporal, 3 open-domain, 4 single-hop, 5 adversarial)
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    pub categories: Option<Vec<u64>>,
}

/// The import command: imports every file into a staging folder, checking
/// each scenario as it is written, then publishes it (or nothing), with
/// its summary.
pub fn cmd_import(args: &ImportArgs) -> Result<(), Failure> {
    let files = expand_inputs(&args.files)?;
    let opts = options(args)?;
    let mut inputs = files.clone();
    inputs.extend(args.exclude.iter().cloned());
    let claim = crate::outdir::claim(&args.out, args.force, &inputs)?;
    let mut tally = Tally::default();
    let summary = claim.publish_staged(|dir| {
        let mut out = Written {
            dir,
            names: BTreeSet::new(),
        };
        for file in &files {
            match args.dataset {
                Dataset::Locomo => {
                    let text = crate::files::read_text_capped(
                        file,
                        crate::files::cap::DATASET,
                        "dataset file",
                    )
                    .map_err(|e| Failure::Input(format!("error: {e}")))?;
                    let root: Value = serde_json::from_str(&text).map_err(|e| {
                        Failure::Input(format!(
                            "error: {}:{}:{}: not JSON: {e}",
                            file.display(),
                            e.line(),
                            e.column()
                        ))
                    })?;
                    for (name, scenario) in locomo::import(file, &root, &opts, &mut tally)? {
                        out.write(&name, &scenario)?;
                    }
                }
                Dataset::Longmemeval => {
                    longmemeval::stream(file, &opts, &mut tally, |name, scenario| {
                        out.write(&name, &scenario)
                    })?;
                }
            }
        }
        let summary = summary(args, &files, out.names.len(), &opts, &tally);
        std::fs::write(dir.join(SUMMARY_FILE), &summary)
            .map_err(|e| Failure::Run(anyhow::anyhow!("{SUMMARY_FILE}: {e}")))?;
        Ok::<_, Failure>(summary)
    })?;
    crate::outln!("{}", summary.trim_end());
    Ok(())
}

impl From<ImportError> for Failure {
    fn from(e: ImportError) -> Failure {
        Failure::Input(e.to_string())
    }
}

/// The scenarios written so far into the staging folder.
struct Written<'a> {
    dir: &'a Path,
    names: BTreeSet<String>,
}

impl Written<'_> {
    /// Writes one scenario, which the format's every rule must pass.
    fn write(&mut self, name: &str, scenario: &Value) -> Result<(), Failure> {
        if !self.names.insert(name.to_string()) {
            return Err(Failure::Input(format!(
                "error: two imported scenarios are both named {name:?}: import the files into different folders"
            )));
        }
        let path = self.dir.join(format!("{name}.json"));
        let mut text = serde_json::to_string_pretty(scenario).map_err(anyhow::Error::from)?;
        text.push('\n');
        std::fs::write(&path, text)
            .map_err(|e| Failure::Run(anyhow::anyhow!("{}: {e}", path.display())))?;
        // The importer's own output must pass the format's every rule.
        crate::scenario::load_all(&[path]).map_err(|e| {
            Failure::Run(anyhow::anyhow!(
                "an imported scenario breaks the format (a memeval bug):\n{e}"
            ))
        })?;
        Ok(())
    }
}

/// The options from the command line, checked.
fn options(args: &ImportArgs) -> Result<Options, Failure> {
    let mut opts = Options {
        strict: args.strict,
        after_evidence: args.probe_after_evidence,
        ..Options::default()
    };
    if let Some(c) = &args.categories {
        if args.dataset != Dataset::Locomo {
            return Err(Failure::Input(
                "error: --categories: only LoCoMo's questions have categories".into(),
            ));
        }
        if let Some(bad) = c.iter().find(|n| !(1..=5).contains(*n)) {
            return Err(Failure::Input(format!(
                "error: --categories: {bad} is not a LoCoMo category (1 to 5)"
            )));
        }
        opts.categories = Some(c.iter().copied().collect());
    }
    if let Some(file) = &args.exclude {
        let text =
            crate::files::read_text_capped(file, crate::files::cap::DATASET, "--exclude file")
                .map_err(|e| Failure::Input(format!("error: {e}")))?;
        opts.exclude = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
    }
    Ok(opts)
}

/// What the import did, for the terminal and `import-summary.txt`.
fn summary(
    args: &ImportArgs,
    files: &[PathBuf],
    count: usize,
    opts: &Options,
    t: &Tally,
) -> String {
    let mut s = format!(
        "imported {count} scenario(s) from {} file(s) into {}\n",
        files.len(),
        args.out.display()
    );
    if t.repairs.is_empty() {
        s.push_str("repaired: nothing\n");
    } else {
        s.push_str(&format!(
            "repaired {} defect(s) of the data (--strict refuses them):\n",
            t.repairs.len()
        ));
        for r in &t.repairs {
            s.push_str(&format!("  {r}\n"));
        }
    }
    if let Some(c) = &opts.categories {
        let kept: Vec<String> = c.iter().map(u64::to_string).collect();
        s.push_str(&format!(
            "left out {} question(s) of other categories (--categories {})\n",
            t.filtered,
            kept.join(",")
        ));
    }
    if let Some(file) = &args.exclude {
        s.push_str(&format!(
            "left out {} question(s) listed in {}\n",
            t.excluded.len(),
            file.display()
        ));
        let missing: Vec<&str> = opts
            .exclude
            .iter()
            .filter(|id| !t.excluded.contains(*id))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            s.push_str(&format!(
                "  {} of its ids are in none of the files: {}\n",
                missing.len(),
                missing.join(", ")
            ));
        }
    }
    s
}
