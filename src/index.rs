//! Per-user retrieval indexes: nearest neighbours over message embeddings
//! (exact while small, HNSW past a threshold) and a keyword index for the
//! entity fallback. Both are rebuilt from stored embeddings on restore, in
//! insertion order, so a restored index answers exactly as before.

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

/// Dot product with eight independent accumulators, so the compiler can
/// keep them in one SIMD register (a plain `sum()` must add in order).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Calls `f` with each non-zero component of `v` and its index, in order.
/// Sparse vectors (the offline embedder's: a few dozen non-zeros in
/// hundreds of dimensions) are skipped sixteen zeros at a time.
pub fn for_each_nonzero(v: &[f32], mut f: impl FnMut(usize, f32)) {
    const LANES: usize = 16;
    let chunks = v.chunks_exact(LANES);
    let tail = chunks.remainder();
    for (c, chunk) in chunks.enumerate() {
        // +0.0 and -0.0 alike: no bit but the sign set.
        if chunk.iter().fold(0u32, |acc, x| acc | (x.to_bits() << 1)) == 0 {
            continue;
        }
        for (i, &x) in chunk.iter().enumerate() {
            if x != 0.0 {
                f(c * LANES + i, x);
            }
        }
    }
    let base = v.len() - tail.len();
    for (i, &x) in tail.iter().enumerate() {
        if x != 0.0 {
            f(base + i, x);
        }
    }
}

/// A message's embedding as its embedder made it: dense (an API model's),
/// or sparse (the offline hashing embedder's: a few dozen non-zeros in
/// hundreds of dimensions, kept as those alone, in order of dimension).
#[derive(Debug, Clone)]
pub enum Embedding {
    Dense(std::sync::Arc<[f32]>),
    Sparse {
        dim: u32,
        /// (dimension, value), dimensions increasing, values non-zero.
        nonzero: std::sync::Arc<[(u32, f32)]>,
    },
}

impl Default for Embedding {
    /// No vector (a failed call): matches nothing.
    fn default() -> Self {
        Embedding::Dense(std::sync::Arc::from([]))
    }
}

impl From<Vec<f32>> for Embedding {
    fn from(v: Vec<f32>) -> Self {
        Embedding::Dense(v.into())
    }
}

impl Embedding {
    /// No vector at all (a failed call).
    pub fn is_empty(&self) -> bool {
        self.dim() == 0
    }

    pub fn dim(&self) -> usize {
        match self {
            Embedding::Dense(v) => v.len(),
            Embedding::Sparse { dim, .. } => *dim as usize,
        }
    }

    /// Calls `f` with each non-zero component and its dimension, in order.
    pub fn for_each_nonzero(&self, mut f: impl FnMut(usize, f32)) {
        match self {
            Embedding::Dense(v) => for_each_nonzero(v, f),
            Embedding::Sparse { nonzero, .. } => {
                for &(d, x) in nonzero.iter() {
                    f(d as usize, x);
                }
            }
        }
    }

    /// How many components are non-zero.
    pub fn nonzero_count(&self) -> usize {
        match self {
            Embedding::Dense(v) => {
                let mut n = 0;
                for_each_nonzero(v, |_, _| n += 1);
                n
            }
            Embedding::Sparse { nonzero, .. } => nonzero.len(),
        }
    }

    /// Every component, zeros included.
    pub fn to_dense(&self) -> std::borrow::Cow<'_, [f32]> {
        match self {
            Embedding::Dense(v) => std::borrow::Cow::Borrowed(v),
            Embedding::Sparse { dim, nonzero } => {
                let mut v = vec![0.0; *dim as usize];
                for &(d, x) in nonzero.iter() {
                    v[d as usize] = x;
                }
                std::borrow::Cow::Owned(v)
            }
        }
    }
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

/// Nearest-neighbour search over unit vectors, by position. Dense vectors
/// (API embeddings) are scanned exactly while the index is small and go
/// through HNSW past a threshold; sparse vectors (the offline hashing
/// embedder's) go into an inverted index over dimensions, which is exact
/// at any size and costs only the postings the query touches.
pub struct VectorIndex {
    dim: usize,
    len: usize,
    layout: Layout,
}

enum Layout {
    Dense {
        data: Vec<f32>,
        hnsw: Option<Hnsw<'static, f32, UnitDot>>,
        threshold: usize,
        ef_search: usize,
    },
    Sparse {
        /// Per dimension: (position, value) of every vector non-zero there.
        postings: Vec<Vec<(u32, f32)>>,
    },
}

impl VectorIndex {
    /// An index for dense vectors.
    pub fn dense(dim: usize, threshold: usize, ef_search: usize) -> Self {
        VectorIndex {
            dim,
            len: 0,
            layout: Layout::Dense {
                data: Vec::new(),
                hnsw: None,
                threshold,
                ef_search,
            },
        }
    }

