//! The OCI runtime spec of a container, with Docker's defaults: namespaces, mounts, masked and
//! read-only paths, device rules, capabilities, seccomp, resources, rlimits.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxCapabilities, LinuxNamespace, LinuxNamespaceType, LinuxSeccomp, Mount, Process, Root, Spec, User,
};

use super::rootfs::ResolvedUser;
use super::{ContainerRecord, MountKind};
use crate::error::{EngineError, Result};
use crate::security::{MASKED_PATHS, READONLY_PATHS};

mod limits;
use limits::{host_devices, resources, rlimits};

/// How the container gets its network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetNs {
    /// A new, empty one (loopback only).
    New,
    /// The host's.
    Host,
    /// Join an existing one (`--network container:X`).
    Join(PathBuf),
}

/// The IPC namespace and `/dev/shm` of a container (`--ipc`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ipc {
    /// Its own namespace and `/dev/shm` (`private`, the default).
    Private,
    /// Its own namespace, no `/dev/shm` (`none`).
    None,
    /// The host's namespace and `/dev/shm` (`host`).
    Host,
    /// Its own namespace; `/dev/shm` is the given host directory (a tmpfs the daemon mounted),
    /// so other containers can share it (`shareable`).
    Shareable(PathBuf),
    /// Another container's namespace and `/dev/shm` (`container:X`).
    Join { ns: PathBuf, shm: PathBuf },
}

pub struct SpecInput<'a> {
    pub rec: &'a ContainerRecord,
    pub rootfs: &'a Path,
    pub user: &'a ResolvedUser,
    pub caps: &'a BTreeSet<String>,
    /// `None`: unconfined.
    pub seccomp: Option<LinuxSeccomp>,
    /// Host paths for volume mounts, by volume name.
    pub volume_paths: &'a HashMap<String, PathBuf>,
    /// /etc/hosts, /etc/hostname, /etc/resolv.conf sources (skipped with `--network host` for hosts/resolv).
    pub etc_files: &'a [(String, PathBuf)],
    pub cgroup_path: String,
    pub netns: NetNs,
    pub cgroup_v2: bool,
    pub hostname: String,
    pub env: Vec<String>,
    /// Path of tini (for `--init`).
    pub init_binary: Option<PathBuf>,
    /// Whether the daemon can raise hard rlimits.
    pub can_raise_rlimits: bool,
    pub ipc: Ipc,
    /// The daemon's data root (binds from inside it default to rslave).
    pub daemon_root: &'a Path,
    /// Whether the kernel can make a mount read-only recursively (`rro`).
    pub kernel_rro: bool,
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dest));
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(PathBuf::from(source)));
    m.set_options(Some(options.iter().map(|s| s.to_string()).collect()));
    m
}

fn caps_set(caps: &BTreeSet<String>) -> Result<oci_spec::runtime::Capabilities> {
    caps.iter()
        .map(|c| {
            c.trim_start_matches("CAP_")
                .parse::<Capability>()
                .map_err(|e| EngineError::invalid(format!("capability {c}: {e}")))
        })
        .collect()
}

/// Builds the spec.
/// Where a mount destination really is inside the container: its symlinks followed within
/// the root filesystem (missing components kept as given). Unresolvable: as given.
fn in_root(rootfs: &Path, dest: &str) -> String {
    let Ok(rootfs) = rootfs.canonicalize() else { return dest.to_string() };
    match super::rootfs::resolve(&rootfs, Path::new(dest)) {
        Ok(host) => match host.strip_prefix(&rootfs) {
            Ok(rel) => format!("/{}", rel.display()),
            Err(_) => dest.to_string(),
        },
        Err(_) => dest.to_string(),
    }
}

/// The container's process: argv (behind `docker-init` with `--init`), user, capabilities,
/// rlimits, terminal.
fn process(input: &SpecInput<'_>, tty: bool, no_new_privs: bool) -> Result<Process> {
    let rec = input.rec;
    let hc = &rec.host_config;
    let mut args = Vec::new();
    if hc.init == Some(true) {
        if input.init_binary.is_none() {
            return Err(EngineError::invalid(
                "--init needs tini on the host (Debian package \"tini\"); none was found",
            ));
        }
        args.push("/sbin/docker-init".to_string());
        args.push("--".to_string());
    }
    args.push(rec.path.clone());
    args.extend(rec.args.iter().cloned());

    let mut user = User::default();
    user.set_uid(input.user.uid);
    user.set_gid(input.user.gid);
    user.set_additional_gids(if input.user.additional_gids.is_empty() {
        None
    } else {
        Some(input.user.additional_gids.clone())
    });

    let caps = caps_set(input.caps)?;
    let mut lc = LinuxCapabilities::default();
    lc.set_bounding(Some(caps.clone()));
    lc.set_effective(Some(caps.clone()));
    lc.set_permitted(Some(caps));
    lc.set_inheritable(None);
    lc.set_ambient(None);

    let mut process = Process::default();
    process.set_terminal(Some(tty));
    process.set_user(user);
    process.set_args(Some(args));
    process.set_env(Some(input.env.clone()));
    process
        .set_cwd(PathBuf::from(rec.config.working_dir.clone().filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into())));
    process.set_capabilities(Some(lc));
    process.set_rlimits(rlimits(hc, input.can_raise_rlimits)?);
    // Absent rather than false: libcontainer treats any value as "set" and would then load
    // seccomp after dropping CAP_SYS_ADMIN, which fails without no_new_privs.
    process.set_no_new_privileges(if no_new_privs { Some(true) } else { None });
    process.set_apparmor_profile(None);
    process.set_oom_score_adj(hc.oom_score_adj.map(|v| v as i32));
    Ok(process)
}

