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
    /// The folder of the configuration file (as named from `cwd`): where
    /// plugin commands start.
    #[serde(default)]
    pub config_dir: PathBuf,
}

impl RunSpec {
    /// Where the run's plugin commands start.
    pub fn command_dir(&self) -> PathBuf {
        self.cwd.join(&self.config_dir)
    }
}

/// The journal of a run in progress, inside its staging folder.
pub const JOURNAL: &str = "journal.sqlite";

/// Reads back the run that `out` was interrupted in.
pub fn resumed_run(out: &Path) -> Result<(RunSpec, Vec<scenario::Listed>, Journal), Failure> {
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
    let mut scenarios = run_scenarios(
        &absolute,
        spec.shard,
        super::default_jobs(),
        spec.config.registry.scenario_cache_mb,
    )?;
    for s in &mut scenarios {
        // Named as when the run started, so that its outputs say the same.
        if let Some(f) = spec.files.iter().find(|f| spec.cwd.join(f) == s.file) {
            s.file = f.clone();
            if let Some(kept) = &mut s.kept {
                std::sync::Arc::make_mut(kept).file = f.clone();
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A run's record for the shipped scenario copied into `dir`.
    fn spec_in(dir: &Path) -> RunSpec {
        let file = dir.join("s.json");
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/travel-multihop.json");
        std::fs::copy(shipped, &file).unwrap();
        let s = scenario::load_file(&file).unwrap();
        RunSpec {
            cwd: dir.to_path_buf(),
            files: vec![PathBuf::from("s.json")],
            sha256: BTreeMap::from([(s.name.clone(), s.sha256.clone())]),
            config: Config::default(),
            shard: None,
            repeat: 2,
            timings: false,
            latest: true,
            config_dir: PathBuf::new(),
        }
    }

    fn message(r: Result<(RunSpec, Vec<scenario::Listed>, Journal), Failure>) -> String {
        match r {
            Err(Failure::Input(m)) => m,
            Err(other) => panic!("not an input error: {other:?}"),
            Ok(_) => panic!("resumed"),
        }
    }

    #[test]
    fn a_new_runs_record_is_read_back_as_it_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let spec = spec_in(dir.path());
        assert!(message(resumed_run(&out)).contains("no interrupted run"));
        drop(new_journal(&outdir::staging_of(&out), &spec).unwrap());
        // Nothing is left beside the staging folder (its `.new` twin is gone).
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(!finished_unpublished(&out), "a journal means unfinished");
        let (back, scenarios, _journal) = resumed_run(&out).unwrap();
        assert_eq!(
            serde_json::to_string(&back).unwrap(),
            serde_json::to_string(&spec).unwrap()
        );
        assert_eq!(scenarios.len(), 1);
        // Named as when the run started, so its outputs say the same.
        assert_eq!(scenarios[0].file, PathBuf::from("s.json"));
    }

    #[test]
    fn a_run_whose_scenario_or_configuration_changed_is_not_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut spec = spec_in(dir.path());
        drop(new_journal(&outdir::staging_of(&out), &spec).unwrap());
        let file = dir.path().join("s.json");
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(&file, text.replace("14:05", "14:06")).unwrap();
        assert!(message(resumed_run(&out)).contains("changed since the run started"));
        // A record whose configuration this memeval's rules refuse.
        std::fs::remove_dir_all(outdir::staging_of(&out)).unwrap();
        spec.config.openai.timeout_secs = 1e308;
        drop(new_journal(&outdir::staging_of(&out), &spec).unwrap());
        assert!(message(resumed_run(&out)).contains("openai.timeout_secs"));
    }

    #[test]
    fn a_staging_folder_without_its_journal_holds_a_finished_run() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        assert!(!finished_unpublished(&out));
        std::fs::create_dir(outdir::staging_of(&out)).unwrap();
        assert!(finished_unpublished(&out));
    }
}
