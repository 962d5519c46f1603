//! How often the judge is wrong: `memeval judge-check`. The configured
//! judge grades a labelled set built from the scenarios themselves, and its
//! false-accept and false-reject rates are reported with 95% intervals,
//! per kind of answer.
//!
//! For each probe (one per probe definition, recurring ones once; probes
//! whose facts carry no phrase or statement, and abstention probes, are
//! left out), answers whose verdict is known:
//!
//! - `gold`: the expected facts' statements: must be accepted;
//! - `paraphrase`: the facts' key phrases in other words ("As you told me
//!   earlier: ..."): accepted;
//! - `superseded`: the old value an expected fact replaced (`supersedes`):
//!   rejected;
//! - `other_fact`: another fact of the scenario, preferring one whose key
//!   phrase is of the same type (a number for a number): rejected;
//! - `vague`: a topical non-answer that names the question's subject and
//!   states nothing: rejected.
//!
//! Summary judging gets the same treatment: for facts planted in the
//! scenario, a summary stating all of them against one with a fact
//! removed; the judge must score the second lower.

use rand::RngExt;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::backend::{AnswerCheck, Backend, Calls, ExpectedFact, JudgeRules};
use crate::scenario::{Role, Scenario, Text};
use crate::stats::round6;

/// What an answer of the labelled set is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Gold,
    Paraphrase,
    Superseded,
    OtherFact,
    Vague,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Gold,
        Kind::Paraphrase,
        Kind::Superseded,
        Kind::OtherFact,
        Kind::Vague,
    ];

    /// Whether a right judge accepts it.
    pub fn correct(self) -> bool {
        matches!(self, Kind::Gold | Kind::Paraphrase)
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Gold => "gold",
            Kind::Paraphrase => "paraphrase",
            Kind::Superseded => "superseded",
            Kind::OtherFact => "other_fact",
            Kind::Vague => "vague",
        }
    }
}

/// One answer to judge, with its label.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub scenario: String,
    pub probe: String,
    pub kind: Kind,
    pub question: String,
    pub answer: String,
    /// Indexes of the probe's facts in `scenarios[scenario_index]`.
    #[serde(skip)]
    pub facts: Vec<usize>,
    #[serde(skip)]
    pub scenario_index: usize,
}

/// A fact in words: its statement, else its first phrase.
fn words_of(s: &Scenario, f: usize) -> Option<String> {
    let fact = &s.facts[f];
    fact.statement
        .as_deref()
        .map(str::to_string)
        .or_else(|| fact.expect.first().map(|e| format!("It is {e}.")))
}

fn key_phrase(s: &Scenario, f: usize) -> Option<&str> {
    s.facts[f].expect.first().map(Text::as_str)
}

/// Whether `text` shows fact `f` (one of its phrases, case folded).
fn shows(s: &Scenario, f: usize, text: &str) -> bool {
    let text = text.to_lowercase();
    s.facts[f]
        .expect
        .iter()
        .any(|e| text.contains(&e.to_lowercase()))
}

/// The question's subject: its longest words that are not question words.
fn subject(question: &str) -> String {
    const SKIP: &[&str] = &[
        "what", "which", "when", "where", "who", "whom", "whose", "why", "how", "does", "did",
        "do", "is", "are", "was", "were", "the", "my", "our", "your", "a", "an", "i", "we", "you",
        "me", "us", "of", "to", "in", "on", "for", "and", "or", "again", "remind", "tell", "say",
        "said", "again?", "have", "has", "had", "that", "this", "it",
    ];
    let mut words: Vec<&str> = question
        .split(|c: char| !c.is_alphanumeric() && c != '\'' && c != '-')
        .filter(|w| w.len() > 2 && !SKIP.contains(&w.to_lowercase().as_str()))
        .collect();
    words.sort_by_key(|w| std::cmp::Reverse(w.len()));
    words.truncate(2);
    if words.is_empty() {
        "that".into()
    } else {
        words.join(" and ").to_lowercase()
    }
}

