//! LongMemEval: each question becomes one scenario, its haystack the
//! conversation.
//!
//! - `haystack_sessions[i]` becomes a session named `haystack_session_ids[i]`
//!   starting at `haystack_dates[i]` ("2023/05/20 (Sat) 02:21", read as
//!   UTC); sessions are put in date order (stable), as the format requires
//!   time to move forward. Messages keep their roles; empty ones are skipped
//!   (and counted in the description).
//! - Every turn with `has_answer: true` becomes a fact `<session id>#<turn>`
//!   (turn from 1), planted by that message and recalled when it is in the
//!   context verbatim. Where a question marks no turn, each of its
//!   `answer_session_ids` becomes one fact planted by all of that session's
//!   messages (recalled when any of them is in the context).
//! - The question is one probe, `question_id`, asked after the last
//!   message, with the answer as its `answer` and `question_type` as its
//!   kind; an abstention question (id ending in `_abs`) has kind
//!   `abstention` and expects nothing: the right answer is that the
//!   conversation does not say.
//!
//! - The probe is asked at `question_date` (its `at`), which the answering
//!   call is told: "how many days ago" has no answer without it. A
//!   question date before the last session is reported and left out.
//! - A question with no evidence in its haystack (no marked turn, no answer
//!   session) is reported and judged by its answer alone, unless `--strict`.
//!
//! Accepted shapes: the published array of questions (`longmemeval_s`,
//! `longmemeval_m`, `longmemeval_oracle`, and their cleaned releases, which
//! have the same fields), or one question object. The file is read as a
//! stream, one question at a time, so that memory holds one question
//! whatever the file's size (`longmemeval_m` is several GB).

use std::path::Path;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Value, json};

use super::{ImportError, Options, Tally, error, probe, scenario_name, source, text_of};

/// "2023/05/20 (Sat) 02:21" as RFC 3339 (UTC).
pub fn parse_date(s: &str) -> Option<String> {
    let mut parts = s.split_whitespace();
    let date = parts.next()?;
    let mut time = parts.next()?;
    if time.starts_with('(') {
        time = parts.next()?;
    }
    let d: Vec<&str> = date.split(['/', '-']).collect();
    let [y, mo, da] = d[..] else { return None };
    let (h, mi) = time.split_once(':')?;
    let rfc = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:00Z",
        y.parse::<u32>().ok()?,
        mo.parse::<u32>().ok()?,
        da.parse::<u32>().ok()?,
        h.parse::<u32>().ok()?,
        mi.parse::<u32>().ok()?
    );
    crate::clock::parse_rfc3339(&rfc).ok()?;
    Some(rfc)
}

/// Reads `file` question by question, handing each scenario (name,
/// scenario) to `emit` as soon as it is built; questions left out by
/// `opts.exclude` are counted in `tally`. Stops at the first error, the
/// importer's or `emit`'s.
pub fn stream<E: From<ImportError>>(
    file: &Path,
    opts: &Options,
    tally: &mut Tally,
    mut emit: impl FnMut(String, Value) -> Result<(), E>,
) -> Result<(), E> {
    let f = std::fs::File::open(file).map_err(|e| error(file, "$", format!("cannot read: {e}")))?;
    let mut de =
        serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(1 << 20, f));
    let mut stopped: Option<E> = None;
    let mut each = |index: usize, q: Value| -> Result<(), ()> {
        let built = question(file, index, &q, opts, tally).map_err(E::from);
        drop(q);
        match built.and_then(|b| match b {
            Some((name, scenario)) => emit(name, scenario),
            None => Ok(()),
        }) {
            Ok(()) => Ok(()),
            Err(e) => {
                stopped = Some(e);
                Err(())
            }
        }
    };
    let read = de.deserialize_any(Each(&mut each)).and_then(|()| de.end());
    match (read, stopped) {
        (_, Some(e)) => Err(e),
        (Ok(()), None) => Ok(()),
        (Err(e), None) => Err(E::from(error(
            file,
            format!("{}:{}", e.line(), e.column()),
            match e.classify() {
                serde_json::error::Category::Data => {
                    "expected LongMemEval's array of questions".into()
                }
                _ => format!("not JSON: {e}"),
            },
        ))),
    }
}

/// Hands each question of the top-level array (or the one question
/// object) to its function, as it is read.
struct Each<'f, F>(&'f mut F);

impl<'de, F: FnMut(usize, Value) -> Result<(), ()>> Visitor<'de> for Each<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LongMemEval's array of questions")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        while let Some(q) = seq.next_element::<Value>()? {
            (self.0)(index, q).map_err(|()| de::Error::custom("stopped"))?;
            index += 1;
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let q = Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
        (self.0)(0, q).map_err(|()| de::Error::custom("stopped"))
    }
}

