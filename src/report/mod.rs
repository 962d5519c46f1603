//! Outputs of a run (OUTPUTS.md): turns.csv, probes.csv, summaries.csv,
//! results.json and metadata.json, plus the table printed at the end.

pub mod data;
pub mod html;
pub mod pool;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::memory::Stage;
use crate::metrics::{mean, round6};
use crate::runner::{CallRow, JobResult};
pub use pool::{Aggregator, Counts, Pool};

/// Version of the output files' layout.
pub const OUTPUT_FORMAT: u32 = 1;

/// The run's metadata, written beside every output and inside results.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metadata {
    pub memeval_version: Cow<'static, str>,
    pub format_version: u32,
    pub seed: u64,
    pub backend: String,
    pub chat_model: String,
    pub encoding: Cow<'static, str>,
    pub context_window: u32,
    pub models: BTreeMap<Cow<'static, str>, String>,
    pub strategies: Vec<String>,
    /// The full configuration, defaults included.
    pub config: serde_json::Value,
    /// Values the configuration leaves to the backend, as resolved.
    pub resolved: BTreeMap<Cow<'static, str>, serde_json::Value>,
    pub scenarios: Vec<ScenarioMeta>,
    /// False when timing columns were zeroed for byte-identical outputs.
    pub timings: bool,
    /// Replays of each scenario and strategy (`--repeat`).
    pub repeats: u32,
    /// `K/N` for a run of one shard of the scenarios (`--shard`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// True for the outputs of an interrupted run (Ctrl-C): only the
    /// replays that had finished; `memeval run --resume` completes them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioMeta {
    pub name: String,
    pub user: String,
    pub file: String,
    pub sha256: String,
    pub messages: usize,
    pub probes: usize,
}

/// results.json's per-(scenario, strategy) object, and the per-strategy
/// totals. With `--repeat N`, each figure is the mean over the N replays and
/// `samples` holds the per-replay values the gate's noise rule needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    pub scenario: String,
    pub strategy: String,
    #[serde(default = "one")]
    pub repeats: u32,
    pub messages: u64,
    pub probes: u64,
    pub mean_recall: Option<f64>,
    pub final_recall: Option<f64>,
    pub recall_auc: Option<f64>,
    pub stale: u64,
    pub leaked: u64,
    pub duplicated: u64,
    pub total_tokens: u64,
    pub mean_context_tokens: f64,
    pub p95_context_tokens: u64,
    pub max_context_tokens: u64,
    pub summaries: u64,
    pub mean_quality: Option<f64>,
    pub mean_fact_retention: Option<f64>,
    pub answer_accuracy: Option<f64>,
    pub mean_fact_position: Option<f64>,
    pub cost_usd: f64,
    /// What the evaluation's own calls cost (probe answers and judging).
    #[serde(default)]
    pub eval_cost_usd: f64,
    /// API calls that failed after their retries: where not 0, the
    /// metrics above are incomplete (see calls.csv).
    #[serde(default)]
    pub failed_calls: u64,
    /// Summaries the judge could not score (see summaries.csv).
    #[serde(default)]
    pub unjudged_summaries: u64,
    pub over_budget_turns: u64,
    pub over_window_turns: u64,
    pub first_over_window_turn: Option<u32>,
    pub build_p50_us: u64,
    pub build_p95_us: u64,
    pub build_p99_us: u64,
    /// Recall (and answer accuracy) per probe kind; empty where no probe
    /// has a kind.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_kind: BTreeMap<String, KindAggregate>,
    /// Latency percentiles per stage (tokenize, embed, index_insert, search,
    /// build, persist, summarize, evict, reload); absent without timings.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stages: BTreeMap<String, StageLatency>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<Samples>,
}

/// One stage's latencies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageLatency {
    pub count: u64,
    pub p50_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
}

/// The probes of one kind (`single-hop`, `temporal`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindAggregate {
    pub probes: u64,
    pub mean_recall: Option<f64>,
    pub answer_accuracy: Option<f64>,
}

fn one() -> u32 {
    1
}

/// Per-replay values of the metrics the gate checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Samples {
    pub mean_recall: Vec<Option<f64>>,
    pub final_recall: Vec<Option<f64>>,
    pub total_tokens: Vec<u64>,
    pub mean_quality: Vec<Option<f64>>,
    pub stale: Vec<u64>,
    pub leaked: Vec<u64>,
}

