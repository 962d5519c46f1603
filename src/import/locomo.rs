//! LoCoMo: each conversation becomes one scenario.
//!
//! - `speaker_a` is the `user`, `speaker_b` the `assistant`; every message
//!   starts with its speaker's name ("Caroline: ..."), since the questions
//!   name them.
//! - `session_N` (N in numeric order) becomes a session `session_N` starting
//!   at `session_N_date_time` ("1:56 pm on 8 May, 2023", read as UTC); date
//!   keys without a session are ignored.
//! - A shared image is kept as text: " [shares a photo: <blip_caption>]".
//! - Every dia_id cited as evidence becomes a fact of that id, planted by
//!   its message and recalled when that message is in the context verbatim
//!   (recall by evidence presence); reports cite facts by dia_id.
//! - Each QA becomes a probe `qN` (N from 1, in file order) asked after the
//!   last message, with the gold answer as its `answer` and its category as
//!   its kind (1 multi-hop, 2 temporal, 3 open-domain, 4 single-hop, 5
//!   adversarial; an adversarial question's answer is that the conversation
//!   does not say). Evidence lists written as one string ("D8:6; D9:17")
//!   are split. With `--probe-after-evidence`, `qN-early` also asks it right
//!   after the session that holds its last evidence.
//!
//! Accepted shapes: one conversation object (the per-conversation files,
//! named by file stem), an object with `sample_id`, `conversation` and `qa`,
//! or an array of those (the `locomo10.json` release).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{Map, Value, json};

use super::{ImportError, Options, Tally, error, probe, scenario_name, source, text_of};

const CATEGORIES: [&str; 5] = [
    "multi-hop",
    "temporal",
    "open-domain",
    "single-hop",
    "adversarial",
];

/// Every conversation of one file, as (scenario name, scenario).
pub fn import(
    file: &Path,
    root: &Value,
    opts: &Options,
    tally: &mut Tally,
) -> Result<Vec<(String, Value)>, ImportError> {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match root {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let id = item["sample_id"]
                    .as_str()
                    .map_or_else(|| format!("{stem}-{}", i + 1), String::from);
                conversation(file, &format!("[{i}] ({id})"), &id, item, opts, tally)
            })
            .collect(),
        Value::Object(o) if o.contains_key("conversation") => {
            let id = o
                .get("sample_id")
                .and_then(Value::as_str)
                .map_or(stem, String::from);
            Ok(vec![conversation(file, &id, &id, root, opts, tally)?])
        }
        Value::Object(_) => Ok(vec![conversation(file, &stem, &stem, root, opts, tally)?]),
        _ => Err(error(
            file,
            "$",
            "expected a LoCoMo conversation object or an array of them",
        )),
    }
}

/// "1:56 pm on 8 May, 2023" as RFC 3339 (UTC).
pub fn parse_date_time(s: &str) -> Option<String> {
    let (time, date) = s.trim().split_once(" on ")?;
    let (hm, half) = time.trim().rsplit_once(' ')?;
    let (h, m) = hm.split_once(':')?;
    let (mut h, m): (u32, u32) = (h.trim().parse().ok()?, m.trim().parse().ok()?);
    if !(1..=12).contains(&h) || m > 59 {
        return None;
    }
    match half.to_ascii_lowercase().as_str() {
        "am" => h %= 12,
        "pm" => h = h % 12 + 12,
        _ => return None,
    }
    let parts: Vec<&str> = date.split([' ', ',']).filter(|p| !p.is_empty()).collect();
    let [day, month, year] = parts[..] else {
        return None;
    };
    let day: u32 = day.parse().ok()?;
    let year: i64 = year.parse().ok()?;
    let months = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    let month = month.to_ascii_lowercase();
    let mi = months
        .iter()
        .position(|full| *full == month || (month.len() >= 3 && full.starts_with(&month)))?;
    let rfc = format!("{year:04}-{:02}-{day:02}T{h:02}:{m:02}:00Z", mi + 1);
    // The loader's own parser decides what a valid date is (30 February is not).
    crate::clock::parse_rfc3339(&rfc).ok()?;
    Some(rfc)
}

