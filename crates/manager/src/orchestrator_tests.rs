//! Reconciliation and scheduling against hand-made states.

use std::collections::BTreeMap;

use skiff_cluster::types::{
    Availability, ClusterState, Command, Node, NodeDescription, NodeState, RestartCondition, Service, ServiceMode,
    ServiceSpec, StoredRole, TaskChange, TaskSpec, TaskState, TaskStatus, UpdateOrder,
};

use super::reconcile;
use crate::scheduler::{Constraint, schedule};

const SEC: i64 = 1_000_000_000;

fn node(id: &str, labels: &[(&str, &str)]) -> Node {
    let mut n = Node::new(
        id,
        StoredRole::Worker,
        NodeDescription {
            hostname: format!("host-{id}"),
            os: "linux".into(),
            architecture: "x86_64".into(),
            nano_cpus: 2 * SEC,
            memory_bytes: 1 << 30,
            ..Default::default()
        },
        String::new(),
        None,
    );
    n.state = NodeState::Ready;
    n.spec.labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    n
}

fn spec(name: &str, mode: ServiceMode) -> ServiceSpec {
    let mut task = TaskSpec::default();
    task.container.image = "busybox".into();
    ServiceSpec {
        name: name.into(),
        labels: BTreeMap::new(),
        task,
        mode,
        update: Default::default(),
        rollback: Default::default(),
        endpoint_mode: Default::default(),
    }
}

/// A cluster of `nodes`, with one service.
fn state(nodes: &[Node], s: ServiceSpec) -> ClusterState {
    let mut st = ClusterState::default();
    for n in nodes {
        st.nodes.insert(n.id.clone(), n.clone());
    }
    let svc = Service::new("svc", s);
    st.apply(1, 0, &Command::CreateService { service: Box::new(svc) });
    st
}

/// Runs passes (orchestrators, then the scheduler) the way the leader does, at `now`.
fn settle(st: &mut ClusterState, now: i64, ids: &mut u32) {
    for i in 0..10 {
        let mut new_id = || {
            *ids += 1;
            format!("t{:03}", *ids)
        };
        let d = reconcile(st, now, &mut new_id);
        let mut changes = d.tasks;
        if !changes.is_empty() {
            st.apply(100 + i, now, &Command::Tasks { changes: changes.clone() });
        }
        let placed = schedule(st);
        if !placed.is_empty() {
            st.apply(100 + i, now, &Command::Tasks { changes: placed.clone() });
        }
        changes.extend(placed);
        let more = !d.update_status.is_empty() || !d.rollbacks.is_empty();
        for (id, status) in d.update_status {
            st.apply(100 + i, now, &Command::ServiceUpdateStatus { id, status });
        }
        for (id, task) in d.rollbacks {
            st.apply(100 + i, now, &Command::RollbackService { id, version: None, message: format!("failed: {task}") });
        }
        if changes.is_empty() && !more {
            return;
        }
    }
    panic!("the passes did not settle");
}

/// Every assigned task reports `state` (as its node's agent would).
fn report(st: &mut ClusterState, state: TaskState, now: i64) {
    let reports: Vec<(String, String)> = st
        .tasks
        .values()
        .filter(|t| t.wanted() && !t.node_id.is_empty() && t.status.state < state)
        .map(|t| (t.node_id.clone(), t.id.clone()))
        .collect();
    for (node, id) in reports {
        let started_at = if state == TaskState::Running { now } else { 0 };
        let status = TaskStatus { state, timestamp: now, started_at, ..TaskStatus::default() };
        st.apply(200, now, &Command::ReportTasks { node_id: node, reports: vec![(id, status)] });
    }
}

fn running_per_node(st: &ClusterState) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for t in st.tasks.values().filter(|t| t.wanted()) {
        *m.entry(t.node_id.clone()).or_default() += 1;
    }
    m
}

