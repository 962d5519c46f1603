//! The metering endpoint: an OpenAI-compatible server on 127.0.0.1 that
//! answers a plugin's own model calls (`/v1/chat/completions`,
//! `/v1/embeddings`) with the run's backend, through its cache and its
//! concurrency limit, and files each call under the plugin process that
//! made it, so that the replay it serves counts it (calls.csv, turns.csv).
//!
//! It spends the user's key: it listens on loopback only, on a port the
//! system picks, and accepts a request only with a bearer token it gave a
//! plugin process (random, never the real key, never written anywhere).

use std::collections::HashMap;
use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use rand::RngExt;
use serde_json::{Value, json};

use super::http;
use crate::backend::{Backend, CallKind, CallRecord, Calls, ChatRequest, ChatRole};
use crate::memory::Usage;
use crate::tokens::Tokenizer;

/// What one plugin process spent through the endpoint since last taken.
#[derive(Debug, Default)]
pub struct Metered {
    pub calls: Calls,
    pub usage: Usage,
}

type Tabs = Arc<Mutex<HashMap<String, Arc<Mutex<Metered>>>>>;

/// The running endpoint. Dropped, it stops accepting.
pub struct Meter {
    pub base_url: String,
    tabs: Tabs,
    stop: Arc<std::sync::atomic::AtomicBool>,
    addr: std::net::SocketAddr,
}

/// What a request is answered with.
struct Serve {
    backend: Backend,
    tok: Tokenizer,
    /// The reply length where a chat request sets none.
    default_max_tokens: u32,
}

impl Meter {
    /// Starts the endpoint on 127.0.0.1, on a port the system picks.
    pub fn start(
        backend: &Backend,
        tok: Tokenizer,
        default_max_tokens: u32,
    ) -> std::io::Result<Meter> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let addr = listener.local_addr()?;
        let tabs: Tabs = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let serve = Arc::new(Serve {
            backend: backend.clone(),
            tok,
            default_max_tokens,
        });
        let (t, s) = (tabs.clone(), stop.clone());
        std::thread::Builder::new()
            .name("memeval-meter".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if s.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (tabs, serve) = (t.clone(), serve.clone());
                    let _ = std::thread::Builder::new()
                        .name("memeval-meter-conn".into())
                        .spawn(move || connection(conn, &tabs, &serve));
                }
            })?;
        Ok(Meter {
            base_url: format!("http://{addr}/v1"),
            tabs,
            stop,
            addr,
        })
    }

    /// A new bearer token, and the tab its calls go to.
    pub fn open_tab(&self) -> (String, Arc<Mutex<Metered>>) {
        let token = format!("memeval-{:032x}", rand::rng().random::<u128>());
        let tab = Arc::new(Mutex::new(Metered::default()));
        self.tabs
            .lock()
            .expect("no panic holds the tabs")
            .insert(token.clone(), tab.clone());
        (token, tab)
    }

    /// Refuses a token from now on.
    pub fn close_tab(&self, token: &str) {
        self.tabs
            .lock()
            .expect("no panic holds the tabs")
            .remove(token);
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // Wakes the accepting thread, which then sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn connection(conn: TcpStream, tabs: &Tabs, serve: &Serve) {
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    loop {
        let req = match http::read(&mut reader) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                let _ = http::respond(&mut writer, 400, &error_body(&e.to_string()));
                return;
            }
        };
        let (status, body) = answer(&req, tabs, serve);
        let close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if http::respond(&mut writer, status, &body).is_err() || close {
            return;
        }
    }
}

fn error_body(message: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"error": {"message": message, "type": "invalid_request_error"}}))
        .expect("JSON serializes")
}

