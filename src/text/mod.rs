//! Text primitives shared by recall matching and the offline backend:
//! normalization, content words, sentence splitting, and "did you mean".

mod marks;
pub use marks::{fold_mapped, phrase_spans};

use std::sync::Arc;

/// Lowercases and folds every run of whitespace to one space, trimmed: the
/// form in which `expect` phrases are matched against a context.
pub fn fold(text: &str) -> String {
    let mut space = false;
    if text.is_ascii() {
        // Bytes, not chars: most text is ASCII, and this runs for every
        // message and every phrase matched.
        let mut out = Vec::with_capacity(text.len());
        for &b in text.as_bytes() {
            if is_space(b) {
                space = !out.is_empty();
            } else {
                if space {
                    out.push(b' ');
                    space = false;
                }
                out.push(b.to_ascii_lowercase());
            }
        }
        return String::from_utf8(out).expect("ASCII stays ASCII");
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_whitespace() {
            space = !out.is_empty();
        } else {
            if space {
                out.push(' ');
                space = false;
            }
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Whether an ASCII byte is whitespace as `char::is_whitespace` has it
/// (the vertical tab included, unlike `u8::is_ascii_whitespace`).
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t'..=b'\r')
}

/// The number of whitespace-separated words, as `split_whitespace` counts
/// them; on bytes where the text is ASCII.
pub fn count_words(text: &str) -> u32 {
    if !text.is_ascii() {
        return text.split_whitespace().count() as u32;
    }
    let mut words = 0;
    let mut space = true;
    for &b in text.as_bytes() {
        let white = is_space(b);
        words += u32::from(space && !white);
        space = white;
    }
    words
}

/// Words that carry no content (kept sorted and distinct).
const STOPWORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "all",
    "also",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "doing",
    "don",
    "down",
    "during",
    "each",
    "few",
    "for",
    "from",
    "further",
    "get",
    "got",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "let",
    "ll",
    "me",
    "might",
    "more",
    "most",
    "much",
    "must",
    "my",
    "myself",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "on",
    "once",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "re",
    "s",
    "same",
    "she",
    "should",
    "so",
    "some",
    "such",
    "t",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "us",
    "ve",
    "very",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "would",
    "yes",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
];

pub fn is_stopword(word: &str) -> bool {
    word.len() <= MAX_STOPWORD_LEN && stopword_of(fnv1a(word.as_bytes())) == Some(word)
}

/// The stopword whose FNV-1a hash is `h`, if any. Hashed: this runs for
/// every word the offline models read, and a binary search costs eight
/// string comparisons.
fn stopword_of(h: u64) -> Option<&'static str> {
    static BY_HASH: std::sync::LazyLock<rustc_hash::FxHashMap<u64, &str>> =
        std::sync::LazyLock::new(|| {
            STOPWORDS
                .iter()
                .map(|w| (fnv1a(w.as_bytes()), *w))
                .collect()
        });
    BY_HASH.get(&h).copied()
}

/// The longest stopword, in bytes.
const MAX_STOPWORD_LEN: usize = 10;

/// A crude English stemmer: enough for "dogs"/"dog" and "deploying"/"deploy"
/// to meet, never so much that distinct names collide often.
pub fn stem(word: &str) -> &str {
    let n = word.len();
    for (suffix, min) in STEMS {
        if n >= min && word.ends_with(suffix) && !word.ends_with("ss") {
            return &word[..n - suffix.len()];
        }
    }
    word
}

/// Lowercased, stemmed words that carry content, in order of appearance.
/// Calls `f` for each, without allocating per word.
pub fn for_each_content_word(text: &str, mut f: impl FnMut(&str)) {
    for_each_content_word_as_written(text, |stemmed, _| f(stemmed));
}

/// As [`for_each_content_word`], also passing the lowercased word as
/// written, for messages meant for people.
pub fn for_each_content_word_as_written(text: &str, mut f: impl FnMut(&str, &str)) {
    let mut buf = String::new();
    for_each_raw_word(text, |raw| {
        if let Some(w) = content_word(raw, &mut buf) {
            f(stem(w), w);
        }
    });
}