/// The labelled set: at most `max_probes` probes (0: all), chosen with
/// `seed` when there are more, in scenario and probe order.
pub fn labelled_set(scenarios: &[Scenario], max_probes: usize, seed: u64) -> Vec<Item> {
    let mut probes: Vec<(usize, usize)> = Vec::new();
    for (si, s) in scenarios.iter().enumerate() {
        for (pi, p) in s.probes.iter().enumerate() {
            let usable = !p.expects.is_empty()
                && p.kind.as_deref() != Some("abstention")
                && p.expects.iter().all(|&f| key_phrase(s, f).is_some());
            if usable {
                probes.push((si, pi));
            }
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    if max_probes > 0 && probes.len() > max_probes {
        // A partial Fisher-Yates, then back to file order.
        for i in 0..max_probes {
            let j = rng.random_range(i..probes.len());
            probes.swap(i, j);
        }
        probes.truncate(max_probes);
        probes.sort_unstable();
    }
    let mut out = Vec::new();
    for (si, pi) in probes {
        let s = &scenarios[si];
        let p = &s.probes[pi];
        let item = |kind: Kind, answer: String| Item {
            scenario: s.name.clone(),
            probe: p.id.to_string(),
            kind,
            question: p.question.to_string(),
            answer,
            facts: p.expects.clone(),
            scenario_index: si,
        };
        let gold: Vec<String> = p.expects.iter().filter_map(|&f| words_of(s, f)).collect();
        out.push(item(Kind::Gold, gold.join(" ")));
        let phrases: Vec<&str> = p.expects.iter().filter_map(|&f| key_phrase(s, f)).collect();
        out.push(item(
            Kind::Paraphrase,
            format!("As you told me earlier: {}.", phrases.join(" and ")),
        ));
        let shows_expected = |text: &str| p.expects.iter().any(|&f| shows(s, f, text));
        let old: Vec<String> = p
            .expects
            .iter()
            .filter_map(|&f| s.facts[f].supersedes)
            .filter_map(|o| words_of(s, o))
            .filter(|t| !shows_expected(t))
            .collect();
        if !old.is_empty() {
            out.push(item(Kind::Superseded, old.join(" ")));
        }
        let numeric = |t: &str| t.chars().any(|c| c.is_ascii_digit());
        let want_numeric = phrases.iter().any(|t| numeric(t));
        let related = |g: usize| {
            p.expects.contains(&g)
                || p.expects
                    .iter()
                    .any(|&f| s.facts[f].supersedes == Some(g) || s.facts[g].supersedes == Some(f))
        };
        let candidates: Vec<usize> = (0..s.facts.len())
            .filter(|&g| !related(g) && key_phrase(s, g).is_some())
            .filter(|&g| words_of(s, g).is_some_and(|t| !shows_expected(&t)))
            .collect();
        let same_type: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&g| key_phrase(s, g).is_some_and(|k| numeric(k) == want_numeric))
            .collect();
        let pool = if same_type.is_empty() {
            &candidates
        } else {
            &same_type
        };
        if !pool.is_empty() {
            let g = pool[rng.random_range(0..pool.len())];
            out.push(item(Kind::OtherFact, words_of(s, g).expect("filtered")));
        }
        let vague = format!(
            "You mentioned {} earlier, and it sounded important, but I would need to check the details.",
            subject(&p.question)
        );
        if !shows_expected(&vague) {
            out.push(item(Kind::Vague, vague));
        }
    }
    out
}

/// A judge's verdict on one item.
#[derive(Debug, Clone, Serialize)]
pub struct Judged {
    #[serde(flatten)]
    pub item: Item,
    /// The judge's verdict: `None` when it gave none that could be read.
    pub accepted: Option<bool>,
    pub reason: String,
}

/// A share with its 95% Wilson interval.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Rate {
    /// Items judged (with a verdict).
    pub n: u64,
    /// Of those, judged wrongly.
    pub wrong: u64,
    pub rate: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
}

impl Rate {
    pub fn new(wrong: u64, n: u64) -> Rate {
        let (rate, low, high) = match wilson(wrong, n) {
            Some((p, lo, hi)) => (Some(round6(p)), Some(round6(lo)), Some(round6(hi))),
            None => (None, None, None),
        };
        Rate {
            n,
            wrong,
            rate,
            low,
            high,
        }
    }
}

