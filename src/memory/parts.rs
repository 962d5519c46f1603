//! The two pieces several strategies share: the running summary (the
//! tutorial's `_summarize_old_buffer`) and retrieval over older messages
//! (its `VectorMemory` plus the keyword fallback of its Mistake 6).

use std::sync::Arc;

use super::{Env, Item, Query, Section, Transcript, Via};
use crate::backend::{Covered, SummaryRequest};
use crate::index::{KeywordIndex, VectorIndex};
use crate::text::Reading;
use crate::tokens::REPLY_PRIMING;

/// A summary written by a strategy.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryState {
    /// 1-based, in order of writing.
    pub index: u32,
    /// Message number after which it was written.
    pub turn: u32,
    /// Its text, read (folded for recall matching) at first need.
    pub read: Arc<Reading>,
    /// Tokens of the summary text alone.
    pub tokens: u32,
    /// Tokens of the system message it forms (prompt + header + summary).
    pub system_message_tokens: u32,
    /// Transcript positions `..covered_to` are folded into it.
    pub covered_to: u32,
    /// Positions newly folded by this summary: `covered_from..covered_to`.
    pub covered_from: u32,
    /// Tokens billed for writing it (request + reply).
    pub input_tokens: u32,
    pub output_tokens: u32,
    /// The user whose memory it belongs to (from storage).
    pub owner: Arc<str>,
}

impl SummaryState {
    pub fn text(&self) -> &str {
        self.read.content()
    }
}

/// The running summary of everything before the buffer.
#[derive(Default)]
pub struct Summarizing {
    pub latest: Option<Arc<SummaryState>>,
}

impl Summarizing {
    /// First transcript position still raw.
    pub fn buffer_from(&self) -> usize {
        self.latest.as_ref().map_or(0, |s| s.covered_to as usize)
    }

    /// After a new message: when the buffer exceeds the trigger, fold its
    /// older messages (with the prior summary) into a new summary, keeping
    /// the newest `keep_ratio` of them raw (the tutorial's newer half).
    pub fn after_observe(&mut self, t: &Transcript, env: &mut Env<'_>) {
        let from = self.buffer_from();
        let buffer_tokens = t.suffix_tokens(from) + u64::from(REPLY_PRIMING);
        if buffer_tokens <= u64::from(env.params.trigger_tokens) {
            return;
        }
        let n = t.len() - from;
        let split = n - ((n as f64 * env.params.keep_ratio).ceil() as usize).min(n);
        if split == 0 {
            return;
        }
        // A tool call and its results are folded together: the cut moves
        // past the results (or, where that would fold everything, before
        // the call).
        let mut to = t.exchange_start_after(from + split);
        if to >= t.len() {
            to = t.exchange_start_before(from + split);
        }
        if to <= from {
            return;
        }
        // A calling message is summarized with its calls written out.
        let calls: Vec<Option<String>> = t.entries()[from..to]
            .iter()
            .map(|e| {
                let tool = e.tool.as_deref().filter(|t| !t.calls().is_empty())?;
                let mut text = String::new();
                super::message_text(e.content(), Some(tool), &mut text);
                Some(text)
            })
            .collect();
        let folded: Vec<Covered<'_>> = t.entries()[from..to]
            .iter()
            .zip(&calls)
            .map(|(e, calls)| Covered {
                role: e.role,
                content: calls.as_deref().unwrap_or(e.content()),
                tokens: e.tokens,
                analysis: calls.is_none().then(|| e.read.analysis()),
            })
            .collect();
        let start = env.times.start();
        let out = env.backend.summarizer.summarize(
            &SummaryRequest {
                prior: self.latest.as_ref().map(|s| s.text()),
                prior_tokens: self.latest.as_ref().map_or(0, |s| s.tokens),
                messages: &folded,
                max_tokens: env.params.max_summary_tokens,
            },
            &env.tok,
            &mut env.calls,
        );
        env.times.record(super::Stage::Summarize, start);
        // A failed call is recorded in `env.calls`; the buffer stays as it
        // is, and the next message tries again.
        let Ok(out) = out else { return };
        env.usage.summarizer_tokens += u64::from(out.input_tokens + out.output_tokens);
        env.usage.summarizer_output_tokens += u64::from(out.output_tokens);
        let tokens = out.text_tokens;
        // The header ends with a newline; a summary that starts with no
        // whitespace cannot share a token with it (as for the lines of the
        // retrieved block), so its tokens add to the prompt and header's.
        let head = format!("{}{}", env.system_prompt, super::SUMMARY_HEADER);
        let system_message_tokens = if out.text.starts_with(char::is_whitespace) {
            env.tok.count(&format!("{head}{}", out.text))
        } else {
            env.tok.count_remembered(&head) + tokens
        };
        let state = Arc::new(SummaryState {
            index: self.latest.as_ref().map_or(1, |s| s.index + 1),
            turn: t.last().map_or(0, |e| e.number),
            tokens,
            read: Arc::new(Reading::new(out.text.into())),
            system_message_tokens,
            covered_from: from as u32,
            covered_to: to as u32,
            input_tokens: out.input_tokens,
            output_tokens: out.output_tokens,
            owner: t.last().map(|e| e.owner.clone()).unwrap_or_default(),
        });
        env.summaries.push(state.clone());
        self.latest = Some(state);
    }
}

