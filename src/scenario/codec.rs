//! A validated scenario as compact bytes and back, without checking it
//! again: a run that replays a population through a registry keeps each
//! user's scenario in a spool file while the user is evicted, and reading
//! it back costs about a fifth of parsing and validating its JSON again.
//!
//! The format is private to one run (written and read by the same
//! binary): little-endian integers, strings as a length and UTF-8 bytes,
//! options as a flag byte. A record is its skeleton (its length, then
//! everything but the messages' texts) followed by the messages' texts,
//! so that a user of a registry taken in for one step reads the skeleton
//! alone and then the one text its step needs (see [`decode_skeleton`]).

use std::path::PathBuf;
use std::sync::Arc;

use super::{Fact, Message, Probe, Role, Scenario, Session, Source, Step, Text, Tools};

/// Appends `s` to `out`; returns the length of its skeleton.
pub fn encode(s: &Scenario, out: &mut Vec<u8>) -> usize {
    // Every text of the facts, probes and phrases in one string, each a
    // part of it: one allocation to read them back, not one a text. The
    // messages' texts in another, after the skeleton.
    let mut texts = String::new();
    let mut messages = String::new();
    let mut body = Vec::new();
    let mut w = Writer(&mut body, &mut texts);
    w.str(&s.name);
    w.opt(s.description.as_deref(), Writer::str);
    w.str(&s.user);
    w.str(&s.system_prompt);
    w.len(s.facts.len());
    for f in &s.facts {
        w.text(&f.id);
        w.opt(f.statement.as_deref(), Writer::text);
        w.len(f.expect.len());
        f.expect.iter().for_each(|e| w.text(e));
        w.opt(f.supersedes, Writer::usize);
        w.u32s(&f.planted_by);
        w.u32s(&f.phrases);
    }
    w.len(s.sessions.len());
    for session in &s.sessions {
        w.str(&session.id);
        w.opt(session.start, Writer::i64);
    }
    w.len(s.messages.len());
    for m in &s.messages {
        w.u32(m.number);
        w.usize(m.session);
        w.0.push(match m.role {
            Role::User => 0,
            Role::Assistant => 1,
            Role::Tool => 2,
        });
        w.opt(m.content.as_deref(), |w, c| {
            let start = messages.len();
            messages.push_str(c);
            w.len(start);
            w.len(messages.len());
        });
        let tool = m.tool.as_ref().map(|t| t.to_json());
        w.opt(tool.as_deref(), Writer::str);
        w.usizes(&m.plants);
        w.opt(m.at, Writer::i64);
    }
    w.len(s.probes.len());
    for p in &s.probes {
        w.text(&p.id);
        w.text(&p.question);
        w.usizes(&p.expects);
        w.opt(p.answer.as_deref(), Writer::text);
        w.opt(p.kind.as_deref(), Writer::text);
        w.opt(p.at, Writer::i64);
        w.opt(p.every, Writer::u32);
    }
    w.len(s.steps.len());
    for step in &s.steps {
        match *step {
            Step::Session(i) => {
                w.0.push(0);
                w.usize(i);
            }
            Step::Message(n) => {
                w.0.push(1);
                w.u32(n);
            }
            Step::Probe { probe, turn } => {
                w.0.push(2);
                w.usize(probe);
                w.u32(turn);
            }
        }
    }
    w.len(s.phrases.iter().len());
    s.phrases.iter().for_each(|p| w.text(p));
    w.str(&s.file.to_string_lossy());
    w.str(&s.sha256);
    w.0.extend_from_slice(&s.bytes.to_le_bytes());
    let source = s
        .source
        .as_ref()
        .map(|src| serde_json::to_string(src).expect("a source serializes"));
    w.opt(source.as_deref(), Writer::str);
    assert!(
        messages.len() < 1 << 31,
        "a scenario's messages under 2 GiB"
    );
    let start = out.len();
    let skeleton = 4 + 4 + texts.len() + body.len();
    let mut w = Writer(out, &mut String::new());
    w.len(skeleton);
    w.str(&texts);
    out.extend_from_slice(&body);
    debug_assert_eq!(out.len() - start, skeleton);
    out.extend_from_slice(messages.as_bytes());
    skeleton
}

/// The scenario that [`encode`] wrote at the start of `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Scenario, String> {
    let whole = (|| {
        let skeleton = Reader { bytes, at: 0 }.u32()? as usize;
        let messages = utf8(bytes.get(skeleton..).ok_or("it ends early")?)?;
        read(bytes, Some(&Arc::from(messages)))
    })();
    whole.map_err(unreadable)
}

