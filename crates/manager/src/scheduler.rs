//! The scheduler (swarmkit's `scheduler`): places new tasks on nodes. A node must be ready,
//! active, satisfy the task's constraints and platforms, have room for its reservations and for
//! one more of the service's tasks (`--replicas-max-per-node`); of those, the spread
//! preferences' least-used group wins, then the node with fewest of the service's tasks, then
//! fewest tasks overall. A task no node fits stays `pending` with why.
//!
//! A pure function of the state, so that it is tested without a cluster.

use std::collections::HashMap;

use skiff_cluster::types::{Availability, ClusterState, Node, NodeState, StoredRole, Task, TaskChange, TaskState};

/// A placement constraint: `KEY==VALUE` or `KEY!=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    pub key: String,
    pub equal: bool,
    pub value: String,
}

impl Constraint {
    /// Parses one as `docker service create --constraint` takes it.
    pub fn parse(s: &str) -> Result<Constraint, String> {
        let (key, equal, value) = if let Some((k, v)) = s.split_once("!=") {
            (k, false, v)
        } else if let Some((k, v)) = s.split_once("==") {
            (k, true, v)
        } else {
            return Err(format!("constraint expected one operator from ==, !=: {s:?}"));
        };
        let key = key.trim();
        let value = value.trim();
        let known = ["node.id", "node.hostname", "node.role", "node.platform.os", "node.platform.arch"];
        if !(known.contains(&key.to_ascii_lowercase().as_str())
            || key.strip_prefix("node.labels.").is_some_and(|l| !l.is_empty())
            || key.strip_prefix("engine.labels.").is_some_and(|l| !l.is_empty()))
        {
            return Err(format!("invalid constraint key {key:?} in {s:?}"));
        }
        if value.is_empty() {
            return Err(format!("constraint {s:?} has no value"));
        }
        Ok(Constraint { key: key.to_string(), equal, value: value.to_string() })
    }

    /// Whether `node` satisfies it (values compare case-insensitively, as swarmkit's do; a
    /// label the node lacks satisfies only `!=`).
    pub fn matches(&self, node: &Node) -> bool {
        let lower = self.key.to_ascii_lowercase();
        let actual: Option<String> = match lower.as_str() {
            "node.id" => Some(node.id.clone()),
            "node.hostname" => Some(node.description.hostname.clone()),
            "node.role" => Some(
                match node.spec.role {
                    StoredRole::Manager => "manager",
                    StoredRole::Worker => "worker",
                }
                .into(),
            ),
            "node.platform.os" => Some(node.description.os.clone()),
            "node.platform.arch" => Some(node.description.architecture.clone()),
            _ => {
                if let Some(l) = self.key.strip_prefix("node.labels.") {
                    node.spec.labels.get(l).cloned()
                } else if let Some(l) = self.key.strip_prefix("engine.labels.") {
                    node.description.engine_labels.get(l).cloned()
                } else {
                    None
                }
            }
        };
        match actual {
            Some(a) => a.eq_ignore_ascii_case(&self.value) == self.equal,
            None => !self.equal,
        }
    }
}

/// The value of a spread descriptor (`node.labels.zone`, `node.id`, …) on `node`; nodes without
/// it form a group of their own.
fn spread_value(descriptor: &str, node: &Node) -> String {
    if let Some(l) = descriptor.strip_prefix("node.labels.") {
        return node.spec.labels.get(l).cloned().unwrap_or_default();
    }
    if let Some(l) = descriptor.strip_prefix("engine.labels.") {
        return node.description.engine_labels.get(l).cloned().unwrap_or_default();
    }
    match descriptor {
        "node.id" => node.id.clone(),
        "node.hostname" => node.description.hostname.clone(),
        _ => String::new(),
    }
}

/// What runs where, counted once per pass and kept up to date as tasks are placed.
#[derive(Default)]
struct Load {
    /// Tasks (of any service) per node.
    total: HashMap<String, usize>,
    /// Tasks per (service, node).
    of_service: HashMap<(String, String), usize>,
    /// Reserved nano-CPUs and memory per node.
    reserved: HashMap<String, (i64, i64)>,
}

impl Load {
    fn of(state: &ClusterState) -> Load {
        let mut l = Load::default();
        for t in state.tasks.values().filter(|t| t.wanted() && !t.node_id.is_empty() && !t.status.state.ended()) {
            l.add(t, &t.node_id);
        }
        l
    }

