//! A running manager: its Raft node, the server other nodes call, and the writes and reads the
//! control operations make.
//!
//! Writes go to the leader: on the leader through `client_write`, elsewhere forwarded over the
//! cluster transport (`/v1/forward`) to the leader openraft names. Reads are of the local state
//! machine after openraft confirms leadership with a quorum (linearizable) on the leader; a
//! follower answers from what it has applied.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{Config, Raft, SnapshotPolicy};
use skiff_cluster::ca::RootCa;
use skiff_cluster::rpc::{Forward, ForwardResponse, ManagerPeer};
use skiff_cluster::tls::{self, Credentials};
use skiff_cluster::transport::{self, CallError, Dialer};
use skiff_cluster::types::{ClusterState, Command};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::{Kind, ManagerError, Result};
use crate::raft::log::LogStore;
use crate::raft::net::Network;
use crate::raft::sm::StateMachine;
use crate::raft::{Member, Request, TypeConfig, raft_id};

/// How long a manager waits for an election under way before it says there is no leader.
const ELECTION_WAIT: Duration = Duration::from_secs(3);

/// How long a forwarded write may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(15);

/// What a manager needs to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the raft database lives (`<data-root>/swarm/raft`).
    pub dir: PathBuf,
    pub node_id: String,
    /// Where other managers reach this one.
    pub advertise_addr: String,
    /// This manager's certificate, key and the root.
    pub creds: Credentials,
    /// Log entries between snapshots, and entries kept behind a snapshot for slow followers —
    /// for a new store; a store that holds the cluster's spec takes them from it
    /// (`--snapshot-interval`, `LogEntriesForSlowFollowers`; a change applies at the next start).
    pub snapshot_interval: u64,
    pub log_entries_for_slow_followers: u64,
    /// The data key that seals the raft database's entries and snapshots.
    pub dek: Arc<skiff_cluster::seal::Key>,
}

/// A manager node.
pub struct Manager {
    pub raft: Raft<TypeConfig>,
    pub(crate) sm: Arc<StateMachine>,
    pub(crate) settings: Settings,
    pub(crate) dialer: Dialer,
    /// The server side's TLS, replaced when this manager's certificate or root changes.
    server_tls: Arc<transport::Swappable<rustls::ServerConfig>>,
    /// When each node was last heard from (this manager's view; the leader acts on it).
    pub(crate) seen: Mutex<HashMap<String, Instant>>,
    /// Members whose connection to this manager ended, and when, until they call again: kept on
    /// every manager, so that one which becomes leader knows at once which peers went (the old
    /// leader's connections end on its followers, not on itself).
    pub(crate) lost: std::sync::Mutex<HashMap<String, Instant>>,
    /// Log subscriptions whose clients are on this manager.
    pub(crate) log_sinks: crate::logs::Sinks,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager").field("node_id", &self.settings.node_id).finish_non_exhaustive()
    }
}

pub(crate) fn now_nanos() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