/// The container's mounts: the system ones, /dev/shm by IPC mode, the daemon's etc files
/// (unless the user mounts over them), `--init`, then the user's (parents first).
fn mounts(input: &SpecInput<'_>, privileged: bool) -> Result<Vec<Mount>> {
    let rec = input.rec;
    let hc = &rec.host_config;
    let ro_sys = if privileged { "rw" } else { "ro" };
    let shm_size = hc.shm_size.filter(|s| *s > 0).unwrap_or(64 << 20);
    let shm_opt = format!("size={shm_size}");
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"]),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        ),
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", ro_sys]),
        mount("/sys/fs/cgroup", "cgroup", "cgroup", &["nosuid", "noexec", "nodev", "relatime", ro_sys]),
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
    ];
    match &input.ipc {
        Ipc::Private => {
            mounts.push(mount("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", &shm_opt]))
        }
        Ipc::None => {}
        Ipc::Host => mounts.push(mount("/dev/shm", "bind", "/dev/shm", &["rbind", "rprivate"])),
        Ipc::Shareable(dir) | Ipc::Join { shm: dir, .. } => {
            mounts.push(mount("/dev/shm", "bind", &dir.to_string_lossy(), &["rbind", "rprivate"]))
        }
    }
    let user_dests: BTreeSet<String> =
        rec.mounts.iter().map(|m| m.destination.trim_end_matches('/').to_string()).collect();
    for (dest, src) in input.etc_files {
        if user_dests.contains(dest) {
            continue;
        }
        mounts.push(mount(&in_root(input.rootfs, dest), "bind", &src.to_string_lossy(), &["rbind", "rprivate"]));
    }
    if let Some(init) = &input.init_binary {
        mounts.push(mount("/sbin/docker-init", "bind", &init.to_string_lossy(), &["bind", "ro", "rprivate"]));
    }
    let mut user_mounts: Vec<_> = rec.mounts.iter().collect();
    user_mounts.sort_by_key(|m| Path::new(&m.destination).components().count());
    for m in user_mounts {
        // A destination that is a symlink in the image is followed inside the container's
        // root, as runc does (the runtime refuses to mount over a symlink).
        let dest = in_root(input.rootfs, &m.destination);
        let propagation = super::mounts::effective_propagation(m, input.daemon_root);
        let rw = if m.rw { "rw" } else { "ro" };
        match m.kind {
            MountKind::Bind => {
                let recursive = if m.options.iter().any(|o| o == "nonrecursive") { "bind" } else { "rbind" };
                let mut opts = vec![recursive, rw, propagation];
                opts.extend(super::mounts::read_only_recursion(m, input.kernel_rro)?);
                mounts.push(mount(&dest, "bind", &m.source, &opts))
            }
            MountKind::Volume => {
                let src = input
                    .volume_paths
                    .get(&m.source)
                    .ok_or_else(|| EngineError::internal(format!("volume {} has no path", m.source)))?;
                let mut opts = vec!["rbind", rw, propagation];
                opts.extend(super::mounts::read_only_recursion(m, input.kernel_rro)?);
                mounts.push(mount(&dest, "bind", &src.to_string_lossy(), &opts));
            }
            MountKind::Tmpfs => {
                let mut opts: Vec<&str> = vec![rw];
                let has = |k: &str| m.options.iter().any(|o| o == k || o.starts_with(&format!("{k}=")));
                for d in ["noexec", "nosuid", "nodev"] {
                    let neg = match d {
                        "noexec" => "exec",
                        "nosuid" => "suid",
                        _ => "dev",
                    };
                    if !has(d) && !has(neg) {
                        opts.push(d);
                    }
                }
                let extra: Vec<&str> =
                    m.options.iter().map(String::as_str).filter(|o| *o != "rw" && *o != "ro").collect();
                opts.extend(extra);
                mounts.push(mount(&dest, "tmpfs", "tmpfs", &opts));
            }
        }
    }
    Ok(mounts)
}

