//! What makes a run resumable: its record in the journal of its staging
//! folder ([`RunSpec`]), written before the first replay, read back by
//! `memeval run --resume`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Failure;
use super::run_scenarios;
use crate::config::Config;
use crate::outdir;
use crate::scenario;
use crate::store::Journal;

/// What a run is, as its journal records it: everything that decides its
/// outputs, so that `--resume` continues exactly the same run.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct RunSpec {
    /// The working folder the run started in, and the scenario files as
    /// named there.
    pub cwd: PathBuf,
    pub files: Vec<PathBuf>,
    /// SHA-256 of each scenario, by name: a file edited since cannot resume.
    pub sha256: BTreeMap<String, String>,
    pub config: Config,
    pub shard: Option<(u32, u32)>,
    pub repeat: u32,
    pub timings: bool,
    /// Written to the default folder, so `reports/latest` points at it.
    #[serde(default)]
    pub latest: bool,
}

/// The journal of a run in progress, inside its staging folder.
pub const JOURNAL: &str = "journal.sqlite";

/// Reads back the run that `out` was interrupted in.
pub fn resumed_run(out: &Path) -> Result<(RunSpec, Vec<scenario::Scenario>, Journal), Failure> {
    let staging = outdir::staging_of(out);
    let path = staging.join(JOURNAL);
    if !path.is_file() {
        return Err(Failure::Input(format!(
            "error: --resume {}: no interrupted run to continue (no {})",
            out.display(),
            path.display()
        )));
    }
    let journal = Journal::open(&path).map_err(anyhow::Error::from)?;
    let spec: RunSpec = journal
        .spec()
        .map_err(anyhow::Error::from)?
        .and_then(|t| serde_json::from_str(&t).ok())
        .ok_or_else(|| {
            Failure::Input(format!(
                "error: {}: the run's record is unreadable; start it again with --force",
                path.display()
            ))
        })?;
    // Checked again: a journal written by an older memeval may hold a value
    // that this one's rules refuse.
    spec.config.validate().map_err(|e| {
        Failure::Input(format!(
            "error: {}: the run's configuration: {e}; start it again with --force",
            path.display()
        ))
    })?;
    let absolute: Vec<PathBuf> = spec.files.iter().map(|f| spec.cwd.join(f)).collect();
    let mut scenarios = run_scenarios(&absolute, spec.shard)?;
    for s in &mut scenarios {
        // Named as when the run started, so that its outputs say the same.
        if let Some(f) = spec.files.iter().find(|f| spec.cwd.join(f) == s.file) {
            s.file = f.clone();
        }
        if spec.sha256.get(&s.name) != Some(&s.sha256) {
            return Err(Failure::Input(format!(
                "error: {}: scenario {:?} changed since the run started (SHA-256 differs): \
                 resuming would mix two versions; run it again with --force",
                s.file.display(),
                s.name
            )));
        }
    }
    if scenarios.len() != spec.sha256.len() {
        return Err(Failure::Input(
            "error: the run's scenario files no longer hold the same scenarios; run it again with --force"
                .into(),
        ));
    }
    Ok((spec, scenarios, journal))
}

/// The journal of a new run, in its staging folder. The folder appears
/// with the run's record already in it (made under another name, then
/// renamed), so that a run killed at any moment leaves either nothing or a
/// run that `--resume` can continue.
pub fn new_journal(staging: &Path, spec: &RunSpec) -> Result<Journal, Failure> {
    let mut fresh = staging.as_os_str().to_owned();
    fresh.push(".new");
    let fresh = PathBuf::from(fresh);
    let made = (|| -> anyhow::Result<()> {
        if fresh.exists() {
            std::fs::remove_dir_all(&fresh)?;
        }
        std::fs::create_dir_all(&fresh)?;
        // Closed before the rename: SQLite reopens its log by path.
        Journal::open(&fresh.join(JOURNAL))?.set_spec(&serde_json::to_string(spec)?)?;
        std::fs::rename(&fresh, staging)?;
        Ok(())
    })();
    made.map_err(|e| anyhow::anyhow!("cannot create {}: {e}", staging.display()))?;
    Ok(Journal::open(&staging.join(JOURNAL)).map_err(anyhow::Error::from)?)
}

/// Whether `out`'s staging folder holds a run that finished but was not
/// moved into place: its journal is gone, and the outputs are complete.
/// (A new run's staging folder appears with its journal in it.)
pub fn finished_unpublished(out: &Path) -> bool {
    let staging = outdir::staging_of(out);
    staging.is_dir() && !staging.join(JOURNAL).exists()
}