fn answer(req: &http::Message, tabs: &Tabs, serve: &Serve) -> (u16, Vec<u8>) {
    let token = req
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let tab = token.and_then(|t| {
        tabs.lock()
            .expect("no panic holds the tabs")
            .get(t)
            .cloned()
    });
    let Some(tab) = tab else {
        return (
            401,
            error_body("the metering endpoint takes only the token that hello gave the plugin"),
        );
    };
    let mut parts = req.start.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let body: Value = if method == "POST" {
        match serde_json::from_slice(&req.body) {
            Ok(v) => v,
            Err(e) => return (400, error_body(&format!("the body is not JSON: {e}"))),
        }
    } else {
        Value::Null
    };
    let result = match (method, path) {
        ("POST", "/v1/chat/completions") => chat(&body, serve, &tab),
        ("POST", "/v1/embeddings") => embeddings(&body, serve, &tab),
        ("GET", "/v1/models") => Ok(json!({"object": "list", "data": serve.backend.models.iter()
            .map(|(_, m)| json!({"id": m, "object": "model", "owned_by": "memeval"}))
            .collect::<Vec<_>>()})),
        (_, "/v1/chat/completions" | "/v1/embeddings") => {
            return (405, error_body("use POST"));
        }
        _ => {
            return (
                404,
                error_body(&format!(
                    "{path}: the metering endpoint serves /v1/chat/completions and /v1/embeddings"
                )),
            );
        }
    };
    match result {
        Ok(v) => (200, serde_json::to_vec(&v).expect("JSON serializes")),
        Err((status, message)) => (status, error_body(&message)),
    }
}

type Answer = Result<Value, (u16, String)>;

/// Files the calls the backend recorded, or one of its own where it
/// recorded none (the offline backend's are not API calls, but a plugin's
/// call is counted all the same), and what they spent.
fn file(tab: &Mutex<Metered>, mut calls: Calls, fallback: CallRecord, usage: Usage) {
    if calls.is_empty() {
        calls.push(fallback);
    }
    let mut t = tab.lock().expect("no panic holds a tab");
    t.calls.append(&mut calls);
    t.usage += usage;
}

/// What one call spent.
fn spent(kind: CallKind, input: u32, output: u32) -> Usage {
    let mut u = Usage::default();
    u.add_call(kind, input, output);
    u
}

fn chat(body: &Value, serve: &Serve, tab: &Mutex<Metered>) -> Answer {
    let bad = |m: &str| Err((400, m.to_string()));
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        return bad("streaming is not served by the metering endpoint: send stream=false");
    }
    let Some(list) = body.get("messages").and_then(Value::as_array) else {
        return bad("messages: expected an array of {role, content}");
    };
    let mut texts: Vec<(ChatRole, String)> = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let role = match m.get("role").and_then(Value::as_str) {
            Some("system" | "developer") => ChatRole::System,
            Some("user") => ChatRole::User,
            Some("assistant") => ChatRole::Assistant,
            other => return bad(&format!("messages[{i}].role: unsupported {other:?}")),
        };
        let content = match m.get("content") {
            Some(Value::String(s)) => s.clone(),
            // Content parts: their text, in order.
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(""),
            Some(Value::Null) | None => String::new(),
            _ => return bad(&format!("messages[{i}].content: expected a string")),
        };
        texts.push((role, content));
    }
    let messages: Vec<(ChatRole, &str)> = texts.iter().map(|(r, c)| (*r, c.as_str())).collect();
    let max_tokens = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| body.get(*k).and_then(Value::as_u64))
        .map_or(serve.default_max_tokens, |n| n.clamp(1, 1 << 20) as u32);
    let req = ChatRequest {
        messages: &messages,
        temperature: body
            .get("temperature")
            .and_then(Value::as_f64)
            .map_or(1.0, |t| t.clamp(0.0, 2.0) as f32),
        max_tokens,
        json: body
            .pointer("/response_format/type")
            .and_then(Value::as_str)
            == Some("json_object"),
    };
    let mut calls = Vec::new();
    let out = serve.backend.summarizer.chat(&req, &serve.tok, &mut calls);
    let model = model_of(&serve.backend, "summarizer");
    let mut fallback = CallRecord::new(
        CallKind::Summarize,
        &model,
        1,
        req.local_input_tokens(&serve.tok),
    );
    match out {
        Ok(o) => {
            fallback.local_output_tokens = o.output_tokens;
            let usage = spent(CallKind::Summarize, o.input_tokens, o.output_tokens);
            file(tab, calls, fallback, usage);
            Ok(json!({
                "id": "memeval-metered",
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": o.text},
                    "finish_reason": "stop",
                }],
                "usage": {
                    "prompt_tokens": o.input_tokens,
                    "completion_tokens": o.output_tokens,
                    "total_tokens": o.input_tokens + o.output_tokens,
                },
            }))
        }
        Err(e) => {
            fallback.error = Some(e.message.clone());
            file(tab, calls, fallback, Usage::default());
            Err((502, e.to_string()))
        }
    }
}

/// The model serving `role`, else the backend's name.
fn model_of(b: &Backend, role: &str) -> String {
    b.model(role).unwrap_or(&b.name).to_string()
}

