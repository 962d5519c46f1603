//! Persistent memory in SQLite: each user's messages (with token counts and
//! embeddings, so nothing is tokenized or embedded twice) and summaries,
//! under a namespace per (scenario, strategy) memory.
//!
//! Writes are batched: the runner flushes at session boundaries (and every
//! few hundred messages) in one transaction, not one commit per message as
//! the tutorial does.

use std::path::Path;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};

use crate::index::{Embedding, for_each_nonzero};
use crate::memory::{Entry, SummaryState, Transcript};
use crate::results::{JobKey, JobResult};
use crate::scenario::{Role, Tools};

#[derive(Debug, thiserror::Error)]
#[error("memory store {path}: {source}")]
pub struct StoreError {
    pub path: String,
    #[source]
    pub source: rusqlite::Error,
}

pub struct Store {
    conn: Connection,
    path: String,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    ns        TEXT    NOT NULL,
    owner     TEXT    NOT NULL,
    number    INTEGER NOT NULL,
    role      TEXT    NOT NULL,
    content   TEXT    NOT NULL,
    tokens    INTEGER NOT NULL,
    at_ms     INTEGER,
    embedding BLOB,
    tool      TEXT,
    PRIMARY KEY (ns, number)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS summaries (
    ns                    TEXT    NOT NULL,
    idx                   INTEGER NOT NULL,
    owner                 TEXT    NOT NULL,
    turn                  INTEGER NOT NULL,
    covered_from          INTEGER NOT NULL,
    covered_to            INTEGER NOT NULL,
    content               TEXT    NOT NULL,
    tokens                INTEGER NOT NULL,
    system_message_tokens INTEGER NOT NULL,
    input_tokens          INTEGER NOT NULL,
    output_tokens         INTEGER NOT NULL,
    PRIMARY KEY (ns, idx)
) WITHOUT ROWID;
";

/// Creates a store at `out` holding every memory of the stores `inputs`
/// (the shards of one run: their namespaces never overlap).
pub fn merge(out: &Path, inputs: &[std::path::PathBuf]) -> Result<(), StoreError> {
    let store = Store::create(out)?;
    for input in inputs {
        let wrap = |source| StoreError {
            path: input.display().to_string(),
            source,
        };
        store
            .conn
            .execute("ATTACH DATABASE ?1 AS shard", [input.display().to_string()])
            .map_err(wrap)?;
        store
            .conn
            .execute_batch(
                "BEGIN;
                 INSERT INTO messages SELECT * FROM shard.messages;
                 INSERT INTO summaries SELECT * FROM shard.summaries;
                 COMMIT;
                 DETACH DATABASE shard;",
            )
            .map_err(wrap)?;
    }
    Ok(())
}

/// Encodes a vector as a blob: dense (`0`, then every f32) or, when at most
/// a third of it is non-zero, sparse (`1`, the dimension as u32, then
/// (index u32, value f32) pairs); little-endian. The offline embedder's
/// vectors are mostly zeros: sparse blobs make them ~15 times smaller.
fn encode_vector(v: &Embedding, out: &mut Vec<u8>) {
    out.clear();
    if v.nonzero_count() * 3 <= v.dim() {
        out.push(1);
        out.extend_from_slice(&(v.dim() as u32).to_le_bytes());
        v.for_each_nonzero(|i, x| {
            out.extend_from_slice(&(i as u32).to_le_bytes());
            out.extend_from_slice(&x.to_le_bytes());
        });
    } else {
        out.push(0);
        for x in v.to_dense().iter() {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
}

/// The embedding a blob holds: sparse as stored sparse, dense as dense.
fn decode_vector(b: &[u8]) -> Embedding {
    let word = |c: &[u8]| [c[0], c[1], c[2], c[3]];
    match b.split_first() {
        Some((1, rest)) if rest.len() >= 4 => {
            let dim = u32::from_le_bytes(word(&rest[..4]));
            let pairs = rest[4..].chunks_exact(8).map(|pair| {
                (
                    u32::from_le_bytes(word(&pair[..4])),
                    f32::from_le_bytes(word(&pair[4..])),
                )
            });
            // As written: dimensions increasing, inside the vector, values
            // non-zero. Anything else is read as a dense vector would be
            // filled (out of range ignored, the last value of a dimension
            // kept).
            let mut nonzero: Vec<(u32, f32)> = Vec::with_capacity(rest.len() / 8);
            let mut ordered = true;
            for (i, x) in pairs {
                ordered &= i < dim && x != 0.0 && nonzero.last().is_none_or(|l| l.0 < i);
                nonzero.push((i, x));
            }
            if !ordered {
                let mut v = vec![0.0f32; dim as usize];
                for (i, x) in nonzero.drain(..) {
                    if let Some(slot) = v.get_mut(i as usize) {
                        *slot = x;
                    }
                }
                for_each_nonzero(&v, |i, x| nonzero.push((i as u32, x)));
            }
            Embedding::Sparse {
                dim,
                nonzero: nonzero.into(),
            }
        }
        Some((_, rest)) => Embedding::Dense(
            rest.chunks_exact(4)
                .map(|c| f32::from_le_bytes(word(c)))
                .collect(),
        ),
        None => Embedding::default(),
    }
}

/// An insert of `rows` messages in one statement.
fn insert_messages(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let p: Vec<String> = (1..=9).map(|c| format!("?{}", r * 9 + c)).collect();
            format!("({})", p.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO messages (ns, owner, number, role, content, tokens, at_ms, embedding, tool) VALUES {}",
        values.join(", ")
    )
}

impl Store {
    /// Creates the store at `path` (schema, write-ahead log). Call once,
    /// before several connections use the file: a fresh file switched to WAL
    /// by racing connections can fail with "database is locked".
    pub fn create(path: &Path) -> Result<Store, StoreError> {
        let store = Store::open(path)?;
        // An empty schema needs no fsync: a store cut off while being made
        // is made again. What is stored later is synced as usual.
        let c = &store.conn;
        c.pragma_update(None, "synchronous", "OFF")
            .and_then(|()| c.pragma_update(None, "journal_mode", "WAL"))
            .and_then(|()| c.execute_batch(&format!("BEGIN;{SCHEMA}COMMIT;")))
            .and_then(|()| {
                // A store written before tool calls (a run folder resumed by
                // this version) gains their column, empty for its messages.
                let has_tool: bool = c.query_row(
                    "SELECT COUNT(*) FROM pragma_table_info('messages') WHERE name = 'tool'",
                    [],
                    |r| r.get(0),
                )?;
                if has_tool {
                    Ok(())
                } else {
                    c.execute_batch("ALTER TABLE messages ADD COLUMN tool TEXT")
                }
            })
            .and_then(|()| c.pragma_update(None, "synchronous", "NORMAL"))
            .map_err(|e| store.err(e))?;
        Ok(store)
    }

    /// Connects to a store made by [`Store::create`]. Several connections
    /// may share one file from several threads.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let (conn, path) = connect(path)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|source| StoreError {
                path: path.clone(),
                source,
            })?;
        Ok(Store { conn, path })
    }

