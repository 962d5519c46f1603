//! `memeval baseline`: a baseline file from a finished run, for the gate.

use std::path::Path;

use super::Failure;
use super::gate::load_gate_input;
use crate::files;

pub fn cmd_baseline(run: &Path, out: &Path) -> Result<(), Failure> {
    let target = files::Target::parse(out);
    target
        .check()
        .map_err(|e| Failure::Input(format!("error: {e}")))?;
    let results = load_gate_input(run, "the run")?;
    write_baseline(&results, &target)
}

pub fn write_baseline(
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
