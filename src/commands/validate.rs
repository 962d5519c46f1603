//! `memeval validate`: every error of every scenario file, at once.

use std::path::PathBuf;

use super::{Failure, load_scenarios};

pub fn cmd_validate(files: &[PathBuf]) -> Result<(), Failure> {
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
