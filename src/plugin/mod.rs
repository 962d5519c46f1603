//! Memories outside memeval, replayed over the plugin protocol
//! (docs/PLUGIN_PROTOCOL.md) as the strategies `plugin:NAME`: the
//! processes (or http endpoints) of each configured plugin, lent to the
//! replays that need one; the metering endpoint that counts a plugin's own
//! model calls; and [`PluginStrategy`], which speaks the protocol behind
//! the same [`crate::memory::Strategy`] trait as the built-in strategies,
//! so that a plugin is measured exactly like them.

mod affinity;
mod conn;
pub mod http;
pub mod meter;
mod strategy;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::backend::Backend;
use crate::config::{Config, PluginConfig};
use conn::{Conn, Log, Spawn};
pub use meter::{Meter, Metered};
pub use strategy::PluginStrategy;

/// The protocol version this memeval speaks.
pub const PROTOCOL: u32 = 1;

/// The plugins of one run, started when the run starts.
pub struct Plugins {
    by_name: BTreeMap<String, Arc<Plugin>>,
    /// Kept alive while the plugins are.
    _meter: Option<Arc<Meter>>,
}

/// Where a run's plugins live.
pub struct Setup<'a> {
    pub config: &'a Config,
    pub backend: &'a Backend,
    /// The run's folder: `plugins/NAME.log` and `plugins/NAME/state/`.
    pub run_dir: &'a Path,
    /// Where commands start (the configuration file's folder).
    pub command_dir: &'a Path,
}

