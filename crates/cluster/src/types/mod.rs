//! The objects the managers replicate, and the commands that change them.
//!
//! skiff's own types, not the Engine API's: the adapter in skiffd converts them to the API's
//! `Swarm`/`Node` shapes. Every stored form carries [`SCHEMA`]; a manager refuses state from a
//! newer one instead of misreading it, so managers of two versions can run side by side while
//! an upgrade rolls through (new fields are added with serde defaults).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::identity::Role;

mod logs;
mod network;
mod secret;
mod service;
pub use logs::*;
pub use network::*;
pub(crate) use secret::b64;
pub use secret::*;
pub use service::*;

/// The stored format of [`ClusterState`].
pub const SCHEMA: u32 = 1;

/// How a node takes new work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Availability {
    #[default]
    Active,
    Pause,
    Drain,
}

/// Whether a node is heard from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    #[default]
    Unknown,
    Down,
    Ready,
    Disconnected,
}

/// Role as it travels and is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoredRole {
    Manager,
    Worker,
}

impl From<Role> for StoredRole {
    fn from(r: Role) -> StoredRole {
        match r {
            Role::Manager => StoredRole::Manager,
            Role::Worker => StoredRole::Worker,
        }
    }
}

impl From<StoredRole> for Role {
    fn from(r: StoredRole) -> Role {
        match r {
            StoredRole::Manager => Role::Manager,
            StoredRole::Worker => Role::Worker,
        }
    }
}

/// What an operator sets on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The role the node should have (`node promote/demote`).
    pub role: StoredRole,
    #[serde(default)]
    pub availability: Availability,
}

/// What a node reports about itself when it joins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NodeDescription {
    pub hostname: String,
    pub os: String,
    pub architecture: String,
    pub engine_version: String,
    #[serde(default)]
    pub nano_cpus: i64,
    #[serde(default)]
    pub memory_bytes: i64,
    #[serde(default)]
    pub engine_labels: BTreeMap<String, String>,
}

/// A member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    /// Raft index of the last change (the API's `Version.Index`).
    pub version: u64,
    /// Unix nanoseconds.
    pub created_at: i64,
    pub updated_at: i64,
    pub spec: NodeSpec,
    pub description: NodeDescription,
    pub state: NodeState,
    #[serde(default)]
    pub message: String,
    /// The address the node's heartbeats come from.
    #[serde(default)]
    pub addr: String,
    /// For managers: the address other managers reach it at (`host:port`).
    #[serde(default)]
    pub manager_addr: Option<String>,
    /// The role its current certificate states.
    pub cert_role: StoredRole,
    /// What the node's certificate chains to and what it trusts, as last issued to it (none
    /// from before root rotation was built: the cluster's root for both).
    #[serde(default)]
    pub tls: Option<NodeTls>,
}

/// The issuer of a node's certificate and the root it trusts (PEM), as the leader last gave
/// them: what root rotation watches converge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeTls {
    pub issuer: String,
    pub trust_root: String,
}

/// A move to a new root CA in progress (`docker swarm ca --rotate`): managers issue from the
/// new root, whose certificate signed by the current root travels with what it issues, until
/// every node holds a certificate from it; then it becomes the root.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootRotation {
    pub cert: String,
    pub key: String,
    /// The new root's subject and key signed by the current root.
    pub cross_signed: String,
}

impl std::fmt::Debug for RootRotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RootRotation(..)")
    }
}

/// The cluster-wide settings (`swarm init` flags, `swarm update`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSpec {
    #[serde(default = "default_name")]
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Tasks kept per slot (`--task-history-limit`, default 5).
    pub task_history_limit: i64,
    /// Log entries between snapshots (`--snapshot-interval`, default 10000).
    pub snapshot_interval: u64,
    #[serde(default)]
    pub keep_old_snapshots: u64,
    pub log_entries_for_slow_followers: u64,
    pub election_tick: u32,
    pub heartbeat_tick: u32,
    /// Nanoseconds between a worker's heartbeats (`--dispatcher-heartbeat`, default 5 s).
    pub dispatcher_heartbeat_ns: i64,
    /// Node certificate lifetime in nanoseconds (`--cert-expiry`, default 90 days).
    pub cert_expiry_ns: i64,
    #[serde(default)]
    pub autolock: bool,
    /// Bumped by `docker swarm ca --rotate` (the API's `CAConfig.ForceRotate`).
    #[serde(default)]
    pub ca_force_rotate: u64,
}

