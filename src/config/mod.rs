//! Run configuration: a TOML file, overridden by `--set key=value` and
//! flags. Precedence: flags (and their environment variables) > `--set` >
//! the file > the defaults below, which follow the reference tutorial.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub mod prices;
mod sections;
mod strategy;

use crate::text::suggestion;
use crate::tokens::{self, Tokenizer};
pub use prices::Price;
pub use sections::*;
pub use strategy::StrategyName;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Seed of every random choice (summary quality sampling).
    pub seed: u64,
    /// Strategies to run, by name.
    pub strategies: Vec<StrategyName>,
    /// `offline` (embedded, deterministic, free) or `openai` (any
    /// OpenAI-compatible endpoint, configured under `[openai]`).
    pub backend: String,
    /// Where embeddings come from: `backend` (the backend's own: the
    /// hashing embedder offline, `openai.embeddings` for `openai`) or
    /// `local` (a sentence-transformers model in process, configured
    /// under `[local_embedder]`), whatever the backend.
    pub embedder: String,
    pub model: ModelConfig,
    pub memory: MemoryConfig,
    pub window: WindowConfig,
    pub summary: SummaryConfig,
    pub vector: VectorConfig,
    pub offline: OfflineConfig,
    pub local_embedder: LocalEmbedderConfig,
    pub openai: OpenAiConfig,
    /// Prices per million tokens by model name, over the built-in list.
    pub prices: BTreeMap<String, Price>,
    /// The user memory registry of interleaved replays.
    pub registry: RegistryConfig,
    /// Thresholds of `memeval gate`.
    pub gate: GateConfig,
    /// Memories outside memeval, by name: the strategies `plugin:NAME`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub plugins: BTreeMap<String, PluginConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seed: 42,
            strategies: StrategyName::ALL.to_vec(),
            backend: "offline".into(),
            embedder: "backend".into(),
            model: ModelConfig::default(),
            memory: MemoryConfig::default(),
            window: WindowConfig::default(),
            summary: SummaryConfig::default(),
            vector: VectorConfig::default(),
            offline: OfflineConfig::default(),
            local_embedder: LocalEmbedderConfig::default(),
            openai: OpenAiConfig::default(),
            prices: BTreeMap::new(),
            registry: RegistryConfig::default(),
            gate: GateConfig::default(),
            plugins: BTreeMap::new(),
        }
    }
}

/// The highest price accepted, in USD per million tokens.
const MAX_PRICE: f64 = 1e6;

/// A number as people write it: `10000000`, `0.001`, `1e308`.
fn number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x:?}")
    }
}

/// A configuration problem, already worded for the user.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Reads the file (if any), applies `key=value` overrides in order, and
/// validates the result.
pub fn load(file: Option<&Path>, overrides: &[String]) -> Result<Config, ConfigError> {
    let mut table = match file {
        None => toml::Table::new(),
        Some(path) => {
            let text =
                crate::files::read_text_capped(path, crate::files::cap::CONFIG, "configuration")
                    .map_err(|e| ConfigError(e.to_string()))?;
            let table: toml::Table = toml::from_str(&text).map_err(|e| {
                ConfigError(format!("{}: {}", path.display(), e.to_string().trim()))
            })?;
            // Check the file alone first, so its errors name the file.
            check_keys(&table, path.display().to_string().as_str())?;
            toml::Value::Table(table.clone())
                .try_into::<Config>()
                .map_err(|e| {
                    ConfigError(format!("{}: {}", path.display(), e.to_string().trim()))
                })?;
            table
        }
    };
    for item in overrides {
        apply_override(&mut table, item)?;
    }
    check_keys(&table, "--set")?;
    let mut config: Config = toml::Value::Table(table)
        .try_into()
        .map_err(|e| ConfigError(format!("configuration: {}", e.to_string().trim())))?;
    // Credentials in the URL are never sent (the key goes in the
    // Authorization header, which takes precedence), and would otherwise
    // be written wherever the configuration is: removed here, first.
    config.openai.base_url = without_credentials(&config.openai.base_url);
    config.validate()?;
    Ok(config)
}

