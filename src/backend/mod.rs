//! Backends: the models memeval calls, behind one small trait per job
//! (summarize, embed, judge, respond), so chat, embedding and judge models
//! can be configured independently.

pub(crate) mod cache;
#[cfg(feature = "local-embedder")]
pub mod local;
pub mod offline;
pub mod openai;

use std::sync::Arc;

use crate::scenario::Role;
use crate::tokens::Tokenizer;

/// Role of a message in a chat call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatRole {
    System,
    User,
    Assistant,
    Tool,
}

impl From<Role> for ChatRole {
    fn from(r: Role) -> Self {
        match r {
            Role::User => ChatRole::User,
            Role::Assistant => ChatRole::Assistant,
            Role::Tool => ChatRole::Tool,
        }
    }
}

/// One message of a chat call, as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    pub role: ChatRole,
    /// The content, and what the offline models read from it at first
    /// need: a transcript message's is shared with the transcript, so it
    /// is read once however many calls cite it.
    pub text: Arc<crate::text::Reading>,
    /// An assistant message's tool calls, or the call a tool message
    /// answers.
    pub tool: Option<Arc<crate::scenario::Tools>>,
}

impl ChatMessage {
    pub fn new(role: ChatRole, content: impl Into<Arc<str>>) -> ChatMessage {
        ChatMessage {
            role,
            text: Arc::new(crate::text::Reading::new(content.into())),
            tool: None,
        }
    }

    pub fn content(&self) -> &str {
        self.text.content()
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind} call failed: {message}")]
pub struct BackendError {
    pub kind: &'static str,
    pub message: String,
}

/// What a model call was for; written as its snake_case name.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    /// Folding messages into a summary (the chat model). (The default only
    /// so that an empty calls.csv can be given its header.)
    #[default]
    Summarize,
    /// Embedding messages or queries.
    Embed,
    /// A generated assistant reply (the chat model).
    Reply,
    /// A probe answered from the built context (the chat model).
    Answer,
    /// Scoring a summary against sampled messages (the judge model).
    JudgeSummary,
    /// Deciding whether a probe's answer is correct (the judge model).
    JudgeAnswer,
}

impl CallKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::Summarize => "summarize",
            CallKind::Embed => "embed",
            CallKind::Reply => "reply",
            CallKind::Answer => "answer",
            CallKind::JudgeSummary => "judge_summary",
            CallKind::JudgeAnswer => "judge_answer",
        }
    }

    /// Whether the chatbot itself would pay for it (the judge's calls and
    /// probe answers are the evaluation's own cost).
    pub fn is_chatbot(self) -> bool {
        matches!(
            self,
            CallKind::Summarize | CallKind::Embed | CallKind::Reply
        )
    }
}

/// One request to a model API, as it was served.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    pub kind: CallKind,
    pub model: String,
    /// Served from the response cache: nothing was sent.
    pub cached: bool,
    /// HTTP attempts made (0 when cached).
    pub attempts: u32,
    /// Wall time of the call, retries included.
    pub latency_us: u64,
    /// Inputs in the request (texts embedded, or 1).
    pub inputs: u32,
    /// Tokens by memeval's own count (tiktoken, chat overheads included).
    pub local_input_tokens: u32,
    pub local_output_tokens: u32,
    /// Tokens as the API reported them (absent when it did not).
    pub api_input_tokens: Option<u32>,
    pub api_output_tokens: Option<u32>,
    /// At the configured prices, from the API's figures where given.
    pub cost_usd: f64,
    /// Why the call failed after its retries; `None` when it succeeded.
    pub error: Option<String>,
}

impl CallRecord {
    /// A call about to be made: what memeval counts of its input; the rest
    /// is filled in as it is served.
    pub fn new(kind: CallKind, model: &str, inputs: u32, local_input_tokens: u32) -> CallRecord {
        CallRecord {
            kind,
            model: model.to_string(),
            cached: false,
            attempts: 0,
            latency_us: 0,
            inputs,
            local_input_tokens,
            local_output_tokens: 0,
            api_input_tokens: None,
            api_output_tokens: None,
            cost_usd: 0.0,
            error: None,
        }
    }
}

/// Where a backend reports the API calls it made for one operation.
pub type Calls = Vec<CallRecord>;

/// What to fold into a new summary.
pub struct SummaryRequest<'a> {
    pub prior: Option<&'a str>,
    /// Tokens of `prior` alone (as counted when it was written).
    pub prior_tokens: u32,
    pub messages: &'a [Covered<'a>],
    pub max_tokens: u32,
}

