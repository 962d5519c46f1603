use super::*;
use crate::scenario::Step;

fn load(text: &str) -> Scenario {
    load_str(text, Path::new("t.json")).unwrap_or_else(|e| panic!("{e}"))
}

fn users(n: usize) -> String {
    (1..=n)
        .map(|i| {
            format!(
                "{{\"role\": \"user\", \"content\": \"m{i}\"{}}}",
                if i == 3 { ", \"plants\": [\"f\"]" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn asked(s: &Scenario, id: &str) -> Vec<u32> {
    s.steps
        .iter()
        .filter_map(|st| match *st {
            Step::Probe { probe, turn } if s.probes[probe].id == id => Some(turn),
            _ => None,
        })
        .collect()
}

#[test]
fn recurring_probes_count_from_the_last_planting_and_end_at_the_last_message() {
    let s = load(&format!(
        r#"{{"name": "r", "facts": [{{"id": "f"}}], "turns": [{}],
            "probes": [{{"id": "a", "probe": "?", "expects": ["f"], "every": 2}},
                       {{"id": "b", "probe": "?", "expects": [], "every": 3}},
                       {{"id": "c", "probe": "?", "expects": [], "every": 10}}]}}"#,
        users(10)
    ));
    assert_eq!(asked(&s, "a"), vec![5, 7, 9, 10]);
    assert_eq!(asked(&s, "b"), vec![4, 7, 10]);
    assert_eq!(asked(&s, "c"), vec![10]);
}

#[test]
fn inline_probes_stand_where_written_and_recurring_ones_follow_them() {
    let s = load(
        r#"{"name": "i", "facts": [{"id": "f"}], "turns": [
            {"probe": "cold?", "expects": []},
            {"role": "user", "content": "x", "plants": ["f"]},
            {"probe": "now?", "expects": ["f"]},
            {"role": "assistant"}],
           "probes": [{"id": "r", "probe": "?", "expects": ["f"], "every": 1}]}"#,
    );
    let order: Vec<String> = s
        .steps
        .iter()
        .map(|st| match *st {
            Step::Session(i) => format!("S{i}"),
            Step::Message(n) => format!("M{n}"),
            Step::Probe { probe, turn } => format!("{}@{turn}", s.probes[probe].id),
        })
        .collect();
    assert_eq!(order, ["S0", "p1@0", "M1", "p2@1", "M2", "r@2"]);
    assert!(s.message(2).content.is_none());
    assert_eq!(s.sessions[0].id, "s1");
    assert_eq!(s.user, "i");
    assert_eq!(s.system_prompt, crate::scenario::DEFAULT_SYSTEM_PROMPT);
}

#[test]
fn default_probe_ids_follow_file_order_even_when_probes_come_first() {
    let s = load(
        r#"{"name": "o",
            "probes": [{"probe": "top?", "expects": [], "every": 5}],
            "sessions": [
              {"turns": [{"role": "user", "content": "a"}, {"probe": "in?", "expects": []}]},
              {"id": "later", "turns": [{"role": "user", "content": "b"}, {"probe": "in2?", "id": "named", "expects": []}]}]}"#,
    );
    let ids: Vec<(&str, &str)> = s
        .probes
        .iter()
        .map(|p| (p.question.as_str(), p.id.as_str()))
        .collect();
    assert!(ids.contains(&("top?", "p1")));
    assert!(ids.contains(&("in?", "p2")));
    assert!(ids.contains(&("in2?", "named")));
    assert_eq!(s.sessions[0].id, "s1");
    assert_eq!(s.sessions[1].id, "later");
    assert_eq!(s.message(2).session, 1);
}

#[test]
fn facts_know_their_planting_messages_and_supersedes() {
    let s = load(
        r#"{"name": "f", "facts": [{"id": "old", "expect": ["A"]}, {"id": "new", "expect": ["B"], "supersedes": "old"}],
            "turns": [{"role": "user", "content": "A", "plants": ["old"]},
                      {"role": "assistant", "content": "A again", "plants": ["old"]},
                      {"role": "user", "content": "B", "plants": ["new"], "at": "2025-01-01T00:00:00+01:00"}]}"#,
    );
    assert_eq!(s.facts[0].planted_by, vec![1, 2]);
    assert_eq!(s.facts[1].supersedes, Some(0));
    assert_eq!(s.message(3).at, Some(1_735_686_000_000));
}