    /// Opens a finished run's store to read, never to write: a file
    /// that is not there is an error, not a new store.
    pub fn read_only(path: &Path) -> Result<Store, StoreError> {
        let p = path.display().to_string();
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| stable_plans(&c).map(|()| c))
            .map_err(|source| StoreError {
                path: p.clone(),
                source,
            })?;
        Ok(Store { conn, path: p })
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError {
            path: self.path.clone(),
            source,
        }
    }

    /// Writes messages and summaries in one transaction.
    pub fn save(
        &mut self,
        ns: &str,
        entries: &[Entry],
        summaries: &[Arc<SummaryState>],
    ) -> Result<(), StoreError> {
        let path = &self.path;
        let err = |source| StoreError {
            path: path.clone(),
            source,
        };
        // IMMEDIATE takes the write lock up front, where the busy timeout applies.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let result = (|| {
            {
                // Rows go in 32 to a statement (one statement step per row
                // is most of what an insert costs); a shorter tail, one a
                // statement.
                const ROWS: usize = 32;
                static MANY: std::sync::LazyLock<String> =
                    std::sync::LazyLock::new(|| insert_messages(ROWS));
                static ONE: std::sync::LazyLock<String> =
                    std::sync::LazyLock::new(|| insert_messages(1));
                let mut blobs: Vec<Vec<u8>> = vec![Vec::new(); ROWS];
                for chunk in entries.chunks(ROWS) {
                    let (sql, per) = if chunk.len() == ROWS {
                        (&*MANY, ROWS)
                    } else {
                        (&*ONE, 1)
                    };
                    let mut stmt = tx.prepare_cached(sql)?;
                    for rows in chunk.chunks(per) {
                        for (i, (e, blob)) in rows.iter().zip(&mut blobs).enumerate() {
                            let blob = e.embedding.as_ref().map(|v| {
                                encode_vector(v, blob);
                                blob.as_slice()
                            });
                            let at = i * 9;
                            stmt.raw_bind_parameter(at + 1, ns)?;
                            stmt.raw_bind_parameter(at + 2, &*e.owner)?;
                            stmt.raw_bind_parameter(at + 3, e.number)?;
                            stmt.raw_bind_parameter(at + 4, e.role.as_str())?;
                            stmt.raw_bind_parameter(at + 5, &**e.content())?;
                            stmt.raw_bind_parameter(at + 6, e.tokens)?;
                            stmt.raw_bind_parameter(at + 7, e.at)?;
                            stmt.raw_bind_parameter(at + 8, blob)?;
                            let tool = e.tool.as_ref().map(|t| t.to_json());
                            stmt.raw_bind_parameter(at + 9, tool)?;
                        }
                        stmt.raw_execute()?;
                    }
                }
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO summaries (ns, idx, owner, turn, covered_from, covered_to, content,
                        tokens, system_message_tokens, input_tokens, output_tokens)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )?;
                for s in summaries {
                    stmt.execute(params![
                        ns,
                        s.index,
                        &*s.owner,
                        s.turn,
                        s.covered_from,
                        s.covered_to,
                        s.text(),
                        s.tokens,
                        s.system_message_tokens,
                        s.input_tokens,
                        s.output_tokens
                    ])?;
                }
            }
            Ok::<(), rusqlite::Error>(())
        })();
        result.map_err(err)?;
        tx.commit().map_err(err)
    }

    /// Forgets a memory: its messages and summaries (a replay started over).
    pub fn clear(&mut self, ns: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM messages WHERE ns = ?1", [ns])
            .and_then(|_| {
                self.conn
                    .execute("DELETE FROM summaries WHERE ns = ?1", [ns])
            })
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Loads a memory's transcript and latest summary.
    pub fn load(&self, ns: &str) -> Result<(Transcript, Option<Arc<SummaryState>>), StoreError> {
        self.load_at(ns, u32::MAX)
    }

    /// Loads a memory as it was after message `upto`: the messages up to
    /// it, and the latest summary written by then.
    pub fn load_at(
        &self,
        ns: &str,
        upto: u32,
    ) -> Result<(Transcript, Option<Arc<SummaryState>>), StoreError> {
        let mut t = Transcript::new();
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT owner, number, role, content, tokens, at_ms, embedding, tool
                 FROM messages WHERE ns = ?1 AND number <= ?2 ORDER BY number",
            )
            .map_err(|e| self.err(e))?;
        // Read in place (no string or blob copied before it is kept), and
        // one owner shared by the rows that name the same one.
        let mut owner: Arc<str> = Arc::from("");
        let mut rows = stmt
            .query(rusqlite::params![ns, upto])
            .map_err(|e| self.err(e))?;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let text = |i: usize| r.get_ref(i).and_then(|v| Ok(v.as_str()?));
            let row = (|| {
                let name = text(0)?;
                if *owner != *name {
                    owner = Arc::from(name);
                }
                let mut e = Entry::new(
                    r.get(1)?,
                    Role::parse(text(2)?).unwrap_or(Role::User),
                    Arc::from(text(3)?),
                    r.get(4)?,
                    owner.clone(),
                    r.get(5)?,
                );
                e.embedding = r.get_ref(6)?.as_blob_or_null()?.map(decode_vector);
                e.tool = r
                    .get_ref(7)?
                    .as_str_or_null()?
                    .and_then(Tools::from_json)
                    .map(Arc::new);
                Ok::<Entry, rusqlite::Error>(e)
            })();
            t.push(row.map_err(|e| self.err(e))?);
        }
        static LATEST: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!("{SUMMARY_ROW} WHERE ns = ?1 AND turn <= ?2 ORDER BY idx DESC LIMIT 1")
        });
        let summary = self
            .conn
            .prepare_cached(&LATEST)
            .and_then(|mut stmt| {
                stmt.query_row(rusqlite::params![ns, upto], summary_state)
                    .optional()
            })
            .map_err(|e| self.err(e))?;
        Ok((t, summary.map(Arc::new)))
    }

    /// Every summary of a memory, in order of writing.
    pub fn summaries(&self, ns: &str) -> Result<Vec<SummaryState>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("{SUMMARY_ROW} WHERE ns = ?1 ORDER BY idx"))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([ns], summary_state)
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }
}

