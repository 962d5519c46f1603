//! The `openai` backend: any OpenAI-compatible endpoint (OpenAI, a gateway,
//! vLLM, llama.cpp's server, Ollama) through `async-openai`.
//!
//! - Every request goes through one [`Transport`] (a tower service under
//!   async-openai's client): a semaphore bounds the requests in flight over
//!   the whole run, and 408, 409, 429, 5xx, timeouts and lost connections
//!   are retried with exponential backoff and jitter, honouring
//!   `retry-after-ms` and `Retry-After` (seconds or an HTTP date). The
//!   server's `x-should-retry` overrides the status, as in OpenAI's own
//!   clients, and a 429 for an exhausted quota is not retried, since
//!   waiting cannot mend it.
//! - Replies are cached in SQLite under a hash of the endpoint and the full
//!   request (the model is part of it), so a rerun sends nothing and
//!   replays exactly; embeddings are cached per input text.
//! - Each call is reported as a [`CallRecord`]: the usage the API reports
//!   beside memeval's own count, attempts, latency, cost.
//! - The API key is held by async-openai as a secret, sent only in the
//!   `Authorization` header, and scrubbed from every error message.

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::{HttpRequestFactory, ReqwestService};
use async_openai::types::chat::{
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestMessage,
    ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage,
    CreateChatCompletionRequest, CreateChatCompletionResponse, ResponseFormat,
};
use async_openai::types::embeddings::{
    CreateEmbeddingRequest, CreateEmbeddingResponse, EmbeddingInput,
};
use rand::RngExt;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::{
    AnswerCheck, AnswerVerdict, Backend, BackendError, CallKind, CallRecord, Calls, ChatMessage,
    ChatRole, Embedder, Judge, Responder, Summarizer, SummaryOutput, SummaryRequest,
    SummaryTemplate, Verdict,
};
use crate::config::prices::{self, Price};
use crate::config::{Config, OpenAiConfig};
use crate::scenario::Role;
use crate::tokens::{REPLY_PRIMING, Tokenizer};

/// Longest wait a `Retry-After` header is obeyed for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// Builds the backend from the configuration. The key comes from the
/// environment variable `openai.api_key_env`, else from the file
/// `openai.api_key_file`; a local server may need none.
pub fn backend(config: &Config, tok: Tokenizer) -> Result<Backend, String> {
    let o = &config.openai;
    let key = api_key(o)?;
    let chat_model = o.chat_model.clone().unwrap_or(config.model.name.clone());
    let judge_model = o.judge_model.clone().unwrap_or(chat_model.clone());
    let template = match &o.summary_prompt_file {
        None => SummaryTemplate::default(),
        Some(p) => {
            let text = crate::files::read_text_capped(
                p,
                crate::files::cap::PROMPT,
                "openai.summary_prompt_file",
            )
            .map_err(|e| e.to_string())?;
            SummaryTemplate::parse(&text)
                .map_err(|e| format!("openai.summary_prompt_file {}: {e}", p.display()))?
        }
    };
    let api = Arc::new(Api::new(o, key, tok)?);
    let chat_price = prices::lookup(&config.prices, &chat_model);
    let chat = Chat {
        api: api.clone(),
        model: chat_model.clone(),
        price: chat_price,
    };
    let judge = Chat {
        api: api.clone(),
        price: prices::lookup(&config.prices, &judge_model),
        model: judge_model.clone(),
    };
    let (embedder, embedding_name, embedding_price): (Arc<dyn Embedder>, String, _) =
        if o.embeddings == "offline" {
            let dim = config.offline.embedding_dim as usize;
            (
                Arc::new(super::offline::HashingEmbedder { dim }),
                format!("offline-hashing-{dim}"),
                None,
            )
        } else {
            let price = prices::lookup(&config.prices, &o.embedding_model);
            (
                Arc::new(ApiEmbedder::new(api.clone(), o, price)),
                o.embedding_model.clone(),
                price,
            )
        };
    Ok(Backend {
        name: "openai".into(),
        summarizer: Arc::new(ChatSummarizer {
            chat: chat.clone(),
            template,
        }),
        embedder,
        judge: Arc::new(ChatJudge { chat: judge }),
        responder: Arc::new(ChatResponder {
            chat: chat.clone(),
            temperature: o.reply_temperature,
            max_tokens: o.reply_max_tokens,
        }),
        models: vec![
            ("summarizer", chat_model.clone()),
            ("embedder", embedding_name),
            ("judge", judge_model),
            ("responder", chat_model.clone()),
        ],
        answer_probes: o.answer_probes,
        chat_price,
        embedding_price,
    })
}

