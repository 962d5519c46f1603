//! The replay engine: every (scenario, strategy) pair is an independent job
//! that feeds the scenario's messages through a fresh memory, drops and
//! restores that memory from SQLite at each session boundary, and records
//! per-turn costs, probe outcomes and summary scores. Jobs run in parallel
//! on all cores; results are ordered before anything is written.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::backend::{AnswerCheck, Backend, CallKind, ChatMessage, ChatRole, ExpectedFact};
use crate::config::{Config, StrategyName};
use crate::memory::{
    self, Context, Entry, Env, Params, Query, Stage, StageTimes, Strategy, SummaryState,
    Transcript, Usage,
};
use crate::metrics::{evaluate_probe, fact_retention, facts_planted_in};
use crate::par::par_map;
use crate::results::{CallRow, JobKey, JobResult, ProbeRow, SummaryRow, TurnRow};
use crate::scenario::{Role, Scenario, Step};
use crate::stats::round6;
use crate::store::{Journal, Store, StoreError};
use crate::text::fnv1a;
use crate::tokens::Tokenizer;

/// Messages kept unsaved at most before a flush to the store. A replay cut
/// short is replayed whole on resume, so flushes between session
/// boundaries only bound a transaction (a few MB of write-ahead log at
/// most); fewer of them write fewer pages twice.
const FLUSH_EVERY: usize = 4096;

/// Set to stop the run between two steps (Ctrl-C): every replay in
/// progress returns [`RunError::Interrupted`]; finished ones are journaled.
pub static STOP: AtomicBool = AtomicBool::new(false);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("interrupted")]
    Interrupted,
}

/// Where finished replays go.
enum Sink<'a> {
    /// Kept, to be returned.
    Memory(Mutex<Vec<JobResult>>),
    /// Written to the journal, in parts: the rows of a user evicted from the
    /// registry leave memory with its memory.
    Journal(&'a Journal),
}

impl Sink<'_> {
    fn finished(&self, r: JobResult) -> Result<(), RunError> {
        match self {
            Sink::Memory(v) => v.lock().expect("no panic holds this lock").push(r),
            Sink::Journal(j) => j.append(std::slice::from_ref(&r), true)?,
        }
        Ok(())
    }
}

/// Rows on their way from a lane's users to the journal: held until they
/// number [`SPILL_ROWS`], then written in one transaction, so memory stays
/// bounded without a transaction per eviction. Without a journal, nothing
/// is spilled (the rows stay with their replays).
struct Spill<'a> {
    journal: Option<&'a Journal>,
    parts: Vec<JobResult>,
    rows: usize,
}

/// Rows held for the journal at most, per lane.
const SPILL_ROWS: usize = 4096;

impl<'a> Spill<'a> {
    fn new(sink: &Sink<'a>) -> Spill<'a> {
        Spill {
            journal: match sink {
                Sink::Journal(j) => Some(j),
                Sink::Memory(_) => None,
            },
            parts: Vec::new(),
            rows: 0,
        }
    }

    /// The rows `user` recorded since its last part, where they spill.
    fn take(&mut self, user: &mut Job<'_>) -> Result<(), RunError> {
        if self.journal.is_none() {
            return Ok(());
        }
        let part = user.take_part();
        self.rows += part.turns.len() + part.probes.len() + part.summaries.len() + part.calls.len();
        self.parts.push(part);
        if self.rows >= SPILL_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), RunError> {
        if let Some(j) = self.journal
            && !self.parts.is_empty()
        {
            j.append(&self.parts, false)?;
        }
        self.parts.clear();
        self.rows = 0;
        Ok(())
    }
}

/// The replays of a run in output order: scenario by name, strategy as
/// configured, replay number.
pub fn job_keys(scenarios: &[Scenario], config: &Config, repeats: u32) -> Vec<JobKey> {
    let mut names: Vec<&str> = scenarios.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    names
        .iter()
        .flat_map(|s| {
            config.strategies.iter().flat_map(move |k| {
                (1..=repeats.max(1)).map(move |r| (s.to_string(), k.to_string(), r))
            })
        })
        .collect()
}

/// What a run needs besides the scenarios.
pub struct Runtime<'a> {
    pub config: &'a Config,
    pub backend: &'a Backend,
    pub tok: Tokenizer,
    pub context_window: u32,
    /// The SQLite file of the run's memories.
    pub store: &'a Path,
    /// Worker threads.
    pub jobs: usize,
    /// Record wall-clock timings (off: every timing column is 0, so two runs
    /// are byte-identical).
    pub timings: bool,
    /// Print one line per finished job on stderr.
    pub progress: bool,
    /// Replays of each (scenario, strategy), with seeds `seed`, `seed + 1`, ...
    pub repeats: u32,
}

