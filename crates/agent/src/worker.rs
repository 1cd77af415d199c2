//! The node's worker (swarmkit's `agent/worker` and task `exec` controllers): it long-polls the
//! leader for the tasks assigned to this node, runs each through the [`Executor`] — prepare,
//! start, wait —, stops it when the managers no longer want it running, removes its container
//! when the managers drop it, and reports every state it reaches (`accepted` … `running`,
//! `complete`, `failed`, `rejected`, `shutdown`).
//!
//! The worker never stops a task's container on its own account: when it ends (the session
//! renews, the daemon stops) the containers stay, and the next worker adopts them — prepare and
//! start are idempotent.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use skiff_cluster::rpc::{
    AssignmentsRequest, AssignmentsResponse, LogBatch, LogRecord, NetworkAssignment, RPC_VERSION,
};
use skiff_cluster::transport::Dialer;
use skiff_cluster::types::{BlobKind, LogSubscription, Task, TaskState, TaskStatus};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::Status;

/// A future an [`Executor`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a started task's container is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Started {
    pub container_id: String,
    pub pid: i64,
}

/// The secrets and configs the node's tasks use, by kind and ID, as the managers last sent them
/// (in memory only).
pub type Blobs = HashMap<(BlobKind, String), Vec<u8>>;

/// Runs tasks' containers on this node: skiffd implements it over its engine; tests with a stub.
pub trait Executor: Send + Sync + 'static {
    /// Makes the task ready to start: its image present, its secrets and configs in place (from
    /// `blobs`, never on disk), its container made. A container made before (the daemon
    /// restarted) is kept.
    fn prepare<'a>(&'a self, task: &'a Task, blobs: &'a Blobs) -> BoxFuture<'a, Result<(), String>>;
    /// Starts it (one already running is left running); with a health check, returns once it
    /// is healthy (an unhealthy one is an error).
    fn start<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, Result<Started, String>>;
    /// Waits for it to stop; its exit code (an error when it turned unhealthy and was stopped).
    fn wait<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, Result<i64, String>>;
    /// Stops it within its grace period (one not running, or never made, is fine), and takes
    /// its secrets and configs away.
    fn shutdown<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, Result<(), String>>;
    /// Removes the container of the task with this ID, if there is one.
    fn remove<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<(), String>>;
    /// The IDs of the tasks this node holds containers for.
    fn list(&self) -> BoxFuture<'_, Result<Vec<String>, String>>;
    /// Makes the node's overlay networks those its tasks are on (with their peers and the
    /// names they resolve); called with every assignment, before its tasks are prepared.
    fn networks<'a>(&'a self, networks: &'a [NetworkAssignment]) -> BoxFuture<'a, Result<(), String>>;
    /// The log of task `task_id`'s container as `sub` asks for it (the lines so far, then, with
    /// `follow`, new ones as they come); the channel ends with the log.
    fn logs<'a>(
        &'a self,
        task_id: &'a str,
        sub: &'a LogSubscription,
    ) -> BoxFuture<'a, Result<mpsc::Receiver<LogRecord>, String>>;
}

