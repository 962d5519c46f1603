//! The offline backend: deterministic stand-ins that do real work, with no
//! network and no key. Same inputs, same outputs, on any machine.
//!
//! - summarizer: extractive; keeps the most informative sentences of the
//!   prior summary and the folded messages, in order, within the budget, so
//!   older facts really are squeezed out as the conversation grows;
//! - embedder: feature hashing of content words into a unit vector;
//! - judge: the share of the sampled messages' content words the summary keeps;
//! - responder: replies with the context sentence closest to the question.

use std::sync::Arc;

use super::{
    AnswerCheck, AnswerVerdict, Backend, BackendError, CallKind, Calls, ChatMessage, ChatRequest,
    ChatRole, Covered, Embedder, Judge, Responder, Summarizer, SummaryOutput, SummaryRequest,
    Verdict,
};
use crate::index::Embedding;
use crate::scenario::Role;
use crate::text::{
    Analysis, content_words, fnv1a, for_each_content_word, for_each_content_word_as_written,
    looks_like_entity,
};
use crate::tokens::{MESSAGE_OVERHEAD, REPLY_PRIMING, Tokenizer};

/// Builds the offline backend.
pub fn backend(embedding_dim: usize) -> Backend {
    Backend {
        name: "offline".into(),
        summarizer: Arc::new(ExtractiveSummarizer {
            template: super::SummaryTemplate::default(),
        }),
        embedder: Arc::new(HashingEmbedder { dim: embedding_dim }),
        judge: Arc::new(OverlapJudge),
        extra_judges: Vec::new(),
        responder: Arc::new(ExtractiveResponder),
        models: vec![
            ("summarizer", "offline-extractive".into()),
            ("embedder", format!("offline-hashing-{embedding_dim}")),
            ("judge", "offline-overlap".into()),
            ("responder", "offline-extractive".into()),
        ],
        answer_probes: true,
        chat_price: None,
        embedding_price: None,
        embedder_identity: None,
    }
}

/// A sentence competing for a place in the summary.
struct Candidate<'a> {
    role: &'a str,
    text: &'a str,
    /// Prior-summary sentences weigh a little less than fresh ones, so that
    /// under a fixed budget the oldest material gives way first.
    weight: f64,
    /// Its distinct content words, by hash, and whether each is an entity.
    words: Vec<(u64, bool)>,
}

/// Adds a content word to a candidate's distinct words.
fn add_word(words: &mut Vec<(u64, bool)>, hash: u64, entity: bool) {
    if let Some(e) = words.iter_mut().find(|(x, _)| *x == hash) {
        e.1 |= entity;
    } else {
        words.push((hash, entity));
    }
}

pub struct ExtractiveSummarizer {
    /// The prompt a model would be sent: billed as the call's input.
    pub template: super::SummaryTemplate,
}

impl ExtractiveSummarizer {
    fn candidates<'a>(req: &SummaryRequest<'a>) -> Vec<Candidate<'a>> {
        let mut out = Vec::new();
        if let Some(prior) = req.prior {
            for line in prior.lines() {
                let line = line.trim();
                let (role, text) = if let Some(t) = line.strip_prefix("- user: ") {
                    ("user", t)
                } else if let Some(t) = line.strip_prefix("- assistant: ") {
                    ("assistant", t)
                } else {
                    ("summary", line.trim_start_matches("- "))
                };
                if !text.is_empty() {
                    let base = if role == "assistant" { 0.6 } else { 1.0 };
                    // Its words, read here: a summary's lines are no
                    // message's sentences.
                    let mut words = Vec::new();
                    let mut initial = true;
                    crate::text::for_each_raw_word(text, |raw| {
                        let entity = looks_like_entity(raw, initial);
                        initial = false;
                        for_each_content_word(raw, |w| {
                            add_word(&mut words, fnv1a(w.as_bytes()), entity)
                        });
                    });
                    out.push(Candidate {
                        role,
                        text,
                        weight: 0.9 * base,
                        words,
                    });
                }
            }
        }
        for m in req.messages {
            let read;
            let a = match m.analysis {
                Some(a) => a,
                None => {
                    read = Analysis::new(m.content);
                    &read
                }
            };
            for r in &a.sentences {
                let mut words = Vec::new();
                for w in a.words_in(r) {
                    add_word(&mut words, w.hash, w.entity);
                }
                out.push(Candidate {
                    role: m.role.as_str(),
                    text: &m.content[r.start as usize..r.end as usize],
                    // Users state the facts; assistants mostly restate them.
                    weight: if m.role == Role::User { 1.0 } else { 0.6 },
                    words,
                });
            }
        }
        out
    }
}

