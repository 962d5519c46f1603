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
use crate::results::read::read_csv;
use crate::results::{CallRow, JobResult, ProbeRow, SummaryRow, TurnRow};
use crate::store;

/// One shard's folder, read back.
struct Shard {
    dir: PathBuf,
    meta: Value,
    turns: Vec<TurnRow>,
    probes: Vec<ProbeRow>,
    summaries: Vec<SummaryRow>,
    calls: Vec<CallRow>,
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
        turns: read_csv(&dir.join("turns.csv"))?,
        probes: read_csv(&dir.join("probes.csv"))?,
        summaries: read_csv(&dir.join("summaries.csv"))?,
        // Runs older than calls.csv have none to merge.
        calls: if dir.join("calls.csv").is_file() {
            read_csv(&dir.join("calls.csv"))?
        } else {
            Vec::new()
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

/// Rows regrouped into replays, in the order a single run writes them:
/// scenario by name, strategy as configured, replay number.
/// Calls made ahead of any replay (embeddings fetched for every scenario)
/// come back apart, in shard order.
fn jobs_of(shards: Vec<Shard>, strategies: &[String]) -> (Vec<JobResult>, Vec<CallRow>) {
    let mut jobs: BTreeMap<(String, usize, u32), JobResult> = BTreeMap::new();
    let mut ahead = Vec::new();
    let rank = |s: &str| strategies.iter().position(|x| x == s).unwrap_or(usize::MAX);
    for shard in shards {
        for t in shard.turns {
            job(
                &mut jobs,
                &t.scenario,
                &t.strategy,
                t.repeat,
                rank(&t.strategy),
            )
            .turns
            .push(t);
        }
        for p in shard.probes {
            job(
                &mut jobs,
                &p.scenario,
                &p.strategy,
                p.repeat,
                rank(&p.strategy),
            )
            .probes
            .push(p);
        }
        for s in shard.summaries {
            job(
                &mut jobs,
                &s.scenario,
                &s.strategy,
                s.repeat,
                rank(&s.strategy),
            )
            .summaries
            .push(s);
        }
        for c in shard.calls {
            if c.scenario.is_empty() {
                ahead.push(c);
                continue;
            }
            job(
                &mut jobs,
                &c.scenario,
                &c.strategy,
                c.repeat,
                rank(&c.strategy),
            )
            .calls
            .push(c);
        }
    }
    (jobs.into_values().collect(), ahead)
}

fn job<'a>(
    jobs: &'a mut BTreeMap<(String, usize, u32), JobResult>,
    scenario: &str,
    strategy: &str,
    repeat: u32,
    rank: usize,
) -> &'a mut JobResult {
    jobs.entry((scenario.to_string(), rank, repeat))
        .or_insert_with(|| JobResult {
            scenario: scenario.to_string(),
            strategy: strategy.to_string(),
            repeat,
            turns: Vec::new(),
            probes: Vec::new(),
            summaries: Vec::new(),
            calls: Vec::new(),
            times: Default::default(),
        })
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
    let (jobs, ahead) = jobs_of(shards, &strategies);
    let written = claim.publish_staged(|dir| {
        let written = crate::results::write_outputs(
            dir,
            jobs.into_iter().map(Ok),
            &ahead,
            &meta,
            &strategies,
        )
        .map_err(|e| anyhow::anyhow!("writing outputs: {e}"))?;
        store::merge(&dir.join("memory.sqlite"), &stores).map_err(anyhow::Error::from)?;
        report::write_report(dir).map_err(|e| anyhow::anyhow!("writing the report: {e}"))?;
        Ok::<_, Failure>(written)
    })?;
    let (per_job, totals) = (written.per_job, written.totals);
    let mut table = Vec::new();
    let extractive = meta.extractive_answers();
    report::print_table(&mut table, &per_job, &totals, extractive)
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
