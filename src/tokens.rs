//! Exact token accounting: the chat model's own BPE (tiktoken-rs) and the
//! chat format's per-message overhead, counted as the reference tutorial
//! and OpenAI's cookbook count them.

use tiktoken_rs::CoreBPE;
use tiktoken_rs::tokenizer::{Tokenizer as Encoding, get_tokenizer};

/// Tokens of formatting around each message of a chat call (role, separators).
pub const MESSAGE_OVERHEAD: u32 = 3;
/// Tokens that prime the assistant's reply, once per call.
pub const REPLY_PRIMING: u32 = 3;

/// Counts tokens with one encoding. Cheap to copy; the BPE tables are
/// loaded once per process.
#[derive(Clone, Copy)]
pub struct Tokenizer {
    bpe: &'static CoreBPE,
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
            "o200k_base" => (tiktoken_rs::o200k_base_singleton(), "o200k_base"),
            "cl100k_base" => (tiktoken_rs::cl100k_base_singleton(), "cl100k_base"),
            "p50k_base" => (tiktoken_rs::p50k_base_singleton(), "p50k_base"),
            "r50k_base" => (tiktoken_rs::r50k_base_singleton(), "r50k_base"),
            other => {
                return Err(format!(
                    "unknown encoding {other:?}; known: {}",
                    ENCODINGS.join(", ")
                ));
            }
        };
        Ok(Tokenizer { bpe, name })
    }

    /// The encoding a model uses, by OpenAI's naming (gpt-4o, gpt-4.1 and
    /// the o-series: o200k_base; gpt-4 and gpt-3.5: cl100k_base).
    pub fn encoding_for_model(model: &str) -> Option<&'static str> {
        match get_tokenizer(model)? {
            Encoding::O200kBase | Encoding::O200kHarmony => Some("o200k_base"),
            Encoding::Cl100kBase => Some("cl100k_base"),
            Encoding::P50kBase | Encoding::P50kEdit => Some("p50k_base"),
            Encoding::R50kBase | Encoding::Gpt2 => Some("r50k_base"),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Tokens of a text on its own.
    pub fn count(&self, text: &str) -> u32 {
        self.bpe.encode_ordinary(text).len() as u32
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

    /// Cuts a text to at most `limit` tokens (on a token boundary that is
    /// also a character boundary).
    pub fn truncate(&self, text: &str, limit: u32) -> String {
        let tokens = self.bpe.encode_ordinary(text);
        if tokens.len() as u32 <= limit {
            return text.to_string();
        }
        let mut n = limit as usize;
        loop {
            if let Ok(s) = self.bpe.decode(&tokens[..n]) {
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
