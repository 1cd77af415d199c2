//! Heartbeats (swarmkit's dispatcher, in its liveness part): every node calls the leader each
//! period; the leader marks a node `ready` when it hears from it and `down` when it has not for
//! three periods. A manager that is not the leader records nothing and answers where the leader
//! is.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use skiff_cluster::identity::NodeIdentity;
use skiff_cluster::rpc::{Heartbeat, HeartbeatResponse};
use skiff_cluster::types::{Command, NodeState, StoredRole};
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::manager::Manager;

/// Heartbeats missed before a node is down (swarmkit's grace multiplier).
const GRACE: u32 = 3;

/// One heartbeat from `peer`.
pub(crate) async fn heartbeat(
    m: &Manager,
    peer: &NodeIdentity,
    hb: Heartbeat,
    remote: SocketAddr,
) -> Result<HeartbeatResponse> {
    let managers = m.managers().into_iter().map(|(p, _)| p).collect::<Vec<_>>();
    let (period, node, removed, ca_generation) =
        m.sm.with(|s| {
            let period = s.cluster.as_ref().map_or(5_000_000_000, |c| c.spec.dispatcher_heartbeat_ns);
            let generation = s.cluster.as_ref().map(skiff_cluster::types::Cluster::ca_generation).unwrap_or_default();
            (period, s.nodes.get(&peer.node_id).cloned(), s.removed.contains(&peer.node_id), generation)
        })
        .await;
    let mut resp = HeartbeatResponse {
        period_ns: period,
        managers,
        role: node.as_ref().map_or(StoredRole::from(peer.role), |n| n.spec.role),
        removed,
        leader: None,
        ca_generation,
    };
    if removed {
        return Ok(resp);
    }
    if !m.is_leader() {
        resp.leader = m.leader_addr();
        return Ok(resp);
    }
    m.seen.lock().await.insert(peer.node_id.clone(), Instant::now());
    // The node's address as `node inspect` shows it: the IP, without the cluster port.
    let addr = match hb.addr.parse::<SocketAddr>() {
        Ok(sa) => sa.ip().to_string(),
        Err(_) if hb.addr.is_empty() => remote.ip().to_string(),
        Err(_) => hb.addr,
    };
    if let Some(n) = node
        && (n.state != NodeState::Ready || n.addr != addr)
    {
        m.write(Command::NodeStatus { id: n.id, state: NodeState::Ready, addr, message: String::new() }).await?;
    }
    Ok(resp)
}

/// How long a node whose connection to the leader ended has to call again before it is down:
/// a live node reconnects at once (its agent calls when a connection ends), a dead one cannot.
const RECONNECT_GRACE: Duration = Duration::from_millis(1500);

/// A member's connection to this manager ended: on the leader, the node is down unless it
/// heartbeats again within [`RECONNECT_GRACE`] (so a killed daemon or host shows down in
/// seconds, not heartbeat periods).
pub(crate) fn disconnected(m: &Arc<Manager>, node_id: String) {
    m.lost.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(node_id.clone(), Instant::now());
    if !m.is_leader() {
        return;
    }
    let weak = Arc::downgrade(m);
    m.spawn(async move {
        let lost = Instant::now();
        tokio::time::sleep(RECONNECT_GRACE).await;
        let Some(m) = weak.upgrade() else { return };
        if !m.is_leader() || m.seen.lock().await.get(&node_id).is_some_and(|t| *t > lost) {
            return;
        }
        let ready = m.sm.with(|s| s.nodes.get(&node_id).is_some_and(|n| n.state == NodeState::Ready)).await;
        if ready {
            let cmd = Command::NodeStatus {
                id: node_id.clone(),
                state: NodeState::Down,
                addr: String::new(),
                message: "heartbeat failure: the node's connection ended".into(),
            };
            if let Err(e) = m.write(cmd).await {
                tracing::warn!(node = %node_id, "marking a disconnected node down: {e}");
            }
        }
    });
}

