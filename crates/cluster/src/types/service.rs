//! Services and their tasks (swarmkit's `Service` and `Task` objects): what an operator asks
//! for, and the units the orchestrator makes of it, the scheduler places and agents run.
//!
//! A task's lifecycle is swarmkit's: the orchestrator creates it (`new`), the scheduler places it
//! (`pending` while no node fits, then `assigned`), the node's agent runs it (`accepted`,
//! `preparing`, `starting`, `running`) until it ends (`complete`, `failed`, `rejected`) or is
//! stopped (`shutdown`). Its *desired* state is the managers' wish (`running`, then `shutdown`
//! or `remove`); its *status* is what the node reports, and only moves forward.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A task's state, in lifecycle order (comparisons follow it: anything past `Running` has
/// ended).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    #[default]
    New,
    Pending,
    Assigned,
    Accepted,
    Preparing,
    Ready,
    Starting,
    Running,
    Complete,
    Shutdown,
    Failed,
    Rejected,
    Remove,
    Orphaned,
}

impl TaskState {
    /// The Engine API's name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::New => "new",
            TaskState::Pending => "pending",
            TaskState::Assigned => "assigned",
            TaskState::Accepted => "accepted",
            TaskState::Preparing => "preparing",
            TaskState::Ready => "ready",
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Complete => "complete",
            TaskState::Shutdown => "shutdown",
            TaskState::Failed => "failed",
            TaskState::Rejected => "rejected",
            TaskState::Remove => "remove",
            TaskState::Orphaned => "orphaned",
        }
    }

    /// Whether a task in this state has stopped running for good.
    pub fn ended(self) -> bool {
        self > TaskState::Running
    }
}

/// Whether a service runs a number of replicas or one task per eligible node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum ServiceMode {
    Replicated { replicas: u64 },
    Global,
}

/// When a task that ended is replaced (`--restart-condition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RestartCondition {
    None,
    OnFailure,
    #[default]
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    pub condition: RestartCondition,
    /// Nanoseconds between a task's end and its replacement (default 5 s).
    pub delay_ns: i64,
    /// Replacements per window; 0: unlimited.
    pub max_attempts: u64,
    /// Nanoseconds the attempts are counted over; 0: forever.
    pub window_ns: i64,
}

impl Default for RestartPolicy {
    fn default() -> RestartPolicy {
        RestartPolicy { condition: RestartCondition::Any, delay_ns: 5_000_000_000, max_attempts: 0, window_ns: 0 }
    }
}

/// Where tasks may run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Placement {
    /// `node.role==manager`, `node.labels.zone!=b`, … (checked at create/update).
    #[serde(default)]
    pub constraints: Vec<String>,
    /// Spread descriptors (`node.labels.zone`), in order.
    #[serde(default)]
    pub spread: Vec<String>,
    /// Tasks of the service per node; 0: unlimited.
    #[serde(default)]
    pub max_replicas: u64,
    /// `(os, architecture)` pairs the image runs on; empty: any.
    #[serde(default)]
    pub platforms: Vec<(String, String)>,
}

/// Limits (enforced by the node's engine) and reservations (honoured by the scheduler).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Resources {
    pub limit_nano_cpus: i64,
    pub limit_memory: i64,
    #[serde(default)]
    pub limit_pids: i64,
    pub reserve_nano_cpus: i64,
    pub reserve_memory: i64,
}

/// A mount in a task's container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    /// `bind`, `volume` or `tmpfs`.
    pub kind: String,
    #[serde(default)]
    pub source: String,
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
}

/// A container's health check, in nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HealthCheck {
    pub test: Vec<String>,
    pub interval_ns: i64,
    pub timeout_ns: i64,
    pub retries: i64,
    pub start_period_ns: i64,
}