/// A message folded into a summary, as the transcript holds it.
#[derive(Debug, Clone, Copy)]
pub struct Covered<'a> {
    pub role: Role,
    pub content: &'a str,
    /// Tokens of the content alone.
    pub tokens: u32,
    /// The content as the offline models read it (where already read).
    pub analysis: Option<&'a crate::text::Analysis>,
}

impl<'a> Covered<'a> {
    /// A message not read yet: its content is tokenized here, and the
    /// offline models read it when they need it.
    pub fn new(role: Role, content: &'a str, tok: &Tokenizer) -> Covered<'a> {
        Covered {
            role,
            content,
            tokens: tok.count(content),
            analysis: None,
        }
    }
}

pub struct SummaryOutput {
    pub text: String,
    /// Tokens of the text alone, as the chat model's tokenizer counts it.
    pub text_tokens: u32,
    /// Tokens billed for the request and the reply.
    pub input_tokens: u32,
    pub output_tokens: u32,
}

pub trait Summarizer: Send + Sync {
    fn summarize(
        &self,
        req: &SummaryRequest<'_>,
        tok: &Tokenizer,
        calls: &mut Calls,
    ) -> Result<SummaryOutput, BackendError>;

    /// A chat completion that a plugin asks of the metering endpoint: its
    /// messages as sent, at most `max_tokens` back. `input_tokens` is the
    /// request's (billed, else counted), `output_tokens` the reply's.
    fn chat(
        &self,
        req: &ChatRequest<'_>,
        tok: &Tokenizer,
        calls: &mut Calls,
    ) -> Result<SummaryOutput, BackendError>;
}

/// A plugin's own chat call, through the metering endpoint.
pub struct ChatRequest<'a> {
    pub messages: &'a [(ChatRole, &'a str)],
    pub temperature: f32,
    pub max_tokens: u32,
    /// JSON mode (`response_format` `json_object`).
    pub json: bool,
}

impl ChatRequest<'_> {
    /// The request's input tokens by memeval's count.
    pub fn local_input_tokens(&self, tok: &Tokenizer) -> u32 {
        self.messages
            .iter()
            .map(|(_, c)| tok.count_message(c))
            .sum::<u32>()
            + crate::tokens::REPLY_PRIMING
    }
}

pub trait Embedder: Send + Sync {
    /// One unit-length vector per text.
    fn embed(&self, texts: &[&str], calls: &mut Calls) -> Result<Vec<Vec<f32>>, BackendError>;
    /// Embeds one text: by default through [`Embedder::embed`]; an
    /// embedder whose vectors are sparse keeps them so.
    fn embed_text(
        &self,
        text: &str,
        calls: &mut Calls,
    ) -> Result<crate::index::Embedding, BackendError> {
        self.embed(&[text], calls)
            .map(|mut v| v.pop().unwrap_or_default().into())
    }
    /// Embeds one text already read into `analysis` (a transcript
    /// message): by default as [`Embedder::embed_text`] does; an embedder
    /// that reads words itself takes them from the analysis.
    fn embed_read(
        &self,
        text: &str,
        analysis: &crate::text::Analysis,
        calls: &mut Calls,
    ) -> Result<crate::index::Embedding, BackendError> {
        let _ = analysis;
        self.embed_text(text, calls)
    }
    /// Embeds `texts` ahead of need, in batches, so that later calls to
    /// [`Embedder::embed`] find them ready. Failures are left for those
    /// calls to meet (and record) again.
    fn prefetch(&self, _texts: &[&str], _calls: &mut Calls) {}
    /// Dimensions of its vectors.
    fn dim(&self) -> usize;
    /// The similarity threshold this embedder is calibrated for.
    fn default_min_score(&self) -> f32;
    /// Whether its vectors are mostly zeros (indexed sparsely, exactly).
    fn sparse(&self) -> bool {
        false
    }
}

/// A judge's verdict on a summary against sampled covered messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// 0 to 1.
    pub score: f64,
    pub missing: Vec<String>,
    /// The judge's overall yes/no, when it gave one.
    pub accurate: Option<bool>,
}

/// A fact a probe's answer needs, as the judge sees it.
pub struct ExpectedFact<'a> {
    pub id: &'a str,
    pub statement: Option<&'a str>,
    /// Phrases whose presence shows the fact.
    pub expect: &'a [crate::scenario::Text],
}