/// `url` without the `user:password@` part of its authority, if any.
pub fn without_credentials(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    match url[start..end].rfind('@') {
        Some(at) => format!("{}{}", &url[..start], &url[start + at + 1..]),
        None => url.to_string(),
    }
}

/// Applies one `section.key=value` override; the value is read as TOML
/// (numbers, booleans, arrays), or as a plain string if it is not TOML.
pub fn apply_override(table: &mut toml::Table, item: &str) -> Result<(), ConfigError> {
    let (key, raw) = item.split_once('=').ok_or_else(|| {
        ConfigError(format!(
            "--set {item:?}: expected KEY=VALUE, e.g. summary.trigger_tokens=2000"
        ))
    })?;
    let key = key.trim();
    let raw = raw.trim();
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(ConfigError(format!(
            "--set {item:?}: malformed key {key:?}"
        )));
    }
    let mut cur = table;
    for part in &parts[..parts.len() - 1] {
        let entry = cur
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry.as_table_mut().ok_or_else(|| {
            ConfigError(format!(
                "--set {item:?}: {part:?} is a value, not a section"
            ))
        })?;
    }
    cur.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

/// The keys of a section (`""`: the top level), read from the
/// configuration's own definition (its defaults, serialized), so that the
/// list of valid keys and "did you mean" cannot drift from the types.
/// `None` for a section whose keys are the user's (`[prices]`).
fn known_keys(schema: &serde_json::Value, section: &str) -> Option<Vec<String>> {
    let table = match section {
        "" => schema.as_object()?,
        s => schema.get(s)?.as_object().filter(|t| !t.is_empty())?,
    };
    Some(table.keys().cloned().collect())
}

/// The configuration's defaults, serialized once per check: the schema
/// [`known_keys`] reads.
fn schema() -> serde_json::Value {
    let mut schema = serde_json::to_value(Config::default()).unwrap_or_default();
    // Left out of outputs when empty, as it is by default; its sections are
    // the user's, each checked by its own type.
    schema["plugins"] = serde_json::json!({});
    schema
}

fn check_keys(table: &toml::Table, origin: &str) -> Result<(), ConfigError> {
    check_section(table, &schema(), "", origin)
}

fn check_section(
    table: &toml::Table,
    schema: &serde_json::Value,
    section: &str,
    origin: &str,
) -> Result<(), ConfigError> {
    let Some(known) = known_keys(schema, section) else {
        return Ok(());
    };
    for (k, v) in table {
        let full = if section.is_empty() {
            k.clone()
        } else {
            format!("{section}.{k}")
        };
        if !known.contains(k) {
            let names: Vec<&str> = known.iter().map(String::as_str).collect();
            let hint = suggestion(k, &names);
            return Err(ConfigError(format!(
                "{origin}: unknown parameter {full:?}{hint} (known here: {})",
                known.join(", ")
            )));
        }
        if section.is_empty()
            && let Some(t) = v.as_table()
        {
            check_section(t, schema, k, origin)?;
        }
    }
    Ok(())
}

