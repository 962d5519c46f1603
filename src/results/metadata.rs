//! The run's metadata: what made its outputs, written beside them
//! (metadata.json) and inside results.json.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, Serializer};

use crate::config::Config;

/// Version of the output files' layout.
pub const OUTPUT_FORMAT: u32 = 1;

/// metadata.json's `answers` for the offline backend's responder.
pub const EXTRACTIVE_BASELINE: &str = "extractive-baseline";

/// The run's metadata, written beside every output and inside results.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metadata {
    pub memeval_version: Cow<'static, str>,
    pub format_version: u32,
    pub seed: u64,
    pub backend: String,
    pub chat_model: String,
    pub encoding: Cow<'static, str>,
    pub context_window: u32,
    pub models: BTreeMap<Cow<'static, str>, String>,
    /// The local embedder's model, when `embedder = "local"`: its folder,
    /// the SHA-256 of its weights, dimensions, `max_seq_length`, pooling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedder: Option<serde_json::Value>,
    pub strategies: Vec<String>,
    /// Who answered the probes: `model` (a chat model) or
    /// `extractive-baseline` (the offline backend's responder, which picks
    /// a context sentence by word overlap: its answers' accuracy is a
    /// baseline, not a model's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<String>,
    /// The full configuration, defaults included (without the settings of
    /// a backend not in use, which are noise in the record).
    #[serde(serialize_with = "record")]
    pub config: Config,
    /// Values the configuration leaves to the backend, as resolved.
    pub resolved: BTreeMap<Cow<'static, str>, serde_json::Value>,
    pub scenarios: Vec<ScenarioMeta>,
    /// False when timing columns were zeroed for byte-identical outputs.
    pub timings: bool,
    /// Replays of each scenario and strategy (`--repeat`).
    pub repeats: u32,
    /// `K/N` for a run of one shard of the scenarios (`--shard`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// True for the outputs of an interrupted run (Ctrl-C): only the
    /// replays that had finished; `memeval run --resume` completes them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    /// What each plugin said it is (its `hello` reply: name, version,
    /// capabilities) and its transport, by plugin name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub plugins: BTreeMap<String, serde_json::Value>,
    /// Replays that could not finish (a plugin's fault), with why: their
    /// rows are in no output, and the run exits with status 4.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<FailedReplay>,
}

/// A replay that could not finish.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedReplay {
    pub scenario: String,
    pub strategy: String,
    pub repeat: u32,
    pub error: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioMeta {
    pub name: String,
    pub user: String,
    pub file: String,
    pub sha256: String,
    pub messages: usize,
    pub probes: usize,
    /// An imported scenario's origin, with what its importer repaired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<crate::scenario::Source>,
}

/// The configuration as recorded: `[openai]` only where it is used.
fn record<S: Serializer>(config: &Config, s: S) -> Result<S::Ok, S::Error> {
    let mut v = serde_json::to_value(config).map_err(serde::ser::Error::custom)?;
    if let Some(m) = v.as_object_mut() {
        if config.backend != "openai" {
            m.remove("openai");
        }
        if config.embedder != "local" {
            m.remove("local_embedder");
        }
    }
    v.serialize(s)
}

impl Metadata {
    /// Whether the probes' answers are the offline extractive baseline's.
    pub fn extractive_answers(&self) -> bool {
        self.answers.as_deref() == Some(EXTRACTIVE_BASELINE)
            || self.models.get("responder").map(String::as_str) == Some("offline-extractive")
    }

    /// The configuration as it is recorded in the run's files.
    pub fn recorded_config(&self) -> serde_json::Value {
        record(&self.config, serde_json::value::Serializer).unwrap_or_default()
    }
}
