//! Aggregates built one replay at a time, so that a run of any number of
//! users is summarized without holding its rows: [`Pool`] folds replays
//! into one aggregate, [`Aggregator`] folds a run's replays (in output
//! order) into results.json's per-pair aggregates and per-strategy totals,
//! and [`Counts`] gives exact percentiles with memory bounded by the number
//! of distinct values rather than by the number of values.

use std::collections::BTreeMap;

use super::{
    Aggregate, KindAggregate, ProbeRow, PublishedScores, RETRIEVAL_COLUMNS, StageLatency, combine,
};
use crate::memory::Stage;
use crate::results::JobResult;
use crate::stats::round6;

/// Whole numbers counted by value: exact nearest-rank percentiles of
/// millions of latencies or context sizes in a few kilobytes.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    by_value: BTreeMap<u64, u64>,
    n: u64,
    sum: u64,
}

impl Counts {
    pub fn add(&mut self, v: u64) {
        *self.by_value.entry(v).or_default() += 1;
        self.n += 1;
        self.sum += v;
    }

    pub fn len(&self) -> u64 {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn max(&self) -> u64 {
        self.by_value.keys().next_back().copied().unwrap_or(0)
    }

    /// The mean (exact: the sum is kept whole).
    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum as f64 / self.n as f64)
    }

    /// Nearest-rank percentile, as [`crate::stats::percentile`]; 0 when empty.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.n == 0 {
            return 0;
        }
        let rank = (((p / 100.0) * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0;
        for (&v, &c) in &self.by_value {
            seen += c;
            if seen >= rank {
                return v;
            }
        }
        unreachable!("the counts add up to n")
    }
}

/// A running mean, summed in the order values come (as a pooled mean).
#[derive(Debug, Clone, Copy, Default)]
struct Mean {
    sum: f64,
    n: u64,
}

impl Mean {
    fn add(&mut self, v: Option<f64>) {
        if let Some(v) = v {
            self.sum += v;
            self.n += 1;
        }
    }

    fn get(&self) -> Option<f64> {
        self.get_raw().map(round6)
    }

    /// The mean unrounded, for means of means.
    fn get_raw(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }
}

#[derive(Debug, Clone, Default)]
struct KindPool {
    probes: u64,
    recall: Mean,
    answers: Mean,
    published: Published,
}

/// The published scores of probes, pooled.
#[derive(Debug, Clone, Default)]
struct Published {
    f1: Mean,
    bleu1: Mean,
    contexts: Mean,
    retrieval: [Mean; 12],
}

impl Published {
    fn add(&mut self, p: &ProbeRow) {
        self.f1.add(p.answer_f1);
        self.bleu1.add(p.answer_bleu1);
        self.contexts.add(Some(f64::from(p.context_tokens)));
        for (m, v) in self.retrieval.iter_mut().zip(p.retrieval()) {
            m.add(v);
        }
    }

    fn get(&self) -> Option<PublishedScores> {
        let s = PublishedScores {
            answer_f1: self.f1.get(),
            answer_bleu1: self.bleu1.get(),
            answers_scored: self.f1.n,
            probe_context_tokens: self.contexts.get(),
            task_averaged_accuracy: None,
            retrieval: RETRIEVAL_COLUMNS
                .iter()
                .zip(&self.retrieval)
                .filter_map(|(name, m)| Some((name.to_string(), m.get()?)))
                .collect(),
        };
        (s.probe_context_tokens.is_some()).then_some(s)
    }
}

/// Replays folded into one aggregate: pooled over their turns, probes and
/// summaries, as if their rows were one table.
#[derive(Debug, Clone, Default)]
pub struct Pool {
    replays: u64,
    messages: u64,
    probes: u64,
    recall: Mean,
    final_recall: Mean,
    auc: Mean,
    stale: u64,
    leaked: u64,
    duplicated: u64,
    total_tokens: u64,
    /// Context sizes and build times of the model calls.
    contexts: Counts,
    builds: Counts,
    summaries: u64,
    quality: Mean,
    retention: Mean,
    answers: Mean,
    position: Mean,
    cost: f64,
    eval_cost: f64,
    failed_calls: u64,
    unjudged: u64,
    over_budget: u64,
    over_window: u64,
    malformed: u64,
    first_over_window: Option<u32>,
    by_kind: BTreeMap<String, KindPool>,
    published: Published,
    timed: bool,
    stages: [Counts; Stage::ALL.len()],
}

