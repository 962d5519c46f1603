//! One connection to a plugin: a process over stdio (one JSON object a
//! line each way, strictly alternating, its stderr kept in the run's log)
//! or an http endpoint; requests numbered, replies checked, every wait
//! bounded by `timeout_ms`.

use std::collections::{BTreeSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};

use super::http;

/// Lines of a plugin's log kept for error messages.
const TAIL: usize = 12;
/// The longest line a plugin may reply with.
const MAX_LINE: u64 = http::MAX_BODY as u64;

/// Where a plugin's log lines go: the run's `plugins/NAME.log`, and the
/// last few of each process for its errors.
#[derive(Clone)]
pub struct Log {
    pub file: Arc<Mutex<std::fs::File>>,
    /// How errors name it (relative to the run folder).
    pub shown: String,
}

impl Log {
    fn write(&self, line: &str) {
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(f, "{line}");
    }
}

enum Transport {
    Stdio {
        child: Child,
        stdin: ChildStdin,
        lines: Receiver<Result<String, String>>,
        tail: Arc<Mutex<VecDeque<String>>>,
        stderr: Option<std::thread::JoinHandle<()>>,
    },
    Http(http::Client),
}

/// A live connection to one plugin process (or endpoint).
pub struct Conn {
    transport: Transport,
    timeout: Duration,
    next_id: u64,
    log: Log,
    /// Users opened in this process and not closed since.
    pub open: BTreeSet<String>,
    /// Why the connection cannot be used any more.
    pub broken: Option<String>,
}

/// How a process is started.
pub struct Spawn<'a> {
    pub command: &'a [String],
    pub dir: &'a std::path::Path,
    /// Environment to set, and variables to remove (the real API key).
    pub env: Vec<(String, String)>,
    pub remove_env: Vec<String>,
    pub label: String,
}

impl Conn {
    /// Starts a plugin process.
    pub fn spawn(s: &Spawn<'_>, timeout: Duration, log: Log) -> Result<Conn, String> {
        let mut cmd = Command::new(&s.command[0]);
        cmd.args(&s.command[1..])
            .current_dir(s.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for k in &s.remove_env {
            cmd.env_remove(k);
        }
        for (k, v) in &s.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().map_err(|e| {
            format!(
                "cannot start {:?} in {}: {e}",
                s.command.join(" "),
                s.dir.display()
            )
        })?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut buf = Vec::new();
                match r.by_ref().take(MAX_LINE).read_until(b'\n', &mut buf) {
                    Ok(0) => {
                        let _ = tx.send(Err("the plugin closed its stdout (exited?)".into()));
                        return;
                    }
                    Ok(_) if buf.last() != Some(&b'\n') && buf.len() as u64 >= MAX_LINE => {
                        let _ = tx.send(Err(format!("a reply line over {MAX_LINE} bytes")));
                        return;
                    }
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                        if tx.send(Ok(line)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(format!("reading its stdout: {e}")));
                        return;
                    }
                }
            }
        });
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let (t, l, label) = (tail.clone(), log.clone(), s.label.clone());
        let stderr = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                l.write(&format!("[{label}] {line}"));
                let mut t = t.lock().unwrap_or_else(|e| e.into_inner());
                if t.len() == TAIL {
                    t.pop_front();
                }
                t.push_back(line);
            }
        });
        log.write(&format!("[{}] started: {}", s.label, s.command.join(" ")));
        Ok(Conn {
            transport: Transport::Stdio {
                child,
                stdin,
                lines,
                tail,
                stderr: Some(stderr),
            },
            timeout,
            next_id: 1,
            log,
            open: BTreeSet::new(),
            broken: None,
        })
    }

    /// A connection to an http plugin.
    pub fn http(url: &str, timeout: Duration, log: Log) -> Result<Conn, String> {
        Ok(Conn {
            transport: Transport::Http(http::Client::new(url, timeout)?),
            timeout,
            next_id: 1,
            log,
            open: BTreeSet::new(),
            broken: None,
        })
    }

    /// The last lines of the process's log, for an error message.
    pub fn tail(&self) -> String {
        match &self.transport {
            // A broken connection's process has ended, and its stderr
            // has been read to the end (see `kill`).
            Transport::Stdio { tail, .. } => {
                let t = tail.lock().unwrap_or_else(|e| e.into_inner());
                if t.is_empty() {
                    format!("{} has nothing from this process", self.log.shown)
                } else {
                    let lines: Vec<String> = t.iter().map(|l| format!("    {l}")).collect();
                    format!("last lines of {}:\n{}", self.log.shown, lines.join("\n"))
                }
            }
            Transport::Http(_) => String::new(),
        }
    }

    /// Sends one request and returns the reply's fields (`ok` was true).
    /// Any fault breaks the connection: its process is ended.
    pub fn call(
        &mut self,
        op: &str,
        fields: Map<String, Value>,
    ) -> Result<Map<String, Value>, String> {
        if let Some(b) = &self.broken {
            return Err(format!("the plugin's connection failed earlier: {b}"));
        }
        let id = self.next_id;
        self.next_id += 1;
        let mut req = Map::new();
        req.insert("v".into(), Value::from(1));
        req.insert("id".into(), Value::from(id));
        req.insert("op".into(), Value::from(op));
        req.extend(fields);
        let mut line = serde_json::to_vec(&Value::Object(req)).expect("JSON serializes");
        let result = self
            .exchange(&mut line)
            .and_then(|text| check_reply(&text, id));
        if let Err(e) = &result {
            self.break_with(e.clone());
        }
        result
    }

    fn exchange(&mut self, line: &mut Vec<u8>) -> Result<String, String> {
        let timeout = self.timeout;
        match &mut self.transport {
            Transport::Stdio {
                stdin,
                lines,
                child,
                ..
            } => {
                line.push(b'\n');
                stdin
                    .write_all(line)
                    .and_then(|()| stdin.flush())
                    .map_err(|e| exited(child, &format!("writing to its stdin: {e}")))?;
                match lines.recv_timeout(timeout) {
                    Ok(Ok(l)) => Ok(l),
                    Ok(Err(e)) => Err(exited(child, &e)),
                    Err(RecvTimeoutError::Timeout) => Err(format!(
                        "no reply within timeout_ms = {}",
                        timeout.as_millis()
                    )),
                    Err(RecvTimeoutError::Disconnected) => Err(exited(child, "its stdout closed")),
                }
            }
            Transport::Http(c) => match c.post(line) {
                Ok((200, body)) => String::from_utf8(body)
                    .map_err(|_| "the response body is not UTF-8".to_string()),
                Ok((status, body)) => Err(format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(500)])
                )),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    Err(format!(
                        "no reply within timeout_ms = {}",
                        timeout.as_millis()
                    ))
                }
                Err(e) => Err(format!("POST failed: {e}")),
            },
        }
    }

    /// Marks the connection unusable and ends its process.
    pub fn break_with(&mut self, why: String) {
        if self.broken.is_none() {
            self.log.write(&format!("memeval: {why}"));
            self.broken = Some(why);
        }
        self.kill();
    }

    fn kill(&mut self) {
        if let Transport::Stdio { child, stderr, .. } = &mut self.transport {
            let _ = child.kill();
            let _ = child.wait();
            // Its stderr is read to the end, so the log holds everything.
            if let Some(h) = stderr.take() {
                let _ = h.join();
            }
        }
    }

    /// Asks the process to exit (`shutdown`), then waits for it, ending it
    /// if it does not go within its timeout.
    pub fn shutdown(mut self) {
        if self.broken.is_none() {
            let _ = self.call("shutdown", Map::new());
        }
        if let Transport::Stdio { child, stderr, .. } = &mut self.transport {
            let deadline = std::time::Instant::now() + self.timeout;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if std::time::Instant::now() >= deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
            if let Some(h) = stderr.take() {
                let _ = h.join();
            }
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // A connection dropped without a shutdown (a failed run) leaves no
        // process behind.
        self.kill();
    }
}

