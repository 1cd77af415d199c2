//! Managers and nodes over real TCP on loopback: a cluster made, nodes admitted by token,
//! heartbeats, writes forwarded to the leader, and a new leader when the old one goes.

use std::sync::Arc;
use std::time::Duration;

use skiff_cluster::ca::{DEFAULT_NODE_VALIDITY, NodeKey, RootCa};
use skiff_cluster::identity::{NodeIdentity, Role, new_id};
use skiff_cluster::join::{Joined, join};
use skiff_cluster::rpc::{Heartbeat, HeartbeatResponse};
use skiff_cluster::tls::{self, Credentials};
use skiff_cluster::transport::{CallError, Dialer};
use skiff_cluster::types::{Availability, ClusterSpec, NodeDescription, NodeState};
use skiff_manager::{Manager, Settings, init_command};
use tokio::net::TcpListener;

fn description(host: &str) -> NodeDescription {
    NodeDescription { hostname: host.into(), os: "linux".into(), architecture: "x86_64".into(), ..Default::default() }
}

async fn listen() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap().to_string();
    (l, a)
}

async fn start(dir: &std::path::Path, node_id: &str, creds: Credentials, l: TcpListener, addr: &str) -> Arc<Manager> {
    start_with(dir, node_id, creds, l, addr, 10_000).await
}

async fn start_with(
    dir: &std::path::Path,
    node_id: &str,
    creds: Credentials,
    l: TcpListener,
    addr: &str,
    snapshot_interval: u64,
) -> Arc<Manager> {
    let dek = Arc::new(skiff_cluster::seal::Key::generate());
    Manager::start(settings(dir, node_id, creds, addr, snapshot_interval, dek), l).await.unwrap()
}

fn settings(
    dir: &std::path::Path,
    node_id: &str,
    creds: Credentials,
    addr: &str,
    snapshot_interval: u64,
    dek: Arc<skiff_cluster::seal::Key>,
) -> Settings {
    Settings {
        dir: dir.join(node_id),
        node_id: node_id.into(),
        advertise_addr: addr.into(),
        creds,
        snapshot_interval,
        log_entries_for_slow_followers: snapshot_interval / 2,
        dek,
    }
}

/// A new cluster's first manager; returns it, its address and the root.
async fn first(dir: &std::path::Path) -> (Arc<Manager>, String, RootCa) {
    first_with(dir, 10_000).await
}

async fn first_with(dir: &std::path::Path, snapshot_interval: u64) -> (Arc<Manager>, String, RootCa) {
    let ca = RootCa::generate().unwrap();
    let (node_id, cluster_id) = (new_id(), new_id());
    let key = NodeKey::generate().unwrap();
    let who = NodeIdentity { node_id: node_id.clone(), role: Role::Manager, cluster_id: cluster_id.clone() };
    let cert = ca.issue(&key.csr().unwrap(), &who, DEFAULT_NODE_VALIDITY).unwrap();
    let creds = Credentials { ca: ca.cert_der().clone(), cert: cert.cert, intermediates: Vec::new(), key: key.der() };
    let (l, addr) = listen().await;
    let m = start_with(dir, &node_id, creds, l, &addr, snapshot_interval).await;
    let mut spec = ClusterSpec::default();
    (spec.snapshot_interval, spec.log_entries_for_slow_followers) = (snapshot_interval, snapshot_interval / 2);
    let init = init_command(&node_id, &cluster_id, spec, &ca, description("m1"), &addr, None).unwrap();
    m.bootstrap(init).await.unwrap();
    (m, addr, ca)
}

async fn heartbeat(addr: &str, j: &Joined) -> Result<HeartbeatResponse, CallError> {
    let d = Dialer::new(tls::client(&j.creds).unwrap());
    d.call(addr, "/v1/heartbeat", &Heartbeat { rpc_version: 1, addr: "127.0.0.9".into() }, Duration::from_secs(5)).await
}

