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
