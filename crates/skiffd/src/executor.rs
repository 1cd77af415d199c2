//! The swarm agent's executor over this daemon's engine: a task becomes a container named
//! `SERVICE.SLOT.TASK` with Docker's `com.docker.swarm.*` labels, made from the task's spec
//! (templates in its hostname, environment and mounts expanded), its image pulled when the
//! node lacks it. Its secrets and configs are files on a tmpfs of its own under the exec root
//! (`swarm-files/TASK`, memory only), bind-mounted read-only at their targets, and unmounted
//! when the task stops.

use std::collections::HashMap;
use std::sync::Arc;

use bollard_stubs::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HealthStatusEnum, HostConfig, HostConfigLogConfig,
    Mount, MountTypeEnum, NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use skiff_agent::{Blobs, BoxFuture, Executor, Started};
use skiff_cluster::rpc::LogRecord;
use skiff_cluster::types::{self as ct_auth, BlobKind, LogSubscription, Task};
use skiff_engine::container::WaitCondition;
use skiff_engine::{Engine, Kind};
use tokio::sync::mpsc;

const TASK_ID: &str = "com.docker.swarm.task.id";

/// How often a task's container health is looked at.
const HEALTH_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// Runs tasks as the engine's containers.
pub struct EngineExecutor {
    pub engine: Arc<Engine>,
}

/// Expands the task templates Docker supports in hostnames, environment and mounts.
fn expand(s: &str, t: &Task, node_id: &str, hostname: &str) -> String {
    if !s.contains("{{") {
        return s.to_string();
    }
    let values = [
        (".Service.ID", t.service_id.clone()),
        (".Service.Name", t.service_name.clone()),
        (".Task.ID", t.id.clone()),
        (".Task.Name", t.name()),
        (".Task.Slot", if t.slot == 0 { node_id.to_string() } else { t.slot.to_string() }),
        (".Node.ID", node_id.to_string()),
        (".Node.Hostname", hostname.to_string()),
    ];
    let mut out = String::new();
    let mut rest = s;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        let key = rest[open + 2..open + close].trim();
        match values.iter().find(|(k, _)| *k == key) {
            Some((_, v)) => out.push_str(v),
            None => out.push_str(&rest[open..open + close + 2]),
        }
        rest = &rest[open + close + 2..];
    }
    out.push_str(rest);
    out
}

fn nonempty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

