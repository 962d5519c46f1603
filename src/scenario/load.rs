//! Reading and validating scenario files: every rule of SCENARIO_FORMAT.md,
//! every error of a file reported at once, each with its JSON path and
//! line:column.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::json::{self, Json, Member, Node, Pos};
use super::{
    DEFAULT_SYSTEM_PROMPT, Diagnostic, Fact, InputErrors, Listed, Message, Probe, Role, Scenario,
    Session, Step, ToolCall, Tools,
};
use crate::clock::{Millis, parse_rfc3339};
use crate::text::suggestion;
use std::sync::Arc;

mod entries;
mod tools;

use entries::schedule;

/// Files larger than this are refused before reading: no scenario is that big.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

const TOP_FIELDS: &[&str] = &[
    "format",
    "name",
    "description",
    "user",
    "system_prompt",
    "facts",
    "sessions",
    "turns",
    "probes",
    "source",
];
const SOURCE_FIELDS: &[&str] = &["dataset", "file", "id", "repairs", "excluded"];
const FACT_FIELDS: &[&str] = &["id", "statement", "expect", "supersedes"];
const SESSION_FIELDS: &[&str] = &["id", "start", "turns"];
const MESSAGE_FIELDS: &[&str] = &[
    "role",
    "content",
    "plants",
    "at",
    "tool_calls",
    "tool_call_id",
];
const TOOL_CALL_FIELDS: &[&str] = &["id", "name", "arguments"];
const PROBE_FIELDS: &[&str] = &["probe", "id", "expects", "answer", "kind", "at"];
const RECURRING_FIELDS: &[&str] = &["probe", "id", "expects", "answer", "kind", "every"];

/// Loads and validates several files; also checks the run-level rules
/// (names and users unique). Returns every error of every file.
pub fn load_all(paths: &[PathBuf]) -> Result<Vec<Scenario>, InputErrors> {
    let loaded = paths.iter().map(|p| load_file(p)).collect();
    gather_loaded(loaded, |s| (&s.name, &s.user, &s.file))
}

/// Loads and validates every file like [`load_all`], on `jobs` threads, and
/// keeps of each its [`Listed`] summary, and the scenario itself while the
/// files kept weigh at most `keep_bytes` in all: a run holds the rest of a
/// population one replay (or one live user) at a time.
pub fn list_all(
    paths: &[PathBuf],
    jobs: usize,
    keep_bytes: u64,
) -> Result<Vec<Listed>, InputErrors> {
    let kept = std::sync::atomic::AtomicU64::new(0);
    let listed = crate::par::par_map(
        paths,
        jobs,
        |_| 1,
        |p| {
            Ok::<_, std::convert::Infallible>(load_file(p).map(|s| {
                let mut listed = Listed::of(&s);
                let before = kept.fetch_add(s.bytes, std::sync::atomic::Ordering::Relaxed);
                if before + s.bytes <= keep_bytes {
                    listed.kept = Some(std::sync::Arc::new(s));
                }
                listed
            }))
        },
    )
    .unwrap_or_else(|never| match never {});
    gather_loaded(listed, |l| (&l.name, &l.user, &l.file))
}

/// Every file's errors, then those between files (a name or a user used
/// twice), in the files' order.
fn gather_loaded<T>(
    loaded: Vec<Result<T, InputErrors>>,
    key: impl Fn(&T) -> (&String, &String, &PathBuf),
) -> Result<Vec<T>, InputErrors> {
    let mut errors = Vec::new();
    let mut scenarios = Vec::new();
    for r in loaded {
        match r {
            Ok(s) => scenarios.push(s),
            Err(InputErrors(mut e)) => errors.append(&mut e),
        }
    }
    let mut names: HashMap<&str, &Path> = HashMap::new();
    let mut users: HashMap<&str, &Path> = HashMap::new();
    for s in &scenarios {
        let (name, user, file) = key(s);
        if let Some(other) = names.insert(name, file) {
            errors.push(file_error(
                file,
                "$.name",
                format!(
                    "scenario name {name:?} is also used by {}: names must be unique within a run",
                    other.display()
                ),
            ));
        }
        if let Some(other) = users.insert(user, file) {
            errors.push(file_error(
                file,
                "$.user",
                format!(
                    "user {user:?} is also the user of {}: two scenarios of one run may not share a user",
                    other.display()
                ),
            ));
        }
    }
    if errors.is_empty() {
        Ok(scenarios)
    } else {
        Err(InputErrors(errors))
    }
}

