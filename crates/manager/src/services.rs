//! Services on the managers: the control operations behind `docker service`, the leader's
//! reconciliation loop (orchestrators, then the scheduler, written as one entry), and the
//! dispatcher's side of task assignment — a node reports its tasks' states and long-polls for
//! the tasks it is to run.

use std::hash::{Hash, Hasher};
use std::sync::Weak;
use std::time::{Duration, Instant};

use skiff_cluster::identity::{NodeIdentity, new_id};
use skiff_cluster::rpc::{AssignmentsRequest, AssignmentsResponse};
use skiff_cluster::types::{Command, Service, ServiceMode, ServiceSpec, Task, TaskState};
use tokio_util::sync::CancellationToken;

use crate::error::{Kind, ManagerError, Result};
use crate::manager::Manager;
use crate::scheduler::Constraint;

/// How long an assignments call waits for a change before it answers anyway.
const LONG_POLL: Duration = Duration::from_secs(10);

/// How often the leader reconciles when nothing changes (restart delays, update delays).
const PASS_PERIOD: Duration = Duration::from_millis(500);

fn invalid(msg: impl std::fmt::Display) -> ManagerError {
    ManagerError::new(Kind::Invalid, format!("rpc error: code = InvalidArgument desc = {msg}"))
}

/// Checks a spec as swarmkit's control API does before it is stored.
pub fn validate(spec: &ServiceSpec) -> Result<()> {
    let name = &spec.name;
    let dns_label = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !dns_label {
        return Err(invalid("name must be valid as a DNS name component"));
    }
    if spec.task.container.image.is_empty() {
        return Err(invalid("ContainerSpec: image reference must be provided"));
    }
    for c in &spec.task.placement.constraints {
        Constraint::parse(c).map_err(invalid)?;
    }
    for p in &spec.task.ports {
        if p.target_port == 0 {
            return Err(invalid("EndpointSpec: a published port needs a target port"));
        }
    }
    if let Some(d) = spec.task.container.stop_grace_period_ns
        && d < 0
    {
        return Err(invalid("ContainerSpec: stop grace period must not be negative"));
    }
    Ok(())
}

impl Manager {
    /// `docker service create`: the new service's ID.
    pub async fn create_service(&self, spec: ServiceSpec) -> Result<String> {
        validate(&spec)?;
        crate::blobs::check_refs(&self.read().await?, &spec)?;
        let id = new_id();
        self.write(Command::CreateService { service: Box::new(Service::new(&id, spec)) }).await?;
        Ok(id)
    }

    /// `docker service update` (and `scale`, `rollback`): `version` is what the client read.
    pub async fn update_service(&self, key: &str, version: u64, spec: ServiceSpec) -> Result<()> {
        validate(&spec)?;
        crate::blobs::check_refs(&self.read().await?, &spec)?;
        let current = self.service(key).await?;
        if matches!(current.spec.mode, ServiceMode::Global) != matches!(spec.mode, ServiceMode::Global) {
            return Err(invalid("service mode change is not allowed"));
        }
        self.write(Command::UpdateService { id: current.id, version, spec: Box::new(spec) }).await
    }

    /// `docker service rollback`: back to the previous spec, rolled out under the rollback
    /// config.
    pub async fn rollback_service(&self, key: &str, version: u64) -> Result<()> {
        let s = self.service(key).await?;
        let message = "manually requested rollback".to_string();
        self.write(Command::RollbackService { id: s.id, version: Some(version), message }).await
    }

    /// `docker service rm`.
    pub async fn remove_service(&self, key: &str) -> Result<()> {
        let s = self.service(key).await?;
        self.write(Command::RemoveService { id: s.id }).await
    }

    /// A service by full ID, name, or unique ID prefix, as dockerd resolves it.
    pub async fn service(&self, key: &str) -> Result<Service> {
        let state = self.read().await?;
        crate::control::resolve("service", key, &state.services, |s| s.spec.name == key)
    }

    /// A task by full ID or unique ID prefix.
    pub async fn task(&self, key: &str) -> Result<Task> {
        let state = self.read().await?;
        crate::control::resolve("task", key, &state.tasks, |_| false)
    }
}

