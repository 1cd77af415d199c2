//! The state machine: [`ClusterState`] with the last applied log ID and membership, and its
//! snapshots (persisted in the raft database, so a restarted manager starts from its last
//! snapshot and openraft re-applies the committed entries after it).

use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::storage::RaftStateMachine;
use openraft::{
    Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StoredMembership,
};
use redb::{ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};
use skiff_cluster::types::{Applied, ClusterState};
use tokio::sync::RwLock;

use skiff_cluster::seal::Key;

use super::{Member, StorageError, TypeConfig, io_err, seal, unseal};

const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_snapshot");

#[derive(Debug, Default)]
struct Inner {
    state: ClusterState,
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, Member>,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<u64, Member>,
    data: Vec<u8>,
}

/// The replicated state; openraft drives it through `Arc<StateMachine>`, the manager reads it.
pub struct StateMachine {
    inner: RwLock<Inner>,
    db: Arc<redb::Database>,
    /// Seals the persisted snapshot.
    dek: Arc<Key>,
    snapshots: AtomicU64,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateMachine")
    }
}

fn sm_err(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    io_err(ErrorSubject::StateMachine, verb, e)
}

impl StateMachine {
    /// Opens the state machine at its last persisted snapshot.
    pub fn open(db: Arc<redb::Database>, dek: Arc<Key>) -> Result<Arc<StateMachine>, StorageError> {
        let txn = db.begin_write().map_err(|e| sm_err(ErrorVerb::Write, e))?;
        txn.open_table(SNAPSHOT).map_err(|e| sm_err(ErrorVerb::Write, e))?;
        txn.commit().map_err(|e| sm_err(ErrorVerb::Write, e))?;
        let mut inner = Inner::default();
        if let Some(s) = load(&db, &dek)? {
            inner.state = ClusterState::decode(&s.data).map_err(|e| sm_err(ErrorVerb::Read, e))?;
            inner.last_applied = s.meta.last_log_id;
            inner.membership = s.meta.last_membership.clone();
        }
        Ok(Arc::new(StateMachine { inner: RwLock::new(inner), db, dek, snapshots: AtomicU64::new(0) }))
    }

    /// The state as applied here (a linearizable read first asks openraft to confirm).
    pub async fn state(&self) -> ClusterState {
        self.inner.read().await.state.clone()
    }

    /// Reads the state without cloning it.
    pub async fn with<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        f(&self.inner.read().await.state)
    }

    fn persist(&self, s: &StoredSnapshot) -> Result<(), StorageError> {
        let plain = serde_json::to_vec(s).map_err(|e| sm_err(ErrorVerb::Write, e))?;
        let bytes = seal(&self.dek, &plain, "snapshot");
        let txn = self.db.begin_write().map_err(|e| sm_err(ErrorVerb::Write, e))?;
        {
            let mut t = txn.open_table(SNAPSHOT).map_err(|e| sm_err(ErrorVerb::Write, e))?;
            t.insert("current", bytes.as_slice()).map_err(|e| sm_err(ErrorVerb::Write, e))?;
        }
        txn.commit().map_err(|e| sm_err(ErrorVerb::Write, e))
    }
}

fn load(db: &redb::Database, dek: &Key) -> Result<Option<StoredSnapshot>, StorageError> {
    let txn = db.begin_read().map_err(|e| sm_err(ErrorVerb::Read, e))?;
    let t = txn.open_table(SNAPSHOT).map_err(|e| sm_err(ErrorVerb::Read, e))?;
    match t.get("current").map_err(|e| sm_err(ErrorVerb::Read, e))? {
        None => Ok(None),
        Some(v) => {
            let plain = unseal(dek, v.value(), "snapshot").map_err(|e| sm_err(ErrorVerb::Read, e))?;
            serde_json::from_slice(&plain).map(Some).map_err(|e| sm_err(ErrorVerb::Read, e))
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for Arc<StateMachine> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (data, last, membership) = {
            let inner = self.inner.read().await;
            let data = serde_json::to_vec(&inner.state).map_err(|e| sm_err(ErrorVerb::Read, e))?;
            (data, inner.last_applied, inner.membership.clone())
        };
        let n = self.snapshots.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = format!("{}-{n}", last.map_or(0, |l| l.index));
        let meta = SnapshotMeta { last_log_id: last, last_membership: membership, snapshot_id };
        let stored = StoredSnapshot { meta: meta.clone(), data: data.clone() };
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.persist(&stored)).await.map_err(|e| sm_err(ErrorVerb::Write, e))??;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for Arc<StateMachine> {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId<u64>>, StoredMembership<u64, Member>), StorageError> {
        let inner = self.inner.read().await;
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        let mut inner = self.inner.write().await;
        for e in entries {
            inner.last_applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => out.push(Applied::default()),
                EntryPayload::Normal(req) => out.push(inner.state.apply(e.log_id.index, req.now, &req.cmd)),
                EntryPayload::Membership(m) => {
                    inner.membership = StoredMembership::new(Some(e.log_id), m);
                    out.push(Applied::default());
                }
            }
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let state = ClusterState::decode(&data).map_err(|e| sm_err(ErrorVerb::Read, e))?;
        let stored = StoredSnapshot { meta: meta.clone(), data };
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.persist(&stored)).await.map_err(|e| sm_err(ErrorVerb::Write, e))??;
        let mut inner = self.inner.write().await;
        inner.state = state;
        inner.last_applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let (db, dek) = (self.db.clone(), self.dek.clone());
        let s =
            tokio::task::spawn_blocking(move || load(&db, &dek)).await.map_err(|e| sm_err(ErrorVerb::Read, e))??;
        Ok(s.map(|s| Snapshot { meta: s.meta, snapshot: Box::new(Cursor::new(s.data)) }))
    }
}