impl Pool {
    pub fn add(&mut self, j: &JobResult) {
        if self.replays == 0 {
            self.first_over_window = j.turns.iter().find(|t| t.over_window == 1).map(|t| t.turn);
        }
        self.replays += 1;
        self.messages += j.turns.len() as u64;
        let last = j.turns.last();
        self.total_tokens += last.map_or(0, |t| t.cumulative_tokens);
        self.cost += last.map_or(0.0, |t| t.cost_usd);
        for t in &j.turns {
            if t.call == 1 {
                self.contexts.add(u64::from(t.context_tokens));
                self.builds.add(t.build_us);
                self.malformed += u64::from(t.malformed > 0);
            }
            self.over_budget += u64::from(t.over_budget);
            self.over_window += u64::from(t.over_window);
        }
        // Recall over the turns at which probes were asked: each turn weighs
        // the same, however many probes it had.
        let mut by_turn: BTreeMap<u32, Mean> = BTreeMap::new();
        for p in &j.probes {
            self.probes += 1;
            self.recall.add(p.recall);
            if last.is_some_and(|t| t.turn == p.turn) {
                self.final_recall.add(p.recall);
            }
            if p.recall.is_some() {
                by_turn.entry(p.turn).or_default().add(p.recall);
            }
            self.stale += u64::from(p.stale);
            self.leaked += u64::from(p.leaked);
            self.duplicated += u64::from(p.duplicated);
            self.malformed += u64::from(p.malformed > 0);
            let answer = p.answer_correct.map(f64::from);
            self.answers.add(answer);
            self.position.add(p.fact_position);
            self.published.add(p);
            if !p.kind.is_empty() {
                let k = self.by_kind.entry(p.kind.clone()).or_default();
                k.probes += 1;
                k.recall.add(p.recall);
                k.answers.add(answer);
                k.published.add(p);
            }
        }
        let mut auc = Mean::default();
        for m in by_turn.values() {
            auc.add(m.get_raw());
        }
        self.auc.add(auc.get_raw());
        for s in &j.summaries {
            self.summaries += 1;
            self.quality.add(s.quality);
            self.retention.add(s.fact_retention);
            self.unjudged += u64::from(s.quality.is_none());
        }
        for c in &j.calls {
            if !c.kind.is_chatbot() {
                self.eval_cost += c.cost_usd;
            }
            self.failed_calls += u64::from(!c.error.is_empty());
        }
        self.timed |= j.times.timed;
        for (pool, values) in self.stages.iter_mut().zip(&j.times.us) {
            values.iter().for_each(|&v| pool.add(v));
        }
    }

    pub fn finish(&self, scenario: &str, strategy: &str) -> Aggregate {
        let stages = if self.timed {
            Stage::ALL
                .iter()
                .zip(&self.stages)
                .filter(|(_, c)| !c.is_empty())
                .map(|(stage, c)| {
                    let latency = StageLatency {
                        count: c.len(),
                        p50_us: c.percentile(50.0),
                        p95_us: c.percentile(95.0),
                        p99_us: c.percentile(99.0),
                    };
                    (stage.name().to_string(), latency)
                })
                .collect()
        } else {
            BTreeMap::new()
        };
        Aggregate {
            scenario: scenario.to_string(),
            strategy: strategy.to_string(),
            repeats: 1,
            messages: self.messages,
            probes: self.probes,
            mean_recall: self.recall.get(),
            final_recall: self.final_recall.get(),
            recall_auc: self.auc.get(),
            stale: self.stale,
            leaked: self.leaked,
            duplicated: self.duplicated,
            total_tokens: self.total_tokens,
            mean_context_tokens: round6(self.contexts.mean().unwrap_or(0.0)),
            p95_context_tokens: self.contexts.percentile(95.0),
            max_context_tokens: self.contexts.max(),
            summaries: self.summaries,
            mean_quality: self.quality.get(),
            mean_fact_retention: self.retention.get(),
            answer_accuracy: self.answers.get(),
            mean_fact_position: self.position.get(),
            cost_usd: round6(self.cost),
            eval_cost_usd: round6(self.eval_cost),
            failed_calls: self.failed_calls,
            unjudged_summaries: self.unjudged,
            over_budget_turns: self.over_budget,
            over_window_turns: self.over_window,
            malformed_calls: self.malformed,
            first_over_window_turn: if self.replays == 1 {
                self.first_over_window
            } else {
                None
            },
            build_p50_us: self.builds.percentile(50.0),
            build_p95_us: self.builds.percentile(95.0),
            build_p99_us: self.builds.percentile(99.0),
            published: self.published.get().map(|mut p| {
                let mut kinds = Mean::default();
                for k in self.by_kind.values() {
                    kinds.add(k.answers.get_raw());
                }
                p.task_averaged_accuracy = kinds.get();
                p
            }),
            by_kind: self
                .by_kind
                .iter()
                .map(|(k, v)| {
                    let kind = KindAggregate {
                        probes: v.probes,
                        mean_recall: v.recall.get(),
                        answer_accuracy: v.answers.get(),
                        published: v.published.get(),
                    };
                    (k.clone(), kind)
                })
                .collect(),
            stages,
            samples: None,
        }
    }
}

