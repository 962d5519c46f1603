//! Memory strategies: what each one puts in front of the model.
//!
//! Every strategy keeps a *suffix* of the user's transcript as its raw
//! buffer, and some add a running summary of what precedes it and/or
//! messages retrieved from anywhere before it. Its state is therefore fully
//! determined by the transcript and its latest summary, which is what makes
//! a restore from storage exact.

mod buffer;
mod hybrid;
mod parts;
mod summary;
mod vector;
mod window;

use std::sync::Arc;

use crate::backend::{Backend, CallKind, Calls, ChatMessage, ChatRole};
use crate::clock::Millis;
use crate::config::Config;
use crate::config::StrategyName;
use crate::index::Embedding;
use crate::scenario::{Role, Tools};
use crate::text::{Analysis, Reading};
use crate::tokens::{MESSAGE_OVERHEAD, REPLY_PRIMING, Tokenizer};

pub use parts::SummaryState;

/// Heading under which the tutorial appends the summary to the system prompt.
pub const SUMMARY_HEADER: &str = "\n\n## Conversation History Summary\n";
/// Heading of the retrieved-context system message.
pub const RETRIEVED_HEADER: &str = "## Relevant Earlier Context\n";

/// One message of a user's transcript, tokenized (and embedded) once.
#[derive(Debug, Clone)]
pub struct Entry {
    pub number: u32,
    pub role: Role,
    /// Tokens of the content alone (no overhead).
    pub tokens: u32,
    /// The user whose memory this message belongs to (from storage).
    pub owner: Arc<str>,
    pub embedding: Option<Embedding>,
    pub at: Option<Millis>,
    /// The content, and what is read from it (folded, analysed) at first
    /// need.
    pub read: Arc<Reading>,
    /// Its tool calls, or the call it answers (a tool message).
    pub tool: Option<Arc<Tools>>,
}

impl Entry {
    pub fn content(&self) -> &Arc<str> {
        self.read.content()
    }

    /// A message, not read nor embedded yet.
    pub fn new(
        number: u32,
        role: Role,
        content: Arc<str>,
        tokens: u32,
        owner: Arc<str>,
        at: Option<Millis>,
    ) -> Entry {
        Entry {
            number,
            role,
            read: Arc::new(Reading::new(content)),
            tokens,
            owner,
            embedding: None,
            at,
            tool: None,
        }
    }

    /// The same message, carrying tool calls or a tool's result.
    pub fn with_tool(mut self, tool: Option<Arc<Tools>>) -> Entry {
        self.tool = tool;
        self
    }
}

/// A user's messages with running token sums, so that the tokens of any
/// suffix cost O(1).
#[derive(Debug, Clone, Default)]
pub struct Transcript {
    entries: Vec<Entry>,
    /// `cum[i]`: tokens of messages `0..i` as chat messages (with overhead).
    cum: Vec<u64>,
}

impl Transcript {
    pub fn new() -> Self {
        Transcript {
            entries: Vec::new(),
            cum: vec![0],
        }
    }