/// A message's text, read from where a [`decode_skeleton`]d scenario's
/// [`Text::away_span`] says it is.
pub fn decode_text(bytes: &[u8]) -> Result<Text, String> {
    utf8(bytes).map(Text::from).map_err(unreadable)
}

fn utf8(bytes: &[u8]) -> Result<&str, Bad> {
    std::str::from_utf8(bytes).map_err(|_| "a text not UTF-8")
}

fn unreadable(e: Bad) -> String {
    format!("a spooled scenario unreadable: {e}")
}

/// The skeleton of a scenario that [`encode`] wrote at the start of
/// `bytes`, read from its first [`encode`]d-length bytes or more: every
/// message's text is [`Text::away`], where it is in the bytes that follow
/// the skeleton.
pub fn decode_skeleton(bytes: &[u8]) -> Result<Scenario, String> {
    read(bytes, None).map_err(unreadable)
}

/// What is wrong with bytes being read (a static text: reading fails
/// rarely, and a `String` error would weigh on every field read).
type Bad = &'static str;

/// A record's skeleton from `bytes`, with its messages' texts parts of
/// `message_texts`, or away where that is `None`.
fn read(bytes: &[u8], message_texts: Option<&Arc<str>>) -> Result<Scenario, Bad> {
    let mut r = Reader { bytes, at: 0 };
    let skeleton = r.u32()? as usize;
    r.bytes = bytes.get(..skeleton).ok_or("it ends early")?;
    let texts: Arc<str> = Arc::from(r.str()?);
    let text = |r: &mut Reader<'_>| {
        let (start, end) = (r.u32()? as usize, r.u32()? as usize);
        Text::part(&texts, start, end).ok_or("a text out of place")
    };
    let content = |r: &mut Reader<'_>| {
        let (start, end) = (r.u32()?, r.u32()?);
        match message_texts {
            Some(m) => Text::part(m, start as usize, end as usize),
            None => Text::away(&texts, start, end),
        }
        .ok_or("a text out of place")
    };
    let name = r.string()?;
    let description = r.opt(Reader::string)?;
    let user = r.string()?;
    let system_prompt = r.string()?;
    let facts = r.list(|r| {
        Ok(Fact {
            id: text(r)?,
            statement: r.opt(text)?,
            expect: r.list(text)?,
            supersedes: r.opt(Reader::usize)?,
            planted_by: r.list(Reader::u32)?,
            phrases: r.list(Reader::u32)?,
        })
    })?;
    let sessions = r.list(|r| {
        Ok(Session {
            id: r.string()?,
            start: r.opt(Reader::i64)?,
        })
    })?;
    let messages = r.list(|r| {
        Ok(Message {
            number: r.u32()?,
            session: r.usize()?,
            role: match r.byte()? {
                0 => Role::User,
                1 => Role::Assistant,
                _ => Role::Tool,
            },
            content: r.opt(content)?,
            tool: r
                .opt(|r| Tools::from_json(r.str()?).ok_or("tool calls unreadable"))?
                .map(Arc::new),
            plants: r.list(Reader::usize)?,
            at: r.opt(Reader::i64)?,
        })
    })?;
    let probes = r.list(|r| {
        Ok(Probe {
            id: text(r)?,
            question: text(r)?,
            expects: r.list(Reader::usize)?,
            answer: r.opt(text)?,
            kind: r.opt(text)?,
            at: r.opt(Reader::i64)?,
            every: r.opt(Reader::u32)?,
        })
    })?;
    let steps = r.list(|r| {
        Ok(match r.byte()? {
            0 => Step::Session(r.usize()?),
            1 => Step::Message(r.u32()?),
            _ => Step::Probe {
                probe: r.usize()?,
                turn: r.u32()?,
            },
        })
    })?;
    let phrases = crate::text::Phrases::new(r.list(text)?);
    let file = PathBuf::from(r.string()?);
    let sha256 = r.string()?;
    let bytes_len = r.i64()? as u64;
    let source = r
        .opt(Reader::str)?
        .map(|s| serde_json::from_str::<Source>(s).map_err(|_| "a source unreadable"))
        .transpose()?;
    Ok(Scenario {
        name,
        description,
        user,
        system_prompt,
        facts,
        sessions,
        messages,
        probes,
        steps,
        phrases,
        file,
        sha256,
        bytes: bytes_len,
        source,
    })
}

/// Bytes being written, and the texts they hold parts of.
struct Writer<'a>(&'a mut Vec<u8>, &'a mut String);

