//! Byte-pair encoding over a rank table laid out at build time (see
//! build.rs): the tables are part of the binary, so an encoding costs
//! nothing to load; only its split pattern is compiled, once, on first use.
//!
//! The encoding is tiktoken's: the text is split by the encoding's pattern,
//! a piece that is a token is that token, and any other piece starts as its
//! bytes, whose adjacent pair of lowest rank (leftmost on a tie) is merged
//! until no adjacent pair is a token. The unit tests check every token id
//! against tiktoken-rs on scenarios and generated text in all four
//! encodings.

use super::hash;
use fancy_regex::Regex;

/// One encoding: its rank table and its split pattern.
pub struct Bpe {
    /// The end of the ordinary ranks.
    n: usize,
    bits: u32,
    offsets: &'static [u8],
    slots: &'static [u8],
    bytes: &'static [u8],
    pattern: &'static str,
    regex: std::sync::OnceLock<Regex>,
}

/// Pieces longer than this merge through a heap (n log n), shorter ones by
/// scanning their few pairs (faster when short).
const LONG_PIECE: usize = 128;

#[inline]
fn u32_at(table: &[u8], i: usize) -> u32 {
    let b = &table[4 * i..4 * i + 4];
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

impl Bpe {
    /// Reads a table written by build.rs.
    pub const fn new(file: &'static [u8], pattern: &'static str) -> Bpe {
        let n = u32::from_le_bytes([file[0], file[1], file[2], file[3]]) as usize;
        let bits = u32::from_le_bytes([file[4], file[5], file[6], file[7]]);
        let (_, rest) = file.split_at(8);
        let (offsets, rest) = rest.split_at(4 * (n + 1));
        let (slots, bytes) = rest.split_at(4 << bits);
        Bpe {
            n,
            bits,
            offsets,
            slots,
            bytes,
            pattern,
            regex: std::sync::OnceLock::new(),
        }
    }

    /// The bytes of an ordinary token.
    #[inline]
    pub fn token(&self, rank: u32) -> &'static [u8] {
        let rank = rank as usize;
        &self.bytes[u32_at(self.offsets, rank) as usize..u32_at(self.offsets, rank + 1) as usize]
    }

    /// The rank of a token, if these bytes are one.
    #[inline]
    pub fn rank(&self, piece: &[u8]) -> Option<u32> {
        let mask = (1usize << self.bits) - 1;
        let mut at = hash::slot(piece, self.bits);
        loop {
            let slot = u32_at(self.slots, at);
            if slot == 0 {
                return None;
            }
            if self.token(slot - 1) == piece {
                return Some(slot - 1);
            }
            at = (at + 1) & mask;
        }
    }

    /// The split pattern, compiled once per process and cloned once per
    /// thread (a clone has its own match caches, so threads never wait on
    /// one another).
    fn with_regex<R>(&self, f: impl FnOnce(&Regex) -> R) -> R {
        thread_local! {
            static MINE: std::cell::RefCell<Vec<(&'static str, Regex)>> = const {
                std::cell::RefCell::new(Vec::new())
            };
        }
        MINE.with(|mine| {
            let mut mine = mine.borrow_mut();
            let at = match mine
                .iter()
                .position(|(p, _)| std::ptr::eq(*p, self.pattern))
            {
                Some(at) => at,
                None => {
                    let regex = self
                        .regex
                        .get_or_init(|| Regex::new(self.pattern).expect("tiktoken's pattern"));
                    mine.push((self.pattern, regex.clone()));
                    mine.len() - 1
                }
            };
            f(&mine[at].1)
        })
    }

    /// Calls `each` with every piece of `text` as the pattern splits it.
    fn pieces(&self, text: &str, mut each: impl FnMut(&[u8])) {
        self.with_regex(|regex| {
            let mut done = 0;
            for found in regex.find_iter(text) {
                match found {
                    Ok(m) => {
                        each(m.as_str().as_bytes());
                        done = m.end();
                    }
                    // The backtracking limit (never reached by these
                    // patterns, which match any character in a step or
                    // two): the rest is one piece, not a panic.
                    Err(_) => {
                        if done < text.len() {
                            each(&text.as_bytes()[done..]);
                        }
                        break;
                    }
                }
            }
        })
    }

    /// How many tokens `text` encodes to.
    pub fn count(&self, text: &str) -> usize {
        let mut n = 0;
        let mut parts = Vec::new();
        self.pieces(text, |piece| {
            n += match self.rank(piece) {
                Some(_) => 1,
                None => self.merge(piece, &mut parts, |_| {}),
            }
        });
        n
    }

    /// The tokens of `text`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        let mut parts = Vec::new();
        self.pieces(text, |piece| match self.rank(piece) {
            Some(rank) => out.push(rank),
            None => {
                self.merge(piece, &mut parts, |rank| out.push(rank));
            }
        });
        out
    }

    /// The bytes of a sequence of tokens.
    pub fn decode(&self, tokens: &[u32]) -> Vec<u8> {
        let mut out = Vec::new();
        for &t in tokens {
            if (t as usize) < self.n {
                out.extend_from_slice(self.token(t));
            }
        }
        out
    }

    /// The rank of `piece[a..b]` as one token, or `u32::MAX`.
    #[inline]
    fn pair(&self, piece: &[u8], a: usize, b: usize) -> u32 {
        self.rank(&piece[a..b]).unwrap_or(u32::MAX)
    }

    /// Merges a piece that is not a token (two bytes or more) and calls
    /// `emit` with its tokens in order; returns how many.
    fn merge(&self, piece: &[u8], parts: &mut Vec<(usize, u32)>, emit: impl FnMut(u32)) -> usize {
        if piece.len() > LONG_PIECE {
            return self.merge_long(piece, emit);
        }
        // parts[i] = (start of part i, rank of part i joined with part i+1).
        parts.clear();
        for i in 0..piece.len() - 1 {
            parts.push((i, self.pair(piece, i, i + 2)));
        }
        parts.push((piece.len() - 1, u32::MAX));
        parts.push((piece.len(), u32::MAX));
        loop {
            let mut best = (u32::MAX, 0);
            for (i, &(_, rank)) in parts[..parts.len() - 1].iter().enumerate() {
                if rank < best.0 {
                    best = (rank, i);
                }
            }
            if best.0 == u32::MAX {
                break;
            }
            let i = best.1;
            // Part i absorbs part i+1: its pair is now with part i+2, and
            // part i-1's pair is with the longer part i.
            parts[i].1 = if i + 3 < parts.len() {
                self.pair(piece, parts[i].0, parts[i + 3].0)
            } else {
                u32::MAX
            };
            if i > 0 {
                parts[i - 1].1 = self.pair(piece, parts[i - 1].0, parts[i + 2].0);
            }
            parts.remove(i + 1);
        }
        self.emit_parts(piece, parts.windows(2).map(|w| (w[0].0, w[1].0)), emit)
    }

    /// The same merges for a long piece: a heap of candidate pairs, stale
    /// ones skipped when they surface.
    fn merge_long(&self, piece: &[u8], emit: impl FnMut(u32)) -> usize {
        use std::cmp::Reverse;
        let len = piece.len();
        // Part starting at byte i ends at end[i]; prev[i] starts the part
        // before (usize::MAX for none); rank[i] is the current candidate.
        let mut end: Vec<usize> = (1..=len).collect();
        let mut prev: Vec<usize> = (0..len).map(|i| i.wrapping_sub(1)).collect();
        let mut rank = vec![u32::MAX; len];
        let mut heap = std::collections::BinaryHeap::new();
        for (i, r) in rank[..len - 1].iter_mut().enumerate() {
            *r = self.pair(piece, i, i + 2);
            if *r != u32::MAX {
                heap.push(Reverse((*r, i)));
            }
        }
        while let Some(Reverse((r, i))) = heap.pop() {
            if rank[i] != r || end[i] >= len {
                continue;
            }
            let next = end[i];
            // Part i absorbs the part at `next`.
            end[i] = end[next];
            rank[next] = u32::MAX;
            if end[i] < len {
                prev[end[i]] = i;
                rank[i] = self.pair(piece, i, end[end[i]]);
                if rank[i] != u32::MAX {
                    heap.push(Reverse((rank[i], i)));
                }
            } else {
                rank[i] = u32::MAX;
            }
            let p = prev[i];
            if p != usize::MAX {
                rank[p] = self.pair(piece, p, end[i]);
                if rank[p] != u32::MAX {
                    heap.push(Reverse((rank[p], p)));
                }
            }
        }
        let mut bounds = Vec::new();
        let mut i = 0;
        while i < len {
            bounds.push((i, end[i]));
            i = end[i];
        }
        self.emit_parts(piece, bounds.into_iter(), emit)
    }

    fn emit_parts(
        &self,
        piece: &[u8],
        parts: impl Iterator<Item = (usize, usize)>,
        mut emit: impl FnMut(u32),
    ) -> usize {
        let mut n = 0;
        for (a, b) in parts {
            emit(self.rank(&piece[a..b]).expect("a merged part is a token"));
            n += 1;
        }
        n
    }
}
