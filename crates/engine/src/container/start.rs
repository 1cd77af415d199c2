//! `docker start`: the path of one start.
//!
//! 1. (blocking pool) mount the snapshot, copy image content into new volumes, resolve the user,
//!    write /etc/hosts, /etc/hostname, /etc/resolv.conf, build the OCI spec, write the bundle and
//!    `monitor.json`
//! 2. spawn `skiff-monitor` and wait for `ready`
//! 3. connect parked attach streams and a `Wait` watcher to the monitor
//! 4. send `Start`; the monitor's helper creates and starts the container
//! 5. record the state; the watcher task handles the exit later (`exit.rs`)

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use skiff_image::db::Durability;
use skiff_runtime::config::{MonitorConfig, MonitorDir};
use skiff_runtime::protocol::{Request, Response};
use tracing::Instrument;

use super::attach::{connect_relay, take_pending};
use super::monitor_client;
use super::rootfs;
use super::secopts::Seccomp;
use super::spec::{self, NetNs, SpecInput};
use super::{Container, Containers, MountKind, Status};
use crate::error::{EngineError, Kind, Result};
use crate::security::caps;

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

    /// The IPC namespace and /dev/shm a starting container gets (`--ipc`); a shareable one's
    /// /dev/shm is a tmpfs the daemon mounts at `<container dir>/shm` (unmounted at exit).
    fn ipc_for(&self, c: &super::ContainerRecord) -> Result<spec::Ipc> {
        let hc = &c.host_config;
        let mode = hc.ipc_mode.as_deref().filter(|m| !m.is_empty()).unwrap_or("private");
        Ok(match mode {
            "private" => spec::Ipc::Private,
            "none" => spec::Ipc::None,
            "host" => spec::Ipc::Host,
            "shareable" => {
                let shm = self.container_dir(&c.id).join("shm");
                std::fs::create_dir_all(&shm)?;
                if !is_mount_point(&shm) {
                    let size = hc.shm_size.filter(|s| *s > 0).unwrap_or(64 << 20);
                    let opts = std::ffi::CString::new(format!("mode=1777,size={size}")).expect("no NUL");
                    rustix::mount::mount(
                        "shm",
                        &shm,
                        "tmpfs",
                        rustix::mount::MountFlags::NOSUID
                            | rustix::mount::MountFlags::NODEV
                            | rustix::mount::MountFlags::NOEXEC,
                        Some(opts.as_c_str()),
                    )
                    .map_err(|e| EngineError::internal(format!("mounting the shareable /dev/shm: {e}")))?;
                }
                spec::Ipc::Shareable(shm)
            }
            m => {
                let donor = m.strip_prefix("container:").unwrap_or("");
                let d = self.get(donor)?;
                let (status, pid, dmode, did) = d.with(|r| {
                    (r.state.status, r.state.pid, r.host_config.ipc_mode.clone().unwrap_or_default(), r.id.clone())
                });
                if !status.is_live() || pid <= 0 {
                    return Err(EngineError::conflict(format!("cannot join IPC of a non running container: {donor}")));
                }
                match dmode.as_str() {
                    "host" => spec::Ipc::Host,
                    "shareable" => spec::Ipc::Join {
                        ns: PathBuf::from(format!("/proc/{pid}/ns/ipc")),
                        shm: self.container_dir(&did).join("shm"),
                    },
                    _ => {
                        return Err(EngineError::invalid(format!(
                            "non-shareable IPC (hint: use IpcMode:shareable for the donor container {donor})"
                        )));
                    }
                }
            }
        })
    }

    /// Unmounts a shareable /dev/shm (at exit and removal).
    pub(super) fn release_shm(&self, id: &str) {
        let shm = self.container_dir(id).join("shm");
        if is_mount_point(&shm) {
            let _ = rustix::mount::unmount(&shm, rustix::mount::UnmountFlags::DETACH);
        }
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
        let seccomp = match &c.security.seccomp {
            _ if privileged => None,
            Seccomp::Unconfined => None,
            Seccomp::Builtin => Some(self.seccomp.resolve(&capset).map_err(EngineError::from_cause)?),
            Seccomp::Custom(json) => {
                let p =
                    crate::security::seccomp::Profile::parse(json).map_err(|e| EngineError::invalid(e.to_string()))?;
                Some(p.resolve(&capset).map_err(|e| EngineError::invalid(e.to_string()))?)
            }
        };
        for m in &c.mounts {
            super::mounts::check_source_propagation(m)?;
        }
        let hostname = c.config.hostname.clone().unwrap_or_else(|| c.id[..12].to_string());
        let tty = c.config.tty == Some(true);
        // Legacy links' variables first: the container's own environment wins over them.
        let mut env_in = self.link_env(c);
        env_in.extend(c.config.env.clone().unwrap_or_default());
        let env = spec::environment(&env_in, &hostname, tty);
        let cgroup_path = format!("/skiff/{}", c.id);
        let input_cgroup_path = cgroup_path.clone();
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
            ipc: self.ipc_for(c)?,
            daemon_root: &self.data_root,
            kernel_rro: super::mounts::kernel_has_rro(),
        };
        let oci = spec::build(&input)?;
        let dir = self.monitor_dir(&c.id);
        // A fresh monitor directory for every run. A monitor killed with its container while
        // the daemon was down left libcontainer's state and the cgroup behind, and libcontainer
        // would refuse to create the container again over them.
        skiff_common::fsutil::remove_all(dir.path())?;
        let _ = skiff_common::fsutil::remove_all(&self.state_root().join(&c.id));
        let _ = self.layout.remove(&input_cgroup_path);
        std::fs::create_dir_all(dir.path())?;
        let bytes = serde_json::to_vec(&oci).map_err(EngineError::from_cause)?;
        std::fs::write(dir.path().join("config.json"), bytes)?;
        let log_path = match super::logopts::LogDriver::of(hc)? {
            super::logopts::LogDriver::None => None,
            super::logopts::LogDriver::JsonFile | super::logopts::LogDriver::Local => Some(self.log_path(&c.id)),
        };
        let mc = MonitorConfig {
            id: c.id.clone(),
            bundle: dir.path().to_path_buf(),
            state_root: self.state_root(),
            log_path,
            log_rotation: super::logopts::log_rotation(hc)?,
            log_attrs: super::logopts::log_attrs(
                hc,
                c.config.labels.as_ref(),
                c.config.env.as_deref().unwrap_or(&[]),
                &super::logopts::TagFields {
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
        std::fs::write(dir.config(), serde_json::to_vec(&mc).map_err(EngineError::from_cause)?)?;
        Ok(dir)
    }

    /// `docker start`.
    pub async fn start(self: &Arc<Self>, key: &str) -> Result<()> {
        let (this, key) = (self.clone(), key.to_string());
        self.to_completion(async move {
            let c = this.get(&key)?;
            let _op = c.ops.lock().await;
            this.start_locked(&c).await
        })
        .await
    }

    /// Starts a container whose operation lock the caller holds, in a tracing span (`start`,
    /// with one per phase under it: `network`, `prepare`, `monitor`, `create`) — what a
    /// subscriber at debug level sees of where a start's time goes.
    pub(crate) async fn start_locked(self: &Arc<Self>, c: &Arc<Container>) -> Result<()> {
        let span = tracing::debug_span!("start", container = %c.id);
        self.start_phases(c).instrument(span).await
    }

    async fn start_phases(self: &Arc<Self>, c: &Arc<Container>) -> Result<()> {
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
        match self.attach_networks(c).instrument(tracing::debug_span!("network")).await {
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
        let span = tracing::debug_span!("prepare");
        let prepared =
            tokio::task::spawn_blocking(move || span.in_scope(|| this.prepare_run(&rec, netns, host_gateway)))
                .await
                .map_err(EngineError::from_cause);
        let dir = match prepared {
            Ok(Ok(d)) => d,
            Ok(Err(e)) | Err(e) => {
                self.detach_networks(c).await;
                return Err(self.start_failed(c, e));
            }
        };
        if let Err(e) = monitor_client::spawn(&self.monitor_bin, &dir).instrument(tracing::debug_span!("monitor")).await
        {
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
        match monitor_client::call(&dir, Request::Start).instrument(tracing::debug_span!("create")).await {
            Ok(Response::Started { pid, started_at }) => {
                let rec = self.update(c, Durability::Lazy, |r| {
                    let health = super::health::has_check(&r.config).then(super::health::starting);
                    let at = skiff_common::timefmt::parse(&started_at).unwrap_or_else(std::time::SystemTime::now);
                    r.state.started(pid, at, health);
                    r.manually_stopped = false;
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
            self.spawn_owned(async move {
                if let Err(e) = this.remove(&id, true, true).await {
                    tracing::warn!(container = %id, error = %e, "auto-remove after a failed start");
                }
            });
        }
        let kind = if code == 127 || code == 126 { Kind::Invalid } else { e.kind };
        EngineError::new(kind, message)
    }
}

/// Whether a directory is the root of a mount.
fn is_mount_point(p: &std::path::Path) -> bool {
    skiff_common::tree::stat_at(rustix::fs::CWD, p.as_os_str()).is_ok_and(|s| s.mount_root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_errors_read_like_docker() {
        let (code, msg) =
            start_error("failed to create container: exec process failed: executable 'nope' not found in $PATH");
        assert_eq!(code, 127);
        assert!(msg.contains("exec: \"nope\": executable file not found in $PATH"));
        assert_eq!(start_error("open /x: permission denied").0, 126);
    }
}
