//! Where a run's scenarios come from: loaded already, or listed and read
//! again when a replay needs one (kept in memory up to a budget, the rest
//! from the run's spool file).

use std::sync::{Arc, Mutex};

use super::RunError;
use crate::clock::Millis;
use crate::scenario::{Listed, Scenario, Text};

/// The scenarios a run replays.
#[derive(Clone, Copy)]
pub enum Input<'a> {
    /// Loaded already (sweeps, the budget dashboard, benches), borrowed.
    Loaded(&'a [Scenario]),
    /// Listed (`memeval run`): each read again from its file when a replay
    /// starts, or when a user of the registry is taken in, and dropped when
    /// the replay ends or the user is evicted, so that a population's
    /// messages are never all in memory at once.
    Listed(&'a [Listed]),
}

impl<'a> Input<'a> {
    pub fn len(&self) -> usize {
        match self {
            Input::Loaded(s) => s.len(),
            Input::Listed(l) => l.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn name(&self, i: usize) -> &'a str {
        match self {
            Input::Loaded(s) => &s[i].name,
            Input::Listed(l) => &l[i].name,
        }
    }

    pub(super) fn messages(&self, i: usize) -> usize {
        match self {
            Input::Loaded(s) => s[i].messages.len(),
            Input::Listed(l) => l[i].messages,
        }
    }

    pub(super) fn steps(&self, i: usize) -> usize {
        match self {
            Input::Loaded(s) => s[i].steps.len(),
            Input::Listed(l) => l[i].steps,
        }
    }

    pub(super) fn step_times(&self, i: usize) -> Option<std::borrow::Cow<'a, [Millis]>> {
        match self {
            Input::Loaded(s) => s[i].step_times().map(std::borrow::Cow::Owned),
            Input::Listed(l) => l[i].step_times.as_deref().map(std::borrow::Cow::Borrowed),
        }
    }

    /// Scenario `i`: borrowed, kept, or read again from its file (a file
    /// changed since the run began fails this replay, not the run).
    pub(super) fn get(&self, i: usize) -> Result<Held<'a>, RunError> {
        match self {
            Input::Loaded(s) => Ok(Held::Borrowed(&s[i])),
            Input::Listed(l) => l[i].get().map(Held::Owned).map_err(RunError::Replay),
        }
    }

    /// Whether scenario `i` stays in memory for the whole run.
    pub(super) fn kept(&self, i: usize) -> bool {
        match self {
            Input::Loaded(_) => true,
            Input::Listed(l) => l[i].kept.is_some(),
        }
    }

    /// Indexes in name order.
    pub(super) fn by_name(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by(|&a, &b| self.name(a).cmp(self.name(b)));
        order
    }
}

/// A replay's scenario: borrowed from a run that holds it, or read for the
/// replay (or the registry's live user) alone.
#[derive(Clone)]
pub(super) enum Held<'a> {
    Borrowed(&'a Scenario),
    Owned(Arc<Scenario>),
    /// A registry's user taken in from the spool: its skeleton, its
    /// messages' texts [`Text::away`](crate::scenario::Text::away) until
    /// [`Held::fetch`] reads each one in for its step.
    Skeleton(Arc<Scenario>, Texts<'a>),
    /// Dropped while the user is evicted, read again when it is taken in.
    Away,
}

/// Where a skeleton's message texts are in the spool.
#[derive(Clone, Copy)]
pub(super) struct Texts<'a> {
    spool: &'a Spool,
    at: u64,
}

impl Held<'_> {
    /// Message `n`'s text read in from the spool, where it is away, so that
    /// its step can read it.
    pub(super) fn fetch(&mut self, n: u32) -> Result<(), RunError> {
        let Held::Skeleton(s, texts) = self else {
            return Ok(());
        };
        let i = n as usize - 1;
        let away = s.messages[i].content.as_ref().and_then(|c| c.away_span());
        if let Some(span) = away {
            let text = texts.spool.text(texts.at, span)?;
            // Not shared between steps: nothing is copied.
            Arc::make_mut(s).messages[i].content = Some(text);
        }
        Ok(())
    }
}

impl std::ops::Deref for Held<'_> {
    type Target = Scenario;

    fn deref(&self) -> &Scenario {
        match self {
            Held::Borrowed(s) => s,
            Held::Owned(s) | Held::Skeleton(s, _) => s,
            Held::Away => {
                unreachable!("an evicted user's scenario is read again before its next step")
            }
        }
    }
}

/// Listed scenarios not kept in memory, each encoded once (as its messages
/// are tokenized) into one file beside the run's store and read back when
/// a replay starts (whole) or its user is taken in (its skeleton, then
/// each message's text as its step comes): about a fifth of the cost of
/// reading and validating the JSON again, and nothing held in memory but
/// where each one is. The file goes when the replays end.
pub(super) struct Spool {
    path: std::path::PathBuf,
    file: std::fs::File,
    /// Where each scenario is; the next offset.
    at: Mutex<(Vec<Record>, u64)>,
}