impl Plugins {
    /// Starts the metering endpoint (when a plugin strategy is configured)
    /// and prepares each plugin; processes start when a replay needs one.
    pub fn start(s: &Setup<'_>) -> Result<Plugins, String> {
        let names: Vec<&str> = s
            .config
            .strategies
            .iter()
            .filter_map(|k| k.plugin())
            .collect();
        if names.is_empty() {
            return Ok(Plugins {
                by_name: BTreeMap::new(),
                _meter: None,
            });
        }
        let tok = s.config.tokenizer().map_err(|e| e.0)?;
        let context_window = s.config.context_window().map_err(|e| e.0)?;
        let meter = Arc::new(
            Meter::start(s.backend, tok, s.config.summary.max_summary_tokens)
                .map_err(|e| format!("cannot start the metering endpoint on 127.0.0.1: {e}"))?,
        );
        let logs = s.run_dir.join("plugins");
        std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
        let mut by_name = BTreeMap::new();
        for name in names {
            let config = s.config.plugins[name].clone();
            let path = logs.join(format!("{name}.log"));
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let hello = json!({
                "protocol": PROTOCOL,
                "memeval": env!("CARGO_PKG_VERSION"),
                "plugin": name,
                "params": config.params,
                "model": {
                    "name": s.config.model.name,
                    "encoding": tok.name(),
                    "context_window": context_window,
                    "max_context_tokens": s.config.memory.max_context_tokens,
                },
                // (Added to the protocol: what the metering endpoint's
                // embeddings are.)
                "embedder": {
                    "model": s.backend.model("embedder"),
                    "dim": s.backend.embedder.dim(),
                },
            });
            let plugin = Plugin {
                name: name.to_string(),
                timeout: Duration::from_millis(config.timeout_ms),
                log: Log {
                    file: Arc::new(Mutex::new(file)),
                    shown: format!("plugins/{name}.log"),
                },
                state_root: fresh_state(&logs.join(name)),
                command_dir: s.command_dir.to_path_buf(),
                hello: match hello {
                    Value::Object(m) => m,
                    _ => unreachable!("an object literal"),
                },
                seed: s.config.seed,
                key_env: s.config.openai.api_key_env.clone(),
                meter: meter.clone(),
                pool: Mutex::new(Pool::default()),
                returned: Condvar::new(),
                started: std::sync::atomic::AtomicU64::new(0),
                identity: OnceLock::new(),
                config,
            };
            by_name.insert(name.to_string(), Arc::new(plugin));
        }
        Ok(Plugins {
            by_name,
            _meter: Some(meter),
        })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Plugin>> {
        self.by_name.get(name)
    }

    /// What each plugin said it is (`hello`'s reply), for metadata.json.
    pub fn identities(&self) -> BTreeMap<String, Value> {
        self.by_name
            .iter()
            .filter_map(|(n, p)| p.identity.get().map(|v| (n.clone(), v.clone())))
            .collect()
    }

    /// Ends every idle process (`shutdown`).
    pub fn shutdown(&self) {
        for p in self.by_name.values() {
            let idle = std::mem::take(&mut p.pool.lock().expect("no panic holds a pool").idle);
            for proc in idle {
                proc.end(&p.meter);
            }
        }
    }
}

impl Drop for Plugins {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One configured plugin and its processes.
pub struct Plugin {
    pub name: String,
    config: PluginConfig,
    timeout: Duration,
    log: Log,
    state_root: PathBuf,
    command_dir: PathBuf,
    /// `hello`'s fields common to every process.
    hello: Map<String, Value>,
    seed: u64,
    /// The variable holding the real API key, kept from the process.
    key_env: String,
    meter: Arc<Meter>,
    pool: Mutex<Pool>,
    returned: Condvar,
    started: std::sync::atomic::AtomicU64,
    identity: OnceLock<Value>,
}

#[derive(Default)]
struct Pool {
    idle: Vec<Proc>,
    /// Processes in existence, idle or lent.
    live: usize,
}

/// A process (or http client) with its metering tab, serving the replays
/// of one replay number (its seed and state folder are that replay's).
pub struct Proc {
    conn: Conn,
    repeat: u32,
    token: String,
    tab: Arc<Mutex<Metered>>,
}

impl Proc {
    fn end(self, meter: &Meter) {
        meter.close_tab(&self.token);
        self.conn.shutdown();
    }
}

impl Plugin {
    /// Starts a process (or connects) and greets it.
    fn start(&self, repeat: u32) -> Result<Proc, String> {
        let n = self
            .started
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let (token, tab) = self.meter.open_tab();
        let state = self.state_root.join(format!("r{repeat}"));
        std::fs::create_dir_all(&state).map_err(|e| format!("{}: {e}", state.display()))?;
        let state = std::fs::canonicalize(&state).unwrap_or(state);
        let mut conn = match &self.config.url {
            Some(url) => Conn::http(url, self.timeout, self.log.clone())?,
            None => {
                let mut remove_env = vec!["OPENAI_API_KEY".to_string()];
                if !self.key_env.is_empty() {
                    remove_env.push(self.key_env.clone());
                }
                Conn::spawn(
                    &Spawn {
                        command: &self.config.command,
                        dir: &self.command_dir,
                        env: vec![
                            ("OPENAI_BASE_URL".into(), self.meter.base_url.clone()),
                            ("OPENAI_API_KEY".into(), token.clone()),
                            ("MEMEVAL_PLUGIN".into(), self.name.clone()),
                        ],
                        remove_env,
                        label: format!("process {n}"),
                    },
                    self.timeout,
                    self.log.clone(),
                )?
            }
        };
        let mut hello = self.hello.clone();
        hello.insert(
            "seed".into(),
            json!(self.seed.wrapping_add(u64::from(repeat)) - 1),
        );
        hello.insert("state_dir".into(), json!(state.display().to_string()));
        hello.insert("openai_base_url".into(), json!(self.meter.base_url));
        hello.insert("openai_api_key".into(), json!(token));
        let reply = conn
            .call("hello", hello)
            .map_err(|e| format!("{e}{}", with_tail(&conn)))?;
        let reply: Map<String, Value> = serde_json::from_str(&reply).unwrap_or_default();
        conn.pipeline = !conn.is_http()
            && reply
                .get("capabilities")
                .and_then(|c| c.get("pipeline"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
        let _ = self.identity.set(json!({
            "name": reply.get("name").cloned().unwrap_or(Value::Null),
            "version": reply.get("version").cloned().unwrap_or(Value::Null),
            "capabilities": reply.get("capabilities").cloned().unwrap_or(Value::Null),
            "transport": if self.config.url.is_some() { "http" } else { "stdio" },
        }));
        Ok(Proc {
            conn,
            repeat,
            token,
            tab,
        })
    }

    /// A process for a replay of number `repeat`: an idle one of that
    /// number, else a new one while there are fewer than `processes`, else
    /// an idle one of another number ended and replaced; else wait.
    pub fn lease(self: &Arc<Self>, repeat: u32) -> Lease {
        let cap = self.config.processes as usize;
        let mut pool = self.pool.lock().expect("no panic holds a pool");
        let replaced = loop {
            if let Some(i) = pool.idle.iter().position(|p| p.repeat == repeat) {
                let proc = pool.idle.swap_remove(i);
                return Lease::new(self, repeat, Some(proc));
            }
            if pool.live < cap {
                pool.live += 1;
                break None;
            }
            if let Some(other) = pool.idle.pop() {
                break Some(other);
            }
            pool = self.returned.wait(pool).expect("no panic holds a pool");
        };
        drop(pool);
        if let Some(p) = replaced {
            p.end(&self.meter);
        }
        // Started at first use, so that a failure to start is the replay's.
        Lease::new(self, repeat, None)
    }

    fn give_back(&self, proc: Option<Proc>) {
        let mut pool = self.pool.lock().expect("no panic holds a pool");
        match proc {
            Some(p) if p.conn.broken.is_none() => pool.idle.push(p),
            other => {
                drop(other);
                pool.live -= 1;
            }
        }
        drop(pool);
        self.returned.notify_one();
    }
}

/// Checks, before anything runs, that every plugin the strategies name can
/// be started: its program exists (a path, from `command_dir`, or a name
/// on `PATH`). A worded error otherwise.
pub fn check_commands(config: &Config, command_dir: &Path) -> Result<(), String> {
    for name in config.strategies.iter().filter_map(|k| k.plugin()) {
        let Some(program) = config.plugins[name].command.first() else {
            continue;
        };
        let found = if program.contains('/') {
            command_dir.join(program).is_file()
        } else {
            std::env::var_os("PATH").is_some_and(|paths| {
                std::env::split_paths(&paths).any(|d| d.join(program).is_file())
            })
        };
        if !found {
            return Err(format!(
                "plugins.{name}.command: no program {program:?} (from {}, or on PATH)",
                command_dir.display()
            ));
        }
    }
    Ok(())
}

/// A state folder no attempt of this run has used: `state`, else `state.2`,
/// `state.3`... A resumed run replays its unfinished replays from the
/// start, so their plugin must not find what an interrupted attempt
/// stored (finished replays are not replayed; their storage stays).
fn fresh_state(dir: &Path) -> PathBuf {
    let first = dir.join("state");
    if !first.exists() {
        return first;
    }
    (2u32..)
        .map(|n| dir.join(format!("state.{n}")))
        .find(|p| !p.exists())
        .expect("a free name")
}

fn with_tail(conn: &Conn) -> String {
    let t = conn.tail();
    if t.is_empty() { t } else { format!("\n  {t}") }
}

/// A plugin process lent to a replay (or to a lane of interleaved
/// replays); given back when dropped.
pub struct Lease {
    plugin: Arc<Plugin>,
    repeat: u32,
    proc: Option<Proc>,
    /// Set when starting a process failed: every later request fails too.
    failed: Option<String>,
    /// The thread that talks to the process and the process, on one CPU:
    /// which process and thread.
    pin: Option<(u32, std::thread::ThreadId, affinity::Pin)>,
}

impl Lease {
    fn new(plugin: &Arc<Plugin>, repeat: u32, proc: Option<Proc>) -> Lease {
        Lease {
            plugin: plugin.clone(),
            repeat,
            proc,
            failed: None,
            pin: None,
        }
    }

    /// The process, started if it is not yet.
    fn proc(&mut self) -> Result<&mut Proc, String> {
        if let Some(f) = &self.failed {
            return Err(f.clone());
        }
        if self.proc.is_none() {
            match self.plugin.start(self.repeat) {
                Ok(p) => self.proc = Some(p),
                Err(e) => {
                    self.failed = Some(format!("starting the plugin: {e}"));
                    return Err(self.failed.clone().expect("just set"));
                }
            }
        }
        let proc = self.proc.as_mut().expect("started above");
        if self.plugin.config.pin_cpu
            && let Some(pid) = proc.conn.pid()
        {
            let thread = std::thread::current().id();
            if !matches!(&self.pin, Some((p, t, _)) if *p == pid && *t == thread) {
                // The previous pair's thread gets its CPUs back first.
                self.pin = None;
                self.pin = Some((pid, thread, affinity::Pin::pair(pid)));
            }
        }
        Ok(proc)
    }

    /// Ends the process and starts a fresh one (which opens each user
    /// again at its next request), after flushing every user it holds
    /// besides `flushed` (which the caller has flushed).
    fn restart(&mut self, flushed: &str) -> Result<(), String> {
        let Some(mut old) = self.proc.take() else {
            return Ok(());
        };
        let users: Vec<String> = old
            .conn
            .open
            .iter()
            .filter(|u| *u != flushed)
            .cloned()
            .collect();
        for u in users {
            let mut m = Map::new();
            m.insert("user".into(), json!(u));
            old.conn.call("flush", m)?;
        }
        if old.conn.is_http() {
            // A service is not memeval's to end: a new connection, greeted
            // again, stands for the fresh process.
            self.plugin.meter.close_tab(&old.token);
            drop(old);
        } else {
            old.end(&self.plugin.meter);
        }
        self.proc().map(|_| ())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.pin = None;
        self.plugin.give_back(self.proc.take());
    }
}

/// A lease shared by the replays of one lane.
pub type SharedLease = Arc<Mutex<Lease>>;

/// Leases a process of `plugin` for replays of number `repeat`.
pub fn lease(plugin: &Arc<Plugin>, repeat: u32) -> SharedLease {
    Arc::new(Mutex::new(plugin.lease(repeat)))
}