fn file_error(file: &Path, path: &str, message: String) -> Diagnostic {
    Diagnostic {
        file: file.to_path_buf(),
        path: path.into(),
        pos: None,
        message,
    }
}

/// Loads and validates one file.
pub fn load_file(path: &Path) -> Result<Scenario, InputErrors> {
    let fail = |message: String| InputErrors(vec![file_error(path, "", message)]);
    let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    if meta.is_dir() {
        return Err(fail("is a directory, not a scenario file".into()));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(fail(format!(
            "is {} MiB; scenario files are limited to {} MiB",
            meta.len() >> 20,
            MAX_FILE_BYTES >> 20
        )));
    }
    // Read at most one byte past the limit: a device or a pipe (whose size
    // the metadata does not tell) cannot make memeval read without end.
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| {
            use std::io::Read;
            f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)
        })
        .map_err(|e| fail(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(fail(format!(
            "holds more than {} MiB; scenario files are limited to {} MiB",
            MAX_FILE_BYTES >> 20,
            MAX_FILE_BYTES >> 20
        )));
    }
    let text = match std::str::from_utf8(&bytes) {
        Ok(t) => t,
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            let line = good.iter().filter(|&&b| b == b'\n').count() as u32 + 1;
            let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let col = String::from_utf8_lossy(&good[line_start..]).chars().count() as u32 + 1;
            return Err(InputErrors(vec![Diagnostic {
                file: path.to_path_buf(),
                path: String::new(),
                pos: Some(Pos { line, col }),
                message: format!(
                    "invalid UTF-8 at byte {}: scenario files must be UTF-8",
                    e.valid_up_to()
                ),
            }]));
        }
    };
    let mut scenario = load_str(text, path)?;
    scenario.sha256 = crate::text::hex(&Sha256::digest(&bytes));
    scenario.bytes = bytes.len() as u64;
    Ok(scenario)
}

/// Validates a scenario given as text; `file` is only used in messages.
pub fn load_str(text: &str, file: &Path) -> Result<Scenario, InputErrors> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let root = json::parse(text).map_err(|e| {
        InputErrors(vec![Diagnostic {
            file: file.to_path_buf(),
            path: String::new(),
            pos: Some(e.pos),
            message: e.message,
        }])
    })?;
    let mut cx = Checker {
        file: file.to_path_buf(),
        errors: Vec::new(),
        time_nodes: HashMap::new(),
        tool_nodes: HashMap::new(),
        message_entries: 0,
    };
    let scenario = cx.scenario(&root);
    match scenario {
        Some(s) if cx.errors.is_empty() => Ok(s),
        _ => {
            cx.errors
                .sort_by_key(|d| d.pos.map(|p| (p.line, p.col)).unwrap_or((u32::MAX, 0)));
            Err(InputErrors(cx.errors))
        }
    }
}

struct Checker {
    file: PathBuf,
    errors: Vec<Diagnostic>,
    /// Where each timestamp stands, for "goes back in time" errors: keyed by
    /// message number, or by `u32::MAX - session` for session starts.
    time_nodes: HashMap<u32, (String, Pos)>,
    /// Where each tool message or tool-calling message stands, by number,
    /// for the rules that pair calls with results.
    tool_nodes: HashMap<u32, (String, Pos)>,
    /// Entries written as messages, valid or not.
    message_entries: usize,
}