const SUMMARY_ROW: &str = "SELECT idx, owner, turn, covered_from, covered_to, content, tokens,
        system_message_tokens, input_tokens, output_tokens FROM summaries";

fn summary_state(r: &rusqlite::Row<'_>) -> rusqlite::Result<SummaryState> {
    Ok(SummaryState {
        index: r.get(0)?,
        owner: Arc::from(r.get::<_, String>(1)?),
        turn: r.get(2)?,
        covered_from: r.get(3)?,
        covered_to: r.get(4)?,
        read: Arc::new(crate::text::Reading::new(Arc::from(
            r.get_ref(5)?.as_str()?,
        ))),
        tokens: r.get(6)?,
        system_message_tokens: r.get(7)?,
        input_tokens: r.get(8)?,
        output_tokens: r.get(9)?,
    })
}

/// The journal of a run in progress: what it is (its configuration and
/// scenario files) and the rows of its replays, written in parts as they
/// leave memory (a replay's user evicted, or its replay finished), each in
/// its own transaction, so that a run interrupted at any point (a Ctrl-C, a
/// `kill -9`, a power cut) resumes with the replays it finished. It is also
/// where a run's outputs are written from, one replay at a time.
pub struct Journal {
    conn: std::sync::Mutex<Connection>,
    path: String,
    /// Replays finished in one part, kept as written up to [`HELD_BYTES`]
    /// of their encoding, so that the outputs are written from them without
    /// reading them back (the journal's copy is for `--resume`).
    held: std::sync::Mutex<Held>,
}

