//! Replies and embeddings already paid for (or already computed), in
//! SQLite: replies by a hash of the endpoint and the whole request,
//! embeddings by a hash of the model and the text.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

/// Replies already paid for, by request.
pub(crate) struct Cache {
    pub(crate) db: Mutex<rusqlite::Connection>,
    /// One lock per request in flight: the same request made twice at once
    /// (two strategies writing the same summary) is sent once, and both get
    /// the one reply the cache keeps, as a rerun will.
    pub(crate) in_flight: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl Cache {
    pub(crate) fn open(path: &Path) -> Result<Cache, String> {
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
    pub(crate) fn flight(&self, key: &str) -> Arc<Mutex<()>> {
        let mut m = self.in_flight.lock().expect("no panic holds this lock");
        m.entry(key.to_string()).or_default().clone()
    }

    pub(crate) fn get(
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
    pub(crate) fn put_response(
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

    /// A stored vector (little-endian f32s), if any.
    pub(crate) fn get_embedding(&self, key: &str) -> Option<Vec<f32>> {
        match self.get("embeddings", "vector", key)? {
            rusqlite::types::Value::Blob(b) => Some(
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            _ => None,
        }
    }

    /// Stores vectors, `(key, input)` beside each, in one transaction.
    pub(crate) fn put_embeddings<'a>(
        &self,
        model: &str,
        rows: impl IntoIterator<Item = (&'a str, &'a str, &'a [f32])>,
    ) {
        let mut db = self.db.lock().expect("no panic holds the cache");
        let Ok(tx) = db.transaction() else { return };
        for (key, input, v) in rows {
            let blob: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            let _ = tx.execute(
                "INSERT OR REPLACE INTO embeddings VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![key, model, input, blob],
            );
        }
        let _ = tx.commit();
    }
}

pub(crate) fn hash_key(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0x1f]);
    }
    crate::text::hex(&h.finalize())
}