impl ClusterSpec {
    /// How long a node certificate is valid: `--cert-expiry`, at least an hour (dockerd's
    /// minimum).
    pub fn cert_validity(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.cert_expiry_ns.max(3_600_000_000_000) as u64)
    }
}

fn default_name() -> String {
    "default".into()
}

impl Default for ClusterSpec {
    fn default() -> ClusterSpec {
        ClusterSpec {
            name: default_name(),
            labels: BTreeMap::new(),
            task_history_limit: 5,
            snapshot_interval: 10_000,
            keep_old_snapshots: 0,
            log_entries_for_slow_followers: 500,
            election_tick: 10,
            heartbeat_tick: 1,
            dispatcher_heartbeat_ns: 5_000_000_000,
            cert_expiry_ns: 90 * 24 * 3600 * 1_000_000_000,
            autolock: false,
            ca_force_rotate: 0,
        }
    }
}

/// The cluster object: identity, settings, root CA, join tokens.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    pub id: String,
    pub version: u64,
    pub created_at: i64,
    pub updated_at: i64,
    pub spec: ClusterSpec,
    pub root_ca_cert: String,
    /// The root's key, replicated to managers only (the store lives on managers).
    pub root_ca_key: String,
    pub worker_token: String,
    pub manager_token: String,
    /// Under autolock: the key (`SWMKEY-1-…`) that seals every manager's data key and TLS key
    /// on disk; empty otherwise. Replicated so that each manager re-seals its own files when it
    /// is rotated; never written to disk outside the (sealed) raft store.
    #[serde(default)]
    pub unlock_key: String,
    /// A root rotation in progress.
    #[serde(default)]
    pub rotation: Option<RootRotation>,
    /// The root signed by the root before it (PEM), sent with what the root issues so that nodes
    /// still trusting the old root accept it; empty for a cluster's first root.
    #[serde(default)]
    pub root_cross_signed: String,
}

/// Who signs a node's certificate now, and what travels with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    pub cert: String,
    pub key: String,
    /// PEM to append to an issued certificate (the cross-signed root), or empty.
    pub intermediates: String,
}

impl Cluster {
    /// The CA that issues certificates now: the new root while a rotation is in progress.
    pub fn issuer(&self) -> Issuer {
        match &self.rotation {
            Some(r) => Issuer { cert: r.cert.clone(), key: r.key.clone(), intermediates: r.cross_signed.clone() },
            None => Issuer {
                cert: self.root_ca_cert.clone(),
                key: self.root_ca_key.clone(),
                intermediates: self.root_cross_signed.clone(),
            },
        }
    }

    /// What a node's certificate and trust should be: the issuer's and root's digest together.
    /// Heartbeats carry it; a node whose own differs renews.
    pub fn ca_generation(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.issuer().cert.as_bytes());
        h.update(b"\0");
        h.update(self.root_ca_cert.as_bytes());
        h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
    }

    /// What a node issued now holds (for [`Node::tls`]).
    pub fn node_tls(&self) -> NodeTls {
        NodeTls { issuer: self.issuer().cert, trust_root: self.root_ca_cert.clone() }
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("id", &self.id).field("version", &self.version).finish_non_exhaustive()
    }
}

impl Node {
    /// A node as it enters the cluster (versions and times are the log's, set when applied).
    pub fn new(
        id: &str,
        role: StoredRole,
        description: NodeDescription,
        addr: String,
        manager_addr: Option<String>,
    ) -> Node {
        Node {
            id: id.to_string(),
            version: 0,
            created_at: 0,
            updated_at: 0,
            spec: NodeSpec { name: String::new(), labels: BTreeMap::new(), role, availability: Availability::Active },
            description,
            state: NodeState::Unknown,
            message: String::new(),
            addr,
            manager_addr,
            cert_role: role,
            tls: None,
        }
    }
}