#[test]
fn a_byte_order_mark_is_accepted() {
    let s =
        load("\u{feff}{\"name\": \"bom\", \"turns\": [{\"role\": \"user\", \"content\": \"x\"}]}");
    assert_eq!(s.name, "bom");
}

#[test]
fn a_probe_at_a_date_keeps_time_moving_forward() {
    let s = load(
        r#"{"name": "d", "sessions": [{"start": "2024-01-01T10:00:00Z", "turns": [
            {"role": "user", "content": "hi"},
            {"probe": "?", "expects": [], "at": "2024-01-02T09:00:00Z"}]}]}"#,
    );
    assert_eq!(
        s.probes[0].at,
        Some(crate::clock::parse_rfc3339("2024-01-02T09:00:00Z").unwrap())
    );
    let e = load_str(
        r#"{"name": "d", "sessions": [{"start": "2024-01-03T10:00:00Z", "turns": [
            {"role": "user", "content": "hi"},
            {"probe": "?", "expects": [], "at": "2024-01-02T09:00:00Z"},
            {"role": "user", "content": "again", "at": "2024-01-01T09:00:00Z"}]}]}"#,
        Path::new("t.json"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("$.sessions[0].turns[1].at") && e.contains("goes back in time"),
        "{e}"
    );
    // A recurring probe is asked many times: no `at`.
    let e = load_str(
        r#"{"name": "d", "turns": [{"role": "user", "content": "hi"}],
            "probes": [{"probe": "?", "expects": [], "every": 1, "at": "2024-01-02T09:00:00Z"}]}"#,
        Path::new("t.json"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("$.probes[0]") && e.contains("\"at\""), "{e}");
}

#[test]
fn an_imported_scenarios_source_is_read_and_checked() {
    let s = load(
        r#"{"name": "s", "turns": [{"role": "user", "content": "hi"}],
            "source": {"dataset": "locomo", "file": "locomo10.json", "id": "conv-26",
                       "repairs": ["q2 (qa[1]): evidence \"D9:9\" dropped"], "excluded": ["q5"]}}"#,
    );
    let src = s.source.unwrap();
    assert_eq!(src.dataset, "locomo");
    assert_eq!(src.repairs.len(), 1);
    assert_eq!(src.excluded, ["q5"]);
    let e = load_str(
        r#"{"name": "s", "turns": [{"role": "user", "content": "hi"}],
            "source": {"dataset": "locomo", "repair": [], "excluded": "q5"}}"#,
        Path::new("t.json"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("$.source") && e.contains("\"repair\""), "{e}");
    assert!(e.contains("$.source.excluded"), "{e}");
}

/// The errors of a scenario whose turns are `turns`, as printed.
fn errors(turns: &str) -> String {
    let text = format!(r#"{{"format": 1.1, "name": "t", "turns": [{turns}]}}"#);
    match load_str(&text, Path::new("t.json")) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}

const CALL: &str = r#"{"role": "assistant", "tool_calls": [{"id": "c1", "name": "lookup", "arguments": "{\"q\": 1}"}, {"id": "c2", "name": "lookup", "arguments": "{}"}]}"#;

#[test]
fn tool_calls_and_results_are_read_and_paired() {
    let s = load(&format!(
        r#"{{"format": 1.1, "name": "t", "facts": [{{"id": "f", "expect": ["42"]}}], "turns": [
            {{"role": "user", "content": "look it up"}}, {CALL},
            {{"role": "tool", "tool_call_id": "c2", "content": "none"}},
            {{"role": "tool", "tool_call_id": "c1", "content": "42", "plants": ["f"]}},
            {{"role": "assistant"}}],
           "probes": [{{"id": "r", "probe": "?", "expects": [], "every": 1}}]}}"#
    ));
    let m = &s.messages;
    assert_eq!(m[1].role, Role::Assistant);
    assert_eq!(m[1].content.as_deref(), Some(""));
    let calls = m[1].tool.as_deref().unwrap().calls();
    assert_eq!(
        (calls[0].name.as_str(), calls[0].arguments.as_str()),
        ("lookup", r#"{"q": 1}"#)
    );
    assert_eq!(m[2].role, Role::Tool);
    assert_eq!(m[3].tool.as_deref().unwrap().answers(), Some("c1"));
    assert_eq!(s.facts[0].planted_by, vec![4]);
    // The generated reply stays generated.
    assert!(m[4].content.is_none());
    // Nobody asks between a call and its results: the asks due at
    // messages 2 and 3 wait for the last result (asked once there).
    assert_eq!(asked(&s, "r"), vec![4, 5]);
    // The spool's codec carries them.
    let mut bytes = Vec::new();
    crate::scenario::codec::encode(&s, &mut bytes);
    let back = crate::scenario::codec::decode(&bytes).unwrap();
    assert_eq!(back.messages[1].tool, m[1].tool);
    assert_eq!(back.messages[3].tool, m[3].tool);
}

