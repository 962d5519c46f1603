//! The local embedder: a sentence-transformers model of the BERT family,
//! run in process on the CPU (candle's BERT, the model's own tokenizer), so
//! that `vector` and `hybrid` retrieve by meaning offline, with no server,
//! no key and no network.
//!
//! The model's folder says how to use it, and is followed exactly:
//! `modules.json` (a Transformer, then a Pooling, then optionally a
//! Normalize), `sentence_bert_config.json` (`max_seq_length`, which counts
//! `[CLS]` and `[SEP]`), the pooling's `config.json` (CLS, max, mean,
//! mean-sqrt-len, concatenated in sentence-transformers' order), the
//! encoder's `config.json` (BERT only), `tokenizer.json` (its own padding
//! and truncation defaults are replaced: no padding, truncation at
//! `max_seq_length`) and `model.safetensors`, whose SHA-256 is the model's
//! identity in metadata.json.
//!
//! A text's vector depends on the text alone, never on what else is
//! embedded with it: texts are batched only with texts of the same token
//! count, so no pass pads (padding changes the last bits of a float sum).
//! A cold run, a warm run and a run with half its vectors in the cache give
//! the same vectors.
//!
//! Each distinct text is embedded once: vectors are kept by text for the
//! run (every strategy) and in the SQLite cache by the weights' hash and
//! the text, so a sweep's later points and a rerun embed nothing; the
//! model is loaded once per process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::cache::{Cache, hash_key};
use super::{BackendError, CallKind, CallRecord, Calls, Embedder};
use crate::config::LocalEmbedderConfig;
use crate::index::Embedding;

/// How token vectors become one vector (sentence-transformers' `Pooling`).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Pooling {
    cls: bool,
    max: bool,
    mean: bool,
    mean_sqrt_len: bool,
}

/// What identifies a model folder in metadata.json.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Identity {
    /// The folder, as configured.
    pub path: String,
    /// SHA-256 of model.safetensors.
    pub sha256: String,
    pub dim: usize,
    pub max_seq_length: usize,
    /// The pooling modes, in their order (`mean`, `cls`, ...).
    pub pooling: Vec<&'static str>,
    pub normalize: bool,
}

impl Identity {
    /// The embedder's name among the run's models: the weights' hash, so
    /// that the same model in another folder (another machine) is the
    /// same embedder to the gate.
    pub fn model_name(&self) -> String {
        format!("local:sha256:{}", self.sha256)
    }
}

/// A loaded model: the encoder, its tokenizer and how to pool.
pub struct Model {
    pub identity: Identity,
    bert: BertModel,
    tokenizer: tokenizers::Tokenizer,
    pooling: Pooling,
    /// The folder's `do_lower_case` (applied before the tokenizer's own).
    lower_case: bool,
}

/// Reads a JSON file of the folder, naming it in any error.
fn read_json(dir: &Path, name: &str) -> Result<Value, String> {
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not valid JSON: {e}", path.display()))
}

impl Model {
    /// Loads the model in `dir`, checking every file it reads.
    pub fn load(dir: &Path) -> Result<Model, String> {
        if !dir.is_dir() {
            return Err(format!(
                "{}: local_embedder.model: no such folder (the README's \"A real embedding model\" fetches one)",
                dir.display()
            ));
        }
        let at = |name: &str| dir.join(name).display().to_string();
        let modules = read_json(dir, "modules.json")?;
        let modules = modules
            .as_array()
            .ok_or_else(|| format!("{}: expected a list of modules", at("modules.json")))?;
        // The class name: what follows the last dot of `type`.
        let kind = |m: &Value| {
            let t = m.get("type").and_then(Value::as_str).unwrap_or("");
            t.rsplit('.').next().unwrap_or("").to_string()
        };
        let kinds: Vec<String> = modules.iter().map(kind).collect();
        let normalize = match kinds.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["Transformer", "Pooling"] => false,
            ["Transformer", "Pooling", "Normalize"] => true,
            _ => {
                return Err(format!(
                    "{}: modules {kinds:?}: the local embedder runs a Transformer, a Pooling and \
                     optionally a Normalize, in that order",
                    at("modules.json")
                ));
            }
        };
        let transformer_dir = modules[0].get("path").and_then(Value::as_str).unwrap_or("");
        let pooling_dir = modules[1]
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{}: the Pooling module has no path", at("modules.json")))?;
        let tdir = dir.join(transformer_dir);

        let config_json = read_json(&tdir, "config.json")?;
        let model_type = config_json.get("model_type").and_then(Value::as_str);
        if model_type != Some("bert") {
            return Err(format!(
                "{}: model_type {}: the local embedder runs BERT models (model_type \"bert\")",
                tdir.join("config.json").display(),
                model_type.map_or("missing".into(), |t| format!("{t:?}"))
            ));
        }
        let config: BertConfig = serde_json::from_value(config_json)
            .map_err(|e| format!("{}: {e}", tdir.join("config.json").display()))?;

