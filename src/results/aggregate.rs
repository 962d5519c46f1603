//! results.json's aggregates: per (scenario, strategy) and per strategy.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::pool::{Aggregator, Pool};
use super::rows::JobResult;
use crate::stats::{mean, round6};

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
    /// Model calls (turns and probe asks) whose messages a provider would
    /// reject: a tool result without its call or a call without its result
    /// (see turns.csv's `malformed`).
    #[serde(default)]
    pub malformed_calls: u64,
    pub first_over_window_turn: Option<u32>,
    pub build_p50_us: u64,
    pub build_p95_us: u64,
    pub build_p99_us: u64,
    /// The scores the public benchmarks' evaluations report (see
    /// `scores`); absent where none applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<PublishedScores>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<PublishedScores>,
}

/// Means of the probes' published scores: the answers' token F1 and
/// BLEU-1 (mem0's LoCoMo evaluation) where they had a reference answer,
/// the context tokens of a probe's call, and the retrieval scores
/// (LongMemEval's, named as probes.csv's columns) where the strategy
/// retrieved.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PublishedScores {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_f1: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_bleu1: Option<f64>,
    /// Probes whose answer was scored.
    #[serde(default)]
    pub answers_scored: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_context_tokens: Option<f64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub retrieval: BTreeMap<String, f64>,
    /// The mean of the answer accuracies of the probe kinds (question
    /// types), each weighing the same: LongMemEval's task-averaged figure.
    /// (Per strategy and scenario, not per kind.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_averaged_accuracy: Option<f64>,
}

impl PublishedScores {
    /// The mean of replays' scores.
    fn mean_of<'a>(
        reps: impl Iterator<Item = Option<&'a PublishedScores>> + Clone,
    ) -> Option<PublishedScores> {
        let all: Vec<&PublishedScores> = reps.flatten().collect();
        let first = *all.first()?;
        let of = |f: &dyn Fn(&PublishedScores) -> Option<f64>| {
            mean(all.iter().filter_map(|s| f(s))).map(round6)
        };
        Some(PublishedScores {
            answer_f1: of(&|s| s.answer_f1),
            answer_bleu1: of(&|s| s.answer_bleu1),
            answers_scored: first.answers_scored,
            probe_context_tokens: of(&|s| s.probe_context_tokens),
            task_averaged_accuracy: of(&|s| s.task_averaged_accuracy),
            retrieval: first
                .retrieval
                .keys()
                .filter_map(|k| Some((k.clone(), of(&|s| s.retrieval.get(k).copied())?)))
                .collect(),
        })
    }
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
        // Every replay's count: any such call fails at a provider.
        malformed_calls: reps.iter().map(|a| a.malformed_calls).sum(),
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
                    published: PublishedScores::mean_of(
                        reps.iter()
                            .map(|a| a.by_kind.get(k).and_then(|x| x.published.as_ref())),
                    ),
                };
                (k.clone(), kind)
            })
            .collect(),
        published: PublishedScores::mean_of(reps.iter().map(|a| a.published.as_ref())),
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
    let mut per_pair: Vec<Aggregate> = jobs.iter().filter_map(|j| agg.add(j)).collect();
    let (last, totals) = agg.finish();
    per_pair.extend(last);
    (per_pair, totals)
}
