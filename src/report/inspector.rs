//! The data behind report.html's inspector: for each drawn scenario, every
//! message's text once (read from the run's memory.sqlite; where a
//! strategy's memory holds another text, a generated reply, that text as
//! its own), the summaries each strategy wrote, and for every probe ask of
//! every strategy only references into them (probes.csv's context columns).
//! The page's script builds the side-by-side view of one ask at a time from
//! it, so a run of thousands of asks stays a small page.
//!
//! The expected facts' phrases are found here, by the matching recall uses
//! (`text::phrase_spans`, on the folded text, mapped back to the original's
//! UTF-16 offsets), in the scenario file the run replayed (its SHA-256
//! checked): the page marks exactly what recall counted.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::memory::Transcript;
use crate::results::ProbeRow;
use crate::results::read::RunData;
use crate::runner::inspect::Run;
use crate::scenario::Scenario;

/// The fields of one strategy's view of one ask, in the order the page's
/// script reads them (arrays, not objects: a run of the full LoCoMo has
/// about 10,000 of them).
pub const ASK_FIELDS: [&str; 17] = [
    "summary",
    "retrieved",
    "scores",
    "buffer",
    "tokens_system",
    "tokens_summary",
    "tokens_retrieved",
    "tokens_buffer",
    "context_tokens",
    "recall",
    "recalled",
    "stale",
    "over_window",
    "answer",
    "answer_correct",
    "judge_reason",
    "malformed",
];

/// The inspector's data as JSON, and how many probe asks it holds (each
/// with every strategy's view).
pub fn data(data: &RunData) -> (String, usize) {
    let run = Run::with_meta(&data.dir, data.meta.clone());
    let mut scenarios = Vec::new();
    let mut total = 0;
    for sc in &data.drawn {
        let rows = data.in_scenario(&data.probes, sc);
        let value = match &run {
            Ok(run) => scenario(run, data, sc, rows),
            // The asks still, as references: the texts are what is missing.
            Err(e) => json!({
                "name": sc,
                "note": format!("no message or summary text is shown: {}", e.0),
                "msgs": [],
                "facts": {},
                "asks": asks(rows),
            }),
        };
        total += value["asks"].as_array().map_or(0, Vec::len);
        scenarios.push(value);
    }
    let all = json!({
        "budget": data.budget,
        "window": data.meta.context_window,
        "extractive": data.meta.extractive_answers(),
        "strategies": data.strategies,
        "fields": ASK_FIELDS,
        "scenarios": scenarios,
    });
    // Inside a script element, "</" would end it: JSON allows "<\/".
    (all.to_string().replace("</", "<\\/"), total)
}

/// Where the scenario's phrases lie in `text` (none without the scenario).
fn spans(text: &str, sc: Option<&Scenario>) -> Vec<[u32; 3]> {
    sc.map(|sc| crate::text::phrase_spans(text, &sc.phrases))
        .unwrap_or_default()
        .into_iter()
        .map(|(a, b, p)| [a, b, p])
        .collect()
}

/// A memory's messages as the page shows them: role, text (with its
/// calls), and the content, where recall looks.
fn texts(t: &Transcript) -> Vec<(&'static str, String, &str)> {
    t.entries()
        .iter()
        .map(|e| {
            let mut text = String::new();
            crate::memory::message_text(e.content(), e.tool.as_deref(), &mut text);
            (e.role.as_str(), text, &**e.content())
        })
        .collect()
}

/// One message for the page: role, text, spans of phrases.
fn message((role, text, content): &(&str, String, &str), sc: Option<&Scenario>) -> Value {
    json!([role, text, spans(content, sc)])
}

