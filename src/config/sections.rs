//! The sections of the configuration, each with the defaults that follow
//! the reference tutorial: `[model]`, `[memory]`, `[window]`, `[summary]`,
//! `[vector]`, `[registry]`, `[offline]`, `[local_embedder]`, `[openai]` and
//! `[gate]`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// The chat model whose tokenizer and context window apply.
    pub name: String,
    /// Tokenizer encoding; by default the model's own.
    pub encoding: Option<String>,
    /// Context window in tokens; by default the model's published window.
    pub context_window: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// Token budget of a call's whole context; turns above it are reported.
    pub max_context_tokens: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowConfig {
    /// Budget of the raw recent messages (overheads included).
    pub max_tokens: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SummaryConfig {
    /// Summarize when the buffer exceeds this many tokens.
    pub trigger_tokens: u32,
    /// Longest summary, in tokens.
    pub max_summary_tokens: u32,
    /// Covered messages sampled to score each summary.
    pub quality_samples: u32,
    /// Share of the buffer's messages kept raw when it is folded (the
    /// tutorial keeps the newer half: 0.5). Lower keeps a smaller buffer.
    pub keep_ratio: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VectorConfig {
    /// Raw recent messages kept by `vector`; retrieval starts past this many.
    pub buffer_message_limit: u32,
    /// Nearest neighbours fetched per query.
    pub top_k: u32,
    /// Lowest similarity accepted; by default the embedder's calibrated value
    /// (0.75 for OpenAI embeddings as in the tutorial, 0.2 for the offline
    /// hashing embedder, whose lexical similarities run lower, 0.1 for the
    /// local embedder, chosen by a sweep with all-MiniLM-L6-v2).
    pub min_score: Option<f32>,
    /// At most this many retrieved messages enter the context.
    pub max_retrieved: u32,
    /// When nothing passes `min_score`, fall back to keyword/entity search
    /// (the tutorial's Mistake 6).
    pub keyword_fallback: bool,
    /// Indexes up to this size are searched exactly; larger ones by HNSW.
    pub hnsw_threshold: u32,
    /// HNSW search breadth.
    pub ef_search: u32,
    /// Index each message this many messages after it arrives, as when
    /// embedding runs off the request path (the tutorial's Mistake 5);
    /// 0 indexes it at once.
    pub embed_lag: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Users whose memory stays live at once (0: unlimited). With more
    /// scenarios than this, their messages are replayed interleaved, as a
    /// server sees them, and the least recently used memory is persisted,
    /// dropped, and reloaded from SQLite on its user's next message.
    pub max_active_users: u32,
    /// Megabytes of scenario files a run keeps loaded from its start to
    /// its end (the first read, up to this much). Any other scenario is
    /// kept in the run's spool file (compact, validated) and read back when
    /// a replay starts or its evicted user is taken back in, so that a
    /// population of any size is replayed in bounded memory. Speed only:
    /// outputs are the same either way.
    pub scenario_cache_mb: u32,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            max_active_users: 100,
            scenario_cache_mb: 64,
        }
    }
}

/// The local embedder (`embedder = "local"`): a sentence-transformers model
/// of the BERT family, run in process from its folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalEmbedderConfig {
    /// The model's folder (config.json, model.safetensors, tokenizer.json,
    /// modules.json, sentence_bert_config.json, the pooling's config.json).
    pub model: Option<PathBuf>,
    /// Texts per pass through the encoder (texts of one token count: no
    /// pass pads). A pass's products use every core.
    pub batch: u32,
    /// Vectors are kept in SQLite by the weights' hash and the text: a
    /// rerun embeds nothing.
    pub cache: bool,
    /// The cache's SQLite file (the `openai` backend's by default).
    pub cache_path: PathBuf,
}