/// On the leader, marks down the nodes not heard from for [`GRACE`] periods. Runs until
/// `cancel`.
pub(crate) async fn watch_heartbeats(m: Weak<Manager>, cancel: CancellationToken) {
    // When this manager became leader, and its log's last index then (the entry every live
    // follower has matched within a heartbeat or two).
    let mut leading: Option<(Instant, u64)> = None;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        let Some(m) = m.upgrade() else { return };
        if !m.is_leader() {
            leading = None;
            continue;
        }
        let (since, first_index) =
            *leading.get_or_insert_with(|| (Instant::now(), m.raft.metrics().borrow().last_log_index.unwrap_or(0)));
        let mut down = silent_nodes(&m, since).await;
        down.extend(lost_nodes(&m).await);
        if since.elapsed() > MANAGER_GRACE {
            down.extend(unreplicated_managers(&m, first_index).await);
        }
        down.sort();
        down.dedup();
        for (id, why) in down {
            let cmd = Command::NodeStatus { id: id.clone(), state: NodeState::Down, addr: String::new(), message: why };
            if let Err(e) = m.write(cmd).await {
                tracing::warn!(node = %id, "marking a silent node down: {e}");
            }
        }
        crate::join::promote_caught_up_learners(&m).await;
        if let Err(e) = crate::rotation::finish_when_converged(&m).await {
            tracing::warn!("finishing the root rotation: {e}");
        }
    }
}

/// Ready nodes whose connection to this manager ended more than [`RECONNECT_GRACE`] ago and
/// that have not called since — on a new leader, the old leader among them, seconds before its
/// replication or heartbeats could say so. Only losses within the last [`GRACE`] heartbeat
/// periods count (older ones are the heartbeat check's, which sees live nodes calling).
async fn lost_nodes(m: &Manager) -> Vec<(String, String)> {
    let period = m.sm.with(|s| s.cluster.as_ref().map_or(5_000_000_000, |c| c.spec.dispatcher_heartbeat_ns)).await;
    let window = Duration::from_nanos(period.max(1) as u64) * GRACE;
    let gone: Vec<String> = {
        let mut lost = m.lost.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        lost.retain(|_, t| t.elapsed() < window);
        lost.iter().filter(|(_, t)| t.elapsed() > RECONNECT_GRACE).map(|(id, _)| id.clone()).collect()
    };
    m.sm.with(|s| {
        gone.into_iter()
            .filter(|id| s.nodes.get(id).is_some_and(|n| n.state == NodeState::Ready))
            .map(|id| (id, "heartbeat failure: the node's connection ended".to_string()))
            .collect()
    })
    .await
}

/// How long a new leader gives the other managers to match its first entry before it counts
/// them unreachable (they match within a Raft heartbeat or two when they are up).
const MANAGER_GRACE: Duration = Duration::from_secs(2);

/// Ready nodes not heard from for [`GRACE`] heartbeat periods (counted from when this manager
/// began to lead, for nodes it has not heard from at all).
async fn silent_nodes(m: &Manager, since: Instant) -> Vec<(String, String)> {
    let (period, ready) =
        m.sm.with(|s| {
            let period = s.cluster.as_ref().map_or(5_000_000_000, |c| c.spec.dispatcher_heartbeat_ns);
            let ready: Vec<String> =
                s.nodes.values().filter(|n| n.state == NodeState::Ready).map(|n| n.id.clone()).collect();
            (period, ready)
        })
        .await;
    let limit = Duration::from_nanos(period.max(1) as u64) * GRACE;
    let seen = m.seen.lock().await.clone();
    ready
        .into_iter()
        .filter(|id| seen.get(id).copied().unwrap_or(since).max(since).elapsed() > limit)
        .map(|id| (id, "heartbeat failure".to_string()))
        .collect()
}

/// Ready managers (other than this one) that have not replicated the entry this leader began
/// with: a manager whose host went is seen from Raft long before its heartbeats are missed.
async fn unreplicated_managers(m: &Manager, first_index: u64) -> Vec<(String, String)> {
    let metrics = m.raft.metrics().borrow().clone();
    let Some(replication) = metrics.replication.clone() else { return Vec::new() };
    let membership = metrics.membership_config.membership();
    let behind: Vec<String> = membership
        .nodes()
        .filter(|(id, _)| **id != metrics.id)
        .filter(|(id, _)| replication.get(id).copied().flatten().map_or(0, |l| l.index) < first_index)
        .map(|(_, n)| n.node_id.clone())
        .collect();
    m.sm.with(|s| {
        behind
            .into_iter()
            .filter(|id| s.nodes.get(id).is_some_and(|n| n.state == NodeState::Ready))
            .map(|id| (id, "heartbeat failure: the manager is unreachable".to_string()))
            .collect()
    })
    .await
}
