//! Metrics computed from built contexts (never from strings scraped later):
//! recall, staleness, leakage, duplication and fact position at probes;
//! fact retention of summaries; percentiles and aggregates.

use crate::memory::Context;
use crate::scenario::{Fact, Scenario};
use crate::text::{Phrases, Reading};

/// The text a strategy adds to a call (summary, retrieved, buffered), each
/// part folded and kept apart by newlines so no phrase matches across two:
/// offsets are those of the parts laid end to end, each followed by a
/// newline, but the parts are searched where they are, not copied.
pub struct ContextText<'a> {
    summary: Option<&'a str>,
    /// Each retrieved or buffered item's read and message number.
    items: Vec<(&'a Reading, u32)>,
    /// The scenario's folded `expect` phrases.
    phrases: &'a Phrases,
    len: usize,
}

impl<'a> ContextText<'a> {
    pub fn new(ctx: &'a Context, scenario: &'a Scenario) -> ContextText<'a> {
        let summary = ctx.summary.as_ref().map(|s| s.read.folded());
        let items: Vec<(&Reading, u32)> = ctx.items().map(|i| (&*i.read, i.number)).collect();
        let len = summary.as_ref().map_or(0, |s| s.len() + 1)
            + items
                .iter()
                .map(|(r, _)| r.folded().len() + 1)
                .sum::<usize>();
        ContextText {
            summary,
            items,
            phrases: &scenario.phrases,
            len,
        }
    }

    /// Offset of the first evidence of `fact`, if the context holds it.
    pub fn find(&self, fact: &Fact) -> Option<usize> {
        let summary_len = self.summary.as_ref().map_or(0, |s| s.len() + 1);
        // Each item's offset, were the parts laid end to end.
        let items = self.items.iter().scan(summary_len, |at, &(r, n)| {
            let start = *at;
            *at += r.folded().len() + 1;
            Some((start, r, n))
        });
        if fact.phrases.is_empty() {
            return items
                .into_iter()
                .find(|(_, _, n)| fact.planted_by.contains(n))
                .map(|(off, _, _)| off);
        }
        fact.phrases
            .iter()
            .filter_map(|&p| {
                let phrase = self.phrases.get(p);
                if phrase.is_empty() {
                    return Some(0);
                }
                // A folded phrase holds no newline: it lies within one part.
                if let Some(at) = self.summary.as_ref().and_then(|s| s.find(phrase)) {
                    return Some(at);
                }
                items.clone().find_map(|(off, r, _)| {
                    let hits = r.phrases(self.phrases);
                    hits.iter()
                        .find(|(q, _)| *q == p)
                        .map(|&(_, at)| off + at as usize)
                })
            })
            .min()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// What one probe found in one context.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeOutcome {
    /// Indexes of the expected facts that were recalled.
    pub recalled: Vec<usize>,
    pub stale: u32,
    pub leaked: u32,
    pub duplicated: u32,
    /// Mean relative position (0 start, 1 end) of the recalled facts.
    pub fact_position: Option<f64>,
    /// The context exceeds the model's window: the call would fail, so
    /// nothing is recalled.
    pub over_window: bool,
}

/// Evaluates a probe expecting `expects` against `ctx`, for `user`.
pub fn evaluate_probe(
    scenario: &Scenario,
    expects: &[usize],
    ctx: &Context,
    user: &str,
    context_window: u32,
) -> ProbeOutcome {
    let leaked = ctx.items().filter(|i| &*i.owner != user).count() as u32
        + ctx
            .summary
            .as_ref()
            .map_or(0, |s| u32::from(&*s.owner != user));
    let mut numbers: Vec<u32> = ctx.items().map(|i| i.number).collect();
    numbers.sort_unstable();
    let duplicated = numbers.windows(2).filter(|w| w[0] == w[1]).count() as u32;
    let over_window = ctx.total() > context_window;
    if over_window {
        return ProbeOutcome {
            recalled: Vec::new(),
            stale: 0,
            leaked,
            duplicated,
            fact_position: None,
            over_window,
        };
    }
    let text = ContextText::new(ctx, scenario);
    let mut recalled = Vec::new();
    let mut positions = Vec::new();
    let mut stale = 0;
    for &f in expects {
        let fact = &scenario.facts[f];
        match text.find(fact) {
            Some(off) => {
                recalled.push(f);
                positions.push(off as f64 / text.len().max(1) as f64);
            }
            None => {
                if let Some(old) = fact.supersedes
                    && text.find(&scenario.facts[old]).is_some()
                {
                    stale += 1;
                }
            }
        }
    }
    let fact_position =
        (!positions.is_empty()).then(|| positions.iter().sum::<f64>() / positions.len() as f64);
    ProbeOutcome {
        recalled,
        stale,
        leaked,
        duplicated,
        fact_position,
        over_window,
    }
}

/// Share of `facts` (those with `expect` phrases) that a summary text
/// (folded) still holds; `None` when none of them can be checked that way.
pub fn fact_retention(scenario: &Scenario, facts: &[usize], folded: &str) -> Option<f64> {
    let checkable: Vec<&Fact> = facts
        .iter()
        .map(|&f| &scenario.facts[f])
        .filter(|f| !f.phrases.is_empty())
        .collect();
    if checkable.is_empty() {
        return None;
    }
    let kept = checkable
        .iter()
        .filter(|f| {
            f.phrases
                .iter()
                .any(|&p| folded.contains(scenario.phrases.get(p)))
        })
        .count();
    Some(kept as f64 / checkable.len() as f64)
}

/// Facts planted by messages with numbers in `from..=to`, each once, in order.
pub fn facts_planted_in(scenario: &Scenario, from: u32, to: u32) -> Vec<usize> {
    let mut out = Vec::new();
    for n in from..=to {
        for &f in &scenario.message(n).plants {
            if !out.contains(&f) {
                out.push(f);
            }
        }
    }
    out
}