/// Aggregates one or more replays, pooled over their rows.
pub fn aggregate(scenario: &str, strategy: &str, jobs: &[&JobResult]) -> Aggregate {
    let mut pool = Pool::default();
    jobs.iter().for_each(|j| pool.add(j));
    pool.finish(scenario, strategy)
}

/// The mean of replays' aggregates, with their per-replay samples.
pub(crate) fn combine(reps: Vec<Aggregate>) -> Aggregate {
    if reps.len() <= 1 {
        return reps.into_iter().next().expect("at least one replay");
    }
    let n = reps.len() as f64;
    let mean_u = |f: fn(&Aggregate) -> u64| {
        (reps.iter().map(|a| f(a) as f64).sum::<f64>() / n).round() as u64
    };
    let mean_o = |f: fn(&Aggregate) -> Option<f64>| mean(reps.iter().filter_map(f)).map(round6);
    let samples = Samples {
        mean_recall: reps.iter().map(|a| a.mean_recall).collect(),
        final_recall: reps.iter().map(|a| a.final_recall).collect(),
        total_tokens: reps.iter().map(|a| a.total_tokens).collect(),
        mean_quality: reps.iter().map(|a| a.mean_quality).collect(),
        stale: reps.iter().map(|a| a.stale).collect(),
        leaked: reps.iter().map(|a| a.leaked).collect(),
    };
    let first = &reps[0];
    Aggregate {
        scenario: first.scenario.clone(),
        strategy: first.strategy.clone(),
        repeats: reps.len() as u32,
        messages: first.messages,
        probes: first.probes,
        mean_recall: mean_o(|a| a.mean_recall),
        final_recall: mean_o(|a| a.final_recall),
        recall_auc: mean_o(|a| a.recall_auc),
        stale: mean_u(|a| a.stale),
        leaked: mean_u(|a| a.leaked),
        duplicated: mean_u(|a| a.duplicated),
        total_tokens: mean_u(|a| a.total_tokens),
        mean_context_tokens: round6(reps.iter().map(|a| a.mean_context_tokens).sum::<f64>() / n),
        p95_context_tokens: mean_u(|a| a.p95_context_tokens),
        max_context_tokens: reps.iter().map(|a| a.max_context_tokens).max().unwrap_or(0),
        summaries: mean_u(|a| a.summaries),
        mean_quality: mean_o(|a| a.mean_quality),
        mean_fact_retention: mean_o(|a| a.mean_fact_retention),
        answer_accuracy: mean_o(|a| a.answer_accuracy),
        mean_fact_position: mean_o(|a| a.mean_fact_position),
        cost_usd: round6(reps.iter().map(|a| a.cost_usd).sum::<f64>() / n),
        eval_cost_usd: round6(reps.iter().map(|a| a.eval_cost_usd).sum::<f64>() / n),
        // Every replay's failures count: any of them makes the means incomplete.
        failed_calls: reps.iter().map(|a| a.failed_calls).sum(),
        unjudged_summaries: reps.iter().map(|a| a.unjudged_summaries).sum(),
        over_budget_turns: mean_u(|a| a.over_budget_turns),
        over_window_turns: mean_u(|a| a.over_window_turns),
        first_over_window_turn: reps.iter().filter_map(|a| a.first_over_window_turn).min(),
        build_p50_us: mean_u(|a| a.build_p50_us),
        build_p95_us: mean_u(|a| a.build_p95_us),
        build_p99_us: mean_u(|a| a.build_p99_us),
        by_kind: first
            .by_kind
            .iter()
            .map(|(k, v)| {
                let of = |f: fn(&KindAggregate) -> Option<f64>| {
                    mean(reps.iter().filter_map(|a| a.by_kind.get(k).and_then(f))).map(round6)
                };
                let kind = KindAggregate {
                    probes: v.probes,
                    mean_recall: of(|x| x.mean_recall),
                    answer_accuracy: of(|x| x.answer_accuracy),
                };
                (k.clone(), kind)
            })
            .collect(),
        // Latencies are the first replay's.
        stages: first.stages.clone(),
        samples: Some(samples),
    }
}

