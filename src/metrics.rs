//! Metrics computed from built contexts (never from strings scraped later):
//! recall, staleness, leakage, duplication and fact position at probes;
//! fact retention of summaries; percentiles and aggregates.

use std::collections::HashSet;

use crate::memory::Context;
use crate::scenario::{Fact, Scenario};
use crate::text::fold;

/// The text a strategy adds to a call (summary, retrieved, buffered), each
/// part folded and kept apart by newlines so no phrase matches across two:
/// offsets are those of the parts laid end to end, each followed by a
/// newline, but the parts are searched where they are, not copied.
pub struct ContextText<'a> {
    summary: Option<String>,
    /// Each retrieved or buffered item's folded text and message number.
    items: Vec<(&'a str, u32)>,
    len: usize,
}

impl<'a> ContextText<'a> {
    pub fn new(ctx: &'a Context) -> ContextText<'a> {
        let summary = ctx.summary.as_ref().map(|s| fold(&s.text));
        let items: Vec<(&str, u32)> = ctx.items().map(|i| (i.read.folded(), i.number)).collect();
        let len = summary.as_ref().map_or(0, |s| s.len() + 1)
            + items.iter().map(|(t, _)| t.len() + 1).sum::<usize>();
        ContextText {
            summary,
            items,
            len,
        }
    }

    /// The parts with their offsets, and the message number of each item.
    fn parts(&self) -> impl Iterator<Item = (usize, &str, Option<u32>)> {
        let summary = self.summary.as_deref().map(|s| (s, None));
        let items = self.items.iter().map(|&(t, n)| (t, Some(n)));
        summary.into_iter().chain(items).scan(0, |at, (t, n)| {
            let start = *at;
            *at += t.len() + 1;
            Some((start, t, n))
        })
    }

    /// Offset of the first evidence of `fact`, if the context holds it.
    pub fn find(&self, fact: &Fact) -> Option<usize> {
        if fact.expect.is_empty() {
            self.parts()
                .find(|(_, _, n)| n.is_some_and(|n| fact.planted_by.contains(&n)))
                .map(|(off, _, _)| off)
        } else {
            fact.expect
                .iter()
                .filter_map(|p| {
                    let p = fold(p);
                    if p.is_empty() {
                        return Some(0);
                    }
                    // A folded phrase holds no newline: it lies within one part.
                    self.parts()
                        .find_map(|(off, t, _)| t.find(&p).map(|i| off + i))
                })
                .min()
        }
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
    let mut seen = HashSet::new();
    let duplicated = ctx.items().filter(|i| !seen.insert(i.number)).count() as u32;
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
    let text = ContextText::new(ctx);
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

/// Share of `facts` (those with `expect` phrases) that a summary text still
/// holds; `None` when none of them can be checked that way.
pub fn fact_retention(scenario: &Scenario, facts: &[usize], summary: &str) -> Option<f64> {
    let text = fold(summary);
    let checkable: Vec<&Fact> = facts
        .iter()
        .map(|&f| &scenario.facts[f])
        .filter(|f| !f.expect.is_empty())
        .collect();
    if checkable.is_empty() {
        return None;
    }
    let kept = checkable
        .iter()
        .filter(|f| f.expect.iter().any(|p| text.contains(&fold(p))))
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

/// Nearest-rank percentile of unsorted values (0 for none).
pub fn percentile(values: &[u64], p: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Rounds to 6 decimals, so outputs stay readable and stable.
pub fn round6(x: f64) -> f64 {
    // + 0.0 turns -0.0 (an empty float sum) into 0.
    (x * 1e6).round() / 1e6 + 0.0
}

pub fn mean(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values
        .into_iter()
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 95.0), 95);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&[7], 95.0), 7);
        assert_eq!(percentile(&[], 95.0), 0);
    }

    #[test]
    fn mean_of_nothing_is_none() {
        assert_eq!(mean([]), None);
        assert_eq!(mean([1.0, 2.0]), Some(1.5));
    }
}
