//! `docker service logs` on a manager: a subscription in the store names the tasks and this
//! manager; the nodes running them send their lines here (`/v1/logs`), and they go to the
//! client's stream. The subscription ends when the client goes (the stream is dropped), or —
//! without `follow` — when every task's node said it is done, or after [`NO_FOLLOW_LIMIT`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use skiff_cluster::identity::new_id;
use skiff_cluster::rpc::{LogBatch, LogRecord};
use skiff_cluster::types::{Command, LogSubscription, NodeState, Task};
use tokio::sync::mpsc;

use crate::error::{Kind, ManagerError, Result};
use crate::manager::Manager;

/// How long a logs call without `follow` waits for nodes that do not answer.
const NO_FOLLOW_LIMIT: Duration = Duration::from_secs(30);

/// What the client of a subscription receives.
#[derive(Debug, Clone)]
pub struct LogEvent {
    pub task_id: String,
    pub record: LogRecord,
}

/// A subscription's receiving end; dropping it ends the subscription.
pub struct LogStream {
    pub rx: mpsc::Receiver<LogEvent>,
    guard: Unsubscribe,
}

impl std::fmt::Debug for LogStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStream").field("id", &self.guard.id).finish_non_exhaustive()
    }
}

struct Unsubscribe {
    m: Weak<Manager>,
    id: String,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        let Some(m) = self.m.upgrade() else { return };
        m.log_sinks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.id);
        let id = self.id.clone();
        let weak = self.m.clone();
        m.spawn(async move {
            if let Some(m) = weak.upgrade()
                && let Err(e) = m.write(Command::RemoveLogSubscription { id }).await
            {
                tracing::debug!("ending a log subscription: {e}");
            }
        });
    }
}

/// Where a subscription's lines go, and which tasks have yet to finish.
pub(crate) struct Sink {
    tx: mpsc::Sender<LogEvent>,
    pending: HashSet<String>,
    follow: bool,
}

pub(crate) type Sinks = std::sync::Mutex<HashMap<String, Sink>>;

/// What a logs call asks for.
#[derive(Debug, Clone, Default)]
pub struct LogRequest {
    pub follow: bool,
    pub tail: Option<u64>,
    pub since_ns: i64,
    pub stdout: bool,
    pub stderr: bool,
}

impl Manager {
    /// Starts a log subscription for `tasks` (those on nodes that are down, or not placed, have
    /// nothing to send).
    pub async fn subscribe_logs(self: &Arc<Self>, tasks: &[Task], req: LogRequest) -> Result<LogStream> {
        let state = self.read().await?;
        let live: Vec<(String, String)> = tasks
            .iter()
            .filter(|t| state.nodes.get(&t.node_id).is_some_and(|n| n.state != NodeState::Down))
            .map(|t| (t.id.clone(), t.node_id.clone()))
            .collect();
        let id = new_id();
        let (tx, rx) = mpsc::channel(256);
        let pending: HashSet<String> = live.iter().map(|(t, _)| t.clone()).collect();
        let nothing = pending.is_empty() && !req.follow;
        self.log_sinks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.clone(), Sink { tx, pending, follow: req.follow });
        let guard = Unsubscribe { m: Arc::downgrade(self), id: id.clone() };
        if nothing {
            guard_close(self, &id);
            return Ok(LogStream { rx, guard });
        }
        let sub = LogSubscription {
            id: id.clone(),
            manager_addr: self.settings.advertise_addr.clone(),
            tasks: live,
            follow: req.follow,
            tail: req.tail,
            since_ns: req.since_ns,
            stdout: req.stdout,
            stderr: req.stderr,
            created_at: 0,
        };
        self.write(Command::AddLogSubscription { sub: Box::new(sub) }).await?;
        if !req.follow {
            let weak = Arc::downgrade(self);
            self.spawn(async move {
                tokio::time::sleep(NO_FOLLOW_LIMIT).await;
                if let Some(m) = weak.upgrade() {
                    guard_close(&m, &id);
                }
            });
        }
        Ok(LogStream { rx, guard })
    }
}

/// Ends a subscription's stream (its client sees the end).
fn guard_close(m: &Manager, id: &str) {
    m.log_sinks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(id);
}

/// `/v1/logs`: a node's lines for a subscription held here.
pub(crate) async fn publish(m: &Manager, batch: LogBatch) -> Result<()> {
    let tx = {
        let sinks = m.log_sinks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let sink = sinks.get(&batch.subscription).ok_or_else(|| {
            ManagerError::new(Kind::NotFound, format!("log subscription {} not found", batch.subscription))
        })?;
        sink.tx.clone()
    };
    for record in batch.records {
        let event = LogEvent { task_id: batch.task_id.clone(), record };
        if tx.send(event).await.is_err() {
            return Err(ManagerError::new(Kind::NotFound, "the log subscription ended"));
        }
    }
    if batch.done {
        let mut sinks = m.log_sinks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(sink) = sinks.get_mut(&batch.subscription) {
            sink.pending.remove(&batch.task_id);
            if sink.pending.is_empty() && !sink.follow {
                sinks.remove(&batch.subscription);
            }
        }
    }
    Ok(())
}

/// Subscriptions whose manager is no longer one (it went without ending them).
pub(crate) fn orphaned(m: &Manager, subs: &[LogSubscription]) -> Vec<String> {
    let managers: HashSet<String> = m.managers().into_iter().map(|(p, _)| p.addr).collect();
    subs.iter().filter(|s| !managers.contains(&s.manager_addr)).map(|s| s.id.clone()).collect()
}
