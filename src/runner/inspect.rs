//! One call's context rebuilt from a finished run: the memory restored
//! from the run's memory.sqlite as it was after the call's message (the
//! messages up to it, the summary written by then), under the run's
//! configuration, and asked to build the context again, exactly as a user
//! returning to the chatbot would have it rebuilt. No model is called: the
//! stored messages carry their embeddings, and a probe's question is
//! embedded by the run's embedder (the offline one, or the local model).

use std::path::Path;
use std::sync::Arc;

use crate::config::{Config, StrategyName};
use crate::memory::{self, Context, Env, Params, Query};
use crate::scenario::{Role, Scenario};
use crate::store::Store;

/// A call's context as rebuilt.
pub struct Inspected {
    pub scenario: Arc<Scenario>,
    pub strategy: StrategyName,
    pub repeat: u32,
    pub turn: u32,
    /// Whether a call is made after this message (else the context is the
    /// state between calls, as turns.csv counts it).
    pub call: bool,
    /// The probe whose question was asked, where one was.
    pub probe: Option<String>,
    /// The text retrieval was asked for.
    pub query: Option<String>,
    pub context: Context,
    /// `memory.max_context_tokens` and the model's window.
    pub budget: u32,
    pub context_window: u32,
}

/// Why a context could not be rebuilt: every case is the user's input.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InspectError(pub String);

/// What to rebuild.
pub struct Ask<'a> {
    pub scenario: &'a str,
    pub strategy: &'a str,
    pub turn: u32,
    pub repeat: u32,
    /// A probe's question instead of the call after the message.
    pub probe: Option<&'a str>,
}

/// The run in `dir`: its configuration and scenario files, as recorded.
pub struct Run {
    pub config: Config,
    pub scenarios: Vec<crate::results::ScenarioMeta>,
    store: Store,
    /// The scenarios read so far (each file read and checked once).
    read: std::cell::RefCell<std::collections::HashMap<String, Arc<Scenario>>>,
    /// The run's models, built at the first context asked for (the local
    /// embedder loads a model).
    models: std::cell::OnceCell<Models>,
}

/// What rebuilding a context needs of the run's configuration.
struct Models {
    tok: crate::tokens::Tokenizer,
    context_window: u32,
    backend: crate::backend::Backend,
    params: Params,
}

impl Run {
    pub fn open(dir: &Path) -> Result<Run, InspectError> {
        let results = crate::results::load_slim_results(&dir.join("results.json"))
            .map_err(|e| InspectError(e.to_string()))?;
        Run::with_meta(dir, results.meta)
    }

    /// The run in `dir` whose metadata is already read.
    pub fn with_meta(dir: &Path, meta: crate::results::Metadata) -> Result<Run, InspectError> {
        let fail = |m: String| InspectError(m);
        let store_path = dir.join("memory.sqlite");
        if !store_path.is_file() {
            return Err(fail(format!(
                "{}: not found: the run's memories are needed to rebuild its contexts",
                store_path.display()
            )));
        }
        let store = Store::read_only(&store_path).map_err(|e| fail(e.to_string()))?;
        Ok(Run {
            config: meta.config,
            scenarios: meta.scenarios,
            store,
            read: Default::default(),
            models: Default::default(),
        })
    }

    /// The run's memories, read-only.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The scenario named `name`, read from its file (once) and checked to
    /// be the file the run replayed.
    pub fn scenario(&self, name: &str) -> Result<Arc<Scenario>, InspectError> {
        if let Some(sc) = self.read.borrow().get(name) {
            return Ok(sc.clone());
        }
        let sc = Arc::new(self.read_scenario(name)?);
        self.read.borrow_mut().insert(name.to_string(), sc.clone());
        Ok(sc)
    }

    fn read_scenario(&self, name: &str) -> Result<Scenario, InspectError> {
        let Some(meta) = self.scenarios.iter().find(|s| s.name == name) else {
            let names: Vec<&str> = self.scenarios.iter().map(|s| s.name.as_str()).collect();
            return Err(InspectError(format!(
                "--scenario {name:?}: not in the run{}",
                crate::text::did_you_mean(name, &names)
                    .map(|s| format!(" (did you mean {s:?}?)"))
                    .unwrap_or_else(|| format!(" (it has {})", names.join(", ")))
            )));
        };
        let listed = crate::scenario::Listed {
            name: meta.name.clone(),
            user: meta.user.clone(),
            file: meta.file.clone().into(),
            path: meta.file.clone().into(),
            bytes: 0,
            sha256: meta.sha256.clone(),
            messages: meta.messages,
            steps: 0,
            probe_asks: meta.probes,
            source: meta.source.clone(),
            step_times: None,
            kept: None,
        };
        listed.load().map_err(|e| {
            InspectError(format!(
                "{e}\nthe scenario file must be the one the run replayed (paths are as given to `memeval run`, from where it ran)"
            ))
        })
    }