#[test]
fn misplaced_tool_messages_are_errors_naming_their_place() {
    let user = r#"{"role": "user", "content": "u"}"#;
    let result =
        |id: &str| format!(r#"{{"role": "tool", "tool_call_id": "{id}", "content": "r"}}"#);
    for (turns, want) in [
        // A result first: no call before it.
        (
            result("c1"),
            r#"answers call "c1", which no assistant message makes"#,
        ),
        // A call left without one of its results.
        (
            format!("{user}, {CALL}, {}, {user}", result("c1")),
            r#"call "c2" (lookup) gets no result before the next message"#,
        ),
        (
            format!("{user}, {CALL}, {}", result("c1")),
            "gets no result before its session ends",
        ),
        // A probe between a call and its results.
        (
            format!(
                r#"{user}, {CALL}, {{"probe": "?", "expects": []}}, {}, {}"#,
                result("c1"),
                result("c2")
            ),
            "a probe cannot be asked between a tool call and its result",
        ),
        // A result after another message.
        (
            format!(
                "{user}, {CALL}, {}, {}, {user}, {}",
                result("c1"),
                result("c2"),
                result("c1")
            ),
            r#"answers call "c1" of message 2, but a tool message must follow"#,
        ),
        // Answered twice.
        (
            format!(
                "{user}, {CALL}, {}, {}, {}",
                result("c1"),
                result("c1"),
                result("c2")
            ),
            r#"call "c1" is already answered"#,
        ),
        // Fields on the wrong role, and missing ones.
        (
            r#"{"role": "user", "content": "u", "tool_call_id": "x"}"#.to_string(),
            "only a tool message answers a tool call",
        ),
        (
            r#"{"role": "user", "content": "u", "tool_calls": []}"#.to_string(),
            "only an assistant message makes tool calls",
        ),
        (
            r#"{"role": "tool", "content": "r"}"#.to_string(),
            "a tool message needs \"tool_call_id\"",
        ),
        (
            r#"{"role": "tool", "tool_call_id": "x"}"#.to_string(),
            "a tool message needs \"content\"",
        ),
        (
            format!(r#"{user}, {{"role": "assistant", "tool_calls": []}}"#),
            "must list at least one call",
        ),
        (
            format!(
                r#"{user}, {{"role": "assistant", "tool_calls": [{{"id": "c", "name": "f", "arguments": "{{oops"}}]}}, {}"#,
                result("c")
            ),
            "is not JSON text",
        ),
        (
            format!(
                r#"{user}, {{"role": "assistant", "tool_calls": [{{"id": "c", "name": "f"}}]}}"#
            ),
            "missing required field \"arguments\"",
        ),
        (
            format!(
                "{user}, {CALL}, {}, {}, {user}, {CALL}, {}, {}",
                result("c1"),
                result("c2"),
                result("c1"),
                result("c2")
            ),
            r#"call id "c1" is already used by message 2"#,
        ),
    ] {
        let got = errors(&turns);
        assert!(got.contains(want), "{turns}\nwanted {want:?}, got:\n{got}");
        assert!(got.contains("t.json:"), "{got}");
    }
    // Format 1.1 is read; 1.2 is not.
    assert!(errors(user).is_empty());
    let text = format!(r#"{{"format": 1.2, "name": "t", "turns": [{user}]}}"#);
    let e = load_str(&text, Path::new("t.json"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("format 1.2 is not supported"), "{e}");
}