impl<'a> Runtime<'a> {
    /// A replay on one thread, without timings or progress (the
    /// budget dashboard, sweeps, benches); the tokenizer and context window
    /// are the configuration's.
    pub fn plain(
        config: &'a Config,
        backend: &'a Backend,
        store: &'a Path,
    ) -> Result<Runtime<'a>, crate::config::ConfigError> {
        Ok(Runtime {
            config,
            backend,
            tok: config.tokenizer()?,
            context_window: config.context_window()?,
            store,
            jobs: 1,
            timings: false,
            progress: false,
            repeats: 1,
        })
    }
}

/// A scenario's scripted messages tokenized once for all strategies (only
/// their counts are kept: a population of users holds its messages once,
/// in the scenarios).
struct Prepared {
    /// Per message; 0 where the reply is generated.
    tokens: Vec<u32>,
    /// Time to tokenize each scripted message.
    tokenize_us: Vec<u64>,
}

fn prepare(s: &Scenario, tok: &Tokenizer, timed: bool) -> Prepared {
    let mut tokenize_us = Vec::new();
    let tokens = s
        .messages
        .iter()
        .map(|m| {
            m.content.as_ref().map_or(0, |c| {
                let start = timed.then(Instant::now);
                let tokens = tok.count(c);
                tokenize_us.push(start.map_or(0, |s| s.elapsed().as_micros() as u64));
                tokens
            })
        })
        .collect();
    Prepared {
        tokens,
        tokenize_us,
    }
}

/// Replays every scenario through every configured strategy. Results come
/// back ordered by scenario name, then strategy in configuration order.
pub fn run(scenarios: &[Scenario], rt: &Runtime<'_>) -> Result<Vec<JobResult>, RunError> {
    let sink = Sink::Memory(Mutex::new(Vec::new()));
    replay(scenarios, rt, &sink)?;
    let Sink::Memory(v) = sink else {
        unreachable!("made above")
    };
    let mut all = v.into_inner().expect("no panic holds this lock");
    let at: std::collections::HashMap<JobKey, usize> = job_keys(scenarios, rt.config, rt.repeats)
        .into_iter()
        .enumerate()
        .map(|(i, k)| (k, i))
        .collect();
    all.sort_by_cached_key(|j| at[&j.key()]);
    Ok(all)
}

/// Replays every scenario through every configured strategy into
/// `journal`, so that no replay's rows stay in memory once it finishes (or
/// its user is evicted from the registry). The replays the journal holds
/// as finished (those of an interrupted run) are not replayed; any other
/// starts from an empty memory.
pub fn run_journaled(
    scenarios: &[Scenario],
    rt: &Runtime<'_>,
    journal: &Journal,
) -> Result<(), RunError> {
    replay(scenarios, rt, &Sink::Journal(journal))
}