    fn add(&mut self, t: &Task, node: &str) {
        *self.total.entry(node.to_string()).or_default() += 1;
        *self.of_service.entry((t.service_id.clone(), node.to_string())).or_default() += 1;
        let r = self.reserved.entry(node.to_string()).or_default();
        r.0 += t.spec.resources.reserve_nano_cpus;
        r.1 += t.spec.resources.reserve_memory;
    }
}

/// Why a node cannot take a task, if it cannot.
fn refuse(t: &Task, n: &Node, load: &Load) -> Option<&'static str> {
    if n.state != NodeState::Ready || n.spec.availability != Availability::Active {
        return Some("unavailable");
    }
    let placement = &t.spec.placement;
    if !placement.constraints.iter().filter_map(|c| Constraint::parse(c).ok()).all(|c| c.matches(n)) {
        return Some("scheduling constraints not satisfied");
    }
    if !placement.platforms.is_empty()
        && !placement.platforms.iter().any(|(os, arch)| {
            (os.is_empty() || os.eq_ignore_ascii_case(&n.description.os))
                && (arch.is_empty() || arch_matches(arch, &n.description.architecture))
        })
    {
        return Some("unsupported platform");
    }
    let (cpus, mem) = load.reserved.get(&n.id).copied().unwrap_or_default();
    let res = &t.spec.resources;
    if (res.reserve_nano_cpus > 0 && cpus + res.reserve_nano_cpus > n.description.nano_cpus)
        || (res.reserve_memory > 0 && mem + res.reserve_memory > n.description.memory_bytes)
    {
        return Some("insufficient resources");
    }
    if placement.max_replicas > 0
        && load.of_service.get(&(t.service_id.clone(), n.id.clone())).copied().unwrap_or(0) as u64
            >= placement.max_replicas
    {
        return Some("max replicas per node limit exceed");
    }
    None
}

/// Images name Go's architectures (amd64); nodes report the kernel's (x86_64).
fn arch_matches(want: &str, node: &str) -> bool {
    let norm = |a: &str| match a.to_ascii_lowercase().as_str() {
        "x86_64" | "amd64" => "amd64".to_string(),
        "aarch64" | "arm64" => "arm64".to_string(),
        other => other.to_string(),
    };
    norm(want) == norm(node)
}

/// Places every task that waits for a node: `Assign`s, and `Pending`s for those no node fits
/// (only when the reason changed, so that a waiting task is not rewritten each pass).
pub fn schedule(state: &ClusterState) -> Vec<TaskChange> {
    let mut load = Load::of(state);
    let mut changes = Vec::new();
    let waiting = state.tasks.values().filter(|t| {
        t.desired_state == TaskState::Running
            && t.status.state <= TaskState::Pending
            && state.services.contains_key(&t.service_id)
    });
    for t in waiting {
        let candidates: Vec<&Node> = match t.node_id.as_str() {
            // A global service's task is made for one node.
            "" => state.nodes.values().collect(),
            id => state.nodes.get(id).into_iter().collect(),
        };
        let mut refusals: HashMap<&'static str, usize> = HashMap::new();
        let fit: Vec<&Node> = candidates
            .into_iter()
            .filter(|n| match refuse(t, n, &load) {
                Some(why) => {
                    *refusals.entry(why).or_default() += 1;
                    false
                }
                None => true,
            })
            .collect();
        let best = fit.into_iter().min_by_key(|n| {
            let spread: Vec<usize> = t
                .spec
                .placement
                .spread
                .iter()
                .map(|d| {
                    let v = spread_value(d, n);
                    state
                        .nodes
                        .values()
                        .filter(|o| spread_value(d, o) == v)
                        .map(|o| load.of_service.get(&(t.service_id.clone(), o.id.clone())).copied().unwrap_or(0))
                        .sum()
                })
                .collect();
            let mine = load.of_service.get(&(t.service_id.clone(), n.id.clone())).copied().unwrap_or(0);
            (spread, mine, load.total.get(&n.id).copied().unwrap_or(0), n.id.clone())
        });
        match best {
            Some(n) => {
                load.add(t, &n.id);
                changes.push(TaskChange::Assign { id: t.id.clone(), node_id: n.id.clone() });
            }
            None => {
                let mut why: Vec<String> = refusals
                    .into_iter()
                    .map(|(w, n)| format!("{w} on {n} node{}", if n == 1 { "" } else { "s" }))
                    .collect();
                why.sort();
                let message = if why.is_empty() {
                    "no suitable node".to_string()
                } else {
                    format!("no suitable node ({})", why.join("; "))
                };
                if t.status.state != TaskState::Pending || t.status.err != message {
                    changes.push(TaskChange::Pending { id: t.id.clone(), message });
                }
            }
        }
    }
    changes
}
