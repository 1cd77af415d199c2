//! Running containers: start, exit handling (restart policies, `--rm`), stop, kill, restart,
//! wait, pause, remove, and re-adoption of running containers after a daemon restart.
//!
//! The path of one start:
//! 1. (blocking pool) mount the snapshot, copy image content into new volumes, resolve the user,
//!    write /etc/hosts, /etc/hostname, /etc/resolv.conf, build the OCI spec, write the bundle and
//!    `monitor.json`
//! 2. spawn `skiff-monitor` and wait for `ready`
//! 3. connect parked attach streams and a `Wait` watcher to the monitor
//! 4. send `Start`; the monitor's helper creates and starts the container
//! 5. record the state; the watcher task handles the exit later ([`Containers::on_exit`])

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard_stubs::models::RestartPolicyNameEnum;
use skiff_image::db::Durability;
use skiff_runtime::config::{MonitorConfig, MonitorDir};
use skiff_runtime::protocol::{ExitStatus, Request, Response, Status as MStatus};

use super::attach::{connect_relay, take_pending};
use super::monitor_client;
use super::rootfs;
use super::spec::{self, NetNs, SpecInput};
use super::{Container, Containers, MountKind, Status};
use crate::error::{EngineError, Kind, Result};
use crate::security::caps;

/// Signal numbers by name (`SIGTERM`, `TERM`, `15`).
pub fn parse_signal(s: &str) -> Result<i32> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(EngineError::invalid(format!("Invalid signal: {s}")));
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    let n = match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "TRAP" => 5,
        "ABRT" | "IOT" => 6,
        "BUS" => 7,
        "FPE" => 8,
        "KILL" => 9,
        "USR1" => 10,
        "SEGV" => 11,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        "STKFLT" => 16,
        "CHLD" | "CLD" => 17,
        "CONT" => 18,
        "STOP" => 19,
        "TSTP" => 20,
        "TTIN" => 21,
        "TTOU" => 22,
        "URG" => 23,
        "XCPU" => 24,
        "XFSZ" => 25,
        "VTALRM" => 26,
        "PROF" => 27,
        "WINCH" => 28,
        "IO" | "POLL" => 29,
        "PWR" => 30,
        "SYS" => 31,
        n if n.starts_with("RTMIN+") => {
            34 + n[6..].parse::<i32>().map_err(|_| EngineError::invalid(format!("Invalid signal: {s}")))?
        }
        _ => return Err(EngineError::invalid(format!("Invalid signal: {s}"))),
    };
    Ok(n)
}

/// What `docker` exits with when a start fails (the CLI maps messages to 126/127).
fn start_error(message: &str) -> (i32, String) {
    if let Some(rest) = message.split("executable '").nth(1) {
        let exe = rest.split('\'').next().unwrap_or("");
        return (
            127,
            format!(
                "failed to create task for container: OCI runtime create failed: unable to start container process: exec: \"{exe}\": executable file not found in $PATH: unknown"
            ),
        );
    }
    let lower = message.to_ascii_lowercase();
    let code = if lower.contains("no such file or directory") {
        127
    } else if lower.contains("permission denied") {
        126
    } else {
        128
    };
    (code, format!("failed to create task for container: OCI runtime create failed: {message}: unknown"))
}

