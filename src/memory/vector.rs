//! `vector`: the last `vector.buffer_message_limit` messages, plus up to
//! `vector.max_retrieved` older ones retrieved by embedding similarity
//! (never one already in the buffer).

use super::parts::Retrieval;
use super::{Context, Env, Params, Query, Strategy, Transcript};

pub struct Vector {
    r: Retrieval,
    limit: usize,
}

impl Vector {
    pub fn restore(params: &Params, t: &Transcript) -> Vector {
        Vector {
            r: Retrieval::restore(params, t),
            limit: params.buffer_message_limit as usize,
        }
    }

    /// The last `limit` messages, and the call of a tool result among
    /// them.
    fn buffer_from(&self, t: &Transcript) -> usize {
        t.exchange_start_before(t.len().saturating_sub(self.limit))
    }
}

impl Strategy for Vector {
    fn name(&self) -> &'static str {
        "vector"
    }

    fn needs_embeddings(&self) -> bool {
        true
    }

    fn observe(&mut self, t: &Transcript, env: &mut Env<'_>) {
        let start = env.times.start();
        self.r.observe(t);
        env.times.record(super::Stage::IndexInsert, start);
    }

    fn build(&mut self, t: &Transcript, query: Option<&Query<'_>>, env: &mut Env<'_>) -> Context {
        let from = self.buffer_from(t);
        let retrieved = match query {
            Some(q) => self.r.retrieve(t, q, from, env),
            None => Vec::new(),
        };
        env.context(t, from, None, retrieved)
    }
}