    /// An index for sparse vectors (mostly zeros), searched exactly.
    pub fn sparse(dim: usize) -> Self {
        VectorIndex {
            dim,
            len: 0,
            // Allocated at the first vector: a registry's evicted users
            // each hold an empty index.
            layout: Layout::Sparse {
                postings: Vec::new(),
            },
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether searches go through HNSW (and may miss a true neighbour).
    pub fn is_approximate(&self) -> bool {
        matches!(self.layout, Layout::Dense { hnsw: Some(_), .. })
    }

    /// Adds the next message's vector; its position is the previous length.
    /// A sparse index takes its non-zeros alone, however it is kept.
    pub fn add(&mut self, v: &Embedding) {
        assert_eq!(v.dim(), self.dim, "embedding dimension");
        let pos = self.len;
        self.len += 1;
        let dim = self.dim;
        match &mut self.layout {
            Layout::Sparse { postings } => {
                if postings.is_empty() {
                    postings.resize(dim, Vec::new());
                }
                v.for_each_nonzero(|d, x| postings[d].push((pos as u32, x)));
            }
            Layout::Dense {
                data,
                hnsw,
                threshold,
                ..
            } => {
                let v = v.to_dense();
                data.extend_from_slice(&v);
                match hnsw {
                    Some(h) => h.insert((&v, pos)),
                    None if pos + 1 > *threshold => {
                        let h = Hnsw::new(
                            HNSW_M,
                            ((pos + 1) * 4).max(10_000),
                            HNSW_MAX_LAYER,
                            HNSW_EF_CONSTRUCTION,
                            UnitDot,
                        );
                        for (p, chunk) in data.chunks_exact(dim).enumerate() {
                            h.insert((chunk, p));
                        }
                        *hnsw = Some(h);
                    }
                    None => {}
                }
            }
        }
    }

    /// The `k` most similar messages, best first (ties: earlier first).
    pub fn search(&self, q: &Embedding, k: usize) -> Vec<Hit> {
        match &self.layout {
            Layout::Dense {
                data,
                hnsw: Some(h),
                ef_search,
                ..
            } => {
                let q = q.to_dense();
                let mut hits: Vec<Hit> = h
                    .search(&q, k, (*ef_search).max(k))
                    .into_iter()
                    .map(|n| Hit {
                        pos: n.d_id as u32,
                        score: dot(&q, &data[n.d_id * self.dim..(n.d_id + 1) * self.dim]),
                    })
                    .collect();
                sort_hits(&mut hits);
                hits.truncate(k);
                hits
            }
            _ => self.exact(q, k),
        }
    }

    /// Exact top-k (also the reference for HNSW recall).
    pub fn exact(&self, q: &Embedding, k: usize) -> Vec<Hit> {
        let postings = match &self.layout {
            Layout::Dense { data, .. } => {
                let q = q.to_dense();
                let scored = data.chunks_exact(self.dim).enumerate().map(|(pos, v)| Hit {
                    pos: pos as u32,
                    score: dot(&q, v),
                });
                return top_k(scored, k);
            }
            Layout::Sparse { postings } => postings,
        };
        SCRATCH.with(|scratch| {
            // Scores of the vectors the query touches only, in buffers
            // kept per thread: a slot counts for this query when its
            // stamp is this query's, so nothing is cleared or allocated
            // per search, and a search costs what its postings hold,
            // not the length of the history.
            let mut sc = scratch.borrow_mut();
            let sc = &mut *sc;
            sc.query = sc.query.wrapping_add(1);
            if sc.query == 0 {
                sc.slots.fill((0, 0.0));
                sc.query = 1;
            }
            if sc.slots.len() < self.len {
                sc.slots.resize(self.len, (0, 0.0));
            }
            let query = sc.query;
            sc.touched.clear();
            let slots = &mut sc.slots;
            let touched = &mut sc.touched;
            q.for_each_nonzero(|d, x| {
                for &(pos, v) in postings.get(d).map_or(&[][..], Vec::as_slice) {
                    // Stamp and score side by side: one cache line a posting.
                    let slot = &mut slots[pos as usize];
                    if slot.0 != query {
                        *slot = (query, 0.0);
                        touched.push(pos);
                    }
                    slot.1 += x * v;
                }
            });
            // Vectors the query does not touch score exactly 0; the
            // earliest of them compete too, as in a full scan.
            let slots = &sc.slots;
            let untouched = (0..self.len as u32)
                .filter(|&p| slots[p as usize].0 != query)
                .take(k)
                .map(|pos| Hit { pos, score: 0.0 });
            let touched_hits = sc.touched.iter().map(|&pos| Hit {
                pos,
                score: slots[pos as usize].1,
            });
            top_k(touched_hits.chain(untouched), k)
        })
    }
}

/// Per-thread buffers of sparse search.
#[derive(Default)]
struct Scratch {
    /// Per position: the stamp of the query that last touched it, and its
    /// score for that query.
    slots: Vec<(u32, f32)>,
    /// The positions this query touched, in order of first touch.
    touched: Vec<u32>,
    query: u32,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

fn sort_hits(hits: &mut [Hit]) {
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.pos.cmp(&b.pos)));
}

/// The `k` best hits (highest score, then earliest position), best first.
fn top_k(hits: impl Iterator<Item = Hit>, k: usize) -> Vec<Hit> {
    let mut top: Vec<Hit> = Vec::with_capacity(k + 1);
    for h in hits {
        let worse = |t: &Hit| t.score < h.score || (t.score == h.score && t.pos > h.pos);
        // Full: most hits lose to the last kept one, and stop there.
        if top.len() == k && !top.last().is_some_and(worse) {
            continue;
        }
        let at = top.iter().position(worse).unwrap_or(top.len());
        top.insert(at, h);
        top.truncate(k);
    }
    top
}

/// Inverted index of content words, for the keyword/entity fallback.
#[derive(Default)]
pub struct KeywordIndex {
    postings: rustc_hash::FxHashMap<String, Vec<u32>>,
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