/// The share `k / n` and its 95% Wilson score interval (which stays in
/// [0, 1] and is not degenerate at 0 or n, unlike the normal one).
pub fn wilson(k: u64, n: u64) -> Option<(f64, f64, f64)> {
    if n == 0 {
        return None;
    }
    let (k, n) = (k as f64, n as f64);
    let z: f64 = 1.959_963_984_540_054;
    let p = k / n;
    let d = 1.0 + z * z / n;
    let center = (p + z * z / (2.0 * n)) / d;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / d;
    Some((p, (center - half).max(0.0), (center + half).min(1.0)))
}

/// The rates of one kind of answer.
#[derive(Debug, Clone, Serialize)]
pub struct KindRate {
    pub kind: Kind,
    /// `false_reject` for answers that are right, `false_accept` for the
    /// others.
    pub error: &'static str,
    pub items: u64,
    pub no_verdict: u64,
    #[serde(flatten)]
    pub rate: Rate,
}

/// Whether summary scores order a full summary above one with a fact
/// removed.
#[derive(Debug, Clone, Serialize)]
pub struct SummaryPair {
    pub scenario: String,
    pub removed: String,
    pub full_score: f64,
    pub reduced_score: f64,
}

/// What `memeval judge-check` found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The judge model, as a run's metadata names it.
    pub judge: String,
    pub seed: u64,
    pub false_accept: Rate,
    pub false_reject: Rate,
    pub by_kind: Vec<KindRate>,
    /// Pairs where the reduced summary did not score lower (n: pairs
    /// scored).
    pub summary_misorder: Rate,
    pub summary_pairs: Vec<SummaryPair>,
    pub items: Vec<Judged>,
    /// Judge calls that failed after their retries.
    pub failed_calls: u64,
}

/// Judges every item (on `jobs` threads) and sums up.
pub fn check(
    scenarios: &[Scenario],
    items: Vec<Item>,
    backend: &Backend,
    seed: u64,
    jobs: usize,
) -> Report {
    let verdicts = crate::par::par_map(
        &items,
        jobs,
        |_| 1,
        |item| -> Result<_, std::convert::Infallible> {
            let s = &scenarios[item.scenario_index];
            let facts: Vec<ExpectedFact<'_>> =
                item.facts.iter().map(|&f| ExpectedFact::of(s, f)).collect();
            let check = AnswerCheck {
                question: &item.question,
                answer: &item.answer,
                facts: &facts,
                reference: None,
                abstention: false,
                rules: JudgeRules::Memeval,
            };
            let mut calls = Vec::new();
            let verdict = match backend.judge.judge_answer(&check, &mut calls) {
                Ok(v) => (v.correct, v.reason),
                Err(e) => (None, e.to_string()),
            };
            Ok((verdict, calls))
        },
    )
    .unwrap_or_else(|e| match e {});
    let mut calls = Vec::new();
    let judged: Vec<Judged> = (items.into_iter().zip(verdicts))
        .map(|(item, ((accepted, reason), c))| {
            calls.extend(c);
            Judged {
                item,
                accepted,
                reason,
            }
        })
        .collect();
    let (summary_pairs, summary_calls) = summary_pairs(scenarios, backend, seed);
    calls.extend(summary_calls);
    summarize(backend, seed, judged, summary_pairs, &calls)
}

