//! `memeval budget`: the tutorial's Part 3 breakdown for one call. Replays
//! one scenario through one strategy up to a message and shows where the
//! tokens of that call go (system prompt, summary, retrieved messages,
//! buffer), each as a share of `max_context_tokens`, drawn with bars.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;

use super::{ConfigArgs, Failure, resolve_config};
use crate::chart::thousands;
use crate::config::StrategyName;
use crate::results::TurnRow;
use crate::runner::{self, Runtime};
use crate::scenario;

#[derive(Args, Debug)]
pub struct BudgetArgs {
    /// The scenario file
    pub scenario: PathBuf,
    /// The strategy whose context is shown
    #[arg(long, default_value = "hybrid")]
    pub strategy: String,
    /// The message number whose call is shown [default: the last call: a user message, or a tool call's last result]
    #[arg(long)]
    pub turn: Option<u32>,
    /// Chat model whose tokenizer and context window apply [config: model.name; default: gpt-4o]
    #[arg(long, env = "MEMEVAL_MODEL")]
    pub model: Option<String>,
    #[command(flatten)]
    pub cfg: ConfigArgs,
}

/// Width of a bar at 100% of the budget, in characters.
const BAR: usize = 40;

fn bar(tokens: u32, budget: u32) -> String {
    let cells = (f64::from(tokens) / f64::from(budget.max(1)) * BAR as f64 * 8.0).round() as usize;
    let (full, part) = (cells / 8, cells % 8);
    let mut s = "█".repeat(full);
    if part > 0 {
        s.push([' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'][part]);
    }
    s
}

/// A bar capped at the budget, with a mark where the value goes beyond it.
pub(super) fn capped_bar(tokens: u32, budget: u32) -> String {
    let mut s = bar(tokens.min(budget), budget);
    if tokens > budget {
        s.push_str("▶ over");
    }
    s
}

pub(super) fn pct(tokens: u32, budget: u32) -> String {
    format!(
        "{:.1}%",
        f64::from(tokens) / f64::from(budget.max(1)) * 100.0
    )
}

fn messages(n: u32) -> String {
    match n {
        0 => String::new(),
        1 => "  (1 message)".into(),
        n => format!("  ({n} messages)"),
    }
}