    pub fn push(&mut self, e: Entry) {
        let last = *self.cum.last().expect("cum starts with 0");
        self.cum.push(last + u64::from(e.tokens + MESSAGE_OVERHEAD));
        self.entries.push(e);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn get(&self, pos: usize) -> &Entry {
        &self.entries[pos]
    }

    pub fn last(&self) -> Option<&Entry> {
        self.entries.last()
    }

    /// Tokens of messages `from..` sent as chat messages (overheads included).
    pub fn suffix_tokens(&self, from: usize) -> u64 {
        self.cum[self.len()] - self.cum[from.min(self.len())]
    }

    /// Whether a buffer may start at `pos`: not at a tool message, whose
    /// call (before it) would be cut off.
    pub fn starts_exchange(&self, pos: usize) -> bool {
        self.entries.get(pos).is_none_or(|e| e.role != Role::Tool)
    }

    /// The nearest position at or before `pos` where a buffer may start.
    pub fn exchange_start_before(&self, pos: usize) -> usize {
        let mut p = pos.min(self.len());
        while p > 0 && !self.starts_exchange(p) {
            p -= 1;
        }
        p
    }

    /// The nearest position at or after `pos` where a buffer may start
    /// (the length when none is).
    pub fn exchange_start_after(&self, pos: usize) -> usize {
        let mut p = pos.min(self.len());
        while !self.starts_exchange(p) {
            p += 1;
        }
        p
    }

    /// The first position `s` such that `s..` fits in `budget` tokens,
    /// keeping at least the last message.
    pub fn fitting_suffix(&self, budget: u64) -> usize {
        let n = self.len();
        if n == 0 {
            return 0;
        }
        // cum is increasing: binary search the smallest s with cum[n]-cum[s] <= budget.
        let total = self.cum[n];
        let s = self.cum[..n].partition_point(|&c| total - c > budget);
        s.min(n - 1)
    }
}

/// Where a context item sits in the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Retrieved,
    Buffer,
}

/// How a retrieved message was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Semantic,
    Keyword,
}

/// A message placed in a context, with its provenance.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub section: Section,
    pub number: u32,
    pub role: Role,
    pub owner: Arc<str>,
    pub read: Arc<Reading>,
    /// Similarity (or keyword score) for retrieved items.
    pub score: Option<f32>,
    /// Its tool calls, or the call it answers.
    pub tool: Option<Arc<Tools>>,
    pub via: Option<Via>,
    /// Tokens of its line in the retrieved block (see [`retrieved_line`]);
    /// 0 where not counted apart (buffered items, or a line whose count
    /// might depend on the next).
    pub line_tokens: u32,
}

impl Item {
    pub fn content(&self) -> &Arc<str> {
        self.read.content()
    }

    /// A transcript message, as it stands in a context.
    pub fn from_entry(e: &Entry, section: Section, score: Option<f32>, via: Option<Via>) -> Item {
        Item {
            section,
            number: e.number,
            role: e.role,
            owner: e.owner.clone(),
            read: e.read.clone(),
            score,
            tool: e.tool.clone(),
            via,
            line_tokens: 0,
        }
    }
}

/// Exactly what a strategy puts in front of the model for one call, with
/// per-section token counts that add up to the whole prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    /// System prompt + its message overhead + the reply priming.
    pub tokens_system: u32,
    /// The summary appended to the system message.
    pub tokens_summary: u32,
    /// The retrieved-context system message, overhead included.
    pub tokens_retrieved: u32,
    /// The raw recent messages, overheads included.
    pub tokens_buffer: u32,
    pub summary: Option<Arc<SummaryState>>,
    /// Retrieved messages, best first.
    pub retrieved: Vec<Item>,
    /// Buffered messages, oldest first (empty where not listed: see
    /// [`Env::list_buffer`]).
    pub buffer: Vec<Item>,
    /// How many messages the buffer holds, listed or not.
    pub buffer_messages: u32,
}

impl Context {
    /// The whole prompt, overheads included.
    pub fn total(&self) -> u32 {
        self.tokens_system + self.tokens_summary + self.tokens_retrieved + self.tokens_buffer
    }

    /// Retrieved items then buffered items: everything with provenance.
    pub fn items(&self) -> impl Iterator<Item = &Item> {
        self.retrieved.iter().chain(&self.buffer)
    }

    /// The messages of the call, as they would be sent.
    pub fn call_messages(&self, system_prompt: &str) -> Vec<ChatMessage> {
        let mut out = Vec::with_capacity(self.buffer.len() + 2);
        let system = match &self.summary {
            Some(s) => format!("{system_prompt}{SUMMARY_HEADER}{}", s.text()),
            None => system_prompt.to_string(),
        };
        out.push(ChatMessage::new(ChatRole::System, system));
        if !self.retrieved.is_empty() {
            out.push(ChatMessage::new(
                ChatRole::System,
                retrieved_block(&self.retrieved),
            ));
        }
        out.extend(self.buffer.iter().map(|i| ChatMessage {
            role: i.role.into(),
            text: i.read.clone(),
            tool: i.tool.clone(),
        }));
        out
    }