fn summarize(
    backend: &Backend,
    seed: u64,
    items: Vec<Judged>,
    summary_pairs: Vec<SummaryPair>,
    calls: &Calls,
) -> Report {
    let mut by_kind = Vec::new();
    let (mut fa, mut fa_n, mut fr, mut fr_n) = (0, 0, 0, 0);
    for kind in Kind::ALL {
        let of: Vec<&Judged> = items.iter().filter(|j| j.item.kind == kind).collect();
        if of.is_empty() {
            continue;
        }
        let with: Vec<bool> = of.iter().filter_map(|j| j.accepted).collect();
        let wrong = with.iter().filter(|&&a| a != kind.correct()).count() as u64;
        let n = with.len() as u64;
        if kind.correct() {
            (fr, fr_n) = (fr + wrong, fr_n + n);
        } else {
            (fa, fa_n) = (fa + wrong, fa_n + n);
        }
        by_kind.push(KindRate {
            kind,
            error: if kind.correct() {
                "false_reject"
            } else {
                "false_accept"
            },
            items: of.len() as u64,
            no_verdict: of.len() as u64 - n,
            rate: Rate::new(wrong, n),
        });
    }
    let misordered = summary_pairs
        .iter()
        .filter(|p| p.reduced_score >= p.full_score)
        .count() as u64;
    Report {
        judge: backend.model("judge").unwrap_or(&backend.name).to_string(),
        seed,
        false_accept: Rate::new(fa, fa_n),
        false_reject: Rate::new(fr, fr_n),
        by_kind,
        summary_misorder: Rate::new(misordered, summary_pairs.len() as u64),
        summary_pairs,
        items,
        failed_calls: calls.iter().filter(|c| c.error.is_some()).count() as u64,
    }
}

/// Up to three facts of each scenario (with statements, planted by a user
/// message, chosen with `seed`): the summary of all their statements, and
/// for each, the summary without it, scored against the planting messages.
fn summary_pairs(
    scenarios: &[Scenario],
    backend: &Backend,
    seed: u64,
) -> (Vec<SummaryPair>, Calls) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5u64);
    let mut pairs = Vec::new();
    let mut calls = Vec::new();
    for s in scenarios {
        let mut facts: Vec<usize> = (0..s.facts.len())
            .filter(|&f| s.facts[f].statement.is_some() && !s.facts[f].expect.is_empty())
            .collect();
        if facts.len() < 2 {
            continue;
        }
        for i in 0..facts.len().min(3) {
            let j = rng.random_range(i..facts.len());
            facts.swap(i, j);
        }
        facts.truncate(3);
        facts.sort_unstable();
        let planted: Vec<(Role, &str)> = facts
            .iter()
            .filter_map(|&f| {
                let n = *s.facts[f].planted_by.first()?;
                let m = &s.messages[n as usize - 1];
                Some((m.role, m.content.as_deref()?))
            })
            .collect();
        let statement = |f: usize| s.facts[f].statement.as_deref().unwrap_or("");
        let full: Vec<&str> = facts.iter().map(|&f| statement(f)).collect();
        let Ok(full_verdict) = backend
            .judge
            .score_summary(&full.join(" "), &planted, &mut calls)
        else {
            continue;
        };
        for &removed in &facts {
            let reduced: Vec<&str> = facts
                .iter()
                .filter(|&&f| f != removed)
                .map(|&f| statement(f))
                .collect();
            if let Ok(v) = backend
                .judge
                .score_summary(&reduced.join(" "), &planted, &mut calls)
            {
                pairs.push(SummaryPair {
                    scenario: s.name.clone(),
                    removed: s.facts[removed].id.to_string(),
                    full_score: round6(full_verdict.score),
                    reduced_score: round6(v.score),
                });
            }
        }
    }
    (pairs, calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_intervals_match_hand_computed_values() {
        // 0 of 10: [0, 0.2775]; 10 of 10: [0.7225, 1]; 5 of 10: [0.2366, 0.7634].
        let (p, lo, hi) = wilson(0, 10).unwrap();
        assert_eq!((p, lo), (0.0, 0.0));
        assert!((hi - 0.277_533).abs() < 1e-5, "{hi}");
        let (_, lo, hi) = wilson(10, 10).unwrap();
        assert!(
            (lo - 0.722_467).abs() < 1e-5 && (hi - 1.0).abs() < 1e-12,
            "{lo} {hi}"
        );
        let (_, lo, hi) = wilson(5, 10).unwrap();
        assert!((lo - 0.236_590).abs() < 1e-5 && (hi - 0.763_410).abs() < 1e-5);
        assert!(wilson(0, 0).is_none());
    }

    #[test]
    fn the_subject_is_the_questions_longest_words() {
        assert_eq!(subject("Which warehouse do we use?"), "warehouse and use");
        assert_eq!(
            subject("What is my daughter's name?"),
            "daughter's and name"
        );
        assert_eq!(subject("Why?"), "that");
    }
}
