//! `memeval merge`: the output folders of `run --shard K/N` combined into one
//! run, with the same tables, aggregates, charts, report and gate input as a
//! run of every scenario at once (so that a CI matrix or several machines
//! can split a large evaluation).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::Failure;
use crate::files;
use crate::outdir;
use crate::report;
use crate::results::read::Rows;
use crate::results::{CallRow, JobResult, ProbeRow, ResultsError, SummaryRow, TurnRow};
use crate::store;

/// One shard's folder: its metadata, and its rows read one replay at a
/// time (a shard writes them in run order), so that a merge holds one
/// replay's rows at once, whatever the shards' size.
struct Shard {
    dir: PathBuf,
    meta: Value,
    turns: Rows<TurnRow>,
    probes: Rows<ProbeRow>,
    summaries: Rows<SummaryRow>,
    calls: Option<Rows<CallRow>>,
}

fn input(m: String) -> Failure {
    Failure::Input(format!("error: {m}"))
}

fn read_shard(dir: &Path) -> Result<Shard, Failure> {
    let meta_path = dir.join("metadata.json");
    if !meta_path.is_file() {
        return Err(input(format!(
            "{}: not a memeval run folder (no metadata.json)",
            dir.display()
        )));
    }
    let bytes = files::read_capped(&meta_path, files::cap::METADATA, "run metadata")
        .map_err(|e| input(e.to_string()))?;
    let meta: Value = serde_json::from_slice(&bytes).map_err(|e| {
        input(format!(
            "{}:{}:{}: {e}",
            meta_path.display(),
            e.line(),
            e.column()
        ))
    })?;
    Ok(Shard {
        dir: dir.to_path_buf(),
        meta,
        turns: Rows::open(&dir.join("turns.csv"))?,
        probes: Rows::open(&dir.join("probes.csv"))?,
        summaries: Rows::open(&dir.join("summaries.csv"))?,
        // Runs older than calls.csv have none to merge.
        calls: if dir.join("calls.csv").is_file() {
            Some(Rows::open(&dir.join("calls.csv"))?)
        } else {
            None
        },
    })
}

/// The metadata two shards must share: everything but their scenarios and
/// shard label.
fn common(meta: &Value) -> BTreeMap<String, Value> {
    meta.as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| *k != "scenarios" && *k != "shard")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Checks that the shards are of one run and complete; returns the merged
