//! A plugin as a memory strategy: each step of a replay becomes the
//! protocol's requests (`open`, `context`, `add`, `flush`, `close`), and
//! each context reply becomes a [`Context`] that memeval counts with its
//! own tokenizer, exactly as it counts a built-in strategy's.

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::{Lease, Plugin, SharedLease};
use crate::backend::{CallKind, CallRecord};
use crate::memory::{
    Context, Entry, Env, Item, Query, SUMMARY_HEADER, Section, Strategy, SummaryState, Suspend,
    Transcript, retrieved_block,
};
use crate::scenario::{Role, Tools};
use crate::text::Reading;
use crate::tokens::{MESSAGE_OVERHEAD, REPLY_PRIMING};

/// One user's memory in a plugin.
pub struct PluginStrategy {
    plugin: Arc<Plugin>,
    lease: SharedLease,
    user: Arc<str>,
    scenario: String,
    session: Arc<str>,
    /// The context of the user message just observed (asked before `add`).
    pending: Option<Context>,
    /// The latest summary seen (the next is numbered after it).
    summary: Option<Arc<SummaryState>>,
    fault: Option<String>,
}

impl PluginStrategy {
    /// A user's memory, opened (or restored by the plugin) at its first
    /// request. `summary` is the latest one the store holds, so that
    /// summaries keep their numbers across restores.
    pub fn new(
        plugin: &Arc<Plugin>,
        lease: &SharedLease,
        user: &Arc<str>,
        scenario: &str,
        session: &Arc<str>,
        summary: Option<Arc<SummaryState>>,
    ) -> PluginStrategy {
        PluginStrategy {
            plugin: plugin.clone(),
            lease: lease.clone(),
            user: user.clone(),
            scenario: scenario.to_string(),
            session: session.clone(),
            pending: None,
            summary,
            fault: None,
        }
    }

    /// Requests for this user, sent together (one round trip where the
    /// process pipelines), opening the user first where its process has
    /// not; what the plugin spent meanwhile, through the metering endpoint
    /// or in a reply's `calls`, is filed in `env` (a context reply's are
    /// filed where it is assembled). A fault is kept (the replay fails) and
    /// every later request is skipped.
    fn requests(
        &mut self,
        ops: Vec<(&'static str, Map<String, Value>)>,
        number: Option<u32>,
        env: &mut Env<'_>,
    ) -> Option<Vec<String>> {
        if self.fault.is_some() {
            return None;
        }
        let lease = self.lease.clone();
        let mut lease = lease.lock().unwrap_or_else(|e| e.into_inner());
        let mut names = Vec::with_capacity(ops.len() + 1);
        let result = (|| {
            let proc = lease.proc().map_err(|e| (ops[0].0, e))?;
            let mut requests = Vec::with_capacity(ops.len() + 1);
            // Opened once per process: a fresh process (a restart) opens
            // every user again, and so does a user the registry closed.
            let opening = !proc.conn.open.contains(&*self.user);
            if opening {
                let mut open = Map::new();
                open.insert("scenario".into(), json!(self.scenario));
                open.insert("system_prompt".into(), json!(env.system_prompt));
                requests.push(("open", open));
            }
            requests.extend(ops);
            for (op, fields) in &mut requests {
                fields.insert("user".into(), json!(&*self.user));
                names.push(*op);
            }
            let replies = proc
                .conn
                .call_many(requests)
                .map_err(|(i, e)| (names[i], e))?;
            if opening {
                proc.conn.open.insert(self.user.to_string());
            }
            Ok(replies)
        })();
        self.take_metered(&mut lease, env);
        let filed = result.and_then(|replies| {
            for (op, reply) in names.iter().zip(&replies) {
                if *op != "context" {
                    self.file_calls(reply, env).map_err(|e| (*op, e))?;
                }
            }
            Ok(replies)
        });
        match filed {
            Ok(mut replies) => {
                if names.first() == Some(&"open") {
                    replies.remove(0);
                }
                Some(replies)
            }
            Err((op, e)) => {
                self.fail(&mut lease, op, number, e);
                None
            }
        }
    }

    /// Files what the plugin spent through the metering endpoint.
    fn take_metered(&self, lease: &mut Lease, env: &mut Env<'_>) {
        let Some(p) = &lease.proc else { return };
        let mut tab = p.tab.lock().unwrap_or_else(|e| e.into_inner());
        env.calls.append(&mut tab.calls);
        env.usage += std::mem::take(&mut tab.usage);
    }

    /// A reply's `calls`: what the plugin spent outside the endpoint.
    fn file_calls(&self, reply: &str, env: &mut Env<'_>) -> Result<(), String> {
        #[derive(serde::Deserialize)]
        struct WithCalls {
            calls: Option<Value>,
        }
        match serde_json::from_str::<WithCalls>(reply) {
            Ok(WithCalls { calls: Some(calls) }) => Self::file_call_list(&calls, env),
            _ => Ok(()),
        }
    }

    fn file_call_list(calls: &Value, env: &mut Env<'_>) -> Result<(), String> {
        let list = calls
            .as_array()
            .ok_or("\"calls\" is not an array of {kind, model, input_tokens, output_tokens}")?;
        for (i, c) in list.iter().enumerate() {
            let tokens = |k: &str| -> Result<u32, String> {
                match c.get(k) {
                    None | Some(Value::Null) => Ok(0),
                    Some(v) => v
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| format!("calls[{i}].{k}: expected a token count")),
                }
            };
            let (input, output) = (tokens("input_tokens")?, tokens("output_tokens")?);
            let kind = match c.get("kind").and_then(Value::as_str) {
                Some("embed" | "embedding" | "embeddings") => CallKind::Embed,
                _ => CallKind::Summarize,
            };
            let model = c.get("model").and_then(Value::as_str).unwrap_or("unknown");
            let mut record = CallRecord::new(kind, model, 1, input);
            record.attempts = 1;
            record.local_output_tokens = output;
            record.api_input_tokens = Some(input);
            record.api_output_tokens = Some(output);
            env.usage.add_call(kind, input, output);
            env.calls.push(record);
        }
        Ok(())
    }

