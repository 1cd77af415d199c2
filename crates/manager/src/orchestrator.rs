//! The orchestrators (swarmkit's `replicated`, `global`, `update`, `restart` and `taskreaper`),
//! as one reconciliation pass the leader runs whenever the state changes: desired against
//! actual, per service and per slot (a replicated service's replica number; a global service's
//! node).
//!
//! - a slot without a task the managers want gets one — at once when it is new or its task was
//!   taken away (node down, drained or removed; scale; update), after the restart policy's delay
//!   and within its attempts when the task ended on its own;
//! - a task on a node that is down, drained or gone is wanted shut down and replaced;
//! - slots beyond the replicas (or nodes no longer eligible) are shut down;
//! - a changed spec replaces tasks `parallelism` at a time, stop-first or start-first, with
//!   `delay` between batches;
//! - ended tasks are kept per slot up to the task history limit, then deleted; a removed
//!   service's tasks are deleted once stopped.
//!
//! A pure function of the state, so that it is tested without a cluster.

use std::collections::BTreeMap;

use skiff_cluster::types::{
    Availability, ClusterState, FailureAction, NodeState, RestartCondition, Service, ServiceMode, Task, TaskChange,
    TaskSpec, TaskState, TaskStatus, UpdateConfig, UpdateOrder, UpdateStatus,
};

use crate::scheduler::Constraint;

/// A service's slot: the replica number, or the node for a global service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    Replica(u64),
    Node(String),
}

impl Slot {
    fn of(t: &Task) -> Slot {
        if t.slot == 0 { Slot::Node(t.node_id.clone()) } else { Slot::Replica(t.slot) }
    }
}

/// What one pass decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decisions {
    pub tasks: Vec<TaskChange>,
    /// Rolling updates that started, paused or finished.
    pub update_status: Vec<(String, Option<UpdateStatus>)>,
    /// Services whose update failed and rolls back (`--update-failure-action rollback`), with
    /// the task that failed.
    pub rollbacks: Vec<(String, String)>,
}

struct Pass<'a> {
    state: &'a ClusterState,
    now: i64,
    new_id: &'a mut dyn FnMut() -> String,
    out: Decisions,
}

/// One reconciliation pass over `state` at `now` (Unix nanoseconds); `new_id` names new tasks.
pub fn reconcile(state: &ClusterState, now: i64, new_id: &mut dyn FnMut() -> String) -> Decisions {
    let mut p = Pass { state, now, new_id, out: Decisions::default() };
    p.removed_tasks();
    for s in state.services.values() {
        p.service(s);
    }
    p.history();
    p.out
}