impl Writer<'_> {
    /// `t` as a part of the texts.
    fn text(&mut self, t: &str) {
        let start = self.1.len();
        self.1.push_str(t);
        let end = self.1.len();
        self.len(start);
        self.len(end);
    }

    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn usize(&mut self, v: usize) {
        self.0.extend_from_slice(&(v as u64).to_le_bytes());
    }

    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn len(&mut self, n: usize) {
        self.u32(u32::try_from(n).expect("fewer than 2^32 items"));
    }

    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }

    fn opt<T>(&mut self, v: Option<T>, put: impl FnOnce(&mut Self, T)) {
        match v {
            Some(v) => {
                self.0.push(1);
                put(self, v);
            }
            None => self.0.push(0),
        }
    }

    fn u32s(&mut self, v: &[u32]) {
        self.len(v.len());
        v.iter().for_each(|&x| self.u32(x));
    }

    fn usizes(&mut self, v: &[usize]) {
        self.len(v.len());
        v.iter().for_each(|&x| self.usize(x));
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Bad> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or("it ends early")?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, Bad> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, Bad> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i64(&mut self) -> Result<i64, Bad> {
        let b = self.take(8)?;
        Ok(i64::from_le_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }

    fn usize(&mut self) -> Result<usize, Bad> {
        Ok(self.i64()? as usize)
    }

    fn str(&mut self) -> Result<&'a str, Bad> {
        let n = self.u32()? as usize;
        utf8(self.take(n)?)
    }

    fn string(&mut self) -> Result<String, Bad> {
        self.str().map(str::to_string)
    }

    fn opt<T>(&mut self, get: impl FnOnce(&mut Self) -> Result<T, Bad>) -> Result<Option<T>, Bad> {
        match self.byte()? {
            0 => Ok(None),
            _ => get(self).map(Some),
        }
    }

    fn list<T>(&mut self, mut get: impl FnMut(&mut Self) -> Result<T, Bad>) -> Result<Vec<T>, Bad> {
        let n = self.u32()? as usize;
        // A corrupt count cannot make this allocate more than the bytes
        // left could hold.
        let mut out = Vec::with_capacity(n.min(self.bytes.len() - self.at));
        for _ in 0..n {
            out.push(get(self)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    /// Every shipped scenario and importer excerpt, encoded and decoded,
    /// is the scenario it was (compared whole, through its Debug form).
    #[test]
    fn round_trips_every_shipped_scenario() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut n = 0;
        for dir in ["scenarios", "tests/data"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                let Ok(s) = super::super::load_file(&path) else {
                    continue;
                };
                let mut bytes = Vec::new();
                let skeleton = super::encode(&s, &mut bytes);
                let back = super::decode(&bytes).unwrap();
                assert_eq!(format!("{back:?}"), format!("{s:?}"), "{}", path.display());
                // Cut anywhere, it is refused, not misread.
                for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
                    assert!(super::decode(&bytes[..cut]).is_err(), "{}", path.display());
                }
                // Its skeleton, alone or with the texts after it, is the
                // scenario but for each message's text, away where it is
                // in the texts after the skeleton.
                let texts = &bytes[skeleton..];
                assert!(skeleton < bytes.len(), "{}", path.display());
                for read in [&bytes[..skeleton], &bytes[..]] {
                    let mut back = super::decode_skeleton(read).unwrap();
                    for m in &mut back.messages {
                        let Some(c) = &m.content else { continue };
                        let (start, end) = c.away_span().expect("away");
                        let text = std::str::from_utf8(&texts[start as usize..end as usize]);
                        m.content = Some(super::Text::from(text.unwrap()));
                    }
                    assert_eq!(format!("{back:?}"), format!("{s:?}"), "{}", path.display());
                }
                for cut in [0, 1, skeleton / 2, skeleton - 1] {
                    assert!(super::decode_skeleton(&bytes[..cut]).is_err());
                }
                n += 1;
            }
        }
        assert!(n >= 10, "{n} scenarios");

        // An imported scenario's source, repairs and exclusions.
        let mut s = super::super::load_file(&root.join("scenarios/travel-multihop.json")).unwrap();
        s.source = Some(super::Source {
            dataset: "locomo".into(),
            file: "locomo10.json".into(),
            id: "conv-26".into(),
            repairs: vec!["a repair".into()],
            excluded: vec!["q1".into()],
        });
        let mut bytes = Vec::new();
        super::encode(&s, &mut bytes);
        assert_eq!(
            format!("{:?}", super::decode(&bytes).unwrap()),
            format!("{s:?}")
        );
    }

    /// A text still away is never read as some other text.
    #[test]
    #[should_panic(expected = "before it was fetched")]
    fn an_away_text_read_is_a_panic_not_a_text() {
        let whole = std::sync::Arc::from("a text at hand");
        let away = super::Text::away(&whole, 2, 6).unwrap();
        assert_eq!(away.away_span(), Some((2, 6)));
        let _ = away.len();
    }
}
