//! What a manager answers on the cluster port: joins (no certificate yet; the token decides),
//! heartbeats (any member), forwarded writes and Raft messages (managers only). A removed node's
//! certificate, or one from another cluster, is refused.

use std::sync::{Arc, Weak};

use http::StatusCode;
use skiff_cluster::identity::{NodeIdentity, Role};
use skiff_cluster::rpc::{Forward, ForwardResponse, Heartbeat, JoinRequest, RenewRequest, RenewResponse};
use skiff_cluster::transport::{self, Call, Reply};

use crate::error::ManagerError;
use crate::manager::Manager;

/// The cluster server's handler; it holds the manager weakly so that shutting down drops it.
pub(crate) struct Handler(pub(crate) Weak<Manager>);

fn reply<T: serde::Serialize>(r: Result<T, ManagerError>) -> Reply {
    match r {
        Ok(v) => Reply::json(&v),
        Err(e) => Reply::error(e.status(), e.message),
    }
}

impl transport::Handler for Handler {
    async fn handle(&self, call: Call) -> Reply {
        let Some(m) = self.0.upgrade() else {
            return Reply::error(StatusCode::SERVICE_UNAVAILABLE, "this manager is shutting down");
        };
        if call.path == "/v1/join" {
            return join(&m, &call).await;
        }
        let Some(peer) = call.peer.clone() else {
            return Reply::error(StatusCode::UNAUTHORIZED, "a node certificate is required");
        };
        if let Err(r) = admitted(&m, &peer).await {
            return r;
        }
        m.lost.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&peer.node_id);
        match call.path.as_str() {
            "/v1/heartbeat" => match call.json::<Heartbeat>() {
                Ok(hb) => reply(crate::dispatcher::heartbeat(&m, &peer, hb, call.remote_addr).await),
                Err(r) => r,
            },
            "/v1/assignments" => match call.json::<skiff_cluster::rpc::AssignmentsRequest>() {
                Ok(req) => reply(crate::services::assignments(&m, &peer, req).await),
                Err(r) => r,
            },
            "/v1/logs" => match call.json::<skiff_cluster::rpc::LogBatch>() {
                Ok(batch) => reply(crate::logs::publish(&m, batch).await),
                Err(r) => r,
            },
            "/v1/renew" => match call.json::<RenewRequest>() {
                Ok(req) => renew(&m, &peer, req).await,
                Err(r) => r,
            },
            p if peer.role != Role::Manager => {
                Reply::error(StatusCode::FORBIDDEN, format!("{p} is for managers; {} is a worker", peer.node_id))
            }
            "/v1/forward" => match call.json::<Forward>() {
                Ok(f) => forward(&m, f).await,
                Err(r) => r,
            },
            "/v1/renew-relay" => match call.json::<RelayedRenew>() {
                Ok(r) => {
                    let who = NodeIdentity { node_id: r.node_id, role: peer.role, cluster_id: peer.cluster_id.clone() };
                    reply(crate::renew::renew(&m, &who, r.req).await)
                }
                Err(r) => r,
            },
            p if p.starts_with("/v1/raft/") && !m.raft_peer(&peer.node_id) => Reply::error(
                StatusCode::FORBIDDEN,
                format!("{} is not in this manager's Raft membership", peer.node_id),
            ),
            "/v1/raft/append" => match call.json() {
                Ok(req) => Reply::json(&m.raft.append_entries(req).await),
                Err(r) => r,
            },
            "/v1/raft/vote" => match call.json() {
                Ok(req) => Reply::json(&m.raft.vote(req).await),
                Err(r) => r,
            },
            "/v1/raft/read-index" => reply(m.read_index().await),
            "/v1/raft/snapshot" => match call.json() {
                Ok(req) => Reply::json(&m.raft.install_snapshot(req).await),
                Err(r) => r,
            },
            p => Reply::error(StatusCode::NOT_FOUND, format!("no such call {p}")),
        }
    }

    async fn disconnected(&self, peer: NodeIdentity) {
        if let Some(m) = self.0.upgrade() {
            crate::dispatcher::disconnected(&m, peer.node_id);
        }
    }
}

/// Refuses a removed node and a certificate of another cluster.
async fn admitted(m: &Manager, peer: &NodeIdentity) -> Result<(), Reply> {
    let (removed, cluster) =
        m.sm.with(|s| (s.removed.contains(&peer.node_id), s.cluster.as_ref().map(|c| c.id.clone()))).await;
    if removed {
        return Err(Reply::error(StatusCode::FORBIDDEN, format!("node {} was removed from the swarm", peer.node_id)));
    }
    if cluster.is_some_and(|c| c != peer.cluster_id) {
        return Err(Reply::error(StatusCode::FORBIDDEN, "a certificate of another cluster"));
    }
    Ok(())
}

async fn join(m: &Arc<Manager>, call: &Call) -> Reply {
    let req = match call.json::<JoinRequest>() {
        Ok(r) => r,
        Err(r) => return r,
    };
    if m.is_leader() {
        return reply(crate::join::admit(m, req, call.remote_addr).await);
    }
    // Admission writes the membership: the leader does it; this manager relays.
    relay::<_, skiff_cluster::rpc::JoinResponse>(m, "/v1/join", &req).await
}

/// Hands `req` to the leader at `path` (a change only the leader makes) and passes its answer,
/// or its error, back.
async fn relay<Req: serde::Serialize, Resp: serde::Serialize + serde::de::DeserializeOwned>(
    m: &Manager,
    path: &str,
    req: &Req,
) -> Reply {
    let Some(leader) = m.leader_addr() else {
        return Reply::error(StatusCode::SERVICE_UNAVAILABLE, crate::manager::no_leader().message);
    };
    match m.dialer.call::<_, Resp>(&leader, path, req, std::time::Duration::from_secs(30)).await {
        Ok(v) => Reply::json(&v),
        Err(skiff_cluster::transport::CallError::Remote { status, message }) => {
            Reply::error(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY), message)
        }
        Err(e) => Reply::error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// A renewal changes the membership: the leader does it; another manager relays it with the
/// caller's identity checked here (the leader trusts its managers' relays).
async fn renew(m: &Arc<Manager>, peer: &NodeIdentity, req: RenewRequest) -> Reply {
    if m.is_leader() {
        return reply(crate::renew::renew(m, peer, req).await);
    }
    relay::<_, RenewResponse>(m, "/v1/renew-relay", &RelayedRenew { node_id: peer.node_id.clone(), req }).await
}

/// A renewal relayed by a manager for the node it authenticated.
#[derive(serde::Serialize, serde::Deserialize)]
struct RelayedRenew {
    node_id: String,
    req: RenewRequest,
}

async fn forward(m: &Manager, f: Forward) -> Reply {
    if !m.is_leader() {
        return Reply::error(StatusCode::SERVICE_UNAVAILABLE, crate::manager::no_leader().message);
    }
    match m.write(f.cmd).await {
        Ok(()) => Reply::json(&ForwardResponse { applied: Default::default() }),
        Err(e) if matches!(e.kind, crate::error::Kind::Conflict | crate::error::Kind::NotFound) => {
            Reply::json(&ForwardResponse { applied: skiff_cluster::types::Applied { error: Some(e.message) } })
        }
        Err(e) => Reply::error(e.status(), e.message),
    }
}
