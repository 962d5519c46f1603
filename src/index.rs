//! Per-user retrieval indexes: nearest neighbours over message embeddings
//! (exact while small, HNSW past a threshold) and a keyword index for the
//! entity fallback. Both are rebuilt from stored embeddings on restore, in
//! insertion order, so a restored index answers exactly as before.

use std::collections::HashMap;

use hnsw_rs::anndists::dist::Distance;
use hnsw_rs::hnsw::Hnsw;

use crate::text::{for_each_content_word, looks_like_entity};

/// 1 - cosine for unit vectors, clamped at 0 (anndists' DistDot asserts on
/// the rounding error of identical vectors).
#[derive(Clone, Copy, Default)]
pub struct UnitDot;

impl Distance<f32> for UnitDot {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - dot(a, b)).max(0.0)
    }
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// A hit: position of the message in the user's transcript, and similarity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub pos: u32,
    pub score: f32,
}

const HNSW_M: usize = 16;
const HNSW_EF_CONSTRUCTION: usize = 100;
const HNSW_MAX_LAYER: usize = 16;

/// Nearest-neighbour search over unit vectors, by position.
pub struct VectorIndex {
    dim: usize,
    data: Vec<f32>,
    hnsw: Option<Hnsw<'static, f32, UnitDot>>,
    threshold: usize,
    ef_search: usize,
}

impl VectorIndex {
    pub fn new(dim: usize, threshold: usize, ef_search: usize) -> Self {
        VectorIndex {
            dim,
            data: Vec::new(),
            hnsw: None,
            threshold,
            ef_search,
        }
    }

    pub fn len(&self) -> usize {
        self.data.len() / self.dim.max(1)
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Whether searches go through HNSW.
    pub fn is_approximate(&self) -> bool {
        self.hnsw.is_some()
    }

    fn vector(&self, pos: usize) -> &[f32] {
        &self.data[pos * self.dim..(pos + 1) * self.dim]
    }

    /// Adds the next message's vector; its position is the previous length.
    pub fn add(&mut self, v: &[f32]) {
        assert_eq!(v.len(), self.dim, "embedding dimension");
        let pos = self.len();
        self.data.extend_from_slice(v);
        match &self.hnsw {
            Some(h) => h.insert((v, pos)),
            None if self.len() > self.threshold => {
                let h = Hnsw::new(
                    HNSW_M,
                    (self.len() * 4).max(10_000),
                    HNSW_MAX_LAYER,
                    HNSW_EF_CONSTRUCTION,
                    UnitDot,
                );
                for p in 0..self.len() {
                    h.insert((self.vector(p), p));
                }
                self.hnsw = Some(h);
            }
            None => {}
        }
    }

    /// The `k` most similar messages, best first (ties: earlier first).
    pub fn search(&self, q: &[f32], k: usize) -> Vec<Hit> {
        let mut hits: Vec<Hit> = match &self.hnsw {
            Some(h) => h
                .search(q, k, self.ef_search.max(k))
                .into_iter()
                .map(|n| Hit {
                    pos: n.d_id as u32,
                    score: dot(q, self.vector(n.d_id)),
                })
                .collect(),
            None => self.exact(q, k),
        };
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.pos.cmp(&b.pos)));
        hits.truncate(k);
        hits
    }

    /// Exact top-k by a linear scan (also the reference for HNSW recall).
    pub fn exact(&self, q: &[f32], k: usize) -> Vec<Hit> {
        let mut top: Vec<Hit> = Vec::with_capacity(k + 1);
        for pos in 0..self.len() {
            let score = dot(q, self.vector(pos));
            let worse = |h: &Hit| h.score < score || (h.score == score && h.pos > pos as u32);
            if top.len() < k || top.last().is_some_and(worse) {
                let at = top.iter().position(worse).unwrap_or(top.len());
                top.insert(
                    at,
                    Hit {
                        pos: pos as u32,
                        score,
                    },
                );
                top.truncate(k);
            }
        }
        top
    }
}

/// Inverted index of content words, for the keyword/entity fallback.
#[derive(Default)]
pub struct KeywordIndex {
    postings: HashMap<String, Vec<u32>>,
    docs: u32,
}