/// Calls `f` with each maximal run of alphanumeric characters of `text`.
pub fn for_each_raw_word<'t>(text: &'t str, mut f: impl FnMut(&'t str)) {
    if text.is_ascii() {
        // Bytes, not chars: most text is ASCII.
        let bytes = text.as_bytes();
        let mut start = None;
        for (i, b) in bytes.iter().enumerate() {
            match (b.is_ascii_alphanumeric(), start) {
                (true, None) => start = Some(i),
                (false, Some(s)) => {
                    f(&text[s..i]);
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = start {
            f(&text[s..]);
        }
        return;
    }
    for raw in text.split(|c: char| !c.is_alphanumeric()) {
        if !raw.is_empty() {
            f(raw);
        }
    }
}

/// The lowercased form of a raw word (in `buf`) where it carries content:
/// at least two characters (or a digit) and no stopword.
fn content_word<'b>(raw: &str, buf: &'b mut String) -> Option<&'b str> {
    buf.clear();
    if raw.is_ascii() {
        // Most words: checked on bytes before anything is copied.
        let b = raw.as_bytes();
        if b.len() < 2 && !b.iter().all(u8::is_ascii_digit) {
            return None;
        }
        buf.push_str(raw);
        buf.make_ascii_lowercase();
        return (!is_stopword(buf)).then_some(&**buf);
    }
    buf.extend(raw.chars().flat_map(char::to_lowercase));
    let short = buf.chars().count() < 2;
    if short && !buf.chars().all(|c| c.is_ascii_digit()) || is_stopword(buf) {
        return None;
    }
    Some(buf)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// FNV-1a, 64 bit: stable across platforms and releases, unlike std's hasher.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    })
}

/// For an ASCII raw word: `fnv1a(stem(w))` where `w` is its
/// [`content_word`], or `None` where it carries no content. The same
/// answer in one pass, without copying the word: it is lowercased as it is
/// hashed, the hash kept at each of the last three bytes (where [`stem`]
/// may cut), and stopwords are known by their hash.
fn ascii_content_hash(raw: &[u8]) -> Option<u64> {
    let n = raw.len();
    if n < 2 && !raw.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // cut[i]: the hash of the first n - 3 + i bytes.
    let mut cut = [0u64; 4];
    let mut h = FNV_OFFSET;
    for (i, &b) in raw.iter().enumerate() {
        if i + 3 >= n {
            cut[i + 3 - n] = h;
        }
        h = (h ^ u64::from(b.to_ascii_lowercase())).wrapping_mul(FNV_PRIME);
    }
    cut[3] = h;
    if n <= MAX_STOPWORD_LEN && is_stopword_hash(h, raw) {
        return None;
    }
    let ends = |suffix: &[u8]| {
        n >= suffix.len()
            && raw[n - suffix.len()..]
                .iter()
                .zip(suffix)
                .all(|(a, b)| a.to_ascii_lowercase() == *b)
    };
    let kept = STEMS
        .iter()
        .find(|(suffix, min)| n >= *min && ends(suffix.as_bytes()) && !ends(b"ss"))
        .map_or(n, |(suffix, _)| n - suffix.len());
    Some(cut[kept + 3 - n])
}

/// Whether the ASCII word `raw`, whose lowercase hashes to `h`, is a
/// stopword: looked up by hash, confirmed by its letters.
fn is_stopword_hash(h: u64, raw: &[u8]) -> bool {
    stopword_of(h).is_some_and(|w| w.as_bytes().eq_ignore_ascii_case(raw))
}

/// The suffixes [`stem`] cuts, with the shortest word it cuts each from.
const STEMS: [(&str, usize); 4] = [("ing", 6), ("ed", 5), ("es", 5), ("s", 4)];

/// The distinct content words of `text`, in order of first appearance.
pub fn content_words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for_each_content_word(text, |w| {
        if !out.iter().any(|o| o == w) {
            out.push(w.to_string());
        }
    });
    out
}