/// The key: the variable `openai.api_key_env`, else the file
/// `openai.api_key_file`. Without either, the run is refused before it
/// starts (unless `openai.require_key` is false): requests without a key
/// would all fail, one by one, after their retries.
fn api_key(o: &OpenAiConfig) -> Result<Option<String>, String> {
    if let Ok(k) = std::env::var(&o.api_key_env)
        && !k.trim().is_empty()
    {
        return Ok(Some(k.trim().to_string()));
    }
    if let Some(p) = &o.api_key_file {
        let key = crate::files::read_text_capped(p, crate::files::cap::KEY, "openai.api_key_file")
            .map_err(|e| e.to_string())?;
        let key = key.trim();
        if key.is_empty() {
            return Err(format!(
                "{}: openai.api_key_file: the file is empty",
                p.display()
            ));
        }
        return Ok(Some(key.to_string()));
    }
    if o.require_key {
        return Err(format!(
            "openai: no API key: the variable {} is unset or empty, and openai.api_key_file is not set; \
             set one of them (for a server that needs no key, set openai.require_key = false)",
            o.api_key_env
        ));
    }
    Ok(None)
}

/// `text` with `key`, and any prefix of it of 8 characters or more, in any
/// case, replaced by `[redacted]`: a server that echoes the key back, whole,
/// cut or case-folded, cannot get it into an output.
fn redact(text: &str, key: &str) -> String {
    let (t, k) = (text.as_bytes(), key.as_bytes());
    let least = k.len().min(8);
    if least < 4 {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let (mut i, mut kept) = (0, 0);
    while i + least <= t.len() {
        let mut j = 0;
        while j < k.len() && i + j < t.len() && t[i + j].eq_ignore_ascii_case(&k[j]) {
            j += 1;
        }
        while j >= least && !text.is_char_boundary(i + j) {
            j -= 1;
        }
        if j >= least && text.is_char_boundary(i) {
            out.push_str(&text[kept..i]);
            out.push_str("[redacted]");
            i += j;
            kept = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&text[kept..]);
    out
}

tokio::task_local! {
    /// HTTP attempts made by the current call.
    static ATTEMPTS: Cell<u32>;
}

/// The HTTP layer under async-openai: the run's concurrency limit, the
/// request timeout, and retries.
#[derive(Clone)]
struct Transport {
    http: ReqwestService,
    permits: Arc<Semaphore>,
    timeout: Duration,
    max_retries: u32,
    backoff: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("no reply within {0:?} (after every retry)")]
struct TimedOut(Duration);

/// How long to wait before retrying, as the reply asks: `retry-after-ms`
/// (OpenAI, Azure), else `Retry-After` in seconds or as an HTTP date
/// (RFC 9110: the preferred form and the two obsolete ones), a date already
/// past meaning now. `None` where the reply says nothing usable.
fn retry_after(headers: &http::HeaderMap, now: jiff::Timestamp) -> Option<Duration> {
    let header = |name: &str| Some(headers.get(name)?.to_str().ok()?.trim());
    // A non-negative number of `unit`s, as a wait of at most the cap.
    let wait = |v: &str, unit: f64| {
        let n = v
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)?;
        Some(Duration::from_secs_f64(
            (n * unit).min(MAX_RETRY_AFTER.as_secs_f64()),
        ))
    };
    if let Some(w) = header("retry-after-ms").and_then(|v| wait(v, 0.001)) {
        return Some(w);
    }
    let v = header("retry-after")?;
    wait(v, 1.0).or_else(|| {
        let until = Duration::try_from(http_date(v)?.duration_since(now)).unwrap_or_default();
        Some(until.min(MAX_RETRY_AFTER))
    })
}

/// An HTTP date (RFC 9110, section 5.6.7): IMF-fixdate, or the obsolete
/// RFC 850 and asctime forms that a recipient must still accept.
fn http_date(v: &str) -> Option<jiff::Timestamp> {
    static IMF: jiff::fmt::rfc2822::DateTimeParser = jiff::fmt::rfc2822::DateTimeParser::new();
    IMF.parse_timestamp(v).ok().or_else(|| {
        ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]
            .iter()
            .find_map(|f| {
                let at = jiff::civil::DateTime::strptime(f, v).ok()?;
                Some(at.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp())
            })
    })
}