#[test]
fn replicas_are_made_spread_over_nodes_and_scaled() {
    let nodes = [node("a", &[]), node("b", &[]), node("c", &[])];
    let mut st = state(&nodes, spec("web", ServiceMode::Replicated { replicas: 6 }));
    let mut ids = 0;
    settle(&mut st, 10 * SEC, &mut ids);
    assert_eq!(st.tasks.len(), 6);
    assert!(st.tasks.values().all(|t| t.status.state == TaskState::Assigned));
    assert_eq!(running_per_node(&st).values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
    let slots: std::collections::BTreeSet<u64> = st.tasks.values().map(|t| t.slot).collect();
    assert_eq!(slots, (1..=6).collect());

    // Scale down: the highest slots are shut down; their history stays.
    let mut s = st.services["svc"].spec.clone();
    s.mode = ServiceMode::Replicated { replicas: 2 };
    st.apply(300, 11 * SEC, &Command::UpdateService { id: "svc".into(), version: 1, spec: Box::new(s) });
    settle(&mut st, 11 * SEC, &mut ids);
    let wanted: Vec<u64> = st.tasks.values().filter(|t| t.wanted()).map(|t| t.slot).collect();
    assert_eq!(wanted, vec![1, 2]);
    assert_eq!(st.tasks.len(), 6, "stopped tasks are kept as history");
}

#[test]
fn tasks_on_a_lost_or_drained_node_are_replaced_elsewhere_at_once() {
    let nodes = [node("a", &[]), node("b", &[]), node("c", &[])];
    let mut st = state(&nodes, spec("web", ServiceMode::Replicated { replicas: 3 }));
    let mut ids = 0;
    settle(&mut st, SEC, &mut ids);
    report(&mut st, TaskState::Running, SEC);
    st.nodes.get_mut("b").unwrap().state = NodeState::Down;
    settle(&mut st, 2 * SEC, &mut ids);
    let per = running_per_node(&st);
    assert_eq!(per.get("b"), None, "{per:?}");
    assert_eq!(per.values().sum::<usize>(), 3);
    let old = st.tasks.values().find(|t| t.node_id == "b").unwrap();
    assert_eq!((old.desired_state, old.status.state), (TaskState::Shutdown, TaskState::Running));

    report(&mut st, TaskState::Running, 2 * SEC);
    st.nodes.get_mut("c").unwrap().spec.availability = Availability::Drain;
    settle(&mut st, 3 * SEC, &mut ids);
    let per = running_per_node(&st);
    assert_eq!(per.keys().cloned().collect::<Vec<_>>(), vec!["a".to_string()], "{per:?}");
    assert_eq!(per["a"], 3);
}

#[test]
fn a_task_that_ends_follows_the_restart_policy() {
    let nodes = [node("a", &[])];
    let mut s = spec("job", ServiceMode::Replicated { replicas: 1 });
    s.task.restart.condition = RestartCondition::OnFailure;
    s.task.restart.delay_ns = 5 * SEC;
    s.task.restart.max_attempts = 2;
    let mut st = state(&nodes, s);
    let mut ids = 0;
    settle(&mut st, 0, &mut ids);
    let fail = |st: &mut ClusterState, now: i64| {
        let id = st.tasks.values().find(|t| t.wanted()).unwrap().id.clone();
        let status = TaskStatus { state: TaskState::Failed, timestamp: now, exit_code: 1, ..TaskStatus::default() };
        st.apply(400, now, &Command::ReportTasks { node_id: "a".into(), reports: vec![(id, status)] });
    };
    fail(&mut st, SEC);
    settle(&mut st, 2 * SEC, &mut ids);
    assert_eq!(st.tasks.values().filter(|t| t.wanted()).count(), 0, "within the delay, no replacement");
    settle(&mut st, 6 * SEC, &mut ids);
    assert_eq!(st.tasks.values().filter(|t| t.wanted()).count(), 1, "after it, one");
    fail(&mut st, 7 * SEC);
    settle(&mut st, 20 * SEC, &mut ids);
    assert_eq!(st.tasks.values().filter(|t| t.wanted()).count(), 1, "second attempt");
    fail(&mut st, 21 * SEC);
    settle(&mut st, 40 * SEC, &mut ids);
    assert_eq!(st.tasks.values().filter(|t| t.wanted()).count(), 0, "max attempts reached");

    // A task that completes is not restarted on-failure.
    let mut s = spec("once", ServiceMode::Replicated { replicas: 1 });
    s.task.restart.condition = RestartCondition::OnFailure;
    let mut st = state(&nodes, s);
    settle(&mut st, 0, &mut ids);
    let id = st.tasks.values().next().unwrap().id.clone();
    let done = TaskStatus { state: TaskState::Complete, timestamp: SEC, ..TaskStatus::default() };
    st.apply(500, SEC, &Command::ReportTasks { node_id: "a".into(), reports: vec![(id, done)] });
    settle(&mut st, 60 * SEC, &mut ids);
    assert_eq!(st.tasks.len(), 1);
}

#[test]
fn a_spec_change_rolls_through_one_task_at_a_time() {
    let nodes = [node("a", &[]), node("b", &[])];
    let mut st = state(&nodes, spec("web", ServiceMode::Replicated { replicas: 3 }));
    let mut ids = 0;
    settle(&mut st, SEC, &mut ids);
    report(&mut st, TaskState::Running, SEC);
    let mut s = st.services["svc"].spec.clone();
    s.task.container.image = "busybox:2".into();
    s.update.order = UpdateOrder::StartFirst;
    st.apply(600, 2 * SEC, &Command::UpdateService { id: "svc".into(), version: 1, spec: Box::new(s) });
    for round in 1..=3 {
        settle(&mut st, 2 * SEC, &mut ids);
        let new = st.tasks.values().filter(|t| t.spec.container.image == "busybox:2").count();
        assert_eq!(new, round, "one new task per round");
        assert_eq!(st.services["svc"].update_status.as_ref().unwrap().state, "updating");
        report(&mut st, TaskState::Running, 2 * SEC);
    }
    settle(&mut st, 3 * SEC, &mut ids);
    let wanted: Vec<&str> = st.tasks.values().filter(|t| t.wanted()).map(|t| t.spec.container.image.as_str()).collect();
    assert_eq!(wanted, vec!["busybox:2"; 3]);
    assert_eq!(st.services["svc"].update_status.as_ref().unwrap().state, "updating", "within --update-monitor");
    settle(&mut st, 7 * SEC, &mut ids);
    assert_eq!(st.services["svc"].update_status.as_ref().unwrap().state, "completed");
}

#[test]
fn global_services_follow_eligible_nodes_and_constraints_place_tasks() {
    let nodes = [node("a", &[("zone", "x")]), node("b", &[("zone", "y")])];
    let mut s = spec("agent", ServiceMode::Global);
    s.task.placement.constraints = vec!["node.labels.zone==x".into()];
    let mut st = state(&nodes, s);
    let mut ids = 0;
    settle(&mut st, SEC, &mut ids);
    assert_eq!(running_per_node(&st), BTreeMap::from([("a".to_string(), 1)]));
    st.nodes.get_mut("b").unwrap().spec.labels.insert("zone".into(), "x".into());
    settle(&mut st, SEC, &mut ids);
    assert_eq!(running_per_node(&st).len(), 2);
    let mut c = node("c", &[("zone", "x")]);
    c.spec.availability = Availability::Pause;
    st.nodes.insert("c".into(), c);
    settle(&mut st, SEC, &mut ids);
    assert_eq!(running_per_node(&st).len(), 2, "a paused node takes no new task");

    // Constraints no node meets leave a replicated task pending, with why.
    let mut s = spec("nowhere", ServiceMode::Replicated { replicas: 1 });
    s.task.placement.constraints = vec!["node.role==manager".into()];
    let mut st = state(&nodes, s);
    settle(&mut st, SEC, &mut ids);
    let t = st.tasks.values().next().unwrap();
    assert_eq!(t.status.state, TaskState::Pending);
    assert!(t.status.err.contains("scheduling constraints not satisfied on 2 nodes"), "{}", t.status.err);
}

#[test]
fn reservations_and_max_per_node_bound_placement() {
    let nodes = [node("a", &[]), node("b", &[])];
    let mut s = spec("big", ServiceMode::Replicated { replicas: 3 });
    s.task.resources.reserve_memory = 600 << 20;
    let mut st = state(&nodes, s);
    let mut ids = 0;
    settle(&mut st, SEC, &mut ids);
    let pending: Vec<_> = st.tasks.values().filter(|t| t.status.state == TaskState::Pending).collect();
    assert_eq!(pending.len(), 1);
    assert!(pending[0].status.err.contains("insufficient resources on 2 nodes"), "{}", pending[0].status.err);

    let mut s = spec("capped", ServiceMode::Replicated { replicas: 3 });
    s.task.placement.max_replicas = 1;
    let mut st = state(&nodes, s);
    settle(&mut st, SEC, &mut ids);
    assert_eq!(st.tasks.values().filter(|t| t.status.state == TaskState::Assigned).count(), 2);
}

#[test]
fn history_is_bounded_and_a_removed_service_leaves_nothing() {
    let nodes = [node("a", &[])];
    let mut s = spec("flappy", ServiceMode::Replicated { replicas: 1 });
    s.task.restart.delay_ns = 0;
    let mut st = state(&nodes, s);
    let mut ids = 0;
    for i in 0..8 {
        settle(&mut st, i * SEC, &mut ids);
        let id = st.tasks.values().find(|t| t.wanted()).unwrap().id.clone();
        let failed = TaskStatus { state: TaskState::Failed, timestamp: i * SEC, ..TaskStatus::default() };
        st.apply(700, i * SEC, &Command::ReportTasks { node_id: "a".into(), reports: vec![(id, failed)] });
    }
    settle(&mut st, 9 * SEC, &mut ids);
    assert_eq!(st.tasks.len(), 5, "the default history limit");
    st.apply(800, 10 * SEC, &Command::RemoveService { id: "svc".into() });
    report(&mut st, TaskState::Running, 10 * SEC);
    settle(&mut st, 10 * SEC, &mut ids);
    assert!(st.tasks.values().all(|t| t.desired_state == TaskState::Remove));
    let running: Vec<String> = st.tasks.values().filter(|t| !t.status.state.ended()).map(|t| t.id.clone()).collect();
    for id in running {
        let down = TaskStatus { state: TaskState::Shutdown, timestamp: 11 * SEC, ..TaskStatus::default() };
        st.apply(900, 11 * SEC, &Command::ReportTasks { node_id: "a".into(), reports: vec![(id, down)] });
    }
    settle(&mut st, 11 * SEC, &mut ids);
    assert!(st.tasks.is_empty());
}

#[test]
fn constraints_parse_and_match_as_docker_writes_them() {
    let n = node("abc", &[("zone", "East")]);
    assert!(Constraint::parse("node.labels.zone==east").unwrap().matches(&n));
    assert!(Constraint::parse("node.labels.zone != west").unwrap().matches(&n));
    assert!(!Constraint::parse("node.labels.rack==1").unwrap().matches(&n));
    assert!(Constraint::parse("node.labels.rack!=1").unwrap().matches(&n));
    assert!(Constraint::parse("node.role==worker").unwrap().matches(&n));
    assert!(Constraint::parse("node.hostname==host-abc").unwrap().matches(&n));
    assert!(Constraint::parse("node.platform.os==linux").unwrap().matches(&n));
    for bad in ["node.role=manager", "nodes.role==x", "node.labels.==x", "node.role==", ""] {
        assert!(Constraint::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn a_changed_change_list_never_regresses_a_status() {
    let nodes = [node("a", &[])];
    let mut st = state(&nodes, spec("web", ServiceMode::Replicated { replicas: 1 }));
    let mut ids = 0;
    settle(&mut st, SEC, &mut ids);
    report(&mut st, TaskState::Running, SEC);
    let id = st.tasks.keys().next().unwrap().clone();
    let back = TaskStatus { state: TaskState::Starting, timestamp: 2 * SEC, ..TaskStatus::default() };
    st.apply(1000, 2 * SEC, &Command::ReportTasks { node_id: "a".into(), reports: vec![(id.clone(), back.clone())] });
    assert_eq!(st.tasks[&id].status.state, TaskState::Running);
    // Nor does another node report it.
    let done = TaskStatus { state: TaskState::Complete, ..back };
    st.apply(1001, 2 * SEC, &Command::ReportTasks { node_id: "b".into(), reports: vec![(id.clone(), done)] });
    assert_eq!(st.tasks[&id].status.state, TaskState::Running);
    st.apply(
        1002,
        2 * SEC,
        &Command::Tasks { changes: vec![TaskChange::Desire { id: id.clone(), state: TaskState::Running }] },
    );
    assert_eq!(st.tasks[&id].desired_state, TaskState::Running);
}

#[test]
fn a_failing_update_rolls_back_or_pauses_as_configured() {
    use skiff_cluster::types::FailureAction;
    let nodes = [node("a", &[]), node("b", &[])];
    let mut st = state(&nodes, spec("web", ServiceMode::Replicated { replicas: 2 }));
    let mut ids = 0;
    settle(&mut st, SEC, &mut ids);
    report(&mut st, TaskState::Running, SEC);
    let good = st.services["svc"].spec.clone();
    let mut bad = good.clone();
    bad.task.container.args = vec!["false".into()];
    bad.update.failure_action = FailureAction::Rollback;
    st.apply(600, 2 * SEC, &Command::UpdateService { id: "svc".into(), version: 1, spec: Box::new(bad.clone()) });
    settle(&mut st, 2 * SEC, &mut ids);
    assert_eq!(st.services["svc"].update_status.as_ref().unwrap().state, "updating");
    // The first new task fails: the service goes back to the good spec, under the rollback config.
    let new = st.tasks.values().find(|t| t.spec == bad.task && t.wanted()).unwrap().clone();
    let failed = TaskStatus { state: TaskState::Failed, timestamp: 3 * SEC, exit_code: 1, ..TaskStatus::default() };
    st.apply(
        700,
        3 * SEC,
        &Command::ReportTasks { node_id: new.node_id.clone(), reports: vec![(new.id.clone(), failed)] },
    );
    settle(&mut st, 3 * SEC, &mut ids);
    let svc = &st.services["svc"];
    assert_eq!(svc.spec, good);
    assert_eq!(svc.update_status.as_ref().unwrap().state, "rollback_started");
    assert!(svc.update_status.as_ref().unwrap().message.contains(&new.id));
    // The failed slot is refilled after the restart delay; then the rollback is complete.
    settle(&mut st, 9 * SEC, &mut ids);
    report(&mut st, TaskState::Running, 9 * SEC);
    settle(&mut st, 14 * SEC, &mut ids);
    assert_eq!(st.services["svc"].update_status.as_ref().unwrap().state, "rollback_completed");
    assert!(st.tasks.values().filter(|t| t.wanted()).all(|t| t.spec == good.task));

    // Paused (the default): no further batch; a new update starts afresh.
    let mut bad2 = good.clone();
    bad2.task.container.args = vec!["false".into(), "2".into()];
    let v = st.services["svc"].version;
    st.apply(800, 15 * SEC, &Command::UpdateService { id: "svc".into(), version: v, spec: Box::new(bad2.clone()) });
    settle(&mut st, 15 * SEC, &mut ids);
    let new = st.tasks.values().find(|t| t.spec == bad2.task && t.wanted()).unwrap().clone();
    let failed = TaskStatus { state: TaskState::Rejected, timestamp: 11 * SEC, ..TaskStatus::default() };
    st.apply(
        900,
        11 * SEC,
        &Command::ReportTasks { node_id: new.node_id.clone(), reports: vec![(new.id.clone(), failed)] },
    );
    settle(&mut st, 40 * SEC, &mut ids);
    let u = st.services["svc"].update_status.clone().unwrap();
    assert_eq!(u.state, "paused", "{u:?}");
    let old_left = st.tasks.values().filter(|t| t.wanted() && t.spec == good.task).count();
    assert_eq!(old_left, 1, "the other slot keeps the old spec while paused");
}

#[test]
fn a_failure_after_the_monitor_period_does_not_count_against_the_update() {
    use skiff_cluster::types::FailureAction;
    let nodes = [node("a", &[])];
    let mut st = state(&nodes, spec("web", ServiceMode::Replicated { replicas: 1 }));
    let mut ids = 0;
    settle(&mut st, SEC, &mut ids);
    report(&mut st, TaskState::Running, SEC);
    let mut next = st.services["svc"].spec.clone();
    next.task.container.args = vec!["v2".into()];
    next.update.failure_action = FailureAction::Rollback;
    next.update.monitor_ns = 2 * SEC;
    st.apply(600, 2 * SEC, &Command::UpdateService { id: "svc".into(), version: 1, spec: Box::new(next.clone()) });
    settle(&mut st, 2 * SEC, &mut ids);
    report(&mut st, TaskState::Running, 3 * SEC);
    let t = st.tasks.values().find(|t| t.wanted() && t.spec == next.task).unwrap().clone();
    // Ran 10 s, past the 2 s monitor, then failed: the update stands.
    let failed =
        TaskStatus { state: TaskState::Failed, timestamp: 13 * SEC, started_at: 3 * SEC, ..TaskStatus::default() };
    st.apply(700, 13 * SEC, &Command::ReportTasks { node_id: "a".into(), reports: vec![(t.id, failed)] });
    settle(&mut st, 13 * SEC, &mut ids);
    assert_eq!(st.services["svc"].spec, next);
    assert_ne!(st.services["svc"].update_status.as_ref().unwrap().state, "rollback_started");
}
