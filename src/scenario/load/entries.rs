//! The parts of a scenario below its top level: facts, sessions and their
//! entries (messages and probes), the order of time, probe ids, and the
//! schedule of recurring probes.

use super::*;
use crate::scenario::Text;

impl Checker {
    /// Facts, and a map from id to (index, position).
    pub(super) fn facts(&mut self, node: &Node) -> (Vec<Fact>, HashMap<String, (usize, Pos)>) {
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
                id: id.into(),
                statement: statement.map(Text::from),
                expect: expect.into_iter().map(Text::from).collect(),
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
                        let pos = ids[&*facts[start].id].1;
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
    pub(super) fn entries(
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

    pub(super) fn message(
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
                        format!("role {r:?} is not \"user\", \"assistant\" or \"tool\""),
                    );
                }
                role
            });
        let tool = self.message_tools(obj, pos, path, role, count as u32 + 1);
        let calls = matches!(tool.as_deref(), Some(Tools::Calls(_)));
        let content = match get("content") {
            Some(n) => self.non_empty_string(n, &format!("{path}.content")),
            // A tool-calling message's text may be empty; it is not generated.
            None if calls => Some(String::new()),
            None => {
                match role {
                    Some(Role::User) => self.error(path, pos, "a user message needs \"content\""),
                    Some(Role::Tool) => self.error(
                        path,
                        pos,
                        "a tool message needs \"content\" (the tool's result)",
                    ),
                    _ => {}
                }
                None
            }
        };
        let mut plants: Vec<usize> = Vec::new();
        if let Some(n) = get("plants") {
            let ppath = format!("{path}.plants");
            if let Some(items) = self.array(n, &ppath) {
                if role == Some(Role::Assistant) && get("content").is_none() && !calls {
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
            tool,
            plants,
            at,
        })
    }

    pub(super) fn probe(
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
        let expects = self.expects(get("expects"), node, path, fact_ids);
        let answer = get("answer").and_then(|n| self.string(n, &format!("{path}.answer")));
        let kind = get("kind").and_then(|n| self.non_empty_string(n, &format!("{path}.kind")));
        let at = get("at").and_then(|n| {
            let apath = format!("{path}.at");
            self.timestamp(n, &apath).map(|t| (t, apath, n.pos))
        });
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
        let expects = expects?;
        if recurring && every.is_none() {
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
            at,
            every,
            after: None,
        })
    }

    /// A probe's `expects`: the facts it needs, each with its path and
    /// position (`None` where the list has an error).
    #[allow(clippy::type_complexity)]
    pub(super) fn expects(
        &mut self,
        node_expects: Option<&Node>,
        node: &Node,
        path: &str,
        fact_ids: &HashMap<String, (usize, Pos)>,
    ) -> Option<Vec<(usize, String, Pos)>> {
        let mut expects = Vec::new();
        let mut expects_ok = true;
        match node_expects {
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
        expects_ok.then_some(expects)
    }

    pub(super) fn check_times(
        &mut self,
        sessions: &[Session],
        messages: &[Message],
        plan: &[Vec<Result<usize, u32>>],
        drafts: &[ProbeDraft],
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
                match e {
                    Err(n) => {
                        if let Some(at) = messages[*n as usize - 1].at {
                            check(at, *n, format!("message {n}"));
                        }
                    }
                    Ok(i) => {
                        if let Some((at, path, pos)) = &drafts[*i].at {
                            // Keys below the sessions' and above the messages'.
                            let key = u32::MAX / 2 - *i as u32;
                            self.time_nodes.insert(key, (path.clone(), *pos));
                            check(*at, key, format!("the probe at {path}"));
                        }
                    }
                }
            }
        }
        for (key, message) in problems {
            let (path, pos) = self.time_nodes[&key].clone();
            self.error(&path, pos, message);
        }
    }

    pub(super) fn assign_probe_ids(
        &mut self,
        drafts: &mut [ProbeDraft],
        facts: &[Fact],
    ) -> Vec<Probe> {
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
                id: id.into(),
                question: d.question.as_str().into(),
                expects: d.expects.iter().map(|e| e.0).collect(),
                answer: d.answer.as_deref().map(Text::from),
                kind: d.kind.as_deref().map(Text::from),
                at: d.at.as_ref().map(|a| a.0),
                every: d.every,
            })
            .collect()
    }
}

/// Orders the replay: session starts, messages, inline probes where they
/// stand, and recurring probes after the inline probes of their message.
pub(super) fn schedule(
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
    // Probes due after a tool call or a result that more results follow
    // wait for the last result: nobody asks between a call and its results.
    let mut waiting: Vec<usize> = Vec::new();
    let mut ask = |n: u32, steps: &mut Vec<Step>| {
        for probe in due(n) {
            if !waiting.contains(&probe) {
                waiting.push(probe);
            }
        }
        let open = messages
            .get(n as usize)
            .is_some_and(|m| m.role == Role::Tool);
        if !open {
            steps.extend(
                waiting
                    .drain(..)
                    .map(|probe| Step::Probe { probe, turn: n }),
            );
        }
    };
    let mut pending: Option<u32> = None;
    for (si, entries) in plan.iter().enumerate() {
        if let Some(n) = pending.take() {
            ask(n, &mut steps);
        }
        steps.push(Step::Session(si));
        for e in entries {
            match *e {
                Err(n) => {
                    if let Some(p) = pending.take() {
                        ask(p, &mut steps);
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
        ask(n, &mut steps);
    }
    steps
}
