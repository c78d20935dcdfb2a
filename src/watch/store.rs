//! The watch list on disk, so that a restarted Manifold resumes watching what it was told to
//! land: an embedded redb database (one file, crash-safe commits), one table keyed by
//! `chain/hash`, each value a watched transaction as JSON.
//!
//! Every write commits with redb's default `Immediate` durability: a transaction the client
//! has been answered for is on disk. redb is synchronous; writes run on tokio's blocking pool.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, TableDefinition};

use super::entry::WatchedTx;

const WATCHED: TableDefinition<&str, &[u8]> = TableDefinition::new("watched_transactions");

/// The open store, shared by every chain of the process.
#[derive(Clone)]
pub struct TxStore {
    db: Arc<Database>,
    path: PathBuf,
}

impl std::fmt::Debug for TxStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxStore").field("path", &self.path).finish()
    }
}

fn key(chain: &str, hash: &str) -> String {
    format!("{chain}/{hash}")
}

impl TxStore {
    /// Open (or create) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, String> {
        let db =
            Database::create(path).map_err(|e| format!("cannot open `{}`: {e}", path.display()))?;
        // The table exists from the first open on, so that reads never meet its absence.
        let txn = db.begin_write().map_err(|e| e.to_string())?;
        txn.open_table(WATCHED).map_err(|e| e.to_string())?;
        txn.commit().map_err(|e| e.to_string())?;
        Ok(Self {
            db: Arc::new(db),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every transaction stored for `chain`. Entries that cannot be read (written by another
    /// version) are skipped with a warning.
    pub fn load(&self, chain: &str) -> Result<Vec<WatchedTx>, String> {
        let txn = self.db.begin_read().map_err(|e| e.to_string())?;
        let table = txn.open_table(WATCHED).map_err(|e| e.to_string())?;
        let prefix = format!("{chain}/");
        let mut out = Vec::new();
        for item in table.range(prefix.as_str()..).map_err(|e| e.to_string())? {
            let (k, v) = item.map_err(|e| e.to_string())?;
            if !k.value().starts_with(&prefix) {
                break;
            }
            match serde_json::from_slice::<WatchedTx>(v.value()) {
                Ok(tx) => out.push(tx),
                Err(e) => {
                    tracing::warn!(key = k.value(), error = %e, "tx store: unreadable entry skipped")
                }
            }
        }
        Ok(out)
    }

    /// Store `put` and delete `remove` (hashes) for `chain`, in one commit.
    pub async fn write(
        &self,
        chain: &str,
        put: Vec<WatchedTx>,
        remove: Vec<String>,
    ) -> Result<(), String> {
        if put.is_empty() && remove.is_empty() {
            return Ok(());
        }
        let db = self.db.clone();
        let chain = chain.to_string();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_write().map_err(|e| e.to_string())?;
            {
                let mut table = txn.open_table(WATCHED).map_err(|e| e.to_string())?;
                for tx in &put {
                    let value = serde_json::to_vec(tx).map_err(|e| e.to_string())?;
                    table
                        .insert(key(&chain, &tx.hash).as_str(), value.as_slice())
                        .map_err(|e| e.to_string())?;
                }
                for hash in &remove {
                    table
                        .remove(key(&chain, hash).as_str())
                        .map_err(|e| e.to_string())?;
                }
            }
            txn.commit().map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| format!("tx store writer: {e}"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::entry::TxState;

    fn tx(hash: &str) -> WatchedTx {
        WatchedTx {
            hash: hash.into(),
            method: "eth_sendRawTransaction".into(),
            params: "[\"0x00\"]".into(),
            lookup_method: "eth_getTransactionByHash".into(),
            lookup_params: format!("[\"{hash}\"]"),
            sender: Some("0xab".into()),
            nonce: Some(1),
            state: TxState::Pending,
            first_sent_ms: 1,
            last_sent_ms: 1,
            ended_ms: None,
            block: None,
            block_hash: None,
            attempts: 1,
            rebroadcasts: 0,
            accepted_by: vec!["u0".into()],
            domains: vec!["d0".into()],
            nonce_taken_seen: 0,
            checked_ms: 0,
        }
    }

    #[tokio::test]
    async fn survives_a_reopen_and_keeps_chains_apart() {
        let dir = std::env::temp_dir().join(format!("manifold-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tx.redb");
        let _ = std::fs::remove_file(&path);
        {
            let store = TxStore::open(&path).unwrap();
            store
                .write("eth", vec![tx("0x01"), tx("0x02")], vec![])
                .await
                .unwrap();
            store.write("eth2", vec![tx("0x03")], vec![]).await.unwrap();
            store
                .write("eth", vec![], vec!["0x01".into()])
                .await
                .unwrap();
        }
        let store = TxStore::open(&path).unwrap();
        assert_eq!(store.load("eth").unwrap(), vec![tx("0x02")]);
        assert_eq!(store.load("eth2").unwrap(), vec![tx("0x03")]);
        assert!(store.load("et").unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
