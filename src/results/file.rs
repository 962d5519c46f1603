//! results.json as the gate and the commands read it back, from a run
//! folder, a results.json or a baseline file.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ResultsError;
use super::aggregate::Aggregate;

/// A run's results as the gate reads them: results.json, a run folder, or
/// a baseline file (which is results.json with a marker).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResults {
    /// Set in baseline files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memeval_baseline: Option<u32>,
    pub meta: super::Metadata,
    pub results: Vec<Aggregate>,
    #[serde(default)]
    pub totals: Vec<Aggregate>,
    /// Every pair of strategies over their shared probe asks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub comparisons: Vec<crate::results::compare::Comparison>,
    /// Every pair of judges over the answers both judged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub judge_agreement: Vec<crate::results::compare::Agreement>,
}

/// Reads results from a run folder, a results.json or a baseline file.
pub fn load_results(path: &Path) -> Result<RunResults, ResultsError> {
    read_results::<Vec<Aggregate>>(path, |r| r)
}

/// Reads results as [`load_results`] does, without what the report and
/// the terminal's table never show of each scenario (its probe kinds,
/// published scores, stage latencies and samples: the totals keep theirs),
/// dropped as each is read: a population's results.json holds a few KB of
/// them a scenario.
pub fn load_slim_results(path: &Path) -> Result<RunResults, ResultsError> {
    read_results::<Slim>(path, |r| r.0)
}

/// Per-scenario results, slimmed one at a time as they are read.
struct Slim(Vec<Aggregate>);

impl<'de> Deserialize<'de> for Slim {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Slim, D::Error> {
        struct Each;
        impl<'de> serde::de::Visitor<'de> for Each {
            type Value = Slim;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of results")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Slim, A::Error> {
                let mut out = Vec::new();
                while let Some(mut a) = seq.next_element::<Aggregate>()? {
                    a.by_kind = Default::default();
                    a.stages = Default::default();
                    a.published = None;
                    a.samples = None;
                    out.push(a);
                }
                Ok(Slim(out))
            }
        }
        d.deserialize_seq(Each)
    }
}

fn read_results<R: serde::de::DeserializeOwned>(
    path: &Path,
    results: impl FnOnce(R) -> Vec<Aggregate>,
) -> Result<RunResults, ResultsError> {
    let file = if path.is_dir() {
        path.join("results.json")
    } else {
        path.to_path_buf()
    };
    // Parsed as it is read (a population's results.json is tens of MB:
    // never held whole), so that a broken one is reported where it breaks;
    // then its metadata, typed.
    let mut reader =
        crate::files::open_capped(&file, crate::files::cap::RESULTS, "memeval results")?;
    let raw: Raw<R> = serde_json::from_reader(&mut reader).map_err(|e| {
        if e.is_io() {
            return ResultsError::File(reader.error(e));
        }
        ResultsError::Invalid(format!(
            "{}:{}:{}: not memeval results: {e}",
            file.display(),
            e.line(),
            e.column()
        ))
    })?;
    let meta = serde_json::from_str(raw.meta.get()).map_err(|e| {
        ResultsError::Invalid(format!(
            "{}: meta: not a memeval run's metadata: {e}",
            file.display()
        ))
    })?;
    Ok(RunResults {
        memeval_baseline: raw.memeval_baseline,
        meta,
        results: results(raw.results),
        totals: raw.totals,
        comparisons: raw.comparisons,
        judge_agreement: raw.judge_agreement,
    })
}

/// results.json with its metadata not yet read.
#[derive(Deserialize)]
struct Raw<R> {
    #[serde(default)]
    memeval_baseline: Option<u32>,
    meta: Box<serde_json::value::RawValue>,
    results: R,
    #[serde(default)]
    totals: Vec<Aggregate>,
    #[serde(default)]
    comparisons: Vec<crate::results::compare::Comparison>,
    #[serde(default)]
    judge_agreement: Vec<crate::results::compare::Agreement>,
}

/// The version of the baseline format this memeval writes and reads.
pub const BASELINE_VERSION: u32 = 1;

/// Refuses results no gate may rest on: an unknown baseline version, a run
/// that was interrupted (its results marked partial), or no result at all.
/// A gate over them would pass with fewer checks than it seems to make.
pub fn check_usable(results: &RunResults) -> Result<(), ResultsError> {
    if let Some(v) = results.memeval_baseline
        && v != BASELINE_VERSION
    {
        return Err(ResultsError::Unusable(format!(
            "a baseline of version {v}, which this memeval (reading version {BASELINE_VERSION}) does not know"
        )));
    }
    if results.meta.partial {
        return Err(ResultsError::Unusable(
            "the results of an interrupted run (marked partial): finish it with `memeval run --resume` first"
                .into(),
        ));
    }
    if let Some(f) = results.meta.failed.first() {
        return Err(ResultsError::Unusable(format!(
            "{} replay(s) of this run failed (the first: {}/{}/{}), so its results leave them out: fix the plugin and run it again",
            results.meta.failed.len(),
            f.scenario,
            f.strategy,
            f.repeat
        )));
    }
    if results.results.is_empty() {
        return Err(ResultsError::Unusable(
            "holds no results: a gate over it would check nothing".into(),
        ));
    }
    Ok(())
}

/// The scenarios two runs share; a gate between runs that share none
/// compares nothing.
pub fn common_scenarios(baseline: &[Aggregate], current: &[Aggregate]) -> usize {
    let names = |r: &[Aggregate]| -> std::collections::BTreeSet<String> {
        r.iter().map(|a| a.scenario.clone()).collect()
    };
    names(baseline).intersection(&names(current)).count()
}

/// The baseline file for a run: its results and metadata, marked.
pub fn baseline_of(results: &RunResults) -> RunResults {
    RunResults {
        memeval_baseline: Some(BASELINE_VERSION),
        ..results.clone()
    }
}