fn embeddings(body: &Value, serve: &Serve, tab: &Mutex<Metered>) -> Answer {
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => a
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect(),
        _ => {
            return Err((
                400,
                "input: expected a string or an array of strings (token arrays are not served)"
                    .into(),
            ));
        }
    };
    if inputs.len() > 2048 {
        return Err((400, "input: at most 2048 texts a request".into()));
    }
    let base64 = match body.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(f) => return Err((400, format!("encoding_format: unsupported {f:?}"))),
    };
    let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let tokens: u32 = refs.iter().map(|t| serve.tok.count(t)).sum();
    let model = model_of(&serve.backend, "embedder");
    let mut calls = Vec::new();
    let out = serve.backend.embedder.embed(&refs, &mut calls);
    let mut fallback = CallRecord::new(CallKind::Embed, &model, refs.len() as u32, tokens);
    // An API embedder that made no request served every text from its
    // cache; the offline one computes them.
    fallback.cached = !model.starts_with("offline-");
    match out {
        Ok(vectors) => {
            file(tab, calls, fallback, spent(CallKind::Embed, tokens, 0));
            let data: Vec<Value> = vectors
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let embedding = if base64 {
                        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                        Value::String(base64_encode(&bytes))
                    } else {
                        json!(v)
                    };
                    json!({"object": "embedding", "index": i, "embedding": embedding})
                })
                .collect();
            Ok(json!({
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }))
        }
        Err(e) => {
            fallback.cached = false;
            fallback.error = Some(e.message.clone());
            file(tab, calls, fallback, Usage::default());
            Err((502, e.to_string()))
        }
    }
}

/// Standard base64 with padding (how the OpenAI API sends vectors as
/// `encoding_format: "base64"`, the Python SDK's default).
fn base64_encode(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// One request on its own connection: the status and the body.
    fn post(m: &Meter, path: &str, token: Option<&str>, body: &str) -> (u16, Value) {
        let mut s = TcpStream::connect(m.addr).unwrap();
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut r = BufReader::new(s);
        let m = http::read(&mut r).unwrap().unwrap();
        let status = m.start.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut rest = Vec::new();
        // The server closes the connection, as asked.
        r.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        (status, serde_json::from_slice(&m.body).unwrap())
    }

    #[test]
    fn only_a_plugins_token_is_served_and_its_calls_are_filed_under_it() {
        let tok = Tokenizer::by_encoding("o200k_base").unwrap();
        let m = Meter::start(&crate::backend::offline::backend(64), tok, 100).unwrap();
        assert!(m.base_url.starts_with("http://127.0.0.1:"));
        let chat = r#"{"model": "x", "messages": [{"role": "user", "content": "USER: I live in Porto and work on dbt models.\nASSISTANT: Noted."}], "max_tokens": 50}"#;
        let (status, body) = post(&m, "/v1/chat/completions", None, chat);
        assert_eq!(status, 401, "{body}");
        let (status, _) = post(&m, "/v1/chat/completions", Some("memeval-guess"), chat);
        assert_eq!(status, 401);
        let (token, tab) = m.open_tab();
        let (status, body) = post(&m, "/v1/chat/completions", Some(&token), chat);
        assert_eq!(status, 200, "{body}");
        let text = body["choices"][0]["message"]["content"].as_str().unwrap();
        assert!(text.contains("Porto"), "{text}");
        let (status, body) = post(
            &m,
            "/v1/embeddings",
            Some(&token),
            r#"{"model": "x", "input": ["dbt on Snowflake", "a cabin"], "encoding_format": "base64"}"#,
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"].as_array().unwrap().len(), 2);
        let (status, body) = post(&m, "/v1/files", Some(&token), "{}");
        assert_eq!(status, 404, "{body}");
        {
            let t = tab.lock().unwrap();
            assert_eq!(t.calls.len(), 2);
            assert_eq!(t.calls[0].kind, CallKind::Summarize);
            assert_eq!(t.calls[1].kind, CallKind::Embed);
            assert!(t.usage.summarizer_tokens > 0 && t.usage.embedding_tokens > 0);
        }
        m.close_tab(&token);
        let (status, _) = post(&m, "/v1/embeddings", Some(&token), r#"{"input": "x"}"#);
        assert_eq!(status, 401, "a closed tab's token is refused");
    }

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(&[0xff, 0xfe, 0xfd]), "//79");
    }
}