fn conversation(
    file: &Path,
    label: &str,
    id: &str,
    item: &Value,
    opts: &Options,
    tally: &mut Tally,
) -> Result<(String, Value), ImportError> {
    let at = |place: &str| format!("conversation {label}: {place}");
    let conv = item.get("conversation").unwrap_or(item);
    let Some(conv) = conv.as_object() else {
        return Err(error(file, at("conversation"), "expected an object"));
    };
    let speaker = |key: &str| -> Result<String, ImportError> {
        conv.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(String::from)
            .ok_or_else(|| error(file, at(key), format!("missing required field {key:?}")))
    };
    let (a, b) = (speaker("speaker_a")?, speaker("speaker_b")?);
    let qa = item
        .get("qa")
        .or_else(|| conv.get("qa"))
        .and_then(Value::as_array)
        .ok_or_else(|| error(file, at("qa"), "missing required field \"qa\" (a list)"))?;

    // Sessions in numeric order.
    let mut numbered: BTreeMap<u32, &Vec<Value>> = BTreeMap::new();
    for (k, v) in conv {
        if let Some(n) = k
            .strip_prefix("session_")
            .and_then(|r| r.parse::<u32>().ok())
        {
            let Some(list) = v.as_array() else {
                return Err(error(file, at(k), "expected a list of messages"));
            };
            numbered.insert(n, list);
        }
    }
    if numbered.is_empty() {
        return Err(error(
            file,
            at("session_1"),
            "the conversation has no sessions",
        ));
    }

    let (messages, order) = messages_of(file, label, &numbered, &a, &b)?;
    let Questions {
        cited,
        probes,
        repairs,
        excluded,
    } = questions(file, label, id, qa, &messages, opts, tally)?;
    let facts: Vec<Value> = order
        .iter()
        .filter(|(_, dia, _, _)| cited.contains(dia))
        .map(|(_, dia, _, content)| json!({ "id": dia, "statement": content }))
        .collect();
    let plan = Plan {
        order: &order,
        cited: &cited,
        probes: &probes,
        after_evidence: opts.after_evidence,
    };
    let sessions = sessions_of(file, label, conv, &numbered, &plan)?;
    let name = scenario_name("locomo", id);
    let scenario = json!({
        "format": 1,
        "name": name,
        "description": format!(
            "LoCoMo conversation {id} between {a} (user) and {b} (assistant): {} sessions, {} messages, {} questions.",
            numbered.len(), order.len(), probes.len()
        ),
        "system_prompt": format!("You are {b}, talking with your friend {a}. Answer from what you remember of your conversations."),
        "facts": facts,
        "sessions": sessions,
        "source": source("locomo", file, id, &repairs, &excluded),
    });
    Ok((name, scenario))
}

/// A message of the scenario: session number, dia_id, role, content.
type Line = (u32, String, String, String);

/// The messages of the sessions, by dia_id (session number and text as
/// written into the scenario) and in order; `a` is the user, `b` the
/// assistant.
#[allow(clippy::type_complexity)]
fn messages_of(
    file: &Path,
    label: &str,
    numbered: &BTreeMap<u32, &Vec<Value>>,
    a: &str,
    b: &str,
) -> Result<(BTreeMap<String, (u32, String)>, Vec<Line>), ImportError> {
    let at = |place: &str| format!("conversation {label}: {place}");
    let mut messages: BTreeMap<String, (u32, String)> = BTreeMap::new();
    let mut order: Vec<Line> = Vec::new();
    for (&n, list) in numbered {
        for (j, m) in list.iter().enumerate() {
            let place = at(&format!("session_{n}[{j}]"));
            let field = |k: &str| m.get(k).and_then(Value::as_str).map(str::trim);
            let dia = field("dia_id")
                .filter(|d| !d.is_empty())
                .ok_or_else(|| error(file, &place, "missing required field \"dia_id\""))?;
            let who = field("speaker")
                .ok_or_else(|| error(file, &place, "missing required field \"speaker\""))?;
            let role = if who == a {
                "user"
            } else if who == b {
                "assistant"
            } else {
                return Err(error(
                    file,
                    &place,
                    format!("speaker {who:?} is neither speaker_a ({a:?}) nor speaker_b ({b:?})"),
                ));
            };
            let text = field("text").unwrap_or("");
            let mut content = text.to_string();
            if let Some(caption) = field("blip_caption").filter(|c| !c.is_empty()) {
                if !content.is_empty() {
                    content.push(' ');
                }
                content.push_str(&format!("[shares a photo: {caption}]"));
            }
            if content.is_empty() {
                return Err(error(
                    file,
                    &place,
                    format!("message {dia} has no \"text\""),
                ));
            }
            let content = format!("{who}: {content}");
            if messages
                .insert(dia.to_string(), (n, content.clone()))
                .is_some()
            {
                return Err(error(file, &place, format!("dia_id {dia:?} is used twice")));
            }
            order.push((n, dia.to_string(), role.to_string(), content));
        }
    }
    Ok((messages, order))
}