/// Retrieval of older messages by embedding similarity, with an optional
/// keyword/entity fallback.
pub struct Retrieval {
    vectors: VectorIndex,
    keywords: Option<KeywordIndex>,
    /// Transcript positions `..indexed` are in the indexes.
    indexed: usize,
    lag: usize,
    /// Per position, the tokens of its line in the retrieved block, counted
    /// the first time it is retrieved (0: not yet, or not counted apart).
    line_tokens: Vec<std::cell::Cell<u32>>,
}

impl Retrieval {
    /// An index over every message of `t` (rebuilt from stored embeddings).
    pub fn restore(params: &super::Params, t: &Transcript) -> Retrieval {
        let mut r = Retrieval {
            vectors: if params.sparse_vectors {
                VectorIndex::sparse(params.embedding_dim)
            } else {
                VectorIndex::dense(
                    params.embedding_dim,
                    params.hnsw_threshold as usize,
                    params.ef_search as usize,
                )
            },
            keywords: params.keyword_fallback.then(KeywordIndex::default),
            indexed: 0,
            lag: params.embed_lag,
            line_tokens: Vec::new(),
        };
        // Embeddings queued before a restart have landed by now.
        for pos in 0..t.len() {
            r.add(t, pos);
        }
        r
    }

    /// The transcript grew: index what is due (all but the `lag` newest).
    pub fn observe(&mut self, t: &Transcript) {
        while self.indexed + self.lag < t.len() {
            self.add(t, self.indexed);
        }
    }

    /// Indexes transcript position `pos` (always the next one).
    fn add(&mut self, t: &Transcript, pos: usize) {
        debug_assert_eq!(pos, self.indexed);
        self.indexed += 1;
        self.line_tokens.push(std::cell::Cell::new(0));
        let e = t.get(pos);
        let v = e
            .embedding
            .as_ref()
            .expect("messages are embedded before a retrieving strategy sees them");
        if v.dim() == self.vectors.dim() {
            self.vectors.add(v);
        } else {
            // A vector of the wrong size (or none: its call failed) still
            // takes its slot, matching nothing.
            self.vectors.add(&vec![0.0; self.vectors.dim()].into());
        }
        if let Some(k) = &mut self.keywords {
            k.add(e.content());
        }
    }

    /// Up to `max_retrieved` messages from before `buffer_from` relevant to
    /// the query, as the tutorial selects them: the `top_k` nearest over the
    /// whole history, minus those in the buffer, above `min_score`.
    pub fn retrieve(
        &self,
        t: &Transcript,
        query: &Query<'_>,
        buffer_from: usize,
        env: &mut Env<'_>,
    ) -> Vec<Item> {
        let p = env.params;
        if t.len() <= p.buffer_message_limit as usize || buffer_from == 0 {
            return Vec::new();
        }
        let q = match &query.embedding {
            Some(e) => e.clone(),
            None => env.embed(query.text, None, env.tok.count(query.text)),
        };
        let mut line = String::new();
        let mut item = |h: crate::index::Hit, via| {
            let e = t.get(h.pos as usize);
            let mut i = Item::from_entry(e, Section::Retrieved, Some(h.score), Some(via));
            let cached = &self.line_tokens[h.pos as usize];
            if cached.get() == 0 && super::line_counts_apart(e.content(), e.tool.as_deref()) {
                line.clear();
                super::retrieved_line(e.role, e.content(), e.tool.as_deref(), &mut line);
                cached.set(env.tok.count(&line));
            }
            i.line_tokens = cached.get();
            i
        };
        let start = env.times.start();
        let hits = if q.dim() == self.vectors.dim() {
            self.vectors.search(&q, p.top_k as usize)
        } else {
            Vec::new()
        };
        env.times.record(super::Stage::Search, start);
        let max = p.max_retrieved as usize;
        let semantic = hits
            .into_iter()
            .filter(|h| (h.pos as usize) < buffer_from && h.score > p.min_score);
        let mut items: Vec<Item> = with_calls(t, semantic, max)
            .into_iter()
            .map(|h| item(h, Via::Semantic))
            .collect();
        if items.is_empty()
            && let Some(k) = &self.keywords
        {
            let found = k.search(query.text, max, buffer_from as u32);
            items = with_calls(t, found, max)
                .into_iter()
                .map(|h| item(h, Via::Keyword))
                .collect();
        }
        items
    }
}

/// Up to `max` of `hits`, best first, each tool result just after its
/// call: a result whose call is not among them brings it (with the
/// result's score), or is left out where there is no room for both.
fn with_calls(
    t: &Transcript,
    hits: impl IntoIterator<Item = crate::index::Hit>,
    max: usize,
) -> Vec<crate::index::Hit> {
    let mut out: Vec<crate::index::Hit> = Vec::new();
    for h in hits {
        if out.len() >= max {
            break;
        }
        if out.iter().any(|o| o.pos == h.pos) {
            continue;
        }
        if t.starts_exchange(h.pos as usize) {
            out.push(h);
            continue;
        }
        let call = t.exchange_start_before(h.pos as usize) as u32;
        match out.iter().position(|o| o.pos == call) {
            Some(at) => out.insert(at + 1, h),
            None if out.len() + 2 <= max => {
                out.push(crate::index::Hit { pos: call, ..h });
                out.push(h);
            }
            None => {}
        }
    }
    out
}