/// Whether a failed reply is worth asking again: the server's
/// `x-should-retry` first, as OpenAI's own clients decide; else timeouts
/// (408), lock conflicts (409), rate limits (429) and server errors, but
/// not a 429 for an exhausted quota.
fn retryable(reply: &http::Response<impl AsRef<[u8]>>) -> bool {
    match reply.headers().get("x-should-retry").map(|v| v.as_bytes()) {
        Some(b"true") => return true,
        Some(b"false") => return false,
        _ => {}
    }
    match reply.status().as_u16() {
        408 | 409 | 500..=599 => true,
        429 => {
            let body: serde_json::Value =
                serde_json::from_slice(reply.body().as_ref()).unwrap_or_default();
            let error = &body["error"];
            error["code"] != "insufficient_quota" && error["type"] != "insufficient_quota"
        }
        _ => false,
    }
}

impl Transport {
    /// Exponential backoff with jitter: between half and all of
    /// `backoff * 2^(attempt-1)`, at most a minute.
    fn backoff(&self, attempt: u32) -> Duration {
        let full = self
            .backoff
            .saturating_mul(1 << (attempt - 1).min(16))
            .min(Duration::from_secs(60));
        full.mul_f64(0.5 + 0.5 * rand::rng().random_range(0.0..1.0))
    }

    /// One attempt, holding a permit: the response read in full, so that a
    /// body cut off mid-way is retried like any other lost reply.
    async fn attempt(
        &self,
        request: &HttpRequestFactory,
    ) -> Result<Result<http::Response<Vec<u8>>, OpenAIError>, tokio::time::error::Elapsed> {
        let _permit = self.permits.acquire().await.expect("never closed");
        let mut http = self.http.clone();
        tokio::time::timeout(self.timeout, async move {
            use tower::Service;
            let resp = http.call(request.clone()).await?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.bytes().await.map_err(OpenAIError::Reqwest)?;
            let mut rebuilt = http::Response::new(Vec::from(body));
            *rebuilt.status_mut() = status;
            *rebuilt.headers_mut() = headers;
            Ok(rebuilt)
        })
        .await
    }
}

impl tower::Service<HttpRequestFactory> for Transport {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = Pin<Box<dyn Future<Output = Result<reqwest::Response, OpenAIError>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), OpenAIError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: HttpRequestFactory) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let _ = ATTEMPTS.try_with(|a| a.set(attempt));
                let last = attempt > this.max_retries;
                let wait = match this.attempt(&request).await {
                    Ok(Ok(reply)) => {
                        if reply.status().is_success() || !retryable(&reply) || last {
                            return Ok(reqwest::Response::from(reply));
                        }
                        retry_after(reply.headers(), jiff::Timestamp::now())
                            .unwrap_or_else(|| this.backoff(attempt))
                    }
                    Ok(Err(e)) => {
                        let transient = match &e {
                            OpenAIError::Reqwest(r) => {
                                r.is_timeout() || r.is_connect() || r.is_request() || r.is_body()
                            }
                            _ => false,
                        };
                        if !transient || last {
                            return Err(e);
                        }
                        this.backoff(attempt)
                    }
                    Err(_) if last => {
                        return Err(OpenAIError::Boxed(Box::new(TimedOut(this.timeout))));
                    }
                    Err(_) => this.backoff(attempt),
                };
                tokio::time::sleep(wait).await;
            }
        })
    }
}

/// Replies already paid for, by request.
struct Cache {
    db: Mutex<rusqlite::Connection>,
    /// One lock per request in flight: the same request made twice at once
    /// (two strategies writing the same summary) is sent once, and both get
    /// the one reply the cache keeps, as a rerun will.
    in_flight: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl Cache {
    fn open(path: &Path) -> Result<Cache, String> {
        let fail = |e: &dyn std::fmt::Display| format!("cache {}: {e}", path.display());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
        }
        let db = rusqlite::Connection::open(path).map_err(|e| fail(&e))?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA busy_timeout = 10000;
             CREATE TABLE IF NOT EXISTS responses (
                 key TEXT PRIMARY KEY, endpoint TEXT NOT NULL, model TEXT NOT NULL,
                 request TEXT NOT NULL, response TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS embeddings (
                 key TEXT PRIMARY KEY, model TEXT NOT NULL, input TEXT NOT NULL,
                 vector BLOB NOT NULL);",
        )
        .map_err(|e| fail(&e))?;
        Ok(Cache {
            db: Mutex::new(db),
            in_flight: Mutex::new(HashMap::new()),
        })
    }

