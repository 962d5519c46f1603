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

mod embed;
mod roles;
mod transport;

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::{HttpRequestFactory, ReqwestService};
use async_openai::types::chat::{
    ChatCompletionMessageToolCall, ChatCompletionMessageToolCalls,
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestMessage,
    ChatCompletionRequestSystemMessage, ChatCompletionRequestToolMessage,
    ChatCompletionRequestUserMessage, CreateChatCompletionRequest, CreateChatCompletionResponse,
    FunctionCall, ResponseFormat,
};
use async_openai::types::embeddings::{
    CreateEmbeddingRequest, CreateEmbeddingResponse, EmbeddingInput,
};
use rand::RngExt;
use tokio::sync::Semaphore;

use super::{
    AnswerCheck, AnswerVerdict, Backend, BackendError, CallKind, CallRecord, Calls, ChatMessage,
    ChatRequest, ChatRole, Embedder, Judge, Responder, Summarizer, SummaryOutput, SummaryRequest,
    SummaryTemplate, Verdict,
};
use crate::config::prices::{self, Price};
use crate::config::{Config, OpenAiConfig};
use crate::scenario::{Role, Tools};
use crate::tokens::{REPLY_PRIMING, Tokenizer};

use super::cache::{Cache, hash_key};
use embed::ApiEmbedder;
use roles::{ChatJudge, ChatResponder, ChatSummarizer};
use transport::{ATTEMPTS, Transport};

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
    // A judge by model name: the judge and each extra one.
    let judge_of = |model: &str| ChatJudge {
        chat: Chat {
            api: api.clone(),
            price: prices::lookup(&config.prices, model),
            model: model.to_string(),
        },
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
        judge: Arc::new(judge_of(&judge_model)),
        extra_judges: (o.extra_judges.iter())
            .map(|m| (m.clone(), Arc::new(judge_of(m)) as Arc<dyn Judge>))
            .collect(),
        responder: Arc::new(ChatResponder {
            chat: chat.clone(),
            temperature: o.reply_temperature,
            max_tokens: o.reply_max_tokens,
        }),
        models: {
            let mut models = vec![
                ("summarizer", chat_model.clone()),
                ("embedder", embedding_name),
                ("judge", judge_model),
                ("responder", chat_model.clone()),
            ];
            if !o.extra_judges.is_empty() {
                models.push(("extra_judges", o.extra_judges.join(",")));
            }
            models
        },
        answer_probes: o.answer_probes,
        chat_price,
        embedding_price,
        embedder_identity: None,
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

/// One message of a request: a role and its content as text, or a
/// transcript's message with its tool calls or the call it answers.
trait Sent {
    fn role(&self) -> ChatRole;
    fn content(&self) -> &str;
    fn tool(&self) -> Option<&Tools> {
        None
    }
}

impl Sent for (ChatRole, &str) {
    fn role(&self) -> ChatRole {
        self.0
    }
    fn content(&self) -> &str {
        self.1
    }
}

impl Sent for ChatMessage {
    fn role(&self) -> ChatRole {
        self.role
    }
    fn content(&self) -> &str {
        ChatMessage::content(self)
    }
    fn tool(&self) -> Option<&Tools> {
        self.tool.as_deref()
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
    fn request<M: Sent>(
        &self,
        messages: &[M],
        temperature: f32,
        max_tokens: u32,
        json: bool,
    ) -> CreateChatCompletionRequest {
        let messages = messages
            .iter()
            .map(|m| -> ChatCompletionRequestMessage {
                let content = m.content();
                match (m.role(), m.tool()) {
                    (ChatRole::System, _) => {
                        ChatCompletionRequestSystemMessage::from(content).into()
                    }
                    (ChatRole::User, _) => ChatCompletionRequestUserMessage::from(content).into(),
                    (ChatRole::Assistant, Some(Tools::Calls(calls))) => {
                        ChatCompletionRequestAssistantMessage {
                            // "Required unless tool_calls is specified."
                            content: (!content.is_empty()).then(|| content.into()),
                            tool_calls: Some(
                                calls
                                    .iter()
                                    .map(|c| {
                                        ChatCompletionMessageToolCalls::Function(
                                            ChatCompletionMessageToolCall {
                                                id: c.id.clone(),
                                                function: FunctionCall {
                                                    name: c.name.clone(),
                                                    arguments: c.arguments.clone(),
                                                },
                                            },
                                        )
                                    })
                                    .collect(),
                            ),
                            ..Default::default()
                        }
                        .into()
                    }
                    (ChatRole::Assistant, _) => {
                        ChatCompletionRequestAssistantMessage::from(content).into()
                    }
                    (ChatRole::Tool, tool) => ChatCompletionRequestToolMessage {
                        content: content.into(),
                        tool_call_id: tool.and_then(Tools::answers).unwrap_or_default().into(),
                    }
                    .into(),
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
    fn complete<M: Sent>(
        &self,
        kind: CallKind,
        messages: &[M],
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
            .map(|m| {
                api.tok.count_message(m.content()) + m.tool().map_or(0, |t| t.tokens(&api.tok))
            })
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
}