impl Pass<'_> {
    /// Whether `node` is there and heard from (a node not yet heard from counts: it joined a
    /// moment ago).
    fn alive(&self, node: &str) -> bool {
        self.state.nodes.get(node).is_some_and(|n| n.state != NodeState::Down)
    }

    /// Whether tasks may keep running on `node`.
    fn keeps(&self, node: &str) -> bool {
        self.alive(node) && self.state.nodes.get(node).is_some_and(|n| n.spec.availability != Availability::Drain)
    }

    fn stop(&mut self, t: &Task) {
        if t.node_id.is_empty() || t.status.state < TaskState::Assigned {
            // Never placed: nothing runs anywhere.
            self.out.tasks.push(TaskChange::Delete { id: t.id.clone() });
        } else {
            self.out.tasks.push(TaskChange::Desire { id: t.id.clone(), state: TaskState::Shutdown });
        }
    }

    fn create(&mut self, s: &Service, slot: &Slot) {
        let (slot, node_id) = match slot {
            Slot::Replica(n) => (*n, String::new()),
            Slot::Node(n) => (0, n.clone()),
        };
        let task = Task {
            id: (self.new_id)(),
            version: 0,
            created_at: 0,
            updated_at: 0,
            service_id: s.id.clone(),
            service_name: s.spec.name.clone(),
            slot,
            node_id,
            spec: s.spec.task.clone(),
            spec_version: s.version,
            desired_state: TaskState::Running,
            status: TaskStatus { state: TaskState::New, message: "created".into(), ..TaskStatus::default() },
            networks: Vec::new(),
        };
        self.out.tasks.push(TaskChange::Create { task: Box::new(task) });
    }

    /// A removed service's tasks go once nothing runs them.
    fn removed_tasks(&mut self) {
        for t in self.state.tasks.values() {
            if t.desired_state == TaskState::Remove
                && (t.status.state.ended() || t.node_id.is_empty() || !self.alive(&t.node_id))
            {
                self.out.tasks.push(TaskChange::Delete { id: t.id.clone() });
            }
        }
    }

    /// The slots a service should fill.
    fn wanted_slots(&self, s: &Service, current: &BTreeMap<Slot, Vec<&Task>>) -> Vec<Slot> {
        match s.spec.mode {
            ServiceMode::Replicated { replicas } => (1..=replicas).map(Slot::Replica).collect(),
            ServiceMode::Global => {
                let constraints: Vec<Constraint> =
                    s.spec.task.placement.constraints.iter().filter_map(|c| Constraint::parse(c).ok()).collect();
                self.state
                    .nodes
                    .values()
                    .filter(|n| n.state == NodeState::Ready || n.state == NodeState::Unknown)
                    .filter(|n| match n.spec.availability {
                        Availability::Active => true,
                        // A paused node keeps what it runs and takes nothing new.
                        Availability::Pause => {
                            current.get(&Slot::Node(n.id.clone())).is_some_and(|ts| ts.iter().any(|t| t.wanted()))
                        }
                        Availability::Drain => false,
                    })
                    .filter(|n| constraints.iter().all(|c| c.matches(n)))
                    .map(|n| Slot::Node(n.id.clone()))
                    .collect()
            }
        }
    }

    fn service(&mut self, s: &Service) {
        let mut slots: BTreeMap<Slot, Vec<&Task>> = BTreeMap::new();
        for t in self.state.tasks.values().filter(|t| t.service_id == s.id && t.desired_state != TaskState::Remove) {
            slots.entry(Slot::of(t)).or_default().push(t);
        }
        let wanted = self.wanted_slots(s, &slots);
        for (slot, tasks) in &slots {
            if !wanted.contains(slot) {
                for t in tasks.iter().filter(|t| t.wanted()) {
                    self.stop(t);
                }
            }
        }
        let mut current = Vec::new();
        for slot in &wanted {
            let tasks = slots.get(slot).map(Vec::as_slice).unwrap_or_default();
            if let Some(t) = self.slot(s, slot, tasks) {
                current.push((slot.clone(), t));
            }
        }
        self.update(s, &current, wanted.len());
    }

    /// Keeps one slot filled; returns the task that holds it (the newest the managers want).
    fn slot<'t>(&mut self, s: &Service, slot: &Slot, tasks: &[&'t Task]) -> Option<&'t Task> {
        let mut taken_away = false;
        let mut live: Vec<&Task> = Vec::new();
        for t in tasks.iter().filter(|t| t.wanted()) {
            if !t.node_id.is_empty() && !self.keeps(&t.node_id) {
                self.stop(t);
                taken_away = true;
            } else if t.status.state.ended() {
                // It ended on its own: the restart policy decides on a replacement.
                self.out.tasks.push(TaskChange::Desire { id: t.id.clone(), state: TaskState::Shutdown });
            } else {
                live.push(t);
            }
        }
        live.sort_by(|a, b| (b.created_at, b.version, &b.id).cmp(&(a.created_at, a.version, &a.id)));
        let Some(newest) = live.first().copied() else {
            if taken_away || self.may_restart(s, tasks) {
                self.create(s, slot);
            }
            return None;
        };
        // Start-first: the old task goes once its replacement runs.
        if newest.status.state == TaskState::Running {
            for old in &live[1..] {
                self.stop(old);
            }
        }
        Some(newest)
    }

    /// Whether a slot whose task ended gets a new one now, by the restart policy.
    fn may_restart(&self, s: &Service, tasks: &[&Task]) -> bool {
        let Some(last) = tasks.iter().max_by_key(|t| (t.created_at, t.version, &t.id)) else {
            return true;
        };
        let on_its_own = matches!(last.status.state, TaskState::Complete | TaskState::Failed | TaskState::Rejected);
        if !on_its_own {
            // Stopped by the managers (scaled, updated, moved): replaced at once.
            return true;
        }
        let policy = &s.spec.task.restart;
        let failed = last.status.state != TaskState::Complete;
        match policy.condition {
            RestartCondition::None => return false,
            RestartCondition::OnFailure if !failed => return false,
            _ => {}
        }
        if policy.max_attempts > 0 {
            let ended = tasks
                .iter()
                .filter(|t| matches!(t.status.state, TaskState::Complete | TaskState::Failed | TaskState::Rejected))
                .filter(|t| policy.window_ns <= 0 || self.now - t.status.timestamp <= policy.window_ns)
                .count() as u64;
            // The first run is not a restart.
            if ended > policy.max_attempts {
                return false;
            }
        }
        self.now - last.status.timestamp >= policy.delay_ns
    }

    /// A new `UpdateStatus` for `s`: an update starts now; other states keep its start.
    fn set_status(&mut self, s: &Service, state: &str, message: String, completed: bool) {
        let started_at =
            if state == "updating" { self.now } else { s.update_status.as_ref().map_or(self.now, |u| u.started_at) };
        let completed_at = if completed { self.now } else { 0 };
        let status = UpdateStatus { state: state.into(), started_at, completed_at, message };
        self.out.update_status.push((s.id.clone(), Some(status)));
    }

    /// A task of this update that failed, if enough did to act (`--update-max-failure-ratio`):
    /// counted among the tasks the update (or rollback) made since it started.
    fn update_failure(&self, s: &Service, cfg: &UpdateConfig, started_at: i64) -> Option<String> {
        let made: Vec<&Task> = self
            .state
            .tasks
            .values()
            .filter(|t| t.service_id == s.id && t.spec == s.spec.task && t.created_at >= started_at)
            .collect();
        // Failures within the monitor period of the task's start count (or before it ran).
        let failed: Vec<&&Task> = made
            .iter()
            .filter(|t| matches!(t.status.state, TaskState::Failed | TaskState::Rejected))
            .filter(|t| t.status.started_at == 0 || t.status.timestamp - t.status.started_at <= cfg.monitor_ns)
            .collect();
        let ratio = f64::from(cfg.max_failure_ratio_ppm) / 1e6;
        let first = failed.first()?;
        (failed.len() as f64 / made.len().max(1) as f64 > ratio).then(|| first.id.clone())
    }

    /// A rolling update: tasks of an older spec are replaced, `parallelism` at a time; failures
    /// of the new tasks pause it, roll it back or are let through, as configured.
    fn update(&mut self, s: &Service, current: &[(Slot, &Task)], slots: usize) {
        let spec: &TaskSpec = &s.spec.task;
        let state = s.update_status.as_ref().map_or("", |u| u.state.as_str());
        let rolling_back = state.starts_with("rollback");
        let cfg = if rolling_back { &s.spec.rollback } else { &s.spec.update };
        let active = matches!(state, "updating" | "rollback_started");
        let mut dirty: Vec<&(Slot, &Task)> = current.iter().filter(|(_, t)| t.spec != *spec).collect();
        if active
            && cfg.failure_action != FailureAction::Continue
            && let Some(task) = self.update_failure(s, cfg, s.update_status.as_ref().map_or(0, |u| u.started_at))
        {
            if cfg.failure_action == FailureAction::Rollback && !rolling_back && s.previous_spec.is_some() {
                self.out.rollbacks.push((s.id.clone(), task));
            } else {
                let (st, what) = if rolling_back { ("rollback_paused", "rollback") } else { ("paused", "update") };
                self.set_status(
                    s,
                    st,
                    format!("{what} paused due to failure or early termination of task {task}"),
                    false,
                );
            }
            return;
        }
        if matches!(state, "paused" | "rollback_paused") {
            return;
        }
        if dirty.is_empty() {
            // Done once every slot holds a task of the spec, running, and no other task is
            // wanted (start-first's old tasks gone).
            let settled = current.len() == slots
                && self
                    .state
                    .tasks
                    .values()
                    .filter(|t| t.service_id == s.id && t.wanted())
                    .all(|t| t.spec == *spec && t.status.state == TaskState::Running);
            // … and the tasks this rollout started have been watched for `--update-monitor`.
            let since = s.update_status.as_ref().map_or(0, |u| u.started_at);
            let watched = current
                .iter()
                .filter(|(_, t)| t.created_at >= since)
                .all(|(_, t)| self.now - t.status.started_at >= cfg.monitor_ns);
            if active && settled && watched {
                let (st, message) = if rolling_back {
                    ("rollback_completed", "rollback completed")
                } else {
                    ("completed", "update completed")
                };
                self.set_status(s, st, message.into(), true);
            }
            return;
        }
        if !active && s.previous_spec.is_some() {
            self.set_status(s, "updating", "update in progress".into(), false);
        }
        let in_flight = current.iter().filter(|(_, t)| t.spec == *spec && t.status.state < TaskState::Running).count();
        // Start-first: a slot holding an old task beside its new one is in flight too.
        let mut allowed =
            if cfg.parallelism == 0 { dirty.len() } else { (cfg.parallelism as usize).saturating_sub(in_flight) };
        if cfg.delay_ns > 0 && in_flight == 0 {
            let last_done = current
                .iter()
                .filter(|(_, t)| t.spec == *spec && t.status.state == TaskState::Running && t.spec_version == s.version)
                .map(|(_, t)| t.status.timestamp)
                .max();
            if last_done.is_some_and(|at| self.now - at < cfg.delay_ns) {
                allowed = 0;
            }
        }
        dirty.truncate(allowed);
        for (slot, old) in dirty {
            if cfg.order == UpdateOrder::StopFirst {
                self.stop(old);
            }
            self.create(s, slot);
        }
    }

    /// Ended tasks kept per slot up to the history limit (the slot's tasks in all, as
    /// swarmkit's task reaper counts).
    fn history(&mut self) {
        let limit = self.state.cluster.as_ref().map_or(5, |c| c.spec.task_history_limit).max(1) as usize;
        let mut slots: BTreeMap<(String, Slot), Vec<&Task>> = BTreeMap::new();
        for t in self.state.tasks.values().filter(|t| t.desired_state != TaskState::Remove) {
            slots.entry((t.service_id.clone(), Slot::of(t))).or_default().push(t);
        }
        for tasks in slots.values_mut() {
            if tasks.len() <= limit {
                continue;
            }
            tasks.sort_by(|a, b| (b.created_at, b.version, &b.id).cmp(&(a.created_at, a.version, &a.id)));
            let mut excess = tasks.len() - limit;
            for t in tasks.iter().rev() {
                if excess == 0 {
                    break;
                }
                let dead = !t.wanted() && (t.status.state.ended() || t.node_id.is_empty() || !self.alive(&t.node_id));
                if dead {
                    self.out.tasks.push(TaskChange::Delete { id: t.id.clone() });
                    excess -= 1;
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "orchestrator_tests.rs"]
mod tests;