    /// The lock of request `key`, held while it is looked up and fetched.
    fn flight(&self, key: &str) -> Arc<Mutex<()>> {
        let mut m = self.in_flight.lock().expect("no panic holds this lock");
        m.entry(key.to_string()).or_default().clone()
    }

    fn get(&self, table: &str, column: &str, key: &str) -> Option<rusqlite::types::Value> {
        let db = self.db.lock().expect("no panic holds the cache");
        db.query_row(
            &format!("SELECT {column} FROM {table} WHERE key = ?1"),
            [key],
            |r| r.get(0),
        )
        .ok()
    }

    /// Best effort: a cache that cannot be written costs a rerun, never a run.
    fn put_response(&self, key: &str, endpoint: &str, model: &str, request: &str, response: &str) {
        let db = self.db.lock().expect("no panic holds the cache");
        let _ = db.execute(
            "INSERT OR REPLACE INTO responses VALUES (?1, ?2, ?3, ?4, ?5)",
            [key, endpoint, model, request, response],
        );
    }

    fn put_embedding(&self, key: &str, model: &str, input: &str, v: &[f32]) {
        let blob: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        let db = self.db.lock().expect("no panic holds the cache");
        let _ = db.execute(
            "INSERT OR REPLACE INTO embeddings VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![key, model, input, blob],
        );
    }
}

fn hash_key(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0x1f]);
    }
    crate::text::hex(&h.finalize())
}

/// What every call shares: the client, its runtime, the cache.
struct Api {
    client: Client<OpenAIConfig>,
    rt: tokio::runtime::Runtime,
    cache: Option<Cache>,
    base_url: String,
    /// Only to scrub it from error messages.
    key: Option<String>,
    tok: Tokenizer,
    token_limit_field: String,
}

impl Api {
    fn new(o: &OpenAiConfig, key: Option<String>, tok: Tokenizer) -> Result<Api, String> {
        let timeout = Duration::from_secs_f64(o.timeout_secs);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("openai: HTTP client: {e}"))?;
        let transport = Transport {
            http: ReqwestService::new(http),
            permits: Arc::new(Semaphore::new(o.max_concurrency as usize)),
            timeout,
            max_retries: o.max_retries,
            backoff: Duration::from_millis(u64::from(o.retry_backoff_ms)),
        };
        let base_url = o.base_url.trim_end_matches('/').to_string();
        let cfg = OpenAIConfig::new()
            .with_api_base(&base_url)
            .with_api_key(key.clone().unwrap_or_default());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| format!("openai: runtime: {e}"))?;
        Ok(Api {
            client: Client::with_config(cfg).with_http_service(transport),
            rt,
            cache: if o.cache {
                Some(Cache::open(&o.cache_path)?)
            } else {
                None
            },
            base_url,
            key,
            tok,
            token_limit_field: o.token_limit_field.clone(),
        })
    }

    /// An error's or a reply's text, with the key (should it ever appear,
    /// whole or in part) scrubbed.
    fn scrub(&self, e: &dyn std::fmt::Display) -> String {
        let text = e.to_string();
        match &self.key {
            Some(k) => redact(&text, k),
            None => text,
        }
    }

    /// Runs `fut` on the client's runtime, counting its HTTP attempts.
    fn block<T>(&self, fut: impl Future<Output = T>) -> (T, u32) {
        self.rt.block_on(counted(fut))
    }
}

/// `fut`'s output and the HTTP attempts the transport made for it.
async fn counted<T>(fut: impl Future<Output = T>) -> (T, u32) {
    ATTEMPTS
        .scope(Cell::new(0), async move {
            let out = fut.await;
            (out, ATTEMPTS.with(Cell::get))
        })
        .await
}

impl CallRecord {
    /// A call about to be made: what memeval counts of its input; the rest
    /// is filled in as it is served.
    fn new(kind: CallKind, model: &str, inputs: u32, local_input_tokens: u32) -> CallRecord {
        CallRecord {
            kind,
            model: model.to_string(),
            cached: false,
            attempts: 0,
            latency_us: 0,
            inputs,
            local_input_tokens,
            local_output_tokens: 0,
            api_input_tokens: None,
            api_output_tokens: None,
            cost_usd: 0.0,
            error: None,
        }
    }
}

/// A chat model behind the API.
#[derive(Clone)]
struct Chat {
    api: Arc<Api>,
    model: String,
    price: Option<Price>,
}

