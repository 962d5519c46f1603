//! The replay engine: every (scenario, strategy) pair is an independent job
//! that feeds the scenario's messages through a fresh memory, drops and
//! restores that memory from SQLite at each session boundary, and records
//! per-turn costs, probe outcomes and summary scores. Jobs run in parallel
//! on all cores; results are ordered before anything is written.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use crate::backend::Backend;
use crate::clock::Millis;
use crate::config::{Config, StrategyName};
use crate::memory::{Params, Stage};
use crate::par::par_map;
use crate::results::{CallRow, JobKey, JobResult};
use crate::scenario::Scenario;
use crate::store::{Journal, Store, StoreError};
use crate::tokens::Tokenizer;

mod input;
pub mod inspect;
mod job;

pub use input::Input;
use input::{Held, Source, Spool};
use job::Job;

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
    /// One replay cannot go on (a plugin's fault); the others can.
    #[error("{0}")]
    Replay(String),
    /// A file of the run's own cannot be written or read.
    #[error("{0}")]
    Io(String),
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
            Sink::Journal(j) => j.finish(r)?,
        }
        Ok(())
    }

    /// A replay that could not go on: into a journal, its rows are
    /// forgotten and its error recorded, and the run goes on; in memory
    /// (sweeps, the budget dashboard), the whole fails.
    fn failed(&self, key: &JobKey, error: String) -> Result<(), RunError> {
        match self {
            Sink::Memory(_) => Err(RunError::Replay(error)),
            Sink::Journal(j) => {
                crate::errln!("replay {}/{}/{} failed: {error}", key.0, key.1, key.2);
                Ok(j.fail(key, &error)?)
            }
        }
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

    /// Drops what `user` recorded, held here or not yet taken (its replay
    /// failed: none of its rows is written).
    fn forget(&mut self, user: &mut Job<'_>) {
        let key = user.key();
        let _ = user.take_part();
        self.parts.retain(|p| p.key() != key);
    }

    fn flush(&mut self) -> Result<(), RunError> {
        if let Some(j) = self.journal
            && !self.parts.is_empty()
        {
            j.append(&self.parts)?;
        }
        self.parts.clear();
        self.rows = 0;
        Ok(())
    }
}

/// The replays of a run in output order: scenario by name, strategy as
/// configured, replay number.
pub fn job_keys(input: Input<'_>, config: &Config, repeats: u32) -> Vec<JobKey> {
    input
        .by_name()
        .into_iter()
        .map(|i| input.name(i))
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
    /// The run's plugins, where a strategy is one.
    pub plugins: Option<&'a crate::plugin::Plugins>,
}

impl Runtime<'_> {
    /// A process of the plugin that `k` names, for replays of number
    /// `repeat` (waiting for one to be free); `None` for a built-in.
    fn lease(
        &self,
        k: &StrategyName,
        repeat: u32,
    ) -> Result<
        Option<(
            std::sync::Arc<crate::plugin::Plugin>,
            crate::plugin::SharedLease,
        )>,
        RunError,
    > {
        let Some(name) = k.plugin() else {
            return Ok(None);
        };
        let plugin = self.plugins.and_then(|p| p.get(name)).ok_or_else(|| {
            RunError::Replay(format!("{k}: the plugin was not started for this command"))
        })?;
        Ok(Some((plugin.clone(), crate::plugin::lease(plugin, repeat))))
    }
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
            plugins: None,
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
            if m.content.is_none() {
                return 0;
            }
            let start = timed.then(Instant::now);
            let tokens = m.tokens(tok);
            tokenize_us.push(start.map_or(0, |s| s.elapsed().as_micros() as u64));
            tokens
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
    let input = Input::Loaded(scenarios);
    replay(input, rt, &sink)?;
    let Sink::Memory(v) = sink else {
        unreachable!("made above")
    };
    let mut all = v.into_inner().expect("no panic holds this lock");
    let at: std::collections::HashMap<JobKey, usize> = job_keys(input, rt.config, rt.repeats)
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
    input: Input<'_>,
    rt: &Runtime<'_>,
    journal: &Journal,
) -> Result<(), RunError> {
    replay(input, rt, &Sink::Journal(journal))
}