    fn random_vectors(n: usize, dim: usize, seed: u64) -> Vec<Embedding> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| unit((0..dim).map(|_| rng.random::<f32>() - 0.5).collect()).into())
            .collect()
    }

    #[test]
    fn exact_search_orders_by_score_then_position() {
        let mut idx = VectorIndex::dense(2, 1000, 32);
        for v in [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.6, 0.8]] {
            idx.add(&v.to_vec().into());
        }
        let hits = idx.search(&vec![1.0, 0.0].into(), 3);
        let pos: Vec<u32> = hits.iter().map(|h| h.pos).collect();
        assert_eq!(pos, vec![0, 2, 3]);
    }

    #[test]
    fn hnsw_agrees_with_exact_search() {
        let dim = 64;
        let data = random_vectors(3000, dim, 7);
        let mut idx = VectorIndex::dense(dim, 500, 64);
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
            let mut idx = VectorIndex::dense(32, 100, 32);
            data.iter().for_each(|v| idx.add(v));
            idx
        };
        let (a, b) = (build(), build());
        for q in random_vectors(20, 32, 2) {
            assert_eq!(a.search(&q, 5), b.search(&q, 5));
        }
    }

    #[test]
    fn sparse_index_equals_a_dense_scan() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let dim = 64;
        let mut sparse = VectorIndex::sparse(dim);
        let mut dense = VectorIndex::dense(dim, usize::MAX, 32);
        let mut kept_sparse = VectorIndex::sparse(dim);
        let mut dense_of_sparse = VectorIndex::dense(dim, usize::MAX, 32);
        let mut vectors = Vec::new();
        for i in 0..500 {
            let mut v = vec![0f32; dim];
            // A few non-zeros, with repeats so that scores tie; some empty.
            for _ in 0..(i % 5) {
                v[rng.random_range(0..dim)] += if rng.random::<bool>() { 1.0 } else { -1.0 };
            }
            let n = dot(&v, &v).sqrt();
            if n > 0.0 {
                v.iter_mut().for_each(|x| *x /= n);
            }
            // Kept dense, and kept sparse, into either index.
            let e = as_sparse(&v);
            let v = Embedding::from(v);
            sparse.add(&v);
            dense.add(&v);
            kept_sparse.add(&e);
            dense_of_sparse.add(&e);
            vectors.push(v);
        }
        let zero = Embedding::from(vec![0f32; dim]);
        for q in vectors.iter().step_by(7).chain([&zero]) {
            for k in [1, 5, 20] {
                let want = dense.search(q, k);
                assert_eq!(sparse.search(q, k), want);
                let e = as_sparse(&q.to_dense());
                assert_eq!(kept_sparse.search(&e, k), want);
                assert_eq!(dense_of_sparse.search(&e, k), want);
                assert_eq!(kept_sparse.search(q, k), want);
            }
        }
        assert!(!sparse.is_approximate());
    }

    fn as_sparse(v: &[f32]) -> Embedding {
        let mut nonzero = Vec::new();
        for_each_nonzero(v, |d, x| nonzero.push((d as u32, x)));
        Embedding::Sparse {
            dim: v.len() as u32,
            nonzero: nonzero.into(),
        }
    }

    #[test]
    fn nonzeros_are_found_in_order_whatever_the_length() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        for len in [0, 1, 15, 16, 17, 40, 512, 515] {
            for density in [0.0, 0.02, 0.5, 1.0] {
                let v: Vec<f32> = (0..len)
                    .map(|i| match rng.random::<f64>() {
                        r if r < density => rng.random::<f32>() - 0.5,
                        _ if i % 3 == 0 => -0.0,
                        _ => 0.0,
                    })
                    .collect();
                let mut got = Vec::new();
                for_each_nonzero(&v, |i, x| got.push((i, x)));
                let want: Vec<(usize, f32)> = v
                    .iter()
                    .copied()
                    .enumerate()
                    .filter(|(_, x)| *x != 0.0)
                    .collect();
                assert_eq!(got, want, "length {len}, density {density}");
            }
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