impl Manager {
    /// Opens the raft store and starts Raft and the cluster server (bound already: `listener`).
    pub async fn start(settings: Settings, listener: tokio::net::TcpListener) -> Result<Arc<Manager>> {
        std::fs::create_dir_all(&settings.dir).map_err(ManagerError::internal)?;
        let db = LogStore::database(&settings.dir.join("raft.redb")).map_err(ManagerError::internal)?;
        let log = LogStore::open(db.clone(), settings.dek.clone()).map_err(ManagerError::internal)?;
        let sm = StateMachine::open(db, settings.dek.clone()).map_err(ManagerError::internal)?;
        let (snapshot_interval, keep) = sm
            .with(|s| s.cluster.as_ref().map(|c| (c.spec.snapshot_interval, c.spec.log_entries_for_slow_followers)))
            .await
            .unwrap_or((settings.snapshot_interval, settings.log_entries_for_slow_followers));
        let config = Config {
            cluster_name: "skiff".into(),
            heartbeat_interval: 200,
            election_timeout_min: 600,
            election_timeout_max: 1000,
            install_snapshot_timeout: 10_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(snapshot_interval.max(1)),
            max_in_snapshot_log_to_keep: keep,
            ..Default::default()
        }
        .validate()
        .map_err(ManagerError::internal)?;
        let dialer = Dialer::new(tls::client(&settings.creds).map_err(ManagerError::internal)?);
        let network = Network { dialer: dialer.clone() };
        let raft = Raft::new(raft_id(&settings.node_id), Arc::new(config), network, log, sm.clone())
            .await
            .map_err(ManagerError::internal)?;
        let server_tls = transport::Swappable::new(tls::server(&settings.creds).map_err(ManagerError::internal)?);
        let m = Arc::new(Manager {
            raft,
            sm,
            settings,
            dialer,
            server_tls: server_tls.clone(),
            seen: Mutex::default(),
            lost: std::sync::Mutex::default(),
            log_sinks: std::sync::Mutex::default(),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        let handler = Arc::new(crate::server::Handler(Arc::downgrade(&m)));
        let cancel = m.cancel.clone();
        m.tasks.spawn(transport::serve(listener, server_tls, handler, async move { cancel.cancelled().await }));
        let this = Arc::downgrade(&m);
        let cancel = m.cancel.clone();
        m.tasks.spawn(async move { crate::dispatcher::watch_heartbeats(this, cancel).await });
        let this = Arc::downgrade(&m);
        let cancel = m.cancel.clone();
        m.tasks.spawn(async move { crate::services::reconcile_loop(this, cancel).await });
        Ok(m)
    }

    /// The first manager of a new cluster: a single-voter membership, then `init`.
    pub async fn bootstrap(&self, init: Command) -> Result<()> {
        let me = raft_id(&self.settings.node_id);
        let member = Member { node_id: self.settings.node_id.clone(), addr: self.settings.advertise_addr.clone() };
        self.raft.initialize(BTreeMap::from([(me, member)])).await.map_err(ManagerError::internal)?;
        self.raft
            .wait(Some(Duration::from_secs(10)))
            .current_leader(me, "the first manager leads")
            .await
            .map_err(ManagerError::unavailable)?;
        self.write(init).await
    }

    /// Runs `f` as a task the manager owns (dropped at shutdown).
    pub(crate) fn spawn<F>(&self, f: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(self.cancel.clone().run_until_cancelled_owned(f));
    }

    /// This node's cluster ID.
    pub fn node_id(&self) -> &str {
        &self.settings.node_id
    }

    /// This manager's certificate or root changed (a renewal, a root rotation): connections
    /// made from now on, both ways, use `creds`.
    pub fn set_credentials(&self, creds: &Credentials) -> Result<()> {
        self.server_tls.set(tls::server(creds).map_err(ManagerError::internal)?);
        self.dialer.set_tls(tls::client(creds).map_err(ManagerError::internal)?);
        Ok(())
    }

    /// The root CA (with its key) from the replicated state.
    pub async fn root_ca(&self) -> Result<RootCa> {
        let (cert, key) = self
            .sm
            .with(|s| s.cluster.as_ref().map(|c| (c.root_ca_cert.clone(), c.root_ca_key.clone())))
            .await
            .ok_or_else(|| ManagerError::unavailable("the cluster state has not reached this manager yet"))?;
        RootCa::from_pem(&cert, Some(&key)).map_err(ManagerError::internal)
    }

    /// Issues `who` a certificate for the key in `csr` from the CA that issues now (the new
    /// root while one is rotating in): the certificate followed by its intermediates (PEM),
    /// and what the node then holds.
    pub(crate) fn issue(
        cluster: &skiff_cluster::types::Cluster,
        csr: &[u8],
        who: &skiff_cluster::identity::NodeIdentity,
    ) -> Result<(String, skiff_cluster::types::NodeTls)> {
        let issuer = cluster.issuer();
        let ca = RootCa::from_pem(&issuer.cert, Some(&issuer.key)).map_err(ManagerError::internal)?;
        let cert = ca
            .issue(csr, who, cluster.spec.cert_validity())
            .map_err(|e| ManagerError::new(Kind::Invalid, e.to_string()))?;
        Ok((cert.pem + &issuer.intermediates, cluster.node_tls()))
    }

    /// Applies `cmd` through the leader; its refusal (stale version, unknown node) comes back
    /// as a conflict.
    pub async fn write(&self, cmd: Command) -> Result<()> {
        let applied = match self.raft.client_write(Request { now: now_nanos(), cmd: cmd.clone() }).await {
            Ok(r) => r.data,
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => match f.leader_node {
                Some(leader) => self.forward(&leader.addr, cmd).await?,
                // An election is under way: the write goes to its winner.
                None => match self.leader_known().await.then(|| self.leader_addr()).flatten() {
                    Some(addr) if !self.is_leader() => self.forward(&addr, cmd).await?,
                    Some(_) => return Box::pin(self.write(cmd)).await,
                    None => return Err(no_leader()),
                },
            },
            Err(e) => return Err(ManagerError::unavailable(e)),
        };
        match applied.error {
            None => Ok(()),
            Some(e) if e.contains("not found") => Err(ManagerError::new(Kind::NotFound, e)),
            Some(e) if e.contains("code = InvalidArgument") => Err(ManagerError::new(Kind::Invalid, e)),
            Some(e) => Err(ManagerError::new(Kind::Conflict, e)),
        }
    }

    async fn forward(&self, leader: &str, cmd: Command) -> Result<skiff_cluster::types::Applied> {
        let r: Result<ForwardResponse, CallError> =
            self.dialer.call(leader, "/v1/forward", &Forward { cmd }, FORWARD_TIMEOUT).await;
        match r {
            Ok(r) => Ok(r.applied),
            Err(CallError::Remote { status, message }) => Err(ManagerError::from_status(status, message)),
            Err(e) => Err(ManagerError::unavailable(format!("{e}; {}", no_leader()))),
        }
    }

    /// Whether a leader is known, waiting up to an election's length for one.
    async fn leader_known(&self) -> bool {
        self.raft.wait(Some(ELECTION_WAIT)).metrics(|m| m.current_leader.is_some(), "a leader is known").await.is_ok()
    }

    /// The address of the leader this manager knows, if any.
    pub(crate) fn leader_addr(&self) -> Option<String> {
        let m = self.raft.metrics().borrow().clone();
        let leader = m.current_leader?;
        m.membership_config.membership().get_node(&leader).map(|n| n.addr.clone())
    }

    /// The replicated state, linearizable on every manager: the leader confirms it still
    /// leads; a follower asks the leader for its commit point (a read index) and waits until it
    /// has applied that far, so a read after any write sees it, wherever each was sent.
    pub async fn read(&self) -> Result<ClusterState> {
        if self.is_leader() {
            self.raft.ensure_linearizable().await.map_err(|_| no_leader())?;
        } else {
            // A follower that knows no leader may hold a stale view, and the swarm cannot
            // change anyway: say so, as dockerd does.
            if !self.leader_known().await {
                return Err(no_leader());
            }
            let leader = self.leader_addr().ok_or_else(no_leader)?;
            let index: Option<u64> =
                self.dialer.call(&leader, "/v1/raft/read-index", &(), FORWARD_TIMEOUT).await.map_err(|e| {
                    // The leader this manager knows is gone (an election follows): as dockerd.
                    tracing::debug!("asking the leader for a read index: {e}");
                    no_leader()
                })?;
            self.raft
                .wait(Some(FORWARD_TIMEOUT))
                .applied_index_at_least(index, "applied up to the leader's read index")
                .await
                .map_err(|e| ManagerError::unavailable(format!("catching up with the leader: {e}")))?;
        }
        Ok(self.sm.state().await)
    }

    /// On the leader: the index a linearizable read must have applied (it confirms with a
    /// quorum that it still leads).
    pub(crate) async fn read_index(&self) -> Result<Option<u64>> {
        let id = self.raft.ensure_linearizable().await.map_err(|_| no_leader())?;
        Ok(id.map(|l| l.index))
    }

    /// The state as applied on this manager, without asking the leader.
    pub async fn sm_state(&self) -> ClusterState {
        self.sm.state().await
    }

    /// Whether this manager is the Raft leader now.
    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics().borrow().clone();
        m.current_leader == Some(m.id)
    }

    /// The managers that vote in Raft, with whether each leads (a manager still catching up
    /// as a learner is not one yet).
    pub fn managers(&self) -> Vec<(ManagerPeer, bool)> {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
        membership
            .nodes()
            .filter(|(id, _)| voters.contains(id))
            .map(|(id, n)| {
                (ManagerPeer { node_id: n.node_id.clone(), addr: n.addr.clone() }, m.current_leader == Some(*id))
            })
            .collect()
    }

    /// Waits until this manager votes in Raft (a joining manager is a learner until it has
    /// caught up), as `docker swarm join` returns only once the node is part of Raft.
    pub async fn wait_voter(&self, timeout: Duration) -> Result<()> {
        let me = raft_id(&self.settings.node_id);
        self.raft
            .wait(Some(timeout))
            .metrics(|m| m.membership_config.membership().voter_ids().any(|v| v == me), "this manager votes")
            .await
            .map(|_| ())
            .map_err(|_| ManagerError::unavailable("this manager did not become a member of Raft in time"))
    }

    /// Whether `node_id` may send this manager Raft messages: a member of its membership, or
    /// anyone while this manager has none yet (a manager that has just joined learns the
    /// membership from the leader's first messages). After `--force-new-cluster` the old
    /// managers are refused, so they cannot pull this one back into their election.
    pub(crate) fn raft_peer(&self, node_id: &str) -> bool {
        let m = self.raft.metrics().borrow().clone();
        let members = m.membership_config.membership();
        members.nodes().next().is_none() || members.get_node(&raft_id(node_id)).is_some()
    }

    /// Stops serving and stops Raft (the database stays, for a restart).
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tasks.close();
        let _ = self.raft.shutdown().await;
        let _ = tokio::time::timeout(Duration::from_secs(3), self.tasks.wait()).await;
    }
}

pub(crate) fn no_leader() -> ManagerError {
    ManagerError::unavailable(
        "The swarm does not have a leader. It's possible that too few managers are online. Make sure more than half of the managers are online.",
    )
}
