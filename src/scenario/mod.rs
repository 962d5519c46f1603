//! Scenarios: the scripted conversations memeval replays (SCENARIO_FORMAT.md).
//!
//! `load` turns a file into a validated [`Scenario`] whose messages are
//! numbered and whose probes are scheduled; nothing downstream re-checks
//! the format.

pub mod codec;
pub mod generate;
pub mod json;
mod load;

use std::fmt;
use std::path::PathBuf;

pub use load::{MAX_FILE_BYTES, list_all, load_all, load_file, load_str};

/// Whether `b` may stand in a scenario name (see [`check_name`]).
pub fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// The rule of scenario names, which are also file names (`generate`
/// writes `<name>.json`, importers likewise): 1 to 128 of `A-Z a-z 0-9 .
/// _ -`. The loader, the generator and the importers share it.
pub fn check_name(name: &str) -> Result<(), String> {
    if !name.is_empty() && name.len() <= 128 && name.bytes().all(is_name_byte) {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid name: use 1 to 128 of A-Z a-z 0-9 . _ -"
        ))
    }
}

use crate::clock::Millis;

/// The system prompt of scenarios that do not set one.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are a helpful assistant. Use what you know about the user and the earlier conversation to answer accurately.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    User,
    Assistant,
    /// A tool's result, answering one call of the assistant message before
    /// it (format 1.1).
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "user" => Some(Role::User),
            "assistant" => Some(Role::Assistant),
            "tool" => Some(Role::Tool),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct Fact {
    pub id: Text,
    pub statement: Option<Text>,
    /// Phrases whose presence shows the fact survived; empty means "recalled
    /// when a planting message is in the context verbatim".
    pub expect: Vec<Text>,
    /// Index of the fact this one replaces.
    pub supersedes: Option<usize>,
    /// Numbers of the messages that plant it, ascending (never empty).
    pub planted_by: Vec<u32>,
    /// Its `expect` phrases folded, as indexes into `Scenario::phrases`.
    pub phrases: Vec<u32>,
}

/// One tool call of an assistant message (format 1.1).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ToolCall {
    /// Unique within the scenario; the tool message that answers it names it.
    pub id: String,
    pub name: String,
    /// The arguments, as the JSON text the model wrote.
    pub arguments: String,
}

/// What a message carries for tools (format 1.1): an assistant message's
/// calls, or the call a tool message answers. Stored as this JSON (an
/// array of calls, or `{"tool_call_id": ...}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Tools {
    Calls(Vec<ToolCall>),
    Result { tool_call_id: String },
}

impl Tools {
    /// The calls, where this is an assistant message's.
    pub fn calls(&self) -> &[ToolCall] {
        match self {
            Tools::Calls(c) => c,
            Tools::Result { .. } => &[],
        }
    }

    /// The id of the call answered, where this is a tool message's.
    pub fn answers(&self) -> Option<&str> {
        match self {
            Tools::Calls(_) => None,
            Tools::Result { tool_call_id } => Some(tool_call_id),
        }
    }

    /// Tokens the calls add to their message (0 for a tool message: its
    /// content is its result).
    pub fn tokens(&self, tok: &crate::tokens::Tokenizer) -> u32 {
        tok.count_calls(
            self.calls()
                .iter()
                .map(|c| (c.name.as_str(), c.arguments.as_str())),
        )
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("tools serialize")
    }

    pub fn from_json(text: &str) -> Option<Tools> {
        serde_json::from_str(text).ok()
    }
}

/// A message's text: a string of its own, or a part of one that several
/// messages share (a scenario read back from a run's spool holds all its
/// messages' texts in one string, so that reading it back allocates once,
/// not once a message). Reads as a `str`.
#[derive(Clone)]
pub struct Text {
    whole: std::sync::Arc<str>,
    start: u32,
    end: u32,
}

impl Text {
    /// `whole[start..end]`; `None` where that is not a part of it on
    /// character boundaries.
    pub fn part(whole: &std::sync::Arc<str>, start: usize, end: usize) -> Option<Text> {
        whole.get(start..end)?;
        Some(Text {
            whole: whole.clone(),
            start: u32::try_from(start).ok()?,
            end: u32::try_from(end).ok()?,
        })
    }