        let st = read_json(dir, "sentence_bert_config.json")?;
        let max_seq_length = st
            .get("max_seq_length")
            .and_then(Value::as_u64)
            .filter(|&n| n >= 2 && n as usize <= config.max_position_embeddings)
            .ok_or_else(|| {
                format!(
                    "{}: max_seq_length must be a number from 2 to the encoder's {} positions",
                    at("sentence_bert_config.json"),
                    config.max_position_embeddings
                )
            })? as usize;
        let lower_case = st
            .get("do_lower_case")
            .and_then(Value::as_bool)
            .unwrap_or(false);

        let pool_file = Path::new(pooling_dir).join("config.json");
        let pool_name = pool_file.display().to_string();
        let p = read_json(dir, &pool_name)?;
        let mode = |k: &str| p.get(k).and_then(Value::as_bool).unwrap_or(false);
        for unsupported in ["pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken"] {
            if mode(unsupported) {
                return Err(format!(
                    "{}: {unsupported} is not supported (CLS, max, mean and mean_sqrt_len are)",
                    at(&pool_name)
                ));
            }
        }
        let pooling = Pooling {
            cls: mode("pooling_mode_cls_token"),
            max: mode("pooling_mode_max_tokens"),
            mean: mode("pooling_mode_mean_tokens"),
            mean_sqrt_len: mode("pooling_mode_mean_sqrt_len_tokens"),
        };
        let modes: Vec<&'static str> = [
            (pooling.cls, "cls"),
            (pooling.max, "max"),
            (pooling.mean, "mean"),
            (pooling.mean_sqrt_len, "mean_sqrt_len"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if modes.is_empty() {
            return Err(format!("{}: no pooling mode is on", at(&pool_name)));
        }
        if let Some(d) = p.get("word_embedding_dimension").and_then(Value::as_u64)
            && d as usize != config.hidden_size
        {
            return Err(format!(
                "{}: word_embedding_dimension {d}, but the encoder's hidden_size is {}",
                at(&pool_name),
                config.hidden_size
            ));
        }

        let tok_path = tdir.join("tokenizer.json");
        let mut tokenizer = tokenizers::Tokenizer::from_file(&tok_path)
            .map_err(|e| format!("{}: {e}", tok_path.display()))?;
        let vocab = tokenizer.get_vocab_size(true);
        if vocab > config.vocab_size {
            return Err(format!(
                "{}: {vocab} tokens, but the encoder's vocab_size is {}",
                tok_path.display(),
                config.vocab_size
            ));
        }
        // The file's own defaults (all-MiniLM-L6-v2's pad to 128 and cut
        // at 128) are not sentence-transformers': no padding, the folder's
        // max_seq_length.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: max_seq_length,
                ..Default::default()
            }))
            .map_err(|e| format!("{}: {e}", tok_path.display()))?;

        let weights = tdir.join("model.safetensors");
        let bytes = std::fs::read(&weights).map_err(|e| format!("{}: {e}", weights.display()))?;
        let sha256 = crate::text::hex(&Sha256::digest(&bytes));
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &Device::Cpu)
            .map_err(|e| format!("{}: {e}", weights.display()))?;
        let bert = BertModel::load(vb, &config).map_err(|e| {
            format!(
                "{}: not the BERT encoder config.json describes: {e}",
                weights.display()
            )
        })?;
        let dim = config.hidden_size * modes.len();
        Ok(Model {
            identity: Identity {
                path: dir.display().to_string(),
                sha256,
                dim,
                max_seq_length,
                pooling: modes,
                normalize,
            },
            bert,
            tokenizer,
            pooling,
            lower_case,
        })
    }

    /// Token ids of each text, `[CLS]` and `[SEP]` included, cut at
    /// `max_seq_length`.
    pub fn token_ids(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, String> {
        let lowered: Vec<String>;
        let texts: Vec<&str> = if self.lower_case {
            lowered = texts.iter().map(|t| t.to_lowercase()).collect();
            lowered.iter().map(String::as_str).collect()
        } else {
            texts.to_vec()
        };
        texts
            .iter()
            .map(|t| {
                self.tokenizer
                    .encode(*t, true)
                    .map(|e| e.get_ids().to_vec())
                    .map_err(|e| format!("tokenizer: {e}"))
            })
            .collect()
    }

    /// The vectors of texts that all have `len` tokens: one pass, no padding.
    fn encode_same_length(&self, ids: &[&[u32]]) -> candle_core::Result<Vec<Vec<f32>>> {
        let (n, len) = (ids.len(), ids[0].len());
        let flat: Vec<u32> = ids.iter().flat_map(|t| t.iter().copied()).collect();
        let input = Tensor::from_vec(flat, (n, len), &Device::Cpu)?;
        let types = input.zeros_like()?;
        let mask = input.ones_like()?;
        let hidden = self.bert.forward(&input, &types, Some(&mask))?; // (n, len, hidden)
        let mut parts = Vec::new();
        if self.pooling.cls {
            parts.push(hidden.narrow(1, 0, 1)?.squeeze(1)?);
        }
        if self.pooling.max {
            parts.push(hidden.max(1)?);
        }
        if self.pooling.mean || self.pooling.mean_sqrt_len {
            let sum = hidden.sum(1)?;
            if self.pooling.mean {
                parts.push((&sum / len as f64)?);
            }
            if self.pooling.mean_sqrt_len {
                parts.push((&sum / (len as f64).sqrt())?);
            }
        }
        let pooled = Tensor::cat(&parts, 1)?;
        let mut out: Vec<Vec<f32>> = pooled.to_vec2()?;
        if self.identity.normalize {
            for v in &mut out {
                // sentence-transformers' Normalize: x / max(|x|, 1e-12).
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                v.iter_mut().for_each(|x| *x /= norm);
            }
        }
        Ok(out)
    }

    /// The vectors of `texts`, in order: texts of the same token count go
    /// through the encoder together, `batch` at a time (candle spreads each
    /// pass's products over the cores).
    pub fn embed(&self, texts: &[&str], batch: usize) -> Result<Vec<Vec<f32>>, String> {
        let ids = self.token_ids(texts)?;
        self.embed_ids(&ids, batch)
    }

    /// The vectors of texts already tokenized.
    fn embed_ids(&self, ids: &[Vec<u32>], batch: usize) -> Result<Vec<Vec<f32>>, String> {
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| (ids[i].len(), i));
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); ids.len()];
        for same in order.chunk_by(|&a, &b| ids[a].len() == ids[b].len()) {
            for pass in same.chunks(batch.max(1)) {
                let group: Vec<&[u32]> = pass.iter().map(|&i| ids[i].as_slice()).collect();
                let vectors = self
                    .encode_same_length(&group)
                    .map_err(|e| format!("encoder: {e}"))?;
                for (&i, v) in pass.iter().zip(vectors) {
                    out[i] = v;
                }
            }
        }
        Ok(out)
    }
}