/// Aggregates per (scenario, strategy) in job order, and per-strategy
/// totals in `strategies` order; replays of one pair are combined. `jobs`
/// are in output order (see [`Aggregator`]).
pub fn aggregates(jobs: &[JobResult], strategies: &[String]) -> (Vec<Aggregate>, Vec<Aggregate>) {
    let mut agg = Aggregator::new(strategies);
    jobs.iter().for_each(|j| agg.add(j));
    agg.finish()
}

#[derive(Serialize)]
struct ResultsFile<'a, M> {
    meta: &'a M,
    results: &'a [Aggregate],
    totals: &'a [Aggregate],
}

/// The calls of one kind, over the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KindUsage {
    pub calls: u64,
    pub failed: u64,
    pub local_input_tokens: u64,
    /// Over the calls for which the API reported usage.
    pub api_input_tokens: u64,
    pub local_output_tokens: u64,
    pub api_output_tokens: u64,
    /// (API - local) / API over the calls the API reported, in percent: how
    /// far memeval's own count is off (the tutorial warns a 20% error
    /// breaks memory management).
    pub input_diff_pct: Option<f64>,
    pub output_diff_pct: Option<f64>,
    pub cost_usd: f64,
}

/// A run's API calls, tallied one at a time: how they were served (cache,
/// requests, retries, failures), usage per kind, and the first failures.
#[derive(Debug, Clone, Default)]
pub struct CallTally {
    calls: u64,
    cached: u64,
    sent: u64,
    retries: u64,
    failed: u64,
    spent: f64,
    usage: BTreeMap<String, KindUsage>,
    /// Local counts of the calls the API reported on, for a like-for-like difference.
    paired: BTreeMap<String, (u64, u64)>,
    first_failures: Vec<CallRow>,
}

/// Failed calls listed on the terminal, at most.
const FAILURES_SHOWN: usize = 5;

impl CallTally {
    pub fn add(&mut self, c: &CallRow) {
        self.calls += 1;
        self.cached += u64::from(c.cached);
        self.sent += u64::from(c.attempts);
        self.retries += u64::from(c.attempts.saturating_sub(1));
        let kind = c.kind.as_str();
        let u = self.usage.entry(kind.to_string()).or_default();
        u.calls += 1;
        if !c.error.is_empty() {
            self.failed += 1;
            u.failed += 1;
            if self.first_failures.len() < FAILURES_SHOWN {
                self.first_failures.push(c.clone());
            }
            return;
        }
        if c.cached == 0 {
            self.spent += c.cost_usd;
        }
        u.local_input_tokens += u64::from(c.local_input_tokens);
        u.local_output_tokens += u64::from(c.local_output_tokens);
        u.cost_usd += c.cost_usd;
        let p = self.paired.entry(kind.to_string()).or_default();
        if let Some(x) = c.api_input_tokens {
            u.api_input_tokens += u64::from(x);
            p.0 += u64::from(c.local_input_tokens);
        }
        if let Some(x) = c.api_output_tokens {
            u.api_output_tokens += u64::from(x);
            p.1 += u64::from(c.local_output_tokens);
        }
    }

    /// Usage per kind of call (successful calls' tokens; failures counted).
    pub fn usage(&self) -> BTreeMap<String, KindUsage> {
        let diff = |api: u64, local: u64| {
            (api > 0).then(|| round6((api as f64 - local as f64) / api as f64 * 100.0))
        };
        let mut out = self.usage.clone();
        for (k, u) in &mut out {
            let (li, lo) = self.paired.get(k).copied().unwrap_or_default();
            u.input_diff_pct = diff(u.api_input_tokens, li);
            u.output_diff_pct = diff(u.api_output_tokens, lo);
            u.cost_usd = round6(u.cost_usd);
        }
        out
    }