/// One question as a scenario; `None` where `--exclude` leaves it out.
fn question(
    file: &Path,
    index: usize,
    q: &Value,
    opts: &Options,
    tally: &mut Tally,
) -> Result<Option<(String, Value)>, ImportError> {
    let qid = q["question_id"].as_str().map(str::trim).unwrap_or("");
    let at = |place: &str| {
        if qid.is_empty() {
            format!("[{index}]: {place}")
        } else {
            format!("[{index}] (question {qid}): {place}")
        }
    };
    let field = |k: &str| -> Result<&Value, ImportError> {
        q.get(k)
            .filter(|v| !v.is_null())
            .ok_or_else(|| error(file, at(k), format!("missing required field {k:?}")))
    };
    if qid.is_empty() {
        return Err(error(
            file,
            at("question_id"),
            "missing required field \"question_id\"",
        ));
    }
    let text = |k: &str| -> Result<String, ImportError> {
        text_of(field(k)?)
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| error(file, at(k), "expected non-empty text"))
    };
    if opts.exclude.contains(qid) {
        tally.excluded.insert(qid.to_string());
        return Ok(None);
    }
    let mut repairs: Vec<String> = Vec::new();
    let mut repair = |note: String| {
        tally.repairs.push(format!(
            "{}: [{index}] (question {qid}): {note}",
            file.display()
        ));
        repairs.push(note);
    };
    let question = text("question")?;
    let answer = text("answer")?;
    let qtype = text("question_type")?;
    let list = |k: &str| -> Result<&Vec<Value>, ImportError> {
        field(k)?
            .as_array()
            .ok_or_else(|| error(file, at(k), "expected a list"))
    };
    let ids = list("haystack_session_ids")?;
    let dates = list("haystack_dates")?;
    let sessions = list("haystack_sessions")?;
    if ids.len() != sessions.len() || dates.len() != sessions.len() {
        return Err(error(
            file,
            at("haystack_sessions"),
            format!(
                "{} sessions, {} session ids and {} dates: the three lists must match",
                sessions.len(),
                ids.len(),
                dates.len()
            ),
        ));
    }
    let abstention = qid.ends_with("_abs");
    let answer_sessions: Vec<String> = q
        .get("answer_session_ids")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(text_of)
        .collect();

    let order = date_order(file, &at, dates)?;

    // Marked turns are the evidence; without any, whole answer sessions are.
    let marked = !abstention
        && sessions
            .iter()
            .filter_map(Value::as_array)
            .flatten()
            .any(|t| t["has_answer"].as_bool() == Some(true));
    let session_evidence = (!abstention && !marked).then_some(answer_sessions.as_slice());
    let Haystack {
        facts,
        expects,
        mut sessions,
        skipped,
        messages,
        repaired,
    } = haystack(
        file,
        &at,
        ids,
        sessions,
        &order,
        marked,
        session_evidence,
        opts.strict,
    )?;
    for note in repaired {
        repair(note);
    }
    // A defect of the data: refused with --strict, else repaired so.
    let mut defect = |field: &str, what: String, repaired: &str| {
        if opts.strict {
            return Err(error(file, at(field), format!("{what} (--strict)")));
        }
        repair(format!("{what}: {repaired}"));
        Ok(())
    };
    if expects.is_empty() && !abstention {
        let what = "no evidence: no turn has \"has_answer\": true and no answer session is in the haystack";
        defect(
            "answer_session_ids",
            what.into(),
            "judged by its answer alone",
        )?;
    }
    let Some(last) = sessions.last_mut() else {
        return Err(error(
            file,
            at("haystack_sessions"),
            "the haystack has no messages",
        ));
    };
    let kind = if abstention {
        "abstention"
    } else {
        qtype.as_str()
    };
    let date = q["question_date"].as_str().unwrap_or("unknown");
    let mut p = probe(qid, &question, &expects, Some(&answer), kind);
    // Asked at its date, where that is one and not before the haystack.
    let last_start = last["start"].as_str().unwrap_or("").to_string();
    match parse_date(date) {
        Some(at) if at >= last_start => p["at"] = json!(at),
        parsed => {
            let what = match parsed {
                Some(at) => format!(
                    "question_date {date:?} ({at}) is before its last session ({last_start})"
                ),
                None if q.get("question_date").is_none() => "no question_date".to_string(),
                None => {
                    format!("question_date {date:?} is not a date like \"2023/05/20 (Sat) 02:21\"")
                }
            };
            defect("question_date", what, "asked without a date")?;
        }
    }
    last["turns"]
        .as_array_mut()
        .expect("turns were built as a list")
        .push(p);
    let name = scenario_name("longmemeval", qid);
    let scenario = json!({
        "format": 1,
        "name": name,
        "description": format!(
            "LongMemEval question {qid} ({qtype}), asked {date}: {} sessions, {messages} messages{}.",
            sessions.len(),
            match skipped {
                0 => String::new(),
                1 => ", 1 empty message skipped".into(),
                n => format!(", {n} empty messages skipped"),
            }
        ),
        "facts": facts,
        "sessions": sessions,
        "source": source("longmemeval", file, qid, &repairs, &[]),
    });
    Ok(Some((name, scenario)))
}