/// Models loaded in this process, by folder: a sweep's points share one.
fn loaded(dir: &Path) -> Result<Arc<Model>, String> {
    static MODELS: OnceLock<Mutex<HashMap<PathBuf, Arc<Model>>>> = OnceLock::new();
    let mut models = MODELS
        .get_or_init(Default::default)
        .lock()
        .expect("no panic holds this lock");
    if let Some(m) = models.get(dir) {
        return Ok(m.clone());
    }
    let m = Arc::new(Model::load(dir)?);
    models.insert(dir.to_path_buf(), m.clone());
    Ok(m)
}

/// Where a vector of this run came from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Origin {
    /// Embedded ahead of the replays (their call is the run's, not a
    /// replay's).
    Prefetched,
    /// In the SQLite cache before this run needed it.
    Cached,
    /// Computed by this run, for a replay.
    Computed,
}

/// A vector of this run, with what a replay's call record says of it.
struct Ready {
    vector: Arc<[f32]>,
    origin: Origin,
    /// The model's tokens of the text, [CLS] and [SEP] included.
    tokens: u32,
}

/// The embedder of `embedder = "local"`.
pub struct LocalEmbedder {
    pub model: Arc<Model>,
    cache: Option<Cache>,
    batch: usize,
    /// Vectors of this run, by text.
    ready: Mutex<HashMap<String, Ready>>,
}

impl LocalEmbedder {
    pub fn new(c: &LocalEmbedderConfig) -> Result<LocalEmbedder, String> {
        let dir = c
            .model
            .as_deref()
            .ok_or("embedder = \"local\" needs local_embedder.model")?;
        let model = loaded(dir)?;
        let cache = if c.cache {
            Some(Cache::open(&c.cache_path)?)
        } else {
            None
        };
        Ok(LocalEmbedder {
            model,
            cache,
            batch: c.batch as usize,
            ready: Mutex::new(HashMap::new()),
        })
    }