impl Config {
    /// Every `plugin:NAME` strategy has its `[plugins.NAME]`, and every
    /// plugin one transport, with settings in range.
    fn validate_plugins(&self) -> Result<(), ConfigError> {
        let fail = |m: String| Err(ConfigError(m));
        for s in &self.strategies {
            if let Some(name) = s.plugin()
                && !self.plugins.contains_key(name)
            {
                let known: Vec<&str> = self.plugins.keys().map(String::as_str).collect();
                return fail(format!(
                    "strategy \"{s}\": no [plugins.{name}] section configures it{}",
                    suggestion(name, &known)
                ));
            }
        }
        for (name, p) in &self.plugins {
            if !strategy::is_plugin_name(name) {
                return fail(format!(
                    "[plugins.{name}]: a plugin's name is 1 to 64 letters, digits, '-' and '_'"
                ));
            }
            match (&p.command.is_empty(), &p.url) {
                (true, None) => {
                    return fail(format!(
                        "[plugins.{name}]: set command (stdio) or url (http)"
                    ));
                }
                (false, Some(_)) => {
                    return fail(format!(
                        "[plugins.{name}]: set command (stdio) or url (http), not both"
                    ));
                }
                (_, Some(u)) if !u.starts_with("http://") => {
                    return fail(format!(
                        "plugins.{name}.url: the http transport takes an http:// URL, not {u:?}"
                    ));
                }
                _ => {}
            }
            if p.command.first().is_some_and(|c| c.is_empty()) {
                return fail(format!("plugins.{name}.command: the program is empty"));
            }
            if !(1..=1024).contains(&p.processes) {
                return fail(format!(
                    "plugins.{name}.processes is between 1 and 1024, not {}",
                    p.processes
                ));
            }
            if !(1..=86_400_000).contains(&p.timeout_ms) {
                return fail(format!(
                    "plugins.{name}.timeout_ms is between 1 and 86400000, not {}",
                    p.timeout_ms
                ));
            }
        }
        Ok(())
    }

    /// The tokenizer of the configured model.
    pub fn tokenizer(&self) -> Result<Tokenizer, ConfigError> {
        let name = match &self.model.encoding {
            Some(e) => e.clone(),
            None => Tokenizer::encoding_for_model(&self.model.name)
                .ok_or_else(|| {
                    ConfigError(format!(
                        "model {:?} has no known tokenizer: set model.encoding (one of {})",
                        self.model.name,
                        tokens::ENCODINGS.join(", ")
                    ))
                })?
                .to_string(),
        };
        Tokenizer::by_encoding(&name).map_err(|e| ConfigError(format!("model.encoding: {e}")))
    }

    /// The model's context window in tokens.
    pub fn context_window(&self) -> Result<u32, ConfigError> {
        self.model
            .context_window
            .or_else(|| tokens::context_window(&self.model.name))
            .ok_or_else(|| {
                ConfigError(format!(
                    "model {:?} has no known context window: set model.context_window",
                    self.model.name
                ))
            })
    }

    /// Every numeric setting with its range: (key, value, min, max).
    pub fn ranges(&self) -> Vec<(&'static str, f64, f64, f64)> {
        let (v, o) = (&self.vector, &self.openai);
        let n = |x: u32| f64::from(x);
        const TOKENS: f64 = 10_000_000.0;
        let mut out = vec![
            (
                "memory.max_context_tokens",
                n(self.memory.max_context_tokens),
                1.0,
                TOKENS,
            ),
            ("window.max_tokens", n(self.window.max_tokens), 1.0, TOKENS),
            (
                "summary.trigger_tokens",
                n(self.summary.trigger_tokens),
                1.0,
                TOKENS,
            ),
            (
                "summary.max_summary_tokens",
                n(self.summary.max_summary_tokens),
                1.0,
                TOKENS,
            ),
            (
                "summary.quality_samples",
                n(self.summary.quality_samples),
                0.0,
                100.0,
            ),
            (
                "vector.buffer_message_limit",
                n(v.buffer_message_limit),
                1.0,
                1e6,
            ),
            ("vector.top_k", n(v.top_k), 1.0, 10_000.0),
            ("vector.max_retrieved", n(v.max_retrieved), 1.0, 10_000.0),
            ("vector.hnsw_threshold", n(v.hnsw_threshold), 0.0, 1e8),
            ("vector.ef_search", n(v.ef_search), 1.0, 100_000.0),
            ("vector.embed_lag", n(v.embed_lag), 0.0, 1e6),
            (
                "offline.embedding_dim",
                n(self.offline.embedding_dim),
                1.0,
                65_536.0,
            ),
            ("openai.embed_batch", n(o.embed_batch), 1.0, 2048.0),
            (
                "local_embedder.batch",
                n(self.local_embedder.batch),
                1.0,
                1024.0,
            ),
            ("openai.timeout_secs", o.timeout_secs, 0.001, 3600.0),
            ("openai.max_retries", n(o.max_retries), 0.0, 20.0),
            (
                "openai.retry_backoff_ms",
                n(o.retry_backoff_ms),
                0.0,
                60_000.0,
            ),
            ("openai.max_concurrency", n(o.max_concurrency), 1.0, 1024.0),
            (
                "openai.reply_temperature",
                f64::from(o.reply_temperature),
                0.0,
                2.0,
            ),
            ("openai.reply_max_tokens", n(o.reply_max_tokens), 1.0, 1e6),
            (
                "registry.max_active_users",
                n(self.registry.max_active_users),
                0.0,
                1e7,
            ),
            (
                "registry.scenario_cache_mb",
                n(self.registry.scenario_cache_mb),
                0.0,
                1e6,
            ),
        ];
        if let Some(w) = self.model.context_window {
            out.push(("model.context_window", n(w), 16.0, 1e8));
        }
        if let Some(d) = o.embedding_dimensions {
            out.push(("openai.embedding_dimensions", n(d), 1.0, 65_536.0));
        }
        out.extend(self.gate.ranges());
        out
    }

