//! The chat model in its three roles: summarizer, responder and judge.

use super::*;
use crate::backend::JudgeRules;

pub(super) struct ChatSummarizer {
    pub(super) chat: Chat,
    pub(super) template: SummaryTemplate,
}

impl Summarizer for ChatSummarizer {
    /// The tutorial's call: the prompt as one user message, temperature
    /// 0.1, at most `summary.max_summary_tokens` tokens.
    fn summarize(
        &self,
        req: &SummaryRequest<'_>,
        tok: &Tokenizer,
        calls: &mut Calls,
    ) -> Result<SummaryOutput, BackendError> {
        let prompt = self.template.render(req.prior, req.messages);
        let r = self.chat.complete(
            CallKind::Summarize,
            &[(ChatRole::User, prompt.as_str())],
            0.1,
            req.max_tokens,
            false,
            calls,
        )?;
        Ok(output(
            r.text.trim().to_string(),
            (r.api_input, r.api_output),
            || tok.count_message(&prompt) + REPLY_PRIMING,
            tok,
        ))
    }

    fn chat(
        &self,
        req: &ChatRequest<'_>,
        tok: &Tokenizer,
        calls: &mut Calls,
    ) -> Result<SummaryOutput, BackendError> {
        let r = self.chat.complete(
            CallKind::Summarize,
            req.messages,
            req.temperature,
            req.max_tokens,
            req.json,
            calls,
        )?;
        Ok(output(
            r.text,
            (r.api_input, r.api_output),
            || req.local_input_tokens(tok),
            tok,
        ))
    }
}

/// A chat reply as a summarizer's output: its `text`, and the API's token
/// figures (input, output) where it gave them, else memeval's count
/// (`local_input` for the request).
fn output(
    text: String,
    (api_input, api_output): (Option<u32>, Option<u32>),
    local_input: impl FnOnce() -> u32,
    tok: &Tokenizer,
) -> SummaryOutput {
    let text_tokens = tok.count(&text);
    SummaryOutput {
        input_tokens: api_input.unwrap_or_else(local_input),
        output_tokens: api_output.unwrap_or(text_tokens),
        text_tokens,
        text,
    }
}

pub(super) struct ChatResponder {
    pub(super) chat: Chat,
    pub(super) temperature: f32,
    pub(super) max_tokens: u32,
}

impl Responder for ChatResponder {
    fn reply(
        &self,
        kind: CallKind,
        call: &[ChatMessage],
        _query: &str,
        calls: &mut Calls,
    ) -> Result<String, BackendError> {
        let r = self
            .chat
            .complete(kind, call, self.temperature, self.max_tokens, false, calls)?;
        Ok(r.text.trim().to_string())
    }
}

pub(super) struct ChatJudge {
    pub(super) chat: Chat,
}

impl ChatJudge {
    /// Asks in JSON mode (temperature 0); a reply that `parse` rejects is
    /// sent back once with the reason, then given up on.
    pub(super) fn ask<T>(
        &self,
        kind: CallKind,
        prompt: &str,
        parse: impl Fn(&str) -> Result<T, String>,
        calls: &mut Calls,
    ) -> Result<Result<T, String>, BackendError> {
        let first = self
            .chat
            .complete(kind, &[(ChatRole::User, prompt)], 0.0, 300, true, calls)?;
        let why = match parse(&first.text) {
            Ok(v) => return Ok(Ok(v)),
            Err(why) => why,
        };
        let again = format!(
            "That reply was not usable: {why}. Reply again with the JSON object only, as asked."
        );
        let second = self.chat.complete(
            kind,
            &[
                (ChatRole::User, prompt),
                (ChatRole::Assistant, &first.text),
                (ChatRole::User, &again),
            ],
            0.0,
            300,
            true,
            calls,
        )?;
        Ok(parse(&second.text)
            .map_err(|why2| format!("unjudged: twice an unusable reply ({why}; then {why2})")))
    }
}

/// The JSON object of a reply (tolerating a fenced code block around it).
pub(super) fn json_object(
    text: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let t = text.trim();
    let t = t
        .strip_prefix("```json")
        .or_else(|| t.strip_prefix("```"))
        .and_then(|r| r.strip_suffix("```"))
        .unwrap_or(t);
    match serde_json::from_str::<serde_json::Value>(t.trim()) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Err("not a JSON object".into()),
        Err(e) => Err(format!("not valid JSON ({e})")),
    }
}

