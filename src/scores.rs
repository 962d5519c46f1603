//! The scores the public benchmarks' papers and vendors' tables report,
//! computed as their published evaluation code computes them, so that
//! memeval's figures can be set beside theirs:
//!
//! - answer token F1 and BLEU-1, as mem0's LoCoMo evaluation computes them
//!   (`evaluation/metrics/utils.py`): F1 over the *sets* of lower-cased
//!   tokens split at whitespace after `.`, `,`, `!` and `?` become spaces;
//!   BLEU-1 is NLTK's `sentence_bleu` with weights (1, 0, 0, 0) over
//!   `word_tokenize` of the lower-cased texts, that is the brevity penalty
//!   times the clipped unigram precision (0 where no unigram matches);
//! - retrieval recall_any@k, recall_all@k and NDCG@k, as LongMemEval's
//!   `src/retrieval/eval_utils.py` computes them, at turn level and at
//!   session level (a turn ranking read as a ranking of its sessions, its
//!   cut-off widened until it holds k distinct sessions).

use std::collections::{BTreeSet, HashMap};

/// mem0's token F1 of `prediction` against `reference` (0 when either is
/// empty).
pub fn answer_f1(prediction: &str, reference: &str) -> f64 {
    let tokens = |s: &str| -> BTreeSet<String> {
        s.trim()
            .to_lowercase()
            .replace(['.', ',', '!', '?'], " ")
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    let (p, r) = (tokens(prediction), tokens(reference));
    if p.is_empty() || r.is_empty() {
        return 0.0;
    }
    let common = p.intersection(&r).count() as f64;
    if common == 0.0 {
        return 0.0;
    }
    let (precision, recall) = (common / p.len() as f64, common / r.len() as f64);
    2.0 * precision * recall / (precision + recall)
}

/// BLEU-1 of `prediction` against one `reference`, as NLTK's
/// `sentence_bleu(weights=(1, 0, 0, 0))` over `word_tokenize` (see
/// [`word_tokens`]) of the lower-cased texts.
pub fn answer_bleu1(prediction: &str, reference: &str) -> f64 {
    if prediction.trim().is_empty() || reference.trim().is_empty() {
        return 0.0;
    }
    let hyp = word_tokens(&prediction.to_lowercase());
    let reference = word_tokens(&reference.to_lowercase());
    if hyp.is_empty() {
        return 0.0;
    }
    let mut left: HashMap<&str, usize> = HashMap::new();
    for t in &reference {
        *left.entry(t.as_str()).or_default() += 1;
    }
    let mut matched = 0usize;
    for t in &hyp {
        if let Some(n) = left.get_mut(t.as_str())
            && *n > 0
        {
            *n -= 1;
            matched += 1;
        }
    }
    if matched == 0 {
        return 0.0;
    }
    let (c, r) = (hyp.len() as f64, reference.len() as f64);
    let brevity = if c > r { 1.0 } else { (1.0 - r / c).exp() };
    brevity * matched as f64 / c
}

/// English words and punctuation as the Penn Treebank tokenizer behind
/// NLTK's `word_tokenize` splits them: punctuation off the ends of words
/// (a period only at the end of the text), clitics off their words
/// (`don't` → `do n't`, `she's` → `she 's`, `can't` → `ca n't`), and
/// double quotes written as `` and ''.
pub fn word_tokens(text: &str) -> Vec<String> {
    const OPENING: &[char] = &['"', '(', '[', '{', '`', '\'', '“', '‘'];
    const CLOSING: &[char] = &[
        ',', '!', '?', ';', ':', ')', ']', '}', '"', '\'', '”', '’', '…',
    ];
    const CLITICS: &[&str] = &["n't", "'s", "'re", "'ve", "'ll", "'d", "'m"];
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut out = Vec::new();
    for (i, word) in words.iter().enumerate() {
        let mut w = *word;
        while let Some(c) = w.chars().next().filter(|c| OPENING.contains(c)) {
            out.push(if c == '"' { "``".into() } else { c.to_string() });
            w = &w[c.len_utf8()..];
        }
        let mut tail = Vec::new();
        loop {
            let last_word = i + 1 == words.len();
            match w.chars().last() {
                Some(c) if CLOSING.contains(&c) || (c == '.' && last_word) => {
                    // "..." stays one token.
                    if w.ends_with("...") {
                        tail.push("...".to_string());
                        w = &w[..w.len() - 3];
                    } else {
                        tail.push(if c == '"' { "''".into() } else { c.to_string() });
                        w = &w[..w.len() - c.len_utf8()];
                    }
                }
                _ => break,
            }
        }
        if let Some(clitic) = CLITICS
            .iter()
            .find(|c| w.len() > c.len() && w.ends_with(**c))
        {
            let cut = w.len() - clitic.len();
            out.push(w[..cut].to_string());
            out.push(w[cut..].to_string());
        } else if !w.is_empty() {
            out.push(w.to_string());
        }
        out.extend(tail.into_iter().rev());
    }
    out
}

/// recall_any@k, recall_all@k and NDCG@k of one ranking.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retrieval {
    pub recall_any: f64,
    pub recall_all: f64,
    pub ndcg: f64,
}

