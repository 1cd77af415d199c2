//! The Engine API's services and tasks over skiff's cluster types: the one place the API's
//! `ServiceSpec`/`Service`/`Task` shapes meet `skiff_cluster::types`. What skiff cannot do yet
//! (job modes, attachment driver options) is refused with words, not dropped. Network targets
//! come out as the request names them; `swarm_api` resolves them to IDs.

use std::collections::{BTreeMap, HashMap};

use bollard_stubs::models::{
    ContainerStatus, EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum,
    EndpointSpec, EndpointSpecModeEnum, HealthConfig, Limit, Mount, MountTypeEnum, ObjectVersion, Platform, PortStatus,
    ResourceObject, Service, ServiceEndpoint, ServiceServiceStatus, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, ServiceSpecRollbackConfig, ServiceSpecUpdateConfig,
    ServiceSpecUpdateConfigFailureActionEnum, ServiceSpecUpdateConfigOrderEnum, ServiceUpdateStatus,
    ServiceUpdateStatusStateEnum, Task, TaskSpec, TaskSpecContainerSpec, TaskSpecContainerSpecConfigs,
    TaskSpecContainerSpecFile, TaskSpecContainerSpecFile1, TaskSpecContainerSpecSecrets, TaskSpecLogDriver,
    TaskSpecPlacement, TaskSpecPlacementPreferences, TaskSpecPlacementSpread, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum, TaskState, TaskStatus,
};
use skiff_cluster::types::{self as ct};
use skiff_common::timefmt::format_unix_nanos as time;
use skiff_engine::{EngineError, Result};

fn unsupported(what: impl std::fmt::Display) -> EngineError {
    EngineError::invalid(format!("rpc error: code = InvalidArgument desc = {what}"))
}

fn update_from_api(u: Option<ServiceSpecUpdateConfig>) -> ct::UpdateConfig {
    let d = ct::UpdateConfig::default();
    let Some(u) = u else { return d };
    ct::UpdateConfig {
        parallelism: u.parallelism.map_or(d.parallelism, |p| p.max(0) as u64),
        delay_ns: u.delay.unwrap_or(d.delay_ns).max(0),
        failure_action: match u.failure_action {
            Some(ServiceSpecUpdateConfigFailureActionEnum::CONTINUE) => ct::FailureAction::Continue,
            Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK) => ct::FailureAction::Rollback,
            _ => ct::FailureAction::Pause,
        },
        monitor_ns: u.monitor.filter(|m| *m > 0).unwrap_or(d.monitor_ns),
        max_failure_ratio_ppm: (u.max_failure_ratio.unwrap_or(0.0).clamp(0.0, 1.0) * 1e6) as u32,
        order: match u.order {
            Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST) => ct::UpdateOrder::StartFirst,
            _ => ct::UpdateOrder::StopFirst,
        },
    }
}

fn update_to_api(u: &ct::UpdateConfig) -> ServiceSpecUpdateConfig {
    ServiceSpecUpdateConfig {
        parallelism: Some(u.parallelism as i64),
        delay: Some(u.delay_ns),
        failure_action: Some(match u.failure_action {
            ct::FailureAction::Pause => ServiceSpecUpdateConfigFailureActionEnum::PAUSE,
            ct::FailureAction::Continue => ServiceSpecUpdateConfigFailureActionEnum::CONTINUE,
            ct::FailureAction::Rollback => ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK,
        }),
        monitor: Some(u.monitor_ns),
        max_failure_ratio: Some(f64::from(u.max_failure_ratio_ppm) / 1e6),
        order: Some(match u.order {
            ct::UpdateOrder::StopFirst => ServiceSpecUpdateConfigOrderEnum::STOP_FIRST,
            ct::UpdateOrder::StartFirst => ServiceSpecUpdateConfigOrderEnum::START_FIRST,
        }),
    }
}

/// The rollback config has the update config's shape under another name.
fn rollback_as_update(r: Option<ServiceSpecRollbackConfig>) -> Option<ServiceSpecUpdateConfig> {
    r.and_then(|r| serde_json::to_value(r).ok()).and_then(|v| serde_json::from_value(v).ok())
}