    fn key(&self, text: &str) -> String {
        hash_key(&[&self.model.identity.sha256, text])
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Ready>> {
        self.ready.lock().expect("no panic holds this lock")
    }

    /// Makes every text of `texts` ready: from this run, from the cache,
    /// else from the encoder. Ahead of the replays (`prefetched`), one
    /// record for the pass, if any. For a replay, a record for each text
    /// not embedded ahead, whichever replay computed it: replays run side
    /// by side, and a replay's calls must not depend on which finished
    /// first (`cached` says whether the cache held it before the run).
    fn ensure(
        &self,
        texts: &[&str],
        prefetched: bool,
        calls: &mut Calls,
    ) -> Result<(), BackendError> {
        let (from_cache, from_encoder) = if prefetched {
            (Origin::Prefetched, Origin::Prefetched)
        } else {
            (Origin::Cached, Origin::Computed)
        };
        let mut missing: Vec<&str> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let texts: Vec<&str> = texts.iter().copied().filter(|t| seen.insert(*t)).collect();
        {
            let mut ready = self.lock();
            for &t in &texts {
                if ready.contains_key(t) {
                    continue;
                }
                match (self.cache.as_ref()).and_then(|c| c.get_embedding(&self.key(t))) {
                    Some(v) if v.len() == self.model.identity.dim => {
                        // Only a replay's record counts a text's tokens.
                        let tokens = match from_cache {
                            Origin::Prefetched => 0,
                            _ => self.model.token_ids(&[t]).map_or(0, |i| i[0].len() as u32),
                        };
                        let vector = v.into();
                        let origin = from_cache;
                        ready.insert(
                            t.to_string(),
                            Ready {
                                vector,
                                origin,
                                tokens,
                            },
                        );
                    }
                    _ => missing.push(t),
                }
            }
        }
        let name = self.model.identity.model_name();
        let start = std::time::Instant::now();
        let computed = if missing.is_empty() {
            Ok(Vec::new())
        } else {
            self.model
                .token_ids(&missing)
                .and_then(|ids| Ok((self.model.embed_ids(&ids, self.batch)?, ids)))
                .map(|(vectors, ids)| {
                    let tokens: Vec<u32> = ids.iter().map(|i| i.len() as u32).collect();
                    vectors.into_iter().map(Arc::from).zip(tokens).collect()
                })
        };
        let latency_us = start.elapsed().as_micros() as u64;
        let computed: Vec<(Arc<[f32]>, u32)> = match computed {
            Ok(c) => c,
            Err(message) => {
                let mut record = CallRecord::new(CallKind::Embed, &name, missing.len() as u32, 0);
                record.latency_us = latency_us;
                record.error = Some(message.clone());
                calls.push(record);
                return Err(BackendError {
                    kind: "embeddings",
                    message,
                });
            }
        };
        {
            // In the run's map before the cache: a text another replay
            // finds in the cache was computed by this run.
            let mut ready = self.lock();
            for (t, (vector, tokens)) in missing.iter().zip(&computed) {
                ready.entry(t.to_string()).or_insert(Ready {
                    vector: vector.clone(),
                    origin: from_encoder,
                    tokens: *tokens,
                });
            }
        }
        if let Some(c) = &self.cache
            && !missing.is_empty()
        {
            let keys: Vec<String> = missing.iter().map(|t| self.key(t)).collect();
            let rows = (keys.iter().zip(&missing).zip(&computed))
                .map(|((k, t), (v, _))| (k.as_str(), *t, &v[..]));
            c.put_embeddings(&name, rows);
        }
        if prefetched {
            if !missing.is_empty() {
                let tokens = computed.iter().map(|c| c.1).sum();
                let mut record =
                    CallRecord::new(CallKind::Embed, &name, missing.len() as u32, tokens);
                record.latency_us = latency_us;
                calls.push(record);
            }
            return Ok(());
        }
        let ready = self.lock();
        for t in texts {
            let r = &ready[t];
            if r.origin == Origin::Prefetched {
                continue;
            }
            let mut record = CallRecord::new(CallKind::Embed, &name, 1, r.tokens);
            record.cached = r.origin == Origin::Cached;
            if missing.contains(&t) {
                record.latency_us = latency_us;
            }
            calls.push(record);
        }
        Ok(())
    }

    fn vector(&self, text: &str) -> Arc<[f32]> {
        self.lock()[text].vector.clone()
    }
}

impl Embedder for LocalEmbedder {
    fn embed(&self, texts: &[&str], calls: &mut Calls) -> Result<Vec<Vec<f32>>, BackendError> {
        self.ensure(texts, false, calls)?;
        Ok(texts.iter().map(|t| self.vector(t).to_vec()).collect())
    }

    fn embed_text(&self, text: &str, calls: &mut Calls) -> Result<Embedding, BackendError> {
        self.ensure(&[text], false, calls)?;
        Ok(Embedding::Dense(self.vector(text)))
    }

    fn prefetch(&self, texts: &[&str], calls: &mut Calls) {
        let _ = self.ensure(texts, true, calls);
    }

    fn dim(&self) -> usize {
        self.model.identity.dim
    }

    /// Chosen by a sweep of all-MiniLM-L6-v2 on the shipped scenarios and
    /// the LoCoMo sample (README, "A real embedding model"): the highest
    /// threshold within 0.02 of the best recall for `vector` and `hybrid`
    /// on both.
    fn default_min_score(&self) -> f32 {
        0.1
    }
}