async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    for _ in 0..150 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_joins_by_token_heartbeats_and_is_refused_once_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (m, addr, ca) = first(dir.path()).await;
    let state = m.read().await.unwrap();
    let cluster = state.cluster.clone().unwrap();
    assert_eq!(state.nodes.len(), 1);

    // A wrong secret for the right root, and a token for another root, are refused.
    let wrong = skiff_cluster::token::JoinToken::generate(&ca).to_string();
    let e = join(&addr, &wrong, description("w1"), "").await.unwrap_err();
    assert!(e.to_string().contains("A valid join token is necessary"), "{e}");
    let other = skiff_cluster::token::JoinToken::generate(&RootCa::generate().unwrap()).to_string();
    assert!(join(&addr, &other, description("w1"), "").await.is_err(), "a token pinning another root");

    // Strangers (no certificate) get small bodies only, and bad ones are refused with words.
    let anon = Dialer::new(tls::joining_client(ca.digest()).unwrap());
    let big = serde_json::json!({ "token": "x".repeat(100 << 10) });
    let e = anon.call::<_, serde_json::Value>(&addr, "/v1/join", &big, Duration::from_secs(5)).await;
    assert!(matches!(e, Err(CallError::Remote { status: 413, .. })), "{e:?}");
    let e = anon.call::<_, serde_json::Value>(&addr, "/v1/join", &serde_json::json!([1]), Duration::from_secs(5)).await;
    assert!(matches!(&e, Err(CallError::Remote { status: 400, message }) if message.starts_with("bad body")), "{e:?}");
    let e =
        anon.call::<_, serde_json::Value>(&addr, "/v1/heartbeat", &serde_json::json!({}), Duration::from_secs(5)).await;
    assert!(matches!(e, Err(CallError::Remote { status: 401, .. })), "a certificate is required: {e:?}");

    let w = join(&addr, &cluster.worker_token, description("w1"), "").await.unwrap();
    assert_eq!(w.identity.role, Role::Worker);
    assert_eq!(w.identity.cluster_id, cluster.id);
    let hb = heartbeat(&addr, &w).await.unwrap();
    assert!(!hb.removed && hb.leader.is_none());
    let id = w.identity.node_id.clone();
    eventually("the worker to be ready", || {
        let m = m.clone();
        let id = id.clone();
        async move { m.read().await.unwrap().nodes.get(&id).is_some_and(|n| n.state == NodeState::Ready) }
    })
    .await;

    // A worker cannot call what is for managers.
    let d = Dialer::new(tls::client(&w.creds).unwrap());
    let e =
        d.call::<_, serde_json::Value>(&addr, "/v1/raft/vote", &serde_json::json!({}), Duration::from_secs(5)).await;
    assert!(matches!(e, Err(CallError::Remote { status: 403, .. })), "{e:?}");

    // Node updates check the version; removal wants the node down, or --force.
    let n = m.node(&id).await.unwrap();
    let mut spec = n.spec.clone();
    spec.availability = Availability::Drain;
    assert!(m.update_node(&id, n.version + 100, spec.clone()).await.is_err(), "a stale version");
    m.update_node(&id, n.version, spec).await.unwrap();
    assert_eq!(m.node("w1").await.unwrap().spec.availability, Availability::Drain, "by hostname");
    assert!(m.remove_node(&id, false).await.unwrap_err().message.contains("is not down"));
    m.remove_node(&id, true).await.unwrap();
    let hb = heartbeat(&addr, &w).await;
    assert!(matches!(hb, Err(CallError::Remote { status: 403, .. })), "a removed node is refused: {hb:?}");
    m.shutdown().await;

    // The raft database holds the tokens and the root's key, sealed: none of it readable.
    let db = std::fs::read(dir.path().join(m.node_id()).join("raft.redb")).unwrap();
    let find = |needle: &str| db.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(find("raft_log"), "the database was read");
    for secret in [cluster.worker_token.as_str(), cluster.manager_token.as_str(), "PRIVATE KEY", "\"hostname\""] {
        assert!(!find(secret), "{secret} is in the clear in the raft database");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_managers_replicate_forward_writes_and_survive_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let (m1, addr1, _ca) = first(dir.path()).await;
    let token = m1.read().await.unwrap().cluster.unwrap().manager_token;
    let mut managers = vec![m1.clone()];
    for host in ["m2", "m3"] {
        let (l, addr) = listen().await;
        let j = join(&addr1, &token, description(host), &addr).await.unwrap();
        assert_eq!(j.identity.role, Role::Manager);
        managers.push(start(dir.path(), &j.identity.node_id, j.creds, l, &addr).await);
    }
    eventually("three voters", || {
        let m1 = m1.clone();
        async move {
            let m = m1.raft.metrics().borrow().clone();
            m.membership_config.membership().voter_ids().count() == 3
        }
    })
    .await;
    // A write made on a follower goes through the leader and reaches every manager.
    let follower = managers[1].clone();
    let id = follower.node_id().to_string();
    let n = follower.node(&id).await.unwrap();
    let mut spec = n.spec.clone();
    spec.labels.insert("zone".into(), "a".into());
    follower.update_node(&id, n.version, spec).await.unwrap();
    for m in &managers {
        let m = m.clone();
        let id = id.clone();
        eventually("the label everywhere", move || {
            let (m, id) = (m.clone(), id.clone());
            async move { m.sm_state().await.nodes.get(&id).is_some_and(|n| n.spec.labels.contains_key("zone")) }
        })
        .await;
    }
    // The leader goes; the other two elect one and keep taking writes.
    let leader = managers.iter().position(|m| m.is_leader()).unwrap();
    managers.remove(leader).shutdown().await;
    let rest = managers.clone();
    eventually("a new leader", || {
        let rest = rest.clone();
        async move { rest.iter().any(|m| m.is_leader()) }
    })
    .await;
    let m = &managers[0];
    let n = m.node(&id).await.unwrap();
    let mut spec = n.spec.clone();
    spec.labels.insert("zone".into(), "b".into());
    m.update_node(&id, n.version, spec).await.unwrap();
    for m in managers {
        m.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_joining_after_the_log_was_compacted_gets_the_sealed_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (m1, addr1, _ca) = first_with(dir.path(), 10).await;
    // Enough writes for snapshots, and for the log before the last one to be purged.
    for _ in 0..40 {
        m1.rotate_token(skiff_cluster::types::StoredRole::Worker).await.unwrap();
    }
    eventually("a snapshot and a purged log", || {
        let m1 = m1.clone();
        async move {
            let m = m1.raft.metrics().borrow().clone();
            m.snapshot.is_some_and(|s| s.index >= 30) && m.purged.is_some_and(|p| p.index >= 20)
        }
    })
    .await;
    let cluster = m1.read().await.unwrap().cluster.unwrap();
    let (l, addr) = listen().await;
    let j = join(&addr1, &cluster.manager_token, description("m2"), &addr).await.unwrap();
    let (id, creds) = (j.identity.node_id.clone(), j.creds.clone());
    let dek = Arc::new(skiff_cluster::seal::Key::generate());
    let m2 = Manager::start(settings(dir.path(), &id, j.creds, &addr, 10, dek.clone()), l).await.unwrap();
    eventually("the new manager to catch up from the snapshot", || {
        let (m2, token) = (m2.clone(), cluster.worker_token.clone());
        async move { m2.sm_state().await.cluster.is_some_and(|c| c.worker_token == token) }
    })
    .await;
    assert!(m2.raft.metrics().borrow().snapshot.is_some(), "it was installed from a snapshot");
    // Restarted from its own sealed snapshot and log, it has the same state; none of it clear.
    m2.shutdown().await;
    drop(m2);
    let db = std::fs::read(dir.path().join(&id).join("raft.redb")).unwrap();
    let token = cluster.worker_token.as_bytes();
    assert!(!db.windows(token.len()).any(|w| w == token), "the token is in the clear");
    // The database is released once the last of the manager's tasks has ended.
    let mut again = None;
    for _ in 0..50 {
        let (l, addr) = listen().await;
        let settings = settings(dir.path(), &id, creds.clone(), &addr, 10, dek.clone());
        match Manager::start(settings, l).await {
            Ok(m) => {
                again = Some(m);
                break;
            }
            Err(e) if e.message.contains("already open") => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("{e}"),
        }
    }
    let again = again.expect("the stopped manager released its database");
    eventually("the restarted manager's state", || {
        let (again, token) = (again.clone(), cluster.worker_token.clone());
        async move { again.sm_state().await.cluster.is_some_and(|c| c.worker_token == token) }
    })
    .await;
    again.shutdown().await;
    m1.shutdown().await;
}
