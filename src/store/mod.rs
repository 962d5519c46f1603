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
use crate::scenario::{Role, Tools};

mod journal;
pub use journal::Journal;

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
    /// Memories given to [`Store::save_later`] and not written yet.
    later: Vec<Later>,
}

/// A memory's messages and summaries to write: its namespace, messages
/// and summaries.
type Written<'a> = (&'a str, &'a [Entry], &'a [Arc<SummaryState>]);

/// A memory's messages and summaries, to be written.
struct Later {
    ns: String,
    entries: Vec<Entry>,
    summaries: Vec<Arc<SummaryState>>,
}

/// Messages [`Store::save_later`] holds at most before it writes them.
const LATER_ROWS: usize = 512;

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

/// Rows of an insert of many messages: one statement step per row is most
/// of what an insert costs.
const ROWS: usize = 32;

/// Writes one memory's messages and summaries in transaction `tx`, its
/// messages' embeddings encoded into `blobs` (one buffer a row of an
/// insert, reused from one memory to the next).
fn write(
    tx: &rusqlite::Transaction<'_>,
    (ns, entries, summaries): Written<'_>,
    blobs: &mut [Vec<u8>; ROWS],
) -> rusqlite::Result<()> {
    // Rows go in ROWS to a statement; a shorter tail, one a statement.
    static MANY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| insert_messages(ROWS));
    static ONE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| insert_messages(1));
    for chunk in entries.chunks(ROWS) {
        let (sql, per) = if chunk.len() == ROWS {
            (&*MANY, ROWS)
        } else {
            (&*ONE, 1)
        };
        let mut stmt = tx.prepare_cached(sql)?;
        for rows in chunk.chunks(per) {
            for (i, (e, blob)) in rows.iter().zip(blobs.iter_mut()).enumerate() {
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
    Ok(())
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
        Ok(Store::of(conn, path))
    }

    /// Opens a finished run's store to read, never to write: a file
    /// that is not there is an error, not a new store. Where the folder
    /// can be written, the connection is opened for writing with every
    /// statement refused that would write (`query_only`), so that, the
    /// last to close, it removes the write-ahead log and its index as the
    /// run's own connections do (a read-only one cannot, and left them in
    /// the run's folder); else it is opened read-only.
    pub fn read_only(path: &Path) -> Result<Store, StoreError> {
        use rusqlite::OpenFlags;
        let p = path.display().to_string();
        let open = |flags: OpenFlags| {
            let c = Connection::open_with_flags(path, flags)?;
            stable_plans(&c)?;
            if flags.contains(OpenFlags::SQLITE_OPEN_READ_WRITE) {
                c.pragma_update(None, "query_only", true)?;
            }
            // Read once, so that a folder that cannot hold the log fails here.
            c.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))?;
            Ok(c)
        };
        let conn = open(OpenFlags::SQLITE_OPEN_READ_WRITE)
            .or_else(|_: rusqlite::Error| open(OpenFlags::SQLITE_OPEN_READ_ONLY))
            .map_err(|source| StoreError {
                path: p.clone(),
                source,
            })?;
        Ok(Store::of(conn, p))
    }

    fn of(conn: Connection, path: String) -> Store {
        Store {
            conn,
            path,
            later: Vec::new(),
        }
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError {
            path: self.path.clone(),
            source,
        }
    }

    /// Writes messages and summaries in one transaction, with whatever
    /// [`Store::save_later`] holds.
    pub fn save(
        &mut self,
        ns: &str,
        entries: &[Entry],
        summaries: &[Arc<SummaryState>],
    ) -> Result<(), StoreError> {
        self.write_all(Some((ns, entries, summaries)))
    }

    /// Writes what [`Store::save_later`] holds and `also`, in one transaction.
    fn write_all(&mut self, also: Option<Written<'_>>) -> Result<(), StoreError> {
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
        let later = self.later.iter();
        let all = later.map(|l| (l.ns.as_str(), &l.entries[..], &l.summaries[..]));
        let mut blobs: [Vec<u8>; ROWS] = Default::default();
        for memory in all.chain(also) {
            write(&tx, memory, &mut blobs).map_err(err)?;
        }
        tx.commit().map_err(err)?;
        self.later.clear();
        Ok(())
    }

    /// Saves messages and summaries with those of other memories, in one
    /// transaction when enough are held (an evicted user's memory, among a
    /// registry's many evictions: one commit each was most of what an
    /// eviction cost, its B-tree's upper pages written again every time).
    /// What is held is written before its memory is loaded again (see
    /// [`Store::reload`]), and with the next [`Store::save`] or
    /// [`Store::save_held`]; lost if the process stops before, as a replay
    /// unfinished is (it is run again on resume).
    pub fn save_later(
        &mut self,
        ns: &str,
        entries: &[Entry],
        summaries: &[Arc<SummaryState>],
    ) -> Result<(), StoreError> {
        self.later.push(Later {
            ns: ns.to_string(),
            entries: entries.to_vec(),
            summaries: summaries.to_vec(),
        });
        let held: usize = self
            .later
            .iter()
            .map(|l| l.entries.len() + l.summaries.len())
            .sum();
        if held >= LATER_ROWS {
            self.save_held()?;
        }
        Ok(())
    }

    /// Writes what [`Store::save_later`] holds.
    pub fn save_held(&mut self) -> Result<(), StoreError> {
        match self.later.is_empty() {
            true => Ok(()),
            false => self.write_all(None),
        }
    }

    /// Loads a memory's transcript and latest summary, after writing what
    /// [`Store::save_later`] holds if some of it is that memory's.
    pub fn reload(
        &mut self,
        ns: &str,
    ) -> Result<(Transcript, Option<Arc<SummaryState>>), StoreError> {
        if self.later.iter().any(|l| l.ns == ns) {
            self.save_held()?;
        }
        self.load(ns)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A finished run's store opened to read refuses every write, leaves
    /// no log beside its file when closed, and is never made anew.
    #[test]
    fn a_store_opened_to_read_writes_nothing_and_leaves_no_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory.sqlite");
        drop(Store::create(&path).unwrap());
        let log = dir.path().join("memory.sqlite-wal");
        assert!(!log.exists());
        let store = Store::read_only(&path).unwrap();
        assert!(log.exists());
        let refused = store.conn.execute("CREATE TABLE t (x)", []).unwrap_err();
        assert!(refused.to_string().contains("readonly"), "{refused}");
        drop(store);
        assert!(!log.exists());
        assert!(!dir.path().join("memory.sqlite-shm").exists());
        let missing = dir.path().join("none.sqlite");
        assert!(Store::read_only(&missing).is_err());
        assert!(!missing.exists());
    }

    /// What `save_later` holds is written before its memory is loaded
    /// again, when enough is held, or with the next `save`; never lost in
    /// between, never seen half-written by another connection.
    #[test]
    fn held_memories_are_written_before_they_are_read_and_when_enough_are_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory.sqlite");
        let mut store = Store::create(&path).unwrap();
        let other = Store::open(&path).unwrap();
        let entries = |n: u32| -> Vec<Entry> {
            (1..=n)
                .map(|i| Entry::new(i, Role::User, "hi".into(), 1, "u".into(), None))
                .collect()
        };
        let stored = |ns: &str| other.load(ns).unwrap().0.len();
        store.save_later("a", &entries(2), &[]).unwrap();
        store.save_later("b", &entries(3), &[]).unwrap();
        assert_eq!((stored("a"), stored("b")), (0, 0));
        // Loading one held memory writes all held, in one transaction.
        assert_eq!(store.reload("a").unwrap().0.len(), 2);
        assert_eq!((stored("a"), stored("b")), (2, 3));
        // A memory not held is read as it is, nothing written.
        store.save_later("c", &entries(1), &[]).unwrap();
        assert_eq!(store.reload("b").unwrap().0.len(), 3);
        assert_eq!(stored("c"), 0);
        // With a save, what is held goes too.
        store.save("d", &entries(1), &[]).unwrap();
        assert_eq!((stored("c"), stored("d")), (1, 1));
        // Enough held: written without being asked.
        store
            .save_later("e", &entries(LATER_ROWS as u32 - 1), &[])
            .unwrap();
        assert_eq!(stored("e"), 0);
        store.save_later("f", &entries(1), &[]).unwrap();
        assert_eq!((stored("e"), stored("f")), (LATER_ROWS - 1, 1));
        store.save_later("g", &entries(1), &[]).unwrap();
        store.save_held().unwrap();
        assert_eq!(stored("g"), 1);
    }

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
