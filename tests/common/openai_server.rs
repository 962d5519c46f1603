//! A real HTTP server on 127.0.0.1 that speaks the parts of the OpenAI API
//! memeval uses (`/v1/chat/completions`, `/v1/embeddings`), with a small
//! deterministic "model" and scripted faults, for tests and benches.
//!
//! The model: a summarization prompt gets the conversation's first
//! sentences back; a JSON-mode request gets a verdict; any other chat gets
//! an echo of the last user message; an embedding is a hash of the words.
//! Same request, same reply, so faulty and fault-free runs can be compared.

#![allow(dead_code)] // each test crate uses a part

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

/// What to do with a request instead of answering it.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Reply with this status and an OpenAI error body; `Retry-After` in
    /// seconds when given.
    Status(u16, Option<u32>),
    /// Reply with this status, an OpenAI error body of this code, and
    /// these headers.
    Error(u16, &'static str, Vec<(&'static str, String)>),
    /// Wait this long before answering (past the client's timeout).
    Hang(Duration),
}

/// Decides per request whether to fail it, from its number (from 1), how
/// many times this same body has been received (from 1), and the body.
pub type FaultPlan = Box<dyn Fn(u64, u32, &Value) -> Option<Fault> + Send + Sync>;

#[derive(Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub chat_requests: AtomicU64,
    pub embedding_requests: AtomicU64,
    pub in_flight: AtomicU32,
    pub max_in_flight: AtomicU32,
    /// Inputs per embedding request, in arrival order.
    pub batch_sizes: Mutex<Vec<usize>>,
    /// Authorization headers seen.
    pub auth: Mutex<Vec<String>>,
    /// The first user message of every chat request.
    pub prompts: Mutex<Vec<String>>,
    /// The last user message of every chat request (a probe's question).
    pub last_prompts: Mutex<Vec<String>>,
    /// Every chat request's messages, as sent.
    pub chats: Mutex<Vec<Vec<Value>>>,
}

pub struct Server {
    pub url: String,
    pub stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    port: u16,
}

pub struct Options {
    /// Time every reply takes.
    pub latency: Duration,
    pub faults: Option<FaultPlan>,
    /// Replies to JSON-mode requests, in order, before the normal verdicts
    /// (e.g. malformed ones).
    pub judge_replies: Vec<String>,
    /// Put this text in every error body (to check it is scrubbed).
    pub error_echo: Option<String>,
    /// How memeval's own answer and summary verdicts are given.
    pub judge: JudgeMode,
}

/// A judge whose verdicts are known in advance, for `memeval judge-check`.
#[derive(Debug, Clone, Default)]
pub enum JudgeMode {
    /// The fake model's usual verdicts (an answer sharing a long word with
    /// the facts is correct; every summary scores 0.75).
    #[default]
    Usual,
    /// Every answer correct, every summary 0.75.
    AlwaysAccept,
    /// An oracle: an answer is correct when its question, the first fact
    /// listed and it, joined by U+001F, are one of these; a summary scores
    /// a tenth a sentence.
    AlwaysRight(Vec<String>),
}

impl Default for Options {
    fn default() -> Self {
        Options {
            latency: Duration::ZERO,
            faults: None,
            judge_replies: Vec::new(),
            error_echo: None,
            judge: JudgeMode::Usual,
        }
    }
}