/// metadata.
fn merged_meta(shards: &[Shard]) -> Result<Value, Failure> {
    let first = common(&shards[0].meta);
    for s in &shards[1..] {
        let other = common(&s.meta);
        let mut differ: Vec<String> = first
            .keys()
            .chain(other.keys())
            .filter(|k| first.get(*k) != other.get(*k))
            .map(|k| format!("{k:?}"))
            .collect();
        differ.dedup();
        if !differ.is_empty() {
            return Err(input(format!(
                "{} and {} are not shards of one run: they differ in {} (the seed, configuration, backend and memeval version must be the same)",
                shards[0].dir.display(),
                s.dir.display(),
                differ.join(", ")
            )));
        }
    }
    // Labelled shards must be all of 1/N..N/N, each once.
    let labels: Vec<&str> = shards
        .iter()
        .filter_map(|s| s.meta["shard"].as_str())
        .collect();
    if !labels.is_empty() {
        let n: u32 = labels[0]
            .split_once('/')
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or(0);
        let expected: Vec<String> = (1..=n).map(|k| format!("{k}/{n}")).collect();
        let mut got: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
        got.sort_by_key(|l| l.split('/').next().and_then(|k| k.parse::<u32>().ok()));
        if got != expected || labels.len() != shards.len() {
            let missing: Vec<&String> = expected.iter().filter(|e| !got.contains(e)).collect();
            return Err(input(format!(
                "the shards are {} but a complete run needs {}{}",
                got.join(", "),
                expected.join(", "),
                if missing.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (missing: {})",
                        missing
                            .iter()
                            .map(|m| m.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            )));
        }
    }
    let mut scenarios: Vec<Value> = Vec::new();
    for s in shards {
        for sc in s.meta["scenarios"].as_array().into_iter().flatten() {
            if let Some(dup) = scenarios.iter().find(|x| x["name"] == sc["name"]) {
                return Err(input(format!(
                    "scenario {} is in two of the runs ({}): each must be merged once",
                    dup["name"],
                    s.dir.display()
                )));
            }
            scenarios.push(sc.clone());
        }
    }
    scenarios.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let mut meta = shards[0].meta.clone();
    if let Some(o) = meta.as_object_mut() {
        o.remove("shard");
        o.insert("scenarios".into(), Value::Array(scenarios));
    }
    Ok(meta)
}

/// A replay's place in the run's order: scenario by name, strategy as
/// configured, replay number.
type Key = (String, usize, u32);

/// The shards' replays in the order a single run writes them, one at a
/// time: a merge of the shards' files, each already in that order, whose
/// scenarios no two shards share.
struct Merged {
    shards: Vec<Shard>,
    strategies: Vec<String>,
    last: Option<Key>,
    /// A shard's file found unreadable on the way: bad input, not a fault.
    bad: Option<String>,
}

impl Merged {
    fn key(&self, scenario: &str, strategy: &str, repeat: u32) -> Key {
        let rank = self
            .strategies
            .iter()
            .position(|x| x == strategy)
            .unwrap_or(usize::MAX);
        (scenario.to_string(), rank, repeat)
    }

    /// The key of a shard's next replay: the least of its files' next rows.
    fn next_key(&self, s: &Shard) -> Option<Key> {
        let keys = [
            s.turns
                .peek()
                .map(|r| self.key(&r.scenario, &r.strategy, r.repeat)),
            s.probes
                .peek()
                .map(|r| self.key(&r.scenario, &r.strategy, r.repeat)),
            s.summaries
                .peek()
                .map(|r| self.key(&r.scenario, &r.strategy, r.repeat)),
            s.calls
                .as_ref()
                .and_then(Rows::peek)
                .map(|r| self.key(&r.scenario, &r.strategy, r.repeat)),
        ];
        keys.into_iter().flatten().min()
    }

    /// Calls made ahead of any replay (embeddings fetched for every
    /// scenario), which head each shard's calls.csv: in shard order.
    fn ahead(&mut self) -> Result<Vec<CallRow>, ResultsError> {
        let mut ahead = Vec::new();
        for s in &mut self.shards {
            if let Some(calls) = &mut s.calls {
                while calls.peek().is_some_and(|c| c.scenario.is_empty()) {
                    ahead.extend(calls.take()?);
                }
            }
        }
        Ok(ahead)
    }

    fn next_job(&mut self) -> Result<Option<JobResult>, ResultsError> {
        let Some((at, key)) = (0..self.shards.len())
            .filter_map(|i| self.next_key(&self.shards[i]).map(|k| (i, k)))
            .min_by(|a, b| a.1.cmp(&b.1))
        else {
            return Ok(None);
        };
        if self.last.as_ref().is_some_and(|last| *last >= key) {
            return Err(ResultsError::Invalid(format!(
                "{}: rows of {}/{} are not in run order (or the replay is in two shards)",
                self.shards[at].dir.display(),
                key.0,
                key.2
            )));
        }
        let strategies = &self.strategies;
        let mine = |scenario: &str, strategy: &str, repeat: u32| {
            scenario == key.0
                && strategies
                    .iter()
                    .position(|x| x == strategy)
                    .unwrap_or(usize::MAX)
                    == key.1
                && repeat == key.2
        };
        let shard = &mut self.shards[at];
        let job = JobResult {
            scenario: key.0.clone(),
            strategy: strategies.get(key.1).cloned().unwrap_or_default(),
            repeat: key.2,
            turns: rows_of(&mut shard.turns, |r| {
                mine(&r.scenario, &r.strategy, r.repeat)
            })?,
            probes: rows_of(&mut shard.probes, |r| {
                mine(&r.scenario, &r.strategy, r.repeat)
            })?,
            summaries: rows_of(&mut shard.summaries, |r| {
                mine(&r.scenario, &r.strategy, r.repeat)
            })?,
            calls: match &mut shard.calls {
                Some(calls) => rows_of(calls, |r| mine(&r.scenario, &r.strategy, r.repeat))?,
                None => Vec::new(),
            },
            times: Default::default(),
        };
        self.last = Some(key);
        Ok(Some(job))
    }
}

/// The rows at the head of `rows` that `mine` accepts: one replay's.
fn rows_of<T: serde::de::DeserializeOwned>(
    rows: &mut Rows<T>,
    mine: impl Fn(&T) -> bool,
) -> Result<Vec<T>, ResultsError> {
    let mut out = Vec::new();
    while rows.peek().is_some_and(&mine) {
        out.extend(rows.take()?);
    }
    Ok(out)
}

impl Iterator for Merged {
    type Item = std::io::Result<JobResult>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_job()
            .map_err(|e| {
                self.bad = Some(e.to_string());
                std::io::Error::other(e.to_string())
            })
            .transpose()
    }
}

