//! Exact token accounting: the chat model's own BPE (tiktoken's encodings,
//! their rank tables laid out at build time) and the chat format's
//! per-message overhead, counted as the reference tutorial and OpenAI's
//! cookbook count them.

mod bpe;
mod hash;

use bpe::Bpe;

macro_rules! ranks {
    ($name:literal) => {
        include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".ranks"))
    };
}

/// GPT-2's and the Codex models' split pattern.
const PATTERN_50K: &str =
    r"'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s";
const PATTERN_CL100K: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s";
const PATTERN_O200K: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    "|",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    "|",
    r"\p{N}{1,3}",
    "|",
    r" ?[^\s\p{L}\p{N}]+[\r\n/]*",
    "|",
    r"\s*[\r\n]+",
    "|",
    r"\s+(?!\S)",
    "|",
    r"\s+"
);

static O200K: Bpe = Bpe::new(ranks!("o200k_base"), PATTERN_O200K);
static CL100K: Bpe = Bpe::new(ranks!("cl100k_base"), PATTERN_CL100K);
static P50K: Bpe = Bpe::new(ranks!("p50k_base"), PATTERN_50K);
static R50K: Bpe = Bpe::new(ranks!("r50k_base"), PATTERN_50K);

/// Tokens of formatting around each message of a chat call (role, separators).
pub const MESSAGE_OVERHEAD: u32 = 3;
/// Tokens that prime the assistant's reply, once per call.
pub const REPLY_PRIMING: u32 = 3;
/// Tokens of formatting around each tool call of an assistant message (as
/// a message's: the call is rendered to the model as its own block).
pub const TOOL_CALL_OVERHEAD: u32 = 3;

/// Counts tokens with one encoding. Cheap to copy; the rank tables are part
/// of the binary.
#[derive(Clone, Copy)]
pub struct Tokenizer {
    bpe: &'static Bpe,
    name: &'static str,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokenizer({})", self.name)
    }
}

/// Encoding names accepted in the configuration.
pub const ENCODINGS: &[&str] = &["o200k_base", "cl100k_base", "p50k_base", "r50k_base"];

impl Tokenizer {
    /// The tokenizer of an encoding by name (`o200k_base`, `cl100k_base`, ...).
    pub fn by_encoding(name: &str) -> Result<Tokenizer, String> {
        let (bpe, name) = match name {
            "o200k_base" => (&O200K, "o200k_base"),
            "cl100k_base" => (&CL100K, "cl100k_base"),
            "p50k_base" => (&P50K, "p50k_base"),
            "r50k_base" => (&R50K, "r50k_base"),
            other => {
                return Err(format!(
                    "unknown encoding {other:?}; known: {}",
                    ENCODINGS.join(", ")
                ));
            }
        };
        Ok(Tokenizer { bpe, name })
    }