fn replay(scenarios: &[Scenario], rt: &Runtime<'_>, sink: &Sink<'_>) -> Result<(), RunError> {
    // Held open to the end: SQLite checkpoints and deletes the write-ahead
    // log whenever its last connection closes, which would otherwise
    // happen after every replay.
    let _open = Store::create(rt.store)?;
    let prepared: Vec<Prepared> = par_map(
        scenarios,
        rt.jobs,
        |s| s.messages.len() as u64,
        |s| Ok::<_, RunError>(prepare(s, &rt.tok, rt.timings)),
    )?;
    let mut order: Vec<usize> = (0..scenarios.len()).collect();
    order.sort_by(|&a, &b| scenarios[a].name.cmp(&scenarios[b].name));
    let jobs: Vec<(usize, StrategyName, u32)> = order
        .iter()
        .flat_map(|&s| {
            rt.config
                .strategies
                .iter()
                .flat_map(move |&k| (1..=rt.repeats.max(1)).map(move |r| (s, k, r)))
        })
        .collect();
    let params = Params::from_config(rt.config, rt.backend);
    // A progress bar over every message of every replay, on a terminal only.
    let bar = (rt.progress && std::io::stderr().is_terminal()).then(|| {
        let total: u64 = jobs
            .iter()
            .map(|&(s, _, _)| scenarios[s].messages.len() as u64)
            .sum();
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} messages, {eta} left",
            )
            .expect("a valid template"),
        );
        bar
    });
    let done = match sink {
        Sink::Journal(j) => j.done()?,
        Sink::Memory(_) => Default::default(),
    };
    let key =
        |s: usize, k: StrategyName, repeat: u32| (scenarios[s].name.clone(), k.to_string(), repeat);
    // Replays the journal holds as finished are skipped; any other starts
    // afresh: whatever an interrupted attempt stored (its memories, its
    // rows) is forgotten.
    let skip = |users: &[usize], k: StrategyName, repeat: u32| -> Result<bool, RunError> {
        let keys: Vec<JobKey> = users.iter().map(|&s| key(s, k, repeat)).collect();
        if !keys.is_empty() && keys.iter().all(|k| done.contains(k)) {
            if let Some(b) = &bar {
                // The progress those replays made before.
                b.inc(
                    users
                        .iter()
                        .map(|&s| scenarios[s].messages.len() as u64)
                        .sum(),
                );
            }
            return Ok(true);
        }
        // Only a journaled run can be a resumed one: a replay in memory
        // starts from a store just created.
        if let Sink::Journal(j) = sink {
            let mut store = Store::open(rt.store)?;
            for k in &keys {
                store.clear(&namespace(&k.0, &k.1, k.2))?;
                j.clear(k)?;
            }
        }
        Ok(false)
    };
    let cap = rt.config.registry.max_active_users as usize;
    if cap == 0 || cap >= scenarios.len() {
        // Every memory stays live: users are independent, so each replays
        // alone, in parallel (the same results as interleaved, sooner).
        par_map(
            &jobs,
            rt.jobs,
            // The buffer strategy's contexts grow with the conversation.
            |&(s, k, _)| {
                scenarios[s].messages.len() as u64 * if k == StrategyName::Buffer { 4 } else { 1 }
            },
            |&(s, k, repeat)| {
                if skip(&[s], k, repeat)? {
                    return Ok(());
                }
                let job = Job::new(&scenarios[s], &prepared[s], k, repeat, &params, rt)?;
                sink.finished(job.run(&mut Store::open(rt.store)?, bar.as_ref())?)
            },
        )?;
    } else {
        // One lane per strategy and replay: all users interleaved through a
        // registry of `cap` live memories.
        let lanes: Vec<(StrategyName, u32)> = rt
            .config
            .strategies
            .iter()
            .flat_map(|&k| (1..=rt.repeats.max(1)).map(move |r| (k, r)))
            .collect();
        let schedule = interleave(scenarios, &order);
        par_map(
            &lanes,
            rt.jobs,
            |&(k, _)| if k == StrategyName::Buffer { 4 } else { 1 },
            |&(k, repeat)| {
                // A lane is resumed whole: its evictions are the registry's record.
                if skip(&order, k, repeat)? {
                    return Ok(());
                }
                let users: Vec<Job<'_>> = order
                    .iter()
                    .map(|&s| Job::new(&scenarios[s], &prepared[s], k, repeat, &params, rt))
                    .collect::<Result<_, _>>()?;
                run_lane(users, &schedule, cap, rt, sink, bar.as_ref())
            },
        )?;
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(())
}

/// The store namespace of one replay's memory.
fn namespace(scenario: &str, strategy: &str, repeat: u32) -> String {
    format!("{scenario}/{strategy}/{repeat}")
}

