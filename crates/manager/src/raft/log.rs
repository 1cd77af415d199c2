//! The Raft log, the vote and the commit index, on redb.
//!
//! One table of entries keyed by index (JSON, sealed with the manager's data key and bound to
//! their index), one of metadata (`vote`, `committed`, `purged`: not secret, kept clear). Appends and votes are committed durably before openraft is told so; every
//! write runs on the blocking pool.

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{Entry, ErrorSubject, ErrorVerb, LogId, LogState, RaftLogReader, Vote};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use skiff_cluster::seal::Key;

use super::{StorageError, TypeConfig, io_err, seal, unseal};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

/// The log store; clones share the database.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<redb::Database>,
    dek: Arc<Key>,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogStore")
    }
}

fn logs_err(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    io_err(ErrorSubject::Logs, verb, e)
}

impl LogStore {
    /// Opens (or creates) the store in `db` — the manager's raft database — whose entries
    /// `dek` seals.
    pub fn open(db: Arc<redb::Database>, dek: Arc<Key>) -> Result<LogStore, StorageError> {
        let txn = db.begin_write().map_err(|e| logs_err(ErrorVerb::Write, e))?;
        txn.open_table(LOG).map_err(|e| logs_err(ErrorVerb::Write, e))?;
        txn.open_table(META).map_err(|e| logs_err(ErrorVerb::Write, e))?;
        txn.commit().map_err(|e| logs_err(ErrorVerb::Write, e))?;
        Ok(LogStore { db, dek })
    }

    /// Opens the raft database file.
    pub fn database(path: &Path) -> Result<Arc<redb::Database>, StorageError> {
        redb::Database::create(path).map(Arc::new).map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Read, e))
    }

    fn decode(dek: &Key, index: u64, stored: &[u8]) -> Result<Entry<TypeConfig>, StorageError> {
        let plain = unseal(dek, stored, &format!("log/{index}")).map_err(|e| logs_err(ErrorVerb::Read, e))?;
        serde_json::from_slice(&plain).map_err(|e| logs_err(ErrorVerb::Read, e))
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&redb::Database) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db)).await.map_err(|e| logs_err(ErrorVerb::Write, e))?
    }

    fn get_meta<T: serde::de::DeserializeOwned>(db: &redb::Database, key: &str) -> Result<Option<T>, StorageError> {
        let txn = db.begin_read().map_err(|e| logs_err(ErrorVerb::Read, e))?;
        let t = txn.open_table(META).map_err(|e| logs_err(ErrorVerb::Read, e))?;
        match t.get(key).map_err(|e| logs_err(ErrorVerb::Read, e))? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(v.value()).map(Some).map_err(|e| logs_err(ErrorVerb::Read, e)),
        }
    }

    fn put_meta<T: serde::Serialize>(db: &redb::Database, key: &str, v: &T) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(v).map_err(|e| logs_err(ErrorVerb::Write, e))?;
        let txn = db.begin_write().map_err(|e| logs_err(ErrorVerb::Write, e))?;
        {
            let mut t = txn.open_table(META).map_err(|e| logs_err(ErrorVerb::Write, e))?;
            t.insert(key, bytes.as_slice()).map_err(|e| logs_err(ErrorVerb::Write, e))?;
        }
        txn.commit().map_err(|e| logs_err(ErrorVerb::Write, e))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let (start, end) = (range.start_bound().cloned(), range.end_bound().cloned());
        let dek = self.dek.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(|e| logs_err(ErrorVerb::Read, e))?;
            let t = txn.open_table(LOG).map_err(|e| logs_err(ErrorVerb::Read, e))?;
            let mut out = Vec::new();
            for row in t.range::<u64>((start, end)).map_err(|e| logs_err(ErrorVerb::Read, e))? {
                let (k, v) = row.map_err(|e| logs_err(ErrorVerb::Read, e))?;
                out.push(Self::decode(&dek, k.value(), v.value())?);
            }
            Ok(out)
        })
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let dek = self.dek.clone();
        self.blocking(move |db| {
            let purged: Option<LogId<u64>> = Self::get_meta(db, "purged")?;
            let txn = db.begin_read().map_err(|e| logs_err(ErrorVerb::Read, e))?;
            let t = txn.open_table(LOG).map_err(|e| logs_err(ErrorVerb::Read, e))?;
            let last = match t.last().map_err(|e| logs_err(ErrorVerb::Read, e))? {
                Some((k, v)) => Some(Self::decode(&dek, k.value(), v.value())?.log_id),
                None => purged,
            };
            Ok(LogState { last_purged_log_id: purged, last_log_id: last })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError> {
        let vote = *vote;
        self.blocking(move |db| {
            Self::put_meta(db, "vote", &vote)
                .map_err(|_| io_err(ErrorSubject::Vote, ErrorVerb::Write, "saving the vote"))
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        self.blocking(|db| Self::get_meta(db, "vote")).await
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<(), StorageError> {
        self.blocking(move |db| Self::put_meta(db, "committed", &committed)).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError> {
        self.blocking(|db| Ok(Self::get_meta::<Option<LogId<u64>>>(db, "committed")?.flatten())).await
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut rows = Vec::new();
        for e in entries {
            let plain = serde_json::to_vec(&e).map_err(|e| logs_err(ErrorVerb::Write, e))?;
            let index = e.log_id.index;
            rows.push((index, seal(&self.dek, &plain, &format!("log/{index}"))));
        }
        let r = self
            .blocking(move |db| {
                let txn = db.begin_write().map_err(|e| logs_err(ErrorVerb::Write, e))?;
                {
                    let mut t = txn.open_table(LOG).map_err(|e| logs_err(ErrorVerb::Write, e))?;
                    for (i, bytes) in &rows {
                        t.insert(*i, bytes.as_slice()).map_err(|e| logs_err(ErrorVerb::Write, e))?;
                    }
                }
                txn.commit().map_err(|e| logs_err(ErrorVerb::Write, e))
            })
            .await;
        match &r {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        r
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(|e| logs_err(ErrorVerb::Delete, e))?;
            {
                let mut t = txn.open_table(LOG).map_err(|e| logs_err(ErrorVerb::Delete, e))?;
                t.retain_in(log_id.index.., |_, _| false).map_err(|e| logs_err(ErrorVerb::Delete, e))?;
            }
            txn.commit().map_err(|e| logs_err(ErrorVerb::Delete, e))
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError> {
        self.blocking(move |db| {
            let bytes = serde_json::to_vec(&log_id).map_err(|e| logs_err(ErrorVerb::Delete, e))?;
            let txn = db.begin_write().map_err(|e| logs_err(ErrorVerb::Delete, e))?;
            {
                let mut m = txn.open_table(META).map_err(|e| logs_err(ErrorVerb::Delete, e))?;
                m.insert("purged", bytes.as_slice()).map_err(|e| logs_err(ErrorVerb::Delete, e))?;
                let mut t = txn.open_table(LOG).map_err(|e| logs_err(ErrorVerb::Delete, e))?;
                t.retain_in(..=log_id.index, |_, _| false).map_err(|e| logs_err(ErrorVerb::Delete, e))?;
            }
            txn.commit().map_err(|e| logs_err(ErrorVerb::Delete, e))
        })
        .await
    }
}