    /// The encoding a model uses, by OpenAI's naming (tiktoken's own
    /// table): gpt-5, gpt-4.5, gpt-4.1, gpt-4o, gpt-oss and the o-series
    /// use o200k_base; gpt-4, gpt-3.5 and the embedding models cl100k_base;
    /// the Codex and late davinci models p50k_base; GPT-2 and the first
    /// GPT-3 models r50k_base. A fine-tuned model (`ft:BASE:...`) uses its
    /// base's.
    pub fn encoding_for_model(model: &str) -> Option<&'static str> {
        if let Some(rest) = model.strip_prefix("ft:") {
            return Self::encoding_for_model(rest.split(':').next().unwrap_or(rest));
        }
        const EXACT: &[(&str, &str)] = &[
            ("o1", "o200k_base"),
            ("o3", "o200k_base"),
            ("o4-mini", "o200k_base"),
            ("gpt-5", "o200k_base"),
            ("gpt-4.1", "o200k_base"),
            ("gpt-4o", "o200k_base"),
            ("gpt-4", "cl100k_base"),
            ("gpt-3.5-turbo", "cl100k_base"),
            ("gpt-3.5", "cl100k_base"),
            ("gpt-35-turbo", "cl100k_base"),
            ("davinci-002", "cl100k_base"),
            ("babbage-002", "cl100k_base"),
            ("text-embedding-ada-002", "cl100k_base"),
            ("text-embedding-3-small", "cl100k_base"),
            ("text-embedding-3-large", "cl100k_base"),
            ("text-davinci-003", "p50k_base"),
            ("text-davinci-002", "p50k_base"),
            ("code-davinci-002", "p50k_base"),
            ("code-davinci-001", "p50k_base"),
            ("code-cushman-002", "p50k_base"),
            ("code-cushman-001", "p50k_base"),
            ("davinci-codex", "p50k_base"),
            ("cushman-codex", "p50k_base"),
            ("text-davinci-edit-001", "p50k_base"),
            ("code-davinci-edit-001", "p50k_base"),
            ("text-davinci-001", "r50k_base"),
            ("text-curie-001", "r50k_base"),
            ("text-babbage-001", "r50k_base"),
            ("text-ada-001", "r50k_base"),
            ("davinci", "r50k_base"),
            ("curie", "r50k_base"),
            ("babbage", "r50k_base"),
            ("ada", "r50k_base"),
            ("gpt2", "r50k_base"),
            ("gpt-2", "r50k_base"),
        ];
        const PREFIX: &[(&str, &str)] = &[
            ("o1-", "o200k_base"),
            ("o3-", "o200k_base"),
            ("o4-mini-", "o200k_base"),
            ("gpt-5", "o200k_base"),
            ("gpt-4.5-", "o200k_base"),
            ("gpt-4.1-", "o200k_base"),
            ("chatgpt-4o-", "o200k_base"),
            ("gpt-4o-", "o200k_base"),
            ("gpt-4-", "cl100k_base"),
            ("gpt-3.5-turbo-", "cl100k_base"),
            ("gpt-35-turbo-", "cl100k_base"),
            ("gpt-oss-", "o200k_base"),
            ("codex-mini", "o200k_base"),
        ];
        EXACT
            .iter()
            .find(|(name, _)| *name == model)
            .or_else(|| PREFIX.iter().find(|(prefix, _)| model.starts_with(prefix)))
            .map(|&(_, encoding)| encoding)
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Tokens of a text on its own.
    pub fn count(&self, text: &str) -> u32 {
        self.bpe.count(text) as u32
    }

    /// Tokens of a text of up to a few hundred bytes, remembered per
    /// thread: the pieces that exact counting puts together (a line's first
    /// and last words, a sentence offered to a summary again and again)
    /// repeat across a conversation, and a lookup costs a fraction of a
    /// count. Two generations of at most 8,192 texts each are kept (a
    /// text used in the last two is kept); longer texts are counted.
    pub fn count_remembered(&self, text: &str) -> u32 {
        const LONGEST: usize = 400;
        const KEPT: usize = 1 << 13;
        type Known = rustc_hash::FxHashMap<Box<str>, u32>;
        if text.len() > LONGEST {
            return self.count(text);
        }
        thread_local! {
            // Per encoding: this generation's texts and the last one's.
            static KNOWN: std::cell::RefCell<Vec<(&'static str, Known, Known)>> =
                Default::default();
        }
        KNOWN.with(|known| {
            let mut known = known.borrow_mut();
            let at = match known.iter().position(|(name, _, _)| *name == self.name) {
                Some(at) => at,
                None => {
                    known.push((self.name, Known::default(), Known::default()));
                    known.len() - 1
                }
            };
            let (_, now, before) = &mut known[at];
            if let Some(&n) = now.get(text) {
                return n;
            }
            let n = before
                .get(text)
                .copied()
                .unwrap_or_else(|| self.count(text));
            if now.len() >= KEPT {
                *before = std::mem::take(now);
            }
            now.insert(text.into(), n);
            n
        })
    }

    /// Tokens of a text sent as one chat message, overhead included.
    pub fn count_message(&self, text: &str) -> u32 {
        self.count(text) + MESSAGE_OVERHEAD
    }

    /// Tokens of an assistant message's tool calls, given as (name,
    /// arguments): each call's name and arguments as text plus
    /// [`TOOL_CALL_OVERHEAD`]. (The call's id is the API's bookkeeping, not
    /// shown to the model.)
    pub fn count_calls<'a>(&self, calls: impl IntoIterator<Item = (&'a str, &'a str)>) -> u32 {
        calls
            .into_iter()
            .map(|(name, arguments)| self.count(name) + self.count(arguments) + TOOL_CALL_OVERHEAD)
            .sum()
    }

