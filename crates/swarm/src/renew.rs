//! Keeping the node's certificate current: renewed in the second half of its life, and at once
//! when the cluster wants the node in another role (`docker node promote/demote`). A new role
//! starts or stops this node's manager; either way the agent's session restarts with the new
//! certificate.

use std::sync::{Arc, Weak};
use std::time::Duration;

use base64::Engine as _;
use skiff_agent::Session;
use skiff_cluster::ca::NodeKey;
use skiff_cluster::identity::NodeIdentity;
use skiff_cluster::rpc::{RPC_VERSION, RenewRequest, RenewResponse};
use skiff_cluster::seal::Key;
use skiff_cluster::tls::{self, Credentials};
use skiff_cluster::transport::Dialer;
use skiff_cluster::types::StoredRole;
use tokio_util::sync::CancellationToken;

use crate::{ManagerError, Result, Swarm, files, renew_at};

/// What a renewal needs, taken from the active state without holding its lock.
struct Due {
    node_id: String,
    cluster_id: String,
    creds: Credentials,
    manager: String,
    advertise: String,
    reason: &'static str,
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Checks every second whether the certificate is due; runs for the daemon's life.
pub(crate) async fn watch(swarm: Weak<Swarm>, cancel: CancellationToken) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let Some(s) = swarm.upgrade() else { return };
        if let Err(e) = s.keep_sealed().await {
            tracing::warn!("sealing this manager's keys: {e}");
        }
        let Some(due) = s.due().await else { continue };
        if let Err(e) = s.renew(due).await {
            tracing::warn!("renewing this node's certificate: {e}");
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }
}

impl Swarm {
    async fn due(&self) -> Option<Due> {
        let state = self.state.lock().await;
        let a = state.as_ref()?;
        let status = a.session.status();
        if status.removed {
            return None;
        }
        let reason = if status.role.is_some_and(|r| r != a.file.role) {
            "the cluster changed this node's role"
        } else if !status.ca_generation.is_empty() && status.ca_generation != a.file.ca_generation {
            "the cluster's root CA is rotating"
        } else if now() >= a.renew_at {
            "the certificate is in the second half of its life"
        } else {
            return None;
        };
        let manager = status.current.clone().or_else(|| a.file.managers.first().map(|m| m.addr.clone()))?;
        Some(Due {
            node_id: a.file.node_id.clone(),
            cluster_id: a.file.cluster_id.clone(),
            creds: a.creds.clone(),
            manager,
            advertise: a.file.advertise_addr.clone(),
            reason,
        })
    }

    async fn renew(self: &Arc<Self>, due: Due) -> Result<()> {
        tracing::info!(reason = due.reason, "renewing this node's certificate");
        let key = NodeKey::generate().map_err(ManagerError::internal)?;
        let req = RenewRequest {
            rpc_version: RPC_VERSION,
            csr: base64::engine::general_purpose::STANDARD.encode(key.csr().map_err(ManagerError::internal)?),
            advertise_addr: due.advertise.clone(),
        };
        let dialer = Dialer::new(tls::client(&due.creds).map_err(ManagerError::internal)?);
        let resp: RenewResponse = dialer
            .call(&due.manager, "/v1/renew", &req, Duration::from_secs(30))
            .await
            .map_err(ManagerError::unavailable)?;
        // The root comes from the manager (authenticated by the current root): the same one, or
        // the cluster's new root once a rotation has reached every node.
        let creds = Credentials::from_pem(&resp.ca, &resp.cert, key.der()).map_err(ManagerError::internal)?;
        let who = NodeIdentity::from_cert(&creds.cert).map_err(ManagerError::internal)?;
        if who.node_id != due.node_id || who.cluster_id != due.cluster_id || StoredRole::from(who.role) != resp.role {
            return Err(ManagerError::internal("the renewed certificate names another node"));
        }
        tls::client(&creds).map_err(ManagerError::internal)?;
        self.adopt(creds, resp, &key).await
    }

    /// Takes the new certificate: saved first, then the role's change and a new session.
    async fn adopt(self: &Arc<Self>, creds: Credentials, resp: RenewResponse, key: &NodeKey) -> Result<()> {
        let mut state = self.state.lock().await;
        let Some(a) = state.as_mut() else { return Ok(()) };
        let was = a.file.role;
        a.file.role = resp.role;
        if !resp.managers.is_empty() {
            a.file.managers = resp.managers.clone();
        }
        a.keys.cert_pem = resp.cert.clone();
        a.keys.key_pem = key.pem();
        a.keys.ca_pem = resp.ca.clone();
        a.file.ca_generation = resp.ca_generation.clone();
        match (was, resp.role) {
            (StoredRole::Worker, StoredRole::Manager) => a.keys.dek = Some(Arc::new(Key::generate())),
            (StoredRole::Manager, StoredRole::Worker) => (a.keys.dek, a.keys.kek) = (None, None),
            _ => {}
        }
        files::save(&self.dir, &a.file, &a.keys).map_err(ManagerError::internal)?;
        match (was, resp.role) {
            (StoredRole::Worker, StoredRole::Manager) => {
                a.manager = Some(self.start_manager(&a.file, &a.keys, None).await?);
                tracing::info!("this node is now a manager");
            }
            (StoredRole::Manager, StoredRole::Worker) => {
                if let Some(m) = a.manager.take() {
                    m.shutdown().await;
                }
                let _ = skiff_common::fsutil::remove_all(&self.dir.join("raft"));
                tracing::info!("this node is now a worker");
            }
            (StoredRole::Manager, StoredRole::Manager) => {
                if let Some(m) = &a.manager {
                    m.set_credentials(&creds)?;
                }
            }
            _ => {}
        }
        let session =
            Session::start(&creds, a.file.managers.clone(), a.file.advertise_addr.clone(), self.executor.clone())
                .map_err(ManagerError::internal)?;
        let old = std::mem::replace(&mut a.session, session);
        a.renew_at = renew_at(&creds);
        a.creds = creds;
        drop(state);
        old.stop().await;
        Ok(())
    }
}