/// The container a task runs in; `files` are its secrets' and configs' bind mounts.
fn create_body(t: &Task, node_id: &str, hostname: &str, files: Vec<Mount>, internal: bool) -> ContainerCreateBody {
    let c = &t.spec.container;
    let x = |s: &str| expand(s, t, node_id, hostname);
    let mut labels: HashMap<String, String> = c.labels.clone().into_iter().collect();
    labels.extend([
        ("com.docker.swarm.node.id".to_string(), node_id.to_string()),
        ("com.docker.swarm.service.id".to_string(), t.service_id.clone()),
        ("com.docker.swarm.service.name".to_string(), t.service_name.clone()),
        ("com.docker.swarm.task".to_string(), String::new()),
        (TASK_ID.to_string(), t.id.clone()),
        ("com.docker.swarm.task.name".to_string(), t.name()),
    ]);
    let mounts: Vec<Mount> = c
        .mounts
        .iter()
        .map(|m| Mount {
            target: Some(x(&m.target)),
            source: (!m.source.is_empty()).then(|| x(&m.source)),
            typ: Some(match m.kind.as_str() {
                "bind" => MountTypeEnum::BIND,
                "tmpfs" => MountTypeEnum::TMPFS,
                _ => MountTypeEnum::VOLUME,
            }),
            read_only: Some(m.read_only),
            ..Default::default()
        })
        .chain(files)
        .collect();
    // The service's `IP NAME...` lines become the engine's `NAME:IP`.
    let extra_hosts: Vec<String> = c
        .hosts
        .iter()
        .flat_map(|l| {
            let mut f = l.split_whitespace();
            let ip = f.next().unwrap_or_default().to_string();
            f.map(move |name| format!("{name}:{ip}")).collect::<Vec<_>>()
        })
        .collect();
    let mut ports: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    // Host-mode ports are the task's own; the routing mesh's are every node's firewall's.
    for p in t.spec.ports.iter().filter(|p| p.mode == skiff_cluster::types::PublishMode::Host) {
        let host = (p.published_port != 0).then(|| p.published_port.to_string());
        ports
            .entry(format!("{}/{}", p.target_port, p.protocol))
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding { host_ip: None, host_port: host });
    }
    let r = &t.spec.resources;
    let (network_mode, networking_config) = task_networks(t, internal);
    let host_config = HostConfig {
        network_mode,
        mounts: nonempty(mounts),
        extra_hosts: nonempty(extra_hosts),
        port_bindings: (!ports.is_empty()).then_some(ports),
        readonly_rootfs: c.read_only.then_some(true),
        nano_cpus: (r.limit_nano_cpus > 0).then_some(r.limit_nano_cpus),
        memory: (r.limit_memory > 0).then_some(r.limit_memory),
        pids_limit: (r.limit_pids > 0).then_some(r.limit_pids),
        init: c.init,
        sysctls: (!c.sysctls.is_empty()).then(|| c.sysctls.clone().into_iter().collect()),
        cap_add: nonempty(c.cap_add.clone()),
        cap_drop: nonempty(c.cap_drop.clone()),
        group_add: nonempty(c.groups.clone()),
        log_config: t.spec.log_driver.as_ref().map(|(name, opts)| HostConfigLogConfig {
            typ: Some(name.clone()),
            config: Some(opts.clone().into_iter().collect()),
        }),
        // The orchestrator restarts tasks, not the engine.
        restart_policy: Some(RestartPolicy { name: Some(RestartPolicyNameEnum::NO), maximum_retry_count: None }),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(c.image.clone()),
        entrypoint: nonempty(c.command.clone()),
        cmd: nonempty(c.args.clone()),
        env: nonempty(c.env.iter().map(|e| x(e)).collect()),
        working_dir: (!c.dir.is_empty()).then(|| c.dir.clone()),
        user: (!c.user.is_empty()).then(|| c.user.clone()),
        hostname: (!c.hostname.is_empty()).then(|| x(&c.hostname)),
        tty: Some(c.tty),
        open_stdin: Some(c.open_stdin),
        labels: Some(labels),
        stop_signal: (!c.stop_signal.is_empty()).then(|| c.stop_signal.clone()),
        stop_timeout: c.stop_grace_period_ns.map(|ns| ns / 1_000_000_000),
        healthcheck: c.healthcheck.as_ref().map(crate::services_api::health_to_api),
        host_config: Some(host_config),
        networking_config,
        ..Default::default()
    }
}

/// The task's networks as the engine's create takes them: each overlay with the address the
/// managers gave the task and the service's aliases there, and the default bridge first as its
/// way out unless every overlay is internal (`internal`: that they all are).
fn task_networks(t: &Task, internal: bool) -> (Option<String>, Option<NetworkingConfig>) {
    if t.networks.is_empty() {
        return (None, None);
    }
    let mut endpoints: HashMap<String, EndpointSettings> = HashMap::new();
    for a in &t.networks {
        let aliases = t.spec.networks.iter().find(|n| n.target == a.network_id).map(|n| n.aliases.clone());
        endpoints.insert(
            a.network_id.clone(),
            EndpointSettings {
                ipam_config: Some(EndpointIpamConfig { ipv4_address: Some(a.addr.to_string()), ..Default::default() }),
                aliases: aliases.filter(|a| !a.is_empty()),
                ..Default::default()
            },
        );
    }
    let mode = if internal { t.networks[0].network_id.clone() } else { "bridge".to_string() };
    (Some(mode), Some(NetworkingConfig { endpoints_config: Some(endpoints) }))
}

impl EngineExecutor {
    /// The container of task `id`, if this node holds one.
    fn container_of(&self, id: &str) -> Option<String> {
        self.engine
            .containers
            .all()
            .into_iter()
            .find(|c| c.with(|r| r.config.labels.as_ref().and_then(|l| l.get(TASK_ID)).is_some_and(|v| v == id)))
            .map(|c| c.id.clone())
    }