/// A probe as written, before default ids are assigned in file order.
struct ProbeDraft {
    pos: Pos,
    path: String,
    id: Option<String>,
    question: String,
    expects: Vec<(usize, String, Pos)>,
    answer: Option<String>,
    kind: Option<String>,
    /// When it is asked (inline probes), with where that is written.
    at: Option<(Millis, String, Pos)>,
    every: Option<u32>,
    /// For inline probes: the number of messages before it.
    after: Option<u32>,
}

impl Checker {
    fn error(&mut self, path: &str, pos: Pos, message: impl Into<String>) {
        self.errors.push(Diagnostic {
            file: self.file.clone(),
            path: path.to_string(),
            pos: Some(pos),
            message: message.into(),
        });
    }

    fn wrong_type<T>(&mut self, node: &Node, path: &str, expected: &str) -> Option<T> {
        let found = match node.value {
            // "found 2.5" says more than "found a number" when an integer is due.
            Json::Number(n) if expected == "an integer" => format!("{n}"),
            ref other => other.type_name().to_string(),
        };
        self.error(
            path,
            node.pos,
            format!("expected {expected}, found {found}"),
        );
        None
    }

    fn object<'n>(&mut self, node: &'n Node, path: &str, what: &str) -> Option<&'n [Member]> {
        match &node.value {
            Json::Object(m) => Some(m),
            _ => self.wrong_type(node, path, &format!("{what} (an object)")),
        }
    }

    fn unknown_fields(&mut self, members: &[Member], path: &str, allowed: &[&str], hint: &str) {
        for m in members {
            if !allowed.contains(&m.key.as_str()) {
                let suggestion = suggestion(&m.key, allowed);
                self.error(
                    &format!("{path}.{}", m.key),
                    m.key_pos,
                    format!(
                        "unknown field {:?}{suggestion} ({hint} allows: {})",
                        m.key,
                        allowed.join(", ")
                    ),
                );
            }
        }
    }

    fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.value {
            Json::String(s) => Some(s.clone()),
            _ => self.wrong_type(node, path, "a string"),
        }
    }

    fn non_empty_string(&mut self, node: &Node, path: &str) -> Option<String> {
        let s = self.string(node, path)?;
        if s.trim().is_empty() {
            self.error(path, node.pos, "must not be empty");
            return None;
        }
        Some(s)
    }

    fn array<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [Node]> {
        match &node.value {
            Json::Array(items) => Some(items),
            _ => self.wrong_type(node, path, "an array"),
        }
    }

    fn integer(&mut self, node: &Node, path: &str) -> Option<i64> {
        match node.value {
            Json::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => Some(n as i64),
            _ => self.wrong_type(node, path, "an integer"),
        }
    }

    fn timestamp(&mut self, node: &Node, path: &str) -> Option<Millis> {
        let s = self.string(node, path)?;
        match parse_rfc3339(&s) {
            Ok(t) => Some(t),
            Err(e) => {
                self.error(path, node.pos, e);
                None
            }
        }
    }

    fn scenario(&mut self, root: &Node) -> Option<Scenario> {
        let top = self.object(root, "$", "a scenario")?;
        self.unknown_fields(top, "$", TOP_FIELDS, "a scenario");
        let get = |k: &str| top.iter().find(|m| m.key == k).map(|m| &m.value);

        if let Some(f) = get("format") {
            match f.value {
                Json::Number(v) if v == 1.0 || v == 1.1 => {}
                Json::Number(v) => self.error(
                    "$.format",
                    f.pos,
                    format!("format {v} is not supported: this memeval reads formats 1 and 1.1"),
                ),
                ref other => self.error(
                    "$.format",
                    f.pos,
                    format!("expected a number (1 or 1.1), found {}", other.type_name()),
                ),
            }
        }
        let name = match get("name") {
            None => {
                self.error("$", root.pos, "missing required field \"name\"");
                None
            }
            Some(n) => self
                .string(n, "$.name")
                .and_then(|s| match super::check_name(&s) {
                    Ok(()) => Some(s),
                    Err(e) => {
                        self.error("$.name", n.pos, e);
                        None
                    }
                }),
        };
        let description = get("description").and_then(|n| self.string(n, "$.description"));
        let user = get("user").and_then(|n| self.non_empty_string(n, "$.user"));
        let system_prompt = get("system_prompt").and_then(|n| self.string(n, "$.system_prompt"));
        let source = get("source").and_then(|n| self.source(n));

        let (facts, fact_ids) = match get("facts") {
            Some(n) => self.facts(n),
            None => (Vec::new(), HashMap::new()),
        };
        let mut facts = facts;

        let mut messages = Vec::new();
        let mut sessions = Vec::new();
        let mut drafts = Vec::new();
        // Raw plan per session, in order: Ok(probe draft index) or Err(message number).
        let mut plan: Vec<Vec<Result<usize, u32>>> = Vec::new();
        match (get("sessions"), get("turns")) {
            (Some(_), Some(t)) => self.error(
                "$.turns",
                t.pos,
                "a scenario has either \"sessions\" or \"turns\", not both",
            ),
            (None, None) => self.error(
                "$",
                root.pos,
                "missing the conversation: add \"sessions\" (several sittings) or \"turns\" (one)",
            ),
            (Some(s), None) => self.sessions(
                s,
                &fact_ids,
                &mut messages,
                &mut drafts,
                &mut sessions,
                &mut plan,
            ),
            (None, Some(t)) => {
                sessions.push(Session {
                    id: "s1".into(),
                    start: None,
                });
                let mut entries = Vec::new();
                self.entries(
                    t,
                    "$.turns",
                    0,
                    &fact_ids,
                    &mut messages,
                    &mut drafts,
                    &mut entries,
                    true,
                );
                plan.push(entries);
            }
        }
        if let Some(p) = get("probes")
            && let Some(items) = self.array(p, "$.probes")
        {
            for (i, item) in items.iter().enumerate() {
                if let Some(d) = self.probe(item, &format!("$.probes[{i}]"), &fact_ids, true) {
                    drafts.push(d);
                }
            }
        }

        self.check_times(&sessions, &messages, &plan, &drafts);
        self.check_tools(&messages, &plan, &drafts);

        self.plant(&mut facts, &messages, &fact_ids);
        if self.message_entries == 0 && !plan.is_empty() {
            self.error("$", root.pos, "the conversation has no messages");
        }

        let probes = self.assign_probe_ids(&mut drafts, &facts);
        let steps = schedule(&plan, &messages, &probes, &drafts, &facts);
        let name = name?;
        let phrases = fold_phrases(&mut facts);
        Some(Scenario {
            user: user.unwrap_or_else(|| name.clone()),
            name,
            description,
            system_prompt: system_prompt.unwrap_or_else(|| DEFAULT_SYSTEM_PROMPT.to_string()),
            facts,
            sessions,
            messages,
            probes,
            steps,
            phrases: crate::text::Phrases::new(phrases),
            file: self.file.clone(),
            sha256: String::new(),
            bytes: 0,
            source,
        })
    }

    /// `source`: where an imported scenario came from, what the importer
    /// repaired and which questions it left out.
    fn source(&mut self, n: &Node) -> Option<super::Source> {
        let obj = self.object(n, "$.source", "a source")?;
        self.unknown_fields(obj, "$.source", SOURCE_FIELDS, "a source");
        let mut source = super::Source::default();
        for m in obj {
            let path = format!("$.source.{}", m.key);
            match m.key.as_str() {
                "dataset" | "file" | "id" => {
                    let text = self.string(&m.value, &path).unwrap_or_default();
                    match m.key.as_str() {
                        "dataset" => source.dataset = text,
                        "file" => source.file = text,
                        _ => source.id = text,
                    }
                }
                "repairs" | "excluded" => {
                    let list: Vec<String> = self
                        .array(&m.value, &path)
                        .unwrap_or_default()
                        .iter()
                        .enumerate()
                        .filter_map(|(i, item)| self.string(item, &format!("{path}[{i}]")))
                        .collect();
                    if m.key == "repairs" {
                        source.repairs = list;
                    } else {
                        source.excluded = list;
                    }
                }
                _ => {}
            }
        }
        Some(source)
    }
    /// The sessions of a scenario with `"sessions"`: their ids and starts,
    /// their entries into `messages` and `drafts`, and their plans.
    #[allow(clippy::too_many_arguments)]
    fn sessions(
        &mut self,
        s: &Node,
        fact_ids: &HashMap<String, (usize, Pos)>,
        messages: &mut Vec<Message>,
        drafts: &mut Vec<ProbeDraft>,
        sessions: &mut Vec<Session>,
        plan: &mut Vec<Vec<Result<usize, u32>>>,
    ) {
        if let Some(items) = self.array(s, "$.sessions") {
            if items.is_empty() {
                self.error("$.sessions", s.pos, "must hold at least one session");
            }
            for (i, item) in items.iter().enumerate() {
                let path = format!("$.sessions[{i}]");
                let Some(obj) = self.object(item, &path, "a session") else {
                    continue;
                };
                self.unknown_fields(obj, &path, SESSION_FIELDS, "a session");
                let sget = |k: &str| obj.iter().find(|m| m.key == k).map(|m| &m.value);
                let id = sget("id")
                    .and_then(|n| self.non_empty_string(n, &format!("{path}.id")))
                    .unwrap_or_else(|| format!("s{}", i + 1));
                if let Some(prev) = sessions.iter().position(|s: &Session| s.id == id) {
                    self.error(
                        &format!("{path}.id"),
                        sget("id").map_or(item.pos, |n| n.pos),
                        format!("session id {id:?} is already used by session {}", prev + 1),
                    );
                }
                let start = sget("start").and_then(|n| {
                    let spath = format!("{path}.start");
                    self.time_nodes
                        .insert(u32::MAX - i as u32, (spath.clone(), n.pos));
                    self.timestamp(n, &spath)
                });
                sessions.push(Session { id, start });
                let mut entries = Vec::new();
                match sget("turns") {
                    None => self.error(&path, item.pos, "missing required field \"turns\""),
                    Some(t) => self.entries(
                        t,
                        &format!("{path}.turns"),
                        sessions.len() - 1,
                        fact_ids,
                        messages,
                        drafts,
                        &mut entries,
                        true,
                    ),
                }
                plan.push(entries);
            }
        }
    }

    /// Each fact's planting messages; a fact no message plants is an error.
    fn plant(
        &mut self,
        facts: &mut [Fact],
        messages: &[Message],
        fact_ids: &HashMap<String, (usize, Pos)>,
    ) {
        for m in messages {
            for &f in &m.plants {
                facts[f].planted_by.push(m.number);
            }
        }
        for (i, f) in facts.iter().enumerate() {
            if f.planted_by.is_empty() {
                let pos = fact_ids.get(&*f.id).map(|x| x.1).unwrap_or_default();
                self.error(
                &format!("$.facts[{i}]"),
                pos,
                format!(
                    "fact {:?} is never planted: list it in the \"plants\" of the message that states it",
                    f.id
                ),
            );
            }
        }
    }
}

/// The facts' `expect` phrases, folded, each once; every fact notes the
/// indexes of its own.
fn fold_phrases(facts: &mut [Fact]) -> Vec<String> {
    let mut phrases: Vec<String> = Vec::new();
    for f in facts.iter_mut() {
        for p in &f.expect {
            let p = crate::text::fold(p);
            let at = phrases.iter().position(|q| *q == p).unwrap_or_else(|| {
                phrases.push(p);
                phrases.len() - 1
            });
            f.phrases.push(at as u32);
        }
    }
    phrases
}

#[cfg(test)]
mod tests;
