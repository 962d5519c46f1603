//! `window`: the most recent messages that fit `window.max_tokens`; older
//! ones are forgotten, not compressed. A tool call's results go with it.

use super::{Context, Env, Params, Query, Strategy, Transcript};

pub struct Window {
    budget: u64,
    /// First position in the window.
    from: usize,
}

impl Window {
    /// The window that the live strategy would have after `t`: the rule
    /// "drop the oldest exchange while over budget" always lands on the
    /// smallest exchange start that fits (or, where none does, the last
    /// exchange), so it can be recomputed directly.
    pub fn restore(params: &Params, t: &Transcript) -> Window {
        let budget = u64::from(params.window_max_tokens);
        let from = t.exchange_start_after(t.fitting_suffix(budget));
        Window {
            budget,
            from: if from < t.len() {
                from
            } else {
                t.exchange_start_before(t.len().saturating_sub(1))
            },
        }
    }
}

impl Strategy for Window {
    fn name(&self) -> &'static str {
        "window"
    }

    /// Drops the oldest message while over budget, keeping at least the
    /// last; a tool call and its results are dropped together (never a
    /// result without its call).
    fn observe(&mut self, t: &Transcript, _env: &mut Env<'_>) {
        while t.suffix_tokens(self.from) > self.budget {
            let next = t.exchange_start_after(self.from + 1);
            if next >= t.len() {
                break;
            }
            self.from = next;
        }
    }

    fn build(&mut self, t: &Transcript, _query: Option<&Query<'_>>, env: &mut Env<'_>) -> Context {
        env.context(t, self.from, None, Vec::new())
    }
}