/// `{"score", "missing", "accurate"}`: the score is required, in 0..1.
pub fn parse_verdict(text: &str) -> Result<Verdict, String> {
    let m = json_object(text)?;
    let score = match m.get("score") {
        Some(serde_json::Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(other) => return Err(format!("score is {other}, not a number")),
        None => return Err("no score".into()),
    };
    if !(0.0..=1.0).contains(&score) {
        return Err(format!("score {score} is outside 0..1"));
    }
    let missing = match m.get("missing") {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        Some(serde_json::Value::String(s)) if !s.is_empty() => vec![s.clone()],
        _ => Vec::new(),
    };
    Ok(Verdict {
        score,
        missing,
        accurate: m.get("accurate").and_then(serde_json::Value::as_bool),
    })
}

/// `{"correct": bool, "reason": "..."}`.
/// Reads a judge's reply into a verdict.
type ParseVerdict = fn(&str) -> Result<AnswerVerdict, String>;

/// LoCoMo's LLM-judge question (J), as mem0's evaluation asks it.
const LOCOMO_JUDGE: &str = include_str!("prompts/locomo_judge.txt");
/// LongMemEval's answer check, with one of the rules below.
const LONGMEMEVAL_JUDGE: &str = include_str!("prompts/longmemeval_judge.txt");
/// LongMemEval's judging rule per question type (`type: rule` lines).
const LONGMEMEVAL_RULES: &str = include_str!("prompts/longmemeval_rules.txt");

/// The rule for a LongMemEval question type, and what its reference is
/// called: a rubric for preference questions, an explanation for
/// abstention ones.
fn longmemeval_rule(kind: &str, abstention: bool) -> (&'static str, &'static str) {
    let key = if abstention { "abstention" } else { kind };
    let rule = |k: &str| {
        LONGMEMEVAL_RULES
            .lines()
            .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix(": ")))
    };
    let text = rule(key)
        .or_else(|| rule("default"))
        .expect("a default rule");
    let label = match key {
        "abstention" => "Explanation",
        "single-session-preference" => "Rubric",
        _ => "Correct answer",
    };
    (text, label)
}