    /// The calls on the terminal, and per kind the API's token counts
    /// against memeval's own. Nothing without calls.
    pub fn print(&self, w: &mut impl Write) -> std::io::Result<()> {
        if self.calls == 0 {
            return Ok(());
        }
        writeln!(
            w,
            "API calls: {} ({} from the cache), {} HTTP request(s) sent ({} retried), {} failed; ${:.4} spent by this run",
            self.calls,
            self.cached,
            self.sent,
            self.retries,
            self.failed,
            round6(self.spent)
        )?;
        writeln!(
            w,
            "{:<14} {:>6} {:>6} {:>12} {:>12} {:>8} {:>12} {:>12} {:>8} {:>10}",
            "kind",
            "calls",
            "failed",
            "in (local)",
            "in (API)",
            "diff",
            "out (local)",
            "out (API)",
            "diff",
            "cost $"
        )?;
        let pct = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:+.1}%"));
        for (kind, u) in self.usage() {
            writeln!(
                w,
                "{kind:<14} {:>6} {:>6} {:>12} {:>12} {:>8} {:>12} {:>12} {:>8} {:>10.4}",
                u.calls,
                u.failed,
                u.local_input_tokens,
                u.api_input_tokens,
                pct(u.input_diff_pct),
                u.local_output_tokens,
                u.api_output_tokens,
                pct(u.output_diff_pct),
                u.cost_usd
            )?;
        }
        for c in &self.first_failures {
            let at = if c.scenario.is_empty() {
                "ahead of the replay".to_string()
            } else {
                format!("{} / {} at turn {}", c.scenario, c.strategy, c.turn)
            };
            writeln!(w, "FAILED {} call {at}: {}", c.kind.as_str(), c.error)?;
        }
        if self.failed > FAILURES_SHOWN as u64 {
            writeln!(
                w,
                "... and {} more failed call(s) in calls.csv",
                self.failed - FAILURES_SHOWN as u64
            )?;
        }
        Ok(())
    }
}

/// The header line a CSV of `T` rows starts with.
fn csv_header<T: Serialize + Default>() -> std::io::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.serialize(T::default()).map_err(std::io::Error::other)?;
    let bytes = w
        .into_inner()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |i| i + 1);
    Ok(bytes[..end].to_vec())
}

/// What writing a run's outputs gathered on the way.
pub struct Written {
    /// Per (scenario, strategy), in output order.
    pub per_job: Vec<Aggregate>,
    /// Per strategy, in configuration order.
    pub totals: Vec<Aggregate>,
    pub calls: CallTally,
    /// The registry's evictions and reloads, over every replay.
    pub evict: Counts,
    pub reload: Counts,
}

impl Written {
    /// registry.json: what the memory registry did, over every replay.
    pub fn registry_summary(&self, cap: usize) -> serde_json::Value {
        let (evict, reload) = (&self.evict, &self.reload);
        serde_json::json!({
            "max_active_users": cap,
            "evictions": evict.len(),
            "reloads": reload.len(),
            "evict_p50_us": evict.percentile(50.0),
            "evict_p95_us": evict.percentile(95.0),
            "evict_p99_us": evict.percentile(99.0),
            "reload_p50_us": reload.percentile(50.0),
            "reload_p95_us": reload.percentile(95.0),
            "reload_p99_us": reload.percentile(99.0),
        })
    }
}

/// Writes every output file into `dir` from the replays, given one at a
/// time in output order (scenario, strategy as configured, replay), so
/// that a run of any size is written without holding its rows: the tables
/// row by row, the aggregates folded as they pass.
pub fn write_outputs<M: Serialize>(
    dir: &Path,
    jobs: impl Iterator<Item = std::io::Result<JobResult>>,
    ahead: &[CallRow],
    meta: &M,
    strategies: &[String],
) -> std::io::Result<Written> {
    let csv = |name: &str| csv::Writer::from_path(dir.join(name));
    let (mut turns, mut probes) = (csv("turns.csv")?, csv("probes.csv")?);
    let (mut summaries, mut calls) = (csv("summaries.csv")?, csv("calls.csv")?);
    let mut tally = CallTally::default();
    let mut aggregator = Aggregator::new(strategies);
    let (mut evict, mut reload) = (Counts::default(), Counts::default());
    for c in ahead {
        tally.add(c);
        row(&mut calls, c)?;
    }
    for job in jobs {
        let job = job?;
        for t in &job.turns {
            row(&mut turns, t)?;
        }
        for p in &job.probes {
            row(&mut probes, p)?;
        }
        for s in &job.summaries {
            row(&mut summaries, s)?;
        }
        for c in &job.calls {
            tally.add(c);
            row(&mut calls, c)?;
        }
        job.times
            .of(Stage::Evict)
            .iter()
            .for_each(|&v| evict.add(v));
        job.times
            .of(Stage::Reload)
            .iter()
            .for_each(|&v| reload.add(v));
        aggregator.add(&job);
    }
    for mut w in [turns, probes, summaries, calls] {
        w.flush()?;
    }
    if tally.calls == 0 {
        // The header alone, so that readers find the columns.
        std::fs::write(dir.join("calls.csv"), csv_header::<CallRow>()?)?;
    }
    // How this invocation's calls were served: a rerun from the cache
    // replays the chat calls (as cached) and needs no embedding call.
    write_json(&dir.join("usage.json"), &tally.usage())?;
    let (per_job, totals) = aggregator.finish();
    write_json(
        &dir.join("results.json"),
        &ResultsFile {
            meta,
            results: &per_job,
            totals: &totals,
        },
    )?;
    write_json(&dir.join("metadata.json"), meta)?;
    Ok(Written {
        per_job,
        totals,
        calls: tally,
        evict,
        reload,
    })
}