impl KeywordIndex {
    pub fn add(&mut self, text: &str) {
        let pos = self.docs;
        self.docs += 1;
        for_each_content_word(text, |w| {
            let list = self.postings.entry(w.to_string()).or_default();
            if list.last() != Some(&pos) {
                list.push(pos);
            }
        });
    }

    /// Messages sharing the query's rare words or entities, best first.
    /// A word is rare when it occurs in at most 5% of messages (or in
    /// fewer than 3); names and numbers always count.
    pub fn search(&self, query: &str, k: usize, exclude_from: u32) -> Vec<Hit> {
        let mut keys: Vec<(String, bool)> = Vec::new();
        let mut initial = true;
        for raw in query.split(|c: char| !c.is_alphanumeric()) {
            if raw.is_empty() {
                continue;
            }
            let entity = looks_like_entity(raw, initial);
            initial = false;
            for_each_content_word(raw, |w| {
                if !keys.iter().any(|(k, _)| k == w) {
                    keys.push((w.to_string(), entity));
                }
            });
        }
        let mut scores: Vec<(u32, f32)> = Vec::new();
        let n = self.docs.max(1) as f32;
        for (w, entity) in &keys {
            let Some(list) = self.postings.get(w) else {
                continue;
            };
            let df = list.len() as f32;
            if !entity && df > (0.05 * n).max(2.0) {
                continue;
            }
            let idf = (1.0 + n / df).ln();
            for &p in list.iter().filter(|&&p| p < exclude_from) {
                match scores.iter_mut().find(|(q, _)| *q == p) {
                    Some(e) => e.1 += idf,
                    None => scores.push((p, idf)),
                }
            }
        }
        scores.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scores
            .into_iter()
            .take(k)
            .map(|(pos, score)| Hit { pos, score })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    fn unit(v: Vec<f32>) -> Vec<f32> {
        let n = dot(&v, &v).sqrt();
        v.into_iter().map(|x| x / n).collect()
    }

    fn random_vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| unit((0..dim).map(|_| rng.random::<f32>() - 0.5).collect()))
            .collect()
    }

    #[test]
    fn exact_search_orders_by_score_then_position() {
        let mut idx = VectorIndex::new(2, 1000, 32);
        for v in [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.6, 0.8]] {
            idx.add(&v);
        }
        let hits = idx.search(&[1.0, 0.0], 3);
        let pos: Vec<u32> = hits.iter().map(|h| h.pos).collect();
        assert_eq!(pos, vec![0, 2, 3]);
    }

    #[test]
    fn hnsw_agrees_with_exact_search() {
        let dim = 64;
        let data = random_vectors(3000, dim, 7);
        let mut idx = VectorIndex::new(dim, 500, 64);
        for v in &data {
            idx.add(v);
        }
        assert!(idx.is_approximate());
        let queries = random_vectors(50, dim, 8);
        let mut found = 0;
        for q in &queries {
            let exact: Vec<u32> = idx.exact(q, 5).iter().map(|h| h.pos).collect();
            found += idx
                .search(q, 5)
                .iter()
                .filter(|h| exact.contains(&h.pos))
                .count();
        }
        let recall = found as f64 / (5.0 * queries.len() as f64);
        assert!(recall >= 0.95, "recall@5 {recall}");
    }

    #[test]
    fn hnsw_is_deterministic_across_rebuilds() {
        let data = random_vectors(800, 32, 1);
        let build = || {
            let mut idx = VectorIndex::new(32, 100, 32);
            data.iter().for_each(|v| idx.add(v));
            idx
        };
        let (a, b) = (build(), build());
        for q in random_vectors(20, 32, 2) {
            assert_eq!(a.search(&q, 5), b.search(&q, 5));
        }
    }

    #[test]
    fn keyword_search_finds_rare_words_only() {
        let mut k = KeywordIndex::default();
        for t in [
            "we talked about the weather",
            "my deployment deadline is March 3",
            "the weather is nice",
            "more weather talk",
            "weather again",
        ] {
            k.add(t);
        }
        let hits = k.search("When is my deadline?", 3, 5);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].pos, 1);
        assert!(k.search("how is the weather", 3, 5).is_empty());
        assert!(k.search("deadline", 3, 1).is_empty());
    }
}