/// The haystack's sessions in date order: (start, index in the lists).
fn date_order(
    file: &Path,
    at: &dyn Fn(&str) -> String,
    dates: &[Value],
) -> Result<Vec<(String, usize)>, ImportError> {
    let mut order: Vec<(String, usize)> = Vec::new();
    for (i, d) in dates.iter().enumerate() {
        let raw = d.as_str().unwrap_or("");
        let rfc = parse_date(raw).ok_or_else(|| {
            error(
                file,
                at(&format!("haystack_dates[{i}]")),
                format!("{raw:?} is not a date like \"2023/05/20 (Sat) 02:21\""),
            )
        })?;
        order.push((rfc, i));
    }
    order.sort();
    Ok(order)
}

/// The question's haystack as scenario sessions, with its evidence as facts.
struct Haystack {
    facts: Vec<Value>,
    /// The facts a probe expects.
    expects: Vec<String>,
    sessions: Vec<Value>,
    /// Empty messages left out.
    skipped: usize,
    messages: usize,
    /// What was repaired (a session id used twice).
    repaired: Vec<String>,
}

/// The sessions in `order`; with `marked`, the turns marked `has_answer`
/// are the evidence, else (`session_evidence`) whole answer sessions are.
/// A session id used twice (the cleaned release has 13 histories with a
/// filler session sampled twice, identical but for its date) is repaired
/// unless `strict`: an identical copy is dropped (the later one), a
/// different session under the same id is renamed `<id>~2`.
#[allow(clippy::too_many_arguments)]
fn haystack(
    file: &Path,
    at: &dyn Fn(&str) -> String,
    ids: &[Value],
    sessions: &[Value],
    order: &[(String, usize)],
    marked: bool,
    session_evidence: Option<&[String]>,
    strict: bool,
) -> Result<Haystack, ImportError> {
    let mut facts: Vec<Value> = Vec::new();
    let mut expects: Vec<String> = Vec::new();
    let mut out_sessions: Vec<Value> = Vec::new();
    let mut seen_ids: Vec<(String, usize)> = Vec::new();
    let mut repaired = Vec::new();
    let mut skipped = 0usize;
    let mut messages = 0usize;
    for (start, i) in order {
        let sid = text_of(&ids[*i]).ok_or_else(|| {
            error(
                file,
                at(&format!("haystack_session_ids[{i}]")),
                "expected text",
            )
        })?;
        let mut sid = sid;
        if let Some(&(_, first)) = seen_ids.iter().find(|(s, _)| *s == sid) {
            let what = format!("session id {sid:?} is used twice");
            if strict {
                return Err(error(
                    file,
                    at(&format!("haystack_session_ids[{i}]")),
                    format!("{what} (--strict)"),
                ));
            }
            if sessions[first] == sessions[*i] {
                repaired.push(format!(
                    "{what} (haystack_sessions[{first}] and [{i}], identical): the later copy dropped"
                ));
                continue;
            }
            let renamed = (2..)
                .map(|n| format!("{sid}~{n}"))
                .find(|r| !seen_ids.iter().any(|(s, _)| s == r))
                .expect("a free name");
            repaired.push(format!(
                "{what} (haystack_sessions[{first}] and [{i}], different): the later one renamed {renamed:?}"
            ));
            sid = renamed;
        }
        seen_ids.push((sid.clone(), *i));
        let Some(turns) = sessions[*i].as_array() else {
            return Err(error(
                file,
                at(&format!("haystack_sessions[{i}]")),
                "expected a list of turns",
            ));
        };
        let session_fact = session_evidence.is_some_and(|a| a.contains(&sid));
        if session_fact {
            facts
                .push(json!({ "id": sid, "statement": format!("what was said in session {sid}") }));
            expects.push(sid.clone());
        }
        let mut out_turns = Vec::new();
        for (j, t) in turns.iter().enumerate() {
            let place = at(&format!("haystack_sessions[{i}][{j}]"));
            let role = t["role"].as_str().unwrap_or("");
            if role != "user" && role != "assistant" {
                return Err(error(
                    file,
                    &place,
                    format!("role {role:?} is not \"user\" or \"assistant\""),
                ));
            }
            let content = t["content"].as_str().unwrap_or("").trim();
            if content.is_empty() {
                skipped += 1;
                continue;
            }
            let mut m = json!({ "role": role, "content": content });
            if marked && t["has_answer"].as_bool() == Some(true) {
                let fid = format!("{sid}#{}", j + 1);
                facts.push(json!({ "id": fid, "statement": content }));
                expects.push(fid.clone());
                m["plants"] = json!([fid]);
            } else if session_fact {
                m["plants"] = json!([sid]);
            }
            out_turns.push(m);
        }
        if session_fact && out_turns.is_empty() {
            facts.pop();
            expects.pop();
        }
        messages += out_turns.len();
        if !out_turns.is_empty() {
            out_sessions.push(json!({ "id": sid, "start": start, "turns": out_turns }));
        }
    }
    Ok(Haystack {
        facts,
        expects,
        sessions: out_sessions,
        skipped,
        messages,
        repaired,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longmemeval_dates() {
        assert_eq!(
            parse_date("2023/05/20 (Sat) 02:21").as_deref(),
            Some("2023-05-20T02:21:00Z")
        );
        assert_eq!(parse_date("2023/02/30 (Thu) 02:21"), None);
        assert_eq!(parse_date("yesterday"), None);
    }
}