/// What a task's container runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ContainerSpec {
    pub image: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub args: Vec<String>,
    /// May hold templates (`{{.Task.Slot}}`, `{{.Node.Hostname}}`), expanded on the node.
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub dir: String,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub open_stdin: bool,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub mounts: Vec<MountSpec>,
    #[serde(default)]
    pub stop_signal: String,
    /// Nanoseconds between the stop signal and SIGKILL (`--stop-grace-period`, default 10 s).
    #[serde(default)]
    pub stop_grace_period_ns: Option<i64>,
    #[serde(default)]
    pub healthcheck: Option<HealthCheck>,
    /// `host:ip` lines for /etc/hosts.
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub init: Option<bool>,
    #[serde(default)]
    pub sysctls: BTreeMap<String, String>,
    #[serde(default)]
    pub cap_add: Vec<String>,
    #[serde(default)]
    pub cap_drop: Vec<String>,
    /// Secrets and configs the container gets as files.
    #[serde(default)]
    pub secrets: Vec<super::FileRef>,
    #[serde(default)]
    pub configs: Vec<super::FileRef>,
}

/// How a port is published: on every node through the routing mesh, or on the task's node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PublishMode {
    Ingress,
    /// The default of records written before the routing mesh, which had host mode only.
    #[default]
    Host,
}

/// A port a service publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortConfig {
    #[serde(default)]
    pub name: String,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    pub target_port: u16,
    /// 0: chosen — by the managers (30000–32767) in ingress mode, by the node in host mode.
    pub published_port: u16,
    #[serde(default)]
    pub mode: PublishMode,
}

/// What each task of a service is made from; a change to it replaces the tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TaskSpec {
    pub container: ContainerSpec,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub restart: RestartPolicy,
    #[serde(default)]
    pub placement: Placement,
    /// Bumped by `service update --force`.
    #[serde(default)]
    pub force_update: u64,
    /// Log driver name and options; none: the node's default.
    #[serde(default)]
    pub log_driver: Option<(String, BTreeMap<String, String>)>,
    /// Published ports (host mode), with the service's.
    #[serde(default)]
    pub ports: Vec<PortConfig>,
    /// `--with-registry-auth`: the client's registry credentials (as its `X-Registry-Auth`
    /// header), for the nodes that pull the image; never shown by inspect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_auth: Option<RegistryAuth>,
    /// The overlay networks its tasks join (`--network`).
    #[serde(default)]
    pub networks: Vec<super::NetworkAttachmentSpec>,
}

/// Registry credentials as the docker CLI encodes them (`Debug` does not show them).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RegistryAuth(pub String);

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegistryAuth(..)")
    }
}

/// How tasks are replaced when the spec changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    #[default]
    StopFirst,
    StartFirst,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FailureAction {
    #[default]
    Pause,
    Continue,
    Rollback,
}

/// `--update-*` (and `--rollback-*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateConfig {
    /// Tasks replaced at once; 0: all.
    pub parallelism: u64,
    pub delay_ns: i64,
    pub failure_action: FailureAction,
    /// How long a new task is watched for failure (default 5 s).
    pub monitor_ns: i64,
    /// Failed new tasks tolerated, in millionths of the tasks updated.
    pub max_failure_ratio_ppm: u32,
    pub order: UpdateOrder,
}

impl Default for UpdateConfig {
    fn default() -> UpdateConfig {
        UpdateConfig {
            parallelism: 1,
            delay_ns: 0,
            failure_action: FailureAction::Pause,
            monitor_ns: 5_000_000_000,
            max_failure_ratio_ppm: 0,
            order: UpdateOrder::StopFirst,
        }
    }
}

/// How a service's name resolves on its networks: to one virtual IP the nodes balance over its
/// tasks (`vip`, the default), or to the tasks' own addresses (`dnsrr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EndpointMode {
    #[default]
    Vip,
    Dnsrr,
}

/// What an operator sets on a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub task: TaskSpec,
    pub mode: ServiceMode,
    #[serde(default)]
    pub update: UpdateConfig,
    #[serde(default)]
    pub rollback: UpdateConfig,
    #[serde(default)]
    pub endpoint_mode: EndpointMode,
}