    /// Cuts a text to at most `limit` tokens (on a token boundary that is
    /// also a character boundary).
    pub fn truncate(&self, text: &str, limit: u32) -> String {
        let tokens = self.bpe.encode(text);
        if tokens.len() as u32 <= limit {
            return text.to_string();
        }
        let mut n = limit as usize;
        loop {
            if let Ok(s) = String::from_utf8(self.bpe.decode(&tokens[..n])) {
                return s;
            }
            n -= 1;
        }
    }
}

/// The context window of well-known chat models, in tokens.
pub fn context_window(model: &str) -> Option<u32> {
    let table: &[(&str, u32)] = &[
        ("gpt-4.1", 1_047_576),
        ("gpt-4o", 128_000),
        ("gpt-4-turbo", 128_000),
        ("gpt-4-1106", 128_000),
        ("gpt-4-0125", 128_000),
        ("gpt-4-32k", 32_768),
        ("gpt-4", 8_192),
        ("gpt-3.5-turbo", 16_385),
        ("o1-mini", 128_000),
        ("o1", 200_000),
        ("o3", 200_000),
        ("o4-mini", 200_000),
    ];
    table
        .iter()
        .find(|(prefix, _)| model.starts_with(prefix))
        .map(|&(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every string in the shipped scenarios and the importers' excerpts.
    fn corpus() -> Vec<String> {
        fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::String(s) => out.push(s.clone()),
                serde_json::Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
                serde_json::Value::Object(o) => o.values().for_each(|v| strings(v, out)),
                _ => {}
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut out = Vec::new();
        for dir in ["scenarios", "tests/data"] {
            let mut files: Vec<_> = std::fs::read_dir(root.join(dir))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect();
            files.sort();
            for f in files {
                let v: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
                strings(&v, &mut out);
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Texts no scenario has: every script and class the split patterns
    /// tell apart, contractions in both cases, runs of whitespace of every
    /// kind, and long runs with no split (merged through the heap).
    fn generated() -> Vec<String> {
        use rand::{RngExt, SeedableRng};
        let alphabet: Vec<&str> = vec![
            "a",
            "e",
            "t",
            "Th",
            "QU",
            "x",
            "Z",
            "0",
            "7",
            "42",
            "1999",
            " ",
            " ",
            "  ",
            "\t",
            "\n",
            "\r\n",
            "\n\n",
            "\u{a0}",
            "\u{3000}",
            "'s",
            "'S",
            "'ll",
            "'LL",
            "'d",
            "'ve",
            "'re",
            "'m",
            "'t",
            ".",
            ",",
            "!?",
            "...",
            "/",
            "\\",
            "--",
            "\"",
            "(",
            ")",
            "<|",
            "|>",
            "endoftext",
            "é",
            "ñ",
            "ß",
            "ǅ",
            "ﬁ",
            "Ω",
            "ж",
            "Ж",
            "中",
            "文",
            "日本",
            "한국",
            "ع",
            "ש",
            "ह",
            "ि",
            "\u{301}",
            "\u{200d}",
            "😀",
            "👍🏽",
            "🇫🇷",
            "１２",
            "ｱ",
            "\u{0}",
            "\u{7f}",
            "\u{fffd}",
            "𝔘",
            "ǥ",
        ];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut out = Vec::new();
        for _ in 0..3000 {
            let len = rng.random_range(0..60);
            out.push(
                (0..len)
                    .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                    .collect(),
            );
        }
        for unit in [
            "a", "ab", "1", "中", "😀", "é", "\u{301}", "x\u{301}", " ", "\n", "!", "Zq",
        ] {
            for n in [100, 127, 128, 129, 300, 2000] {
                out.push(unit.repeat(n));
            }
        }
        for _ in 0..200 {
            let len = rng.random_range(100..800);
            let no_split = ["q", "z", "x", "k", "é", "ж", "中"];
            out.push(
                (0..len)
                    .map(|_| no_split[rng.random_range(0..no_split.len())])
                    .collect(),
            );
        }
        out
    }

    #[test]
    fn every_token_id_equals_tiktoken() {
        let mut texts = corpus();
        assert!(texts.len() > 3000, "{} texts", texts.len());
        texts.extend(generated());
        let theirs = [
            tiktoken_rs::o200k_base().unwrap(),
            tiktoken_rs::cl100k_base().unwrap(),
            tiktoken_rs::p50k_base().unwrap(),
            tiktoken_rs::r50k_base().unwrap(),
        ];
        for (name, theirs) in ENCODINGS.iter().zip(&theirs) {
            let ours = Tokenizer::by_encoding(name).unwrap();
            for text in &texts {
                let expected = theirs.encode_ordinary(text);
                assert_eq!(ours.bpe.encode(text), expected, "{name}: {text:?}");
                assert_eq!(
                    ours.count(text) as usize,
                    expected.len(),
                    "{name}: {text:?}"
                );
                assert_eq!(
                    ours.bpe.decode(&expected),
                    text.as_bytes(),
                    "{name}: {text:?}"
                );
            }
        }
    }

    #[test]
    fn model_names_map_as_tiktoken_maps_them() {
        use tiktoken_rs::tokenizer::{Tokenizer as T, get_tokenizer};
        let names = [
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4o-2024-05-13",
            "chatgpt-4o-latest",
            "gpt-4.1",
            "gpt-4.1-nano",
            "gpt-4.5-preview",
            "gpt-5",
            "gpt-5-mini",
            "gpt-5.2-codex",
            "o1",
            "o1-mini",
            "o3",
            "o3-mini",
            "o4-mini",
            "o4-mini-high",
            "gpt-oss-20b",
            "codex-mini",
            "gpt-4",
            "gpt-4-0613",
            "gpt-4-32k",
            "gpt-3.5-turbo",
            "gpt-3.5-turbo-16k",
            "gpt-35-turbo",
            "gpt-3.5",
            "text-embedding-3-small",
            "davinci-002",
            "text-davinci-003",
            "code-davinci-002",
            "text-davinci-edit-001",
            "text-davinci-001",
            "davinci",
            "ada",
            "gpt2",
            "gpt-2",
            "ft:gpt-4o-mini:acme::abc",
            "ft:gpt-3.5-turbo:x",
            "llama-3",
            "",
            "o2",
            "gpt-6",
            "claude-3",
        ];
        for name in names {
            let expected = get_tokenizer(name).map(|t| match t {
                T::O200kBase | T::O200kHarmony => "o200k_base",
                T::Cl100kBase => "cl100k_base",
                T::P50kBase | T::P50kEdit => "p50k_base",
                T::R50kBase | T::Gpt2 => "r50k_base",
            });
            assert_eq!(Tokenizer::encoding_for_model(name), expected, "{name}");
        }
    }

    #[test]
    fn model_encodings() {
        assert_eq!(Tokenizer::encoding_for_model("gpt-4o"), Some("o200k_base"));
        assert_eq!(
            Tokenizer::encoding_for_model("gpt-4.1-mini"),
            Some("o200k_base")
        );
        assert_eq!(Tokenizer::encoding_for_model("o3-mini"), Some("o200k_base"));
        assert_eq!(Tokenizer::encoding_for_model("gpt-4"), Some("cl100k_base"));
        assert_eq!(
            Tokenizer::encoding_for_model("gpt-3.5-turbo"),
            Some("cl100k_base")
        );
        assert_eq!(Tokenizer::encoding_for_model("llama-3"), None);
    }

    #[test]
    fn counts_match_openai_reference_values() {
        // Reference counts from OpenAI's tiktoken for these strings.
        let o200k = Tokenizer::by_encoding("o200k_base").unwrap();
        let cl100k = Tokenizer::by_encoding("cl100k_base").unwrap();
        assert_eq!(cl100k.count("hello world"), 2);
        assert_eq!(o200k.count("hello world"), 2);
        assert_eq!(cl100k.count("tiktoken is great!"), 6);
        assert_eq!(o200k.count(""), 0);
        assert_eq!(o200k.count_message("hello world"), 5);
    }

    #[test]
    fn truncate_respects_limit() {
        let t = Tokenizer::by_encoding("o200k_base").unwrap();
        let text = "The quick brown fox jumps over the lazy dog. ".repeat(20);
        let cut = t.truncate(&text, 17);
        assert!(t.count(&cut) <= 17);
        assert!(text.starts_with(&cut));
    }

    #[test]
    fn context_windows() {
        assert_eq!(context_window("gpt-4o-mini"), Some(128_000));
        assert_eq!(context_window("gpt-4-0613"), Some(8_192));
        assert_eq!(context_window("gpt-4.1-nano"), Some(1_047_576));
        assert_eq!(context_window("mystery"), None);
    }
}