fn row<T: Serialize>(w: &mut csv::Writer<std::fs::File>, r: &T) -> std::io::Result<()> {
    w.serialize(r).map_err(std::io::Error::other)
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    std::fs::write(path, bytes)
}

/// Which way is better for a column of the results table.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// The columns compared across strategies: name, how to read it, which
/// way is better.
pub type Metric = (&'static str, fn(&Aggregate) -> Option<f64>, Better);

/// The metrics on which a best strategy is named.
pub const METRICS: [Metric; 7] = [
    ("recall", |a| a.mean_recall, Better::Higher),
    ("final", |a| a.final_recall, Better::Higher),
    ("stale", |a| Some(a.stale as f64), Better::Lower),
    ("tokens", |a| Some(a.total_tokens as f64), Better::Lower),
    (
        "max ctx",
        |a| Some(a.max_context_tokens as f64),
        Better::Lower,
    ),
    (
        "over win",
        |a| Some(a.over_window_turns as f64),
        Better::Lower,
    ),
    ("quality", |a| a.mean_quality, Better::Higher),
];

/// For each metric, the best value among `rows` (None when no row has one).
pub fn best_values(rows: &[&Aggregate]) -> Vec<Option<f64>> {
    METRICS
        .iter()
        .map(|(_, get, better)| {
            rows.iter()
                .filter_map(|a| get(a))
                .reduce(|x, y| match better {
                    Better::Higher => x.max(y),
                    Better::Lower => x.min(y),
                })
        })
        .collect()
}

/// Recall per probe kind and strategy: a header row (`kind`, `probes`, the
/// strategies), then one row per kind. Empty where no probe has a kind.
pub fn kind_table(totals: &[Aggregate]) -> Vec<Vec<String>> {
    let mut kinds: BTreeMap<&str, u64> = BTreeMap::new();
    for a in totals {
        for (k, v) in &a.by_kind {
            let n = kinds.entry(k).or_default();
            *n = (*n).max(v.probes);
        }
    }
    if kinds.is_empty() {
        return Vec::new();
    }
    let mut rows = vec![
        ["kind".to_string(), "probes".into()]
            .into_iter()
            .chain(totals.iter().map(|a| a.strategy.clone()))
            .collect::<Vec<_>>(),
    ];
    for (k, n) in kinds {
        let mut row = vec![k.to_string(), n.to_string()];
        for a in totals {
            row.push(a.by_kind.get(k).map_or("-".into(), |v| {
                let mut cell = fmt_ratio(v.mean_recall);
                if let Some(acc) = v.answer_accuracy {
                    cell.push_str(&format!(" ({acc:.3})"));
                }
                cell
            }));
        }
        rows.push(row);
    }
    rows
}

fn fmt_ratio(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"))
}

/// The table printed at the end of a run: one row per scenario and
/// strategy, then the totals per strategy.
pub fn print_table(
    out: &mut impl Write,
    per_job: &[Aggregate],
    totals: &[Aggregate],
) -> std::io::Result<()> {
    let header = [
        "scenario",
        "strategy",
        "recall",
        "final",
        "stale",
        "tokens",
        "max ctx",
        "over win",
        "summaries",
        "quality",
    ];
    let row = |a: &Aggregate| -> Vec<String> {
        vec![
            a.scenario.clone(),
            a.strategy.clone(),
            fmt_ratio(a.mean_recall),
            fmt_ratio(a.final_recall),
            a.stale.to_string(),
            a.total_tokens.to_string(),
            a.max_context_tokens.to_string(),
            a.over_window_turns.to_string(),
            a.summaries.to_string(),
            fmt_ratio(a.mean_quality),
        ]
    };
    // The first scenarios by name, one row per strategy: a population of
    // thousands of users is in results.json, not on the terminal.
    let mut scenarios: Vec<&str> = per_job.iter().map(|a| a.scenario.as_str()).collect();
    scenarios.dedup();
    let shown = &scenarios[..scenarios.len().min(crate::chart::run::MAX_SCENARIO_CHARTS)];
    let mut rows: Vec<Vec<String>> = per_job
        .iter()
        .filter(|a| shown.contains(&a.scenario.as_str()))
        .map(row)
        .collect();
    let split = rows.len();
    // In the totals, the best strategy of each column is starred.
    let best = best_values(&totals.iter().collect::<Vec<_>>());
    rows.extend(totals.iter().map(|a| {
        let mut r = row(a);
        r[0] = "TOTAL".into();
        for ((name, get, _), b) in METRICS.iter().zip(&best) {
            if let Some(col) = header.iter().position(|h| h == name)
                && totals.len() > 1
            {
                let starred = get(a).is_some() && get(a) == *b;
                r[col].push(if starred { '*' } else { ' ' });
            }
        }
        r
    }));
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |out: &mut dyn Write, cells: &[String]| -> std::io::Result<()> {
        let mut s = String::new();
        for (c, cell) in cells.iter().enumerate() {
            if c > 0 {
                s.push_str("  ");
            }
            // Text left, numbers right.
            if c < 2 {
                s.push_str(&format!("{cell:<w$}", w = widths[c]));
            } else {
                s.push_str(&format!("{cell:>w$}", w = widths[c]));
            }
        }
        writeln!(out, "{}", s.trim_end())
    };
    let header: Vec<String> = header.iter().map(|s| s.to_string()).collect();
    line(out, &header)?;
    let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
    line(out, &rule)?;
    for (i, r) in rows.iter().enumerate() {
        if i == split {
            line(out, &rule)?;
        }
        line(out, r)?;
    }
    if shown.len() < scenarios.len() {
        writeln!(
            out,
            "the first {} of {} scenarios are listed; results.json holds them all, and the totals cover them all",
            shown.len(),
            scenarios.len()
        )?;
    }
    if totals.len() > 1 {
        writeln!(out, "* the best strategy of the column, over all scenarios")?;
    }
    if totals.iter().any(|a| !a.stages.is_empty()) {
        writeln!(
            out,
            "\nlatency per stage, p50 / p95 / p99 in µs, over all scenarios:"
        )?;
        let mut rows = vec![
            std::iter::once("stage".to_string())
                .chain(totals.iter().map(|a| a.strategy.clone()))
                .collect::<Vec<_>>(),
        ];
        for stage in Stage::ALL {
            if totals.iter().all(|a| !a.stages.contains_key(stage.name())) {
                continue;
            }
            let mut row = vec![stage.name().to_string()];
            for a in totals {
                row.push(a.stages.get(stage.name()).map_or("-".into(), |l| {
                    format!("{} / {} / {}", l.p50_us, l.p95_us, l.p99_us)
                }));
            }
            rows.push(row);
        }
        write_aligned(out, &rows)?;
    }
    let kinds = kind_table(totals);
    if !kinds.is_empty() {
        writeln!(
            out,
            "\nrecall by probe kind, over all scenarios (answer accuracy in brackets where judged):"
        )?;
        write_aligned(out, &kinds)?;
    }
    Ok(())
}

/// Rows as a table: the first column left-aligned, the others right-aligned.
fn write_aligned(out: &mut impl Write, rows: &[Vec<String>]) -> std::io::Result<()> {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let mut s = String::new();
        for (c, (cell, w)) in r.iter().zip(&widths).enumerate() {
            if c == 0 {
                s.push_str(&format!("{cell:<w$}"));
            } else {
                s.push_str(&format!("  {cell:>w$}"));
            }
        }
        writeln!(out, "{}", s.trim_end())?;
    }
    Ok(())
}
