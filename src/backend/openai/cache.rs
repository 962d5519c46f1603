//! Replies and embeddings already paid for, in SQLite, by a hash of the
//! endpoint and the whole request.

use super::*;

/// Replies already paid for, by request.
pub(super) struct Cache {
    pub(super) db: Mutex<rusqlite::Connection>,
    /// One lock per request in flight: the same request made twice at once
    /// (two strategies writing the same summary) is sent once, and both get
    /// the one reply the cache keeps, as a rerun will.
    pub(super) in_flight: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl Cache {
    pub(super) fn open(path: &Path) -> Result<Cache, String> {
        let fail = |e: &dyn std::fmt::Display| format!("cache {}: {e}", path.display());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
        }
        let db = rusqlite::Connection::open(path).map_err(|e| fail(&e))?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA busy_timeout = 10000;
             CREATE TABLE IF NOT EXISTS responses (
                 key TEXT PRIMARY KEY, endpoint TEXT NOT NULL, model TEXT NOT NULL,
                 request TEXT NOT NULL, response TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS embeddings (
                 key TEXT PRIMARY KEY, model TEXT NOT NULL, input TEXT NOT NULL,
                 vector BLOB NOT NULL);",
        )
        .map_err(|e| fail(&e))?;
        Ok(Cache {
            db: Mutex::new(db),
            in_flight: Mutex::new(HashMap::new()),
        })
    }

    /// The lock of request `key`, held while it is looked up and fetched.
    pub(super) fn flight(&self, key: &str) -> Arc<Mutex<()>> {
        let mut m = self.in_flight.lock().expect("no panic holds this lock");
        m.entry(key.to_string()).or_default().clone()
    }

    pub(super) fn get(
        &self,
        table: &str,
        column: &str,
        key: &str,
    ) -> Option<rusqlite::types::Value> {
        let db = self.db.lock().expect("no panic holds the cache");
        db.query_row(
            &format!("SELECT {column} FROM {table} WHERE key = ?1"),
            [key],
            |r| r.get(0),
        )
        .ok()
    }

    /// Best effort: a cache that cannot be written costs a rerun, never a run.
    pub(super) fn put_response(
        &self,
        key: &str,
        endpoint: &str,
        model: &str,
        request: &str,
        response: &str,
    ) {
        let db = self.db.lock().expect("no panic holds the cache");
        let _ = db.execute(
            "INSERT OR REPLACE INTO responses VALUES (?1, ?2, ?3, ?4, ?5)",
            [key, endpoint, model, request, response],
        );
    }

    pub(super) fn put_embedding(&self, key: &str, model: &str, input: &str, v: &[f32]) {
        let blob: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        let db = self.db.lock().expect("no panic holds the cache");
        let _ = db.execute(
            "INSERT OR REPLACE INTO embeddings VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![key, model, input, blob],
        );
    }
}

pub(super) fn hash_key(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0x1f]);
    }
    crate::text::hex(&h.finalize())
}