/// Where a service's rolling update stands (the API's `UpdateStatus`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateStatus {
    /// `updating`, `paused`, `completed`, `rollback_started`, `rollback_paused`,
    /// `rollback_completed`.
    pub state: String,
    pub started_at: i64,
    #[serde(default)]
    pub completed_at: i64,
    #[serde(default)]
    pub message: String,
}

/// A service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub id: String,
    pub version: u64,
    pub created_at: i64,
    pub updated_at: i64,
    pub spec: ServiceSpec,
    /// The spec before the last update (`service rollback` returns to it).
    #[serde(default)]
    pub previous_spec: Option<ServiceSpec>,
    #[serde(default)]
    pub update_status: Option<UpdateStatus>,
    /// The ingress ports as allocated (published ports chosen where the spec left 0).
    #[serde(default)]
    pub endpoint_ports: Vec<PortConfig>,
    /// Its virtual IP on each of its networks (VIP mode).
    #[serde(default)]
    pub vips: BTreeMap<String, std::net::Ipv4Addr>,
}

impl Service {
    /// A service as it is created (versions and times are the log's, set when applied).
    pub fn new(id: &str, spec: ServiceSpec) -> Service {
        Service {
            id: id.to_string(),
            version: 0,
            created_at: 0,
            updated_at: 0,
            spec,
            previous_spec: None,
            update_status: None,
            endpoint_ports: Vec::new(),
            vips: BTreeMap::new(),
        }
    }
}

/// What a node reports about a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TaskStatus {
    pub state: TaskState,
    /// Unix nanoseconds of the change.
    pub timestamp: i64,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub err: String,
    #[serde(default)]
    pub container_id: String,
    #[serde(default)]
    pub pid: i64,
    #[serde(default)]
    pub exit_code: i64,
    /// Host ports the task's published ports got.
    #[serde(default)]
    pub ports: Vec<PortConfig>,
    /// Unix nanoseconds when it began running (carried in every later report; 0: never ran):
    /// what `--update-monitor` measures from.
    #[serde(default)]
    pub started_at: i64,
}

/// One unit of a service, on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub version: u64,
    pub created_at: i64,
    pub updated_at: i64,
    pub service_id: String,
    pub service_name: String,
    /// The replica's number (1-based); 0 for a global service's tasks.
    pub slot: u64,
    /// Where it runs; empty until scheduled.
    #[serde(default)]
    pub node_id: String,
    pub spec: TaskSpec,
    /// The service version the spec was taken from.
    pub spec_version: u64,
    pub desired_state: TaskState,
    pub status: TaskStatus,
    /// Its addresses on its networks (allocated when it is created).
    #[serde(default)]
    pub networks: Vec<super::TaskAddress>,
}

impl Task {
    /// The name its container gets: `SERVICE.SLOT.ID`, or `SERVICE.NODE.ID` for global ones.
    pub fn name(&self) -> String {
        if self.slot == 0 {
            format!("{}.{}.{}", self.service_name, self.node_id, self.id)
        } else {
            format!("{}.{}.{}", self.service_name, self.slot, self.id)
        }
    }

    /// Whether the managers still want it to run (a replacement waits while it does).
    pub fn wanted(&self) -> bool {
        self.desired_state <= TaskState::Running
    }
}

/// A change the orchestrator or scheduler makes to a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum TaskChange {
    Create {
        task: Box<Task>,
    },
    /// Placed on a node (status `assigned`).
    Assign {
        id: String,
        node_id: String,
    },
    /// No node fits yet (status `pending`, with why).
    Pending {
        id: String,
        message: String,
    },
    /// The managers no longer want it running.
    Desire {
        id: String,
        state: TaskState,
    },
    /// A node's report that can never come (the node is gone): the status as the managers set it.
    Status {
        id: String,
        status: TaskStatus,
    },
    Delete {
        id: String,
    },
}

