//! A finished run read back from its files (turns.csv, probes.csv,
//! summaries.csv, results.json), so that charts and the HTML report are made
//! the same way after `memeval run` and by `memeval report DIR`.

use std::path::{Path, PathBuf};

use super::Aggregate;
use crate::gate;
use crate::runner::{ProbeRow as Probe, SummaryRow as Summary, TurnRow as Turn};

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

fn read_csv<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, String> {
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
        let strategies: Vec<String> = meta["strategies"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let mut scenarios: Vec<String> =
            results.results.iter().map(|r| r.scenario.clone()).collect();
        scenarios.sort();
        scenarios.dedup();
        let budget = meta["config"]["memory"]["max_context_tokens"]
            .as_u64()
            .unwrap_or(0);
        Ok(RunData {
            dir: dir.to_path_buf(),
            meta,
            results: results.results,
            totals: results.totals,
            turns,
            probes,
            summaries,
            strategies,
            scenarios,
            budget,
        })
    }

    /// The turns of one (scenario, strategy), in order.
    pub fn turns_of<'a>(
        &'a self,
        scenario: &'a str,
        strategy: &'a str,
    ) -> impl Iterator<Item = &'a Turn> {
        self.turns
            .iter()
            .filter(move |t| t.scenario == scenario && t.strategy == strategy)
    }

    /// The probes of one (scenario, strategy), in order.
    pub fn probes_of<'a>(
        &'a self,
        scenario: &'a str,
        strategy: &'a str,
    ) -> impl Iterator<Item = &'a Probe> {
        self.probes
            .iter()
            .filter(move |p| p.scenario == scenario && p.strategy == strategy)
    }

    /// The summaries of one (scenario, strategy), in order.
    pub fn summaries_of<'a>(
        &'a self,
        scenario: &'a str,
        strategy: &'a str,
    ) -> impl Iterator<Item = &'a Summary> {
        self.summaries
            .iter()
            .filter(move |s| s.scenario == scenario && s.strategy == strategy)
    }

    /// The aggregate of one (scenario, strategy).
    pub fn result(&self, scenario: &str, strategy: &str) -> Option<&Aggregate> {
        self.results
            .iter()
            .find(|r| r.scenario == scenario && r.strategy == strategy)
    }
}