    /// A message's text left in a run's spool, at `[start, end)` of its
    /// scenario's message texts there, to be fetched when its step comes
    /// (see [`Text::away_span`]). Read as a `str` before that, it panics
    /// (a bug, never a wrong text). `whole` is any string at hand: an away
    /// text is told apart by its start, stored inverted, past its end.
    pub fn away(whole: &std::sync::Arc<str>, start: u32, end: u32) -> Option<Text> {
        (start <= end && end < 1 << 31).then(|| Text {
            whole: whole.clone(),
            start: !start,
            end,
        })
    }

    /// Where an [`away`](Text::away) text is in its scenario's message
    /// texts; `None` for a text at hand.
    pub fn away_span(&self) -> Option<(u32, u32)> {
        (self.start > self.end).then_some((!self.start, self.end))
    }

    pub fn as_str(&self) -> &str {
        self
    }

    /// The text as a string of its own: the same one where it is whole.
    pub fn to_arc(&self) -> std::sync::Arc<str> {
        if self.start == 0 && self.end as usize == self.whole.len() {
            self.whole.clone()
        } else {
            std::sync::Arc::from(&**self)
        }
    }
}

impl std::ops::Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        (self.whole.get(self.start as usize..self.end as usize))
            .expect("a message's text read before it was fetched from the run's spool")
    }
}

impl From<std::sync::Arc<str>> for Text {
    fn from(whole: std::sync::Arc<str>) -> Text {
        let end = u32::try_from(whole.len()).expect("a message under 4 GiB");
        Text {
            whole,
            start: 0,
            end,
        }
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text::from(std::sync::Arc::<str>::from(s))
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text::from(std::sync::Arc::<str>::from(s))
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// Compared with a string as its `str`.
impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        &**self == *other
    }
}

/// Borrowed as its `str` (joined as strings are).
impl std::borrow::Borrow<str> for Text {
    fn borrow(&self) -> &str {
        self
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

#[derive(Debug, Clone)]
pub struct Message {
    /// 1-based, across sessions.
    pub number: u32,
    pub session: usize,
    pub role: Role,
    /// `None` for an assistant reply the chat backend must generate.
    pub content: Option<Text>,
    /// Tool calls (an assistant message) or the call answered (a tool
    /// message).
    pub tool: Option<std::sync::Arc<Tools>>,
    /// Indexes into `Scenario::facts`.
    pub plants: Vec<usize>,
    pub at: Option<Millis>,
}

#[derive(Debug, Clone)]
pub struct Probe {
    pub id: Text,
    pub question: Text,
    /// Indexes into `Scenario::facts`.
    pub expects: Vec<usize>,
    pub answer: Option<Text>,
    pub kind: Option<Text>,
    /// When an inline probe is asked: the answering call is told the date.
    pub at: Option<crate::clock::Millis>,
    /// Set for recurring probes.
    pub every: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub start: Option<Millis>,
}

/// One step of the replay, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A session begins (index into `sessions`); from the second one on the
    /// memory is dropped and restored from storage first.
    Session(usize),
    /// A message, by number.
    Message(u32),
    /// A probe (index into `probes`) asked after message `turn` (0: before any).
    Probe { probe: usize, turn: u32 },
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub description: Option<String>,
    pub user: String,
    pub system_prompt: String,
    pub facts: Vec<Fact>,
    pub sessions: Vec<Session>,
    /// `messages[n - 1]` is message n.
    pub messages: Vec<Message>,
    pub probes: Vec<Probe>,
    pub steps: Vec<Step>,
    /// Every distinct `expect` phrase of the facts, folded (as recall
    /// matches them).
    pub phrases: crate::text::Phrases,
    pub file: PathBuf,
    /// SHA-256 of the file's bytes, hex.
    pub sha256: String,
    /// The file's size.
    pub bytes: u64,
    /// Where an imported scenario came from (`source`).
    pub source: Option<Source>,
}

/// A scenario validated and put aside: what a run needs to know of it
/// without holding its messages. [`Listed::load`] reads it again, and
/// refuses a file changed since.
#[derive(Debug, Clone)]
pub struct Listed {
    pub name: String,
    pub user: String,
    /// The file as the run names it (in its outputs).
    pub file: PathBuf,
    /// Where it is read from.
    pub path: PathBuf,
    /// The file's size.
    pub bytes: u64,
    /// SHA-256 of the file's bytes, hex.
    pub sha256: String,
    pub messages: usize,
    pub steps: usize,
    pub probe_asks: usize,
    pub source: Option<Source>,
    /// The time of each step, where every message has one (see
    /// [`Scenario::step_times`]).
    pub step_times: Option<Box<[Millis]>>,
    /// The scenario itself, where the run keeps it loaded.
    pub kept: Option<std::sync::Arc<Scenario>>,
}

impl Listed {
    pub fn of(s: &Scenario) -> Listed {
        Listed {
            name: s.name.clone(),
            user: s.user.clone(),
            file: s.file.clone(),
            path: s.file.clone(),
            bytes: s.bytes,
            sha256: s.sha256.clone(),
            messages: s.messages.len(),
            steps: s.steps.len(),
            probe_asks: s.probe_asks(),
            source: s.source.clone(),
            step_times: s.step_times().map(Vec::into_boxed_slice),
            kept: None,
        }
    }

