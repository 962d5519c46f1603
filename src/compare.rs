//! Paired comparisons of strategies: for every pair of strategies of a
//! run, the difference in recall, answer accuracy and context tokens over
//! the probe asks they share (the same scenario, replay, probe and turn),
//! with a 95% confidence interval from a paired bootstrap that resamples
//! whole scenarios (the asks of one conversation are not independent), and
//! an exact McNemar test for answer correctness. Seeded by the run's seed:
//! the same run gives the same intervals.

use std::collections::BTreeMap;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::results::ProbeRow;
use crate::stats::round6;

/// Bootstrap resamples.
pub const RESAMPLES: usize = 2000;

/// One metric's paired difference, first strategy minus second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    /// Asks where both strategies have the metric.
    pub asks: u64,
    pub diff: f64,
    /// The 95% interval (2.5th and 97.5th percentiles of the resampled
    /// differences).
    pub ci_low: f64,
    pub ci_high: f64,
}

/// Answer correctness compared: the difference, and McNemar's exact test
/// on the asks where exactly one of the two was right.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answers {
    #[serde(flatten)]
    pub difference: Difference,
    /// Asks the first strategy answered right and the second wrong, and
    /// the reverse.
    pub first_only: u64,
    pub second_only: u64,
    /// Two-sided exact p-value.
    pub mcnemar_p: f64,
}

/// Two strategies compared over their shared probe asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub first: String,
    pub second: String,
    /// What the bootstrap resampled: `scenarios` (clustered), or `probe
    /// asks` where the run has a single scenario (no spread between
    /// conversations to measure; the interval is then too narrow to trust
    /// across conversations).
    pub resampled: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recall: Option<Difference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer_accuracy: Option<Answers>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_tokens: Option<Difference>,
}

/// One probe ask's outcomes for one strategy.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    recall: Option<f64>,
    correct: Option<u8>,
    tokens: f64,
}

/// The outcomes of a run's probe asks, gathered one row at a time.
#[derive(Debug, Default)]
pub struct Pairs {
    /// Scenario names, by first appearance.
    scenarios: BTreeMap<String, usize>,
    /// Per ask (scenario index, replay, probe id, turn), per strategy.
    asks: BTreeMap<(usize, u32, String, u32), BTreeMap<String, Outcome>>,
}

impl Pairs {
    pub fn add(&mut self, p: &ProbeRow) {
        let n = self.scenarios.len();
        let s = *self.scenarios.entry(p.scenario.clone()).or_insert(n);
        self.asks
            .entry((s, p.repeat, p.probe_id.clone(), p.turn))
            .or_default()
            .insert(
                p.strategy.clone(),
                Outcome {
                    recall: p.recall,
                    correct: p.answer_correct,
                    tokens: f64::from(p.context_tokens),
                },
            );
    }

    /// Every pair of `strategies` (in their order), compared; `seed` seeds
    /// the bootstrap.
    pub fn compare(&self, strategies: &[String], seed: u64) -> Vec<Comparison> {
        let mut out = Vec::new();
        for (i, a) in strategies.iter().enumerate() {
            for b in &strategies[i + 1..] {
                if let Some(c) = self.pair(a, b, seed) {
                    out.push(c);
                }
            }
        }
        out
    }

    fn pair(&self, a: &str, b: &str, seed: u64) -> Option<Comparison> {
        let shared: Vec<(usize, Outcome, Outcome)> = self
            .asks
            .iter()
            .filter_map(|((s, ..), by)| Some((*s, *by.get(a)?, *by.get(b)?)))
            .collect();
        if shared.is_empty() {
            return None;
        }
        let clustered = shared.iter().any(|x| x.0 != shared[0].0);
        // Each metric: per ask, the cluster and the difference.
        let values = |f: &dyn Fn(&Outcome) -> Option<f64>| -> Vec<(usize, f64)> {
            shared
                .iter()
                .enumerate()
                .filter_map(|(k, (s, x, y))| {
                    let cluster = if clustered { *s } else { k };
                    Some((cluster, f(x)? - f(y)?))
                })
                .collect()
        };
        let recall = values(&|o| o.recall);
        let correct = values(&|o| o.correct.map(f64::from));
        let tokens = values(&|o| Some(o.tokens));
        let answers = (!correct.is_empty()).then(|| {
            let first_only = correct.iter().filter(|(_, d)| *d > 0.0).count() as u64;
            let second_only = correct.iter().filter(|(_, d)| *d < 0.0).count() as u64;
            Answers {
                difference: bootstrap(&correct, seed),
                first_only,
                second_only,
                mcnemar_p: round6(mcnemar_exact(first_only, second_only)),
            }
        });
        Some(Comparison {
            first: a.to_string(),
            second: b.to_string(),
            resampled: if clustered { "scenarios" } else { "probe asks" }.to_string(),
            recall: (!recall.is_empty()).then(|| bootstrap(&recall, seed)),
            answer_accuracy: answers,
            context_tokens: Some(bootstrap(&tokens, seed)),
        })
    }
}