/// The breakdown of one row of turns.csv, as printed.
pub fn render(row: &TurnRow, budget: u32, window: u32) -> String {
    let mut out = String::new();
    let what = if row.call == 1 {
        "the context of the call that answers it"
    } else {
        "the memory after this reply (the next call adds the next user message)"
    };
    let _ = writeln!(
        out,
        "{} / {}: message {} ({}, session {}): {what}\n",
        row.scenario, row.strategy, row.turn, row.role, row.session
    );
    let _ = writeln!(
        out,
        "{:<10} {:>8} {:>8}  share of max_context_tokens ({})",
        "section",
        "tokens",
        "share",
        thousands(f64::from(budget))
    );
    let sections = [
        ("system", row.tokens_system, String::new()),
        ("summary", row.tokens_summary, String::new()),
        (
            "retrieved",
            row.tokens_retrieved,
            messages(row.retrieved_messages),
        ),
        ("buffer", row.tokens_buffer, messages(row.buffer_messages)),
    ];
    for (name, tokens, note) in sections {
        let _ = writeln!(
            out,
            "{name:<10} {:>8} {:>8}  {}{note}",
            thousands(f64::from(tokens)),
            pct(tokens, budget),
            capped_bar(tokens, budget)
        );
    }
    let total = row.context_tokens;
    let _ = writeln!(out, "{}", "-".repeat(30 + BAR));
    let _ = writeln!(
        out,
        "{:<10} {:>8} {:>8}  {}",
        "total",
        thousands(f64::from(total)),
        pct(total, budget),
        capped_bar(total, budget)
    );
    if total <= budget {
        let _ = writeln!(
            out,
            "\nheadroom: {} tokens below max_context_tokens",
            thousands(f64::from(budget - total))
        );
    } else {
        let _ = writeln!(
            out,
            "\nOVER BUDGET by {} tokens",
            thousands(f64::from(total - budget))
        );
    }
    let _ = writeln!(
        out,
        "model context window: {} tokens{}",
        thousands(f64::from(window)),
        if row.over_window == 1 {
            " — EXCEEDED: the call would fail"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "spent so far in the conversation: {} tokens",
        thousands(row.cumulative_tokens as f64)
    );
    out.lines()
        .map(|l| l.trim_end().to_string() + "\n")
        .collect()
}

/// The budget command.
pub fn cmd_budget(args: &BudgetArgs) -> Result<(), Failure> {
    let input = |m: String| Failure::Input(format!("error: {m}"));
    let strategy: StrategyName = args.strategy.parse().map_err(input)?;
    let mut flags = vec![format!("strategies=[\"{}\"]", strategy)];
    if let Some(model) = &args.model {
        flags.push(format!("model.name={}", toml::Value::String(model.clone())));
    }
    let config = resolve_config(&args.cfg, flags)?;
    crate::plugin::check_commands(&config, &super::config_dir(&args.cfg)).map_err(input)?;
    let scenarios = scenario::load_all(std::slice::from_ref(&args.scenario)).map_err(|e| {
        Failure::Input(format!(
            "{e}\n{} error(s). The format is described in docs/SCENARIO_FORMAT.md.",
            e.0.len()
        ))
    })?;
    let sc = &scenarios[0];
    let turn = match args.turn {
        Some(t) if t == 0 || t as usize > sc.messages.len() => {
            return Err(input(format!(
                "--turn {t}: {} has messages 1 to {}",
                sc.file.display(),
                sc.messages.len()
            )));
        }
        Some(t) => t,
        None => sc
            .messages
            .iter()
            .rev()
            .find(|m| sc.calls_after(m.number))
            .map_or(sc.messages.len() as u32, |m| m.number),
    };
    let tok = config.tokenizer().map_err(|e| Failure::Input(e.0))?;
    let backend = crate::backend::from_config(&config, tok)
        .map_err(|e| Failure::Input(format!("error: {e}")))?;
    // The replay's memory (and a plugin's log and storage), gone after.
    let work = std::env::temp_dir().join(format!("memeval-budget-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(anyhow::Error::from)?;
    let jobs = (|| {
        let store = work.join("memory.sqlite");
        let plugins =
            super::start_plugins(&config, &backend, &work, &super::config_dir(&args.cfg))?;
        let mut rt = Runtime::plain(&config, &backend, &store).map_err(|e| Failure::Input(e.0))?;
        rt.plugins = Some(&plugins);
        // Embeddings fetched ahead also tell the index their size.
        runner::prefetch_embeddings(runner::Input::Loaded(std::slice::from_ref(sc)), &rt);
        let jobs = runner::run(std::slice::from_ref(sc), &rt);
        Ok::<_, Failure>((jobs, rt.context_window))
    })();
    let _ = std::fs::remove_dir_all(&work);
    let (jobs, context_window) = jobs?;
    let jobs = jobs.map_err(|e| Failure::Run(e.into()))?;
    let row = jobs[0]
        .turns
        .iter()
        .find(|t| t.turn == turn)
        .ok_or_else(|| input(format!("message {turn} was not replayed")))?;
    crate::term::out(&render(
        row,
        config.memory.max_context_tokens,
        context_window,
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_budget() {
        assert_eq!(bar(0, 8000), "");
        assert_eq!(bar(8000, 8000).chars().count(), BAR);
        assert_eq!(bar(4000, 8000), "█".repeat(BAR / 2));
        assert_eq!(bar(100, 8000), "▌");
        assert_eq!(pct(2000, 8000), "25.0%");
    }
}