/// Whether a raw word looks like a name, a number or a code: the things a
/// user states once and needs later (the tutorial's "entity" keywords).
pub fn looks_like_entity(raw: &str, sentence_initial: bool) -> bool {
    if raw.is_ascii() {
        // One pass over bytes: the same answer for ASCII, where a char is
        // uppercase exactly when its byte is.
        let b = raw.as_bytes();
        return (!sentence_initial && b.first().is_some_and(u8::is_ascii_uppercase))
            || b.iter()
                .enumerate()
                .any(|(i, c)| c.is_ascii_digit() || (i > 0 && c.is_ascii_uppercase()));
    }
    let mut chars = raw.chars();
    let first = chars.next();
    raw.chars().any(|c| c.is_ascii_digit())
        || (!sentence_initial && first.is_some_and(char::is_uppercase))
        || raw.chars().skip(1).any(char::is_uppercase)
}

/// Splits text into sentences, each a trimmed slice of the input, so that
/// phrases inside a sentence survive extraction verbatim.
pub fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for_each_sentence(text, |s| out.push(s));
    out
}

/// Calls `f` with each of [`sentences`], without collecting them.
pub fn for_each_sentence<'t>(text: &'t str, mut f: impl FnMut(&'t str)) {
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let end_here = match b {
            b'\n' => true,
            b'.' | b'!' | b'?' => {
                // A terminator followed by whitespace (or the end) and not
                // inside a number like 3.5 or a version like v1.2.
                let next = bytes.get(i + 1);
                next.is_none_or(|n| n.is_ascii_whitespace())
            }
            _ => false,
        };
        if end_here {
            let s = text[start..=i].trim();
            if !s.is_empty() {
                f(s);
            }
            start = i + 1;
        }
    }
    let s = text[start..].trim();
    if !s.is_empty() {
        f(s);
    }
}

/// A content word of a text as the offline models compare words: its
/// stemmed form hashed (FNV-1a; collisions among the few thousand words of
/// a conversation are vanishingly unlikely), where its raw word starts, and
/// whether that raw word looks like an entity in its sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Word {
    pub hash: u64,
    /// Byte offset of its raw word in the text.
    pub at: u32,
    /// [`looks_like_entity`], with the sentence-initial word of each of
    /// [`sentences`] as initial.
    pub entity: bool,
}

/// A text read once for the offline models (embedder, keyword index,
/// summarizer, responder): its content words and sentences, so that a
/// message is never read again however often it is embedded, summarized
/// or cited.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Analysis {
    /// Every content word, in order of appearance.
    pub words: Vec<Word>,
    /// [`sentences`] of the text, as byte ranges.
    pub sentences: Vec<std::ops::Range<u32>>,
    /// [`Analysis::cited`], where they differ from `sentences`.
    cited: Option<Vec<std::ops::Range<u32>>>,
}

impl Analysis {
    pub fn new(text: &str) -> Analysis {
        let offset = |s: &str| (s.as_ptr() as usize - text.as_ptr() as usize) as u32;
        let range = |s: &str| offset(s)..offset(s) + s.len() as u32;
        let mut a = Analysis {
            words: Vec::with_capacity(text.len() / 8),
            ..Analysis::default()
        };
        let mut buf = String::new();
        for_each_sentence(text, |s| {
            a.sentences.push(range(s));
            let mut initial = true;
            for_each_raw_word(s, |raw| {
                let first = std::mem::replace(&mut initial, false);
                let hash = if raw.is_ascii() {
                    ascii_content_hash(raw.as_bytes())
                } else {
                    content_word(raw, &mut buf).map(|w| fnv1a(stem(w).as_bytes()))
                };
                if let Some(hash) = hash {
                    a.words.push(Word {
                        hash,
                        at: offset(raw),
                        entity: looks_like_entity(raw, first),
                    });
                }
            });
        });
        // A line's leading list marks change its first sentence; without
        // any, the sentences a reply cites are the sentences.
        if text.starts_with("- ") || text.contains("\n- ") {
            let mut cited = Vec::new();
            for line in text.lines() {
                for_each_sentence(line.trim_start_matches("- "), |s| cited.push(range(s)));
            }
            a.cited = Some(cited);
        }
        a
    }

    /// The sentences a reply can cite: [`sentences`] of each line once its
    /// leading `- ` list marks are dropped.
    pub fn cited(&self) -> &[std::ops::Range<u32>] {
        self.cited.as_deref().unwrap_or(&self.sentences)
    }

    /// The words whose raw word starts within `r`.
    pub fn words_in(&self, r: &std::ops::Range<u32>) -> &[Word] {
        let from = self.words.partition_point(|w| w.at < r.start);
        let to = self.words.partition_point(|w| w.at < r.end);
        &self.words[from..to]
    }
}