    /// What a provider would reject in this call's messages (see
    /// [`malformed`]), after transcript `t`; `asked`: a question follows
    /// them (a probe's). Where the buffer is not listed it is the
    /// transcript's suffix, and the transcript is well formed (the loader
    /// pairs calls and results; a question is never asked between them):
    /// such a buffer can only open with results cut from their call, which
    /// is all that is counted then (at no cost on a long transcript).
    pub fn malformed(&self, t: &Transcript, asked: bool) -> u32 {
        let last = match asked {
            true => u32::MAX,
            false => t.last().map_or(0, |e| e.number),
        };
        if self.buffer.len() as u32 == self.buffer_messages {
            malformed(
                self.buffer
                    .iter()
                    .map(|i| (i.number, i.role, i.tool.as_deref())),
                last,
            )
        } else {
            let from = t.len() - (self.buffer_messages as usize).min(t.len());
            t.entries()[from..]
                .iter()
                .take_while(|e| e.role == Role::Tool)
                .count() as u32
        }
    }
}

/// Counts what a chat provider rejects in a call's messages (number, role,
/// tools; the system messages before them are plain text): each tool
/// result without its call just before it (only other results between),
/// which includes a conversation that opens with a tool result, and each
/// call without its result before the next message. Calls still awaiting
/// their results at the end are not counted where nothing of the
/// transcript (whose last message is `last`) follows them yet: that is a
/// conversation between calls, not a call.
pub fn malformed<'a>(
    messages: impl IntoIterator<Item = (u32, Role, Option<&'a Tools>)>,
    last: u32,
) -> u32 {
    let mut bad = 0;
    // The open calls of the latest calling message: (id, answered).
    let mut open: Vec<(&str, bool)> = Vec::new();
    let mut end = 0;
    for (number, role, tool) in messages {
        end = number;
        if role == Role::Tool {
            let id = tool.and_then(Tools::answers);
            match open.iter_mut().find(|c| Some(c.0) == id && !c.1) {
                Some(c) => c.1 = true,
                None => {
                    // A stray result: it, and the calls it cut off.
                    bad += 1 + open.iter().filter(|c| !c.1).count() as u32;
                    open.clear();
                }
            }
            continue;
        }
        bad += open.iter().filter(|c| !c.1).count() as u32;
        open.clear();
        if let Some(t) = tool {
            open.extend(t.calls().iter().map(|c| (c.id.as_str(), false)));
        }
    }
    if end < last {
        bad += open.iter().filter(|c| !c.1).count() as u32;
    }
    bad
}

/// The tutorial's retrieved-context block: the header, then one line per
/// item.
pub fn retrieved_block(items: &[Item]) -> String {
    let mut block = String::from(RETRIEVED_HEADER);
    for i in items {
        retrieved_line(i.role, i.content(), i.tool.as_deref(), &mut block);
    }
    block
}

/// One item's line of the retrieved block, `[role]: content` and a newline;
/// an assistant's tool calls follow its content as `[call name(arguments)]`.
///
/// Every line ends with a newline and the next starts with `[`, and no
/// tokenizer's pre-split lets a piece run from a newline into a `[`: so
/// the block's tokens are the header's plus each line's, and a line is
/// counted once, however often it is retrieved. The one exception is a
/// content ending in whitespace (r50k's `\s+(?!\S)` then splits by what
/// follows): such a line is not counted apart ([`line_counts_apart`]).
pub fn retrieved_line(role: Role, content: &str, tool: Option<&Tools>, out: &mut String) {
    out.push('[');
    out.push_str(role.as_str());
    out.push_str("]: ");
    message_text(content, tool, out);
    out.push('\n');
}

