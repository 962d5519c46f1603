//! Backends: the models memeval calls, behind one small trait per job
//! (summarize, embed, judge, respond), so chat, embedding and judge models
//! can be configured independently.

pub mod offline;

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
    ) -> Result<SummaryOutput, BackendError>;
}

pub trait Embedder: Send + Sync {
    /// One unit-length vector per text.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BackendError>;
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
    pub accurate: bool,
}

pub trait Judge: Send + Sync {
    fn score_summary(
        &self,
        summary: &str,
        sampled: &[(Role, &str)],
    ) -> Result<Verdict, BackendError>;
}

pub trait Responder: Send + Sync {
    /// The assistant's reply to the last user message, given the call's
    /// messages (system, summary, retrieved, buffer).
    fn reply(&self, call: &[ChatMessage], query: &str) -> Result<String, BackendError>;
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
}

/// The tutorial's summarization prompt.
pub fn summary_prompt(prior: Option<&str>, messages: &[(Role, &str)]) -> String {
    let mut p = String::new();
    if let Some(prior) = prior {
        p.push_str("Prior summary:\n");
        p.push_str(prior);
        p.push_str("\n\n");
    }
    p.push_str(
        "Please summarize the following conversation segment.\n\
         Capture: the user's identity/role (if mentioned), their primary goals,\n\
         key facts they've shared, decisions made, and any open questions.\n\
         Be dense and specific \u{2014} this summary replaces the raw messages.\n\n\
         Conversation:\n",
    );
    for (i, (role, content)) in messages.iter().enumerate() {
        if i > 0 {
            p.push('\n');
        }
        p.push_str(&role.as_str().to_uppercase());
        p.push_str(": ");
        p.push_str(content);
    }
    p.push_str("\n\nSummary:");
    p
}