/// Everything the managers replicate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    pub schema: u32,
    pub cluster: Option<Cluster>,
    pub nodes: BTreeMap<String, Node>,
    /// Nodes removed from the cluster: their certificates are refused from then on.
    #[serde(default)]
    pub removed: BTreeSet<String>,
    #[serde(default)]
    pub services: BTreeMap<String, Service>,
    #[serde(default)]
    pub tasks: BTreeMap<String, Task>,
    #[serde(default)]
    pub secrets: BTreeMap<String, Blob>,
    #[serde(default)]
    pub configs: BTreeMap<String, Blob>,
    #[serde(default)]
    pub log_subscriptions: BTreeMap<String, LogSubscription>,
    #[serde(default)]
    pub networks: BTreeMap<String, Network>,
}

impl Default for ClusterState {
    fn default() -> ClusterState {
        ClusterState {
            schema: SCHEMA,
            cluster: None,
            nodes: BTreeMap::new(),
            removed: BTreeSet::new(),
            services: BTreeMap::new(),
            tasks: BTreeMap::new(),
            secrets: BTreeMap::new(),
            configs: BTreeMap::new(),
            log_subscriptions: BTreeMap::new(),
            networks: BTreeMap::new(),
        }
    }
}

/// A change to the replicated state. Applied in log order on every manager; each either
/// applies whole or is refused whole, with the same answer everywhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// `swarm init`: the cluster object and the first manager.
    Init { cluster: Box<Cluster>, node: Box<Node> },
    /// `swarm update` (the version the client read must still be current); a new unlock key
    /// when autolock is turned on or its key rotated. Autolock off clears the key.
    UpdateCluster {
        version: u64,
        spec: ClusterSpec,
        #[serde(default)]
        unlock_key: Option<String>,
        /// `swarm ca --rotate`: the root to move to (replacing one in progress).
        #[serde(default)]
        rotation: Option<RootRotation>,
    },
    /// Every node holds a certificate from the new root: it becomes the root, and the join
    /// tokens (which pin the root) are re-made for it with the same secrets.
    FinishRootRotation { worker_token: String, manager_token: String },
    /// `swarm join-token --rotate`.
    RotateToken { role: StoredRole, token: String },
    /// A node admitted by a join token.
    AddNode { node: Box<Node> },
    /// `node update` / `promote` / `demote`.
    UpdateNode { id: String, version: u64, spec: NodeSpec },
    /// A node's heartbeat state changed.
    NodeStatus { id: String, state: NodeState, addr: String, message: String },
    /// A node's certificate now states `role`; a manager's address is where managers reach it.
    CertRole {
        id: String,
        role: StoredRole,
        #[serde(default)]
        manager_addr: Option<String>,
        /// What the new certificate chains to and the root it came with.
        #[serde(default)]
        tls: Option<NodeTls>,
    },
    /// `node rm`.
    RemoveNode { id: String },
    /// `swarm init --force-new-cluster`: the state a lone manager kept, written into its new
    /// single-member store.
    Restore { state: Box<ClusterState> },
    /// `service create` (a name in use is refused).
    CreateService { service: Box<Service> },
    /// `service update` / `scale` / `rollback` (the version read must still be current); the
    /// spec replaced becomes the previous one.
    UpdateService { id: String, version: u64, spec: Box<ServiceSpec> },
    /// `service rollback`, or a failed update whose failure action is rollback: the previous
    /// spec comes back (the current one becomes the previous), its rollout under the rollback
    /// config. `version` is the client's (none for the orchestrator's own).
    RollbackService {
        id: String,
        #[serde(default)]
        version: Option<u64>,
        message: String,
    },
    /// `service rm`: the service goes; its tasks are wanted removed.
    RemoveService { id: String },
    /// The orchestrator's and scheduler's changes to tasks, in one entry.
    Tasks { changes: Vec<TaskChange> },
    /// A node's reports on its tasks (only forward moves of tasks on that node count).
    ReportTasks { node_id: String, reports: Vec<(String, TaskStatus)> },
    /// A rolling update's progress.
    ServiceUpdateStatus { id: String, status: Option<UpdateStatus> },
    /// `secret create` / `config create` (a name in use is refused).
    CreateBlob { kind: BlobKind, blob: Box<Blob> },
    /// `secret update` / `config update`: only the labels change.
    UpdateBlob { kind: BlobKind, id: String, version: u64, labels: BTreeMap<String, String> },
    /// `secret rm` / `config rm` (refused while a service uses it).
    RemoveBlob { kind: BlobKind, id: String },
    /// `service logs` began (its nodes send their lines to the subscription's manager).
    AddLogSubscription { sub: Box<LogSubscription> },
    /// It ended.
    RemoveLogSubscription { id: String },
    /// `docker network create -d overlay`: its subnet and VXLAN ID are allocated as applied.
    CreateNetwork { network: Box<Network> },
    /// Refused while a service or a running task uses it.
    RemoveNetwork { id: String },
}