/// A question: the session of its last evidence, its probe after the
/// last session, and its probe right after that evidence.
type Question = (u32, Value, Value);

/// The questions kept, the messages they cite as evidence, what was
/// repaired, and the ids of the questions left out.
struct Questions {
    cited: BTreeSet<String>,
    probes: Vec<Question>,
    repairs: Vec<String>,
    excluded: Vec<String>,
}

/// The questions of conversation `sample` (its `qa`). An evidence id that
/// is no message of the conversation (an annotation error of the release)
/// is reported and dropped, unless `opts.strict`; a question left with no
/// evidence is judged by its answer alone.
fn questions(
    file: &Path,
    label: &str,
    sample: &str,
    qa: &[Value],
    messages: &BTreeMap<String, (u32, String)>,
    opts: &Options,
    tally: &mut Tally,
) -> Result<Questions, ImportError> {
    let at = |place: &str| format!("conversation {label}: {place}");
    let mut out = Questions {
        cited: BTreeSet::new(),
        probes: Vec::new(),
        repairs: Vec::new(),
        excluded: Vec::new(),
    };
    for (i, q) in qa.iter().enumerate() {
        let id = format!("q{}", i + 1);
        let question = q["question"].as_str().unwrap_or("").trim();
        let place = if question.is_empty() {
            at(&format!("qa[{i}]"))
        } else {
            at(&format!("qa[{i}] ({question:?})"))
        };
        if question.is_empty() {
            return Err(error(file, &place, "missing required field \"question\""));
        }
        let category = q["category"]
            .as_u64()
            .filter(|c| (1..=5).contains(c))
            .ok_or_else(|| error(file, &place, "\"category\" must be 1 to 5"))?;
        let kind = CATEGORIES[category as usize - 1];
        let full_id = format!("{sample}/{id}");
        if opts.exclude.contains(&full_id) {
            tally.excluded.insert(full_id);
            out.excluded.push(id);
            continue;
        }
        if opts
            .categories
            .as_ref()
            .is_some_and(|c| !c.contains(&category))
        {
            tally.filtered += 1;
            out.excluded.push(id);
            continue;
        }
        let mut evidence: Vec<String> = Vec::new();
        let mut dropped = 0;
        for e in q["evidence"].as_array().into_iter().flatten() {
            let Some(e) = e.as_str() else {
                return Err(error(file, &place, "evidence ids are strings"));
            };
            for eid in e
                .split(|c: char| c == ';' || c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty())
            {
                let mut eid = eid.to_string();
                if !messages.contains_key(&eid) {
                    let what = format!("evidence {eid:?} is not a message of this conversation");
                    if opts.strict {
                        return Err(error(file, &place, format!("{what} (--strict)")));
                    }
                    // A typo of a dialogue id ("D30:05", "D:11:26") is read
                    // as the id it spells; anything else is dropped.
                    let fixed = spelled(&eid).filter(|f| messages.contains_key(f));
                    let note = match &fixed {
                        Some(f) => format!("{id} (qa[{i}]): {what}: read as {f:?}"),
                        None => format!("{id} (qa[{i}]): {what}: dropped"),
                    };
                    tally
                        .repairs
                        .push(format!("{}: conversation {label}: {note}", file.display()));
                    out.repairs.push(note);
                    match fixed {
                        Some(f) => eid = f,
                        None => {
                            dropped += 1;
                            continue;
                        }
                    }
                }
                if !evidence.contains(&eid) {
                    evidence.push(eid);
                }
            }
        }
        if dropped > 0 && evidence.is_empty() {
            let note = format!("{id} (qa[{i}]): no evidence left: judged by its answer alone");
            tally
                .repairs
                .push(format!("{}: conversation {label}: {note}", file.display()));
            out.repairs.push(note);
        }
        let answer = if category == 5 {
            Some("Not mentioned in the conversation.".to_string())
        } else {
            q.get("answer").and_then(text_of)
        };
        out.cited.extend(evidence.iter().cloned());
        let last_session = evidence.iter().map(|e| messages[e].0).max().unwrap_or(0);
        out.probes.push((
            last_session,
            probe(&id, question, &evidence, answer.as_deref(), kind),
            probe(
                &format!("{id}-early"),
                question,
                &evidence,
                answer.as_deref(),
                kind,
            ),
        ));
    }
    Ok(out)
}