/// One pass: the orchestrators' decisions, then the scheduler's on the state they make, as one
/// entry. Returns whether anything was written.
async fn pass(m: &Manager) -> Result<bool> {
    let state = m.sm.state().await;
    let subs: Vec<_> = state.log_subscriptions.values().cloned().collect();
    for id in crate::logs::orphaned(m, &subs) {
        m.write(Command::RemoveLogSubscription { id }).await?;
    }
    if state.services.is_empty() && state.tasks.is_empty() {
        return Ok(false);
    }
    let now = crate::manager::now_nanos();
    let decided = crate::orchestrator::reconcile(&state, now, &mut new_id);
    let mut after = state;
    let mut changes = decided.tasks;
    if !changes.is_empty() {
        after.apply(u64::MAX, now, &Command::Tasks { changes: changes.clone() });
    }
    changes.extend(crate::scheduler::schedule(&after));
    let wrote = !changes.is_empty() || !decided.update_status.is_empty() || !decided.rollbacks.is_empty();
    if !changes.is_empty() {
        m.write(Command::Tasks { changes }).await?;
    }
    for (id, status) in decided.update_status {
        m.write(Command::ServiceUpdateStatus { id, status }).await?;
    }
    for (id, task) in decided.rollbacks {
        let message = format!("update rolled back due to failure or early termination of task {task}");
        m.write(Command::RollbackService { id, version: None, message }).await?;
    }
    Ok(wrote)
}

/// On the leader, reconciles whenever the state changes (and every [`PASS_PERIOD`]), until
/// `cancel`.
pub(crate) async fn reconcile_loop(m: Weak<Manager>, cancel: CancellationToken) {
    loop {
        let Some(mm) = m.upgrade() else { return };
        let applied = mm.raft.metrics().borrow().last_applied.map_or(0, |l| l.index);
        if mm.is_leader() {
            match pass(&mm).await {
                Ok(true) => {
                    // What was written is reconciled at once (a short pause bounds a loop that
                    // keeps deciding the same thing).
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!("reconciling services: {e}"),
            }
        }
        let wait = mm.raft.wait(Some(PASS_PERIOD));
        let changed = wait.applied_index_at_least(Some(applied + 1), "a change to reconcile");
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = changed => {}
        }
    }
}

/// What identifies a node's assignments: its tasks and what is wanted of each (statuses are
/// the node's own news), and the log subscriptions for them.
fn fingerprint(
    tasks: &[Task],
    logs: &[skiff_cluster::types::LogSubscription],
    networks: &[skiff_cluster::rpc::NetworkAssignment],
) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for t in tasks {
        (&t.id, t.desired_state.as_str()).hash(&mut h);
    }
    for l in logs {
        l.id.hash(&mut h);
    }
    networks.hash(&mut h);
    h.finish().max(1)
}

/// `/v1/assignments` from `peer`: records its reports, then answers with its tasks once they
/// differ from what it holds (or after [`LONG_POLL`]).
pub(crate) async fn assignments(
    m: &Manager,
    peer: &NodeIdentity,
    req: AssignmentsRequest,
) -> Result<AssignmentsResponse> {
    if !m.is_leader() {
        return Ok(AssignmentsResponse {
            tasks: Vec::new(),
            blobs: Vec::new(),
            logs: Vec::new(),
            networks: Vec::new(),
            fingerprint: 0,
            leader: m.leader_addr(),
        });
    }
    if !req.reports.is_empty() {
        m.write(Command::ReportTasks { node_id: peer.node_id.clone(), reports: req.reports }).await?;
    }
    let deadline = Instant::now() + LONG_POLL;
    loop {
        let applied = m.raft.metrics().borrow().last_applied.map_or(0, |l| l.index);
        let (tasks, blobs, logs, networks) =
            m.sm.with(|s| {
                let tasks: Vec<Task> = s
                    .tasks
                    .values()
                    .filter(|t| t.node_id == peer.node_id && t.status.state >= TaskState::Assigned)
                    .cloned()
                    .collect();
                let blobs = crate::blobs::delivered(s, &tasks);
                let networks = crate::networks::for_node(s, &peer.node_id);
                (tasks, blobs, s.log_subscriptions_for(&peer.node_id), networks)
            })
            .await;
        let fp = fingerprint(&tasks, &logs, &networks);
        let left = deadline.saturating_duration_since(Instant::now());
        if fp != req.known || left.is_zero() || !m.is_leader() {
            return Ok(AssignmentsResponse { tasks, blobs, logs, networks, fingerprint: fp, leader: None });
        }
        let _ = m.raft.wait(Some(left)).applied_index_at_least(Some(applied + 1), "a change for the node").await;
    }
}
