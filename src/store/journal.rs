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
    /// This attempt at the run (the first, or a resume): the parts a
    /// replay's rows are read from are those of the attempt that finished
    /// it, so an unfinished attempt's parts need no deleting.
    attempt: i64,
    /// Replays with a part written before their last (not whole in one).
    spilled: std::sync::Mutex<std::collections::HashSet<JobKey>>,
    /// Whether the parts were indexed by replay (when first read back).
    indexed: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Held {
    /// Each with the bytes of its encoding.
    replays: std::collections::HashMap<JobKey, (JobResult, usize)>,
    bytes: usize,
}

/// The columns of a journal's parts: each a replay's rows since its
/// previous part, by the attempt that wrote it (in order of writing: by
/// rowid).
const PARTS: &str = "scenario TEXT NOT NULL, strategy TEXT NOT NULL, repeat INTEGER NOT NULL,
     attempt INTEGER NOT NULL, result TEXT NOT NULL";

/// The columns of a journal's finished replays, by the attempt that
/// finished each.
const DONE: &str = "scenario TEXT NOT NULL, strategy TEXT NOT NULL, repeat INTEGER NOT NULL,
     attempt INTEGER NOT NULL, PRIMARY KEY (scenario, strategy, repeat)";

/// A journal written before attempts were recorded (its parts numbered in
/// their replay), brought up to date: what its run finished is kept, as
/// the parts of an attempt 0.
fn upgrade(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    let old: bool = tx.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('parts') WHERE name = 'seq'",
        [],
        |r| r.get(0),
    )?;
    if old {
        tx.execute_batch(&format!(
            "ALTER TABLE parts RENAME TO parts_numbered;
             CREATE TABLE parts ({PARTS});
             INSERT INTO parts (scenario, strategy, repeat, attempt, result)
                 SELECT scenario, strategy, repeat, 0, result FROM parts_numbered
                 ORDER BY scenario, strategy, repeat, seq;
             DROP TABLE parts_numbered;
             ALTER TABLE done RENAME TO done_unnumbered;
             CREATE TABLE done ({DONE});
             INSERT INTO done SELECT scenario, strategy, repeat, 0 FROM done_unnumbered;
             DROP TABLE done_unnumbered;"
        ))?;
    }
    Ok(())
}

/// The replays a journal keeps in memory as well, at most, in bytes of
/// their JSON.
const HELD_BYTES: usize = 32 << 20;

