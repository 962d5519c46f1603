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

use crate::memory::{Entry, SummaryState, Transcript};
use crate::scenario::Role;

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

impl Store {
    /// Creates the store at `path` (schema, write-ahead log). Call once,
    /// before several connections use the file: a fresh file switched to WAL
    /// by racing connections can fail with "database is locked".
    pub fn create(path: &Path) -> Result<Store, StoreError> {
        let store = Store::open(path)?;
        store
            .conn
            .pragma_update(None, "journal_mode", "WAL")
            .and_then(|()| store.conn.execute_batch(SCHEMA))
            .map_err(|e| store.err(e))?;
        Ok(store)
    }

    /// Connects to a store made by [`Store::create`]. Several connections
    /// may share one file from several threads.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let p = path.display().to_string();
        let wrap = |source| StoreError {
            path: p.clone(),
            source,
        };
        let conn = Connection::open(path).map_err(wrap)?;
        conn.busy_timeout(std::time::Duration::from_secs(60))
            .map_err(wrap)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(wrap)?;
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
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO messages (ns, owner, number, role, content, tokens, at_ms, embedding)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?;
                for e in entries {
                    let blob: Option<Vec<u8>> = e
                        .embedding
                        .as_ref()
                        .map(|v| v.iter().flat_map(|x| x.to_le_bytes()).collect());
                    stmt.execute(params![
                        ns,
                        &*e.owner,
                        e.number,
                        e.role.as_str(),
                        &*e.content,
                        e.tokens,
                        e.at,
                        blob
                    ])?;
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
                        &*s.text,
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

    /// Loads a memory's transcript and latest summary.
    pub fn load(&self, ns: &str) -> Result<(Transcript, Option<Arc<SummaryState>>), StoreError> {
        let mut t = Transcript::new();
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT owner, number, role, content, tokens, at_ms, embedding
                 FROM messages WHERE ns = ?1 ORDER BY number",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([ns], |r| {
                let role: String = r.get(2)?;
                let content: String = r.get(3)?;
                let blob: Option<Vec<u8>> = r.get(6)?;
                Ok(Entry {
                    owner: Arc::from(r.get::<_, String>(0)?),
                    number: r.get(1)?,
                    role: Role::parse(&role).unwrap_or(Role::User),
                    folded: crate::text::fold(&content).into(),
                    content: content.into(),
                    tokens: r.get(4)?,
                    at: r.get(5)?,
                    embedding: blob.map(|b| {
                        b.chunks_exact(4)
                            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                            .collect()
                    }),
                })
            })
            .map_err(|e| self.err(e))?;
        for row in rows {
            t.push(row.map_err(|e| self.err(e))?);
        }
        let summary = self
            .conn
            .query_row(
                "SELECT idx, owner, turn, covered_from, covered_to, content, tokens,
                        system_message_tokens, input_tokens, output_tokens
                 FROM summaries WHERE ns = ?1 ORDER BY idx DESC LIMIT 1",
                [ns],
                |r| {
                    Ok(SummaryState {
                        index: r.get(0)?,
                        owner: Arc::from(r.get::<_, String>(1)?),
                        turn: r.get(2)?,
                        covered_from: r.get(3)?,
                        covered_to: r.get(4)?,
                        text: Arc::from(r.get::<_, String>(5)?),
                        tokens: r.get(6)?,
                        system_message_tokens: r.get(7)?,
                        input_tokens: r.get(8)?,
                        output_tokens: r.get(9)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok((t, summary.map(Arc::new)))
    }
}