#[derive(Default)]
struct Held {
    /// Each with the bytes of its encoding.
    replays: std::collections::HashMap<JobKey, (JobResult, usize)>,
    bytes: usize,
}

/// The replays a journal keeps in memory as well, at most, in bytes of
/// their JSON.
const HELD_BYTES: usize = 32 << 20;

/// Plans that do not depend on the values bound: SQLite's bundled build
/// (STAT4) otherwise prepares a cached statement again whenever a range
/// bound changes, which was a tenth of a registry's reload (`load_at` at
/// every step of an evicted user). The plans are the same: one index each.
fn stable_plans(c: &Connection) -> rusqlite::Result<()> {
    c.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .map(drop)
}

/// A connection to a SQLite file shared by several connections and threads,
/// with the path its errors name.
fn connect(path: &Path) -> Result<(Connection, String), StoreError> {
    let p = path.display().to_string();
    let conn = Connection::open(path)
        .and_then(|c| {
            c.busy_timeout(std::time::Duration::from_secs(60))?;
            stable_plans(&c)?;
            Ok(c)
        })
        .map_err(|source| StoreError {
            path: p.clone(),
            source,
        })?;
    Ok((conn, p))
}

impl Journal {
    pub fn open(path: &Path) -> Result<Journal, StoreError> {
        let (conn, p) = connect(path)?;
        let wrap = |source| StoreError {
            path: p.clone(),
            source,
        };
        // NORMAL: a power cut may lose the last replays recorded (they are
        // replayed on resume), never the journal's consistency; FULL would
        // cost an fsync at every eviction of a many-user run.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS run (id INTEGER PRIMARY KEY CHECK (id = 1), spec TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS parts (
                 scenario TEXT NOT NULL, strategy TEXT NOT NULL, repeat INTEGER NOT NULL,
                 seq INTEGER NOT NULL, result TEXT NOT NULL,
                 PRIMARY KEY (scenario, strategy, repeat, seq));
             CREATE TABLE IF NOT EXISTS done (
                 scenario TEXT NOT NULL, strategy TEXT NOT NULL, repeat INTEGER NOT NULL,
                 PRIMARY KEY (scenario, strategy, repeat));
             CREATE TABLE IF NOT EXISTS failed (
                 scenario TEXT NOT NULL, strategy TEXT NOT NULL, repeat INTEGER NOT NULL,
                 error TEXT NOT NULL,
                 PRIMARY KEY (scenario, strategy, repeat));",
        )
        .map_err(wrap)?;
        Ok(Journal {
            conn: std::sync::Mutex::new(conn),
            path: p,
            held: Default::default(),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.lock().expect("no panic holds the journal");
        f(&mut conn).map_err(|source| StoreError {
            path: self.path.clone(),
            source,
        })
    }

    /// Closes the journal of a run whose outputs are all written, its files
    /// about to be removed: without the checkpoint that would copy its log
    /// into its file first (work thrown away with them, and an fsync).
    pub fn close_for_removal(self) {
        if let Ok(conn) = self.conn.into_inner() {
            let _ = conn.set_db_config(
                rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                true,
            );
        }
    }

    /// Records what the run is (once, when it starts).
    pub fn set_spec(&self, spec: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO run (id, spec) VALUES (1, ?1)",
                [spec],
            )
            .map(|_| ())
        })
    }

    pub fn spec(&self) -> Result<Option<String>, StoreError> {
        self.with(|c| {
            c.query_row("SELECT spec FROM run WHERE id = 1", [], |r| r.get(0))
                .optional()
        })
    }

    /// Appends parts of replays (each holding the rows since its replay's
    /// previous part), in one transaction; with `finished`, marks the
    /// replays finished. A replay's rows can leave memory while it still
    /// runs (its user evicted from the registry).
    pub fn append(&self, parts: &[JobResult], finished: bool) -> Result<(), StoreError> {
        self.insert(parts, finished).map(|_| ())
    }

    /// Records a replay finished (its last part, or the whole of it), and
    /// keeps it in memory as well where it is whole and there is room.
    pub fn finish(&self, replay: JobResult) -> Result<(), StoreError> {
        let (seq, bytes) = self.insert(std::slice::from_ref(&replay), true)?;
        let mut held = self.held.lock().expect("no panic holds this lock");
        if seq == 0 && held.bytes + bytes <= HELD_BYTES {
            held.bytes += bytes;
            held.replays.insert(replay.key(), (replay, bytes));
        }
        Ok(())
    }

    /// Inserts `parts`; returns the last one's sequence number within its
    /// replay and the bytes of their encoding.
    fn insert(&self, parts: &[JobResult], finished: bool) -> Result<(i64, usize), StoreError> {
        let texts: Vec<String> = parts
            .iter()
            .map(|p| serde_json::to_string(p).expect("results serialize"))
            .collect();
        let bytes = texts.iter().map(String::len).sum();
        self.with(|c| {
            let tx = c.transaction()?;
            let seq = {
                let mut next = tx.prepare_cached(
                    "SELECT COALESCE(MAX(seq) + 1, 0) FROM parts WHERE scenario = ?1 AND strategy = ?2 AND repeat = ?3",
                )?;
                let mut insert = tx.prepare_cached(
                    "INSERT INTO parts (scenario, strategy, repeat, seq, result) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                let mut done = tx.prepare_cached(
                    "INSERT OR REPLACE INTO done (scenario, strategy, repeat) VALUES (?1, ?2, ?3)",
                )?;
                let mut seq = 0;
                for (part, text) in parts.iter().zip(&texts) {
                    let key = params![part.scenario, part.strategy, part.repeat];
                    seq = next.query_row(key, |r| r.get(0))?;
                    insert.execute(params![
                        part.scenario,
                        part.strategy,
                        part.repeat,
                        seq,
                        text
                    ])?;
                    if finished {
                        done.execute(key)?;
                    }
                }
                seq
            };
            tx.commit().map(|()| (seq, bytes))
        })
    }

    /// Forgets a replay (before it is replayed from the start).
    pub fn clear(&self, key: &JobKey) -> Result<(), StoreError> {
        self.take_held(key);
        self.with(|c| {
            let tx = c.transaction()?;
            let k = params![key.0, key.1, key.2];
            tx.execute(
                "DELETE FROM parts WHERE scenario = ?1 AND strategy = ?2 AND repeat = ?3",
                k,
            )?;
            tx.execute(
                "DELETE FROM done WHERE scenario = ?1 AND strategy = ?2 AND repeat = ?3",
                k,
            )?;
            tx.execute(
                "DELETE FROM failed WHERE scenario = ?1 AND strategy = ?2 AND repeat = ?3",
                k,
            )?;
            tx.commit()
        })
    }

    /// Records a replay that failed, forgetting its rows (none of them is
    /// written); `--resume` replays it again.
    pub fn fail(&self, key: &JobKey, error: &str) -> Result<(), StoreError> {
        self.clear(key)?;
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO failed (scenario, strategy, repeat, error) VALUES (?1, ?2, ?3, ?4)",
                params![key.0, key.1, key.2, error],
            )
            .map(|_| ())
        })
    }

    /// The replays that failed, with their errors.
    pub fn failures(&self) -> Result<Vec<(JobKey, String)>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT scenario, strategy, repeat, error FROM failed ORDER BY scenario, strategy, repeat",
            )?;
            let rows = stmt.query_map([], |r| Ok(((r.get(0)?, r.get(1)?, r.get(2)?), r.get(3)?)))?;
            rows.collect()
        })
    }

    /// The finished replays.
    pub fn done(&self) -> Result<std::collections::HashSet<JobKey>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare("SELECT scenario, strategy, repeat FROM done")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect()
        })
    }

    /// One replay, its parts joined.
    /// A replay kept in memory, no longer kept.
    fn take_held(&self, key: &JobKey) -> Option<JobResult> {
        let mut held = self.held.lock().expect("no panic holds this lock");
        let (replay, bytes) = held.replays.remove(key)?;
        held.bytes -= bytes;
        Some(replay)
    }

    /// A replay's rows: as kept in memory (given once), or read back.
    pub fn get(&self, key: &JobKey) -> Result<JobResult, StoreError> {
        if let Some(replay) = self.take_held(key) {
            return Ok(replay);
        }
        let texts: Vec<String> = self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT result FROM parts WHERE scenario = ?1 AND strategy = ?2 AND repeat = ?3 ORDER BY seq",
            )?;
            let rows = stmt.query_map(params![key.0, key.1, key.2], |r| r.get(0))?;
            rows.collect()
        })?;
        let mut job: Option<JobResult> = None;
        for t in texts {
            let part: JobResult = serde_json::from_str(&t).map_err(|e| StoreError {
                path: self.path.clone(),
                source: rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                ),
            })?;
            match &mut job {
                Some(j) => j.extend(part),
                None => job = Some(part),
            }
        }
        job.ok_or_else(|| StoreError {
            path: self.path.clone(),
            source: rusqlite::Error::QueryReturnedNoRows,
        })
    }
}