impl<'a> ExpectedFact<'a> {
    /// Fact `f` of `scenario`, as the judge sees it.
    pub fn of(scenario: &'a crate::scenario::Scenario, f: usize) -> ExpectedFact<'a> {
        let fact = &scenario.facts[f];
        ExpectedFact {
            id: &fact.id,
            statement: fact.statement.as_deref(),
            expect: &fact.expect,
        }
    }
}

/// A probe's answer to judge.
pub struct AnswerCheck<'a> {
    pub question: &'a str,
    pub answer: &'a str,
    pub facts: &'a [ExpectedFact<'a>],
    /// The scenario's reference answer, if any.
    pub reference: Option<&'a str>,
    /// The right answer is "I don't know" (the probe's kind is
    /// `abstention`).
    pub abstention: bool,
    /// Whose judging rules apply.
    pub rules: JudgeRules<'a>,
}

/// Whose rules judge an answer: memeval's own (the expected facts), or a
/// benchmark's as its published evaluation applies them, for scenarios
/// imported from it (their `source`): LoCoMo's LLM-judge score (J), as
/// mem0's evaluation asks it, and LongMemEval's rules per question type.
/// A model judge applies them; the offline judge has only memeval's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JudgeRules<'a> {
    Memeval,
    Locomo,
    /// With the question type (`temporal-reasoning`, `knowledge-update`,
    /// `single-session-preference`, ...; `abstention` for `_abs` questions).
    LongMemEval(&'a str),
}

/// Whether an answer is right; `correct` is `None` when it cannot be told.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerVerdict {
    pub correct: Option<bool>,
    pub reason: String,
}

pub trait Judge: Send + Sync {
    fn score_summary(
        &self,
        summary: &str,
        sampled: &[(Role, &str)],
        calls: &mut Calls,
    ) -> Result<Verdict, BackendError>;

    fn judge_answer(
        &self,
        check: &AnswerCheck<'_>,
        calls: &mut Calls,
    ) -> Result<AnswerVerdict, BackendError>;
}

pub trait Responder: Send + Sync {
    /// The assistant's reply to the call's last user message. `call` holds
    /// the messages as sent (system, summary, retrieved, buffer, and for a
    /// probe the question last); `query` is that last user message.
    fn reply(
        &self,
        kind: CallKind,
        call: &[ChatMessage],
        query: &str,
        calls: &mut Calls,
    ) -> Result<String, BackendError>;
}

/// The models of a run.
#[derive(Clone)]
pub struct Backend {
    pub name: String,
    pub summarizer: Arc<dyn Summarizer>,
    pub embedder: Arc<dyn Embedder>,
    pub judge: Arc<dyn Judge>,
    /// More judges of every answer, by model name, for their agreement.
    pub extra_judges: Vec<(String, Arc<dyn Judge>)>,
    pub responder: Arc<dyn Responder>,
    /// Model names for the run's metadata.
    pub models: Vec<(&'static str, String)>,
    /// Whether probes are answered (and judged) by this backend.
    pub answer_probes: bool,
    /// Prices of the chatbot's own calls (per million tokens), where known.
    pub chat_price: Option<crate::config::Price>,
    pub embedding_price: Option<crate::config::Price>,
    /// What identifies the local embedder's model, when it is in use.
    pub embedder_identity: Option<serde_json::Value>,
}

impl Backend {
    /// The model serving `role` (`summarizer`, `embedder`, `judge`,
    /// `responder`), as the run's metadata names it.
    pub fn model(&self, role: &str) -> Option<&str> {
        self.models
            .iter()
            .find(|(k, _)| *k == role)
            .map(|(_, m)| m.as_str())
    }
}

/// A backend that cannot be set up (its key, prompt, cache or HTTP
/// client), worded for the user: the run is refused before it starts.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(pub String);

/// The configured backend.
pub fn from_config(config: &crate::config::Config, tok: Tokenizer) -> Result<Backend, SetupError> {
    let mut backend = match config.backend.as_str() {
        "openai" => openai::backend(config, tok).map_err(SetupError)?,
        _ => offline::backend(config.offline.embedding_dim as usize),
    };
    if config.embedder == "local" {
        use_local_embedder(&mut backend, config)?;
    }
    Ok(backend)
}

/// Replaces the backend's embedder with the local model.
#[cfg(feature = "local-embedder")]
fn use_local_embedder(
    backend: &mut Backend,
    config: &crate::config::Config,
) -> Result<(), SetupError> {
    let local = local::LocalEmbedder::new(&config.local_embedder).map_err(SetupError)?;
    let identity = &local.model.identity;
    for (role, model) in &mut backend.models {
        if *role == "embedder" {
            *model = identity.model_name();
        }
    }
    backend.embedder_identity =
        Some(serde_json::to_value(identity).expect("an identity serializes"));
    backend.embedding_price = None;
    backend.embedder = Arc::new(local);
    Ok(())
}

#[cfg(not(feature = "local-embedder"))]
fn use_local_embedder(_: &mut Backend, _: &crate::config::Config) -> Result<(), SetupError> {
    Err(SetupError(
        "embedder = \"local\": this memeval was built without the local embedder".into(),
    ))
}

/// The summarization prompt: the tutorial's, or a user's own template with
/// the placeholders `{prior_summary}` (the prior summary as a "Prior
/// summary:" block, or nothing), `{summary}` (the prior summary's bare text)
/// and `{conversation}` (the folded messages, one `ROLE: content` per line).
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryTemplate(pub Arc<str>);

/// The tutorial's summarization prompt, as a template.
pub const TUTORIAL_SUMMARY_PROMPT: &str = "{prior_summary}Please summarize the following conversation segment.\n\
Capture: the user's identity/role (if mentioned), their primary goals,\n\
key facts they've shared, decisions made, and any open questions.\n\
Be dense and specific \u{2014} this summary replaces the raw messages.\n\n\
Conversation:\n{conversation}\n\nSummary:";

impl Default for SummaryTemplate {
    fn default() -> Self {
        SummaryTemplate(TUTORIAL_SUMMARY_PROMPT.into())
    }
}

impl SummaryTemplate {
    /// A template from a file's text; it must place the conversation.
    pub fn parse(text: &str) -> Result<SummaryTemplate, String> {
        if !text.contains("{conversation}") {
            return Err("the template has no {conversation} placeholder".into());
        }
        Ok(SummaryTemplate(text.into()))
    }