impl Spool {
    pub(super) fn create(path: std::path::PathBuf, n: usize) -> Result<Spool, RunError> {
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| RunError::Io(format!("{}: {e}", path.display())))?;
        Ok(Spool {
            path,
            file,
            at: Mutex::new((vec![Record::default(); n], 0)),
        })
    }

    fn io(&self, e: std::io::Error) -> RunError {
        RunError::Io(format!("{}: {e}", self.path.display()))
    }

    pub(super) fn put(&self, i: usize, s: &Scenario) -> Result<(), RunError> {
        let mut bytes = Vec::new();
        let skeleton = crate::scenario::codec::encode(s, &mut bytes) as u32;
        let offset = {
            let mut at = self.at.lock().expect("no panic holds this lock");
            let offset = at.1;
            at.0[i] = Record {
                offset,
                len: bytes.len() as u32,
                skeleton,
            };
            at.1 += bytes.len() as u64;
            offset
        };
        write_at(&self.file, &bytes, offset).map_err(|e| self.io(e))
    }

    /// Where scenario `i` is, if it was spooled (its file could be read).
    fn record(&self, i: usize) -> Option<Record> {
        let r = self.at.lock().expect("no panic holds this lock").0[i];
        (r.len > 0).then_some(r)
    }

    /// `len` bytes at `offset`, read into a buffer reused on this thread
    /// (not one allocated and zeroed at every take-in), passed to `f`.
    fn read<T>(
        &self,
        offset: u64,
        len: u32,
        f: impl FnOnce(&[u8]) -> Result<T, RunError>,
    ) -> Result<T, RunError> {
        thread_local! {
            static BYTES: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BYTES.with_borrow_mut(|bytes| {
            bytes.resize(len as usize, 0);
            read_at(&self.file, bytes, offset).map_err(|e| self.io(e))?;
            f(bytes)
        })
    }

    /// The scenario at `r`, whole.
    fn get<'a>(&self, r: Record) -> Result<Held<'a>, RunError> {
        let s = self.read(r.offset, r.len, |b| {
            crate::scenario::codec::decode(b).map_err(RunError::Replay)
        })?;
        Ok(Held::Owned(Arc::new(s)))
    }

    /// The skeleton of the scenario at `r`, for a user taken in for a step or a few:
    /// two fifths of its bytes for a generated user (`generated-1000`: 45
    /// of 115 KB), and no message text copied.
    fn skeleton(&self, r: Record) -> Result<Held<'_>, RunError> {
        let s = self.read(r.offset, r.skeleton, |b| {
            crate::scenario::codec::decode_skeleton(b).map_err(RunError::Replay)
        })?;
        let texts = Texts {
            spool: self,
            at: r.offset + u64::from(r.skeleton),
        };
        Ok(Held::Skeleton(Arc::new(s), texts))
    }

    /// The message text at `span` of the message texts at `at`.
    fn text(&self, at: u64, (start, end): (u32, u32)) -> Result<Text, RunError> {
        self.read(at + u64::from(start), end - start, |b| {
            crate::scenario::codec::decode_text(b).map_err(RunError::Replay)
        })
    }
}

/// Where a scenario is in the spool (`len` 0: not spooled).
#[derive(Clone, Copy, Default)]
struct Record {
    offset: u64,
    len: u32,
    skeleton: u32,
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(unix)]
fn write_at(file: &std::fs::File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, bytes, offset)
}

#[cfg(unix)]
fn read_at(file: &std::fs::File, bytes: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, bytes, offset)
}

#[cfg(windows)]
fn write_at(file: &std::fs::File, mut bytes: &[u8], mut offset: u64) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_write(file, bytes, offset)?;
        bytes = &bytes[n..];
        offset += n as u64;
    }
    Ok(())
}

#[cfg(windows)]
fn read_at(file: &std::fs::File, mut bytes: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_read(file, bytes, offset)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        bytes = &mut bytes[n..];
        offset += n as u64;
    }
    Ok(())
}

/// Where a replay's scenario comes from: the input, or the run's spool
/// for a listed scenario that is not kept.
#[derive(Clone, Copy)]
pub(super) struct Source<'a> {
    pub(super) input: Input<'a>,
    pub(super) spool: Option<&'a Spool>,
}

impl<'a> Source<'a> {
    /// Scenario `i` whole, for a replay.
    pub(super) fn get(&self, i: usize) -> Result<Held<'a>, RunError> {
        match self.spooled(i) {
            Some((spool, r)) => spool.get(r),
            None => self.input.get(i),
        }
    }

    /// Scenario `i` for a registry's user taken in: its skeleton where it
    /// is spooled (its texts fetched step by step), else whole.
    pub(super) fn take_in(&self, i: usize) -> Result<Held<'a>, RunError> {
        match self.spooled(i) {
            Some((spool, r)) => spool.skeleton(r),
            None => self.input.get(i),
        }
    }

    /// The spool and where scenario `i` is in it, where it is read back
    /// from there. (Kept, or unreadable when the run began: read again, to
    /// fail its replay with the file's own error.)
    fn spooled(&self, i: usize) -> Option<(&'a Spool, Record)> {
        let spool = self.spool.filter(|_| !self.input.kept(i))?;
        Some((spool, spool.record(i)?))
    }
}
