//! Tool calls and their results (format 1.1): read from a message, and
//! paired as chat providers require.

use super::*;

impl Checker {
    /// A message's `tool_calls` (assistant messages) or `tool_call_id`
    /// (tool messages, where it is required).
    pub(super) fn message_tools(
        &mut self,
        obj: &[Member],
        pos: Pos,
        path: &str,
        role: Option<Role>,
        number: u32,
    ) -> Option<Arc<Tools>> {
        let get = |k: &str| obj.iter().find(|m| m.key == k).map(|m| &m.value);
        let tools = match (get("tool_calls"), get("tool_call_id")) {
            (Some(n), _) if role != Some(Role::Assistant) => {
                let cpath = format!("{path}.tool_calls");
                self.error(&cpath, n.pos, "only an assistant message makes tool calls");
                None
            }
            (_, Some(n)) if role != Some(Role::Tool) => {
                let ipath = format!("{path}.tool_call_id");
                self.error(&ipath, n.pos, "only a tool message answers a tool call");
                None
            }
            (Some(n), None) => self.tool_calls(n, &format!("{path}.tool_calls")),
            (None, Some(n)) => self
                .non_empty_string(n, &format!("{path}.tool_call_id"))
                .map(|tool_call_id| Tools::Result { tool_call_id }),
            (None, None) => {
                if role == Some(Role::Tool) {
                    self.error(
                        path,
                        pos,
                        "a tool message needs \"tool_call_id\" (the call it answers)",
                    );
                }
                None
            }
            (Some(_), Some(_)) => unreachable!("no role is both assistant and tool"),
        }?;
        self.tool_nodes.insert(number, (path.to_string(), pos));
        Some(Arc::new(tools))
    }

    /// An assistant message's `tool_calls`: at least one, each with an id,
    /// a name and its arguments as JSON text.
    fn tool_calls(&mut self, n: &Node, path: &str) -> Option<Tools> {
        let items = self.array(n, path)?;
        if items.is_empty() {
            self.error(
                path,
                n.pos,
                "must list at least one call (leave \"tool_calls\" out for none)",
            );
        }
        let mut calls = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let cpath = format!("{path}[{i}]");
            let Some(obj) = self.object(item, &cpath, "a tool call") else {
                continue;
            };
            self.unknown_fields(obj, &cpath, TOOL_CALL_FIELDS, "a tool call");
            let mut field = |k: &str| match obj.iter().find(|m| m.key == k) {
                Some(m) => self.non_empty_string(&m.value, &format!("{cpath}.{k}")),
                None => {
                    self.error(&cpath, item.pos, format!("missing required field \"{k}\""));
                    None
                }
            };
            let (id, name, arguments) = (field("id"), field("name"), field("arguments"));
            if let Some(a) = &arguments
                && let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(a)
            {
                let at = obj
                    .iter()
                    .find(|m| m.key == "arguments")
                    .map_or(item.pos, |m| m.value.pos);
                self.error(
                    &format!("{cpath}.arguments"),
                    at,
                    format!("is not JSON text ({e}): write the arguments as the model would, e.g. \"{{\\\"order\\\": \\\"A-1\\\"}}\""),
                );
            }
            if let (Some(id), Some(name), Some(arguments)) = (id, name, arguments) {
                calls.push(ToolCall {
                    id,
                    name,
                    arguments,
                });
            }
        }
        (calls.len() == items.len() && !calls.is_empty()).then_some(Tools::Calls(calls))
    }

    /// Calls and results paired as a provider requires: the tool messages
    /// answering an assistant message's calls follow it directly (nothing
    /// but other results of those calls between, no probe, same session),
    /// each call answered exactly once; call ids are unique.
    pub(super) fn check_tools(
        &mut self,
        messages: &[Message],
        plan: &[Vec<Result<usize, u32>>],
        drafts: &[ProbeDraft],
    ) {
        if self.tool_nodes.is_empty() {
            return;
        }
        let mut seen: HashMap<&str, u32> = HashMap::new();
        let mut problems: Vec<(String, Pos, String)> = Vec::new();
        let at = |nodes: &HashMap<u32, (String, Pos)>, n: u32| nodes[&n].clone();
        // The calls awaiting results: the calling message, and each call
        // with whether it is answered.
        let mut open: Open<'_> = None;
        let close = |open: &mut Open<'_>, why: &str, problems: &mut Vec<(String, Pos, String)>| {
            if let Some((n, calls)) = open.take() {
                for (id, name, answered) in calls {
                    if !answered {
                        let (path, pos) = at(&self.tool_nodes, n);
                        problems.push((
                            format!("{path}.tool_calls"),
                            pos,
                            format!("call {id:?} ({name}) gets no result {why}: a tool message answering it must follow the call"),
                        ));
                    }
                }
            }
        };
        for session in plan {
            for e in session {
                let n = match *e {
                    Ok(d) => {
                        if open.as_ref().is_some_and(|(_, c)| c.iter().any(|c| !c.2)) {
                            problems.push((
                                drafts[d].path.clone(),
                                drafts[d].pos,
                                "a probe cannot be asked between a tool call and its result".into(),
                            ));
                        }
                        continue;
                    }
                    Err(n) => n,
                };
                let m = &messages[n as usize - 1];
                match m.tool.as_deref() {
                    Some(Tools::Result { tool_call_id }) => {
                        let (path, pos) = at(&self.tool_nodes, n);
                        let call = open
                            .as_mut()
                            .and_then(|(_, c)| c.iter_mut().find(|c| c.0 == tool_call_id));
                        match call {
                            Some(c) if c.2 => problems.push((
                                format!("{path}.tool_call_id"),
                                pos,
                                format!("call {tool_call_id:?} is already answered"),
                            )),
                            Some(c) => c.2 = true,
                            None => problems.push((
                                format!("{path}.tool_call_id"),
                                pos,
                                match seen.get(tool_call_id.as_str()) {
                                    Some(k) => format!("answers call {tool_call_id:?} of message {k}, but a tool message must follow the message that calls (only other results between)"),
                                    None => format!("answers call {tool_call_id:?}, which no assistant message makes"),
                                },
                            )),
                        }
                    }
                    tool => {
                        close(&mut open, "before the next message", &mut problems);
                        if let Some(Tools::Calls(calls)) = tool {
                            for c in calls {
                                if let Some(k) = seen.insert(&c.id, n) {
                                    let (path, pos) = at(&self.tool_nodes, n);
                                    problems.push((
                                        format!("{path}.tool_calls"),
                                        pos,
                                        format!(
                                            "call id {:?} is already used by message {k}",
                                            c.id
                                        ),
                                    ));
                                }
                            }
                            open = Some((
                                n,
                                calls
                                    .iter()
                                    .map(|c| (c.id.as_str(), c.name.as_str(), false))
                                    .collect(),
                            ));
                        }
                    }
                }
            }
            close(&mut open, "before its session ends", &mut problems);
        }
        for (path, pos, message) in problems {
            self.error(&path, pos, message);
        }
    }
}

/// The calls awaiting their results while pairing: the calling message's
/// number, and each call's id, name and whether it is answered.
type Open<'a> = Option<(u32, Vec<(&'a str, &'a str, bool)>)>;
