//! Certificate renewal, and with it role changes: a member sends a CSR for a new key (its
//! current certificate authenticates it) and gets a certificate for the role the cluster's spec
//! gives it. Promotion adds the node to the Raft membership (a learner, then a voter once caught
//! up); demotion removes it before the worker certificate is issued, so a demoted node never
//! holds a vote it should not.

use std::collections::BTreeSet;

use base64::Engine as _;
use openraft::ChangeMembers;
use skiff_cluster::identity::{NodeIdentity, Role};
use skiff_cluster::rpc::{ManagerPeer, RPC_VERSION, RenewRequest, RenewResponse};
use skiff_cluster::types::{Command, StoredRole};

use crate::error::{Kind, ManagerError, Result};
use crate::manager::{Manager, no_leader};
use crate::raft::{Member, raft_id};

/// Renews `peer`'s certificate for the role the cluster wants it in (on the leader).
pub(crate) async fn renew(m: &Manager, peer: &NodeIdentity, req: RenewRequest) -> Result<RenewResponse> {
    if req.rpc_version > RPC_VERSION {
        return Err(ManagerError::new(Kind::Invalid, "renewal protocol newer than this manager's"));
    }
    let state = m.read().await?;
    let cluster = state.cluster.ok_or_else(no_leader)?;
    let node = state
        .nodes
        .get(&peer.node_id)
        .cloned()
        .ok_or_else(|| ManagerError::new(Kind::NotFound, format!("node {} not found", peer.node_id)))?;
    let role = node.spec.role;
    let rid = raft_id(&node.id);
    let in_raft = m.raft.metrics().borrow().membership_config.membership().get_node(&rid).is_some();
    let advertise = if req.advertise_addr.is_empty() {
        node.manager_addr.clone().unwrap_or_else(|| format!("{}:{}", node.addr, skiff_cluster::rpc::DEFAULT_PORT))
    } else {
        req.advertise_addr.clone()
    };
    match role {
        StoredRole::Worker if in_raft => {
            // Out of the voters (and the membership) first: openraft keeps the quorum right.
            let ids = BTreeSet::from([rid]);
            m.raft
                .change_membership(ChangeMembers::RemoveVoters(ids.clone()), false)
                .await
                .map_err(ManagerError::unavailable)?;
            let _ = m.raft.change_membership(ChangeMembers::RemoveNodes(ids), false).await;
        }
        StoredRole::Manager if !in_raft => {
            let member = Member { node_id: node.id.clone(), addr: advertise.clone() };
            m.raft.add_learner(rid, member, false).await.map_err(ManagerError::unavailable)?;
        }
        _ => {}
    }
    let csr = base64::engine::general_purpose::STANDARD
        .decode(req.csr.as_bytes())
        .map_err(|_| ManagerError::new(Kind::Invalid, "the CSR is not base64"))?;
    let who = NodeIdentity { node_id: node.id.clone(), role: Role::from(role), cluster_id: cluster.id.clone() };
    let (cert, tls) = Manager::issue(&cluster, &csr, &who)?;
    let manager_addr = (role == StoredRole::Manager).then_some(advertise);
    m.write(Command::CertRole { id: node.id.clone(), role, manager_addr, tls: Some(tls) }).await?;
    let managers: Vec<ManagerPeer> = m.managers().into_iter().map(|(p, _)| p).collect();
    tracing::info!(node = %node.id, role = ?role, "certificate renewed");
    Ok(RenewResponse { role, cert, ca: cluster.root_ca_cert.clone(), managers, ca_generation: cluster.ca_generation() })
}