/// What applying a [`Command`] answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Applied {
    /// The refusal, if any (the same on every manager).
    pub error: Option<String>,
}

impl ClusterState {
    /// Applies `cmd` at log index `index` with `now` (Unix nanoseconds, chosen by the leader and
    /// carried in the entry, so every manager writes the same times).
    pub fn apply(&mut self, index: u64, now: i64, cmd: &Command) -> Applied {
        match self.try_apply(index, now, cmd) {
            Ok(()) => Applied { error: None },
            Err(e) => Applied { error: Some(e) },
        }
    }

    fn try_apply(&mut self, index: u64, now: i64, cmd: &Command) -> Result<(), String> {
        match cmd {
            Command::Init { cluster, node } => {
                if self.cluster.is_some() {
                    return Err("the cluster already exists".into());
                }
                let mut c = (**cluster).clone();
                (c.version, c.created_at, c.updated_at) = (index, now, now);
                let mut n = (**node).clone();
                (n.version, n.created_at, n.updated_at) = (index, now, now);
                self.cluster = Some(c);
                self.nodes.insert(n.id.clone(), n);
            }
            Command::UpdateCluster { version, spec, unlock_key, rotation } => {
                let c = self.cluster.as_mut().ok_or("no cluster")?;
                if c.version != *version {
                    return Err(format!(
                        "update out of sequence: the swarm was changed since version {version} (now {})",
                        c.version
                    ));
                }
                if spec.autolock && c.unlock_key.is_empty() && unlock_key.is_none() {
                    return Err("autolock needs an unlock key".into());
                }
                c.spec = spec.clone();
                if !spec.autolock {
                    c.unlock_key.clear();
                } else if let Some(k) = unlock_key {
                    c.unlock_key = k.clone();
                }
                if let Some(r) = rotation {
                    c.rotation = Some(r.clone());
                }
                (c.version, c.updated_at) = (index, now);
            }
            Command::FinishRootRotation { worker_token, manager_token } => {
                let c = self.cluster.as_mut().ok_or("no cluster")?;
                let r = c.rotation.take().ok_or("no root rotation in progress")?;
                (c.root_ca_cert, c.root_ca_key, c.root_cross_signed) = (r.cert, r.key, r.cross_signed);
                (c.worker_token, c.manager_token) = (worker_token.clone(), manager_token.clone());
                (c.version, c.updated_at) = (index, now);
            }
            Command::RotateToken { role, token } => {
                let c = self.cluster.as_mut().ok_or("no cluster")?;
                match role {
                    StoredRole::Worker => c.worker_token = token.clone(),
                    StoredRole::Manager => c.manager_token = token.clone(),
                }
                (c.version, c.updated_at) = (index, now);
            }
            Command::AddNode { .. }
            | Command::UpdateNode { .. }
            | Command::NodeStatus { .. }
            | Command::CertRole { .. }
            | Command::RemoveNode { .. } => return self.apply_node(index, now, cmd),
            Command::CreateNetwork { .. } | Command::RemoveNetwork { .. } => {
                return self.apply_network(index, now, cmd);
            }
            Command::CreateService { .. }
            | Command::UpdateService { .. }
            | Command::RollbackService { .. }
            | Command::RemoveService { .. }
            | Command::Tasks { .. }
            | Command::ReportTasks { .. }
            | Command::ServiceUpdateStatus { .. } => return self.apply_service(index, now, cmd),
            Command::CreateBlob { .. } | Command::UpdateBlob { .. } | Command::RemoveBlob { .. } => {
                return self.apply_blob(index, now, cmd);
            }
            Command::AddLogSubscription { sub } => {
                let mut s = (**sub).clone();
                s.created_at = now;
                self.log_subscriptions.insert(s.id.clone(), s);
            }
            Command::RemoveLogSubscription { id } => {
                self.log_subscriptions.remove(id);
            }
            Command::Restore { state } => {
                if state.schema > SCHEMA {
                    return Err("a state from a newer skiffd".into());
                }
                *self = (**state).clone();
            }
        }
        Ok(())
    }