/// LongMemEval's scores of `ranking` (ids, best first) against the
/// `correct` ids, of which `relevant` are among all that could have been
/// ranked (the ideal ranking puts those first), at cut-off `k`.
pub fn retrieval<T: PartialEq>(
    ranking: &[T],
    correct: &[T],
    relevant: usize,
    k: usize,
) -> Retrieval {
    let top = &ranking[..ranking.len().min(k)];
    let recall_any = f64::from(u8::from(correct.iter().any(|c| top.contains(c))));
    let recall_all = f64::from(u8::from(correct.iter().all(|c| top.contains(c))));
    let actual: Vec<f64> = top
        .iter()
        .map(|id| f64::from(u8::from(correct.contains(id))))
        .collect();
    let ideal_dcg = dcg(&vec![1.0; relevant.min(k)], k);
    let ndcg = if ideal_dcg == 0.0 {
        0.0
    } else {
        dcg(&actual, k) / ideal_dcg
    };
    Retrieval {
        recall_any,
        recall_all,
        ndcg,
    }
}

/// Discounted cumulative gain at k as LongMemEval computes it: the first
/// relevance whole, the one at 0-based place i >= 1 divided by log2(i + 1).
fn dcg(relevances: &[f64], k: usize) -> f64 {
    relevances
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, r)| {
            if i == 0 {
                *r
            } else {
                r / ((i + 1) as f64).log2()
            }
        })
        .sum()
}

