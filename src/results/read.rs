//! A finished run read back from its files (turns.csv, probes.csv,
//! summaries.csv, results.json), so that charts and the HTML report are made
//! the same way after `memeval run` and by `memeval report DIR`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::{Aggregate, ResultsError};
use crate::results::{ProbeRow as Probe, SummaryRow as Summary, TurnRow as Turn};

/// A row of turns.csv, probes.csv or summaries.csv: whose it is.
pub trait Row {
    fn scenario(&self) -> &str;
    fn strategy(&self) -> &str;
}

macro_rules! row {
    ($($t:ty),*) => {$(
        impl Row for $t {
            fn scenario(&self) -> &str {
                &self.scenario
            }
            fn strategy(&self) -> &str {
                &self.strategy
            }
        }
    )*};
}
row!(Turn, Probe, Summary);

/// Scenarios drawn one by one, at most: a population of thousands of users
/// would make thousands of charts nobody reads, and a report too big to
/// open. The first by name are drawn; the tables keep every scenario.
pub const MAX_SCENARIO_CHARTS: usize = 24;

/// Bins of the fact-position histogram (over the context's length).
pub const POSITION_BINS: usize = 10;

/// Everything a report needs. Rows are kept only for the scenarios drawn
/// one by one (the first [`MAX_SCENARIO_CHARTS`] by name) and only for the
/// first replay, so a report of any number of users is made in bounded
/// memory; the aggregates cover every scenario and replay.
#[derive(Debug, Clone)]
pub struct RunData {
    pub dir: PathBuf,
    pub meta: super::Metadata,
    pub results: Vec<Aggregate>,
    pub totals: Vec<Aggregate>,
    /// Every pair of strategies compared (results.json's `comparisons`).
    pub comparisons: Vec<crate::results::compare::Comparison>,
    pub turns: Vec<Turn>,
    pub probes: Vec<Probe>,
    pub summaries: Vec<Summary>,
    /// In the order of the run's configuration.
    pub strategies: Vec<String>,
    /// Sorted by name: every scenario of the run.
    pub scenarios: Vec<String>,
    /// The first of `scenarios`, whose rows are kept and drawn.
    pub drawn: Vec<String>,
    /// Per strategy, how many first-replay probes of every scenario found
    /// their facts in each tenth of the context.
    pub positions: BTreeMap<String, [u64; POSITION_BINS]>,
    /// `memory.max_context_tokens` of the run.
    pub budget: u64,
}

/// The rows of a CSV output one at a time, with the next one in view;
/// errors name the file and line.
pub(crate) struct Rows<T> {
    path: PathBuf,
    rows: csv::DeserializeRecordsIntoIter<std::fs::File, T>,
    next: Option<T>,
}

impl<T: serde::de::DeserializeOwned> Rows<T> {
    pub(crate) fn open(path: &Path) -> Result<Rows<T>, ResultsError> {
        let r = csv::Reader::from_path(path)
            .map_err(|e| ResultsError::Invalid(format!("{}: cannot read: {e}", path.display())))?;
        let mut rows = Rows {
            path: path.to_path_buf(),
            rows: r.into_deserialize(),
            next: None,
        };
        rows.advance()?;
        Ok(rows)
    }

    /// The next row, not taken.
    pub(crate) fn peek(&self) -> Option<&T> {
        self.next.as_ref()
    }

    /// The next row, taken.
    pub(crate) fn take(&mut self) -> Result<Option<T>, ResultsError> {
        let out = self.next.take();
        self.advance()?;
        Ok(out)
    }

    fn advance(&mut self) -> Result<(), ResultsError> {
        self.next = match self.rows.next() {
            None => None,
            Some(Ok(row)) => Some(row),
            Some(Err(e)) => {
                let at = e
                    .position()
                    .map(|p| format!(":{}", p.line()))
                    .unwrap_or_default();
                return Err(ResultsError::Invalid(format!(
                    "{}{at}: not a memeval output: {e}",
                    self.path.display()
                )));
            }
        };
        Ok(())
    }
}

/// Each row of a CSV output in turn, none kept; errors name the file and line.
pub fn for_each_row<T: serde::de::DeserializeOwned>(
    path: &Path,
    mut f: impl FnMut(T),
) -> Result<(), ResultsError> {
    let mut r = csv::Reader::from_path(path)
        .map_err(|e| ResultsError::Invalid(format!("{}: cannot read: {e}", path.display())))?;
    for row in r.deserialize() {
        let row = row.map_err(|e| {
            let at = e
                .position()
                .map(|p| format!(":{}", p.line()))
                .unwrap_or_default();
            ResultsError::Invalid(format!("{}{at}: not a memeval output: {e}", path.display()))
        })?;
        f(row);
    }
    Ok(())
}