    /// Pulls the image unless the node has it, with the service's registry credentials
    /// (`--with-registry-auth`) or, without them, the node's own.
    async fn ensure_image(&self, image: &str, auth: Option<&ct_auth::RegistryAuth>) -> Result<(), String> {
        if self.engine.images.inspect(image).is_ok() {
            return Ok(());
        }
        let r = skiff_engine::types::Reference::parse_normalized(image).map_err(|e| e.to_string())?;
        let sink: skiff_engine::types::Sink = Arc::new(|_| {});
        let creds = auth.and_then(|a| skiff_engine::types::Credentials::from_header(&a.0));
        self.engine.images.pull(&r, None, creds, sink).await.map(|_| ()).map_err(|e| e.message)
    }

    fn files_dir(&self, task_id: &str) -> std::path::PathBuf {
        self.engine.config.exec_root.join("swarm-files").join(task_id)
    }

    /// Writes the task's secrets and configs to a tmpfs of its own (mounted if it is not);
    /// the bind mounts that put them at their targets.
    fn materialize(&self, t: &Task, blobs: &Blobs) -> Result<Vec<Mount>, String> {
        use std::io::Write as _;
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let c = &t.spec.container;
        if c.secrets.is_empty() && c.configs.is_empty() {
            return Ok(Vec::new());
        }
        let dir = self.files_dir(&t.id);
        let fail = |what: &str, e: &dyn std::fmt::Display| format!("{what} {}: {e}", dir.display());
        if !is_mount_point(&dir) {
            std::fs::create_dir_all(&dir).map_err(|e| fail("creating", &e))?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| fail("securing", &e))?;
            let size: usize = blobs.values().map(Vec::len).sum::<usize>() * 2 + (1 << 20);
            let flags = rustix::mount::MountFlags::NOSUID
                | rustix::mount::MountFlags::NODEV
                | rustix::mount::MountFlags::NOEXEC;
            let opts = std::ffi::CString::new(format!("mode=0755,size={size}")).map_err(|e| fail("mounting", &e))?;
            rustix::mount::mount("tmpfs", &dir, "tmpfs", flags, Some(opts.as_c_str()))
                .map_err(|e| fail("mounting a tmpfs on", &e))?;
        }
        let mut mounts = Vec::new();
        for (kind, refs) in [(BlobKind::Secret, &c.secrets), (BlobKind::Config, &c.configs)] {
            for (i, r) in refs.iter().enumerate() {
                let data = blobs
                    .get(&(kind, r.id.clone()))
                    .ok_or_else(|| format!("{} {} was not sent to this node", kind.as_str(), r.name))?;
                let file = dir.join(format!("{}-{i}", kind.as_str()));
                let _ = std::fs::remove_file(&file);
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(r.mode & 0o7777)
                    .open(&file)
                    .map_err(|e| fail("writing in", &e))?;
                f.write_all(data).map_err(|e| fail("writing in", &e))?;
                f.set_permissions(std::fs::Permissions::from_mode(r.mode & 0o7777))
                    .map_err(|e| fail("writing in", &e))?;
                std::os::unix::fs::fchown(&f, Some(r.uid), Some(r.gid)).map_err(|e| fail("writing in", &e))?;
                mounts.push(Mount {
                    typ: Some(MountTypeEnum::BIND),
                    source: Some(file.to_string_lossy().into_owned()),
                    target: Some(r.path(kind)),
                    read_only: Some(true),
                    ..Default::default()
                });
            }
        }
        Ok(mounts)
    }

    /// Unmounts the task's secrets and configs.
    fn release(&self, task_id: &str) {
        let dir = self.files_dir(task_id);
        if is_mount_point(&dir) {
            let _ = rustix::mount::unmount(&dir, rustix::mount::UnmountFlags::DETACH);
        }
        let _ = std::fs::remove_dir(&dir);
    }

    async fn prepare_task(&self, t: &Task, blobs: &Blobs) -> Result<(), String> {
        let files = self.materialize(t, blobs)?;
        if self.container_of(&t.id).is_some() {
            return Ok(());
        }
        self.ensure_image(&t.spec.container.image, t.spec.pull_auth.as_ref()).await?;
        let hostname = self.engine.info().name.unwrap_or_default();
        let mut internal = true;
        for a in &t.networks {
            let n =
                self.engine.networks.get(&a.network_id).await.map_err(|_| {
                    format!("network {} is not set up on this node (see the daemon's log)", a.network_id)
                })?;
            internal &= n.internal;
        }
        let body = create_body(t, &t.node_id, &hostname, files, internal);
        self.engine.containers.create(Some(t.name()), body, Default::default()).await.map(|_| ()).map_err(|e| e.message)
    }

    async fn start_task(&self, t: &Task) -> Result<Started, String> {
        let id = self.container_of(&t.id).ok_or_else(|| format!("no container for task {}", t.id))?;
        if !self.running(&id) {
            self.engine.containers.start(&id).await.map_err(|e| e.message)?;
        }
        // With a health check, the task is running once the container is healthy (as
        // Docker's: a rolling update waits for it); one that exits first is the wait's to say.
        let checked = self.has_health_check(&id);
        while checked && self.running(&id) {
            match self.health(&id) {
                Some(HealthStatusEnum::HEALTHY) => break,
                Some(HealthStatusEnum::UNHEALTHY) => {
                    let _ = self.engine.containers.stop(&id, Some(0), None).await;
                    return Err("task: container is unhealthy".into());
                }
                // Starting, or not yet looked at.
                _ => tokio::time::sleep(HEALTH_POLL).await,
            }
        }
        let pid =
            self.engine.containers.inspect(&id, false).ok().and_then(|i| i.state).and_then(|s| s.pid).unwrap_or(0);
        Ok(Started { container_id: id, pid })
    }

    fn running(&self, id: &str) -> bool {
        self.engine.containers.get(id).is_ok_and(|c| c.status() == skiff_engine::container::Status::Running)
    }

    /// Whether the container has a health check (its own or its image's, not `NONE`).
    fn has_health_check(&self, id: &str) -> bool {
        let test = self
            .engine
            .containers
            .inspect(id, false)
            .ok()
            .and_then(|i| i.config)
            .and_then(|c| c.healthcheck)
            .and_then(|h| h.test);
        test.is_some_and(|t| t.first().is_some_and(|f| f != "NONE"))
    }

    fn health(&self, id: &str) -> Option<HealthStatusEnum> {
        self.engine.containers.inspect(id, false).ok()?.state?.health?.status
    }

    /// Waits for the task's container to stop; one that turns unhealthy is stopped and the task
    /// fails, as Docker's do.
    async fn wait_task(&self, t: &Task) -> Result<i64, String> {
        let id = self.container_of(&t.id).ok_or_else(|| format!("no container for task {}", t.id))?;
        let exited = self.engine.containers.wait(&id, WaitCondition::NotRunning);
        tokio::pin!(exited);
        loop {
            tokio::select! {
                r = &mut exited => return r.map(|(code, _)| code).map_err(|e| e.message),
                () = tokio::time::sleep(HEALTH_POLL) => {
                    if self.health(&id) == Some(HealthStatusEnum::UNHEALTHY) {
                        let grace = t.spec.container.stop_grace_period_ns.map_or(10, |ns| ns / 1_000_000_000);
                        let _ = self.engine.containers.stop(&id, Some(grace), None).await;
                        return Err("task: container is unhealthy".into());
                    }
                }
            }
        }
    }

    async fn shutdown_task(&self, t: &Task) -> Result<(), String> {
        let stopped = match self.container_of(&t.id) {
            None => Ok(()),
            Some(id) => {
                let grace = t.spec.container.stop_grace_period_ns.map_or(10, |ns| ns / 1_000_000_000);
                match self.engine.containers.stop(&id, Some(grace), None).await {
                    Err(e) if e.kind != Kind::NotFound && e.kind != Kind::NotModified => Err(e.message),
                    _ => Ok(()),
                }
            }
        };
        self.release(&t.id);
        stopped
    }

    async fn remove_task(&self, task_id: &str) -> Result<(), String> {
        let removed = match self.container_of(task_id) {
            None => Ok(()),
            Some(id) => match self.engine.containers.remove(&id, true, false).await {
                Err(e) if e.kind != Kind::NotFound => Err(e.message),
                _ => Ok(()),
            },
        };
        self.release(task_id);
        removed
    }
}