/// The session-level scores of a turn ranking: each turn stands for its
/// session (`session_of`), the correct sessions are those of the correct
/// turns, and the cut-off is widened from k until the ranking's first
/// turns hold k distinct sessions (or the ranking ends), as LongMemEval's
/// `evaluate_retrieval_turn2session` does.
pub fn session_retrieval(
    ranking: &[u32],
    correct: &[u32],
    corpus: impl IntoIterator<Item = u32>,
    k: usize,
    session_of: impl Fn(u32) -> u32,
) -> Retrieval {
    let ranked: Vec<u32> = ranking.iter().map(|&t| session_of(t)).collect();
    let mut gold: Vec<u32> = correct.iter().map(|&t| session_of(t)).collect();
    gold.sort_unstable();
    gold.dedup();
    // Every turn of a correct session counts as relevant.
    let relevant = corpus
        .into_iter()
        .filter(|&t| gold.binary_search(&session_of(t)).is_ok())
        .count();
    let distinct = |n: usize| {
        ranked[..n.min(ranked.len())]
            .iter()
            .collect::<BTreeSet<_>>()
            .len()
    };
    let mut effective = k;
    while distinct(effective) < k && effective < ranked.len() {
        effective += 1;
    }
    retrieval(&ranked, &gold, relevant, effective)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn answer_f1_is_over_sets_of_simple_tokens() {
        // {a, greyhound, named, biscuit} and {biscuit}: p = 1/4, r = 1,
        // F1 = 2 * 0.25 / 1.25 = 0.4.
        assert!(close(
            answer_f1("A greyhound named Biscuit.", "Biscuit"),
            0.4
        ));
        // Repeats count once: {the, cat} against {the, cat, sat}: p = 1,
        // r = 2/3, F1 = 0.8.
        assert!(close(answer_f1("the the cat", "The cat sat!"), 0.8));
        assert_eq!(answer_f1("", "x"), 0.0);
        assert_eq!(answer_f1("dog", "cat"), 0.0);
        assert!(close(answer_f1("7 May 2023", "7 May, 2023"), 1.0));
    }

    #[test]
    fn bleu1_is_the_brevity_penalty_times_clipped_unigram_precision() {
        // 7 tokens each (the final period is one); 6 match: 6/7, no penalty.
        assert!(close(
            answer_bleu1("The cat sat on the mat.", "The cat is on the mat."),
            6.0 / 7.0
        ));
        // Shorter than the reference: [biscuit] against [her, dog, biscuit]:
        // p = 1, brevity = exp(1 - 3/1).
        assert!(close(
            answer_bleu1("Biscuit", "her dog Biscuit"),
            (-2.0f64).exp()
        ));
        // Clipping: "the the the" against "the cat": 1 of 3, longer so no penalty.
        assert!(close(answer_bleu1("the the the", "the cat"), 1.0 / 3.0));
        assert_eq!(answer_bleu1("dog", "cat"), 0.0);
        // Two more, checked against NLTK 3.9's sentence_bleu: 0.1 and 0.6.
        assert!(close(
            answer_bleu1("Caroline moved to Sweden in 2022, I think.", "Sweden"),
            0.1
        ));
        assert!(close(
            answer_bleu1(
                "She adopted Biscuit the weekend before 3 March 2024.",
                "The weekend before 3 March 2024"
            ),
            0.6
        ));
        assert_eq!(answer_bleu1("", "cat"), 0.0);
    }

    #[test]
    fn words_split_as_the_treebank_tokenizer_does() {
        assert_eq!(
            word_tokens("she's sure: (he) didn't go, \"really\"!"),
            [
                "she", "'s", "sure", ":", "(", "he", ")", "did", "n't", "go", ",", "``", "really",
                "''", "!"
            ]
        );
        assert_eq!(word_tokens("i can't"), ["i", "ca", "n't"]);
        assert_eq!(
            word_tokens("at 3 p.m. on 1,000 days."),
            ["at", "3", "p.m.", "on", "1,000", "days", "."]
        );
        assert_eq!(word_tokens("wait..."), ["wait", "..."]);
    }

    #[test]
    fn retrieval_scores_match_longmemevals() {
        // Ranking [3, 1, 7] of corpus 1..=8, correct {1, 5}, k = 2:
        // any 1, all 0; DCG = 0 + 1/log2(2) = 1; ideal = 1 + 1 = 2: 0.5.
        let r = retrieval(&[3, 1, 7], &[1, 5], 2, 2);
        assert_eq!((r.recall_any, r.recall_all), (1.0, 0.0));
        assert!(close(r.ndcg, 0.5));
        // k = 3 with both found at places 0 and 2: DCG = 1 + 1/log2(3);
        // ideal 2.
        let r = retrieval(&[1, 4, 5], &[1, 5], 2, 3);
        assert_eq!((r.recall_any, r.recall_all), (1.0, 1.0));
        assert!(close(r.ndcg, (1.0 + 1.0 / 3f64.log2()) / 2.0));
        // Nothing correct exists: NDCG 0, recall_all vacuously 1.
        let r = retrieval(&[1], &[], 0, 5);
        assert_eq!((r.recall_any, r.recall_all, r.ndcg), (0.0, 1.0, 0.0));
    }

    #[test]
    fn session_scores_widen_the_cut_off_to_k_sessions() {
        // Turns 1-3 are session 1, 4-6 session 2, 7-9 session 3. The
        // ranking [1, 2, 7, 4]: at k = 2 the first two turns hold one
        // session, so the cut-off widens to 3 turns (sessions 1 and 3).
        let session = |t: u32| (t - 1) / 3 + 1;
        let r = session_retrieval(&[1, 2, 7, 4], &[5], 1..=9, 2, session);
        // Session 2 is not among the first 3 turns.
        assert_eq!((r.recall_any, r.recall_all, r.ndcg), (0.0, 0.0, 0.0));
        let r = session_retrieval(&[1, 2, 7, 4], &[8], 1..=9, 2, session);
        assert_eq!((r.recall_any, r.recall_all), (1.0, 1.0));
        // Relevance per turn: [0, 0, 1] → DCG 1/log2(3); the ideal puts
        // session 3's three turns first: 1 + 1 + 1/log2(3).
        assert!(close(
            r.ndcg,
            (1.0 / 3f64.log2()) / (2.0 + 1.0 / 3f64.log2())
        ));
    }
}