/// A chat reply with its usage.
struct Reply {
    text: String,
    api_input: Option<u32>,
    api_output: Option<u32>,
}

impl Chat {
    fn request(
        &self,
        messages: &[(ChatRole, &str)],
        temperature: f32,
        max_tokens: u32,
        json: bool,
    ) -> CreateChatCompletionRequest {
        let messages = messages
            .iter()
            .map(|&(role, content)| -> ChatCompletionRequestMessage {
                match role {
                    ChatRole::System => ChatCompletionRequestSystemMessage::from(content).into(),
                    ChatRole::User => ChatCompletionRequestUserMessage::from(content).into(),
                    ChatRole::Assistant => {
                        ChatCompletionRequestAssistantMessage::from(content).into()
                    }
                }
            })
            .collect();
        let mut req = CreateChatCompletionRequest {
            model: self.model.clone(),
            messages,
            temperature: Some(temperature),
            response_format: json.then_some(ResponseFormat::JsonObject),
            ..Default::default()
        };
        if self.api.token_limit_field == "max_completion_tokens" {
            req.max_completion_tokens = Some(max_tokens);
        } else {
            #[allow(deprecated)]
            {
                req.max_tokens = Some(max_tokens);
            }
        }
        req
    }

    /// One chat completion, from the cache when it holds this request.
    fn complete(
        &self,
        kind: CallKind,
        messages: &[(ChatRole, &str)],
        temperature: f32,
        max_tokens: u32,
        json: bool,
        calls: &mut Calls,
    ) -> Result<Reply, BackendError> {
        let api = &self.api;
        let req = self.request(messages, temperature, max_tokens, json);
        let body = serde_json::to_string(&req).expect("requests serialize");
        let key = hash_key(&[&api.base_url, "chat/completions", &body]);
        let local_input = messages
            .iter()
            .map(|(_, c)| api.tok.count_message(c))
            .sum::<u32>()
            + REPLY_PRIMING;
        let start = Instant::now();
        let flight = api.cache.as_ref().map(|c| c.flight(&key));
        let _guard = flight
            .as_ref()
            .map(|f| f.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let cached = api
            .cache
            .as_ref()
            .and_then(|c| c.get("responses", "response", &key))
            .and_then(|v| match v {
                rusqlite::types::Value::Text(t) => {
                    serde_json::from_str::<CreateChatCompletionResponse>(&t).ok()
                }
                _ => None,
            });
        let (result, attempts) = match cached {
            Some(r) => (Ok(r), 0),
            None => api.block(api.client.chat().create(req)),
        };
        let mut record = CallRecord::new(kind, &self.model, 1, local_input);
        record.cached = attempts == 0 && result.is_ok();
        record.attempts = attempts;
        record.latency_us = start.elapsed().as_micros() as u64;
        let outcome = result.map_err(|e| api.scrub(&e)).and_then(|resp| {
            let text = resp
                .choices
                .first()
                .and_then(|c| c.message.content.clone())
                .ok_or_else(|| "the reply has no message content".to_string())?;
            if attempts > 0
                && let Some(c) = &api.cache
            {
                let stored = serde_json::to_string(&resp).expect("responses serialize");
                c.put_response(&key, "chat/completions", &self.model, &body, &stored);
            }
            Ok((text, resp.usage))
        });
        // A reply's text is written out (answers, reasons, summaries).
        let outcome = outcome.map(|(text, usage)| {
            let shown = api.scrub(&text);
            (text, shown, usage)
        });
        match outcome {
            Ok((text, shown, usage)) => {
                record.local_output_tokens = api.tok.count(&text);
                record.api_input_tokens = usage.as_ref().map(|u| u.prompt_tokens);
                record.api_output_tokens = usage.as_ref().map(|u| u.completion_tokens);
                record.cost_usd = self.price.map_or(0.0, |p| {
                    p.cost(
                        u64::from(record.api_input_tokens.unwrap_or(local_input)),
                        u64::from(
                            record
                                .api_output_tokens
                                .unwrap_or(record.local_output_tokens),
                        ),
                    )
                });
                let reply = Reply {
                    text: shown,
                    api_input: record.api_input_tokens,
                    api_output: record.api_output_tokens,
                };
                calls.push(record);
                Ok(reply)
            }
            Err(message) => {
                record.error = Some(message.clone());
                calls.push(record);
                Err(BackendError {
                    kind: "chat",
                    message,
                })
            }
        }
    }
}

struct ChatSummarizer {
    chat: Chat,
    template: SummaryTemplate,
}

impl Summarizer for ChatSummarizer {
    /// The tutorial's call: the prompt as one user message, temperature
    /// 0.1, at most `summary.max_summary_tokens` tokens.
    fn summarize(
        &self,
        req: &SummaryRequest<'_>,
        tok: &Tokenizer,
        calls: &mut Calls,
    ) -> Result<SummaryOutput, BackendError> {
        let prompt = self.template.render(req.prior, req.messages);
        let r = self.chat.complete(
            CallKind::Summarize,
            &[(ChatRole::User, &prompt)],
            0.1,
            req.max_tokens,
            false,
            calls,
        )?;
        let text = r.text.trim().to_string();
        let text_tokens = tok.count(&text);
        Ok(SummaryOutput {
            input_tokens: r
                .api_input
                .unwrap_or_else(|| tok.count_message(&prompt) + REPLY_PRIMING),
            output_tokens: r.api_output.unwrap_or(text_tokens),
            text_tokens,
            text,
        })
    }
}

struct ChatResponder {
    chat: Chat,
    temperature: f32,
    max_tokens: u32,
}

impl Responder for ChatResponder {
    fn reply(
        &self,
        kind: CallKind,
        call: &[ChatMessage],
        _query: &str,
        calls: &mut Calls,
    ) -> Result<String, BackendError> {
        let messages: Vec<(ChatRole, &str)> = call.iter().map(|m| (m.role, m.content())).collect();
        let r = self.chat.complete(
            kind,
            &messages,
            self.temperature,
            self.max_tokens,
            false,
            calls,
        )?;
        Ok(r.text.trim().to_string())
    }
}

struct ChatJudge {
    chat: Chat,
}

impl ChatJudge {
    /// Asks in JSON mode (temperature 0); a reply that `parse` rejects is
    /// sent back once with the reason, then given up on.
    fn ask<T>(
        &self,
        kind: CallKind,
        prompt: &str,
        parse: impl Fn(&str) -> Result<T, String>,
        calls: &mut Calls,
    ) -> Result<Result<T, String>, BackendError> {
        let first = self
            .chat
            .complete(kind, &[(ChatRole::User, prompt)], 0.0, 300, true, calls)?;
        let why = match parse(&first.text) {
            Ok(v) => return Ok(Ok(v)),
            Err(why) => why,
        };
        let again = format!(
            "That reply was not usable: {why}. Reply again with the JSON object only, as asked."
        );
        let second = self.chat.complete(
            kind,
            &[
                (ChatRole::User, prompt),
                (ChatRole::Assistant, &first.text),
                (ChatRole::User, &again),
            ],
            0.0,
            300,
            true,
            calls,
        )?;
        Ok(parse(&second.text)
            .map_err(|why2| format!("unjudged: twice an unusable reply ({why}; then {why2})")))
    }
}

/// The JSON object of a reply (tolerating a fenced code block around it).
fn json_object(text: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let t = text.trim();
    let t = t
        .strip_prefix("```json")
        .or_else(|| t.strip_prefix("```"))
        .and_then(|r| r.strip_suffix("```"))
        .unwrap_or(t);
    match serde_json::from_str::<serde_json::Value>(t.trim()) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Err("not a JSON object".into()),
        Err(e) => Err(format!("not valid JSON ({e})")),
    }
}