    /// The scenario: kept, or read and validated again (an error if its
    /// file no longer holds what was listed).
    pub fn get(&self) -> Result<std::sync::Arc<Scenario>, String> {
        match &self.kept {
            Some(s) => Ok(s.clone()),
            None => self.load().map(std::sync::Arc::new),
        }
    }

    /// The scenario, read and validated again; an error if its file no
    /// longer holds what was listed.
    pub fn load(&self) -> Result<Scenario, String> {
        let mut s = load_file(&self.path).map_err(|e| e.to_string())?;
        s.file = self.file.clone();
        if s.sha256 != self.sha256 {
            return Err(format!(
                "{}: changed since the run began (SHA-256 {} then, {} now)",
                self.file.display(),
                self.sha256,
                s.sha256
            ));
        }
        Ok(s)
    }
}

/// Where an imported scenario came from, and what its importer changed.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Source {
    /// The benchmark (`locomo`, `longmemeval`).
    pub dataset: String,
    /// The dataset file it was imported from, as given to the importer.
    pub file: String,
    /// The conversation or question id in that file.
    pub id: String,
    /// What the importer repaired, one sentence each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repairs: Vec<String>,
    /// Question ids left out (`--exclude`, `--categories`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<String>,
}

impl Message {
    /// Tokens of the message besides its per-message overhead: its content
    /// and its tool calls (0 content where generated).
    pub fn tokens(&self, tok: &crate::tokens::Tokenizer) -> u32 {
        self.content.as_ref().map_or(0, |c| tok.count(c))
            + self.tool.as_ref().map_or(0, |t| t.tokens(tok))
    }
}

impl Scenario {
    pub fn message(&self, number: u32) -> &Message {
        &self.messages[number as usize - 1]
    }

    /// The time of each step, where every message has one (a session's
    /// start stands for its first messages; a probe takes the time of the
    /// step before): the order in which a server would see the steps of
    /// several users. `None` where a message has no time.
    pub fn step_times(&self) -> Option<Vec<Millis>> {
        let mut now: Option<Millis> = None;
        self.steps
            .iter()
            .map(|step| {
                match *step {
                    Step::Session(i) => now = self.sessions[i].start.or(now),
                    Step::Message(n) => now = self.message(n).at.or(now),
                    Step::Probe { .. } => {}
                }
                now
            })
            .collect()
    }

    /// Whether the model is called after message `n`: after a user
    /// message, and after a tool call's last result (the results go back
    /// to the model).
    pub fn calls_after(&self, n: u32) -> bool {
        match self.message(n).role {
            Role::User => true,
            Role::Tool => self
                .messages
                .get(n as usize)
                .is_none_or(|next| next.role != Role::Tool),
            Role::Assistant => false,
        }
    }

    /// Number of probe asks the replay will make.
    pub fn probe_asks(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| matches!(s, Step::Probe { .. }))
            .count()
    }
}

/// A problem in an input file, with where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// JSON path such as `$.sessions[0].turns[3].plants[1]`; empty when the
    /// problem is with the file as a whole.
    pub path: String,
    pub pos: Option<json::Pos>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(p) = self.pos {
            write!(f, ":{p}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in a set of input files.
#[derive(Debug, Clone)]
pub struct InputErrors(pub Vec<Diagnostic>);

impl fmt::Display for InputErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "error: {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InputErrors {}