impl super::ClusterState {
    /// Applies a service or task command (see [`super::Command`]).
    pub(super) fn apply_service(&mut self, index: u64, now: i64, cmd: &super::Command) -> Result<(), String> {
        use super::Command;
        match cmd {
            Command::CreateService { service } => {
                if self.services.values().any(|s| s.spec.name == service.spec.name) {
                    return Err(format!(
                        "rpc error: code = AlreadyExists desc = name conflicts with an existing object: service {} already exists",
                        service.spec.name
                    ));
                }
                if self.services.contains_key(&service.id) {
                    return Err(format!("service {} already exists", service.id));
                }
                self.check_networks(&service.spec.task)?;
                let ports = self.ingress_ports(&service.id, &service.spec, &[])?;
                let vips = self.plan_vips(&service.spec, &BTreeMap::new())?;
                self.commit_vips(&vips, &BTreeMap::new());
                let mut s = (**service).clone();
                (s.endpoint_ports, s.vips) = (ports, vips);
                (s.version, s.created_at, s.updated_at) = (index, now, now);
                self.services.insert(s.id.clone(), s);
            }
            Command::UpdateService { id, version, spec } => {
                if self.services.values().any(|s| s.spec.name == spec.name && s.id != *id) {
                    return Err(format!(
                        "rpc error: code = AlreadyExists desc = name conflicts with an existing object: service {} already exists",
                        spec.name
                    ));
                }
                self.check_networks(&spec.task)?;
                let current = self.services.get(id).ok_or_else(|| format!("service {id} not found"))?;
                if current.version != *version {
                    return Err("rpc error: code = Unknown desc = update out of sequence".into());
                }
                let (old_ports, old_vips) = (current.endpoint_ports.clone(), current.vips.clone());
                let ports = self.ingress_ports(id, spec, &old_ports)?;
                let vips = self.plan_vips(spec, &old_vips)?;
                self.commit_vips(&vips, &old_vips);
                let s = self.services.get_mut(id).ok_or_else(|| format!("service {id} not found"))?;
                (s.endpoint_ports, s.vips) = (ports, vips);
                if s.spec.task != spec.task {
                    // A new rollout: the last one's status goes.
                    s.update_status = None;
                }
                s.previous_spec = Some(std::mem::replace(&mut s.spec, (**spec).clone()));
                (s.version, s.updated_at) = (index, now);
            }
            Command::RollbackService { id, version, message } => {
                let s = self.services.get(id).ok_or_else(|| format!("service {id} not found"))?;
                if version.is_some_and(|v| v != s.version) {
                    return Err("rpc error: code = Unknown desc = update out of sequence".into());
                }
                let previous = s.previous_spec.clone().ok_or_else(|| {
                    format!("rpc error: code = FailedPrecondition desc = service {id} does not have a previous spec")
                })?;
                // Checked before anything changes: a command applies whole or not at all.
                let ports = self.ingress_ports(id, &previous, &s.endpoint_ports)?;
                let old_vips = s.vips.clone();
                let vips = self.plan_vips(&previous, &old_vips)?;
                self.commit_vips(&vips, &old_vips);
                let s = self.services.get_mut(id).ok_or_else(|| format!("service {id} not found"))?;
                s.previous_spec = Some(std::mem::replace(&mut s.spec, previous));
                (s.endpoint_ports, s.vips) = (ports, vips);
                s.update_status = Some(UpdateStatus {
                    state: "rollback_started".into(),
                    started_at: now,
                    completed_at: 0,
                    message: message.clone(),
                });
                (s.version, s.updated_at) = (index, now);
            }
            Command::RemoveService { id } => {
                self.services.remove(id).ok_or_else(|| format!("service {id} not found"))?;
                for t in self.tasks.values_mut().filter(|t| t.service_id == *id) {
                    t.desired_state = TaskState::Remove;
                    (t.version, t.updated_at) = (index, now);
                }
            }
            Command::Tasks { changes } => {
                for c in changes {
                    self.apply_task_change(index, now, c);
                }
            }
            Command::ReportTasks { node_id, reports } => {
                for (id, status) in reports {
                    let Some(t) = self.tasks.get_mut(id) else { continue };
                    // Only the node the task is on reports it, and a status only moves forward.
                    if t.node_id != *node_id || status.state < t.status.state {
                        continue;
                    }
                    t.status = status.clone();
                    (t.version, t.updated_at) = (index, now);
                }
            }
            Command::ServiceUpdateStatus { id, status } => {
                let s = self.services.get_mut(id).ok_or_else(|| format!("service {id} not found"))?;
                s.update_status = status.clone();
            }
            _ => return Err("not a service command".into()),
        }
        Ok(())
    }

