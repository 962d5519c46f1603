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

use super::ProbeRow;
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

/// The three metrics, in this order.
const METRICS: usize = 3;

/// One pair's differences, gathered scenario by scenario.
#[derive(Debug, Default)]
struct PairSums {
    /// Per metric, per scenario: (sum of differences, asks).
    clusters: [Vec<(f64, f64)>; METRICS],
    /// Per metric, the first scenario's differences ask by ask (for a run
    /// of one scenario, whose asks are resampled instead).
    first: [Vec<f64>; METRICS],
    /// Asks only the first strategy answered right, and only the second.
    first_only: u64,
    second_only: u64,
}

/// The outcomes of a run's probe asks, given one row at a time in output
/// order (a scenario's rows, of every strategy, together). Memory holds one
/// scenario's asks and, per pair of strategies, a few sums per scenario.
#[derive(Debug, Default)]
pub struct Pairs {
    scenario: Option<String>,
    scenarios: usize,
    /// The current scenario's asks (replay, probe id, turn), per strategy.
    asks: BTreeMap<(u32, String, u32), BTreeMap<String, Outcome>>,
    /// Per pair (first, second), in the order pairs are met.
    sums: BTreeMap<(String, String), PairSums>,
}

impl Pairs {
    pub fn add(&mut self, p: &ProbeRow) {
        if self.scenario.as_deref() != Some(p.scenario.as_str()) {
            self.fold();
            self.scenario = Some(p.scenario.clone());
        }
        self.asks
            .entry((p.repeat, p.probe_id.clone(), p.turn))
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

    /// Folds the current scenario's asks into every pair's sums.
    fn fold(&mut self) {
        if self.scenario.is_none() {
            return;
        }
        let asks = std::mem::take(&mut self.asks);
        let mut strategies: Vec<&String> = asks.values().flat_map(|by| by.keys()).collect();
        strategies.sort_unstable();
        strategies.dedup();
        for (i, a) in strategies.iter().enumerate() {
            for b in &strategies[i + 1..] {
                let sums = self.sums.entry(((*a).clone(), (*b).clone())).or_default();
                let mut scenario = [(0.0, 0.0); METRICS];
                for by in asks.values() {
                    let (Some(x), Some(y)) = (by.get(*a), by.get(*b)) else {
                        continue;
                    };
                    let diffs = [
                        x.recall.zip(y.recall).map(|(x, y)| x - y),
                        x.correct
                            .zip(y.correct)
                            .map(|(x, y)| f64::from(x) - f64::from(y)),
                        Some(x.tokens - y.tokens),
                    ];
                    for (m, d) in diffs.into_iter().enumerate() {
                        let Some(d) = d else { continue };
                        scenario[m].0 += d;
                        scenario[m].1 += 1.0;
                        if self.scenarios == 0 {
                            sums.first[m].push(d);
                        }
                        if m == 1 {
                            sums.first_only += u64::from(d > 0.0);
                            sums.second_only += u64::from(d < 0.0);
                        }
                    }
                }
                for (m, c) in scenario.into_iter().enumerate() {
                    if c.1 > 0.0 {
                        sums.clusters[m].push(c);
                    }
                }
            }
        }
        self.scenarios += 1;
    }

    /// Every pair of `strategies` (in their order), compared; `seed` seeds
    /// the bootstrap.
    pub fn compare(mut self, strategies: &[String], seed: u64) -> Vec<Comparison> {
        self.fold();
        let clustered = self.scenarios > 1;
        let mut out = Vec::new();
        for (i, a) in strategies.iter().enumerate() {
            for b in &strategies[i + 1..] {
                // Sums are kept under the names in sorted order.
                let (key, flip) = if a <= b {
                    ((a.clone(), b.clone()), 1.0)
                } else {
                    ((b.clone(), a.clone()), -1.0)
                };
                let Some(sums) = self.sums.get(&key) else {
                    continue;
                };
                let metric = |m: usize| -> Option<Difference> {
                    let clusters: Vec<(f64, f64)> = if clustered {
                        sums.clusters[m].iter().map(|c| (flip * c.0, c.1)).collect()
                    } else {
                        sums.first[m].iter().map(|d| (flip * d, 1.0)).collect()
                    };
                    (!clusters.is_empty()).then(|| bootstrap(&clusters, seed))
                };
                let (first_only, second_only) = if flip > 0.0 {
                    (sums.first_only, sums.second_only)
                } else {
                    (sums.second_only, sums.first_only)
                };
                out.push(Comparison {
                    first: a.clone(),
                    second: b.clone(),
                    resampled: if clustered { "scenarios" } else { "probe asks" }.to_string(),
                    recall: metric(0),
                    answer_accuracy: metric(1).map(|difference| Answers {
                        difference,
                        first_only,
                        second_only,
                        mcnemar_p: round6(mcnemar_exact(first_only, second_only)),
                    }),
                    context_tokens: metric(2),
                });
            }
        }
        out
    }
}

/// The pooled mean of `clusters` (each a sum of differences and its
/// count) and its 95% percentile interval over `RESAMPLES` resamples of
/// the clusters with replacement (each resample's mean pools the asks of
/// the clusters drawn).
pub fn bootstrap(clusters: &[(f64, f64)], seed: u64) -> Difference {
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
        asks: n as u64,
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
        let same: Vec<(f64, f64)> = (0..6).map(|_| (0.25, 1.0)).collect();
        let d = bootstrap(&same, 7);
        assert_eq!((d.diff, d.ci_low, d.ci_high, d.asks), (0.25, 0.25, 0.25, 6));
        // Two clusters of very different sizes: three asks of 1.0, one of
        // 0.0. The mean pools asks, and the interval spans what resampling
        // clusters can give (cluster 0 twice: 1.0; cluster 1 twice: 0.0).
        let d = bootstrap(&[(3.0, 3.0), (0.0, 1.0)], 7);
        assert_eq!(d.diff, 0.75);
        assert_eq!((d.ci_low, d.ci_high), (0.0, 1.0));
        // The same seed, the same interval; another seed may differ.
        let spread: Vec<(f64, f64)> = (0..10)
            .map(|c| ((c % 7) as f64 / 7.0 - 0.3, 1.0 + (c % 3) as f64))
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
        // (Named in the configuration's order, whatever the names' order.)
        assert_eq!((c.first.as_str(), c.second.as_str()), ("hybrid", "summary"));
        assert_eq!(c.resampled, "scenarios");
        let r = c.recall.as_ref().unwrap();
        // (1 + 0 + 0.5) / 3.
        assert_eq!((r.asks, r.diff), (3, 0.5));
        let a = c.answer_accuracy.as_ref().unwrap();
        assert_eq!((a.first_only, a.second_only), (2, 0));
        assert!(close(a.mcnemar_p, 0.5));
        assert_eq!(c.context_tokens.as_ref().unwrap().diff, 0.0);
    }