#[cfg(test)]
mod vector_tests {
    use super::*;

    #[test]
    fn a_store_from_before_tool_calls_gains_their_column_and_keeps_its_messages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory.sqlite");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE messages (ns TEXT NOT NULL, owner TEXT NOT NULL,
                     number INTEGER NOT NULL, role TEXT NOT NULL, content TEXT NOT NULL,
                     tokens INTEGER NOT NULL, at_ms INTEGER, embedding BLOB,
                     PRIMARY KEY (ns, number)) WITHOUT ROWID;
                 INSERT INTO messages VALUES ('u/window', 'u', 1, 'user', 'hi', 1, NULL, NULL);",
            )
            .unwrap();
        }
        let mut store = Store::create(&path).unwrap();
        let calls = Tools::Calls(vec![crate::scenario::ToolCall {
            id: "c1".into(),
            name: "lookup".into(),
            arguments: "{}".into(),
        }]);
        let e = Entry::new(2, Role::Assistant, "".into(), 5, "u".into(), None)
            .with_tool(Some(Arc::new(calls.clone())));
        store.save("u/window", &[e], &[]).unwrap();
        let (t, _) = store.load("u/window").unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(0).tool, None);
        assert_eq!(t.get(1).tool.as_deref(), Some(&calls));
    }

    #[test]
    fn vectors_round_trip_dense_and_sparse() {
        let mut blob = Vec::new();
        let sparse: Vec<f32> = (0..512)
            .map(|i| if i % 50 == 0 { 0.25 } else { 0.0 })
            .collect();
        encode_vector(&Embedding::from(sparse.clone()), &mut blob);
        assert_eq!(blob[0], 1);
        assert_eq!(blob.len(), 1 + 4 + 11 * 8);
        let back = decode_vector(&blob);
        assert!(matches!(back, Embedding::Sparse { dim: 512, .. }));
        assert_eq!(&*back.to_dense(), sparse.as_slice());
        // Kept sparse, it is written back byte for byte.
        let mut again = Vec::new();
        encode_vector(&back, &mut again);
        assert_eq!(again, blob);

        let dense: Vec<f32> = (0..64).map(|i| i as f32 / 64.0 - 0.5).collect();
        encode_vector(&Embedding::from(dense.clone()), &mut blob);
        assert_eq!(blob[0], 0);
        let back = decode_vector(&blob);
        assert!(matches!(back, Embedding::Dense(_)));
        assert_eq!(&*back.to_dense(), dense.as_slice());
    }

    #[test]
    fn a_sparse_blob_out_of_order_reads_as_a_dense_fill_would() {
        // Dimension 9 twice (the last value kept), 3 before 9, 40 outside
        // the vector, and a zero.
        let mut blob = vec![1];
        blob.extend_from_slice(&16u32.to_le_bytes());
        for (i, x) in [(9u32, 0.5f32), (3, 0.25), (9, -1.0), (40, 2.0), (5, 0.0)] {
            blob.extend_from_slice(&i.to_le_bytes());
            blob.extend_from_slice(&x.to_le_bytes());
        }
        let Embedding::Sparse { dim, nonzero } = decode_vector(&blob) else {
            panic!("sparse")
        };
        assert_eq!(dim, 16);
        assert_eq!(&*nonzero, &[(3, 0.25), (9, -1.0)]);
    }
}
