//! The replay of one (scenario, strategy, replay number): the scenario's
//! messages fed through a fresh memory, its calls built and counted, its
//! probes evaluated, its summaries scored, and the memory dropped and
//! restored from SQLite at each session boundary.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use indicatif::ProgressBar;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::input::Held;
use crate::backend::{AnswerCheck, CallKind, ChatMessage, ChatRole, ExpectedFact, JudgeRules};
use crate::config::StrategyName;
use crate::memory::{
    self, Context, Entry, Env, Params, Query, Stage, StageTimes, Strategy, SummaryState, Suspend,
    Transcript, Usage,
};
use crate::metrics::{evaluate_probe, fact_retention, facts_planted_in};
use crate::plugin::{Plugin, PluginStrategy, SharedLease};
use crate::results::{CallRow, JobResult, ProbeRow, SummaryRow, TurnRow};
use crate::scenario::{Role, Step};
use crate::stats::round6;
use crate::store::Store;
use crate::text::fnv1a;

use super::{FLUSH_EVERY, Prepared, RunError, Runtime, STOP, namespace};

/// The seed of one summary's quality sample: independent of thread order,
/// and the same for every strategy, so that strategies writing the same
/// summary are judged on the same messages (common random numbers).
fn sample_seed(seed: u64, scenario: &str, index: u32) -> u64 {
    let key = format!("{seed}\u{1f}{scenario}\u{1f}{index}");
    fnv1a(key.as_bytes())
}

/// `k` distinct values of `0..n`, sorted (a partial Fisher-Yates shuffle).
fn sample_positions(rng: &mut ChaCha8Rng, n: usize, k: usize) -> Vec<usize> {
    let mut pool: Vec<usize> = (0..n).collect();
    let k = k.min(n);
    for i in 0..k {
        let j = rng.random_range(i..n);
        pool.swap(i, j);
    }
    let mut out = pool[..k].to_vec();
    out.sort_unstable();
    out
}

/// The names every turn row of a replay carries, shared.
struct Labels {
    scenario: Arc<str>,
    strategy: Arc<str>,
    sessions: Vec<Arc<str>>,
}

pub(super) struct Job<'a> {
    pub(super) scenario: Held<'a>,
    prepared: &'a Prepared,
    strategy_name: StrategyName,
    repeat: u32,
    /// The seed of this replay: the run's seed plus `repeat - 1`.
    seed: u64,
    ns: String,
    /// The user, whose memory this is.
    owner: Arc<str>,
    labels: Labels,
    rt: &'a Runtime<'a>,
    params: &'a Params,
    pub(super) env: Env<'a>,
    transcript: Transcript,
    strategy: Box<dyn Strategy>,
    /// A plugin's process, where the strategy is a plugin.
    plugin: Option<(std::sync::Arc<Plugin>, SharedLease)>,
    /// Transcript positions from here on are not in the store yet.
    unsaved_from: usize,
    unsaved_summaries: Vec<Arc<SummaryState>>,
    /// The context of the latest call, while nothing has changed since.
    last_call: Option<Context>,
    probe_embeddings: Vec<Option<crate::index::Embedding>>,
    cumulative: u64,
    /// Cumulative cost of the chatbot's own calls, in dollars.
    cost: f64,
    session: usize,
    out: JobResult,
}