    #[test]
    fn pairs_follow_the_configured_order_and_one_scenario_resamples_asks() {
        let row = |strategy: &str, probe: &str, recall: f64| ProbeRow {
            scenario: "only".into(),
            strategy: strategy.into(),
            repeat: 1,
            probe_id: probe.into(),
            turn: 4,
            recall: Some(recall),
            answer_correct: Some(u8::from(recall > 0.5)),
            context_tokens: 10,
            ..ProbeRow::default()
        };
        let mut pairs = Pairs::default();
        for (p, w, s) in [
            ("a", 1.0, 0.0),
            ("b", 1.0, 1.0),
            ("c", 0.0, 1.0),
            ("d", 1.0, 0.0),
        ] {
            pairs.add(&row("window", p, w));
            pairs.add(&row("summary", p, s));
        }
        // "window" is configured first, though "summary" sorts first.
        let c = &pairs.compare(&["window".into(), "summary".into()], 3)[0];
        assert_eq!((c.first.as_str(), c.second.as_str()), ("window", "summary"));
        assert_eq!(c.resampled, "probe asks");
        // (1 + 0 - 1 + 1) / 4.
        assert_eq!(c.recall.as_ref().unwrap().diff, 0.25);
        let a = c.answer_accuracy.as_ref().unwrap();
        assert_eq!((a.first_only, a.second_only), (2, 1));
        // b = 2, c = 1: 2 * (1 + 3) / 8 = 1, capped.
        assert_eq!(a.mcnemar_p, 1.0);
    }
}

/// Two judges' verdicts on the same answers: how often they agree, and
/// Cohen's kappa (agreement beyond what their rates of "correct" give by
/// chance; empty where chance agreement is certain).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    pub first: String,
    pub second: String,
    /// Answers both judged.
    pub answers: u64,
    pub agreement: f64,
    pub kappa: Option<f64>,
    /// Answers the first judged correct and the second not, and the
    /// reverse.
    pub only_first: u64,
    pub only_second: u64,
}