    fn fail(&mut self, lease: &mut Lease, op: &str, number: Option<u32>, what: String) {
        let tail = match &mut lease.proc {
            Some(p) => {
                p.conn.break_with(what.clone());
                super::with_tail(&p.conn)
            }
            None => String::new(),
        };
        let at = match number {
            Some(n) => format!(", message {n}"),
            None => String::new(),
        };
        self.fault = Some(format!(
            "plugin {:?}, op {op:?}, user {:?}{at}: {what}{tail}",
            self.plugin.name, &*self.user
        ));
    }

    fn message(e: &Entry, session: &str) -> Value {
        let mut m = json!({
            "number": e.number,
            "role": e.role.as_str(),
            "content": &**e.content(),
            "at": e.at.map(rfc3339),
            "session": session,
            "tokens": e.tokens + MESSAGE_OVERHEAD,
        });
        // Format 1.1's tool messages, in the chat format's fields.
        match e.tool.as_deref() {
            Some(Tools::Calls(calls)) => m["tool_calls"] = json!(calls),
            Some(Tools::Result { tool_call_id }) => m["tool_call_id"] = json!(tool_call_id),
            None => {}
        }
        m
    }

    /// Asks for a context (after or before `add` of message `number`,
    /// sent with it); the reply assembled, with `asked` (the user message
    /// it answers) last in its buffer.
    fn context(
        &mut self,
        t: &Transcript,
        ops: Vec<(&'static str, Map<String, Value>)>,
        asked: Option<&Entry>,
        number: Option<u32>,
        env: &mut Env<'_>,
    ) -> Context {
        let at = ops.iter().position(|(op, _)| *op == "context");
        let replies = self.requests(ops, number, env);
        let reply = replies
            .zip(at)
            .and_then(|(mut r, i)| r.get_mut(i).map(std::mem::take));
        let assembled = reply.map(|r| self.assemble(&r, t, asked, env));
        match assembled {
            Some(Ok(ctx)) => ctx,
            Some(Err(e)) => {
                let lease = self.lease.clone();
                let mut lease = lease.lock().unwrap_or_else(|e| e.into_inner());
                self.fail(&mut lease, "context", number, e);
                empty(env)
            }
            None => empty(env),
        }
    }

    /// The context a reply describes, counted as memeval counts its own.
    fn assemble(
        &mut self,
        reply: &str,
        t: &Transcript,
        asked: Option<&Entry>,
        env: &mut Env<'_>,
    ) -> Result<Context, String> {
        let reply: ContextReply<'_> = serde_json::from_str(reply)
            .map_err(|e| format!("a context reply not as the protocol says: {e}"))?;
        if let Some(calls) = &reply.calls {
            Self::file_call_list(calls, env)?;
        }
        let sections = reply
            .sections
            .ok_or("a context reply without \"sections\" (an array)")?;
        let mut texts: Vec<&str> = Vec::new();
        let mut sources: Vec<u32> = Vec::new();
        let mut summary_owner_ok = true;
        let mut retrieved = Vec::new();
        let mut buffer = Vec::new();
        let (mut tokens_buffer, mut buffer_messages) = (0u32, 0u32);
        for (i, s) in sections.iter().enumerate() {
            let kind = s.kind.as_deref().unwrap_or("");
            let at = |what: &str| format!("sections[{i}] ({kind}): {what}");
            match kind {
                "summary" | "other" => {
                    let text = s
                        .text
                        .as_deref()
                        .ok_or_else(|| at("expected \"text\", a string"))?;
                    texts.push(text);
                    for (j, v) in s.sources.iter().flatten().enumerate() {
                        let n = v.get().ok_or_else(|| {
                            at(&format!("sources[{j}] is not a message number: {v}"))
                        })?;
                        // Any message of the transcript is this user's.
                        summary_owner_ok &= verbatim(t, n).is_some();
                        sources.push(n);
                    }
                }
                "retrieved" => {
                    let items = s
                        .items
                        .as_ref()
                        .ok_or_else(|| at("expected \"items\", an array"))?;
                    for (j, it) in items.iter().enumerate() {
                        let n = it.source.as_ref().and_then(Num::get).ok_or_else(|| {
                            at(&format!("items[{j}].source is not a message number"))
                        })?;
                        let text = it
                            .text
                            .as_deref()
                            .ok_or_else(|| at(&format!("items[{j}].text: expected a string")))?;
                        let score = it.score.map(|x| x as f32);
                        retrieved.push(self.item(t, n, it, Some(text), Section::Retrieved, score));
                    }
                }
                "buffer" => {
                    // Messages as objects, or (verbatim ones) as bare numbers.
                    let bare = Part::default();
                    let given: Box<dyn Iterator<Item = Result<(u32, &Part<'_>), String>>> =
                        match (&s.messages, &s.numbers) {
                            (Some(list), None) => {
                                Box::new(list.iter().enumerate().map(|(j, m)| {
                                    m.number
                                        .as_ref()
                                        .and_then(Num::get)
                                        .map(|n| (n, m))
                                        .ok_or_else(|| {
                                            at(&format!(
                                                "messages[{j}].number is not a message number"
                                            ))
                                        })
                                }))
                            }
                            (None, Some(list)) => {
                                Box::new(list.iter().enumerate().map(|(j, v)| {
                                    v.get().map(|n| (n, &bare)).ok_or_else(|| {
                                        at(&format!("numbers[{j}] is not a message number: {v}"))
                                    })
                                }))
                            }
                            (Some(_), Some(_)) => {
                                return Err(at("both \"messages\" and \"numbers\": give one"));
                            }
                            (None, None) => {
                                return Err(at("expected \"messages\" or \"numbers\", an array"));
                            }
                        };
                    for given in given {
                        let (n, m) = given?;
                        let content = m.content.as_deref();
                        buffer_messages += 1;
                        // A message verbatim is counted already.
                        tokens_buffer += match (content, self.entry(t, n, m)) {
                            (None, Some(e)) => e.tokens,
                            (content, _) => env.tok.count(content.unwrap_or("")),
                        } + MESSAGE_OVERHEAD;
                        // Always listed (a plugin's buffer need not be the
                        // transcript's suffix): its tool messages are
                        // checked.
                        buffer.push(self.item(t, n, m, content, Section::Buffer, None));
                    }
                }
                other => {
                    return Err(format!(
                        "sections[{i}]: unknown section kind {other:?} (summary, retrieved, buffer or other)"
                    ));
                }
            }
        }
        if let Some(e) = asked {
            tokens_buffer += e.tokens + MESSAGE_OVERHEAD;
            buffer_messages += 1;
            buffer.push(Item::from_entry(e, Section::Buffer, None, None));
        }
        let summary = (!texts.is_empty()).then(|| {
            self.summary_of(
                texts.join("\n\n"),
                &sources,
                summary_owner_ok,
                t,
                asked,
                env,
            )
        });
        let tokens_retrieved = if retrieved.is_empty() {
            0
        } else {
            env.tok.count(&retrieved_block(&retrieved)) + MESSAGE_OVERHEAD
        };
        Ok(Context {
            tokens_system: env.system_prompt_tokens + MESSAGE_OVERHEAD + REPLY_PRIMING,
            tokens_summary: summary
                .as_ref()
                .map_or(0, |s| s.system_message_tokens - env.system_prompt_tokens),
            tokens_retrieved,
            tokens_buffer,
            summary,
            retrieved,
            buffer_messages,
            buffer,
        })
    }

    /// The transcript's message `n`, where the plugin gives this user's
    /// (it names no other user) and the transcript holds it.
    fn entry<'t>(&self, t: &'t Transcript, n: u32, v: &Part<'_>) -> Option<&'t Entry> {
        let named = v.user.as_deref().is_some_and(|u| u != &*self.user);
        verbatim(t, n).filter(|_| !named)
    }

    /// Message `n` as the plugin gives it. Its owner is this user where
    /// the transcript holds it, else the `user` the plugin names, else
    /// nobody (a leak either way).
    fn item(
        &self,
        t: &Transcript,
        n: u32,
        v: &Part<'_>,
        content: Option<&str>,
        section: Section,
        score: Option<f32>,
    ) -> Item {
        let named = v.user.as_deref().filter(|u| *u != &*self.user);
        let entry = self.entry(t, n, v);
        let role = match v.role.as_deref() {
            Some("assistant") => Role::Assistant,
            Some("user") => Role::User,
            Some("tool") => Role::Tool,
            _ => entry.map_or(Role::User, |e| e.role),
        };
        let read = match (content, entry) {
            (None, Some(e)) => e.read.clone(),
            (Some(c), _) => Arc::new(Reading::new(Arc::from(c))),
            (None, None) => Arc::new(Reading::new(Arc::from(""))),
        };
        let owner = match (named, entry) {
            (Some(u), _) => Arc::from(u),
            (None, Some(e)) => e.owner.clone(),
            (None, None) => Arc::from(""),
        };
        Item {
            section,
            number: n,
            role,
            owner,
            read,
            score,
            // A message's tool calls, or the call it answers, are the
            // transcript's.
            tool: entry.and_then(|e| e.tool.clone()),
            via: None,
            line_tokens: 0,
        }
    }

    /// The summary a context carries: the latest one again where its text
    /// is the same, else a new one, numbered on and handed to `env` to be
    /// scored over the messages its sources span.
    fn summary_of(
        &mut self,
        text: String,
        sources: &[u32],
        owned: bool,
        t: &Transcript,
        asked: Option<&Entry>,
        env: &mut Env<'_>,
    ) -> Arc<SummaryState> {
        if let Some(s) = &self.summary
            && s.text() == text
            && (s.owner == self.user) == owned
        {
            return s.clone();
        }
        let known = t.len() - usize::from(asked.is_some());
        let (from, to) = match (sources.iter().min(), sources.iter().max()) {
            (Some(&a), Some(&b)) => ((a as usize).saturating_sub(1), (b as usize).min(known)),
            _ => (0, known),
        };
        let tokens = env.tok.count(&text);
        let system = format!("{}{SUMMARY_HEADER}{text}", env.system_prompt);
        let s = Arc::new(SummaryState {
            index: self.summary.as_ref().map_or(0, |s| s.index) + 1,
            turn: t.last().map_or(0, |e| e.number),
            read: Arc::new(Reading::new(Arc::from(text))),
            tokens,
            system_message_tokens: env.tok.count(&system),
            covered_to: to as u32,
            covered_from: from.min(to) as u32,
            input_tokens: 0,
            output_tokens: 0,
            owner: if owned {
                self.user.clone()
            } else {
                Arc::from("")
            },
        });
        self.summary = Some(s.clone());
        if s.covered_from < s.covered_to {
            env.summaries.push(s.clone());
        }
        s
    }
}

/// A context reply, as read (strings borrowed from the line where they
/// hold no escapes). Numbers are read as JSON values, so that one that is
/// not a message number is reported as such.
#[derive(serde::Deserialize)]
struct ContextReply<'a> {
    #[serde(borrow)]
    sections: Option<Vec<SectionPart<'a>>>,
    calls: Option<Value>,
}

#[derive(serde::Deserialize)]
struct SectionPart<'a> {
    #[serde(borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    sources: Option<Vec<Num>>,
    #[serde(borrow)]
    items: Option<Vec<Part<'a>>>,
    #[serde(borrow)]
    messages: Option<Vec<Part<'a>>>,
    /// A buffer's verbatim messages, as bare numbers (`messages` short).
    numbers: Option<Vec<Num>>,
}

