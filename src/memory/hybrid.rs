//! `hybrid`: the tutorial's tiered manager. A running summary of older
//! messages (as `summary`), the raw recent buffer, and retrieval over the
//! whole history minus the buffer (as `vector`), so that facts squeezed out
//! of the summary can still come back when a question needs them.

use std::sync::Arc;

use super::parts::{Retrieval, Summarizing, SummaryState};
use super::{Context, Env, Params, Query, Strategy, Transcript};

pub struct Hybrid {
    s: Summarizing,
    r: Retrieval,
}

impl Hybrid {
    pub fn restore(params: &Params, t: &Transcript, latest: Option<Arc<SummaryState>>) -> Hybrid {
        Hybrid {
            s: Summarizing { latest },
            r: Retrieval::restore(params, t),
        }
    }
}

impl Strategy for Hybrid {
    fn name(&self) -> &'static str {
        "hybrid"
    }

    fn needs_embeddings(&self) -> bool {
        true
    }

    fn observe(&mut self, t: &Transcript, env: &mut Env<'_>) {
        let start = env.times.start();
        self.r.observe(t);
        env.times.record(super::Stage::IndexInsert, start);
        self.s.after_observe(t, env)
    }

    fn build(&mut self, t: &Transcript, query: Option<&Query<'_>>, env: &mut Env<'_>) -> Context {
        let from = self.s.buffer_from();
        let retrieved = match query {
            Some(q) => self.r.retrieve(t, q, from, env),
            None => Vec::new(),
        };
        env.context(t, from, self.s.latest.as_ref(), retrieved)
    }

    fn summary(&self) -> Option<&Arc<SummaryState>> {
        self.s.latest.as_ref()
    }
}