/// `{"score", "missing", "accurate"}`: the score is required, in 0..1.
pub fn parse_verdict(text: &str) -> Result<Verdict, String> {
    let m = json_object(text)?;
    let score = match m.get("score") {
        Some(serde_json::Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(other) => return Err(format!("score is {other}, not a number")),
        None => return Err("no score".into()),
    };
    if !(0.0..=1.0).contains(&score) {
        return Err(format!("score {score} is outside 0..1"));
    }
    let missing = match m.get("missing") {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        Some(serde_json::Value::String(s)) if !s.is_empty() => vec![s.clone()],
        _ => Vec::new(),
    };
    Ok(Verdict {
        score,
        missing,
        accurate: m.get("accurate").and_then(serde_json::Value::as_bool),
    })
}

/// `{"correct": bool, "reason": "..."}`.
pub fn parse_answer_verdict(text: &str) -> Result<AnswerVerdict, String> {
    let m = json_object(text)?;
    let correct = match m.get("correct") {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(other) => return Err(format!("correct is {other}, not true or false")),
        None => return Err("no \"correct\"".into()),
    };
    let reason = m
        .get("reason")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
        .to_string();
    Ok(AnswerVerdict {
        correct: Some(correct),
        reason,
    })
}

impl Judge for ChatJudge {
    /// The tutorial's Part 2 check, word for word.
    fn score_summary(
        &self,
        summary: &str,
        sampled: &[(Role, &str)],
        calls: &mut Calls,
    ) -> Result<Verdict, BackendError> {
        let originals: Vec<String> = sampled
            .iter()
            .map(|(r, c)| format!("{}: {c}", r.as_str()))
            .collect();
        let prompt = format!(
            "Given this summary:\n{summary}\n\nAnd these original messages it should cover:\n{}\n\n\
             For each key fact or detail in the original messages, is it accurately\n\
             represented in the summary?\n\n\
             Respond with a JSON object: {{\"score\": 0.0-1.0, \"missing\": [\"list of missing details\"], \"accurate\": true/false}}",
            originals.join("\n")
        );
        match self.ask(CallKind::JudgeSummary, &prompt, parse_verdict, calls)? {
            Ok(v) => Ok(v),
            Err(why) => Err(BackendError {
                kind: "judge",
                message: why,
            }),
        }
    }

    fn judge_answer(
        &self,
        check: &AnswerCheck<'_>,
        calls: &mut Calls,
    ) -> Result<AnswerVerdict, BackendError> {
        let mut prompt = format!(
            "You are grading a chatbot's answer to a question about what its user said earlier.\n\n\
             Question: {}\n",
            check.question
        );
        if check.abstention || check.facts.is_empty() {
            prompt.push_str(
                "\nThe user never told the chatbot this. A correct answer says it does not know \
                 or was not told; an answer that makes something up is wrong.\n",
            );
        } else {
            prompt.push_str("\nFacts a correct answer must reflect:\n");
            for f in check.facts {
                match f.statement {
                    Some(s) => prompt.push_str(&format!("- {s}\n")),
                    None => prompt.push_str(&format!("- it mentions {}\n", f.expect.join(" or "))),
                }
            }
        }
        if let Some(r) = check.reference {
            prompt.push_str(&format!("\nReference answer: {r}\n"));
        }
        prompt.push_str(&format!(
            "\nThe chatbot's answer: {}\n\n\
             Is the answer correct? Wording may differ; what counts is that it states the facts \
             and contradicts none.\n\
             Respond with a JSON object: {{\"correct\": true/false, \"reason\": \"one sentence\"}}",
            check.answer
        ));
        Ok(
            match self.ask(CallKind::JudgeAnswer, &prompt, parse_answer_verdict, calls)? {
                Ok(v) => v,
                Err(why) => AnswerVerdict {
                    correct: None,
                    reason: why,
                },
            },
        )
    }
}

/// Embeddings through the API, batched and cached per text.
struct ApiEmbedder {
    api: Arc<Api>,
    model: String,
    dimensions: Option<u32>,
    batch: usize,
    price: Option<Price>,
    /// Vectors fetched so far, by text.
    ready: Mutex<HashMap<String, Arc<[f32]>>>,
    /// Learned from the first vector when neither configured nor known.
    seen_dim: OnceLock<usize>,
}

impl ApiEmbedder {
    fn new(api: Arc<Api>, o: &OpenAiConfig, price: Option<Price>) -> ApiEmbedder {
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

    fn key(&self, text: &str) -> String {
        let dims = self.dimensions.map_or(String::new(), |d| d.to_string());
        hash_key(&[&self.api.base_url, "embeddings", &self.model, &dims, text])
    }

    /// Fetches `texts` (none of them ready) in one request.
    async fn fetch(&self, texts: Vec<String>) -> (Result<(), String>, CallRecord) {
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
    fn accept(&self, texts: &[String], resp: CreateEmbeddingResponse) -> Result<u32, String> {
        if resp.data.len() != texts.len() {
            return Err(format!(
                "{} vectors for {} inputs",
                resp.data.len(),
                texts.len()
            ));
        }
        let mut ready = self.ready.lock().expect("no panic holds this lock");
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
            if let Some(c) = &self.api.cache {
                c.put_embedding(&self.key(text), &self.model, text, &v);
            }
            ready.insert(text.clone(), v.into());
        }
        Ok(resp.usage.prompt_tokens)
    }

    /// The texts not ready yet, after taking what the cache holds (in order,
    /// without repeats).
    fn missing(&self, texts: &[&str]) -> Vec<String> {
        let mut ready = self.ready.lock().expect("no panic holds this lock");
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for &t in texts {
            if ready.contains_key(t) || !seen.insert(t) {
                continue;
            }
            let hit = self.api.cache.as_ref().and_then(|c| {
                match c.get("embeddings", "vector", &self.key(t))? {
                    rusqlite::types::Value::Blob(b) => Some(
                        b.chunks_exact(4)
                            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                            .collect::<Vec<f32>>(),
                    ),
                    _ => None,
                }
            });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_redacted_in_any_case_and_cut() {
        let key = "sk-Test1234567890abcdef";
        for (text, want) in [
            ("bad key sk-Test1234567890abcdef!", "bad key [redacted]!"),
            ("SK-TEST1234567890ABCDEF", "[redacted]"),
            ("sk-test1234567890abcdef", "[redacted]"),
            ("prefix sk-Test12 then", "prefix [redacted] then"),
            ("sk-Test1 is 8", "[redacted] is 8"),
            ("sk-Test is 7", "sk-Test is 7"),
            (
                "twice sk-test1234 and SK-TEST1234567890ABCDEFGH",
                "twice [redacted] and [redacted]GH",
            ),
            ("é sk-Test1234é", "é [redacted]é"),
            ("nothing here", "nothing here"),
        ] {
            assert_eq!(redact(text, key), want, "{text}");
        }
        assert_eq!(redact("abc abc", "abc"), "abc abc");
    }

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (http::HeaderName::from_static(k), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn retry_after_reads_milliseconds_seconds_and_every_http_date_form() {
        let now: jiff::Timestamp = "1994-11-06T08:49:30Z".parse().unwrap();
        let wait = |pairs: &[(&'static str, &str)]| retry_after(&headers(pairs), now);
        let secs = |s: f64| Some(Duration::from_secs_f64(s));
        assert_eq!(wait(&[("retry-after", "2")]), secs(2.0));
        assert_eq!(wait(&[("retry-after", " 0.5 ")]), secs(0.5));
        // retry-after-ms first, as OpenAI's clients read it.
        assert_eq!(
            wait(&[("retry-after-ms", "250"), ("retry-after", "9")]),
            secs(0.25)
        );
        assert_eq!(
            wait(&[("retry-after-ms", "soon"), ("retry-after", "9")]),
            secs(9.0)
        );
        // The three forms of an HTTP date, seven seconds after `now`.
        for date in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(wait(&[("retry-after", date)]), secs(7.0), "{date}");
        }
        // A date already past means now; waits are capped.
        assert_eq!(
            wait(&[("retry-after", "Sun, 06 Nov 1994 08:00:00 GMT")]),
            secs(0.0)
        );
        assert_eq!(wait(&[("retry-after", "86400")]), Some(MAX_RETRY_AFTER));
        assert_eq!(wait(&[("retry-after", "1e300")]), Some(MAX_RETRY_AFTER));
        assert_eq!(wait(&[("retry-after-ms", "1e300")]), Some(MAX_RETRY_AFTER));
        assert_eq!(
            wait(&[("retry-after", "Mon, 07 Nov 1994 08:49:37 GMT")]),
            Some(MAX_RETRY_AFTER)
        );
        // Nothing usable: the caller's own backoff applies.
        for bad in ["-1", "inf", "NaN", "tomorrow", "06 Nov 1994", ""] {
            assert_eq!(wait(&[("retry-after", bad)]), None, "{bad:?}");
        }
        assert_eq!(wait(&[]), None);
    }

    #[test]
    fn what_is_retried_follows_the_server_then_the_status() {
        let reply = |status: u16, pairs: &[(&'static str, &str)], body: &str| {
            let mut r = http::Response::new(body.as_bytes().to_vec());
            *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
            *r.headers_mut() = headers(pairs);
            r
        };
        let rate = r#"{"error": {"code": "rate_limit_exceeded", "type": "requests"}}"#;
        let quota = r#"{"error": {"code": "insufficient_quota", "type": "insufficient_quota"}}"#;
        for status in [408, 409, 429, 500, 502, 503] {
            assert!(retryable(&reply(status, &[], rate)), "{status}");
        }
        for status in [400, 401, 403, 404, 422] {
            assert!(!retryable(&reply(status, &[], rate)), "{status}");
        }
        assert!(!retryable(&reply(429, &[], quota)));
        assert!(retryable(&reply(429, &[], "not json")));
        assert!(!retryable(&reply(503, &[("x-should-retry", "false")], "")));
        assert!(retryable(&reply(400, &[("x-should-retry", "true")], "")));
    }
}