/// Informativeness of each candidate: rare content words count more, names
/// and numbers twice, normalized by length so dense sentences win; 0 for
/// filler.
fn scores(cands: &[Candidate<'_>]) -> Vec<f64> {
    let mut df = rustc_hash::FxHashMap::<u64, u32>::default();
    for c in cands {
        for (w, _) in &c.words {
            *df.entry(*w).or_default() += 1;
        }
    }
    let n = cands.len() as f64;
    cands
        .iter()
        .map(|c| {
            let ws = &c.words;
            // Filler ("Okay.", "How can I help?") is never worth a place.
            if ws.len() < 2 && !ws.iter().any(|(_, entity)| *entity) {
                return 0.0;
            }
            let raw: f64 = ws
                .iter()
                .map(|(w, entity)| {
                    let idf = (1.0 + n / f64::from(df[w])).ln();
                    if *entity { 2.0 * idf } else { idf }
                })
                .sum();
            c.weight * raw / ((ws.len() as f64) + 4.0).sqrt()
        })
        .collect()
}

/// The summary of the kept candidates, one `- role: text` line each (a
/// text kept twice, once), and its tokens. Every line starts with `-` and
/// ends with no whitespace, and no encoding's pre-split runs a piece from
/// a newline into a `-`: so the summary's tokens are each line's with its
/// newline, counted (and remembered) line by line.
fn render(cands: &[Candidate<'_>], keep: &[bool], tok: &Tokenizer) -> (String, u32) {
    let mut out = String::new();
    let mut tokens = 0;
    let mut line = String::new();
    let mut seen: Vec<String> = Vec::new();
    for (c, &k) in cands.iter().zip(keep) {
        if !k {
            continue;
        }
        let key = crate::text::fold(c.text);
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        if !out.is_empty() {
            line.push('\n');
            tokens += tok.count_remembered(&line);
            out.push('\n');
        }
        line.clear();
        line.push_str("- ");
        line.push_str(c.role);
        line.push_str(": ");
        line.push_str(c.text);
        out.push_str(&line);
    }
    if !out.is_empty() {
        tokens += tok.count_remembered(&line);
    }
    (out, tokens)
}

impl Summarizer for ExtractiveSummarizer {
    fn summarize(
        &self,
        req: &SummaryRequest<'_>,
        tok: &Tokenizer,
        _: &mut Calls,
    ) -> Result<SummaryOutput, BackendError> {
        let cands = Self::candidates(req);
        let scores = scores(&cands);
        let mut order: Vec<usize> = (0..cands.len()).collect();
        // Highest score first; on ties the more recent sentence wins, so that
        // under a fixed budget older material gives way first.
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(b.cmp(&a)));
        let mut keep = vec![false; cands.len()];
        let mut used = 0u32;
        for &i in order.iter().filter(|&&i| scores[i] > 0.0) {
            // "- role: text\n" costs about its own tokens plus a few. Every
            // whitespace-separated word is at least one token, so a sentence
            // with more words than the budget has left is skipped uncounted
            // (the same choice, without tokenizing what cannot fit).
            let words = crate::text::count_words(cands[i].text);
            if used + words + 4 > req.max_tokens {
                continue;
            }
            let cost = tok.count_remembered(cands[i].text) + 4;
            if used + cost <= req.max_tokens {
                keep[i] = true;
                used += cost;
            }
        }
        let (mut text, mut tokens) = render(&cands, &keep, tok);
        // The estimate above is close; the exact count decides.
        let mut dropped = order.iter().rev();
        while tokens > req.max_tokens {
            match dropped.find(|&&i| keep[i]) {
                Some(&i) => keep[i] = false,
                None => break,
            }
            (text, tokens) = render(&cands, &keep, tok);
        }
        Ok(SummaryOutput {
            input_tokens: self.template.count(
                req.prior.map(|p| (p, req.prior_tokens)),
                req.messages,
                tok,
            ) + MESSAGE_OVERHEAD
                + REPLY_PRIMING,
            output_tokens: tokens,
            text_tokens: tokens,
            text,
        })
    }

    /// A plugin's chat call: an extractive summary of what it asks to be
    /// summarized, within its `max_tokens`. A summarizing memory sends a
    /// prompt of instructions around conversation lines (`USER: ...`,
    /// `assistant: ...`) and perhaps a `Prior summary:` block: where
    /// such lines are found, they are the material (and the block the
    /// prior summary); else every user and assistant message is. System
    /// messages, instructions, are never material.
    fn chat(
        &self,
        req: &ChatRequest<'_>,
        tok: &Tokenizer,
        calls: &mut Calls,
    ) -> Result<SummaryOutput, BackendError> {
        let said: Vec<(ChatRole, &str)> = req
            .messages
            .iter()
            .copied()
            .filter(|(role, _)| *role != ChatRole::System)
            .collect();
        let mut messages: Vec<Covered<'_>> = said
            .iter()
            .flat_map(|(_, c)| c.lines())
            .filter_map(|line| conversation_line(line).map(|(r, t)| Covered::new(r, t, tok)))
            .collect();
        let prior = said.iter().find_map(|(_, c)| prior_summary(c));
        if messages.is_empty() {
            messages = said
                .iter()
                .map(|&(role, c)| {
                    let role = if role == ChatRole::Assistant {
                        Role::Assistant
                    } else {
                        Role::User
                    };
                    Covered::new(role, c, tok)
                })
                .collect();
        }
        let out = self.summarize(
            &SummaryRequest {
                prior,
                prior_tokens: prior.map_or(0, |p| tok.count(p)),
                messages: &messages,
                max_tokens: req.max_tokens,
            },
            tok,
            calls,
        )?;
        Ok(SummaryOutput {
            input_tokens: req.local_input_tokens(tok),
            ..out
        })
    }
}

/// A line of a transcript in a prompt: `USER: text`, `Assistant: text`,
/// `- user: text`, `[assistant]: text` (or Human / AI).
fn conversation_line(line: &str) -> Option<(Role, &str)> {
    let l = line.trim_start().trim_start_matches("- ");
    let (who, text) = l.split_once(':')?;
    let who = who.trim().trim_start_matches('[').trim_end_matches(']');
    let role = match who.to_ascii_lowercase().as_str() {
        "user" | "human" => Role::User,
        "assistant" | "ai" => Role::Assistant,
        _ => return None,
    };
    let text = text.trim();
    (!text.is_empty()).then_some((role, text))
}

/// The `Prior summary:` block of a summarizing prompt, up to a blank line.
fn prior_summary(prompt: &str) -> Option<&str> {
    let start = prompt.find("Prior summary:")? + "Prior summary:".len();
    let rest = prompt[start..].trim_start_matches([' ', '\n']);
    let end = rest.find("\n\n").unwrap_or(rest.len());
    let p = rest[..end].trim();
    (!p.is_empty()).then_some(p)
}

/// Feature hashing of content words (sublinear term frequency) into a unit
/// vector: lexical similarity, cheap and identical on every machine.
pub struct HashingEmbedder {
    pub dim: usize,
}

impl HashingEmbedder {
    /// The vector of `text`, every component.
    pub fn embed_one(&self, text: &str) -> Vec<f32> {
        self.embed_sparse(text).to_dense().into_owned()
    }

    fn embed_sparse(&self, text: &str) -> Embedding {
        let mut hashes = Vec::new();
        for_each_content_word(text, |w| hashes.push(fnv1a(w.as_bytes())));
        self.embed_words(hashes)
    }

    /// The vector of a text's content words (their hashes, in order), kept
    /// sparse. Each dimension sums its words' weights in the words' order,
    /// and the norm sums the squares in the dimensions' order, as a dense
    /// vector would, so the values are those of the dense computation.
    fn embed_words(&self, hashes: impl IntoIterator<Item = u64>) -> Embedding {
        let mut tf: Vec<(u64, u32)> = Vec::new();
        for h in hashes {
            match tf.iter_mut().find(|(x, _)| *x == h) {
                Some(e) => e.1 += 1,
                None => tf.push((h, 1)),
            }
        }
        // Keyed by dimension, then by the word's order: words sharing a
        // dimension add up in order, as a dense vector's would.
        let dim = self.dim as u64;
        let mut weights: Vec<(u64, f32)> = tf
            .iter()
            .enumerate()
            .map(|(i, &(h, n))| {
                let sign = if h >> 63 == 1 { -1.0 } else { 1.0 };
                (((h % dim) << 32) | i as u64, sign * (1.0 + (n as f32).ln()))
            })
            .collect();
        weights.sort_unstable_by_key(|w| w.0);
        weights.dedup_by(|next, kept| {
            let same = next.0 >> 32 == kept.0 >> 32;
            if same {
                kept.1 += next.1;
            }
            same
        });
        let norm = weights.iter().map(|(_, x)| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            weights.iter_mut().for_each(|(_, x)| *x /= norm);
        }
        weights.retain(|&(_, x)| x != 0.0);
        let nonzero: Arc<[(u32, f32)]> = weights
            .iter()
            .map(|&(key, x)| ((key >> 32) as u32, x))
            .collect();
        Embedding::Sparse {
            dim: self.dim as u32,
            nonzero,
        }
    }
}

impl Embedder for HashingEmbedder {
    fn embed(&self, texts: &[&str], _: &mut Calls) -> Result<Vec<Vec<f32>>, BackendError> {
        Ok(texts.iter().map(|t| self.embed_one(t)).collect())
    }

    fn embed_text(&self, text: &str, _: &mut Calls) -> Result<Embedding, BackendError> {
        Ok(self.embed_sparse(text))
    }

    fn embed_read(
        &self,
        _: &str,
        analysis: &Analysis,
        _: &mut Calls,
    ) -> Result<Embedding, BackendError> {
        Ok(self.embed_words(analysis.words.iter().map(|w| w.hash)))
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn default_min_score(&self) -> f32 {
        0.2
    }

    fn sparse(&self) -> bool {
        true
    }
}

pub struct OverlapJudge;

impl Judge for OverlapJudge {
    fn score_summary(
        &self,
        summary: &str,
        sampled: &[(Role, &str)],
        _: &mut Calls,
    ) -> Result<Verdict, BackendError> {
        let kept = content_words(summary);
        let mut total = 0usize;
        let mut missing = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        for (_, content) in sampled {
            for_each_content_word_as_written(content, |stemmed, written| {
                if seen.iter().any(|s| s == stemmed) {
                    return;
                }
                total += 1;
                if !kept.iter().any(|k| k == stemmed) {
                    missing.push(written.to_string());
                }
                seen.push(stemmed.to_string());
            });
        }
        let score = if total == 0 {
            1.0
        } else {
            (total - missing.len()) as f64 / total as f64
        };
        Ok(Verdict {
            score,
            accurate: Some(score >= 0.8),
            missing,
        })
    }

    /// Correct when the answer states every expected fact (one of its
    /// `expect` phrases). Facts without phrases, and probes expecting
    /// nothing, cannot be judged this way.
    fn judge_answer(
        &self,
        check: &AnswerCheck<'_>,
        _: &mut Calls,
    ) -> Result<AnswerVerdict, BackendError> {
        let verdict = |correct, reason: String| Ok(AnswerVerdict { correct, reason });
        if check.facts.is_empty() {
            return verdict(None, "no expected facts to judge against".into());
        }
        let text = crate::text::fold(check.answer);
        let mut missing = Vec::new();
        for f in check.facts {
            if f.expect.is_empty() {
                return verdict(None, format!("fact {:?} has no expect phrases", f.id));
            }
            if !f
                .expect
                .iter()
                .any(|p| text.contains(&crate::text::fold(p)))
            {
                missing.push(f.id);
            }
        }
        if missing.is_empty() {
            verdict(Some(true), "states every expected fact".into())
        } else {
            verdict(
                Some(false),
                format!("does not state: {}", missing.join(", ")),
            )
        }
    }
}

pub struct ExtractiveResponder;

impl Responder for ExtractiveResponder {
    fn reply(
        &self,
        _: CallKind,
        call: &[ChatMessage],
        query: &str,
        _: &mut Calls,
    ) -> Result<String, BackendError> {
        let q = content_words(query);
        let q_hashes: Vec<u64> = q.iter().map(|w| fnv1a(w.as_bytes())).collect();
        let mut best: Option<(usize, &str)> = None;
        // Skip the system prompt and the question itself; prefer the latest
        // sentence on ties, as a chatbot refers to the freshest statement.
        let last = call.len().saturating_sub(1);
        let mut hit = vec![false; q.len()];
        for (i, m) in call.iter().enumerate() {
            if i == 0 && m.role == ChatRole::System || i == last && m.role == ChatRole::User {
                continue;
            }
            // Read at first need: a transcript message once for every call.
            let a = m.text.analysis();
            // Most messages hold no question word at all.
            if !a.words.iter().any(|w| q_hashes.contains(&w.hash)) {
                continue;
            }
            for r in a.cited() {
                let s = &m.content()[r.start as usize..r.end as usize];
                // Questions state nothing: an answer cites statements.
                if s.ends_with('?') {
                    continue;
                }
                // Distinct question words the sentence holds.
                hit.fill(false);
                for w in a.words_in(r) {
                    if let Some(i) = q_hashes.iter().position(|&x| x == w.hash) {
                        hit[i] = true;
                    }
                }
                let overlap = hit.iter().filter(|h| **h).count();
                if overlap > 0 && best.is_none_or(|(b, _)| overlap >= b) {
                    best = Some((overlap, s));
                }
            }
        }
        Ok(match best {
            Some((_, s)) => format!("From what we discussed earlier: {s}"),
            None => {
                let topics: Vec<&str> = q.iter().take(3).map(String::as_str).collect();
                if topics.is_empty() {
                    "Understood.".into()
                } else {
                    format!("Understood; noted about {}.", topics.join(", "))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Covered;

    fn tok() -> Tokenizer {
        Tokenizer::by_encoding("o200k_base").unwrap()
    }

    /// The offline summary of `messages` after `prior` (its tokens counted
    /// here) within `max_tokens`.
    fn summarize(
        prior: Option<&str>,
        messages: &[Covered<'_>],
        max_tokens: u32,
        t: &Tokenizer,
    ) -> SummaryOutput {
        ExtractiveSummarizer {
            template: Default::default(),
        }
        .summarize(
            &SummaryRequest {
                prior,
                prior_tokens: prior.map_or(0, |p| t.count(p)),
                messages,
                max_tokens,
            },
            t,
            &mut Vec::new(),
        )
        .unwrap()
    }

    #[test]
    fn summary_fits_budget_and_keeps_informative_sentences_verbatim() {
        let t = tok();
        let msgs = [
            Covered::new(
                Role::User,
                "Hi there. I'm Ana Torres and our warehouse is Redshift.",
                &t,
            ),
            Covered::new(Role::Assistant, "Hello! How can I help?", &t),
            Covered::new(
                Role::User,
                "Okay. Our dbt model fct_orders fans out after the join on customer_id.",
                &t,
            ),
            Covered::new(Role::Assistant, "Thanks, that makes sense.", &t),
        ];
        let out = summarize(None, &msgs, 40, &t);
        assert!(tok().count(&out.text) <= 40, "{}", out.text);
        assert_eq!(out.text_tokens, tok().count(&out.text));
        assert!(
            out.text
                .contains("I'm Ana Torres and our warehouse is Redshift.")
        );
        assert!(!out.text.contains("Okay."));
        assert!(out.input_tokens > out.output_tokens);
    }

    #[test]
    fn a_summary_is_counted_exactly_line_by_line_in_every_encoding() {
        let s = crate::scenario::generate::scenario(&crate::scenario::generate::GenerateOptions {
            name: "count".into(),
            messages: 400,
            facts: 8,
            sessions: 2,
            every: 50,
            seed: 3,
            tools: false,
        })
        .unwrap();
        let texts: Vec<(Role, &str)> = s
            .messages
            .iter()
            .filter_map(|m| m.content.as_deref().map(|c| (m.role, c)))
            .collect();
        for enc in crate::tokens::ENCODINGS {
            let t = Tokenizer::by_encoding(enc).unwrap();
            let mut prior: Option<String> = None;
            for chunk in texts.chunks(40) {
                let msgs: Vec<Covered<'_>> =
                    chunk.iter().map(|&(r, c)| Covered::new(r, c, &t)).collect();
                let out = summarize(prior.as_deref(), &msgs, 300, &t);
                assert_eq!(out.text_tokens, t.count(&out.text), "{enc}: {}", out.text);
                assert!(out.text_tokens <= 300);
                prior = Some(out.text);
            }
        }
    }

    #[test]
    fn older_material_is_squeezed_out_under_a_fixed_budget() {
        let t = tok();
        let mut summary: Option<String> = None;
        for i in 0..30 {
            let text = format!("Fact number {i}: project Z{i} ships on day {i} in Berlin{i}.");
            let msgs = [Covered::new(Role::User, text.as_str(), &t)];
            let out = summarize(summary.as_deref(), &msgs, 60, &t);
            assert!(t.count(&out.text) <= 60);
            summary = Some(out.text);
        }
        let s = summary.unwrap();
        assert!(s.contains("Z29"), "{s}");
        assert!(!s.contains("Z0 "), "{s}");
    }

    #[test]
    fn embedder_is_unit_length_and_lexical() {
        let e = HashingEmbedder { dim: 512 };
        let a = e.embed_one("My dog is called Biscuit");
        let b = e.embed_one("What is my dog called?");
        let c = e.embed_one("The quarterly revenue report is late");
        let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
        assert!((dot(&a, &a) - 1.0).abs() < 1e-5);
        assert!(dot(&a, &b) > 0.5);
        assert!(dot(&a, &c).abs() < 0.2);
        assert_eq!(e.embed_one("the of and"), vec![0.0; 512]);
    }

    #[test]
    fn sparse_embeddings_hold_exactly_the_dense_computation() {
        use rand::{RngExt, SeedableRng};
        // The dense computation, component by component.
        let dense = |dim: usize, hashes: &[u64]| {
            let mut tf: Vec<(u64, u32)> = Vec::new();
            for &h in hashes {
                match tf.iter_mut().find(|(x, _)| *x == h) {
                    Some(e) => e.1 += 1,
                    None => tf.push((h, 1)),
                }
            }
            let mut v = vec![0f32; dim];
            for (h, n) in tf {
                let sign = if h >> 63 == 1 { -1.0 } else { 1.0 };
                v[(h % dim as u64) as usize] += sign * (1.0 + (n as f32).ln());
            }
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            if norm > 0.0 {
                v.iter_mut().for_each(|x| *x /= norm);
            }
            v
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        // Few dimensions and many words: three and more words share a
        // dimension, words repeat, signs cancel.
        for (dim, words) in [(512, 30), (8, 40), (3, 12), (1, 5), (64, 0)] {
            for _ in 0..200 {
                let vocab: Vec<u64> = (0..words.max(1)).map(|_| rng.random()).collect();
                let hashes: Vec<u64> = (0..words)
                    .map(|_| vocab[rng.random_range(0..vocab.len())])
                    .collect();
                let want = dense(dim, &hashes);
                let got = HashingEmbedder { dim }.embed_words(hashes.iter().copied());
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got.to_dense()), bits(&want), "dim {dim}: {hashes:?}");
                let Embedding::Sparse { nonzero, .. } = &got else {
                    panic!("sparse")
                };
                assert!(nonzero.windows(2).all(|w| w[0].0 < w[1].0));
                assert!(nonzero.iter().all(|&(_, x)| x != 0.0));
            }
        }
    }

    #[test]
    fn judge_scores_share_of_content_kept() {
        let v = OverlapJudge
            .score_summary(
                "- user: Ana uses Snowflake.",
                &[(Role::User, "Ana uses Snowflake and dbt models")],
                &mut Vec::new(),
            )
            .unwrap();
        assert_eq!(v.missing, vec!["dbt", "models"]);
        assert!((v.score - 0.6).abs() < 1e-9);
    }

    #[test]
    fn responder_cites_the_closest_sentence() {
        let call = [
            ChatMessage::new(ChatRole::System, "You are helpful."),
            ChatMessage::new(ChatRole::User, "My dog is called Biscuit. I like tea."),
            ChatMessage::new(ChatRole::User, "What is my dog called?"),
        ];
        let r = ExtractiveResponder
            .reply(
                CallKind::Answer,
                &call,
                "What is my dog called?",
                &mut Vec::new(),
            )
            .unwrap();
        assert!(r.contains("My dog is called Biscuit."), "{r}");
    }
}