/// Why the process stopped answering, with its exit status where it has one.
fn exited(child: &mut Child, what: &str) -> String {
    // A process that closed its stdout is usually exiting: give it a moment.
    for _ in 0..50 {
        if let Ok(Some(status)) = child.try_wait() {
            return format!("{what}; the process exited ({status})");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    what.to_string()
}

/// A reply line: a JSON object with our id, `ok` true; its fields.
fn check_reply(text: &str, id: u64) -> Result<Map<String, Value>, String> {
    let shown = || {
        let t: String = text.chars().take(200).collect();
        if t.len() < text.len() {
            format!("{t}...")
        } else {
            t
        }
    };
    let v: Value = serde_json::from_str(text)
        .map_err(|e| format!("a reply that is not JSON ({e}): {:?}", shown()))?;
    let Value::Object(m) = v else {
        return Err(format!("a reply that is not a JSON object: {:?}", shown()));
    };
    match m.get("id").and_then(Value::as_u64) {
        Some(got) if got == id => {}
        Some(got) => return Err(format!("a reply with id {got} to request {id}")),
        None => return Err(format!("a reply without a numeric id: {:?}", shown())),
    }
    match m.get("ok") {
        Some(Value::Bool(true)) => Ok(m),
        Some(Value::Bool(false)) => Err(format!(
            "the plugin reported an error: {}",
            m.get("error")
                .and_then(Value::as_str)
                .unwrap_or("(no error text)")
        )),
        _ => Err(format!(
            "a reply without \"ok\": true or false: {:?}",
            shown()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_checked_for_json_id_and_ok() {
        assert!(check_reply(r#"{"id": 3, "ok": true, "x": 1}"#, 3).is_ok());
        let e = check_reply("hello", 3).unwrap_err();
        assert!(e.contains("not JSON"), "{e}");
        let e = check_reply(r#"{"id": 4, "ok": true}"#, 3).unwrap_err();
        assert!(e.contains("id 4 to request 3"), "{e}");
        let e = check_reply(r#"{"id": 3, "ok": false, "error": "disk full"}"#, 3).unwrap_err();
        assert!(e.contains("disk full"), "{e}");
        let e = check_reply(r#"[1]"#, 3).unwrap_err();
        assert!(e.contains("not a JSON object"), "{e}");
    }
}