fn update_as_rollback(u: ServiceSpecUpdateConfig) -> Option<ServiceSpecRollbackConfig> {
    serde_json::to_value(u).ok().and_then(|v| serde_json::from_value(v).ok())
}

/// A secret's or config's file as the API gives it: (target, uid, gid, mode).
type ApiFile = (Option<String>, Option<String>, Option<String>, Option<u32>);

fn file_ref(kind: &str, id: Option<String>, name: Option<String>, f: ApiFile) -> Result<ct::FileRef> {
    let id = id.filter(|i| !i.is_empty()).ok_or_else(|| unsupported(format!("{kind} reference without an ID")))?;
    let name = name.unwrap_or_default();
    let num = |v: Option<String>, what: &str| -> Result<u32> {
        match v.filter(|v| !v.is_empty()) {
            None => Ok(0),
            Some(v) => v.parse().map_err(|_| unsupported(format!("{kind} {name}: {what} {v:?} is not a number"))),
        }
    };
    Ok(ct::FileRef {
        target: f.0.filter(|t| !t.is_empty()).unwrap_or_else(|| name.clone()),
        uid: num(f.1, "uid")?,
        gid: num(f.2, "gid")?,
        mode: f.3.unwrap_or(0o444),
        id,
        name,
    })
}

fn refs_from_api(c: &mut TaskSpecContainerSpec) -> Result<(Vec<ct::FileRef>, Vec<ct::FileRef>)> {
    let secrets = c
        .secrets
        .take()
        .unwrap_or_default()
        .into_iter()
        .map(|s| {
            let f = s.file.map(|f| (f.name, f.uid, f.gid, f.mode)).unwrap_or_default();
            file_ref("secret", s.secret_id, s.secret_name, f)
        })
        .collect::<Result<Vec<_>>>()?;
    let configs = c
        .configs
        .take()
        .unwrap_or_default()
        .into_iter()
        .map(|s| {
            if s.runtime.is_some() {
                return Err(unsupported("runtime configs (credential specs) are not supported"));
            }
            let f = s.file.map(|f| (f.name, f.uid, f.gid, f.mode)).unwrap_or_default();
            file_ref("config", s.config_id, s.config_name, f)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((secrets, configs))
}

fn refs_to_api(
    c: &ct::ContainerSpec,
) -> (Option<Vec<TaskSpecContainerSpecSecrets>>, Option<Vec<TaskSpecContainerSpecConfigs>>) {
    let s = c.secrets.iter().map(|r| TaskSpecContainerSpecSecrets {
        file: Some(TaskSpecContainerSpecFile {
            name: Some(r.target.clone()),
            uid: Some(r.uid.to_string()),
            gid: Some(r.gid.to_string()),
            mode: Some(r.mode),
        }),
        secret_id: Some(r.id.clone()),
        secret_name: Some(r.name.clone()),
    });
    let k = c.configs.iter().map(|r| TaskSpecContainerSpecConfigs {
        file: Some(TaskSpecContainerSpecFile1 {
            name: Some(r.target.clone()),
            uid: Some(r.uid.to_string()),
            gid: Some(r.gid.to_string()),
            mode: Some(r.mode),
        }),
        runtime: None,
        config_id: Some(r.id.clone()),
        config_name: Some(r.name.clone()),
    });
    let (s, k): (Vec<_>, Vec<_>) = (s.collect(), k.collect());
    ((!s.is_empty()).then_some(s), (!k.is_empty()).then_some(k))
}

fn container_from_api(mut c: TaskSpecContainerSpec) -> Result<ct::ContainerSpec> {
    let (secrets, configs) = refs_from_api(&mut c)?;
    let mounts = c
        .mounts
        .unwrap_or_default()
        .into_iter()
        .map(|m: Mount| {
            let kind = match m.typ {
                Some(MountTypeEnum::BIND) => "bind",
                Some(MountTypeEnum::TMPFS) => "tmpfs",
                Some(MountTypeEnum::VOLUME | MountTypeEnum::EMPTY) | None => "volume",
                Some(other) => return Err(unsupported(format!("mount type {other} is not supported"))),
            };
            let target = m.target.filter(|t| !t.is_empty()).ok_or_else(|| unsupported("mount: target is required"))?;
            Ok(ct::MountSpec {
                kind: kind.into(),
                source: m.source.unwrap_or_default(),
                target,
                read_only: m.read_only.unwrap_or(false),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ct::ContainerSpec {
        image: c.image.unwrap_or_default(),
        labels: c.labels.unwrap_or_default().into_iter().collect(),
        command: c.command.unwrap_or_default(),
        args: c.args.unwrap_or_default(),
        hostname: c.hostname.unwrap_or_default(),
        env: c.env.unwrap_or_default(),
        dir: c.dir.unwrap_or_default(),
        user: c.user.unwrap_or_default(),
        groups: c.groups.unwrap_or_default(),
        tty: c.tty.unwrap_or(false),
        open_stdin: c.open_stdin.unwrap_or(false),
        read_only: c.read_only.unwrap_or(false),
        mounts,
        stop_signal: c.stop_signal.unwrap_or_default(),
        stop_grace_period_ns: c.stop_grace_period,
        healthcheck: c.health_check.map(|h| ct::HealthCheck {
            test: h.test.unwrap_or_default(),
            interval_ns: h.interval.unwrap_or(0),
            timeout_ns: h.timeout.unwrap_or(0),
            retries: h.retries.unwrap_or(0),
            start_period_ns: h.start_period.unwrap_or(0),
        }),
        hosts: c.hosts.unwrap_or_default(),
        init: c.init,
        sysctls: c.sysctls.unwrap_or_default().into_iter().collect(),
        cap_add: c.capability_add.unwrap_or_default(),
        cap_drop: c.capability_drop.unwrap_or_default(),
        secrets,
        configs,
    })
}

/// A task's health check in the API's (and the engine's create body's) shape.
pub fn health_to_api(h: &ct::HealthCheck) -> HealthConfig {
    HealthConfig {
        test: Some(h.test.clone()),
        interval: Some(h.interval_ns),
        timeout: Some(h.timeout_ns),
        retries: Some(h.retries),
        start_period: Some(h.start_period_ns),
        ..Default::default()
    }
}

fn container_to_api(c: &ct::ContainerSpec) -> TaskSpecContainerSpec {
    let (secrets, configs) = refs_to_api(c);
    let some_vec = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    let some_str = |s: &String| (!s.is_empty()).then(|| s.clone());
    TaskSpecContainerSpec {
        image: Some(c.image.clone()),
        labels: (!c.labels.is_empty()).then(|| c.labels.clone().into_iter().collect()),
        command: some_vec(&c.command),
        args: some_vec(&c.args),
        hostname: some_str(&c.hostname),
        env: some_vec(&c.env),
        dir: some_str(&c.dir),
        user: some_str(&c.user),
        groups: some_vec(&c.groups),
        tty: c.tty.then_some(true),
        open_stdin: c.open_stdin.then_some(true),
        read_only: c.read_only.then_some(true),
        mounts: (!c.mounts.is_empty()).then(|| {
            c.mounts
                .iter()
                .map(|m| Mount {
                    typ: Some(match m.kind.as_str() {
                        "bind" => MountTypeEnum::BIND,
                        "tmpfs" => MountTypeEnum::TMPFS,
                        _ => MountTypeEnum::VOLUME,
                    }),
                    source: some_str(&m.source),
                    target: Some(m.target.clone()),
                    read_only: m.read_only.then_some(true),
                    ..Default::default()
                })
                .collect()
        }),
        stop_signal: some_str(&c.stop_signal),
        stop_grace_period: c.stop_grace_period_ns,
        health_check: c.healthcheck.as_ref().map(health_to_api),
        hosts: some_vec(&c.hosts),
        init: c.init,
        sysctls: (!c.sysctls.is_empty()).then(|| c.sysctls.clone().into_iter().collect()),
        capability_add: some_vec(&c.cap_add),
        capability_drop: some_vec(&c.cap_drop),
        secrets,
        configs,
        ..Default::default()
    }
}

fn ports_from_api(e: Option<EndpointSpec>) -> Result<Vec<ct::PortConfig>> {
    let Some(e) = e else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for p in e.ports.unwrap_or_default() {
        let mode = match p.publish_mode {
            Some(EndpointPortConfigPublishModeEnum::HOST) => ct::PublishMode::Host,
            _ => ct::PublishMode::Ingress,
        };
        let target = p.target_port.and_then(|t| u16::try_from(t).ok()).filter(|t| *t > 0);
        let target =
            target.ok_or_else(|| unsupported("EndpointSpec: a port needs a target port between 1 and 65535"))?;
        let published = u16::try_from(p.published_port.unwrap_or(0))
            .map_err(|_| unsupported("EndpointSpec: a published port must be between 0 and 65535"))?;
        out.push(ct::PortConfig {
            name: p.name.unwrap_or_default(),
            protocol: p.protocol.map(|p| p.to_string()).filter(|p| !p.is_empty()).unwrap_or_else(|| "tcp".into()),
            target_port: target,
            published_port: published,
            mode,
        });
    }
    Ok(out)
}

fn port_to_api(p: &ct::PortConfig) -> EndpointPortConfig {
    EndpointPortConfig {
        name: (!p.name.is_empty()).then(|| p.name.clone()),
        protocol: p.protocol.parse::<EndpointPortConfigProtocolEnum>().ok(),
        target_port: Some(i64::from(p.target_port)),
        published_port: Some(i64::from(p.published_port)),
        publish_mode: Some(match p.mode {
            ct::PublishMode::Host => EndpointPortConfigPublishModeEnum::HOST,
            ct::PublishMode::Ingress => EndpointPortConfigPublishModeEnum::INGRESS,
        }),
    }
}

/// `--network name=N,alias=A` (targets as given: names or IDs).
fn networks_from_api(n: Vec<bollard_stubs::models::NetworkAttachmentConfig>) -> Result<Vec<ct::NetworkAttachmentSpec>> {
    let mut out: Vec<ct::NetworkAttachmentSpec> = Vec::new();
    for a in n {
        let target = a
            .target
            .filter(|t| !t.is_empty())
            .ok_or_else(|| EngineError::invalid("a network attachment names no network"))?;
        if a.driver_opts.is_some_and(|o| !o.is_empty()) {
            return Err(unsupported("network driver options of a service's attachment are not supported by skiff yet"));
        }
        if out.iter().any(|o| o.target == target) {
            return Err(EngineError::invalid(format!("network {target} is attached more than once")));
        }
        out.push(ct::NetworkAttachmentSpec { target, aliases: a.aliases.unwrap_or_default() });
    }
    Ok(out)
}

fn task_spec_from_api(t: TaskSpec, ports: Vec<ct::PortConfig>) -> Result<ct::TaskSpec> {
    if t.plugin_spec.is_some() || t.network_attachment_spec.is_some() {
        return Err(unsupported("only container tasks are supported"));
    }
    let networks = networks_from_api(t.networks.unwrap_or_default())?;
    let container = container_from_api(t.container_spec.unwrap_or_default())?;
    let res = t.resources.unwrap_or_default();
    let (limits, reserve) = (res.limits.unwrap_or_default(), res.reservations.unwrap_or_default());
    let rp = t.restart_policy.unwrap_or_default();
    let drp = ct::RestartPolicy::default();
    let placement = t.placement.unwrap_or_default();
    Ok(ct::TaskSpec {
        container,
        resources: ct::Resources {
            limit_nano_cpus: limits.nano_cpus.unwrap_or(0),
            limit_memory: limits.memory_bytes.unwrap_or(0),
            limit_pids: limits.pids.unwrap_or(0),
            reserve_nano_cpus: reserve.nano_cpus.unwrap_or(0),
            reserve_memory: reserve.memory_bytes.unwrap_or(0),
        },
        restart: ct::RestartPolicy {
            condition: match rp.condition {
                Some(TaskSpecRestartPolicyConditionEnum::NONE) => ct::RestartCondition::None,
                Some(TaskSpecRestartPolicyConditionEnum::ON_FAILURE) => ct::RestartCondition::OnFailure,
                _ => ct::RestartCondition::Any,
            },
            delay_ns: rp.delay.unwrap_or(drp.delay_ns).max(0),
            max_attempts: rp.max_attempts.unwrap_or(0).max(0) as u64,
            window_ns: rp.window.unwrap_or(0).max(0),
        },
        placement: ct::Placement {
            constraints: placement.constraints.unwrap_or_default(),
            spread: placement
                .preferences
                .unwrap_or_default()
                .into_iter()
                .filter_map(|p| p.spread.and_then(|s| s.spread_descriptor))
                .collect(),
            max_replicas: placement.max_replicas.unwrap_or(0).max(0) as u64,
            platforms: placement
                .platforms
                .unwrap_or_default()
                .into_iter()
                .map(|p| (p.os.unwrap_or_default(), p.architecture.unwrap_or_default()))
                .collect(),
        },
        force_update: t.force_update.unwrap_or(0),
        log_driver: t.log_driver.and_then(|l| {
            l.name.filter(|n| !n.is_empty()).map(|n| (n, l.options.unwrap_or_default().into_iter().collect()))
        }),
        ports,
        // Set from the request's X-Registry-Auth, never from the spec.
        pull_auth: None,
        networks,
    })
}

fn task_spec_to_api(t: &ct::TaskSpec) -> TaskSpec {
    TaskSpec {
        networks: (!t.networks.is_empty()).then(|| {
            t.networks
                .iter()
                .map(|a| bollard_stubs::models::NetworkAttachmentConfig {
                    target: Some(a.target.clone()),
                    aliases: (!a.aliases.is_empty()).then(|| a.aliases.clone()),
                    driver_opts: None,
                })
                .collect()
        }),
        container_spec: Some(container_to_api(&t.container)),
        resources: Some(TaskSpecResources {
            limits: Some(Limit {
                nano_cpus: (t.resources.limit_nano_cpus != 0).then_some(t.resources.limit_nano_cpus),
                memory_bytes: (t.resources.limit_memory != 0).then_some(t.resources.limit_memory),
                pids: (t.resources.limit_pids != 0).then_some(t.resources.limit_pids),
            }),
            reservations: Some(ResourceObject {
                nano_cpus: (t.resources.reserve_nano_cpus != 0).then_some(t.resources.reserve_nano_cpus),
                memory_bytes: (t.resources.reserve_memory != 0).then_some(t.resources.reserve_memory),
                generic_resources: None,
            }),
        }),
        restart_policy: Some(TaskSpecRestartPolicy {
            condition: Some(match t.restart.condition {
                ct::RestartCondition::None => TaskSpecRestartPolicyConditionEnum::NONE,
                ct::RestartCondition::OnFailure => TaskSpecRestartPolicyConditionEnum::ON_FAILURE,
                ct::RestartCondition::Any => TaskSpecRestartPolicyConditionEnum::ANY,
            }),
            delay: Some(t.restart.delay_ns),
            max_attempts: Some(t.restart.max_attempts as i64),
            window: (t.restart.window_ns != 0).then_some(t.restart.window_ns),
        }),
        placement: Some(TaskSpecPlacement {
            constraints: (!t.placement.constraints.is_empty()).then(|| t.placement.constraints.clone()),
            preferences: (!t.placement.spread.is_empty()).then(|| {
                t.placement
                    .spread
                    .iter()
                    .map(|d| TaskSpecPlacementPreferences {
                        spread: Some(TaskSpecPlacementSpread { spread_descriptor: Some(d.clone()) }),
                    })
                    .collect()
            }),
            max_replicas: (t.placement.max_replicas != 0).then_some(t.placement.max_replicas as i64),
            platforms: (!t.placement.platforms.is_empty()).then(|| {
                t.placement
                    .platforms
                    .iter()
                    .map(|(os, arch)| Platform { os: Some(os.clone()), architecture: Some(arch.clone()) })
                    .collect()
            }),
        }),
        force_update: Some(t.force_update),
        log_driver: t
            .log_driver
            .as_ref()
            .map(|(n, o)| TaskSpecLogDriver { name: Some(n.clone()), options: Some(o.clone().into_iter().collect()) }),
        ..Default::default()
    }
}

/// A request's spec as skiff's; `name` is used when the request names none.
pub fn spec_from_api(a: ServiceSpec, name: impl FnOnce() -> String) -> Result<ct::ServiceSpec> {
    // The deprecated top-level `Networks` counts when the task template names none.
    let mut template = a.task_template.unwrap_or_default();
    if template.networks.as_ref().is_none_or(Vec::is_empty) {
        template.networks = a.networks.filter(|n| !n.is_empty());
    }
    let mode = match a.mode.unwrap_or_default() {
        ServiceSpecMode { global: Some(_), .. } => ct::ServiceMode::Global,
        ServiceSpecMode { replicated_job: Some(_), .. } | ServiceSpecMode { global_job: Some(_), .. } => {
            return Err(unsupported("job modes (replicated-job, global-job) are not supported by skiff yet"));
        }
        ServiceSpecMode { replicated, .. } => {
            ct::ServiceMode::Replicated { replicas: replicated.and_then(|r| r.replicas).unwrap_or(1).max(0) as u64 }
        }
    };
    let endpoint_mode = match a.endpoint_spec.as_ref().and_then(|e| e.mode) {
        Some(EndpointSpecModeEnum::DNSRR) => ct::EndpointMode::Dnsrr,
        _ => ct::EndpointMode::Vip,
    };
    let ports = ports_from_api(a.endpoint_spec)?;
    Ok(ct::ServiceSpec {
        name: a.name.filter(|n| !n.is_empty()).unwrap_or_else(name),
        labels: a.labels.unwrap_or_default().into_iter().collect(),
        task: task_spec_from_api(template, ports)?,
        mode,
        update: update_from_api(a.update_config),
        rollback: update_from_api(rollback_as_update(a.rollback_config)),
        endpoint_mode,
    })
}

pub fn spec_to_api(s: &ct::ServiceSpec) -> ServiceSpec {
    ServiceSpec {
        name: Some(s.name.clone()),
        labels: Some(s.labels.clone().into_iter().collect()),
        task_template: Some(task_spec_to_api(&s.task)),
        mode: Some(match s.mode {
            ct::ServiceMode::Replicated { replicas } => ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated { replicas: Some(replicas as i64) }),
                ..Default::default()
            },
            ct::ServiceMode::Global => ServiceSpecMode { global: Some(HashMap::new()), ..Default::default() },
        }),
        update_config: Some(update_to_api(&s.update)),
        rollback_config: update_as_rollback(update_to_api(&s.rollback)),
        networks: None,
        endpoint_spec: Some(EndpointSpec {
            mode: Some(match s.endpoint_mode {
                ct::EndpointMode::Vip => EndpointSpecModeEnum::VIP,
                ct::EndpointMode::Dnsrr => EndpointSpecModeEnum::DNSRR,
            }),
            ports: (!s.task.ports.is_empty()).then(|| s.task.ports.iter().map(port_to_api).collect()),
        }),
    }
}

/// A service's virtual IPs as `Endpoint.VirtualIPs` shows them (`addr/prefix`; the prefix of
/// the network, taken from a task's address there, 24 when none is known).
fn vips_to_api(
    s: &ct::Service,
    tasks: Option<&BTreeMap<String, ct::Task>>,
) -> Vec<bollard_stubs::models::ServiceEndpointVirtualIps> {
    s.vips
        .iter()
        .map(|(net, ip)| {
            let prefix = tasks
                .and_then(|t| t.values().flat_map(|t| &t.networks).find(|a| a.network_id == *net).map(|a| a.prefix))
                .unwrap_or(24);
            bollard_stubs::models::ServiceEndpointVirtualIps {
                network_id: Some(net.clone()),
                addr: Some(format!("{ip}/{prefix}")),
            }
        })
        .collect()
}

/// A service as the API shows it; with `tasks`, its `ServiceStatus` (running and desired).
pub fn service_to_api(s: &ct::Service, tasks: Option<&BTreeMap<String, ct::Task>>) -> Service {
    let status = tasks.map(|tasks| {
        let mine: Vec<&ct::Task> = tasks.values().filter(|t| t.service_id == s.id && t.wanted()).collect();
        let running = mine.iter().filter(|t| t.status.state == ct::TaskState::Running).count() as u64;
        let desired = match s.spec.mode {
            ct::ServiceMode::Replicated { replicas } => replicas,
            ct::ServiceMode::Global => mine.len() as u64,
        };
        ServiceServiceStatus { running_tasks: Some(running), desired_tasks: Some(desired), completed_tasks: Some(0) }
    });
    // The routing mesh's ports as allocated, then the host-mode ones as asked.
    let ports: Vec<EndpointPortConfig> = s
        .endpoint_ports
        .iter()
        .chain(s.spec.task.ports.iter().filter(|p| p.mode == ct::PublishMode::Host))
        .map(port_to_api)
        .collect();
    Service {
        id: Some(s.id.clone()),
        version: Some(ObjectVersion { index: Some(s.version) }),
        created_at: Some(time(s.created_at)),
        updated_at: Some(time(s.updated_at)),
        spec: Some(spec_to_api(&s.spec)),
        endpoint: Some(ServiceEndpoint {
            spec: spec_to_api(&s.spec).endpoint_spec,
            ports: (!ports.is_empty()).then_some(ports),
            virtual_ips: (!s.vips.is_empty()).then(|| vips_to_api(s, tasks)),
        }),
        update_status: s.update_status.as_ref().map(|u| ServiceUpdateStatus {
            state: u.state.parse::<ServiceUpdateStatusStateEnum>().ok(),
            started_at: Some(time(u.started_at)),
            completed_at: (u.completed_at != 0).then(|| time(u.completed_at)),
            message: Some(u.message.clone()),
        }),
        service_status: status,
        job_status: None,
    }
}

/// The API's name of a task state.
fn state_to_api(s: ct::TaskState) -> TaskState {
    s.as_str().parse().unwrap_or_default()
}

pub fn task_to_api(t: &ct::Task) -> Task {
    let st = &t.status;
    Task {
        id: Some(t.id.clone()),
        version: Some(ObjectVersion { index: Some(t.version) }),
        created_at: Some(time(t.created_at)),
        updated_at: Some(time(t.updated_at)),
        name: None,
        labels: Some(HashMap::new()),
        spec: Some(task_spec_to_api(&t.spec)),
        service_id: Some(t.service_id.clone()),
        slot: (t.slot != 0).then_some(t.slot as i64),
        node_id: (!t.node_id.is_empty()).then(|| t.node_id.clone()),
        assigned_generic_resources: None,
        status: Some(TaskStatus {
            timestamp: Some(time(st.timestamp)),
            state: Some(state_to_api(st.state)),
            message: Some(st.message.clone()),
            err: (!st.err.is_empty()).then(|| st.err.clone()),
            container_status: (!st.container_id.is_empty()).then(|| ContainerStatus {
                container_id: Some(st.container_id.clone()),
                pid: Some(st.pid),
                exit_code: Some(st.exit_code),
            }),
            // Host-mode ports only: the routing mesh's are the service's, on every node.
            port_status: {
                let host: Vec<EndpointPortConfig> =
                    t.spec.ports.iter().filter(|p| p.mode == ct::PublishMode::Host).map(port_to_api).collect();
                (!host.is_empty() && st.state == ct::TaskState::Running).then_some(PortStatus { ports: Some(host) })
            },
        }),
        desired_state: Some(state_to_api(t.desired_state)),
        job_iteration: None,
    }
}

/// `--with-registry-auth`'s header, checked to decode as the CLI encodes it.
pub fn registry_auth(header: Option<String>) -> Result<Option<ct::RegistryAuth>> {
    match header {
        None => Ok(None),
        Some(h) if skiff_engine::types::Credentials::from_header(&h).is_some() => Ok(Some(ct::RegistryAuth(h))),
        Some(_) => Err(EngineError::invalid("invalid X-Registry-Auth header: not base64-encoded registry credentials")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cli_spec_round_trips_and_what_skiff_cannot_do_is_refused() {
        let raw = serde_json::json!({
            "Name": "web",
            "Labels": {"tier": "front"},
            "TaskTemplate": {
                "ContainerSpec": {"Image": "busybox", "Args": ["httpd", "-f"], "Env": ["A=1"], "Hostname": "{{.Task.Slot}}",
                    "Mounts": [{"Type": "tmpfs", "Target": "/tmp"}], "StopGracePeriod": 3000000000i64},
                "Resources": {"Limits": {"MemoryBytes": 67108864}, "Reservations": {"NanoCPUs": 100000000}},
                "RestartPolicy": {"Condition": "on-failure", "Delay": 1000000000, "MaxAttempts": 3},
                "Placement": {"Constraints": ["node.role==worker"], "Preferences": [{"Spread": {"SpreadDescriptor": "node.labels.zone"}}], "MaxReplicas": 2},
                "ForceUpdate": 0
            },
            "Mode": {"Replicated": {"Replicas": 3}},
            "UpdateConfig": {"Parallelism": 2, "Delay": 1000000000, "FailureAction": "rollback", "Monitor": 0, "MaxFailureRatio": 0.25, "Order": "start-first"},
            "EndpointSpec": {"Mode": "vip", "Ports": [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "host"}]}
        });
        let api: ServiceSpec = serde_json::from_value(raw).unwrap();
        let ours = spec_from_api(api, || unreachable!()).unwrap();
        assert_eq!(ours.mode, ct::ServiceMode::Replicated { replicas: 3 });
        assert_eq!(ours.task.restart.condition, ct::RestartCondition::OnFailure);
        assert_eq!(ours.update.max_failure_ratio_ppm, 250_000);
        assert_eq!(ours.update.monitor_ns, 5_000_000_000, "0 is the default");
        assert_eq!(ours.task.ports[0].published_port, 8080);
        let back = spec_from_api(spec_to_api(&ours), || unreachable!()).unwrap();
        assert_eq!(back, ours, "the API form carries everything skiff keeps");

        // Networks: the template's, or else the deprecated top-level list; they round-trip.
        let api: ServiceSpec =
            serde_json::from_value(serde_json::json!({"Networks": [{"Target": "front", "Aliases": ["www"]}]})).unwrap();
        let nets = spec_from_api(api, || "x".into()).unwrap();
        assert_eq!(
            nets.task.networks,
            vec![ct::NetworkAttachmentSpec { target: "front".into(), aliases: vec!["www".into()] }]
        );
        assert_eq!(spec_from_api(spec_to_api(&nets), || unreachable!()).unwrap(), nets);

        let named = spec_from_api(ServiceSpec::default(), || "gen_name".into()).unwrap();
        assert_eq!((named.name.as_str(), named.mode), ("gen_name", ct::ServiceMode::Replicated { replicas: 1 }));
        let refused = [
            serde_json::json!({"TaskTemplate": {"Networks": [{"Target": "a"}, {"Target": "a"}]}}),
            serde_json::json!({"TaskTemplate": {"Networks": [{"Aliases": ["x"]}]}}),
            serde_json::json!({"TaskTemplate": {"ContainerSpec": {"Secrets": [{"SecretName": "x"}]}}}),
            serde_json::json!({"TaskTemplate": {"ContainerSpec": {"Secrets": [{"SecretID": "x", "File": {"UID": "root"}}]}}}),
            serde_json::json!({"Mode": {"ReplicatedJob": {}}}),
            serde_json::json!({"EndpointSpec": {"Ports": [{"TargetPort": 70000, "PublishMode": "host"}]}}),
        ];
        for r in refused {
            let api: ServiceSpec = serde_json::from_value(r.clone()).unwrap();
            assert!(spec_from_api(api, || "x".into()).is_err(), "{r}");
        }
    }

    #[test]
    fn registry_credentials_are_checked_and_never_shown() {
        assert!(registry_auth(Some("not base64 json".into())).is_err());
        let auth = registry_auth(Some("eyJ1c2VybmFtZSI6InUiLCJwYXNzd29yZCI6InMzY3IzdCJ9".into())).unwrap();
        let mut spec = spec_from_api(ServiceSpec::default(), || "web".into()).unwrap();
        spec.task.pull_auth = auth;
        assert!(format!("{spec:?}").contains("RegistryAuth(..)"));
        let shown = serde_json::to_string(&spec_to_api(&spec)).unwrap();
        assert!(!shown.contains("eyJ1c2VybmFtZSI6InUiLCJwYXNzd29yZCI6InMzY3IzdCJ9"), "{shown}");
    }
}