    fn models(&self) -> Result<&Models, InspectError> {
        if let Some(m) = self.models.get() {
            return Ok(m);
        }
        let fail = |m: String| InspectError(m);
        let tok = self.config.tokenizer().map_err(|e| fail(e.0))?;
        let context_window = self.config.context_window().map_err(|e| fail(e.0))?;
        let backend = crate::backend::from_config(&self.config, tok)
            .map_err(|e| fail(format!("the run's backend: {e}")))?;
        let params = Params::from_config(&self.config, &backend);
        Ok(self.models.get_or_init(|| Models {
            tok,
            context_window,
            backend,
            params,
        }))
    }

    /// The context of one call (or probe ask), rebuilt.
    pub fn context(&self, ask: &Ask<'_>) -> Result<Inspected, InspectError> {
        let fail = |m: String| InspectError(m);
        let strategy: StrategyName = ask.strategy.parse().map_err(fail)?;
        if !self.config.strategies.contains(&strategy) {
            return Err(fail(format!(
                "--strategy {strategy}: not in the run (it ran {})",
                self.config
                    .strategies
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if let StrategyName::Plugin(p) = &strategy {
            return Err(fail(format!(
                "--strategy {strategy}: plugin {p:?} keeps its memory in its own process, which a finished run no longer has; its contexts are in probes.csv and turns.csv"
            )));
        }
        let sc = self.scenario(ask.scenario)?;
        let last = sc.messages.len() as u32;
        if ask.turn > last || (ask.turn == 0 && ask.probe.is_none()) {
            return Err(fail(format!(
                "--turn {}: {} has messages 1 to {last}",
                ask.turn, sc.name
            )));
        }
        let probe = match ask.probe {
            Some(id) => {
                let Some(i) = sc.probes.iter().position(|p| p.id == id) else {
                    return Err(fail(format!("--probe {id:?}: not a probe of {}", sc.name)));
                };
                Some(i)
            }
            None => None,
        };
        let ns = super::namespace(&sc.name, strategy.as_str(), ask.repeat);
        let (t, summary) = self
            .store
            .load_at(&ns, ask.turn)
            .map_err(|e| fail(e.to_string()))?;
        if t.len() < ask.turn as usize {
            return Err(fail(format!(
                "{}/{strategy}, replay {}: the run's memory holds {} of its messages, not {} (a replay that failed or was never run)",
                sc.name,
                ask.repeat,
                t.len(),
                ask.turn
            )));
        }
        let Models {
            tok,
            context_window,
            backend,
            params,
        } = self.models()?;
        let tok = *tok;
        let mut env = Env::new(tok, backend, params, &sc.system_prompt, false);
        let mut memory = memory::create(&strategy, params, &t, summary);
        let (call, query, context) = match probe {
            Some(i) => {
                let p = &sc.probes[i];
                let embedding = memory.needs_embeddings().then(|| {
                    let tokens = tok.count(&p.question);
                    env.embed(&p.question, None, tokens)
                });
                let q = Query {
                    probe: Some(&p.id),
                    text: &p.question,
                    embedding,
                };
                let ctx = memory.build(&t, Some(&q), &mut env);
                (true, Some(p.question.to_string()), ctx)
            }
            None if ask.turn > 0 && sc.calls_after(ask.turn) => {
                // As the replay asked: after a tool's result, the request
                // is still the user's.
                let at = t.get(ask.turn as usize - 1);
                let asked = match at.role {
                    Role::Tool => t.entries().iter().rev().find(|e| e.role == Role::User),
                    _ => Some(at),
                }
                .unwrap_or(at);
                let q = Query {
                    probe: None,
                    text: asked.content(),
                    embedding: asked.embedding.clone(),
                };
                let ctx = memory.build(&t, Some(&q), &mut env);
                (true, Some(asked.content().to_string()), ctx)
            }
            None => (false, None, memory.build(&t, None, &mut env)),
        };
        Ok(Inspected {
            strategy,
            repeat: ask.repeat,
            turn: ask.turn,
            call,
            probe: probe.map(|i| sc.probes[i].id.to_string()),
            query,
            context,
            budget: self.config.memory.max_context_tokens,
            context_window: *context_window,
            scenario: sc,
        })
    }
}