/// Cohen's kappa of a 2x2 table `t[first][second]` (0: wrong, 1: correct),
/// with the observed agreement.
pub fn kappa(t: Table) -> Option<(f64, Option<f64>)> {
    let n = (t[0][0] + t[0][1] + t[1][0] + t[1][1]) as f64;
    if n == 0.0 {
        return None;
    }
    let observed = (t[0][0] + t[1][1]) as f64 / n;
    let first_yes = (t[1][0] + t[1][1]) as f64 / n;
    let second_yes = (t[0][1] + t[1][1]) as f64 / n;
    let chance = first_yes * second_yes + (1.0 - first_yes) * (1.0 - second_yes);
    let k = (chance < 1.0).then(|| (observed - chance) / (1.0 - chance));
    Some((observed, k))
}

/// Verdict counts of two judges: `[first][second]`, 0 wrong, 1 correct.
type Table = [[u64; 2]; 2];

/// The judges' verdicts of a run, folded pair by pair as probe rows pass.
#[derive(Debug, Default)]
pub struct Judges {
    /// Per pair of judges (in the order first met), their table.
    tables: Vec<(String, String, Table)>,
}

impl Judges {
    /// Adds a probe row's verdicts: the run's judge (`judge`, its
    /// `answer_correct`) and the extra judges (`extra_verdicts`).
    pub fn add(&mut self, judge: &str, p: &ProbeRow) {
        if p.extra_verdicts.is_empty() {
            return;
        }
        let mut verdicts: Vec<(&str, Option<u8>)> = vec![(judge, p.answer_correct)];
        for part in p.extra_verdicts.split(';') {
            let (model, v) = part.rsplit_once('=').unwrap_or((part, ""));
            verdicts.push((model, v.parse().ok()));
        }
        for i in 0..verdicts.len() {
            for j in i + 1..verdicts.len() {
                let (Some(a), Some(b)) = (verdicts[i].1, verdicts[j].1) else {
                    continue;
                };
                let (x, y) = (verdicts[i].0, verdicts[j].0);
                let at = match self.tables.iter().position(|t| t.0 == x && t.1 == y) {
                    Some(at) => at,
                    None => {
                        self.tables
                            .push((x.to_string(), y.to_string(), [[0; 2]; 2]));
                        self.tables.len() - 1
                    }
                };
                self.tables[at].2[usize::from(a.min(1))][usize::from(b.min(1))] += 1;
            }
        }
    }

    pub fn finish(self) -> Vec<Agreement> {
        self.tables
            .into_iter()
            .filter_map(|(first, second, t)| {
                let (agreement, k) = kappa(t)?;
                Some(Agreement {
                    first,
                    second,
                    answers: t[0][0] + t[0][1] + t[1][0] + t[1][1],
                    agreement: round6(agreement),
                    kappa: k.map(round6),
                    only_first: t[1][0],
                    only_second: t[0][1],
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod kappa_tests {
    use super::*;

    #[test]
    fn kappa_matches_hand_computed_cases() {
        // 20 both yes, 15 both no, 5 and 10 split: po 0.7, pe 0.5, kappa 0.4.
        let (po, k) = kappa([[15, 10], [5, 20]]).unwrap();
        assert!((po - 0.7).abs() < 1e-12 && (k.unwrap() - 0.4).abs() < 1e-12);
        // Perfect agreement with both labels present: kappa 1.
        assert_eq!(kappa([[3, 0], [0, 7]]).unwrap().1, Some(1.0));
        // One judge always says yes: chance agreement equals observed, kappa 0.
        let (po, k) = kappa([[0, 4], [0, 6]]).unwrap();
        assert!((po - 0.6).abs() < 1e-12 && k.unwrap().abs() < 1e-12);
        // Both always yes: chance agreement is certain, kappa undefined.
        assert_eq!(kappa([[0, 0], [0, 9]]).unwrap(), (1.0, None));
        assert_eq!(kappa([[0, 0], [0, 0]]), None);
    }

    #[test]
    fn judges_fold_pairs_from_probe_rows() {
        let mut j = Judges::default();
        for (correct, extra) in [
            (1, "b=1;c=0"),
            (0, "b=0;c=0"),
            (1, "b=0;c="),
            (1, "b=1;c=1"),
        ] {
            j.add(
                "a",
                &ProbeRow {
                    answer_correct: Some(correct),
                    extra_verdicts: extra.into(),
                    ..ProbeRow::default()
                },
            );
        }
        let out = j.finish();
        let names: Vec<(&str, &str, u64)> = out
            .iter()
            .map(|a| (a.first.as_str(), a.second.as_str(), a.answers))
            .collect();
        assert_eq!(names, [("a", "b", 4), ("a", "c", 3), ("b", "c", 3)]);
        assert_eq!((out[0].only_first, out[0].only_second), (1, 0));
    }
}
