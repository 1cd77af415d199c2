//! The control operations behind `docker swarm` and `docker node`: each a check against the
//! replicated state and a command through the leader.

use skiff_cluster::ca::RootCa;
use skiff_cluster::token::JoinToken;
use skiff_cluster::types::{Cluster, ClusterSpec, Command, Node, NodeDescription, NodeSpec, NodeState, StoredRole};

use crate::error::{Kind, ManagerError, Result};
use crate::manager::Manager;

/// What `swarm init` writes first: the cluster (its root CA and fresh join tokens) and this
/// node as its first manager.
pub fn init_command(
    node_id: &str,
    cluster_id: &str,
    spec: ClusterSpec,
    ca: &RootCa,
    description: NodeDescription,
    advertise_addr: &str,
    unlock_key: Option<&skiff_cluster::seal::Key>,
) -> Result<Command> {
    let key = ca.key_pem().ok_or_else(|| ManagerError::new(Kind::Invalid, "the root CA has no key"))?;
    let cluster = Cluster {
        id: cluster_id.to_string(),
        version: 0,
        created_at: 0,
        updated_at: 0,
        spec,
        root_ca_cert: ca.cert_pem().to_string(),
        root_ca_key: key,
        worker_token: JoinToken::generate(ca).to_string(),
        manager_token: JoinToken::generate(ca).to_string(),
        unlock_key: unlock_key.map(skiff_cluster::seal::Key::to_unlock_key).unwrap_or_default(),
        rotation: None,
        root_cross_signed: String::new(),
    };
    let host = advertise_addr.rsplit_once(':').map_or(advertise_addr, |(h, _)| h).to_string();
    let mut node = Node::new(node_id, StoredRole::Manager, description, host, Some(advertise_addr.to_string()));
    // The first manager is up as it is made.
    node.state = NodeState::Ready;
    Ok(Command::Init { cluster: Box::new(cluster), node: Box::new(node) })
}

impl Manager {
    /// `docker node update` (availability, labels, name, role). A role change takes effect when
    /// the node renews its certificate (its next heartbeat tells it to); demoting the last
    /// manager is refused, as dockerd refuses it.
    pub async fn update_node(&self, id: &str, version: u64, spec: NodeSpec) -> Result<()> {
        let node = self.node(id).await?;
        if node.spec.role == StoredRole::Manager && spec.role == StoredRole::Worker {
            let state = self.read().await?;
            let managers = state.nodes.values().filter(|n| n.spec.role == StoredRole::Manager).count();
            if managers <= 1 {
                return Err(ManagerError::new(
                    Kind::Invalid,
                    "rpc error: code = FailedPrecondition desc = attempting to demote the last manager of the swarm",
                ));
            }
        }
        self.write(Command::UpdateNode { id: node.id, version, spec }).await
    }

    /// `docker node rm [--force]`: a node must be down (or forced); a manager must be demoted
    /// first, as dockerd says.
    pub async fn remove_node(&self, id: &str, force: bool) -> Result<()> {
        let node = self.node(id).await?;
        if node.spec.role == StoredRole::Manager || node.manager_addr.is_some() {
            return Err(ManagerError::new(
                Kind::Invalid,
                format!(
                    "rpc error: code = FailedPrecondition desc = node {} is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal",
                    node.id
                ),
            ));
        }
        if !force && node.state != NodeState::Down {
            return Err(ManagerError::new(
                Kind::Invalid,
                format!(
                    "rpc error: code = FailedPrecondition desc = node {} is not down and can't be removed",
                    node.id
                ),
            ));
        }
        self.write(Command::RemoveNode { id: node.id }).await
    }

    /// `docker swarm join-token --rotate ROLE`.
    pub async fn rotate_token(&self, role: StoredRole) -> Result<()> {
        let ca = self.root_ca().await?;
        self.write(Command::RotateToken { role, token: JoinToken::generate(&ca).to_string() }).await
    }

    /// `docker swarm update`; `rotate_unlock_key` is `swarm unlock-key --rotate`. Turning
    /// autolock on makes the cluster's unlock key.
    /// `signing` is an operator's root (certificate and key) to rotate to (`swarm ca --rotate
    /// --ca-cert --ca-key`); a changed `ca_force_rotate` rotates to a new root.
    pub async fn update_cluster(
        &self,
        version: u64,
        spec: ClusterSpec,
        rotate_unlock_key: bool,
        signing: Option<(&str, &str)>,
    ) -> Result<()> {
        let current = self.read().await?.cluster.ok_or_else(|| ManagerError::unavailable("no cluster"))?;
        let unlock_key = (spec.autolock && (rotate_unlock_key || current.unlock_key.is_empty()))
            .then(|| skiff_cluster::seal::Key::generate().to_unlock_key());
        let rotation = if signing.is_some() || spec.ca_force_rotate != current.spec.ca_force_rotate {
            Some(crate::rotation::prepare(&current, signing)?)
        } else {
            None
        };
        self.write(Command::UpdateCluster { version, spec, unlock_key, rotation }).await
    }

    /// The unlock key as this manager's copy of the store has it (empty without autolock): what
    /// its own files must be sealed with.
    pub async fn local_unlock_key(&self) -> String {
        self.sm.with(|s| s.cluster.as_ref().map(|c| c.unlock_key.clone()).unwrap_or_default()).await
    }

    /// A node by full ID, unique ID prefix or name (hostname), as dockerd resolves it.
    pub async fn node(&self, key: &str) -> Result<Node> {
        let state = self.read().await?;
        resolve("node", key, &state.nodes, |n| {
            n.spec.name == key || (n.spec.name.is_empty() && n.description.hostname == key)
        })
    }
}

/// An object of `map` as dockerd resolves a key for it: the full ID, else the one object named
/// so (`named`), else the one whose ID starts with the key; several make the key ambiguous.
pub(crate) fn resolve<T: Clone>(
    what: &str,
    key: &str,
    map: &std::collections::BTreeMap<String, T>,
    named: impl Fn(&T) -> bool,
) -> Result<T> {
    if let Some(v) = map.get(key) {
        return Ok(v.clone());
    }
    let by_name: Vec<&T> = map.values().filter(|v| named(v)).collect();
    if let [v] = by_name.as_slice() {
        return Ok((*v).clone());
    }
    let by_prefix: Vec<&T> = map.iter().filter(|(id, _)| id.starts_with(key)).map(|(_, v)| v).collect();
    match by_prefix.as_slice() {
        [v] if !key.is_empty() => Ok((*v).clone()),
        [] | [_] => Err(ManagerError::new(Kind::NotFound, format!("{what} {key} not found"))),
        _ => Err(ManagerError::new(
            Kind::Invalid,
            format!("{what} {key} is ambiguous ({} matches found)", by_prefix.len()),
        )),
    }
}