impl EngineExecutor {
    async fn logs_task(&self, task_id: &str, sub: &LogSubscription) -> Result<mpsc::Receiver<LogRecord>, String> {
        let id = self.container_of(task_id).ok_or_else(|| format!("no container for task {task_id}"))?;
        let opts = skiff_engine::container::logs::LogOptions {
            stdout: sub.stdout,
            stderr: sub.stderr,
            follow: sub.follow,
            tail: sub.tail.map(|t| t as usize),
            since: (sub.since_ns > 0)
                .then(|| std::time::UNIX_EPOCH + std::time::Duration::from_nanos(sub.since_ns as u64)),
            until: None,
        };
        let (_, mut lines) = self.engine.containers.logs(&id, opts).map_err(|e| e.message)?;
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            loop {
                // The subscriber's leaving ends the follow now, not at the container's next line.
                let l = tokio::select! {
                    l = lines.recv() => match l {
                        Some(l) => l,
                        None => return,
                    },
                    () = tx.closed() => return,
                };
                let stream = if l.stream == skiff_engine::types::Stream::Stdout { 1 } else { 2 };
                if tx.send(LogRecord { stream, time: l.time, data: l.data.to_vec() }).await.is_err() {
                    return;
                }
            }
        });
        Ok(rx)
    }
}

