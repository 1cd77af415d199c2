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
const CATCH_UP: Duration = Duration::from_secs(60);

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
        promote_when_caught_up(m, raft_id(&who.node_id));
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

/// Makes learner `id` a voter once its replicated log is within a few entries of the leader's
/// (or after [`CATCH_UP`]).
pub(crate) fn promote_when_caught_up(m: &Manager, id: u64) {
    let raft = m.raft.clone();
    m.spawn(async move {
        let deadline = tokio::time::Instant::now() + CATCH_UP;
        loop {
            let metrics = raft.metrics().borrow().clone();
            let last = metrics.last_log_index.unwrap_or(0);
            let matched =
                metrics.replication.as_ref().and_then(|r| r.get(&id).copied().flatten()).map_or(0, |l| l.index);
            if last.saturating_sub(matched) <= 2 || tokio::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let ids = std::collections::BTreeSet::from([id]);
        if let Err(e) = raft.change_membership(openraft::ChangeMembers::AddVoterIds(ids), false).await {
            tracing::warn!("making the new manager a voter: {e}");
        }
    });
}