impl Default for LocalEmbedderConfig {
    fn default() -> Self {
        LocalEmbedderConfig {
            model: None,
            batch: 32,
            cache: true,
            cache_path: PathBuf::from(".memeval/cache.sqlite"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OfflineConfig {
    /// Dimensions of the hashing embedder's vectors.
    pub embedding_dim: u32,
}

/// The `openai` backend: any OpenAI-compatible endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenAiConfig {
    /// The API's base URL, up to and including `/v1`.
    pub base_url: String,
    /// The environment variable holding the API key (never the key itself).
    pub api_key_env: String,
    /// A file holding the API key, read when the variable is unset.
    pub api_key_file: Option<PathBuf>,
    /// Refuse to start without a key (set false for a server that needs
    /// none, such as a local one).
    pub require_key: bool,
    /// The chat model (summaries, replies, probe answers); by default
    /// `model.name`.
    pub chat_model: Option<String>,
    /// The judge model (summary quality, answer correctness); by default the
    /// chat model.
    pub judge_model: Option<String>,
    /// More judge models on the same endpoint: each judges every answer
    /// too (the first judge's verdict is the one that counts), and their
    /// agreement (Cohen's kappa) is reported.
    pub extra_judges: Vec<String>,
    /// Where embeddings come from: `api` (the embedding model below) or
    /// `offline` (memeval's hashing embedder, for servers that cannot pool
    /// embeddings, such as llama.cpp's with a chat model).
    pub embeddings: String,
    pub embedding_model: String,
    /// Requested vector size (models that can shorten their vectors).
    pub embedding_dimensions: Option<u32>,
    /// Texts per embedding request.
    pub embed_batch: u32,
    /// Seconds before a request is abandoned (and retried).
    pub timeout_secs: f64,
    /// Retries of a call after a 429, a 5xx, a timeout or a lost connection.
    pub max_retries: u32,
    /// First backoff before a retry, doubled at each further one (with
    /// jitter); a `Retry-After` header takes precedence.
    pub retry_backoff_ms: u32,
    /// The request field that caps a reply's length: `max_tokens` (the
    /// tutorial's, understood by most servers) or `max_completion_tokens`
    /// (required by OpenAI's reasoning models).
    pub token_limit_field: String,
    /// Requests in flight at once, over the whole run.
    pub max_concurrency: u32,
    /// Answer every probe with the chat model and judge the answer
    /// (costs two calls per probe asked).
    pub answer_probes: bool,
    /// A file with your own summarization prompt (placeholders
    /// `{prior_summary}`, `{summary}`, `{conversation}`).
    pub summary_prompt_file: Option<PathBuf>,
    /// Sampling of generated replies and probe answers (the tutorial's
    /// chatbot: 0.7 and at most 1,000 tokens).
    pub reply_temperature: f32,
    pub reply_max_tokens: u32,
    /// Replies are cached: a rerun sends nothing and replays exactly.
    pub cache: bool,
    /// The cache's SQLite file.
    pub cache_path: PathBuf,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        OpenAiConfig {
            base_url: "https://api.openai.com/v1".into(),
            api_key_env: "OPENAI_API_KEY".into(),
            api_key_file: None,
            require_key: true,
            chat_model: None,
            judge_model: None,
            extra_judges: Vec::new(),
            embeddings: "api".into(),
            embedding_model: "text-embedding-3-small".into(),
            embedding_dimensions: None,
            embed_batch: 64,
            timeout_secs: 60.0,
            max_retries: 5,
            retry_backoff_ms: 500,
            token_limit_field: "max_tokens".into(),
            max_concurrency: 8,
            answer_probes: true,
            summary_prompt_file: None,
            reply_temperature: 0.7,
            reply_max_tokens: 1000,
            cache: true,
            cache_path: PathBuf::from(".memeval/cache.sqlite"),
        }
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            name: "gpt-4o".into(),
            encoding: None,
            context_window: None,
        }
    }
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            max_context_tokens: 8000,
        }
    }
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig { max_tokens: 4000 }
    }
}

impl Default for SummaryConfig {
    fn default() -> Self {
        SummaryConfig {
            trigger_tokens: 4000,
            max_summary_tokens: 500,
            quality_samples: 3,
            keep_ratio: 0.5,
        }
    }
}

impl Default for VectorConfig {
    fn default() -> Self {
        VectorConfig {
            buffer_message_limit: 20,
            top_k: 5,
            min_score: None,
            max_retrieved: 3,
            keyword_fallback: false,
            hnsw_threshold: 50_000,
            ef_search: 64,
            embed_lag: 0,
        }
    }
}

impl Default for OfflineConfig {
    fn default() -> Self {
        OfflineConfig { embedding_dim: 512 }
    }
}

