//! The messages nodes exchange over mutual TLS (HTTP/2, JSON bodies).
//!
//! Paths under `/v1/`: `join` (a node with a token, and without a certificate yet, gets one),
//! `heartbeat` (a member says it is alive; the answer carries the period and the managers),
//! `assignments` (a node reports its tasks' states and learns the tasks it is to run),
//! `forward` (a manager that is not the leader hands a write to the leader), and `raft/*`
//! (openraft's own messages, in the manager crate). Every body carries [`RPC_VERSION`]-
//! compatible fields only: new fields come with serde defaults, so mixed versions interoperate.

use serde::{Deserialize, Serialize};

use crate::types::{Applied, Command, Delivered, LogSubscription, NodeDescription, StoredRole, Task, TaskStatus};

/// The protocol version a node speaks; a peer with a newer major version is refused.
pub const RPC_VERSION: u32 = 1;

/// The port managers listen on unless told otherwise (as Docker's).
pub const DEFAULT_PORT: u16 = 2377;

/// `POST /v1/join`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub rpc_version: u32,
    /// The join token as the operator gave it.
    pub token: String,
    /// A CSR for the node's own key (DER, base64).
    pub csr: String,
    pub description: NodeDescription,
    /// Where other managers reach it, should it be (or become) a manager.
    pub advertise_addr: String,
}

/// A manager as members learn it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagerPeer {
    pub node_id: String,
    pub addr: String,
}

/// The answer to a join.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinResponse {
    pub node_id: String,
    pub cluster_id: String,
    pub role: StoredRole,
    /// The node's certificate followed by its intermediates, and the root (PEM).
    pub cert: String,
    pub ca: String,
    pub managers: Vec<ManagerPeer>,
    pub heartbeat_period_ns: i64,
    /// The cluster's CA generation the certificate is of (see `Cluster::ca_generation`).
    #[serde(default)]
    pub ca_generation: String,
}

/// `POST /v1/heartbeat`: the caller is the certificate's node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    pub rpc_version: u32,
    /// Where the node can be reached (its advertise address).
    pub addr: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    pub period_ns: i64,
    pub managers: Vec<ManagerPeer>,
    /// The role the cluster wants the node in; a node whose certificate says otherwise renews it.
    pub role: StoredRole,
    /// Set when the node has been removed from the cluster: it must leave.
    #[serde(default)]
    pub removed: bool,
    /// Set by a manager that is not the leader (and did not record the heartbeat): where the
    /// leader is. The node sends its next heartbeat there.
    #[serde(default)]
    pub leader: Option<String>,
    /// The CA generation certificates should be of: a node whose own differs (the root is
    /// rotating) renews.
    #[serde(default)]
    pub ca_generation: String,
}

/// `POST /v1/forward`: a write for the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Forward {
    pub cmd: Command,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForwardResponse {
    pub applied: Applied,
}

/// An error answer: the HTTP status says the class, this the words.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RpcError {
    pub message: String,
}

/// `POST /v1/renew`: a member asks for a new certificate for a new key — before its current
/// one expires, or because the cluster now wants it in another role (promote/demote). The
/// caller is the certificate's node; the role is the cluster's choice.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenewRequest {
    pub rpc_version: u32,
    /// A CSR for the node's new key (DER, base64).
    pub csr: String,
    /// Where managers reach the node, should it be (or become) a manager.
    pub advertise_addr: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenewResponse {
    pub role: StoredRole,
    /// The certificate followed by its intermediates, and the root to trust from now on.
    pub cert: String,
    pub ca: String,
    pub managers: Vec<ManagerPeer>,
    #[serde(default)]
    pub ca_generation: String,
}

/// `POST /v1/assignments`: a node (the certificate's) reports what became of its tasks and asks
/// which tasks it has. The leader answers at once when the node's tasks differ from what it
/// last had (`known`), or when they change within the wait — a long poll, so new work reaches
/// a node as soon as it is decided.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AssignmentsRequest {
    pub rpc_version: u32,
    /// Task ID and its status as the node now sees it.
    #[serde(default)]
    pub reports: Vec<(String, TaskStatus)>,
    /// The fingerprint of the assignments the node holds (0: none yet).
    #[serde(default)]
    pub known: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AssignmentsResponse {
    /// Every task on the node the managers still keep, with its desired state; a task not
    /// listed is to be removed.
    pub tasks: Vec<Task>,
    /// The secrets and configs the node's tasks that may still run use (and no others).
    #[serde(default)]
    pub blobs: Vec<Delivered>,
    /// Log subscriptions that want lines of the node's tasks.
    #[serde(default)]
    pub logs: Vec<LogSubscription>,
    /// The overlay networks the node's tasks are on.
    #[serde(default)]
    pub networks: Vec<NetworkAssignment>,
    pub fingerprint: u64,
    /// Set by a manager that is not the leader: where to ask.
    #[serde(default)]
    pub leader: Option<String>,
}

/// An overlay network as one node needs it: the network, the node's own address on it and
/// its VXLAN end, the other nodes that have tasks on it, and the names its tasks resolve.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NetworkAssignment {
    pub id: String,
    pub name: String,
    pub subnet: crate::types::Subnet,
    pub vni: u32,
    pub internal: bool,
    /// The routing mesh's network.
    #[serde(default)]
    pub ingress: bool,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub options: std::collections::BTreeMap<String, String>,
    /// The node's address on the network (its bridge's).
    pub local_addr: std::net::Ipv4Addr,
    /// The node's data-path address (the VXLAN tunnels' local end).
    pub vtep: String,
    /// The data-path addresses of the other nodes with tasks on the network.
    pub peers: Vec<String>,
    /// Names → addresses: each service on the network (and `tasks.NAME`, and its aliases) to
    /// its tasks' addresses, each task's container name to its own.
    pub names: Vec<(String, Vec<std::net::Ipv4Addr>)>,
    /// On the ingress network: every port the routing mesh publishes, with its backends.
    #[serde(default)]
    pub ingress_ports: Vec<IngressPort>,
    /// The virtual IPs of the services on the network, each with its running tasks' addresses.
    #[serde(default)]
    pub vips: Vec<(std::net::Ipv4Addr, Vec<std::net::Ipv4Addr>)>,
}

/// A port of the routing mesh: published on every node, balanced over the running tasks'
/// addresses on the ingress network.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IngressPort {
    pub protocol: String,
    pub published_port: u16,
    pub target_port: u16,
    pub backends: Vec<std::net::Ipv4Addr>,
}

/// One log line of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// 1: stdout, 2: stderr.
    pub stream: u8,
    /// RFC 3339 with nanoseconds.
    pub time: String,
    #[serde(with = "crate::types::b64")]
    pub data: Vec<u8>,
}

/// `POST /v1/logs` to the subscription's manager: lines of one task; `done` when there will be
/// no more (the task's log ended, without `follow`). The manager answers 404 once the
/// subscription is gone (its client left): the node stops sending.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogBatch {
    pub subscription: String,
    pub task_id: String,
    pub records: Vec<LogRecord>,
    #[serde(default)]
    pub done: bool,
}