/// Embeds every scripted message and probe question ahead of the replay,
/// in batches, when a strategy retrieves: each text once, for every
/// strategy and replay. The calls are returned (scenario empty, turn 0).
pub fn prefetch_embeddings(scenarios: &[Scenario], rt: &Runtime<'_>) -> Vec<CallRow> {
    if !rt.config.strategies.iter().any(|k| k.retrieves()) {
        return Vec::new();
    }
    let mut sorted: Vec<&Scenario> = scenarios.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let texts: Vec<&str> = sorted
        .iter()
        .flat_map(|s| {
            let messages = s.messages.iter().filter_map(|m| m.content.as_deref());
            messages.chain(s.probes.iter().map(|p| p.question.as_str()))
        })
        .collect();
    let mut calls = Vec::new();
    rt.backend.embedder.prefetch(&texts, &mut calls);
    calls
        .into_iter()
        .map(|r| CallRow::new("", "", 0, 0, r, rt.timings))
        .collect()
}

/// The order in which a server would see the users' steps: by time where
/// every message has one (a session's start stands for its first messages),
/// else round-robin, one step of each user in turn. Each user's own steps
/// keep their order. Pairs of (user index in `order`, step index).
pub fn interleave(scenarios: &[Scenario], order: &[usize]) -> Vec<(usize, usize)> {
    let timed: Option<Vec<Vec<i64>>> = order
        .iter()
        .map(|&s| {
            let sc = &scenarios[s];
            let mut now: Option<i64> = None;
            sc.steps
                .iter()
                .map(|step| {
                    match *step {
                        Step::Session(i) => now = sc.sessions[i].start.or(now),
                        Step::Message(n) => now = sc.message(n).at.or(now),
                        Step::Probe { .. } => {}
                    }
                    now
                })
                .collect::<Option<Vec<i64>>>()
        })
        .collect();
    match timed {
        Some(times) => {
            let mut out: Vec<(i64, usize, usize)> = Vec::new();
            for (u, ts) in times.iter().enumerate() {
                out.extend(ts.iter().enumerate().map(|(i, &t)| (t, u, i)));
            }
            out.sort_unstable();
            out.into_iter().map(|(_, u, i)| (u, i)).collect()
        }
        None => {
            let mut out = Vec::new();
            let longest = order
                .iter()
                .map(|&s| scenarios[s].steps.len())
                .max()
                .unwrap_or(0);
            for i in 0..longest {
                for (u, &s) in order.iter().enumerate() {
                    if i < scenarios[s].steps.len() {
                        out.push((u, i));
                    }
                }
            }
            out
        }
    }
}

/// Replays interleaved users through a registry of at most `cap` live
/// memories: the least recently used one is persisted and dropped to make
/// room, and reloaded from the store on its user's next step. Into a
/// journal, a user's rows leave memory (see [`Spill`]) when it is evicted
/// and after its last step (it stays live, as on a server that cannot know
/// it was the last), so that memory is bounded by the registry, not the
/// population.
fn run_lane(
    mut users: Vec<Job<'_>>,
    schedule: &[(usize, usize)],
    cap: usize,
    rt: &Runtime<'_>,
    sink: &Sink<'_>,
    bar: Option<&ProgressBar>,
) -> Result<(), RunError> {
    let mut store = Store::open(rt.store)?;
    let mut spill = Spill::new(sink);
    let mut last_step = vec![0usize; users.len()];
    for (at, &(u, _)) in schedule.iter().enumerate() {
        last_step[u] = at;
    }
    // Live users by last use (tick), and each user's tick (0: not live).
    let mut lru: std::collections::BTreeMap<u64, usize> = std::collections::BTreeMap::new();
    let mut last = vec![0u64; users.len()];
    let mut started = vec![false; users.len()];
    for (at, &(u, i)) in schedule.iter().enumerate() {
        let tick = at as u64 + 1;
        if last[u] == 0 {
            if lru.len() >= cap
                && let Some((_, v)) = lru.pop_first()
            {
                let t = users[v].env.times.start();
                users[v].evict(&mut store)?;
                last[v] = 0;
                users[v].env.times.record(Stage::Evict, t);
                spill.take(&mut users[v])?;
            }
            if started[u] {
                let t = users[u].env.times.start();
                users[u].restore(&mut store)?;
                users[u].env.times.record(Stage::Reload, t);
            }
            started[u] = true;
        } else {
            lru.remove(&last[u]);
        }
        last[u] = tick;
        lru.insert(tick, u);
        let step = users[u].scenario.steps[i];
        users[u].step(step, &mut store, bar)?;
        if at == last_step[u] {
            spill.take(&mut users[u])?;
        }
    }
    spill.flush()?;
    for user in users {
        sink.finished(user.finish(&mut store)?)?;
    }
    Ok(())
}

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

