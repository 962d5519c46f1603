//! The journal of a run in progress (see [`Journal`]).

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreError, connect};
use crate::results::{JobKey, JobResult};

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
