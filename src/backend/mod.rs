//! Backends: the models memeval calls, behind one small trait per job
//! (summarize, embed, judge, respond), so chat, embedding and judge models
//! can be configured independently.

pub mod offline;
pub mod openai;
pub mod prices;

use std::sync::Arc;

use crate::scenario::Role;
use crate::tokens::Tokenizer;

/// Role of a message in a chat call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatRole {
    System,
    User,
    Assistant,
}

impl From<Role> for ChatRole {
    fn from(r: Role) -> Self {
        match r {
            Role::User => ChatRole::User,
            Role::Assistant => ChatRole::Assistant,
        }
    }
}

/// One message of a chat call, as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    pub role: ChatRole,
    pub content: Arc<str>,
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

/// Where a backend reports the API calls it made for one operation.
pub type Calls = Vec<CallRecord>;

/// What to fold into a new summary.
pub struct SummaryRequest<'a> {
    pub prior: Option<&'a str>,
    pub messages: &'a [(Role, &'a str)],
    pub max_tokens: u32,
}

pub struct SummaryOutput {
    pub text: String,
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
}

pub trait Embedder: Send + Sync {
    /// One unit-length vector per text.
    fn embed(&self, texts: &[&str], calls: &mut Calls) -> Result<Vec<Vec<f32>>, BackendError>;
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
    pub expect: &'a [String],
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
    pub responder: Arc<dyn Responder>,
    /// Model names for the run's metadata.
    pub models: Vec<(&'static str, String)>,
    /// Whether probes are answered (and judged) by this backend.
    pub answer_probes: bool,
    /// Prices of the chatbot's own calls (per million tokens), where known.
    pub chat_price: Option<prices::Price>,
    pub embedding_price: Option<prices::Price>,
}

/// The configured backend.
pub fn from_config(config: &crate::config::Config, tok: Tokenizer) -> Result<Backend, String> {
    match config.backend.as_str() {
        "openai" => openai::backend(config, tok),
        _ => Ok(offline::backend(config.offline.embedding_dim as usize)),
    }
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

    pub fn render(&self, prior: Option<&str>, messages: &[(Role, &str)]) -> String {
        let mut conversation = String::new();
        for (i, (role, content)) in messages.iter().enumerate() {
            if i > 0 {
                conversation.push('\n');
            }
            conversation.push_str(&role.as_str().to_uppercase());
            conversation.push_str(": ");
            conversation.push_str(content);
        }
        let block = prior.map_or(String::new(), |p| format!("Prior summary:\n{p}\n\n"));
        // One pass, so that a placeholder inside a message is left as written.
        let mut out = String::with_capacity(self.0.len() + conversation.len() + block.len());
        let mut rest = &*self.0;
        while let Some(i) = rest.find('{') {
            out.push_str(&rest[..i]);
            rest = &rest[i..];
            let (value, len) = if rest.starts_with("{prior_summary}") {
                (block.as_str(), "{prior_summary}".len())
            } else if rest.starts_with("{summary}") {
                (prior.unwrap_or(""), "{summary}".len())
            } else if rest.starts_with("{conversation}") {
                (conversation.as_str(), "{conversation}".len())
            } else {
                ("{", 1)
            };
            out.push_str(value);
            rest = &rest[len..];
        }
        out.push_str(rest);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_template_is_the_tutorials_prompt() {
        let msgs = [(Role::User, "I'm Ana."), (Role::Assistant, "Hello Ana!")];
        let want = "Prior summary:\nAna uses dbt.\n\nPlease summarize the following conversation segment.\n\
                    Capture: the user's identity/role (if mentioned), their primary goals,\n\
                    key facts they've shared, decisions made, and any open questions.\n\
                    Be dense and specific \u{2014} this summary replaces the raw messages.\n\n\
                    Conversation:\nUSER: I'm Ana.\nASSISTANT: Hello Ana!\n\nSummary:";
        let t = SummaryTemplate::default();
        assert_eq!(t.render(Some("Ana uses dbt."), &msgs), want);
        assert!(t.render(None, &msgs).starts_with("Please summarize"));
    }

    #[test]
    fn a_template_places_each_part_once() {
        let t = SummaryTemplate::parse("[{summary}] {conversation} {unknown}").unwrap();
        // A placeholder inside a message is left as written.
        let msgs = [(Role::User, "say {summary} please")];
        assert_eq!(
            t.render(Some("S"), &msgs),
            "[S] USER: say {summary} please {unknown}"
        );
        assert!(SummaryTemplate::parse("no conversation").is_err());
    }
}