/// A message's text as a memory shows it in its own words (the retrieved
/// block, a summary's request): its content, then its tool calls as
/// `[call name(arguments)]`.
pub fn message_text(content: &str, tool: Option<&Tools>, out: &mut String) {
    out.push_str(content);
    for (i, c) in tool.map_or(&[][..], Tools::calls).iter().enumerate() {
        if i > 0 || !content.is_empty() {
            out.push(' ');
        }
        out.push_str("[call ");
        out.push_str(&c.name);
        out.push('(');
        out.push_str(&c.arguments);
        out.push_str(")]");
    }
}

/// Whether a content's line in the retrieved block has the same tokens
/// alone as within the block.
pub fn line_counts_apart(content: &str, tool: Option<&Tools>) -> bool {
    !content.ends_with(char::is_whitespace) || tool.is_some_and(|t| !t.calls().is_empty())
}

/// What a context is built for.
pub struct Query<'a> {
    pub text: &'a str,
    /// The probe's id, when it is a probe's question (never added).
    pub probe: Option<&'a str>,
    /// The query's embedding when already known (a user message embedded on arrival).
    pub embedding: Option<Embedding>,
}

/// Token spend of model calls made by a memory, accumulated until taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Input and output of summarization calls.
    pub summarizer_tokens: u64,
    pub summarizer_output_tokens: u64,
    pub embedding_tokens: u64,
}

impl Usage {
    /// A model call's tokens: an embedding's input as embedding tokens,
    /// any other call's input and output as summarizer tokens.
    pub fn add_call(&mut self, kind: CallKind, input: u32, output: u32) {
        if kind == CallKind::Embed {
            self.embedding_tokens += u64::from(input);
        } else {
            self.summarizer_tokens += u64::from(input) + u64::from(output);
            self.summarizer_output_tokens += u64::from(output);
        }
    }
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, o: Usage) {
        self.summarizer_tokens += o.summarizer_tokens;
        self.summarizer_output_tokens += o.summarizer_output_tokens;
        self.embedding_tokens += o.embedding_tokens;
    }
}

/// Strategy parameters, resolved from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub window_max_tokens: u32,
    pub trigger_tokens: u32,
    pub max_summary_tokens: u32,
    pub keep_ratio: f64,
    pub buffer_message_limit: u32,
    pub top_k: u32,
    pub min_score: f32,
    pub max_retrieved: u32,
    pub keyword_fallback: bool,
    pub hnsw_threshold: u32,
    pub ef_search: u32,
    pub embedding_dim: usize,
    /// Messages embedded (and indexed) this many messages late, as off the
    /// request path (the tutorial's Mistake 5).
    pub embed_lag: usize,
    /// The embedder's vectors are sparse: index them exactly by dimension.
    pub sparse_vectors: bool,
}

impl Params {
    pub fn from_config(c: &Config, backend: &Backend) -> Params {
        Params {
            window_max_tokens: c.window.max_tokens,
            trigger_tokens: c.summary.trigger_tokens,
            max_summary_tokens: c.summary.max_summary_tokens,
            keep_ratio: c.summary.keep_ratio,
            buffer_message_limit: c.vector.buffer_message_limit,
            top_k: c.vector.top_k,
            min_score: c
                .vector
                .min_score
                .unwrap_or_else(|| backend.embedder.default_min_score()),
            max_retrieved: c.vector.max_retrieved,
            keyword_fallback: c.vector.keyword_fallback,
            hnsw_threshold: c.vector.hnsw_threshold,
            ef_search: c.vector.ef_search,
            embedding_dim: backend.embedder.dim(),
            embed_lag: c.vector.embed_lag as usize,
            sparse_vectors: backend.embedder.sparse(),
        }
    }
}

