//! Admitting a node (swarmkit's CA server, in its issuing part): the join token decides the
//! role, the manager picks the node's ID and signs the node's key into a certificate that
//! states both. A manager joins the Raft membership as a learner first and becomes a voter once
//! it has caught up with the log.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use skiff_cluster::identity::{NodeIdentity, Role, new_id};
use skiff_cluster::rpc::{JoinRequest, JoinResponse, ManagerPeer, RPC_VERSION};
use skiff_cluster::token::JoinToken;
use skiff_cluster::types::{Command, Node, StoredRole};

use crate::error::{Kind, ManagerError, Result};
use crate::manager::{Manager, no_leader};
use crate::raft::{Member, raft_id};

/// How long a new manager has to catch up before it is made a voter anyway.
/// How long one pass waits for a promotion to commit.
const PROMOTE_WAIT: Duration = Duration::from_secs(2);

/// Admits the node `req` describes (on the leader; elsewhere the caller forwards).
pub(crate) async fn admit(m: &Manager, req: JoinRequest, remote: SocketAddr) -> Result<JoinResponse> {
    if req.rpc_version > RPC_VERSION {
        return Err(ManagerError::new(
            Kind::Invalid,
            format!("join protocol {} is newer than this manager's", req.rpc_version),
        ));
    }
    let state = m.read().await?;
    let cluster = state.cluster.ok_or_else(no_leader)?;
    let presented = JoinToken::parse(&req.token).map_err(|_| ManagerError::new(Kind::Invalid, "invalid join token"))?;
    let admits = |t: &str| JoinToken::parse(t).is_ok_and(|t| t.admits(&presented));
    let role = if admits(&cluster.manager_token) {
        Role::Manager
    } else if admits(&cluster.worker_token) {
        Role::Worker
    } else {
        return Err(ManagerError::new(Kind::Forbidden, "A valid join token is necessary to join this cluster"));
    };
    let csr = base64::engine::general_purpose::STANDARD
        .decode(req.csr.as_bytes())
        .map_err(|_| ManagerError::new(Kind::Invalid, "the CSR is not base64"))?;
    let who = NodeIdentity { node_id: new_id(), role, cluster_id: cluster.id.clone() };
    let (cert, tls) = Manager::issue(&cluster, &csr, &who)?;
    let host = remote.ip().to_string();
    let advertise = if req.advertise_addr.is_empty() {
        format!("{host}:{}", skiff_cluster::rpc::DEFAULT_PORT)
    } else {
        req.advertise_addr.clone()
    };
    let role_s = StoredRole::from(role);
    let manager_addr = (role == Role::Manager).then(|| advertise.clone());
    let mut node = Node::new(&who.node_id, role_s, req.description, host, manager_addr);
    node.tls = Some(tls);
    m.write(Command::AddNode { node: Box::new(node) }).await?;
    if role == Role::Manager {
        let member = Member { node_id: who.node_id.clone(), addr: advertise };
        m.raft.add_learner(raft_id(&who.node_id), member, false).await.map_err(ManagerError::unavailable)?;
    }
    let mut managers: Vec<ManagerPeer> = m.managers().into_iter().map(|(p, _)| p).collect();
    managers.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    tracing::info!(node = %who.node_id, role = %role, "node admitted");
    Ok(JoinResponse {
        node_id: who.node_id,
        cluster_id: cluster.id.clone(),
        role: role_s,
        cert,
        ca: cluster.root_ca_cert.clone(),
        managers,
        heartbeat_period_ns: cluster.spec.dispatcher_heartbeat_ns,
        ca_generation: cluster.ca_generation(),
    })
}

/// On the leader: makes every learner that the store says is a manager a voter once its
/// replicated log is within a few entries of the leader's. Called on each pass of the leader's
/// watch, so a promotion refused because another membership change was still being committed
/// (two managers joining at once), or cut short by a change of leader, is made on a later pass.
pub(crate) async fn promote_caught_up_learners(m: &Manager) {
    let metrics = m.raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
    let last = metrics.last_log_index.unwrap_or(0);
    let caught_up: Vec<(u64, String)> = membership
        .nodes()
        .filter(|(id, _)| !voters.contains(id))
        .filter(|(id, _)| {
            let matched =
                metrics.replication.as_ref().and_then(|r| r.get(id).copied().flatten()).map_or(0, |l| l.index);
            last.saturating_sub(matched) <= 2
        })
        .map(|(id, n)| (*id, n.node_id.clone()))
        .collect();
    if caught_up.is_empty() {
        return;
    }
    let managers: std::collections::BTreeSet<u64> =
        m.sm.with(|s| {
            caught_up
                .iter()
                .filter(|(_, node)| s.nodes.get(node).is_some_and(|n| n.spec.role == StoredRole::Manager))
                .map(|(id, _)| *id)
                .collect()
        })
        .await;
    if managers.is_empty() {
        return;
    }
    let change = m.raft.change_membership(openraft::ChangeMembers::AddVoterIds(managers), false);
    match tokio::time::timeout(PROMOTE_WAIT, change).await {
        Ok(Ok(_)) => tracing::info!("caught-up managers made voters"),
        Ok(Err(e)) => tracing::debug!("making new managers voters (tried again on the next pass): {e}"),
        Err(_) => tracing::debug!("making new managers voters: not committed yet"),
    }
}