impl<'a> Job<'a> {
    pub(super) fn new(
        scenario: Held<'a>,
        prepared: &'a Prepared,
        strategy_name: StrategyName,
        repeat: u32,
        params: &'a Params,
        rt: &'a Runtime<'a>,
        plugin: Option<(std::sync::Arc<Plugin>, SharedLease)>,
    ) -> Result<Job<'a>, RunError> {
        let transcript = Transcript::new();
        let ns = namespace(&scenario.name, strategy_name.as_str(), repeat);
        let label: Arc<str> = strategy_name.as_str().into();
        let mut job = Job {
            prepared,
            strategy_name,
            repeat,
            seed: rt.config.seed.wrapping_add(u64::from(repeat) - 1),
            ns,
            owner: Arc::from(scenario.user.as_str()),
            labels: Labels {
                scenario: scenario.name.as_str().into(),
                strategy: label.clone(),
                sessions: scenario
                    .sessions
                    .iter()
                    .map(|s| s.id.as_str().into())
                    .collect(),
            },
            rt,
            params,
            env: Env::new(
                rt.tok,
                rt.backend,
                params,
                &scenario.system_prompt,
                rt.timings,
            ),
            // A stand-in (a unit struct), replaced below by `fresh_strategy`.
            strategy: memory::create(&StrategyName::Buffer, params, &transcript, None),
            plugin,
            transcript,
            unsaved_from: 0,
            unsaved_summaries: Vec::new(),
            last_call: None,
            probe_embeddings: vec![None; scenario.probes.len()],
            cumulative: 0,
            session: 0,
            out: JobResult {
                scenario: scenario.name.clone(),
                strategy: label.to_string(),
                repeat,
                turns: Vec::new(),
                probes: Vec::new(),
                summaries: Vec::new(),
                calls: Vec::new(),
                times: StageTimes::default(),
            },
            cost: 0.0,
            scenario,
        };
        job.strategy = job.fresh_strategy(None);
        Ok(job)
    }

    /// The memory restored to what the transcript and `summary` (as loaded
    /// from the store) imply; a plugin's, opened again at its next request.
    fn fresh_strategy(&self, summary: Option<std::sync::Arc<SummaryState>>) -> Box<dyn Strategy> {
        match &self.plugin {
            Some((plugin, lease)) => Box::new(PluginStrategy::new(
                plugin,
                lease,
                &self.owner,
                &self.scenario.name,
                &self.labels.sessions[self.session],
                summary,
            )),
            None => memory::create(&self.strategy_name, self.params, &self.transcript, summary),
        }
    }

    /// Which replay this is.
    pub(super) fn key(&self) -> crate::results::JobKey {
        (
            self.scenario.name.clone(),
            self.labels.strategy.to_string(),
            self.repeat,
        )
    }

    /// Replays the whole scenario, alone.
    pub(super) fn run(
        mut self,
        store: &mut Store,
        bar: Option<&ProgressBar>,
    ) -> Result<JobResult, RunError> {
        let scenario = self.scenario.clone();
        for &step in &scenario.steps {
            self.step(step, store, bar)?;
        }
        self.finish(store)
    }

    /// Persists what is left and hands over the results (those since the
    /// last part taken).
    pub(super) fn finish(mut self, store: &mut Store) -> Result<JobResult, RunError> {
        self.strategy.suspend(Suspend::End, &mut self.env);
        self.check()?;
        self.flush(store)?;
        self.env.times.us[Stage::Tokenize as usize] = self.prepared.tokenize_us.clone();
        Ok(self.take_part())
    }

    /// The rows and latencies recorded since the last part taken.
    pub(super) fn take_part(&mut self) -> JobResult {
        let times = std::mem::replace(&mut self.env.times, StageTimes::new(self.rt.timings));
        JobResult {
            scenario: self.out.scenario.clone(),
            strategy: self.out.strategy.clone(),
            repeat: self.repeat,
            turns: std::mem::take(&mut self.out.turns),
            probes: std::mem::take(&mut self.out.probes),
            summaries: std::mem::take(&mut self.out.summaries),
            calls: std::mem::take(&mut self.out.calls),
            times,
        }
    }

    /// One step of the scenario.
    pub(super) fn step(
        &mut self,
        step: Step,
        store: &mut Store,
        bar: Option<&ProgressBar>,
    ) -> Result<(), RunError> {
        if STOP.load(Ordering::Relaxed) {
            return Err(RunError::Interrupted);
        }
        match step {
            Step::Session(i) => {
                if i > 0 {
                    self.strategy.suspend(Suspend::SessionEnd, &mut self.env);
                    self.check()?;
                }
                self.session = i;
                if i > 0 {
                    self.restore(store)?;
                }
            }
            Step::Message(n) => {
                self.message(n, store)?;
                if let Some(b) = bar {
                    b.inc(1);
                }
            }
            Step::Probe { probe, turn } => self.probe(probe, turn)?,
        }
        self.check()
    }

    /// A replay whose memory cannot go on fails here (a plugin's fault).
    fn check(&self) -> Result<(), RunError> {
        match self.strategy.fault() {
            Some(f) => Err(RunError::Replay(f.to_string())),
            None => Ok(()),
        }
    }

    /// Files the API calls made at `turn` under this replay; how many failed.
    pub(super) fn take_calls(&mut self, turn: u32) -> u32 {
        let (scenario, strategy) = (&self.scenario.name, &*self.labels.strategy);
        let failed = self.env.calls.iter().filter(|c| c.error.is_some()).count() as u32;
        for r in self.env.calls.drain(..) {
            self.out.calls.push(CallRow::new(
                scenario,
                strategy,
                self.repeat,
                turn,
                r,
                self.rt.timings,
            ));
        }
        failed
    }

    pub(super) fn flush(&mut self, store: &mut Store) -> Result<(), RunError> {
        self.persist(store, false)
    }

    /// Saves what is not stored yet: with `later`, among other memories
    /// ([`Store::save_later`]), else now ([`Store::save`]).
    fn persist(&mut self, store: &mut Store, later: bool) -> Result<(), RunError> {
        let entries = &self.transcript.entries()[self.unsaved_from..];
        if entries.is_empty() && self.unsaved_summaries.is_empty() {
            return Ok(());
        }
        let start = self.env.times.start();
        match later {
            true => store.save_later(&self.ns, entries, &self.unsaved_summaries)?,
            false => store.save(&self.ns, entries, &self.unsaved_summaries)?,
        }
        self.env.times.record(Stage::Persist, start);
        self.unsaved_from = self.transcript.len();
        self.unsaved_summaries.clear();
        Ok(())
    }

    /// A returning user: drop every in-memory structure and rebuild it from
    /// the store, as a server process would after a restart.
    pub(super) fn restore(&mut self, store: &mut Store) -> Result<(), RunError> {
        self.flush(store)?;
        if self.plugin.is_none() {
            self.last_call = None;
        }
        // Nothing of the old state survives: the new one is built from the store alone.
        let (t, summary) = store.reload(&self.ns)?;
        self.unsaved_from = t.len();
        self.transcript = t;
        self.strategy = self.fresh_strategy(summary);
        Ok(())
    }

    /// Evicted from the registry: persisted, then every in-memory structure
    /// dropped until [`Job::restore`] brings it back.
    pub(super) fn evict(&mut self, store: &mut Store) -> Result<(), RunError> {
        self.strategy.suspend(Suspend::Evict, &mut self.env);
        self.check()?;
        self.persist(store, true)?;
        if self.plugin.is_none() {
            // A plugin's context was its reply: a reply still to generate
            // is generated from it (a built-in's is rebuilt, the same).
            self.last_call = None;
        }
        // Embedded again at their next ask (the same vectors: the embedder
        // is deterministic, and an API's are fetched ahead).
        self.probe_embeddings.fill(None);
        self.transcript = Transcript::new();
        self.unsaved_from = 0;
        self.strategy = self.fresh_strategy(None);
        Ok(())
    }

    pub(super) fn last_user(&self) -> Option<&Entry> {
        self.transcript
            .entries()
            .iter()
            .rev()
            .find(|e| e.role == Role::User)
    }

    pub(super) fn timed_build(&mut self, query: Option<&Query<'_>>) -> (Context, u64) {
        let start = self.env.times.start();
        let ctx = self.strategy.build(&self.transcript, query, &mut self.env);
        let us = self.env.times.record(Stage::Build, start);
        (ctx, us)
    }

    pub(super) fn message(&mut self, n: u32, store: &mut Store) -> Result<(), RunError> {
        self.scenario.fetch(n)?;
        let scenario = self.scenario.clone();
        let m = scenario.message(n);
        self.env.usage = Usage::default();
        let mut reply_failed = 0;
        let (content, tokens, generated) = match &m.content {
            Some(c) => (c.to_arc(), self.prepared.tokens[n as usize - 1], false),
            None => {
                let reply = self.generate_reply();
                reply_failed = self.take_calls(n);
                let tokens = self.rt.tok.count(&reply);
                (Arc::from(reply), tokens, true)
            }
        };
        let mut entry = Entry::new(n, m.role, content.clone(), tokens, self.owner.clone(), m.at)
            .with_tool(m.tool.clone());
        let embedding = self.strategy.needs_embeddings().then(|| {
            self.env
                .embed(&content, Some(entry.read.analysis()), tokens)
        });
        entry.embedding = embedding.clone();
        self.transcript.push(entry);
        self.last_call = None;
        let next = self.scenario.messages.get(n as usize);
        let is_call = scenario.calls_after(n);
        // The context is read only where the next message is a reply to
        // generate from it; else it is counted, not listed. (Set before
        // `observe`: a plugin asks for a user message's context there.)
        self.env.list_buffer = is_call && next.is_some_and(|m| m.content.is_none());
        self.strategy.observe(&self.transcript, &mut self.env);
        let (ctx, build_us) = if is_call {
            // After a tool's result, the request is still the user's.
            let (text, embedding) = match (m.role, self.last_user()) {
                (Role::Tool, Some(u)) => (u.content().clone(), u.embedding.clone()),
                _ => (content.clone(), embedding),
            };
            let q = Query {
                probe: None,
                text: &text,
                embedding,
            };
            self.timed_build(Some(&q))
        } else {
            self.timed_build(None)
        };
        self.env.list_buffer = true;
        let usage = self.env.usage;
        // A call costs its whole prompt; a reply costs its own tokens as output.
        let spent = if is_call {
            u64::from(ctx.total())
        } else {
            u64::from(tokens)
        };
        self.cumulative += spent + usage.summarizer_tokens + usage.embedding_tokens;
        let b = self.rt.backend;
        if let Some(p) = b.chat_price {
            let (input, output) = if is_call { (spent, 0) } else { (0, spent) };
            let summary_out = usage.summarizer_output_tokens;
            self.cost += p.cost(
                input + usage.summarizer_tokens - summary_out,
                output + summary_out,
            );
        }
        if let Some(p) = b.embedding_price {
            self.cost += p.cost(usage.embedding_tokens, 0);
        }
        let total = ctx.total();
        self.out.turns.push(TurnRow {
            scenario: self.labels.scenario.clone(),
            user: self.owner.clone(),
            strategy: self.labels.strategy.clone(),
            repeat: self.repeat,
            session: self.labels.sessions[self.session].clone(),
            turn: n,
            role: m.role.as_str().into(),
            call: u8::from(is_call),
            generated: u8::from(generated),
            tokens_system: ctx.tokens_system,
            tokens_summary: ctx.tokens_summary,
            tokens_retrieved: ctx.tokens_retrieved,
            tokens_buffer: ctx.tokens_buffer,
            context_tokens: total,
            buffer_messages: ctx.buffer_messages,
            retrieved_messages: ctx.retrieved.len() as u32,
            summarizer_tokens: usage.summarizer_tokens,
            embedding_tokens: usage.embedding_tokens,
            cumulative_tokens: self.cumulative,
            cost_usd: round6(self.cost),
            over_budget: u8::from(total > self.rt.config.memory.max_context_tokens),
            over_window: u8::from(total > self.rt.context_window),
            build_us,
            failed_calls: 0,
            malformed: ctx.malformed(&self.transcript, false),
        });
        if is_call {
            self.last_call = Some(ctx);
        }
        self.take_summaries();
        let failed = reply_failed + self.take_calls(n);
        if let Some(row) = self.out.turns.last_mut() {
            row.failed_calls = failed;
        }
        if self.transcript.len() - self.unsaved_from >= FLUSH_EVERY {
            self.flush(store)?;
        }
        Ok(())
    }

    /// Scores the summaries written since last taken, and keeps them to be
    /// stored.
    fn take_summaries(&mut self) {
        let written: Vec<Arc<SummaryState>> = self.env.summaries.drain(..).collect();
        for s in written {
            self.score_summary(&s);
            self.unsaved_summaries.push(s);
        }
    }

    /// The reply a live chatbot would give now, from the context the
    /// strategy builds for the last user message.
    pub(super) fn generate_reply(&mut self) -> String {
        let last = self.last_user().cloned();
        let ctx = match self.last_call.take() {
            Some(c) => c,
            None => {
                let q = last.as_ref().map(|e| Query {
                    probe: None,
                    text: e.content(),
                    embedding: e.embedding.clone(),
                });
                self.timed_build(q.as_ref()).0
            }
        };
        let call = ctx.call_messages(&self.scenario.system_prompt);
        let text = last.as_ref().map_or("", |e| e.content());
        // A failed call (recorded) leaves an empty reply in its place.
        self.rt
            .backend
            .responder
            .reply(CallKind::Reply, &call, text, &mut self.env.calls)
            .unwrap_or_default()
    }

    pub(super) fn probe(&mut self, index: usize, turn: u32) -> Result<(), RunError> {
        let scenario = self.scenario.clone();
        let p = &scenario.probes[index];
        let saved = self.env.usage;
        if self.strategy.needs_embeddings() && self.probe_embeddings[index].is_none() {
            let tokens = self.rt.tok.count(&p.question);
            let e = self.env.embed(&p.question, None, tokens);
            // A failed call is tried again at the probe's next ask.
            self.probe_embeddings[index] = (!e.is_empty()).then_some(e);
        }
        let q = Query {
            probe: Some(&p.id),
            text: &p.question,
            embedding: self.probe_embeddings[index].clone(),
        };
        // Answering: the context built, then the question answered.
        let answering = self.env.times.start();
        let ctx = self
            .strategy
            .build(&self.transcript, Some(&q), &mut self.env);
        // Probes measure the memory; their spend is not the chatbot's.
        self.env.usage = saved;
        // (A plugin may show a new summary first in a probe's context.)
        self.take_summaries();
        let o = evaluate_probe(
            &self.scenario,
            &p.expects,
            &ctx,
            &self.scenario.user,
            self.rt.context_window,
        );
        let facts = &scenario.facts;
        let ids = |v: &[usize]| {
            v.iter()
                .map(|&f| facts[f].id.as_str())
                .collect::<Vec<_>>()
                .join(";")
        };
        let (answer, answer_correct, judge_reason, extra_verdicts) = if o.over_window {
            (
                String::new(),
                None,
                "context exceeds the model's window: the call would fail".to_string(),
                String::new(),
            )
        } else if !self.rt.backend.answer_probes {
            (
                String::new(),
                None,
                "probe answers are off".to_string(),
                String::new(),
            )
        } else {
            self.answer(p, &ctx)
        };
        let answer_us = if self.rt.backend.answer_probes && !o.over_window {
            self.env.times.record(Stage::Answer, answering)
        } else {
            0
        };
        // The benchmarks' own scores: the answer against the reference,
        // the retrieved messages against the evidence.
        let reference = p.answer.as_deref().filter(|_| !answer.trim().is_empty());
        let answer_f1 = reference.map(|r| round6(crate::scores::answer_f1(&answer, r)));
        let answer_bleu1 = reference.map(|r| round6(crate::scores::answer_bleu1(&answer, r)));
        let retrieval = self.retrieval_scores(p, &ctx, turn);
        // Its failures are in its verdict's reason (and calls.csv).
        self.take_calls(turn);
        let mut row = ProbeRow {
            scenario: self.scenario.name.clone(),
            user: self.scenario.user.clone(),
            strategy: self.strategy_name.to_string(),
            repeat: self.repeat,
            probe_id: p.id.to_string(),
            kind: p.kind.as_deref().unwrap_or_default().to_string(),
            turn,
            expected: ids(&p.expects),
            recalled: ids(&o.recalled),
            recall: (!p.expects.is_empty())
                .then(|| round6(o.recalled.len() as f64 / p.expects.len() as f64)),
            stale: o.stale,
            leaked: o.leaked,
            duplicated: o.duplicated,
            fact_position: o.fact_position.map(round6),
            over_window: u8::from(o.over_window),
            answer,
            answer_correct,
            judge_reason,
            question: p.question.to_string(),
            planted_at: p
                .expects
                .iter()
                .map(|&f| {
                    let at = facts[f].planted_by.iter().rev().find(|&&m| m <= turn);
                    at.copied().unwrap_or(0).to_string()
                })
                .collect::<Vec<_>>()
                .join(";"),
            answer_f1,
            answer_bleu1,
            answer_us,
            extra_verdicts,
            // The question follows the context as a user message.
            malformed: ctx.malformed(&self.transcript, true),
            ..ProbeRow::default()
        };
        row.set_context(&ctx);
        if let Some(r) = retrieval {
            row.set_retrieval(&r);
        }
        self.out.probes.push(row);
        Ok(())
    }

    /// LongMemEval's retrieval scores of a probe's retrieved messages
    /// (best first) against its evidence, the messages so far that planted
    /// its expected facts: by turn and by session, at k = 5 and 10. None
    /// where the strategy retrieves nothing or the probe expects nothing.
    fn retrieval_scores(
        &self,
        p: &crate::scenario::Probe,
        ctx: &Context,
        turn: u32,
    ) -> Option<[[crate::scores::Retrieval; 2]; 2]> {
        use crate::scores::{retrieval, session_retrieval};
        let retrieves = self.strategy.needs_embeddings() || !ctx.retrieved.is_empty();
        let mut correct: Vec<u32> = p
            .expects
            .iter()
            .flat_map(|&f| self.scenario.facts[f].planted_by.iter().copied())
            .filter(|&m| m <= turn)
            .collect();
        correct.sort_unstable();
        correct.dedup();
        if !retrieves || correct.is_empty() {
            return None;
        }
        let ranking: Vec<u32> = ctx.retrieved.iter().map(|i| i.number).collect();
        // (A leaked number may be no message of this scenario.)
        let session = |n: u32| {
            let m = (n as usize)
                .checked_sub(1)
                .and_then(|i| self.scenario.messages.get(i));
            m.map_or(u32::MAX, |m| m.session as u32)
        };
        Some([
            // Every correct message is one of the corpus, messages 1..=turn.
            [5, 10].map(|k| retrieval(&ranking, &correct, correct.len(), k)),
            [5, 10].map(|k| session_retrieval(&ranking, &correct, 1..=turn, k, session)),
        ])
    }

    /// A probe's answer from its context, the judge's verdict on it and its
    /// reason, and the extra judges' verdicts (probes.csv's
    /// `extra_verdicts`).
    pub(super) fn answer(
        &mut self,
        p: &crate::scenario::Probe,
        ctx: &Context,
    ) -> (String, Option<u8>, String, String) {
        let b = self.rt.backend;
        let mut call = ctx.call_messages(&self.scenario.system_prompt);
        // A question asked at a date is told it, as the benchmarks' own
        // prompts do ("how many days ago" has no answer without it).
        let asked = match p.at {
            Some(at) => format!(
                "Current date: {}\n{}",
                crate::clock::format_day(at),
                p.question
            ),
            None => p.question.to_string(),
        };
        call.push(ChatMessage::new(ChatRole::User, asked.as_str()));
        let answer =
            match b
                .responder
                .reply(CallKind::Answer, &call, &p.question, &mut self.env.calls)
            {
                Ok(a) => a,
                Err(e) => {
                    return (
                        String::new(),
                        None,
                        format!("answer call failed: {}", e.message),
                        String::new(),
                    );
                }
            };
        let facts: Vec<ExpectedFact<'_>> = (p.expects.iter())
            .map(|&f| ExpectedFact::of(&self.scenario, f))
            .collect();
        let abstention = p.kind.as_deref() == Some("abstention");
        // A benchmark's scenario is judged by its own rules.
        let dataset = self.scenario.source.as_ref().map(|s| s.dataset.as_str());
        let rules = match dataset {
            Some("locomo") => JudgeRules::Locomo,
            Some("longmemeval") => JudgeRules::LongMemEval(p.kind.as_deref().unwrap_or("")),
            _ => JudgeRules::Memeval,
        };
        let check = AnswerCheck {
            question: &p.question,
            answer: &answer,
            facts: &facts,
            reference: p.answer.as_deref(),
            abstention,
            rules,
        };
        let extra: Vec<String> = b
            .extra_judges
            .iter()
            .map(|(model, judge)| {
                let verdict = judge.judge_answer(&check, &mut self.env.calls);
                let v = verdict.ok().and_then(|v| v.correct);
                format!(
                    "{model}={}",
                    v.map_or(String::new(), |c| u8::from(c).to_string())
                )
            })
            .collect();
        let (correct, reason) = match b.judge.judge_answer(&check, &mut self.env.calls) {
            Ok(v) => (v.correct.map(u8::from), v.reason),
            Err(e) => (None, format!("judge call failed: {}", e.message)),
        };
        (answer, correct, reason, extra.join(";"))
    }

    /// Scores a new summary: a seeded sample of the messages it folded, judged
    /// by the judge model, and the facts it still holds. A judge that cannot
    /// be read, or whose call failed, leaves the score empty with the reason.
    pub(super) fn score_summary(&mut self, s: &SummaryState) {
        let t = &self.transcript;
        let (from, to) = (s.covered_from as usize, s.covered_to as usize);
        let mut rng =
            ChaCha8Rng::seed_from_u64(sample_seed(self.seed, &self.scenario.name, s.index));
        let picks = sample_positions(
            &mut rng,
            to - from,
            self.rt.config.summary.quality_samples as usize,
        );
        let sampled: Vec<(Role, &str)> = picks
            .iter()
            .map(|&i| (t.get(from + i).role, &**t.get(from + i).content()))
            .collect();
        let verdict = self
            .rt
            .backend
            .judge
            .score_summary(s.text(), &sampled, &mut self.env.calls);
        let (first, last) = (t.get(from).number, t.get(to - 1).number);
        let newly = facts_planted_in(&self.scenario, first, last);
        let all = facts_planted_in(&self.scenario, 1, last);
        self.out.summaries.push(SummaryRow {
            scenario: self.scenario.name.clone(),
            strategy: self.strategy_name.to_string(),
            repeat: self.repeat,
            summary_index: s.index,
            turn: s.turn,
            covered_messages: (to - from) as u32,
            covered_from: first,
            covered_to: last,
            summary_tokens: s.tokens,
            quality: verdict.as_ref().ok().map(|v| round6(v.score)),
            accurate: verdict.as_ref().ok().and_then(|v| v.accurate).map(u8::from),
            sampled: picks
                .iter()
                .map(|&i| t.get(from + i).number.to_string())
                .collect::<Vec<_>>()
                .join(";"),
            missing: verdict
                .as_ref()
                .map_or(String::new(), |v| v.missing.join(";")),
            fact_retention: fact_retention(&self.scenario, &newly, s.read.folded()).map(round6),
            fact_retention_all: fact_retention(&self.scenario, &all, s.read.folded()).map(round6),
            input_tokens: s.input_tokens,
            output_tokens: s.output_tokens,
            judge_reason: match &verdict {
                Ok(_) => String::new(),
                Err(e) if e.kind == "judge" => e.message.clone(),
                Err(e) => format!("judge call failed: {}", e.message),
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn sampling_is_seeded_and_distinct() {
        let mut a = ChaCha8Rng::seed_from_u64(sample_seed(42, "s", 1));
        let mut b = ChaCha8Rng::seed_from_u64(sample_seed(42, "s", 1));
        let x = sample_positions(&mut a, 10, 3);
        assert_eq!(x, sample_positions(&mut b, 10, 3));
        assert_eq!(x.len(), 3);
        assert!(x.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(sample_positions(&mut a, 2, 3), vec![0, 1]);
        assert_ne!(sample_seed(42, "s", 1), sample_seed(43, "s", 1));
        assert_ne!(sample_seed(42, "s", 1), sample_seed(42, "s", 2));
    }
}
