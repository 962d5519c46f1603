//! Writing a run's output files (OUTPUTS.md): the tables row by row,
//! results.json, usage.json and metadata.json.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::aggregate::Aggregate;
use super::compare::{Agreement, Comparison, Judges, Pairs};
use super::metadata::Metadata;
use super::pool::{Aggregator, Counts};
use super::rows::{CallRow, JobResult};
use crate::memory::Stage;
use crate::stats::round6;

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
    /// Per (scenario, strategy), in output order, of the first scenarios
    /// (those the terminal's table shows: every one is in results.json).
    pub shown: Vec<Aggregate>,
    /// Per strategy, in configuration order.
    pub totals: Vec<Aggregate>,
    /// Every pair of strategies compared over their shared probe asks.
    pub comparisons: Vec<Comparison>,
    /// Every pair of judges over the answers both judged.
    pub judge_agreement: Vec<Agreement>,
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
pub fn write_outputs(
    dir: &Path,
    jobs: impl Iterator<Item = std::io::Result<JobResult>>,
    ahead: &[CallRow],
    meta: &Metadata,
    strategies: &[String],
) -> std::io::Result<Written> {
    let mut pairs = Pairs::default();
    let mut judges = Judges::default();
    let judge = meta.models.get("judge").map_or("judge", String::as_str);
    let csv = |name: &str| csv::Writer::from_path(dir.join(name));
    let (mut turns, mut probes) = (csv("turns.csv")?, csv("probes.csv")?);
    let (mut summaries, mut calls) = (csv("summaries.csv")?, csv("calls.csv")?);
    let mut tally = CallTally::default();
    let mut aggregator = Aggregator::new(strategies);
    let mut results = ResultsJson::create(&dir.join("results.json"), meta)?;
    // The first scenarios' aggregates (in output order: by name).
    let (mut shown, mut scenarios): (Vec<Aggregate>, usize) = (Vec::new(), 0);
    let mut show = |a: Aggregate, results: &mut ResultsJson| -> std::io::Result<()> {
        results.result(&a)?;
        if scenarios <= super::read::MAX_SCENARIO_CHARTS
            && shown.last().is_none_or(|s| s.scenario != a.scenario)
        {
            scenarios += 1;
        }
        if scenarios <= super::read::MAX_SCENARIO_CHARTS {
            shown.push(a);
        }
        Ok(())
    };
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
            pairs.add(p);
            judges.add(judge, p);
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
        if let Some(a) = aggregator.add(&job) {
            show(a, &mut results)?;
        }
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
    let (last, totals) = aggregator.finish();
    if let Some(a) = last {
        show(a, &mut results)?;
    }
    let comparisons = pairs.compare(strategies, meta.seed);
    let judge_agreement = judges.finish();
    results.finish(&totals, &comparisons, &judge_agreement)?;
    write_json(&dir.join("metadata.json"), meta)?;
    Ok(Written {
        shown,
        totals,
        comparisons,
        judge_agreement,
        calls: tally,
        evict,
        reload,
    })
}

fn row<T: Serialize>(w: &mut csv::Writer<std::fs::File>, r: &T) -> std::io::Result<()> {
    w.serialize(r).map_err(std::io::Error::other)
}

/// results.json, written as the replays pass (laid out as `serde_json`'s
/// pretty printer lays out the whole): the run's metadata first, each
/// (scenario, strategy)'s aggregate as soon as its replays have passed (a
/// population's are tens of MB: never all in memory), then what needs every
/// replay.
struct ResultsJson {
    w: std::io::BufWriter<std::fs::File>,
    results: usize,
}

impl ResultsJson {
    fn create(path: &Path, meta: &impl Serialize) -> std::io::Result<ResultsJson> {
        let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
        w.write_all(b"{")?;
        let mut file = ResultsJson { w, results: 0 };
        file.field("meta", meta, true)?;
        file.w.write_all(b",\n  \"results\": [")?;
        Ok(file)
    }

    fn result(&mut self, a: &impl Serialize) -> std::io::Result<()> {
        if self.results > 0 {
            self.w.write_all(b",")?;
        }
        self.w.write_all(b"\n    ")?;
        self.results += 1;
        indented(&mut self.w, a, b"\n    ")
    }