impl Executor for EngineExecutor {
    fn logs<'a>(
        &'a self,
        task_id: &'a str,
        sub: &'a LogSubscription,
    ) -> BoxFuture<'a, Result<mpsc::Receiver<LogRecord>, String>> {
        Box::pin(self.logs_task(task_id, sub))
    }

    fn prepare<'a>(&'a self, task: &'a Task, blobs: &'a Blobs) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.prepare_task(task, blobs))
    }

    fn start<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, Result<Started, String>> {
        Box::pin(self.start_task(task))
    }

    fn wait<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, Result<i64, String>> {
        Box::pin(self.wait_task(task))
    }

    fn shutdown<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.shutdown_task(task))
    }

    fn remove<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.remove_task(task_id))
    }

    fn networks<'a>(
        &'a self,
        networks: &'a [skiff_cluster::rpc::NetworkAssignment],
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let specs = networks.iter().map(crate::networks_api::overlay_spec).collect::<Result<Vec<_>, _>>()?;
            self.engine.networks.sync_overlays(specs).await.map_err(|e| e.message)
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<String>, String>> {
        let ids = self
            .engine
            .containers
            .all()
            .into_iter()
            .filter_map(|c| c.with(|r| r.config.labels.as_ref().and_then(|l| l.get(TASK_ID)).cloned()))
            .collect();
        Box::pin(std::future::ready(Ok(ids)))
    }
}

/// Whether `dir` is a mount point (its device differs from its parent's).
fn is_mount_point(dir: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let (Ok(me), Some(Ok(parent))) = (std::fs::metadata(dir), dir.parent().map(std::fs::metadata)) else {
        return false;
    };
    me.dev() != parent.dev()
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_cluster::types::{TaskSpec, TaskState, TaskStatus};

    fn task(slot: u64) -> Task {
        let mut spec = TaskSpec::default();
        spec.container.image = "busybox".into();
        spec.container.hostname = "{{.Service.Name}}-{{ .Task.Slot }}".into();
        spec.container.env = vec!["NODE={{.Node.Hostname}}".into(), "KEEP={{.Unknown}}".into(), "OPEN={{x".into()];
        spec.container.hosts = vec!["10.0.0.1 db cache".into()];
        Task {
            id: "t1".into(),
            version: 1,
            created_at: 0,
            updated_at: 0,
            service_id: "s1".into(),
            service_name: "web".into(),
            slot,
            node_id: "n1".into(),
            spec,
            spec_version: 1,
            desired_state: TaskState::Running,
            status: TaskStatus::default(),
            networks: Vec::new(),
        }
    }

    #[test]
    fn templates_expand_and_unknown_ones_stay() {
        let b = create_body(&task(3), "n1", "host1", Vec::new(), true);
        assert_eq!(b.hostname.as_deref(), Some("web-3"));
        assert_eq!(b.env.unwrap(), vec!["NODE=host1", "KEEP={{.Unknown}}", "OPEN={{x"]);
        let hc = b.host_config.unwrap();
        assert_eq!(hc.extra_hosts.unwrap(), vec!["db:10.0.0.1", "cache:10.0.0.1"]);
        let labels = b.labels.unwrap();
        assert_eq!(labels["com.docker.swarm.task.name"], "web.3.t1");
        assert_eq!(
            create_body(&task(0), "n1", "h", Vec::new(), true).hostname.as_deref(),
            Some("web-n1"),
            "global: the node"
        );
    }
}