/// What the sessions are made of.
struct Plan<'a> {
    order: &'a [Line],
    cited: &'a BTreeSet<String>,
    probes: &'a [Question],
    /// Also ask each question right after its last evidence.
    after_evidence: bool,
}

/// The scenario's sessions: the messages (those cited plant their fact),
/// the probes, and each session's start.
fn sessions_of(
    file: &Path,
    label: &str,
    conv: &Map<String, Value>,
    numbered: &BTreeMap<u32, &Vec<Value>>,
    plan: &Plan<'_>,
) -> Result<Vec<Value>, ImportError> {
    let at = |place: &str| format!("conversation {label}: {place}");
    let last = *numbered.keys().last().expect("at least one session");
    let mut sessions = Vec::new();
    for &n in numbered.keys() {
        let mut turns: Vec<Value> = plan
            .order
            .iter()
            .filter(|(s, _, _, _)| *s == n)
            .map(|(_, dia, role, content)| {
                let mut m = json!({ "role": role, "content": content });
                if plan.cited.contains(dia) {
                    m["plants"] = json!([dia]);
                }
                m
            })
            .collect();
        if plan.after_evidence && n != last {
            turns.extend(
                plan.probes
                    .iter()
                    .filter(|(s, _, _)| *s == n)
                    .map(|(_, _, early)| early.clone()),
            );
        }
        let start = match conv.get(&format!("session_{n}_date_time")) {
            Some(dt) => {
                let text = dt.as_str().unwrap_or("");
                Some(parse_date_time(text).ok_or_else(|| {
                    error(
                        file,
                        at(&format!("session_{n}_date_time")),
                        format!("{text:?} is not a date like \"1:56 pm on 8 May, 2023\""),
                    )
                })?)
            }
            None => None,
        };
        if n == last {
            // Asked the day after the last session, and told so.
            let asked = start.as_deref().map(day_after);
            turns.extend(plan.probes.iter().map(|(_, p, _)| {
                let mut p = p.clone();
                if let Some(at) = &asked {
                    p["at"] = json!(at);
                }
                p
            }));
        }
        if turns.is_empty() {
            continue;
        }
        let mut s = Map::new();
        s.insert("id".into(), json!(format!("session_{n}")));
        if let Some(rfc) = start {
            s.insert("start".into(), json!(rfc));
        }
        s.insert("turns".into(), Value::Array(turns));
        sessions.push(Value::Object(s));
    }
    Ok(sessions)
}

/// The dialogue id a mistyped one spells: `D30:05` is `D30:5`, `D:11:26`
/// is `D11:26` (`None` where it spells none, or is already one).
fn spelled(eid: &str) -> Option<String> {
    let rest = eid.strip_prefix('D')?.trim_start_matches(':');
    let (session, turn) = rest.split_once(':')?;
    let (session, turn): (u32, u32) = (session.parse().ok()?, turn.parse().ok()?);
    let id = format!("D{session}:{turn}");
    (id != eid).then_some(id)
}

/// The RFC 3339 time a day after `rfc` (a time this importer wrote).
fn day_after(rfc: &str) -> String {
    let t = crate::clock::parse_rfc3339(rfc).expect("written by parse_date_time");
    crate::clock::format_rfc3339(t + 86_400_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mistyped_dialogue_ids_are_read_as_the_id_they_spell() {
        assert_eq!(spelled("D30:05").as_deref(), Some("D30:5"));
        assert_eq!(spelled("D:11:26").as_deref(), Some("D11:26"));
        assert_eq!(spelled("D10:19"), None);
        assert_eq!(spelled("D"), None);
        assert_eq!(spelled("X1:2"), None);
    }

    #[test]
    fn locomo_dates() {
        assert_eq!(
            parse_date_time("1:56 pm on 8 May, 2023").as_deref(),
            Some("2023-05-08T13:56:00Z")
        );
        assert_eq!(
            parse_date_time("12:09 am on 13 September, 2023").as_deref(),
            Some("2023-09-13T00:09:00Z")
        );
        assert_eq!(
            parse_date_time("12:30 pm on 1 Jan, 2024").as_deref(),
            Some("2024-01-01T12:30:00Z")
        );
        for bad in [
            "",
            "13:00 pm on 8 May, 2023",
            "1:56 on 8 May, 2023",
            "1:56 pm on 30 February, 2023",
            "1:56 pm on 8 Mai, 2023",
        ] {
            assert_eq!(parse_date_time(bad), None, "{bad}");
        }
    }
}