/// A message's content with what recall matching and the offline models
/// read from it, each read at its first need and kept: a message nobody
/// asks about is never read, and one cited in a hundred contexts is read
/// once.
#[derive(Debug)]
pub struct Reading {
    content: Arc<str>,
    folded: std::sync::OnceLock<Box<str>>,
    analysis: std::sync::OnceLock<Analysis>,
    phrases: std::sync::OnceLock<Box<[(u32, u32)]>>,
}

/// What is read follows from the content alone.
impl PartialEq for Reading {
    fn eq(&self, other: &Reading) -> bool {
        self.content == other.content
    }
}

impl Reading {
    pub fn new(content: Arc<str>) -> Reading {
        Reading {
            content,
            folded: Default::default(),
            analysis: Default::default(),
            phrases: Default::default(),
        }
    }

    pub fn content(&self) -> &Arc<str> {
        &self.content
    }

    /// [`fold`] of the content.
    pub fn folded(&self) -> &str {
        self.folded.get_or_init(|| fold(&self.content).into())
    }

    /// Where the folded content first holds each of `phrases` that it
    /// holds: (phrase index, byte offset). Found at the first ask and
    /// kept, so every ask must pass the same phrases (those of the
    /// message's scenario).
    pub fn phrases(&self, phrases: &Phrases) -> &[(u32, u32)] {
        self.phrases
            .get_or_init(|| phrases.first_in(self.folded()).into())
    }

    /// [`Analysis`] of the content.
    pub fn analysis(&self) -> &Analysis {
        self.analysis.get_or_init(|| Analysis::new(&self.content))
    }
}

/// The folded `expect` phrases of a scenario's facts, found in a text in
/// one pass.
#[derive(Debug, Clone)]
pub struct Phrases {
    /// Every phrase, one after the other (two allocations, not one a
    /// phrase: a scenario read back from a run's spool builds them at
    /// each step of an evicted user).
    all: String,
    /// Where each phrase ends in `all`.
    ends: Vec<u32>,
    /// Built at the first search: a scenario read back from a run's spool
    /// at each step of an evicted user rarely searches.
    finder: std::sync::OnceLock<aho_corasick::AhoCorasick>,
}

impl Phrases {
    /// `list` as folded phrases.
    pub fn new<S: AsRef<str>>(list: impl IntoIterator<Item = S>) -> Phrases {
        let mut all = String::new();
        let ends = list
            .into_iter()
            .map(|p| {
                all.push_str(p.as_ref());
                u32::try_from(all.len()).expect("phrases under 4 GiB")
            })
            .collect();
        Phrases {
            finder: std::sync::OnceLock::new(),
            all,
            ends,
        }
    }

    /// Every phrase, by index.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + Clone {
        (0..self.ends.len() as u32).map(|i| self.get(i))
    }

    fn finder(&self) -> &aho_corasick::AhoCorasick {
        self.finder.get_or_init(|| {
            // A folded text holds no newline: an empty phrase (which the
            // format forbids) is searched as one, and matches nowhere.
            let patterns = self.iter().map(|p| if p.is_empty() { "\n" } else { p });
            // A contiguous NFA without a prefilter: the texts are single
            // messages, too short for a prefilter to pay for itself.
            aho_corasick::AhoCorasick::builder()
                .kind(Some(aho_corasick::AhoCorasickKind::ContiguousNFA))
                .prefilter(false)
                .build(patterns)
                .expect("phrases of bounded size")
        })
    }

    pub fn get(&self, i: u32) -> &str {
        let i = i as usize;
        let start = i.checked_sub(1).map_or(0, |j| self.ends[j] as usize);
        &self.all[start..self.ends[i] as usize]
    }

    /// Where `folded` first holds each phrase it holds: (phrase index,
    /// byte offset), by offset.
    pub fn first_in(&self, folded: &str) -> Vec<(u32, u32)> {
        let mut out: Vec<(u32, u32)> = Vec::new();
        // Matches come by end; a phrase's all have one length, so its
        // first reported is its first.
        for m in self.finder().find_overlapping_iter(folded) {
            let p = m.pattern().as_u32();
            if !out.iter().any(|&(q, _)| q == p) {
                out.push((p, m.start() as u32));
            }
        }
        out
    }
}

