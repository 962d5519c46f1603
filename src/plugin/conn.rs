//! One connection to a plugin: a process over stdio (one JSON object a
//! line each way, strictly alternating, its stderr kept in the run's log)
//! or an http endpoint; requests numbered, replies checked, every wait
//! bounded by `timeout_ms`.

use std::collections::{BTreeSet, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};

use super::http;

/// Lines of a plugin's log kept for error messages.
const TAIL: usize = 12;
/// The longest line a plugin may reply with.
const MAX_LINE: u64 = http::MAX_BODY as u64;
/// The most request bytes sent in one write to a pipelining process: less
/// than a pipe holds, so that the write never waits for the process to
/// read while it waits for memeval to read its replies.
const PIPELINE_BYTES: usize = 32 << 10;

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
        lines: Lines,
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
    /// The process declared `capabilities.pipeline` (stdio only): it reads
    /// requests in order and answers each in turn, so several can be sent
    /// at once.
    pub pipeline: bool,
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
        let lines = Lines::new(stdout);
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
            pipeline: false,
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
            pipeline: false,
        })
    }

    /// The process's id (none for an http endpoint).
    pub fn pid(&self) -> Option<u32> {
        match &self.transport {
            Transport::Stdio { child, .. } => Some(child.id()),
            Transport::Http(_) => None,
        }
    }

    /// Whether this is an http endpoint (no process of memeval's own).
    pub fn is_http(&self) -> bool {
        matches!(self.transport, Transport::Http(_))
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

    /// Sends one request and returns its reply line (`ok` was true). Any
    /// fault breaks the connection: its process is ended.
    pub fn call(&mut self, op: &str, fields: Map<String, Value>) -> Result<String, String> {
        self.call_many(vec![(op, fields)])
            .map(|mut replies| replies.pop().expect("one reply a request"))
            .map_err(|(_, e)| e)
    }

    /// Sends requests in order and returns their reply lines (each `ok`).
    /// A process that declared the `pipeline` capability gets them in one
    /// write and answers them in order before memeval reads (one wake-up
    /// for all); any other gets them one at a time. A fault names the
    /// index of the request it is about and breaks the connection.
    pub fn call_many(
        &mut self,
        requests: Vec<(&str, Map<String, Value>)>,
    ) -> Result<Vec<String>, (usize, String)> {
        if let Some(b) = &self.broken {
            return Err((0, format!("the plugin's connection failed earlier: {b}")));
        }
        let first = self.next_id;
        self.next_id += requests.len() as u64;
        let mut lines = Vec::with_capacity(requests.len());
        for (i, (op, fields)) in requests.into_iter().enumerate() {
            let mut req = Map::new();
            req.insert("v".into(), Value::from(1));
            req.insert("id".into(), Value::from(first + i as u64));
            req.insert("op".into(), Value::from(op));
            req.extend(fields);
            let mut line = serde_json::to_vec(&Value::Object(req)).expect("JSON serializes");
            line.push(b'\n');
            lines.push(line);
        }
        let together = self.pipeline
            && lines.len() > 1
            && lines.iter().map(Vec::len).sum::<usize>() <= PIPELINE_BYTES;
        let mut replies = Vec::with_capacity(lines.len());
        let mut result = Ok(());
        if together {
            result = self.send(&lines.concat()).map_err(|e| (0, e));
        }
        for (i, line) in lines.iter().enumerate() {
            if result.is_err() {
                break;
            }
            let reply = if together {
                self.receive()
            } else {
                self.exchange(line)
            };
            result = reply
                .and_then(|text| check_reply(text, first + i as u64))
                .map(|text| replies.push(text))
                .map_err(|e| (i, e));
        }
        if let Err((_, e)) = &result {
            self.break_with(e.clone());
        }
        result.map(|()| replies)
    }

    /// One request line sent, and its reply line.
    fn exchange(&mut self, line: &[u8]) -> Result<String, String> {
        let timeout = self.timeout;
        match &mut self.transport {
            Transport::Stdio { .. } => {
                self.send(line)?;
                self.receive()
            }
            Transport::Http(c) => match c.post(&line[..line.len() - 1]) {
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

    /// Writes request lines to the process's stdin.
    fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        let Transport::Stdio { stdin, child, .. } = &mut self.transport else {
            unreachable!("only a process is written to");
        };
        stdin
            .write_all(bytes)
            .and_then(|()| stdin.flush())
            .map_err(|e| exited(child, &format!("writing to its stdin: {e}")))
    }

    /// The process's next reply line, waiting at most `timeout_ms`.
    fn receive(&mut self) -> Result<String, String> {
        let timeout = self.timeout;
        let Transport::Stdio { lines, child, .. } = &mut self.transport else {
            unreachable!("only a process is read from");
        };
        match lines.next(timeout) {
            Ok(Some(l)) => Ok(l),
            Ok(None) => Err(format!(
                "no reply within timeout_ms = {}",
                timeout.as_millis()
            )),
            Err(e) => Err(exited(child, &e)),
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

/// The lines of a process's stdout, read in this thread with a deadline
/// (poll(2) on the pipe): no reader thread, so a reply costs no handoff.
struct Lines {
    out: ChildStdout,
    /// Read bytes are `buf[at..end]`; the rest is room to read into.
    buf: Vec<u8>,
    at: usize,
    end: usize,
}

impl Lines {
    fn new(out: ChildStdout) -> Lines {
        Lines {
            out,
            buf: vec![0; 64 << 10],
            at: 0,
            end: 0,
        }
    }

    /// The next line (without its newline); `None` when none came within
    /// `timeout`.
    fn next(&mut self, timeout: Duration) -> Result<Option<String>, String> {
        use std::io::Read;
        let deadline = std::time::Instant::now() + timeout;
        let mut searched = self.at;
        loop {
            if let Some(i) = self.buf[searched..self.end]
                .iter()
                .position(|&b| b == b'\n')
            {
                let stop = searched + i;
                let line = self.buf[self.at..stop].trim_ascii_end().to_vec();
                self.at = stop + 1;
                if self.at == self.end {
                    (self.at, self.end) = (0, 0);
                }
                return String::from_utf8(line)
                    .map(Some)
                    .map_err(|_| "a reply line that is not UTF-8".to_string());
            }
            searched = self.end;
            if (self.end - self.at) as u64 > MAX_LINE {
                return Err(format!("a reply line over {MAX_LINE} bytes"));
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let mut fds = libc::pollfd {
                fd: self.out.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd, for the duration of the call.
            let ready = unsafe { libc::poll(&mut fds, 1, ms) };
            if ready < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("waiting for its stdout: {e}"));
            }
            if ready == 0 {
                continue;
            }
            // Room to read: the unread part moved to the front, and the
            // buffer doubled when that is not room enough.
            if self.end == self.buf.len() {
                self.buf.copy_within(self.at..self.end, 0);
                (searched, self.end) = (searched - self.at, self.end - self.at);
                self.at = 0;
                if self.end > self.buf.len() / 2 {
                    self.buf.resize(self.buf.len() * 2, 0);
                }
            }
            match self.out.read(&mut self.buf[self.end..]) {
                Ok(0) => return Err("the plugin closed its stdout (exited?)".into()),
                Ok(n) => self.end += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("reading its stdout: {e}")),
            }
        }
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

/// What every reply holds; the rest is read by whoever asked.
#[derive(serde::Deserialize)]
struct Head {
    id: Option<Value>,
    ok: Option<Value>,
    error: Option<Value>,
}

/// A reply line: a JSON object with our id and `ok` true (the line is
/// returned whole, for its fields to be read as the operation needs).
fn check_reply(text: String, id: u64) -> Result<String, String> {
    let shown = || {
        let t: String = text.chars().take(200).collect();
        if t.len() < text.len() {
            format!("{t}...")
        } else {
            t
        }
    };
    let head: Head = serde_json::from_str(&text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            format!("a reply that is not a JSON object: {:?}", shown())
        }
        _ => format!("a reply that is not JSON ({e}): {:?}", shown()),
    })?;
    match head.id.as_ref().and_then(Value::as_u64) {
        Some(got) if got == id => {}
        Some(got) => return Err(format!("a reply with id {got} to request {id}")),
        None => return Err(format!("a reply without a numeric id: {:?}", shown())),
    }
    match head.ok {
        Some(Value::Bool(true)) => Ok(text),
        Some(Value::Bool(false)) => Err(format!(
            "the plugin reported an error: {}",
            head.error
                .as_ref()
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
    fn lines_longer_than_the_buffer_and_many_in_one_read_are_split_right() {
        let mut child = Command::new("sh")
            .args([
                "-c",
                "head -c 200000 /dev/zero | tr '\\0' a; printf '\\nb\\nc\\n'; sleep 0.2; printf 'd\\n'",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = Lines::new(child.stdout.take().unwrap());
        let t = Duration::from_secs(5);
        let long = lines.next(t).unwrap().unwrap();
        assert_eq!(long.len(), 200_000);
        assert!(long.bytes().all(|b| b == b'a'));
        for want in ["b", "c", "d"] {
            assert_eq!(lines.next(t).unwrap().as_deref(), Some(want));
        }
        assert!(lines.next(t).unwrap_err().contains("closed its stdout"));
        child.wait().unwrap();
    }

    #[test]
    fn replies_are_checked_for_json_id_and_ok() {
        let check = |t: &str| check_reply(t.to_string(), 3);
        assert!(check(r#"{"id": 3, "ok": true, "x": 1}"#).is_ok());
        let e = check("hello").unwrap_err();
        assert!(e.contains("not JSON"), "{e}");
        let e = check(r#"{"id": 4, "ok": true}"#).unwrap_err();
        assert!(e.contains("id 4 to request 3"), "{e}");
        let e = check(r#"{"id": 3, "ok": false, "error": "disk full"}"#).unwrap_err();
        assert!(e.contains("disk full"), "{e}");
        let e = check(r#"[1]"#).unwrap_err();
        assert!(e.contains("not a JSON object"), "{e}");
        let e = check(r#"{"id": 3}"#).unwrap_err();
        assert!(e.contains("\"ok\""), "{e}");
    }
}