impl RunData {
    /// Reads a run's output folder, row by row.
    pub fn load(dir: &Path) -> Result<RunData, ResultsError> {
        let results = crate::results::load_slim_results(&dir.join("results.json"))?;
        let scenarios: Vec<String> = results
            .results
            .iter()
            .map(|r| r.scenario.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let drawn = scenarios[..scenarios.len().min(MAX_SCENARIO_CHARTS)].to_vec();
        let kept: BTreeSet<&str> = drawn.iter().map(String::as_str).collect();
        let keep = |scenario: &str, repeat: u32| repeat == 1 && kept.contains(scenario);
        let mut turns: Vec<Turn> = Vec::new();
        for_each_row(&dir.join("turns.csv"), |t: Turn| {
            if keep(&t.scenario, t.repeat) {
                turns.push(t);
            }
        })?;
        let mut probes: Vec<Probe> = Vec::new();
        let mut positions: BTreeMap<String, [u64; POSITION_BINS]> = BTreeMap::new();
        for_each_row(&dir.join("probes.csv"), |p: Probe| {
            if p.repeat != 1 {
                return;
            }
            if let Some(x) = p.fact_position {
                let bins = positions.entry(p.strategy.clone()).or_default();
                bins[((x * POSITION_BINS as f64) as usize).min(POSITION_BINS - 1)] += 1;
            }
            if kept.contains(p.scenario.as_str()) {
                probes.push(p);
            }
        })?;
        let mut summaries: Vec<Summary> = Vec::new();
        for_each_row(&dir.join("summaries.csv"), |s: Summary| {
            if keep(&s.scenario, s.repeat) {
                summaries.push(s);
            }
        })?;
        let meta = results.meta;
        let budget = u64::from(meta.config.memory.max_context_tokens);
        let strategies = meta.strategies.clone();
        let mut data = RunData {
            dir: dir.to_path_buf(),
            meta,
            results: results.results,
            totals: results.totals,
            comparisons: results.comparisons,
            turns: Vec::new(),
            probes: Vec::new(),
            summaries: Vec::new(),
            strategies,
            scenarios,
            drawn,
            positions,
            budget,
        };
        // Rows by scenario, then strategy as configured (stable: each
        // replay's rows keep their order), for the binary searches below.
        turns.sort_by(|a, b| data.cmp_rows(a, b));
        probes.sort_by(|a, b| data.cmp_rows(a, b));
        summaries.sort_by(|a, b| data.cmp_rows(a, b));
        (data.turns, data.probes, data.summaries) = (turns, probes, summaries);
        Ok(data)
    }

    fn cmp_rows<T: Row>(&self, a: &T, b: &T) -> std::cmp::Ordering {
        (a.scenario(), self.rank(a.strategy())).cmp(&(b.scenario(), self.rank(b.strategy())))
    }

    /// Position of a strategy in the run's configuration.
    fn rank(&self, strategy: &str) -> usize {
        self.strategies
            .iter()
            .position(|s| s == strategy)
            .unwrap_or(usize::MAX)
    }

    /// The rows of `rows` (sorted as [`RunData::load`] sorts them) between
    /// two (scenario, strategy rank) keys, both included: a binary search,
    /// not a scan, since runs of many users have many rows.
    fn between<'a, T: Row>(&self, rows: &'a [T], lo: (&str, usize), hi: (&str, usize)) -> &'a [T] {
        let start = rows.partition_point(|r| (r.scenario(), self.rank(r.strategy())) < lo);
        let end = rows.partition_point(|r| (r.scenario(), self.rank(r.strategy())) <= hi);
        &rows[start..end.max(start)]
    }

    /// The rows of one scenario, every strategy, in order.
    pub fn in_scenario<'a, T: Row>(&self, rows: &'a [T], scenario: &str) -> &'a [T] {
        self.between(rows, (scenario, 0), (scenario, usize::MAX))
    }

    /// The rows of one (scenario, strategy), in order.
    pub fn of<'a, T: Row>(&self, rows: &'a [T], scenario: &str, strategy: &str) -> &'a [T] {
        let r = self.rank(strategy);
        self.between(rows, (scenario, r), (scenario, r))
    }

    /// The aggregate of one (scenario, strategy).
    pub fn result(&self, scenario: &str, strategy: &str) -> Option<&Aggregate> {
        self.results
            .iter()
            .find(|r| r.scenario == scenario && r.strategy == strategy)
    }
}