    /// Checks every value against its range and the others it depends on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |m: String| Err(ConfigError(m));
        if self.strategies.is_empty() {
            return fail("strategies: name at least one strategy".into());
        }
        for (i, s) in self.strategies.iter().enumerate() {
            if self.strategies[..i].contains(s) {
                return fail(format!("strategy {:?} is named twice", s.as_str()));
            }
        }
        const BACKENDS: &[&str] = &["offline", "openai"];
        if !BACKENDS.contains(&self.backend.as_str()) {
            let hint = suggestion(&self.backend, BACKENDS);
            return fail(format!(
                "unknown backend {:?}{hint} (known: {})",
                self.backend,
                BACKENDS.join(", ")
            ));
        }
        match self.embedder.as_str() {
            "backend" => {}
            "local" if self.local_embedder.model.is_none() => {
                return fail(
                    "embedder = \"local\" needs local_embedder.model, the model's folder \
                     (the README's \"A real embedding model\" fetches all-MiniLM-L6-v2)"
                        .into(),
                );
            }
            "local" if !cfg!(feature = "local-embedder") => {
                return fail(
                    "embedder = \"local\": this memeval was built without the local embedder \
                     (cargo feature local-embedder)"
                        .into(),
                );
            }
            "local" => {}
            other => {
                return fail(format!(
                    "embedder is \"backend\" or \"local\", not {other:?}{}",
                    suggestion(other, &["backend", "local"])
                ));
            }
        }
        let o = &self.openai;
        for (i, m) in o.extra_judges.iter().enumerate() {
            if m.trim().is_empty() || o.extra_judges[..i].contains(m) {
                return fail(format!(
                    "openai.extra_judges: {m:?} is empty or named twice"
                ));
            }
        }
        if !["api", "offline"].contains(&o.embeddings.as_str()) {
            return fail(format!(
                "openai.embeddings is \"api\" or \"offline\", not {:?}",
                o.embeddings
            ));
        }
        if !["max_tokens", "max_completion_tokens"].contains(&o.token_limit_field.as_str()) {
            return fail(format!(
                "openai.token_limit_field is \"max_tokens\" or \"max_completion_tokens\", not {:?}",
                o.token_limit_field
            ));
        }
        for (name, p) in &self.prices {
            for (side, v) in [("input", p.input), ("output", p.output)] {
                if !(0.0..=MAX_PRICE).contains(&v) {
                    return fail(format!(
                        "prices.{name}.{side} is a price in USD per million tokens, between 0 and {}, not {v}",
                        number(MAX_PRICE)
                    ));
                }
            }
        }
        // Every numeric setting has a range, so that no value that passes
        // here can overflow, allocate without bound or wait forever later.
        for (name, value, min, max) in self.ranges() {
            if !(value >= min && value <= max) {
                return fail(format!(
                    "{name} is between {} and {}, not {}",
                    number(min),
                    number(max),
                    number(value)
                ));
            }
        }
        if !(self.summary.keep_ratio > 0.0 && self.summary.keep_ratio < 1.0) {
            return fail(format!(
                "summary.keep_ratio is the share of the buffer kept raw, above 0 and below 1, not {}",
                self.summary.keep_ratio
            ));
        }
        if let Some(s) = self.vector.min_score
            && !(-1.0..=1.0).contains(&s)
        {
            return fail(format!(
                "vector.min_score is a cosine similarity between -1 and 1, not {s}"
            ));
        }
        self.validate_plugins()?;
        let plugins: Vec<String> = self.plugins.keys().map(|n| format!("plugin:{n}")).collect();
        let mut names: Vec<&str> = StrategyName::NAMES.to_vec();
        names.extend(plugins.iter().map(String::as_str));
        self.gate.validate(&names).map_err(ConfigError)?;
        self.tokenizer()?;
        let window = self.context_window()?;
        if self.summary.trigger_tokens >= window {
            return fail(format!(
                "summary.trigger_tokens ({}) must be below the model's context window ({window})",
                self.summary.trigger_tokens
            ));
        }
        if self.summary.max_summary_tokens >= self.summary.trigger_tokens {
            return fail(format!(
                "summary.max_summary_tokens ({}) must be below summary.trigger_tokens ({})",
                self.summary.max_summary_tokens, self.summary.trigger_tokens
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_tutorial() {
        let c = load(None, &[]).unwrap();
        assert_eq!(c.summary.trigger_tokens, 4000);
        assert_eq!(c.summary.max_summary_tokens, 500);
        assert_eq!(c.vector.buffer_message_limit, 20);
        assert_eq!(c.vector.top_k, 5);
        assert_eq!(c.memory.max_context_tokens, 8000);
        assert_eq!(c.context_window().unwrap(), 128_000);
    }

    #[test]
    fn overrides_apply_in_order_and_typed() {
        let c = load(
            None,
            &[
                "summary.trigger_tokens=2000".into(),
                "vector.keyword_fallback=true".into(),
                "model.name=gpt-4".into(),
                "strategies=[\"window\",\"hybrid\"]".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.summary.trigger_tokens, 2000);
        assert!(c.vector.keyword_fallback);
        assert_eq!(c.tokenizer().unwrap().name(), "cl100k_base");
        assert_eq!(c.strategies, [StrategyName::Window, StrategyName::Hybrid]);
    }

    #[test]
    fn bad_values_are_explained() {
        let cases = [
            ("summary.trigger_tokns=5", "did you mean \"trigger_tokens\""),
            ("summry.trigger_tokens=5", "did you mean \"summary\""),
            ("window.max_tokens=0", "between 1 and 10000000"),
            ("openai.timeout_secs=1e308", "between 0.001 and 3600"),
            ("openai.timeout_secs=nan", "openai.timeout_secs"),
            ("openai.retry_backoff_ms=4294967295", "between 0 and 60000"),
            ("offline.embedding_dim=4000000000", "between 1 and 65536"),
            ("prices.x={input=inf,output=1}", "between 0 and 1000000"),
            (
                "gate.max_token_increase_pct=inf",
                "gate.max_token_increase_pct",
            ),
            ("summary.trigger_tokens=-5", "summary.trigger_tokens"),
            ("summary.trigger_tokens=200000", "context window"),
            ("strategies=[\"windw\"]", "did you mean \"window\""),
            ("model.name=mystery", "no known tokenizer"),
            ("vector.min_score=3", "between -1 and 1"),
            ("summary.keep_ratio=1", "above 0 and below 1"),
            ("summary.keep_ratio=0", "above 0 and below 1"),
            ("nonsense", "KEY=VALUE"),
        ];
        for (set, want) in cases {
            let e = load(None, &[set.into()]).unwrap_err().0;
            assert!(e.contains(want), "{set}: {e}");
        }
    }

    #[test]
    fn every_key_of_every_section_is_known_and_nothing_else() {
        let schema = schema();
        let known_keys = |section| known_keys(&schema, section);
        let top = known_keys("").unwrap();
        for section in [
            "model", "memory", "window", "summary", "vector", "offline", "openai", "registry",
            "gate",
        ] {
            assert!(top.iter().any(|k| k == section), "{section}");
            assert!(known_keys(section).is_some(), "{section}");
        }
        // Optional keys (None by default) are known too.
        assert!(
            known_keys("model")
                .unwrap()
                .contains(&"context_window".to_string())
        );
        assert!(
            known_keys("openai")
                .unwrap()
                .contains(&"require_key".to_string())
        );
        assert_eq!(known_keys("prices"), None);
        let e = load(None, &["vector.topk=3".into()]).unwrap_err().0;
        assert!(e.contains("did you mean \"top_k\""), "{e}");
    }

    #[test]
    fn plugins_are_checked_and_named_as_strategies() {
        let ok = load(
            None,
            &[
                "strategies=[\"window\", \"plugin:mine\"]".into(),
                "plugins.mine.command=[\"python3\", \"mine.py\"]".into(),
                "plugins.mine.params.max_tokens=300".into(),
                "gate.min_recall={ \"plugin:mine\" = 0.5 }".into(),
            ],
        )
        .unwrap();
        assert_eq!(ok.strategies[1].plugin(), Some("mine"));
        assert_eq!(ok.plugins["mine"].params["max_tokens"], 300);
        assert_eq!(ok.plugins["mine"].processes, 1);
        let with = |more: &[&str]| {
            let mut sets = vec!["strategies=[\"plugin:mine\"]".to_string()];
            sets.extend(more.iter().map(|s| s.to_string()));
            load(None, &sets).unwrap_err().0
        };
        for (more, want) in [
            (&[][..], "no [plugins.mine] section"),
            (
                &["plugins.mine.processes=2"][..],
                "set command (stdio) or url (http)",
            ),
            (
                &[
                    "plugins.mine.command=[\"x\"]",
                    "plugins.mine.url=\"http://h:1/\"",
                ][..],
                "not both",
            ),
            (&["plugins.mine.url=\"https://h/\""][..], "http:// URL"),
            (
                &["plugins.mine.command=[\"x\"]", "plugins.mine.processes=0"][..],
                "between 1 and 1024",
            ),
            (
                &["plugins.mine.command=[\"x\"]", "plugins.mine.timeout_ms=0"][..],
                "timeout_ms",
            ),
            (
                &[
                    "plugins.mine.command=[\"x\"]",
                    "plugins.mine.comand=[\"y\"]",
                ][..],
                "comand",
            ),
        ] {
            let e = with(more);
            assert!(e.contains(want), "{more:?}: {e}");
        }
    }

    #[test]
    fn credentials_never_stay_in_the_base_url() {
        for (given, want) in [
            ("http://user:sk-secret@host:8080/v1", "http://host:8080/v1"),
            ("https://sk-secret@host/v1?x=1", "https://host/v1?x=1"),
            ("http://a@b:c@host", "http://host"),
            ("http://host/v1/x@y", "http://host/v1/x@y"),
            ("https://api.openai.com/v1", "https://api.openai.com/v1"),
        ] {
            assert_eq!(without_credentials(given), want);
        }
        let c = load(
            None,
            &["openai.base_url=\"http://u:sk-abc@127.0.0.1:9/v1\"".into()],
        )
        .unwrap();
        assert_eq!(c.openai.base_url, "http://127.0.0.1:9/v1");
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memeval.toml");
        std::fs::write(&path, "[summary]\ntrigger_tokens = \"lots\"\n").unwrap();
        let e = load(Some(&path), &[]).unwrap_err().0;
        assert!(e.contains("memeval.toml"), "{e}");
        std::fs::write(&path, "[summary]\ntrigger_tokens = 3000\n").unwrap();
        assert_eq!(load(Some(&path), &[]).unwrap().summary.trigger_tokens, 3000);
    }
}
