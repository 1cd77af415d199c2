//! This node's part in a swarm (swarmkit's `node` package): none, a worker, or a manager.
//!
//! `init` makes a cluster — root CA, IDs, this node's certificate, the first manager with its
//! Raft store — and `join` enters one with a token; either way the node keeps what it is in
//! `<data-root>/swarm` (`state.json`, and `certs/` with the root, its certificate and key, in a
//! 0700 directory; see `files`) and runs an agent session that heartbeats the leader, plus, on
//! managers, the [`Manager`]. A daemon restarted finds its state and carries on — or, under
//! autolock, stays locked until `docker swarm unlock` gives the key (`lock`); `leave` stops
//! everything and removes it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use skiff_agent::Session;
use skiff_cluster::ca::{NodeKey, RootCa};
use skiff_cluster::identity::{NodeIdentity, Role, new_id};
use skiff_cluster::rpc::ManagerPeer;
use skiff_cluster::seal::Key;
use skiff_cluster::tls::Credentials;
use skiff_cluster::types::{ClusterSpec, NodeDescription, StoredRole};
pub use skiff_manager::{Kind, LogRequest, LogStream, Manager, ManagerError};
use tokio::sync::Mutex;

pub mod addr;
mod files;
mod info;
mod lock;
mod renew;

pub use info::{Info, LocalState};

pub type Result<T, E = ManagerError> = std::result::Result<T, E>;

/// What is kept about this node's membership.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NodeFile {
    pub schema: u32,
    pub node_id: String,
    pub cluster_id: String,
    pub role: StoredRole,
    pub listen_addr: String,
    pub advertise_addr: String,
    pub managers: Vec<ManagerPeer>,
    /// The cluster's CA generation this node's certificate and root are of: when heartbeats
    /// name another (the root is rotating), the node renews.
    #[serde(default)]
    pub ca_generation: String,
}

/// `docker swarm init`'s options.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    pub listen_addr: String,
    pub advertise_addr: String,
    pub force_new_cluster: bool,
    pub spec: ClusterSpec,
}

/// `docker swarm join`'s options.
#[derive(Debug, Clone, Default)]
pub struct JoinOptions {
    pub listen_addr: String,
    pub advertise_addr: String,
    pub remote_addrs: Vec<String>,
    pub token: String,
}

pub(crate) struct Active {
    pub file: NodeFile,
    /// The PEMs and keys as kept on disk (sealed or clear).
    pub keys: files::Keys,
    pub creds: Credentials,
    pub manager: Option<Arc<Manager>>,
    pub session: Session,
    /// When the certificate is due for renewal (Unix seconds): a jittered point in the second
    /// half of its life.
    pub renew_at: i64,
}

/// A jittered point between 50 % and 80 % of a certificate's life (swarmkit renews in the
/// second half, jittered so that a cluster's nodes do not all renew at once).
pub(crate) fn renew_at(creds: &Credentials) -> i64 {
    match skiff_cluster::ca::validity(&creds.cert) {
        Ok((from, to)) => from + ((to - from) as f64 * (0.5 + 0.3 * rand::random::<f64>())) as i64,
        Err(_) => 0,
    }
}

/// What describes this node to the cluster (hostname, platform, engine), asked when needed.
pub type Describe = Arc<dyn Fn() -> NodeDescription + Send + Sync>;

/// This node's swarm membership.
pub struct Swarm {
    pub(crate) dir: PathBuf,
    describe: Describe,
    /// Runs the tasks assigned to this node (none: the node runs no tasks — tests).
    pub(crate) executor: Option<Arc<dyn skiff_agent::Executor>>,
    pub(crate) state: Mutex<Option<Active>>,
    /// A manager that restarted under autolock and waits for its unlock key (taken after
    /// `state` when both are held).
    pub(crate) locked: Mutex<Option<(NodeFile, files::LockedKeys)>>,
    cancel: tokio_util::sync::CancellationToken,
}

impl std::fmt::Debug for Swarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Swarm").field("dir", &self.dir).finish_non_exhaustive()
    }
}

pub(crate) fn not_in_swarm() -> ManagerError {
    ManagerError::new(Kind::Unavailable, "This node is not part of a swarm")
}

fn already_in_swarm() -> ManagerError {
    ManagerError::new(
        Kind::Unavailable,
        "This node is already part of a swarm. Use \"docker swarm leave\" to leave this swarm and join another one.",
    )
}

pub(crate) fn not_a_manager() -> ManagerError {
    ManagerError::new(
        Kind::Unavailable,
        "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.",
    )
}

