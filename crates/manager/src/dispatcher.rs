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
    let (period, node, removed) =
        m.sm.with(|s| {
            let period = s.cluster.as_ref().map_or(5_000_000_000, |c| c.spec.dispatcher_heartbeat_ns);
            (period, s.nodes.get(&peer.node_id).cloned(), s.removed.contains(&peer.node_id))
        })
        .await;
    let mut resp = HeartbeatResponse {
        period_ns: period,
        managers,
        role: node.as_ref().map_or(StoredRole::from(peer.role), |n| n.spec.role),
        removed,
        leader: None,
    };
    if removed {
        return Ok(resp);
    }
    if !m.is_leader() {
        resp.leader = m.managers().into_iter().find(|(_, leads)| *leads).map(|(p, _)| p.addr);
        return Ok(resp);
    }
    m.seen.lock().await.insert(peer.node_id.clone(), Instant::now());
    let addr = if hb.addr.is_empty() { remote.ip().to_string() } else { hb.addr };
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
    let mut leader_since: Option<Instant> = None;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let Some(m) = m.upgrade() else { return };
        if !m.is_leader() {
            leader_since = None;
            continue;
        }
        let since = *leader_since.get_or_insert_with(Instant::now);
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
        for id in ready {
            let last = seen.get(&id).copied().unwrap_or(since).max(since);
            if last.elapsed() > limit {
                let cmd = Command::NodeStatus {
                    id: id.clone(),
                    state: NodeState::Down,
                    addr: String::new(),
                    message: "heartbeat failure".into(),
                };
                if let Err(e) = m.write(cmd).await {
                    tracing::warn!(node = %id, "marking a silent node down: {e}");
                }
            }
        }
    }
}
