//! `memeval report`: the charts and report.html of a finished run, again,
//! from its files.

use std::path::Path;

use super::Failure;
use crate::report;

pub fn cmd_report(dir: &Path) -> Result<(), Failure> {
    if !dir.join("results.json").is_file() {
        return Err(Failure::Input(format!(
            "error: {}: not a memeval run folder (no results.json)",
            dir.display()
        )));
    }
    let path = report::write_report(dir).map_err(|e| Failure::Input(format!("error: {e}")))?;
    crate::outln!("report: {}", path.display());
    Ok(())
}