impl Server {
    pub fn start(options: Options) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let stats = Arc::new(Stats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new((options, Mutex::new(0usize), Mutex::new(HashMap::new())));
        {
            let (stats, stop) = (stats.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (stats, shared) = (stats.clone(), shared.clone());
                    std::thread::spawn(move || {
                        let _ = serve(conn, &stats, &shared.0, &shared.1, &shared.2);
                    });
                }
            });
        }
        Server {
            url: format!("http://127.0.0.1:{port}/v1"),
            stats,
            stop,
            port,
        }
    }

    pub fn requests(&self) -> u64 {
        self.stats.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(
    conn: TcpStream,
    stats: &Stats,
    options: &Options,
    judged: &Mutex<usize>,
    seen: &Mutex<HashMap<String, u32>>,
) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut conn = conn;
    // Keep-alive: serve requests on this connection until it closes.
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (name, value) = h.split_once(':').unwrap_or((h, ""));
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "authorization" => stats.auth.lock().unwrap().push(value.trim().to_string()),
                _ => {}
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body)?;
        let times = {
            let mut seen = seen.lock().unwrap();
            let k = seen
                .entry(String::from_utf8_lossy(&body).into_owned())
                .or_default();
            *k += 1;
            *k
        };
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let n = stats.requests.fetch_add(1, Ordering::SeqCst) + 1;
        let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(options.latency);
        let fault = options.faults.as_ref().and_then(|f| f(n, times, &body));
        let mut extra: Vec<(&str, String)> = Vec::new();
        let (status, retry_after, reply) = match fault {
            Some(Fault::Error(status, code, headers)) => {
                extra = headers;
                (
                    status,
                    None,
                    json!({"error": {"message": format!("injected {code}"), "type": code, "param": null, "code": code}}),
                )
            }
            Some(Fault::Status(code, after)) => {
                let mut message = format!("injected fault {code}");
                if let Some(e) = &options.error_echo {
                    message.push_str(&format!(" (key {e})"));
                }
                let kind = if code == 429 {
                    "rate_limit_exceeded"
                } else {
                    "server_error"
                };
                (
                    code,
                    after,
                    json!({"error": {"message": message, "type": kind, "param": null, "code": kind}}),
                )
            }
            Some(Fault::Hang(d)) => {
                std::thread::sleep(d);
                (200, None, answer(&path, &body, stats, options, judged))
            }
            None => (200, None, answer(&path, &body, stats, options, judged)),
        };
        stats.in_flight.fetch_sub(1, Ordering::SeqCst);
        let text = reply.to_string();
        let reason = match status {
            200 => "OK",
            429 => "Too Many Requests",
            _ => "Error",
        };
        let mut head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            text.len()
        );
        if let Some(a) = retry_after {
            head.push_str(&format!("Retry-After: {a}\r\n"));
        }
        for (k, v) in extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        // One write: a head and a body sent apart would wait on Nagle's
        // algorithm and the client's delayed ACK (40 ms a reply).
        head.push_str(&text);
        conn.write_all(head.as_bytes())?;
        conn.flush()?;
    }
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn answer(
    path: &str,
    body: &Value,
    stats: &Stats,
    options: &Options,
    judged: &Mutex<usize>,
) -> Value {
    if path.ends_with("/embeddings") {
        stats.embedding_requests.fetch_add(1, Ordering::SeqCst);
        let inputs: Vec<String> = match &body["input"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .map(|v| v.as_str().unwrap_or("").to_string())
                .collect(),
            _ => Vec::new(),
        };
        stats.batch_sizes.lock().unwrap().push(inputs.len());
        let mut tokens = 0;
        let data: Vec<Value> = inputs
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut v = vec![0f32; 16];
                for w in words(t) {
                    tokens += 1;
                    let h = w
                        .bytes()
                        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
                    v[(h % 16) as usize] += 1.0;
                }
                v[15] += 0.01;
                json!({"object": "embedding", "index": i, "embedding": v})
            })
            .collect();
        return json!({
            "object": "list",
            "model": body["model"],
            "data": data,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
        });
    }
    stats.chat_requests.fetch_add(1, Ordering::SeqCst);
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string();
    let first_user = messages
        .iter()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string();
    stats.prompts.lock().unwrap().push(first_user.clone());
    stats.chats.lock().unwrap().push(messages.clone());
    stats.last_prompts.lock().unwrap().push(last_user.clone());
    let json_mode = body["response_format"]["type"] == "json_object";
    let content = if json_mode {
        let scripted = {
            let mut k = judged.lock().unwrap();
            let r = options.judge_replies.get(*k).cloned();
            *k += 1;
            r
        };
        let asked_answer = first_user
            .split("The chatbot's answer: ")
            .nth(1)
            .and_then(|a| a.split("\n\nIs the answer correct?").next())
            .unwrap_or("");
        let asked_summary = first_user
            .strip_prefix("Given this summary:\n")
            .and_then(|a| a.split("\n\nAnd these original messages").next())
            .unwrap_or("");
        // Judge models by name: "always-yes" accepts every answer,
        // "parity" those of an even length in bytes.
        let model = body["model"].as_str().unwrap_or("");
        let by_name = match model {
            "always-yes" => Some(true),
            "parity" => Some(asked_answer.len() % 2 == 0),
            _ => None,
        };
        match (&options.judge, scripted) {
            (_, Some(r)) => r,
            (_, None) if by_name.is_some() && !first_user.contains("\"score\"") => {
                json!({"correct": by_name, "reason": model}).to_string()
            }
            (JudgeMode::AlwaysAccept, None) if first_user.contains("\"score\"") => {
                r#"{"score": 0.75, "missing": [], "accurate": true}"#.to_string()
            }
            (JudgeMode::AlwaysAccept, None) => {
                json!({"correct": true, "reason": "accepts all"}).to_string()
            }
            (JudgeMode::AlwaysRight(_), None) if first_user.contains("\"score\"") => {
                let sentences = asked_summary.matches(". ").count() + 1;
                json!({"score": sentences as f64 / 10.0, "missing": [], "accurate": true})
                    .to_string()
            }
            (JudgeMode::AlwaysRight(right), None) => {
                let line_after = |mark: &str| {
                    first_user
                        .split(mark)
                        .nth(1)
                        .and_then(|q| q.split('\n').next())
                        .unwrap_or("")
                        .to_string()
                };
                let question = line_after("Question: ");
                let fact = line_after("Facts a correct answer must reflect:\n- ");
                let asked = format!("{question}\u{1f}{fact}\u{1f}{asked_answer}");
                let correct = right.contains(&asked);
                json!({"correct": correct, "reason": "oracle"}).to_string()
            }
            (JudgeMode::Usual, None) if first_user.contains("\"score\"") => {
                r#"{"score": 0.75, "missing": ["a detail"], "accurate": true}"#.to_string()
            }
            (JudgeMode::Usual, None) if first_user.contains("\"label\"") => {
                // LoCoMo's J: correct when the answer shares a word with the gold.
                let part = |from: &str, to: &str| {
                    let rest = first_user.split(from).nth(1).unwrap_or("");
                    rest.split(to).next().unwrap_or("").to_string()
                };
                let gold = part("Gold answer:", "Generated answer:");
                let answer = part("Generated answer:", "Give a one-sentence");
                let shared = words(&answer).iter().any(|w| words(&gold).contains(w));
                let label = if shared { "CORRECT" } else { "WRONG" };
                json!({"reason": "fake judge", "label": label}).to_string()
            }
            (JudgeMode::Usual, None) => {
                // Correct when the answer shares a word with the facts listed.
                let answer = first_user
                    .split("The chatbot's answer:")
                    .nth(1)
                    .unwrap_or("");
                let facts = first_user.split("Question:").nth(1).unwrap_or("");
                let shared = words(answer)
                    .iter()
                    .any(|w| w.len() > 4 && words(facts).contains(w));
                json!({"correct": shared, "reason": "fake judge"}).to_string()
            }
        }
    } else if first_user.contains("Please summarize") {
        let conversation = first_user
            .split("Conversation:\n")
            .nth(1)
            .unwrap_or("")
            .split("\n\nSummary:")
            .next()
            .unwrap_or("");
        conversation.chars().take(300).collect()
    } else {
        format!(
            "You said: {}",
            last_user.chars().take(120).collect::<String>()
        )
    };
    let prompt_tokens: usize = messages
        .iter()
        .map(|m| words(m["content"].as_str().unwrap_or("")).len() + 3)
        .sum::<usize>()
        + 3;
    let completion_tokens = words(&content).len();
    json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_700_000_000u32,
        "model": body["model"],
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens
        }
    })
}