impl Journal {
    pub fn open(path: &Path) -> Result<Journal, StoreError> {
        let (mut conn, p) = connect(path)?;
        let wrap = |source| StoreError {
            path: p.clone(),
            source,
        };
        // NORMAL: a power cut may lose the last replays recorded (they are
        // replayed on resume), never the journal's consistency; FULL would
        // cost an fsync at every eviction of a many-user run.
        //
        // Parts are appended in the order they are written, with no index
        // while the run goes on: one on the replay would take a random
        // page of it for every part, which many interleaved users make
        // one write (and one read) of a page each (see [`Journal::get`]).
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS run (id INTEGER PRIMARY KEY CHECK (id = 1), spec TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS attempts (attempt INTEGER PRIMARY KEY);
             CREATE TABLE IF NOT EXISTS failed (
                 scenario TEXT NOT NULL, strategy TEXT NOT NULL, repeat INTEGER NOT NULL,
                 error TEXT NOT NULL,
                 PRIMARY KEY (scenario, strategy, repeat));",
        )
        .map_err(wrap)?;
        let attempt = (|| {
            let tx = conn.transaction()?;
            upgrade(&tx)?;
            tx.execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS parts ({PARTS});
                 CREATE TABLE IF NOT EXISTS done ({DONE});
                 DROP INDEX IF EXISTS parts_of_replay;
                 INSERT INTO attempts DEFAULT VALUES;"
            ))?;
            let attempt = tx.last_insert_rowid();
            tx.commit().map(|()| attempt)
        })()
        .map_err(wrap)?;
        Ok(Journal {
            conn: std::sync::Mutex::new(conn),
            path: p,
            held: Default::default(),
            attempt,
            spilled: Default::default(),
            indexed: Default::default(),
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
    /// previous part), in one transaction. A replay's rows can leave memory
    /// while it still runs (its user evicted from the registry).
    pub fn append(&self, parts: &[JobResult]) -> Result<(), StoreError> {
        let mut spilled = self.spilled.lock().expect("no panic holds this lock");
        spilled.extend(parts.iter().map(JobResult::key));
        drop(spilled);
        self.insert(parts, false).map(|_| ())
    }

    /// Records a replay finished (its last part, or the whole of it), and
    /// keeps it in memory as well where it is whole and there is room.
    pub fn finish(&self, replay: JobResult) -> Result<(), StoreError> {
        let bytes = self.insert(std::slice::from_ref(&replay), true)?;
        let key = replay.key();
        let whole = !self
            .spilled
            .lock()
            .expect("no panic holds this lock")
            .remove(&key);
        let mut held = self.held.lock().expect("no panic holds this lock");
        if whole && held.bytes + bytes <= HELD_BYTES {
            held.bytes += bytes;
            held.replays.insert(key, (replay, bytes));
        }
        Ok(())
    }

    /// Inserts `parts` (with `finished`, marking their replays finished by
    /// this attempt); returns the bytes of their encoding.
    fn insert(&self, parts: &[JobResult], finished: bool) -> Result<usize, StoreError> {
        let texts: Vec<String> = parts
            .iter()
            .map(|p| serde_json::to_string(p).expect("results serialize"))
            .collect();
        let bytes = texts.iter().map(String::len).sum();
        self.with(|c| {
            let tx = c.transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO parts (scenario, strategy, repeat, attempt, result) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                let mut done = tx.prepare_cached(
                    "INSERT OR REPLACE INTO done (scenario, strategy, repeat, attempt) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for (part, text) in parts.iter().zip(&texts) {
                    let key = (&part.scenario, &part.strategy, part.repeat, self.attempt);
                    insert.execute((key.0, key.1, key.2, key.3, text))?;
                    if finished {
                        done.execute(key)?;
                    }
                }
            }
            tx.commit().map(|()| bytes)
        })
    }

    /// Forgets a replay (before it is replayed from the start): its parts
    /// written so far are no longer read (they belong to no finished
    /// attempt), and go with the journal.
    pub fn clear(&self, key: &JobKey) -> Result<(), StoreError> {
        self.take_held(key);
        self.spilled
            .lock()
            .expect("no panic holds this lock")
            .remove(key);
        self.with(|c| {
            let tx = c.transaction()?;
            let k = params![key.0, key.1, key.2];
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
            // Indexed once the replays are over (one sort of every part,
            // where the run went faster without it), in the order written.
            if !self.indexed.load(std::sync::atomic::Ordering::Relaxed) {
                c.execute_batch(
                    "CREATE INDEX IF NOT EXISTS parts_of_replay ON parts (scenario, strategy, repeat, attempt)",
                )?;
                self.indexed.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            let mut stmt = c.prepare_cached(
                "SELECT result FROM parts WHERE (scenario, strategy, repeat, attempt) =
                     (SELECT scenario, strategy, repeat, attempt FROM done
                      WHERE scenario = ?1 AND strategy = ?2 AND repeat = ?3)
                 ORDER BY rowid",
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
mod tests {
    use super::*;
    use crate::memory::StageTimes;

    /// A part of replay `s`/window/1 marked `n` (as the one time it
    /// holds).
    fn part(s: &str, n: u64) -> JobResult {
        let mut times = StageTimes::new(true);
        times.us[0].push(n);
        JobResult {
            scenario: s.into(),
            strategy: "window".into(),
            repeat: 1,
            turns: vec![],
            probes: vec![],
            summaries: vec![],
            calls: vec![],
            times,
        }
    }

    fn numbers(r: &JobResult) -> Vec<u64> {
        r.times.us[0].clone()
    }

    fn key(s: &str) -> JobKey {
        (s.into(), "window".into(), 1)
    }

    /// A replay's parts are read back in the order written, those of the
    /// attempt that finished it only: an interrupted attempt's parts,
    /// whether of a replay never finished or of one replayed again, are
    /// not.
    #[test]
    fn a_replay_is_read_from_the_attempt_that_finished_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sqlite");
        {
            let j = Journal::open(&path).unwrap();
            // Interleaved: a's and b's parts alternate.
            j.append(&[part("a", 1), part("b", 1)]).unwrap();
            j.append(&[part("a", 2), part("b", 2)]).unwrap();
            j.finish(part("a", 3)).unwrap();
            // b is interrupted; c is whole in one part.
            j.finish(part("c", 1)).unwrap();
            assert_eq!(numbers(&j.get(&key("a")).unwrap()), [1, 2, 3]);
            assert_eq!(numbers(&j.get(&key("c")).unwrap()), [1]);
        }
        // Resumed: b starts over (cleared) and c too (a lane of users
        // replays again whole).
        let j = Journal::open(&path).unwrap();
        assert_eq!(
            j.done().unwrap(),
            [key("a"), key("c")].into_iter().collect()
        );
        j.clear(&key("b")).unwrap();
        j.clear(&key("c")).unwrap();
        j.append(&[part("b", 10), part("c", 10)]).unwrap();
        j.finish(part("b", 11)).unwrap();
        j.finish(part("c", 11)).unwrap();
        assert_eq!(numbers(&j.get(&key("a")).unwrap()), [1, 2, 3]);
        assert_eq!(numbers(&j.get(&key("b")).unwrap()), [10, 11]);
        assert_eq!(numbers(&j.get(&key("c")).unwrap()), [10, 11]);
    }

    /// A journal written before attempts were recorded (parts numbered
    /// in their replay) resumes with what it finished.
    #[test]
    fn a_journal_of_numbered_parts_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sqlite");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE parts (
                     scenario TEXT NOT NULL, strategy TEXT NOT NULL, repeat INTEGER NOT NULL,
                     seq INTEGER NOT NULL, result TEXT NOT NULL,
                     PRIMARY KEY (scenario, strategy, repeat, seq));
                 CREATE TABLE done (
                     scenario TEXT NOT NULL, strategy TEXT NOT NULL, repeat INTEGER NOT NULL,
                     PRIMARY KEY (scenario, strategy, repeat));
                 INSERT INTO done VALUES ('a', 'window', 1);",
            )
            .unwrap();
            // Written out of their order: the numbers decide.
            for (seq, n) in [(1, 2), (0, 1), (2, 3)] {
                c.execute(
                    "INSERT INTO parts VALUES ('a', 'window', 1, ?1, ?2)",
                    params![seq, serde_json::to_string(&part("a", n)).unwrap()],
                )
                .unwrap();
            }
            c.execute(
                "INSERT INTO parts VALUES ('b', 'window', 1, 0, ?1)",
                [serde_json::to_string(&part("b", 1)).unwrap()],
            )
            .unwrap();
        }
        let j = Journal::open(&path).unwrap();
        assert_eq!(j.done().unwrap(), [key("a")].into_iter().collect());
        assert_eq!(numbers(&j.get(&key("a")).unwrap()), [1, 2, 3]);
        j.clear(&key("b")).unwrap();
        j.finish(part("b", 7)).unwrap();
        assert_eq!(numbers(&j.get(&key("b")).unwrap()), [7]);
    }
}