/// The namespaces the container gets, joins (a shared IPC or network namespace) or shares
/// with the host.
fn namespaces(input: &SpecInput<'_>) -> Vec<LinuxNamespace> {
    let hc = &input.rec.host_config;
    let mut namespaces = Vec::new();
    let mut ns = |t: LinuxNamespaceType, path: Option<PathBuf>| {
        let mut n = LinuxNamespace::default();
        n.set_typ(t);
        n.set_path(path);
        namespaces.push(n);
    };
    ns(LinuxNamespaceType::Pid, None);
    match &input.ipc {
        Ipc::Host => {}
        Ipc::Join { ns: path, .. } => ns(LinuxNamespaceType::Ipc, Some(path.clone())),
        _ => ns(LinuxNamespaceType::Ipc, None),
    }
    ns(LinuxNamespaceType::Uts, None);
    ns(LinuxNamespaceType::Mount, None);
    match &input.netns {
        NetNs::New => ns(LinuxNamespaceType::Network, None),
        NetNs::Join(p) => ns(LinuxNamespaceType::Network, Some(p.clone())),
        NetNs::Host => {}
    }
    let cgroupns_private = match hc.cgroupns_mode.as_ref().map(|m| m.as_ref()) {
        Some("private") => true,
        Some("host") => false,
        _ => input.cgroup_v2,
    };
    if cgroupns_private {
        ns(LinuxNamespaceType::Cgroup, None);
    }
    namespaces
}

pub fn build(input: &SpecInput<'_>) -> Result<Spec> {
    let rec = input.rec;
    let hc = &rec.host_config;
    let privileged = hc.privileged == Some(true);
    let tty = rec.config.tty == Some(true);
    let no_new_privs = rec.security.no_new_privileges;

    let process = process(input, tty, no_new_privs)?;

    let mut root = Root::default();
    root.set_path(input.rootfs.to_path_buf());
    root.set_readonly(Some(hc.readonly_rootfs == Some(true)));

    let mounts = mounts(input, privileged)?;

    let namespaces = namespaces(input);

    let mut linux = oci_spec::runtime::Linux::default();
    linux.set_namespaces(Some(namespaces));
    linux.set_cgroups_path(Some(PathBuf::from(&input.cgroup_path)));
    linux.set_resources(Some(resources(hc, privileged)?));
    linux.set_devices(if privileged { Some(host_devices()) } else { None });
    linux.set_seccomp(input.seccomp.clone());
    // As dockerd: in a network namespace of its own, a container may ping (ICMP echo sockets)
    // and bind ports below 1024 without privileges, unless it set these itself.
    let mut sysctls = hc.sysctls.clone().unwrap_or_default();
    if input.netns != NetNs::Host {
        sysctls.entry("net.ipv4.ping_group_range".into()).or_insert_with(|| "0 2147483647".into());
        sysctls.entry("net.ipv4.ip_unprivileged_port_start".into()).or_insert_with(|| "0".into());
    }
    linux.set_sysctl(if sysctls.is_empty() { None } else { Some(sysctls) });
    linux.set_uid_mappings(None);
    linux.set_gid_mappings(None);
    if privileged {
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
    } else {
        // The request's lists replace the defaults (an empty list: none, as with
        // `--security-opt systempaths=unconfined`).
        linux.set_masked_paths(Some(
            hc.masked_paths.clone().unwrap_or_else(|| MASKED_PATHS.iter().map(|s| s.to_string()).collect()),
        ));
        linux.set_readonly_paths(Some(
            hc.readonly_paths.clone().unwrap_or_else(|| READONLY_PATHS.iter().map(|s| s.to_string()).collect()),
        ));
    }
    // Shared or slave mounts need the root's propagation to match (as runc is told by dockerd).
    // The OCI spec's values: the runtime applies them recursively.
    let props: Vec<&str> =
        rec.mounts.iter().map(|m| super::mounts::effective_propagation(m, input.daemon_root)).collect();
    linux.set_rootfs_propagation(if props.iter().any(|p| matches!(*p, "shared" | "rshared")) {
        Some("shared".into())
    } else if props.iter().any(|p| matches!(*p, "slave" | "rslave")) {
        Some("slave".into())
    } else {
        None
    });

    let mut spec = Spec::default();
    spec.set_version("1.0.2".to_string());
    spec.set_root(Some(root));
    spec.set_process(Some(process));
    spec.set_hostname(Some(input.hostname.clone()));
    spec.set_domainname(rec.config.domainname.clone().filter(|d| !d.is_empty()));
    spec.set_mounts(Some(mounts));
    spec.set_linux(Some(linux));
    spec.set_hooks(None);
    spec.set_annotations(None);
    Ok(spec)
}

/// The environment of the container's process (Docker's order: defaults, then the config's).
pub fn environment(config_env: &[String], hostname: &str, tty: bool) -> Vec<String> {
    let mut env = vec![format!("PATH={DEFAULT_PATH}"), format!("HOSTNAME={hostname}")];
    if tty {
        env.push("TERM=xterm".to_string());
    }
    for e in config_env {
        let key = e.split('=').next().unwrap_or(e);
        if !e.contains('=') {
            env.retain(|x| x.split('=').next() != Some(key));
            continue;
        }
        if let Some(slot) = env.iter_mut().find(|x| x.split('=').next() == Some(key)) {
            *slot = e.clone();
        } else {
            env.push(e.clone());
        }
    }
    env
}

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_order() {
        let env = environment(&["PATH=/x".into(), "A=1".into(), "HOSTNAME".into()], "h", true);
        assert_eq!(env, vec!["PATH=/x", "TERM=xterm", "A=1"]);
    }
}