    /// Applies a node command (see [`Command`]).
    fn apply_node(&mut self, index: u64, now: i64, cmd: &Command) -> Result<(), String> {
        match cmd {
            Command::AddNode { node } => {
                if self.removed.contains(&node.id) || self.nodes.contains_key(&node.id) {
                    return Err(format!("node {} already exists or was removed", node.id));
                }
                let mut n = (**node).clone();
                (n.version, n.created_at, n.updated_at) = (index, now, now);
                let id = n.id.clone();
                self.nodes.insert(id.clone(), n);
                self.join_ingress(&id);
            }
            Command::UpdateNode { id, version, spec } => {
                let n = self.nodes.get_mut(id).ok_or_else(|| format!("node {id} not found"))?;
                if n.version != *version {
                    return Err(format!("update out of sequence: node {id} was changed since version {version}"));
                }
                n.spec = spec.clone();
                (n.version, n.updated_at) = (index, now);
            }
            Command::NodeStatus { id, state, addr, message } => {
                let n = self.nodes.get_mut(id).ok_or_else(|| format!("node {id} not found"))?;
                n.state = *state;
                if !addr.is_empty() {
                    n.addr = addr.clone();
                }
                n.message = message.clone();
                (n.version, n.updated_at) = (index, now);
            }
            Command::CertRole { id, role, manager_addr, tls } => {
                let n = self.nodes.get_mut(id).ok_or_else(|| format!("node {id} not found"))?;
                n.cert_role = *role;
                n.manager_addr = manager_addr.clone();
                if tls.is_some() {
                    n.tls = tls.clone();
                }
                (n.version, n.updated_at) = (index, now);
            }
            Command::RemoveNode { id } => {
                self.nodes.remove(id).ok_or_else(|| format!("node {id} not found"))?;
                self.removed.insert(id.clone());
                for n in self.networks.values_mut() {
                    n.node_addrs.remove(id);
                }
            }
            _ => return Err("not a node command".into()),
        }
        Ok(())
    }

    /// Decodes a stored state, refusing one written by a newer schema.
    pub fn decode(bytes: &[u8]) -> Result<ClusterState, String> {
        #[derive(Deserialize)]
        struct Head {
            schema: u32,
        }
        let head: Head = serde_json::from_slice(bytes).map_err(|e| format!("cluster state: {e}"))?;
        if head.schema > SCHEMA {
            return Err(format!("cluster state of schema {} is newer than this skiffd's ({SCHEMA})", head.schema));
        }
        serde_json::from_slice(bytes).map_err(|e| format!("cluster state: {e}"))
    }
}

#[cfg(test)]
mod tests;