fn scenario(run: &Run, data: &RunData, name: &str, rows: &[ProbeRow]) -> Value {
    let (sc, note) = match run.scenario(name) {
        Ok(sc) => (Some(sc), Value::Null),
        Err(e) => (
            None,
            json!(format!(
                "no phrase is marked: the scenario file could not be read ({e})"
            )),
        ),
    };
    let sc = sc.as_deref();
    // Every strategy's messages; the first strategy's are the page's, the
    // others keep only the ones that differ (generated replies).
    let mut base: Option<Vec<(&'static str, String)>> = None;
    let mut msgs: Vec<Value> = Vec::new();
    let mut own = serde_json::Map::new();
    let mut sums = serde_json::Map::new();
    let mut failures = Vec::new();
    for strategy in &data.strategies {
        let ns = crate::runner::namespace(name, strategy, 1);
        let store = run.store();
        let read = store
            .load(&ns)
            .and_then(|(t, _)| Ok((t, store.summaries(&ns)?)));
        let (t, summaries) = match read {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{strategy}: {e}"));
                continue;
            }
        };
        // Phrases are found once a text: in the first memory's messages,
        // then only in another's that differ.
        let these = texts(&t);
        match &base {
            None if !these.is_empty() => {
                msgs = these.iter().map(|m| message(m, sc)).collect();
                base = Some(these.into_iter().map(|(r, t, _)| (r, t)).collect());
            }
            Some(base) => {
                let differ: serde_json::Map<String, Value> = these
                    .iter()
                    .enumerate()
                    .filter(|(i, (r, t, _))| base.get(*i).is_none_or(|(br, bt)| br != r || bt != t))
                    .map(|(i, m)| ((i + 1).to_string(), message(m, sc)))
                    .collect();
                if !differ.is_empty() {
                    own.insert(strategy.clone(), Value::Object(differ));
                }
            }
            None => {}
        }
        if !summaries.is_empty() {
            let by_index: serde_json::Map<String, Value> = summaries
                .iter()
                .map(|s| {
                    let text = s.text();
                    let v = json!([s.turn, s.covered_to, s.tokens, text, spans(text, sc)]);
                    (s.index.to_string(), v)
                })
                .collect();
            sums.insert(strategy.clone(), Value::Object(by_index));
        }
    }
    let facts: serde_json::Map<String, Value> = sc
        .map(|sc| {
            sc.facts
                .iter()
                .map(|f| {
                    let supersedes = f.supersedes.map(|i| sc.facts[i].id.to_string());
                    (
                        f.id.to_string(),
                        json!([f.phrases, supersedes, f.planted_by]),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "name": name,
        "system": sc.map(|s| s.system_prompt.as_str()),
        "note": note,
        "failures": failures,
        "facts": facts,
        "msgs": msgs,
        "own": own,
        "sums": sums,
        "asks": asks(rows),
    })
}

/// Every probe ask of a scenario (by turn, then as first asked), each with
/// every strategy's context as references.
fn asks(rows: &[ProbeRow]) -> Vec<Value> {
    let mut order: Vec<(u32, &str)> = Vec::new();
    let mut by: BTreeMap<(u32, &str), serde_json::Map<String, Value>> = BTreeMap::new();
    for p in rows {
        let key = (p.turn, p.probe_id.as_str());
        let views = by.entry(key).or_insert_with(|| {
            order.push(key);
            serde_json::Map::new()
        });
        views.insert(p.strategy.clone(), view(p));
    }
    order.sort_by_key(|&(turn, _)| turn);
    let first: BTreeMap<(u32, &str), &ProbeRow> = rows
        .iter()
        .rev()
        .map(|p| ((p.turn, p.probe_id.as_str()), p))
        .collect();
    order
        .into_iter()
        .map(|key| {
            let p = first[&key];
            let list = |s: &str| -> Vec<String> {
                s.split(';')
                    .filter(|x| !x.is_empty())
                    .map(String::from)
                    .collect()
            };
            json!({
                "turn": p.turn,
                "probe": p.probe_id,
                "kind": p.kind,
                "question": p.question,
                "expected": list(&p.expected),
                "planted": p.planted_at.split(';').map(|n| n.parse::<u32>().unwrap_or(0)).collect::<Vec<_>>(),
                "by": by.remove(&key).unwrap_or_default(),
            })
        })
        .collect()
}

/// One strategy's view of an ask, as [`ASK_FIELDS`] lists it.
fn view(p: &ProbeRow) -> Value {
    json!([
        p.context_summary,
        p.context_retrieved,
        p.retrieved_scores,
        p.context_buffer,
        p.tokens_system,
        p.tokens_summary,
        p.tokens_retrieved,
        p.tokens_buffer,
        p.context_tokens,
        p.recall,
        p.recalled,
        p.stale,
        p.over_window,
        p.answer,
        p.answer_correct,
        p.judge_reason,
        p.malformed,
    ])
}

/// report.html's inspector section: the controls, the data, the script.
pub fn section(out: &mut String, data: &RunData) {
    use std::fmt::Write as _;
    let (json, asks) = self::data(data);
    out.push_str(
        "<h2 id=\"inspect\">Inspector: what each strategy put in front of the model</h2>\n",
    );
    let _ = writeln!(
        out,
        "<p class=\"sub\">Every probe ask of the scenarios above ({asks} asks), each strategy's context side by side: the summary, the retrieved messages with their scores, the buffer, each with its tokens; the expected facts' phrases <mark class=\"fact\">marked</mark> where recall found them (a replaced fact's in <mark class=\"old\">orange</mark>), and where a fact was missed, the message that stated it. A message number opens the ask nearest it. Keys: <kbd>→</kbd>/<kbd>j</kbd> next ask, <kbd>←</kbd>/<kbd>k</kbd> previous, <kbd>]</kbd>/<kbd>[</kbd> next/previous scenario, <kbd>m</kbd> only the asks a strategy missed. A click on a context or recall chart opens the ask nearest that message; <code>memeval inspect</code> rebuilds the context of any call.</p>"
    );
    out.push_str("<section id=\"inspector\"><div class=\"ins-bar\"><select id=\"ins-scenario\" aria-label=\"scenario\"></select> <select id=\"ins-ask\" aria-label=\"probe ask\"></select> <button id=\"ins-prev\" title=\"previous ask (←)\">←</button><button id=\"ins-next\" title=\"next ask (→)\">→</button> <label>message <input type=\"number\" id=\"ins-turn\" min=\"0\" aria-label=\"the ask nearest message\"></label> <label><input type=\"checkbox\" id=\"ins-misses\"> only asks a strategy missed</label></div><div id=\"ins-head\"></div><div id=\"ins-cols\" class=\"cols\"></div></section>\n");
    let _ = writeln!(
        out,
        "<script type=\"application/json\" id=\"inspect-data\">{json}</script>"
    );
}

/// The inspector's script.
pub const SCRIPT: &str = include_str!("inspector.js");
