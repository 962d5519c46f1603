//! A validated scenario as compact bytes and back, without checking it
//! again: a run that replays a population through a registry keeps each
//! user's scenario in a spool file while the user is evicted, and reading
//! it back costs about a fifth of parsing and validating its JSON again.
//!
//! The format is private to one run (written and read by the same
//! binary): little-endian integers, strings as a length and UTF-8 bytes,
//! options as a flag byte.

use std::path::PathBuf;
use std::sync::Arc;

use super::{Fact, Message, Probe, Role, Scenario, Session, Source, Step, Text, Tools};

/// Appends `s` to `out`.
pub fn encode(s: &Scenario, out: &mut Vec<u8>) {
    let mut w = Writer(out);
    w.str(&s.name);
    w.opt(s.description.as_deref(), Writer::str);
    w.str(&s.user);
    w.str(&s.system_prompt);
    w.len(s.facts.len());
    for f in &s.facts {
        w.str(&f.id);
        w.opt(f.statement.as_deref(), Writer::str);
        w.len(f.expect.len());
        f.expect.iter().for_each(|e| w.str(e));
        w.opt(f.supersedes, Writer::usize);
        w.u32s(&f.planted_by);
        w.u32s(&f.phrases);
    }
    w.len(s.sessions.len());
    for session in &s.sessions {
        w.str(&session.id);
        w.opt(session.start, Writer::i64);
    }
    // Every message's text in one string, each message's a part of it:
    // one allocation to read them back, not one a message.
    let mut texts = String::new();
    let mut part = |c: &str| {
        let start = texts.len();
        texts.push_str(c);
        (start, texts.len())
    };
    let parts: Vec<Option<(usize, usize)>> = s
        .messages
        .iter()
        .map(|m| m.content.as_deref().map(&mut part))
        .collect();
    w.str(&texts);
    w.len(s.messages.len());
    for (m, part) in s.messages.iter().zip(parts) {
        w.u32(m.number);
        w.usize(m.session);
        w.0.push(match m.role {
            Role::User => 0,
            Role::Assistant => 1,
            Role::Tool => 2,
        });
        w.opt(part, |w, (start, end)| {
            w.len(start);
            w.len(end);
        });
        let tool = m.tool.as_ref().map(|t| t.to_json());
        w.opt(tool.as_deref(), Writer::str);
        w.usizes(&m.plants);
        w.opt(m.at, Writer::i64);
    }
    w.len(s.probes.len());
    for p in &s.probes {
        w.str(&p.id);
        w.str(&p.question);
        w.usizes(&p.expects);
        w.opt(p.answer.as_deref(), Writer::str);
        w.opt(p.kind.as_deref(), Writer::str);
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
    let phrases = s.phrases.list();
    w.len(phrases.len());
    phrases.iter().for_each(|p| w.str(p));
    w.str(&s.file.to_string_lossy());
    w.str(&s.sha256);
    w.0.extend_from_slice(&s.bytes.to_le_bytes());
    let source = s
        .source
        .as_ref()
        .map(|src| serde_json::to_string(src).expect("a source serializes"));
    w.opt(source.as_deref(), Writer::str);
}

/// The scenario that [`encode`] wrote at the start of `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Scenario, String> {
    let mut r = Reader { bytes, at: 0 };
    let name = r.string()?;
    let description = r.opt(Reader::string)?;
    let user = r.string()?;
    let system_prompt = r.string()?;
    let facts = r.list(|r| {
        Ok(Fact {
            id: r.string()?,
            statement: r.opt(Reader::string)?,
            expect: r.list(Reader::string)?,
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
    let texts: Arc<str> = Arc::from(r.str()?);
    let messages = r.list(|r| {
        Ok(Message {
            number: r.u32()?,
            session: r.usize()?,
            role: match r.byte()? {
                0 => Role::User,
                1 => Role::Assistant,
                _ => Role::Tool,
            },
            content: r.opt(|r| {
                let (start, end) = (r.u32()? as usize, r.u32()? as usize);
                Text::part(&texts, start, end).ok_or_else(|| "a message's text out of place".into())
            })?,
            tool: r
                .opt(|r| {
                    let text = r.str()?;
                    Tools::from_json(text).ok_or_else(|| format!("tools {text:?}"))
                })?
                .map(Arc::new),
            plants: r.list(Reader::usize)?,
            at: r.opt(Reader::i64)?,
        })
    })?;
    let probes = r.list(|r| {
        Ok(Probe {
            id: r.string()?,
            question: r.string()?,
            expects: r.list(Reader::usize)?,
            answer: r.opt(Reader::string)?,
            kind: r.opt(Reader::string)?,
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
    let phrases = crate::text::Phrases::new(r.list(Reader::string)?);
    let file = PathBuf::from(r.string()?);
    let sha256 = r.string()?;
    let bytes_len = r.i64()? as u64;
    let source = r
        .opt(Reader::string)?
        .map(|s| serde_json::from_str::<Source>(&s).map_err(|e| e.to_string()))
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

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
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
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or("a spooled scenario ends early")?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i64(&mut self) -> Result<i64, String> {
        let b = self.take(8)?;
        Ok(i64::from_le_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }

    fn usize(&mut self) -> Result<usize, String> {
        Ok(self.i64()? as usize)
    }

    fn str(&mut self) -> Result<&'a str, String> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).map_err(|e| e.to_string())
    }

    fn string(&mut self) -> Result<String, String> {
        self.str().map(str::to_string)
    }

    fn opt<T>(
        &mut self,
        get: impl FnOnce(&mut Self) -> Result<T, String>,
    ) -> Result<Option<T>, String> {
        match self.byte()? {
            0 => Ok(None),
            _ => get(self).map(Some),
        }
    }

    fn list<T>(
        &mut self,
        mut get: impl FnMut(&mut Self) -> Result<T, String>,
    ) -> Result<Vec<T>, String> {
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
                super::encode(&s, &mut bytes);
                let back = super::decode(&bytes).unwrap();
                assert_eq!(format!("{back:?}"), format!("{s:?}"), "{}", path.display());
                // Cut anywhere, it is refused, not misread.
                for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
                    assert!(super::decode(&bytes[..cut]).is_err(), "{}", path.display());
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
}
