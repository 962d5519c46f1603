//! Just enough HTTP/1.1 for loopback JSON: the metering endpoint's requests
//! and responses, and the plugin protocol's http transport. Bodies are
//! framed by `Content-Length` (no chunked encoding), capped, and read with
//! a deadline; a connection is kept alive between requests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The largest body read or accepted.
pub const MAX_BODY: usize = 64 << 20;
/// The largest request or status line, and header line.
const MAX_LINE: u64 = 16 << 10;
const MAX_HEADERS: usize = 100;

/// A request or a response as read: its first line, headers (names
/// lowercased) and body.
#[derive(Debug, Default)]
pub struct Message {
    pub start: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Message {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn line(r: &mut impl BufRead) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    r.by_ref().take(MAX_LINE).read_until(b'\n', &mut buf)?;
    if buf.is_empty() {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(std::io::Error::other("a header line too long or cut short"));
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| std::io::Error::other("a header line that is not UTF-8"))
}

/// Reads one message; `None` at a clean end of the connection.
pub fn read(r: &mut impl BufRead) -> std::io::Result<Option<Message>> {
    let Some(start) = line(r)? else {
        return Ok(None);
    };
    let mut headers = Vec::new();
    loop {
        let l = line(r)?.ok_or_else(|| std::io::Error::other("the headers are cut short"))?;
        if l.is_empty() {
            break;
        }
        if headers.len() == MAX_HEADERS {
            return Err(std::io::Error::other("too many headers"));
        }
        let (name, value) = l
            .split_once(':')
            .ok_or_else(|| std::io::Error::other(format!("a malformed header: {l:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let mut m = Message {
        start,
        headers,
        body: Vec::new(),
    };
    if m.header("transfer-encoding").is_some() {
        return Err(std::io::Error::other(
            "chunked bodies are not accepted: send Content-Length",
        ));
    }
    let len: usize = match m.header("content-length") {
        Some(v) => v
            .parse()
            .map_err(|_| std::io::Error::other(format!("a bad Content-Length: {v:?}")))?,
        None => 0,
    };
    if len > MAX_BODY {
        return Err(std::io::Error::other(format!(
            "a body of {len} bytes, over the limit of {MAX_BODY}"
        )));
    }
    m.body = vec![0; len];
    r.read_exact(&mut m.body)?;
    Ok(Some(m))
}

/// Writes a response with a JSON body.
pub fn respond(w: &mut impl Write, status: u16, body: &[u8]) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        _ => "Error",
    };
    write!(
        w,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )?;
    w.write_all(body)?;
    w.flush()
}

/// A client of one `http://host:port/path` URL, over one kept-alive
/// connection (made again when the server closed it).
pub struct Client {
    authority: String,
    path: String,
    timeout: Duration,
    conn: Option<BufReader<TcpStream>>,
}

impl Client {
    /// A client of `url`, which must be plain `http://`.
    pub fn new(url: &str, timeout: Duration) -> Result<Client, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url:?}: the http transport takes an http:// URL"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("{url:?}: expected http://HOST:PORT/PATH"));
        }
        Ok(Client {
            authority: authority.to_string(),
            path: path.to_string(),
            timeout,
            conn: None,
        })
    }

    fn connect(&self) -> std::io::Result<BufReader<TcpStream>> {
        use std::net::ToSocketAddrs;
        let host = if self.authority.contains(':') {
            self.authority.clone()
        } else {
            format!("{}:80", self.authority)
        };
        let addr = host
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other(format!("{host}: no address")))?;
        let s = TcpStream::connect_timeout(&addr, self.timeout)?;
        s.set_read_timeout(Some(self.timeout))?;
        s.set_write_timeout(Some(self.timeout))?;
        s.set_nodelay(true)?;
        Ok(BufReader::new(s))
    }

    /// POSTs `body` (JSON); the status and body of the response.
    pub fn post(&mut self, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        // A kept-alive connection the server has closed fails at once:
        // tried once more on a new one.
        let reused = self.conn.is_some();
        match self.try_post(body) {
            Err(e) if reused && e.kind() != std::io::ErrorKind::WouldBlock => {
                let _ = e;
                self.conn = None;
                self.try_post(body)
            }
            r => r,
        }
    }

    fn try_post(&mut self, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        if self.conn.is_none() {
            self.conn = Some(self.connect()?);
        }
        let conn = self.conn.as_mut().expect("connected above");
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.path,
            self.authority,
            body.len()
        );
        let s = conn.get_mut();
        s.write_all(head.as_bytes())?;
        s.write_all(body)?;
        s.flush()?;
        let m = read(conn)?.ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection without a response",
            )
        })?;
        let status = m
            .start
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("a bad status line: {:?}", m.start)))?;
        if m.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            self.conn = None;
        }
        Ok((status, m.body))
    }
}
