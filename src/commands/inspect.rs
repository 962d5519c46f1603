//! `memeval inspect`: the context of any call of a finished run, rebuilt
//! from its memory.sqlite and configuration (`runner::inspect`) and printed
//! with its sections, their tokens and every message's text, or as JSON.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::Failure;
use super::budget::{capped_bar, pct};
use crate::chart::thousands;
use crate::memory::{Item, message_text};
use crate::runner::inspect::{Ask, Inspected, Run};

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// A finished run's output folder
    pub run: PathBuf,
    /// The scenario (its name)
    #[arg(long)]
    pub scenario: String,
    /// The message number: the call after it (or the memory between calls)
    #[arg(long, default_value_t = 0)]
    pub turn: u32,
    /// A probe's id: its question's context, asked after --turn
    #[arg(long)]
    pub probe: Option<String>,
    /// One strategy [default: every built-in strategy of the run]
    #[arg(long)]
    pub strategy: Option<String>,
    /// The replay (with `run --repeat`)
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
    /// Print JSON instead
    #[arg(long)]
    pub json: bool,
}

pub fn cmd_inspect(args: &InspectArgs) -> Result<(), Failure> {
    let input = |m: String| Failure::Input(format!("error: {m}"));
    let run = Run::open(&args.run).map_err(|e| input(e.0))?;
    let strategies: Vec<String> = match &args.strategy {
        Some(s) => vec![s.clone()],
        None => run
            .config
            .strategies
            .iter()
            .filter(|s| !matches!(s, crate::config::StrategyName::Plugin(_)))
            .map(|s| s.to_string())
            .collect(),
    };
    let mut shown = Vec::new();
    for strategy in &strategies {
        let ask = Ask {
            scenario: &args.scenario,
            strategy,
            turn: args.turn,
            repeat: args.repeat,
            probe: args.probe.as_deref(),
        };
        shown.push(run.context(&ask).map_err(|e| input(e.0))?);
    }
    if args.json {
        let all: Vec<serde_json::Value> = shown.iter().map(to_json).collect();
        let mut text = serde_json::to_string_pretty(&all).map_err(anyhow::Error::from)?;
        text.push('\n');
        crate::term::out(&text);
    } else {
        let text: Vec<String> = shown.iter().map(render).collect();
        crate::term::out(&text.join("\n"));
    }
    Ok(())
}

fn what(i: &Inspected) -> String {
    let sc = &i.scenario;
    match (&i.probe, i.turn) {
        (Some(p), t) => format!("probe {p:?} asked after message {t}"),
        (None, t) => {
            let role = sc.message(t).role.as_str();
            if i.call {
                format!("message {t} ({role}): the context of the call after it")
            } else {
                format!(
                    "message {t} ({role}): the memory between calls (the next call adds the next message)"
                )
            }
        }
    }
}

fn text_of(item: &Item) -> String {
    let mut s = String::new();
    message_text(item.content(), item.tool.as_deref(), &mut s);
    s
}

/// One context as printed: the sections with their tokens, then each
/// section's text.
pub fn render(i: &Inspected) -> String {
    let c = &i.context;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} / {} (replay {}): {}",
        i.scenario.name,
        i.strategy,
        i.repeat,
        what(i)
    );
    if let Some(q) = &i.query {
        let _ = writeln!(out, "query: {q}");
    }
    let _ = writeln!(
        out,
        "\n{:<10} {:>8} {:>8}  share of max_context_tokens ({})",
        "section",
        "tokens",
        "share",
        thousands(f64::from(i.budget))
    );
    let n = |k: usize| match k {
        0 => String::new(),
        1 => "  (1 message)".into(),
        k => format!("  ({k} messages)"),
    };
    for (name, tokens, note) in [
        ("system", c.tokens_system, String::new()),
        ("summary", c.tokens_summary, String::new()),
        ("retrieved", c.tokens_retrieved, n(c.retrieved.len())),
        ("buffer", c.tokens_buffer, n(c.buffer.len())),
        ("total", c.total(), String::new()),
    ] {
        let _ = writeln!(
            out,
            "{name:<10} {:>8} {:>8}  {}{note}",
            thousands(f64::from(tokens)),
            pct(tokens, i.budget),
            capped_bar(tokens, i.budget)
        );
    }
    if c.total() > i.context_window {
        let _ = writeln!(
            out,
            "over the model's window ({}): the call would fail",
            thousands(f64::from(i.context_window))
        );
    }
    let _ = writeln!(
        out,
        "\n[system] {} tokens\n  {}",
        c.tokens_system,
        indent(&i.scenario.system_prompt)
    );
    if let Some(s) = &c.summary {
        let _ = writeln!(
            out,
            "\n[summary #{}] {} tokens, written after message {}, folds messages 1-{}\n  {}",
            s.index,
            c.tokens_summary,
            s.turn,
            s.covered_to,
            indent(s.text())
        );
    }
    if !c.retrieved.is_empty() {
        let _ = writeln!(
            out,
            "\n[retrieved] {} tokens, best first",
            c.tokens_retrieved
        );
        for item in &c.retrieved {
            let score = item.score.map(|s| format!(" {s:.4}")).unwrap_or_default();
            let _ = writeln!(
                out,
                "  #{}{score} {}: {}",
                item.number,
                item.role.as_str(),
                indent(&text_of(item))
            );
        }
    }
    if !c.buffer.is_empty() {
        let (a, b) = (c.buffer[0].number, c.buffer[c.buffer.len() - 1].number);
        let _ = writeln!(
            out,
            "\n[buffer] {} tokens, messages {a}-{b}",
            c.tokens_buffer
        );
        for item in &c.buffer {
            let _ = writeln!(
                out,
                "  #{} {}: {}",
                item.number,
                item.role.as_str(),
                indent(&text_of(item))
            );
        }
    }
    out
}

/// A text's later lines indented under its first.
fn indent(s: &str) -> String {
    s.replace('\n', "\n    ")
}

fn item_json(item: &Item) -> serde_json::Value {
    let mut v = json!({
        "number": item.number,
        "role": item.role.as_str(),
        "content": &**item.content(),
    });
    if let Some(s) = item.score {
        v["score"] = json!(s);
    }
    if let Some(t) = &item.tool {
        v["tool"] = serde_json::to_value(&**t).unwrap_or_default();
    }
    v
}

/// One context as JSON: the same figures and texts.
pub fn to_json(i: &Inspected) -> serde_json::Value {
    let c = &i.context;
    json!({
        "scenario": i.scenario.name,
        "strategy": i.strategy.to_string(),
        "repeat": i.repeat,
        "turn": i.turn,
        "probe": i.probe,
        "call": i.call,
        "query": i.query,
        "tokens": {
            "system": c.tokens_system,
            "summary": c.tokens_summary,
            "retrieved": c.tokens_retrieved,
            "buffer": c.tokens_buffer,
            "total": c.total(),
        },
        "max_context_tokens": i.budget,
        "context_window": i.context_window,
        "system_prompt": i.scenario.system_prompt,
        "summary": c.summary.as_ref().map(|s| json!({
            "index": s.index,
            "turn": s.turn,
            "covered_to": s.covered_to,
            "text": s.text(),
        })),
        "retrieved": c.retrieved.iter().map(item_json).collect::<Vec<_>>(),
        "buffer": c.buffer.iter().map(item_json).collect::<Vec<_>>(),
        "buffer_messages": c.buffer_messages,
    })
}