    /// Refuses a task spec naming a network that does not exist.
    fn check_networks(&self, spec: &TaskSpec) -> Result<(), String> {
        match spec.networks.iter().find(|a| !self.networks.contains_key(&a.target)) {
            Some(a) => Err(format!("rpc error: code = NotFound desc = network {} not found", a.target)),
            None => Ok(()),
        }
    }

    /// One orchestrator or scheduler change; a change to a task that is gone is dropped (the
    /// next pass decides again).
    fn apply_task_change(&mut self, index: u64, now: i64, c: &TaskChange) {
        match c {
            TaskChange::Create { task } => {
                if self.tasks.contains_key(&task.id) {
                    return;
                }
                let mut t = (**task).clone();
                (t.version, t.created_at, t.updated_at) = (index, now, now);
                t.status.timestamp = now;
                t.networks.clear();
                let mut nets: Vec<String> = t.spec.networks.iter().map(|a| a.target.clone()).collect();
                // Tasks of a service publishing through the routing mesh are on the ingress.
                if t.spec.ports.iter().any(|p| p.mode == PublishMode::Ingress)
                    && let Some(ingress) = self.networks.values().find(|n| n.spec.ingress)
                {
                    nets.push(ingress.id.clone());
                }
                for target in &nets {
                    // A network removed since the service named it: the task goes without (its
                    // node rejects it, and the orchestrator tries again).
                    if let Ok((addr, prefix)) = self.allocate_on(target) {
                        t.networks.push(super::TaskAddress { network_id: target.clone(), addr, prefix });
                    }
                }
                if !t.node_id.is_empty() {
                    let nets: Vec<String> = t.networks.iter().map(|a| a.network_id.clone()).collect();
                    self.allocate_node_addrs(&t.node_id.clone(), &nets);
                }
                self.tasks.insert(t.id.clone(), t);
            }
            TaskChange::Delete { id } => {
                self.tasks.remove(id);
            }
            TaskChange::Assign { id, node_id } => {
                let Some(t) = self.tasks.get_mut(id) else { return };
                // A global service's task comes made for its node.
                if (!t.node_id.is_empty() && t.node_id != *node_id) || t.status.state > TaskState::Pending {
                    return;
                }
                t.node_id = node_id.clone();
                t.status = TaskStatus {
                    state: TaskState::Assigned,
                    timestamp: now,
                    message: "scheduler assigned task to node".into(),
                    ..TaskStatus::default()
                };
                (t.version, t.updated_at) = (index, now);
                let nets: Vec<String> = t.networks.iter().map(|a| a.network_id.clone()).collect();
                self.allocate_node_addrs(node_id, &nets);
            }
            TaskChange::Pending { id, message } => {
                let Some(t) = self.tasks.get_mut(id) else { return };
                if t.status.state > TaskState::Pending {
                    return;
                }
                t.status = TaskStatus {
                    state: TaskState::Pending,
                    timestamp: now,
                    err: message.clone(),
                    message: "pending task scheduling".into(),
                    ..TaskStatus::default()
                };
                (t.version, t.updated_at) = (index, now);
            }
            TaskChange::Desire { id, state } => {
                let Some(t) = self.tasks.get_mut(id) else { return };
                if *state > t.desired_state {
                    t.desired_state = *state;
                    (t.version, t.updated_at) = (index, now);
                }
            }
            TaskChange::Status { id, status } => {
                let Some(t) = self.tasks.get_mut(id) else { return };
                if status.state >= t.status.state {
                    t.status = TaskStatus { timestamp: now, ..status.clone() };
                    (t.version, t.updated_at) = (index, now);
                }
            }
        }
    }
}