/// How long one assignments call may take (the leader holds it up to 10 s).
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// A task's controller: its wish, and the task that carries it out.
struct Controller {
    desired: watch::Sender<TaskState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Reports = mpsc::UnboundedSender<(String, TaskStatus)>;

/// Runs the worker until `cancel`: `status` says which manager leads, `dialer` reaches it.
pub(crate) async fn run(
    dialer: Dialer,
    mut status: watch::Receiver<Status>,
    exec: Arc<dyn Executor>,
    cancel: CancellationToken,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut controllers: HashMap<String, Controller> = HashMap::new();
    let mut pending: Vec<(String, TaskStatus)> = Vec::new();
    let (mut known, mut cleaned) = (0u64, false);
    let mut leader: Option<String> = None;
    let mut forwarders: HashMap<String, Vec<AbortOnDropHandle<()>>> = HashMap::new();
    loop {
        while let Ok(r) = rx.try_recv() {
            pending.push(r);
        }
        let target = {
            let s = status.borrow();
            leader.clone().or_else(|| s.current.clone().filter(|_| s.connected))
        };
        let Some(target) = target else {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = status.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            continue;
        };
        let req = AssignmentsRequest { rpc_version: RPC_VERSION, reports: pending.clone(), known };
        let r: Result<AssignmentsResponse, _> = tokio::select! {
            () = cancel.cancelled() => return,
            r = dialer.call(&target, "/v1/assignments", &req, CALL_TIMEOUT) => r,
            // News of a task: asked again at once, with it (reports are idempotent).
            Some(r) = rx.recv() => {
                pending.push(r);
                continue;
            }
        };
        match r {
            Ok(resp) if resp.leader.is_some() || resp.fingerprint == 0 => {
                leader = resp.leader.filter(|l| *l != target);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(resp) => {
                pending.clear();
                known = resp.fingerprint;
                let blobs: Arc<Blobs> = Arc::new(resp.blobs.into_iter().map(|d| ((d.kind, d.id), d.data)).collect());
                if let Err(e) = exec.networks(&resp.networks).await {
                    // Tasks on a network that could not be set up fail as they prepare.
                    tracing::warn!("setting up the node's overlay networks: {e}");
                }
                reconcile(&exec, &mut controllers, resp.tasks.clone(), &blobs, &tx);
                follow_logs(&dialer, &exec, &mut forwarders, &resp.tasks, resp.logs);
                if !cleaned {
                    cleaned = true;
                    let assigned: HashSet<String> = resp.tasks.iter().map(|t| t.id.clone()).collect();
                    let exec = exec.clone();
                    tokio::spawn(async move { remove_strays(&*exec, &assigned).await });
                }
            }
            Err(e) => {
                tracing::debug!(manager = %target, "asking for assignments: {e}");
                leader = None;
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }
}

/// Starts sending the lines of this node's tasks for new log subscriptions, and stops those of
/// subscriptions that ended.
fn follow_logs(
    dialer: &Dialer,
    exec: &Arc<dyn Executor>,
    forwarders: &mut HashMap<String, Vec<AbortOnDropHandle<()>>>,
    tasks: &[Task],
    subs: Vec<LogSubscription>,
) {
    let live: HashSet<String> = subs.iter().map(|s| s.id.clone()).collect();
    // Dropped handles abort their forwarders.
    forwarders.retain(|id, _| live.contains(id));
    let mine: HashSet<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
    for sub in subs {
        if forwarders.contains_key(&sub.id) {
            continue;
        }
        let sub = Arc::new(sub);
        let handles = sub
            .tasks
            .iter()
            .filter(|(t, _)| mine.contains(t.as_str()))
            .map(|(t, _)| {
                AbortOnDropHandle::new(tokio::spawn(forward_logs(dialer.clone(), exec.clone(), sub.clone(), t.clone())))
            })
            .collect();
        forwarders.insert(sub.id.clone(), handles);
    }
}

/// Sends one task's lines to the subscription's manager, in batches, then says it is done.
async fn forward_logs(dialer: Dialer, exec: Arc<dyn Executor>, sub: Arc<LogSubscription>, task_id: String) {
    let send = |records: Vec<LogRecord>, done: bool| {
        let batch = LogBatch { subscription: sub.id.clone(), task_id: task_id.clone(), records, done };
        let dialer = dialer.clone();
        let to = sub.manager_addr.clone();
        async move { dialer.call::<_, serde_json::Value>(&to, "/v1/logs", &batch, CALL_TIMEOUT).await }
    };
    if let Ok(mut rx) = exec.logs(&task_id, &sub).await {
        while let Some(first) = rx.recv().await {
            let mut records = vec![first];
            while records.len() < 256 {
                match rx.try_recv() {
                    Ok(r) => records.push(r),
                    Err(_) => break,
                }
            }
            if let Err(e) = send(records, false).await {
                // The subscription ended (its client left), or its manager went.
                tracing::debug!(task = %task_id, "sending log lines: {e}");
                return;
            }
        }
    }
    let _ = send(Vec::new(), true).await;
}

/// Containers of tasks the managers no longer have (removed while this node was away).
async fn remove_strays(exec: &dyn Executor, assigned: &HashSet<String>) {
    match exec.list().await {
        Ok(held) => {
            for id in held.iter().filter(|id| !assigned.contains(*id)) {
                if let Err(e) = exec.remove(id).await {
                    tracing::warn!(task = %id, "removing the container of a task no longer assigned: {e}");
                }
            }
        }
        Err(e) => tracing::warn!("listing task containers: {e}"),
    }
}

/// Brings the controllers in line with the node's assignments.
fn reconcile(
    exec: &Arc<dyn Executor>,
    controllers: &mut HashMap<String, Controller>,
    tasks: Vec<Task>,
    blobs: &Arc<Blobs>,
    tx: &Reports,
) {
    let assigned: HashSet<String> = tasks.iter().map(|t| t.id.clone()).collect();
    let gone: Vec<String> = controllers.keys().filter(|id| !assigned.contains(*id)).cloned().collect();
    for id in gone {
        // Dropped by the managers: stopped if it still runs, and its container removed.
        drop(controllers.remove(&id));
        let exec = exec.clone();
        tokio::spawn(async move {
            if let Err(e) = exec.remove(&id).await {
                tracing::warn!(task = %id, "removing a task's container: {e}");
            }
        });
    }
    for t in tasks {
        if let Some(c) = controllers.get(&t.id) {
            c.desired.send_if_modified(|d| {
                let changed = *d != t.desired_state;
                *d = t.desired_state;
                changed
            });
            continue;
        }
        let (desired, rx) = watch::channel(t.desired_state);
        let id = t.id.clone();
        let task = tokio::spawn(control(exec.clone(), t, blobs.clone(), rx, tx.clone()));
        controllers.insert(id, Controller { desired, task });
    }
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

/// Sends a status for `task`.
fn report(tx: &Reports, task: &Task, state: TaskState, message: &str, f: impl FnOnce(&mut TaskStatus)) {
    let mut s = TaskStatus { state, timestamp: now_nanos(), message: message.into(), ..TaskStatus::default() };
    f(&mut s);
    let _ = tx.send((task.id.clone(), s));
}

/// Resolves when the managers want the task stopped.
async fn stop_wanted(desired: &mut watch::Receiver<TaskState>) {
    let _ = desired.wait_for(|d| *d > TaskState::Running).await;
    // A closed channel (the worker went): stay pending, the controller is aborted.
    if *desired.borrow() <= TaskState::Running {
        std::future::pending::<()>().await;
    }
}

/// One task's life on this node.
async fn control(
    exec: Arc<dyn Executor>,
    task: Task,
    blobs: Arc<Blobs>,
    mut desired: watch::Receiver<TaskState>,
    tx: Reports,
) {
    if task.status.state.ended() {
        // Ended before this worker saw it (the managers know how): nothing to run or report.
        return;
    }
    if *desired.borrow() <= TaskState::Running {
        run_task(&*exec, &task, &blobs, &mut desired, &tx).await;
    } else {
        report(&tx, &task, TaskState::Shutdown, "shutdown", |_| {});
    }
    // However it ended: stopped, and its secrets and configs gone (stopping again is harmless).
    if let Err(e) = exec.shutdown(&task).await {
        tracing::warn!(task = %task.id, "stopping: {e}");
    }
}

/// Prepares, starts and waits for a task until it ends or the managers want it stopped.
async fn run_task(
    exec: &dyn Executor,
    task: &Task,
    blobs: &Blobs,
    desired: &mut watch::Receiver<TaskState>,
    tx: &Reports,
) {
    report(tx, task, TaskState::Accepted, "accepted", |_| {});
    report(tx, task, TaskState::Preparing, "preparing", |_| {});
    tokio::select! {
        r = exec.prepare(task, blobs) => if let Err(e) = r {
            report(tx, task, TaskState::Rejected, "preparing", |s| s.err = e);
            return;
        },
        () = stop_wanted(desired) => {
            report(tx, task, TaskState::Shutdown, "shutdown", |_| {});
            return;
        }
    }
    report(tx, task, TaskState::Starting, "starting", |_| {});
    let started = tokio::select! {
        r = exec.start(task) => match r {
            Ok(s) => s,
            Err(e) => {
                report(tx, task, TaskState::Failed, "starting", |s| s.err = e);
                return;
            }
        },
        // Still starting (a health check not yet passed) when the managers stop it.
        () = stop_wanted(desired) => {
            report(tx, task, TaskState::Shutdown, "shutdown", |_| {});
            return;
        }
    };
    let id = started.container_id.clone();
    let at = now_nanos();
    report(tx, task, TaskState::Running, "started", |s| {
        (s.container_id, s.pid, s.started_at) = (id.clone(), started.pid, at);
    });
    tokio::select! {
        code = exec.wait(task) => match code {
            Ok(0) => report(tx, task, TaskState::Complete, "finished", |s| (s.container_id, s.started_at) = (id, at)),
            Ok(c) => report(tx, task, TaskState::Failed, "started", |s| {
                (s.err, s.exit_code, s.container_id, s.started_at) = (format!("task: non-zero exit ({c})"), c, id, at);
            }),
            Err(e) => report(tx, task, TaskState::Failed, "started", |s| (s.err, s.started_at) = (e, at)),
        },
        () = stop_wanted(desired) => {
            if let Err(e) = exec.shutdown(task).await {
                tracing::warn!(task = %task.id, "stopping: {e}");
            }
            report(tx, task, TaskState::Shutdown, "shutdown", |s| (s.container_id, s.started_at) = (id, at));
        }
    }
}
