//! Log subscriptions (swarmkit's log broker, in the store): `docker service logs` on a manager
//! records which tasks it wants logs of and where to send them; the nodes running those tasks
//! learn of it with their assignments and send the lines straight to that manager. Only the
//! subscription goes through Raft, never a log line.

use serde::{Deserialize, Serialize};

/// One `docker service logs` (or task logs) call in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogSubscription {
    pub id: String,
    /// The manager holding the client (`host:port` of its cluster server).
    pub manager_addr: String,
    /// The tasks, with the node each runs on.
    pub tasks: Vec<(String, String)>,
    pub follow: bool,
    /// Last N lines of each task; none: all.
    #[serde(default)]
    pub tail: Option<u64>,
    /// Unix nanoseconds; 0: from the start.
    #[serde(default)]
    pub since_ns: i64,
    pub stdout: bool,
    pub stderr: bool,
    #[serde(default)]
    pub created_at: i64,
}

impl super::ClusterState {
    /// The subscriptions that want logs of a task on `node_id`.
    pub fn log_subscriptions_for(&self, node_id: &str) -> Vec<LogSubscription> {
        self.log_subscriptions.values().filter(|s| s.tasks.iter().any(|(_, n)| n == node_id)).cloned().collect()
    }
}
