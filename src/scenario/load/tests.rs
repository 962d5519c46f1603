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
