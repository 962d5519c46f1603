//! Reading and validating scenario files: every rule of SCENARIO_FORMAT.md,
//! every error of a file reported at once, each with its JSON path and
//! line:column.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::json::{self, Json, Member, Node, Pos};
use super::{
    DEFAULT_SYSTEM_PROMPT, Diagnostic, Fact, InputErrors, Message, Probe, Role, Scenario, Session,
    Step,
};
use crate::clock::{Millis, parse_rfc3339};
use crate::text::suggestion;

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
];
const FACT_FIELDS: &[&str] = &["id", "statement", "expect", "supersedes"];
const SESSION_FIELDS: &[&str] = &["id", "start", "turns"];
const MESSAGE_FIELDS: &[&str] = &["role", "content", "plants", "at"];
const PROBE_FIELDS: &[&str] = &["probe", "id", "expects", "answer", "kind"];
const RECURRING_FIELDS: &[&str] = &["probe", "id", "expects", "answer", "kind", "every"];

/// Loads and validates several files; also checks the run-level rules
/// (names and users unique). Returns every error of every file.
pub fn load_all(paths: &[PathBuf]) -> Result<Vec<Scenario>, InputErrors> {
    let mut errors = Vec::new();
    let mut scenarios = Vec::new();
    for path in paths {
        match load_file(path) {
            Ok(s) => scenarios.push(s),
            Err(InputErrors(mut e)) => errors.append(&mut e),
        }
    }
    let mut names: HashMap<&str, &Path> = HashMap::new();
    let mut users: HashMap<&str, &Path> = HashMap::new();
    for s in &scenarios {
        if let Some(other) = names.insert(&s.name, &s.file) {
            errors.push(file_error(
                &s.file,
                "$.name",
                format!(
                    "scenario name {:?} is also used by {}: names must be unique within a run",
                    s.name,
                    other.display()
                ),
            ));
        }
        if let Some(other) = users.insert(&s.user, &s.file) {
            errors.push(file_error(
                &s.file,
                "$.user",
                format!(
                    "user {:?} is also the user of {}: two scenarios of one run may not share a user",
                    s.user,
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

        if let Some(f) = get("format")
            && let Some(v) = self.integer(f, "$.format")
            && v != 1
        {
            self.error(
                "$.format",
                f.pos,
                format!("format {v} is not supported: this memeval reads format 1"),
            );
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
            (Some(s), None) => {
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
                                format!(
                                    "session id {id:?} is already used by session {}",
                                    prev + 1
                                ),
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
                                &fact_ids,
                                &mut messages,
                                &mut drafts,
                                &mut entries,
                                true,
                            ),
                        }
                        plan.push(entries);
                    }
                }
            }
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

        self.check_times(&sessions, &messages, &plan);

        // Plant facts and check that each is planted.
        for m in &messages {
            for &f in &m.plants {
                facts[f].planted_by.push(m.number);
            }
        }
        for (i, f) in facts.iter().enumerate() {
            if f.planted_by.is_empty() {
                let pos = fact_ids.get(&f.id).map(|x| x.1).unwrap_or_default();
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
        if self.message_entries == 0 && !plan.is_empty() {
            self.error("$", root.pos, "the conversation has no messages");
        }

        let probes = self.assign_probe_ids(&mut drafts, &facts);
        let steps = schedule(&plan, &messages, &probes, &drafts, &facts);
        let name = name?;
        let mut phrases: Vec<String> = Vec::new();
        for f in &mut facts {
            for p in &f.expect {
                let p = crate::text::fold(p);
                let at = phrases.iter().position(|q| *q == p).unwrap_or_else(|| {
                    phrases.push(p);
                    phrases.len() - 1
                });
                f.phrases.push(at as u32);
            }
        }
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
        })
    }

    /// Facts, and a map from id to (index, position).
    fn facts(&mut self, node: &Node) -> (Vec<Fact>, HashMap<String, (usize, Pos)>) {
        let mut facts = Vec::new();
        let mut ids: HashMap<String, (usize, Pos)> = HashMap::new();
        let Some(items) = self.array(node, "$.facts") else {
            return (facts, ids);
        };
        let mut supersedes = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("$.facts[{i}]");
            let Some(obj) = self.object(item, &path, "a fact") else {
                continue;
            };
            self.unknown_fields(obj, &path, FACT_FIELDS, "a fact");
            let get = |k: &str| obj.iter().find(|m| m.key == k).map(|m| &m.value);
            let Some(id) = (match get("id") {
                None => {
                    self.error(&path, item.pos, "missing required field \"id\"");
                    None
                }
                Some(n) => self.non_empty_string(n, &format!("{path}.id")),
            }) else {
                continue;
            };
            if let Some((_, first)) = ids.get(&id) {
                self.error(
                    &format!("{path}.id"),
                    get("id").map_or(item.pos, |n| n.pos),
                    format!("fact id {id:?} is already used at {first}"),
                );
                continue;
            }
            let statement =
                get("statement").and_then(|n| self.string(n, &format!("{path}.statement")));
            let mut expect = Vec::new();
            if let Some(n) = get("expect") {
                let epath = format!("{path}.expect");
                if let Some(phrases) = self.array(n, &epath) {
                    if phrases.is_empty() {
                        self.error(
                            &epath,
                            n.pos,
                            "must list at least one phrase (leave \"expect\" out to recall by the planting message)",
                        );
                    }
                    for (j, p) in phrases.iter().enumerate() {
                        if let Some(s) = self.non_empty_string(p, &format!("{epath}[{j}]")) {
                            expect.push(s);
                        }
                    }
                }
            }
            if let Some(n) = get("supersedes") {
                let spath = format!("{path}.supersedes");
                if let Some(s) = self.non_empty_string(n, &spath) {
                    supersedes.push((facts.len(), s, n.pos, spath));
                }
            }
            ids.insert(id.clone(), (facts.len(), item.pos));
            facts.push(Fact {
                id,
                statement,
                expect,
                supersedes: None,
                planted_by: Vec::new(),
                phrases: Vec::new(),
            });
        }
        for (idx, target, pos, path) in supersedes {
            match ids.get(&target) {
                None => {
                    let known: Vec<&str> = ids.keys().map(String::as_str).collect();
                    let hint = suggestion(&target, &known);
                    self.error(
                        &path,
                        pos,
                        format!("supersedes unknown fact {target:?}{hint}"),
                    );
                }
                Some(&(t, _)) if t == idx => {
                    self.error(&path, pos, "a fact cannot supersede itself");
                }
                Some(&(t, _)) => facts[idx].supersedes = Some(t),
            }
        }
        // A chain of supersedes must not loop back.
        for start in 0..facts.len() {
            let mut seen = vec![start];
            let mut cur = facts[start].supersedes;
            while let Some(c) = cur {
                if seen.contains(&c) {
                    if c == start {
                        let pos = ids[&facts[start].id].1;
                        self.error(
                            &format!("$.facts[{start}].supersedes"),
                            pos,
                            format!(
                                "supersedes forms a cycle through fact {:?}",
                                facts[start].id
                            ),
                        );
                    }
                    break;
                }
                seen.push(c);
                cur = facts[c].supersedes;
            }
        }
        (facts, ids)
    }

    #[allow(clippy::too_many_arguments)]
    fn entries(
        &mut self,
        node: &Node,
        path: &str,
        session: usize,
        fact_ids: &HashMap<String, (usize, Pos)>,
        messages: &mut Vec<Message>,
        drafts: &mut Vec<ProbeDraft>,
        out: &mut Vec<Result<usize, u32>>,
        must_be_non_empty: bool,
    ) {
        let Some(items) = self.array(node, path) else {
            return;
        };
        if must_be_non_empty && items.is_empty() {
            self.error(path, node.pos, "must hold at least one message or probe");
        }
        for (i, item) in items.iter().enumerate() {
            let ipath = format!("{path}[{i}]");
            let Some(obj) = self.object(item, &ipath, "a message or a probe") else {
                continue;
            };
            let has = |k: &str| obj.iter().any(|m| m.key == k);
            match (has("role"), has("probe")) {
                (true, true) => self.error(
                    &ipath,
                    item.pos,
                    "an entry is either a message (\"role\") or a probe (\"probe\"), not both",
                ),
                (false, false) => self.error(
                    &ipath,
                    item.pos,
                    "an entry needs \"role\" (a message) or \"probe\" (a probe)",
                ),
                (false, true) => {
                    if let Some(mut d) = self.probe(item, &ipath, fact_ids, false) {
                        d.after = Some(messages.len() as u32);
                        out.push(Ok(drafts.len()));
                        drafts.push(d);
                    }
                }
                (true, false) => {
                    self.message_entries += 1;
                    if let Some(m) =
                        self.message(obj, item.pos, &ipath, session, fact_ids, messages.len())
                    {
                        out.push(Err(m.number));
                        messages.push(m);
                    }
                }
            }
        }
    }

    fn message(
        &mut self,
        obj: &[Member],
        pos: Pos,
        path: &str,
        session: usize,
        fact_ids: &HashMap<String, (usize, Pos)>,
        count: usize,
    ) -> Option<Message> {
        self.unknown_fields(obj, path, MESSAGE_FIELDS, "a message");
        let get = |k: &str| obj.iter().find(|m| m.key == k).map(|m| &m.value);
        let role_node = get("role").expect("caller checked");
        let role = self
            .string(role_node, &format!("{path}.role"))
            .and_then(|r| {
                let role = Role::parse(&r);
                if role.is_none() {
                    self.error(
                        &format!("{path}.role"),
                        role_node.pos,
                        format!("role {r:?} is not \"user\" or \"assistant\""),
                    );
                }
                role
            });
        let content = match get("content") {
            Some(n) => self.non_empty_string(n, &format!("{path}.content")),
            None => {
                if role == Some(Role::User) {
                    self.error(path, pos, "a user message needs \"content\"");
                }
                None
            }
        };
        let mut plants: Vec<usize> = Vec::new();
        if let Some(n) = get("plants") {
            let ppath = format!("{path}.plants");
            if let Some(items) = self.array(n, &ppath) {
                if role == Some(Role::Assistant) && get("content").is_none() {
                    self.error(
                        &ppath,
                        n.pos,
                        "a generated assistant reply cannot plant facts: its text is not known in advance",
                    );
                }
                for (j, item) in items.iter().enumerate() {
                    let fpath = format!("{ppath}[{j}]");
                    if let Some(id) = self.string(item, &fpath) {
                        match fact_ids.get(&id) {
                            Some(&(f, _)) if plants.contains(&f) => {
                                self.error(&fpath, item.pos, format!("fact {id:?} is listed twice"))
                            }
                            Some(&(f, _)) => plants.push(f),
                            None => {
                                let known: Vec<&str> =
                                    fact_ids.keys().map(String::as_str).collect();
                                let hint = suggestion(&id, &known);
                                self.error(
                                    &fpath,
                                    item.pos,
                                    format!(
                                        "plants unknown fact {id:?}, which \"facts\" does not declare{hint}"
                                    ),
                                );
                            }
                        }
                    }
                }
            }
        }
        let at = get("at").and_then(|n| {
            let apath = format!("{path}.at");
            self.time_nodes
                .insert(count as u32 + 1, (apath.clone(), n.pos));
            self.timestamp(n, &apath)
        });
        Some(Message {
            number: count as u32 + 1,
            session,
            role: role?,
            content: content.map(Into::into),
            plants,
            at,
        })
    }

    fn probe(
        &mut self,
        node: &Node,
        path: &str,
        fact_ids: &HashMap<String, (usize, Pos)>,
        recurring: bool,
    ) -> Option<ProbeDraft> {
        let what = if recurring {
            "a recurring probe"
        } else {
            "a probe"
        };
        let obj = self.object(node, path, what)?;
        let allowed = if recurring {
            RECURRING_FIELDS
        } else {
            PROBE_FIELDS
        };
        if !recurring && let Some(m) = obj.iter().find(|m| m.key == "every") {
            self.error(
                &format!("{path}.every"),
                m.key_pos,
                "\"every\" makes a recurring probe: move this probe to the top-level \"probes\" list",
            );
        }
        let others: Vec<Member> = obj
            .iter()
            .filter(|m| recurring || m.key != "every")
            .cloned()
            .collect();
        self.unknown_fields(&others, path, allowed, what);
        let get = |k: &str| obj.iter().find(|m| m.key == k).map(|m| &m.value);
        let question = match get("probe") {
            None => {
                self.error(
                    path,
                    node.pos,
                    "missing required field \"probe\" (the question)",
                );
                None
            }
            Some(n) => self.non_empty_string(n, &format!("{path}.probe")),
        };
        let id = get("id").and_then(|n| self.non_empty_string(n, &format!("{path}.id")));
        let mut expects = Vec::new();
        let mut expects_ok = true;
        match get("expects") {
            None => {
                self.error(
                    path,
                    node.pos,
                    "missing required field \"expects\" (the fact ids a correct answer needs; [] for none)",
                );
                expects_ok = false;
            }
            Some(n) => {
                let epath = format!("{path}.expects");
                if let Some(items) = self.array(n, &epath) {
                    for (j, item) in items.iter().enumerate() {
                        let fpath = format!("{epath}[{j}]");
                        if let Some(fid) = self.string(item, &fpath) {
                            match fact_ids.get(&fid) {
                                Some(&(f, _))
                                    if expects.iter().any(|e: &(usize, String, Pos)| e.0 == f) =>
                                {
                                    self.error(
                                        &fpath,
                                        item.pos,
                                        format!("fact {fid:?} is listed twice"),
                                    )
                                }
                                Some(&(f, _)) => expects.push((f, fpath, item.pos)),
                                None => {
                                    let known: Vec<&str> =
                                        fact_ids.keys().map(String::as_str).collect();
                                    let hint = suggestion(&fid, &known);
                                    self.error(
                                        &fpath,
                                        item.pos,
                                        format!("expects unknown fact {fid:?}{hint}"),
                                    );
                                    expects_ok = false;
                                }
                            }
                        } else {
                            expects_ok = false;
                        }
                    }
                } else {
                    expects_ok = false;
                }
            }
        }
        let answer = get("answer").and_then(|n| self.string(n, &format!("{path}.answer")));
        let kind = get("kind").and_then(|n| self.non_empty_string(n, &format!("{path}.kind")));
        let every = if recurring {
            match get("every") {
                None => {
                    self.error(
                        path,
                        node.pos,
                        "missing required field \"every\" (ask after every N messages)",
                    );
                    None
                }
                Some(n) => self.integer(n, &format!("{path}.every")).and_then(|v| {
                    if v < 1 || v > u32::MAX as i64 {
                        self.error(
                            &format!("{path}.every"),
                            n.pos,
                            format!("must be at least 1, not {v}"),
                        );
                        None
                    } else {
                        Some(v as u32)
                    }
                }),
            }
        } else {
            None
        };
        if !expects_ok || (recurring && every.is_none()) {
            return None;
        }
        Some(ProbeDraft {
            pos: node.pos,
            path: path.to_string(),
            id,
            question: question?,
            expects,
            answer,
            kind,
            every,
            after: None,
        })
    }

    fn check_times(
        &mut self,
        sessions: &[Session],
        messages: &[Message],
        plan: &[Vec<Result<usize, u32>>],
    ) {
        let mut last: Option<(Millis, String)> = None;
        let mut problems = Vec::new();
        let mut check = |this: Millis, key: u32, what: String| {
            if let Some((prev, prev_what)) = &last
                && this < *prev
            {
                problems.push((
                    key,
                    format!("{what} goes back in time: it is before {prev_what}"),
                ));
            }
            last = Some((this, what));
        };
        for (si, entries) in plan.iter().enumerate() {
            if let Some(s) = sessions.get(si).and_then(|s| s.start) {
                check(
                    s,
                    u32::MAX - si as u32,
                    format!("the start of session {:?}", sessions[si].id),
                );
            }
            for e in entries {
                if let Err(n) = e
                    && let Some(at) = messages[*n as usize - 1].at
                {
                    check(at, *n, format!("message {n}"));
                }
            }
        }
        for (key, message) in problems {
            let (path, pos) = self.time_nodes[&key].clone();
            self.error(&path, pos, message);
        }
    }

    fn assign_probe_ids(&mut self, drafts: &mut [ProbeDraft], facts: &[Fact]) -> Vec<Probe> {
        // Default ids p1, p2, ... follow the order the probes appear in the file.
        let mut order: Vec<usize> = (0..drafts.len()).collect();
        order.sort_by_key(|&i| (drafts[i].pos.line, drafts[i].pos.col));
        let mut ids: Vec<String> = vec![String::new(); drafts.len()];
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for (n, &i) in order.iter().enumerate() {
            let d = &drafts[i];
            let id = d.id.clone().unwrap_or_else(|| format!("p{}", n + 1));
            if let Some(first) = seen.get(&id) {
                let (path, pos) = (d.path.clone(), d.pos);
                self.error(
                    &path,
                    pos,
                    format!("probe id {id:?} is already used by {first} (default ids are p1, p2, ... in file order)"),
                );
            }
            seen.insert(id.clone(), d.path.clone());
            ids[i] = id;
        }
        // An inline probe's expected facts must be planted before it is asked.
        for d in drafts.iter() {
            if let Some(after) = d.after {
                for (f, path, pos) in &d.expects {
                    let fact = &facts[*f];
                    match fact.planted_by.first() {
                        Some(&first) if first <= after => {}
                        Some(&first) => self.error(
                            path,
                            *pos,
                            format!(
                                "fact {:?} is not planted before this probe: it is first planted by message {first}, and the probe comes after message {after}",
                                fact.id
                            ),
                        ),
                        None => {} // reported on the fact itself
                    }
                }
            }
        }
        drafts
            .iter()
            .zip(ids)
            .map(|(d, id)| Probe {
                id,
                question: d.question.clone(),
                expects: d.expects.iter().map(|e| e.0).collect(),
                answer: d.answer.clone(),
                kind: d.kind.clone(),
                every: d.every,
            })
            .collect()
    }
}

