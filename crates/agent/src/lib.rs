//! A swarm node's agent (swarmkit's `agent` package): its session keeps the node in the
//! cluster by heartbeating the leader each period, follows the leader when a manager names
//! another, moves to the next manager when one stops answering, and publishes what it learns —
//! the managers, the role the cluster wants, whether it was removed; its [`worker`] runs the
//! tasks assigned to the node through an [`Executor`] the node's engine implements.

use std::time::Duration;

use skiff_cluster::rpc::{Heartbeat, HeartbeatResponse, ManagerPeer, RPC_VERSION};
use skiff_cluster::tls::{self, Credentials};
use skiff_cluster::transport::Dialer;
use skiff_cluster::types::StoredRole;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub mod worker;

pub use worker::{Blobs, BoxFuture, Executor, Started};

/// What the agent knows of the cluster, as of its last heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub managers: Vec<ManagerPeer>,
    /// The manager heartbeats go to.
    pub current: Option<String>,
    /// When the last heartbeat was answered, if ever.
    pub connected: bool,
    pub role: Option<StoredRole>,
    pub removed: bool,
    /// Why the last heartbeat failed.
    pub error: Option<String>,
    /// The CA generation the leader says certificates should be of (empty until heard).
    pub ca_generation: String,
}

/// A running session; dropping it (or [`Session::stop`]) ends the heartbeats.
#[derive(Debug)]
pub struct Session {
    status: watch::Receiver<Status>,
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    worker: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Session {
    /// Starts heartbeating `managers` as the node `creds` identify, advertising `addr`, and,
    /// with an executor, running the node's tasks through it.
    pub fn start(
        creds: &Credentials,
        managers: Vec<ManagerPeer>,
        addr: String,
        executor: Option<std::sync::Arc<dyn Executor>>,
    ) -> Result<Session, String> {
        let dialer = Dialer::new(tls::client(creds).map_err(|e| e.to_string())?);
        let status = Status {
            managers,
            current: None,
            connected: false,
            role: None,
            removed: false,
            error: None,
            ca_generation: String::new(),
        };
        let (tx, rx) = watch::channel(status);
        let cancel = CancellationToken::new();
        let worker = executor.map(|e| tokio::spawn(worker::run(dialer.clone(), rx.clone(), e, cancel.clone())));
        let task = tokio::spawn(run(dialer, addr, tx, cancel.clone()));
        Ok(Session { status: rx, cancel, task: Some(task), worker })
    }

    /// What the agent knows now.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Ends the session and waits for its task.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        if let Some(t) = self.worker.take() {
            let _ = t.await;
        }
    }
}

/// How long one heartbeat may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

async fn run(dialer: Dialer, addr: String, tx: watch::Sender<Status>, cancel: CancellationToken) {
    let mut period = Duration::from_secs(5);
    let mut next = 0usize;
    let mut target: Option<String> = None;
    loop {
        let managers = tx.borrow().managers.clone();
        let to = match target.clone() {
            Some(t) => t,
            None if managers.is_empty() => {
                tx.send_modify(|s| s.error = Some("no manager is known".into()));
                String::new()
            }
            None => {
                next = (next + 1) % managers.len();
                managers[next].addr.clone()
            }
        };
        let mut wait = period;
        if !to.is_empty() {
            let hb = Heartbeat { rpc_version: RPC_VERSION, addr: addr.clone() };
            let r: Result<HeartbeatResponse, _> = tokio::select! {
                () = cancel.cancelled() => return,
                r = dialer.call(&to, "/v1/heartbeat", &hb, CALL_TIMEOUT) => r,
            };
            match r {
                Ok(resp) => {
                    period = Duration::from_nanos(resp.period_ns.clamp(100_000_000, 3_600_000_000_000) as u64);
                    wait = period;
                    if let Some(leader) = resp.leader.clone().filter(|l| *l != to) {
                        // Not the leader: the next heartbeat goes where it says, at once.
                        target = Some(leader);
                        wait = Duration::ZERO;
                    } else {
                        target = Some(to.clone());
                    }
                    tx.send_modify(|s| {
                        if !resp.managers.is_empty() {
                            s.managers = resp.managers.clone();
                        }
                        s.current = Some(to.clone());
                        s.connected = resp.leader.is_none();
                        s.role = Some(resp.role);
                        s.removed = resp.removed;
                        if resp.leader.is_none() {
                            s.ca_generation = resp.ca_generation.clone();
                        }
                        s.error = None;
                    });
                }
                Err(skiff_cluster::transport::CallError::Remote { status: 403, message })
                    if message.contains("removed") =>
                {
                    // The cluster removed this node: nothing more to say to it.
                    tx.send_modify(|s| {
                        s.removed = true;
                        s.connected = false;
                        s.error = Some(message.clone());
                    });
                    wait = period;
                }
                Err(e) => {
                    tracing::debug!(manager = %to, "heartbeat: {e}");
                    target = None;
                    wait = Duration::from_millis(500).min(period);
                    tx.send_modify(|s| {
                        s.connected = false;
                        s.error = Some(e.to_string());
                    });
                }
            }
        }
        // A connection that ends (the manager went, or restarted) is a reason to call again at
        // once: a live node tells the managers so before they count it lost.
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
            () = dialer.closed() => {}
        }
    }
}
