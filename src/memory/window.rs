//! `window`: the most recent messages that fit `window.max_tokens`; older
//! ones are forgotten, not compressed.

use super::{Context, Env, Params, Query, Strategy, Transcript};

pub struct Window {
    budget: u64,
    /// First position in the window.
    from: usize,
}

impl Window {
    /// The window that the live strategy would have after `t`: the rule
    /// "drop the oldest while over budget" always lands on the smallest
    /// suffix start that fits, so it can be recomputed directly.
    pub fn restore(params: &Params, t: &Transcript) -> Window {
        let budget = u64::from(params.window_max_tokens);
        Window {
            budget,
            from: t.fitting_suffix(budget),
        }
    }
}

impl Strategy for Window {
    fn name(&self) -> &'static str {
        "window"
    }

    fn observe(&mut self, t: &Transcript, _env: &mut Env<'_>) {
        while self.from + 1 < t.len() && t.suffix_tokens(self.from) > self.budget {
            self.from += 1;
        }
    }

    fn build(&mut self, t: &Transcript, _query: Option<&Query<'_>>, env: &mut Env<'_>) -> Context {
        env.context(t, self.from, None, Vec::new())
    }
}