/// What a strategy needs from the outside world while it works.
/// The stages of a replay whose latencies are recorded, for p50/p95/p99
/// per stage ("measure your p95, not your p50").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Tokenize,
    Embed,
    IndexInsert,
    Search,
    Build,
    Persist,
    Summarize,
    Evict,
    Reload,
    /// A probe's context built and its question answered (with answers on).
    Answer,
}

impl Stage {
    pub const ALL: [Stage; 10] = [
        Stage::Tokenize,
        Stage::Embed,
        Stage::IndexInsert,
        Stage::Search,
        Stage::Build,
        Stage::Persist,
        Stage::Summarize,
        Stage::Evict,
        Stage::Reload,
        Stage::Answer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Tokenize => "tokenize",
            Stage::Embed => "embed",
            Stage::IndexInsert => "index_insert",
            Stage::Search => "search",
            Stage::Build => "build",
            Stage::Persist => "persist",
            Stage::Summarize => "summarize",
            Stage::Evict => "evict",
            Stage::Reload => "reload",
            Stage::Answer => "answer",
        }
    }
}

/// Latencies in microseconds, per stage.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StageTimes {
    pub us: [Vec<u64>; Stage::ALL.len()],
    /// False for a run without timings: the counts stand, every time is 0.
    pub timed: bool,
}

impl StageTimes {
    /// Empty, recording times where `timed` (else only counts).
    pub fn new(timed: bool) -> StageTimes {
        StageTimes {
            timed,
            ..StageTimes::default()
        }
    }

    /// When a stage starts: `None` without timings, so that an untimed run
    /// reads no clock.
    pub fn start(&self) -> Option<std::time::Instant> {
        self.timed.then(std::time::Instant::now)
    }

    /// Records a stage that started at `since`; the microseconds recorded
    /// (0 without timings).
    pub fn record(&mut self, stage: Stage, since: Option<std::time::Instant>) -> u64 {
        let us = since.map_or(0, |s| s.elapsed().as_micros() as u64);
        self.us[stage as usize].push(us);
        us
    }

    pub fn of(&self, stage: Stage) -> &[u64] {
        &self.us[stage as usize]
    }
}

pub struct Env<'a> {
    pub tok: Tokenizer,
    pub backend: &'a Backend,
    pub params: &'a Params,
    /// The bare system prompt.
    pub system_prompt: Arc<str>,
    pub system_prompt_tokens: u32,
    /// Tokens of [`RETRIEVED_HEADER`].
    pub retrieved_header_tokens: u32,
    /// Whether contexts list their buffered messages as items. Only a
    /// context that is read (a probe's, a generated reply's) needs them; a
    /// plain call's is counted, and its list would be built for nothing.
    pub list_buffer: bool,
    pub usage: Usage,
    /// Summaries written since last taken.
    pub summaries: Vec<Arc<SummaryState>>,
    /// Latencies of the stages the memory runs.
    pub times: StageTimes,
    /// The API calls made since last taken (failed ones included).
    pub calls: Calls,
}