/// Each scenario's messages tokenized, read again from its file where it
/// is listed and not kept (a file that cannot be read gives nothing here:
/// its replays fail when they read it); into `spool`, where given, each
/// one read.
fn prepare_all(
    input: Input<'_>,
    rt: &Runtime<'_>,
    spool: Option<&Spool>,
) -> Result<Vec<Prepared>, RunError> {
    let indexes: Vec<usize> = (0..input.len()).collect();
    par_map(
        &indexes,
        rt.jobs,
        |&i| input.messages(i) as u64,
        |&i| {
            Ok::<_, RunError>(match input.get(i) {
                Ok(s) => {
                    if let Some(spool) = spool.filter(|_| !input.kept(i)) {
                        spool.put(i, &s)?;
                    }
                    prepare(&s, &rt.tok, rt.timings)
                }
                Err(_) => Prepared {
                    tokens: Vec::new(),
                    tokenize_us: Vec::new(),
                },
            })
        },
    )
}

fn replay(input: Input<'_>, rt: &Runtime<'_>, sink: &Sink<'_>) -> Result<(), RunError> {
    // Held open to the end: SQLite checkpoints and deletes the write-ahead
    // log whenever its last connection closes, which would otherwise
    // happen after every replay.
    let _open = Store::create(rt.store)?;
    let cap = rt.config.registry.max_active_users as usize;
    let interleaved = cap > 0 && cap < input.len();
    let spool = match (0..input.len()).all(|i| input.kept(i)) {
        true => None,
        false => Some(Spool::create(
            rt.store.with_file_name("scenarios.spool"),
            input.len(),
        )?),
    };
    let prepared = prepare_all(input, rt, spool.as_ref())?;
    let source = Source {
        input,
        spool: spool.as_ref(),
    };
    let order = input.by_name();
    let jobs: Vec<(usize, &StrategyName, u32)> = order
        .iter()
        .flat_map(|&s| {
            rt.config
                .strategies
                .iter()
                .flat_map(move |k| (1..=rt.repeats.max(1)).map(move |r| (s, k, r)))
        })
        .collect();
    let params = Params::from_config(rt.config, rt.backend);
    let bar = progress_bar(
        rt,
        jobs.iter().map(|&(s, _, _)| input.messages(s) as u64).sum(),
    );
    let done = match sink {
        Sink::Journal(j) => j.done()?,
        Sink::Memory(_) => Default::default(),
    };
    let key = |s: usize, k: &StrategyName, repeat: u32| {
        (input.name(s).to_string(), k.to_string(), repeat)
    };
    // Replays the journal holds as finished are skipped; any other starts
    // afresh: whatever an interrupted attempt stored (its memories, its
    // rows) is forgotten.
    let skip = |users: &[usize], k: &StrategyName, repeat: u32| -> Result<bool, RunError> {
        let keys: Vec<JobKey> = users.iter().map(|&s| key(s, k, repeat)).collect();
        if !keys.is_empty() && keys.iter().all(|k| done.contains(k)) {
            if let Some(b) = &bar {
                // The progress those replays made before.
                b.inc(users.iter().map(|&s| input.messages(s) as u64).sum());
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
    if !interleaved {
        // Every memory stays live: users are independent, so each replays
        // alone, in parallel (the same results as interleaved, sooner).
        par_map(
            &jobs,
            rt.jobs,
            |&(s, k, _)| input.messages(s) as u64 * weight(k),
            |&(s, k, repeat)| {
                if skip(&[s], k, repeat)? {
                    return Ok(());
                }
                let scenario = match source.get(s) {
                    Err(RunError::Replay(e)) => return sink.failed(&key(s, k, repeat), e),
                    r => r?,
                };
                let lease = rt.lease(k, repeat)?;
                let job = Job::new(
                    scenario,
                    &prepared[s],
                    k.clone(),
                    repeat,
                    &params,
                    rt,
                    lease,
                )?;
                match job.run(&mut Store::open(rt.store)?, bar.as_ref()) {
                    Ok(r) => sink.finished(r),
                    Err(RunError::Replay(e)) => sink.failed(&key(s, k, repeat), e),
                    Err(e) => Err(e),
                }
            },
        )?;
    } else {
        // One lane per strategy and replay: all users interleaved through a
        // registry of `cap` live memories.
        let lanes: Vec<(&StrategyName, u32)> = rt
            .config
            .strategies
            .iter()
            .flat_map(|k| (1..=rt.repeats.max(1)).map(move |r| (k, r)))
            .collect();
        let schedule = interleave(input, &order);
        par_map(
            &lanes,
            rt.jobs,
            |&(k, _)| weight(k),
            |&(k, repeat)| {
                // A lane is resumed whole: its evictions are the registry's record.
                if skip(&order, k, repeat)? {
                    return Ok(());
                }
                // One process serves the lane: its users open and close
                // in it as the registry takes them in and drops them.
                let lease = rt.lease(k, repeat)?;
                let lane = Lane {
                    source,
                    order: &order,
                    keys: order.iter().map(|&s| key(s, k, repeat)).collect(),
                };
                // A user's replay is set up at its first step.
                let make = |u: usize| -> Result<Job<'_>, RunError> {
                    let s = order[u];
                    Job::new(
                        lane.get(u)?,
                        &prepared[s],
                        k.clone(),
                        repeat,
                        &params,
                        rt,
                        lease.clone(),
                    )
                };
                run_lane(&lane, make, &schedule, cap, rt, sink, bar.as_ref())
            },
        )?;
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(())
}

/// A progress bar over `total` messages, on a terminal only.
fn progress_bar(rt: &Runtime<'_>, total: u64) -> Option<ProgressBar> {
    (rt.progress && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} messages, {eta} left",
            )
            .expect("a valid template"),
        );
        bar
    })
}

