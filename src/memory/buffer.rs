//! `buffer`: the whole history in every call, the naive baseline. It is the
//! one strategy whose context grows without bound; the runner flags the turn
//! where it outgrows the model's context window.

use super::{Context, Env, Query, Strategy, Transcript};

pub struct Buffer;

impl Strategy for Buffer {
    fn name(&self) -> &'static str {
        "buffer"
    }

    fn observe(&mut self, _t: &Transcript, _env: &mut Env<'_>) {}

    fn build(&mut self, t: &Transcript, _query: Option<&Query<'_>>, env: &mut Env<'_>) -> Context {
        env.context(t, 0, None, Vec::new())
    }
}
