//! Autolock: a manager's keys sealed on disk with the cluster's unlock key, and `swarm unlock`.
//!
//! The unlock key lives in the replicated store (`Cluster::unlock_key`); each manager keeps its
//! own files sealed with whatever key its copy of the store holds — `keep_sealed` re-seals
//! (or unseals, autolock off) within a second of the change reaching it. A manager restarted
//! with sealed files stays locked, heard by nobody and serving nothing, until `unlock` is given
//! the key its files were sealed with (the key before a rotation it missed, if it was down).

use skiff_cluster::seal::Key;
use skiff_cluster::types::StoredRole;

use crate::{Kind, ManagerError, Result, Swarm, files, not_in_swarm};

/// dockerd's answer to a swarm operation on a locked node.
pub(crate) fn swarm_locked() -> ManagerError {
    ManagerError::new(
        Kind::Unavailable,
        "Swarm is encrypted and needs to be unlocked before it can be used. Please use \"docker swarm unlock\" to unlock it.",
    )
}

impl Swarm {
    /// Whether this node waits for its unlock key.
    pub async fn is_locked(&self) -> bool {
        self.locked.lock().await.is_some()
    }

    /// `docker swarm unlock`: opens the sealed keys with `key` and starts the node.
    pub async fn unlock(&self, key: &str) -> Result<()> {
        let mut state = self.state.lock().await;
        let mut locked = self.locked.lock().await;
        let Some((file, sealed)) = locked.as_ref() else {
            return Err(if state.is_some() {
                ManagerError::new(Kind::Conflict, "swarm is not locked")
            } else {
                not_in_swarm()
            });
        };
        let kek = Key::parse_unlock_key(key).map_err(|e| ManagerError::new(Kind::Invalid, e.to_string()))?;
        let keys = sealed
            .unlock(&kek)
            .map_err(|_| ManagerError::new(Kind::Unauthorized, "swarm could not be unlocked: invalid key provided"))?;
        let active = self.resume(file.clone(), keys).await?;
        *locked = None;
        *state = Some(active);
        tracing::info!("the swarm was unlocked");
        Ok(())
    }

    /// `GET /swarm/unlockkey`: the cluster's unlock key (empty without autolock).
    pub async fn unlock_key(&self) -> Result<String> {
        let m = self.manager().await?;
        Ok(m.read().await?.cluster.map(|c| c.unlock_key).unwrap_or_default())
    }

    /// Seals this manager's files with the unlock key its store holds, or unseals them when
    /// autolock was turned off; a worker's files stay clear.
    pub(crate) async fn keep_sealed(&self) -> Result<()> {
        let mut state = self.state.lock().await;
        let Some(a) = state.as_mut() else { return Ok(()) };
        let want = match (&a.manager, a.file.role) {
            (Some(m), StoredRole::Manager) => {
                let text = m.local_unlock_key().await;
                if text.is_empty() { None } else { Some(Key::parse_unlock_key(&text).map_err(ManagerError::internal)?) }
            }
            _ => None,
        };
        if want == a.keys.kek {
            return Ok(());
        }
        let mut keys = a.keys.clone();
        keys.kek = want;
        files::save(&self.dir, &a.file, &keys).map_err(ManagerError::internal)?;
        tracing::info!(sealed = keys.kek.is_some(), "this manager's keys were re-sealed for the cluster's autolock");
        a.keys = keys;
        Ok(())
    }
}