/// Orders the replay: session starts, messages, inline probes where they
/// stand, and recurring probes after the inline probes of their message.
fn schedule(
    plan: &[Vec<Result<usize, u32>>],
    messages: &[Message],
    probes: &[Probe],
    drafts: &[ProbeDraft],
    facts: &[Fact],
) -> Vec<Step> {
    let last = messages.len() as u32;
    // For each recurring probe, the message it counts from.
    let recurring: Vec<(usize, u32, u32)> = probes
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let every = p.every?;
            let from = if p.expects.is_empty() {
                1
            } else {
                p.expects
                    .iter()
                    .map(|&f| facts[f].planted_by.first().copied().unwrap_or(u32::MAX))
                    .max()
                    .unwrap_or(1)
            };
            Some((i, from, every))
        })
        .collect();
    let due = |n: u32| {
        recurring.iter().filter_map(move |&(i, from, every)| {
            let periodic = n > from && (n - from).is_multiple_of(every);
            (from != u32::MAX && (periodic || n == last)).then_some(i)
        })
    };
    let mut steps = Vec::new();
    let mut pending: Option<u32> = None;
    for (si, entries) in plan.iter().enumerate() {
        if let Some(n) = pending.take() {
            steps.extend(due(n).map(|probe| Step::Probe { probe, turn: n }));
        }
        steps.push(Step::Session(si));
        for e in entries {
            match *e {
                Err(n) => {
                    if let Some(p) = pending.take() {
                        steps.extend(due(p).map(|probe| Step::Probe { probe, turn: p }));
                    }
                    steps.push(Step::Message(n));
                    pending = Some(n);
                }
                Ok(d) => steps.push(Step::Probe {
                    probe: d,
                    turn: drafts[d].after.unwrap_or(0),
                }),
            }
        }
    }
    if let Some(n) = pending {
        steps.extend(due(n).map(|probe| Step::Probe { probe, turn: n }));
    }
    steps
}

#[cfg(test)]
mod tests;