/// `template` with each `{name}` replaced by its value, in one pass (a
/// value holding `{...}` is left as it is).
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}').and_then(|close| {
            values
                .iter()
                .find(|(k, _)| *k == &after[..close])
                .map(|v| (close, v.1))
        }) {
            Some((close, value)) => {
                out.push_str(value);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A verdict given as `"label": "CORRECT"` or `"WRONG"` (LoCoMo's J).
pub fn parse_label_verdict(text: &str) -> Result<AnswerVerdict, String> {
    verdict_of(text, |m| {
        match m.get("label").and_then(serde_json::Value::as_str) {
            Some(l) if l.eq_ignore_ascii_case("correct") => Ok(true),
            Some(l) if l.eq_ignore_ascii_case("wrong") => Ok(false),
            Some(l) => Err(format!("label is {l:?}, not CORRECT or WRONG")),
            None => Err("no \"label\"".into()),
        }
    })
}

/// A verdict given as `"correct": true` or `false`.
pub fn parse_answer_verdict(text: &str) -> Result<AnswerVerdict, String> {
    verdict_of(text, |m| match m.get("correct") {
        Some(serde_json::Value::Bool(b)) => Ok(*b),
        Some(other) => Err(format!("correct is {other}, not true or false")),
        None => Err("no \"correct\"".into()),
    })
}

/// A JSON verdict: whether it says correct (read by `correct`), and its
/// `reason`.
fn verdict_of(
    text: &str,
    correct: impl Fn(&serde_json::Map<String, serde_json::Value>) -> Result<bool, String>,
) -> Result<AnswerVerdict, String> {
    let m = json_object(text)?;
    let correct = correct(&m)?;
    let reason = m
        .get("reason")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
        .to_string();
    Ok(AnswerVerdict {
        correct: Some(correct),
        reason,
    })
}

impl Judge for ChatJudge {
    /// The tutorial's Part 2 check, word for word.
    fn score_summary(
        &self,
        summary: &str,
        sampled: &[(Role, &str)],
        calls: &mut Calls,
    ) -> Result<Verdict, BackendError> {
        let originals: Vec<String> = sampled
            .iter()
            .map(|(r, c)| format!("{}: {c}", r.as_str()))
            .collect();
        let prompt = format!(
            "Given this summary:\n{summary}\n\nAnd these original messages it should cover:\n{}\n\n\
             For each key fact or detail in the original messages, is it accurately\n\
             represented in the summary?\n\n\
             Respond with a JSON object: {{\"score\": 0.0-1.0, \"missing\": [\"list of missing details\"], \"accurate\": true/false}}",
            originals.join("\n")
        );
        match self.ask(CallKind::JudgeSummary, &prompt, parse_verdict, calls)? {
            Ok(v) => Ok(v),
            Err(why) => Err(BackendError {
                kind: "judge",
                message: why,
            }),
        }
    }

    fn judge_answer(
        &self,
        check: &AnswerCheck<'_>,
        calls: &mut Calls,
    ) -> Result<AnswerVerdict, BackendError> {
        if let Some(r) = check.reference
            && check.rules != JudgeRules::Memeval
        {
            let (prompt, parse): (String, ParseVerdict) = match check.rules {
                JudgeRules::Locomo => (
                    fill(
                        LOCOMO_JUDGE,
                        &[
                            ("question", check.question),
                            ("gold", r),
                            ("answer", check.answer),
                        ],
                    ),
                    parse_label_verdict,
                ),
                JudgeRules::LongMemEval(kind) => {
                    let (rule, gold_label) = longmemeval_rule(kind, check.abstention);
                    let prompt = fill(
                        LONGMEMEVAL_JUDGE,
                        &[
                            ("rule", rule),
                            ("question", check.question),
                            ("gold_label", gold_label),
                            ("gold", r),
                            ("answer", check.answer),
                        ],
                    );
                    (prompt, parse_answer_verdict)
                }
                JudgeRules::Memeval => unreachable!("checked above"),
            };
            return Ok(
                match self.ask(CallKind::JudgeAnswer, &prompt, parse, calls)? {
                    Ok(v) => v,
                    Err(why) => AnswerVerdict {
                        correct: None,
                        reason: why,
                    },
                },
            );
        }
        let mut prompt = format!(
            "You are grading a chatbot's answer to a question about what its user said earlier.\n\n\
             Question: {}\n",
            check.question
        );
        if check.abstention || check.facts.is_empty() {
            prompt.push_str(
                "\nThe user never told the chatbot this. A correct answer says it does not know \
                 or was not told; an answer that makes something up is wrong.\n",
            );
        } else {
            prompt.push_str("\nFacts a correct answer must reflect:\n");
            for f in check.facts {
                match f.statement {
                    Some(s) => prompt.push_str(&format!("- {s}\n")),
                    None => prompt.push_str(&format!("- it mentions {}\n", f.expect.join(" or "))),
                }
            }
        }
        if let Some(r) = check.reference {
            prompt.push_str(&format!("\nReference answer: {r}\n"));
        }
        prompt.push_str(&format!(
            "\nThe chatbot's answer: {}\n\n\
             Is the answer correct? Wording may differ; what counts is that it states the facts \
             and contradicts none.\n\
             Respond with a JSON object: {{\"correct\": true/false, \"reason\": \"one sentence\"}}",
            check.answer
        ));
        Ok(
            match self.ask(CallKind::JudgeAnswer, &prompt, parse_answer_verdict, calls)? {
                Ok(v) => v,
                Err(why) => AnswerVerdict {
                    correct: None,
                    reason: why,
                },
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_filled_in_one_pass() {
        let t = "Q: {question}\nA: {answer} {unknown}";
        // A value holding a placeholder stays as written.
        assert_eq!(
            fill(t, &[("question", "why {answer}?"), ("answer", "x")]),
            "Q: why {answer}?\nA: x {unknown}"
        );
        assert_eq!(fill("{", &[]), "{");
    }

    #[test]
    fn each_longmemeval_type_has_its_rule() {
        let (temporal, label) = longmemeval_rule("temporal-reasoning", false);
        assert!(temporal.contains("off-by-one") && label == "Correct answer");
        assert!(
            longmemeval_rule("knowledge-update", false)
                .0
                .contains("updated one")
        );
        assert_eq!(
            longmemeval_rule("single-session-preference", false).1,
            "Rubric"
        );
        let (abs, label) = longmemeval_rule("single-session-user", true);
        assert!(abs.contains("cannot be answered") && label == "Explanation");
        let (default, _) = longmemeval_rule("multi-session", false);
        assert!(default.starts_with("The response is correct when it contains"));
        // Every placeholder of the prompts is one the judge fills.
        for (t, names) in [
            (LOCOMO_JUDGE, &["question", "gold", "answer"][..]),
            (
                LONGMEMEVAL_JUDGE,
                &["rule", "question", "gold_label", "gold", "answer"][..],
            ),
        ] {
            let values: Vec<(&str, &str)> = names.iter().map(|n| (*n, "V")).collect();
            let filled = fill(t, &values);
            assert!(!names.iter().any(|n| filled.contains(&format!("{{{n}}}"))));
        }
    }

    #[test]
    fn locomo_labels_are_read() {
        let v = parse_label_verdict(r#"{"reason": "same date", "label": "CORRECT"}"#).unwrap();
        assert_eq!(v.correct, Some(true));
        assert_eq!(
            parse_label_verdict(r#"{"label": "WRONG"}"#)
                .unwrap()
                .correct,
            Some(false)
        );
        assert!(parse_label_verdict(r#"{"label": "MAYBE"}"#).is_err());
    }
}