/// The run folders that `paths` name: each a run folder, or a folder of
/// run folders (one per shard, as a CI workflow's artifacts or an object
/// store's prefixes arrive), taken in name order. Anything else in such a
/// folder is refused, so that a shard cannot be silently left out.
fn run_folders(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Failure> {
    let mut runs = Vec::new();
    for path in paths {
        if !path.is_dir() || path.join("metadata.json").is_file() {
            runs.push(path.clone());
            continue;
        }
        let listing =
            std::fs::read_dir(path).map_err(|e| input(format!("{}: {e}", path.display())))?;
        let mut inner: Vec<PathBuf> = Vec::new();
        for entry in listing {
            let entry = entry.map_err(|e| input(format!("{}: {e}", path.display())))?;
            inner.push(entry.path());
        }
        inner.sort();
        if inner.is_empty() {
            return Err(input(format!(
                "{}: an empty folder: neither a memeval run folder nor a folder of them",
                path.display()
            )));
        }
        if let Some(stray) = inner.iter().find(|p| !p.join("metadata.json").is_file()) {
            return Err(input(format!(
                "{}: not a memeval run folder (no metadata.json), in {}, a folder of shards: each entry must be one shard's output folder",
                stray.display(),
                path.display()
            )));
        }
        runs.extend(inner);
    }
    Ok(runs)
}

/// The merge command.
pub fn cmd_merge(paths: &[PathBuf], out: &Path, force: bool) -> Result<(), Failure> {
    let claim = outdir::claim(out, force, paths)?;
    let runs = &run_folders(paths)?;
    let shards: Vec<Shard> = runs
        .iter()
        .map(|d| read_shard(d))
        .collect::<Result<_, _>>()?;
    // Read back into the run's own type, so it is written exactly as a run writes it.
    let meta: crate::results::Metadata = serde_json::from_value(merged_meta(&shards)?)
        .map_err(|e| input(format!("{}: not memeval metadata: {e}", runs[0].display())))?;
    let strategies = meta.strategies.clone();
    let stores: Vec<PathBuf> = shards.iter().map(|s| s.dir.join("memory.sqlite")).collect();
    let mut jobs = Merged {
        shards,
        strategies: strategies.clone(),
        last: None,
        bad: None,
    };
    let ahead = jobs.ahead()?;
    let written = claim.publish_staged(|dir| {
        let written = crate::results::write_outputs(dir, &mut jobs, &ahead, &meta, &strategies)
            .map_err(|e| match jobs.bad.take() {
                Some(bad) => input(bad),
                None => anyhow::anyhow!("writing outputs: {e}").into(),
            })?;
        store::merge(&dir.join("memory.sqlite"), &stores).map_err(anyhow::Error::from)?;
        report::write_report(dir).map_err(|e| anyhow::anyhow!("writing the report: {e}"))?;
        Ok::<_, Failure>(written)
    })?;
    let mut table = Vec::new();
    let extractive = meta.extractive_answers();
    report::print_table(&mut table, &written.shown, &written.totals, extractive)
        .and_then(|()| report::print_comparisons(&mut table, &written.comparisons, extractive))
        .and_then(|()| report::print_agreement(&mut table, &written.judge_agreement))
        .map_err(anyhow::Error::from)?;
    crate::term::out(&String::from_utf8_lossy(&table));
    crate::outln!(
        "\nmerged {} run(s), {} scenario(s): {}",
        runs.len(),
        meta.scenarios.len(),
        out.display()
    );
    Ok(())
}
