//! A finished run read back from its files (turns.csv, probes.csv,
//! summaries.csv, results.json), so that charts and the HTML report are made
//! the same way after `memeval run` and by `memeval report DIR`.

use std::path::{Path, PathBuf};

use super::Aggregate;
use crate::gate;
use crate::runner::{ProbeRow as Probe, SummaryRow as Summary, TurnRow as Turn};

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

/// Everything a report needs. Only the first replay of each (scenario,
/// strategy) is kept row by row; the aggregates cover every replay.
#[derive(Debug, Clone)]
pub struct RunData {
    pub dir: PathBuf,
    pub meta: serde_json::Value,
    pub results: Vec<Aggregate>,
    pub totals: Vec<Aggregate>,
    pub turns: Vec<Turn>,
    pub probes: Vec<Probe>,
    pub summaries: Vec<Summary>,
    /// In the order of the run's configuration.
    pub strategies: Vec<String>,
    /// Sorted by name.
    pub scenarios: Vec<String>,
    /// `memory.max_context_tokens` of the run.
    pub budget: u64,
}

/// Rows of a CSV output; errors name the file and line.
pub(crate) fn read_csv<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, String> {
    let mut r = csv::Reader::from_path(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    r.deserialize()
        .map(|row| {
            row.map_err(|e| {
                let at = e
                    .position()
                    .map(|p| format!(":{}", p.line()))
                    .unwrap_or_default();
                format!("{}{at}: not a memeval output: {e}", path.display())
            })
        })
        .collect()
}

impl RunData {
    /// Reads a run's output folder.
    pub fn load(dir: &Path) -> Result<RunData, String> {
        let results = gate::load_results(&dir.join("results.json"))?;
        let first = |r: u32| r == 1;
        let turns: Vec<Turn> = read_csv::<Turn>(&dir.join("turns.csv"))?
            .into_iter()
            .filter(|t| first(t.repeat))
            .collect();
        let probes: Vec<Probe> = read_csv::<Probe>(&dir.join("probes.csv"))?
            .into_iter()
            .filter(|p| first(p.repeat))
            .collect();
        let summaries: Vec<Summary> = read_csv::<Summary>(&dir.join("summaries.csv"))?
            .into_iter()
            .filter(|s| first(s.repeat))
            .collect();
        let meta = results.meta;
        let budget = meta["config"]["memory"]["max_context_tokens"]
            .as_u64()
            .unwrap_or(0);
        let strategies: Vec<String> = meta["strategies"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let mut data = RunData {
            dir: dir.to_path_buf(),
            meta,
            results: results.results,
            totals: results.totals,
            turns,
            probes,
            summaries,
            strategies,
            scenarios: Vec::new(),
            budget,
        };
        // Rows by scenario, then strategy as configured (stable: each
        // replay's rows keep their order), for the binary searches below.
        let mut turns = std::mem::take(&mut data.turns);
        let mut probes = std::mem::take(&mut data.probes);
        let mut summaries = std::mem::take(&mut data.summaries);
        turns.sort_by(|a, b| data.cmp_rows(a, b));
        probes.sort_by(|a, b| data.cmp_rows(a, b));
        summaries.sort_by(|a, b| data.cmp_rows(a, b));
        (data.turns, data.probes, data.summaries) = (turns, probes, summaries);
        let mut scenarios: Vec<String> = data.results.iter().map(|r| r.scenario.clone()).collect();
        scenarios.sort();
        scenarios.dedup();
        data.scenarios = scenarios;
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