impl Swarm {
    /// Opens `dir` (`<data-root>/swarm`); a node that was in a swarm rejoins it.
    pub async fn open(dir: &Path, describe: Describe, executor: Option<Arc<dyn skiff_agent::Executor>>) -> Arc<Swarm> {
        let swarm = Arc::new(Swarm {
            dir: dir.to_path_buf(),
            describe,
            executor,
            state: Mutex::new(None),
            locked: Mutex::new(None),
            cancel: tokio_util::sync::CancellationToken::new(),
        });
        match files::load(dir) {
            Ok(None) => {}
            Ok(Some(files::Loaded::Open(file, keys))) => match swarm.resume(file, keys).await {
                Ok(active) => *swarm.state.lock().await = Some(active),
                Err(e) => tracing::error!("rejoining the swarm: {e}"),
            },
            Ok(Some(files::Loaded::Locked(file, keys))) => {
                tracing::warn!("the swarm is locked: this manager waits for `docker swarm unlock`");
                *swarm.locked.lock().await = Some((file, keys));
            }
            Err(e) => tracing::error!("reading the swarm state in {}: {e}", dir.display()),
        }
        tokio::spawn(renew::watch(Arc::downgrade(&swarm), swarm.cancel.clone()));
        swarm
    }

    pub(crate) async fn resume(&self, file: NodeFile, keys: files::Keys) -> Result<Active> {
        let creds = keys.credentials().map_err(ManagerError::internal)?;
        let manager = match file.role {
            StoredRole::Manager => Some(self.start_manager(&file, &keys, None).await?),
            StoredRole::Worker => None,
        };
        let session = Session::start(&creds, file.managers.clone(), file.advertise_addr.clone(), self.executor.clone())
            .map_err(ManagerError::internal)?;
        let renew_at = renew_at(&creds);
        Ok(Active { file, keys, creds, manager, session, renew_at })
    }

    pub(crate) async fn start_manager(
        &self,
        file: &NodeFile,
        keys: &files::Keys,
        listener: Option<tokio::net::TcpListener>,
    ) -> Result<Arc<Manager>> {
        let creds = keys.credentials().map_err(ManagerError::internal)?;
        let dek = keys.dek.clone().ok_or_else(|| ManagerError::internal("a manager without a data key"))?;
        let listen: SocketAddr = addr::listen(&file.listen_addr)?;
        let listener = match listener {
            Some(l) => l,
            None => bind(listen).await?,
        };
        let settings = skiff_manager::Settings {
            dir: self.dir.join("raft"),
            node_id: file.node_id.clone(),
            advertise_addr: file.advertise_addr.clone(),
            creds,
            snapshot_interval: ClusterSpec::default().snapshot_interval,
            log_entries_for_slow_followers: ClusterSpec::default().log_entries_for_slow_followers,
            dek,
        };
        Manager::start(settings, listener).await
    }

    /// `docker swarm init`: a new cluster with this node as its first manager; its node ID.
    pub async fn init(&self, o: InitOptions) -> Result<String> {
        let mut state = self.state.lock().await;
        if self.locked.lock().await.is_some() {
            return Err(if o.force_new_cluster { lock::swarm_locked() } else { already_in_swarm() });
        }
        if let Some(active) = state.as_mut() {
            if o.force_new_cluster {
                return self.force_new_cluster(active).await;
            }
            return Err(already_in_swarm());
        }
        let listen = addr::listen(&o.listen_addr)?;
        let advertise = addr::advertise(&o.advertise_addr, listen)?;
        let listener = bind(listen).await?;
        let ca = RootCa::generate().map_err(ManagerError::internal)?;
        let (node_id, cluster_id) = (new_id(), new_id());
        let key = NodeKey::generate().map_err(ManagerError::internal)?;
        let who = NodeIdentity { node_id: node_id.clone(), role: Role::Manager, cluster_id: cluster_id.clone() };
        let csr = key.csr().map_err(ManagerError::internal)?;
        let cert = ca.issue(&csr, &who, o.spec.cert_validity()).map_err(ManagerError::internal)?;
        let creds = Credentials {
            ca: ca.cert_der().clone(),
            cert: cert.cert.clone(),
            intermediates: Vec::new(),
            key: key.der(),
        };
        // Under autolock the files are sealed from the first write.
        let kek = o.spec.autolock.then(Key::generate);
        let keys = files::Keys {
            ca_pem: ca.cert_pem().to_string(),
            cert_pem: cert.pem.clone(),
            key_pem: key.pem(),
            dek: Some(Arc::new(Key::generate())),
            kek: kek.clone(),
        };
        let file = NodeFile {
            schema: 1,
            node_id: node_id.clone(),
            cluster_id: cluster_id.clone(),
            role: StoredRole::Manager,
            listen_addr: listen.to_string(),
            advertise_addr: advertise.clone(),
            managers: vec![ManagerPeer { node_id: node_id.clone(), addr: advertise.clone() }],
            ca_generation: String::new(),
        };
        let desc = (self.describe)();
        let init = skiff_manager::init_command(&node_id, &cluster_id, o.spec, &ca, desc, &advertise, kek.as_ref())?;
        let mut file = file;
        if let skiff_cluster::types::Command::Init { cluster, .. } = &init {
            file.ca_generation = cluster.ca_generation();
        }
        // The state is on disk before the cluster exists: a daemon killed now restarts into it.
        files::save(&self.dir, &file, &keys).map_err(ManagerError::internal)?;
        let started = async {
            let manager = self.start_manager(&file, &keys, Some(listener)).await?;
            if let Err(e) = manager.bootstrap(init).await {
                manager.shutdown().await;
                return Err(e);
            }
            // The routing mesh's network, as dockerd makes it at init.
            if let Err(e) = manager.create_network(skiff_manager::ingress_spec()).await {
                manager.shutdown().await;
                return Err(e);
            }
            Ok(manager)
        };
        let manager = match started.await {
            Ok(m) => m,
            Err(e) => {
                let _ = skiff_common::fsutil::remove_all(&self.dir);
                return Err(e);
            }
        };
        let session = Session::start(&creds, file.managers.clone(), advertise, self.executor.clone())
            .map_err(ManagerError::internal)?;
        let renew_at = renew_at(&creds);
        *state = Some(Active { file, keys, creds, manager: Some(manager), session, renew_at });
        Ok(node_id)
    }