fn tini() -> Option<PathBuf> {
    ["/usr/bin/tini-static", "/usr/bin/docker-init", "/usr/local/bin/tini-static"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// The values of `search` / `options` lines of a resolv.conf.
fn host_lines(text: &str, key: &str) -> Option<Vec<String>> {
    let v: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix(key).filter(|r| r.starts_with(char::is_whitespace)))
        .flat_map(|r| r.split_whitespace().map(str::to_string))
        .collect();
    if v.is_empty() { None } else { Some(v) }
}

fn host_resolv_conf() -> String {
    // The container has its own network namespace: a resolver on the host's loopback is
    // unreachable from it, so such entries are dropped.
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut out = String::new();
    let mut servers = 0;
    for line in host.lines() {
        let t = line.trim();
        if let Some(ns) = t.strip_prefix("nameserver") {
            let ns = ns.trim();
            if ns.starts_with("127.") || ns == "::1" {
                continue;
            }
            servers += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    if servers == 0 {
        out.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
    out
}

impl Containers {
    fn etc_files(
        &self,
        c: &super::ContainerRecord,
        netns: &NetNs,
        host_gateway: Option<std::net::Ipv4Addr>,
    ) -> Result<Vec<(String, PathBuf)>> {
        let dir = self.container_dir(&c.id);
        let hostname = c.config.hostname.clone().unwrap_or_default();
        let mut files = Vec::new();
        if let super::net::Mode::Container(other) = super::net::mode_of(&c.host_config) {
            // Sharing another container's network: its view of the network too.
            let o = self.get(&other)?;
            let odir = self.container_dir(&o.id);
            for f in ["hostname", "hosts", "resolv.conf"] {
                if odir.join(f).exists() {
                    files.push((format!("/etc/{f}"), odir.join(f)));
                }
            }
            return Ok(files);
        }
        std::fs::write(dir.join("hostname"), format!("{hostname}\n"))?;
        files.push(("/etc/hostname".to_string(), dir.join("hostname")));
        if *netns == NetNs::Host {
            files.push(("/etc/hosts".to_string(), PathBuf::from("/etc/hosts")));
            files.push(("/etc/resolv.conf".to_string(), PathBuf::from("/etc/resolv.conf")));
            return Ok(files);
        }
        std::fs::write(dir.join("hosts"), self.hosts_file(c, host_gateway))?;
        let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let mut dns = c.host_config.dns.clone().unwrap_or_default();
        if dns.is_empty() {
            dns = self.networks.cfg.dns.iter().map(|d| d.to_string()).collect();
        }
        let mut resolv = String::new();
        let mut search: Option<Vec<String>> = c.host_config.dns_search.clone().filter(|s| !s.is_empty());
        let mut options: Option<Vec<String>> = c.host_config.dns_options.clone().filter(|s| !s.is_empty());
        if let Some(gw) = self.embedded_dns(c) {
            // The network's embedded DNS server answers (and forwards to `--dns` servers).
            resolv.push_str(&format!("nameserver {gw}\n"));
            if search.is_none() {
                search = host_lines(&host, "search");
            }
            if options.is_none() {
                options = host_lines(&host, "options");
            }
        } else if dns.is_empty() {
            resolv.push_str(&host_resolv_conf());
        } else {
            for d in dns {
                resolv.push_str(&format!("nameserver {d}\n"));
            }
        }
        if let Some(s) = search {
            resolv.push_str(&format!("search {}\n", s.join(" ")));
        }
        if let Some(o) = options {
            resolv.push_str(&format!("options {}\n", o.join(" ")));
        }
        std::fs::write(dir.join("resolv.conf"), resolv)?;
        files.push(("/etc/hosts".to_string(), dir.join("hosts")));
        files.push(("/etc/resolv.conf".to_string(), dir.join("resolv.conf")));
        Ok(files)
    }

    fn netns_of(&self, c: &super::ContainerRecord) -> Result<NetNs> {
        Ok(match super::net::mode_of(&c.host_config) {
            super::net::Mode::Host => NetNs::Host,
            super::net::Mode::Container(other) => {
                let other = self.get(&other)?;
                let (status, pid, sandbox, host) = other.with(|r| {
                    (
                        r.state.status,
                        r.state.pid,
                        r.sandbox.as_ref().map(|s| s.path.clone()),
                        super::net::mode_of(&r.host_config) == super::net::Mode::Host,
                    )
                });
                if !status.is_live() || pid <= 0 {
                    return Err(EngineError::conflict(format!(
                        "cannot join network of a non running container: {}",
                        other.id
                    )));
                }
                if host {
                    NetNs::Host
                } else {
                    NetNs::Join(sandbox.unwrap_or_else(|| PathBuf::from(format!("/proc/{pid}/ns/net"))))
                }
            }
            // Replaced by the sandbox once attached.
            super::net::Mode::Network(_) | super::net::Mode::None => NetNs::New,
        })
    }

    /// Step 1 (blocking): everything on disk the monitor needs.
    fn prepare_run(
        &self,
        c: &super::ContainerRecord,
        netns: NetNs,
        host_gateway: Option<std::net::Ipv4Addr>,
    ) -> Result<MonitorDir> {
        let rootfs = self.images.snapshots().mount(&c.id, c.top_layer.as_ref())?;
        let mut volume_paths = HashMap::new();
        for m in c.mounts.iter().filter(|m| m.kind == MountKind::Volume) {
            let v = self.volumes.inspect(&m.source)?;
            if m.copy_up {
                copy_up(&rootfs, &m.destination, &v.mountpoint)?;
            }
            volume_paths.insert(m.source.clone(), v.mountpoint);
        }
        let user = rootfs::resolve_user(
            &rootfs,
            c.config.user.as_deref().unwrap_or(""),
            c.host_config.group_add.as_deref().unwrap_or(&[]),
        )?;
        if let Some(wd) = c.config.working_dir.as_deref().filter(|w| !w.is_empty()) {
            if !wd.starts_with('/') {
                return Err(EngineError::invalid(format!(
                    "the working directory '{wd}' is invalid, it needs to be an absolute path"
                )));
            }
            rootfs::mkdir_all(&rootfs, std::path::Path::new(wd), user.uid, user.gid)?;
        }
        let etc = self.etc_files(c, &netns, host_gateway)?;
        let hc = &c.host_config;
        let privileged = hc.privileged == Some(true);
        let capset = caps::resolve(
            privileged,
            hc.cap_add.as_deref().unwrap_or(&[]),
            hc.cap_drop.as_deref().unwrap_or(&[]),
            &self.caps_held,
        )
        .map_err(EngineError::invalid)?;
        let sec_opts = hc.security_opt.clone().unwrap_or_default();
        let custom_profile =
            sec_opts.iter().find_map(|o| o.strip_prefix("seccomp=").or_else(|| o.strip_prefix("seccomp:")));
        let seccomp = match custom_profile {
            _ if privileged => None,
            Some("unconfined") => None,
            Some("builtin") | None => {
                Some(self.seccomp.resolve(&capset).map_err(|e| EngineError::internal(e.to_string()))?)
            }
            Some(json) => {
                let p =
                    crate::security::seccomp::Profile::parse(json).map_err(|e| EngineError::invalid(e.to_string()))?;
                Some(p.resolve(&capset).map_err(|e| EngineError::invalid(e.to_string()))?)
            }
        };
        let hostname = c.config.hostname.clone().unwrap_or_else(|| c.id[..12].to_string());
        let tty = c.config.tty == Some(true);
        let env = spec::environment(c.config.env.as_deref().unwrap_or(&[]), &hostname, tty);
        let cgroup_path = format!("/skiff/{}", c.id);
        let input = SpecInput {
            rec: c,
            rootfs: &rootfs,
            user: &user,
            caps: &capset,
            seccomp,
            volume_paths: &volume_paths,
            etc_files: &etc,
            cgroup_path: cgroup_path.clone(),
            netns: netns.clone(),
            cgroup_v2: self.layout.is_v2(),
            hostname,
            env,
            init_binary: if hc.init == Some(true) { tini() } else { None },
            can_raise_rlimits: self.caps_held.contains("CAP_SYS_RESOURCE"),
        };
        let oci = spec::build(&input)?;
        let dir = self.monitor_dir(&c.id);
        // A fresh monitor directory for every run.
        skiff_common::fsutil::remove_all(dir.path())?;
        std::fs::create_dir_all(dir.path())?;
        let bytes = serde_json::to_vec(&oci).map_err(|e| EngineError::internal(e.to_string()))?;
        std::fs::write(dir.path().join("config.json"), bytes)?;
        let log_path = match hc.log_config.as_ref().and_then(|l| l.typ.as_deref()) {
            Some("none") => None,
            _ => Some(self.log_path(&c.id)),
        };
        let mc = MonitorConfig {
            id: c.id.clone(),
            bundle: dir.path().to_path_buf(),
            state_root: self.state_root(),
            log_path,
            log_rotation: super::create::log_rotation(hc)?,
            log_attrs: super::create::log_attrs(
                hc,
                c.config.labels.as_ref(),
                c.config.env.as_deref().unwrap_or(&[]),
                &super::create::TagFields {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    image_id: c.image_id.to_string(),
                    image_name: c.image_ref.clone(),
                },
            )?,
            tty,
            open_stdin: c.config.open_stdin == Some(true),
            stdin_once: c.config.stdin_once == Some(true),
            cgroup_path,
            loopback: netns == NetNs::New,
            console_size: hc
                .console_size
                .as_ref()
                .filter(|s| s.len() == 2)
                .map(|s| (s[0].min(u16::MAX as usize) as u16, s[1].min(u16::MAX as usize) as u16)),
        };
        std::fs::write(dir.config(), serde_json::to_vec(&mc).map_err(|e| EngineError::internal(e.to_string()))?)?;
        Ok(dir)
    }

    /// `docker start`.
    pub async fn start(self: &Arc<Self>, key: &str) -> Result<()> {
        let c = self.get(key)?;
        let _op = c.ops.lock().await;
        self.start_locked(&c).await
    }

    /// Starts a container whose operation lock the caller holds.
    pub(crate) async fn start_locked(self: &Arc<Self>, c: &Arc<Container>) -> Result<()> {
        let rec = c.record();
        match rec.state.status {
            Status::Running | Status::Paused => return Err(EngineError::not_modified()),
            Status::Removing | Status::Dead => {
                return Err(EngineError::conflict(format!(
                    "container {} is marked for removal and cannot be started",
                    rec.id
                )));
            }
            _ => {}
        }
        let mut netns = match self.netns_of(&rec) {
            Ok(n) => n,
            Err(e) => return Err(self.start_failed(c, e)),
        };
        match self.attach_networks(c).await {
            Ok(Some(a)) => netns = NetNs::Join(a.sandbox.path),
            Ok(None) => {}
            Err(e) => return Err(self.start_failed(c, e)),
        }
        let rec = c.record();
        let host_gateway =
            if rec.host_config.extra_hosts.as_ref().is_some_and(|h| h.iter().any(|x| x.ends_with("host-gateway"))) {
                self.networks.host_gateway().await
            } else {
                None
            };
        let this = self.clone();
        let prepared = tokio::task::spawn_blocking(move || this.prepare_run(&rec, netns, host_gateway))
            .await
            .map_err(|e| EngineError::internal(e.to_string()));
        let dir = match prepared {
            Ok(Ok(d)) => d,
            Ok(Err(e)) | Err(e) => {
                self.detach_networks(c).await;
                return Err(self.start_failed(c, e));
            }
        };
        if let Err(e) = monitor_client::spawn(&self.monitor_bin, &dir).await {
            self.detach_networks(c).await;
            return Err(self.start_failed(c, e));
        }
        for p in take_pending(c) {
            if let Err(e) = connect_relay(&dir, p).await {
                tracing::warn!(container = %c.id, error = %e, "attach stream lost at start");
            }
        }
        let watcher = async {
            let mut w = monitor_client::connect(&dir).await?;
            w.send(&Request::Wait).await?;
            match w.response().await? {
                Some(Response::Ok) => Ok(w),
                other => Err(std::io::Error::other(format!("unexpected monitor reply {other:?}"))),
            }
        }
        .await;
        let watcher = match watcher {
            Ok(w) => w,
            Err(e) => {
                self.detach_networks(c).await;
                return Err(self.start_failed(c, EngineError::internal(format!("monitor: {e}"))));
            }
        };
        match monitor_client::call(&dir, Request::Start).await {
            Ok(Response::Started { pid, started_at }) => {
                let rec = self.update(c, Durability::Lazy, |r| {
                    r.state.status = Status::Running;
                    r.state.pid = pid;
                    r.state.started_at = Some(started_at);
                    r.state.exit_code = 0;
                    r.state.error.clear();
                    r.state.oom_killed = false;
                    r.manually_stopped = false;
                    if r.config.healthcheck.as_ref().is_some_and(|h| {
                        h.test.as_ref().is_some_and(|t| t.first().map(String::as_str) != Some("NONE") && !t.is_empty())
                    }) {
                        r.state.health =
                            Some(super::HealthState { status: "starting".into(), failing_streak: 0, log: vec![] });
                    }
                })?;
                self.publish(&rec, "start");
                self.watch_exit(c.clone(), watcher, Instant::now());
                super::health::spawn(self.clone(), c.clone());
                Ok(())
            }
            Ok(other) => {
                self.detach_networks(c).await;
                Err(self.start_failed(c, EngineError::internal(format!("unexpected monitor reply {other:?}"))))
            }
            Err(e) => {
                self.detach_networks(c).await;
                Err(self.start_failed(c, e))
            }
        }
    }

    fn start_failed(self: &Arc<Self>, c: &Arc<Container>, e: EngineError) -> EngineError {
        let (code, message) = if e.kind == Kind::Invalid || e.kind == Kind::NotFound {
            (128, e.message.clone())
        } else {
            start_error(&e.message)
        };
        let _ = self.update(c, Durability::Lazy, |r| {
            r.state.exit_code = code;
            r.state.error = message.clone();
        });
        take_pending(c);
        let rec = c.record();
        self.publish_with(&rec, "die", &[("exitCode", code.to_string())]);
        let _ = self.images.snapshots().unmount(&c.id);
        if rec.host_config.auto_remove == Some(true) {
            // As Docker does: a `--rm` container that cannot start is removed (the CLI waits
            // for that).
            let this = self.clone();
            let id = c.id.clone();
            tokio::spawn(async move {
                if let Err(e) = this.remove(&id, true, true).await {
                    tracing::warn!(container = %id, error = %e, "auto-remove after a failed start");
                }
            });
        }
        let kind = if code == 127 || code == 126 { Kind::Invalid } else { e.kind };
        EngineError::new(kind, message)
    }

    /// Step 5: the watcher waits for the monitor's `Exited`.
    fn watch_exit(self: &Arc<Self>, c: Arc<Container>, mut conn: monitor_client::Conn, started: Instant) {
        let this = self.clone();
        tokio::spawn(async move {
            let status = loop {
                match conn.response().await {
                    Ok(Some(Response::Exited { status })) => break Some(status),
                    Ok(Some(_)) => continue,
                    _ => break None,
                }
            };
            let status = match status {
                Some(s) => s,
                None => this.exit_from_file(&c.id),
            };
            this.on_exit(c, status, started.elapsed()).await;
        });
    }

    /// What a monitor recorded (or, if it vanished without a word, a failure).
    fn exit_from_file(&self, id: &str) -> ExitStatus {
        let dir = self.monitor_dir(id);
        std::fs::read(dir.exit_file()).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(ExitStatus {
            code: 255,
            oom_killed: false,
            finished_at: skiff_common::timefmt::now(),
        })
    }

    /// The container's process is gone: record it, then restart or auto-remove.
    pub(crate) async fn on_exit(self: &Arc<Self>, c: Arc<Container>, status: ExitStatus, ran: Duration) {
        let rec = match self.update(&c, Durability::Lazy, |r| {
            r.state.status = Status::Exited;
            r.state.pid = 0;
            r.state.exit_code = status.code;
            r.state.finished_at = Some(status.finished_at.clone());
            r.state.oom_killed = status.oom_killed;
            if let Some(h) = &mut r.state.health {
                h.status = "unhealthy".into();
            }
        }) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(container = %c.id, error = %e, "recording exit");
                c.record()
            }
        };
        self.detach_networks(&c).await;
        c.bump(true, false);
        if status.oom_killed {
            self.publish(&rec, "oom");
        }
        self.publish_with(&rec, "die", &[("exitCode", status.code.to_string())]);
        let this = self.clone();
        let id = c.id.clone();
        let _ = tokio::task::spawn_blocking(move || this.images.snapshots().unmount(&id)).await;

        let policy = rec.host_config.restart_policy.clone().unwrap_or_default();
        let name = policy.name.unwrap_or(RestartPolicyNameEnum::NO);
        let max = policy.maximum_retry_count.unwrap_or(0);
        let restart = !rec.manually_stopped
            && match name {
                RestartPolicyNameEnum::ALWAYS | RestartPolicyNameEnum::UNLESS_STOPPED => true,
                RestartPolicyNameEnum::ON_FAILURE => status.code != 0 && (max == 0 || rec.restart_count < max),
                _ => false,
            };
        if restart {
            // Docker's back-off: 100 ms doubling, reset when the container ran for 10 s.
            let attempt = if ran > Duration::from_secs(10) { 0 } else { rec.restart_count.min(12) };
            let delay = Duration::from_millis(100u64 << attempt).min(Duration::from_secs(60));
            let _ = self.update(&c, Durability::Lazy, |r| {
                r.state.status = Status::Restarting;
                r.restart_count += 1;
            });
            let this = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _op = c.ops.lock().await;
                if c.status() != Status::Restarting {
                    return;
                }
                let _ = this.update(&c, Durability::Lazy, |r| r.state.status = Status::Exited);
                if let Err(e) = this.start_locked(&c).await {
                    tracing::warn!(container = %c.id, error = %e, "restart failed");
                    let _ = this.update(&c, Durability::Lazy, |r| r.state.status = Status::Exited);
                }
                let rec = c.record();
                this.publish(&rec, "restart");
            });
            return;
        }
        if rec.host_config.auto_remove == Some(true) {
            let this = self.clone();
            tokio::spawn(async move {
                if let Err(e) = this.remove(&c.id, true, true).await {
                    tracing::warn!(container = %c.id, error = %e, "auto-remove failed");
                }
            });
        }
    }

    /// Sends a signal through the monitor.
    async fn signal(&self, c: &Container, sig: i32) -> Result<()> {
        monitor_client::call(&self.monitor_dir(&c.id), Request::Signal { signal: sig }).await.map(|_| ())
    }

    /// Waits until the container is not running, up to `timeout`. True if it stopped.
    async fn wait_stopped(&self, c: &Container, timeout: Duration) -> bool {
        let mut rx = c.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if !c.status().is_live() {
                return true;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return !c.status().is_live(),
                Err(_) => return false,
            }
        }
    }

    /// `docker stop`: the stop signal, then SIGKILL after the timeout.
    pub async fn stop(self: &Arc<Self>, key: &str, timeout: Option<i64>, signal: Option<String>) -> Result<()> {
        let c = self.get(key)?;
        let _op = c.ops.lock().await;
        self.stop_locked(&c, timeout, signal).await
    }

    pub(crate) async fn stop_locked(
        self: &Arc<Self>,
        c: &Arc<Container>,
        timeout: Option<i64>,
        signal: Option<String>,
    ) -> Result<()> {
        let rec = c.record();
        if rec.state.status == Status::Restarting {
            self.update(c, Durability::Lazy, |r| {
                r.manually_stopped = true;
                r.state.status = Status::Exited;
            })?;
            return Ok(());
        }
        if !rec.state.status.is_live() {
            return Err(EngineError::not_modified());
        }
        self.update(c, Durability::Sync, |r| r.manually_stopped = true)?;
        let sig = match signal.or(rec.config.stop_signal.clone()).filter(|s| !s.is_empty()) {
            Some(s) => parse_signal(&s)?,
            None => 15,
        };
        let timeout = timeout.or(rec.config.stop_timeout).unwrap_or(10);
        let paused = rec.state.status == Status::Paused;
        if sig != 9 {
            if let Err(e) = self.signal(c, sig).await {
                tracing::debug!(container = %c.id, error = %e, "stop signal not delivered");
            }
            if paused {
                let _ = monitor_client::call(&self.monitor_dir(&c.id), Request::Resume).await;
            }
            let t =
                if timeout < 0 { Duration::from_secs(u32::MAX as u64) } else { Duration::from_secs(timeout as u64) };
            if self.wait_stopped(c, t).await {
                self.publish(&c.record(), "stop");
                return Ok(());
            }
        }
        self.publish_with(&c.record(), "kill", &[("signal", "9".into())]);
        let _ = self.signal(c, 9).await;
        if paused {
            let _ = monitor_client::call(&self.monitor_dir(&c.id), Request::Resume).await;
        }
        if !self.wait_stopped(c, Duration::from_secs(30)).await {
            return Err(EngineError::internal(format!("container {} did not stop after SIGKILL", c.id)));
        }
        self.publish(&c.record(), "stop");
        Ok(())
    }

    /// `docker kill`.
    pub async fn kill(self: &Arc<Self>, key: &str, signal: Option<String>) -> Result<()> {
        let c = self.get(key)?;
        let _op = c.ops.lock().await;
        if !c.status().is_live() {
            return Err(EngineError::conflict(format!(
                "Cannot kill container: {}: Container {} is not running",
                key, c.id
            )));
        }
        let sig = parse_signal(signal.as_deref().filter(|s| !s.is_empty()).unwrap_or("KILL"))?;
        self.signal(&c, sig).await?;
        self.publish_with(&c.record(), "kill", &[("signal", sig.to_string())]);
        if sig == 9 {
            self.wait_stopped(&c, Duration::from_secs(30)).await;
        }
        Ok(())
    }

    /// `docker restart`.
    pub async fn restart(self: &Arc<Self>, key: &str, timeout: Option<i64>, signal: Option<String>) -> Result<()> {
        let c = self.get(key)?;
        let _op = c.ops.lock().await;
        match self.stop_locked(&c, timeout, signal).await {
            Ok(()) => {}
            Err(e) if e.kind == Kind::NotModified => {}
            Err(e) => return Err(e),
        }
        self.start_locked(&c).await?;
        self.update(&c, Durability::Lazy, |r| r.manually_stopped = false)?;
        self.publish(&c.record(), "restart");
        Ok(())
    }

    /// `POST /containers/{id}/wait`: `not-running` (default), `next-exit` or `removed`.
    pub async fn wait(self: &Arc<Self>, key: &str, condition: &str) -> Result<(i64, Option<String>)> {
        let c = self.get(key)?;
        let mut rx = c.subscribe();
        let start = *rx.borrow_and_update();
        loop {
            let g = *rx.borrow_and_update();
            let rec = c.record();
            let done = match condition {
                "next-exit" => g.exits > start.exits || g.removed,
                "removed" => g.removed,
                "" | "not-running" => {
                    !rec.state.status.is_live() && rec.state.status != Status::Restarting || g.removed
                }
                other => {
                    return Err(EngineError::invalid(format!("invalid condition: {other:?}")));
                }
            };
            if done {
                // A start error is in inspect's State.Error; the wait result carries only the
                // exit code (the CLI would print the error a second time).
                return Ok((rec.state.exit_code as i64, None));
            }
            if rx.changed().await.is_err() {
                let rec = c.record();
                return Ok((rec.state.exit_code as i64, None));
            }
        }
    }

    /// `docker pause` / `unpause`.
    pub async fn pause(self: &Arc<Self>, key: &str, pause: bool) -> Result<()> {
        let c = self.get(key)?;
        let _op = c.ops.lock().await;
        let st = c.status();
        match (st, pause) {
            (Status::Running, true) | (Status::Paused, false) => {}
            (Status::Paused, true) => {
                return Err(EngineError::conflict(format!("Container {} is already paused", c.id)));
            }
            (Status::Running, false) => {
                return Err(EngineError::conflict(format!("Container {} is not paused", c.id)));
            }
            _ => {
                return Err(EngineError::conflict(format!("Container {} is not running", c.id)));
            }
        }
        let req = if pause { Request::Pause } else { Request::Resume };
        monitor_client::call(&self.monitor_dir(&c.id), req).await?;
        let rec = self
            .update(&c, Durability::Lazy, |r| r.state.status = if pause { Status::Paused } else { Status::Running })?;
        self.publish(&rec, if pause { "pause" } else { "unpause" });
        Ok(())
    }

    /// `docker rm`.
    pub async fn remove(self: &Arc<Self>, key: &str, force: bool, volumes: bool) -> Result<()> {
        let c = self.get(key)?;
        let _op = c.ops.lock().await;
        let st = c.status();
        if st == Status::Removing {
            return Err(EngineError::conflict(format!("removal of container {} is already in progress", c.id)));
        }
        if st.is_live() || st == Status::Restarting {
            if !force {
                let what = if st == Status::Paused { "paused" } else { "running" };
                return Err(EngineError::conflict(format!(
                    "cannot remove container \"/{}\": container is {what}: stop the container before removing or force remove",
                    c.name()
                )));
            }
            self.update(&c, Durability::Lazy, |r| r.manually_stopped = true)?;
            if st != Status::Restarting {
                let _ = self.signal(&c, 9).await;
                if st == Status::Paused {
                    let _ = monitor_client::call(&self.monitor_dir(&c.id), Request::Resume).await;
                }
                if !self.wait_stopped(&c, Duration::from_secs(30)).await {
                    return Err(EngineError::internal(format!("could not kill container {}", c.id)));
                }
            }
        }
        let rec = self.update(&c, Durability::Lazy, |r| r.state.status = Status::Removing)?;
        take_pending(&c);
        self.detach_networks(&c).await;
        let this = self.clone();
        let id = c.id.clone();
        let cleanup = tokio::task::spawn_blocking(move || -> Result<()> {
            this.images.snapshots().remove(&id)?;
            skiff_common::fsutil::remove_all(&this.container_dir(&id))?;
            skiff_common::fsutil::remove_all(this.monitor_dir(&id).path())?;
            Ok(())
        })
        .await
        .map_err(|e| EngineError::internal(e.to_string()))?;
        if let Err(e) = cleanup {
            let _ = self.update(&c, Durability::Lazy, |r| r.state.status = Status::Dead);
            return Err(e);
        }
        self.forget(&c)?;
        self.execs.forget_container(&c.id);
        if volumes {
            for m in rec.mounts.iter().filter(|m| m.kind == MountKind::Volume && m.anonymous) {
                if !self.volumes_in_use().contains(&m.source)
                    && let Err(e) = self.volumes.remove(&m.source)
                {
                    tracing::warn!(volume = %m.source, error = %e, "removing anonymous volume");
                }
            }
        }
        self.publish(&rec, "destroy");
        Ok(())
    }

    /// At daemon start: reconnect to the monitors of running containers, and settle the state
    /// of those that exited while the daemon was away.
    pub async fn restore(self: &Arc<Self>) {
        for c in self.all() {
            let st = c.status();
            let dir = self.monitor_dir(&c.id);
            let alive =
                if dir.socket().exists() { monitor_client::call(&dir, Request::State).await.ok() } else { None };
            match alive {
                Some(Response::State { state }) if matches!(state.status, MStatus::Running | MStatus::Paused) => {
                    let status = if state.status == MStatus::Paused { Status::Paused } else { Status::Running };
                    let _ = self.update(&c, Durability::Lazy, |r| {
                        r.state.status = status;
                        r.state.pid = state.pid.unwrap_or(0);
                        if let Some(s) = &state.started_at {
                            r.state.started_at = Some(s.clone());
                        }
                    });
                    let watcher = async {
                        let mut w = monitor_client::connect(&dir).await?;
                        w.send(&Request::Wait).await?;
                        Ok::<_, std::io::Error>(w)
                    }
                    .await;
                    match watcher {
                        Ok(mut w) => {
                            // The first reply is Ok (still running) or Exited (just finished).
                            match w.response().await {
                                Ok(Some(Response::Ok)) => {
                                    self.watch_exit(c.clone(), w, Instant::now() - Duration::from_secs(60))
                                }
                                Ok(Some(Response::Exited { status })) => {
                                    self.on_exit(c.clone(), status, Duration::from_secs(60)).await
                                }
                                _ => {
                                    let s = self.exit_from_file(&c.id);
                                    self.on_exit(c.clone(), s, Duration::from_secs(60)).await;
                                }
                            }
                        }
                        Err(_) => {
                            let s = self.exit_from_file(&c.id);
                            self.on_exit(c.clone(), s, Duration::from_secs(60)).await;
                        }
                    }
                    super::health::spawn(self.clone(), c.clone());
                }
                // A start whose record was not flushed before a crash still left the monitor's
                // exit file behind.
                _ if st.is_live()
                    || st == Status::Restarting
                    || (st == Status::Created && dir.exit_file().exists()) =>
                {
                    let s = self.exit_from_file(&c.id);
                    self.on_exit(c.clone(), s, Duration::from_secs(60)).await;
                }
                _ if st == Status::Removing => {
                    let _ = self.update(&c, Durability::Lazy, |r| r.state.status = Status::Dead);
                }
                _ => {}
            }
        }
        // Containers with a restart policy of always come back with the daemon.
        for c in self.all() {
            let rec = c.record();
            let policy = rec.host_config.restart_policy.as_ref().and_then(|p| p.name);
            let wants = matches!(policy, Some(RestartPolicyNameEnum::ALWAYS))
                || (matches!(policy, Some(RestartPolicyNameEnum::UNLESS_STOPPED)) && !rec.manually_stopped);
            if wants && rec.state.status == Status::Exited && rec.state.started_at.is_some() {
                let this = self.clone();
                tokio::spawn(async move {
                    let _op = c.ops.lock().await;
                    if let Err(e) = this.start_locked(&c).await {
                        tracing::warn!(container = %c.id, error = %e, "restart at daemon start failed");
                    }
                });
            }
        }
    }
}

