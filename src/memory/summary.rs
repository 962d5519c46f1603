//! `summary`: a running summary of older messages plus the raw recent
//! buffer. When the buffer exceeds `summary.trigger_tokens`, its older half
//! is folded, with the prior summary, into a new summary of at most
//! `summary.max_summary_tokens`; the newer half stays raw.

use std::sync::Arc;

use super::parts::{Summarizing, SummaryState};
use super::{Context, Env, Query, Strategy, Transcript};

pub struct Summary {
    s: Summarizing,
}

impl Summary {
    pub fn restore(latest: Option<Arc<SummaryState>>) -> Summary {
        Summary {
            s: Summarizing { latest },
        }
    }
}

impl Strategy for Summary {
    fn name(&self) -> &'static str {
        "summary"
    }

    fn observe(&mut self, t: &Transcript, env: &mut Env<'_>) {
        self.s.after_observe(t, env)
    }

    fn build(&mut self, t: &Transcript, _query: Option<&Query<'_>>, env: &mut Env<'_>) -> Context {
        env.context(t, self.s.buffer_from(), self.s.latest.as_ref(), Vec::new())
    }

    fn summary(&self) -> Option<&Arc<SummaryState>> {
        self.s.latest.as_ref()
    }
}