/// A retrieved item or a buffer message.
#[derive(Default, serde::Deserialize)]
struct Part<'a> {
    source: Option<Num>,
    number: Option<Num>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow)]
    user: Option<Cow<'a, str>>,
    score: Option<f64>,
}

/// Message `n` of the transcript, where it holds it.
fn verbatim(t: &Transcript, n: u32) -> Option<&Entry> {
    let pos = (n as usize).checked_sub(1)?;
    (pos < t.len())
        .then(|| t.get(pos))
        .filter(|e| e.number == n)
}

/// A message number as a reply gives it: a whole number from 1, or what
/// stood there instead (shown in the error).
enum Num {
    Number(u32),
    Not(String),
}

impl Num {
    fn get(&self) -> Option<u32> {
        match self {
            Num::Number(n) => Some(*n),
            Num::Not(_) => None,
        }
    }
}

impl std::fmt::Display for Num {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Num::Number(n) => write!(f, "{n}"),
            Num::Not(v) => f.write_str(v),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Num {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Num, D::Error> {
        // Read as a JSON value only where it is not a whole number (rare),
        // so that the common case costs no allocation.
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Num;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a message number")
            }
            fn visit_u64<E>(self, n: u64) -> Result<Num, E> {
                Ok(match u32::try_from(n) {
                    Ok(n) if n >= 1 => Num::Number(n),
                    _ => Num::Not(n.to_string()),
                })
            }
            fn visit_i64<E>(self, n: i64) -> Result<Num, E> {
                Ok(Num::Not(n.to_string()))
            }
            fn visit_f64<E>(self, x: f64) -> Result<Num, E> {
                Ok(Num::Not(Value::from(x).to_string()))
            }
            fn visit_bool<E>(self, b: bool) -> Result<Num, E> {
                Ok(Num::Not(b.to_string()))
            }
            fn visit_str<E>(self, s: &str) -> Result<Num, E> {
                Ok(Num::Not(Value::from(s).to_string()))
            }
            fn visit_unit<E>(self) -> Result<Num, E> {
                Ok(Num::Not("null".into()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, a: A) -> Result<Num, A::Error> {
                let v: Value = serde::Deserialize::deserialize(
                    serde::de::value::SeqAccessDeserializer::new(a),
                )?;
                Ok(Num::Not(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, a: A) -> Result<Num, A::Error> {
                let v: Value = serde::Deserialize::deserialize(
                    serde::de::value::MapAccessDeserializer::new(a),
                )?;
                Ok(Num::Not(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// The context of a failed request: the system prompt alone.
fn empty(env: &Env<'_>) -> Context {
    Context {
        tokens_system: env.system_prompt_tokens + MESSAGE_OVERHEAD + REPLY_PRIMING,
        tokens_summary: 0,
        tokens_retrieved: 0,
        tokens_buffer: 0,
        summary: None,
        retrieved: Vec::new(),
        buffer: Vec::new(),
        buffer_messages: 0,
    }
}

fn rfc3339(ms: i64) -> String {
    if ms % 1000 == 0 {
        crate::clock::format_rfc3339(ms)
    } else {
        jiff::Timestamp::from_millisecond(ms)
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            .unwrap_or_else(|_| crate::clock::format_rfc3339(ms))
    }
}

impl Strategy for PluginStrategy {
    fn name(&self) -> &'static str {
        "plugin"
    }

    /// A user message is asked for its context first (it is not in the
    /// memory yet), then added; an assistant message is added, then the
    /// memory's state is asked for (`build` comes next, with no query). The
    /// two requests go together, in one round trip where the process
    /// pipelines.
    fn observe(&mut self, t: &Transcript, env: &mut Env<'_>) {
        let Some(e) = t.last() else { return };
        let mut add = Map::new();
        add.insert("message".into(), Self::message(e, &self.session));
        let (query, asked) = match e.role {
            Role::User => (
                json!({
                    "content": &**e.content(),
                    "number": e.number,
                    "tokens": e.tokens + MESSAGE_OVERHEAD,
                }),
                Some(e),
            ),
            Role::Assistant => (Value::Null, None),
            // A tool's last result calls the model again, for the user's
            // latest request.
            Role::Tool => (
                t.entries()
                    .iter()
                    .rev()
                    .find(|u| u.role == Role::User)
                    .map_or(Value::Null, |u| {
                        json!({
                            "content": &**u.content(),
                            "tokens": u.tokens + MESSAGE_OVERHEAD,
                        })
                    }),
                None,
            ),
        };
        let mut context = Map::new();
        context.insert("query".into(), query);
        let ops = match e.role {
            Role::User => vec![("context", context), ("add", add)],
            Role::Assistant | Role::Tool => vec![("add", add), ("context", context)],
        };
        self.pending = Some(self.context(t, ops, asked, Some(e.number), env));
    }

    /// The context asked for in `observe` (the last message's), or one
    /// asked for now (a probe's).
    fn build(&mut self, t: &Transcript, query: Option<&Query<'_>>, env: &mut Env<'_>) -> Context {
        let number = t.last().map(|e| e.number);
        let pending = self.pending.take();
        let query = match (query, pending) {
            (None | Some(Query { probe: None, .. }), Some(ctx)) => return ctx,
            (None, None) => Value::Null,
            (Some(q), _) => {
                let tokens = env.tok.count(q.text) + MESSAGE_OVERHEAD;
                match q.probe {
                    Some(id) => json!({"content": q.text, "probe": id, "tokens": tokens}),
                    None => json!({"content": q.text, "number": number, "tokens": tokens}),
                }
            }
        };
        let mut fields = Map::new();
        fields.insert("query".into(), query);
        self.context(t, vec![("context", fields)], None, number, env)
    }

    fn summary(&self) -> Option<&Arc<SummaryState>> {
        self.summary.as_ref()
    }

    /// `flush` at a session's end (then a fresh process, where the plugin
    /// restarts between sessions); `flush` and `close` when the registry
    /// drops the user or the replay ends.
    fn suspend(&mut self, how: Suspend, env: &mut Env<'_>) {
        let open = {
            let lease = self.lease.lock().unwrap_or_else(|e| e.into_inner());
            lease
                .proc
                .as_ref()
                .is_some_and(|p| p.conn.open.contains(&*self.user))
        };
        if !open {
            return;
        }
        match how {
            Suspend::SessionEnd => {
                self.requests(vec![("flush", Map::new())], None, env);
                if self.plugin.config.restart_between_sessions && self.fault.is_none() {
                    let lease = self.lease.clone();
                    let mut lease = lease.lock().unwrap_or_else(|e| e.into_inner());
                    if let Err(e) = lease.restart(&self.user) {
                        self.fail(&mut lease, "restart", None, e);
                    }
                }
            }
            Suspend::Evict | Suspend::End => {
                self.requests(
                    vec![("flush", Map::new()), ("close", Map::new())],
                    None,
                    env,
                );
                let lease = self.lease.clone();
                let mut lease = lease.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(p) = &mut lease.proc {
                    p.conn.open.remove(&*self.user);
                }
            }
        }
    }

    fn fault(&self) -> Option<&str> {
        self.fault.as_deref()
    }
}