    /// `swarm init --force-new-cluster` on a manager that lost its quorum: a new single-member
    /// Raft store holding the state this manager had; the other managers stay listed, down,
    /// until they are demoted or removed.
    async fn force_new_cluster(&self, active: &mut Active) -> Result<String> {
        let m = active.manager.take().ok_or_else(not_a_manager)?;
        let me = active.file.node_id.clone();
        let mut kept = m.sm_state().await;
        for n in kept.nodes.values_mut().filter(|n| n.id != me && n.manager_addr.is_some()) {
            n.state = skiff_cluster::types::NodeState::Down;
            n.message = "not in the Raft membership since --force-new-cluster".into();
        }
        m.shutdown().await;
        drop(m);
        skiff_common::fsutil::remove_all(&self.dir.join("raft")).map_err(ManagerError::internal)?;
        let manager = self.start_manager(&active.file, &active.keys, None).await?;
        manager.bootstrap(skiff_cluster::types::Command::Restore { state: Box::new(kept) }).await?;
        active.manager = Some(manager);
        active.file.managers = vec![ManagerPeer { node_id: me.clone(), addr: active.file.advertise_addr.clone() }];
        files::save(&self.dir, &active.file, &active.keys).map_err(ManagerError::internal)?;
        tracing::warn!("a new single-manager swarm was forced from this node's state");
        Ok(me)
    }

    /// `docker swarm join`.
    pub async fn join(&self, o: JoinOptions) -> Result<()> {
        let mut state = self.state.lock().await;
        if state.is_some() || self.locked.lock().await.is_some() {
            return Err(already_in_swarm());
        }
        let remote =
            o.remote_addrs.first().ok_or_else(|| ManagerError::new(Kind::Invalid, "no remote manager given"))?;
        let (host, port) = addr::split(remote, skiff_cluster::rpc::DEFAULT_PORT)?;
        let remote = format!("{host}:{port}");
        let listen = addr::listen(&o.listen_addr)?;
        let advertise = addr::advertise(&o.advertise_addr, listen)?;
        // Bound before joining: a manager's listener must be up before the leader replicates
        // to it (the token does not say which role it grants; a worker drops it).
        let listener = bind(listen).await.ok();
        let joined =
            skiff_cluster::join::join(&remote, &o.token, (self.describe)(), &advertise).await.map_err(join_error)?;
        let role = joined.response.role;
        let mut managers = joined.response.managers.clone();
        if managers.is_empty() {
            managers.push(ManagerPeer { node_id: String::new(), addr: remote.clone() });
        }
        let file = NodeFile {
            schema: 1,
            node_id: joined.identity.node_id.clone(),
            cluster_id: joined.identity.cluster_id.clone(),
            role,
            listen_addr: listen.to_string(),
            advertise_addr: advertise.clone(),
            managers,
            ca_generation: joined.response.ca_generation.clone(),
        };
        let ca_pem = RootCa::from_pem(&joined.response.ca, None).map_err(ManagerError::internal)?;
        // A manager's files are sealed once it reads the cluster's unlock key from its store.
        let keys = files::Keys {
            ca_pem: ca_pem.cert_pem().to_string(),
            cert_pem: joined.cert_pem.clone(),
            key_pem: joined.key_pem.clone(),
            dek: (role == StoredRole::Manager).then(|| Arc::new(Key::generate())),
            kek: None,
        };
        files::save(&self.dir, &file, &keys).map_err(ManagerError::internal)?;
        let manager = match role {
            StoredRole::Manager => {
                let m = self.start_manager(&file, &keys, listener).await?;
                if let Err(e) = m.wait_voter(std::time::Duration::from_secs(30)).await {
                    tracing::warn!("{e}; it keeps catching up");
                }
                Some(m)
            }
            StoredRole::Worker => None,
        };
        let session = Session::start(&joined.creds, file.managers.clone(), advertise, self.executor.clone())
            .map_err(ManagerError::internal)?;
        let renew_at = renew_at(&joined.creds);
        *state = Some(Active { file, keys, creds: joined.creds, manager, session, renew_at });
        Ok(())
    }