/// How much a strategy's replay costs per message, relatively: the buffer
/// strategy's contexts grow with the conversation.
fn weight(k: &StrategyName) -> u64 {
    if *k == StrategyName::Buffer { 4 } else { 1 }
}

/// The store namespace of one replay's memory.
pub fn namespace(scenario: &str, strategy: &str, repeat: u32) -> String {
    format!("{scenario}/{strategy}/{repeat}")
}

/// Embeds every scripted message and probe question ahead of the replay,
/// in batches, when a strategy retrieves: each text once, for every
/// strategy and replay. The calls are returned (scenario empty, turn 0).
/// Listed scenarios are read [`PREFETCH_SCENARIOS`] at a time.
pub fn prefetch_embeddings(input: Input<'_>, rt: &Runtime<'_>) -> Vec<CallRow> {
    if !rt.config.strategies.iter().any(|k| k.retrieves()) {
        return Vec::new();
    }
    let mut calls = Vec::new();
    for chunk in input.by_name().chunks(PREFETCH_SCENARIOS) {
        // A scenario that cannot be read is embedded by its replay, which
        // fails on it.
        let held: Vec<Held<'_>> = chunk.iter().filter_map(|&i| input.get(i).ok()).collect();
        let texts: Vec<&str> = held
            .iter()
            .flat_map(|s| {
                let messages = s.messages.iter().filter_map(|m| m.content.as_deref());
                messages.chain(s.probes.iter().map(|p| p.question.as_str()))
            })
            .collect();
        rt.backend.embedder.prefetch(&texts, &mut calls);
    }
    calls
        .into_iter()
        .map(|r| CallRow::new("", "", 0, 0, r, rt.timings))
        .collect()
}

/// Listed scenarios read at once to embed their texts ahead: a batch of
/// texts big enough to fill the embedder's batches, a bounded share of a
/// population in memory.
const PREFETCH_SCENARIOS: usize = 256;

/// The order in which a server would see the users' steps: by time where
/// every message has one (a session's start stands for its first messages),
/// else round-robin, one step of each user in turn. Each user's own steps
/// keep their order. Pairs of (user index in `order`, step index).
pub fn interleave(input: Input<'_>, order: &[usize]) -> Vec<(u32, u32)> {
    let timed: Option<Vec<_>> = order.iter().map(|&s| input.step_times(s)).collect();
    match timed {
        Some(times) => {
            let mut out: Vec<(Millis, u32, u32)> = Vec::new();
            for (u, ts) in times.iter().enumerate() {
                out.extend(ts.iter().enumerate().map(|(i, &t)| (t, u as u32, i as u32)));
            }
            out.sort_unstable();
            out.into_iter().map(|(_, u, i)| (u, i)).collect()
        }
        None => {
            let mut out = Vec::new();
            let longest = order.iter().map(|&s| input.steps(s)).max().unwrap_or(0);
            for i in 0..longest {
                for (u, &s) in order.iter().enumerate() {
                    if i < input.steps(s) {
                        out.push((u as u32, i as u32));
                    }
                }
            }
            out
        }
    }
}