/// A run's replays, given one at a time in output order (by scenario, then
/// strategy as configured, then replay), folded into the aggregates of
/// results.json: per (scenario, strategy), each handed back as soon as its
/// pair's replays have all passed, and per strategy over every scenario.
/// Holds the replays of one pair at most, never their rows.
pub struct Aggregator<'a> {
    strategies: &'a [String],
    /// Aggregates of the replays of the pair being read.
    current: Vec<Aggregate>,
    /// Per strategy, per replay number.
    totals: Vec<Vec<Pool>>,
}

impl<'a> Aggregator<'a> {
    pub fn new(strategies: &'a [String]) -> Aggregator<'a> {
        Aggregator {
            strategies,
            current: Vec::new(),
            totals: vec![Vec::new(); strategies.len()],
        }
    }

    /// Folds in one replay; returns the aggregate of the previous pair
    /// where this replay begins another.
    pub fn add(&mut self, j: &JobResult) -> Option<Aggregate> {
        let done = match self.current.first() {
            Some(c) if c.scenario != j.scenario || c.strategy != j.strategy => {
                Some(combine(std::mem::take(&mut self.current)))
            }
            _ => None,
        };
        let mut one = Pool::default();
        one.add(j);
        self.current.push(one.finish(&j.scenario, &j.strategy));
        if let Some(k) = self.strategies.iter().position(|s| *s == j.strategy) {
            let by_repeat = &mut self.totals[k];
            let r = j.repeat.max(1) as usize;
            if by_repeat.len() < r {
                by_repeat.resize_with(r, Pool::default);
            }
            by_repeat[r - 1].add(j);
        }
        done
    }

    /// The last pair's aggregate, and per-strategy totals in configuration
    /// order (replays combined).
    pub fn finish(mut self) -> (Option<Aggregate>, Vec<Aggregate>) {
        let last = (!self.current.is_empty()).then(|| combine(std::mem::take(&mut self.current)));
        let repeats = self.totals.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let totals = self
            .strategies
            .iter()
            .zip(&mut self.totals)
            .map(|(s, pools)| {
                pools.resize_with(repeats, Pool::default);
                combine(pools.iter().map(|p| p.finish("*", s)).collect())
            })
            .collect();
        (last, totals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::percentile;

    #[test]
    fn counts_give_the_percentiles_of_the_values() {
        let values: Vec<u64> = (0..1000u64).map(|i| (i * 7919) % 263).collect();
        let mut c = Counts::default();
        values.iter().for_each(|&v| c.add(v));
        for p in [0.0, 1.0, 50.0, 95.0, 99.0, 99.9, 100.0] {
            assert_eq!(c.percentile(p), percentile(&values, p), "p{p}");
        }
        assert_eq!(c.max(), *values.iter().max().unwrap());
        assert_eq!(c.len(), 1000);
        let sum: u64 = values.iter().sum();
        assert_eq!(c.mean(), Some(sum as f64 / 1000.0));
        assert_eq!(Counts::default().percentile(50.0), 0);
        assert_eq!(Counts::default().mean(), None);
    }
}