/// The closest known name, when it is close enough to be a likely typo.
pub fn did_you_mean<'a>(given: &str, known: &[&'a str]) -> Option<&'a str> {
    let mut best: Option<(usize, &'a str)> = None;
    for &k in known {
        let d = strsim::levenshtein(given, k);
        if best.is_none_or(|(bd, bk)| d < bd || (d == bd && k < bk)) {
            best = Some((d, k));
        }
    }
    best.filter(|&(d, k)| d > 0 && d <= (k.chars().count().max(3) / 3).max(2))
        .map(|(_, k)| k)
}

/// `; did you mean "x"?` for a likely typo of a known name, else nothing.
pub fn suggestion(given: &str, known: &[&str]) -> String {
    did_you_mean(given, known)
        .map(|s| format!("; did you mean {s:?}?"))
        .unwrap_or_default()
}

/// Lower-case hexadecimal of bytes (a digest, as files and caches name it).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_words_hash_as_their_stemmed_content_word() {
        let mut words: Vec<String> = STOPWORDS.iter().map(|w| w.to_string()).collect();
        for w in [
            "a",
            "I",
            "7",
            "42",
            "x1",
            "Ok",
            "The",
            "THE",
            "Again",
            "plants",
            "Plants",
            "PLANTING",
            "planted",
            "boxes",
            "glass",
            "glasses",
            "passed",
            "ring",
            "rings",
            "sing",
            "seeds",
            "bus",
            "buses",
            "ss",
            "s",
            "ed",
            "es",
            "ing",
            "bring",
            "Bringing",
            "yourselves",
            "Yourselvess",
            "themselves1",
            "mixedCASE",
            "Tokyo",
            "V8",
            "abcdefghijk",
        ] {
            words.push(w.to_string());
        }
        let mut buf = String::new();
        for w in &words {
            let expected = content_word(w, &mut buf).map(|c| fnv1a(stem(c).as_bytes()));
            assert_eq!(ascii_content_hash(w.as_bytes()), expected, "{w}");
            let upper = w.to_ascii_uppercase();
            let expected = content_word(&upper, &mut buf).map(|c| fnv1a(stem(c).as_bytes()));
            assert_eq!(ascii_content_hash(upper.as_bytes()), expected, "{upper}");
        }
    }

    #[test]
    fn words_are_counted_as_split_whitespace_counts_them() {
        for t in [
            "",
            " ",
            "one",
            " two  words ",
            "tab\tand\nnewline\r\nand\x0bvertical\x0cfeed",
            "no-break\u{a0}space and\u{2003}em space",
            "\u{85}next line",
            "x\x1fy",
        ] {
            assert_eq!(count_words(t), t.split_whitespace().count() as u32, "{t:?}");
        }
    }

    #[test]
    fn stopwords_are_sorted() {
        assert!(STOPWORDS.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            STOPWORDS.iter().map(|w| w.len()).max(),
            Some(MAX_STOPWORD_LEN)
        );
        assert!(STOPWORDS.iter().all(|w| is_stopword(w)));
        for w in ["", "dog", "biscuit", "abouts", "themselvesx", "The"] {
            assert!(!is_stopword(w), "{w}");
        }
    }

    #[test]
    fn fold_lowercases_and_folds_whitespace() {
        assert_eq!(fold("  Ana\n\tTORRES  likes  X "), "ana torres likes x");
    }

    #[test]
    fn content_words_drop_stopwords_and_stem() {
        assert_eq!(
            content_words("My dogs are called Biscuit and I'm deploying on Friday 3"),
            vec!["dog", "call", "biscuit", "deploy", "friday", "3"]
        );
    }

    #[test]
    fn sentences_keep_decimals_together() {
        assert_eq!(
            sentences("We pay 3.5 USD. Really?\nYes! ok"),
            vec!["We pay 3.5 USD.", "Really?", "Yes!", "ok"]
        );
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("trigger_tokns", &["trigger_tokens", "max_summary_tokens"]),
            Some("trigger_tokens")
        );
        assert_eq!(did_you_mean("zzz", &["expect", "statement"]), None);
    }
}