/// The users of a lane: `order[u]` is user `u`'s scenario.
struct Lane<'a> {
    source: Source<'a>,
    order: &'a [usize],
    keys: Vec<JobKey>,
}

impl<'a> Lane<'a> {
    /// User `u`'s scenario, as it is taken in.
    fn get(&self, u: usize) -> Result<Held<'a>, RunError> {
        self.source.take_in(self.order[u])
    }
}

/// Replays interleaved users through a registry of at most `cap` live
/// memories: the least recently used one is persisted and dropped to make
/// room, and reloaded from the store on its user's next step. Into a
/// journal, a user's rows leave memory (see [`Spill`]) when it is evicted
/// and after its last step (it stays live, as on a server that cannot know
/// it was the last), so that memory is bounded by the registry, not the
/// population.
fn run_lane<'a>(
    lane: &Lane<'a>,
    make: impl Fn(usize) -> Result<Job<'a>, RunError>,
    schedule: &[(u32, u32)],
    cap: usize,
    rt: &Runtime<'_>,
    sink: &Sink<'_>,
    bar: Option<&ProgressBar>,
) -> Result<(), RunError> {
    let n = lane.order.len();
    let mut store = Store::open(rt.store)?;
    let mut spill = Spill::new(sink);
    let mut last_step = vec![0usize; n];
    for (at, &(u, _)) in schedule.iter().enumerate() {
        last_step[u as usize] = at;
    }
    // Each user's replay, from its first step on.
    let mut users: Vec<Option<Job<'a>>> = (0..n).map(|_| None).collect();
    // Live users by last use (tick), and each user's tick (0: not live).
    let mut lru: std::collections::BTreeMap<u64, usize> = std::collections::BTreeMap::new();
    let mut last = vec![0u64; n];
    // Users whose replay failed: skipped from then on.
    let mut failed = vec![false; n];
    for (at, &(u, i)) in schedule.iter().enumerate() {
        let (u, i) = (u as usize, i as usize);
        if failed[u] {
            continue;
        }
        let tick = at as u64 + 1;
        let outcome = (|| -> Result<(), RunError> {
            if last[u] == 0 {
                if lru.len() >= cap
                    && let Some((_, v)) = lru.pop_first()
                {
                    last[v] = 0;
                    let user = users[v].as_mut().expect("a live user has its replay");
                    let t = user.env.times.start();
                    match user.evict(&mut store) {
                        Err(RunError::Replay(e)) => {
                            failed[v] = true;
                            spill.forget(user);
                            users[v] = None;
                            sink.failed(&lane.keys[v], e)?;
                        }
                        r => r?,
                    }
                    if let Some(user) = users[v].as_mut() {
                        user.env.times.record(Stage::Evict, t);
                        // Read back from the spool when taken in again.
                        if !lane.source.input.kept(lane.order[v]) {
                            user.scenario = Held::Away;
                        }
                        spill.take(user)?;
                    }
                }
                match users[u].as_mut() {
                    Some(user) => {
                        let t = user.env.times.start();
                        if !lane.source.input.kept(lane.order[u]) {
                            user.scenario = lane.get(u)?;
                        }
                        user.restore(&mut store)?;
                        user.env.times.record(Stage::Reload, t);
                    }
                    None => users[u] = Some(make(u)?),
                }
            } else {
                lru.remove(&last[u]);
            }
            last[u] = tick;
            lru.insert(tick, u);
            let user = users[u].as_mut().expect("set up above");
            let step = user.scenario.steps[i];
            user.step(step, &mut store, bar)?;
            if at == last_step[u] {
                spill.take(user)?;
            }
            Ok(())
        })();
        match outcome {
            Err(RunError::Replay(e)) => {
                failed[u] = true;
                lru.remove(&last[u]);
                last[u] = 0;
                if let Some(user) = users[u].as_mut() {
                    spill.forget(user);
                }
                users[u] = None;
                sink.failed(&lane.keys[u], e)?;
            }
            r => r?,
        }
    }
    spill.flush()?;
    store.save_held()?;
    for (u, user) in users.into_iter().enumerate() {
        let Some(user) = user else {
            continue;
        };
        match user.finish(&mut store) {
            Ok(r) => sink.finished(r)?,
            Err(RunError::Replay(e)) => sink.failed(&lane.keys[u], e)?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