    pub fn render(&self, prior: Option<&str>, messages: &[Covered<'_>]) -> String {
        let mut conversation = String::new();
        for (i, m) in messages.iter().enumerate() {
            if i > 0 {
                conversation.push('\n');
            }
            conversation.push_str(line_prefix(m.role));
            conversation.push_str(m.content);
        }
        let mut out = String::new();
        self.fill(prior, &mut |part| match part {
            Part::Text(t) | Part::Prior(t) => out.push_str(t),
            Part::Conversation => out.push_str(&conversation),
        });
        out
    }

    /// Tokens of the rendered prompt, `tok.count(&self.render(prior,
    /// messages))`, without tokenizing the covered messages again.
    ///
    /// The prompt's conversation is one `ROLE: content` line per message. A
    /// space that follows a non-space character always starts a new piece
    /// of every encoding's pre-split (a piece holds a space only as its
    /// first character), and so does a letter after a newline; the BPE
    /// merges only within pieces. So where the text before the
    /// conversation ends in one newline after a non-space (as the
    /// tutorial's does), the prompt's tokens are that text's plus each
    /// line's, and a line's are its content's (known) plus what the role
    /// label, the leading space and the trailing newline change at its two
    /// ends, which only its first and last words decide. A content with no
    /// inner space is counted whole, one ending in whitespace together
    /// with the line after it (what follows can change how its end
    /// splits), and another template's prompt whole. The prior summary
    /// before the conversation is counted the same way, from its known
    /// tokens (`prior`'s second half). A test checks all this against the
    /// rendered prompt in every encoding.
    pub fn count(
        &self,
        prior: Option<(&str, u32)>,
        messages: &[Covered<'_>],
        tok: &Tokenizer,
    ) -> u32 {
        let text = prior.map(|(p, _)| p);
        // The text before and after the conversation; where the prior
        // summary stands once before it, the text around it.
        let mut parts: Vec<String> = vec![String::new()];
        let mut priors: Vec<(usize, usize)> = Vec::new();
        self.fill(text, &mut |part| match part {
            Part::Text(t) => parts.last_mut().expect("one part at least").push_str(t),
            Part::Prior(p) => {
                let at = parts.len() - 1;
                priors.push((at, parts[at].len()));
                parts[at].push_str(p);
            }
            Part::Conversation => parts.push(String::new()),
        });
        let whole = || tok.count(&self.render(text, messages));
        let [before, after] = &parts[..] else {
            return whole();
        };
        if messages.is_empty() {
            return whole();
        }
        let ends_cleanly = before
            .strip_suffix('\n')
            .is_some_and(|b| b.chars().next_back().is_some_and(|c| !c.is_whitespace()));
        if !before.is_empty() && !ends_cleanly {
            return whole();
        }
        let mut buf = String::new();
        let mut total = match (prior, &priors[..]) {
            (Some((p, p_tokens)), &[(0, at)]) => {
                let (pre, post) = (&before[..at], &before[at + p.len()..]);
                joined_tokens(pre, p, p_tokens, post, tok, &mut buf)
            }
            (_, []) => tok.count_remembered(before),
            _ => tok.count(before),
        };
        // Lines whose content ends in whitespace, with the line after them:
        // what follows can change how such an end splits, so they are
        // counted together.
        let mut group = String::new();
        for (i, m) in messages.iter().enumerate() {
            let suffix = if i + 1 == messages.len() { after } else { "\n" };
            let clean = !m.content.ends_with(char::is_whitespace);
            if group.is_empty() && clean {
                total += joined_tokens(
                    line_prefix(m.role),
                    m.content,
                    m.tokens,
                    suffix,
                    tok,
                    &mut buf,
                );
                continue;
            }
            group.push_str(line_prefix(m.role));
            group.push_str(m.content);
            group.push_str(suffix);
            if clean || i + 1 == messages.len() {
                total += tok.count(&group);
                group.clear();
            }
        }
        total
    }

    /// Walks the template, handing out its text with the prior summary in
    /// place, and where the conversation goes. One pass, so that a
    /// placeholder inside a value is left as written.
    fn fill(&self, prior: Option<&str>, out: &mut dyn FnMut(Part<'_>)) {
        let mut rest = &*self.0;
        while let Some(i) = rest.find('{') {
            out(Part::Text(&rest[..i]));
            rest = &rest[i..];
            let len = if rest.starts_with("{prior_summary}") {
                if let Some(p) = prior {
                    out(Part::Text("Prior summary:\n"));
                    out(Part::Prior(p));
                    out(Part::Text("\n\n"));
                }
                "{prior_summary}".len()
            } else if rest.starts_with("{summary}") {
                out(Part::Prior(prior.unwrap_or("")));
                "{summary}".len()
            } else if rest.starts_with("{conversation}") {
                out(Part::Conversation);
                "{conversation}".len()
            } else {
                out(Part::Text("{"));
                1
            };
            rest = &rest[len..];
        }
        out(Part::Text(rest));
    }
}

enum Part<'a> {
    Text(&'a str),
    /// The prior summary.
    Prior(&'a str),
    Conversation,
}

/// What starts a message's line in the summarization prompt.
fn line_prefix(role: Role) -> &'static str {
    match role {
        Role::User => "USER: ",
        Role::Assistant => "ASSISTANT: ",
        Role::Tool => "TOOL: ",
    }
}

/// Where a piece of every encoding's pre-split starts within `x`: at a
/// space that follows a non-space (a piece holds a space only as its first
/// character). The first and the last such place.
fn piece_starts(x: &str) -> Option<(usize, usize)> {
    let starts = |i: &usize| {
        x.as_bytes()[*i] == b' '
            && x[..*i]
                .chars()
                .next_back()
                .is_some_and(|p| !p.is_whitespace())
    };
    Some(((1..x.len()).find(starts)?, (1..x.len()).rev().find(starts)?))
}

/// Tokens of `prefix + x + suffix`, where `x` alone has `x_tokens`: at the
/// end of a text or, where `x` does not end in whitespace and `suffix` is a
/// newline, before a letter (see [`SummaryTemplate::count`]). Only what
/// joining changes is counted: `x`'s first word with the prefix, its last
/// with the suffix's first; the rest of the suffix, a constant, is
/// remembered whole.
fn joined_tokens(
    prefix: &str,
    x: &str,
    x_tokens: u32,
    suffix: &str,
    tok: &Tokenizer,
    buf: &mut String,
) -> u32 {
    let Some((first, last)) = piece_starts(x) else {
        return tok.count(&format!("{prefix}{x}{suffix}"));
    };
    let (head, tail) = (&x[..first], &x[last..]);
    let (near, far) = piece_starts(suffix).map_or((suffix, ""), |(at, _)| suffix.split_at(at));
    let mut piece = |parts: &[&str]| {
        buf.clear();
        parts.iter().for_each(|p| buf.push_str(p));
        tok.count_remembered(buf)
    };
    let with = piece(&[prefix, head]) + piece(&[tail, near]) + piece(&[far]);
    with + x_tokens - piece(&[head]) - piece(&[tail])
}

#[cfg(test)]
mod tests;
