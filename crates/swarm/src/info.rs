//! What `docker info` says of the swarm, as this node sees it.

use skiff_cluster::rpc::ManagerPeer;
use skiff_cluster::types::{Cluster, StoredRole};

use crate::Swarm;

/// The node's membership state, with dockerd's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalState {
    Inactive,
    Pending,
    Active,
    Error,
    /// A manager restarted under autolock, waiting for `docker swarm unlock`.
    Locked,
}

/// The Swarm part of `docker info`.
#[derive(Debug, Clone)]
pub struct Info {
    pub local: LocalState,
    pub node_id: String,
    /// The address this node is reached at (without the port).
    pub node_addr: String,
    pub control_available: bool,
    pub error: String,
    pub remote_managers: Vec<ManagerPeer>,
    /// Known on managers only.
    pub nodes: usize,
    pub managers: usize,
    /// Managers only; the CA key is the caller's to leave out.
    pub cluster: Option<Cluster>,
}

fn host(addr: &str) -> &str {
    addr.rsplit_once(':').map_or(addr, |(h, _)| h)
}

impl Swarm {
    pub async fn info(&self) -> Info {
        let state = self.state.lock().await;
        let Some(a) = state.as_ref() else {
            let locked = self.locked.lock().await;
            let file = locked.as_ref().map(|(f, _)| f);
            return Info {
                local: if file.is_some() { LocalState::Locked } else { LocalState::Inactive },
                node_id: file.map(|f| f.node_id.clone()).unwrap_or_default(),
                node_addr: file.map(|f| host(&f.advertise_addr).to_string()).unwrap_or_default(),
                control_available: false,
                error: String::new(),
                remote_managers: Vec::new(),
                nodes: 0,
                managers: 0,
                cluster: None,
            };
        };
        let status = a.session.status();
        let node_addr = host(&a.file.advertise_addr);
        let mut info = Info {
            local: if status.removed {
                LocalState::Error
            } else if status.connected || a.manager.is_some() {
                LocalState::Active
            } else {
                LocalState::Pending
            },
            node_id: a.file.node_id.clone(),
            node_addr: node_addr.to_string(),
            control_available: a.manager.is_some(),
            error: if status.removed { "This node was removed from the swarm".into() } else { String::new() },
            remote_managers: status.managers.clone(),
            nodes: 0,
            managers: 0,
            cluster: None,
        };
        if let Some(m) = &a.manager {
            let s = m.sm_state().await;
            info.nodes = s.nodes.len();
            info.managers = s.nodes.values().filter(|n| n.spec.role == StoredRole::Manager).count();
            info.cluster = s.cluster;
            info.remote_managers = m.managers().into_iter().map(|(p, _)| p).collect();
        }
        info
    }
}