    fn finish<T: Serialize, C: Serialize, J: Serialize>(
        mut self,
        totals: &[T],
        comparisons: &[C],
        judge_agreement: &[J],
    ) -> std::io::Result<()> {
        self.w
            .write_all(if self.results > 0 { b"\n  ]" } else { b"]" })?;
        self.field("totals", totals, false)?;
        // Every pair of strategies over their shared probe asks, and every
        // pair of judges over the answers both judged
        // (`openai.extra_judges`): where there are any.
        if !comparisons.is_empty() {
            self.field("comparisons", comparisons, false)?;
        }
        if !judge_agreement.is_empty() {
            self.field("judge_agreement", judge_agreement, false)?;
        }
        self.w.write_all(b"\n}\n")?;
        self.w.flush()
    }

    fn field<T: Serialize + ?Sized>(
        &mut self,
        key: &str,
        value: &T,
        first: bool,
    ) -> std::io::Result<()> {
        if !first {
            self.w.write_all(b",")?;
        }
        write!(self.w, "\n  \"{key}\": ")?;
        indented(&mut self.w, value, b"\n  ")
    }
}

/// `value` pretty-printed, each new line begun with `newline` (a string's
/// line breaks are escaped: every one in the output is the printer's).
fn indented<T: Serialize + ?Sized>(
    w: &mut impl Write,
    value: &T,
    newline: &[u8],
) -> std::io::Result<()> {
    struct Indent<'a, W> {
        w: &'a mut W,
        newline: &'a [u8],
    }
    impl<W: Write> Write for Indent<'_, W> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            for (i, line) in buf.split(|&b| b == b'\n').enumerate() {
                if i > 0 {
                    self.w.write_all(self.newline)?;
                }
                self.w.write_all(line)?;
            }
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            self.w.flush()
        }
    }
    serde_json::to_writer_pretty(Indent { w, newline }, value).map_err(std::io::Error::other)
}

/// Written as it is serialized (a population's results.json is tens of
/// MB: never held whole in memory).
fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    serde_json::to_writer_pretty(&mut w, value).map_err(std::io::Error::other)?;
    w.write_all(b"\n")?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// results.json as one pretty-printed whole: what [`ResultsJson`]
    /// writes piece by piece.
    #[derive(Serialize)]
    struct Whole<'a> {
        meta: &'a serde_json::Value,
        results: &'a [serde_json::Value],
        totals: &'a [serde_json::Value],
        #[serde(skip_serializing_if = "<[_]>::is_empty")]
        comparisons: &'a [serde_json::Value],
        #[serde(skip_serializing_if = "<[_]>::is_empty")]
        judge_agreement: &'a [serde_json::Value],
    }

    #[test]
    fn results_written_as_they_pass_are_laid_out_as_the_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.json");
        let meta = serde_json::json!({"seed": 7, "scenarios": [{"name": "a\nb", "nested": {"x": [1, 2], "e": []}}], "empty": {}});
        let item = |i: u64| serde_json::json!({"scenario": format!("s{i}"), "by_kind": {"k": {"n": i}}, "list": [i, [], {}]});
        for n in [0, 1, 3] {
            for (c, j) in [(0, 0), (2, 0), (0, 1), (1, 2)] {
                let results: Vec<_> = (0..n).map(item).collect();
                let totals: Vec<_> = (0..2).map(item).collect();
                let comparisons: Vec<_> = (0..c).map(item).collect();
                let judges: Vec<_> = (0..j).map(item).collect();
                let mut file = ResultsJson::create(&path, &meta).unwrap();
                for r in &results {
                    file.result(r).unwrap();
                }
                file.finish(&totals, &comparisons, &judges).unwrap();
                let mut whole = serde_json::to_string_pretty(&Whole {
                    meta: &meta,
                    results: &results,
                    totals: &totals,
                    comparisons: &comparisons,
                    judge_agreement: &judges,
                })
                .unwrap();
                whole.push('\n');
                assert_eq!(
                    std::fs::read_to_string(&path).unwrap(),
                    whole,
                    "{n} results, {c} comparisons, {j} agreements"
                );
            }
        }
    }
}