struct Job<'a> {
    scenario: &'a Scenario,
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
    env: Env<'a>,
    transcript: Transcript,
    strategy: Box<dyn Strategy>,
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
    fn new(
        scenario: &'a Scenario,
        prepared: &'a Prepared,
        strategy_name: StrategyName,
        repeat: u32,
        params: &'a Params,
        rt: &'a Runtime<'a>,
    ) -> Result<Job<'a>, RunError> {
        let transcript = Transcript::new();
        Ok(Job {
            scenario,
            prepared,
            strategy_name,
            repeat,
            seed: rt.config.seed.wrapping_add(u64::from(repeat) - 1),
            ns: namespace(&scenario.name, strategy_name.as_str(), repeat),
            owner: Arc::from(scenario.user.as_str()),
            labels: Labels {
                scenario: scenario.name.as_str().into(),
                strategy: strategy_name.as_str().into(),
                sessions: scenario
                    .sessions
                    .iter()
                    .map(|s| s.id.as_str().into())
                    .collect(),
            },
            rt,
            params,
            env: Env {
                tok: rt.tok,
                backend: rt.backend,
                params,
                system_prompt: &scenario.system_prompt,
                system_prompt_tokens: rt.tok.count(&scenario.system_prompt),
                retrieved_header_tokens: rt.tok.count(memory::RETRIEVED_HEADER),
                list_buffer: true,
                usage: Usage::default(),
                summaries: Vec::new(),
                times: StageTimes::new(rt.timings),
                calls: Vec::new(),
            },
            strategy: memory::create(strategy_name, params, &transcript, None),
            transcript,
            unsaved_from: 0,
            unsaved_summaries: Vec::new(),
            last_call: None,
            probe_embeddings: vec![None; scenario.probes.len()],
            cumulative: 0,
            session: 0,
            out: JobResult {
                scenario: scenario.name.clone(),
                strategy: strategy_name.to_string(),
                repeat,
                turns: Vec::new(),
                probes: Vec::new(),
                summaries: Vec::new(),
                calls: Vec::new(),
                times: StageTimes::default(),
            },
            cost: 0.0,
        })
    }

    /// Replays the whole scenario, alone.
    fn run(mut self, store: &mut Store, bar: Option<&ProgressBar>) -> Result<JobResult, RunError> {
        for &step in &self.scenario.steps {
            self.step(step, store, bar)?;
        }
        self.finish(store)
    }

    /// Persists what is left and hands over the results (those since the
    /// last part taken).
    fn finish(mut self, store: &mut Store) -> Result<JobResult, RunError> {
        self.flush(store)?;
        self.env.times.us[Stage::Tokenize as usize] = self.prepared.tokenize_us.clone();
        Ok(self.take_part())
    }

    /// The rows and latencies recorded since the last part taken.
    fn take_part(&mut self) -> JobResult {
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
    fn step(
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
        Ok(())
    }

    /// Files the API calls made at `turn` under this replay; how many failed.
    fn take_calls(&mut self, turn: u32) -> u32 {
        let (scenario, strategy) = (&self.scenario.name, self.strategy_name.as_str());
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

    fn flush(&mut self, store: &mut Store) -> Result<(), RunError> {
        let entries = &self.transcript.entries()[self.unsaved_from..];
        if entries.is_empty() && self.unsaved_summaries.is_empty() {
            return Ok(());
        }
        let start = self.env.times.start();
        store.save(&self.ns, entries, &self.unsaved_summaries)?;
        self.env.times.record(Stage::Persist, start);
        self.unsaved_from = self.transcript.len();
        self.unsaved_summaries.clear();
        Ok(())
    }

    /// A returning user: drop every in-memory structure and rebuild it from
    /// the store, as a server process would after a restart.
    fn restore(&mut self, store: &mut Store) -> Result<(), RunError> {
        self.flush(store)?;
        self.last_call = None;
        // Nothing of the old state survives: the new one is built from the store alone.
        let (t, summary) = store.load(&self.ns)?;
        self.strategy = memory::create(self.strategy_name, self.params, &t, summary);
        self.unsaved_from = t.len();
        self.transcript = t;
        Ok(())
    }

    /// Evicted from the registry: persisted, then every in-memory structure
    /// dropped until [`Job::restore`] brings it back.
    fn evict(&mut self, store: &mut Store) -> Result<(), RunError> {
        self.flush(store)?;
        self.last_call = None;
        // Embedded again at their next ask (the same vectors: the embedder
        // is deterministic, and an API's are fetched ahead).
        self.probe_embeddings.fill(None);
        self.transcript = Transcript::new();
        self.unsaved_from = 0;
        self.strategy = memory::create(self.strategy_name, self.params, &self.transcript, None);
        Ok(())
    }

    fn last_user(&self) -> Option<&Entry> {
        self.transcript
            .entries()
            .iter()
            .rev()
            .find(|e| e.role == Role::User)
    }

    fn timed_build(&mut self, query: Option<&Query<'_>>) -> (Context, u64) {
        let start = self.env.times.start();
        let ctx = self.strategy.build(&self.transcript, query, &mut self.env);
        let us = self.env.times.record(Stage::Build, start);
        (ctx, us)
    }

    fn message(&mut self, n: u32, store: &mut Store) -> Result<(), RunError> {
        let m = self.scenario.message(n);
        self.env.usage = Usage::default();
        let mut reply_failed = 0;
        let (content, tokens, generated) = match &m.content {
            Some(c) => (c.clone(), self.prepared.tokens[n as usize - 1], false),
            None => {
                let reply = self.generate_reply();
                reply_failed = self.take_calls(n);
                let tokens = self.rt.tok.count(&reply);
                (Arc::from(reply), tokens, true)
            }
        };
        let mut entry = Entry::new(n, m.role, content.clone(), tokens, self.owner.clone(), m.at);
        let embedding = self.strategy.needs_embeddings().then(|| {
            self.env
                .embed(&content, Some(entry.read.analysis()), tokens)
        });
        entry.embedding = embedding.clone();
        self.transcript.push(entry);
        self.last_call = None;
        self.strategy.observe(&self.transcript, &mut self.env);
        let is_call = m.role == Role::User;
        // The context is read only where the next message is a reply to
        // generate from it; else it is counted, not listed.
        self.env.list_buffer = is_call
            && (self.scenario.messages.get(n as usize)).is_some_and(|m| m.content.is_none());
        let (ctx, build_us) = if is_call {
            let q = Query {
                text: &content,
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
        });
        if is_call {
            self.last_call = Some(ctx);
        }
        let written: Vec<Arc<SummaryState>> = self.env.summaries.drain(..).collect();
        for s in written {
            self.score_summary(&s);
            self.unsaved_summaries.push(s);
        }
        let failed = reply_failed + self.take_calls(n);
        if let Some(row) = self.out.turns.last_mut() {
            row.failed_calls = failed;
        }
        if self.transcript.len() - self.unsaved_from >= FLUSH_EVERY {
            self.flush(store)?;
        }
        Ok(())
    }

    /// The reply a live chatbot would give now, from the context the
    /// strategy builds for the last user message.
    fn generate_reply(&mut self) -> String {
        let last = self.last_user().cloned();
        let ctx = match self.last_call.take() {
            Some(c) => c,
            None => {
                let q = last.as_ref().map(|e| Query {
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

    fn probe(&mut self, index: usize, turn: u32) -> Result<(), RunError> {
        let p = &self.scenario.probes[index];
        let saved = self.env.usage;
        if self.strategy.needs_embeddings() && self.probe_embeddings[index].is_none() {
            let tokens = self.rt.tok.count(&p.question);
            let e = self.env.embed(&p.question, None, tokens);
            // A failed call is tried again at the probe's next ask.
            self.probe_embeddings[index] = (!e.is_empty()).then_some(e);
        }
        let q = Query {
            text: &p.question,
            embedding: self.probe_embeddings[index].clone(),
        };
        let ctx = self
            .strategy
            .build(&self.transcript, Some(&q), &mut self.env);
        // Probes measure the memory; their spend is not the chatbot's.
        self.env.usage = saved;
        let o = evaluate_probe(
            self.scenario,
            &p.expects,
            &ctx,
            &self.scenario.user,
            self.rt.context_window,
        );
        let facts = &self.scenario.facts;
        let ids = |v: &[usize]| {
            v.iter()
                .map(|&f| facts[f].id.as_str())
                .collect::<Vec<_>>()
                .join(";")
        };
        let (answer, answer_correct, judge_reason) = if o.over_window {
            (
                String::new(),
                None,
                "context exceeds the model's window: the call would fail".to_string(),
            )
        } else if !self.rt.backend.answer_probes {
            (String::new(), None, "probe answers are off".to_string())
        } else {
            self.answer(p, &ctx)
        };
        // Its failures are in its verdict's reason (and calls.csv).
        self.take_calls(turn);
        self.out.probes.push(ProbeRow {
            scenario: self.scenario.name.clone(),
            user: self.scenario.user.clone(),
            strategy: self.strategy_name.to_string(),
            repeat: self.repeat,
            probe_id: p.id.clone(),
            kind: p.kind.clone().unwrap_or_default(),
            turn,
            expected: ids(&p.expects),
            recalled: ids(&o.recalled),
            recall: (!p.expects.is_empty())
                .then(|| round6(o.recalled.len() as f64 / p.expects.len() as f64)),
            stale: o.stale,
            leaked: o.leaked,
            duplicated: o.duplicated,
            fact_position: o.fact_position.map(round6),
            context_tokens: ctx.total(),
            over_window: u8::from(o.over_window),
            answer,
            answer_correct,
            judge_reason,
            question: p.question.clone(),
            planted_at: p
                .expects
                .iter()
                .map(|&f| {
                    let at = facts[f].planted_by.iter().rev().find(|&&m| m <= turn);
                    at.copied().unwrap_or(0).to_string()
                })
                .collect::<Vec<_>>()
                .join(";"),
            context_summary: ctx.summary.as_ref().map(|s| s.index),
            context_retrieved: ctx
                .retrieved
                .iter()
                .map(|i| i.number.to_string())
                .collect::<Vec<_>>()
                .join(";"),
            context_buffer: match (ctx.buffer.first(), ctx.buffer.last()) {
                (Some(a), Some(b)) => format!("{}-{}", a.number, b.number),
                _ => String::new(),
            },
        });
        Ok(())
    }

    /// A probe's answer from its context, and the judge's verdict on it.
    fn answer(
        &mut self,
        p: &crate::scenario::Probe,
        ctx: &Context,
    ) -> (String, Option<u8>, String) {
        let b = self.rt.backend;
        let mut call = ctx.call_messages(&self.scenario.system_prompt);
        call.push(ChatMessage::new(ChatRole::User, p.question.as_str()));
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
                    );
                }
            };
        let facts: Vec<ExpectedFact<'_>> = p
            .expects
            .iter()
            .map(|&f| {
                let fact = &self.scenario.facts[f];
                ExpectedFact {
                    id: &fact.id,
                    statement: fact.statement.as_deref(),
                    expect: &fact.expect,
                }
            })
            .collect();
        let check = AnswerCheck {
            question: &p.question,
            answer: &answer,
            facts: &facts,
            reference: p.answer.as_deref(),
            abstention: p.kind.as_deref() == Some("abstention"),
        };
        match b.judge.judge_answer(&check, &mut self.env.calls) {
            Ok(v) => (answer, v.correct.map(u8::from), v.reason),
            Err(e) => (answer, None, format!("judge call failed: {}", e.message)),
        }
    }

    /// Scores a new summary: a seeded sample of the messages it folded, judged
    /// by the judge model, and the facts it still holds. A judge that cannot
    /// be read, or whose call failed, leaves the score empty with the reason.
    fn score_summary(&mut self, s: &SummaryState) {
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
        let newly = facts_planted_in(self.scenario, first, last);
        let all = facts_planted_in(self.scenario, 1, last);
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
            fact_retention: fact_retention(self.scenario, &newly, s.read.folded()).map(round6),
            fact_retention_all: fact_retention(self.scenario, &all, s.read.folded()).map(round6),
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
    fn sampling_is_seeded_and_distinct() {
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