/// Thresholds; the `[gate]` section of the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GateConfig {
    /// Minimum mean recall per strategy, e.g. `{ buffer = 1.0, hybrid = 0.9 }`.
    pub min_recall: BTreeMap<String, f64>,
    /// Largest allowed drop of mean recall against the baseline (absolute).
    pub max_recall_drop: f64,
    /// Largest allowed drop of final recall against the baseline (absolute).
    pub max_final_recall_drop: f64,
    /// Largest allowed increase of total tokens, in percent of the baseline.
    pub max_token_increase_pct: f64,
    /// Largest allowed drop of mean summary quality against the baseline.
    pub max_quality_drop: f64,
    /// Minimum mean summary quality (where summaries are written).
    pub min_quality: f64,
    /// Largest allowed increase of stale facts over the baseline.
    pub max_stale_increase: u64,
    /// Most model calls allowed whose messages a provider would reject (a
    /// tool result without its call, a call without its result).
    pub max_malformed: u64,
    /// Highest false-accept rate of the run's judge, as `memeval
    /// judge-check` measured it (`gate --judge-check DIR`); unset: the
    /// judge is not checked.
    pub max_judge_false_accept: Option<f64>,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            min_recall: BTreeMap::new(),
            max_recall_drop: 0.02,
            max_final_recall_drop: 0.02,
            max_token_increase_pct: 10.0,
            max_quality_drop: 0.05,
            min_quality: 0.0,
            max_stale_increase: 0,
            max_malformed: 0,
            max_judge_false_accept: None,
        }
    }
}

impl GateConfig {
    /// The numeric thresholds with their ranges: (key, value, min, max).
    pub fn ranges(&self) -> Vec<(&'static str, f64, f64, f64)> {
        vec![
            ("gate.max_recall_drop", self.max_recall_drop, 0.0, 1.0),
            (
                "gate.max_final_recall_drop",
                self.max_final_recall_drop,
                0.0,
                1.0,
            ),
            (
                "gate.max_token_increase_pct",
                self.max_token_increase_pct,
                0.0,
                1e6,
            ),
            ("gate.max_quality_drop", self.max_quality_drop, 0.0, 1.0),
            ("gate.min_quality", self.min_quality, 0.0, 1.0),
        ]
    }

    /// Checks what [`GateConfig::ranges`] cannot: the strategies named in
    /// `min_recall`, and their thresholds.
    pub fn validate(&self, strategies: &[&str]) -> Result<(), String> {
        if let Some(v) = self.max_judge_false_accept
            && !(0.0..=1.0).contains(&v)
        {
            return Err(format!(
                "gate.max_judge_false_accept is a rate between 0 and 1, not {v}"
            ));
        }
        for (s, v) in &self.min_recall {
            if !strategies.contains(&s.as_str()) {
                let hint = crate::text::suggestion(s, strategies);
                return Err(format!("gate.min_recall: unknown strategy {s:?}{hint}"));
            }
            if !(0.0..=1.0).contains(v) {
                return Err(format!("gate.min_recall.{s} is between 0 and 1, not {v}"));
            }
        }
        Ok(())
    }
}

/// `[plugins.NAME]`: a memory outside memeval, replayed as the strategy
/// `plugin:NAME` over the plugin protocol (docs/PLUGIN_PROTOCOL.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginConfig {
    /// The stdio transport: the program and its arguments, started in the
    /// folder of the configuration file.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// The http transport: each request POSTed here (`http://` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Handed to the plugin in `hello`, as they are.
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Plugin processes at most, each serving one replay at a time (stdio).
    pub processes: u32,
    /// How long a request may take, in milliseconds.
    pub timeout_ms: u64,
    /// End the process at every session boundary and start a fresh one,
    /// which must restore each user from its own storage.
    pub restart_between_sessions: bool,
    /// While a replay holds a process, run the replay's thread and the
    /// process's main thread on one CPU (Linux, stdio): a request then
    /// costs no cross-CPU wake-up. Off for a plugin whose main thread does
    /// heavy parallel work of its own.
    pub pin_cpu: bool,
}

impl Default for PluginConfig {
    fn default() -> Self {
        PluginConfig {
            command: Vec::new(),
            url: None,
            params: serde_json::Map::new(),
            processes: 1,
            timeout_ms: 30_000,
            restart_between_sessions: false,
            pin_cpu: true,
        }
    }
}
