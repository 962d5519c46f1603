//! Embeddings through the API, batched and cached per text.

use super::*;

/// Embeddings through the API, batched and cached per text.
pub(super) struct ApiEmbedder {
    pub(super) api: Arc<Api>,
    pub(super) model: String,
    pub(super) dimensions: Option<u32>,
    pub(super) batch: usize,
    pub(super) price: Option<Price>,
    /// Vectors fetched so far, by text.
    pub(super) ready: Mutex<HashMap<String, Arc<[f32]>>>,
    /// Learned from the first vector when neither configured nor known.
    pub(super) seen_dim: OnceLock<usize>,
}

impl ApiEmbedder {
    pub(super) fn new(api: Arc<Api>, o: &OpenAiConfig, price: Option<Price>) -> ApiEmbedder {
        ApiEmbedder {
            api,
            model: o.embedding_model.clone(),
            dimensions: o.embedding_dimensions,
            batch: o.embed_batch as usize,
            price,
            ready: Mutex::new(HashMap::new()),
            seen_dim: OnceLock::new(),
        }
    }

    pub(super) fn key(&self, text: &str) -> String {
        let dims = self.dimensions.map_or(String::new(), |d| d.to_string());
        hash_key(&[&self.api.base_url, "embeddings", &self.model, &dims, text])
    }

    /// Fetches `texts` (none of them ready) in one request.
    pub(super) async fn fetch(&self, texts: Vec<String>) -> (Result<(), String>, CallRecord) {
        let api = &self.api;
        let start = Instant::now();
        let local: u32 = texts.iter().map(|t| api.tok.count(t)).sum();
        let req = CreateEmbeddingRequest {
            model: self.model.clone(),
            input: EmbeddingInput::StringArray(texts.clone()),
            dimensions: self.dimensions,
            ..Default::default()
        };
        let (result, attempts) = counted(api.client.embeddings().create(req)).await;
        let mut record = CallRecord::new(CallKind::Embed, &self.model, texts.len() as u32, local);
        record.attempts = attempts;
        record.latency_us = start.elapsed().as_micros() as u64;
        let outcome = result
            .map_err(|e| api.scrub(&e))
            .and_then(|resp| self.accept(&texts, resp));
        match outcome {
            Ok(tokens) => {
                record.api_input_tokens = Some(tokens);
                record.cost_usd = self.price.map_or(0.0, |p| p.cost(u64::from(tokens), 0));
                (Ok(()), record)
            }
            Err(e) => {
                record.error = Some(e.clone());
                (Err(e), record)
            }
        }
    }

    /// Stores a response's vectors (unit length) by text; the usage it reports.
    pub(super) fn accept(
        &self,
        texts: &[String],
        resp: CreateEmbeddingResponse,
    ) -> Result<u32, String> {
        if resp.data.len() != texts.len() {
            return Err(format!(
                "{} vectors for {} inputs",
                resp.data.len(),
                texts.len()
            ));
        }
        let mut ready = self.ready.lock().expect("no panic holds this lock");
        let mut stored = Vec::with_capacity(resp.data.len());
        for e in resp.data {
            let text = texts
                .get(e.index as usize)
                .ok_or_else(|| format!("vector index {} out of range", e.index))?;
            let mut v = e.embedding;
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            if norm > 0.0 {
                v.iter_mut().for_each(|x| *x /= norm);
            }
            let _ = self.seen_dim.set(v.len());
            let v: Arc<[f32]> = v.into();
            stored.push((self.key(text), text, v.clone()));
            ready.insert(text.clone(), v);
        }
        if let Some(c) = &self.api.cache {
            let rows = stored
                .iter()
                .map(|(k, t, v)| (k.as_str(), t.as_str(), &v[..]));
            c.put_embeddings(&self.model, rows);
        }
        Ok(resp.usage.prompt_tokens)
    }

    /// The texts not ready yet, after taking what the cache holds (in order,
    /// without repeats).
    pub(super) fn missing(&self, texts: &[&str]) -> Vec<String> {
        let mut ready = self.ready.lock().expect("no panic holds this lock");
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for &t in texts {
            if ready.contains_key(t) || !seen.insert(t) {
                continue;
            }
            let hit = (self.api.cache.as_ref()).and_then(|c| c.get_embedding(&self.key(t)));
            match hit {
                Some(v) => {
                    let _ = self.seen_dim.set(v.len());
                    ready.insert(t.to_string(), v.into());
                }
                None => out.push(t.to_string()),
            }
        }
        out
    }
}

impl Embedder for ApiEmbedder {
    fn embed(&self, texts: &[&str], calls: &mut Calls) -> Result<Vec<Vec<f32>>, BackendError> {
        let missing = self.missing(texts);
        for chunk in missing.chunks(self.batch) {
            let (r, record) = self.api.rt.block_on(self.fetch(chunk.to_vec()));
            calls.push(record);
            r.map_err(|message| BackendError {
                kind: "embeddings",
                message,
            })?;
        }
        let ready = self.ready.lock().expect("no panic holds this lock");
        texts
            .iter()
            .map(|t| {
                ready
                    .get(*t)
                    .map(|v| v.to_vec())
                    .ok_or_else(|| BackendError {
                        kind: "embeddings",
                        message: "the reply left an input without a vector".into(),
                    })
            })
            .collect()
    }

    /// All batches at once: the concurrency limit spreads them out.
    fn prefetch(&self, texts: &[&str], calls: &mut Calls) {
        let missing = self.missing(texts);
        let batches: Vec<Vec<String>> = missing.chunks(self.batch).map(<[_]>::to_vec).collect();
        let records = self.api.rt.block_on(futures::future::join_all(
            batches
                .into_iter()
                .map(|b| async move { self.fetch(b).await.1 }),
        ));
        calls.extend(records);
    }

    fn dim(&self) -> usize {
        if let Some(d) = self.seen_dim.get() {
            return *d;
        }
        self.dimensions.map_or_else(
            || match self.model.as_str() {
                "text-embedding-3-large" => 3072,
                _ => 1536,
            },
            |d| d as usize,
        )
    }

    /// The tutorial's threshold for OpenAI embeddings.
    fn default_min_score(&self) -> f32 {
        0.75
    }
}