impl<'a> Env<'a> {
    /// The environment of one memory: a conversation with `system_prompt`.
    pub fn new(
        tok: Tokenizer,
        backend: &'a Backend,
        params: &'a Params,
        system_prompt: &str,
        timed: bool,
    ) -> Env<'a> {
        Env {
            tok,
            backend,
            params,
            system_prompt: system_prompt.into(),
            system_prompt_tokens: tok.count(system_prompt),
            retrieved_header_tokens: tok.count(RETRIEVED_HEADER),
            list_buffer: true,
            usage: Usage::default(),
            summaries: Vec::new(),
            times: StageTimes::new(timed),
            calls: Vec::new(),
        }
    }

    /// Embeds one text, counting its tokens. A failed call (recorded in
    /// `calls`) gives an empty vector, which matches nothing.
    pub fn embed(&mut self, text: &str, analysis: Option<&Analysis>, tokens: u32) -> Embedding {
        let start = self.times.start();
        self.usage.embedding_tokens += u64::from(tokens);
        let v = match analysis {
            Some(a) => self.backend.embedder.embed_read(text, a, &mut self.calls),
            None => self.backend.embedder.embed_text(text, &mut self.calls),
        };
        self.times.record(Stage::Embed, start);
        v.unwrap_or_default()
    }

    /// Assembles a context from its parts, counting every section exactly.
    fn context(
        &self,
        t: &Transcript,
        buffer_from: usize,
        summary: Option<&Arc<SummaryState>>,
        retrieved: Vec<Item>,
    ) -> Context {
        let tokens_retrieved = if retrieved.is_empty() {
            0
        } else if retrieved.iter().all(|i| i.line_tokens > 0) {
            self.retrieved_header_tokens
                + retrieved.iter().map(|i| i.line_tokens).sum::<u32>()
                + MESSAGE_OVERHEAD
        } else {
            self.tok.count(&retrieved_block(&retrieved)) + MESSAGE_OVERHEAD
        };
        Context {
            tokens_system: self.system_prompt_tokens + MESSAGE_OVERHEAD + REPLY_PRIMING,
            tokens_summary: summary
                .map_or(0, |s| s.system_message_tokens - self.system_prompt_tokens),
            tokens_retrieved,
            tokens_buffer: t.suffix_tokens(buffer_from) as u32,
            summary: summary.cloned(),
            retrieved,
            buffer: if self.list_buffer {
                t.entries()[buffer_from..]
                    .iter()
                    .map(|e| Item::from_entry(e, Section::Buffer, None, None))
                    .collect()
            } else {
                Vec::new()
            },
            buffer_messages: (t.len() - buffer_from.min(t.len())) as u32,
        }
    }
}

/// A memory strategy. Implementations are small; the shared machinery is in
/// `parts`.
pub trait Strategy: Send {
    fn name(&self) -> &'static str;

    /// Whether messages must be embedded before `observe`.
    fn needs_embeddings(&self) -> bool {
        false
    }

    /// The transcript just grew by one message: update the state (this is
    /// where a summary may be written).
    fn observe(&mut self, t: &Transcript, env: &mut Env<'_>);

    /// The context of a call. `query` is `None` for the state between calls
    /// (no retrieval happens then).
    fn build(&mut self, t: &Transcript, query: Option<&Query<'_>>, env: &mut Env<'_>) -> Context;

    /// The latest summary, if the strategy keeps one.
    fn summary(&self) -> Option<&Arc<SummaryState>> {
        None
    }

    /// The memory is about to be dropped and rebuilt from storage: what it
    /// keeps outside memeval's store (a plugin's own storage) is persisted.
    fn suspend(&mut self, _how: Suspend, _env: &mut Env<'_>) {}

    /// Why the memory cannot go on (a plugin's fault): the replay fails.
    fn fault(&self) -> Option<&str> {
        None
    }
}

/// Why a memory is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suspend {
    /// A session ended: the user returns later.
    SessionEnd,
    /// The registry evicts the user to make room.
    Evict,
    /// The replay is over.
    End,
}

/// Creates a built-in strategy by name, restored to the state that `t` and
/// `summary` (as loaded from storage) imply. An empty transcript gives a
/// fresh memory. (A plugin is made by `plugin::PluginStrategy`, over its
/// process.)
pub fn create(
    name: &StrategyName,
    params: &Params,
    t: &Transcript,
    summary: Option<Arc<SummaryState>>,
) -> Box<dyn Strategy> {
    match name {
        StrategyName::Buffer => Box::new(buffer::Buffer),
        StrategyName::Window => Box::new(window::Window::restore(params, t)),
        StrategyName::Summary => Box::new(summary::Summary::restore(summary)),
        StrategyName::Vector => Box::new(vector::Vector::restore(params, t)),
        StrategyName::Hybrid => Box::new(hybrid::Hybrid::restore(params, t, summary)),
        StrategyName::Plugin(p) => unreachable!("{p}: a plugin is not a built-in strategy"),
    }
}

#[cfg(test)]
mod tests;