/// The mean of `diffs` (cluster, difference) and its 95% percentile
/// interval over `RESAMPLES` resamples of the clusters with replacement
/// (each resample's mean pools the asks of the clusters drawn).
pub fn bootstrap(diffs: &[(usize, f64)], seed: u64) -> Difference {
    // Per cluster: sum and count, in cluster order.
    let mut by: BTreeMap<usize, (f64, f64)> = BTreeMap::new();
    for &(c, d) in diffs {
        let e = by.entry(c).or_default();
        e.0 += d;
        e.1 += 1.0;
    }
    let clusters: Vec<(f64, f64)> = by.into_values().collect();
    let (sum, n) = clusters
        .iter()
        .fold((0.0, 0.0), |acc, c| (acc.0 + c.0, acc.1 + c.1));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let (mut s, mut k) = (0.0, 0.0);
            for _ in 0..clusters.len() {
                let c = clusters[rng.random_range(0..clusters.len())];
                s += c.0;
                k += c.1;
            }
            s / k
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * RESAMPLES as f64).ceil() as usize).clamp(1, RESAMPLES) - 1];
    Difference {
        asks: diffs.len() as u64,
        diff: round6(sum / n),
        ci_low: round6(at(0.025)),
        ci_high: round6(at(0.975)),
    }
}

/// McNemar's exact test: the two-sided p-value of `b` asks right for one
/// only and `c` for the other only, under equal chances (a binomial with
/// p = 1/2 over b + c).
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    // P(X <= min(b, c)) for X ~ Binomial(n, 1/2), summed in logs.
    let mut log_pmf = -(n as f64) * std::f64::consts::LN_2;
    let mut tail = 0.0;
    for i in 0..=b.min(c) {
        tail += log_pmf.exp();
        log_pmf += ((n - i) as f64).ln() - ((i + 1) as f64).ln();
    }
    (2.0 * tail).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn mcnemar_matches_hand_computed_binomial_tails() {
        // b = 0, c = 5: 2 * (1/2)^5 = 0.0625.
        assert!(close(mcnemar_exact(0, 5), 0.0625));
        // b = 1, c = 4: 2 * (1 + 5) / 32 = 0.375.
        assert!(close(mcnemar_exact(1, 4), 0.375));
        // b = 2, c = 8: 2 * (1 + 10 + 45) / 1024 = 0.109375.
        assert!(close(mcnemar_exact(2, 8), 0.109375));
        // Balanced: capped at 1.
        assert_eq!(mcnemar_exact(3, 3), 1.0);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // Large n stays finite: b = 400, c = 600 is far in the tail.
        let p = mcnemar_exact(400, 600);
        assert!(p > 0.0 && p < 1e-9, "{p}");
    }

    #[test]
    fn the_bootstrap_resamples_clusters_and_is_seeded() {
        // Every cluster the same difference: the interval is that point.
        let same: Vec<(usize, f64)> = (0..6).map(|c| (c, 0.25)).collect();
        let d = bootstrap(&same, 7);
        assert_eq!((d.diff, d.ci_low, d.ci_high, d.asks), (0.25, 0.25, 0.25, 6));
        // Two clusters of very different sizes: the mean pools asks, and
        // the interval spans what resampling clusters can give (all of
        // cluster 0: 1.0; all of cluster 1: 0.0).
        let mut v: Vec<(usize, f64)> = vec![(0, 1.0); 3];
        v.extend(vec![(1, 0.0); 1]);
        let d = bootstrap(&v, 7);
        assert_eq!(d.diff, 0.75);
        assert_eq!((d.ci_low, d.ci_high), (0.0, 1.0));
        // The same seed, the same interval; another seed may differ.
        let spread: Vec<(usize, f64)> = (0..40)
            .map(|c| (c / 4, (c % 7) as f64 / 7.0 - 0.3))
            .collect();
        assert_eq!(bootstrap(&spread, 1), bootstrap(&spread, 1));
        let d = bootstrap(&spread, 1);
        assert!(d.ci_low < d.diff && d.diff < d.ci_high, "{d:?}");
    }

    #[test]
    fn pairs_compare_only_the_asks_both_strategies_have() {
        let row =
            |scenario: &str, strategy: &str, probe: &str, recall: f64, correct: u8| ProbeRow {
                scenario: scenario.into(),
                strategy: strategy.into(),
                repeat: 1,
                probe_id: probe.into(),
                turn: 10,
                recall: Some(recall),
                answer_correct: Some(correct),
                context_tokens: 100,
                ..ProbeRow::default()
            };
        let mut pairs = Pairs::default();
        for (s, p, a, b) in [
            ("x", "p1", 1.0, 0.0),
            ("x", "p2", 1.0, 1.0),
            ("y", "p1", 0.5, 0.0),
        ] {
            pairs.add(&row(s, "hybrid", p, a, 1));
            pairs.add(&row(s, "summary", p, b, u8::from(b > 0.0)));
        }
        // An ask only one strategy has is left out.
        pairs.add(&row("y", "hybrid", "p9", 1.0, 1));
        let c = &pairs.compare(&["hybrid".into(), "summary".into()], 3)[0];
        assert_eq!(c.resampled, "scenarios");
        let r = c.recall.as_ref().unwrap();
        // (1 + 0 + 0.5) / 3.
        assert_eq!((r.asks, r.diff), (3, 0.5));
        let a = c.answer_accuracy.as_ref().unwrap();
        assert_eq!((a.first_only, a.second_only), (2, 0));
        assert!(close(a.mcnemar_p, 0.5));
        assert_eq!(c.context_tokens.as_ref().unwrap().diff, 0.0);
    }
}