/// Copies the image's content at `dest` into a volume that is still empty (Docker's copy-up).
fn copy_up(rootfs: &std::path::Path, dest: &str, volume: &std::path::Path) -> Result<()> {
    if std::fs::read_dir(volume)?.next().is_some() {
        return Ok(());
    }
    let src = match rootfs::resolve(rootfs, std::path::Path::new(dest)) {
        Ok(p) => p,
        Err(_) => return Ok(()),
    };
    if src.is_dir() {
        skiff_image::layers::copy_tree(&src, volume)?;
        // The volume root takes the directory's owner and mode.
        if let Ok(m) = std::fs::metadata(&src) {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            let _ = std::os::unix::fs::chown(volume, Some(m.uid()), Some(m.gid()));
            let _ = std::fs::set_permissions(volume, std::fs::Permissions::from_mode(m.mode() & 0o7777));
        }
    }
    Ok(())
}

impl Containers {
    /// `docker update`: new resource limits and restart policy, applied to the running
    /// container's cgroups and kept for later starts.
    pub async fn update_resources(
        self: &Arc<Self>,
        key: &str,
        u: bollard_stubs::models::ContainerUpdateBody,
    ) -> Result<Vec<String>> {
        let c = self.get(key)?;
        let _op = c.ops.lock().await;
        let rec = c.record();
        let mut hc = rec.host_config.clone();
        // As in Docker, zero (and empty) means "leave as it is": clients send every field.
        let mut u = u;
        let nz = |v: Option<i64>| v.filter(|x| *x != 0);
        u.memory = nz(u.memory);
        u.memory_swap = nz(u.memory_swap);
        u.memory_reservation = nz(u.memory_reservation);
        u.cpu_shares = nz(u.cpu_shares);
        u.nano_cpus = nz(u.nano_cpus);
        u.cpu_quota = nz(u.cpu_quota);
        u.cpu_period = nz(u.cpu_period);
        u.blkio_weight = u.blkio_weight.filter(|w| *w != 0);
        u.cpuset_cpus = u.cpuset_cpus.filter(|c| !c.is_empty());
        u.cpuset_mems = u.cpuset_mems.filter(|c| !c.is_empty());
        if u.restart_policy.as_ref().is_some_and(|p| matches!(p.name, None | Some(RestartPolicyNameEnum::EMPTY))) {
            u.restart_policy = None;
        }
        if let Some(m) = u.memory {
            if m > 0 && m < 6 * 1024 * 1024 {
                return Err(EngineError::invalid("Minimum memory limit allowed is 6MB"));
            }
            hc.memory = Some(m);
        }
        if let Some(s) = u.memory_swap {
            hc.memory_swap = Some(s);
        }
        if let (Some(m), Some(s)) = (hc.memory.filter(|m| *m > 0), hc.memory_swap.filter(|s| *s > 0))
            && s < m
        {
            return Err(EngineError::invalid("Minimum memoryswap limit should be larger than memory limit, see usage"));
        }
        if u.memory.is_some() && u.memory_swap.is_none() && rec.host_config.memory_swap.unwrap_or(0) > 0 {
            // Docker keeps the ratio sane: a new memory limit above the old swap limit grows swap.
            if hc.memory.unwrap_or(0) > hc.memory_swap.unwrap_or(0) {
                hc.memory_swap = hc.memory.map(|m| m * 2);
            }
        }
        if let Some(v) = u.memory_reservation {
            hc.memory_reservation = Some(v);
        }
        if let Some(v) = u.cpu_shares {
            hc.cpu_shares = Some(v);
        }
        if let Some(v) = u.nano_cpus {
            hc.nano_cpus = Some(v);
        }
        if let Some(v) = u.cpu_quota {
            hc.cpu_quota = Some(v);
        }
        if let Some(v) = u.cpu_period {
            hc.cpu_period = Some(v);
        }
        if let Some(v) = u.cpuset_cpus.clone() {
            hc.cpuset_cpus = Some(v);
        }
        if let Some(v) = u.cpuset_mems.clone() {
            hc.cpuset_mems = Some(v);
        }
        if let Some(v) = u.pids_limit {
            hc.pids_limit = Some(v);
        }
        if let Some(v) = u.blkio_weight {
            hc.blkio_weight = Some(v);
        }
        if let Some(p) = u.restart_policy.clone() {
            if hc.auto_remove == Some(true)
                && !matches!(p.name, None | Some(RestartPolicyNameEnum::NO) | Some(RestartPolicyNameEnum::EMPTY))
            {
                return Err(EngineError::invalid(
                    "Restart policy cannot be updated because AutoRemove is enabled for the container",
                ));
            }
            hc.restart_policy = Some(p);
        }
        if rec.state.status.is_live() {
            let mut up = skiff_runtime::cgroups::Update {
                memory: u.memory,
                memory_swap: if u.memory.is_some() || u.memory_swap.is_some() {
                    Some(match hc.memory_swap {
                        Some(-1) => -1,
                        Some(s) if s > 0 => s,
                        _ => hc.memory.unwrap_or(0) * 2,
                    })
                } else {
                    None
                },
                memory_reservation: u.memory_reservation,
                cpu_shares: u.cpu_shares.map(|s| s.max(0) as u64),
                cpu_quota: u.cpu_quota,
                cpu_period: u.cpu_period.map(|p| p.max(0) as u64),
                cpuset_cpus: u.cpuset_cpus.clone(),
                cpuset_mems: u.cpuset_mems.clone(),
                pids_limit: u.pids_limit,
                blkio_weight: u.blkio_weight,
            };
            if let Some(n) = u.nano_cpus {
                up.cpu_period = Some(100_000);
                up.cpu_quota = Some(if n > 0 { (n as i128 * 100_000 / 1_000_000_000) as i64 } else { -1 });
            }
            self.layout
                .update(&format!("/skiff/{}", c.id), &up)
                .map_err(|e| EngineError::invalid(format!("Cannot update container {}: {e}", c.id)))?;
        }
        let rec = self.update(&c, Durability::Sync, |r| r.host_config = hc)?;
        self.publish(&rec, "update");
        Ok(vec![])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), 15);
        assert_eq!(parse_signal("kill").unwrap(), 9);
        assert_eq!(parse_signal("10").unwrap(), 10);
        assert_eq!(parse_signal("RTMIN+1").unwrap(), 35);
        assert!(parse_signal("SIGFOO").is_err());
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("99").is_err());
    }

    #[test]
    fn start_errors_read_like_docker() {
        let (code, msg) =
            start_error("failed to create container: exec process failed: executable 'nope' not found in $PATH");
        assert_eq!(code, 127);
        assert!(msg.contains("exec: \"nope\": executable file not found in $PATH"));
        assert_eq!(start_error("open /x: permission denied").0, 126);
    }
}