    /// `docker swarm leave [--force]`.
    pub async fn leave(&self, force: bool) -> Result<()> {
        let mut state = self.state.lock().await;
        let mut locked = self.locked.lock().await;
        if locked.is_some() {
            if !force {
                return Err(ManagerError::new(
                    Kind::Unavailable,
                    "Swarm is encrypted and locked. Please unlock it first or use `--force` to ignore this message.",
                ));
            }
            *locked = None;
            return skiff_common::fsutil::remove_all(&self.dir).map_err(ManagerError::internal);
        }
        drop(locked);
        let Some(active) = state.as_ref() else { return Err(not_in_swarm()) };
        if let Some(m) = &active.manager
            && !force
        {
            let managers = m.managers().len();
            let message = if managers <= 1 {
                "You are attempting to leave the swarm on a node that is participating as a manager. Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message.".to_string()
            } else {
                format!(
                    "You are attempting to leave the swarm on a node that is participating as a manager. Removing this node leaves {} managers out of {managers}. Without a Raft quorum your swarm will be inaccessible. The only way to restore a swarm that has lost consensus is to reinitialize it with `--force-new-cluster`. Use `--force` to suppress this message.",
                    managers - 1
                )
            };
            return Err(ManagerError::new(Kind::Unavailable, message));
        }
        let active = state.take().expect("checked above");
        active.session.stop().await;
        if let Some(m) = active.manager {
            m.shutdown().await;
        }
        // A node that leaves runs no task of the swarm's any more.
        if let Some(exec) = &self.executor {
            for id in exec.list().await.unwrap_or_default() {
                if let Err(e) = exec.remove(&id).await {
                    tracing::warn!(task = %id, "removing a task's container on leaving: {e}");
                }
            }
            // And has none of its overlay networks.
            if let Err(e) = exec.networks(&[]).await {
                tracing::warn!("removing the swarm's overlay networks on leaving: {e}");
            }
        }
        skiff_common::fsutil::remove_all(&self.dir).map_err(ManagerError::internal)?;
        Ok(())
    }

    /// The manager running on this node, or dockerd's "not a manager" error.
    pub async fn manager(&self) -> Result<Arc<Manager>> {
        match self.state.lock().await.as_ref() {
            None if self.locked.lock().await.is_some() => Err(lock::swarm_locked()),
            None => Err(not_in_swarm()),
            Some(Active { manager: Some(m), .. }) => Ok(m.clone()),
            Some(_) => Err(not_a_manager()),
        }
    }

    /// Stops the agent and the manager (the daemon is stopping; the state stays).
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        if let Some(active) = self.state.lock().await.take() {
            active.session.stop().await;
            if let Some(m) = active.manager {
                m.shutdown().await;
            }
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| ManagerError::new(Kind::Invalid, format!("failed to listen on remote API address: {addr}: {e}")))
}

fn join_error(e: skiff_cluster::join::JoinError) -> ManagerError {
    use skiff_cluster::join::JoinError;
    use skiff_cluster::transport::CallError;
    match e {
        JoinError::Call(CallError::Remote { status, message }) => ManagerError::from_status(status, message),
        JoinError::Call(e @ CallError::Unreachable { .. }) => {
            ManagerError::new(Kind::Unavailable, format!("Timeout was reached before node joined. {e}"))
        }
        JoinError::Identity(e @ skiff_cluster::ClusterError::InvalidToken) => {
            ManagerError::new(Kind::Invalid, e.to_string())
        }
        e => ManagerError::new(Kind::Unavailable, e.to_string()),
    }
}
